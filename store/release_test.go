package store_test

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

// mappedKiB is the resident size of this process's mappings of path
// (/proc/self/smaps).
func mappedKiB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	kib, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		fs := strings.Fields(l)
		if len(fs) >= 5 && strings.Contains(fs[0], "-") {
			in = len(fs) >= 6 && fs[5] == path
			continue
		}
		if in && fs[0] == "Rss:" {
			n, _ := strconv.Atoi(fs[1])
			kib += n
		}
	}
	return kib
}

// TestReleaseMapped: reading the log through bbolt's map leaves its pages
// resident; ReleaseMapped takes them out of the process's RSS, and the log
// reads back the same afterwards.
func TestReleaseMapped(t *testing.T) {
	s, _ := storetest.MustOpen(t, nil)
	for i := range 20 {
		if _, err := s.Append(&store.Batch{Entries: entries(i*1000, 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	before := readAll(t, s, 0)
	read := mappedKiB(t, s.Path())
	if read < 512 {
		t.Fatalf("only %d KiB of the data file resident after reading 20,000 entries: the test measures nothing", read)
	}
	if err := s.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	released := mappedKiB(t, s.Path())
	if released > read/4 {
		t.Errorf("resident after ReleaseMapped: %d KiB, before %d KiB", released, read)
	}
	after := readAll(t, s, 0)
	if len(after) != len(before) || after[len(after)-1] != before[len(before)-1] || after[0] != before[0] {
		t.Fatalf("the log reads back differently after ReleaseMapped: %d entries, was %d", len(after), len(before))
	}
	t.Logf("data file resident: %d KiB after reading, %d KiB after ReleaseMapped", read, released)
}
