package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/ingest"
)

var serialCPU = flag.Duration("serial.cpu", 0, "run TestSerialCPU: feed a pty at 115200 baud for this long and report edged's CPU use (e.g. 10s)")
var serialCommit = flag.Duration("serial.commit", 0, "TestSerialCPU: [store] commit_interval of the daemon (0: the default)")

// serialPty is a socat process joining two pseudo-terminals: edged opens
// dev, the test plays the device on peer.
type serialPty struct {
	cmd  *exec.Cmd
	peer *os.File
}

func needSocat(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("socat is not installed (apt-get install socat): the serial tests need a real pseudo-terminal pair")
	}
}

func startSerialPty(t *testing.T, dev, peer string) *serialPty {
	t.Helper()
	cmd := exec.Command("socat", "-d", "-d", "pty,raw,echo=0,link="+dev, "pty,raw,echo=0,link="+peer)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serialPty{cmd: cmd}
	t.Cleanup(p.unplug)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err1 := os.Stat(dev)
		_, err2 := os.Stat(peer)
		if err1 == nil && err2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socat did not create %s and %s", dev, peer)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f, err := os.OpenFile(peer, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.peer = f
	return p
}

// unplug ends socat: the port disappears as a USB adapter pulled out.
func (p *serialPty) unplug() {
	if p.cmd.ProcessState != nil {
		return
	}
	if p.peer != nil {
		p.peer.Close()
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

func (p *serialPty) write(t *testing.T, s string) {
	t.Helper()
	if _, err := p.peer.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func serialConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	cfg := filepath.Join(dir, "edged.toml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[device]
id = "gw-serial"
data_dir = %q
[pipeline]
max_out_of_orderness = "0s"
allowed_lateness = "0s"
idle_timeout = "0s"
checkpoint_interval = "100ms"
[log]
level = "info"
[[source]]
name = "tty"
type = "serial"
port = %q
baud = 115200
format = "csv"
%s
[[window]]
name = "t1s"
type = "tumbling"
size = "1s"
aggregates = ["count", "sum", "min", "max"]
`, filepath.Join(dir, "data"), filepath.Join(dir, "dev"), extra)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSerialRunUnplug runs `edged run` on a pseudo-terminal: CSV lines with
// a header, an unplug in the middle of a window, the device back on the same
// path sending its header again, SIGTERM. The outbox holds the windows
// computed across the reconnect, and only the one malformed line is
// quarantined, not the repeated header.
func TestSerialRunUnplug(t *testing.T) {
	needSocat(t)
	dir := t.TempDir()
	dev, peer := filepath.Join(dir, "dev"), filepath.Join(dir, "peer")
	cfg := serialConfig(t, dir, "")
	p := startSerialPty(t, dev, peer)
	d := startDaemon(t, cfg)
	d.waitFor(t, regexp.MustCompile(`serial port opened`), 10*time.Second)

	const base int64 = 1_700_000_000_000
	p.write(t, "sensor,ts,value\n")
	p.write(t, fmt.Sprintf("s1,%d,1\ns1,%d,2\n", base+100, base+500))
	p.write(t, "s1,not-a-time,9\n")
	p.write(t, fmt.Sprintf("s1,%d,3\n", base+1200))
	time.Sleep(300 * time.Millisecond)

	p.unplug()
	d.waitFor(t, regexp.MustCompile(`serial port lost`), 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	p = startSerialPty(t, dev, peer)
	d.waitFor(t, regexp.MustCompile(`serial port reconnected`), 10*time.Second)
	p.write(t, "sensor,ts,value\n") // the device restarted: its header again
	p.write(t, fmt.Sprintf("s1,%d,4\ns1,%d,5\ns1,%d,6\n", base+1700, base+2100, base+3500))
	time.Sleep(500 * time.Millisecond)

	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}

	type rec struct {
		Type, Window, Key string
		Start, End        int64
		Count             int
		Sum, Min, Max     float64
		Seq               int64
	}
	want := []rec{
		{"window", "t1s", "s1", base, base + 1000, 2, 3, 1, 2, 1},
		{"window", "t1s", "s1", base + 1000, base + 2000, 2, 7, 3, 4, 2}, // across the unplug
		{"window", "t1s", "s1", base + 2000, base + 3000, 1, 5, 5, 5, 3},
	}
	lines := outbox(t, cfg)
	if len(lines) != len(want) {
		t.Fatalf("outbox has %d records, want %d:\n%s\nlog:\n%s", len(lines), len(want), strings.Join(lines, "\n"), d.log)
	}
	for i, l := range lines {
		var r rec
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		if r != want[i] {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, r, want[i])
		}
	}

	out, errOut, code := runEdged(t, ".", nil, "inspect", "-c", cfg, "--quarantine")
	if code != 0 {
		t.Fatalf("inspect --quarantine: exit %d: %s", code, errOut)
	}
	q := strings.Split(strings.TrimSpace(out), "\n")
	if len(q) != 1 || !strings.Contains(q[0], "not-a-time") || !strings.Contains(q[0], `"source":"tty"`) {
		t.Errorf("quarantine: want only the malformed line, got:\n%s", out)
	}
}

func TestSerialRunBadPollCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := serialConfig(t, dir, `poll_command = 'READ\q'`+"\npoll_every = \"1s\"")
	_, errOut, code := runEdged(t, ".", nil, "run", "-c", cfg)
	if code != exitUsage || !strings.Contains(errOut, `unknown escape \q`) {
		t.Errorf("exit %d, stderr %q; want 2 and the bad escape named", code, errOut)
	}
}

func TestSerialPorts(t *testing.T) {
	// The real list: whatever this machine has, exit 0.
	out, errOut, code := runEdged(t, ".", nil, "ports")
	if code != 0 || (out != "no serial ports found\n" && !strings.HasPrefix(out, "PORT")) {
		t.Errorf("edged ports: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = runEdged(t, ".", nil, "ports", "--json")
	var ports []ingest.PortInfo
	if err := json.Unmarshal([]byte(out), &ports); code != 0 || err != nil {
		t.Errorf("edged ports --json: exit %d, %v: %q", code, err, out)
	}

	// A faked list, in-process.
	defer func(f func() ([]ingest.PortInfo, error)) { listPorts = f }(listPorts)
	listPorts = func() ([]ingest.PortInfo, error) {
		return []ingest.PortInfo{
			{Name: "/dev/ttyAMA0"},
			{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A6008isP", Manufacturer: "FTDI", Product: "FT232R USB UART"},
		}, nil
	}
	var so, se bytes.Buffer
	if code := run([]string{"ports"}, nil, &so, &se); code != 0 {
		t.Fatalf("exit %d: %s", code, se.String())
	}
	want := "PORT          USB  VID   PID   SERIAL    PRODUCT\n" +
		"/dev/ttyAMA0  no   -     -     -         -\n" +
		"/dev/ttyUSB0  yes  0403  6001  A6008isP  FTDI FT232R USB UART\n"
	if so.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", so.String(), want)
	}
	so.Reset()
	if code := run([]string{"ports", "--json"}, nil, &so, &se); code != 0 {
		t.Fatalf("exit %d: %s", code, se.String())
	}
	if !strings.Contains(so.String(), `"vid": "0403"`) || !strings.Contains(so.String(), `"serial_number": "A6008isP"`) {
		t.Errorf("json: %s", so.String())
	}
	listPorts = func() ([]ingest.PortInfo, error) { return nil, nil }
	so.Reset()
	if code := run([]string{"ports"}, nil, &so, &se); code != 0 || so.String() != "no serial ports found\n" {
		t.Errorf("no ports: exit %d, %q", code, so.String())
	}
	so.Reset()
	if code := run([]string{"ports", "--json"}, nil, &so, &se); code != 0 || strings.TrimSpace(so.String()) != "[]" {
		t.Errorf("no ports, json: exit %d, %q", code, so.String())
	}
}

// cpuTicks returns the user+system CPU time of pid in clock ticks
// (USER_HZ, 100 a second on Linux).
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// TestSerialCPU measures the CPU that `edged run` spends on a serial source
// receiving lines at the full rate of 115200 baud (11,520 bytes a second,
// 8N1), each line written on its own as a sensor sends it:
//
//	go test ./cmd/edged -run TestSerialCPU -serial.cpu=10s -v
//
// It reports the share of one core, idle and under load.
func TestSerialCPU(t *testing.T) {
	if *serialCPU <= 0 {
		t.Skip("a measurement: go test ./cmd/edged -run TestSerialCPU -serial.cpu=10s -v")
	}
	needSocat(t)
	dir := t.TempDir()
	dev, peer := filepath.Join(dir, "dev"), filepath.Join(dir, "peer")
	cfg := filepath.Join(dir, "edged.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[device]
id = "gw-cpu"
data_dir = %q
[[source]]
name = "tty"
type = "serial"
port = %q
baud = 115200
format = "json"
[[window]]
name = "t10s"
type = "tumbling"
size = "10s"
aggregates = ["count", "mean", "min", "max", "p95"]
`, filepath.Join(dir, "data"), dev)), 0o644)
	if *serialCommit > 0 {
		f, _ := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "[store]\ncommit_interval = %q\n", serialCommit.String())
		f.Close()
	}
	p := startSerialPty(t, dev, peer)
	d := startDaemon(t, cfg)
	d.waitFor(t, regexp.MustCompile(`serial port opened`), 10*time.Second)
	pid := d.cmd.Process.Pid
	time.Sleep(time.Second)

	measure := func(run func(until time.Time)) (pct float64, wall time.Duration) {
		t0, c0 := time.Now(), cpuTicks(t, pid)
		run(t0.Add(*serialCPU))
		wall = time.Since(t0)
		c1 := cpuTicks(t, pid)
		return float64(c1-c0) / 100 / wall.Seconds() * 100, wall
	}
	idle, _ := measure(func(until time.Time) { time.Sleep(time.Until(until)) })

	const rate = 115200 / 10 // bytes a second, 8N1
	var sent, lines int64
	busy, wall := measure(func(until time.Time) {
		start := time.Now()
		ts := time.Now().UnixMilli()
		for time.Now().Before(until) {
			line := fmt.Sprintf(`{"sensor":"s%d","ts":%d,"value":%.3f}`+"\n", lines%8, ts+lines*4, float64(lines%1000)/10)
			// Send each line when the wire would have finished it.
			due := start.Add(time.Duration(float64(sent+int64(len(line))) / rate * float64(time.Second)))
			time.Sleep(time.Until(due))
			p.write(t, line)
			sent += int64(len(line))
			lines++
		}
	})
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}
	t.Logf("115200 baud: %d lines, %d bytes in %.1f s (%.0f bytes/s); edged CPU %.2f%% of one core (idle %.2f%%; target < 1%%: %s; commit_interval %v)",
		lines, sent, wall.Seconds(), float64(sent)/wall.Seconds(), busy, idle, map[bool]string{true: "met", false: "MISSED"}[busy < 1], *serialCommit)
}
