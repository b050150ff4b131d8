//go:build linux

package store_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/store"
)

// A full disk, for real: the store lives on a small filesystem (a tmpfs,
// and ext4 on a loop device) and a filler file takes the rest of it. These
// tests need root (mount); they skip without it, unless EDGED_INTEGRATION=1
// (make test-integration), where a skip would hide a missing check and so
// fails instead.

// skipOrFail skips the test, or fails it under EDGED_INTEGRATION=1.
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("EDGED_INTEGRATION") == "1" {
		t.Fatalf("%s (EDGED_INTEGRATION=1: not skipped)", msg)
	}
	t.Skip(msg)
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends (after the cleanups registered later, such as
// closing a store on it).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to mount a tmpfs (run the tests as root, e.g. sudo make test-integration)")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		skipOrFail(t, fmt.Sprintf("cannot mount a tmpfs on %s: %v (needs CAP_SYS_ADMIN)", dir, err))
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

// mountExt4 makes an ext4 filesystem of size bytes in an image file and
// mounts it through a loop device: real block allocation and a journal,
// like a gateway's SD card.
func mountExt4(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to mount a loop device (run the tests as root, e.g. sudo make test-integration)")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		skipOrFail(t, "mkfs.ext4 not found (apt-get install e2fsprogs)")
	}
	tmp := t.TempDir()
	img := filepath.Join(tmp, "ext4.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	dir := filepath.Join(tmp, "ext4")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// mount(8) sets up the loop device and frees it at unmount.
	if out, err := exec.Command("mount", "-o", "loop,nosuid,nodev", img, dir).CombinedOutput(); err != nil {
		skipOrFail(t, fmt.Sprintf("cannot mount an ext4 image through a loop device: %v: %s", err, bytes.TrimSpace(out)))
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

func unmount(t *testing.T, dir string) {
	if err := syscall.Unmount(dir, 0); err != nil {
		t.Errorf("unmount %s: %v", dir, err)
		syscall.Unmount(dir, syscall.MNT_DETACH)
	}
}

// enospcFilesystems are the size-capped filesystems the tests fill.
var enospcFilesystems = []struct {
	name  string
	mount func(t *testing.T, size int64) string
}{
	{"tmpfs", mountTmpfs},
	{"ext4", mountExt4},
}

// freeBytes returns the bytes still available on the filesystem of dir.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fillDisk writes path until the filesystem is full, then gives back leave
// bytes (rounded to pages by tmpfs) by truncating it.
func fillDisk(t *testing.T, path string, leave int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xfe}, 1<<20)
	for _, chunk := range []int{1 << 20, 64 << 10, 4 << 10, 512} {
		for {
			if _, err := f.Write(buf[:chunk]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
	if leave > 0 {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(max(0, fi.Size()-leave)); err != nil {
			t.Fatal(err)
		}
	}
}

// syncBuffer is an io.Writer safe for concurrent use, for a test logger.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// checkExclusive runs bbolt's consistency check inside a write
// transaction, which keeps concurrent writers out, and rolls it back.
func checkExclusive(s *store.Store) error {
	tx, err := s.DB().Begin(true)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var errs []error
	for err := range tx.Check() {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestENOSPCAppenderPausesAndResumes fills a real filesystem under
// a running Appender: commits fail with ENOSPC, Append blocks, nothing
// acknowledged is lost, a checkpoint fails with a retryable error, and
// once space returns everything blocked is committed and acknowledged by
// itself; the file then reopens clean and consistent.
func TestENOSPCAppenderPausesAndResumes(t *testing.T) {
	for _, fs := range enospcFilesystems {
		t.Run(fs.name, func(t *testing.T) { testAppenderPausesAndResumes(t, fs.mount(t, 16<<20)) })
	}
}

func testAppenderPausesAndResumes(t *testing.T, mnt string) {
	dataDir := filepath.Join(mnt, "data")
	filler := filepath.Join(mnt, "filler")

	// LogRetain < 0: the entries' ingest times are old, and retention
	// would otherwise drop what a checkpoint covers.
	opts := &store.Options{LogRetain: -1}
	s, err := store.Open(dataDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			s.Close()
		}
	})
	var logBuf syncBuffer
	app := s.NewAppender(store.AppenderOptions{
		Interval:      2 * time.Millisecond,
		MaxBatchBytes: 32 << 10,
		MaxQueueBytes: 128 << 10,
		RetryMax:      50 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(&logBuf, nil)),
	})
	defer func() {
		if t.Failed() {
			t.Logf("appender log:\n%s", logBuf.String())
		}
	}()
	appCtx, appStop := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- app.Run(appCtx) }()
	t.Cleanup(func() { appStop(); <-runDone })

	// The producer appends requests of per entries, like a source, and
	// records each Done.
	const per = 50
	var (
		ackMu sync.Mutex
		acks  []enospcAck
	)
	var sent atomic.Int64 // requests Append accepted
	prodCtx, prodStop := context.WithCancel(context.Background())
	prodDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			es := make([]store.Entry, per)
			for j := range es {
				es[j] = enospcEntry(i*per + j)
			}
			ackMu.Lock()
			acks = append(acks, enospcAck{})
			ackMu.Unlock()
			req := store.AppendRequest{
				Entries: es, Source: "f", Pos: binary.BigEndian.AppendUint64(nil, uint64((i+1)*per)),
				Done: func(first uint64, err error) {
					ackMu.Lock()
					defer ackMu.Unlock()
					if acks[i].done {
						panic(fmt.Sprintf("request %d acknowledged twice", i))
					}
					acks[i] = enospcAck{done: true, first: first, err: err}
				},
			}
			if err := app.Append(prodCtx, req); err != nil {
				if prodCtx.Err() != nil {
					err = nil
				}
				prodDone <- err
				return
			}
			sent.Add(1)
		}
	}()
	stopProducer := func() {
		prodStop()
		if err := <-prodDone; err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	// acked returns how many requests, from the first, were acknowledged
	// durable, after checking every Done so far: no error, offsets in
	// request order.
	acked := func() int {
		ackMu.Lock()
		defer ackMu.Unlock()
		n := 0
		for i, a := range acks {
			if !a.done {
				break
			}
			if a.err != nil {
				t.Fatalf("request %d: Done(%d, %v) while edged runs: a failed commit must be retried, not reported", i, a.first, a.err)
			}
			if a.first != uint64(i*per) {
				t.Fatalf("request %d acknowledged at offset %d, want %d", i, a.first, i*per)
			}
			n++
		}
		for i := n; i < len(acks); i++ {
			if acks[i].done {
				t.Fatalf("request %d acknowledged before request %d", i, n)
			}
		}
		return n
	}

	// Normal operation first, and a checkpoint.
	waitUntil(t, "2000 entries are acknowledged", 10*time.Second, func() bool { return acked()*per >= 2000 })
	cp1 := bigCheckpoint(1000, 16<<10, 1, 5)
	if err := s.Commit(cp1); err != nil {
		t.Fatal(err)
	}

	// The disk fills up while the producer runs.
	fillDisk(t, filler, 256<<10)
	t.Logf("disk filled: %d bytes left, %d entries acknowledged", freeBytes(t, mnt), acked()*per)
	var stalled int64
	waitUntil(t, "commits fail and Append blocks", 30*time.Second, func() bool {
		if app.Stats().LastErr == nil {
			return false
		}
		n := sent.Load()
		time.Sleep(300 * time.Millisecond)
		stalled = n
		return sent.Load() == n
	})

	// (a) The commit error is ENOSPC, retryable; intake is paused.
	st := app.Stats()
	t.Logf("commit error while full: %v (free %d bytes)", st.LastErr, freeBytes(t, mnt))
	if !errors.Is(st.LastErr, syscall.ENOSPC) {
		t.Errorf("LastErr = %v, want ENOSPC", st.LastErr)
	}
	if !store.Retryable(st.LastErr) {
		t.Errorf("Retryable(%v) = false", st.LastErr)
	}
	if !strings.Contains(logBuf.String(), "ingest log commit failed") {
		t.Errorf("no commit failure logged; log:\n%s", logBuf.String())
	}

	// (b) Everything acknowledged is readable, contiguous, in place; the
	// log ends exactly there (a failed commit left nothing behind).
	ackedAtFull := acked()
	if ackedAtFull*per < 2000 {
		t.Fatalf("only %d entries acknowledged", ackedAtFull*per)
	}
	if int64(ackedAtFull) >= stalled {
		t.Fatalf("every request Append accepted (%d) is acknowledged (%d): the disk never filled", stalled, ackedAtFull)
	}
	checkLogHolds(t, s, ackedAtFull*per)

	// (d) A checkpoint fails with a retryable error and changes nothing.
	cp2 := bigCheckpoint(uint64(ackedAtFull*per), 1<<20, 6, 20)
	err = s.Commit(cp2)
	t.Logf("checkpoint commit while full: %v", err)
	if err == nil {
		t.Fatal("a 1 MiB checkpoint committed on a full disk")
	}
	if !store.Retryable(err) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("checkpoint error %v: want a retryable ENOSPC", err)
	}
	if m, err := s.CheckpointMeta(); err != nil || m == nil || m.Offset != cp1.Meta.Offset || m.NextSeq != cp1.Meta.NextSeq {
		t.Errorf("after a failed checkpoint: meta %+v, %v; want the previous one (offset %d)", m, err, cp1.Meta.Offset)
	}
	if got := s.OutboxLastSeq(); got != 5 {
		t.Errorf("outbox last seq %d after a failed checkpoint, want 5", got)
	}
	// The file is consistent while full. Store.Check reads in a read-only
	// transaction, which bbolt documents as unsafe beside a writer (here
	// the appender's retries): check inside a write transaction instead.
	if err := checkExclusive(s); err != nil {
		t.Errorf("consistency check while full: %v", err)
	}

	// Still stuck a while later: retries keep failing, nothing is lost.
	time.Sleep(200 * time.Millisecond)
	if n := acked(); n != ackedAtFull {
		t.Fatalf("%d requests acknowledged while the disk is full, %d before", n, ackedAtFull)
	}

	// (c) Space returns: the appender resumes by itself, the blocked
	// Append returns and everything queued is acknowledged.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	waitUntil(t, "the blocked appends are acknowledged after space returned", 30*time.Second, func() bool {
		return int64(acked()) > stalled && sent.Load() > stalled+10
	})
	t.Logf("resumed %v after space returned; %d commit failures logged", time.Since(resumed).Round(time.Millisecond),
		strings.Count(logBuf.String(), "ingest log commit failed"))
	if err := app.Stats().LastErr; err != nil {
		t.Errorf("LastErr = %v after resuming", err)
	}

	// (d) The same checkpoint now commits.
	if err := s.Commit(cp2); err != nil {
		t.Fatalf("checkpoint after space returned: %v", err)
	}

	// Stop: the producer, then the appender (its final flush).
	stopProducer()
	appStop()
	if err := <-runDone; err != nil {
		t.Fatalf("appender Run: %v", err)
	}
	runDone <- nil // for the cleanup
	// Every request Append accepted is acknowledged durable.
	total := acked()
	if int64(total) != sent.Load() {
		t.Errorf("%d requests accepted, %d acknowledged", sent.Load(), total)
	}
	checkLogHolds(t, s, total*per)
	pos, err := s.ReadPositions()
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint64(pos["f"]); got != uint64(total*per) {
		t.Errorf("saved position %d, want %d", got, total*per)
	}

	// (e) Close and reopen: clean, consistent, everything there.
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	closed = true
	s2, err := store.Open(dataDir, opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	if s2.Opened.Unclean {
		t.Error("reopened file is marked unclean after Close")
	}
	if err := s2.Check(); err != nil {
		t.Fatalf("consistency check after reopen: %v", err)
	}
	checkLogHolds(t, s2, total*per)
	if m, err := s2.CheckpointMeta(); err != nil || m == nil || m.Offset != cp2.Meta.Offset {
		t.Errorf("checkpoint after reopen: %+v, %v; want offset %d", m, err, cp2.Meta.Offset)
	}
	if got := s2.OutboxLastSeq(); got != 20 {
		t.Errorf("outbox last seq %d after reopen, want 20", got)
	}
	t.Logf("%d entries acknowledged in all, %d of them before the disk filled", total*per, ackedAtFull*per)
}

// TestENOSPCStoreAppendAndReopen drives Store.Append directly into a full
// disk many times (each failed commit rolls back, bbolt rescans its free
// pages), then closes and reopens on the full disk and after space returns.
func TestENOSPCStoreAppendAndReopen(t *testing.T) {
	for _, fs := range enospcFilesystems {
		t.Run(fs.name, func(t *testing.T) { testStoreAppendAndReopen(t, fs.mount(t, 8<<20)) })
	}
}

func testStoreAppendAndReopen(t *testing.T, mnt string) {
	dataDir := filepath.Join(mnt, "data")
	filler := filepath.Join(mnt, "filler")
	opts := &store.Options{LogRetain: -1}
	s, err := store.Open(dataDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // idempotent
	fillDisk(t, filler, 64<<10)

	// Append until the disk is full, then on: after each failure halve the
	// batch (a smaller one may still fit in freed pages), 20 failures.
	n := 0
	var failures []error
	for size := 100; len(failures) < 20; {
		es := make([]store.Entry, size)
		for j := range es {
			es[j] = enospcEntry(n + j)
		}
		first, err := s.Append(&store.Batch{Entries: es})
		if err != nil {
			if !store.Retryable(err) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("append on a full disk: %v: want a retryable ENOSPC", err)
			}
			failures = append(failures, err)
			size = max(1, size/2) // smaller batches may still fit in free pages
			continue
		}
		if first != uint64(n) {
			t.Fatalf("append at %d, want %d", first, n)
		}
		n += size
	}
	t.Logf("%d entries appended, then %d failed appends; first error: %v", n, len(failures), failures[0])
	checkLogHolds(t, s, n)
	if err := s.Check(); err != nil {
		t.Fatalf("consistency check on the full disk: %v", err)
	}

	// Close on a full disk: the clean-shutdown mark may not fit.
	cerr := s.Close()
	t.Logf("close on a full disk: %v", cerr)
	if cerr != nil && !store.Retryable(cerr) {
		t.Errorf("close on a full disk: %v: want nil or a retryable error", cerr)
	}
	// Reopen on a full disk: it may be refused for lack of space, never
	// as corrupt.
	if s2, err := store.Open(dataDir, opts); err != nil {
		t.Logf("reopen on a full disk: %v", err)
		if errors.Is(err, store.ErrCorrupt) || !store.Retryable(err) {
			t.Errorf("reopen on a full disk: %v: want a retryable error", err)
		}
	} else {
		t.Logf("reopen on a full disk: ok (unclean %v)", s2.Opened.Unclean)
		checkLogHolds(t, s2, n)
		s2.Close()
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s3, err := store.Open(dataDir, opts)
	if err != nil {
		t.Fatalf("reopen after space returned: %v", err)
	}
	defer s3.Close()
	if err := s3.Check(); err != nil {
		t.Fatalf("consistency check: %v", err)
	}
	checkLogHolds(t, s3, n)
	// And appends work again.
	es := []store.Entry{enospcEntry(n)}
	if first, err := s3.Append(&store.Batch{Entries: es}); err != nil || first != uint64(n) {
		t.Fatalf("append after space returned: %d, %v", first, err)
	}
	checkLogHolds(t, s3, n+1)
}
