package cep

import (
	"errors"
	"fmt"
	"math"
	"time"
)

func init() { register("threshold", newThreshold) }

// threshold fires while a value is above Above (or below Below). It fires
// after ForCount readings in a row beyond the limit, or once the condition
// held for ForDuration of event time (at the first reading after that), and
// resolves only when the value is back inside the limit by Hysteresis, so a
// value wobbling around the limit does not flap.
//
// Score: limitScore(1 + excess/unit), where excess is how far the value is
// beyond the limit (negative inside it) and unit is Hysteresis, or 10% of
// |limit| without one (1 for a limit of 0): 0.5 at the limit, 0.94 one
// unit beyond. MinScore, when set, is the smallest score that counts as
// beyond the limit.
type threshold struct {
	name     string
	above    *float64
	below    *float64
	hyst     float64
	count    int
	dur      time.Duration
	minScore float64
	renot    time.Duration
}

func newThreshold(s Spec) (Detector, error) {
	if s.Above == nil && s.Below == nil {
		return nil, errors.New("threshold needs above or below")
	}
	if s.Hysteresis < 0 {
		return nil, errors.New("hysteresis must not be negative")
	}
	if err := checkMinScore("threshold", s.MinScore); err != nil {
		return nil, err
	}
	return &threshold{name: s.Name, above: s.Above, below: s.Below, hyst: s.Hysteresis, count: max(1, s.ForCount), dur: s.ForDuration,
		minScore: s.MinScore, renot: s.Renotify}, nil
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

// beyond reports whether v is beyond a limit (with a score of at least
// MinScore); inside says whether it is back inside by the hysteresis.
func (t *threshold) beyond(v float64) bool {
	return (t.above != nil && v > *t.above || t.below != nil && v < *t.below) && t.score(v) >= t.minScore
}

// score grades v against the nearer limit (see threshold).
func (t *threshold) score(v float64) float64 {
	excess := math.Inf(-1)
	unit := func(limit float64) float64 {
		switch {
		case t.hyst > 0:
			return t.hyst
		case limit != 0:
			return 0.1 * math.Abs(limit)
		}
		return 1
	}
	if t.above != nil {
		excess = (v - *t.above) / unit(*t.above)
	}
	if t.below != nil {
		excess = max(excess, (*t.below-v)/unit(*t.below))
	}
	return limitScore(max(0, 1+excess))
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
			s.Set(true, d.name, ev.Key, ev.TS, ev.Value, d.score(ev.Value), reason, d.renot, out)
		}
		return
	}
	if s.Firing && !d.inside(ev.Value) {
		return // inside the limit but not by the hysteresis: still firing
	}
	s.run, s.since = 0, NoTimer
	if s.Firing {
		s.Set(false, d.name, ev.Key, ev.TS, ev.Value, d.score(ev.Value), fmt.Sprintf("value %s back within the limit", FormatValue(ev.Value)), d.renot, out)
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
