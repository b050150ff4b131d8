package store

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// AppendRequest is one source's contribution to a group commit.
type AppendRequest struct {
	Entries    []Entry
	Quarantine []QEntry
	// Source and Pos, when Source is set, save the source's position with
	// the entries (see Batch.Positions).
	Source string
	Pos    []byte
	// Done, when set, is called once the entries are durable (err nil) or
	// can never be (err set, at shutdown). It runs on the committer's
	// goroutine and must not block (an MQTT acknowledgement, a channel send
	// with room).
	Done func(first uint64, err error)
}

// AppenderOptions tunes group commit. Zero values mean the defaults.
type AppenderOptions struct {
	// Interval is the longest an appended entry waits for its commit.
	// Longer means fewer commits and less SD-card wear at low rates (each
	// commit rewrites a few 4 KiB pages whatever it holds; see
	// BENCHMARKS.md), and a wider window of unsynced input at a power cut.
	// Default 250 ms: under 3x the encoded size written per reading at
	// 1,000 readings/s.
	Interval time.Duration
	// AckInterval is the longest an entry waits when its request has a Done
	// callback (an MQTT message waiting for its acknowledgement: the broker
	// sends only a few unacknowledged messages at a time, so a long wait
	// would throttle the source). Default 20 ms.
	AckInterval time.Duration
	// MaxBatchBytes commits at once when this much is waiting. Default 1 MiB.
	MaxBatchBytes int
	// MaxQueueBytes bounds what may wait; Append blocks beyond it
	// (backpressure to the sources). Default 8 MiB.
	MaxQueueBytes int
	// RetryMax is the longest pause between retries of a failed commit (a
	// full disk). Default 5 s.
	RetryMax time.Duration
	Logger   *slog.Logger
}

// Appender groups appends from many sources into few transactions (group
// commit), so throughput does not pay one fsync per reading. Append may be
// called from any goroutine; Run commits, on its own goroutine, until its
// context ends.
type Appender struct {
	s    *Store
	opts AppenderOptions

	mu      sync.Mutex
	pending []AppendRequest
	sizes   []int // reqBytes of each pending request
	bytes   int
	acks    bool       // some pending request waits for its Done
	space   *sync.Cond // signalled when the queue shrinks
	closed  bool
	kick    chan struct{} // wakes Run: data arrived or a batch is full

	committed chan struct{} // 1-buffered: new log entries are durable

	// Stats, read with Stats.
	statMu  sync.Mutex
	commits int64
	entries int64
	lastErr error
	errAt   time.Time
}

// NewAppender returns an appender for s. Start its Run.
func (s *Store) NewAppender(opts AppenderOptions) *Appender {
	if opts.Interval <= 0 {
		opts.Interval = 250 * time.Millisecond
	}
	if opts.AckInterval <= 0 {
		opts.AckInterval = 20 * time.Millisecond
	}
	if opts.AckInterval > opts.Interval {
		opts.AckInterval = opts.Interval
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 1 << 20
	}
	if opts.MaxQueueBytes <= 0 {
		opts.MaxQueueBytes = 8 << 20
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Appender{s: s, opts: opts, kick: make(chan struct{}, 1), committed: make(chan struct{}, 1)}
	a.space = sync.NewCond(&a.mu)
	return a
}

// ErrClosed is returned by Append after Run has stopped.
var ErrClosed = errors.New("appender closed")

func reqBytes(r *AppendRequest) int {
	n := 64 + len(r.Pos)
	for i := range r.Entries {
		n += r.Entries[i].Msgsize()
	}
	for i := range r.Quarantine {
		n += 64 + len(r.Quarantine[i].Payload)
	}
	return n
}

// Append queues r for the next group commit. It blocks while the queue is
// full (the disk is slow or full) until there is room or ctx ends.
func (a *Appender) Append(ctx context.Context, r AppendRequest) error {
	n := reqBytes(&r)
	a.mu.Lock()
	for !a.closed && a.bytes > 0 && a.bytes+n > a.opts.MaxQueueBytes {
		if ctx.Err() != nil {
			a.mu.Unlock()
			return ctx.Err()
		}
		// Wake up now and then to look at ctx.
		stop := context.AfterFunc(ctx, func() { a.mu.Lock(); a.space.Broadcast(); a.mu.Unlock() })
		a.space.Wait()
		stop()
	}
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.pending = append(a.pending, r)
	a.sizes = append(a.sizes, n)
	a.bytes += n
	full := a.bytes >= a.opts.MaxBatchBytes
	first := len(a.pending) == 1
	firstAck := r.Done != nil && !a.acks
	a.acks = a.acks || r.Done != nil
	a.mu.Unlock()
	if full || first || firstAck {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// Committed is signalled (without blocking the committer) after each
// commit that added log entries.
func (a *Appender) Committed() <-chan struct{} { return a.committed }

// Run commits queued appends until ctx ends, then commits what is still
// queued and returns. A failed commit (a full disk) is retried with backoff;
// meanwhile the queue fills and Append blocks, so sources stop reading and
// nothing acknowledged is lost.
func (a *Appender) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer func() {
		a.mu.Lock()
		a.closed = true
		rest := a.pending
		a.pending, a.sizes = nil, nil
		a.space.Broadcast()
		a.mu.Unlock()
		for i := range rest {
			if rest[i].Done != nil {
				rest[i].Done(0, ErrClosed)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			// Final flush, retried a few times (a full disk may clear).
			var err error
			for i := 0; i < 3; i++ {
				if err = a.flushAll(); err == nil {
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return err
		case <-a.kick:
		}
		// Wait for the interval to gather more, unless the batch is full.
		// Gather more for the interval (the short one when an
		// acknowledgement waits), unless the batch is full.
		started := time.Now()
		for {
			a.mu.Lock()
			full := a.bytes >= a.opts.MaxBatchBytes
			wait := a.opts.Interval
			if a.acks {
				wait = a.opts.AckInterval
			}
			a.mu.Unlock()
			left := wait - time.Since(started)
			if full || left <= 0 {
				break
			}
			timer.Reset(left)
			select {
			case <-timer.C:
				continue
			case <-a.kick:
				// More arrived: maybe full, maybe waiting for an ack.
				if !timer.Stop() {
					<-timer.C
				}
				continue
			case <-ctx.Done():
				timer.Stop()
			}
			break
		}
		backoff := 50 * time.Millisecond
		limit := a.opts.MaxBatchBytes
		for {
			err := a.flush(limit)
			if err == nil {
				break
			}
			if Retryable(err) {
				// Some space may be back but not enough for the whole
				// queue: try smaller transactions, down to one request.
				limit = max(limit/2, 1)
			}
			a.opts.Logger.Error("ingest log commit failed; intake paused until it succeeds", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			if ctx.Err() != nil {
				break
			}
			backoff = min(2*backoff, a.opts.RetryMax)
		}
		// More may be waiting (a full batch left some behind).
		a.mu.Lock()
		more := len(a.pending) > 0
		a.mu.Unlock()
		if more {
			select {
			case a.kick <- struct{}{}:
			default:
			}
		}
	}
}

// flushAll commits everything queued, in transactions of MaxBatchBytes.
func (a *Appender) flushAll() error {
	for {
		a.mu.Lock()
		left := len(a.pending)
		a.mu.Unlock()
		if left == 0 {
			return nil
		}
		if err := a.flush(a.opts.MaxBatchBytes); err != nil {
			return err
		}
	}
}

// flush commits the oldest queued requests, as many as fit in limit bytes
// (at least one), in one transaction.
func (a *Appender) flush(limit int) error {
	a.mu.Lock()
	k, n := 0, 0
	for k < len(a.pending) && (k == 0 || n+a.sizes[k] <= limit) {
		n += a.sizes[k]
		k++
	}
	reqs := a.pending[:k:k]
	a.mu.Unlock()
	if len(reqs) == 0 {
		return nil
	}
	var b Batch
	for i := range reqs {
		r := &reqs[i]
		b.Entries = append(b.Entries, r.Entries...)
		b.Quarantine = append(b.Quarantine, r.Quarantine...)
		if r.Source != "" {
			if b.Positions == nil {
				b.Positions = map[string][]byte{}
			}
			b.Positions[r.Source] = r.Pos
		}
	}
	first, err := a.s.Append(&b)
	a.statMu.Lock()
	if err != nil {
		a.lastErr, a.errAt = err, time.Now()
		a.statMu.Unlock()
		return err
	}
	a.commits++
	a.entries += int64(len(b.Entries))
	a.lastErr = nil
	a.statMu.Unlock()

	a.mu.Lock()
	a.pending = a.pending[len(reqs):]
	a.sizes = a.sizes[len(reqs):]
	if len(a.pending) == 0 {
		a.pending, a.sizes = nil, nil
	}
	a.acks = false
	for i := range a.pending {
		a.acks = a.acks || a.pending[i].Done != nil
	}
	a.bytes -= n
	a.space.Broadcast()
	a.mu.Unlock()

	off := first
	for i := range reqs {
		if reqs[i].Done != nil {
			reqs[i].Done(off, nil)
		}
		off += uint64(len(reqs[i].Entries))
	}
	if len(b.Entries) > 0 {
		select {
		case a.committed <- struct{}{}:
		default:
		}
	}
	return nil
}

// AppenderStats are the appender's counters.
type AppenderStats struct {
	Commits int64
	Entries int64
	LastErr error // the last commit error, nil once a commit succeeds again
	ErrAt   time.Time
}

// Stats returns the counters.
func (a *Appender) Stats() AppenderStats {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	return AppenderStats{Commits: a.commits, Entries: a.entries, LastErr: a.lastErr, ErrAt: a.errAt}
}
