package runner

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

func flushRunner(t *testing.T, st *store.Store, maxPending int, ws []pipeline.WindowSpec) *Runner {
	t.Helper()
	r, err := New(st, nil, Config{Device: "gw", CheckpointInterval: time.Hour, StateInterval: time.Hour, MaxPending: maxPending,
		Engine: pipeline.Config{DefaultOutOfOrderness: 2 * time.Second, Windows: ws}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// crashRun processes the log in steps of `every` entries, flushing the
// records after each step and taking a state checkpoint after every
// stateEvery-th step, until it processed at least upTo entries; then it
// stops as kill -9 would after its last commit (records produced since are
// lost).
func crashRun(t *testing.T, r *Runner, every, stateEvery, upTo int) {
	t.Helper()
	ctx := context.Background()
	r.startWriter()
	r.ctx = ctx
	for i := 1; r.Processed < int64(upTo); i++ {
		n, err := r.step(every)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if err := r.checkpoint(ctx, i%stateEvery == 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCrashBetweenFlushAndState: records are committed ahead of the state
// (flushes, some in the middle of an entry that fires many windows) and
// the runner is killed at many points, once more during the replay of
// the flushed stretch. After recovery the outbox holds exactly what an
// uninterrupted run commits: same records, same seq, none twice.
func TestCrashBetweenFlushAndState(t *testing.T) {
	const keys, secs = 40, 45
	ref, _ := storetest.MustOpen(t, nil)
	fill(t, ref, keys, secs)
	drain(t, flushRunner(t, ref, 4096, windows(t)))
	want := readOutbox(t, ref)
	if len(want) < keys*3 {
		t.Fatalf("reference run: %d records", len(want))
	}
	suppressed := int64(0)
	for _, c := range []struct{ every, stateEvery, upTo, again, maxPending int }{
		{97, 1000, 1, 0, 5},     // no state checkpoint: replay from 0
		{97, 3, 700, 0, 5},      // state at 291 and 582, records flushed to 679
		{13, 7, 1234, 0, 7},     // mid-entry flushes (7 of the 40 windows an entry fires)
		{400, 1000, 1700, 0, 3}, // flushes only, far ahead
		{97, 4, 1450, 200, 5},   // killed again while replaying the flushed stretch
		{1, 50, 1203, 0, 1},     // every record its own flush
	} {
		t.Run(fmt.Sprintf("every%d_state%d_upto%d_again%d", c.every, c.stateEvery, c.upTo, c.again), func(t *testing.T) {
			st, _ := storetest.MustOpen(t, nil)
			fill(t, st, keys, secs)
			crashRun(t, flushRunner(t, st, c.maxPending, windows(t)), c.every, c.stateEvery, c.upTo)
			if c.again > 0 {
				r := flushRunner(t, st, c.maxPending, windows(t))
				if r.skip == nil {
					t.Fatal("no flushed stretch to replay")
				}
				crashRun(t, r, 50, 1, c.again) // state checkpoints refused while skipping
			}
			r := flushRunner(t, st, c.maxPending, windows(t))
			drain(t, r)
			suppressed += r.Suppressed
			got := readOutbox(t, st)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("%d records, want %d; first difference at %d:\n got %s\nwant %s", len(got), len(want), i, got[i], want[i])
					}
				}
				t.Fatalf("%d records, want %d", len(got), len(want))
			}
			if f, err := st.Flushed(); err != nil || f != nil {
				t.Fatalf("after the final checkpoint the flush head is %+v (%v), want none", f, err)
			}
		})
	}
	if suppressed == 0 {
		t.Fatal("no replay suppressed a committed record: the flush path was not exercised")
	}
}

// TestFlushThenConfigChange: killed after a flush, restarted with another
// window: seq continues after the committed records, gapless, none twice.
func TestFlushThenConfigChange(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	fill(t, st, 20, 40)
	crashRun(t, flushRunner(t, st, 3, windows(t)), 50, 1000, 500)
	committed := len(readOutbox(t, st))
	if committed == 0 {
		t.Fatal("nothing flushed before the kill")
	}
	ws := windows(t)
	ws[0].Size = 5 * time.Second
	ws[0].Name = "t5s"
	drain(t, flushRunner(t, st, 3, ws))
	got := readOutbox(t, st)
	if len(got) <= committed {
		t.Fatalf("%d records after the restart, %d before", len(got), committed)
	}
	for i, b := range got {
		if !strings.Contains(b, fmt.Sprintf(`"seq":%d,`, i+1)) {
			t.Fatalf("record %d: %s", i, b)
		}
	}
	if !strings.Contains(got[committed], `"window":"t5s"`) {
		t.Fatalf("first record after the restart: %s", got[committed])
	}
}

// TestAfterStateRunsPerStateCheckpoint: the hook (the daemon frees memory
// there) runs after each committed state checkpoint, not after flushes.
func TestAfterStateRunsPerStateCheckpoint(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	fill(t, st, 20, 30)
	var calls atomic.Int64
	r, err := New(st, nil, Config{Device: "gw", CheckpointInterval: time.Hour, StateInterval: time.Hour, MaxPending: 5,
		AfterState: func() { calls.Add(1) },
		Engine:     pipeline.Config{DefaultOutOfOrderness: 2 * time.Second, Windows: windows(t)}})
	if err != nil {
		t.Fatal(err)
	}
	crashRun(t, r, 100, 2, 400) // flushes after every step, state after every 2nd
	if r.States != 2 || r.Checkpoints <= r.States {
		t.Fatalf("%d commits, %d with state", r.Checkpoints, r.States)
	}
	if n := calls.Load(); n != r.States {
		t.Fatalf("AfterState ran %d times for %d state checkpoints", n, r.States)
	}
}

// TestBurstCommittedInBoundedFlushes: records are committed MaxPending at
// a time as they are produced, in the middle of the entry whose watermark
// fires many windows, without waiting for a checkpoint.
func TestBurstCommittedInBoundedFlushes(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	fill(t, st, 40, 25) // each 10 s boundary fires 40 windows in one entry
	r := flushRunner(t, st, 7, windows(t))
	r.startWriter()
	r.ctx = context.Background()
	for {
		n, err := r.step(4096)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if err := r.waitWriter(r.ctx); err != nil {
		t.Fatal(err)
	}
	committed := len(readOutbox(t, st))
	if committed == 0 || committed%7 != 0 || len(r.pending) >= 7 {
		t.Fatalf("%d records committed without a checkpoint, %d pending: want flushes of 7", committed, len(r.pending))
	}
	if want := int(r.nextSeq - 1); committed+len(r.pending) != want {
		t.Fatalf("%d committed + %d pending, %d produced", committed, len(r.pending), want)
	}
	if r.States != 0 {
		t.Fatalf("%d state checkpoints", r.States)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
