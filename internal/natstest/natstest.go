// Package natstest starts a real nats-server with JetStream on a loopback
// port for tests, and reads back what a stream holds.
package natstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ServerPath is the server binary (Debian's nats-server). Tests that need
// it skip when it is missing.
var ServerPath = "/usr/sbin/nats-server"

// Options configures a test server; the zero value is an anonymous one.
type Options struct {
	// User and Password, when set, are the only account allowed.
	User, Password string
}

// Server is a running nats-server -js with its store in a temporary
// directory.
type Server struct {
	// Addr is the listener, "127.0.0.1:PORT".
	Addr string

	t       testing.TB
	dir     string
	opts    Options
	logPath string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
}

// URL is the server's nats:// URL.
func (s *Server) URL() string { return "nats://" + s.Addr }

// Log returns what the server logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// Start starts a server on a free loopback port and stops it when the test
// ends. It skips the test when nats-server is not installed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := os.Stat(ServerPath); err != nil {
		t.Skipf("nats-server not installed at %s: %v", ServerPath, err)
	}
	s := &Server{t: t, dir: t.TempDir(), opts: opts}
	s.logPath = filepath.Join(s.dir, "nats.log")
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		s.Addr = l.Addr().String()
		l.Close()
		if err = s.start(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("nats-server did not start: %v\nlog:\n%s", err, s.Log())
	return nil
}

func (s *Server) start() error {
	host, port, _ := net.SplitHostPort(s.Addr)
	args := []string{"-js", "-sd", filepath.Join(s.dir, "store"), "-a", host, "-p", port, "-l", s.logPath}
	if s.opts.User != "" {
		args = append(args, "--user", s.opts.User, "--pass", s.opts.Password)
	}
	cmd := exec.Command(ServerPath, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case <-exited:
			return fmt.Errorf("nats-server exited: %s %s", cmd.ProcessState, strings.TrimSpace(out.String()))
		default:
		}
		// Ready once JetStream answers.
		if nc, err := nats.Connect(s.URL(), nats.UserInfo(s.opts.User, s.opts.Password), nats.Timeout(time.Second)); err == nil {
			js, _ := jetstream.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			nc.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("nats-server on %s not ready", s.Addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits for
// it. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// Restart starts a stopped server again on the same port with the same
// store: the streams and what they hold survive.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for i := 0; i < 50; i++ { // the port may linger a moment
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("nats-server did not restart: %v\nlog:\n%s", err, s.Log())
}

// Connect connects a client of the test's own (with the server's account).
func (s *Server) Connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.URL(), nats.UserInfo(s.opts.User, s.opts.Password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// Msg is one message of a stream.
type Msg struct {
	Seq     uint64 // the stream sequence: the order the stream stored it in
	Subject string
	Header  nats.Header
	Data    []byte
}

// Read returns every message of stream, in stream order; nil when the
// stream does not exist.
func (s *Server) Read(t testing.TB, stream string) []Msg {
	t.Helper()
	_, js := s.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []Msg
	if info.State.Msgs == 0 {
		return nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for uint64(len(out)) < info.State.Msgs {
		batch, err := c.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, Msg{Seq: md.Sequence.Stream, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			n++
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), nats.ErrTimeout) {
			t.Fatal(batch.Error())
		}
		if n == 0 {
			t.Fatalf("stream %s: %d of %d messages read", stream, len(out), info.State.Msgs)
		}
	}
	return out
}
