package runner

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edged/edged/cep"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

const ptBase = int64(1_700_000_000_000)

// ptRig is a runner over a real store with a real appender and a clock the
// test moves.
type ptRig struct {
	t   *testing.T
	st  *store.Store
	app *store.Appender
	clk atomic.Int64
	cfg Config
}

func newPTRig(t *testing.T, processingTime bool) *ptRig {
	t.Helper()
	st, _ := storetest.MustOpen(t, nil)
	g := &ptRig{t: t, st: st, app: st.NewAppender(store.AppenderOptions{Interval: time.Millisecond})}
	g.clk.Store(ptBase)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.app.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	det, err := cep.New(cep.Spec{Name: "dead", Type: "deadman", Duration: time.Minute, ProcessingTime: processingTime})
	if err != nil {
		t.Fatal(err)
	}
	g.cfg = Config{Device: "gw", CheckpointInterval: time.Hour, IdleTimeout: 30 * time.Second,
		Now: func() time.Time { return time.UnixMilli(g.clk.Load()) },
		Engine: pipeline.Config{Sources: []pipeline.SourceSpec{{Name: "src", MaxOutOfOrderness: 2 * time.Second}},
			Detectors: []pipeline.DetectorSpec{{Detector: det}}}}
	return g
}

func (g *ptRig) runner() *Runner {
	g.t.Helper()
	r, err := New(g.st, g.app, g.cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	r.startWriter()
	return r
}

// readings appends "sensor@ms=value" readings (ms after ptBase) to the log.
func (g *ptRig) readings(items ...string) {
	g.t.Helper()
	var es []store.Entry
	for _, it := range items {
		rd := pipelineItem(g.t, it)
		es = append(es, store.Entry{Source: "src", Sensor: rd.Sensor, Value: rd.Value, TS: ptBase + rd.TS, Ingest: g.clk.Load()})
	}
	if _, err := g.st.Append(&store.Batch{Entries: es}); err != nil {
		g.t.Fatal(err)
	}
}

// at moves the clock to ptBase+ms and runs two rounds of what Run does
// when it is caught up: write the idle markers and ticks due, and process
// them once the appender committed them. want is how many entries the
// runner must write in all.
func (g *ptRig) at(r *Runner, ms int64, want int64) {
	g.t.Helper()
	g.clk.Store(ptBase + ms)
	var wrote int64
	ctx := context.Background()
	for round := 0; round < 2; round++ {
		before := g.app.Stats().Entries
		n := int64(r.idle(ctx))
		if r.tick(ctx) {
			n++
		}
		wrote += n
		deadline := time.Now().Add(5 * time.Second)
		for g.app.Stats().Entries < before+n {
			if time.Now().After(deadline) {
				g.t.Fatal("appender did not commit")
			}
			time.Sleep(time.Millisecond)
		}
		g.pump(r)
	}
	if wrote != want {
		g.t.Fatalf("at %d ms: the runner wrote %d entries, want %d", ms, wrote, want)
	}
}

func (g *ptRig) pump(r *Runner) {
	g.t.Helper()
	for {
		n, err := r.step(4096)
		if err != nil {
			g.t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// pipelineItem parses "sensor@ms=value".
func pipelineItem(t testing.TB, it string) (r struct {
	Sensor string
	TS     int64
	Value  float64
}) {
	t.Helper()
	at, eq := strings.IndexByte(it, '@'), strings.IndexByte(it, '=')
	r.Sensor = it[:at]
	var err error
	if r.TS, err = strconv.ParseInt(it[at+1:eq], 10, 64); err != nil {
		t.Fatal(err)
	}
	if r.Value, err = strconv.ParseFloat(it[eq+1:], 64); err != nil {
		t.Fatal(err)
	}
	return r
}

func bodies(rs []store.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Body))
	}
	return out
}

func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\n got: %s\nwant: %s", what, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

// TestProcessingTimeDeadman: readings for a and b, then the source goes
// idle and the whole input stands still. The runner writes ticks into the
// log while a key is due; a and b fire once each at last + duration. A
// runner killed after the ticks and recovered from a checkpoint taken
// before them replays the ticks from the log: the same alerts, same seq
// and id, none twice. A reading afterwards resolves a.
func TestProcessingTimeDeadman(t *testing.T) {
	g := newPTRig(t, true)
	r1 := g.runner()
	// The watermark ends at 7,999 ms: b@10000 waits for it.
	g.readings("a@1000=1", "b@2000=2", "a@5000=5", "b@10000=10")
	g.at(r1, 10000, 0)
	ctx := context.Background()
	if err := r1.checkpoint(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := r1.waitWriter(ctx); err != nil {
		t.Fatal(err)
	}
	cpOffset := r1.Offset()

	g.at(r1, 41000, 2) // idle marker; then a tick: b's reading waits
	if !r1.eng.AllIdle() || len(r1.pending) != 0 {
		t.Fatalf("all idle %v, records %q", r1.eng.AllIdle(), bodies(r1.pending))
	}
	g.at(r1, 64999, 0) // a silent for 59,999 ms: not due
	g.at(r1, 65000, 1) // a fires
	g.at(r1, 65500, 0) // b is due at 70 s
	g.at(r1, 70000, 1) // b fires
	g.at(r1, 300000, 0)
	want := []string{
		`{"type":"alert","detector":"dead","key":"a","state":"firing","ts":1700000065000,"value":5,"score":0.5,"reason":"no reading for 1m0s (last at 2023-11-14T22:13:25Z)","device":"gw","seq":1,"id":"` +
			(&pipeline.Record{Kind: record.KindAlert, Name: "dead", Key: "a", TS: ptBase + 65000, State: "firing"}).ID("gw") + `"}`,
		`{"type":"alert","detector":"dead","key":"b","state":"firing","ts":1700000070000,"value":10,"score":0.5,"reason":"no reading for 1m0s (last at 2023-11-14T22:13:30Z)","device":"gw","seq":2,"id":"` +
			(&pipeline.Record{Kind: record.KindAlert, Name: "dead", Key: "b", TS: ptBase + 70000, State: "firing"}).ID("gw") + `"}`,
	}
	sameLines(t, "alerts of the first run", bodies(r1.pending), want)
	// kill -9: nothing after the checkpoint reaches the outbox.
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}

	r2 := g.runner()
	if r2.Offset() != cpOffset {
		t.Fatalf("recovered at %d, want the checkpoint's %d", r2.Offset(), cpOffset)
	}
	g.pump(r2)
	sameLines(t, "alerts of the recovery", bodies(r2.pending), want)

	// The input comes back: a's reading resolves a once the watermark
	// passes it; the watermark passing b's silence adds nothing.
	g.readings("a@100000=7", "c@104000=8")
	g.at(r2, 310000, 0)
	if err := r2.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	out := readOutbox(t, g.st)
	if len(out) != 3 || strings.Join(out[:2], "\n") != strings.Join(want, "\n") ||
		!strings.Contains(out[2], `"key":"a","state":"resolved","ts":1700000100000`) || !strings.Contains(out[2], `"seq":3,`) {
		t.Fatalf("outbox:\n%s", strings.Join(out, "\n"))
	}

	// The detector's state survives restarts: a runner restored from the
	// final checkpoint keeps it through its own checkpoint.
	r3 := g.runner()
	if len(r3.dropOps) != 0 {
		t.Fatalf("restart drops %v", r3.dropOps)
	}
	if err := r3.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	r3.Close()
	r4 := g.runner()
	defer r4.Close()
	if k := r4.eng.Stats().Keys; k != 3 {
		t.Fatalf("%d detector keys after two restarts, want 3", k)
	}
}

// Without processing_time nothing is written or fires while the input is
// stopped: the watermark stands still (the behaviour before the option).
func TestNoProcessingTimeDeadman(t *testing.T) {
	g := newPTRig(t, false)
	r := g.runner()
	defer r.Close()
	g.readings("a@1000=1", "b@2000=2", "a@5000=5", "b@10000=10")
	g.at(r, 10000, 0)
	g.at(r, 41000, 1) // the idle marker only
	for _, ms := range []int64{65000, 70000, 300000, 3600000} {
		g.at(r, ms, 0)
	}
	if len(r.pending) != 0 {
		t.Fatalf("records: %q", bodies(r.pending))
	}
}
