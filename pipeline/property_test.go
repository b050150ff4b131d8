package pipeline

import (
	"bytes"

	"fmt"
	"github.com/edged/edged/cep"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
	"pgregory.net/rapid"
)

// genWindows draws one window of each type with random sizes.
func genWindows(t *rapid.T) []WindowSpec {
	all := []AggSpec{{Name: "count", Kind: AggCount}, {Name: "sum", Kind: AggSum}, {Name: "min", Kind: AggMin},
		{Name: "max", Kind: AggMax}, {Name: "first", Kind: AggFirst}, {Name: "last", Kind: AggLast},
		{Name: "p50", Kind: AggQuantile, Q: 0.5}}
	slide := rapid.Int64Range(1, 20).Draw(t, "slide") * 100
	size := slide * rapid.Int64Range(1, 16).Draw(t, "panes")
	// A second sliding window whose size is not a multiple of its slide
	// (panes of gcd(size, slide)), often with enough panes for the block
	// scheme of slider.go.
	slide2 := rapid.Int64Range(1, 10).Draw(t, "slide2") * 100
	size2 := slide2 + rapid.Int64Range(0, 30).Draw(t, "extra2")*100
	return []WindowSpec{
		{Name: "tu", Type: Tumbling, Size: time.Duration(rapid.Int64Range(1, 50).Draw(t, "tsize")*100) * time.Millisecond, Aggs: all},
		{Name: "sl", Type: Sliding, Size: time.Duration(size) * time.Millisecond, Slide: time.Duration(slide) * time.Millisecond,
			Offset: time.Duration(rapid.Int64Range(0, slide-1).Draw(t, "off")) * time.Millisecond, Aggs: all},
		{Name: "sl2", Type: Sliding, Size: time.Duration(size2) * time.Millisecond, Slide: time.Duration(slide2) * time.Millisecond, Aggs: all},
		{Name: "se", Type: Session, Gap: time.Duration(rapid.Int64Range(1, 30).Draw(t, "gap")*100) * time.Millisecond, Aggs: all},
	}
}

func runAll(t interface{ Fatal(...any) }, ooo time.Duration, ws []WindowSpec, rs []sensors.Reading, snapshotAt int) []string {
	c := &collector{}
	e, err := New(Config{DefaultOutOfOrderness: ooo, Windows: ws, Detectors: testDetectors(t)}, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		if i == snapshotAt {
			st := e.Snapshot()
			e2, _ := New(Config{DefaultOutOfOrderness: ooo, Windows: ws, Detectors: testDetectors(t)}, c, 0)
			if _, err := e2.Restore(st); err != nil {
				t.Fatal(err)
			}
			e = e2
		}
		if err := e.Process(&rs[i], 0); err != nil {
			t.Fatal(err)
		}
	}
	e.Flush()
	return c.lines
}

// TestPropertyArrivalOrder: readings whose delays stay within the bound give
// the same records, byte for byte and in the same order, as the same
// readings sorted by time; a snapshot and restore anywhere changes nothing.
func TestPropertyArrivalOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ws := genWindows(t)
		ooo := rapid.Int64Range(0, 3000).Draw(t, "ooo")
		n := rapid.IntRange(1, 300).Draw(t, "n")
		keys := rapid.IntRange(1, 4).Draw(t, "keys")
		maxDelay := max(0, ooo-1)
		if rapid.Bool().Draw(t, "fullBound") {
			// Delays up to the bound itself: aligned windows only.
			maxDelay = ooo
			ws = ws[:3]
		}
		type item struct {
			r       sensors.Reading
			arrival int64
		}
		items := make([]item, n)
		used := map[string]bool{}
		for i := range items {
			k := fmt.Sprintf("k%d", rapid.IntRange(0, keys-1).Draw(t, "key"))
			var ts int64
			for {
				// Unique timestamps per key: first and last are then
				// independent of arrival order.
				ts = rapid.Int64Range(0, 20000).Draw(t, "ts")
				if !used[fmt.Sprint(k, ts)] {
					used[fmt.Sprint(k, ts)] = true
					break
				}
			}
			// Delays stay below ooo, or reach it only without the session
			// window: a reading delayed by exactly ooo may touch a session
			// that already fired at watermark end-1 (Flink's semantics too;
			// see the package doc).
			delay := rapid.Int64Range(0, maxDelay).Draw(t, "delay")
			// Integer values keep sums exact in any order.
			v := float64(rapid.IntRange(-100, 100).Draw(t, "v"))
			items[i] = item{sensors.Reading{Sensor: k, Value: v, TS: ts, Source: "s"}, ts + delay}
		}
		slices.SortStableFunc(items, func(a, b item) int { return int(a.arrival - b.arrival) })
		arrived := make([]sensors.Reading, n)
		for i := range items {
			arrived[i] = items[i].r
		}
		sorted := slices.Clone(arrived)
		slices.SortStableFunc(sorted, func(a, b sensors.Reading) int { return int(a.TS - b.TS) })

		want := runAll(t, time.Duration(ooo)*time.Millisecond, ws, sorted, -1)
		got := runAll(t, time.Duration(ooo)*time.Millisecond, ws, arrived, -1)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("arrival order changed the results:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
		}
		for _, l := range got {
			if strings.Contains(l, `"late"`) {
				t.Fatalf("late record within the bound: %s", l)
			}
		}
		at := rapid.IntRange(0, n).Draw(t, "snapshotAt")
		restored := runAll(t, time.Duration(ooo)*time.Millisecond, ws, arrived, at)
		if strings.Join(restored, "\n") != strings.Join(got, "\n") {
			t.Fatalf("snapshot/restore at %d changed the results:\n got: %s\nwant: %s", at, strings.Join(restored, "\n      "), strings.Join(got, "\n      "))
		}
	})
}

// TestPropertyLateness: with any arrival order and allowed lateness, a run
// is deterministic, a restore anywhere is invisible, and every reading is
// either counted in a final window record or reported late.
func TestPropertyLateness(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ws := genWindows(t)
		lat := time.Duration(rapid.Int64Range(0, 3000).Draw(t, "lat")) * time.Millisecond
		for i := range ws {
			ws[i].AllowedLateness = lat
		}
		ooo := time.Duration(rapid.Int64Range(0, 1000).Draw(t, "ooo")) * time.Millisecond
		n := rapid.IntRange(1, 200).Draw(t, "n")
		rs := make([]sensors.Reading, n)
		for i := range rs {
			// Non-integer values: a restore must reproduce the same bits,
			// so the grouping of float sums must not depend on caches.
			rs[i] = sensors.Reading{Sensor: fmt.Sprintf("k%d", rapid.IntRange(0, 2).Draw(t, "key")),
				Value: rapid.Float64Range(-1e3, 1e3).Draw(t, "v"), TS: rapid.Int64Range(0, 20000).Draw(t, "ts"), Source: "s"}
		}
		a := runAll(t, ooo, ws, rs, -1)
		b := runAll(t, ooo, ws, rs, -1)
		if !slices.Equal(a, b) {
			t.Fatal("two runs differ")
		}
		at := rapid.IntRange(0, n).Draw(t, "snapshotAt")
		if r := runAll(t, ooo, ws, rs, at); !slices.Equal(a, r) {
			t.Fatalf("restore at %d changed results:\n got: %s\nwant: %s", at, strings.Join(r, "\n      "), strings.Join(a, "\n      "))
		}
		// Every reading is accounted for, per window: the tumbling window's
		// newest revisions count it, or a late record names it.
		counted := map[string]int{} // window start/key -> newest count
		late := 0
		for _, l := range a {
			var win, key string
			var start, count, rev int
			if _, err := fmt.Sscanf(l, `{"type":"window","window":"tu","key":%q,"start":%d,`, &key, &start); err == nil {
				rest := l[strings.Index(l, `"rev":`):]
				fmt.Sscanf(rest, `"rev":%d,"final":true,"count":%d`, &rev, &count)
				counted[fmt.Sprint(key, start)] = count
				_ = win
			} else if strings.HasPrefix(l, `{"type":"late","window":"tu"`) {
				late++
			}
		}
		total := late
		for _, c := range counted {
			total += c
		}
		if total != n {
			t.Fatalf("tumbling: %d readings counted or late, want %d", total, n)
		}
	})
}

// runIncremental is runAll with the daemon's checkpointing: Delta at every
// index in cps, applied to an in-memory copy of the store; at crashAt the
// engine is thrown away and a new one restored from that copy (as after a
// kill -9 right after the checkpoint at crashAt), and then the readings
// from crashAt on are processed again.
func runIncremental(t interface{ Fatal(...any) }, ooo time.Duration, ws []WindowSpec, rs []sensors.Reading, cps map[int]bool, crashAt int) []string {
	type stored struct {
		header []byte
		keys   map[string]map[string][]byte
		out    int // records emitted up to the checkpoint
		at     int // index of the next reading at the checkpoint
	}
	c := &collector{}
	cfg := Config{DefaultOutOfOrderness: ooo, Windows: ws, Detectors: testDetectors(t), Incremental: true, sweepMin: 1}
	e, err := New(cfg, c, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := stored{keys: map[string]map[string][]byte{}}
	checkpoint := func() {
		var d Delta
		if err := e.AppendDelta(&d); err != nil {
			t.Fatal(err)
		}
		st.header = d.Header
		for _, kd := range d.Keys {
			if st.keys[kd.Op] == nil {
				st.keys[kd.Op] = map[string][]byte{}
			}
			if kd.Value == nil {
				delete(st.keys[kd.Op], string(kd.Key))
			} else {
				st.keys[kd.Op][string(kd.Key)] = kd.Value
			}
		}
		st.out = len(c.lines)
	}
	checkpoint()
	for i := 0; i < len(rs); i++ {
		if cps[i] {
			checkpoint()
			st.at = i
		}
		if i == crashAt {
			// Crash: the records after the checkpoint are lost with the
			// engine; restore, and replay from the checkpoint's reading.
			c.lines = c.lines[:st.out]
			i = st.at
			e, _ = New(cfg, c, 0)
			if _, err := e.BeginRestore(st.header); err != nil {
				t.Fatal(err)
			}
			for op, keys := range st.keys {
				for _, v := range keys {
					if err := e.RestoreKey(op, v); err != nil {
						t.Fatal(err)
					}
				}
			}
			crashAt = -1
		}
		if err := e.Process(&rs[i], 0); err != nil {
			t.Fatal(err)
		}
	}
	e.Flush()
	return c.lines
}

// TestPropertyIncrementalCheckpoints: incremental checkpoints (Delta) and a
// crash that restores from them give the same records as a run without.
func TestPropertyIncrementalCheckpoints(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ws := genWindows(t)
		lat := time.Duration(rapid.Int64Range(0, 2000).Draw(t, "lat")) * time.Millisecond
		for i := range ws {
			ws[i].AllowedLateness = lat
		}
		ooo := time.Duration(rapid.Int64Range(0, 1000).Draw(t, "ooo")) * time.Millisecond
		n := rapid.IntRange(1, 300).Draw(t, "n")
		rs := make([]sensors.Reading, n)
		for i := range rs {
			rs[i] = sensors.Reading{Sensor: fmt.Sprintf("k%d", rapid.IntRange(0, 5).Draw(t, "key")),
				Value: rapid.Float64Range(-1e3, 1e3).Draw(t, "v"), TS: rapid.Int64Range(0, 30000).Draw(t, "ts"), Source: "s"}
		}
		cps := map[int]bool{}
		for _, i := range rapid.SliceOfN(rapid.IntRange(0, n), 0, 20).Draw(t, "checkpoints") {
			cps[i] = true
		}
		want := runAll(t, ooo, ws, rs, -1)
		crashAt := rapid.IntRange(-1, n-1).Draw(t, "crashAt")
		got := runIncremental(t, ooo, ws, rs, cps, crashAt)
		if !slices.Equal(got, want) {
			t.Fatalf("incremental checkpoints/crash at %d changed results:\n got: %s\nwant: %s", crashAt, strings.Join(got, "\n      "), strings.Join(want, "\n      "))
		}
	})
}

// TestPropertyDirectEncoding: the checkpoint's direct encoder writes the
// same bytes as the generated msgp encoder of the plain-data state.
func TestPropertyDirectEncoding(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ws := genWindows(t)
		ws[0].Aggs = append(ws[0].Aggs, AggSpec{Name: "stddev", Kind: AggStddev})
		for i := range ws {
			ws[i].AllowedLateness = time.Second
		}
		e, err := New(Config{DefaultOutOfOrderness: time.Second, Windows: ws, Detectors: testDetectors(t)}, &collector{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := rapid.IntRange(1, 200).Draw(t, "n")
		for i := 0; i < n; i++ {
			r := sensors.Reading{Sensor: fmt.Sprintf("k%d", rapid.IntRange(0, 3).Draw(t, "key")), Metric: rapid.SampledFrom([]string{"", "m"}).Draw(t, "metric"),
				Value: rapid.Float64Range(-1e6, 1e6).Draw(t, "v"), TS: rapid.Int64Range(0, 30000).Draw(t, "ts"), Source: "s"}
			e.Process(&r, 0)
		}
		var sk []byte
		for _, op := range e.ops {
			for _, ks := range op.keys {
				st := ks.state()
				want, err := st.MarshalMsg(nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := ks.appendMsg(nil, &sk); !bytes.Equal(got, want) {
					t.Fatalf("window %s key %s: direct encoding differs\n got %x\nwant %x", op.spec.Name, ks.key, got, want)
				}
			}
		}
		for _, dop := range e.dets {
			for _, dk := range dop.keys {
				st := dk.state()
				want, err := st.MarshalMsg(nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := dk.appendMsg(nil, &sk); !bytes.Equal(got, want) {
					t.Fatalf("detector %s key %s: direct encoding differs\n got %x\nwant %x", dop.name, dk.key, got, want)
				}
			}
		}
	})
}

// testDetectors are the detectors the property tests run beside the
// windows: a threshold that needs two readings in a row and has
// hysteresis (state across readings), and one on the tumbling window's
// results.
func testDetectors(t interface{ Fatal(...any) }) []DetectorSpec {
	above := 50.0
	th, err := cep.New(cep.Spec{Name: "hot", Type: "threshold", Above: &above, ForCount: 2, Hysteresis: 10})
	if err != nil {
		t.Fatal(err)
	}
	low := 0.0
	onw, err := cep.New(cep.Spec{Name: "lowsum", Type: "threshold", Below: &low})
	if err != nil {
		t.Fatal(err)
	}
	return []DetectorSpec{{Detector: th}, {Detector: onw, OnWindow: "tu", Field: "sum"}}
}
