package cep

import (
	"math"
	"testing"
	"time"
)

func TestScoreOf(t *testing.T) {
	f := func(z, want float64) {
		t.Helper()
		if got := scoreOf(z); got != want {
			t.Errorf("scoreOf(%v) = %v, want %v", z, got, want)
		}
	}
	f(0, 0)
	f(-3, 0)
	f(math.NaN(), 0)
	f(2, 0.159)
	f(4, 0.5)
	f(6, 0.79)
	f(8, 0.938)
	f(1000, 1)
	f(math.Inf(1), 1)
	for _, s := range []float64{0.1, 0.5, 0.9, 0.99} {
		if got := scoreOf(zOf(s)); math.Abs(got-s) > 0.0005 {
			t.Errorf("scoreOf(zOf(%v)) = %v", s, got)
		}
	}
	if limitScore(1) != 0.5 || limitScore(math.Inf(1)) != 1 || limitScore(0) != 0 {
		t.Errorf("limitScore: %v %v %v", limitScore(1), limitScore(math.Inf(1)), limitScore(0))
	}
}

// Every alert carries a score in [0, 1], graded: a bigger deviation scores
// more; min_score sets what fires.
func TestAlertScores(t *testing.T) {
	base := readings(sec(0), 1000, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12, 10, 12)
	score := func(s Spec, v float64) (float64, bool) {
		t.Helper()
		got := feed(t, mustNew(t, s).NewState(), series(base, readings(sec(12), 1000, v)))
		if len(got) == 0 {
			return 0, false
		}
		return got[0].Score, true
	}
	for _, c := range []struct {
		s      Spec
		d1, d2 float64 // deviations from the mean: both fire, the second scores more
	}{
		{Spec{Type: "zscore", Window: time.Hour}, 6, 20},
		{Spec{Type: "zscore", Alpha: 0.1}, 6, 20},
		{Spec{Type: "mad", Window: time.Hour, Sigma: 3}, 6, 20},
		{Spec{Type: "anomaly", Warmup: 10}, 8, 20},
	} {
		s := c.s
		s1, ok1 := score(s, 11+c.d1)
		s2, ok2 := score(s, 11+c.d2)
		if !ok1 || !ok2 || !(s1 > 0 && s1 < s2 && s2 <= 1) {
			t.Errorf("%s: scores %v (%v) at %v, %v (%v) at %v: want 0 < first < second <= 1", s.Type, s1, ok1, c.d1, s2, ok2, c.d2)
		}
		// min_score above the smaller score silences it alone.
		s.MinScore = (s1 + s2) / 2
		if _, ok := score(s, 11+c.d1); ok {
			t.Errorf("%s: fired at %v with min_score %v > its score %v", s.Type, c.d1, s.MinScore, s1)
		}
		if _, ok := score(s, 11+c.d2); !ok {
			t.Errorf("%s: silent at %v with min_score %v < its score %v", s.Type, c.d2, s.MinScore, s2)
		}
	}

	// The detectors with a limit score 0.5 at it and more beyond.
	th := mustNew(t, Spec{Type: "threshold", Above: fp(80), Hysteresis: 2}).NewState()
	got := feed(t, th, readings(sec(0), 1000, 70, 80.5, 85, 70))
	if len(got) != 2 || got[0].Score != limitScore(1.25) || got[1].Score >= 0.5 {
		t.Errorf("threshold: %+v", got)
	}
	if got := feed(t, mustNew(t, Spec{Type: "threshold", Above: fp(80), MinScore: 0.9}).NewState(), readings(sec(0), 1000, 81, 85, 95)); len(got) != 1 || got[0].TS != sec(2) {
		t.Errorf("threshold with min_score 0.9 (fires 10%% of |above| beyond): %+v", got)
	}
	rt := mustNew(t, Spec{Type: "rate", MaxRate: 10}).NewState()
	if got := feed(t, rt, readings(sec(0), 1000, 0, 20)); len(got) != 1 || got[0].Score != limitScore(2) {
		t.Errorf("rate: %+v", got)
	}
	rg := mustNew(t, Spec{Type: "range", Max: fp(100)}).NewState()
	if got := feed(t, rg, readings(sec(0), 1000, 101, 50)); len(got) != 2 || got[0].Score != 1 || got[1].Score != 0 {
		t.Errorf("range: %+v", got)
	}
	dm := mustNew(t, Spec{Type: "deadman", Duration: 10 * time.Second, Renotify: 10 * time.Second}).NewState()
	if got := feed(t, dm, []step{rd(sec(0), 1), wmAt(sec(25))}); len(got) != 2 || got[0].Score != 0.5 || got[1].Score != limitScore(2) {
		t.Errorf("deadman: %+v", got)
	}
}

// A burst of outliers, or an anomaly that comes and goes, is one firing:
// the alert resolves after resolve_count readings in a row back within
// bounds.
func TestDebounce(t *testing.T) {
	var base []step
	for i := range 200 {
		base = append(base, rd(sec(float64(i)), []float64{10, 11, 12, 11}[i%4]))
	}
	burst := readings(sec(200), 1000, 50, 10, 11, 50, 12, 11, 50, 10, 11, 12, 11, 10, 11, 12, 11, 10, 11, 12, 11, 10, 11, 12, 11, 10)
	for _, s := range []Spec{
		{Type: "zscore", Window: time.Minute},
		{Type: "mad", Window: time.Minute},
		{Type: "rate", MaxRate: 10},
		{Type: "anomaly"},
	} {
		got := feed(t, mustNew(t, s).NewState(), series(base, burst))
		if len(got) != 2 || got[0].State != Firing || got[0].TS != sec(200) || got[1].State != Resolved || got[1].TS < sec(206+defaultResolveCount) {
			t.Errorf("%s: alerts:\n%s\nwant one firing at t0+200s, resolved %d readings after the last outlier", s.Type, fmtAlerts(got), defaultResolveCount)
		}
		s.ResolveCount = 1
		if got := feed(t, mustNew(t, s).NewState(), series(base, burst)); len(got) < 4 {
			t.Errorf("%s with resolve_count 1: alerts:\n%s\nwant a firing for each outlier", s.Type, fmtAlerts(got))
		}
	}
}

// States checkpointed before scores (version 1) still restore: the calm
// count and the step start afresh.
func TestRestoreVersion1(t *testing.T) {
	lc := appendLifecycle(nil, &Lifecycle{Firing: true, LastNotify: sec(3)})
	samples := func() []byte {
		r := sampleRing{}
		r.push(sample{ts: sec(1), v: 10})
		r.push(sample{ts: sec(2), v: 12})
		return appendSamples(nil, &r)
	}
	var b []byte
	// zscore, window: version, mode, lifecycle, seen, mean, m2, removed, samples.
	b = append(append([]byte{1, zscoreWindow}, lc...), appendI64(appendF64(appendF64(appendI64(nil, 2), 11), 2), 0)...)
	b = append(b, samples()...)
	z := mustNew(t, Spec{Type: "zscore", Window: time.Hour}).NewState().(*zscoreState)
	if err := z.RestoreState(b); err != nil || !z.Firing || z.seen != 2 || z.mean != 11 || z.win.n != 2 || z.calm != 0 || z.step.has {
		t.Fatalf("zscore v1: %v %+v", err, z)
	}
	// mad: version, lifecycle, seen, samples.
	b = append(append(append([]byte{1}, lc...), appendI64(nil, 2)...), samples()...)
	m := mustNew(t, Spec{Type: "mad", Window: time.Hour}).NewState().(*madState)
	if err := m.RestoreState(b); err != nil || !m.Firing || m.seen != 2 || len(m.sorted) != 2 {
		t.Fatalf("mad v1: %v %+v", err, m)
	}
	// rate: version, lifecycle, have, ts, v.
	b = appendF64(appendI64(appendBool(append([]byte{1}, lc...), true), sec(2)), 12)
	r := mustNew(t, Spec{Type: "rate", MaxRate: 1}).NewState().(*rateState)
	if err := r.RestoreState(b); err != nil || !r.Firing || !r.have || r.v != 12 {
		t.Fatalf("rate v1: %v %+v", err, r)
	}
	// And the restored states go on: the firing alert resolves.
	got := feed(t, z, readings(sec(3), 1000, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11))
	if len(got) != 1 || got[0].State != Resolved {
		t.Fatalf("zscore after a v1 restore: %s", fmtAlerts(got))
	}
}
