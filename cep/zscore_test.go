package cep

import (
	"math"
	"testing"
	"time"
)

func TestZScoreWindow(t *testing.T) {
	s := Spec{Type: "zscore", Sigma: 3, Window: 10 * time.Second, ResolveCount: 1}
	// 10, 12, ... has mean 11 and stddev 1: 15 is 4 sigma out and fires;
	// it joins the baseline (mean 11.44, sigma 1.57), and 14 is back
	// within.
	base := readings(sec(0), 1000, 10, 12, 10, 12, 10, 12, 10, 12)
	checkSeries(t, s, series(base, readings(sec(8), 1000, 15, 14)),
		firingAt(sec(8), 15, "value 15 is 4 sigma from the mean 11 (sigma 1 over the last 10s, 8 readings; 3 sigma allowed)"),
		resolvedAt(sec(9), 14, "value 14 is 1.63 sigma from the mean 11.4444 (sigma 1.57"))

	// The window is event time: after 10 s of silence the baseline is
	// empty, and 2 readings are needed before it judges again.
	checkSeries(t, s, series(base, readings(sec(30), 1000, 50, 60, 10, 11)),
		firingAt(sec(32), 10, "value 10 is 9 sigma from the mean 55 (sigma 5 over the last 10s, 2 readings"),
		resolvedAt(sec(33), 11, "value 11 is 1.34 sigma from the mean 40 (sigma 21.6025 over the last 10s, 3 readings"))

	// A reading exactly Window old has left the window: at 10 s the
	// baseline is the readings at 1..9 s, without the 100 at 0 s.
	checkSeries(t, s, readings(sec(0), 1000, 100, 10, 12, 10, 12, 10, 12, 10, 12, 10, 14),
		firingAt(sec(10), 14, "value 14 is 3.11 sigma from the mean 10.8889 (sigma 1, the spread floor (stddev 0.993808) over the last 10s, 9 readings"))
}

func TestZScoreWarmup(t *testing.T) {
	steps := readings(sec(0), 1000, 10, 12, 40)
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, Warmup: 2, ResolveCount: 1}, steps,
		firingAt(sec(2), 40, "value 40 is 29 sigma from the mean 11"))
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, Warmup: 3, ResolveCount: 1}, steps)
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Alpha: 0.1, Warmup: 2, ResolveCount: 1}, steps,
		firingAt(sec(2), 40, "value 40 is 29 sigma from the mean 11 (sigma 1 by EWMA with alpha 0.1 over 2 readings"))
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Alpha: 0.1, Warmup: 3, ResolveCount: 1}, steps)
	// Without a warm-up the baseline still needs 2 readings.
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, ResolveCount: 1}, readings(sec(0), 1000, 10, 40))
}

func TestZScoreEWMA(t *testing.T) {
	s := Spec{Type: "zscore", Sigma: 3, Alpha: 0.1, ResolveCount: 1}
	// The first 1/alpha readings weigh 1/n: the plain mean 11 and sigma 1.
	// After 15 (weight 0.1): mean 11.4, variance 0.9*(1+4*0.4) = 2.34.
	base := readings(sec(0), 1000, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12)
	checkSeries(t, s, series(base, readings(sec(10), 1000, 15, 11)),
		firingAt(sec(10), 15, "value 15 is 4 sigma from the mean 11 (sigma 1"),
		resolvedAt(sec(11), 11, "value 11 is 0.261 sigma from the mean 11.4 (sigma 1.52971 by EWMA with alpha 0.1 over 11 readings"))
}

// A lasting shift joins the baseline until it is normal; with Renotify the
// alert repeats while it holds.
func TestZScoreShiftRenotify(t *testing.T) {
	base := readings(sec(0), 1000, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12)
	steps := series(base, readings(sec(20), 1000, 1000, 1000, 1000, 1000))
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, ResolveCount: 1}, steps,
		firingAt(sec(20), 1000, "value 1000 is 989 sigma"),
		resolvedAt(sec(23), 1000, "2.58 sigma"))
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, Renotify: 2 * time.Second, ResolveCount: 1}, steps,
		firingAt(sec(20), 1000, "value 1000 is 989 sigma"),
		firingAt(sec(22), 1000, "value 1000 is 3.16 sigma"),
		resolvedAt(sec(23), 1000, "2.58 sigma"))
}

// A baseline without spread is judged against the spread floor learned
// from the series: a change away from a constant value is a level change
// with a finite deviation, reported once, unless within the tolerance.
func TestZScoreConstantBaseline(t *testing.T) {
	steps := readings(sec(0), 1000, 20, 20, 20, 20, 20, 20.5, 20)
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, ResolveCount: 1}, steps,
		firingAt(sec(5), 20.5, "level change: value 20.5 is 0.5 from the mean 20 of a constant baseline (over the last 1h0m0s, 5 readings; the spread floor 0.02; 3 sigma allowed)"),
		resolvedAt(sec(6), 20, "value 20 is 0.333 sigma from the mean 20.0833 (sigma 0.25, the spread floor (stddev 0.186339)"))
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, Tolerance: Tolerance{Value: 1}, ResolveCount: 1}, steps)
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, Tolerance: Tolerance{Value: 0.05, Relative: true}}, steps)
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, Tolerance: Tolerance{Value: 0.4}, ResolveCount: 1}, steps,
		firingAt(sec(5), 20.5, "3 sigma allowed, at least 0.4"),
		resolvedAt(sec(6), 20, ""))
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, Tolerance: Tolerance{Value: 0.02, Relative: true}, ResolveCount: 1}, steps,
		firingAt(sec(5), 20.5, "3 sigma allowed, at least 2%"),
		resolvedAt(sec(6), 20, ""))

	// A series quantized to 0.5 that moves by a step now and then: its
	// stddev (0.11) is below half the step, the floor; with the default
	// sigma 4, moves of one and two steps (2 and 3.8 sigma) do not fire, a
	// jump of 1.5 (5.9 sigma) does.
	q := readings(sec(0), 1000, 20, 20, 20, 20, 20, 20.5, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20)
	checkSeries(t, Spec{Type: "zscore", Window: time.Hour, Warmup: 10}, series(q, readings(sec(20), 1000, 20.5, 21, 20)))
	checkSeries(t, Spec{Type: "zscore", Window: time.Hour, Warmup: 10}, series(q, readings(sec(20), 1000, 21.5)),
		firingAt(sec(20), 21.5, "value 21.5 is 5.9 sigma from the mean 20.025 (sigma 0.25, the spread floor (stddev 0.108972) over the last 1h0m0s, 20 readings; 4 sigma allowed)"))
}

func TestZScoreSkipsNaN(t *testing.T) {
	checkSeries(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour, ResolveCount: 1}, readings(sec(0), 1000, 10, 12, math.NaN(), math.Inf(1), 11))
}

// The window is bounded: the oldest reading leaves early when it is full.
func TestZScoreBoundedWindow(t *testing.T) {
	st := mustNew(t, Spec{Type: "zscore", Sigma: 3, Window: 24 * time.Hour, ResolveCount: 1}).NewState().(*zscoreState)
	var out Emitter
	for i := range maxWindowReadings + 500 {
		st.Observe(&Event{Key: "k", Value: float64(i % 7), TS: t0 + int64(i)}, &out)
	}
	if st.win.n != maxWindowReadings || len(st.win.buf) != maxWindowReadings {
		t.Fatalf("window holds %d readings in a buffer of %d, want %d", st.win.n, len(st.win.buf), maxWindowReadings)
	}
	if st.win.oldest().ts != t0+500 {
		t.Fatalf("oldest reading at %d, want %d", st.win.oldest().ts-t0, 500)
	}
	mean, m2 := st.mean, st.m2
	st.recompute()
	if math.Abs(mean-st.mean) > 1e-9 || math.Abs(m2-st.m2) > 1e-6*st.m2 {
		t.Fatalf("running mean %v m2 %v, exact %v %v", mean, m2, st.mean, st.m2)
	}
	if len(out.Alerts) != 0 {
		t.Fatalf("alerts: %v", out.Alerts)
	}
}

// Welford's removal drifts; the periodic exact recompute keeps the running
// mean and sum of squares close on a large level with a small spread.
func TestZScoreNumericalStability(t *testing.T) {
	st := mustNew(t, Spec{Type: "zscore", Sigma: 3, Window: time.Minute, ResolveCount: 1}).NewState().(*zscoreState)
	var out Emitter
	for i := range 200000 {
		v := 1e6 + float64(i%10)*0.001
		if i%1000 == 0 {
			v = 1e9 // a huge spike joins and leaves the window
		}
		st.Observe(&Event{Key: "k", Value: v, TS: t0 + int64(i)*100}, &out)
	}
	mean, m2 := st.mean, st.m2
	st.recompute()
	if math.Abs(mean-st.mean) > 1e-6 || math.Abs(m2-st.m2) > 1e-6*st.m2+1e-6 {
		t.Fatalf("running mean %v m2 %v, exact %v %v", mean, m2, st.mean, st.m2)
	}
}
