package cep

import (
	"errors"
	"fmt"
	"math"
	"time"
)

func init() { register("zscore", newZScore) }

// zscore fires while a value is more than Sigma (default 4) standard
// deviations from the mean of its key's baseline: |v - mean| > Sigma *
// stddev. The baseline is either the readings of the last Window of event
// time (a rolling window, exact mean and population stddev, at most
// maxWindowReadings readings) or, with Alpha, an exponentially weighted
// mean and variance.
//
// A reading is judged against the baseline before it joins it, so an
// outlier does not pollute its own test; then it joins the baseline, firing
// or not. A lasting level shift therefore becomes the new normal within
// about a window (or 1/Alpha readings) and the alert resolves; a robust
// baseline that ignores outliers is mad's job.
//
// The first Warmup readings of a key only build the baseline; the baseline
// needs at least 2 readings to judge. The EWMA uses the weight
// max(Alpha, 1/n) for its n-th reading, which makes its first 1/Alpha
// readings the plain mean and variance instead of a value biased towards
// the first reading.
//
// The stddev has a floor learned from the series (spreadFloor): its
// quantization step (the smallest change seen between two readings) and
// 0.1% of its level. A baseline without spread, or with less than the
// floor (a value that stayed put, a coarsely quantized sensor), is
// judged against the floor: a change away from a long constant value is a
// level change with a finite deviation and score, not an infinite number
// of sigmas. Tolerance, when set, is the smallest deviation that may fire,
// in the series' units or relative to the mean ("2%").
//
// The alert's score is scoreOf(|v - mean| / stddev); MinScore, when set,
// is the smallest score that fires. Once firing, the alert resolves after
// ResolveCount (default 10) readings in a row back within the limit, so a
// burst of outliers is one alert. Reason: "value 31.2 is 5.1 sigma from
// the mean 20.3 (sigma 2.1 over the last 1h0m0s, 120 readings; 4 sigma
// allowed)".
type zscore struct {
	name     string
	sigma    float64
	window   int64 // ms; 0 with alpha
	alpha    float64
	warmup   int64
	tol      Tolerance
	minScore float64
	resolve  int64
	renot    time.Duration
}

// defaultSigma is zscore's Sigma when none is configured.
const defaultSigma = 4

func newZScore(s Spec) (Detector, error) {
	switch {
	case s.Sigma < 0 || math.IsNaN(s.Sigma) || math.IsInf(s.Sigma, 0):
		return nil, errors.New("zscore needs sigma > 0 (or none for the default 4)")
	case s.Window != 0 && s.Alpha != 0:
		return nil, errors.New("zscore: set window or alpha, not both")
	case s.Window == 0 && s.Alpha == 0:
		return nil, errors.New("zscore needs a baseline: window (rolling, in event time) or alpha (EWMA)")
	case s.Window < 0:
		return nil, errors.New("zscore: window must be positive")
	case s.Window != 0 && s.Window < time.Millisecond:
		return nil, errors.New("zscore: window must be at least 1ms")
	case s.Alpha != 0 && !(s.Alpha > 0 && s.Alpha < 1):
		return nil, errors.New("zscore: alpha must be between 0 and 1 (exclusive)")
	case s.Warmup < 0:
		return nil, errors.New("zscore: warmup must not be negative")
	case s.Renotify < 0:
		return nil, errors.New("zscore: renotify must not be negative")
	case s.ResolveCount < 0:
		return nil, errors.New("zscore: resolve_count must not be negative")
	}
	if err := s.Tolerance.check("zscore"); err != nil {
		return nil, err
	}
	if err := checkMinScore("zscore", s.MinScore); err != nil {
		return nil, err
	}
	sigma := s.Sigma
	if sigma == 0 {
		sigma = defaultSigma
	}
	return &zscore{name: s.Name, sigma: sigma, window: s.Window.Milliseconds(), alpha: s.Alpha, warmup: int64(s.Warmup),
		tol: s.Tolerance, minScore: s.MinScore, resolve: resolveCount(s.ResolveCount), renot: s.Renotify}, nil
}

func (z *zscore) Name() string { return z.name }

// Fingerprint tells the two baselines apart: their states differ.
func (z *zscore) Fingerprint() string {
	if z.window == 0 {
		return "zscore/1/ewma"
	}
	return "zscore/1"
}

func (z *zscore) NewState() State { return &zscoreState{d: z} }

// zscore state modes, the first byte after the version.
const (
	zscoreWindow byte = 'w'
	zscoreEWMA   byte = 'e'
)

func (z *zscore) mode() byte {
	if z.window == 0 {
		return zscoreEWMA
	}
	return zscoreWindow
}

type zscoreState struct {
	d *zscore
	Lifecycle
	calm int64       // readings in a row back within bounds while firing
	step stepTracker // the series' quantization step
	seen int64       // readings of the key so far
	mean float64     // of the baseline
	// m2 is, with a window, the sum of squared deviations from mean
	// (Welford); with alpha, the EWMA variance.
	m2 float64
	// removed counts readings removed from the window since mean and m2
	// were last recomputed from its readings.
	removed int64
	win     sampleRing // the window's readings; empty with alpha
}

func (s *zscoreState) Observe(ev *Event, out *Emitter) {
	d, v := s.d, ev.Value
	if !finite(v) {
		return
	}
	if d.window > 0 {
		s.evict(ev.TS - d.window)
	}
	if n := s.count(); s.seen >= d.warmup && n >= 2 {
		sd := s.stddev()
		floor := spreadFloor(s.mean, s.step.step)
		dev := math.Abs(v - s.mean)
		z := dev / max(sd, floor)
		score := scoreOf(z)
		cond := z > d.sigma && dev > d.tol.at(s.mean) && score >= d.minScore
		holds := debounce(&s.Lifecycle, &s.calm, cond, d.resolve)
		if emits(&s.Lifecycle, holds, ev.TS, d.renot) {
			s.Set(holds, d.name, ev.Key, ev.TS, v, score, d.reason(holds, v, s.mean, sd, floor, n), d.renot, out)
		}
	}
	s.step.add(v)
	s.seen++
	if d.window > 0 {
		s.add(ev.TS, v)
	} else {
		s.ewma(v)
	}
}

// count is the number of readings in the baseline.
func (s *zscoreState) count() int64 {
	if s.d.window > 0 {
		return int64(s.win.n)
	}
	return s.seen
}

func (s *zscoreState) stddev() float64 {
	if s.d.window > 0 {
		return math.Sqrt(max(0, s.m2/float64(s.win.n)))
	}
	return math.Sqrt(max(0, s.m2))
}

// ewma folds v (the seen-th reading) into the EWMA mean and variance.
func (s *zscoreState) ewma(v float64) {
	w := max(s.d.alpha, 1/float64(s.seen))
	diff := v - s.mean
	incr := w * diff
	s.mean += incr
	s.m2 = (1 - w) * (s.m2 + diff*incr)
}

// evict removes the readings at or before cut from the window.
func (s *zscoreState) evict(cut int64) {
	lost := false
	for s.win.n > 0 && s.win.oldest().ts <= cut {
		lost = s.remove(s.win.pop().v) || lost
	}
	if lost || (s.removed > 0 && s.removed >= int64(s.win.n)) {
		s.recompute()
	}
}

func (s *zscoreState) add(ts int64, v float64) {
	lost := false
	if s.win.n >= maxWindowReadings {
		lost = s.remove(s.win.pop().v)
	}
	s.win.push(sample{ts: ts, v: v})
	if lost || s.win.n == 1 {
		s.recompute()
		return
	}
	diff := v - s.mean
	s.mean += diff / float64(s.win.n)
	s.m2 += diff * (v - s.mean)
}

// remove takes v, already popped from the ring, out of mean and m2 (the
// reverse of Welford's update). It reports whether that cost too much
// precision: when a reading far out (a spike) leaves, m2 drops by orders
// of magnitude and the rest is mostly rounding error, so the caller
// recomputes.
func (s *zscoreState) remove(v float64) (lost bool) {
	s.removed++
	if s.win.n == 0 {
		s.mean, s.m2 = 0, 0
		return false
	}
	diff := v - s.mean
	s.mean -= diff / float64(s.win.n)
	term := diff * (v - s.mean)
	s.m2 -= term
	return s.m2 < term*1e-6
}

// recompute sets mean and m2 exactly from the window's readings. It runs
// after as many removals as the window holds (amortized O(1) a reading),
// which bounds the rounding error of the running update, and when a
// removal lost precision.
func (s *zscoreState) recompute() {
	s.removed = 0
	n := s.win.n
	if n == 0 {
		s.mean, s.m2 = 0, 0
		return
	}
	var sum float64
	for i := 0; i < n; i++ {
		sum += s.win.at(i).v
	}
	mean := sum / float64(n)
	var m2 float64
	for i := 0; i < n; i++ {
		x := s.win.at(i).v - mean
		m2 += x * x
	}
	s.mean, s.m2 = mean, m2
}

func (z *zscore) reason(firing bool, v, mean, sd, floor float64, n int64) string {
	var base string
	if z.window > 0 {
		base = fmt.Sprintf("over the last %v, %d readings", msDuration(z.window), n)
	} else {
		base = fmt.Sprintf("by EWMA with alpha %s over %d readings", FormatValue(z.alpha), n)
	}
	allowed := FormatValue(z.sigma) + " sigma allowed"
	if z.tol.Value > 0 {
		allowed += ", at least " + z.tol.String()
	}
	if z.minScore > 0 {
		allowed += ", score " + FormatValue(z.minScore)
	}
	var back string
	if !firing && z.resolve > 1 {
		back = fmt.Sprintf("back within bounds for %d readings: ", z.resolve)
	}
	if sd == 0 {
		return fmt.Sprintf("%slevel change: value %s is %s from the mean %s of a constant baseline (%s; the spread floor %s; %s)",
			back, FormatValue(v), FormatValue(math.Abs(v-mean)), FormatValue(mean), base, FormatValue(floor), allowed)
	}
	sigma := "sigma " + FormatValue(sd)
	if sd < floor {
		sigma = fmt.Sprintf("sigma %s, the spread floor (stddev %s)", FormatValue(floor), FormatValue(sd))
		sd = floor
	}
	return fmt.Sprintf("%svalue %s is %.3g sigma from the mean %s (%s %s; %s)",
		back, FormatValue(v), math.Abs(v-mean)/sd, FormatValue(mean), sigma, base, allowed)
}

func (s *zscoreState) NextTimer() int64                { return NoTimer }
func (s *zscoreState) Advance(string, int64, *Emitter) {}

// zscore states are encoded as version 2: version 1 (before the calm
// count and the step) is still restored, with both starting afresh.
func (s *zscoreState) AppendState(b []byte) []byte {
	b = append(b, 2, s.d.mode())
	b = appendLifecycle(b, &s.Lifecycle)
	b = appendI64(b, s.calm)
	b = appendStep(b, &s.step)
	b = appendI64(b, s.seen)
	b = appendF64(b, s.mean)
	b = appendF64(b, s.m2)
	b = appendI64(b, s.removed)
	return appendSamples(b, &s.win)
}

func (s *zscoreState) RestoreState(b []byte) error {
	d := decoder{b: b}
	v := d.versions(1, 2)
	if d.byte1() != s.d.mode() && d.err == nil {
		d.err = errState
	}
	d.lifecycle(&s.Lifecycle)
	s.calm, s.step = 0, stepTracker{}
	if v >= 2 {
		s.calm = d.i64()
		d.stepTracker(&s.step)
	}
	s.seen = d.i64()
	s.mean = d.f64()
	s.m2 = d.f64()
	s.removed = d.i64()
	d.samples(&s.win)
	if s.d.window == 0 && s.win.n != 0 && d.err == nil {
		d.err = errState
	}
	return d.done()
}
