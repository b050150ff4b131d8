// Package storetest opens real stores for tests.
package storetest

import (
	"testing"

	"github.com/edged/edged/store"
)

// MustOpen opens a store in a fresh temporary directory, closes it when the
// test ends and then runs bbolt's consistency check over the file.
func MustOpen(t testing.TB, opts *store.Options) (*store.Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := store.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		s2, err := store.Open(dir, opts)
		if err != nil {
			t.Errorf("reopen for check: %v", err)
			return
		}
		if err := s2.Check(); err != nil {
			t.Errorf("consistency check: %v", err)
		}
		s2.Close()
	})
	return s, dir
}
