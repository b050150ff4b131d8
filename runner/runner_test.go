package runner

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

func windows(t testing.TB) []pipeline.WindowSpec {
	var aggs []pipeline.AggSpec
	for _, n := range []string{"count", "sum", "mean", "min", "max"} {
		a, err := pipeline.ParseAgg(n)
		if err != nil {
			t.Fatal(err)
		}
		aggs = append(aggs, a)
	}
	return []pipeline.WindowSpec{{Name: "t10s", Type: pipeline.Tumbling, Size: 10 * time.Second, Aggs: aggs}}
}

// fill appends keys readings per second of event time, for seconds.
func fill(t testing.TB, st *store.Store, keys, seconds int) {
	t.Helper()
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("sensor-%06d", i)
	}
	base := int64(1_700_000_000_000)
	es := make([]store.Entry, 0, keys)
	for s := 0; s < seconds; s++ {
		es = es[:0]
		for k := 0; k < keys; k++ {
			es = append(es, store.Entry{Source: "src", Sensor: names[k], Value: float64(k % 100), TS: base + int64(s)*1000 + int64(k%1000), Ingest: base})
		}
		if _, err := st.Append(&store.Batch{Entries: es}); err != nil {
			t.Fatal(err)
		}
	}
}

func newRunner(t testing.TB, st *store.Store, interval time.Duration) *Runner {
	t.Helper()
	r, err := New(st, nil, Config{Device: "gw", CheckpointInterval: interval,
		Engine: pipeline.Config{DefaultOutOfOrderness: 2 * time.Second, Windows: windows(t)}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// drain processes the whole log with checkpoints as Run takes them.
func drain(t testing.TB, r *Runner) {
	t.Helper()
	r.startWriter()
	ctx := context.Background()
	for {
		n, err := r.step(4096)
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(r.lastCP) >= r.cfg.CheckpointInterval {
			if err := r.checkpoint(ctx, false); err != nil {
				t.Fatal(err)
			}
		}
		if n == 0 {
			break
		}
	}
	if err := r.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRunnerRestoresAndContinues(t *testing.T) {
	st, _ := storetest.MustOpen(t, nil)
	fill(t, st, 50, 30)
	r := newRunner(t, st, time.Hour)
	drain(t, r)
	all := readOutbox(t, st)
	if len(all) == 0 {
		t.Fatal("no records")
	}
	// A new runner over the same store resumes after the final checkpoint:
	// nothing more to do, and more input continues the seq.
	r2 := newRunner(t, st, time.Hour)
	if r2.Offset() != st.LogEnd() {
		t.Fatalf("resumed at %d, log end %d", r2.Offset(), st.LogEnd())
	}
	fill(t, st, 50, 1) // the same 30 s again: late for the fired windows
	drain(t, r2)
	more := readOutbox(t, st)
	if len(more) <= len(all) {
		t.Fatal("no records after the restart")
	}
	for i, b := range more {
		if !strings.Contains(b, fmt.Sprintf(`"seq":%d,`, i+1)) {
			t.Fatalf("record %d: %s", i, b)
		}
	}
}

func readOutbox(t testing.TB, st *store.Store) []string {
	var out []string
	if err := st.ReadOutbox(0, 0, func(r *store.Record) error { out = append(out, string(r.Body)); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkCheckpointPause100kKeys: the pipeline's pause to take an
// incremental checkpoint when all of 100,000 keys of window state changed
// (every key got a reading since the last checkpoint), and, separately, the
// writer's commit of it to bbolt (off the pipeline's path).
func BenchmarkCheckpointPause100kKeys(b *testing.B) {
	st, _ := storetest.MustOpen(b, nil)
	const keys = 100000
	r := newRunner(b, st, time.Hour)
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("sensor-%06d", i)
	}
	var commit time.Duration
	var bytes int64
	ts := int64(1_700_000_000_000)
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		for k := 0; k < keys; k++ {
			rd := pipelineReading(names[k], ts+int64(k%1000))
			r.eng.Process(&rd, 0)
		}
		ts += 1000
		b.StartTimer()
		var d pipeline.Delta
		if err := r.eng.AppendDelta(&d); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cp := &store.Checkpoint{Meta: store.CheckpointMeta{Offset: 0, NextSeq: 1, Engine: d.Header}}
		for _, k := range d.Keys {
			cp.State = append(cp.State, store.StateOp{Op: k.Op, Key: k.Key, Value: k.Value})
			bytes += int64(len(k.Key) + len(k.Value))
		}
		start := time.Now()
		if err := st.Commit(cp); err != nil {
			b.Fatal(err)
		}
		commit += time.Since(start)
	}
	b.ReportMetric(float64(commit.Milliseconds())/float64(b.N), "commit-ms/op")
	b.ReportMetric(float64(bytes)/float64(b.N)/keys, "state-bytes/key")
}

func pipelineReading(sensor string, ts int64) sensors.Reading {
	return sensors.Reading{Source: "src", Sensor: sensor, Value: 1, TS: ts}
}

// BenchmarkRunnerCheckpointCost processes a log of 2,000,000 readings from
// 100,000 keys (20 s of event time at 1 Hz each) with a 10 s tumbling
// window, with checkpoints off and every 1 s. Compare the readings/s.
//
//	go test ./runner -run '^$' -bench RunnerCheckpointCost -benchtime 1x
func BenchmarkRunnerCheckpointCost(b *testing.B) {
	tmpl := b.TempDir()
	st, err := store.Open(tmpl, nil)
	if err != nil {
		b.Fatal(err)
	}
	fill(b, st, 100000, 20)
	entries := st.LogEnd()
	st.Close()
	for _, c := range []struct {
		name     string
		interval time.Duration
	}{{"off", time.Hour}, {"1s", time.Second}} {
		b.Run("checkpoints="+c.name, func(b *testing.B) {
			var total time.Duration
			var pauses, maxPause time.Duration
			var cps int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := b.TempDir()
				copyFile(b, tmpl+"/"+store.FileName, dir+"/"+store.FileName)
				st, err := store.Open(dir, nil)
				if err != nil {
					b.Fatal(err)
				}
				r := newRunner(b, st, c.interval)
				b.StartTimer()
				start := time.Now()
				drain(b, r)
				total += time.Since(start)
				b.StopTimer()
				cps += r.Checkpoints
				pauses += r.LastPause
				b.Logf("checkpoints %d, last commit %v, max pause %v", r.Checkpoints, r.LastCommit(), r.MaxPause)
				maxPause = max(maxPause, r.MaxPause)
				st.Close()
			}
			b.ReportMetric(float64(entries)*float64(b.N)/total.Seconds(), "readings/s")
			b.ReportMetric(float64(cps)/float64(b.N), "checkpoints")
			b.ReportMetric(float64(maxPause.Microseconds())/1000, "max-pause-ms")
		})
	}
}

func copyFile(t testing.TB, from, to string) {
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
