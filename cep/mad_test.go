package cep

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestMAD(t *testing.T) {
	// Sigma 3; resolve at the first reading back within.
	s := Spec{Type: "mad", Window: 10 * time.Second, Sigma: 3, ResolveCount: 1}
	// At 10 s the window holds 1..9 s: 11 12 10 11 12 10 11 12 11, median
	// 11, MAD 1, limit 3 x 1.4826 x 1 = 4.4478: the 50 fires. It joins the
	// window but does not move median or MAD, so 11 resolves and the next
	// 50 fires again (a zscore baseline would have been blown up).
	steps := readings(sec(0), 1000, 10, 11, 12, 10, 11, 12, 10, 11, 12, 11, 50, 11, 50, 11)
	checkSeries(t, s, steps,
		firingAt(sec(10), 50, "value 50 is 39 from the median 11, limit 4.4478 (3 x 1.4826 x MAD 1 over the last 10s, 9 readings)"),
		resolvedAt(sec(11), 11, "value 11 is 0 from the median 11, limit 4.4478"),
		firingAt(sec(12), 50, "value 50 is 39 from the median 11"),
		resolvedAt(sec(13), 11, ""))

	// Sigma scales the limit; below the limit nothing fires.
	checkSeries(t, Spec{Type: "mad", Window: 10 * time.Second, Sigma: 30}, steps) // limit 44.478 > 39
	checkSeries(t, Spec{Type: "mad", Window: 10 * time.Second, Sigma: 1, Warmup: 3}, readings(sec(0), 1000, 10, 11, 12, 10, 11, 12, 13),
		firingAt(sec(6), 13, "value 13 is 2 from the median 11, limit 1.4826 (1 x 1.4826 x MAD 1 over the last 10s, 6 readings)"))

	// A dip fires as well. After a gap the window is empty and needs 2
	// readings before it judges again: the alert stays until then.
	checkSeries(t, s, series(readings(sec(0), 1000, 10, 11, 12, 10, -5), readings(sec(60), 1000, 10, 12, 11, 20)),
		firingAt(sec(4), -5, "value -5 is 15.5 from the median 10.5, limit 2.2239 (3 x 1.4826 x MAD 0.5 over the last 10s, 4 readings)"),
		resolvedAt(sec(62), 11, "value 11 is 0 from the median 11, limit 4.4478 (3 x 1.4826 x MAD 1 over the last 10s, 2 readings)"),
		firingAt(sec(63), 20, "value 20 is 9 from the median 11, limit 4.4478"))
}

func TestMADWarmup(t *testing.T) {
	steps := readings(sec(0), 1000, 10, 12, 11, 40)
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, Warmup: 3}, steps,
		firingAt(sec(3), 40, "value 40 is 29 from the median 11"))
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, Warmup: 4}, steps)
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3}, readings(sec(0), 1000, 10, 40))
}

func TestMADRenotify(t *testing.T) {
	steps := readings(sec(0), 1000, 10, 11, 12, 10, 11, 12, 10, 11, 12, 10, 11, 12, 30, 31, 30, 31, 11)
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, Renotify: 2 * time.Second, ResolveCount: 1}, steps,
		firingAt(sec(12), 30, "value 30 is 19"),
		firingAt(sec(14), 30, "value 30 is 19"),
		resolvedAt(sec(16), 11, ""))
}

// When more than half the window is one value the MAD is 0: the spread is
// then the median deviation of the other readings, the series' usual
// excursions, and at least the floor learned from the series.
func TestMADQuantized(t *testing.T) {
	// A constant window: 21 is a level change, judged against the floor
	// (0.1% of 20 = 0.02; no step seen yet), once: the burst of 21s and
	// 20s after it is one alert.
	steps := readings(sec(0), 1000, 20, 20, 20, 21, 20, 21, 20, 20)
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3}, steps,
		firingAt(sec(3), 21, "value 21 is 1 from the median 20, limit 0.06 (a level change: the last 1h0m0s, 3 readings, were constant; 3 x the spread floor 0.02)"))
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, ResolveCount: 1}, steps,
		firingAt(sec(3), 21, "level change"),
		resolvedAt(sec(4), 20, "value 20 is 0 from the median 20, limit 4.4478 (3 x 1.4826 x 1, the median deviation of the readings off the median: MAD 0 over the last 1h0m0s, 4 readings)"))
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, Tolerance: Tolerance{Value: 1}}, steps)
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, Tolerance: Tolerance{Value: 0.05, Relative: true}}, steps)
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, Tolerance: Tolerance{Value: 0.5}}, steps,
		firingAt(sec(3), 21, "limit 0.5 (the tolerance 0.5)"))
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, Tolerance: Tolerance{Value: 0.025, Relative: true}}, steps,
		firingAt(sec(3), 21, "limit 0.5 (the tolerance 2.5%)"))

	// Mostly 32 with excursions of about 1 (MAD 0, the others' median
	// deviation 1): another excursion of 1 is usual, one of 5 is not.
	base := readings(sec(0), 1000, 32, 32, 33, 32, 32, 31, 32, 32, 33, 32, 32, 31, 32, 32)
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, Warmup: 14}, series(base, readings(sec(14), 1000, 33, 31, 32)))
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3, Warmup: 14}, series(base, readings(sec(14), 1000, 37)),
		firingAt(sec(14), 37, "value 37 is 5 from the median 32, limit 4.4478 (3 x 1.4826 x 1, the median deviation of the readings off the median: MAD 0"))
}

func TestMADSkipsNaN(t *testing.T) {
	checkSeries(t, Spec{Type: "mad", Window: time.Hour, Sigma: 3}, readings(sec(0), 1000, 10, 12, math.NaN(), math.Inf(-1), 11))
}

// median and medianDeviation agree with sorting the deviations, for odd
// and even counts and with ties.
func TestMedianDeviation(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 1; n < 130; n++ {
		for trial := range 40 {
			a := make([]float64, n)
			for i := range a {
				if trial%2 == 0 {
					a[i] = float64(rng.IntN(7)) + []float64{0, 0.5}[rng.IntN(2)] // ties
				} else {
					a[i] = rng.NormFloat64() * 100
				}
			}
			slices.Sort(a)
			med := median(a)
			dev := make([]float64, n)
			for i, x := range a {
				dev[i] = math.Abs(x - med)
			}
			slices.Sort(dev)
			if got, want := medianDeviation(a, med), median(dev); got != want {
				t.Fatalf("%v: MAD %v, want %v", a, got, want)
			}
		}
	}
}

// robustSpread agrees with sorting the deviations of the values that
// differ from the median when the MAD is 0.
func TestRobustSpread(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 1; n < 100; n++ {
		for range 40 {
			a := make([]float64, n)
			for i := range a {
				a[i] = 7
				if rng.IntN(3) == 0 {
					a[i] = float64(rng.IntN(5)) * 1.5
				}
			}
			slices.Sort(a)
			med := median(a)
			var all, off []float64
			for _, x := range a {
				all = append(all, math.Abs(x-med))
				if x != med {
					off = append(off, math.Abs(x-med))
				}
			}
			slices.Sort(all)
			slices.Sort(off)
			want, wantZero := median(all), false
			if want == 0 {
				want, wantZero = 0, true
				if len(off) > 0 {
					want = median(off)
				}
			}
			if got, zero := robustSpread(a, med); got != want || zero != wantZero {
				t.Fatalf("%v: spread %v (zero MAD %v), want %v (%v)", a, got, zero, want, wantZero)
			}
		}
	}
}

// The window is bounded, and the sorted values follow the ring.
func TestMADBoundedWindow(t *testing.T) {
	st := mustNew(t, Spec{Type: "mad", Window: 24 * time.Hour, Sigma: 3}).NewState().(*madState)
	var out Emitter
	for i := range maxWindowReadings + 500 {
		st.Observe(&Event{Key: "k", Value: float64(i % 7), TS: t0 + int64(i)}, &out)
	}
	if st.win.n != maxWindowReadings || len(st.sorted) != maxWindowReadings {
		t.Fatalf("window holds %d readings, %d sorted, want %d", st.win.n, len(st.sorted), maxWindowReadings)
	}
	want := make([]float64, 0, st.win.n)
	for i := range st.win.n {
		want = append(want, st.win.at(i).v)
	}
	slices.Sort(want)
	if !slices.Equal(st.sorted, want) {
		t.Fatal("sorted values differ from the window's")
	}
}
