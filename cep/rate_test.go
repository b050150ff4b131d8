package cep

import (
	"math"
	"testing"
	"time"
)

func TestRate(t *testing.T) {
	s := Spec{Type: "rate", MaxRate: 10, ResolveCount: 1}
	steps := []step{
		rd(t0, 20),
		rd(t0+1000, 25),   // 5/s
		rd(t0+1500, 37.5), // 25/s: fires
		rd(t0+1500, 38),   // same time: no rate, becomes the reference
		rd(t0+2000, 40),   // 4/s from 38: resolves
		rd(t0+3000, 30),   // -10/s: at the limit, not beyond
		rd(t0+3100, 20),   // -100/s: fires
		rd(t0+3200, 10),   // -100/s: still firing
		rd(t0+4200, 10.5), // resolves
	}
	checkSeries(t, s, steps,
		firingAt(t0+1500, 37.5, "changed 12.5 in 0.5s = 25/s, max 10/s"),
		resolvedAt(t0+2000, 40, "changed 2 in 0.5s = 4/s, within 10/s"),
		firingAt(t0+3100, 20, "changed -10 in 0.1s = -100/s, max 10/s"),
		resolvedAt(t0+4200, 10.5, "changed 0.5 in 1s = 0.5/s, within 10/s"))

	// Per second of event time: a slow climb over a gap is no spike.
	checkSeries(t, s, readings(t0, 60000, 20, 100, 700))

	// Renotify while it holds.
	checkSeries(t, Spec{Type: "rate", MaxRate: 1, Renotify: 2 * time.Second, ResolveCount: 1}, readings(t0, 1000, 0, 5, 10, 15, 20, 25, 25),
		firingAt(t0+1000, 5, "changed 5 in 1s = 5/s, max 1/s"),
		firingAt(t0+3000, 15, "changed 5 in 1s = 5/s"),
		firingAt(t0+5000, 25, "changed 5 in 1s = 5/s"),
		resolvedAt(t0+6000, 25, "changed 0 in 1s = 0/s, within 1/s"))

	// Readings that are not numbers are skipped.
	checkSeries(t, s, readings(t0, 1000, 20, math.NaN(), 21, math.Inf(1), 22))
}
