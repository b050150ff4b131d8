package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/tinylib/msgp/msgp"
)

//go:generate go run github.com/tinylib/msgp@v1.6.5 -file state.go -o state_gen.go -io=false -tests=true

// StateVersion is the version of the State layout. Restore refuses others.
const StateVersion = 1

// State is a whole snapshot of the engine: plain data, no pointers into the
// live engine. Keys are sorted, so two snapshots of equal state are equal.
// The daemon checkpoints the same data incrementally (Header and Delta).
//
//msgp:ignore State WindowState DetectorState
type State struct {
	Header
	Windows   []WindowState
	Detectors []DetectorState
}

// DetectorState is the state of one detector operator.
type DetectorState struct {
	Name string // "detector/<name>"
	Keys []DetKeyState
}

// DetKeyState is one key of a detector: its encoded cep state and the
// readings waiting for the watermark.
//
//msgp:tuple DetKeyState
type DetKeyState struct {
	A, B  string
	State []byte
	Buf   []DetEventState
}

// DetEventState is a reading waiting in a detector's buffer.
//
//msgp:tuple DetEventState
type DetEventState struct {
	TS                     int64
	Value                  float64
	Sensor, Metric, Source string
}

// WindowState is the state of one window operator.
type WindowState struct {
	Name string
	Spec string
	Keys []KeyState
}

// Header is the engine-level part of the state: the watermark, the
// sources, and the shape of each window operator, so that a window whose
// shape changed between checkpoint and restart starts empty.
//
//msgp:tuple Header
type Header struct {
	Version   int
	Watermark int64
	Sources   []SourceState
	Ops       []OpHeader
}

// OpHeader names an operator and the shape of its state.
//
//msgp:tuple OpHeader
type OpHeader struct {
	Name string
	Spec string
}

// SourceState is one source's watermark state, idleness included (idleness
// is decided in processing time but enters the engine from the log, so it
// is part of the deterministic state).
//
//msgp:tuple SourceState
type SourceState struct {
	Name  string
	OOO   int64
	MaxTS int64
	Has   bool
	Idle  bool
}

// KeyState is the state of one key of one window.
//
//msgp:tuple KeyState
type KeyState struct {
	A, B     string // the key's parts (sensor and metric, ...)
	Panes    []PaneState
	Fired    []FiredState
	Sessions []SessionState
}

// PaneState is one pane of an aligned window.
//
//msgp:tuple PaneState
type PaneState struct {
	Start int64
	Agg   AggState
}

// FiredState counts the firings of an aligned window still within allowed
// lateness.
//
//msgp:tuple FiredState
type FiredState struct {
	End   int64
	Fires int32
}

// SessionState is one session window.
//
//msgp:tuple SessionState
type SessionState struct {
	Start, End int64
	Fires      int32
	Pending    bool
	Agg        AggState
}

// AggState is the running aggregate of a pane or session. Sketch holds the
// percentile sketch in its binary encoding, or nil.
//
//msgp:tuple AggState
type AggState struct {
	Count           int64
	Sum, Min, Max   float64
	FirstTS, LastTS int64
	First, Last     float64
	Mean, M2        float64
	Sketch          []byte
}

func (a *aggState) state() AggState {
	s := AggState{Count: a.count, Sum: a.sum, Min: a.min, Max: a.max}
	if x := a.x; x != nil {
		s.FirstTS, s.LastTS, s.First, s.Last = x.firstTS, x.lastTS, x.first, x.last
		s.Mean, s.M2 = x.mean, x.m2
		if x.sk != nil {
			s.Sketch = x.sk.AppendBinary(nil)
		}
	}
	return s
}

func (a *aggState) restore(s *AggState, n aggNeeds, pool *aggPool) error {
	*a = aggState{count: s.Count, sum: s.Sum, min: s.Min, max: s.Max}
	if n == 0 {
		return nil
	}
	x := pool.getExt()
	a.x = x
	x.firstTS, x.lastTS, x.first, x.last = s.FirstTS, s.LastTS, s.First, s.Last
	x.mean, x.m2 = s.Mean, s.M2
	if len(s.Sketch) > 0 {
		x.sk = pool.getSketch()
		if err := x.sk.UnmarshalBinary(s.Sketch); err != nil {
			return err
		}
	}
	return nil
}

// header returns the engine-level state.
func (e *Engine) header() Header {
	h := Header{Version: StateVersion, Watermark: e.wm}
	for _, s := range e.sources {
		h.Sources = append(h.Sources, SourceState{Name: s.name, OOO: s.ooo, MaxTS: s.maxTS, Has: s.has, Idle: s.idle})
	}
	for _, op := range e.ops {
		h.Ops = append(h.Ops, OpHeader{Name: op.spec.Name, Spec: op.spec.fingerprint()})
	}
	for _, d := range e.dets {
		h.Ops = append(h.Ops, OpHeader{Name: d.stateName(), Spec: d.fingerprint()})
	}
	return h
}

func (dk *detKey) state() DetKeyState {
	s := DetKeyState{A: dk.k.a, B: dk.k.b, State: dk.st.AppendState(nil)}
	for _, ev := range dk.buf {
		s.Buf = append(s.Buf, DetEventState{TS: ev.ts, Value: ev.value, Sensor: ev.sensor, Metric: ev.metric, Source: ev.source})
	}
	return s
}

func (d *detectorOp) restoreKey(s *DetKeyState) error {
	k := kkey{s.A, s.B}
	dk := &detKey{key: d.render(k), k: k, st: d.spec.Detector.NewState(), timer: noTimer, hidx: -1}
	if d.spec.OnWindow != "" {
		dk.key = s.A
		if s.B != "" {
			dk.key = s.A + "/" + s.B
		}
	}
	if err := dk.st.RestoreState(s.State); err != nil {
		return err
	}
	for _, ev := range s.Buf {
		dk.buf = append(dk.buf, detEvent{ts: ev.TS, value: ev.Value, sensor: ev.Sensor, metric: ev.Metric, source: ev.Source})
	}
	d.keys[k] = dk
	d.schedule(dk)
	return nil
}

// Snapshot returns the engine's whole state.
func (e *Engine) Snapshot() *State {
	st := &State{Header: e.header()}
	for _, op := range e.ops {
		ws := WindowState{Name: op.spec.Name, Spec: op.spec.fingerprint()}
		for _, ks := range op.keys {
			if ks.empty() {
				continue
			}
			ws.Keys = append(ws.Keys, ks.state())
		}
		slices.SortFunc(ws.Keys, func(a, b KeyState) int {
			return cmp.Or(cmp.Compare(a.A, b.A), cmp.Compare(a.B, b.B))
		})
		st.Windows = append(st.Windows, ws)
	}
	for _, d := range e.dets {
		ds := DetectorState{Name: d.stateName()}
		for _, dk := range d.keys {
			ds.Keys = append(ds.Keys, dk.state())
		}
		slices.SortFunc(ds.Keys, func(a, b DetKeyState) int {
			return cmp.Or(cmp.Compare(a.A, b.A), cmp.Compare(a.B, b.B))
		})
		st.Detectors = append(st.Detectors, ds)
	}
	return st
}

// KeyDelta is one changed key: its operator, its store key and its encoded
// KeyState, or a nil Value when the key has no state any more.
type KeyDelta struct {
	Op    string
	Key   []byte
	Value []byte
}

// Delta is what changed since the previous Delta (or restore): the encoded
// Header, always whole, and the keys that changed, each op's keys in the
// order they first changed. It needs Config.Incremental.
type Delta struct {
	Header []byte
	Keys   []KeyDelta
}

// AppendDelta fills d with the changes since the last call and forgets
// them. The cost is proportional to the changed keys, not to all keys.
func (e *Engine) AppendDelta(d *Delta) error {
	h := e.header()
	var err error
	if d.Header, err = h.MarshalMsg(d.Header[:0]); err != nil {
		return err
	}
	n := len(d.Keys)
	for _, op := range e.ops {
		n += len(op.dirty)
	}
	for _, dop := range e.dets {
		n += len(dop.dirty)
	}
	d.Keys = slices.Grow(d.Keys, n-len(d.Keys))
	for _, op := range e.ops {
		o := newOpDelta(len(op.dirty), op.deltaPerKey)
		for _, ks := range op.dirty {
			ks.dirty = false
			o.key(ks.k)
			if !ks.empty() {
				o.buf = ks.appendMsg(o.buf, &e.skBuf)
			} else if op.keys[ks.k] == ks { // a deletion: no value
				if ks.sl != nil {
					ks.sl.release(&op.pool)
				}
				delete(op.keys, ks.k)
				op.empties--
			}
			o.end()
		}
		op.held = 0
		if per := o.appendTo(d, op.spec.Name); per > 0 {
			op.deltaPerKey = per
		}
		clear(op.dirty)
		op.dirty = op.dirty[:0]
	}
	for _, dop := range e.dets {
		o := newOpDelta(len(dop.dirty), dop.deltaPerKey)
		for _, dk := range dop.dirty {
			dk.dirty = false
			o.key(dk.k)
			o.buf = dk.appendMsg(o.buf, &e.skBuf)
			o.end()
		}
		if per := o.appendTo(d, dop.stateName()); per > 0 {
			dop.deltaPerKey = per
		}
		clear(dop.dirty)
		dop.dirty = dop.dirty[:0]
	}
	return nil
}

// opDelta collects the changed keys of one operator for a Delta in a
// single buffer, keys and values: a checkpoint of many keys costs no
// allocation per key. It is sized from the previous delta's bytes per key,
// so that a big checkpoint does not copy its buffer while it grows.
type opDelta struct {
	buf  []byte
	ends []int // per key: the end of its key in buf, then of its value
}

func newOpDelta(keys, perKey int) opDelta {
	if perKey == 0 {
		perKey = 128
	}
	return opDelta{buf: make([]byte, 0, keys*perKey*5/4), ends: make([]int, 0, 2*keys)}
}

// key starts an entry with k's store key (StoreKey); its value is what is
// appended to buf until end.
func (o *opDelta) key(k kkey) {
	o.buf = append(o.buf, k.a...)
	o.buf = append(o.buf, 0)
	o.buf = append(o.buf, k.b...)
	o.ends = append(o.ends, len(o.buf))
}

// end ends the entry key started; an empty value is a deletion.
func (o *opDelta) end() { o.ends = append(o.ends, len(o.buf)) }

// appendTo appends the entries to d.Keys as operator op's and returns the
// bytes per key (0 without entries).
func (o *opDelta) appendTo(d *Delta, op string) (perKey int) {
	start := 0
	for i := 0; i < len(o.ends); i += 2 {
		k1, v1 := o.ends[i], o.ends[i+1]
		kd := KeyDelta{Op: op, Key: o.buf[start:k1:k1]}
		if v1 > k1 {
			kd.Value = o.buf[k1:v1:v1]
		}
		d.Keys = append(d.Keys, kd)
		start = v1
	}
	if n := len(o.ends) / 2; n > 0 {
		return len(o.buf)/n + 1
	}
	return 0
}

// appendMsg appends dk encoded exactly as DetKeyState.MarshalMsg encodes
// dk.state(), without building the DetKeyState; scratch holds the cep
// state's encoding meanwhile (a test checks the two agree).
func (dk *detKey) appendMsg(b []byte, scratch *[]byte) []byte {
	b = msgp.AppendArrayHeader(b, 4)
	b = msgp.AppendString(b, dk.k.a)
	b = msgp.AppendString(b, dk.k.b)
	*scratch = dk.st.AppendState((*scratch)[:0])
	b = msgp.AppendBytes(b, *scratch)
	b = msgp.AppendArrayHeader(b, uint32(len(dk.buf)))
	for i := range dk.buf {
		ev := &dk.buf[i]
		b = msgp.AppendArrayHeader(b, 5)
		b = msgp.AppendInt64(b, ev.ts)
		b = msgp.AppendFloat64(b, ev.value)
		b = msgp.AppendString(b, ev.sensor)
		b = msgp.AppendString(b, ev.metric)
		b = msgp.AppendString(b, ev.source)
	}
	return b
}

// appendMsg appends ks encoded exactly as KeyState.MarshalMsg encodes
// ks.state(), without building the KeyState (a test checks the two agree).
func (ks *keyState) appendMsg(b []byte, skBuf *[]byte) []byte {
	b = msgp.AppendArrayHeader(b, 5)
	b = msgp.AppendString(b, ks.k.a)
	b = msgp.AppendString(b, ks.k.b)
	b = msgp.AppendArrayHeader(b, uint32(len(ks.panes)))
	for i := range ks.panes {
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendInt64(b, ks.panes[i].start)
		b = ks.panes[i].agg.appendMsg(b, skBuf)
	}
	b = msgp.AppendArrayHeader(b, uint32(len(ks.fired)))
	for _, f := range ks.fired {
		b = msgp.AppendArrayHeader(b, 2)
		b = msgp.AppendInt64(b, f.end)
		b = msgp.AppendInt32(b, f.fires)
	}
	b = msgp.AppendArrayHeader(b, uint32(len(ks.sess)))
	for i := range ks.sess {
		x := &ks.sess[i]
		b = msgp.AppendArrayHeader(b, 5)
		b = msgp.AppendInt64(b, x.start)
		b = msgp.AppendInt64(b, x.end)
		b = msgp.AppendInt32(b, x.fires)
		b = msgp.AppendBool(b, x.pending)
		b = x.agg.appendMsg(b, skBuf)
	}
	return b
}

// appendMsg appends a encoded as AggState.MarshalMsg encodes a.state().
func (a *aggState) appendMsg(b []byte, skBuf *[]byte) []byte {
	b = msgp.AppendArrayHeader(b, 11)
	b = msgp.AppendInt64(b, a.count)
	b = msgp.AppendFloat64(b, a.sum)
	b = msgp.AppendFloat64(b, a.min)
	b = msgp.AppendFloat64(b, a.max)
	var x aggExt
	if a.x != nil {
		x = *a.x
	}
	b = msgp.AppendInt64(b, x.firstTS)
	b = msgp.AppendInt64(b, x.lastTS)
	b = msgp.AppendFloat64(b, x.first)
	b = msgp.AppendFloat64(b, x.last)
	b = msgp.AppendFloat64(b, x.mean)
	b = msgp.AppendFloat64(b, x.m2)
	if x.sk != nil {
		*skBuf = x.sk.AppendBinary((*skBuf)[:0])
		return msgp.AppendBytes(b, *skBuf)
	}
	return msgp.AppendBytes(b, nil)
}

// StoreKey is the key under which a key's state is stored: its parts
// joined by a zero byte.
func StoreKey(a, b string) []byte {
	k := make([]byte, 0, len(a)+1+len(b))
	k = append(k, a...)
	k = append(k, 0)
	return append(k, b...)
}

func (ks *keyState) state() KeyState {
	s := KeyState{A: ks.k.a, B: ks.k.b}
	for i := range ks.panes {
		s.Panes = append(s.Panes, PaneState{Start: ks.panes[i].start, Agg: ks.panes[i].agg.state()})
	}
	for _, f := range ks.fired {
		s.Fired = append(s.Fired, FiredState{End: f.end, Fires: f.fires})
	}
	for i := range ks.sess {
		x := &ks.sess[i]
		s.Sessions = append(s.Sessions, SessionState{Start: x.start, End: x.end, Fires: x.fires, Pending: x.pending, Agg: x.agg.state()})
	}
	return s
}

// Dropped is an operator whose stored state a restore does not use, or a
// source whose stored watermark it does not restore, and why.
type Dropped struct {
	// Op is the operator's state name (a window's name, "detector/<name>"
	// for a detector), or "" for a source.
	Op string
	// Source names a source that is no longer configured.
	Source string
	Reason string
}

// Reasons in Dropped.
const (
	droppedGone   = "no longer configured: its stored state is deleted"
	droppedShape  = "its kind or shape changed: it starts empty"
	droppedSource = "source no longer configured: it no longer holds back the watermark"
)

// StateError is a stored key that RestoreKey could not restore. The
// operator Op was reset (it starts empty) and ignores its other stored
// keys; its stored state must be deleted (Checkpoint.DropOps).
type StateError struct {
	Op  string
	Key string
	Err error
}

func (e *StateError) Error() string {
	return fmt.Sprintf("restore: %s key %q: %v", e.Op, e.Key, e.Err)
}

func (e *StateError) Unwrap() error { return e.Err }

// Restore replaces the engine's state with st. Operators are matched by
// name; one whose kind or shape changed since the snapshot starts empty,
// and is listed in dropped. A key that cannot be restored resets its
// operator and is returned in the error (a *StateError each).
func (e *Engine) Restore(st *State) (dropped []Dropped, err error) {
	hb, err := st.Header.MarshalMsg(nil)
	if err != nil {
		return nil, err
	}
	if dropped, err = e.BeginRestore(hb); err != nil {
		return nil, err
	}
	var errs []error
	for i := range st.Windows {
		ws := &st.Windows[i]
		for j := range ws.Keys {
			v, err := ws.Keys[j].MarshalMsg(nil)
			if err == nil {
				err = e.RestoreKey(ws.Name, v)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	for i := range st.Detectors {
		ds := &st.Detectors[i]
		for j := range ds.Keys {
			v, err := ds.Keys[j].MarshalMsg(nil)
			if err == nil {
				err = e.RestoreKey(ds.Name, v)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return dropped, errors.Join(errs...)
}

// BeginRestore starts a restore from an encoded Header: it sets the
// watermark and the sources and empties every operator. It returns the
// operators in the header whose state must be thrown away (no longer
// configured, or configured with another kind or shape: the fingerprint
// differs) and the stored sources no longer declared; RestoreKey ignores
// keys of those operators. Idleness comes back as it was, since it entered
// the engine from the log. A header that cannot be decoded (or has
// another StateVersion) is an error and changes nothing: the engine stays
// as New built it.
func (e *Engine) BeginRestore(header []byte) (dropped []Dropped, err error) {
	var h Header
	if _, err := h.UnmarshalMsg(header); err != nil {
		return nil, fmt.Errorf("restore: engine header: %w", err)
	}
	if h.Version != StateVersion {
		return nil, fmt.Errorf("restore: state version %d, want %d", h.Version, StateVersion)
	}
	declared := map[string]bool{}
	for _, s := range e.cfg.Sources {
		declared[s.Name] = true
	}
	e.wm = h.Watermark
	e.last = nil
	for _, ss := range h.Sources {
		s := e.byName[ss.Name]
		if s == nil {
			if len(declared) > 0 {
				// A source removed from the config: were it restored, it
				// would hold the watermark where it left it.
				dropped = append(dropped, Dropped{Source: ss.Name, Reason: droppedSource})
				continue
			}
			s = e.addSource(ss.Name, 0, e.started)
		}
		s.ooo = ss.OOO
		s.maxTS, s.has, s.idle = ss.MaxTS, ss.Has, ss.Idle
	}
	specs := map[string]string{}
	for _, oh := range h.Ops {
		specs[oh.Name] = oh.Spec
	}
	for _, op := range e.ops {
		op.reset()
		if spec, ok := specs[op.spec.Name]; ok {
			if spec == op.spec.fingerprint() {
				op.restoring = true
			} else {
				dropped = append(dropped, Dropped{Op: op.spec.Name, Reason: droppedShape})
			}
			delete(specs, op.spec.Name)
		}
	}
	for _, d := range e.dets {
		d.reset()
		if spec, ok := specs[d.stateName()]; ok {
			if spec == d.fingerprint() {
				d.restoring = true
			} else {
				dropped = append(dropped, Dropped{Op: d.stateName(), Reason: droppedShape})
			}
			delete(specs, d.stateName())
		}
	}
	for name := range specs {
		dropped = append(dropped, Dropped{Op: name, Reason: droppedGone})
	}
	slices.SortFunc(dropped, func(a, b Dropped) int {
		return cmp.Or(cmp.Compare(a.Op, b.Op), cmp.Compare(a.Source, b.Source))
	})
	return dropped, nil
}

// RestoreKey loads one key's encoded state into the named operator (a
// window's name, or "detector/<name>"), after BeginRestore. Keys of
// operators that are dropped or not configured are ignored. A key that
// cannot be decoded or restored resets its operator: it starts empty and
// ignores the rest of its stored keys; the error is a *StateError.
func (e *Engine) RestoreKey(op string, value []byte) error {
	for _, d := range e.dets {
		if d.stateName() != op {
			continue
		}
		if !d.restoring {
			return nil
		}
		var ks DetKeyState
		_, err := ks.UnmarshalMsg(value)
		if err == nil {
			err = d.restoreKey(&ks)
		}
		if err != nil {
			d.reset()
			return &StateError{Op: op, Key: ks.A, Err: err}
		}
		return nil
	}
	for _, w := range e.ops {
		if w.spec.Name != op {
			continue
		}
		if !w.restoring {
			return nil
		}
		var ks KeyState
		_, err := ks.UnmarshalMsg(value)
		if err == nil {
			err = w.restoreKey(&ks, e.wm)
		}
		if err != nil {
			w.reset()
			return &StateError{Op: op, Key: ks.A, Err: err}
		}
		return nil
	}
	return nil
}

// reset empties the detector's state; it restores nothing more until the
// next BeginRestore.
func (d *detectorOp) reset() {
	d.keys = map[kkey]*detKey{}
	d.heap = d.heap[:0]
	clear(d.dirty)
	d.dirty = d.dirty[:0]
	d.restoring = false
}

func (op *windowOp) reset() {
	for _, ks := range op.keys {
		for i := range ks.panes {
			ks.panes[i].agg.reset(&op.pool)
		}
		for i := range ks.sess {
			ks.sess[i].agg.reset(&op.pool)
		}
		if ks.sl != nil {
			ks.sl.release(&op.pool)
		}
	}
	op.keys = make(map[kkey]*keyState)
	op.heap = op.heap[:0]
	op.empties, op.held = 0, 0
	clear(op.dirty)
	op.dirty = op.dirty[:0]
	op.restoring = false
}

func (op *windowOp) restoreKey(s *KeyState, wm int64) error {
	k := kkey{s.A, s.B}
	ks := &keyState{key: op.render(k), k: k, timer: noTimer, hidx: -1}
	for i := range s.Panes {
		var p pane
		p.start = s.Panes[i].Start
		if err := p.agg.restore(&s.Panes[i].Agg, op.needs, &op.pool); err != nil {
			return err
		}
		ks.insertPane(len(ks.panes), p.start)
		ks.panes[len(ks.panes)-1] = p
	}
	for _, f := range s.Fired {
		ks.fired = append(ks.fired, firedWin{end: f.End, fires: f.Fires})
	}
	for i := range s.Sessions {
		x := &s.Sessions[i]
		ss := session{start: x.Start, end: x.End, fires: x.Fires, pending: x.Pending}
		if err := ss.agg.restore(&x.Agg, op.needs, &op.pool); err != nil {
			return err
		}
		ks.sess, ks.sbuf = insertAt(ks.sess, ks.sbuf, len(ks.sess), ss)
	}
	op.keys[k] = ks
	if wm != math.MinInt64 && op.prune(ks, wm) {
		op.touch(ks) // the next Delta stores what is left
	}
	if ks.empty() {
		op.empties++
		return nil
	}
	t := noTimer
	if op.G > 0 {
		t = op.nextSession(ks)
	} else {
		t = op.nextAligned(ks, wm)
	}
	if wm != math.MinInt64 && t <= wm {
		return fmt.Errorf("state holds an event at %d, before the watermark %d", t, wm)
	}
	op.heap.set(ks, t)
	return nil
}

// prune frees what a restored key holds past its allowed lateness at
// watermark wm: nothing when the config is the one the state was saved
// under, but the firings and panes (or fired sessions) of a window whose
// allowed_lateness was lowered since, which no reading can reach any more.
func (op *windowOp) prune(ks *keyState, wm int64) (changed bool) {
	n0 := len(ks.fired) + len(ks.panes) + len(ks.sess)
	n := 0
	for n < len(ks.fired) && ks.fired[n].end-1+op.lat <= wm {
		n++
	}
	ks.fired = ks.fired[n:]
	n = 0
	for n < len(ks.panes) && op.maxEnd(ks.panes[n].start)-1+op.lat <= wm {
		ks.panes[n].agg.reset(&op.pool)
		n++
	}
	ks.panes = ks.panes[n:]
	n = 0
	for n < len(ks.sess) && !ks.sess[n].pending && ks.sess[n].end-1+op.lat <= wm {
		ks.sess[n].agg.reset(&op.pool)
		n++
	}
	ks.sess = ks.sess[n:]
	return len(ks.fired)+len(ks.panes)+len(ks.sess) != n0
}

// ResetState empties every operator and forgets the watermarks, as New
// left them: for a restore that failed half way.
func (e *Engine) ResetState() {
	e.wm = MinWatermark
	e.last = nil
	for _, s := range e.sources {
		s.maxTS, s.has, s.idle = math.MinInt64, false, false
	}
	for _, op := range e.ops {
		op.reset()
	}
	for _, d := range e.dets {
		d.reset()
	}
}
