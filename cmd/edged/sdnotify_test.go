package main

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
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
