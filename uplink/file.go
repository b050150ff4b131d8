package uplink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/edged/edged/store"
)

// File appends the outbox to a file, one JSON record per line (with device,
// seq and id). A batch of lines is fsynced before the cursor moves past it,
// so a line on disk is delivered. A partial last line left by a crash is cut
// when the output starts, and the records already in the file are not
// written again: the cursor is moved up to the file's last line.
type File struct {
	OutName string
	Path    string
	Store   *store.Store
	Logger  *slog.Logger
	// NoSync skips fsync (for stdout-like destinations and tests).
	NoSync bool
}

// Name returns the output's name.
func (f *File) Name() string { return f.OutName }

// Run delivers until ctx ends.
func (f *File) Run(ctx context.Context) error {
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fh, err := os.OpenFile(f.Path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("output %q: %w", f.OutName, err)
	}
	defer fh.Close()
	lastID, err := repairTail(fh)
	if err != nil {
		return fmt.Errorf("output %q: %s: %w", f.OutName, f.Path, err)
	}
	cur, err := f.Store.Cursor(f.OutName)
	if err != nil {
		return err
	}
	if lastID != "" {
		// The file may be ahead of the cursor (a crash between the fsync
		// and the cursor's commit): skip what it already holds.
		recs, _ := f.Store.ReadOutboxAfter(cur, 100000)
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].ID == lastID {
				cur = recs[i].Pos
				if err := f.Store.SetCursor(f.OutName, cur); err != nil {
					return err
				}
				break
			}
		}
	}
	return deliver(ctx, f.Store, f.OutName, cur, 1024, fh, !f.NoSync, log)
}

// deliver writes records after cur to w until ctx ends, syncing w (when it
// is a file and sync is set) before each cursor move.
func deliver(ctx context.Context, st *store.Store, name string, cur uint64, batch int, w io.Writer, sync bool, log *slog.Logger) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for {
		recs, err := next(ctx, st, cur, batch)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for i := range recs {
			bw.Write(recs[i].Body)
			bw.WriteByte('\n')
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("output %q: write: %w", name, err)
		}
		if fh, ok := w.(*os.File); ok && sync {
			if err := fh.Sync(); err != nil {
				return fmt.Errorf("output %q: fsync: %w", name, err)
			}
		}
		cur = recs[len(recs)-1].Pos
		if err := st.SetCursor(name, cur); err != nil {
			return err
		}
	}
}

// repairTail cuts a partial last line (no newline: a write cut by a crash)
// and returns the id of the last complete line, positioned for appending.
func repairTail(fh *os.File) (string, error) {
	size, err := fh.Seek(0, io.SeekEnd)
	if err != nil || size == 0 {
		return "", err
	}
	const tail = 64 << 10
	start := max(0, size-tail)
	buf := make([]byte, size-start)
	if _, err := fh.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if buf[len(buf)-1] != '\n' {
		cut := bytes.LastIndexByte(buf, '\n') + 1 // 0 when no newline in the tail
		if err := fh.Truncate(start + int64(cut)); err != nil {
			return "", err
		}
		buf = buf[:cut]
		if _, err := fh.Seek(0, io.SeekEnd); err != nil {
			return "", err
		}
	}
	buf = bytes.TrimRight(buf, "\n")
	if len(buf) == 0 {
		return "", nil
	}
	last := buf[bytes.LastIndexByte(buf, '\n')+1:]
	var r struct {
		ID string `json:"id"`
	}
	json.Unmarshal(last, &r)
	return r.ID, nil
}

// Stdout writes the outbox to w (stdout), one JSON record per line, moving
// the cursor once a batch is written: for pipes and demos, not durable.
type Stdout struct {
	OutName string
	W       io.Writer
	Store   *store.Store
	Logger  *slog.Logger
}

// Name returns the output's name.
func (s *Stdout) Name() string { return s.OutName }

// Run delivers until ctx ends.
func (s *Stdout) Run(ctx context.Context) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cur, err := s.Store.Cursor(s.OutName)
	if err != nil {
		return err
	}
	return deliver(ctx, s.Store, s.OutName, cur, 1024, s.W, false, log)
}
