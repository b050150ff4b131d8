//go:build firmware

package firmwaretests

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Regular expressions for what the harness reads from edged's log.
var (
	// readyRE: the pipeline has restored its checkpoint and caught up with
	// the log (runner.Run, once per start).
	readyRE = regexp.MustCompile(`ready: pipeline caught up`)
	// brokerAddrRE: the embedded broker's bound address.
	brokerAddrRE = regexp.MustCompile(`embedded MQTT broker started.* listen=(\S+:\d{1,5})`)
	// stoppedRE: the last line of a clean shutdown (final checkpoint taken)
	// and the log offset that checkpoint covers.
	stoppedRE = regexp.MustCompile(`edged stopped cleanly.*\blog_offset=(\d+)`)
)

// App is one process of a cross-compiled edged, run under its emulator.
// Its stderr and stdout are kept line by line (and stderr copied to a file
// in the test case's directory) so that tests can wait for log lines.
type App struct {
	// Name says which run this is in messages, e.g. "arm64 edged#2".
	Name string

	cmd     *exec.Cmd
	logFile *os.File

	mu      sync.Mutex
	streams [2]stream // 0: stderr, 1: stdout
	changed chan struct{}
	done    chan struct{} // closed when the process has exited and its output is read
	exit    error         // cmd.Wait's error, read after done
}

// stream is the lines of one output and how far WaitFor has read them.
type stream struct {
	lines  []string
	cursor int
	closed bool
}

const (
	stderrStream = 0
	stdoutStream = 1
)

// startApp starts target's binary with args (e.g. "run", "-c", cfg), with
// env added to this process's environment. stderr is copied to logPath.
func startApp(name string, target Target, logPath string, env []string, args ...string) (*App, error) {
	cmd := target.Command(args...)
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: a test's Ctrl-C does not reach it before the
	// harness has decided what to do, and nothing else is signalled.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(lf, "# %s\n", strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	a := &App{Name: name, cmd: cmd, logFile: lf, changed: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.read(stderrStream, stderr, lf) }()
	go func() { defer wg.Done(); a.read(stdoutStream, stdout, nil) }()
	go func() {
		wg.Wait() // the pipes must be drained before Wait closes them
		err := cmd.Wait()
		lf.Close()
		a.mu.Lock()
		a.exit = err
		a.mu.Unlock()
		close(a.done)
	}()
	return a, nil
}

func (a *App) read(which int, r io.Reader, copyTo io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if copyTo != nil {
			fmt.Fprintln(copyTo, sc.Text())
		}
		a.mu.Lock()
		a.streams[which].lines = append(a.streams[which].lines, sc.Text())
		a.notifyLocked()
		a.mu.Unlock()
	}
	a.mu.Lock()
	a.streams[which].closed = true
	a.notifyLocked()
	a.mu.Unlock()
}

func (a *App) notifyLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// Pid is the process id: the emulator's, which is the emulated program's
// (qemu user mode runs the guest in its own process).
func (a *App) Pid() int { return a.cmd.Process.Pid }

// WaitFor reads the log (stderr) from where the previous WaitFor stopped
// until a line matches re, and returns the line's submatches. It fails
// when the process exits first or after timeout.
func (a *App) WaitFor(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	return a.waitFor(stderrStream, re, timeout, true)
}

// WaitLogged is WaitFor from the first line of the log, whatever WaitFor
// has read; it does not move WaitFor's position.
func (a *App) WaitLogged(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	return a.waitFor(stderrStream, re, timeout, false)
}

// WaitForStdout is WaitFor on stdout (records of a stdout output).
func (a *App) WaitForStdout(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	return a.waitFor(stdoutStream, re, timeout, true)
}

func (a *App) waitFor(which int, re *regexp.Regexp, timeout time.Duration, fromCursor bool) ([]string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	i := 0
	for {
		a.mu.Lock()
		s := &a.streams[which]
		if fromCursor {
			i = max(i, s.cursor)
		}
		for ; i < len(s.lines); i++ {
			if m := re.FindStringSubmatch(s.lines[i]); m != nil {
				if fromCursor {
					s.cursor = i + 1
				}
				a.mu.Unlock()
				return m, nil
			}
		}
		closed, changed := s.closed, a.changed
		a.mu.Unlock()
		if closed {
			<-a.done
			return nil, fmt.Errorf("%s exited (%s) before logging %q", a.Name, a.exitStatus(), re)
		}
		select {
		case <-changed:
		case <-deadline.C:
			return nil, fmt.Errorf("%s: no %q within %v", a.Name, re, timeout)
		}
	}
}

// Find returns the submatches of the first log line so far that matches
// re, or nil.
func (a *App) Find(re *regexp.Regexp) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.streams[stderrStream].lines {
		if m := re.FindStringSubmatch(l); m != nil {
			return m
		}
	}
	return nil
}

// Log is the whole log (stderr) so far.
func (a *App) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.streams[stderrStream].lines, "\n")
}

// Stdout is every stdout line so far.
func (a *App) Stdout() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.streams[stdoutStream].lines...)
}

// exitStatus says how the process ended, once it has.
func (a *App) exitStatus() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.exit == nil {
		return "exit status 0"
	}
	return a.exit.Error()
}

// Exited reports whether the process has exited.
func (a *App) Exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Stop sends sig (SIGINT or SIGTERM: edged shuts down cleanly on both)
// and waits up to timeout for the exit; it returns the exit status. After
// the timeout the process is killed and an error returned.
func (a *App) Stop(sig syscall.Signal, timeout time.Duration) (int, error) {
	if !a.Exited() {
		if err := a.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return -1, err
		}
	}
	select {
	case <-a.done:
	case <-time.After(timeout):
		a.cmd.Process.Kill()
		<-a.done
		return -1, fmt.Errorf("%s did not exit within %v of %v; killed", a.Name, timeout, sig)
	}
	return a.cmd.ProcessState.ExitCode(), nil
}

// Kill sends SIGKILL and waits for the process to be gone: a crash or a
// power cut as far as the process knows. It is sent to the emulator's
// process, which is the emulated edged: no handler runs, nothing is
// flushed.
func (a *App) Kill() error {
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-a.done:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s still running 30 s after SIGKILL", a.Name)
	}
}

// CPUTicks is the user+system CPU time of the process in clock ticks
// (USER_HZ, 100 a second), from /proc/PID/stat.
func (a *App) CPUTicks() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", a.Pid()))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+2:]))
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return ut + st, nil
}
