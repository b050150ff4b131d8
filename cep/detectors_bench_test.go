package cep

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkDetectors measures each detector on one core over 10,000 keys:
// readings go round-robin over the keys, one a second of event time per
// key, as the pipeline delivers them (NextTimer checked, Advance when
// due, one Emitter reused). One op is one reading. The keys are warmed up
// first (windows full, buffers at their steady size), so allocs/op is the
// steady state; allocs/reading reports the exact average, which is not 0
// only because alerts (a reason string each) are raised now and then: the
// signal is a slow sine with uniform noise and a spike on one reading in
// 1,000. cpu-ns/reading is the process's CPU time per reading, steadier
// than ns/op on a machine shared with other work.
func BenchmarkDetectors(b *testing.B) {
	const keys = 10000
	cases := []struct {
		name string
		spec Spec
	}{
		{"threshold", Spec{Type: "threshold", Above: fp(80), Hysteresis: 1}},
		{"zscore", Spec{Type: "zscore", Sigma: 4, Window: time.Minute, Warmup: 30}},
		{"zscore-ewma", Spec{Type: "zscore", Sigma: 4, Alpha: 0.05, Warmup: 30}},
		{"mad", Spec{Type: "mad", Window: time.Minute, Warmup: 30}},
		{"rate", Spec{Type: "rate", MaxRate: 5}},
		{"flatline", Spec{Type: "flatline", Duration: 10 * time.Minute, Tolerance: Tolerance{Value: 0.001}}},
		{"deadman", Spec{Type: "deadman", Duration: 5 * time.Minute}},
		{"range", Spec{Type: "range", Min: fp(-60), Max: fp(150)}},
		{"anomaly", Spec{Type: "anomaly"}},
	}
	// values[i] is a key's reading in round i (offset by the key).
	values := make([]float64, 1<<14)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range values {
		values[i] = 20 + 5*math.Sin(float64(i)*2*math.Pi/3600) + rng.Float64() - 0.5
		if rng.IntN(1000) == 0 {
			values[i] += 10
		}
	}
	names := make([]string, keys)
	for k := range names {
		names[k] = "sensor-" + strconv.Itoa(k)
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			c.spec.Name = c.name
			d := mustNew(b, c.spec)
			states := make([]State, keys)
			for k := range states {
				states[k] = d.NewState()
			}
			var out Emitter
			var ev Event
			alerts := 0
			reading := func(i int) {
				k, round := i%keys, i/keys
				st := states[k]
				ts := t0 + int64(round)*1000
				if st.NextTimer() < ts {
					st.Advance(names[k], ts-1, &out)
				}
				ev = Event{Key: names[k], Value: values[(round+k)&(len(values)-1)], TS: ts}
				st.Observe(&ev, &out)
				alerts += len(out.Alerts)
				out.Alerts = out.Alerts[:0]
			}
			const warm = 120 * keys // two minutes of event time
			for i := range warm {
				reading(i)
			}
			alerts = 0
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			n := 0
			c0 := cpuTime()
			for b.Loop() {
				reading(warm + n)
				n++
			}
			if c := cpuTime() - c0; c > 0 {
				b.ReportMetric(float64(c)/float64(n), "cpu-ns/reading")
			}
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/float64(n), "allocs/reading")
			b.ReportMetric(float64(alerts)/float64(n), "alerts/reading")
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

// BenchmarkMADWindow shows how mad's cost grows with the readings in its
// window (100 keys, one reading a second, warmed up).
func BenchmarkMADWindow(b *testing.B) {
	const keys = 100
	for _, n := range []int{60, 600, 6000} {
		b.Run("readings="+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			d := mustNew(b, Spec{Name: "mad", Type: "mad", Window: time.Duration(n) * time.Second})
			states := make([]State, keys)
			for k := range states {
				states[k] = d.NewState()
			}
			rng := rand.New(rand.NewPCG(5, 6))
			var out Emitter
			var ev Event // reused: an Event passed to Observe escapes
			reading := func(i int) {
				k, round := i%keys, i/keys
				ev = Event{Key: "k", Value: 20 + rng.NormFloat64(), TS: t0 + int64(round)*1000}
				states[k].Observe(&ev, &out)
				out.Alerts = out.Alerts[:0]
			}
			warm := (n + 10) * keys
			for i := range warm {
				reading(i)
			}
			n := 0
			for b.Loop() {
				reading(warm + n)
				n++
			}
		})
	}
}
