package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// edgedBin is the real binary, built once for the package's tests.
var edgedBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "edged-test-")
	if err != nil {
		panic(err)
	}
	edgedBin = filepath.Join(dir, "edged")
	if runtime.GOOS == "windows" {
		edgedBin += ".exe"
	}
	out, err := exec.Command("go", "build", "-o", edgedBin, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runEdged runs the real binary in dir with stdin and returns its stdout,
// stderr and exit status.
func runEdged(t *testing.T, dir string, stdin []byte, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(edgedBin, args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	var so, se syncBuffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return so.String(), se.String(), code
}

// golden compares got with the file, or rewrites it under -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestBatchGolden runs edged batch in each testdata/batch/<case> directory
// with the arguments in its args file (one per line) and compares stdout,
// stderr and the exit status with the golden files there.
func TestBatchGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/batch/*/args")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, argsFile := range cases {
		dir := filepath.Dir(argsFile)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			raw, err := os.ReadFile(argsFile)
			if err != nil {
				t.Fatal(err)
			}
			var args []string
			for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
					args = append(args, l)
				}
			}
			stdin, _ := os.ReadFile(filepath.Join(dir, "stdin"))
			so, se, code := runEdged(t, dir, stdin, args...)
			golden(t, filepath.Join(dir, "stdout.golden"), so)
			golden(t, filepath.Join(dir, "stderr.golden"), se)
			golden(t, filepath.Join(dir, "exit.golden"), strings.TrimSpace(string(rune('0'+code)))+"\n")
		})
	}
}

// TestSineDemo runs the README's first command with the real binary: event
// time gives 100 samples and a sum of 0 (to rounding) in every 1 s window,
// although the samples arrive up to 2 s out of order.
func TestSineDemo(t *testing.T) {
	readings, se, code := runEdged(t, ".", nil, "simulate", "sine")
	if code != 0 {
		t.Fatalf("simulate: exit %d: %s", code, se)
	}
	out, se, code := runEdged(t, ".", []byte(readings), "batch", "-c", "../../configs/sine.toml")
	if code != 0 {
		t.Fatalf("batch: exit %d: %s", code, se)
	}
	var n int
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			Type  string
			Count int
			Sum   float64
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Type != "window" || r.Count != 100 || math.Abs(r.Sum) > 1e-9 {
			t.Errorf("record %s: want a window of 100 samples summing to 0", l)
		}
		n++
	}
	if n != 10 {
		t.Errorf("%d windows, want 10", n)
	}
	// By arrival time the same samples do not sum to 0: the point of the demo.
	cmp, se, code := runEdged(t, ".", nil, "simulate", "sine", "--compare")
	if code != 0 {
		t.Fatalf("compare: exit %d: %s", code, se)
	}
	if !strings.Contains(cmp, "9.627") {
		t.Errorf("compare table changed; update README.md:\n%s", cmp)
	}
}

// TestDemoConfig runs the README's first command (edged run on
// configs/demo.toml, with its data dir and port moved for the test): the
// simulator feeds the windows, records come out on stdout, SIGTERM exits 0
// without a warning.
func TestDemoConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for ~13 s")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(edgedBin, "run", "-c", "../../configs/demo.toml")
	_, httpPort, _ := strings.Cut(freePort(t), ":")
	cmd.Env = append(os.Environ(), "EDGED_DEMO_DIR="+filepath.Join(t.TempDir(), "demo"), fmt.Sprint("EDGED_DEMO_PORT=", port), "EDGED_DEMO_HTTP_PORT="+httpPort)
	var so, se syncBuffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && strings.Count(so.String(), `"window":"temp_10s"`) < 20 {
		time.Sleep(200 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo: %v\n%s", err, se.String())
	}
	n := strings.Count(so.String(), `"window":"temp_10s"`)
	if n < 20 {
		t.Fatalf("%d window records on stdout after 30 s; stderr:\n%s", n, se.String())
	}
	first := strings.SplitN(so.String(), "\n", 2)[0]
	var r map[string]any
	if err := json.Unmarshal([]byte(first), &r); err != nil || r["device"] != "demo" || r["seq"] != 1.0 || r["count"].(float64) < 1 {
		t.Fatalf("first record %s", first)
	}
	// A clean stop says nothing alarming (the embedded broker goes down
	// after the output that publishes to it).
	for _, l := range strings.Split(se.String(), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			t.Errorf("demo: %s", l)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestShippedConfigsCheck runs `edged check` on every file in configs/:
// beyond the config's own rules, windows and detectors must build.
func TestShippedConfigsCheck(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.toml")
	if len(files) < 5 {
		t.Fatalf("only %d configs", len(files))
	}
	for _, f := range files {
		cmd := exec.Command(edgedBin, "check", "-c", f)
		cmd.Env = append(os.Environ(), "EDGED_BROKER_PASSWORD=test")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("edged check %s: %v\n%s", f, err, out)
		}
	}
}
