package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseMapped drops the data file's pages from edged's memory map
// (madvise MADV_DONTNEED) without dropping them from the page cache: the
// next read of a page maps it again from the cache (a minor fault) or the
// file. bbolt maps the whole file and the pipeline reads the log through
// the map, so without this every page read since the start stays counted
// in edged's RSS (RssFile) until the kernel needs the memory. Nothing is
// lost: the map is read-only and bbolt writes with pwrite.
//
// It runs inside a read transaction, which holds bbolt's mmap lock, so the
// map cannot be replaced (a growing file is mapped again) while the pages
// are released.
func (s *Store) ReleaseMapped() error {
	return s.db.View(func(tx *bolt.Tx) error {
		addr, size := s.db.Info().Data, uintptr(tx.Size())
		if addr == 0 || size == 0 {
			return nil
		}
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, addr, size, unix.MADV_DONTNEED); e != 0 {
			return fmt.Errorf("release the data file's mapped pages: %w", e)
		}
		return nil
	})
}
