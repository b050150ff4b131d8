package ingest

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
)

// Appender is where sources put what they read: the store's group
// committer (store.Appender) in the daemon.
type Appender interface {
	Append(ctx context.Context, r store.AppendRequest) error
}

// decoder turns one payload into log entries and quarantine records.
type decoder struct {
	source string
	dec    sensors.Decoder
	rs     []sensors.Reading
	now    func() time.Time
	log    *slog.Logger
	bad    int64
	lastLg time.Time
	quiet  int64
	// clock, when set, decides whether ingestion time may stamp readings
	// that carry no event time (see Clock).
	clock *Clock
}

func newDecoder(source, format string, opts sensors.Options, now func() time.Time, log *slog.Logger) (*decoder, error) {
	d, err := sensors.New(format, opts)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &decoder{source: source, dec: d, now: now, log: log}, nil
}

var errClockUnsynced = errors.New("clock not synchronised: the payload has no event time and the gateway's clock cannot stamp it yet")

// decode appends the entries of payload to es, or a quarantine record to qs
// when the payload is malformed. Readings without an event time get the
// ingestion time.
func (d *decoder) decode(payload []byte, es []store.Entry, qs []store.QEntry) ([]store.Entry, []store.QEntry) {
	now := d.now().UnixMilli()
	var err error
	d.rs, err = d.dec.Decode(d.rs[:0], payload)
	if err != nil {
		d.bad++
		qs = append(qs, store.QEntry{Time: now, Source: d.source, Reason: err.Error(), Payload: append([]byte(nil), payload...)})
		d.logBad(err, payload)
		return es, qs
	}
	for i := range d.rs {
		if d.rs[i].TS == sensors.NoTS && !d.clock.Synced(time.UnixMilli(now)) {
			// The whole payload waits in the quarantine rather than some of
			// its readings landing in wrong windows.
			d.bad++
			err := errClockUnsynced
			qs = append(qs, store.QEntry{Time: now, Source: d.source, Reason: err.Error(), Payload: append([]byte(nil), payload...)})
			d.logBad(err, payload)
			return es, qs
		}
	}
	for i := range d.rs {
		r := &d.rs[i]
		ts := r.TS
		if ts == sensors.NoTS {
			ts = now
		}
		es = append(es, store.Entry{Kind: store.EntryReading, Source: d.source, Sensor: r.Sensor, Metric: r.Metric, Value: r.Value, TS: ts, Ingest: now})
	}
	return es, qs
}

// logBad logs a malformed payload without flooding: the first ten, then
// one a minute with the count of those not shown.
func (d *decoder) logBad(err error, payload []byte) {
	now := d.now()
	if d.bad > 10 && now.Sub(d.lastLg) < time.Minute {
		d.quiet++
		return
	}
	ex := payload
	if len(ex) > 80 {
		ex = ex[:80]
	}
	d.log.Warn("payload quarantined", "source", d.source, "reason", err.Error(), "payload", string(ex), "not_shown_since_last", d.quiet)
	d.lastLg = now
	d.quiet = 0
}
