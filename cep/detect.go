package cep

import (
	"math"
	"time"
)

// Helpers shared by the detectors.

// emits reports whether l.Set(holds, ..., ts, ..., renotify, ...) would
// emit an alert, so that a state builds its reason text only when one is
// sent and stays allocation-free on ordinary readings.
func emits(l *Lifecycle, holds bool, ts int64, renotify time.Duration) bool {
	if holds != l.Firing {
		return true
	}
	return holds && renotify > 0 && ts-l.LastNotify >= renotify.Milliseconds()
}

// finite reports whether v is a number the statistical detectors can use.
// Decoders already refuse NaN and infinities; the detectors skip them too,
// so one cannot poison a baseline.
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// msDuration turns milliseconds into a time.Duration for reason texts.
func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// formatTS writes an event time for a reason text.
func formatTS(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }
