package pipeline

import (
	"math"
	"slices"
	"strings"
)

// windowOp is one configured window: its keyed state, its timers and its
// aggregates. It runs on the engine's goroutine only.
type windowOp struct {
	e     *Engine
	idx   int
	spec  WindowSpec
	filt  filter
	needs aggNeeds
	lat   int64 // allowed lateness, ms

	// aligned windows: size S, slide D, offset off, pane size P, all ms.
	S, D, off, P int64
	// session windows: gap, ms.
	G int64
	// blocks: sliding windows of many panes use the block scheme (slider.go).
	blocks bool

	keys    map[kkey]*keyState
	heap    keyHeap
	empties int // keys in the map with no state, swept when many
	// held of them were kept by the last sweep because their deletion is
	// not in a Delta yet (AppendDelta removes them).
	held int

	pool    aggPool
	scratch aggState
	values  []float64

	lastEarly int64 // processing time of the last early emission

	// dirty lists the keys changed since the last Delta, in the order they
	// were first changed (only with Config.Incremental).
	dirty []*keyState
	// restoring is set between BeginRestore and the first reading when the
	// stored state of this operator matches its shape.
	restoring bool
	// deltaPerKey is the bytes per key of the last Delta, to size the next.
	deltaPerKey int
}

// touch marks ks changed since the last Delta.
func (op *windowOp) touch(ks *keyState) {
	if !ks.dirty && op.e.cfg.Incremental {
		ks.dirty = true
		op.dirty = append(op.dirty, ks)
	}
}

func newWindowOp(e *Engine, idx int, spec WindowSpec, defaultLateness int64) *windowOp {
	op := &windowOp{
		e:      e,
		idx:    idx,
		spec:   spec,
		filt:   filter{spec.Sensors, spec.Metrics, spec.Sources},
		needs:  needsOf(spec.Aggs),
		lat:    spec.AllowedLateness.Milliseconds(),
		keys:   make(map[kkey]*keyState),
		values: make([]float64, len(spec.Aggs)),
	}
	switch spec.Type {
	case Tumbling:
		op.S, op.D = spec.Size.Milliseconds(), spec.Size.Milliseconds()
	case Sliding:
		op.S, op.D = spec.Size.Milliseconds(), spec.Slide.Milliseconds()
	case Session:
		op.G = spec.Gap.Milliseconds()
	}
	if op.S > 0 {
		op.off = spec.Offset.Milliseconds()
		op.P = gcd(op.S, op.D)
		op.blocks = spec.Type == Sliding && op.S/op.P >= blockMinPanes
	}
	return op
}

// keyOf computes the map key of a reading.
func (op *windowOp) keyOf(sensor, metric, source string) kkey {
	switch op.spec.KeyBy {
	case KeySensor:
		return kkey{sensor, ""}
	case KeyMetric:
		return kkey{metric, ""}
	case KeySource:
		return kkey{source, ""}
	case KeyGlobal:
		return kkey{}
	}
	return kkey{sensor, metric}
}

func (op *windowOp) render(k kkey) string {
	switch op.spec.KeyBy {
	case KeyGlobal:
		return "*"
	case KeySensorMetric:
		if k.b != "" {
			return k.a + "/" + k.b
		}
	}
	return k.a
}

func (op *windowOp) lookup(k kkey) *keyState {
	ks := op.keys[k]
	if ks == nil {
		ks = &keyState{key: op.render(k), k: k, timer: noTimer, hidx: -1}
		op.keys[k] = ks
		op.empties++
	}
	return ks
}

// isLate reports whether a window ending at end takes no more readings at
// watermark wm: wm >= end-1+lateness (Flink's isWindowLate).
func (op *windowOp) isLate(end, wm int64) bool {
	return wm != math.MinInt64 && wm >= end-1+op.lat
}

// add routes one reading to its windows at watermark wm.
func (op *windowOp) add(sensor, metric, source string, v float64, ts, wm int64) {
	if op.G > 0 {
		op.addSession(sensor, metric, source, v, ts, wm)
	} else {
		op.addAligned(sensor, metric, source, v, ts, wm)
	}
}

// --- aligned windows (tumbling, sliding) ---

func (op *windowOp) paneStart(ts int64) int64 { return op.off + floorDiv(ts-op.off, op.P)*op.P }

// minEnd and maxEnd are the ends of the first and last window containing
// the pane starting at p.
func (op *windowOp) minEnd(p int64) int64 {
	return op.off + ceilDiv(p+op.P-op.S-op.off, op.D)*op.D + op.S
}

func (op *windowOp) maxEnd(p int64) int64 { return op.off + floorDiv(p-op.off, op.D)*op.D + op.S }

// endCeil is the smallest window end >= x.
func (op *windowOp) endCeil(x int64) int64 {
	return op.off + op.S + ceilDiv(x-op.off-op.S, op.D)*op.D
}

func (op *windowOp) addAligned(sensor, metric, source string, v float64, ts, wm int64) {
	p := op.paneStart(ts)
	if op.isLate(op.maxEnd(p), wm) {
		op.e.emitLate(op, sensor, metric, source, v, ts)
		return
	}
	ks := op.lookup(op.keyOf(sensor, metric, source))
	if ks.empty() {
		op.empties--
	}
	op.touch(ks)
	// Find or insert the pane; readings mostly land in the newest one.
	i := len(ks.panes) - 1
	for i >= 0 && ks.panes[i].start > p {
		i--
	}
	created := false
	if i < 0 || ks.panes[i].start != p {
		i++
		ks.insertPane(i, p)
		created = true
	}
	ks.panes[i].agg.add(v, ts, op.needs, &op.pool)
	if ks.sl != nil {
		ks.sl.touch(p, op.S)
	}

	if op.lat > 0 && wm != math.MinInt64 && wm >= op.minEnd(p)-1 {
		// Windows that already fired but are within allowed lateness fire
		// again, at once, with the reading included.
		for e := op.minEnd(p); e <= op.maxEnd(p) && e-1 <= wm; e += op.D {
			if op.isLate(e, wm) {
				continue
			}
			op.fireAligned(ks, e, op.bumpFired(ks, e), true)
			created = true // the fired list changed
		}
	}
	if created {
		// A reading into an existing pane moves no timer.
		op.heap.set(ks, op.nextAligned(ks, wm))
	}
}

// bumpFired returns the rev of the next firing of the window ending at end
// and records that firing.
func (op *windowOp) bumpFired(ks *keyState, end int64) int32 {
	i := 0
	for i < len(ks.fired) && ks.fired[i].end < end {
		i++
	}
	if i < len(ks.fired) && ks.fired[i].end == end {
		ks.fired[i].fires++
		return ks.fired[i].fires - 1
	}
	ks.fired = append(ks.fired, firedWin{})
	copy(ks.fired[i+1:], ks.fired[i:])
	ks.fired[i] = firedWin{end: end, fires: 1}
	return 0
}

// fireAligned emits the window of ks ending at end, combining its panes.
func (op *windowOp) fireAligned(ks *keyState, end int64, rev int32, final bool) {
	start := end - op.S
	sc := &op.scratch
	if op.blocks {
		op.blockAgg(ks, start, end, sc)
		if sc.count > 0 {
			op.e.emitWindow(op, ks.key, start, end, rev, final, sc)
		}
		return
	}
	sc.reset(&op.pool)
	i := 0
	for i < len(ks.panes) && ks.panes[i].start < start {
		i++
	}
	j := i
	for j < len(ks.panes) && ks.panes[j].start < end {
		j++
	}
	if op.needs == 0 {
		// The common case, kept tight: count, sum, min and max only.
		for k := i; k < j; k++ {
			b := &ks.panes[k].agg
			if sc.count == 0 {
				sc.min, sc.max = b.min, b.max
			} else {
				if b.min < sc.min {
					sc.min = b.min
				}
				if b.max > sc.max {
					sc.max = b.max
				}
			}
			sc.count += b.count
			sc.sum += b.sum
		}
	} else {
		for k := i; k < j; k++ {
			sc.merge(&ks.panes[k].agg, op.needs, &op.pool)
		}
	}
	if sc.count == 0 {
		return
	}
	op.e.emitWindow(op, ks.key, start, end, rev, final, sc)
}

// nextAligned computes the key's next timer, given that every event up to
// and including time cur has been handled.
func (op *windowOp) nextAligned(ks *keyState, cur int64) int64 {
	t := noTimer
	if len(ks.panes) > 0 {
		if c := op.maxEnd(ks.panes[0].start) - 1 + op.lat; c < t {
			t = c
		}
	}
	if len(ks.fired) > 0 {
		if c := ks.fired[0].end - 1 + op.lat; c < t {
			t = c
		}
	}
	lo := int64(math.MinInt64)
	if cur != math.MinInt64 {
		lo = op.endCeil(cur + 2)
	}
	for i := range ks.panes {
		p := ks.panes[i].start
		if me := op.maxEnd(p); cur == math.MinInt64 || me-1 > cur {
			e := max(op.minEnd(p), lo)
			if e-1 < t {
				t = e - 1
			}
			break
		}
	}
	return t
}

// timerAligned handles the events of ks at time t: the firing of the
// window ending at t+1, then the cleanup of state past allowed lateness.
func (op *windowOp) timerAligned(ks *keyState, t int64) {
	e := t + 1
	fired := false
	if (e-op.off-op.S)%op.D == 0 && op.hasData(ks, e) {
		op.fireAligned(ks, e, 0, true)
		fired = true
	}
	// Cleanup.
	n := 0
	for n < len(ks.fired) && ks.fired[n].end-1+op.lat <= t {
		n++
	}
	if n > 0 {
		ks.fired = append(ks.fired[:0], ks.fired[n:]...)
		op.touch(ks)
	}
	n = 0
	for n < len(ks.panes) && op.maxEnd(ks.panes[n].start)-1+op.lat <= t {
		ks.panes[n].agg.reset(&op.pool)
		n++
	}
	if n > 0 {
		ks.panes = ks.panes[n:] // the space is reclaimed by insertPane
		op.touch(ks)
	}
	if fired && op.lat > 0 {
		ks.fired = append(ks.fired, firedWin{end: e, fires: 1})
		op.touch(ks)
	}
	op.heap.set(ks, op.nextAligned(ks, t))
	if ks.empty() {
		op.empties++
	}
}

func (op *windowOp) hasData(ks *keyState, end int64) bool {
	start := end - op.S
	for i := range ks.panes {
		if s := ks.panes[i].start; s >= start && s < end {
			return true
		} else if s >= end {
			return false
		}
	}
	return false
}

// --- session windows ---

func (op *windowOp) addSession(sensor, metric, source string, v float64, ts, wm int64) {
	k := op.keyOf(sensor, metric, source)
	lo, hi := ts, ts+op.G
	ks := op.keys[k]
	i, j := 0, 0
	if ks != nil {
		// Sessions are sorted and disjoint, so those intersecting [lo, hi)
		// (touching counts) are contiguous: the ones starting at or before
		// hi whose end is at or after lo. Readings mostly touch the newest.
		j = len(ks.sess)
		for j > 0 && ks.sess[j-1].start > hi {
			j--
		}
		i = j
		for i > 0 && ks.sess[i-1].end >= lo {
			i--
		}
	}
	if i == j && op.isLate(hi, wm) {
		op.e.emitLate(op, sensor, metric, source, v, ts)
		return
	}
	if ks == nil {
		ks = op.lookup(k)
	}
	if ks.empty() {
		op.empties--
	}
	op.touch(ks)
	var s *session
	if i == j {
		ks.sess, ks.sbuf = insertAt(ks.sess, ks.sbuf, i, session{start: lo, end: hi})
		s = &ks.sess[i]
	} else {
		s = &ks.sess[i]
		for m := i + 1; m < j; m++ {
			o := &ks.sess[m]
			s.agg.merge(&o.agg, op.needs, &op.pool)
			o.agg.reset(&op.pool)
			s.end = o.end
			s.fires = max(s.fires, o.fires)
		}
		s.start = min(s.start, lo)
		s.end = max(s.end, hi)
		if j > i+1 {
			n := copy(ks.sess[i+1:], ks.sess[j:])
			clear(ks.sess[i+1+n:])
			ks.sess = ks.sess[:i+1+n]
			s = &ks.sess[i]
		}
	}
	s.agg.add(v, ts, op.needs, &op.pool)
	s.pending = true
	if wm != math.MinInt64 && s.end-1 <= wm {
		// Within allowed lateness after the session fired: fire again now.
		op.fireSession(ks, s)
	}
	op.heap.set(ks, op.nextSession(ks))
}

func (op *windowOp) fireSession(ks *keyState, s *session) {
	rev := s.fires
	s.fires++
	s.pending = false
	op.e.emitWindow(op, ks.key, s.start, s.end, rev, true, &s.agg)
}

// nextSession is the key's next event: the firing of its first pending
// session or the cleanup of an earlier fired one. Sessions are sorted by
// end, so only those up to the first pending one matter.
func (op *windowOp) nextSession(ks *keyState) int64 {
	t := noTimer
	for i := range ks.sess {
		s := &ks.sess[i]
		if s.pending {
			return min(t, s.end-1)
		}
		t = min(t, s.end-1+op.lat)
	}
	return t
}

func (op *windowOp) timerSession(ks *keyState, t int64) {
	// Everything due at t has end-1 <= t: a prefix, as ends are sorted.
	for i := 0; i < len(ks.sess) && ks.sess[i].end-1 <= t; i++ {
		if s := &ks.sess[i]; s.pending {
			op.fireSession(ks, s)
		}
	}
	n := 0
	for n < len(ks.sess) && !ks.sess[n].pending && ks.sess[n].end-1+op.lat <= t {
		ks.sess[n].agg.reset(&op.pool)
		n++
	}
	if n > 0 {
		clear(ks.sess[:n])
		ks.sess = ks.sess[n:]
		op.touch(ks)
	}
	op.heap.set(ks, op.nextSession(ks))
	if ks.empty() {
		op.empties++
	}
}

// timer handles the events of the key at the top of the heap, at time t.
func (op *windowOp) timer(ks *keyState, t int64) {
	op.touch(ks)
	if op.G > 0 {
		op.timerSession(ks, t)
	} else {
		op.timerAligned(ks, t)
	}
}

// sweep drops keys without state from the map once they are many, so that
// a stream of short-lived keys does not grow memory without bound while
// steady keys are not reallocated at every window.
func (op *windowOp) sweep() {
	least := op.e.cfg.sweepMin
	if least == 0 {
		least = 1024
	}
	if op.empties-op.held < least || op.empties-op.held < len(op.keys)/2 {
		return
	}
	kept := 0
	for k, ks := range op.keys {
		if ks.empty() {
			if ks.dirty {
				// Its deletion is not in a Delta yet: kept (and reused by
				// a reading for the same key) until AppendDelta removes it.
				// Dropped here, it would stay referenced by op.dirty while
				// the key got a new keyState, and so on until the next
				// checkpoint of the state.
				kept++
				continue
			}
			if ks.sl != nil {
				ks.sl.release(&op.pool)
			}
			delete(op.keys, k)
		}
	}
	op.empties, op.held = kept, kept
}

// emitEarly emits the partial result of every open window (one the
// watermark has not reached) that holds readings, keys in order, each key's
// windows in order of end. The rev is the one the on-time firing will have.
func (op *windowOp) emitEarly(wm int64) {
	keys := make([]*keyState, 0, len(op.keys))
	for _, ks := range op.keys {
		if !ks.empty() {
			keys = append(keys, ks)
		}
	}
	slices.SortFunc(keys, func(a, b *keyState) int { return strings.Compare(a.key, b.key) })
	for _, ks := range keys {
		if op.G > 0 {
			for i := range ks.sess {
				if s := &ks.sess[i]; s.pending {
					op.e.emitWindow(op, ks.key, s.start, s.end, s.fires, false, &s.agg)
				}
			}
			continue
		}
		if len(ks.panes) == 0 {
			continue
		}
		lo := op.endCeil(ks.panes[0].start + 1)
		if wm != math.MinInt64 {
			lo = max(lo, op.endCeil(wm+2))
		}
		hi := op.maxEnd(ks.panes[len(ks.panes)-1].start)
		for e := lo; e <= hi; e += op.D {
			if op.hasData(ks, e) {
				op.fireAligned(ks, e, 0, false)
			}
		}
	}
}
