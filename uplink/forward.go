package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
)

// link is one connection of a fleet output (JetStream, Kafka) to its
// broker: one session of a forwarder. A link is used by the forwarder's
// goroutines at once: send from the live and the backlog lanes, acks from
// the collector.
type link interface {
	// send hands r to the broker without waiting for its acknowledgement.
	// r and its Body stay unchanged until the outcome is on acks. An error
	// ends the session.
	send(r *store.Record) error
	// acks delivers the outcome of every record sent, once each, in any
	// order: its outbox position and nil when the broker has it, or the
	// error that lost it. Its buffer holds at least the forwarder's
	// inflight, so the link never blocks on it.
	acks() <-chan linkAck
	// lost is closed when the connection is gone; err then says why.
	lost() <-chan struct{}
	err() error
	// close ends the connection; outcomes still pending are dropped.
	close()
}

// linkAck is the outcome of one record sent on a link.
type linkAck struct {
	pos uint64
	err error
}

// forwarder is the store-and-forward loop the fleet outputs share (the
// MQTT output has its own, with batches and packet ids): it reads the
// outbox after the output's durable cursor, keeps at most inflight records
// sent and not yet acknowledged, and moves the cursor only over the
// contiguous prefix of acknowledged positions (positions the quota dropped
// count as acknowledged). A lost connection, a refused record or a broker
// that stops answering ends the session; the next starts after a backoff
// of retryMin doubling up to 60 s (±25% jitter), for ever, until ctx ends.
//
// With liveFirst, each session sends the records committed after it
// started (live) at once and the backlog (the records before, not yet
// acknowledged) behind them at backlogRate records per second, oldest
// first; without, the backlog at backlogRate first, then the live
// records: everything in outbox order.
type forwarder struct {
	name        string
	store       *store.Store
	log         *slog.Logger
	inflight    int
	backlogRate float64
	liveFirst   bool
	retryMin    time.Duration
	// stall ends a session whose oldest record waits this long for its
	// acknowledgement. Default 30 s.
	stall time.Duration
	// where names the broker in logs, without credentials.
	where string
	dial  func(ctx context.Context) (link, error)
	stats *outStats
}

// run delivers until ctx ends.
func (f *forwarder) run(ctx context.Context) error {
	if f.inflight <= 0 {
		f.inflight = 256
	}
	if f.retryMin <= 0 {
		f.retryMin = time.Second
	}
	if f.stall <= 0 {
		f.stall = 30 * time.Second
	}
	log := f.log.With("output", f.name)
	// Positions acknowledged beyond the durable cursor survive reconnects,
	// so that live records acknowledged during a backlog are not sent
	// again by the next session.
	acks := &ackSet{}
	backoff := f.retryMin
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			f.stats.reconnects.Add(1)
			d := time.Duration(float64(backoff) * (0.75 + 0.5*rand.Float64()))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
			backoff = min(2*backoff, 60*time.Second)
		}
		l, err := f.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.stats.setErr(err)
			f.saveStatus(false, 0)
			log.Warn("upstream unreachable; records wait in the outbox", "server", f.where, "err", err, "retry_in", backoff)
			continue
		}
		log.Info("connected upstream", "server", f.where)
		backoff = f.retryMin
		err = f.session(ctx, l, acks, log)
		l.close()
		if err != nil && ctx.Err() == nil {
			f.stats.setErr(err)
			log.Warn("upstream connection lost; records wait in the outbox", "server", f.where, "err", err)
		}
	}
	return nil
}

// session delivers over one link until it fails or ctx ends.
func (f *forwarder) session(ctx context.Context, l link, acks *ackSet, log *slog.Logger) error {
	cur, err := f.store.Cursor(f.name)
	if err != nil {
		return err
	}
	acks.setFloor(cur)
	f.stats.cursor.Store(cur)
	boundary := max(cur, f.store.OutboxLastSeq()) // records after it are live
	f.stats.boundary.Store(boundary)
	if boundary > cur {
		if f.liveFirst {
			log.Info("replaying the backlog behind live records", "records", boundary-cur, "rate", f.backlogRate)
		} else {
			log.Info("replaying the backlog, then live records", "records", boundary-cur, "rate", f.backlogRate)
		}
	}
	// Without liveFirst the live lane waits for the whole backlog, so that
	// everything goes in outbox order; it does not start if the backlog
	// failed (a record after a lost one would reach the broker first).
	backlogDone := make(chan struct{})
	var backlogOK atomic.Bool
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan struct{}, f.inflight)
	errc := make(chan error, 3)
	var wg sync.WaitGroup
	// send hands recs to the link in order, each once a slot is free.
	send := func(recs []store.Record, tick <-chan time.Time) error {
		for i := range recs {
			if tick != nil {
				select {
				case <-sctx.Done():
					return nil
				case <-tick:
				}
			}
			select {
			case slots <- struct{}{}:
			case <-sctx.Done():
				return nil
			}
			if err := l.send(&recs[i]); err != nil {
				return err
			}
			f.stats.sent.Add(1)
		}
		return nil
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		errc <- f.collect(sctx, l, slots, acks)
	}()
	// Live: everything after the boundary, as it is committed.
	go func() {
		defer wg.Done()
		if !f.liveFirst {
			select {
			case <-backlogDone:
			case <-sctx.Done():
				return
			}
			if !backlogOK.Load() {
				return
			}
		}
		pos := boundary
		for {
			recs, err := next(sctx, f.store, pos, 256)
			if err != nil {
				if sctx.Err() == nil {
					errc <- err
				}
				return
			}
			acks.gaps(pos, recs)
			pos = recs[len(recs)-1].Pos
			if err := send(acks.unacked(recs), nil); err != nil {
				errc <- err
				return
			}
		}
	}()
	// Backlog: (cur, boundary], oldest first, rate limited.
	go func() {
		defer wg.Done()
		defer close(backlogDone)
		var tick <-chan time.Time
		if f.backlogRate > 0 && boundary > cur {
			t := time.NewTicker(time.Duration(float64(time.Second) / f.backlogRate))
			defer t.Stop()
			tick = t.C
		}
		for pos := cur; pos < boundary && sctx.Err() == nil; {
			recs, err := f.store.ReadOutboxAfter(pos, 1024)
			if err != nil {
				errc <- err
				return
			}
			if len(recs) == 0 || recs[0].Pos > boundary {
				acks.add(pos+1, boundary) // the quota dropped the rest
				break
			}
			recs = trimTo(recs, boundary)
			acks.gaps(pos, recs)
			pos = recs[len(recs)-1].Pos
			if err := send(acks.unacked(recs), tick); err != nil {
				errc <- err
				return
			}
		}
		if sctx.Err() != nil {
			return
		}
		backlogOK.Store(true)
		if boundary > cur {
			log.Info("backlog sent", "up_to", boundary)
		}
	}()
	err = <-errc
	cancel()
	wg.Wait()
	if err == nil && ctx.Err() == nil {
		err = errors.New("connection lost")
	}
	return err
}

// collect takes the link's acknowledgements, frees their slots and moves
// the durable cursor over the contiguous acknowledged prefix, at most
// every 200 ms and once more when the session ends.
func (f *forwarder) collect(ctx context.Context, l link, slots chan struct{}, acks *ackSet) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	saved := acks.floor()
	lastStatus, lastAcked := time.Now(), f.stats.acked.Load()
	progress := time.Now() // the last acknowledgement, or when nothing waited
	flush := func() error {
		if fl := acks.floor(); fl > saved {
			if err := f.store.SetCursor(f.name, fl); err != nil {
				return err
			}
			saved = fl
			f.stats.cursor.Store(fl)
		}
		if el := time.Since(lastStatus); el >= 5*time.Second {
			a := f.stats.acked.Load()
			f.saveStatus(true, float64(a-lastAcked)/el.Seconds())
			lastStatus, lastAcked = time.Now(), a
		}
		return nil
	}
	defer f.saveStatus(false, 0)
	defer flush()
	f.saveStatus(true, 0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.lost():
			return l.err()
		case a := <-l.acks():
			<-slots
			if a.err != nil {
				return a.err
			}
			acks.add(a.pos, a.pos)
			f.stats.acked.Add(1)
			progress = time.Now()
		case now := <-tick.C:
			if len(slots) == 0 {
				progress = now
			} else if now.Sub(progress) > f.stall {
				return fmt.Errorf("no acknowledgement from the server within %v", f.stall)
			}
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// saveStatus records the output's figures in the store for edged inspect.
func (f *forwarder) saveStatus(connected bool, rate float64) {
	saveStatus(f.store, f.name, f.stats.snapshot(), connected, rate)
}

// identity is the device and seq a record carries in its envelope (a
// relayed record keeps its own gateway's); device and the outbox position
// for a body that has none, which the runner never writes.
func identity(r *store.Record, device string) (string, uint64) {
	if e, ok := record.Parse(r.Body); ok {
		return e.Device, e.Seq
	}
	return device, r.Pos
}
