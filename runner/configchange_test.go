package runner

import (
	"bytes"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/cep"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

// opKinds are every window and detector kind, in the order "change kind"
// rotates them.
var (
	windowKinds   = []string{"tumbling", "sliding", "session"}
	detectorKinds = []string{"threshold", "zscore", "mad", "rate", "flatline", "deadman", "range", "pattern", "anomaly"}
)

func aggs(t testing.TB, names ...string) []pipeline.AggSpec {
	var out []pipeline.AggSpec
	for _, n := range names {
		a, err := pipeline.ParseAgg(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// opSpec is one operator for the matrix: a window or a detector of kind,
// named name; alt picks other parameters ("change parameters").
func opSpec(t testing.TB, kind, name string, alt bool) (w *pipeline.WindowSpec, d *pipeline.DetectorSpec) {
	t.Helper()
	pick := func(a, b time.Duration) time.Duration {
		if alt {
			return b
		}
		return a
	}
	num := func(a, b float64) *float64 {
		if alt {
			return &b
		}
		return &a
	}
	switch kind {
	case "tumbling":
		w := &pipeline.WindowSpec{Name: name, Type: pipeline.Tumbling, Size: pick(10*time.Second, 5*time.Second),
			AllowedLateness: pick(5*time.Second, 0), Aggs: aggs(t, "count", "sum", "p95")}
		if alt {
			w.Aggs = aggs(t, "count", "max", "stddev")
		}
		return w, nil
	case "sliding":
		return &pipeline.WindowSpec{Name: name, Type: pipeline.Sliding, Size: pick(20*time.Second, 30*time.Second), Slide: pick(5*time.Second, 10*time.Second),
			AllowedLateness: pick(3*time.Second, time.Second), Aggs: aggs(t, "count", "mean")}, nil
	case "session":
		return &pipeline.WindowSpec{Name: name, Type: pipeline.Session, Gap: pick(30*time.Second, 2*time.Second),
			AllowedLateness: pick(10*time.Second, 0), Aggs: aggs(t, "count", "last")}, nil
	}
	s := cep.Spec{Name: name, Type: kind}
	switch kind {
	case "threshold":
		s.Above = num(50, 90)
		if alt {
			s.ForCount = 3
		}
	case "zscore":
		s.Sigma, s.Window, s.Warmup = 3, pick(time.Minute, 10*time.Second), 5
		if alt {
			s.Window, s.Alpha = 0, 0.1
		}
	case "mad":
		s.Sigma, s.Window, s.Warmup = 3, pick(time.Minute, 5*time.Second), 5
	case "rate":
		s.MaxRate = *num(10, 1)
	case "flatline":
		s.Duration, s.Tolerance = pick(20*time.Second, 3*time.Second), cep.Tolerance{Value: 0.001}
	case "anomaly":
		if alt {
			s.MinScore, s.Warmup = 0.9, 5
		}
	case "deadman":
		s.Duration = pick(time.Minute, 2*time.Second)
		s.ProcessingTime = alt
	case "range":
		s.Min, s.Max = num(-10, 0), num(200, 40)
	case "pattern":
		s.Pattern = &cep.PatternSpec{Steps: []string{"value > 60", "value < 20"}, Within: pick(time.Minute, 5*time.Second)}
		if alt {
			s.Pattern.Steps = []string{"value > 70"}
			s.Pattern.Times = 2
		}
	default:
		t.Fatalf("unknown kind %q", kind)
	}
	det, err := cep.New(s)
	if err != nil {
		t.Fatal(err)
	}
	return nil, &pipeline.DetectorSpec{Detector: det}
}

// opConfig is an engine config holding the given operators (kind, name,
// alt) and, always, the window "keep", which no change touches.
func opConfig(t testing.TB, ops ...[3]string) pipeline.Config {
	cfg := pipeline.Config{DefaultOutOfOrderness: 2 * time.Second,
		Windows: []pipeline.WindowSpec{{Name: "keep", Type: pipeline.Tumbling, Size: time.Hour, Aggs: aggs(t, "count")}}}
	for _, o := range ops {
		w, d := opSpec(t, o[0], o[1], o[2] == "alt")
		if w != nil {
			cfg.Windows = append(cfg.Windows, *w)
		} else {
			cfg.Detectors = append(cfg.Detectors, *d)
		}
	}
	return cfg
}

// fillWave appends seconds of readings of keys sensors from second from
// on: a wave that crosses every detector's limits, so each has state.
func fillWave(t testing.TB, st *store.Store, keys, from, seconds int) {
	t.Helper()
	base := int64(1_700_000_000_000)
	var es []store.Entry
	for s := from; s < from+seconds; s++ {
		es = es[:0]
		for k := 0; k < keys; k++ {
			v := float64((s*7+k*13)%100) - 5
			es = append(es, store.Entry{Source: "src", Sensor: fmt.Sprintf("s%d", k), Value: v, TS: base + int64(s)*1000 + int64(k), Ingest: base})
		}
		if _, err := st.Append(&store.Batch{Entries: es}); err != nil {
			t.Fatal(err)
		}
	}
}

type logBuf struct{ bytes.Buffer }

func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&l.Buffer, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func matrixRunner(t testing.TB, st *store.Store, cfg pipeline.Config, log *slog.Logger) *Runner {
	t.Helper()
	r, err := New(st, nil, Config{Device: "gw", CheckpointInterval: time.Hour, StateInterval: time.Hour, Engine: cfg, Logger: log})
	if err != nil {
		t.Fatalf("restart with the changed config: %v", err)
	}
	return r
}

// keepCounts returns the counts of the "keep" window records in the
// outbox (the hour window, fired at the end by a far reading).
func keepCounts(t testing.TB, st *store.Store) []string {
	var out []string
	re := regexp.MustCompile(`"window":"keep".*?"count":(\d+)`)
	for _, b := range readOutbox(t, st) {
		if m := re.FindStringSubmatch(b); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// TestConfigChangeMatrix: for every window and detector kind and every
// change (remove, rename, change kind, change parameters), a restart with
// the changed config starts cleanly: the state of the changed operator is
// dropped or reset (logged once, naming it) or kept when it still fits,
// the untouched window keeps its state, the new config processes more
// input, and a second restart with it reports nothing more.
func TestConfigChangeMatrix(t *testing.T) {
	all := append(append([]string{}, windowKinds...), detectorKinds...)
	next := func(kind string) string {
		list := windowKinds
		if !isWindow(kind) {
			list = detectorKinds
		}
		for i, k := range list {
			if k == kind {
				return list[(i+1)%len(list)]
			}
		}
		return ""
	}
	for _, kind := range all {
		for _, change := range []string{"remove", "rename", "kind", "params", "to-other-family", "lateness"} {
			if change == "lateness" && !isWindow(kind) {
				continue
			}
			t.Run(kind+"/"+change, func(t *testing.T) {
				st, _ := storetest.MustOpen(t, nil)
				before := opConfig(t, [3]string{kind, "x", ""})
				var after pipeline.Config
				wantLog := ""
				switch change {
				case "remove":
					after = opConfig(t)
					wantLog = "no longer configured"
				case "rename":
					after = opConfig(t, [3]string{kind, "y", ""})
					wantLog = "no longer configured"
				case "kind":
					after = opConfig(t, [3]string{next(kind), "x", ""})
					wantLog = "changed"
				case "params":
					after = opConfig(t, [3]string{kind, "x", "alt"})
				case "to-other-family":
					other := "threshold"
					if !isWindow(kind) {
						other = "tumbling"
					}
					after = opConfig(t, [3]string{other, "x", ""})
					wantLog = "no longer configured"
				case "lateness":
					// The same shape with less allowed lateness: the state
					// is kept, minus what no reading can reach any more.
					after = opConfig(t, [3]string{kind, "x", ""})
					after.Windows[1].AllowedLateness = 0
				}
				fillWave(t, st, 4, 0, 40)
				drain(t, matrixRunner(t, st, before, nil))

				var lb logBuf
				r := matrixRunner(t, st, after, lb.logger())
				fillWave(t, st, 4, 40, 40)
				drain(t, r)
				logs := lb.String()
				if change == "lateness" && strings.Contains(logs, "operator=x") {
					t.Errorf("lowering allowed_lateness dropped or reset the window's state; log:\n%s", logs)
				}
				if wantLog != "" {
					re := regexp.MustCompile(`(?m)^.*state.*` + wantLog + `.*$`)
					lines := re.FindAllString(logs, -1)
					if len(lines) != 1 || !strings.Contains(lines[0], "x") {
						t.Errorf("want one log line saying %q about the operator x, got %q; log:\n%s", wantLog, lines, logs)
					}
				}
				// The untouched window kept its state: its hour holds
				// the readings of both runs.
				var lb2 logBuf
				r2 := matrixRunner(t, st, after, lb2.logger())
				if strings.Contains(lb2.String(), "dropped") || strings.Contains(lb2.String(), "reset") || len(r2.dropOps) > 0 {
					t.Errorf("a second restart with the same config still drops %v; log:\n%s", r2.dropOps, lb2.String())
				}
				fillWave(t, st, 4, 4000, 1) // far ahead: the hour window fires
				drain(t, r2)
				if got := keepCounts(t, st); strings.Join(got, " ") != "80 80 80 80" {
					t.Errorf("the untouched window's first hour counted %v, want 80 per sensor (80 s across the restart)", got)
				}
			})
		}
	}
}

// opLines counts the log lines about the operator op.
func opLines(log, op string) int {
	return len(regexp.MustCompile(`operator=`+regexp.QuoteMeta(op)+`(\s|$)`).FindAllString(log, -1))
}

func isWindow(kind string) bool {
	for _, k := range windowKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// TestConfigChangeSwapNames: two operators of different kinds swap names;
// neither is restored from the other's state.
func TestConfigChangeSwapNames(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	fillWave(t, st, 4, 0, 40)
	drain(t, matrixRunner(t, st, opConfig(t, [3]string{"tumbling", "a", ""}, [3]string{"session", "b", ""},
		[3]string{"threshold", "c", ""}, [3]string{"zscore", "d", ""}), nil))
	var lb logBuf
	r := matrixRunner(t, st, opConfig(t, [3]string{"tumbling", "b", ""}, [3]string{"session", "a", ""},
		[3]string{"threshold", "d", ""}, [3]string{"zscore", "c", ""}), lb.logger())
	fillWave(t, st, 4, 40, 40)
	drain(t, r)
	for _, op := range []string{"a", "b", "detector/c", "detector/d"} {
		if n := opLines(lb.String(), op); n != 1 {
			t.Errorf("%d log lines about %s, want 1; log:\n%s", n, op, lb.String())
		}
	}
}

// TestUndecodableStateResetsOperator: a stored key that cannot be decoded
// resets its operator (logged and counted), the others keep their state,
// and the daemon goes on; so does an engine header that cannot be decoded.
func TestUndecodableStateResetsOperator(t *testing.T) {
	cfg := opConfig(t, [3]string{"sliding", "x", ""}, [3]string{"zscore", "z", ""})
	st, _ := storetest.MustOpen(t, nil)
	fillWave(t, st, 4, 0, 40)
	drain(t, matrixRunner(t, st, cfg, nil))
	meta, err := st.CheckpointMeta()
	if err != nil || meta == nil {
		t.Fatal(meta, err)
	}
	// Garbage under x and under detector/z, as a bug or bit rot would leave.
	for _, op := range []string{"x", "detector/z"} {
		if err := st.Commit(&store.Checkpoint{Meta: *meta, State: []store.StateOp{{Op: op, Key: []byte("s1\x00"), Value: []byte{0x93, 0x01}}}}); err != nil {
			t.Fatal(err)
		}
	}
	var lb logBuf
	r := matrixRunner(t, st, cfg, lb.logger())
	if r.StateResets != 2 {
		t.Errorf("StateResets = %d, want 2; log:\n%s", r.StateResets, lb.String())
	}
	for _, op := range []string{"x", "detector/z"} {
		if n := opLines(lb.String(), op); n != 1 {
			t.Errorf("%d log lines about %s, want 1; log:\n%s", n, op, lb.String())
		}
	}
	fillWave(t, st, 4, 40, 40)
	drain(t, r)
	var lb2 logBuf
	r2 := matrixRunner(t, st, cfg, lb2.logger())
	if r2.StateResets != 0 || len(r2.dropOps) != 0 {
		t.Errorf("the next restart still resets %d / drops %v; log:\n%s", r2.StateResets, r2.dropOps, lb2.String())
	}
	fillWave(t, st, 4, 4000, 1)
	drain(t, r2)
	if got := keepCounts(t, st); strings.Join(got, " ") != "80 80 80 80" {
		t.Errorf("the untouched window's first hour counted %v, want 80 per sensor", got)
	}

	// A header that does not decode: every operator starts empty, the run
	// goes on from the checkpoint's offset and seq.
	meta, _ = st.CheckpointMeta()
	meta.Engine = []byte{0xc1}
	if err := st.Commit(&store.Checkpoint{Meta: *meta}); err != nil {
		t.Fatal(err)
	}
	var lb3 logBuf
	r3 := matrixRunner(t, st, cfg, lb3.logger())
	if r3.StateResets != 1 || r3.Offset() != meta.Offset {
		t.Errorf("header garbage: StateResets %d at offset %d (want 1 at %d); log:\n%s", r3.StateResets, r3.Offset(), meta.Offset, lb3.String())
	}
	n := len(readOutbox(t, st))
	fillWave(t, st, 4, 8000, 20)
	fillWave(t, st, 4, 9000, 1)
	drain(t, r3)
	out := readOutbox(t, st)
	if len(out) <= n || !strings.Contains(out[n], fmt.Sprintf(`"seq":%d,`, n+1)) {
		t.Errorf("after a header reset: %d records (had %d), first new %q", len(out), n, out[min(n, len(out)-1)])
	}
}

// TestRemovedSourceReleasesWatermark: a source removed from the config
// does not come back from the checkpoint to hold the watermark where it
// left it.
func TestRemovedSourceReleasesWatermark(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	base := int64(1_700_000_000_000)
	add := func(src string, from, n int) {
		var es []store.Entry
		for i := from; i < from+n; i++ {
			es = append(es, store.Entry{Source: src, Sensor: "s", Value: 1, TS: base + int64(i)*1000, Ingest: base})
		}
		if _, err := st.Append(&store.Batch{Entries: es}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := func(srcs ...string) pipeline.Config {
		c := opConfig(t, [3]string{"tumbling", "x", ""})
		for _, s := range srcs {
			c.Sources = append(c.Sources, pipeline.SourceSpec{Name: s})
		}
		return c
	}
	add("a", 0, 5)
	add("b", 0, 5)
	drain(t, matrixRunner(t, st, cfg("a", "b"), nil))
	var lb logBuf
	r := matrixRunner(t, st, cfg("a"), lb.logger())
	add("a", 5, 60)
	drain(t, r)
	if !strings.Contains(lb.String(), "source=b") {
		t.Errorf("no log line about the removed source b:\n%s", lb.String())
	}
	if n := len(readOutbox(t, st)); n < 5 {
		t.Errorf("%d records: the removed source still holds the watermark back", n)
	}
}
