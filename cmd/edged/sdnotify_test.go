package main

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/runner"
)

// TestSystemdNotify runs the daemon as systemd runs a Type=notify unit with
// WatchdogSec: a real unixgram socket in $NOTIFY_SOCKET and $WATCHDOG_USEC.
// It says READY=1, then WATCHDOG=1 again and again while it runs, and
// RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := httpConfig(t, dir, fmt.Sprintf("listen = %q", freePort(t)))
	d := startLogged(t, cfg, "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")

	var got []string
	read := func(timeout time.Duration) string {
		buf := make([]byte, 256)
		l.SetReadDeadline(time.Now().Add(timeout))
		n, _, err := l.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("after %q: %v; log:\n%s", got, err, d.log)
		}
		got = append(got, string(buf[:n]))
		return string(buf[:n])
	}
	if s := read(10 * time.Second); s != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", s)
	}
	for range 5 { // one every 100 ms
		if s := read(2 * time.Second); s != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", s)
		}
	}
	// SIGHUP: RELOADING=1, then READY=1 once the new config runs.
	d.cmd.Process.Signal(syscall.SIGHUP)
	for s := ""; s != "READY=1"; {
		s = read(10 * time.Second)
		if s != "WATCHDOG=1" && s != "RELOADING=1" && s != "READY=1" {
			t.Fatalf("got %q while reloading", s)
		}
	}
	if !slices.Contains(got, "RELOADING=1") {
		t.Fatalf("no RELOADING=1 before READY=1: %q", got)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	for s := ""; s != "STOPPING=1"; {
		s = read(30 * time.Second)
		if s != "WATCHDOG=1" && s != "STOPPING=1" {
			t.Fatalf("got %q while stopping", s)
		}
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("no exit 30 s after SIGTERM; log:\n%s", d.log)
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if strings.Contains(d.log.String(), "stuck") {
		t.Errorf("the watchdog found a healthy loop stuck:\n%s", d.log)
	}
}

// TestWatchdogStopsOnAStuckLoop: the pings follow the runner's snapshots.
// While the newest one is fresh WATCHDOG=1 comes every quarter of the
// watchdog time; once it is older than the stale limit (3 s) they stop and
// the log says why, so that systemd restarts edged.
func TestWatchdogStopsOnAStuckLoop(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "400000")
	t.Setenv("WATCHDOG_PID", "")
	var taken atomic.Int64 // the newest snapshot's time, Unix ns
	taken.Store(time.Now().UnixNano())
	snapshot := func() *runner.Snapshot { return &runner.Snapshot{Taken: time.Unix(0, taken.Load())} }
	var logBuf syncBuffer
	stop := notifySystemd(snapshot, slog.New(slog.NewTextHandler(&logBuf, nil)))
	defer stop()

	// counts reads the datagrams for d and counts them by content.
	counts := func(d time.Duration) map[string]int {
		n := map[string]int{}
		buf := make([]byte, 64)
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			l.SetReadDeadline(end)
			k, _, err := l.ReadFromUnix(buf)
			if err != nil {
				break
			}
			n[string(buf[:k])]++
		}
		return n
	}
	if n := counts(time.Second); n["READY=1"] != 1 || n["WATCHDOG=1"] < 5 {
		t.Fatalf("fresh snapshots: %v, want READY=1 once and WATCHDOG=1 every 100 ms", n)
	}
	taken.Store(time.Now().Add(-10 * time.Second).UnixNano()) // the loop stopped publishing
	counts(200 * time.Millisecond)                            // a ping already on its way
	if n := counts(time.Second); n["WATCHDOG=1"] != 0 {
		t.Errorf("a stuck loop still pinged: %v", n)
	}
	if !strings.Contains(logBuf.String(), "the pipeline loop is stuck") {
		t.Errorf("the log does not say why the pings stopped:\n%s", logBuf.String())
	}
	taken.Store(time.Now().UnixNano())
	if n := counts(time.Second); n["WATCHDOG=1"] < 5 {
		t.Errorf("pings did not resume with fresh snapshots: %v", n)
	}
}
