package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edged/edged/internal/mqtttest"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

func TestMQTTTemplateParse(t *testing.T) {
	for _, bad := range []string{"a/b", "a/#/{sensor}", "{sensor}/{sensor}", "a/{sensor}{metric}", "a+/{sensor}", "x{sensor}#", "{sens}/+"} {
		if _, err := parseMQTTTemplate(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	cases := []struct {
		tmpl, topic    string
		sensor, metric string
		ok             bool
	}{
		{"sensors/{sensor}/{metric}", "sensors/s1/temp", "s1", "temp", true},
		{"sensors/{sensor}/{metric}", "sensors/s1", "", "", false},
		{"sensors/{sensor}/{metric}", "sensors/s1/temp/x", "", "", false},
		{"sensors/{sensor}/{metric}", "other/s1/temp", "", "", false},
		{"sensors/{sensor}/{metric}", "sensors//temp", "", "", false},
		{"sensors/+/{sensor}", "sensors/site9/s2", "s2", "", true},
		{"sensors/{sensor}/#", "sensors/s3/a/b/c", "s3", "", true},
		{"sensors/{sensor}/#", "sensors/s3", "s3", "", true},
		{"sensors/{sensor}/#", "sensorsx/s3", "", "", false},
		{"node-{sensor}/{metric}", "node-17/hum", "17", "hum", true},
		{"node-{sensor}/{metric}", "node-/hum", "", "", false},
		{"{sensor}.dev/{metric}", "a.dev/t", "a", "t", true},
		{"/{metric}", "/t", "", "t", true},
		{"/{metric}", "t", "", "", false},
	}
	for _, c := range cases {
		tt, err := parseMQTTTemplate(c.tmpl)
		if err != nil {
			t.Fatalf("%q: %v", c.tmpl, err)
		}
		s, m, ok := tt.match(c.topic)
		if s != c.sensor || m != c.metric || ok != c.ok {
			t.Errorf("%q on %q: got (%q, %q, %v), want (%q, %q, %v)", c.tmpl, c.topic, s, m, ok, c.sensor, c.metric, c.ok)
		}
	}
}

// mqttFakeApp is an Appender that keeps what it gets. Done is called at once
// unless holdDone is set; block, when set, makes Append wait until closed.
type mqttFakeApp struct {
	mu       sync.Mutex
	entries  []store.Entry
	quar     []store.QEntry
	holdDone bool
	held     int
	block    chan struct{}
}

func (a *mqttFakeApp) Append(ctx context.Context, r store.AppendRequest) error {
	if a.block != nil {
		select {
		case <-a.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.mu.Lock()
	a.entries = append(a.entries, r.Entries...)
	a.quar = append(a.quar, r.Quarantine...)
	hold := a.holdDone
	if hold && r.Done != nil {
		a.held++
	}
	a.mu.Unlock()
	if r.Done != nil && !hold {
		r.Done(0, nil)
	}
	return nil
}

func (a *mqttFakeApp) snapshot() ([]store.Entry, []store.QEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.entries), slices.Clone(a.quar)
}

func (a *mqttFakeApp) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries) + len(a.quar)
}

// mqttRecLog records log messages with their time.
type mqttRecLog struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *mqttRecLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *mqttRecLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *mqttRecLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *mqttRecLog) WithGroup(string) slog.Handler      { return h }

func (h *mqttRecLog) matching(sub string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if strings.Contains(r.Message, sub) {
			out = append(out, r)
		}
	}
	return out
}

func (h *mqttRecLog) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range h.recs {
		fmt.Fprintf(&b, "%s %s %s\n", r.Time.Format("15:04:05.000"), r.Level, r.Message)
	}
	return b.String()
}

// mqttStart runs s until the returned stop is called (or the test ends).
func mqttStart(t *testing.T, s *MQTT, app Appender) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx, app) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(20 * time.Second):
				err = fmt.Errorf("Run did not return 20 s after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return stop
}

func mqttWaitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mqttWaitConnected(t *testing.T, s *MQTT) {
	t.Helper()
	mqttWaitUntil(t, "the source to connect", 10*time.Second, func() bool { return s.Stats().Connected })
}

func mqttPublish(t *testing.T, addr string, qos byte, msgs [][2]string) {
	t.Helper()
	p, err := mqtttest.Dial(addr, fmt.Sprintf("pub-%d", time.Now().UnixNano()), qos, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, m := range msgs {
		if err := p.Publish(m[0], []byte(m[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func mqttSensorsOf(es []store.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Sensor+"/"+e.Metric)
	}
	slices.Sort(out)
	return out
}

// TestMQTTTopicTemplate: the topic gives the sensor and metric a payload
// lacks; a payload's own sensor wins; a topic that does not match the
// template is decoded without it (here: no sensor, quarantined with its
// reason and topic).
func TestMQTTTopicTemplate(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{})
	app := &mqttFakeApp{}
	s := &MQTT{Name: "lab", Broker: b.URL(), Topics: []string{"#"}, QoS: 1, Format: "json", CleanSession: true,
		TopicTemplate: "sensors/{sensor}/{metric}"}
	mqttStart(t, s, app)
	mqttWaitConnected(t, s)
	mqttPublish(t, b.Addr, 1, [][2]string{
		{"sensors/s7/temp", `{"value":21.5,"ts":1700000000000}`},
		{"sensors/s7/temp", `{"sensor":"own","value":1,"ts":1700000000000}`},
		{"sensors/s8/hum", `{"value":40,"metric":"rh","ts":1700000000000}`},
		{"sensors/s9/multi", `{"ts":1700000000000,"a":1,"b":2}`},
		{"elsewhere/s7", `{"value":3}`},
		{"elsewhere/s8", `{"sensor":"s8x","value":3,"ts":1700000000000}`},
	})
	mqttWaitUntil(t, "all messages", 10*time.Second, func() bool { return app.count() >= 7 })
	es, qs := app.snapshot()
	got := mqttSensorsOf(es)
	want := []string{"own/temp", "s7/temp", "s8/rh", "s8x/", "s9/a", "s9/b"}
	if !slices.Equal(got, want) {
		t.Errorf("readings %v, want %v", got, want)
	}
	if len(qs) != 1 || !strings.Contains(qs[0].Reason, "sensor") || !strings.Contains(qs[0].Reason, "elsewhere/s7") || qs[0].Source != "lab" {
		t.Errorf("quarantine %+v", qs)
	}
}

// TestMQTTBadPassword: a refused CONNECT is logged clearly at warn, once
// per attempt, and retried with exponential backoff.
func TestMQTTBadPassword(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{Users: map[string]string{"edged": "s3cret"}})
	rec := &mqttRecLog{}
	min := 200 * time.Millisecond
	s := &MQTT{Name: "lab", Broker: b.URL(), Topics: []string{"t/#"}, QoS: 1, Format: "json", Username: "edged", Password: "wrong",
		BackoffMin: min, BackoffMax: 10 * time.Second, Logger: slog.New(rec)}
	stop := mqttStart(t, s, &mqttFakeApp{})
	mqttWaitUntil(t, "4 attempts", 10*time.Second, func() bool { return len(rec.matching("retrying in")) >= 4 })
	stop()
	fails := rec.matching("retrying in")
	for i, r := range fails {
		if !strings.HasPrefix(r.Message, `mqtt source "lab": broker refused the connection: `) || !strings.Contains(r.Message, "user name or password") || r.Level != slog.LevelWarn {
			t.Fatalf("attempt %d logged %s %q", i, r.Level, r.Message)
		}
	}
	t.Logf("logged: %s", fails[0].Message)
	for i := 1; i < 4; i++ {
		gap := fails[i].Time.Sub(fails[i-1].Time)
		backoff := min << (i - 1)
		if gap < backoff*3/4 {
			t.Errorf("attempt %d came %v after the previous one; the backoff is %v (-25%% jitter at most)", i+1, gap, backoff)
		}
	}
	if st := s.Stats(); st.Connected || !strings.Contains(st.LastError, "Authori") && !strings.Contains(st.LastError, "password") {
		t.Errorf("stats %+v", st)
	}

	// The right password connects.
	app := &mqttFakeApp{}
	ok := &MQTT{Name: "lab", Broker: b.URL(), Topics: []string{"t/#"}, QoS: 1, Format: "json", Username: "edged", Password: "s3cret"}
	mqttStart(t, ok, app)
	mqttWaitConnected(t, ok)
}

// TestMQTTBackpressure: while the log does not take appends, the source
// stops reading (the broker keeps the messages) at every QoS, for longer
// than twice the keepalive, without losing its connection: the pings go
// out meanwhile. Once the log moves, every message arrives; none dropped.
func TestMQTTBackpressure(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1, MaxInflight: 1000})
	for _, qos := range []int{0, 1, 2} {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			app := &mqttFakeApp{block: make(chan struct{})}
			rec := &mqttRecLog{}
			s := &MQTT{Name: "bp", Broker: b.URL(), Topics: []string{"bp/#"}, QoS: qos, Format: "json", CleanSession: true,
				ClientID: fmt.Sprint("bp", qos), Keepalive: time.Second, Logger: slog.New(rec)}
			mqttStart(t, s, app)
			mqttWaitConnected(t, s)
			// Enough to fill the socket buffers on both sides: the broker
			// must hold some.
			const n = 20000
			pad := strings.Repeat("x", 200)
			p, err := mqtttest.Dial(b.Addr, fmt.Sprint("bp-pub", qos), byte(qos), 100)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for i := 0; i < n; i++ {
				if err := p.Publish("bp/x", fmt.Appendf(nil, `{"sensor":"s%d","value":1,"ts":1700000000000,"pad":"%s"}`, i, pad)); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Flush(); err != nil {
				t.Fatal(err)
			}
			mqttWaitUntil(t, "the pause", 10*time.Second, func() bool { return s.Stats().Paused > 0 })
			time.Sleep(2500 * time.Millisecond) // > 2 x keepalive, and > the broker's 1.5 x
			if st := s.Stats(); st.Received >= n || !st.Connected || st.Reconnects != 0 {
				t.Fatalf("after the pause: %+v (the socket should hold messages back)\n%s", st, rec)
			}
			close(app.block)
			mqttWaitUntil(t, "every message", 30*time.Second, func() bool { return app.count() == n })
			if qos > 0 {
				mqttWaitUntil(t, "every ack", 10*time.Second, func() bool { return s.Stats().Acked == n })
			}
			st := s.Stats()
			if st.Dropped != 0 || st.Reconnects != 0 || len(rec.matching("lost")) > 0 || len(rec.matching("the log cannot keep up")) == 0 {
				t.Fatalf("stats %+v\n%s", st, rec)
			}
			if strings.Contains(b.Log(), "exceeded timeout") {
				t.Fatalf("the broker timed the connection out:\n%s", b.Log())
			}
		})
	}
}

// TestMQTTOverflowDrop: with overflow "drop", the source keeps reading
// while the log is full and drops the oldest messages beyond QueueSize,
// counted and logged; the newest are kept, and every QoS 1 message is
// acknowledged once the batch that follows is committed.
func TestMQTTOverflowDrop(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1, MaxInflight: 1000})
	for _, qos := range []int{0, 1} {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			app := &mqttFakeApp{block: make(chan struct{})}
			rec := &mqttRecLog{}
			s := &MQTT{Name: "bp", Broker: b.URL(), Topics: []string{"drop/#"}, QoS: qos, Format: "json", CleanSession: true,
				ClientID: fmt.Sprint("drop", qos), QueueSize: 8, Overflow: OverflowDrop, Logger: slog.New(rec)}
			mqttStart(t, s, app)
			mqttWaitConnected(t, s)
			// The first batch is taken and blocks the log; the rest queue.
			mqttPublish(t, b.Addr, byte(qos), [][2]string{{"drop/x", `{"sensor":"first","value":1,"ts":1700000000000}`}})
			mqttWaitUntil(t, "the first message", 10*time.Second, func() bool { return s.Stats().Received == 1 })
			const n = 200
			var msgs [][2]string
			for i := 0; i < n; i++ {
				msgs = append(msgs, [2]string{"drop/x", fmt.Sprintf(`{"sensor":"s%d","value":1,"ts":1700000000000}`, i)})
			}
			// At QoS 1 the broker acknowledges the publisher at once; edged's
			// acknowledgements wait for the log.
			mqttPublish(t, b.Addr, byte(qos), msgs)
			mqttWaitUntil(t, "all received", 10*time.Second, func() bool { return s.Stats().Received == n+1 })
			close(app.block)
			mqttWaitUntil(t, "the log to take what is left", 10*time.Second, func() bool { return int64(app.count())+s.Stats().Dropped == n+1 })
			st := s.Stats()
			if st.Dropped < n-8-mqttMaxBatch || len(rec.matching("oldest messages dropped")) == 0 {
				t.Fatalf("dropped %d, logged %d\n%s", st.Dropped, len(rec.matching("oldest messages dropped")), rec)
			}
			es, _ := app.snapshot()
			if last := es[len(es)-1].Sensor; last != fmt.Sprint("s", n-1) {
				t.Fatalf("the newest message was not kept: last %q", last)
			}
			if qos == 1 {
				mqttWaitUntil(t, "every ack", 10*time.Second, func() bool { return s.Stats().Acked == n+1 })
			}
			t.Logf("qos %d: %d kept, %d dropped", qos, app.count(), st.Dropped)
		})
	}
}

// TestMQTTRealStore: into a real store through its group committer:
// readings are in the log, every QoS 1 message is acknowledged (also an
// empty payload, which has no reading), a retained message is skipped.
func TestMQTTRealStore(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{})
	p, err := mqtttest.Dial(b.Addr, "retainer", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	p.Retain = true
	p.Publish("rs/last", []byte(`{"sensor":"old","value":1,"ts":1600000000000}`))
	if err := p.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	p.Close()

	st, _ := storetest.MustOpen(t, nil)
	app := st.NewAppender(store.AppenderOptions{})
	actx, acancel := context.WithCancel(context.Background())
	appDone := make(chan error, 1)
	go func() { appDone <- app.Run(actx) }()
	s := &MQTT{Name: "rs", Broker: b.URL(), Topics: []string{"rs/#"}, QoS: 1, Format: "json", CleanSession: true}
	stop := mqttStart(t, s, app)
	mqttWaitConnected(t, s)
	msgs := [][2]string{{"rs/x", ""}}
	for i := 0; i < 50; i++ {
		msgs = append(msgs, [2]string{"rs/x", fmt.Sprintf(`{"sensor":"s","value":%d,"ts":1700000000000}`, i)})
	}
	mqttPublish(t, b.Addr, 1, msgs)
	mqttWaitUntil(t, "every ack", 10*time.Second, func() bool { return s.Stats().Acked == 52 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	acancel()
	if err := <-appDone; err != nil {
		t.Fatal(err)
	}
	var vals []float64
	if _, err := st.ReadLog(0, 0, func(_ uint64, e *store.Entry) error {
		vals = append(vals, e.Value)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(vals) != 50 || vals[0] != 0 || vals[49] != 49 {
		t.Fatalf("log %v", vals)
	}
	if st := s.Stats(); st.Retained != 1 || st.Received != 52 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMQTTUnreachable: a broker that is not there is retried with the
// reason in the log, and the source stops at once when asked to, even in
// the middle of its backoff.
func TestMQTTUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nobody listens there now
	rec := &mqttRecLog{}
	s := &MQTT{Name: "gone", Broker: "tcp://user:hunter2@" + addr, Topics: []string{"#"}, QoS: 1, Format: "json", Logger: slog.New(rec)}
	stop := mqttStart(t, s, &mqttFakeApp{})
	mqttWaitUntil(t, "the failure in the log", 5*time.Second, func() bool { return len(rec.matching("retrying in")) > 0 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("stopping took %v", took)
	}
	msg := rec.matching("retrying in")[0].Message
	want := fmt.Sprintf(`mqtt source "gone": cannot connect to tcp://%s: dial tcp %s: connect: connection refused; retrying in `, addr, addr)
	if !strings.HasPrefix(msg, want) || strings.Contains(rec.String(), "hunter2") {
		t.Errorf("logged %q\nwant %q...", msg, want)
	}
}

// TestMQTTLoopSafetyAndRelay: this gateway's own records on a subscribed
// topic are skipped; another gateway's are relayed as they are.
func TestMQTTLoopSafetyAndRelay(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{})
	app := &mqttFakeApp{}
	var mu sync.Mutex
	var relayed []store.Record
	s := &MQTT{Name: "lab", Device: "gw-01", Broker: b.URL(), Topics: []string{"#"}, QoS: 1, Format: "json", CleanSession: true,
		Relay: func(rs []store.Record) error {
			mu.Lock()
			relayed = append(relayed, rs...)
			mu.Unlock()
			return nil
		}}
	mqttStart(t, s, app)
	mqttWaitConnected(t, s)
	own := `{"type":"window","window":"w","key":"s1","start":0,"end":10,"rev":0,"final":true,"count":1,"device":"gw-01","seq":7,"id":"aa"}`
	other := `{"type":"window","window":"w","key":"s1","start":0,"end":10,"rev":0,"final":true,"count":1,"device":"car-7","seq":3,"id":"bb"}`
	mqttPublish(t, b.Addr, 1, [][2]string{
		{"edged/gw-01/w/s1", own},
		{"edged/car-7/w/s1", other},
		{"sensors/s1", `{"sensor":"s1","value":1,"ts":1700000000000}`},
	})
	mqttWaitUntil(t, "the reading and the relay", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return app.count() >= 1 && len(relayed) == 1
	})
	es, qs := app.snapshot()
	if len(es) != 1 || es[0].Sensor != "s1" || len(qs) != 0 {
		t.Fatalf("entries %v quarantine %v: an edged record was ingested as a reading", es, qs)
	}
	mu.Lock()
	defer mu.Unlock()
	if string(relayed[0].Body) != other || relayed[0].ID != "bb" || relayed[0].Key != "s1" {
		t.Fatalf("relayed %+v", relayed[0])
	}
	if st := s.Stats(); st.Own != 1 || st.Relayed != 1 {
		t.Fatalf("stats %+v", st)
	}
}
