package cep

import (
	"errors"
	"fmt"
	"math"
	"time"
)

func init() { register("rate", newRate) }

// rate fires while the change between consecutive readings of a key, per
// second of event time, is larger than MaxRate: |Δvalue / Δt| > MaxRate.
// Readings with the same timestamp as the previous one give no rate (no
// division by zero); the later one becomes the reference for the next.
// The score is limitScore(|rate| / MaxRate): 0.5 at MaxRate; MinScore,
// when set, is the smallest score that fires. Once firing, the alert
// resolves after ResolveCount (default 10) rates in a row within MaxRate,
// so a spike up and back down, or a series jumping about, is one alert.
// Reason: "changed 12.5 in 0.5s = 25/s, max 10/s".
type rate struct {
	name     string
	max      float64
	minScore float64
	resolve  int64
	renot    time.Duration
}

func newRate(s Spec) (Detector, error) {
	if !(s.MaxRate > 0) || math.IsInf(s.MaxRate, 0) {
		return nil, errors.New("rate needs max_rate > 0 (the largest normal change per second)")
	}
	if s.Renotify < 0 {
		return nil, errors.New("rate: renotify must not be negative")
	}
	if s.ResolveCount < 0 {
		return nil, errors.New("rate: resolve_count must not be negative")
	}
	if err := checkMinScore("rate", s.MinScore); err != nil {
		return nil, err
	}
	return &rate{name: s.Name, max: s.MaxRate, minScore: s.MinScore, resolve: resolveCount(s.ResolveCount), renot: s.Renotify}, nil
}

func (r *rate) Name() string { return r.name }

func (r *rate) Fingerprint() string { return "rate/1" }

func (r *rate) NewState() State { return &rateState{d: r} }

type rateState struct {
	d *rate
	Lifecycle
	calm int64   // rates in a row within MaxRate while firing
	have bool    // a previous reading exists
	ts   int64   // the previous reading's event time
	v    float64 // and value
}

func (s *rateState) Observe(ev *Event, out *Emitter) {
	d, v := s.d, ev.Value
	if !finite(v) {
		return
	}
	if dt := ev.TS - s.ts; s.have && dt > 0 {
		change := v - s.v
		sec := float64(dt) / 1000
		r := change / sec
		score := limitScore(math.Abs(r) / d.max)
		holds := debounce(&s.Lifecycle, &s.calm, math.Abs(r) > d.max && score >= d.minScore, d.resolve)
		if emits(&s.Lifecycle, holds, ev.TS, d.renot) {
			word := "max"
			if !holds {
				word = "within"
			}
			reason := fmt.Sprintf("changed %s in %ss = %s/s, %s %s/s", FormatValue(change), FormatValue(sec), FormatValue(r), word, FormatValue(d.max))
			if !holds && d.resolve > 1 {
				reason = fmt.Sprintf("back within bounds for %d readings: %s", d.resolve, reason)
			}
			s.Set(holds, d.name, ev.Key, ev.TS, v, score, reason, d.renot, out)
		}
	}
	s.have, s.ts, s.v = true, ev.TS, v
}

func (s *rateState) NextTimer() int64                { return NoTimer }
func (s *rateState) Advance(string, int64, *Emitter) {}

// rate states are encoded as version 2: version 1 (before the calm
// count) is still restored.
func (s *rateState) AppendState(b []byte) []byte {
	b = append(b, 2)
	b = appendLifecycle(b, &s.Lifecycle)
	b = appendI64(b, s.calm)
	b = appendBool(b, s.have)
	b = appendI64(b, s.ts)
	return appendF64(b, s.v)
}

func (s *rateState) RestoreState(b []byte) error {
	d := decoder{b: b}
	v := d.versions(1, 2)
	d.lifecycle(&s.Lifecycle)
	s.calm = 0
	if v >= 2 {
		s.calm = d.i64()
	}
	s.have = d.bool1()
	s.ts = d.i64()
	s.v = d.f64()
	return d.done()
}
