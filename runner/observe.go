package runner

import (
	"sync/atomic"
	"time"

	"github.com/edged/edged/pipeline"
)

// Snapshot is a copy of the runner's and the engine's figures, taken on the
// runner's goroutine and published to an Observer for other goroutines
// (the HTTP endpoint). It is never changed once published.
type Snapshot struct {
	Taken time.Time // the runner's clock (Config.Now) when it was taken
	// Ready is true once the pipeline has caught up with the log after
	// recovery (the runner logged "ready").
	Ready       bool
	Offset      uint64 // the next log offset to process
	Processed   int64  // log entries processed since the start
	Checkpoints int64  // commits handed to the writer since the start (flushes and state checkpoints)
	States      int64  // state checkpoints among them
	LastPause   time.Duration
	MaxPause    time.Duration
	// LastCheckpoint is when the runner last took a checkpoint or found
	// that nothing had changed since the previous one; it stops moving
	// while a checkpoint cannot be committed (a full disk).
	LastCheckpoint time.Time
	Watermark      int64 // the combined watermark, Unix ms
	// StateResets counts operators reset at restore because their stored
	// state could not be restored (Runner.StateResets).
	StateResets int64
	Engine      pipeline.Stats
	Sources     []pipeline.SourceWM
}

// Observer receives the snapshots a runner publishes. Its methods are safe
// from any goroutine.
type Observer struct {
	r     *Runner
	every time.Duration
	snap  atomic.Pointer[Snapshot]
	ready atomic.Bool
	last  time.Time // the runner's goroutine only
}

// Observe makes r publish a Snapshot about once a second, and at once when
// it becomes ready, from its Run loop. Call it before Run (one Observer per
// Runner), and Close the Observer when done with the runner.
func (r *Runner) Observe() *Observer {
	o := &Observer{r: r, every: time.Second}
	r.obs.Store(o)
	return o
}

// Snapshot returns the latest snapshot, or nil before the first.
func (o *Observer) Snapshot() *Snapshot { return o.snap.Load() }

// Ready reports whether the runner has caught up with the log after
// recovery.
func (o *Observer) Ready() bool { return o.ready.Load() }

// LastCommit is Runner.LastCommit: how long the last checkpoint took to
// commit.
func (o *Observer) LastCommit() time.Duration { return o.r.LastCommit() }

// Close stops the publishing.
func (o *Observer) Close() { o.r.obs.CompareAndSwap(o, nil) }

// publish is called by Run's loop, on the runner's goroutine, with the
// loop's clock and whether the pipeline has caught up with the log. It
// takes a snapshot if the runner is observed and the last one is a second
// old, or the runner just became ready.
func (r *Runner) publish(now time.Time, caughtUp bool) {
	o := r.obs.Load()
	if o == nil {
		return
	}
	became := caughtUp && !o.ready.Load()
	if !became && !o.last.IsZero() && now.Sub(o.last) < o.every {
		return
	}
	o.last = now
	s := &Snapshot{
		Taken: now, Ready: caughtUp, Offset: r.offset, Processed: r.Processed, Checkpoints: r.Checkpoints, States: r.States,
		LastPause: r.LastPause, MaxPause: r.MaxPause, LastCheckpoint: r.lastCP,
		Watermark: r.eng.Watermark(), Engine: r.eng.Stats(), Sources: r.eng.SourceWatermarks(), StateResets: r.StateResets,
	}
	o.snap.Store(s)
	if became {
		o.ready.Store(true)
	}
}
