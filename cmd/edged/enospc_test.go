//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// enospcSkip skips the test, or fails it under EDGED_INTEGRATION=1 (make
// test-integration), where a skip would hide a missing check.
func enospcSkip(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("EDGED_INTEGRATION") == "1" {
		t.Fatalf("%s (EDGED_INTEGRATION=1: not skipped)", msg)
	}
	t.Skip(msg)
}

// enospcTmpfs mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends.
func enospcTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		enospcSkip(t, "needs root to mount a tmpfs (run the tests as root, e.g. sudo make test-integration)")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		enospcSkip(t, fmt.Sprintf("cannot mount a tmpfs on %s: %v (needs CAP_SYS_ADMIN)", dir, err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// enospcFill writes path until its filesystem is full, then gives back
// leave bytes.
func enospcFill(t *testing.T, path string, leave int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xfe}, 1<<20)
	for _, chunk := range []int{1 << 20, 4 << 10, 512} {
		for {
			if _, err := f.Write(buf[:chunk]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(max(0, fi.Size()-leave)); err != nil {
		t.Fatal(err)
	}
}

// enospcWatch reads the daemon's log until a line matches until (it then
// returns true) or for the whole timeout (false); it fails if the daemon
// exits or a line matches forbid.
func enospcWatch(t *testing.T, d *daemon, until, forbid *regexp.Regexp, timeout time.Duration) bool {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatalf("the daemon exited; log:\n%s", d.log)
			}
			d.log.WriteString(l + "\n")
			if forbid != nil && forbid.MatchString(l) {
				t.Fatalf("unexpected %q; log:\n%s", l, d.log)
			}
			if until != nil && until.MatchString(l) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// TestENOSPCDaemon runs `edged run` with its data_dir on a small tmpfs
// that fills up while it reads a file larger than the appender's queue:
// the daemon logs the failed commits and keeps running with intake paused
// (the file source blocks before the end of its input), catches up by
// itself once space returns, stops cleanly, and its outbox then equals,
// record by record, that of a run on a roomy disk.
func TestENOSPCDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a tmpfs under the real binary")
	}
	mnt := enospcTmpfs(t, 96<<20)
	dir := t.TempDir()
	input := filepath.Join(dir, "input.jsonl")
	// About 21 MB: more than the appender's 8 MiB queue holds, so the
	// source must block while the disk is full.
	size := crashInput(t, input, 400000)
	atEnd := regexp.MustCompile(fmt.Sprintf(`file source at end of file.* offset=%d\b`, size))
	stopped := regexp.MustCompile(`edged stopped cleanly.* log_offset=(\d+)`)

	// The reference, on the normal disk.
	refDir := filepath.Join(dir, "ref")
	os.MkdirAll(refDir, 0o755)
	refCfg := crashConfig(t, refDir, input, "30s")
	start := time.Now()
	d := startDaemon(t, refCfg)
	d.waitFor(t, atEnd, 60*time.Second)
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}
	refStop := stopped.FindString(d.log.String())
	want := outbox(t, refCfg)
	if fi, err := os.Stat(filepath.Join(refDir, "data", "edged.db")); err == nil {
		t.Logf("reference run: %v, %d outbox records, data file %d bytes, %s", time.Since(start).Round(time.Millisecond), len(want), fi.Size(), refStop)
	}

	// The same on a tmpfs with 1 MiB left.
	cfg := crashConfig(t, mnt, input, "250ms")
	filler := filepath.Join(mnt, "filler")
	enospcFill(t, filler, 1<<20)
	d = startDaemon(t, cfg)
	done := false
	t.Cleanup(func() {
		if !done { // the test failed before stopping it: free the mount
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	if !enospcWatch(t, d, regexp.MustCompile(`ingest log commit failed.*no space left on device`), atEnd, 60*time.Second) {
		t.Fatalf("no commit failure within 60 s; log:\n%s", d.log)
	}
	// Intake is paused: the daemon neither exits nor reaches the end of
	// its input while the disk is full.
	enospcWatch(t, d, nil, atEnd, 3*time.Second)
	full := d.log.String()
	t.Logf("while full for 3 s: %d commit failures logged, %d checkpoint failures",
		strings.Count(full, "ingest log commit failed"), strings.Count(full, "checkpoint failed"))

	// Space returns: the daemon catches up by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	d.waitFor(t, atEnd, 60*time.Second)
	t.Logf("read to the end %v after space returned", time.Since(freed).Round(time.Millisecond))
	code := d.stop(t, syscall.SIGTERM)
	done = true
	if code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}
	if got := stopped.FindString(d.log.String()); got == "" || got != refStop {
		t.Errorf("stop line %q, reference %q; log:\n%s", got, refStop, d.log)
	}
	got := outbox(t, cfg)
	if len(got) != len(want) {
		t.Fatalf("%d outbox records after a full disk, %d without; log:\n%s", len(got), len(want), d.log)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d differs after a full disk:\n got: %s\nwant: %s", i, got[i], want[i])
		}
	}
}
