package cep

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// noisy returns n readings a second from start: level + N(0, sd), from a
// fixed seed.
func noisy(start int64, n int, level, sd float64, seed uint64) []step {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]step, n)
	for i := range out {
		out[i] = rd(start+int64(i)*1000, math.Round((level+sd*rng.NormFloat64())*1000)/1000)
	}
	return out
}

// Each of anomaly's tests fires on what it is for, once, with its reason,
// and the state survives a checkpoint at every point of the series.
func TestAnomaly(t *testing.T) {
	base := noisy(sec(0), 200, 20, 0.5, 1)
	s := Spec{Type: "anomaly"}

	// A spike: an outlier (and a jump) at its reading; the jump back
	// belongs to it too, and 10 readings later it resolves.
	checkSeries(t, s, series(base, readings(sec(200), 1000, 35), noisy(sec(201), 40, 20, 0.5, 2)),
		firingAt(sec(200), 35, "value 35 is 28.5 sigma above the long-term median 19.98 (sigma 0.518316 on that side; 128 samples of the last 200 readings)"),
		resolvedAt(sec(211), 18.89, "back below score 0.75 for 10 readings"))

	// A small lasting shift (1.5 sigma): no single reading is an outlier;
	// the median of the last 32 readings is, and so is their histogram.
	got := feed(t, mustNew(t, s).NewState(), series(base, noisy(sec(200), 60, 20.75, 0.5, 3)))
	if len(got) == 0 || got[0].State != Firing || !strings.Contains(got[0].Reason, "level shift") && !strings.Contains(got[0].Reason, "distribution change") {
		t.Fatalf("shift: %s", fmtAlerts(got))
	}
	// On an older key (its reservoir learns slower), a 3-sigma shift
	// moves the median of the last 32 readings past 5.7 standard errors
	// within 20 readings.
	old := noisy(sec(0), 2000, 20, 0.5, 6)
	got = feed(t, mustNew(t, s).NewState(), series(old, noisy(sec(2000), 60, 21.5, 0.5, 3)))
	if len(got) == 0 || got[0].State != Firing || got[0].TS > sec(2020) || !strings.Contains(got[0].Reason, "level shift: the median") {
		t.Fatalf("shift: %s", fmtAlerts(got))
	}

	// More noise, same level: the histogram of the last 32 readings
	// matches no usual pattern.
	got = feed(t, mustNew(t, s).NewState(), series(noisy(sec(0), 600, 20, 0.5, 4), noisy(sec(600), 60, 20, 2.5, 5)))
	if len(got) == 0 || got[0].State != Firing {
		t.Fatalf("variance change: %s", fmtAlerts(got))
	}

	// A sensor that freezes: its value, exactly, for 8 readings in a row
	// (it never repeated before).
	frozen := readings(sec(200), 1000, slices.Repeat([]float64{base[199].v}, 30)...)
	got = feed(t, mustNew(t, s).NewState(), series(base, frozen))
	if len(got) != 1 || got[0].TS != sec(207) || !strings.Contains(got[0].Reason, "stuck: value") {
		t.Fatalf("stuck: %s", fmtAlerts(got))
	}

	// A constant series that moves: a level change, reported once, with a
	// finite score.
	flat := readings(sec(0), 1000, slices.Repeat([]float64{42}, 150)...)
	got = feed(t, mustNew(t, s).NewState(), series(flat, readings(sec(150), 1000, slices.Repeat([]float64{43}, 200)...)))
	if len(got) != 2 || !strings.Contains(got[0].Reason, "level change") || got[0].Score != 1 || got[1].State != Resolved {
		t.Fatalf("level change: %s", fmtAlerts(got))
	}
	// Within the tolerance it does not fire.
	if got := feed(t, mustNew(t, Spec{Type: "anomaly", Tolerance: Tolerance{Value: 0.05, Relative: true}}).NewState(),
		series(flat, readings(sec(150), 1000, slices.Repeat([]float64{43}, 50)...))); len(got) != 0 {
		t.Fatalf("level change within 5%%: %s", fmtAlerts(got))
	}

	// Nothing during the warm-up.
	if got := feed(t, mustNew(t, Spec{Type: "anomaly", Warmup: 300}).NewState(), series(base, readings(sec(200), 1000, 35))); len(got) != 0 {
		t.Fatalf("fired during the warm-up: %s", fmtAlerts(got))
	}
}

// Usual jumps (a square wave's edges), heavy tails and wandering levels
// are learned: after a warm-up, series without anomalies raise nothing.
func TestAnomalyQuietOnUsualSeries(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	walk := 0.0
	for name, f := range map[string]func(i int) float64{
		"square wave": func(i int) float64 { return 10 * float64((i/144)%2) },
		"sine":        func(i int) float64 { return 50 + 20*math.Sin(float64(i)*2*math.Pi/288) + 0.5*rng.NormFloat64() },
		"constant":    func(int) float64 { return 42 },
		"noise":       func(int) float64 { return 10 + rng.NormFloat64() },
		"random walk": func(int) float64 { walk += rng.NormFloat64(); return walk },
		"coarse":      func(int) float64 { return math.Round(10 + 0.6*rng.NormFloat64()) },
		"counts": func(i int) float64 {
			return math.Round(40 + 30*math.Sin(float64(i)*2*math.Pi/288) + 6*rng.NormFloat64())
		},
	} {
		st := mustNew(t, Spec{Type: "anomaly"}).NewState()
		var out Emitter
		for i := range 4000 {
			st.Observe(&Event{Key: "k", Value: f(i), TS: t0 + int64(i)*300000}, &out)
			if i < 750 { // NAB's probationary period: learning
				out.Alerts = out.Alerts[:0]
			}
		}
		if len(out.Alerts) != 0 {
			t.Errorf("%s: %d alerts, first %s", name, len(out.Alerts), fmtAlerts(out.Alerts[:1]))
		}
	}
}

// A version 1 state (before the stuck test) restores, its runs at 0.
func TestAnomalyRestoreVersion1(t *testing.T) {
	d := mustNew(t, Spec{Type: "anomaly"})
	st := d.NewState().(*anomalyState)
	var out Emitter
	for i := range 300 {
		st.Observe(&Event{Key: "k", Value: math.Sin(float64(i) / 7), TS: t0 + int64(i)*1000}, &out)
	}
	st.run, st.longest, st.repeats = 0, 0, 0
	v2 := st.AppendState(nil)
	// Version 1 is version 2 without the last three numbers of the
	// autocorrelation block: rebuild it from the parts.
	tail := len(v2) - (1 + 8*(anomalyBins-1) + 8 + st.patterns*(4*anomalyBins+4)) // binned, edges, patterns

	v1 := append([]byte{1}, v2[1:tail-24]...)
	v1 = append(v1, v2[tail:]...)
	back := d.NewState().(*anomalyState)
	if err := back.RestoreState(v1); err != nil {
		t.Fatal(err)
	}
	if again := back.AppendState(nil); string(again) != string(v2) {
		t.Fatal("a version 1 state does not restore to the same state")
	}
}

// The state is bounded: its encoding does not grow with the readings.
func TestAnomalyBounded(t *testing.T) {
	d := mustNew(t, Spec{Type: "anomaly"})
	st := d.NewState()
	var out Emitter
	rng := rand.New(rand.NewPCG(1, 1))
	var sizes []int
	for i := range 20000 {
		st.Observe(&Event{Key: "k", Value: rng.NormFloat64() * float64(1+i%7), TS: t0 + int64(i)}, &out)
		out.Alerts = out.Alerts[:0]
		if i%5000 == 4999 {
			sizes = append(sizes, len(st.AppendState(nil)))
		}
	}
	for _, n := range sizes {
		if n > 2600 {
			t.Fatalf("encoded state %d bytes: %v", n, sizes)
		}
	}
	// And a restored state encodes the same.
	enc := st.AppendState(nil)
	st2 := d.NewState()
	if err := st2.RestoreState(enc); err != nil {
		t.Fatal(err)
	}
	if again := st2.AppendState(nil); string(again) != string(enc) {
		t.Fatal("restored state encodes differently")
	}
	checkDamaged(t, d, enc)
}

// An anomaly state in steady state allocates nothing.
func TestAnomalyAllocs(t *testing.T) {
	st := mustNew(t, Spec{Type: "anomaly"}).NewState()
	var out Emitter
	ev := Event{Key: "k"}
	i := 0
	next := func() {
		ev.Value, ev.TS = 20+math.Sin(float64(i)/50), t0+int64(i)*1000
		st.Observe(&ev, &out)
		out.Alerts = out.Alerts[:0]
		i++
	}
	for range 3000 {
		next()
	}
	if n := testing.AllocsPerRun(1000, next); n != 0 {
		t.Fatalf("%v allocations a reading", n)
	}
}

func TestAnomalySpecs(t *testing.T) {
	for _, c := range []struct {
		s   Spec
		err string
	}{
		{Spec{Type: "anomaly", Sigma: 4}, "anomaly takes no sigma, window or alpha"},
		{Spec{Type: "anomaly", Window: time.Hour}, "anomaly takes no sigma, window or alpha"},
		{Spec{Type: "anomaly", MinScore: 1.1}, "anomaly: min_score must be between 0 and 1"},
		{Spec{Type: "anomaly", Warmup: -1}, "anomaly: warmup must not be negative"},
		{Spec{Type: "anomaly", Tolerance: Tolerance{Value: -1}}, "anomaly: tolerance must be a number >= 0"},
		{Spec{Type: "anomaly", ResolveCount: -1}, "anomaly: resolve_count must not be negative"},
	} {
		c.s.Name = "a"
		if _, err := New(c.s); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%+v: %v, want %q", c.s, err, c.err)
		}
	}
	if _, err := New(Spec{Name: "a", Type: "anomaly"}); err != nil {
		t.Fatal(err)
	}
}

// FuzzDetectorState feeds arbitrary bytes to every detector's
// RestoreState: it refuses them or restores a state that encodes back
// the same and goes on observing.
func FuzzDetectorState(f *testing.F) {
	specs := []Spec{
		{Name: "d", Type: "anomaly"}, {Name: "d", Type: "zscore", Window: time.Minute}, {Name: "d", Type: "zscore", Alpha: 0.1},
		{Name: "d", Type: "mad", Window: time.Minute}, {Name: "d", Type: "rate", MaxRate: 1}, {Name: "d", Type: "threshold", Above: fp(1)},
		{Name: "d", Type: "flatline", Duration: time.Minute}, {Name: "d", Type: "deadman", Duration: time.Minute}, {Name: "d", Type: "range", Max: fp(1)},
	}
	var dets []Detector
	for _, s := range specs {
		d, err := New(s)
		if err != nil {
			f.Fatal(err)
		}
		dets = append(dets, d)
		st := d.NewState()
		var out Emitter
		for i := range 300 {
			st.Observe(&Event{Key: "k", Value: math.Sin(float64(i) / 9), TS: t0 + int64(i)*1000}, &out)
		}
		f.Add(uint8(len(dets)-1), st.AppendState(nil))
	}
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		d := dets[int(which)%len(dets)]
		st := d.NewState()
		if st.RestoreState(b) != nil {
			return
		}
		enc := st.AppendState(nil)
		again := d.NewState()
		if err := again.RestoreState(enc); err != nil {
			t.Fatalf("a restored state's encoding is refused: %v", err)
		}
		var out Emitter
		for i := range 50 {
			st.Observe(&Event{Key: "k", Value: float64(i), TS: t0 + int64(i)*1000}, &out)
		}
		st.AppendState(nil)
	})
}
