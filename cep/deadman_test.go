package cep

import (
	"strings"
	"testing"
	"time"
)

func TestDeadman(t *testing.T) {
	s := Spec{Type: "deadman", Duration: 5 * time.Minute}
	// Readings at 0, 1 and 2 min; the watermark at 7 min - 1 ms is not
	// yet 5 min of silence, at 7 min it is.
	steps := series(readings(minute(0), 60000, 20, 21, 22),
		[]step{wmAt(minute(7) - 1), wmAt(minute(7)), wmAt(minute(8)), rd(minute(8)+20000, 23)})
	checkSeries(t, s, steps,
		firingAt(minute(7), 22, "no reading for 5m0s (last at 2023-11-14T22:15:20Z)"),
		resolvedAt(minute(8)+20000, 23, "reading again after 6m20s of silence (last at 2023-11-14T22:15:20Z)"))

	// The watermark jumping over the timer fires at the timer's time.
	checkSeries(t, s, []step{rd(minute(0), 20), wmAt(minute(60))},
		firingAt(minute(5), 20, "no reading for 5m0s (last at 2023-11-14T22:13:20Z)"))

	// A reading exactly Duration after the last one is in time: the
	// watermark only passed the time before it.
	checkSeries(t, s, readings(minute(0), 5*60000, 20, 21, 22))

	// A reading after a longer gap fires first (the watermark passed
	// last + Duration before the reading), then resolves.
	checkSeries(t, s, readings(minute(0), 6*60000, 20, 21),
		firingAt(minute(5), 20, "no reading for 5m0s"),
		resolvedAt(minute(6), 21, "reading again after 6m0s of silence"))
}

func TestDeadmanRenotify(t *testing.T) {
	s := Spec{Type: "deadman", Duration: 5 * time.Minute, Renotify: 2 * time.Minute}
	checkSeries(t, s, []step{rd(minute(0), 20), wmAt(minute(10)), rd(minute(11), 21), wmAt(minute(30))},
		firingAt(minute(5), 20, "no reading for 5m0s"),
		firingAt(minute(7), 20, "no reading for 7m0s"),
		firingAt(minute(9), 20, "no reading for 9m0s"),
		resolvedAt(minute(11), 21, "reading again after 11m0s of silence"),
		firingAt(minute(16), 21, "no reading for 5m0s (last at 2023-11-14T22:24:20Z)"),
		firingAt(minute(18), 21, ""), firingAt(minute(20), 21, ""), firingAt(minute(22), 21, ""),
		firingAt(minute(24), 21, ""), firingAt(minute(26), 21, ""), firingAt(minute(28), 21, ""),
		firingAt(minute(30), 21, "no reading for 19m0s"))

	// Advance called once with a watermark far past the timers fires, then
	// renotifies once, at the latest renotify time it reached.
	st := mustNew(t, s).NewState()
	var out Emitter
	st.Observe(&Event{Key: "k", Value: 20, TS: minute(0)}, &out)
	st.Advance("k", minute(12), &out)
	if !matches(out.Alerts, []wantAlert{firingAt(minute(5), 20, "for 5m0s"), firingAt(minute(11), 20, "for 11m0s")}) {
		t.Fatalf("alerts:\n%s", fmtAlerts(out.Alerts))
	}
	if nt := st.NextTimer(); nt != minute(13) {
		t.Fatalf("NextTimer %d, want %d", nt, minute(13))
	}
}

// The processing-time variant applies the same rule to the wall clock, with
// the same alert identity, so the event-time timer does not fire again.
func TestDeadmanProcessingTime(t *testing.T) {
	st := mustNew(t, Spec{Type: "deadman", Duration: 5 * time.Minute}).NewState()
	pt, ok := st.(ProcessingTimer)
	if !ok {
		t.Fatal("deadman state is not a ProcessingTimer")
	}
	if st.NextTimer() != NoTimer {
		t.Fatal("timer before any reading")
	}
	var out Emitter
	pt.AdvanceProcessing("k", minute(10), &out) // no reading yet: nothing
	st.Observe(&Event{Key: "k", Value: 20, TS: minute(0)}, &out)
	pt.AdvanceProcessing("k", minute(5)-1, &out)
	if len(out.Alerts) != 0 {
		t.Fatalf("alerts: %v", out.Alerts)
	}
	pt.AdvanceProcessing("k", minute(5)+1234, &out)
	if st.NextTimer() != NoTimer {
		t.Fatal("timer while firing without renotify")
	}
	st.Advance("k", minute(6), &out) // the watermark catches up: no repeat
	st.Observe(&Event{Key: "k", Value: 21, TS: minute(7)}, &out)
	if !matches(out.Alerts, []wantAlert{firingAt(minute(5), 20, "no reading for 5m0s"), resolvedAt(minute(7), 21, "after 7m0s")}) {
		t.Fatalf("alerts:\n%s", fmtAlerts(out.Alerts))
	}
}

// Only deadman takes processing_time, and only when it is asked for.
func TestUsesProcessingTime(t *testing.T) {
	if _, err := New(Spec{Name: "f", Type: "flatline", Duration: time.Minute, ProcessingTime: true}); err == nil ||
		!strings.Contains(err.Error(), "processing_time is only for deadman") {
		t.Fatalf("flatline with processing_time: %v", err)
	}
	for _, on := range []bool{false, true} {
		d := mustNew(t, Spec{Type: "deadman", Duration: time.Minute, ProcessingTime: on})
		if UsesProcessingTime(d) != on {
			t.Fatalf("UsesProcessingTime = %v, want %v", !on, on)
		}
	}
}
