package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
)

// MaxLine bounds one line of a file, stdin or serial source. A longer line
// is quarantined (its first bytes) and skipped.
const MaxLine = 64 << 10

// File follows a file like tail -F: it reads from its saved position (the
// start the first time), appends every complete line's readings to the log
// together with the position after it, and at the end of the file waits for
// more. A file that shrinks was truncated and is read again from the start;
// a file replaced by another (rotation) is read from the start of the new
// one. The end of the file is never the end of input.
type File struct {
	Name   string
	Path   string
	Format string
	Opts   sensors.Options
	// Start is the position saved with the log (nil: the start).
	Start []byte
	// Poll is how often the end of the file is checked for growth.
	// Default 100 ms.
	Poll time.Duration
	// BatchLines bounds the lines per append. Default 1024.
	BatchLines int
	Logger     *slog.Logger
	Now        func() time.Time
	// Clock decides when ingestion time may stamp readings (nil: always).
	Clock *Clock
}

// filePos is a file source's position: byte offset and inode.
type filePos struct {
	off   int64
	inode uint64
}

func (p filePos) encode() []byte {
	return []byte(fmt.Sprintf("%d %d", p.off, p.inode))
}

func decodeFilePos(b []byte) (filePos, error) {
	var p filePos
	if len(b) == 0 {
		return p, nil
	}
	parts := strings.Fields(string(b))
	if len(parts) != 2 {
		return p, fmt.Errorf("bad file position %q", b)
	}
	var err1, err2 error
	p.off, err1 = strconv.ParseInt(parts[0], 10, 64)
	p.inode, err2 = strconv.ParseUint(parts[1], 10, 64)
	return p, errors.Join(err1, err2)
}

func inodeOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

// Run follows the file until ctx ends.
func (f *File) Run(ctx context.Context, app Appender) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	poll := f.Poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	dec, err := newDecoder(f.Name, f.Format, f.Opts, f.Now, log)
	if err != nil {
		return fmt.Errorf("source %q: %w", f.Name, err)
	}
	dec.clock = f.Clock
	pos, err := decodeFilePos(f.Start)
	if err != nil {
		log.Warn("saved file position unreadable; reading from the start", "source", f.Name, "err", err)
		pos = filePos{}
	}
	missingLogged := false
	for ctx.Err() == nil {
		fh, err := os.Open(f.Path)
		if err != nil {
			if !missingLogged {
				log.Warn("file source cannot open its file; waiting for it", "source", f.Name, "path", f.Path, "err", err)
				missingLogged = true
			}
			if !Sleep(ctx, poll*10) {
				return nil
			}
			continue
		}
		missingLogged = false
		err = f.follow(ctx, app, fh, &pos, dec, poll, log)
		fh.Close()
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

// follow reads fh from pos until ctx ends or the file is replaced.
func (f *File) follow(ctx context.Context, app Appender, fh *os.File, pos *filePos, dec *decoder, poll time.Duration, log *slog.Logger) error {
	fi, err := fh.Stat()
	if err != nil {
		return err
	}
	ino := inodeOf(fi)
	if pos.inode != 0 && pos.inode != ino {
		log.Info("file replaced since the saved position; reading the new one from the start", "source", f.Name, "path", f.Path)
		*pos = filePos{}
	}
	if pos.off > fi.Size() {
		log.Warn("file shorter than the saved position (truncated); reading from the start", "source", f.Name, "path", f.Path, "saved", pos.off, "size", fi.Size())
		*pos = filePos{}
	}
	pos.inode = ino
	if _, err := fh.Seek(pos.off, io.SeekStart); err != nil {
		return err
	}
	batch := f.BatchLines
	if batch <= 0 {
		batch = 1024
	}
	br := bufio.NewReaderSize(fh, MaxLine)
	var es []store.Entry
	var qs []store.QEntry
	lines := 0
	off := pos.off  // read so far
	done := pos.off // after the last complete line
	flush := func() error {
		if lines == 0 {
			return nil
		}
		p := filePos{off: done, inode: ino}
		err := app.Append(ctx, store.AppendRequest{Entries: es, Quarantine: qs, Source: f.Name, Pos: p.encode()})
		if err != nil {
			return err
		}
		*pos = p
		es, qs, lines = nil, nil, 0
		return nil
	}
	caughtUp := false
	skipping := false
	var partial []byte
	for ctx.Err() == nil {
		line, err := br.ReadSlice('\n')
		off += int64(len(line))
		switch {
		case errors.Is(err, bufio.ErrBufferFull) || (skipping && err == nil):
			// An over-long line: quarantine its start, skip to its end.
			if !skipping {
				head := append(partial, line...)
				qs = append(qs, store.QEntry{Time: dec.now().UnixMilli(), Source: f.Name,
					Reason: fmt.Sprintf("line too long: longer than %d bytes", MaxLine), Payload: append([]byte(nil), head[:min(len(head), store.MaxQuarantinePayload)]...)})
				skipping = true
				partial = partial[:0]
			}
			if err == nil {
				skipping = false
				done = off
				lines++
			}
			continue
		case err == nil:
			full := line
			if len(partial) > 0 {
				full = append(partial, line...)
			}
			if payload := trimEOL(full); len(payload) > 0 {
				es, qs = dec.decode(payload, es, qs)
			}
			partial = partial[:0]
			done = off
			lines++
			if lines >= batch {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		case err != io.EOF:
			return fmt.Errorf("source %q: read %s: %w", f.Name, f.Path, err)
		}
		// End of the file for now. A trailing line without a newline is not
		// complete yet: keep it, outside the saved position.
		if !skipping {
			partial = append(partial, line...)
			if len(partial) > MaxLine {
				skipping = true
				qs = append(qs, store.QEntry{Time: dec.now().UnixMilli(), Source: f.Name,
					Reason: fmt.Sprintf("line too long: longer than %d bytes", MaxLine), Payload: append([]byte(nil), partial[:store.MaxQuarantinePayload]...)})
				partial = partial[:0]
			}
		}
		if err := flush(); err != nil {
			return err
		}
		if !caughtUp {
			caughtUp = true
			log.Info("file source at end of file", "source", f.Name, "offset", done)
		}
		if !Sleep(ctx, poll) {
			return nil
		}
		// Truncated or replaced?
		cur, err := os.Stat(f.Path)
		if err != nil || inodeOf(cur) != ino {
			return nil // reopen
		}
		if cur.Size() < off {
			log.Warn("file truncated; reading from the start", "source", f.Name, "path", f.Path)
			*pos = filePos{}
			return nil
		}
	}
	return nil
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// Sleep waits d or until ctx ends; it reports whether ctx is still alive.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
