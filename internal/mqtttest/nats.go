package mqtttest

import (
	"bytes"
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
)

// NATSPath is the nats-server binary. Tests that need it skip when it is
// missing.
var NATSPath = "/usr/sbin/nats-server"

// NATS is a running nats-server with its MQTT listener (which needs
// JetStream, kept in the test's directory, and a server name). With
// Options.TLS, the MQTT listener is TLS only (nats-server has one MQTT
// listener): TLSAddr is set and Addr is empty. Options.MaxInflight and
// MaxQueued do not apply (nats-server's max_ack_pending bounds the
// unacknowledged QoS 1 messages, 1024 by default).
type NATS struct {
	// Addr is the plain MQTT listener, "127.0.0.1:PORT" ("" with TLS).
	Addr string
	// TLSAddr is the MQTT listener with TLS.
	TLSAddr string

	t       testing.TB
	dir     string
	conf    string
	logPath string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
}

// URL is the MQTT listener's tcp:// URL ("" with TLS).
func (n *NATS) URL() string {
	if n.Addr == "" {
		return ""
	}
	return "tcp://" + n.Addr
}

// TLSURL is the MQTT listener's ssl:// URL ("" without TLS).
func (n *NATS) TLSURL() string {
	if n.TLSAddr == "" {
		return ""
	}
	return "ssl://" + n.TLSAddr
}

// Log returns what nats-server logged so far.
func (n *NATS) Log() string {
	data, _ := os.ReadFile(n.logPath)
	return string(data)
}

// StartNATS starts nats-server with an MQTT listener on free loopback
// ports and stops it when the test ends. It skips the test when
// nats-server is not installed.
func StartNATS(t testing.TB, opts Options) *NATS {
	t.Helper()
	if _, err := os.Stat(NATSPath); err != nil {
		t.Skipf("nats-server not installed at %s: %v", NATSPath, err)
	}
	n := &NATS{t: t, dir: t.TempDir()}
	n.logPath = filepath.Join(n.dir, "nats.log")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		cport, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		mport, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", mport)
		n.Addr, n.TLSAddr = addr, ""
		if opts.TLS != nil {
			n.Addr, n.TLSAddr = "", addr
		}
		if err := n.writeConf(opts, cport, mport); err != nil {
			t.Fatal(err)
		}
		if lastErr = n.start(); lastErr == nil {
			t.Cleanup(n.Stop)
			return n
		}
	}
	t.Fatalf("nats-server did not start: %v\nlog:\n%s", lastErr, n.Log())
	return nil
}

func (n *NATS) writeConf(opts Options, cport, mport int) error {
	var c bytes.Buffer
	fmt.Fprintf(&c, "server_name: edged_test_%d\nlisten: 127.0.0.1:%d\nwrite_deadline: \"30s\"\n", mport, cport)
	fmt.Fprintf(&c, "jetstream { store_dir: %q }\n", filepath.Join(n.dir, "js"))
	if len(opts.Users) > 0 {
		fmt.Fprintf(&c, "authorization { users = [\n")
		for u, p := range opts.Users {
			fmt.Fprintf(&c, "  {user: %q, password: %q}\n", u, p)
		}
		fmt.Fprintf(&c, "] }\n")
	}
	// ack_wait: unacknowledged QoS 1 messages are sent again after it
	// (30 s by default), also to a session that resumes.
	fmt.Fprintf(&c, "mqtt {\n  listen: 127.0.0.1:%d\n  ack_wait: \"2s\"\n", mport)
	if opts.TLS != nil {
		fmt.Fprintf(&c, "  tls { cert_file: %q\n    key_file: %q\n    ca_file: %q\n    verify: %v\n    timeout: 5 }\n",
			opts.TLS.ServerCert, opts.TLS.ServerKey, opts.TLS.CAFile, opts.RequireCert)
	}
	fmt.Fprintf(&c, "}\n")
	n.conf = filepath.Join(n.dir, "nats.conf")
	return os.WriteFile(n.conf, c.Bytes(), 0o600)
}

func (n *NATS) start() error {
	cmd := exec.Command(NATSPath, "-c", n.conf, "-l", n.logPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	addr := n.Addr + n.TLSAddr
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("nats-server exited: %s %s", cmd.ProcessState, strings.TrimSpace(out.String()))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("nats-server does not accept MQTT connections on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	return nil
}

// Stop stops the server with SIGTERM and waits for it. Stopping a stopped
// server does nothing.
func (n *NATS) Stop() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// Restart stops the server and starts it again on the same ports with the
// same JetStream directory: MQTT sessions survive.
func (n *NATS) Restart() {
	n.t.Helper()
	n.Stop()
	var err error
	for i := 0; i < 50; i++ {
		if err = n.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Fatalf("nats-server did not restart: %v\nlog:\n%s", err, n.Log())
}
