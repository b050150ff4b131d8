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
	type line struct {
		b   []byte
		err error
	}
	lines := make(chan line, 256)
	send := func(l line) bool {
		select {
		case lines <- l:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// The reading goroutine ends with the stream or when a line cannot be
	// handed over after ctx ended; a read blocked on a silent stream stays
	// until the stream closes (the process exits).
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(s.R, MaxLine)
		for {
			b, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				if !send(line{b: append([]byte(nil), b[:store.MaxQuarantinePayload]...), err: err}) {
					return
				}
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
				if err != nil {
					return
				}
				continue
			}
			if len(b) > 0 && !send(line{b: append([]byte(nil), trimEOL(b)...)}) {
				return
			}
			if err != nil {
				if err != io.EOF {
					send(line{err: err})
				}
				return
			}
		}
	}()
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
