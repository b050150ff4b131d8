package cep

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDetectorTypes(t *testing.T) {
	for _, typ := range []string{"threshold", "zscore", "mad", "rate", "flatline", "deadman", "range"} {
		if !slices.Contains(Types(), typ) {
			t.Errorf("type %q not registered", typ)
		}
	}
}

func TestInvalidSpecs(t *testing.T) {
	f := func(err string, s Spec) {
		t.Helper()
		s.Name = "bad"
		_, e := New(s)
		if e == nil || !strings.Contains(e.Error(), err) || !strings.HasPrefix(e.Error(), `detector "bad": `) {
			t.Errorf("%+v: error %v, want %q", s, e, err)
		}
	}
	h := time.Hour
	f("zscore needs sigma > 0", Spec{Type: "zscore", Window: h, Sigma: -1})
	f("zscore needs sigma > 0", Spec{Type: "zscore", Window: h, Sigma: math.NaN()})
	f("zscore: set window or alpha, not both", Spec{Type: "zscore", Sigma: 3, Window: h, Alpha: 0.1})
	f("zscore needs a baseline: window (rolling, in event time) or alpha (EWMA)", Spec{Type: "zscore", Sigma: 3})
	f("zscore: window must be positive", Spec{Type: "zscore", Sigma: 3, Window: -h})
	f("zscore: window must be at least 1ms", Spec{Type: "zscore", Sigma: 3, Window: time.Microsecond})
	f("zscore: alpha must be between 0 and 1 (exclusive)", Spec{Type: "zscore", Sigma: 3, Alpha: 1})
	f("zscore: alpha must be between 0 and 1 (exclusive)", Spec{Type: "zscore", Sigma: 3, Alpha: -0.5})
	f("zscore: warmup must not be negative", Spec{Type: "zscore", Sigma: 3, Alpha: 0.5, Warmup: -1})
	f("zscore: tolerance must be a number >= 0", Spec{Type: "zscore", Sigma: 3, Alpha: 0.5, Tolerance: Tolerance{Value: -1}})
	f("zscore: tolerance must be a number >= 0", Spec{Type: "zscore", Sigma: 3, Alpha: 0.5, Tolerance: Tolerance{Value: math.NaN(), Relative: true}})
	f("zscore: min_score must be between 0 and 1", Spec{Type: "zscore", Sigma: 3, Alpha: 0.5, MinScore: 1.5})
	f("zscore: resolve_count must not be negative", Spec{Type: "zscore", Sigma: 3, Alpha: 0.5, ResolveCount: -1})
	f("mad: min_score must be between 0 and 1", Spec{Type: "mad", Window: h, MinScore: -0.1})
	f("rate: min_score must be between 0 and 1", Spec{Type: "rate", MaxRate: 1, MinScore: math.NaN()})
	f("threshold: min_score must be between 0 and 1", Spec{Type: "threshold", Above: fp(1), MinScore: 2})
	f("zscore: renotify must not be negative", Spec{Type: "zscore", Sigma: 3, Alpha: 0.5, Renotify: -h})

	f("mad needs sigma > 0 (or none for the default 6)", Spec{Type: "mad", Window: h, Sigma: -1})
	f("mad needs window > 0", Spec{Type: "mad"})
	f("mad takes a window, not alpha", Spec{Type: "mad", Window: h, Alpha: 0.1})
	f("mad: warmup must not be negative", Spec{Type: "mad", Window: h, Warmup: -1})
	f("mad: tolerance must be a number >= 0", Spec{Type: "mad", Window: h, Tolerance: Tolerance{Value: math.Inf(1)}})

	f("rate needs max_rate > 0", Spec{Type: "rate"})
	f("rate needs max_rate > 0", Spec{Type: "rate", MaxRate: math.Inf(1)})
	f("rate: renotify must not be negative", Spec{Type: "rate", MaxRate: 1, Renotify: -h})

	f("flatline needs duration > 0", Spec{Type: "flatline", Tolerance: Tolerance{Value: 0.1}})
	f("flatline: tolerance must be a number >= 0", Spec{Type: "flatline", Duration: h, Tolerance: Tolerance{Value: -0.1}})

	f("deadman needs duration > 0", Spec{Type: "deadman"})
	f("deadman: renotify must not be negative", Spec{Type: "deadman", Duration: h, Renotify: -h})

	f("range needs min or max", Spec{Type: "range"})
	f("range: min must not be above max", Spec{Type: "range", Min: fp(10), Max: fp(0)})
	f("range: min must be a finite number", Spec{Type: "range", Min: fp(math.NaN())})
	f("range: max must be a finite number", Spec{Type: "range", Max: fp(math.Inf(1))})

	// Valid specs, including the defaults.
	for _, s := range []Spec{
		{Type: "zscore", Sigma: 3, Window: h}, {Type: "zscore", Sigma: 3, Alpha: 0.01}, {Type: "zscore", Window: h},
		{Type: "mad", Window: h}, {Type: "rate", MaxRate: 0.5}, {Type: "flatline", Duration: h},
		{Type: "deadman", Duration: h}, {Type: "range", Min: fp(0), Max: fp(0)},
	} {
		if _, err := New(s); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

// A checkpoint of one zscore baseline is not restored into the other: the
// fingerprints differ, and the encoding says which it is.
func TestZScoreModes(t *testing.T) {
	w := mustNew(t, Spec{Type: "zscore", Sigma: 3, Window: time.Hour})
	e := mustNew(t, Spec{Type: "zscore", Sigma: 3, Alpha: 0.1})
	if w.Fingerprint() == e.Fingerprint() {
		t.Fatal("same fingerprint for window and EWMA")
	}
	if err := e.NewState().RestoreState(w.NewState().AppendState(nil)); err == nil {
		t.Fatal("EWMA state restored from a window state")
	}
	if err := w.NewState().RestoreState(e.NewState().AppendState(nil)); err == nil {
		t.Fatal("window state restored from an EWMA state")
	}
}
