// Package runner drives the pipeline in the daemon: it reads the ingest log
// in offset order, feeds the engine, collects the records, and commits
// them. Every CheckpointInterval it commits the records produced since the
// previous commit (a flush: records and the point of the log they cover,
// one transaction); every StateInterval, and at a graceful stop, a state
// checkpoint: the log offset, the state that changed since the previous
// state checkpoint and the records produced since the previous commit, one
// transaction. A flush also happens as soon as MaxPending records wait, so
// a burst of firings (100,000 windows closing at once) is not held in
// memory.
//
// # Exactly once
//
// The log is the pipeline's only input, so a run is a deterministic
// function of the log. A checkpoint at offset O stores the engine's state
// after entries [0, O) and the records they produced, with their seq. After
// a crash the runner restores the newest checkpoint and replays from O: the
// records it produces again get the same seq and id, and nothing before O
// is produced twice. The records flushed after O were produced by that
// same deterministic run: the replay produces them again, with the same
// seq, and commits none of them until it passes the flush's point
// (store.FlushMeta); from there on it commits what it produces. A flush
// costs the records only; the state, which for many keys is far larger
// than the records (every key changes every second at 1 Hz), is written
// once per StateInterval, which bounds the replay after a crash.
// Processing-time decisions that change results (idleness) are written
// into the log as entries, so a replay takes them at the same place. So
// are processing-time ticks: while every source is idle (the watermark
// stands still) and a detector with processing_time (deadman) has a key
// due, the runner appends a store.EntryTick carrying the wall clock, and
// the engine runs those keys at that time when it reads the entry, live or
// in a replay. Early results (final: false) depend on
// processing time and never enter the outbox.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/record"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
)

// Config configures a Runner.
type Config struct {
	Device             string
	Engine             pipeline.Config
	CheckpointInterval time.Duration // records are committed this often; default 1 s
	// StateInterval is how often a checkpoint includes the operators'
	// state; default (and at least) CheckpointInterval. Longer writes less
	// (SD-card wear) and makes the replay after a crash longer.
	StateInterval time.Duration
	// MaxPending flushes the records as soon as this many wait for their
	// commit; default 4096.
	MaxPending int
	// AfterState, if set, runs on the writer's goroutine after each state
	// checkpoint is committed (the daemon returns the commit's memory to
	// the system there).
	AfterState func()
	// IdleTimeout marks a source idle when it delivered nothing for this
	// long (processing time). 0 disables idleness.
	IdleTimeout time.Duration
	// Live receives records that do not go to the outbox (early results),
	// on the runner's goroutine. Optional.
	Live   func(r *pipeline.Record)
	Logger *slog.Logger
	Now    func() time.Time
}

// Runner owns the engine. Run and Drain must be called from one goroutine.
type Runner struct {
	cfg Config
	obs atomic.Pointer[Observer] // set by Observe, read by publish
	st  *store.Store
	app *store.Appender
	eng *pipeline.Engine
	log *slog.Logger

	offset  uint64 // next log offset to process
	nextSeq uint64
	pending []store.Record // produced since the last commit
	dropOps []string       // stored state to delete with the next checkpoint
	// resetAll: the stored state could not be used at all; every stored
	// operator is dropped with the next checkpoint.
	resetAll bool
	lastCP   time.Time
	lastSt   time.Time // of the last state checkpoint
	stOff    uint64    // offset of the last state checkpoint handed to the writer
	inEntry  uint64    // records produced so far by the entry being processed
	// skip, after a crash, is the point up to which the records the
	// replay produces were committed already (a flush); nil past it.
	skip  *store.FlushMeta
	batch []store.Entry   // entries read by step, processed outside the read transaction
	ctx   context.Context // of Run or Drain, for flushes from emit
	err   error           // a flush from emit that failed: step returns it

	lastIngest map[string]int64 // per source: ingest time of its newest entry
	idleSent   map[string]bool  // idle marker written, no reading since
	lastTick   int64            // wall clock of the last tick written, Unix ms

	curIngest int64 // ingest time of the entry being processed
	buf       []byte

	cpCh     chan *store.Checkpoint
	cpDone   chan error
	cpBusy   bool
	quit     chan struct{} // closed to stop retrying a checkpoint at shutdown
	quitOnce sync.Once

	commitNs atomic.Int64 // duration of the last checkpoint commit
	started  time.Time

	// Stats.
	Processed   int64
	Checkpoints int64         // commits handed to the writer: flushes and state checkpoints
	States      int64         // state checkpoints among them
	Suppressed  int64         // records a replay produced again that were committed before the crash
	StateResets int64         // operators (or, for an undecodable header, whole states) reset at restore
	LastPause   time.Duration // the pipeline's pause for the last checkpoint
	MaxPause    time.Duration
}

// New restores the newest checkpoint of st (if any) into a new engine and
// returns a runner positioned at its offset.
func New(st *store.Store, app *store.Appender, cfg Config) (*Runner, error) {
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = time.Second
	}
	cfg.StateInterval = max(cfg.StateInterval, cfg.CheckpointInterval)
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Engine.Incremental = true
	r := &Runner{cfg: cfg, st: st, app: app, log: cfg.Logger, nextSeq: 1,
		lastIngest: map[string]int64{}, idleSent: map[string]bool{}}
	now := cfg.Now()
	eng, err := pipeline.New(cfg.Engine, pipeline.SinkFunc(r.emit), now.UnixMilli())
	if err != nil {
		return nil, err
	}
	r.eng = eng
	start := time.Now()
	r.started = start
	meta, err := st.CheckpointMeta()
	if err != nil {
		return nil, err
	}
	if meta != nil {
		keys := r.restore(meta)
		r.offset, r.nextSeq = meta.Offset, meta.NextSeq
		for _, name := range eng.Sources() {
			r.idleSent[name] = eng.SourceIdle(name)
		}
		r.log.Info("restored checkpoint", "offset", meta.Offset, "next_seq", meta.NextSeq, "keys", keys,
			"age", now.Sub(time.UnixMilli(meta.Time)).Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond))
	} else {
		r.offset = st.LogFirst()
		r.nextSeq = 1
	}
	// Stored state of operators the engine does not know any more.
	ops, err := st.StateOps()
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, w := range cfg.Engine.Windows {
		known[w.Name] = true
	}
	for _, d := range cfg.Engine.Detectors {
		if d.Detector != nil {
			known["detector/"+d.Detector.Name()] = true
		}
	}
	for _, op := range ops {
		if (!known[op] || r.resetAll) && !contains(r.dropOps, op) {
			r.dropOps = append(r.dropOps, op)
		}
	}
	if first := st.LogFirst(); r.offset < first {
		return nil, fmt.Errorf("checkpoint at log offset %d but the log starts at %d: entries were lost", r.offset, first)
	}
	f, err := st.Flushed()
	if err != nil {
		return nil, err
	}
	if f != nil && (f.Offset > r.offset || (f.Offset == r.offset && f.Within > 0)) {
		r.skip = f
		r.log.Info("records up to a later point of the log were committed before the restart: the replay commits them once only",
			"state_offset", r.offset, "records_offset", f.Offset, "next_seq", f.NextSeq)
	}
	nowMs := now.UnixMilli()
	for _, s := range cfg.Engine.Sources {
		r.lastIngest[s.Name] = nowMs
	}
	r.stOff = r.offset
	r.lastCP, r.lastSt = now, now
	return r, nil
}

// restore loads the checkpoint's state into the engine and returns the
// number of stored keys. A config change is routine: the state of an
// operator that is gone, or whose kind or shape changed, is dropped, each
// logged once. State that cannot be decoded is never a reason to stop: a
// key that does not decode resets its operator, a header that does not
// decode resets them all (the run goes on from the checkpoint's offset and
// seq); each is logged and counted in StateResets.
func (r *Runner) restore(meta *store.CheckpointMeta) (keys int) {
	dropped, err := r.eng.BeginRestore(meta.Engine)
	if err != nil {
		r.StateResets++
		r.resetAll = true
		r.log.Error("the checkpointed engine state cannot be decoded: every window and detector starts empty, the log is replayed from the checkpoint's offset and seq continues",
			"offset", meta.Offset, "err", err)
		return 0
	}
	for _, d := range dropped {
		if d.Op == "" {
			r.log.Warn("stored source state dropped: "+d.Reason, "source", d.Source)
			continue
		}
		r.log.Warn("operator state dropped: "+d.Reason, "operator", d.Op)
		r.dropOps = append(r.dropOps, d.Op)
	}
	var resets []*pipeline.StateError
	err = r.st.LoadState(func(op string, key, value []byte) error {
		keys++
		var se *pipeline.StateError
		if err := r.eng.RestoreKey(op, value); errors.As(err, &se) {
			resets = append(resets, se)
		} else if err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		// The state bucket itself cannot be read (bbolt refuses it): the
		// same as a header that does not decode.
		r.StateResets++
		r.resetAll = true
		r.log.Error("the checkpointed state cannot be read: every window and detector starts empty, the log is replayed from the checkpoint's offset and seq continues",
			"offset", meta.Offset, "err", err)
		r.eng.ResetState()
		return 0
	}
	for _, se := range resets {
		r.StateResets++
		r.log.Error("operator state cannot be restored: the operator is reset and starts empty", "operator", se.Op, "key", se.Key, "err", se.Err)
		if !contains(r.dropOps, se.Op) {
			r.dropOps = append(r.dropOps, se.Op)
		}
	}
	return keys
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// LastCommit returns how long the last checkpoint took to commit (on the
// writer's goroutine, not a pause of the pipeline).
func (r *Runner) LastCommit() time.Duration { return time.Duration(r.commitNs.Load()) }

// Offset returns the next log offset the runner will process.
func (r *Runner) Offset() uint64 { return r.offset }

// Engine returns the engine, for stats.
func (r *Runner) Engine() *pipeline.Engine { return r.eng }

// emit receives the engine's records.
func (r *Runner) emit(rec *pipeline.Record) {
	if rec.Kind == record.KindWindow && !rec.Final {
		// An early result: processing-time driven, for dashboards only.
		if r.cfg.Live != nil {
			r.cfg.Live(rec)
		}
		return
	}
	idx := r.inEntry
	r.inEntry++
	if r.skip != nil {
		if r.offset < r.skip.Offset || (r.offset == r.skip.Offset && idx < r.skip.Within) {
			// Committed before the crash, with this seq: produced again
			// only to bring the state to where the flush was.
			r.nextSeq++
			r.Suppressed++
			if r.cfg.Live != nil {
				r.cfg.Live(rec)
			}
			return
		}
		r.endSkip()
	}
	id := rec.ID(r.cfg.Device)
	seq := r.nextSeq
	r.nextSeq++
	body := record.AppendEnvelope(rec.AppendJSON(r.buf[:0]), r.cfg.Device, seq, id)
	r.buf = body
	r.pending = append(r.pending, store.Record{
		ID: id, Kind: uint8(rec.Kind), Name: rec.Name, Key: rec.Key,
		Created: r.curIngest, Body: append([]byte(nil), body...),
	})
	if r.cfg.Live != nil {
		r.cfg.Live(rec)
	}
	if len(r.pending) >= r.cfg.MaxPending && r.err == nil {
		r.err = r.flush(r.ctx)
	}
}

// endSkip ends the replay of records committed before a crash: the next
// record is the first the outbox does not have. A run is a function of the
// log and the config, so the replay numbers them as the flush did; if it
// did not (the config changed between the crash and the restart), seq
// continues after the committed ones, gapless, and the records of the
// replayed stretch are those of the old config.
func (r *Runner) endSkip() {
	f := r.skip
	r.skip = nil
	if r.nextSeq != f.NextSeq {
		r.log.Warn("the replay after the restart produced other records than the run before the crash (was the config changed?): seq continues after the committed ones",
			"offset", f.Offset, "replayed_next_seq", r.nextSeq, "committed_next_seq", f.NextSeq)
		r.nextSeq = f.NextSeq
	}
	r.log.Info("replay passed the records committed before the restart", "offset", r.offset, "next_seq", r.nextSeq, "suppressed", r.Suppressed)
}

// step processes up to max log entries; it returns how many.
//
// The entries are copied out of the log's read transaction first: a flush
// from emit waits for the writer, whose commit may have to grow (remap)
// the file, which waits for every read transaction to end.
func (r *Runner) step(max int) (int, error) {
	var rd sensors.Reading
	r.batch = r.batch[:0]
	_, rerr := r.st.ReadLog(r.offset, max, func(off uint64, e *store.Entry) error {
		if want := r.offset + uint64(len(r.batch)); off != want {
			return fmt.Errorf("log gap: expected offset %d, got %d", want, off)
		}
		r.batch = append(r.batch, *e)
		return nil
	})
	n := 0
	for i := range r.batch {
		e := &r.batch[i]
		off := r.offset
		r.curIngest = e.Ingest
		r.inEntry = 0
		switch e.Kind {
		case store.EntryReading:
			rd = sensors.Reading{Source: e.Source, Sensor: e.Sensor, Metric: e.Metric, Value: e.Value, TS: e.TS}
			if err := r.eng.Process(&rd, e.Ingest); err != nil {
				// Decoders never log such a reading; count and go on.
				r.log.Debug("reading skipped", "offset", off, "err", err)
			}
			r.lastIngest[e.Source] = max64(r.lastIngest[e.Source], e.Ingest)
			r.idleSent[e.Source] = false
		case store.EntryIdle:
			r.eng.MarkIdle(e.Source, e.Ingest)
		case store.EntryTick:
			r.eng.ProcessingTick(e.Ingest)
		}
		r.offset = off + 1
		r.inEntry = 0
		n++
		r.Processed++
		if r.skip != nil && (r.offset > r.skip.Offset || (r.offset == r.skip.Offset && r.skip.Within == 0)) {
			r.endSkip()
		}
		if err := r.err; err != nil {
			// The records stay pending: the next commit takes them.
			r.err = nil
			clear(r.batch[i+1:])
			return n, err
		}
	}
	clear(r.batch) // drop the strings
	return n, rerr
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Run processes the log as it grows and checkpoints every
// CheckpointInterval, until ctx ends. It then returns without a final
// checkpoint: call Drain once the sources and the appender have stopped.
func (r *Runner) Run(ctx context.Context) error {
	r.startWriter()
	r.ctx = ctx
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	caughtUp := false
	for {
		n, err := r.step(4096)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopping while a flush waited: Drain goes on
			}
			return err
		}
		now := r.cfg.Now()
		r.publish(now, caughtUp)
		if now.Sub(r.lastCP) >= r.cfg.CheckpointInterval {
			if err := r.checkpoint(ctx, false); err != nil {
				if ctx.Err() != nil {
					return nil // stopping while a checkpoint waited: Drain decides
				}
				return err
			}
		}
		if n > 0 {
			continue
		}
		if !caughtUp {
			caughtUp = true
			r.log.Info("ready: pipeline caught up with the log", "offset", r.offset,
				"replayed", r.Processed, "since_start", time.Since(r.started).Round(time.Millisecond))
			r.publish(now, true)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.app.Committed():
		case <-tick.C:
			r.eng.Tick(r.cfg.Now().UnixMilli())
			r.idle(ctx)
			r.tick(ctx)
		}
	}
}

// idle writes an idle marker for each source silent for IdleTimeout. It
// returns how many it handed to the appender.
func (r *Runner) idle(ctx context.Context) (n int) {
	if r.cfg.IdleTimeout <= 0 || r.app == nil {
		return 0
	}
	now := r.cfg.Now().UnixMilli()
	for name, last := range r.lastIngest {
		if r.idleSent[name] || now-last < r.cfg.IdleTimeout.Milliseconds() {
			continue
		}
		r.idleSent[name] = true
		r.log.Info("source idle: it no longer holds back the watermark", "source", name, "silent_for", time.Duration(now-last)*time.Millisecond)
		err := r.app.Append(ctx, store.AppendRequest{Entries: []store.Entry{{Kind: store.EntryIdle, Source: name, Ingest: now}}})
		if err != nil {
			r.idleSent[name] = false
			continue
		}
		n++
	}
	return n
}

// TickEvery is the shortest interval between two processing-time ticks
// the runner writes into the log.
const TickEvery = time.Second

// tick writes a processing-time tick into the log when, as far as the log
// processed so far tells, every source is idle and a detector with
// processing_time has a key due at the wall clock (Engine.ProcessingDue):
// at most one every TickEvery, and none while nothing is due, so a stopped
// gateway's log grows by one entry per alert, not per second. Whether the
// tick does anything is decided when the engine reads it, in log order. It
// reports whether it handed a tick to the appender.
func (r *Runner) tick(ctx context.Context) bool {
	if r.app == nil {
		return false
	}
	now := r.cfg.Now().UnixMilli()
	if r.eng.ProcessingDue() > now || (r.lastTick != 0 && now-r.lastTick < TickEvery.Milliseconds() && now >= r.lastTick) {
		return false
	}
	r.lastTick = now
	err := r.app.Append(ctx, store.AppendRequest{Entries: []store.Entry{{Kind: store.EntryTick, Ingest: now}}})
	if err != nil {
		r.log.Debug("processing-time tick not written", "err", err)
		return false
	}
	return true
}

// Drain processes the rest of the log and takes a final checkpoint. Call it
// after the sources and the appender have stopped (graceful shutdown).
func (r *Runner) Drain(ctx context.Context) error {
	r.startWriter()
	r.ctx = ctx
	for {
		n, err := r.step(4096)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	// When ctx ends, a checkpoint the writer keeps retrying (a full disk)
	// is given up: recovery replays from the previous one.
	stop := context.AfterFunc(ctx, r.abort)
	defer stop()
	if err := r.checkpoint(ctx, true); err != nil {
		return err
	}
	return r.waitWriter(ctx)
}

// abort makes the writer give up retrying its checkpoint.
func (r *Runner) abort() { r.quitOnce.Do(func() { close(r.quit) }) }

// checkpoint hands the records produced since the last commit to the
// writer, with the state that changed since the last state checkpoint when
// StateInterval has passed, or when state is set (a graceful stop). The
// pipeline pauses only to encode the changed keys (and to wait for the
// previous commit, if it is still being written).
func (r *Runner) checkpoint(ctx context.Context, state bool) error {
	now := r.cfg.Now()
	if !state && len(r.dropOps) == 0 && now.Sub(r.lastSt) < r.cfg.StateInterval {
		r.lastCP = now
		return r.flush(ctx)
	}
	if r.skip != nil {
		// Still below records committed before the crash: a state
		// checkpoint here would be older than they are.
		r.lastCP = now
		return nil
	}
	start := time.Now()
	if err := r.waitWriter(ctx); err != nil {
		return err
	}
	r.lastCP, r.lastSt = now, now
	if r.offset == r.stOff && len(r.pending) == 0 && len(r.dropOps) == 0 && !state {
		return nil
	}
	var d pipeline.Delta
	if err := r.eng.AppendDelta(&d); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	cp := &store.Checkpoint{
		Meta:    store.CheckpointMeta{Offset: r.offset, NextSeq: r.nextSeq, Time: r.lastCP.UnixMilli(), Engine: d.Header},
		DropOps: r.dropOps,
		Records: r.pending,
	}
	cp.Meta.Keys = int64(r.eng.Stats().Keys)
	cp.State = make([]store.StateOp, len(d.Keys))
	for i, k := range d.Keys {
		cp.State[i] = store.StateOp{Op: k.Op, Key: k.Key, Value: k.Value}
	}
	r.dropOps = nil
	r.pending = nil
	r.stOff = r.offset
	r.cpBusy = true
	r.cpCh <- cp
	r.LastPause = time.Since(start)
	r.MaxPause = max(r.MaxPause, r.LastPause)
	r.Checkpoints++
	r.States++
	return nil
}

// flush hands the records produced since the last commit to the writer,
// without state (a store.FlushMeta marks how far they go), if there are
// any. It may run in the middle of an entry (from emit).
func (r *Runner) flush(ctx context.Context) error {
	if len(r.pending) == 0 { // always so while r.skip is set
		return nil
	}
	if ctx == nil {
		ctx = context.Background()
	}
	r.startWriter()
	if err := r.waitWriter(ctx); err != nil {
		return err
	}
	cp := &store.Checkpoint{
		Records: r.pending,
		Flush:   &store.FlushMeta{Offset: r.offset, Within: r.inEntry, NextSeq: r.nextSeq, Time: r.cfg.Now().UnixMilli()},
	}
	r.pending = nil
	r.cpBusy = true
	r.cpCh <- cp
	r.Checkpoints++
	return nil
}

func (r *Runner) startWriter() {
	if r.cpCh != nil {
		return
	}
	ch := make(chan *store.Checkpoint)
	r.cpCh = ch
	r.cpDone = make(chan error, 1)
	r.quit = make(chan struct{})
	go func() {
		for cp := range ch { // not r.cpCh: Close sets it to nil
			start := time.Now()
			err := r.commit(cp)
			d := time.Since(start)
			r.commitNs.Store(int64(d))
			if cp.Flush != nil {
				r.log.Debug("records committed", "offset", cp.Flush.Offset, "records", len(cp.Records), "took", d)
			} else {
				r.log.Debug("checkpoint committed", "offset", cp.Meta.Offset, "keys", len(cp.State), "records", len(cp.Records), "took", d)
				if err == nil && r.cfg.AfterState != nil {
					cp = nil // its buffers are garbage now
					r.cfg.AfterState()
				}
			}
			r.cpDone <- err
		}
	}()
}

// commit writes a checkpoint, retrying while the disk is full: the
// changes it holds exist nowhere else (the engine forgot them), so it is
// not dropped while edged runs; meanwhile the pipeline waits at its next
// checkpoint and the log keeps the input. At shutdown it gives up: recovery
// then replays from the previous checkpoint, which loses nothing.
func (r *Runner) commit(cp *store.Checkpoint) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := r.st.Commit(cp)
		if err == nil {
			if attempt > 1 {
				r.log.Info("checkpoint committed after retries", "attempts", attempt)
			}
			return nil
		}
		if !store.Retryable(err) {
			return err
		}
		r.log.Error("checkpoint failed; pipeline paused until it succeeds", "err", err, "retry_in", backoff)
		select {
		case <-r.quit:
			return fmt.Errorf("checkpoint not committed at shutdown (recovery replays from the previous one): %w", err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// waitWriter waits for the checkpoint being written, if any, or until ctx
// ends (then the writer is still busy).
func (r *Runner) waitWriter(ctx context.Context) error {
	if !r.cpBusy {
		return nil
	}
	select {
	case err := <-r.cpDone:
		r.cpBusy = false
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the checkpoint writer: it waits for a checkpoint being
// written, giving up one the writer keeps retrying. Call after Drain (or
// after Run when no final checkpoint is wanted).
func (r *Runner) Close() error {
	if r.cpCh == nil {
		return nil
	}
	if r.cpBusy {
		r.abort()
	}
	err := r.waitWriter(context.Background())
	close(r.cpCh)
	r.cpCh = nil
	return err
}
