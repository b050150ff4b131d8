package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// StateVersion is the version of the State layout. Restore refuses others.
const StateVersion = 1

// State is a snapshot of the engine: plain data, no pointers into the live
// engine, so that the store can encode it and a new engine can restore it.
// Keys are sorted, so two snapshots of equal state are equal.
type State struct {
	Version   int
	Watermark int64
	Sources   []SourceState
	Windows   []WindowState
}

// SourceState is one source's watermark state. Idleness is not kept: after
// a restore every source is active again and must deliver or time out anew.
type SourceState struct {
	Name  string
	OOO   int64
	MaxTS int64
	Has   bool
}

// WindowState is the state of one window operator.
type WindowState struct {
	Name string
	// Spec is the shape the state was built under; a window whose shape
	// changed starts empty.
	Spec string
	Keys []KeyState
}

// KeyState is the state of one key of one window.
type KeyState struct {
	A, B     string // the key's parts (sensor and metric, ...)
	Panes    []PaneState
	Fired    []FiredState
	Sessions []SessionState
}

// PaneState is one pane of an aligned window.
type PaneState struct {
	Start int64
	Agg   AggState
}

// FiredState counts the firings of an aligned window still within allowed
// lateness.
type FiredState struct {
	End   int64
	Fires int32
}

// SessionState is one session window.
type SessionState struct {
	Start, End int64
	Fires      int32
	Pending    bool
	Agg        AggState
}

// AggState is the running aggregate of a pane or session. Sketch holds the
// percentile sketch in its binary encoding, or nil.
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
	if s.Sketch != nil {
		x.sk = pool.getSketch()
		if err := x.sk.UnmarshalBinary(s.Sketch); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot returns the engine's whole state.
func (e *Engine) Snapshot() *State {
	st := &State{Version: StateVersion, Watermark: e.wm}
	for _, s := range e.sources {
		st.Sources = append(st.Sources, SourceState{Name: s.name, OOO: s.ooo, MaxTS: s.maxTS, Has: s.has})
	}
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
	return st
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

// Restore replaces the engine's state with st. Windows are matched by name;
// a window whose shape (type, sizes, key, aggregate needs) changed since the
// snapshot starts empty, and its name is returned in dropped so the caller
// can say so. Sources in st that the config no longer declares are kept, as
// undeclared sources are.
func (e *Engine) Restore(st *State) (dropped []string, err error) {
	if st.Version != StateVersion {
		return nil, fmt.Errorf("restore: state version %d, want %d", st.Version, StateVersion)
	}
	now := e.started
	e.wm = st.Watermark
	e.last = nil
	for _, ss := range st.Sources {
		s := e.byName[ss.Name]
		if s == nil {
			s = e.addSource(ss.Name, 0, now)
			s.ooo = ss.OOO
		}
		s.maxTS, s.has = ss.MaxTS, ss.Has
		s.idle = false
		s.lastActive = now
	}
	byName := map[string]*WindowState{}
	for i := range st.Windows {
		byName[st.Windows[i].Name] = &st.Windows[i]
	}
	var errs []error
	for _, op := range e.ops {
		op.reset()
		ws := byName[op.spec.Name]
		if ws == nil {
			continue
		}
		if ws.Spec != op.spec.fingerprint() {
			dropped = append(dropped, op.spec.Name)
			continue
		}
		for i := range ws.Keys {
			if err := op.restoreKey(&ws.Keys[i], e.wm); err != nil {
				errs = append(errs, fmt.Errorf("window %q key %q: %w", op.spec.Name, ws.Keys[i].A, err))
			}
		}
	}
	return dropped, errors.Join(errs...)
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
	op.empties = 0
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
