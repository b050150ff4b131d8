package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// freePort returns a loopback address no one listens on (for a moment).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// brokerConfig writes a config with the embedded broker and a simulate
// source (no MQTT source).
func brokerConfig(t *testing.T, broker string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "edged.toml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[device]
id = "gw-broker"
data_dir = %q
[http]
enabled = false
[broker]
enabled = true
%s
[[source]]
name = "sim"
type = "simulate"
sensors = 3
rate = 5
anomalies = ["spike"]
anomaly_every = "1s"
[[window]]
name = "w1s"
type = "tumbling"
size = "1s"
`, filepath.Join(dir, "data"), broker)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mqttClient(addr, id, user, pass string) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetConnectTimeout(5 * time.Second).SetAutoReconnect(false)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	return c, tok.Error()
}

// messagesFlow publishes with one client and receives with another.
func messagesFlow(t *testing.T, addr, user, pass string) {
	t.Helper()
	sub, err := mqttClient(addr, "dash", user, pass)
	if err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	defer sub.Disconnect(100)
	var mu sync.Mutex
	got := map[string]bool{}
	tok := sub.Subscribe("sensors/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got[string(m.Payload())] = true
		mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub, err := mqttClient(addr, "sensor", user, pass)
	if err != nil {
		t.Fatalf("publisher: %v", err)
	}
	defer pub.Disconnect(100)
	for i := range 20 {
		pt := pub.Publish(fmt.Sprintf("sensors/s%d", i%4), 1, false, fmt.Sprintf(`{"sensor":"s%d","value":%d}`, i%4, i))
		if !pt.WaitTimeout(5*time.Second) || pt.Error() != nil {
			t.Fatalf("publish: %v", pt.Error())
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 20 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 20 messages through the embedded broker", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var brokerStarted = regexp.MustCompile(`embedded MQTT broker started`)

func TestBrokerInDaemon(t *testing.T) {
	addr := freePort(t)
	d := startDaemon(t, brokerConfig(t, fmt.Sprintf("listen = %q", addr)))
	d.waitFor(t, brokerStarted, 10*time.Second)
	messagesFlow(t, addr, "", "")
	// The simulate source runs alongside.
	d.waitFor(t, regexp.MustCompile(`simulated anomaly.*kind=spike`), 10*time.Second)
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, d.log)
	}
	log := d.log.String()
	if !strings.Contains(log, "embedded MQTT broker stopped") || strings.Index(log, "embedded MQTT broker stopped") > strings.Index(log, "edged stopped cleanly") {
		t.Errorf("broker not stopped before the end; log:\n%s", log)
	}
	if strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR") {
		t.Errorf("warnings from a clean run; log:\n%s", log)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("broker port still open after the daemon stopped")
	}
}

func TestBrokerInDaemonCredentials(t *testing.T) {
	// The config takes the password from the environment, as a deployment
	// would.
	t.Setenv("EDGED_TEST_BROKER_PASS", "p4ss w0rd")
	addr := freePort(t)
	d := startDaemon(t, brokerConfig(t, fmt.Sprintf("listen = %q\nusername = \"gw\"\npassword = \"${EDGED_TEST_BROKER_PASS}\"", addr)))
	defer d.stop(t, syscall.SIGTERM)
	d.waitFor(t, brokerStarted, 10*time.Second)
	if c, err := mqttClient(addr, "intruder", "gw", "guess"); err == nil {
		c.Disconnect(0)
		t.Fatal("wrong password accepted")
	}
	if c, err := mqttClient(addr, "anon", "", ""); err == nil {
		c.Disconnect(0)
		t.Fatal("anonymous client accepted")
	}
	messagesFlow(t, addr, "gw", "p4ss w0rd")
}

func TestBrokerPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, se, code := runEdged(t, ".", nil, "run", "-c", brokerConfig(t, fmt.Sprintf("listen = %q", addr)))
	if code != 1 || !strings.Contains(se, addr) || !strings.Contains(se, "port in use") || !strings.Contains(se, "set [broker] listen") {
		t.Fatalf("exit %d, want 1 and an error naming %s and the fix:\n%s", code, addr, se)
	}
}
