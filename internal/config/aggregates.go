package config

import (
	"strconv"
	"strings"
)

// basicAggregates are the aggregates other than percentiles, in the order
// SEMANTICS section 4 lists them.
var basicAggregates = []string{"count", "sum", "mean", "min", "max", "first", "last", "stddev", "range"}

// IsPercentile reports whether agg names a percentile aggregate, "pNN" or
// "pNN.N..." with 0 < NN < 100, and returns its quantile: 0.95 for "p95",
// 0.5 for "p50", 0.999 for "p99.9", 0.05 for "p5". The quantile is the
// float64 nearest the decimal written, so "p99.9" gives exactly the same
// value as the literal 0.999.
func IsPercentile(agg string) (q float64, ok bool) {
	rest, ok := strings.CutPrefix(agg, "p")
	if !ok {
		return 0, false
	}
	whole, frac, hasFrac := strings.Cut(rest, ".")
	if len(whole) < 1 || len(whole) > 2 || !allDigits(whole) || (hasFrac && (frac == "" || !allDigits(frac))) {
		return 0, false
	}
	if len(whole) == 1 {
		whole = "0" + whole
	}
	q, err := strconv.ParseFloat("0."+whole+frac, 64)
	if err != nil || q <= 0 || q >= 1 {
		return 0, false
	}
	return q, true
}

// allDigits reports whether s has only ASCII digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
