package ingest

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/internal/simulate"
	"github.com/edged/edged/store"
)

// simClock is a clock the test moves.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// simApp collects appends.
type simApp struct {
	mu      sync.Mutex
	entries []store.Entry
	appends int
}

func (a *simApp) Append(_ context.Context, r store.AppendRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, r.Entries...)
	a.appends++
	return nil
}

func (a *simApp) snapshot() ([]store.Entry, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]store.Entry(nil), a.entries...), a.appends
}

// syncBuf is a log destination safe for the source's goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func simWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func simStart(t *testing.T, s *Simulate, app Appender) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, app) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
}

// The source generates a step when the clock reaches its event time,
// stamps it with that time and the clock as ingestion time, and skips to
// the present when the clock jumps.
func TestSimulateSourcePacing(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_000)
	clk := &simClock{t: t0}
	app := &simApp{}
	var logs syncBuf
	s := &Simulate{Name: "sim", Config: simulate.Config{Sensors: 3, Rate: 2, Amplitude: 1, Seed: 1},
		Tick: time.Millisecond, Now: clk.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	stop := simStart(t, s, app)
	defer stop()
	count := func() int { es, _ := app.snapshot(); return len(es) }
	simWait(t, "step 0", func() bool { return count() == 3 })
	time.Sleep(20 * time.Millisecond) // nothing more is due
	if n := count(); n != 3 {
		t.Fatalf("%d readings at t0, want 3", n)
	}
	// 2.2 s later: steps at +0.5, +1, +1.5, +2 s are due.
	clk.Set(t0.Add(2200 * time.Millisecond))
	simWait(t, "steps 1-4", func() bool { return count() == 15 })
	time.Sleep(20 * time.Millisecond)
	es, appends := app.snapshot()
	if len(es) != 15 {
		t.Fatalf("%d readings at t0+2.2s, want 15", len(es))
	}
	if appends != 2 {
		t.Errorf("%d appends, want 2 (the due steps go in one batch)", appends)
	}
	for i, e := range es {
		k := int64(i / 3)
		if e.TS != t0.UnixMilli()+500*k || e.Source != "sim" || e.Kind != store.EntryReading {
			t.Fatalf("entry %d: %+v, want step %d at t0+%d ms", i, e, k, 500*k)
		}
		wantIngest := t0.UnixMilli()
		if k > 0 {
			wantIngest += 2200
		}
		if e.Ingest != wantIngest {
			t.Fatalf("entry %d: ingest %d, want %d", i, e.Ingest, wantIngest)
		}
	}
	// The same values as the generator gives for the same seed.
	g, _ := simulate.New(simulate.Config{Sensors: 3, Rate: 2, Amplitude: 1, Seed: 1})
	var rs []simulate.Reading
	for range 5 {
		rs = g.Next(rs)
	}
	for i := range rs {
		if es[i].Sensor != rs[i].Sensor || es[i].Value != rs[i].Value {
			t.Fatalf("entry %d: %+v, generator %+v", i, es[i], rs[i])
		}
	}
	// The clock jumps an hour ahead (NTP after a boot with a stale clock):
	// no backlog of an hour, the sensors carry on from the present.
	jump := t0.Add(time.Hour)
	clk.Set(jump)
	simWait(t, "a step after the jump", func() bool { return count() == 18 })
	time.Sleep(20 * time.Millisecond)
	es, _ = app.snapshot()
	if len(es) != 18 || es[15].TS != jump.UnixMilli() {
		t.Fatalf("after the jump: %d readings, step 5 at %d, want 18 at %d", len(es), es[15].TS, jump.UnixMilli())
	}
	if !bytes.Contains([]byte(logs.String()), []byte("skip to the present")) {
		t.Errorf("jump not logged:\n%s", logs.String())
	}
}

// While the gateway's clock is unsynchronised nothing is generated; then
// the sensors start at the synchronised clock.
func TestSimulateSourceWaitsForClock(t *testing.T) {
	boot := time.Date(1970, 1, 1, 0, 1, 0, 0, time.UTC)
	clk := &simClock{t: boot}
	floor := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	app := &simApp{}
	s := &Simulate{Name: "sim", Config: simulate.Config{Sensors: 2, Rate: 1, Seed: 1}, Tick: time.Millisecond,
		Now: clk.Now, Clock: &Clock{Now: clk.Now, Floor: floor}}
	stop := simStart(t, s, app)
	defer stop()
	time.Sleep(50 * time.Millisecond)
	if es, _ := app.snapshot(); len(es) != 0 {
		t.Fatalf("%d readings stamped by an unsynchronised clock", len(es))
	}
	synced := floor.Add(time.Hour)
	clk.Set(synced)
	simWait(t, "readings once synchronised", func() bool { es, _ := app.snapshot(); return len(es) == 2 })
	if es, _ := app.snapshot(); es[0].TS != synced.UnixMilli() {
		t.Fatalf("first reading at %d, want %d", es[0].TS, synced.UnixMilli())
	}
}

// Real time, the real clock: 50 sensors at 20 Hz for about half a second.
func TestSimulateSourceRealClock(t *testing.T) {
	app := &simApp{}
	s := &Simulate{Name: "sim", Config: simulate.Config{Sensors: 50, Rate: 20, Amplitude: 1, Anomalies: []simulate.Kind{simulate.Spike}, AnomalyEvery: time.Second}}
	start := time.Now()
	stop := simStart(t, s, app)
	time.Sleep(500 * time.Millisecond)
	stop()
	el := time.Since(start)
	es, appends := app.snapshot()
	steps := len(es) / 50
	want := int(el.Seconds() * 20)
	if steps < want-6 || steps > want+2 {
		t.Errorf("%d steps in %v at 20 Hz", steps, el)
	}
	if appends > steps || appends > int(el/(100*time.Millisecond))+2 {
		t.Errorf("%d appends for %d steps in %v: want batches of 100 ms", appends, steps, el)
	}
	for i := 1; i < len(es); i++ {
		if es[i].TS < es[i-1].TS {
			t.Fatalf("event time goes back at %d", i)
		}
	}
}

func TestSimulateSourceBadConfig(t *testing.T) {
	s := &Simulate{Name: "sim", Config: simulate.Config{Rate: 5000}}
	if err := s.Run(context.Background(), &simApp{}); err == nil {
		t.Fatal("rate 5000 accepted")
	}
}
