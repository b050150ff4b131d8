// Package mqtttest starts a real mosquitto broker on a loopback port for
// tests, makes a throwaway CA with server and client certificates, and
// publishes fast with a minimal MQTT 3.1.1 client of its own (so that a
// test's publisher does not share the code under test).
package mqtttest

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
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

// MosquittoPath is the broker binary. Tests that need it skip when it is
// missing.
var MosquittoPath = "/usr/sbin/mosquitto"

// Options configures a test broker. The zero value is an anonymous broker
// with mosquitto's defaults (20 messages in flight per client, 1000 queued).
type Options struct {
	// Users, when set, are the only accounts allowed (user name to
	// password); anonymous clients are refused.
	Users map[string]string
	// TLS, when set, adds a TLS listener (Broker.TLSAddr) with these
	// certificates; RequireCert makes it ask for a client certificate
	// signed by the CA.
	TLS         *Certs
	RequireCert bool
	// MaxInflight is max_inflight_messages: QoS 1/2 messages sent to a
	// client and not yet acknowledged (0: mosquitto's default, 20).
	MaxInflight int
	// MaxQueued is max_queued_messages: QoS 1/2 messages held for a client
	// beyond those in flight, e.g. while a persistent session's client is
	// away (0: mosquitto's default, 1000; -1: no limit). mosquitto drops
	// what goes beyond.
	MaxQueued int
}

// Broker is a running mosquitto.
type Broker struct {
	// Addr is the plain TCP listener, "127.0.0.1:PORT".
	Addr string
	// TLSAddr is the TLS listener when Options.TLS was set.
	TLSAddr string

	t       testing.TB
	dir     string
	conf    string
	logPath string
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
}

// URL is the broker's tcp:// URL.
func (b *Broker) URL() string { return "tcp://" + b.Addr }

// TLSURL is the broker's ssl:// URL ("" without a TLS listener).
func (b *Broker) TLSURL() string {
	if b.TLSAddr == "" {
		return ""
	}
	return "ssl://" + b.TLSAddr
}

// Log returns what mosquitto logged so far.
func (b *Broker) Log() string {
	data, _ := os.ReadFile(b.logPath)
	return string(data)
}

// StartMosquitto starts a broker on free loopback ports and stops it when
// the test ends. It skips the test when mosquitto is not installed.
func StartMosquitto(t testing.TB, opts Options) *Broker {
	t.Helper()
	if _, err := os.Stat(MosquittoPath); err != nil {
		t.Skipf("mosquitto not installed at %s: %v", MosquittoPath, err)
	}
	b := &Broker{t: t, dir: t.TempDir()}
	b.logPath = filepath.Join(b.dir, "mosquitto.log")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		b.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		b.TLSAddr = ""
		if opts.TLS != nil {
			tport, err := freePort()
			if err != nil {
				t.Fatal(err)
			}
			b.TLSAddr = fmt.Sprintf("127.0.0.1:%d", tport)
		}
		if err := b.writeConf(opts); err != nil {
			t.Fatal(err)
		}
		if lastErr = b.start(); lastErr == nil {
			t.Cleanup(b.Stop)
			return b
		}
		// Most likely a port taken between freePort and mosquitto's bind.
	}
	t.Fatalf("mosquitto did not start: %v\nlog:\n%s", lastErr, b.Log())
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (b *Broker) writeConf(opts Options) error {
	var c bytes.Buffer
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	fmt.Fprintf(&c, "per_listener_settings false\n")
	if os.Geteuid() == 0 {
		// As root mosquitto would switch to the user "mosquitto", which
		// cannot read the test's files.
		fmt.Fprintf(&c, "user root\n")
	}
	fmt.Fprintf(&c, "persistence true\npersistence_location %s/\n", b.dir)
	fmt.Fprintf(&c, "log_dest file %s\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n", b.logPath)
	if opts.MaxInflight > 0 {
		fmt.Fprintf(&c, "max_inflight_messages %d\n", opts.MaxInflight)
	}
	switch {
	case opts.MaxQueued < 0:
		fmt.Fprintf(&c, "max_queued_messages 0\n")
	case opts.MaxQueued > 0:
		fmt.Fprintf(&c, "max_queued_messages %d\n", opts.MaxQueued)
	}
	if len(opts.Users) > 0 {
		pw := filepath.Join(b.dir, "passwd")
		if err := WritePasswordFile(pw, opts.Users); err != nil {
			return err
		}
		fmt.Fprintf(&c, "allow_anonymous false\npassword_file %s\n", pw)
	} else {
		fmt.Fprintf(&c, "allow_anonymous true\n")
	}
	fmt.Fprintf(&c, "listener %s 127.0.0.1\n", port(b.Addr))
	if opts.TLS != nil {
		fmt.Fprintf(&c, "listener %s 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate %v\n",
			port(b.TLSAddr), opts.TLS.CAFile, opts.TLS.ServerCert, opts.TLS.ServerKey, opts.RequireCert)
	}
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	return os.WriteFile(b.conf, c.Bytes(), 0o600)
}

// start runs mosquitto and waits until its listeners accept connections.
func (b *Broker) start() error {
	cmd := exec.Command(MosquittoPath, "-c", b.conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for _, addr := range []string{b.Addr, b.TLSAddr} {
		for addr != "" {
			select {
			case <-exited:
				return fmt.Errorf("mosquitto exited: %s %s", cmd.ProcessState, strings.TrimSpace(out.String()))
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
				return fmt.Errorf("mosquitto does not accept connections on %s: %v", addr, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.mu.Lock()
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()
	return nil
}

// Stop stops the broker with SIGTERM (it saves its persistent sessions)
// and waits for it. Stopping a stopped broker does nothing.
func (b *Broker) Stop() {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.cmd = nil
	b.mu.Unlock()
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

// Restart stops the broker and starts it again on the same ports with the
// same persistence file: persistent sessions survive.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	var err error
	for i := 0; i < 50; i++ { // the port may linger a moment
		if err = b.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("mosquitto did not restart: %v\nlog:\n%s", err, b.Log())
}

// WritePasswordFile writes a mosquitto password file (the PBKDF2-SHA512
// "$7$" hashes mosquitto_passwd writes), without needing mosquitto_passwd.
func WritePasswordFile(path string, users map[string]string) error {
	var c bytes.Buffer
	for u, p := range users {
		salt := make([]byte, 12)
		rand.Read(salt)
		const iter = 101
		h, err := pbkdf2.Key(sha512.New, p, salt, iter, sha512.Size)
		if err != nil {
			return err
		}
		fmt.Fprintf(&c, "%s:$7$%d$%s$%s\n", u, iter, base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(h))
	}
	return os.WriteFile(path, c.Bytes(), 0o600)
}
