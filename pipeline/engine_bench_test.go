package pipeline

import (
	"fmt"
	"testing"
	"time"

	"github.com/edged/edged/record"
	"github.com/edged/edged/sensors"
)

type countSink struct{ n int }

func (c *countSink) Emit(*Record) { c.n++ }

// benchEngine feeds 10,000 keys, each at 10 Hz of event time (100 readings
// per millisecond overall, in key order), through the given windows. Each
// op is one reading; the engine's output goes to a counting sink.
func benchEngine(b *testing.B, ws ...WindowSpec) {
	const keys = 10000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("sensor-%05d", i)
	}
	sink := &countSink{}
	e, err := New(Config{DefaultOutOfOrderness: 2 * time.Second, Windows: ws}, sink, 0)
	if err != nil {
		b.Fatal(err)
	}
	const base = 1_700_000_000_000
	r := sensors.Reading{Source: "bench"}
	// Warm up: two minutes of event time, so every key has its panes and
	// the heap and pools are at their steady size.
	warm := 120 * 1000 * 100
	for i := 0; i < warm; i++ {
		r.Sensor, r.TS, r.Value = names[i%keys], base+int64(i/100), float64(i%97)
		e.Process(&r, 0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := warm; i < warm+b.N; i++ {
		r.Sensor, r.TS, r.Value = names[i%keys], base+int64(i/100), float64(i%97)
		e.Process(&r, 0)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
	if sink.n == 0 {
		b.Fatal("no window fired")
	}
}

var basicAggs = []AggSpec{{Name: "count", Kind: AggCount}, {Name: "sum", Kind: AggSum}, {Name: "mean", Kind: AggMean}, {Name: "min", Kind: AggMin}, {Name: "max", Kind: AggMax}}

func BenchmarkEngineTumbling10s(b *testing.B) {
	benchEngine(b, WindowSpec{Name: "t", Type: Tumbling, Size: 10 * time.Second, Aggs: basicAggs})
}

func BenchmarkEngineSliding60s1s(b *testing.B) {
	benchEngine(b, WindowSpec{Name: "s", Type: Sliding, Size: 60 * time.Second, Slide: time.Second, Aggs: basicAggs})
}

// BenchmarkEngineSession is the worst case of session windows: each key
// reads every 100 ms and the gap is 50 ms, so every reading opens a session
// that fires on its own.
func BenchmarkEngineSession(b *testing.B) {
	benchEngine(b, WindowSpec{Name: "s", Type: Session, Gap: 50 * time.Millisecond, Aggs: basicAggs})
}

func BenchmarkEngineTumblingP95(b *testing.B) {
	benchEngine(b, WindowSpec{Name: "t", Type: Tumbling, Size: 10 * time.Second,
		Aggs: append(basicAggs[:5:5], AggSpec{Name: "stddev", Kind: AggStddev}, AggSpec{Name: "p95", Kind: AggQuantile, Q: 0.95})})
}

func BenchmarkRecordJSON(b *testing.B) {
	r := Record{Kind: record.KindWindow, Name: "temp_10s", Key: "boiler-1/temp", Start: 1700000000000, End: 1700000010000,
		Final: true, Aggs: basicAggs, Values: []float64{100, 2140.5, 21.405, 20.9, 22}}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = r.AppendJSON(buf[:0])
	}
}
