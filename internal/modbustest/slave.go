// Package modbustest runs a real Modbus slave for tests: Debian's
// python3-pymodbus server (slave.py), over TCP on a free loopback port or
// over RTU on one end of a socat pseudo-terminal pair, with several units
// (slave ids) on one line. A test changes register values and makes a unit
// fail (silent, busy, a bad CRC, a short answer, a slow answer) while it
// runs, and can pull the line out and plug it back. The slave is another
// implementation of the protocol than the one under test.
package modbustest

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

//go:embed slave.py
var script []byte

// Python is the interpreter with Debian's pymodbus (not a virtualenv's).
var Python = "/usr/bin/python3"

// Unit is one slave's data: each table holds the values from address 0;
// an address past its end answers "illegal data address".
type Unit struct {
	HR []uint16 `json:"hr,omitempty"` // holding registers
	IR []uint16 `json:"ir,omitempty"` // input registers
	CO []uint16 `json:"co,omitempty"` // coils, 0 or 1
	DI []uint16 `json:"di,omitempty"` // discrete inputs, 0 or 1
}

// Counter is a register that goes up by 1 every time a request reads it.
type Counter struct {
	Unit    int    `json:"unit"`
	Table   string `json:"table"`
	Address int    `json:"address"`
}

// Config is the slave's data.
type Config struct {
	Units    map[int]Unit
	Counters []Counter
	// WireBaud, when set, delays each answer by the time a read request
	// and the answer take on an RS-485 line at that rate (a pty moves
	// bytes at once): for benchmarks of a line's poll rate.
	WireBaud int
}

func (c Config) MarshalJSON() ([]byte, error) {
	units := map[string]Unit{}
	for id, u := range c.Units {
		units[fmt.Sprint(id)] = u
	}
	return json.Marshal(struct {
		Units    map[string]Unit `json:"units"`
		Counters []Counter       `json:"counters,omitempty"`
		WireBaud int             `json:"wire_baud,omitempty"`
	}{units, c.Counters, c.WireBaud})
}

// Slave is a running slave.
type Slave struct {
	// Addr is the TCP slave's "127.0.0.1:PORT".
	Addr string
	// Dev is the RTU line's device for the code under test (a pty).
	Dev string

	t      testing.TB
	dir    string
	cfg    Config
	baud   int
	mu     sync.Mutex
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *lockedWriter
	socat  *exec.Cmd
}

// Need skips the test when the slave cannot run here (python3-pymodbus,
// or socat for RTU, not installed).
func Need(t testing.TB, rtu bool) {
	t.Helper()
	if err := exec.Command(Python, "-c", "import pymodbus.server, serial_asyncio").Run(); err != nil {
		t.Skip("python3-pymodbus (with python3-serial-asyncio) is not installed: apt-get install python3-pymodbus python3-serial-asyncio")
	}
	if _, err := exec.LookPath("socat"); rtu && err != nil {
		t.Skip("socat is not installed (apt-get install socat): the RTU tests need a pseudo-terminal pair")
	}
}

// StartTCP starts a Modbus TCP slave on a free loopback port.
func StartTCP(t testing.TB, cfg Config) *Slave {
	t.Helper()
	Need(t, false)
	s := &Slave{t: t, dir: t.TempDir(), cfg: cfg}
	t.Cleanup(s.Stop)
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = ln.Addr().String()
		ln.Close()
		_, port, _ := net.SplitHostPort(s.Addr)
		if err := s.start("--tcp", port); err == nil {
			return s
		} else if try == 2 {
			t.Fatal(err)
		}
	}
}

// StartRTU starts socat with a pseudo-terminal pair, and the slave on one
// end at baud; the code under test opens Dev.
func StartRTU(t testing.TB, cfg Config, baud int) *Slave {
	t.Helper()
	Need(t, true)
	s := &Slave{t: t, dir: t.TempDir(), cfg: cfg, baud: baud}
	s.Dev = filepath.Join(s.dir, "ttyRTU")
	t.Cleanup(s.Stop)
	s.Plug()
	return s
}

// Plug starts the line (socat) and the slave on it, with the slave's
// initial data: a device plugged in. A TCP slave starts again on its
// port.
func (s *Slave) Plug() {
	s.t.Helper()
	if s.Addr != "" {
		_, port, _ := net.SplitHostPort(s.Addr)
		if err := s.start("--tcp", port); err != nil {
			s.t.Fatal(err)
		}
		return
	}
	peer := filepath.Join(s.dir, "ttySlave")
	cmd := exec.Command("socat", "-d", "-d", "pty,raw,echo=0,link="+s.Dev, "pty,raw,echo=0,link="+peer)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.socat = cmd
	s.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err1 := os.Stat(s.Dev)
		_, err2 := os.Stat(peer)
		if err1 == nil && err2 == nil {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("socat did not create %s and %s: %s", s.Dev, peer, stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.start("--rtu", peer, "--baud", fmt.Sprint(s.baud)); err != nil {
		s.t.Fatal(err)
	}
}

// Unplug stops the slave and the line: Dev disappears, as a USB adapter
// pulled out; a TCP slave's port refuses connections.
func (s *Slave) Unplug() {
	s.stopSlave()
	s.mu.Lock()
	c := s.socat
	s.socat = nil
	s.mu.Unlock()
	if c != nil {
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
	}
}

// Stop stops everything (also done at the end of the test).
func (s *Slave) Stop() { s.Unplug() }

// start runs slave.py with args and waits for it to serve.
func (s *Slave) start(args ...string) error {
	path := filepath.Join(s.dir, "slave.py")
	if err := os.WriteFile(path, script, 0o644); err != nil {
		return err
	}
	cj, err := json.Marshal(s.cfg)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(s.dir, "slave.json")
	if err := os.WriteFile(cfgPath, cj, 0o644); err != nil {
		return err
	}
	cmd := exec.Command(Python, append([]string{path, "--config", cfgPath}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	stderr := &lockedWriter{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	s.mu.Lock()
	s.cmd, s.stdin, s.lines, s.stderr = cmd, stdin, lines, stderr
	s.mu.Unlock()
	if err := s.expect("ready", 15*time.Second); err != nil {
		s.stopSlave()
		return fmt.Errorf("modbus slave %v: %w; stderr:\n%s", args, err, stderr.String())
	}
	return nil
}

// lockedWriter lets the test read the slave's stderr while it writes.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (s *Slave) expect(want string, timeout time.Duration) error {
	select {
	case l, ok := <-s.lines:
		if !ok {
			return fmt.Errorf("exited before saying %q", want)
		}
		if l != want {
			return fmt.Errorf("said %q, want %q", l, want)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("did not say %q within %v", want, timeout)
	}
}

func (s *Slave) stopSlave() {
	s.mu.Lock()
	c, in := s.cmd, s.stdin
	s.cmd = nil
	s.mu.Unlock()
	if c == nil {
		return
	}
	in.Close() // the slave stops at the end of its commands
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.Process.Kill()
		<-done
	}
}

// command sends one command and waits for it to be applied.
func (s *Slave) command(cmd map[string]any) {
	s.t.Helper()
	b, _ := json.Marshal(cmd)
	s.mu.Lock()
	in := s.stdin
	s.mu.Unlock()
	if in == nil {
		s.t.Fatalf("modbus slave not running for %s", b)
	}
	if _, err := in.Write(append(b, '\n')); err != nil {
		s.t.Fatalf("modbus slave command %s: %v", b, err)
	}
	if err := s.expect("ok", 5*time.Second); err != nil {
		s.t.Fatalf("modbus slave command %s: %v", b, err)
	}
}

// Set writes values into a table ("hr", "ir", "co", "di") of unit from
// address on.
func (s *Slave) Set(unit int, table string, address int, values ...uint16) {
	s.t.Helper()
	s.command(map[string]any{"op": "set", "unit": unit, "table": table, "address": address, "values": values})
}

// Mode makes unit answer in a mode: "normal", "silent" (no answer),
// "busy" (exception 6, server device busy), "crc" (RTU: a bad checksum),
// "short" (one register fewer than asked), "delay" (after ms).
func (s *Slave) Mode(unit int, mode string, ms int) {
	s.t.Helper()
	s.command(map[string]any{"op": "mode", "unit": unit, "mode": mode, "ms": ms})
}

// Stderr is what the slave logged.
func (s *Slave) Stderr() string {
	s.mu.Lock()
	e := s.stderr
	s.mu.Unlock()
	if e == nil {
		return ""
	}
	return e.String()
}
