package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
	berrors "go.etcd.io/bbolt/errors"
)

// 32-bit gateways (GOARCH=arm): bbolt maps the whole file into memory, and
// a 32-bit process cannot map more than 2 GiB (less in practice), so
// MaxFileBytes defaults to 1 GiB there and to no cap on 64-bit. make
// test-arm runs these under qemu-arm-static.

func TestArmMaxFileBytesDefault(t *testing.T) {
	s, _ := storetest.MustOpen(t, nil)
	want := 0
	if strconv.IntSize == 32 {
		want = 1 << 30
	}
	if got := s.DB().MaxSize; got != want {
		t.Fatalf("bbolt MaxSize %d with default options on %d-bit, want %d", got, strconv.IntSize, want)
	}
	if _, err := s.Append(&store.Batch{Entries: []store.Entry{enospcEntry(0)}}); err != nil {
		t.Fatal(err)
	}
	checkLogHolds(t, s, 1)
}

// TestArmMaxFileBytesFull fills a file capped at 1 MiB: appends and
// checkpoints then fail with a retryable error, like a full disk, the
// file stays within the cap and usable, nothing appended before is lost,
// and a larger cap lets appends go on.
func TestArmMaxFileBytesFull(t *testing.T) {
	const capBytes = 1 << 20
	opts := &store.Options{MaxFileBytes: capBytes, LogRetain: -1}
	s, dir := storetest.MustOpen(t, opts)
	n := 0
	var err error
	for n < 1_000_000 {
		es := make([]store.Entry, 200)
		for j := range es {
			es[j] = enospcEntry(n + j)
		}
		if _, err = s.Append(&store.Batch{Entries: es}); err != nil {
			break
		}
		n += len(es)
	}
	t.Logf("%d entries appended under a %d-byte cap, then: %v", n, capBytes, err)
	if err == nil {
		t.Fatalf("%d entries appended without reaching the %d-byte cap", n, capBytes)
	}
	if !store.Retryable(err) || !errors.Is(err, berrors.ErrMaxSizeReached) {
		t.Fatalf("append at the cap: %v: want a retryable ErrMaxSizeReached", err)
	}
	if errors.Is(err, syscall.ENOSPC) {
		t.Errorf("append at the cap: %v: not a disk error", err)
	}
	fi, serr := os.Stat(filepath.Join(dir, store.FileName))
	if serr != nil {
		t.Fatal(serr)
	}
	if fi.Size() > capBytes {
		t.Errorf("file is %d bytes, over the %d-byte cap", fi.Size(), capBytes)
	}
	checkLogHolds(t, s, n)

	cerr := s.Commit(bigCheckpoint(uint64(n), 512<<10, 1, 3))
	if cerr == nil || !store.Retryable(cerr) {
		t.Errorf("checkpoint at the cap: %v: want a retryable error", cerr)
	}

	// A larger cap: appends go on after the last acknowledged entry.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := store.Open(dir, &store.Options{MaxFileBytes: 4 * capBytes, LogRetain: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Check(); err != nil {
		t.Fatal(err)
	}
	if first, err := s2.Append(&store.Batch{Entries: []store.Entry{enospcEntry(n)}}); err != nil || first != uint64(n) {
		t.Fatalf("append under a larger cap: %d, %v", first, err)
	}
	checkLogHolds(t, s2, n+1)
}
