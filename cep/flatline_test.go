package cep

import (
	"testing"
	"time"
)

func TestFlatline(t *testing.T) {
	s := Spec{Type: "flatline", Duration: 10 * time.Minute, Tolerance: Tolerance{Value: 0.05}}
	// Within 0.05 of 21.5 from minute 0: fires at minute 10, not before;
	// 21.6 ends the run and starts the next one.
	stuck := readings(minute(0), 60000, 21.5, 21.51, 21.49, 21.5, 21.54, 21.46, 21.5, 21.5, 21.5, 21.5, 21.5, 21.52)
	steps := series(stuck, readings(minute(12), 60000, 21.6, 21.6, 21.6))
	checkSeries(t, s, steps,
		firingAt(minute(10), 21.5, "stuck at 21.5 (±0.05) for 10m0s"),
		resolvedAt(minute(12), 21.6, "value 21.6 moved from 21.5 (±0.05) after 12m0s"))

	// Stuck again for 10 minutes after the move, with sparse readings:
	// it fires at the first reading at or after the duration.
	checkSeries(t, s, series(steps, readings(minute(20), 5*60000, 21.6, 21.6)),
		firingAt(minute(10), 21.5, "stuck at 21.5"),
		resolvedAt(minute(12), 21.6, ""),
		firingAt(minute(25), 21.6, "stuck at 21.6 (±0.05) for 13m0s"))

	// A slow drift is compared with the run's first value, not the
	// previous reading: 0.02 a minute leaves the tolerance every 3 minutes.
	var drift []float64
	for i := range 30 {
		drift = append(drift, 21.5+0.02*float64(i))
	}
	checkSeries(t, s, readings(minute(0), 60000, drift...))

	// Exact equality with no tolerance; renotify while it holds.
	checkSeries(t, Spec{Type: "flatline", Duration: 10 * time.Minute, Renotify: 5 * time.Minute},
		readings(minute(0), 60000, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7.001),
		firingAt(minute(10), 7, "stuck at 7 (±0) for 10m0s"),
		firingAt(minute(15), 7, "stuck at 7 (±0) for 15m0s"),
		firingAt(minute(20), 7, "stuck at 7 (±0) for 20m0s"),
		resolvedAt(minute(22), 7.001, "value 7.001 moved from 7 (±0) after 22m0s"))
}

// flatline is driven by readings: the watermark alone raises nothing.
func TestFlatlineNoTimer(t *testing.T) {
	checkSeries(t, Spec{Type: "flatline", Duration: time.Minute}, []step{rd(minute(0), 1), wmAt(minute(60))})
}
