package pipeline

import (
	"slices"
	"strconv"

	"github.com/edged/edged/cep"
)

// DetectorSpec runs a cep detector in the engine.
type DetectorSpec struct {
	Detector cep.Detector
	// Match is a glob (* and ?) on the key; empty matches every key.
	Match string
	// KeyBy chooses the key, as for windows.
	KeyBy KeyBy
	// Filters: globs on sensor, metric and source; empty means any.
	Sensors, Metrics, Sources []string
	// OnWindow, when set, feeds the detector with that window's results
	// instead of readings: the aggregate Field (default "mean") of each
	// first firing (rev 0), at event time end-1.
	OnWindow string
	Field    string
	// Severity and Labels are copied into the detector's alerts.
	Severity string
	Labels   map[string]string
}

// detectorOp runs one detector over keyed state. Readings wait in a per-key
// buffer until the watermark passes them and reach the detector in
// event-time order (ties in arrival order), so readings out of order within
// max_out_of_orderness give the same alerts as in order. A reading at or
// behind the watermark on arrival is late for detectors: counted, not seen.
type detectorOp struct {
	e     *Engine
	spec  DetectorSpec
	name  string
	filt  filter
	keys  map[kkey]*detKey
	heap  detHeap
	dirty []*detKey
	out   cep.Emitter
	ev    cep.Event // reused: no allocation per reading
	late  int64
	agg   int  // index of Field in the window's aggregates, for OnWindow
	proc  bool // cep.UsesProcessingTime: ProcessingTick drives its keys
	// deltaPerKey is the bytes per key of the last Delta, to size the next.
	deltaPerKey int
	// restoring: set by BeginRestore when stored state matches the shape.
	restoring bool
}

type detKey struct {
	key   string
	k     kkey
	st    cep.State
	buf   []detEvent // waiting for the watermark, sorted by ts (stable)
	timer int64      // min(buf[0].ts, st.NextTimer())
	hidx  int
	dirty bool
}

type detEvent struct {
	ts                     int64
	value                  float64
	sensor, metric, source string
}

func newDetectorOp(e *Engine, spec DetectorSpec) *detectorOp {
	return &detectorOp{e: e, spec: spec, name: spec.Detector.Name(),
		filt: filter{spec.Sensors, spec.Metrics, spec.Sources}, keys: map[kkey]*detKey{}, agg: -1,
		proc: cep.UsesProcessingTime(spec.Detector)}
}

func (op *detectorOp) stateName() string { return "detector/" + op.name }

func (op *detectorOp) fingerprint() string {
	return op.spec.Detector.Fingerprint() + " key=" + strconv.Itoa(int(op.spec.KeyBy)) + " on=" + op.spec.OnWindow
}

func (op *detectorOp) keyOf(sensor, metric, source string) kkey {
	w := windowOp{spec: WindowSpec{KeyBy: op.spec.KeyBy}}
	return w.keyOf(sensor, metric, source)
}

func (op *detectorOp) render(k kkey) string {
	w := windowOp{spec: WindowSpec{KeyBy: op.spec.KeyBy}}
	return w.render(k)
}

func (op *detectorOp) lookup(k kkey) *detKey {
	dk := op.keys[k]
	if dk == nil {
		dk = &detKey{key: op.render(k), k: k, st: op.spec.Detector.NewState(), timer: noTimer, hidx: -1}
		op.keys[k] = dk
	}
	return dk
}

func (op *detectorOp) touch(dk *detKey) {
	if !dk.dirty && op.e.cfg.Incremental {
		dk.dirty = true
		op.dirty = append(op.dirty, dk)
	}
}

// add buffers a reading for its key until the watermark passes it.
func (op *detectorOp) add(sensor, metric, source string, v float64, ts, wm int64) {
	if op.spec.OnWindow != "" || !op.filt.match(sensor, metric, source) {
		return
	}
	k := op.keyOf(sensor, metric, source)
	if op.spec.Match != "" {
		if dk := op.keys[k]; dk != nil {
			if !glob(op.spec.Match, dk.key) {
				return
			}
		} else if !glob(op.spec.Match, op.render(k)) {
			return
		}
	}
	if wm != MinWatermark && ts <= wm {
		op.late++
		return
	}
	dk := op.lookup(k)
	i := len(dk.buf)
	for i > 0 && dk.buf[i-1].ts > ts {
		i--
	}
	dk.buf = slices.Insert(dk.buf, i, detEvent{ts: ts, value: v, sensor: sensor, metric: metric, source: source})
	op.touch(dk)
	op.schedule(dk)
}

func (op *detectorOp) schedule(dk *detKey) {
	t := dk.st.NextTimer()
	if op.e.wm == MaxWatermark && t > op.e.timerLimit() {
		t = noTimer // at the end of input: see timerLimit
	}
	if len(dk.buf) > 0 {
		t = min(t, dk.buf[0].ts)
	}
	op.heap.set(dk, t)
}

// fire handles the key at the top of the heap at time t: its events up to t
// in order, then its timer if due.
func (op *detectorOp) fire(dk *detKey, t int64) {
	op.release(dk, t)
	if nt := dk.st.NextTimer(); nt <= t {
		op.out.Alerts = op.out.Alerts[:0]
		dk.st.Advance(dk.key, t, &op.out)
		op.emit()
	}
	op.schedule(dk)
}

// release marks dk changed and hands its state the readings waiting in its
// buffer with ts <= t, in order.
func (op *detectorOp) release(dk *detKey, t int64) {
	op.touch(dk)
	n := 0
	for n < len(dk.buf) && dk.buf[n].ts <= t {
		ev := &dk.buf[n]
		op.ev = cep.Event{Key: dk.key, Source: ev.source, Sensor: ev.sensor, Metric: ev.metric, Value: ev.value, TS: ev.ts}
		op.observe(dk, &op.ev)
		n++
	}
	if n > 0 {
		dk.buf = slices.Delete(dk.buf, 0, n)
	}
}

// processingTick runs the keys due at processing time now (a tick from
// the log, while every source is idle), in the order (timer, key): the
// readings waiting for the watermark with ts <= now reach the state first,
// in order (they are the key's newest data: a key that sent them is not
// silent), then AdvanceProcessing(key, now). The due keys are taken off
// the heap first, so a state whose timer stays at or before now is run
// once per tick.
func (op *detectorOp) processingTick(now int64) {
	var due []*detKey
	for len(op.heap) > 0 && op.heap[0].timer <= now {
		dk := op.heap[0]
		op.heap.set(dk, noTimer)
		due = append(due, dk)
	}
	for _, dk := range due {
		op.release(dk, now)
		if pt, ok := dk.st.(cep.ProcessingTimer); ok && dk.st.NextTimer() <= now {
			op.out.Alerts = op.out.Alerts[:0]
			pt.AdvanceProcessing(dk.key, now, &op.out)
			op.emit()
		}
		op.schedule(dk)
	}
}

// timerLimit is how far detector timers may run: the watermark, except at
// the end of bounded input (Flush), where it is the newest event time
// seen. The end of a file is not silence: a deadman does not fire for
// every key, and a renotifying alert does not repeat forever.
func (e *Engine) timerLimit() int64 {
	if e.wm != MaxWatermark {
		return e.wm
	}
	limit := int64(MinWatermark)
	for _, s := range e.sources {
		if s.has {
			limit = max(limit, s.maxTS)
		}
	}
	return limit
}

func (op *detectorOp) observe(dk *detKey, ev *cep.Event) {
	op.out.Alerts = op.out.Alerts[:0]
	dk.st.Observe(ev, &op.out)
	op.emit()
}

func (op *detectorOp) emit() {
	for i := range op.out.Alerts {
		op.e.emitAlert(&op.out.Alerts[i], &op.spec)
	}
}

// window receives a window result, for detectors on windows.
func (op *detectorOp) window(name, key string, k kkey, end int64, rev int32, aggs []AggSpec, values []float64) {
	if op.spec.OnWindow != name || rev != 0 {
		return
	}
	if op.agg < 0 {
		field := op.spec.Field
		if field == "" {
			field = "mean"
		}
		op.agg = len(aggs) // not found: never matches
		for i := range aggs {
			if aggs[i].Name == field {
				op.agg = i
			}
		}
	}
	if op.agg >= len(values) || (op.spec.Match != "" && !glob(op.spec.Match, key)) {
		return
	}
	dk := op.keys[k]
	if dk == nil {
		dk = &detKey{key: key, k: k, st: op.spec.Detector.NewState(), timer: noTimer, hidx: -1}
		op.keys[k] = dk
	}
	op.touch(dk)
	op.ev = cep.Event{Key: key, Value: values[op.agg], TS: end - 1}
	op.observe(dk, &op.ev)
	op.schedule(dk)
}

// detHeap orders keys by (timer, key), like keyHeap.
type detHeap []*detKey

func (h detHeap) less(i, j int) bool {
	if h[i].timer != h[j].timer {
		return h[i].timer < h[j].timer
	}
	return h[i].key < h[j].key
}

func (h detHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}

func (h detHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h detHeap) down(i int) bool {
	i0, n := i, len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
	return i > i0
}

func (h *detHeap) set(dk *detKey, t int64) {
	if t == noTimer {
		if dk.hidx >= 0 {
			old := *h
			i, last := dk.hidx, len(old)-1
			if i != last {
				old.swap(i, last)
			}
			old = old[:last]
			if i != last && !old.down(i) {
				old.up(i)
			}
			dk.hidx = -1
			*h = old
		}
		dk.timer = noTimer
		return
	}
	if dk.hidx < 0 {
		dk.timer, dk.hidx = t, len(*h)
		*h = append(*h, dk)
		h.up(dk.hidx)
		return
	}
	if dk.timer == t {
		return
	}
	dk.timer = t
	if !h.down(dk.hidx) {
		h.up(dk.hidx)
	}
}
