package broker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edged/edged/internal/config"
)

// syncBuf is a log destination safe for the broker's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, cfg config.Broker) (*Broker, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	b, err := Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, logs
}

func connect(t *testing.T, url, id, user, pass string) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(id).SetConnectTimeout(5 * time.Second).SetAutoReconnect(false)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// pubSub publishes n messages with one client and checks another receives
// them all.
func pubSub(t *testing.T, url, user, pass string, n int) {
	t.Helper()
	sub, err := connect(t, url, "sub-"+url, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]bool{}
	all := make(chan struct{})
	tok := sub.Subscribe("sensors/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		k := m.Topic() + " " + string(m.Payload())
		if got[k] {
			return // a QoS 1 duplicate
		}
		got[k] = true
		if len(got) == n {
			close(all)
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub, err := connect(t, url, "pub-"+url, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pt := pub.Publish(fmt.Sprintf("sensors/s%d", i%3), 1, false, fmt.Sprintf(`{"value":%d}`, i))
		if !pt.WaitTimeout(5*time.Second) || pt.Error() != nil {
			t.Fatalf("publish %d: %v", i, pt.Error())
		}
	}
	select {
	case <-all:
	case <-time.After(5 * time.Second):
		mu.Lock()
		t.Fatalf("%d of %d messages received", len(got), n)
	}
	if !got[`sensors/s1 {"value":4}`] {
		t.Fatal("message 4 missing or altered")
	}
}

func TestBrokerPubSub(t *testing.T) {
	b, logs := start(t, config.Broker{Listen: "127.0.0.1:0", WSListen: "127.0.0.1:0"})
	if strings.HasSuffix(b.Addr(), ":0") || strings.HasSuffix(b.WSAddr(), ":0") {
		t.Fatalf("addresses %s %s", b.Addr(), b.WSAddr())
	}
	pubSub(t, "tcp://"+b.Addr(), "", "", 50)
	t.Run("websocket", func(t *testing.T) { pubSub(t, "ws://"+b.WSAddr()+"/mqtt", "", "", 20) })
	if !strings.Contains(logs.String(), "embedded MQTT broker started") {
		t.Errorf("start not logged:\n%s", logs)
	}
	if strings.Contains(logs.String(), "attached listener") || strings.Contains(logs.String(), "mochi mqtt starting") {
		t.Errorf("mochi's info logs leak:\n%s", logs)
	}
	if strings.Contains(logs.String(), "WARN") {
		t.Errorf("clients that disconnect cleanly logged as warnings:\n%s", logs)
	}
	b.Close()
	b.Close() // twice is fine
	if _, err := net.DialTimeout("tcp", b.Addr(), time.Second); err == nil {
		t.Error("listener still open after Close")
	}
}

func TestBrokerCredentials(t *testing.T) {
	b, logs := start(t, config.Broker{Listen: "127.0.0.1:0", Username: "edged", Password: "s3cret"})
	url := "tcp://" + b.Addr()
	if _, err := connect(t, url, "bad", "edged", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, err := connect(t, url, "anon", "", ""); err == nil {
		t.Fatal("anonymous client accepted")
	}
	if _, err := connect(t, url, "other", "root", "s3cret"); err == nil {
		t.Fatal("other user accepted")
	}
	pubSub(t, url, "edged", "s3cret", 10)
	// One warning for the refusals (the next ones within a minute counted).
	if n := strings.Count(logs.String(), "mqtt client refused: bad username or password"); n != 1 {
		t.Errorf("%d refusal warnings, want 1:\n%s", n, logs)
	}
}

func TestBrokerPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = Start(context.Background(), config.Broker{Listen: addr}, nil)
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "port in use") || !strings.Contains(err.Error(), "set [broker] listen") {
		t.Fatalf("error %v: want the address, \"port in use\" and the fix", err)
	}
	_, err = Start(context.Background(), config.Broker{Listen: "127.0.0.1:0", WSListen: addr}, nil)
	if err == nil || !strings.Contains(err.Error(), "set [broker] ws_listen") {
		t.Fatalf("websocket port in use: %v", err)
	}
}
