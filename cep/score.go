package cep

import (
	"fmt"
	"math"
)

// # Scores
//
// Every alert carries a score between 0 and 1: how anomalous the reading
// that raised it is, on one scale for every detector and key, so that
// alerts of different detectors and sensors can be ranked and filtered
// alike (min_score). The statistical detectors (zscore, mad, anomaly)
// measure a deviation z in standard deviations (or its equivalent for a
// test that is not a deviation) and grade it with scoreOf: 0.16 at 2
// sigma, 0.32 at 3, 0.5 at 4, 0.79 at 6, 0.94 at 8, 0.98 at 10. The
// detectors with a limit set by the user (threshold, rate, flatline,
// deadman) score 0.5 at their limit and more beyond it; range and pattern,
// whose conditions are yes or no, score 1.

// scoreRef is the deviation, in standard deviations, that scores 0.5.
const scoreRef = 4.0

// scoreOf grades a deviation of z standard deviations: 1 - 2^-(z/4)^2,
// which is 0 at 0, 0.5 at 4 sigma and tends to 1; NaN and negative z
// score 0.
func scoreOf(z float64) float64 {
	if !(z > 0) {
		return 0
	}
	r := z / scoreRef
	return roundScore(1 - math.Exp2(-r*r))
}

// zOf is scoreOf's inverse: the deviation that scores s (0 <= s < 1).
func zOf(s float64) float64 {
	if !(s > 0) {
		return 0
	}
	if s >= 1 {
		return math.Inf(1)
	}
	return scoreRef * math.Sqrt(-math.Log2(1-s))
}

// limitScore grades an observation against a limit set by the user: ratio
// is observed / limit (>= 0). 0.5 at the limit, as for 4 sigma, growing as
// 4 sigma times the ratio would.
func limitScore(ratio float64) float64 {
	if math.IsInf(ratio, 1) {
		return 1
	}
	return scoreOf(scoreRef * ratio)
}

// roundScore keeps 3 decimals: the score is a grade, not a measurement,
// and short numbers read better in alerts.
func roundScore(s float64) float64 {
	return min(1, max(0, math.Round(s*1000)/1000))
}

// checkMinScore validates a Spec's MinScore.
func checkMinScore(typ string, s float64) error {
	if !(s >= 0 && s <= 1) {
		return fmt.Errorf("%s: min_score must be between 0 and 1", typ)
	}
	return nil
}

// defaultResolveCount is how many readings in a row back within bounds
// resolve a firing alert of zscore, mad, rate and anomaly, unless
// resolve_count says otherwise: a burst of deviating readings, or an
// anomaly that comes and goes, is one firing.
const defaultResolveCount = 10

// resolveCount returns the configured count or the default.
func resolveCount(n int) int64 {
	if n <= 0 {
		return defaultResolveCount
	}
	return int64(n)
}

// debounce turns a reading's condition into the state of its alert: once
// firing, the alert holds until resolve readings in a row are back within
// bounds (calm counts them). cond is returned unchanged when not firing.
func debounce(l *Lifecycle, calm *int64, cond bool, resolve int64) bool {
	if cond || !l.Firing {
		*calm = 0
		return cond
	}
	*calm++
	if *calm >= resolve {
		*calm = 0
		return false
	}
	return true
}

// levelFloor is the smallest spread, as a fraction of a series' typical
// level, that the statistical detectors assume: below it a series counts
// as constant, and a change away from it is judged against this floor
// instead of against a spread of zero (an infinite number of sigmas).
const levelFloor = 0.001

// tinyFloor is the spread of last resort, relative to max(1, |level|),
// for a series constant at 0 with no step seen: any change is then a
// level change with the highest score.
const tinyFloor = 1e-9

// spreadFloor is the smallest spread a statistical detector uses for a
// series at level with a step (its quantization, the smallest change seen
// between two readings; 0 if none yet): the larger of half the step (the
// rounding error of a quantized reading), levelFloor times the level, and
// tinyFloor.
func spreadFloor(level, step float64) float64 {
	a := math.Abs(level)
	return max(step/2, levelFloor*a, tinyFloor*max(1, a))
}

// stepTracker learns a series' quantization step: the smallest change
// between two consecutive readings that is not rounding noise.
type stepTracker struct {
	has  bool    // prev is set
	prev float64 // the previous reading
	step float64 // the smallest change seen, 0 if none
}

// add folds v in.
func (t *stepTracker) add(v float64) {
	if t.has {
		d := math.Abs(v - t.prev)
		if d > 1e-9*max(math.Abs(v), math.Abs(t.prev)) && (t.step == 0 || d < t.step) {
			t.step = d
		}
	}
	t.has, t.prev = true, v
}

func appendStep(b []byte, t *stepTracker) []byte {
	b = appendBool(b, t.has)
	b = appendF64(b, t.prev)
	return appendF64(b, t.step)
}

func (d *decoder) stepTracker(t *stepTracker) {
	t.has = d.bool1()
	t.prev = d.f64()
	t.step = d.f64()
	if d.err == nil && (!finite(t.prev) || !(t.step >= 0) || math.IsInf(t.step, 0)) {
		d.err = errState
	}
}

// Tolerance is a deviation below which a detector never fires: Value in
// the series' units, or, with Relative, a fraction of the series' typical
// level (tolerance = "2%" in the config is Value 0.02, Relative).
type Tolerance struct {
	Value    float64
	Relative bool
}

// at returns the tolerance in the series' units at the given level.
func (t Tolerance) at(level float64) float64 {
	if t.Relative {
		return t.Value * math.Abs(level)
	}
	return t.Value
}

// String writes the tolerance as in the config.
func (t Tolerance) String() string {
	if t.Relative {
		return FormatValue(t.Value*100) + "%"
	}
	return FormatValue(t.Value)
}

func (t Tolerance) check(typ string) error {
	if !(t.Value >= 0) || math.IsInf(t.Value, 0) {
		return fmt.Errorf("%s: tolerance must be a number >= 0", typ)
	}
	return nil
}
