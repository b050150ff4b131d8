package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/internal/broker"
	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/internal/mqtttest"
)

// The MQTT source against every broker it is used with: mosquitto, the
// embedded broker (mochi-mqtt) and nats-server's MQTT listener. Each
// subtest starts its own broker.

// confBroker is a running broker of one kind.
type confBroker struct {
	url     string // what the source connects to (tcp:// or ssl://)
	wsURL   string // ws://, when the broker has such a listener
	pubAddr string // where the test's publisher connects
	pub     mqtttest.DialOptions
	restart func()
	log     func() string
}

// confKind is a kind of broker and what it supports.
type confKind struct {
	name string
	// start starts a broker with o; it skips the test when this kind
	// cannot (no TLS listener in the embedded broker).
	start func(t *testing.T, o mqtttest.Options) *confBroker
	qos2  bool // QoS 2 (nats-server 2.9 has QoS 0 and 1 only)
	// persistent: sessions survive a restart of the broker.
	persistent bool
	// dropsPaused: the broker drops a subscriber that has not read for 1.5
	// x its keepalive. mochi-mqtt answers a PINGREQ on the writer that is
	// blocked on the full socket, and that writer's deadline is the
	// keepalive's: a paused source loses its connection, and a persistent
	// session gets the unacknowledged QoS 1 messages again on the next one
	// (QoS 0 messages in mochi's buffers are lost).
	dropsPaused bool
}

func clientTLS(t *testing.T, certs *mqtttest.Certs, withCert bool) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(certs.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

func pubCreds(o mqtttest.Options) mqtttest.DialOptions {
	var d mqtttest.DialOptions
	for u, p := range o.Users {
		d.Username, d.Password = u, p
	}
	return d
}

var confKinds = []confKind{
	{name: "mosquitto", qos2: true, persistent: true, start: func(t *testing.T, o mqtttest.Options) *confBroker {
		o.MaxQueued, o.MaxInflight = -1, 1000
		b := mqtttest.StartMosquitto(t, o)
		cb := &confBroker{url: b.URL(), pubAddr: b.Addr, pub: pubCreds(o), restart: b.Restart, log: b.Log}
		if o.TLS != nil {
			cb.url = b.TLSURL()
		}
		return cb
	}},
	{name: "embedded", qos2: true, dropsPaused: true, start: func(t *testing.T, o mqtttest.Options) *confBroker {
		if o.TLS != nil {
			t.Skip("the embedded broker has no TLS listener")
		}
		cfg := config.Broker{Listen: "127.0.0.1:0", WSListen: "127.0.0.1:0"}
		for u, p := range o.Users {
			cfg.Username, cfg.Password = u, p
		}
		b, err := broker.Start(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		cur := b
		t.Cleanup(func() { cur.Close() })
		cfg.Listen, cfg.WSListen = b.Addr(), b.WSAddr()
		cb := &confBroker{url: "tcp://" + b.Addr(), wsURL: "ws://" + b.WSAddr() + "/mqtt", pubAddr: b.Addr(), pub: pubCreds(o),
			log: func() string { return "" }}
		cb.restart = func() {
			cur.Close()
			for i := 0; ; i++ {
				nb, err := broker.Start(context.Background(), cfg, nil)
				if err == nil {
					cur = nb
					return
				}
				if i == 50 {
					t.Fatalf("the embedded broker did not restart: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		return cb
	}},
	{name: "nats", persistent: true, start: func(t *testing.T, o mqtttest.Options) *confBroker {
		n := mqtttest.StartNATS(t, o)
		cb := &confBroker{url: n.URL(), pubAddr: n.Addr, pub: pubCreds(o), restart: n.Restart, log: n.Log}
		if o.TLS != nil {
			cb.url, cb.pubAddr = n.TLSURL(), n.TLSAddr
			cb.pub.TLS = clientTLS(t, o.TLS, o.RequireCert)
		}
		return cb
	}},
}

func (b *confBroker) publish(t *testing.T, qos byte, retain bool, msgs [][2]string) {
	t.Helper()
	p, err := mqtttest.DialWith(b.pubAddr, fmt.Sprintf("pub-%d", time.Now().UnixNano()), qos, 100, b.pub)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Retain = retain
	for _, m := range msgs {
		if err := p.Publish(m[0], []byte(m[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func reading(sensor string, v int) string {
	return fmt.Sprintf(`{"sensor":%q,"value":%d,"ts":1700000000000}`, sensor, v)
}

func TestMQTTConformance(t *testing.T) {
	for _, k := range confKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Run("qos and wildcards", func(t *testing.T) { confQoS(t, k) })
			t.Run("retained", func(t *testing.T) { confRetained(t, k) })
			t.Run("session redelivery", func(t *testing.T) { confSession(t, k) })
			t.Run("pause twice the keepalive", func(t *testing.T) { confPause(t, k) })
			t.Run("oversized payload", func(t *testing.T) { confOversize(t, k) })
			t.Run("tls client certificate", func(t *testing.T) { confTLS(t, k) })
			t.Run("bad password", func(t *testing.T) { confPassword(t, k) })
			t.Run("broker restart", func(t *testing.T) { confRestart(t, k) })
			t.Run("websocket", func(t *testing.T) { confWebsocket(t, k) })
		})
	}
}

// confQoS: "sensors/#" and "+/x/#" at each QoS: every message published
// on a matching topic arrives, others do not, and QoS 1/2 messages are
// acknowledged after their commit.
func confQoS(t *testing.T, k confKind) {
	b := k.start(t, mqtttest.Options{})
	for qos := 0; qos <= 2; qos++ {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			if qos == 2 && !k.qos2 {
				// The broker grants QoS 1 for a QoS 2 subscription: still
				// at least once into the log.
				confQoS2Downgraded(t, b)
				return
			}
			app := &mqttFakeApp{}
			s := &MQTT{Name: "lab", Broker: b.url, Topics: []string{"sensors/#", "+/x/#"}, QoS: qos, Format: "json",
				ClientID: fmt.Sprint("wild", qos), CleanSession: true}
			mqttStart(t, s, app)
			mqttWaitConnected(t, s)
			var msgs [][2]string
			var want []string
			for i, topic := range []string{"sensors", "sensors/a", "sensors/a/b", "sensors/a/b/c", "site/x", "site/x/deep/er", "other/a", "site/y/z"} {
				msgs = append(msgs, [2]string{topic, reading(fmt.Sprint("s", i), i)})
				if !strings.HasPrefix(topic, "other") && topic != "site/y/z" {
					want = append(want, fmt.Sprintf("s%d/", i))
				}
			}
			b.publish(t, byte(qos), false, msgs)
			mqttWaitUntil(t, "all messages", 10*time.Second, func() bool { return app.count() >= len(want) })
			time.Sleep(100 * time.Millisecond) // nothing else comes
			es, qs := app.snapshot()
			slices.Sort(want)
			if got := mqttSensorsOf(es); !slices.Equal(got, want) || len(qs) != 0 {
				t.Fatalf("got %v (quarantine %v), want %v", got, qs, want)
			}
			wantAcked := int64(len(want))
			if qos == 0 {
				wantAcked = 0
			}
			mqttWaitUntil(t, "acks", 5*time.Second, func() bool { return s.Stats().Acked == wantAcked })
			if st := s.Stats(); st.Received != int64(len(want)) || st.Dropped != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func confQoS2Downgraded(t *testing.T, b *confBroker) {
	app := &mqttFakeApp{}
	rec := &mqttRecLog{}
	s := &MQTT{Name: "lab", Broker: b.url, Topics: []string{"q2/#"}, QoS: 2, Format: "json", CleanSession: true, Logger: slog.New(rec)}
	mqttStart(t, s, app)
	mqttWaitConnected(t, s)
	if len(rec.matching("granted QoS 1 instead of 2")) == 0 {
		t.Fatalf("no warning of the downgrade:\n%s", rec)
	}
	b.publish(t, 1, false, [][2]string{{"q2/a", reading("a", 1)}})
	mqttWaitUntil(t, "the message", 10*time.Second, func() bool { return app.count() == 1 && s.Stats().Acked == 1 })
}

// confRetained: a retained message sent because we subscribed is
// acknowledged and skipped; one published while subscribed is logged.
func confRetained(t *testing.T, k confKind) {
	b := k.start(t, mqtttest.Options{})
	b.publish(t, 1, true, [][2]string{{"rt/last", reading("old", 1)}})
	app := &mqttFakeApp{}
	s := &MQTT{Name: "rt", Broker: b.url, Topics: []string{"rt/#"}, QoS: 1, Format: "json", CleanSession: true}
	mqttStart(t, s, app)
	mqttWaitConnected(t, s)
	mqttWaitUntil(t, "the retained message", 10*time.Second, func() bool { return s.Stats().Retained == 1 })
	b.publish(t, 1, true, [][2]string{{"rt/last", reading("new", 2)}})
	mqttWaitUntil(t, "the new message", 10*time.Second, func() bool { return app.count() == 1 && s.Stats().Acked == 2 })
	es, _ := app.snapshot()
	if es[0].Sensor != "new" || s.Stats().Retained != 1 {
		t.Fatalf("logged %+v, stats %+v", es, s.Stats())
	}
}

// confSession: a message is acknowledged only after its commit: the
// first source's log never confirms; after it stops, the broker sends the
// same messages again to the next source with the same client id
// (persistent session); that one's commits are confirmed, so a third
// source gets nothing.
func confSession(t *testing.T, k confKind) {
	b := k.start(t, mqtttest.Options{})
	mk := func() *MQTT {
		return &MQTT{Name: "lab", Broker: b.url, Topics: []string{"t/#"}, QoS: 1, Format: "json", ClientID: "edged-ack-test",
			CleanSession: false, DrainTimeout: 300 * time.Millisecond}
	}
	s0 := mk()
	stop := mqttStart(t, s0, &mqttFakeApp{})
	mqttWaitConnected(t, s0)
	stop()

	var msgs [][2]string
	for i := 0; i < 5; i++ {
		msgs = append(msgs, [2]string{fmt.Sprint("t/", i), reading(fmt.Sprint("s", i), 1)})
	}
	b.publish(t, 1, false, msgs)

	held := &mqttFakeApp{holdDone: true}
	s1 := mk()
	stop = mqttStart(t, s1, held)
	mqttWaitUntil(t, "the first delivery", 10*time.Second, func() bool { return held.count() == 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := s1.Stats(); st.Acked != 0 {
		t.Fatalf("acknowledged before the commit: %+v", st)
	}

	app := &mqttFakeApp{}
	s2 := mk()
	stop = mqttStart(t, s2, app)
	mqttWaitUntil(t, "the redelivery", 15*time.Second, func() bool { return app.count() == 5 })
	mqttWaitUntil(t, "the acks", 5*time.Second, func() bool { return s2.Stats().Acked == 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	es, _ := app.snapshot()
	if got := mqttSensorsOf(es); !slices.Equal(got, []string{"s0/", "s1/", "s2/", "s3/", "s4/"}) {
		t.Fatalf("redelivered %v", got)
	}

	again := &mqttFakeApp{}
	s3 := mk()
	mqttStart(t, s3, again)
	mqttWaitConnected(t, s3)
	time.Sleep(500 * time.Millisecond)
	if n := again.count(); n != 0 {
		t.Fatalf("%d messages delivered again after they were acknowledged", n)
	}
}

// confPause: the log takes nothing for 4.5 s while messages keep coming;
// the keepalive is 2 s: the source pings meanwhile and keeps its
// connection, and gets every message once the log moves.
func confPause(t *testing.T, k confKind) {
	b := k.start(t, mqtttest.Options{})
	for _, qos := range []int{0, 1} {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			if k.dropsPaused && qos == 0 {
				t.Skip("the broker drops a paused subscriber after 1.5 x keepalive (see dropsPaused); QoS 0 messages it held are lost")
			}
			app := &mqttFakeApp{block: make(chan struct{})}
			rec := &mqttRecLog{}
			s := &MQTT{Name: "bp", Broker: b.url, Topics: []string{"bp/#"}, QoS: qos, Format: "json", CleanSession: !k.dropsPaused,
				ClientID: fmt.Sprint("bp", qos), Keepalive: 2 * time.Second, BackoffMin: 100 * time.Millisecond, Logger: slog.New(rec)}
			mqttStart(t, s, app)
			mqttWaitConnected(t, s)
			const n = 5000
			pad := strings.Repeat("x", 200)
			var msgs [][2]string
			for i := 0; i < n; i++ {
				msgs = append(msgs, [2]string{"bp/x", fmt.Sprintf(`{"sensor":"s%d","value":1,"ts":1700000000000,"pad":"%s"}`, i, pad)})
			}
			b.publish(t, byte(qos), false, msgs)
			mqttWaitUntil(t, "the pause", 10*time.Second, func() bool { return s.Stats().Paused > 0 })
			time.Sleep(4500 * time.Millisecond)
			if st := s.Stats(); !k.dropsPaused && (!st.Connected || st.Reconnects != 0) {
				t.Fatalf("after the pause: %+v\n%s", st, rec)
			}
			close(app.block)
			// Every message, once at least (nats-server sends again what was
			// not acknowledged within its ack_wait, here 2 s).
			distinct := func() int {
				es, _ := app.snapshot()
				seen := map[string]bool{}
				for _, e := range es {
					seen[e.Sensor] = true
				}
				return len(seen)
			}
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("%d of %d: %+v\nbroker log:\n%s", distinct(), n, s.Stats(), b.log())
				}
			})
			mqttWaitUntil(t, "every message", 30*time.Second, func() bool { return distinct() == n })
			if qos > 0 {
				mqttWaitUntil(t, "every ack", 10*time.Second, func() bool { return s.Stats().Acked >= n })
			}
			st := s.Stats()
			if st.Dropped != 0 || !k.dropsPaused && (st.Reconnects != 0 || len(rec.matching("lost")) > 0) {
				t.Fatalf("stats %+v\n%s", st, rec)
			}
			t.Logf("%d messages, %d reconnects", n, st.Reconnects)
		})
	}
}

// confOversize: a payload over MaxPayload is quarantined with its size and
// topic, acknowledged, and the connection goes on.
func confOversize(t *testing.T, k confKind) {
	b := k.start(t, mqtttest.Options{})
	app := &mqttFakeApp{}
	s := &MQTT{Name: "big", Broker: b.url, Topics: []string{"big/#"}, QoS: 1, Format: "json", CleanSession: true, MaxPayload: 1000}
	mqttStart(t, s, app)
	mqttWaitConnected(t, s)
	huge := `{"sensor":"huge","value":1,"pad":"` + strings.Repeat("x", 100_000) + `"}`
	b.publish(t, 1, false, [][2]string{{"big/a", reading("before", 1)}, {"big/huge", huge}, {"big/b", reading("after", 2)}})
	mqttWaitUntil(t, "all three", 10*time.Second, func() bool { return app.count() == 3 && s.Stats().Acked == 3 })
	es, qs := app.snapshot()
	if got := mqttSensorsOf(es); !slices.Equal(got, []string{"after/", "before/"}) {
		t.Fatalf("readings %v", got)
	}
	want := fmt.Sprintf("payload too large: %d bytes (at most 1000) (topic big/huge)", len(huge))
	if len(qs) != 1 || qs[0].Reason != want || len(qs[0].Payload) != 4096 || string(qs[0].Payload[:20]) != huge[:20] {
		t.Fatalf("quarantine %q (%d bytes), want %q", qs[0].Reason, len(qs[0].Payload), want)
	}
	if st := s.Stats(); st.Oversize != 1 || st.Reconnects != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// confTLS: a broker that requires a client certificate: with the
// certificate messages flow; without it, or with an unknown CA, the
// source is refused and says so.
func confTLS(t *testing.T, k confKind) {
	certs := mqtttest.GenerateCerts(t)
	b := k.start(t, mqtttest.Options{TLS: certs, RequireCert: true})
	app := &mqttFakeApp{}
	s := &MQTT{Name: "tls", Broker: b.url, Topics: []string{"t/#"}, QoS: 1, Format: "json", CleanSession: true,
		TLSCA: certs.CAFile, TLSCert: certs.ClientCert, TLSKey: certs.ClientKey}
	mqttStart(t, s, app)
	mqttWaitConnected(t, s)
	b.publish(t, 1, false, [][2]string{{"t/1", reading("s", 1)}})
	mqttWaitUntil(t, "the message over TLS", 10*time.Second, func() bool { return app.count() == 1 && s.Stats().Acked == 1 })

	for name, src := range map[string]*MQTT{
		"no client certificate": {TLSCA: certs.CAFile},
		"unknown CA":            {TLSCert: certs.ClientCert, TLSKey: certs.ClientKey},
	} {
		rec := &mqttRecLog{}
		src.Name, src.Broker, src.Topics, src.Format, src.Logger = "tls", b.url, []string{"t/#"}, "json", slog.New(rec)
		stop := mqttStart(t, src, &mqttFakeApp{})
		mqttWaitUntil(t, name+": the failure in the log", 15*time.Second, func() bool { return len(rec.matching("retrying in")) > 0 })
		stop()
		if src.Stats().Connected {
			t.Errorf("%s: connected", name)
		}
		t.Logf("%s: %s", name, rec.matching("retrying in")[0].Message)
	}
}

// confPassword: a refused CONNECT is logged clearly at warn and retried;
// the right password connects.
func confPassword(t *testing.T, k confKind) {
	b := k.start(t, mqtttest.Options{Users: map[string]string{"edged": "s3cret"}})
	rec := &mqttRecLog{}
	s := &MQTT{Name: "lab", Broker: b.url, Topics: []string{"t/#"}, QoS: 1, Format: "json", Username: "edged", Password: "wrong",
		BackoffMin: 100 * time.Millisecond, Logger: slog.New(rec)}
	stop := mqttStart(t, s, &mqttFakeApp{})
	mqttWaitUntil(t, "2 attempts", 15*time.Second, func() bool { return len(rec.matching("retrying in")) >= 2 })
	stop()
	for _, r := range rec.matching("retrying in") {
		if !strings.HasPrefix(r.Message, `mqtt source "lab": broker refused the connection: `) || !strings.Contains(r.Message, "user name or password") || r.Level != slog.LevelWarn {
			t.Fatalf("logged %s %q", r.Level, r.Message)
		}
	}
	t.Logf("logged: %s", rec.matching("retrying in")[0].Message)
	app := &mqttFakeApp{}
	ok := &MQTT{Name: "lab", Broker: b.url, Topics: []string{"t/#"}, QoS: 1, Format: "json", Username: "edged", Password: "s3cret", CleanSession: true}
	mqttStart(t, ok, app)
	mqttWaitConnected(t, ok)
	b.publish(t, 1, false, [][2]string{{"t/1", reading("s", 1)}})
	mqttWaitUntil(t, "the message", 10*time.Second, func() bool { return app.count() == 1 })
}

// confRestart: the source reconnects after the broker restarts; a broker
// that keeps sessions across restarts delivers what was published to
// the session while the source was away.
func confRestart(t *testing.T, k confKind) {
	b := k.start(t, mqtttest.Options{})
	app := &mqttFakeApp{}
	rec := &mqttRecLog{}
	s := &MQTT{Name: "lab", Broker: b.url, Topics: []string{"t/#"}, QoS: 1, Format: "json", ClientID: "edged-restart",
		BackoffMin: 300 * time.Millisecond, Logger: slog.New(rec)}
	mqttStart(t, s, app)
	mqttWaitConnected(t, s)
	b.publish(t, 1, false, [][2]string{{"t/a", reading("before", 1)}})
	mqttWaitUntil(t, "the first message", 10*time.Second, func() bool { return app.count() == 1 })

	b.restart()
	want := []string{"after/", "before/"}
	if k.persistent {
		// edged is still waiting to reconnect: the broker queues for its
		// session.
		b.publish(t, 1, false, [][2]string{{"t/b", reading("during", 2)}})
		want = []string{"after/", "before/", "during/"}
	}
	mqttWaitUntil(t, "the reconnect", 20*time.Second, func() bool { st := s.Stats(); return st.Connected && st.Reconnects == 1 })
	b.publish(t, 1, false, [][2]string{{"t/c", reading("after", 3)}})
	mqttWaitUntil(t, "all messages", 10*time.Second, func() bool { return app.count() >= len(want) })
	es, _ := app.snapshot()
	if got := mqttSensorsOf(es); !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if len(rec.matching("connection to")) == 0 {
		t.Errorf("no log of the lost connection:\n%s", rec)
	}
	if !k.persistent && len(rec.matching("kept no session")) == 0 {
		t.Errorf("no warning that the session was lost:\n%s", rec)
	}
}

// confWebsocket: the source over ws:// (the embedded broker's websocket
// listener, which dashboards use).
func confWebsocket(t *testing.T, k confKind) {
	b := k.start(t, mqtttest.Options{})
	if b.wsURL == "" {
		t.Skip("no websocket listener")
	}
	app := &mqttFakeApp{}
	s := &MQTT{Name: "ws", Broker: b.wsURL, Topics: []string{"ws/#"}, QoS: 1, Format: "json", CleanSession: true}
	mqttStart(t, s, app)
	mqttWaitConnected(t, s)
	var msgs [][2]string
	for i := 0; i < 100; i++ {
		msgs = append(msgs, [2]string{"ws/x", reading(fmt.Sprint("s", i), i)})
	}
	b.publish(t, 1, false, msgs)
	mqttWaitUntil(t, "every message over the websocket", 10*time.Second, func() bool { return app.count() == 100 && s.Stats().Acked == 100 })
}
