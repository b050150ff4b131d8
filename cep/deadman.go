package cep

import (
	"errors"
	"fmt"
	"time"
)

func init() { register("deadman", newDeadman) }

// deadman fires when a key has been silent for Duration of event time: no
// reading in (last, last + Duration]. Its timer is last + Duration; when
// the watermark reaches it (after the key's readings up to then were
// delivered), the alert fires with TS = last + Duration and the last
// value. The key's next reading resolves it, at that reading's event time.
// With Renotify, "firing" is sent again at every Renotify after that while
// the key stays silent, also through the timer. Reason: "no reading for
// 5m0s (last at 2023-11-14T22:13:20Z)". Score: 0.5 when it fires, more on
// each renotification as the silence grows (limitScore of silence /
// Duration); 0 when resolved.
//
// A key gets its state with its first reading, so a key that never sent
// anything cannot be missed by deadman. The timer is always due at the
// end of bounded input (a watermark of +infinity): every key would fire,
// and with Renotify the timer never runs out, so the pipeline should not
// run deadman timers at that watermark.
//
// The watermark only advances while some source delivers (idle sources
// leave the minimum, but if every source is idle it stands still), so a
// gateway whose whole input stopped raises no deadman alert in event time.
// For that case, with processing_time = true (Spec.ProcessingTime), the
// state also implements [ProcessingTimer]: AdvanceProcessing applies the
// same rule with processing time now in place of the watermark, comparing
// it with the last reading's event time (so it assumes the sensors' clocks
// roughly agree with the gateway's). Alerts it raises have the same
// identity (TS = last + Duration) as the event-time rule would give, so
// when the watermark later passes that time no second alert is raised.
//
// The pipeline calls AdvanceProcessing only on a processing-time tick
// taken from the ingest log (the daemon writes one while every source is
// idle and a key is due), never from the wall clock directly: a replay of
// the log meets the same ticks at the same places, so these alerts are part
// of the exactly-once output like any other. Before it, the pipeline hands
// the key the readings still waiting for the watermark (they are data: a
// key that sent them is not silent), so silence counts from the newest
// reading the key sent, released or not.
type deadman struct {
	name  string
	dur   int64 // ms
	renot time.Duration
	proc  bool // processing_time
}

// ProcessingTimer is implemented by states that can also be driven by
// processing time, for when the watermark stands still because the whole
// input stopped.
type ProcessingTimer interface {
	// AdvanceProcessing tells the state the processing time is now (Unix
	// ms). It emits what Advance(key, now, out) would.
	AdvanceProcessing(key string, now int64, out *Emitter)
}

func newDeadman(s Spec) (Detector, error) {
	if s.Duration <= 0 {
		return nil, errors.New("deadman needs duration > 0 (how long a key may stay silent)")
	}
	if s.Renotify < 0 {
		return nil, errors.New("deadman: renotify must not be negative")
	}
	return &deadman{name: s.Name, dur: max(1, s.Duration.Milliseconds()), renot: s.Renotify, proc: s.ProcessingTime}, nil
}

// ProcessingTime reports whether the detector was configured with
// processing_time = true.
func (m *deadman) ProcessingTime() bool { return m.proc }

func (m *deadman) Name() string { return m.name }

func (m *deadman) Fingerprint() string { return "deadman/1" }

func (m *deadman) NewState() State { return &deadmanState{d: m} }

type deadmanState struct {
	d *deadman
	Lifecycle
	have bool    // a reading was seen
	last int64   // the latest reading's event time
	v    float64 // and value
}

func (s *deadmanState) Observe(ev *Event, out *Emitter) {
	d := s.d
	if s.have && ev.TS < s.last {
		return // out of order: the pipeline sorts, so this cannot happen
	}
	if s.Firing {
		reason := fmt.Sprintf("reading again after %v of silence (last at %s)", msDuration(ev.TS-s.last), formatTS(s.last))
		s.Set(false, d.name, ev.Key, ev.TS, ev.Value, 0, reason, d.renot, out)
	}
	s.have, s.last, s.v = true, ev.TS, ev.Value
}

// NextTimer is last + Duration while the key is heard from, the next
// renotification while it is silent and Renotify is set, else NoTimer.
func (s *deadmanState) NextTimer() int64 {
	switch {
	case !s.have:
		return NoTimer
	case !s.Firing:
		return s.last + s.d.dur
	case s.d.renot > 0:
		return s.LastNotify + s.d.renot.Milliseconds()
	}
	return NoTimer
}

// Advance fires when wm reached last + Duration, and renotifies at the
// latest multiple of Renotify after the last notification that wm
// reached. Alert times are timer times, not wm, so that they do not depend
// on how the watermark moved.
func (s *deadmanState) Advance(key string, wm int64, out *Emitter) {
	d := s.d
	if !s.have {
		return
	}
	if !s.Firing && wm >= s.last+d.dur {
		s.Set(true, d.name, key, s.last+d.dur, s.v, limitScore(1), s.reason(s.last+d.dur), d.renot, out)
	}
	if r := d.renot.Milliseconds(); s.Firing && r > 0 && wm >= s.LastNotify+r {
		ts := s.LastNotify + (wm-s.LastNotify)/r*r
		s.Set(true, d.name, key, ts, s.v, limitScore(float64(ts-s.last)/float64(d.dur)), s.reason(ts), d.renot, out)
	}
}

// AdvanceProcessing applies Advance's rule with processing time now in
// place of the watermark (see deadman).
func (s *deadmanState) AdvanceProcessing(key string, now int64, out *Emitter) {
	s.Advance(key, now, out)
}

func (s *deadmanState) reason(ts int64) string {
	return fmt.Sprintf("no reading for %v (last at %s)", msDuration(ts-s.last), formatTS(s.last))
}

func (s *deadmanState) AppendState(b []byte) []byte {
	b = append(b, 1)
	b = appendLifecycle(b, &s.Lifecycle)
	b = appendBool(b, s.have)
	b = appendI64(b, s.last)
	return appendF64(b, s.v)
}

func (s *deadmanState) RestoreState(b []byte) error {
	d := decoder{b: b}
	d.version(1)
	d.lifecycle(&s.Lifecycle)
	s.have = d.bool1()
	s.last = d.i64()
	s.v = d.f64()
	return d.done()
}
