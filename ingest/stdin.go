package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
)

// Reader reads lines from a stream that cannot be replayed (stdin, a pipe):
// what was read is durable once it is in the log, and the end of the stream
// ends the source (the daemon keeps running).
type Reader struct {
	Name   string
	R      io.Reader
	Format string
	Opts   sensors.Options
	// FlushEvery bounds how long read lines wait before they are appended
	// when the stream is slow. Default 50 ms.
	FlushEvery time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
	// Clock decides when ingestion time may stamp readings (nil: always).
	Clock *Clock
	// Feed, when set, is where the lines come from instead of R: a feed
	// outlives one Reader, so that a daemon reloading its config does not
	// lose the line a stopped Reader was waiting for.
	Feed *LineFeed
}

// LineFeed reads lines from a stream on a goroutine of its own, until the
// end of the stream (which closes its channel). A read blocked on a silent
// stream stays until the stream closes or the process exits.
type LineFeed struct {
	lines chan line
}

type line struct {
	b   []byte
	err error
}

// NewLineFeed starts reading r.
func NewLineFeed(r io.Reader) *LineFeed {
	f := &LineFeed{lines: make(chan line, 256)}
	go func() {
		defer close(f.lines)
		br := bufio.NewReaderSize(r, MaxLine)
		for {
			b, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				f.lines <- line{b: append([]byte(nil), b[:store.MaxQuarantinePayload]...), err: err}
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
				if err != nil {
					return
				}
				continue
			}
			if len(b) > 0 {
				f.lines <- line{b: append([]byte(nil), trimEOL(b)...)}
			}
			if err != nil {
				if err != io.EOF {
					f.lines <- line{err: err}
				}
				return
			}
		}
	}()
	return f
}

// Run reads until the end of the stream or ctx ends. Reads block, so a
// Reader on a stream that never ends stops only when the stream is closed.
func (s *Reader) Run(ctx context.Context, app Appender) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dec, err := newDecoder(s.Name, s.Format, s.Opts, s.Now, log)
	if err != nil {
		return fmt.Errorf("source %q: %w", s.Name, err)
	}
	dec.clock = s.Clock
	every := s.FlushEvery
	if every <= 0 {
		every = 50 * time.Millisecond
	}
	feed := s.Feed
	if feed == nil {
		feed = NewLineFeed(s.R)
	}
	lines := feed.lines
	var es []store.Entry
	var qs []store.QEntry
	flush := func() error {
		if len(es) == 0 && len(qs) == 0 {
			return nil
		}
		err := app.Append(ctx, store.AppendRequest{Entries: es, Quarantine: qs})
		es, qs = nil, nil
		return err
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return flush()
		case <-tick.C:
			if err := flush(); err != nil {
				return err
			}
		case l, ok := <-lines:
			if !ok {
				log.Info("input stream ended", "source", s.Name)
				return flush()
			}
			switch {
			case errors.Is(l.err, bufio.ErrBufferFull):
				qs = append(qs, store.QEntry{Time: dec.now().UnixMilli(), Source: s.Name,
					Reason: fmt.Sprintf("line too long: longer than %d bytes", MaxLine), Payload: l.b})
			case l.err != nil:
				flush()
				return fmt.Errorf("source %q: %w", s.Name, l.err)
			case len(l.b) > 0:
				es, qs = dec.decode(l.b, es, qs)
			}
			if len(es) >= 1024 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
}
