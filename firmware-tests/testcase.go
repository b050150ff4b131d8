//go:build firmware

package firmwaretests

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TargetsEnv lists the binaries to test and how to run them, one target
// per ";"-separated entry: NAME=BINARY [EMULATOR [EMULATOR ARGS...]], e.g.
//
//	arm64=/src/dist/edged-linux-arm64 qemu-aarch64-static;armv6=/src/dist/edged-linux-armv6 qemu-arm-static -cpu arm1176
//
// An entry without an emulator runs the binary natively (amd64=dist/edged-linux-amd64:
// a quick check of the harness itself). A relative BINARY is relative to
// the repository root. Unset: the three ARM targets of make cross in
// ../dist with the qemu-user-static emulators from PATH.
const TargetsEnv = "EDGED_FIRMWARE_TARGETS"

// Timeouts under emulation: qemu user mode runs edged about 10x slower
// than native, and the tests share 2 cores.
const (
	readyTimeout = 90 * time.Second
	stopTimeout  = 90 * time.Second
	runTimeout   = 60 * time.Second // a one-shot command: inspect, check
)

// Target is one cross-compiled binary and the emulator that runs it.
type Target struct {
	Name     string   // arm64, armv7, armv6, ...
	Bin      string   // absolute path of the binary
	Emulator []string // e.g. ["qemu-arm-static", "-cpu", "arm1176"]; empty: native
}

// Command is the command line that runs the binary with args.
func (tg Target) Command(args ...string) *exec.Cmd {
	if len(tg.Emulator) == 0 {
		return exec.Command(tg.Bin, args...)
	}
	return exec.Command(tg.Emulator[0], append(append(tg.Emulator[1:len(tg.Emulator):len(tg.Emulator)], tg.Bin), args...)...)
}

func (tg Target) String() string {
	return strings.TrimSpace(strings.Join(tg.Emulator, " ") + " " + tg.Bin)
}

// repoRoot is the repository root: the tests run in firmware-tests/.
func repoRoot() string {
	d, _ := filepath.Abs("..")
	return d
}

// Targets reads TargetsEnv (or the defaults) and checks that every binary
// and emulator exists.
func Targets() ([]Target, error) {
	spec := os.Getenv(TargetsEnv)
	if strings.TrimSpace(spec) == "" {
		spec = "arm64=dist/edged-linux-arm64 qemu-aarch64-static;" +
			"armv7=dist/edged-linux-armv7 qemu-arm-static;" +
			"armv6=dist/edged-linux-armv6 qemu-arm-static -cpu arm1176"
	}
	var out []Target
	for _, e := range strings.Split(spec, ";") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		name, rest, ok := strings.Cut(e, "=")
		f := strings.Fields(rest)
		if !ok || strings.TrimSpace(name) == "" || len(f) == 0 {
			return nil, fmt.Errorf("%s: entry %q: want NAME=BINARY [EMULATOR [ARGS...]]", TargetsEnv, e)
		}
		tg := Target{Name: strings.TrimSpace(name), Bin: f[0], Emulator: f[1:]}
		if !filepath.IsAbs(tg.Bin) {
			tg.Bin = filepath.Join(repoRoot(), tg.Bin)
		}
		if _, err := os.Stat(tg.Bin); err != nil {
			return nil, fmt.Errorf("target %s: %v (make cross builds the binaries; make firmware-test does it first)", tg.Name, err)
		}
		if len(tg.Emulator) > 0 {
			p, err := exec.LookPath(tg.Emulator[0])
			if err != nil {
				return nil, fmt.Errorf("target %s: emulator %v (apt-get install qemu-user-static)", tg.Name, err)
			}
			tg.Emulator[0] = p
		}
		out = append(out, tg)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no targets", TargetsEnv)
	}
	return out, nil
}

// TestCase is one test's run of a target: a directory for configs, data
// dirs and logs, and the processes started in it. When the test ends,
// processes still running are stopped with SIGINT, and the directory is
// removed unless the test failed: then it is kept and its path logged,
// data files and every process's log included.
type TestCase struct {
	t      *testing.T
	Target Target
	dir    string
	apps   []*App
	runs   int
}

// NewTestCase makes the test case's directory under $TMPDIR.
func NewTestCase(t *testing.T, target Target) *TestCase {
	t.Helper()
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp("", "edged-firmware-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	tc := &TestCase{t: t, Target: target, dir: dir}
	t.Cleanup(tc.stop)
	return tc
}

// Dir is the test case's directory.
func (tc *TestCase) Dir() string { return tc.dir }

// Path is a path in the test case's directory.
func (tc *TestCase) Path(name string) string { return filepath.Join(tc.dir, name) }

// WriteFile writes a file in the test case's directory and returns its path.
func (tc *TestCase) WriteFile(name, content string) string {
	tc.t.Helper()
	p := tc.Path(name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tc.t.Fatal(err)
	}
	return p
}

// StartEdged starts `edged run -c cfg` under the target's emulator, with
// env added to the environment, and waits for its "ready" log line.
func (tc *TestCase) StartEdged(cfg string, env ...string) *App {
	tc.t.Helper()
	tc.runs++
	name := fmt.Sprintf("%s edged#%d", tc.Target.Name, tc.runs)
	app, err := startApp(name, tc.Target, tc.Path(fmt.Sprintf("edged-%d.log", tc.runs)), env, "run", "-c", cfg)
	if err != nil {
		tc.t.Fatal(err)
	}
	tc.apps = append(tc.apps, app)
	start := time.Now()
	if _, err := app.WaitLogged(readyRE, readyTimeout); err != nil {
		tc.t.Fatalf("%v\nlog:\n%s", err, app.Log())
	}
	tc.t.Logf("%s ready after %v", app.Name, time.Since(start).Round(time.Millisecond))
	return app
}

// Run runs a one-shot edged command (inspect, check, ...) under the
// emulator and returns its stdout, stderr and exit status.
func (tc *TestCase) Run(args ...string) (string, string, int) {
	tc.t.Helper()
	cmd := tc.Target.Command(args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	// Bounded: a command that hangs under the emulator is killed.
	timer := time.AfterFunc(runTimeout, func() { cmd.Process.Kill() })
	err := cmd.Run()
	if !timer.Stop() {
		tc.t.Fatalf("edged %s: still running after %v, killed; stderr: %s", strings.Join(args, " "), runTimeout, se.String())
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return so.String(), se.String(), ee.ExitCode()
	case err != nil:
		tc.t.Fatal(err)
	}
	return so.String(), se.String(), 0
}

// MustRun is Run, failing the test on a non-zero exit.
func (tc *TestCase) MustRun(args ...string) string {
	tc.t.Helper()
	so, se, code := tc.Run(args...)
	if code != 0 {
		tc.t.Fatalf("edged %s: exit %d: %s", strings.Join(args, " "), code, se)
	}
	return so
}

// stop stops what is still running with SIGINT, and removes the directory
// unless the test failed.
func (tc *TestCase) stop() {
	for _, a := range tc.apps {
		if a.Exited() {
			continue
		}
		if _, err := a.Stop(syscall.SIGINT, stopTimeout); err != nil {
			tc.t.Errorf("cleanup: %v", err)
		}
	}
	if tc.t.Failed() {
		tc.t.Logf("%s failed: kept %s (configs, data dirs, edged-N.log for each start)", tc.t.Name(), tc.dir)
		return
	}
	os.RemoveAll(tc.dir)
}
