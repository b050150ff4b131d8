package ingest

import (
	"sync"
	"time"
)

// Clock is the gateway's clock as ingestion sees it. A gateway without a
// real-time clock boots at 1970 or at a stale time until NTP syncs; a
// reading stamped with ingestion time then would land in a wrong window.
//
// The rule (SEMANTICS section 1): while the clock is not synchronised,
// readings without an event time are quarantined with the reason "clock
// not synchronised" instead of being stamped: nothing is lost (edged inspect
// --quarantine shows them with the time they arrived), nothing lands in a
// wrong window. Readings that carry their own event time are unaffected.
//
// The clock counts as unsynchronised when it reads earlier than Floor (the
// build date of this edged: a clock before it is certainly wrong), and,
// with Kernel set, also while the kernel reports no synchronisation
// (adjtimex STA_UNSYNC, Linux only). A Clock is safe for concurrent use.
type Clock struct {
	Now    func() time.Time
	Floor  time.Time
	Kernel bool

	mu      sync.Mutex
	checked time.Time // wall clock of the last kernel query
	synced  bool
}

// SystemClock returns a clock on time.Now with the given floor.
func SystemClock(floor time.Time, kernel bool) *Clock {
	return &Clock{Now: time.Now, Floor: floor, Kernel: kernel}
}

// Synced reports whether ingestion time can be trusted now. The kernel is
// asked at most once a second.
func (c *Clock) Synced(now time.Time) bool {
	if c == nil {
		return true
	}
	if !c.Floor.IsZero() && now.Before(c.Floor) {
		return false
	}
	if !c.Kernel {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.checked) >= time.Second || now.Before(c.checked) {
		c.checked = now
		c.synced = kernelSynced()
	}
	return c.synced
}
