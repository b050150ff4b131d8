package ingest

import (
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
)

func TestUnsyncedClockQuarantinesReadingsWithoutEventTime(t *testing.T) {
	now := time.Date(1970, 1, 1, 0, 5, 0, 0, time.UTC) // a Pi without RTC, before NTP
	d, err := newDecoder("serial0", "json", sensors.Options{}, func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.clock = &Clock{Now: func() time.Time { return now }, Floor: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	es, qs := d.decode([]byte(`{"sensor":"s1","value":1}`), nil, nil)
	if len(es) != 0 || len(qs) != 1 || !strings.HasPrefix(qs[0].Reason, "clock not synchronised") {
		t.Fatalf("no event time, clock unsynced: entries %v quarantine %v", es, qs)
	}
	// A payload with its own event time is not affected.
	es, qs = d.decode([]byte(`{"sensor":"s1","value":1,"ts":1700000000000}`), nil, nil)
	if len(es) != 1 || len(qs) != 0 || es[0].TS != 1700000000000 {
		t.Fatalf("event time given: entries %v quarantine %v", es, qs)
	}
	// Once NTP set the clock, ingestion time stamps again.
	now = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	es, qs = d.decode([]byte(`{"sensor":"s1","value":1}`), nil, nil)
	if len(es) != 1 || len(qs) != 0 || es[0].TS != now.UnixMilli() {
		t.Fatalf("clock synced: entries %v quarantine %v", es, qs)
	}
}

func TestKernelClockQueryDoesNotFail(t *testing.T) {
	c := &Clock{Kernel: true}
	// Whatever the sandbox's kernel says, the query must work and be cached.
	a := c.Synced(time.Now())
	b := c.Synced(time.Now())
	if a != b {
		t.Fatalf("cached answer changed: %v %v", a, b)
	}
	t.Logf("kernel reports synchronised: %v", a)
}
