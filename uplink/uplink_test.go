package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edged/edged/internal/mqtttest"
	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

func TestAckSet(t *testing.T) {
	var a ackSet
	a.setFloor(10)
	a.add(14, 15)
	a.add(12, 12)
	if a.floor() != 10 {
		t.Fatalf("floor %d", a.floor())
	}
	a.add(11, 11)
	if a.floor() != 12 {
		t.Fatalf("floor %d, want 12", a.floor())
	}
	a.add(13, 13)
	if a.floor() != 15 {
		t.Fatalf("floor %d, want 15", a.floor())
	}
	recs := []store.Record{{Pos: 15}, {Pos: 16}, {Pos: 18}}
	a.add(18, 18)
	if got := a.unacked(recs); len(got) != 1 || got[0].Pos != 16 {
		t.Fatalf("unacked %v", got)
	}
	a.gaps(16, []store.Record{{Pos: 20}}) // 17..19 dropped by the quota
	a.add(16, 16)
	if a.floor() != 19 {
		t.Fatalf("floor %d, want 19", a.floor())
	}
}

// producer commits records with a body like the runner's, n of them, one
// every every, keyed k0..k4, and returns when done.
func producer(t testing.TB, st *store.Store, from, n int, every time.Duration) {
	for i := from; i < from+n; i++ {
		seq := i + 1
		body := fmt.Sprintf(`{"type":"window","window":"w","key":"k%d","start":%d,"end":%d,"rev":0,"final":true,"count":1,"device":"gw","seq":%d,"id":"id%d"}`,
			i%5, i*1000, i*1000+1000, seq, seq)
		if err := st.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{NextSeq: uint64(seq + 1)},
			Records: []store.Record{{ID: fmt.Sprint("id", seq), Kind: uint8(record.KindWindow), Name: "w", Key: fmt.Sprint("k", i%5), Body: []byte(body)}}}); err != nil {
			t.Error(err)
			return
		}
		if every > 0 {
			time.Sleep(every)
		}
	}
}

// subscriber keeps a persistent session on the broker and records every
// message, in arrival order.
type subscriber struct {
	mu   sync.Mutex
	msgs []map[string]any
	raw  map[float64]string
}

func subscribe(t *testing.T, url, topic string) *subscriber {
	s := &subscriber{raw: map[float64]string{}}
	mqtttest.Subscribe(t, url, "test-sub", topic, func(_ string, payload []byte) {
		var r map[string]any
		if json.Unmarshal(payload, &r) != nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		seq := r["seq"].(float64)
		if prev, ok := s.raw[seq]; ok && prev != string(payload) {
			t.Errorf("seq %v arrived with two payloads:\n%s\n%s", seq, prev, payload)
		}
		s.raw[seq] = string(payload)
		s.msgs = append(s.msgs, r)
	})
	return s
}

func (s *subscriber) waitAll(t *testing.T, n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		got := len(s.raw)
		s.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var missing []int
	for i := 1; i <= n && len(missing) < 20; i++ {
		if _, ok := s.raw[float64(i)]; !ok {
			missing = append(missing, i)
		}
	}
	t.Fatalf("%d of %d seqs after %v; first missing %v", len(s.raw), n, timeout, missing)
}

// TestMQTTOutage: the upstream broker stops while records keep being
// committed; after it returns, a persistent subscriber gets every seq at
// least once, with one payload per seq, in order per key within the live
// stream and within the backlog, and live records before the backlog ends.
func TestMQTTOutage(t *testing.T) {
	outage := 3 * time.Second
	if os.Getenv("EDGED_SOAK") != "" {
		outage = 30 * time.Second
	}
	b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1})
	st, _ := storetest.MustOpen(t, nil)
	st.RegisterOutputs([]string{"cloud"})
	sub := subscribe(t, b.URL(), "edged/gw/#")
	out := &MQTT{OutName: "cloud", Device: "gw", Broker: b.URL(), QoS: 1, Topic: "edged/{device}/{window}/{key}",
		StatusTopic: "edged/{device}/status", Inflight: 32, BacklogRate: 250, RetryMin: 100 * time.Millisecond, Store: st}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- out.Run(ctx) }()
	const before, during, after = 300, 400, 300
	producer(t, st, 0, before, 2*time.Millisecond)
	sub.waitAll(t, before, 10*time.Second)
	b.Stop()
	producer(t, st, before, during, outage/during)
	b.Restart()
	// Live records keep coming while the output reconnects (its backoff
	// may have grown during the outage) and replays the backlog (at
	// 250/s): at least `after` of them, and on until 2 s after the
	// reconnect.
	total := before + during
	for i := 0; ; i++ {
		producer(t, st, total, 1, 10*time.Millisecond)
		total++
		if bd := out.Stats().Boundary; i >= after && bd >= uint64(before+during) && uint64(total) > bd+200 {
			break
		}
		if i > 10000 {
			t.Fatal("the output did not reconnect")
		}
	}
	sub.waitAll(t, total, 30*time.Second)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, _ := st.Cursor("cloud"); c == st.OutboxLastSeq() {
			break
		}
	}
	cancel()
	<-done
	boundary := float64(out.Stats().Boundary)
	if boundary < before+during {
		t.Fatalf("last session's boundary %v is before the outage ended", boundary)
	}

	sub.mu.Lock()
	defer sub.mu.Unlock()
	// Per key, the live records and the backlog records each arrive in
	// seq order; a live record arrives before the backlog is complete.
	lastLive, lastBack := map[string]float64{}, map[string]float64{}
	backlogDone := false
	liveBeforeBacklogDone := false
	seen := map[float64]bool{}
	for _, r := range sub.msgs {
		seq, key := r["seq"].(float64), r["key"].(string)
		if seen[seq] {
			continue // a duplicate after a reconnect: allowed
		}
		seen[seq] = true
		live := seq > boundary
		if live {
			if !backlogDone {
				liveBeforeBacklogDone = true
			}
			if seq < lastLive[key] {
				t.Fatalf("live records of key %s out of order: %v after %v", key, seq, lastLive[key])
			}
			lastLive[key] = seq
		} else if seq > before {
			if seq < lastBack[key] {
				t.Fatalf("backlog of key %s out of order: %v after %v", key, seq, lastBack[key])
			}
			lastBack[key] = seq
		}
		backlogDone = allSeen(seen, int(boundary))
	}
	if !liveBeforeBacklogDone {
		t.Error("no live record arrived before the backlog was complete")
	}
	if c, _ := st.Cursor("cloud"); c != st.OutboxLastSeq() {
		t.Errorf("cursor %d, outbox last %d", c, st.OutboxLastSeq())
	}
	s := out.Stats()
	t.Logf("sent %d acked %d reconnects %d", s.Sent, s.Acked, s.Reconnects)
}

func allSeen(seen map[float64]bool, n int) bool {
	for i := 1; i <= n; i++ {
		if !seen[float64(i)] {
			return false
		}
	}
	return true
}

// TestMQTTQuotaWhileDown: with the broker down, a tiny outbox quota drops
// the oldest records (counted); when it returns the newest are delivered
// and the cursor moves over the gap.
func TestMQTTQuotaWhileDown(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1})
	st, _ := storetest.MustOpen(t, &store.Options{OutboxMaxBytes: 20 << 10})
	st.RegisterOutputs([]string{"cloud"})
	sub := subscribe(t, b.URL(), "edged/gw/#")
	b.Stop()
	producer(t, st, 0, 500, 0)
	stats, _ := st.Stats()
	if stats.OutboxDropped == 0 {
		t.Fatalf("no record dropped: %+v", stats)
	}
	out := &MQTT{OutName: "cloud", Device: "gw", Broker: b.URL(), QoS: 1, Topic: "edged/{device}/{window}/{key}", Inflight: 16, RetryMin: 100 * time.Millisecond, Store: st}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- out.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	b.Restart()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, _ := st.Cursor("cloud"); c == 500 {
			break
		}
		if time.Now().After(deadline) {
			c, _ := st.Cursor("cloud")
			t.Fatalf("cursor %d, want 500", c)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	// The subscriber may still be reconnecting: its session holds them.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		sub.mu.Lock()
		n := len(sub.raw)
		sub.mu.Unlock()
		if n >= 500-int(stats.OutboxDropped) {
			break
		}
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if _, ok := sub.raw[500]; !ok || len(sub.raw) != 500-int(stats.OutboxDropped) {
		t.Fatalf("received %d records, want the %d kept (the newest)", len(sub.raw), 500-stats.OutboxDropped)
	}
	t.Logf("dropped %d, delivered %d", stats.OutboxDropped, len(sub.raw))
}

func TestFileOutputCutsTornTailAndSkipsWhatItHas(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	st.RegisterOutputs([]string{"file"})
	path := filepath.Join(t.TempDir(), "out.jsonl")
	producer(t, st, 0, 10, 0)
	run := func() {
		f := &File{OutName: "file", Path: path, Store: st}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- f.Run(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for c, _ := st.Cursor("file"); c < st.OutboxLastSeq() && time.Now().Before(deadline); c, _ = st.Cursor("file") {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	run()
	// A crash after the fsync, before the cursor moved, plus a torn line.
	st.SetCursor("file", 7)
	fh, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString(`{"type":"window","wind`)
	fh.Close()
	producer(t, st, 10, 5, 0)
	run()
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 15 {
		t.Fatalf("%d lines, want 15:\n%s", len(lines), data)
	}
	for i, l := range lines {
		if !strings.Contains(l, fmt.Sprintf(`"seq":%d,`, i+1)) {
			t.Fatalf("line %d: %s", i, l)
		}
	}
}

func TestTopicTemplate(t *testing.T) {
	m := &MQTT{Device: "gw-01"}
	r := &store.Record{Kind: uint8(record.KindWindow), Name: "temp_10s", Key: "boiler+1/temp"}
	if got := m.fill("edged/{device}/{window}/{key}/{type}{unknown}", r); got != "edged/gw-01/temp_10s/boiler_1/temp/window{unknown}" {
		t.Fatalf("got %q", got)
	}
	a := &store.Record{Kind: uint8(record.KindAlert), Name: "overheat", Key: "s1", Body: []byte(`{"type":"alert","detector":"overheat","key":"s1","state":"firing","ts":1,"value":2,"reason":"r","device":"gw-01","seq":7,"id":"x"}`)}
	if got := m.fill("a/{detector}/{key}/{state}", a); got != "a/overheat/s1/firing" {
		t.Fatalf("got %q", got)
	}
}

// TestMQTTTLS: a broker that requires a client certificate gets the
// records over TLS; with another CA the broker's certificate is refused
// with a clear error and nothing is delivered.
func TestMQTTTLS(t *testing.T) {
	certs := mqtttest.GenerateCerts(t)
	b := mqtttest.StartMosquitto(t, mqtttest.Options{TLS: certs, RequireCert: true})
	st, _ := storetest.MustOpen(t, nil)
	st.RegisterOutputs([]string{"cloud"})
	producer(t, st, 0, 20, 0)
	run := func(ca string) (*MQTT, *bytes.Buffer) {
		var logs bytes.Buffer
		out := &MQTT{OutName: "cloud", Device: "gw", Broker: b.TLSURL(), QoS: 1, Topic: "edged/{device}/{window}/{key}",
			TLSCA: ca, TLSCert: certs.ClientCert, TLSKey: certs.ClientKey, RetryMin: 100 * time.Millisecond, Store: st,
			Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		go out.Run(ctx)
		for ctx.Err() == nil {
			if c, _ := st.Cursor("cloud"); c == 20 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		return out, &logs
	}
	other := mqtttest.GenerateCerts(t)
	out, logs := run(other.CAFile)
	if c, _ := st.Cursor("cloud"); c != 0 {
		t.Fatalf("delivered %d records to a broker whose certificate the CA does not sign", c)
	}
	if s := out.Stats(); !strings.Contains(s.LastErr, "certificate") {
		t.Fatalf("last error %q, want one about the certificate; log:\n%s", s.LastErr, logs)
	}
	t.Logf("with another CA: %s", out.Stats().LastErr)
	run(certs.CAFile)
	if c, _ := st.Cursor("cloud"); c != 20 {
		t.Fatalf("cursor %d over TLS, want 20", c)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestHADiscoveryAndLatest: live window records are published again,
// retained, on the latest topic, and each aggregate gets a Home Assistant
// discovery config with the fields its MQTT sensor schema needs.
func TestHADiscoveryAndLatest(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{})
	st, _ := storetest.MustOpen(t, nil)
	st.RegisterOutputs([]string{"cloud"})
	out := &MQTT{OutName: "cloud", Device: "gw-01", Broker: b.URL(), QoS: 1, Topic: "edged/{device}/{window}/{key}",
		StatusTopic: "edged/{device}/status", LatestTopic: "edged/{device}/latest/{window}/{key}", HAPrefix: "homeassistant", Store: st}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- out.Run(ctx) }()
	time.Sleep(300 * time.Millisecond) // connected: what follows is live
	producer(t, st, 0, 3, 0)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, _ := st.Cursor("cloud"); c == 3 {
			break
		}
	}
	cancel()
	<-done
	// A dashboard connecting now gets the retained messages.
	got := map[string][]byte{}
	var mu sync.Mutex
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("dash"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Subscribe("#", 0, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		got[m.Topic()] = append([]byte(nil), m.Payload()...)
		mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// The retained messages follow the SUBACK; wait for the ones checked.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := 0
		for _, topic := range []string{"edged/gw-01/latest/w/k2", "edged/gw-01/status", "homeassistant/sensor/gw-01_w_k0_count/config"} {
			if got[topic] != nil {
				n++
			}
		}
		mu.Unlock()
		if n == 3 {
			break
		}
	}
	time.Sleep(100 * time.Millisecond) // any unexpected discovery topics too
	mu.Lock()
	defer mu.Unlock()
	if p := got["edged/gw-01/latest/w/k2"]; !strings.Contains(string(p), `"seq":3,`) {
		t.Errorf("latest of k2: %q", p)
	}
	if p := got["edged/gw-01/status"]; string(p) != "offline" {
		t.Errorf("status after a graceful stop: %q", p)
	}
	cfgTopic := "homeassistant/sensor/gw-01_w_k0_count/config"
	var d map[string]any
	if err := json.Unmarshal(got[cfgTopic], &d); err != nil {
		t.Fatalf("no discovery config on %s: %v (topics: %v)", cfgTopic, err, keys(got))
	}
	// The fields Home Assistant's MQTT sensor needs, and the device block.
	for _, f := range []string{"name", "unique_id", "state_topic", "value_template", "availability_topic", "device"} {
		if d[f] == nil {
			t.Errorf("discovery config lacks %q: %v", f, d)
		}
	}
	if d["state_topic"] != "edged/gw-01/latest/w/k0" || d["value_template"] != "{{ value_json['count'] }}" || d["unique_id"] != "edged_gw-01_w_k0_count" {
		t.Errorf("discovery config %v", d)
	}
	dev := d["device"].(map[string]any)
	if ids, _ := dev["identifiers"].([]any); len(ids) != 1 || dev["name"] != "gw-01" {
		t.Errorf("device block %v", dev)
	}
	for topic := range got {
		if strings.HasSuffix(topic, "_start/config") || strings.HasSuffix(topic, "_seq/config") {
			t.Errorf("a record field got a discovery config: %s", topic)
		}
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
