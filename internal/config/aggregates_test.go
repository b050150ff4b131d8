package config

import (
	"strings"
	"testing"
)

func TestIsPercentile(t *testing.T) {
	for _, tc := range []struct {
		in string
		q  float64
		ok bool
	}{
		{"p50", 0.5, true},
		{"p95", 0.95, true},
		{"p99", 0.99, true},
		{"p99.9", 0.999, true},
		{"p99.99", 0.9999, true},
		{"p5", 0.05, true},
		{"p05", 0.05, true},
		{"p1", 0.01, true},
		{"p0.5", 0.005, true},
		{"p0", 0, false},
		{"p00", 0, false},
		{"p0.0", 0, false},
		{"p100", 0, false},
		{"p", 0, false},
		{"p.5", 0, false},
		{"p95.", 0, false},
		{"p9a", 0, false},
		{"p-5", 0, false},
		{"p+5", 0, false},
		{"P95", 0, false},
		{"mean", 0, false},
		{"p1e1", 0, false},
	} {
		q, ok := IsPercentile(tc.in)
		if q != tc.q || ok != tc.ok {
			t.Errorf("IsPercentile(%q) = %v, %v; want %v, %v", tc.in, q, ok, tc.q, tc.ok)
		}
	}
}

func TestCheckAggregate(t *testing.T) {
	for _, a := range []string{"count", "sum", "mean", "min", "max", "first", "last", "stddev", "range", "p50", "p99.9"} {
		if msg := checkAggregate(a); msg != "" {
			t.Errorf("checkAggregate(%q) = %q, want valid", a, msg)
		}
	}
	for a, want := range map[string]string{
		"median":  `did you mean "p50"?`,
		"average": `did you mean "mean"?`,
		"Mean":    `did you mean "mean"? aggregate names are lower case`,
		"p101":    `invalid percentile "p101"`,
		"mode":    `unknown aggregate "mode"`,
	} {
		if msg := checkAggregate(a); !strings.Contains(msg, want) {
			t.Errorf("checkAggregate(%q) = %q, want it to contain %q", a, msg, want)
		}
	}
}
