package cep

import (
	"errors"
	"math"
	"time"
)

func init() { register("range", newValueRange) }

// valueRange fires while a value is physically impossible: below Min or
// above Max (either may be left out, not both), e.g. a temperature of
// -273.2 or 3000. Unlike threshold it has no hysteresis or count: a value
// is valid or not. It resolves at the first valid value. Reason: "value
// -273.2 outside the possible range [-60, 150]"; with one bound the range
// is written "[-60, +inf)" or "(-inf, 150]".
type valueRange struct {
	name     string
	min, max *float64
	renot    time.Duration
	bounds   string // the range as written in reasons
}

func newValueRange(s Spec) (Detector, error) {
	switch {
	case s.Min == nil && s.Max == nil:
		return nil, errors.New("range needs min or max (the physically possible values)")
	case s.Min != nil && !finite(*s.Min):
		return nil, errors.New("range: min must be a finite number")
	case s.Max != nil && !finite(*s.Max):
		return nil, errors.New("range: max must be a finite number")
	case s.Min != nil && s.Max != nil && *s.Min > *s.Max:
		return nil, errors.New("range: min must not be above max")
	case s.Renotify < 0:
		return nil, errors.New("range: renotify must not be negative")
	}
	lo, hi := "(-inf", "+inf)"
	if s.Min != nil {
		lo = "[" + FormatValue(*s.Min)
	}
	if s.Max != nil {
		hi = FormatValue(*s.Max) + "]"
	}
	return &valueRange{name: s.Name, min: s.Min, max: s.Max, renot: s.Renotify, bounds: lo + ", " + hi}, nil
}

func (r *valueRange) Name() string { return r.name }

func (r *valueRange) Fingerprint() string { return "range/1" }

func (r *valueRange) NewState() State { return &rangeState{d: r} }

type rangeState struct {
	d *valueRange
	Lifecycle
}

// outside reports whether v is impossible; NaN always is.
func (r *valueRange) outside(v float64) bool {
	if math.IsNaN(v) {
		return true
	}
	return (r.min != nil && v < *r.min) || (r.max != nil && v > *r.max)
}

func (s *rangeState) Observe(ev *Event, out *Emitter) {
	d := s.d
	holds := d.outside(ev.Value)
	if emits(&s.Lifecycle, holds, ev.TS, d.renot) {
		reason := "value " + FormatValue(ev.Value) + " back inside the possible range " + d.bounds
		if holds {
			reason = "value " + FormatValue(ev.Value) + " outside the possible range " + d.bounds
		}
		score := 0.0
		if holds {
			score = 1
		}
		s.Set(holds, d.name, ev.Key, ev.TS, ev.Value, score, reason, d.renot, out)
	}
}

func (s *rangeState) NextTimer() int64                { return NoTimer }
func (s *rangeState) Advance(string, int64, *Emitter) {}

func (s *rangeState) AppendState(b []byte) []byte {
	b = append(b, 1)
	return appendLifecycle(b, &s.Lifecycle)
}

func (s *rangeState) RestoreState(b []byte) error {
	d := decoder{b: b}
	d.version(1)
	d.lifecycle(&s.Lifecycle)
	return d.done()
}
