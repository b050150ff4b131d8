package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/ingest"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/runner"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
	"github.com/edged/edged/uplink"
)

// fakeRunner is a RunnerView the test controls.
type fakeRunner struct {
	ready atomic.Bool
	snap  atomic.Pointer[runner.Snapshot]
}

func (f *fakeRunner) Snapshot() *runner.Snapshot { return f.snap.Load() }
func (f *fakeRunner) Ready() bool                { return f.ready.Load() }
func (f *fakeRunner) LastCommit() time.Duration  { return 3 * time.Millisecond }

func get(t *testing.T, h http.Handler, path, auth string) (int, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String(), rec.Header()
}

func TestToken(t *testing.T) {
	var logs bytes.Buffer
	s := New(Options{Listen: "127.0.0.1:0", Token: "s3cret-token", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	h := s.Handler()
	for _, path := range []string{"/healthz", "/metrics", "/status", "/nope"} {
		for _, auth := range []string{"", "Bearer wrong", "Bearer s3cret-tokenX", "Bearer s3cret-toke", "Basic czNjcmV0LXRva2Vu", "s3cret-token", "Bearer"} {
			code, body, hdr := get(t, h, path, auth)
			if code != http.StatusUnauthorized {
				t.Errorf("%s with %q: %d, want 401", path, auth, code)
			}
			if hdr.Get("WWW-Authenticate") != `Bearer realm="edged"` || strings.Contains(body, "s3cret") {
				t.Errorf("%s with %q: header %q body %q", path, auth, hdr.Get("WWW-Authenticate"), body)
			}
		}
		for _, auth := range []string{"Bearer s3cret-token", "bearer s3cret-token", "BEARER  s3cret-token"} {
			code, _, _ := get(t, h, path, auth)
			if want := map[bool]int{true: 404, false: 200}[path == "/nope"]; code != want {
				t.Errorf("%s with %q: %d, want %d", path, auth, code, want)
			}
		}
	}
	// POST is refused once authenticated.
	req := httptest.NewRequest("POST", "/metrics", nil)
	req.Header.Set("Authorization", "Bearer s3cret-token")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
	// Without a token, no header is needed.
	open := New(Options{Listen: "127.0.0.1:0"}).Handler()
	if code, _, _ := get(t, open, "/metrics", ""); code != 200 {
		t.Errorf("no token configured: %d", code)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the token was logged: %s", logs.String())
	}
}

func TestHealthz(t *testing.T) {
	fr := &fakeRunner{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := New(Options{Listen: "127.0.0.1:0", Runner: fr, RecoverFrom: 10, RecoverTo: 500})
	s.Start(ctx)
	defer s.Close()
	h := s.Handler()
	code, body, _ := get(t, h, "/healthz", "")
	if code != 503 || !strings.Contains(body, "recovering") || !strings.Contains(body, "500") {
		t.Fatalf("recovering: %d %q", code, body)
	}
	if _, body, _ := get(t, h, "/metrics", ""); !strings.Contains(body, "\nedged_ready 0\n") {
		t.Errorf("metrics while recovering:\n%s", body)
	}
	fr.ready.Store(true)
	if code, body, _ := get(t, h, "/healthz", ""); code != 200 || body != "ok\n" {
		t.Fatalf("ready: %d %q", code, body)
	}
	if _, body, _ := get(t, h, "/metrics", ""); !strings.Contains(body, "\nedged_ready 1\n") {
		t.Errorf("metrics when ready:\n%s", body)
	}
	// Latched: a runner going away does not make it unready.
	fr.ready.Store(false)
	if code, _, _ := get(t, h, "/healthz", ""); code != 200 {
		t.Fatalf("after ready: %d", code)
	}
	// Stopping.
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body, _ := get(t, h, "/healthz", "")
		if code == 503 && body == "stopping\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stopping: %d %q", code, body)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Nothing to replay: ready at once, even without a runner.
	s2 := New(Options{Listen: "127.0.0.1:0", RecoverFrom: 7, RecoverTo: 7})
	if code, _, _ := get(t, s2.Handler(), "/healthz", ""); code != 200 {
		t.Errorf("nothing to recover: %d", code)
	}
}

// TestHealthzCheckpoint: without the runner's word, a committed checkpoint
// that covers the log end at the start means recovered.
func TestHealthzCheckpoint(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	if _, err := st.Append(&store.Batch{Entries: []store.Entry{{Source: "a", Sensor: "s", TS: 1, Ingest: 1}, {Source: "a", Sensor: "s", TS: 2, Ingest: 2}}}); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Listen: "127.0.0.1:0", Store: st, RecoverFrom: 0, RecoverTo: st.LogEnd()})
	h := s.Handler()
	if code, _, _ := get(t, h, "/healthz", ""); code != 503 {
		t.Fatalf("before the checkpoint: %d", code)
	}
	if err := st.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{Offset: 2, NextSeq: 1, Time: time.Now().UnixMilli()}}); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, h, "/healthz", ""); code != 200 {
		t.Fatalf("after the checkpoint: %d", code)
	}
}

type fakeOutput struct{ name string }

func (o fakeOutput) Name() string                  { return o.name }
func (o fakeOutput) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func TestMetricsAndStatus(t *testing.T) {
	st, _ := storetest.MustOpen(t, &store.Options{DeviceID: "gw"})
	app := st.NewAppender(store.AppenderOptions{Interval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	appDone := make(chan error, 1)
	go func() { appDone <- app.Run(ctx) }()
	defer func() { cancel(); <-appDone }()
	if err := st.RegisterOutputs([]string{"up", "file"}); err != nil {
		t.Fatal(err)
	}

	fr := &fakeRunner{}
	now := time.UnixMilli(1_700_000_100_000)
	s := New(Options{Listen: "127.0.0.1:0", Device: "gw", Version: "v1.2.3", Store: st, Appender: app, Runner: fr,
		Sources: []Source{{"f", "file"}, {"lab", "mqtt"}, {"quiet", "serial"}},
		Outputs: []uplink.Output{fakeOutput{"up"}, fakeOutput{"file"}},
		Now:     func() time.Time { return now }})
	h := s.Handler()

	// No snapshot yet: the pipeline's figures are left out.
	_, body, _ := get(t, h, "/metrics", "")
	checkExposition(t, body)
	for _, absent := range []string{"edged_pipeline_readings_total", "edged_state_keys", "edged_watermark_lag_seconds", "edged_checkpoints_total"} {
		if strings.Contains(body, absent) {
			t.Errorf("%s without a snapshot:\n%s", absent, body)
		}
	}
	for _, want := range []string{`edged_readings_total{source="f"} 0`, `edged_readings_total{source="quiet"} 0`, `edged_checkpoint_commit_seconds 0.003`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
	var js map[string]any
	_, sbody, _ := get(t, h, "/status", "")
	if err := json.Unmarshal([]byte(sbody), &js); err != nil || js["pipeline"] != nil {
		t.Fatalf("status without a snapshot: %v\n%s", err, sbody)
	}

	// Readings and bad payloads through the counting appender.
	ca := s.Appender(app)
	var wg sync.WaitGroup
	done := func(uint64, error) { wg.Done() }
	wg.Add(3)
	ca.Append(ctx, store.AppendRequest{Entries: []store.Entry{
		{Source: "f", Sensor: "s1", Value: 1, TS: 1_700_000_000_000, Ingest: 1},
		{Source: "f", Sensor: "s2", Value: 2, TS: 1_700_000_000_000, Ingest: 1},
		{Kind: store.EntryIdle, Source: "f", Ingest: 1},
	}, Quarantine: []store.QEntry{{Source: "f", Reason: "bad", Payload: []byte("x")}}, Done: done})
	ca.Append(ctx, store.AppendRequest{Entries: []store.Entry{
		{Source: "lab", Sensor: "s1", Value: 1, TS: 1_700_000_000_000, Ingest: 1},
		{Source: "other", Sensor: "s1", Value: 1, TS: 1_700_000_000_000, Ingest: 1},
		{Source: "lab", Sensor: "s1", Value: 1, TS: 1_700_000_000_001, Ingest: 1},
	}, Done: done})
	ca.Append(ctx, store.AppendRequest{Quarantine: []store.QEntry{{Source: "lab", Reason: "bad"}, {Source: "lab", Reason: "worse"}}, Done: done})
	wg.Wait()
	// A checkpoint with two records, one delivered by "up".
	recs := []store.Record{{ID: "a", Body: []byte(`{}`)}, {ID: "b", Body: []byte(`{}`)}}
	if err := st.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{Offset: 6, NextSeq: 3, Time: now.UnixMilli() - 4000, Keys: 2}, Records: recs}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetCursor("up", 1); err != nil {
		t.Fatal(err)
	}

	// The runner's snapshot.
	fr.ready.Store(true)
	fr.snap.Store(&runner.Snapshot{Taken: now.Add(-500 * time.Millisecond), Ready: true, Offset: 4, Processed: 4, Checkpoints: 7,
		LastPause: 2 * time.Millisecond, MaxPause: 9 * time.Millisecond, LastCheckpoint: now.Add(-1500 * time.Millisecond),
		Watermark: 1_700_000_000_000 - 2001,
		Engine:    pipeline.Stats{Readings: 4, Late: 1, Fired: 2, Alerts: 1, DetectorLate: 0, Keys: 3},
		Sources: []pipeline.SourceWM{
			{Name: "f", Seen: true, MaxTS: 1_700_000_000_000, Watermark: 1_700_000_000_000 - 2001},
			{Name: "lab", Seen: true, MaxTS: 1_700_000_000_001, Watermark: 1_700_000_000_001 - 2001, Idle: true},
			{Name: "quiet"},
		}})

	_, body, hdr := get(t, h, "/metrics", "")
	if ct := hdr.Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("content type %q", ct)
	}
	types := checkExposition(t, body)
	for _, want := range []string{
		`edged_build_info{device="gw",version="v1.2.3"} 1`,
		`edged_ready 1`,
		`edged_readings_total{source="f"} 2`,
		`edged_readings_total{source="lab"} 2`,
		`edged_readings_total{source="other"} 1`,
		`edged_readings_total{source="quiet"} 0`,
		`edged_decode_errors_total{source="f"} 1`,
		`edged_decode_errors_total{source="lab"} 2`,
		`edged_source_info{source="lab",type="mqtt"} 1`,
		`edged_source_idle{source="lab"} 1`,
		`edged_source_idle{source="quiet"} 0`,
		`edged_source_watermark_seconds{source="f"} 1699999997.999`,
		`edged_watermark_lag_seconds{source="f"} 102.001`,
		`edged_watermark_seconds 1699999997.999`,
		`edged_pipeline_readings_total 4`,
		`edged_late_records_total 1`,
		`edged_window_records_total 2`,
		`edged_alerts_total 1`,
		`edged_state_keys 3`,
		`edged_pipeline_offset 4`,
		`edged_pipeline_backlog_entries 2`,
		`edged_snapshot_age_seconds 0.5`,
		`edged_checkpoints_total 7`,
		`edged_checkpoint_pause_seconds 0.002`,
		`edged_checkpoint_pause_max_seconds 0.009`,
		`edged_checkpoint_age_seconds 1.5`,
		`edged_log_entries 6`,
		`edged_log_end_offset 6`,
		`edged_outbox_records 2`,
		`edged_outbox_backlog_records{output="file"} 2`,
		`edged_outbox_backlog_records{output="up"} 1`,
		`edged_quarantine_total 3`,
		`edged_quarantine_payloads 3`,
		`edged_quarantine_dropped_total 0`,
		`edged_log_commit_failing 0`,
	} {
		if !strings.Contains(body, "\n"+want+"\n") {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
	if regexp.MustCompile(`edged_watermark_lag_seconds\{source="quiet"\}`).MatchString(body) {
		t.Error("a lag for a source never seen")
	}
	if types["edged_readings_total"] != counter || types["edged_watermark_lag_seconds"] != gauge {
		t.Errorf("types: %v", types)
	}

	_, sbody, hdr = get(t, h, "/status", "")
	if hdr.Get("Content-Type") != "application/json" {
		t.Errorf("status content type %q", hdr.Get("Content-Type"))
	}
	var status Status
	if err := json.Unmarshal([]byte(sbody), &status); err != nil {
		t.Fatalf("%v\n%s", err, sbody)
	}
	if !status.Ready || status.State != "ready" || status.Device != "gw" || status.Pipeline == nil || status.Pipeline.StateKeys != 3 ||
		len(status.Sources) != 4 || status.Sources[0].Name != "f" || status.Sources[0].Readings != 2 ||
		len(status.Outputs) != 2 || status.Outputs[1].Backlog != 2 || status.Store == nil || status.Store.QuarantineTotal != 3 ||
		status.Checkpoint.Offset == nil || *status.Checkpoint.Offset != 6 || *status.Checkpoint.Keys != 2 {
		t.Errorf("status:\n%s", sbody)
	}
}

// TestMetricNames lists every family /metrics can show, with its type and
// labels: dashboards depend on them.
func TestMetricNames(t *testing.T) {
	tr := true
	n := int64(1)
	f := 1.0
	u := uint64(1)
	str := "x"
	tm := time.Now()
	st := &Status{Device: "gw", Version: "v", Ready: true,
		Pipeline: &PipelineStatus{Watermark: &n},
		Checkpoint: CheckpointStatus{Count: &n, LastCommitSeconds: &f, LastPauseSeconds: &f, MaxPauseSeconds: &f,
			AgeSeconds: &f, Offset: &u, Committed: &tm, Keys: &n, Bytes: &n},
		Store:   &StoreStatus{LogBytes: &n, OutboxBytes: &n, LogCommits: &n, LogCommitError: &str},
		Sources: []SourceStatus{{Name: "s", Type: "mqtt", MaxTS: &n, Watermark: &n, LagSeconds: &f, Idle: &tr, Received: &n, Connected: &tr, Reconnects: &n, Dropped: &n}},
		Outputs: []OutputStatus{{Name: "o", Sent: &n, Acked: &n, Reconnects: &n}},
	}
	st.Sources = append(st.Sources, SourceStatus{Name: "m", Type: "modbus", Modbus: &ingest.ModbusStats{Slaves: []ingest.ModbusSlaveStats{{Slave: 1}}}})
	var b strings.Builder
	promMetrics(st).write(&b)
	types := checkExposition(t, b.String())
	labels := map[string]string{}
	for _, l := range strings.Split(b.String(), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(l, " ")
		ls := ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			for _, kv := range regexp.MustCompile(`([a-z_]+)="`).FindAllStringSubmatch(name[i:], -1) {
				ls += kv[1] + ","
			}
			name = name[:i]
		}
		_ = rest
		labels[name] = strings.TrimSuffix(ls, ",")
	}
	var got []string
	for n, typ := range types {
		got = append(got, n+" "+typ+" "+labels[n])
	}
	slices.Sort(got)
	want := []string{
		"edged_alerts_total counter ",
		"edged_build_info gauge device,version",
		"edged_checkpoint_age_seconds gauge ",
		"edged_checkpoint_bytes gauge ",
		"edged_checkpoint_commit_seconds gauge ",
		"edged_checkpoint_pause_max_seconds gauge ",
		"edged_checkpoint_pause_seconds gauge ",
		"edged_checkpoints_total counter ",
		"edged_data_file_bytes gauge ",
		"edged_decode_errors_total counter source",
		"edged_detector_late_readings_total counter ",
		"edged_late_records_total counter ",
		"edged_log_bytes gauge ",
		"edged_log_commit_failing gauge ",
		"edged_log_commits_total counter ",
		"edged_log_dropped_total counter ",
		"edged_log_end_offset gauge ",
		"edged_log_entries gauge ",
		"edged_modbus_errors_total counter source,slave,reason",
		"edged_modbus_poll_seconds gauge source",
		"edged_modbus_polls_skipped_total counter source",
		"edged_modbus_polls_total counter source",
		"edged_modbus_requests_total counter source,slave",
		"edged_modbus_slave_up gauge source,slave",
		"edged_mqtt_messages_received_total counter source",
		"edged_outbox_backlog_records gauge output",
		"edged_outbox_bytes gauge ",
		"edged_outbox_dropped_total counter ",
		"edged_outbox_records gauge ",
		"edged_output_acked_total counter output",
		"edged_output_reconnects_total counter output",
		"edged_output_sent_total counter output",
		"edged_pipeline_backlog_entries gauge ",
		"edged_pipeline_offset gauge ",
		"edged_pipeline_readings_total counter ",
		"edged_quarantine_dropped_total counter ",
		"edged_quarantine_payloads gauge ",
		"edged_quarantine_total counter ",
		"edged_readings_total counter source",
		"edged_ready gauge ",
		"edged_snapshot_age_seconds gauge ",
		"edged_source_connected gauge source",
		"edged_source_dropped_total counter source",
		"edged_source_idle gauge source",
		"edged_source_info gauge source,type",
		"edged_source_reconnects_total counter source",
		"edged_source_watermark_seconds gauge source",
		"edged_start_time_seconds gauge ",
		"edged_state_keys gauge ",
		"edged_state_resets_total counter ",
		"edged_watermark_lag_seconds gauge source",
		"edged_watermark_seconds gauge ",
		"edged_window_records_total counter ",
	}
	if !slices.Equal(got, want) {
		t.Errorf("families:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestListenRetry: an address in use is retried until it is free.
func TestListenRetry(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	var logs syncBuf
	s := New(Options{Listen: addr, Retry: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil)), RecoverTo: 0})
	s.Start(context.Background())
	defer s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "http endpoint cannot listen") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning; log:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s.Addr() != "" {
		t.Fatal("listening on a busy port")
	}
	busy.Close()
	for s.Addr() == "" {
		if time.Now().After(deadline) {
			t.Fatalf("not listening after the port was freed; log:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, b)
	}
	if strings.Count(logs.String(), "cannot listen") != 1 {
		t.Errorf("the warning is repeated:\n%s", logs.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still listening after Close")
	}
}

func TestNilServer(t *testing.T) {
	var s *Server
	s.Start(context.Background())
	s.AddSource("a", nil)
	if s.Addr() != "" || s.Close() != nil {
		t.Fatal("nil server")
	}
	var app fakeApp
	if s.Appender(&app) != &app {
		t.Fatal("nil server wraps the appender")
	}
	// Closing a server that was never started.
	if err := New(Options{Listen: "127.0.0.1:0"}).Close(); err != nil {
		t.Fatal(err)
	}
}

type fakeApp struct{}

func (*fakeApp) Append(context.Context, store.AppendRequest) error { return nil }

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
