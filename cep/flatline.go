package cep

import (
	"errors"
	"fmt"
	"math"
	"time"
)

func init() { register("flatline", newFlatline) }

// flatline fires when a key's value has stayed within Tolerance (in the
// series' units, or relative to the run's first value: "0.1%") of the
// value that started the run for at least Duration of event time: a stuck
// sensor. A run starts at a reading more than Tolerance away from the
// run's first value (or at the key's first reading); the alert fires at
// the first reading of the run at or after start + Duration, and resolves
// at the first reading outside the tolerance, which starts the next run.
// Comparing with the run's first value, not the previous reading, means a
// slow drift in small steps is not "stuck".
//
// It is driven by readings only, not by the watermark: a stuck sensor
// keeps sending its value, and a sensor that sends nothing is deadman's
// job. Reason: "stuck at 21.5 (±0.01) for 10m0s".
type flatline struct {
	name  string
	dur   int64 // ms
	tol   Tolerance
	renot time.Duration
}

func newFlatline(s Spec) (Detector, error) {
	switch {
	case s.Duration <= 0:
		return nil, errors.New("flatline needs duration > 0 (how long a value must stay put)")
	case s.Renotify < 0:
		return nil, errors.New("flatline: renotify must not be negative")
	}
	if err := s.Tolerance.check("flatline"); err != nil {
		return nil, err
	}
	return &flatline{name: s.Name, dur: max(1, s.Duration.Milliseconds()), tol: s.Tolerance, renot: s.Renotify}, nil
}

func (f *flatline) Name() string { return f.name }

func (f *flatline) Fingerprint() string { return "flatline/1" }

func (f *flatline) NewState() State { return &flatlineState{d: f} }

type flatlineState struct {
	d *flatline
	Lifecycle
	have  bool    // a run is open
	start int64   // event time of the run's first reading
	ref   float64 // the run's first value
}

func (s *flatlineState) Observe(ev *Event, out *Emitter) {
	d, v := s.d, ev.Value
	if !finite(v) {
		return
	}
	if s.have && math.Abs(v-s.ref) <= d.tol.at(s.ref) {
		held := ev.TS - s.start
		holds := held >= d.dur
		if emits(&s.Lifecycle, holds, ev.TS, d.renot) {
			reason := fmt.Sprintf("stuck at %s (±%s) for %v", FormatValue(s.ref), d.tol.String(), msDuration(held))
			s.Set(holds, d.name, ev.Key, ev.TS, v, limitScore(float64(held)/float64(d.dur)), reason, d.renot, out)
		}
		return
	}
	if s.have && s.Firing {
		reason := fmt.Sprintf("value %s moved from %s (±%s) after %v", FormatValue(v), FormatValue(s.ref), d.tol.String(), msDuration(ev.TS-s.start))
		s.Set(false, d.name, ev.Key, ev.TS, v, 0, reason, d.renot, out)
	}
	s.have, s.start, s.ref = true, ev.TS, v
}

func (s *flatlineState) NextTimer() int64                { return NoTimer }
func (s *flatlineState) Advance(string, int64, *Emitter) {}

func (s *flatlineState) AppendState(b []byte) []byte {
	b = append(b, 1)
	b = appendLifecycle(b, &s.Lifecycle)
	b = appendBool(b, s.have)
	b = appendI64(b, s.start)
	return appendF64(b, s.ref)
}

func (s *flatlineState) RestoreState(b []byte) error {
	d := decoder{b: b}
	d.version(1)
	d.lifecycle(&s.Lifecycle)
	s.have = d.bool1()
	s.start = d.i64()
	s.ref = d.f64()
	return d.done()
}
