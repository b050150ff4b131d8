package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/edged/edged/internal/natstest"
	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

// runOutput runs out until the test ends (or stop is called) and returns
// stop, which waits for Run to return.
func runOutput(t *testing.T, out Output) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- out.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return 10 s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitCursor waits until the output's cursor reaches the outbox's end.
func waitCursor(t *testing.T, st *store.Store, name string, timeout time.Duration) {
	t.Helper()
	var c uint64
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, _ = st.Cursor(name); c == st.OutboxLastSeq() {
			return
		}
	}
	t.Fatalf("cursor %d, outbox ends at %d after %v", c, st.OutboxLastSeq(), timeout)
}

// checkStream requires the stream to hold seqs 1..n of device gw once each,
// each message with its headers and its body's identity, and returns the
// messages by seq.
func checkStream(t *testing.T, msgs []natstest.Msg, n int) map[int]natstest.Msg {
	t.Helper()
	bySeq := map[int]natstest.Msg{}
	for _, m := range msgs {
		var r struct {
			Device string `json:"device"`
			Seq    int    `json:"seq"`
			ID     string `json:"id"`
			Key    string `json:"key"`
		}
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("stream seq %d: %v: %s", m.Seq, err, m.Data)
		}
		if prev, ok := bySeq[r.Seq]; ok {
			t.Fatalf("seq %d stored twice: stream seqs %d and %d", r.Seq, prev.Seq, m.Seq)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != r.ID {
			t.Fatalf("seq %d: Nats-Msg-Id %q, body id %q", r.Seq, got, r.ID)
		}
		if got := m.Header.Get("Edged-Seq"); got != strconv.Itoa(r.Seq) {
			t.Fatalf("seq %d: Edged-Seq %q", r.Seq, got)
		}
		if got := m.Header.Get("Edged-Device"); got != r.Device || got != "gw" {
			t.Fatalf("seq %d: Edged-Device %q, body device %q", r.Seq, got, r.Device)
		}
		if want := "edged.gw.window." + r.Key; m.Subject != want {
			t.Fatalf("seq %d: subject %q, want %q", r.Seq, m.Subject, want)
		}
		bySeq[r.Seq] = m
	}
	for seq := 1; seq <= n; seq++ {
		if _, ok := bySeq[seq]; !ok {
			t.Fatalf("seq %d of %d missing from the stream (%d messages)", seq, n, len(msgs))
		}
	}
	if len(bySeq) != n {
		t.Fatalf("%d seqs in the stream, want %d", len(bySeq), n)
	}
	return bySeq
}

func newJetStream(st *store.Store, url string) *JetStream {
	return &JetStream{OutName: "fleet", Device: "gw", URL: url, Subject: "edged.{device}.{type}.{key}", Stream: "EDGED",
		CreateStream: true, DuplicateWindow: time.Hour, Inflight: 32, LiveFirst: true, RetryMin: 50 * time.Millisecond, Store: st}
}

// TestJetStreamDelivers: the output creates the stream with the subjects of
// its template and the duplicate window asked for, and every record lands
// once, with Nats-Msg-Id, Edged-Device and Edged-Seq, on its subject; the
// cursor reaches the end of the outbox only when all are acknowledged.
func TestJetStreamDelivers(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	producer(t, st, 0, 500, 0)
	out := newJetStream(st, srv.URL())
	stop := runOutput(t, out)
	producer(t, st, 500, 200, time.Millisecond)
	waitCursor(t, st, "fleet", 20*time.Second)
	stop()
	checkStream(t, srv.Read(t, "EDGED"), 700)
	_, js := srv.Connect(t)
	s, err := js.Stream(context.Background(), "EDGED")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Duplicates != time.Hour || len(cfg.Subjects) != 1 || cfg.Subjects[0] != "edged.*.*.*" || cfg.Storage != jetstream.FileStorage {
		t.Fatalf("stream config: duplicates %v, subjects %q, storage %v", cfg.Duplicates, cfg.Subjects, cfg.Storage)
	}
	if s := out.Stats(); s.Acked != 700 || s.Sent != 700 || s.Duplicates != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestJetStreamDuplicateAck: records a previous run got into the stream
// but whose acknowledgement it never recorded (a crash before the cursor
// moved) are sent again; the server drops them by Nats-Msg-Id and says
// duplicate; that counts as delivered, and the stream holds each once.
func TestJetStreamDuplicateAck(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	producer(t, st, 0, 300, 0)
	_, js := srv.Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EDGED", Subjects: []string{"edged.>"}, Duplicates: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// The first 100 as the previous run sent them.
	recs, _ := st.ReadOutboxAfter(0, 100)
	for _, r := range recs {
		m := &nats.Msg{Subject: "edged.gw.window." + r.Key, Data: r.Body, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, r.ID)
		m.Header.Set("Edged-Device", "gw")
		m.Header.Set("Edged-Seq", strconv.FormatUint(r.Pos, 10))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	out := newJetStream(st, srv.URL())
	out.DuplicateWindow = 2 * time.Hour // longer than the stream's: a warning, not an error
	var logs bytes.Buffer
	var logMu sync.Mutex
	out.Logger = slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))
	stop := runOutput(t, out)
	waitCursor(t, st, "fleet", 20*time.Second)
	stop()
	checkStream(t, srv.Read(t, "EDGED"), 300)
	if s := out.Stats(); s.Duplicates != 100 || s.Acked != 300 {
		t.Fatalf("stats %+v, want 100 duplicates of 300 acknowledged", s)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "the stream forgets message ids sooner than duplicate_window") {
		t.Fatalf("no warning about the stream's shorter duplicate window:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// TestJetStreamOutage: the server stops while records keep being
// committed, and comes back. Every seq ends in the stream once, gapless;
// after the reconnect, records committed live are stored before the
// backlog is complete (live first), and within the live records and within
// the backlog each key's records are in seq order.
func TestJetStreamOutage(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	out := newJetStream(st, srv.URL())
	out.BacklogRate = 400
	runOutput(t, out)
	const before, during = 200, 600
	producer(t, st, 0, before, time.Millisecond)
	waitCursor(t, st, "fleet", 20*time.Second)
	srv.Stop()
	producer(t, st, before, during, 2*time.Millisecond)
	srv.Restart()
	total := before + during
	// Live records go on while the output reconnects and replays the
	// backlog (at 400/s: 1.5 s): until 300 were committed after the
	// reconnect.
	for i := 0; ; i++ {
		producer(t, st, total, 1, 5*time.Millisecond)
		total++
		if b := out.Stats().Boundary; b >= before+during && uint64(total) > b+300 {
			break
		}
		if i > 5000 {
			t.Fatal("the output did not reconnect")
		}
	}
	waitCursor(t, st, "fleet", 30*time.Second)
	boundary := int(out.Stats().Boundary)
	bySeq := checkStream(t, srv.Read(t, "EDGED"), total)

	// Live first: the first live record is stored before the last backlog one.
	lastBacklog := bySeq[boundary].Seq
	firstLive := bySeq[boundary+1].Seq
	if firstLive > lastBacklog {
		t.Fatalf("live record %d stored at %d, after the whole backlog (last at %d)", boundary+1, firstLive, lastBacklog)
	}
	// Per key, in seq order within each lane: stream order follows seq.
	msgs := srv.Read(t, "EDGED")
	lastLive, lastBack := map[string]int{}, map[string]int{}
	for _, m := range msgs {
		seq, _ := strconv.Atoi(m.Header.Get("Edged-Seq"))
		if seq <= before {
			continue // the first session's (its own boundary, its own lanes)
		}
		key := m.Subject
		lane := lastBack
		if seq > boundary {
			lane = lastLive
		}
		if seq < lane[key] {
			t.Fatalf("key %s: seq %d stored after %d in the same lane", key, seq, lane[key])
		}
		lane[key] = seq
	}
	t.Logf("%d records, boundary %d, first live stored at %d, last backlog at %d", total, boundary, firstLive, lastBacklog)
}

// TestJetStreamInOrder: with live_first = false the stream holds every
// device's records in seq order across an outage: what a consumer that
// keeps one seq per device needs.
func TestJetStreamInOrder(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	out := newJetStream(st, srv.URL())
	out.LiveFirst = false
	runOutput(t, out)
	producer(t, st, 0, 200, time.Millisecond)
	waitCursor(t, st, "fleet", 20*time.Second)
	srv.Stop()
	producer(t, st, 200, 300, time.Millisecond)
	srv.Restart()
	producer(t, st, 500, 300, 2*time.Millisecond)
	waitCursor(t, st, "fleet", 30*time.Second)
	msgs := srv.Read(t, "EDGED")
	checkStream(t, msgs, 800)
	for i, m := range msgs {
		if seq, _ := strconv.Atoi(m.Header.Get("Edged-Seq")); seq != i+1 {
			t.Fatalf("stream position %d holds seq %d", i+1, seq)
		}
	}
}

// TestJetStreamBadCredentials: a server that refuses the password: the
// output says so (a clear error, in Stats and the log), retries with a
// growing delay, and delivers nothing; records wait in the outbox.
func TestJetStreamBadCredentials(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{User: "edged", Password: "right"})
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	producer(t, st, 0, 10, 0)
	out := newJetStream(st, srv.URL())
	out.Username, out.Password = "edged", "wrong"
	out.RetryMin = 100 * time.Millisecond
	logs := lockedWriter{&sync.Mutex{}, &bytes.Buffer{}}
	out.Logger = slog.New(slog.NewTextHandler(logs, nil))
	stop := runOutput(t, out)
	time.Sleep(2 * time.Second)
	stop()
	s := out.Stats()
	if !strings.Contains(s.LastErr, "the server refused the credentials") || !strings.Contains(strings.ToLower(s.LastErr), "authorization violation") {
		t.Fatalf("last error %q", s.LastErr)
	}
	// 100 ms doubling (±25%): about 5 attempts in 2 s, never a tight loop.
	if s.Reconnects < 2 || s.Reconnects > 7 {
		t.Fatalf("%d reconnects in 2 s with a 100 ms backoff doubling", s.Reconnects)
	}
	if c, _ := st.Cursor("fleet"); c != 0 || s.Acked != 0 {
		t.Fatalf("cursor %d, acked %d", c, s.Acked)
	}
	if l := logs.String(); !strings.Contains(l, "the server refused the credentials") || strings.Contains(l, "wrong") {
		t.Fatalf("log (must name the problem, not the password):\n%s", l)
	}
	// The right password: everything goes.
	out2 := newJetStream(st, srv.URL())
	out2.Username, out2.Password = "edged", "right"
	runOutput(t, out2)
	waitCursor(t, st, "fleet", 20*time.Second)
}

// TestJetStreamStreamProblems: a stream that does not take the output's
// subjects, and a missing stream that the output may not create, are
// clear errors, retried.
func TestJetStreamStreamProblems(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	_, js := srv.Connect(t)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "EDGED", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet", "nocreate"})
	producer(t, st, 0, 5, 0)
	out := newJetStream(st, srv.URL())
	stop := runOutput(t, out)
	no := newJetStream(st, srv.URL())
	no.OutName, no.Stream, no.CreateStream = "nocreate", "MISSING", false
	no.Subject = "fleet.{device}"
	stop2 := runOutput(t, no)
	deadline := time.Now().Add(15 * time.Second)
	for (out.Stats().LastErr == "" || no.Stats().LastErr == "") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	stop2()
	if e := out.Stats().LastErr; !strings.Contains(e, `stream "EDGED" does not take the subjects "edged.*.*.*"`) {
		t.Fatalf("wrong subjects: %q", e)
	}
	if e := no.Stats().LastErr; !strings.Contains(e, `no stream takes subject "fleet.gw"`) {
		t.Fatalf("missing stream: %q", e)
	}
	for _, name := range []string{"fleet", "nocreate"} {
		if c, _ := st.Cursor(name); c != 0 {
			t.Fatalf("%s: cursor %d", name, c)
		}
	}
}

// TestSubjects: values become one token each; the stream's filter.
func TestSubjects(t *testing.T) {
	r := &store.Record{Kind: uint8(record.KindWindow), Name: "temp.10s", Key: "hall/s1.temp"}
	if got := fill("edged.{device}.{type}.{window}.{key}", "gw.1", r, natsToken); got != "edged.gw_1.window.temp_10s.hall/s1_temp" {
		t.Fatal(got)
	}
	r.Key = ""
	if got := fill("e.{key}", "gw", r, natsToken); got != "e._" {
		t.Fatal(got)
	}
	for _, c := range []struct {
		filter, pattern string
		want            bool
	}{
		{"edged.*.*", "edged.>", true}, {"edged.*.*", "edged.*.*", true}, {"edged.*.*", "edged.*", false},
		{"edged.*.*", "edged.gw.*", false}, {"edged.gw.*", "edged.*.*", true}, {"edged.*", "edged.*.>", false},
		{"edged.*.*", ">", true}, {"a.b", "a.b", true}, {"a.b", "a.c", false}, {"a.*.c", "a.*.*", true},
	} {
		if got := subjectWithin(c.filter, c.pattern); got != c.want {
			t.Errorf("subjectWithin(%q, %q) = %v", c.filter, c.pattern, got)
		}
	}
	if got := subjectFilter("edged.{device}.x-{type}.fixed"); got != "edged.*.*.fixed" {
		t.Fatal(got)
	}
}

// noSync opens the tests' stores without fsync: the outputs' behaviour does
// not depend on it, and a commit per record with fsync makes tests slow.
var noSync = &store.Options{NoSync: true}
