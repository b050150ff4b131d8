package pipeline

import (
	"encoding/json"
	"fmt"

	"github.com/edged/edged/cep"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
)

// collector keeps every record as a JSON line.
type collector struct{ lines []string }

func (c *collector) Emit(r *Record) { c.lines = append(c.lines, string(r.AppendJSON(nil))) }

func (c *collector) take() []string {
	l := c.lines
	c.lines = nil
	return l
}

func aggs(t testing.TB, names ...string) []AggSpec {
	t.Helper()
	var out []AggSpec
	for _, n := range names {
		a, err := ParseAgg(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func newEngine(t testing.TB, ooo time.Duration, ws ...WindowSpec) (*Engine, *collector) {
	t.Helper()
	c := &collector{}
	e, err := New(Config{DefaultOutOfOrderness: ooo, Windows: ws}, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	return e, c
}

func tumbling(t testing.TB, size time.Duration, agg ...string) WindowSpec {
	return WindowSpec{Name: "w", Type: Tumbling, Size: size, Aggs: aggs(t, agg...)}
}

// feed processes readings given as "sensor@ts=value" from source "src".
func feed(t testing.TB, e *Engine, items ...string) {
	t.Helper()
	for _, it := range items {
		r := parseItem(t, it)
		if err := e.Process(&r, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func parseItem(t testing.TB, it string) sensors.Reading {
	t.Helper()
	r := sensors.Reading{Source: "src"}
	at := strings.IndexByte(it, '@')
	eq := strings.IndexByte(it, '=')
	r.Sensor = it[:at]
	if i := strings.IndexByte(r.Sensor, ':'); i >= 0 {
		r.Source, r.Sensor = r.Sensor[:i], r.Sensor[i+1:]
	}
	if i := strings.IndexByte(r.Sensor, '/'); i >= 0 {
		r.Sensor, r.Metric = r.Sensor[:i], r.Sensor[i+1:]
	}
	var err error
	if r.TS, err = parseInt(it[at+1 : eq]); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(it[eq+1:]), &r.Value); err != nil {
		t.Fatal(err)
	}
	return r
}

func parseInt(s string) (int64, error) {
	var v int64
	err := json.Unmarshal([]byte(s), &v)
	return v, err
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d:\n got: %s\nwant: %s", len(got), len(want), strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d:\n got: %s\nwant: %s", i, got[i], want[i])
		}
	}
}

func TestTumblingOnTime(t *testing.T) {
	e, c := newEngine(t, 2*time.Second, tumbling(t, 10*time.Second, "count", "sum", "mean", "min", "max"))
	feed(t, e, "s1@1000=1", "s1@5000=2", "s1@9999=3", "s2@3000=10")
	expect(t, c.take())      // watermark 7998: nothing due
	feed(t, e, "s1@12000=4") // watermark 9999 = end-1: fires
	expect(t, c.take(),
		`{"type":"window","window":"w","key":"s1","start":0,"end":10000,"rev":0,"final":true,"count":3,"sum":6,"mean":2,"min":1,"max":3}`,
		`{"type":"window","window":"w","key":"s2","start":0,"end":10000,"rev":0,"final":true,"count":1,"sum":10,"mean":10,"min":10,"max":10}`)
	e.Flush()
	expect(t, c.take(),
		`{"type":"window","window":"w","key":"s1","start":10000,"end":20000,"rev":0,"final":true,"count":1,"sum":4,"mean":4,"min":4,"max":4}`)
}

func TestTumblingOutOfOrderWithinBound(t *testing.T) {
	e, c := newEngine(t, 2*time.Second, tumbling(t, 10*time.Second, "count", "first", "last"))
	// After 11000 the watermark is 8999 < 9999: 3000 still counts.
	feed(t, e, "s1@5000=1", "s1@11000=2", "s1@3000=3", "s1@12500=4")
	e.Flush()
	expect(t, c.take(),
		`{"type":"window","window":"w","key":"s1","start":0,"end":10000,"rev":0,"final":true,"count":2,"first":3,"last":1}`,
		`{"type":"window","window":"w","key":"s1","start":10000,"end":20000,"rev":0,"final":true,"count":2,"first":2,"last":4}`)
}

func TestTumblingLate(t *testing.T) {
	e, c := newEngine(t, 2*time.Second, tumbling(t, 10*time.Second, "count"))
	feed(t, e, "s1@5000=1", "s1@13000=2")
	expect(t, c.take(), `{"type":"window","window":"w","key":"s1","start":0,"end":10000,"rev":0,"final":true,"count":1}`)
	feed(t, e, "s1@4000=7.5")
	expect(t, c.take(), `{"type":"late","window":"w","source":"src","sensor":"s1","metric":"","value":7.5,"ts":4000,"watermark":10999}`)
	if st := e.Stats(); st.Late != 1 || st.Readings != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAllowedLatenessRefires(t *testing.T) {
	w := tumbling(t, 10*time.Second, "count", "sum")
	w.AllowedLateness = 5 * time.Second
	e, c := newEngine(t, 2*time.Second, w)
	feed(t, e, "s1@5000=1", "s1@13000=2")
	expect(t, c.take(), `{"type":"window","window":"w","key":"s1","start":0,"end":10000,"rev":0,"final":true,"count":1,"sum":1}`)
	feed(t, e, "s1@4000=10") // watermark 10999 < 9999+5000: fires again
	expect(t, c.take(), `{"type":"window","window":"w","key":"s1","start":0,"end":10000,"rev":1,"final":true,"count":2,"sum":11}`)
	feed(t, e, "s1@6000=100")
	expect(t, c.take(), `{"type":"window","window":"w","key":"s1","start":0,"end":10000,"rev":2,"final":true,"count":3,"sum":111}`)
	// A window that had no reading when it fired takes a reading within
	// allowed lateness: its first firing, rev 0, comes at once.
	feed(t, e, "s3@8000=5")
	expect(t, c.take(), `{"type":"window","window":"w","key":"s3","start":0,"end":10000,"rev":0,"final":true,"count":1,"sum":5}`)
	feed(t, e, "s1@17001=0") // watermark 15000 >= 14999: state freed
	expect(t, c.take())
	feed(t, e, "s1@4500=1")
	expect(t, c.take(), `{"type":"late","window":"w","source":"src","sensor":"s1","metric":"","value":1,"ts":4500,"watermark":15000}`)
}

func TestSliding(t *testing.T) {
	w := WindowSpec{Name: "sl", Type: Sliding, Size: 10 * time.Second, Slide: 5 * time.Second, Aggs: aggs(t, "count", "sum")}
	e, c := newEngine(t, 0, w)
	feed(t, e, "s1@7000=1", "s1@12000=2")
	// watermark 11999: [0,10000) and [5000,15000)? only the first is due.
	expect(t, c.take(),
		`{"type":"window","window":"sl","key":"s1","start":0,"end":10000,"rev":0,"final":true,"count":1,"sum":1}`)
	e.Flush()
	expect(t, c.take(),
		`{"type":"window","window":"sl","key":"s1","start":5000,"end":15000,"rev":0,"final":true,"count":2,"sum":3}`,
		`{"type":"window","window":"sl","key":"s1","start":10000,"end":20000,"rev":0,"final":true,"count":1,"sum":2}`)
}

func TestSlidingUneven(t *testing.T) {
	// size 10s, slide 4s: panes of gcd = 2s; windows start at multiples of 4s.
	w := WindowSpec{Name: "sl", Type: Sliding, Size: 10 * time.Second, Slide: 4 * time.Second, Aggs: aggs(t, "count")}
	e, c := newEngine(t, 0, w)
	feed(t, e, "s1@9000=1")
	e.Flush()
	// 9000 is in [0,10000), [4000,14000), [8000,18000).
	expect(t, c.take(),
		`{"type":"window","window":"sl","key":"s1","start":0,"end":10000,"rev":0,"final":true,"count":1}`,
		`{"type":"window","window":"sl","key":"s1","start":4000,"end":14000,"rev":0,"final":true,"count":1}`,
		`{"type":"window","window":"sl","key":"s1","start":8000,"end":18000,"rev":0,"final":true,"count":1}`)
}

func TestSlidingLateness(t *testing.T) {
	w := WindowSpec{Name: "sl", Type: Sliding, Size: 10 * time.Second, Slide: 5 * time.Second, Aggs: aggs(t, "count"), AllowedLateness: 3 * time.Second}
	e, c := newEngine(t, 0, w)
	feed(t, e, "s1@1000=1", "s1@11000=1") // watermark 10999: [-5000,5000) and [0,10000) fired
	expect(t, c.take(),
		`{"type":"window","window":"sl","key":"s1","start":-5000,"end":5000,"rev":0,"final":true,"count":1}`,
		`{"type":"window","window":"sl","key":"s1","start":0,"end":10000,"rev":0,"final":true,"count":1}`)
	feed(t, e, "s1@6000=1") // in [0,10000) (fired, in lateness) and [5000,15000) (open)
	expect(t, c.take(), `{"type":"window","window":"sl","key":"s1","start":0,"end":10000,"rev":1,"final":true,"count":2}`)
	feed(t, e, "s1@13000=1") // watermark 12999 >= 9999+3000: [0,10000) freed
	feed(t, e, "s1@7000=1")  // only [5000,15000) takes it now, no refire of [0,10000)
	expect(t, c.take())
	e.Flush()
	expect(t, c.take(),
		`{"type":"window","window":"sl","key":"s1","start":5000,"end":15000,"rev":0,"final":true,"count":4}`,
		`{"type":"window","window":"sl","key":"s1","start":10000,"end":20000,"rev":0,"final":true,"count":2}`)
}

func sessionSpec(t testing.TB, gap time.Duration, agg ...string) WindowSpec {
	return WindowSpec{Name: "ss", Type: Session, Gap: gap, Aggs: aggs(t, agg...)}
}

func TestSessionBridge(t *testing.T) {
	e, c := newEngine(t, 10*time.Second, sessionSpec(t, 5*time.Second, "count", "sum"))
	feed(t, e, "s1@1000=1", "s1@10000=2") // [1000,6000) and [10000,15000)
	feed(t, e, "s1@5000=4")               // [5000,10000) touches both
	e.Flush()
	expect(t, c.take(), `{"type":"window","window":"ss","key":"s1","start":1000,"end":15000,"rev":0,"final":true,"count":3,"sum":7}`)
}

func TestSessionTouching(t *testing.T) {
	e, c := newEngine(t, 10*time.Second, sessionSpec(t, 5*time.Second, "count"))
	feed(t, e, "s1@1000=1", "s1@6000=1", "s1@11001=1")
	e.Flush()
	expect(t, c.take(),
		`{"type":"window","window":"ss","key":"s1","start":1000,"end":11000,"rev":0,"final":true,"count":2}`,
		`{"type":"window","window":"ss","key":"s1","start":11001,"end":16001,"rev":0,"final":true,"count":1}`)
}

func TestSessionFiresOnWatermark(t *testing.T) {
	e, c := newEngine(t, 0, sessionSpec(t, 5*time.Second, "count"))
	feed(t, e, "s1@1000=1", "s1@3000=1", "s2@9000=1")
	expect(t, c.take(), `{"type":"window","window":"ss","key":"s1","start":1000,"end":8000,"rev":0,"final":true,"count":2}`)
	feed(t, e, "s1@2000=1")
	expect(t, c.take(), `{"type":"late","window":"ss","source":"src","sensor":"s1","metric":"","value":1,"ts":2000,"watermark":8999}`)
}

func TestSessionLatenessRefire(t *testing.T) {
	w := sessionSpec(t, 5*time.Second, "count")
	w.AllowedLateness = 10 * time.Second
	e, c := newEngine(t, 0, w)
	feed(t, e, "s1@1000=1", "s2@9000=1")
	expect(t, c.take(), `{"type":"window","window":"ss","key":"s1","start":1000,"end":6000,"rev":0,"final":true,"count":1}`)
	feed(t, e, "s1@2000=1") // inside the fired session, within lateness: fires again
	expect(t, c.take(), `{"type":"window","window":"ss","key":"s1","start":1000,"end":7000,"rev":1,"final":true,"count":2}`)
	feed(t, e, "s1@6500=1") // extends the session past the watermark: fires when due
	expect(t, c.take())
	feed(t, e, "s2@13000=1")
	expect(t, c.take(), `{"type":"window","window":"ss","key":"s1","start":1000,"end":11500,"rev":2,"final":true,"count":3}`)
}

func TestIdleSourceDoesNotHoldWatermark(t *testing.T) {
	c := &collector{}
	e, err := New(Config{
		Sources: []SourceSpec{{Name: "a"}, {Name: "b"}},
		Windows: []WindowSpec{tumbling(t, 10*time.Second, "count")},
	}, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := sensors.Reading{Source: "a", Sensor: "s1", TS: 5000, Value: 1}
	e.Process(&r, 1000)
	r.TS = 20000
	e.Process(&r, 2000)
	if e.Watermark() != MinWatermark {
		t.Fatalf("watermark %d: b never delivered and is not idle", e.Watermark())
	}
	expect(t, c.take())
	e.MarkIdle("b", 5000) // b idle: the watermark is a's alone
	if e.Watermark() != 19999 {
		t.Fatalf("watermark %d, want 19999", e.Watermark())
	}
	expect(t, c.take(), `{"type":"window","window":"w","key":"s1","start":0,"end":10000,"rev":0,"final":true,"count":1}`)
	// b comes back far behind: the watermark does not regress, b's old
	// reading is late.
	r = sensors.Reading{Source: "b", Sensor: "s2", TS: 3000, Value: 1}
	e.Process(&r, 6000)
	if e.Watermark() != 19999 {
		t.Fatalf("watermark regressed to %d", e.Watermark())
	}
	expect(t, c.take(), `{"type":"late","window":"w","source":"b","sensor":"s2","metric":"","value":1,"ts":3000,"watermark":19999}`)
	// With every source idle the watermark holds.
	e.MarkIdle("a", 30000)
	e.MarkIdle("b", 30000)
	if e.Watermark() != 19999 {
		t.Fatalf("watermark %d", e.Watermark())
	}
	// An idle source's reading makes it active again and it rejoins the
	// minimum (without pulling the watermark back).
	r = sensors.Reading{Source: "a", Sensor: "s1", TS: 40000, Value: 1}
	e.Process(&r, 31000)
	if e.Watermark() != 39999 {
		t.Fatalf("watermark %d, want 39999 (a alone active)", e.Watermark())
	}
}

func TestWatermarkPerSourceMinimum(t *testing.T) {
	c := &collector{}
	e, _ := New(Config{DefaultOutOfOrderness: time.Second, Windows: []WindowSpec{tumbling(t, 10*time.Second, "count")}}, c, 0)
	feed(t, e, "a:s1@1000=1", "b:s1@2000=1", "a:s1@30000=1")
	if got := e.Watermark(); got != 999 {
		t.Fatalf("watermark %d, want 999 (a at 30000 is ahead, b holds at 2000-1000-1)", got)
	}
	feed(t, e, "b:s1@12000=1")
	if got := e.Watermark(); got != 10999 {
		t.Fatalf("watermark %d, want 10999", got)
	}
	expect(t, c.take(), `{"type":"window","window":"w","key":"s1","start":0,"end":10000,"rev":0,"final":true,"count":2}`)
}

func TestAggregates(t *testing.T) {
	e, c := newEngine(t, 0, tumbling(t, 10*time.Second, "count", "sum", "mean", "min", "max", "first", "last", "stddev", "range", "p50"))
	// Two readings share ts 2000: first keeps the earlier arrival.
	feed(t, e, "s@3000=4", "s@2000=4", "s@1000=2", "s@1000=3", "s@5000=5", "s@6000=5", "s@7000=7", "s@7000=9", "s@4000=1")
	e.Flush()
	got := c.take()
	if len(got) != 1 {
		t.Fatalf("got %v", got)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(got[0]), &m); err != nil {
		t.Fatal(err)
	}
	// values: 4 4 2 3 5 5 7 9 1 -> sorted 1 2 3 4 4 5 5 7 9
	want := map[string]float64{"count": 9, "sum": 40, "min": 1, "max": 9, "first": 2, "last": 9, "range": 8}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	mean := 40.0 / 9
	if math.Abs(m["mean"].(float64)-mean) > 1e-12 {
		t.Errorf("mean %v", m["mean"])
	}
	var ss float64
	for _, v := range []float64{4, 4, 2, 3, 5, 5, 7, 9, 1} {
		ss += (v - mean) * (v - mean)
	}
	if sd := math.Sqrt(ss / 9); math.Abs(m["stddev"].(float64)-sd) > 1e-12 {
		t.Errorf("stddev %v, want %v", m["stddev"], sd)
	}
	if p := m["p50"].(float64); math.Abs(p-4) > 0.04 {
		t.Errorf("p50 %v not within 1%% of 4", p)
	}
}

func TestFilterAndKeyBy(t *testing.T) {
	w := tumbling(t, 10*time.Second, "count")
	w.Sensors = []string{"boiler*"}
	w.KeyBy = KeySensor
	g := WindowSpec{Name: "all", Type: Tumbling, Size: 10 * time.Second, Aggs: aggs(t, "count"), KeyBy: KeyGlobal, Metrics: []string{"temp"}}
	e, c := newEngine(t, 0, w, g)
	feed(t, e, "boiler1/temp@1000=1", "boiler1/hum@1000=1", "pump/temp@1000=1", "boiler2/temp@1000=1")
	e.Flush()
	expect(t, c.take(),
		`{"type":"window","window":"w","key":"boiler1","start":0,"end":10000,"rev":0,"final":true,"count":2}`,
		`{"type":"window","window":"w","key":"boiler2","start":0,"end":10000,"rev":0,"final":true,"count":1}`,
		`{"type":"window","window":"all","key":"*","start":0,"end":10000,"rev":0,"final":true,"count":3}`)
}

func TestOffsetAndNegativeTime(t *testing.T) {
	w := tumbling(t, 10*time.Second, "count")
	w.Offset = 3 * time.Second
	e, c := newEngine(t, 0, w)
	feed(t, e, "s@-1=1", "s@2999=1", "s@3000=1")
	e.Flush()
	expect(t, c.take(),
		`{"type":"window","window":"w","key":"s","start":-7000,"end":3000,"rev":0,"final":true,"count":2}`,
		`{"type":"window","window":"w","key":"s","start":3000,"end":13000,"rev":0,"final":true,"count":1}`)
}

func TestProcessRejectsBadTimestamp(t *testing.T) {
	e, _ := newEngine(t, 0, tumbling(t, time.Second, "count"))
	r := sensors.Reading{Sensor: "s", TS: sensors.NoTS}
	if err := e.Process(&r, 0); err == nil {
		t.Fatal("NoTS accepted")
	}
}

func TestEarlyResults(t *testing.T) {
	w := tumbling(t, 10*time.Second, "count")
	w.EarlyEvery = time.Second
	s := sessionSpec(t, 5*time.Second, "count")
	s.EarlyEvery = 2 * time.Second
	c := &collector{}
	e, err := New(Config{DefaultOutOfOrderness: time.Second, Windows: []WindowSpec{w, s}}, c, 100)
	if err != nil {
		t.Fatal(err)
	}
	feed(t, e, "b@1000=1", "a@2000=1", "a@12000=1")
	expect(t, c.take(),
		`{"type":"window","window":"ss","key":"b","start":1000,"end":6000,"rev":0,"final":true,"count":1}`,
		`{"type":"window","window":"ss","key":"a","start":2000,"end":7000,"rev":0,"final":true,"count":1}`,
		`{"type":"window","window":"w","key":"a","start":0,"end":10000,"rev":0,"final":true,"count":1}`,
		`{"type":"window","window":"w","key":"b","start":0,"end":10000,"rev":0,"final":true,"count":1}`)
	e.Tick(900) // not yet a second since the start
	expect(t, c.take())
	e.Tick(1100)
	expect(t, c.take(), `{"type":"window","window":"w","key":"a","start":10000,"end":20000,"rev":0,"final":false,"count":1}`)
	feed(t, e, "a@13000=1")
	e.Tick(2100)
	expect(t, c.take(),
		`{"type":"window","window":"w","key":"a","start":10000,"end":20000,"rev":0,"final":false,"count":2}`,
		`{"type":"window","window":"ss","key":"a","start":12000,"end":18000,"rev":0,"final":false,"count":2}`)
	e.Flush()
	expect(t, c.take(),
		`{"type":"window","window":"ss","key":"a","start":12000,"end":18000,"rev":0,"final":true,"count":2}`,
		`{"type":"window","window":"w","key":"a","start":10000,"end":20000,"rev":0,"final":true,"count":2}`)
}

// TestDeadmanEndOfInput: a deadman fires when the watermark passes a key's
// silence in the input, but the end of bounded input is not silence, and
// a renotifying alert does not repeat forever at Flush.
func TestDeadmanEndOfInput(t *testing.T) {
	det, err := cep.New(cep.Spec{Name: "dead", Type: "deadman", Duration: 5 * time.Second, Renotify: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	e, _ := New(Config{Detectors: []DetectorSpec{{Detector: det}}}, c, 0)
	// a reports at 0 and at 20 s: silent 15 s in between; b reports at 21 s.
	feed(t, e, "a@0=1", "a@20000=2", "b@21000=1")
	e.Flush()
	got := c.take()
	var firing []string
	for _, l := range got {
		if strings.Contains(l, `"state":"firing"`) {
			firing = append(firing, l)
		}
	}
	// a: firing at 5 s, renotified at 6..19 s? The watermark passed 20 s
	// only with a's reading; renotify runs while it holds: 5,6,...,19 s.
	if len(firing) == 0 || !strings.Contains(firing[0], `"key":"a","state":"firing","ts":5000`) {
		t.Fatalf("no deadman alert for a at 5 s:\n%s", strings.Join(got, "\n"))
	}
	for _, l := range got {
		if strings.Contains(l, `"key":"b"`) {
			t.Fatalf("b alerted at the end of input:\n%s", l)
		}
	}
	if len(got) > 40 {
		t.Fatalf("%d alerts: renotify ran on at the end of input", len(got))
	}
}

// TestDeadmanProcessingTime: with processing time, a deadman fires on
// ticks while every source is idle, counting silence from a key's newest
// reading, released by the watermark or still waiting for it; alerts have
// the event-time identity (TS = last + duration), so the watermark passing
// later adds none; a snapshot before the ticks gives the same alerts.
func TestDeadmanProcessingTime(t *testing.T) {
	det, err := cep.New(cep.Spec{Name: "dead", Type: "deadman", Duration: 5 * time.Second, ProcessingTime: true})
	if err != nil {
		t.Fatal(err)
	}
	newE := func() (*Engine, *collector) {
		c := &collector{}
		e, err := New(Config{Sources: []SourceSpec{{Name: "src", MaxOutOfOrderness: time.Second}},
			Detectors: []DetectorSpec{{Detector: det}}}, c, 0)
		if err != nil {
			t.Fatal(err)
		}
		return e, c
	}
	e, c := newE()
	// The watermark ends at 2999: a@3000 and b@4000 wait for it.
	feed(t, e, "a@1000=1", "b@2000=2", "a@3000=3", "b@4000=4")
	e.ProcessingTick(100000) // a source is active: the watermark rules
	if due := e.ProcessingDue(); due != math.MaxInt64 {
		t.Fatalf("ProcessingDue %d while the source is active", due)
	}
	expect(t, c.take())
	e.MarkIdle("src", 0)
	if !e.AllIdle() || e.ProcessingDue() != 3000 {
		t.Fatalf("AllIdle %v, ProcessingDue %d, want 3000 (a's waiting reading)", e.AllIdle(), e.ProcessingDue())
	}
	snap := e.Snapshot()

	ticks := func(e *Engine, c *collector) []string {
		// At 6 s a's released reading (1 s) is 5 s old, but its waiting
		// one (3 s) is not: a is not silent.
		e.ProcessingTick(6000)
		if due := e.ProcessingDue(); due != 8000 {
			t.Fatalf("ProcessingDue %d after the first tick, want 8000", due)
		}
		e.ProcessingTick(8500)
		e.ProcessingTick(9000)
		e.ProcessingTick(60000)
		return c.take()
	}
	want := []string{
		`{"type":"alert","detector":"dead","key":"a","state":"firing","ts":8000,"value":3,"score":0.5,"reason":"no reading for 5s (last at 1970-01-01T00:00:03Z)"}`,
		`{"type":"alert","detector":"dead","key":"b","state":"firing","ts":9000,"value":4,"score":0.5,"reason":"no reading for 5s (last at 1970-01-01T00:00:04Z)"}`,
	}
	expect(t, ticks(e, c), want...)
	if due := e.ProcessingDue(); due != math.MaxInt64 {
		t.Fatalf("ProcessingDue %d with every key firing", due)
	}

	// From the snapshot taken before the ticks: the same alerts.
	e2, c2 := newE()
	if _, err := e2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	expect(t, ticks(e2, c2), want...)

	// The input comes back: a's reading resolves it once the watermark
	// passes it; b's silence in event time (4 s to 9 s) raises nothing more.
	feed(t, e, "a@10000=5", "c@12000=6")
	expect(t, c.take(),
		`{"type":"alert","detector":"dead","key":"a","state":"resolved","ts":10000,"value":5,"score":0,"reason":"reading again after 7s of silence (last at 1970-01-01T00:00:03Z)"}`)
}

// Without processing_time a stopped input raises nothing: the watermark
// stands still and ticks are ignored.
func TestDeadmanNoProcessingTime(t *testing.T) {
	det, err := cep.New(cep.Spec{Name: "dead", Type: "deadman", Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	e, _ := New(Config{Detectors: []DetectorSpec{{Detector: det}}}, c, 0)
	feed(t, e, "a@1000=1", "b@2000=2")
	e.MarkIdle("src", 0)
	if due := e.ProcessingDue(); due != math.MaxInt64 {
		t.Fatalf("ProcessingDue %d without processing_time", due)
	}
	e.ProcessingTick(1_000_000)
	expect(t, c.take())
}

// TestDirtyKeysBoundedBetweenDeltas: with incremental snapshots and no
// Delta for many windows (the daemon writes the state every
// state_interval), a key whose windows fired and that gets readings again
// keeps one keyState: the changed-key list holds each key once, not once
// per window that fired in between.
func TestDirtyKeysBoundedBetweenDeltas(t *testing.T) {
	const keys = 3000
	ws := []WindowSpec{{Name: "t1s", Type: Tumbling, Size: time.Second, Aggs: aggs(t, "count")}}
	e, err := New(Config{DefaultOutOfOrderness: 0, Windows: ws, Incremental: true}, &collector{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("s%05d", i)
	}
	for sec := int64(0); sec < 20; sec++ {
		for k := range names {
			r := sensors.Reading{Source: "src", Sensor: names[k], Value: 1, TS: sec*1000 + int64(k%1000)}
			if err := e.Process(&r, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	op := e.ops[0]
	if len(op.dirty) > keys || len(op.keys) > keys {
		t.Fatalf("%d changed keyStates and %d in the map for %d keys", len(op.dirty), len(op.keys), keys)
	}
	var d Delta
	if err := e.AppendDelta(&d); err != nil {
		t.Fatal(err)
	}
	if len(d.Keys) != keys {
		t.Fatalf("delta of %d keys, want %d", len(d.Keys), keys)
	}
}
