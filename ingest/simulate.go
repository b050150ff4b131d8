package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/edged/edged/internal/simulate"
	"github.com/edged/edged/store"
)

// Simulate is a source of synthetic sensors (internal/simulate), paced in
// real time: the first step's event time is the gateway's clock when Run
// starts, and step k is generated when the clock reaches its event time
// (Start + k/rate), so readings carry the gateway's clock at generation, as
// a sensor stamping its own readings would. The values depend only on the
// config and the step index (same seed, same values; restarting starts
// again at step 0).
//
// Readings due are generated and appended in one batch every Tick at most
// (one append per second for sensors at 1 Hz). A simulator does not buffer:
// if the gateway's clock jumps by more than MaxLag either way (NTP setting
// it after a boot at 1970, a suspended machine, appends blocked by a full
// disk), it skips to the present and logs it. While Clock says the clock is
// unsynchronised, nothing is generated (SEMANTICS section 1: readings must
// not be stamped by a wrong clock).
type Simulate struct {
	Name   string
	Config simulate.Config // Start is ignored: the clock at Run sets it
	// Tick is the shortest time between two appends. Default 100 ms.
	Tick time.Duration
	// MaxLag is how far behind or ahead of the clock the generator may be
	// before it skips to the present. Default 5 s.
	MaxLag time.Duration
	Logger *slog.Logger
	Now    func() time.Time
	// Clock decides when the gateway's clock can stamp readings (nil: always).
	Clock *Clock
}

// simBatch bounds the entries of one append.
const simBatch = 8192

// Run generates readings until ctx ends. Each injected anomaly is logged
// ("simulated anomaly", at info) with its label once its readings were
// appended.
func (s *Simulate) Run(ctx context.Context, app Appender) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := s.Now
	if now == nil {
		now = time.Now
	}
	tick := s.Tick
	if tick <= 0 {
		tick = 100 * time.Millisecond
	}
	maxLag := s.MaxLag
	if maxLag <= 0 {
		maxLag = 5 * time.Second
	}
	maxLag = max(maxLag, 2*time.Duration(float64(time.Second)/max(s.Config.Rate, 1e-9)))
	cfg := s.Config
	cfg.Start = 0
	g, err := simulate.New(cfg)
	if err != nil {
		return fmt.Errorf("source %q: %w", s.Name, err)
	}
	var labels []simulate.Label
	report := func() {
		labels = g.Labels(labels[:0])
		for _, l := range labels {
			log.Info("simulated anomaly", "source", s.Name, "sensor", l.Sensor, "kind", l.Kind, "start", l.Start, "end", l.End, "readings", l.Readings)
		}
	}

	// Wait for a clock that can stamp readings, then anchor step 0 at it.
	waited := false
	for {
		t := now()
		if s.Clock.Synced(t) {
			g.Rebase(t.UnixMilli())
			if waited {
				log.Info("gateway clock synchronised; simulator starts", "source", s.Name, "now", t.UTC().Format(time.RFC3339))
			}
			break
		}
		if !waited {
			log.Warn("gateway clock not synchronised; simulator waits for it", "source", s.Name, "now", t.UTC().Format(time.RFC3339))
			waited = true
		}
		if !Sleep(ctx, time.Second) {
			return nil
		}
	}
	log.Info("simulator started", "source", s.Name, "sensors", len(g.Names()), "rate", g.Config().Rate, "signal", g.Config().Signal)

	var buf []simulate.Reading
	for ctx.Err() == nil {
		t := now()
		nowMs := t.UnixMilli()
		lag := time.Duration(nowMs-g.NextTS()) * time.Millisecond
		if lag > maxLag || -lag > maxLag {
			if !s.Clock.Synced(t) {
				if !Sleep(ctx, time.Second) {
					return nil
				}
				continue
			}
			log.Warn("gateway clock jumped (or the simulator was held up); simulated sensors skip to the present", "source", s.Name, "by", lag.Round(time.Millisecond).String())
			g.Rebase(nowMs)
		}
		rs := buf[:0]
		for g.NextTS() <= nowMs {
			rs = g.Next(rs)
		}
		buf = rs
		for len(rs) > 0 {
			// At most simBatch entries an append, so a big backlog
			// does not make one huge group commit.
			n := min(len(rs), simBatch)
			es := make([]store.Entry, n)
			for i, r := range rs[:n] {
				es[i] = store.Entry{Kind: store.EntryReading, Source: s.Name, Sensor: r.Sensor, Metric: r.Metric, Value: r.Value, TS: r.TS, Ingest: nowMs}
			}
			rs = rs[n:]
			if err := app.Append(ctx, store.AppendRequest{Entries: es}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("source %q: %w", s.Name, err)
			}
		}
		report()
		// Sleep until the next step is due, but at least Tick, and look at
		// the clock at least once a second (it may jump).
		wait := time.Duration(g.NextTS()-nowMs) * time.Millisecond
		if !Sleep(ctx, max(min(wait, time.Second), tick)) {
			return nil
		}
	}
	return nil
}
