package cep

import (
	"errors"
	"fmt"
	"time"
)

func init() { register("threshold", newThreshold) }

// threshold fires while a value is above Above (or below Below). It fires
// after ForCount readings in a row beyond the limit, or once the condition
// held for ForDuration of event time (at the first reading after that), and
// resolves only when the value is back inside the limit by Hysteresis, so a
// value wobbling around the limit does not flap.
type threshold struct {
	name  string
	above *float64
	below *float64
	hyst  float64
	count int
	dur   time.Duration
	renot time.Duration
}

func newThreshold(s Spec) (Detector, error) {
	if s.Above == nil && s.Below == nil {
		return nil, errors.New("threshold needs above or below")
	}
	if s.Hysteresis < 0 {
		return nil, errors.New("hysteresis must not be negative")
	}
	return &threshold{name: s.Name, above: s.Above, below: s.Below, hyst: s.Hysteresis, count: max(1, s.ForCount), dur: s.ForDuration, renot: s.Renotify}, nil
}

func (t *threshold) Name() string { return t.name }

func (t *threshold) Fingerprint() string { return "threshold/1" }

func (t *threshold) NewState() State { return &thresholdState{d: t, since: NoTimer} }

type thresholdState struct {
	d *threshold
	Lifecycle
	run   int   // readings in a row beyond the limit
	since int64 // event time the current run started, NoTimer if none
}

// beyond reports whether v is beyond a limit; inside says whether it is
// back inside by the hysteresis.
func (t *threshold) beyond(v float64) bool {
	return t.above != nil && v > *t.above || t.below != nil && v < *t.below
}

// why explains a value beyond a limit.
func (t *threshold) why(v float64) string {
	if t.above != nil && v > *t.above {
		return fmt.Sprintf("value %s > %s", FormatValue(v), FormatValue(*t.above))
	}
	return fmt.Sprintf("value %s < %s", FormatValue(v), FormatValue(*t.below))
}

func (t *threshold) inside(v float64) bool {
	if t.above != nil && v > *t.above-t.hyst {
		return false
	}
	if t.below != nil && v < *t.below+t.hyst {
		return false
	}
	return true
}

func (s *thresholdState) Observe(ev *Event, out *Emitter) {
	d := s.d
	if d.beyond(ev.Value) {
		if s.run == 0 {
			s.since = ev.TS
		}
		s.run++
		if s.run >= d.count && (d.dur == 0 || ev.TS-s.since >= d.dur.Milliseconds()) && emits(&s.Lifecycle, true, ev.TS, d.renot) {
			// The reason is built only when an alert goes out: ordinary
			// readings cost no allocation.
			reason := d.why(ev.Value)
			if d.count > 1 {
				reason += fmt.Sprintf(" for %d readings", s.run)
			}
			if d.dur > 0 {
				reason += fmt.Sprintf(" for %v", time.Duration(ev.TS-s.since)*time.Millisecond)
			}
			s.Set(true, d.name, ev.Key, ev.TS, ev.Value, reason, d.renot, out)
		}
		return
	}
	if s.Firing && !d.inside(ev.Value) {
		return // inside the limit but not by the hysteresis: still firing
	}
	s.run, s.since = 0, NoTimer
	if s.Firing {
		s.Set(false, d.name, ev.Key, ev.TS, ev.Value, fmt.Sprintf("value %s back within the limit", FormatValue(ev.Value)), d.renot, out)
	}
}

func (s *thresholdState) NextTimer() int64                { return NoTimer }
func (s *thresholdState) Advance(string, int64, *Emitter) {}

func (s *thresholdState) AppendState(b []byte) []byte {
	b = append(b, 1)
	b = appendLifecycle(b, &s.Lifecycle)
	b = appendI64(b, int64(s.run))
	return appendI64(b, s.since)
}

func (s *thresholdState) RestoreState(b []byte) error {
	d := decoder{b: b}
	d.version(1)
	d.lifecycle(&s.Lifecycle)
	s.run = int(d.i64())
	s.since = d.i64()
	return d.done()
}
