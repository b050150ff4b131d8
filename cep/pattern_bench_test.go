package cep

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkPattern measures Observe (plus the NextTimer the pipeline asks
// after it) with 10,000 open partial matches: one op is one event.
//
//	go test ./cep -run '^$' -bench BenchmarkPattern -benchmem
func BenchmarkPattern(b *testing.B) {
	const open = 10_000
	steps := []string{"metric == 'open'", "metric == 'close' && value == s1.value"}

	oneKey := func(b *testing.B) (State, *Emitter) {
		d := mustPattern(b, patSpec(time.Hour, open, "", 0, steps...))
		st := d.NewState()
		out := &Emitter{}
		for i := range open {
			st.Observe(&Event{Key: "k", Sensor: "s", Metric: "open", Value: float64(i), TS: int64(i)}, out)
		}
		if n := st.(*patternState).PatternStats().Open; n != open {
			b.Fatalf("%d open", n)
		}
		return st, out
	}
	run := func(b *testing.B, st State, out *Emitter, ev func(i int) Event) {
		e := new(Event) // the pipeline's Event is not the pattern's cost
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			*e = ev(i)
			out.Alerts = out.Alerts[:0]
			st.Observe(e, out)
			if st.NextTimer() <= e.TS {
				st.Advance(e.Key, e.TS, out)
			}
		}
	}

	// Every event opens a partial match: the oldest is dropped (a flood).
	b.Run("one_key_10000_open/flood_of_openings", func(b *testing.B) {
		st, out := oneKey(b)
		run(b, st, out, func(i int) Event {
			return Event{Key: "k", Sensor: "s", Metric: "open", Value: float64(open + i), TS: int64(open + i)}
		})
	})
	// Events no step wants: one guard evaluation per step, no partial
	// match visited.
	b.Run("one_key_10000_open/unrelated_event", func(b *testing.B) {
		st, out := oneKey(b)
		run(b, st, out, func(i int) Event {
			return Event{Key: "k", Sensor: "s", Metric: "temp", Value: 20, TS: int64(open + i)}
		})
	})
	// The worst case: the event passes step 2's guard (metric == 'close'),
	// so value == s1.value is evaluated for each of the 10,000 partial
	// matches, and matches none.
	b.Run("one_key_10000_open/probe_every_partial", func(b *testing.B) {
		st, out := oneKey(b)
		run(b, st, out, func(i int) Event {
			return Event{Key: "k", Sensor: "s", Metric: "close", Value: -1, TS: int64(open + i)}
		})
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/open, "ns/partial")
	})

	// 10,000 keys with one open partial match each; events round-robin.
	manyKeys := func(b *testing.B, maxPartial int) ([]State, []string, *Emitter) {
		d := mustPattern(b, patSpec(time.Hour, maxPartial, "", 0, steps...))
		sts := make([]State, open)
		keys := make([]string, open)
		out := &Emitter{}
		for k := range sts {
			keys[k] = "k" + strconv.Itoa(k)
			sts[k] = d.NewState()
			sts[k].Observe(&Event{Key: keys[k], Sensor: "s", Metric: "open", Value: 0, TS: 0}, out)
		}
		return sts, keys, out
	}
	runKeys := func(b *testing.B, sts []State, keys []string, out *Emitter, ev func(i int) (int, Event)) {
		e := new(Event)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			var k int
			k, *e = ev(i)
			e.Key = keys[k]
			out.Alerts = out.Alerts[:0]
			sts[k].Observe(e, out)
			if sts[k].NextTimer() <= e.TS {
				sts[k].Advance(e.Key, e.TS, out)
			}
		}
	}
	// An opening per event, max_partial 1: each replaces its key's one.
	b.Run("10000_keys_1_open/flood_of_openings", func(b *testing.B) {
		sts, keys, out := manyKeys(b, 1)
		runKeys(b, sts, keys, out, func(i int) (int, Event) {
			return i % open, Event{Sensor: "s", Metric: "open", Value: float64(i), TS: int64(1 + i)}
		})
	})
	b.Run("10000_keys_1_open/unrelated_event", func(b *testing.B) {
		sts, keys, out := manyKeys(b, 1)
		runKeys(b, sts, keys, out, func(i int) (int, Event) {
			return i % open, Event{Sensor: "s", Metric: "temp", Value: 20, TS: int64(1 + i)}
		})
	})
	// Events alternate per key: a close that completes the key's match,
	// then an opening (the key stays firing: no alert after the first).
	b.Run("10000_keys_1_open/match_then_reopen", func(b *testing.B) {
		sts, keys, out := manyKeys(b, 100)
		runKeys(b, sts, keys, out, func(i int) (int, Event) {
			k, round := (i/2)%open, int64(i/(2*open))
			if i%2 == 0 {
				return k, Event{Sensor: "s", Metric: "close", Value: float64(round), TS: 1 + int64(i)}
			}
			return k, Event{Sensor: "s", Metric: "open", Value: float64(round + 1), TS: 1 + int64(i)}
		})
	})
}

// BenchmarkPatternEncode: AppendState of 10,000 open partial matches.
func BenchmarkPatternEncode(b *testing.B) {
	d := mustPattern(b, patSpec(time.Hour, 10_000, "", 0, "metric == 'open'", "metric == 'close' && value == s1.value"))
	st := d.NewState()
	var out Emitter
	for i := range 10_000 {
		st.Observe(&Event{Key: "k", Sensor: "s", Metric: "open", Value: float64(i), TS: int64(i)}, &out)
	}
	buf := st.AppendState(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buf = st.AppendState(buf[:0])
		r := d.NewState()
		if err := r.RestoreState(buf); err != nil {
			b.Fatal(err)
		}
	}
}
