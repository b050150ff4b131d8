package cep

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"
	"pgregory.net/rapid"
)

func patSpec(within time.Duration, maxPartial int, nfb string, times int, steps ...string) Spec {
	return Spec{Name: "p", Type: "pattern", Pattern: &PatternSpec{Steps: steps, NotFollowedBy: nfb, Within: within, Times: times, MaxPartial: maxPartial}}
}

func mustPattern(t testing.TB, s Spec) Detector {
	t.Helper()
	d, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPatternFingerprint(t *testing.T) {
	base := patSpec(time.Minute, 0, "", 0, "metric == 'a'", "metric == 'b'")
	fp := mustPattern(t, base).Fingerprint()
	if !strings.HasPrefix(fp, "pattern/1/") {
		t.Fatalf("fingerprint %q", fp)
	}
	same := []Spec{
		patSpec(time.Hour, 0, "", 0, "metric == 'a'", "metric == 'b'"),
		patSpec(time.Minute, 500, "", 0, "metric == 'a'", "metric == 'b'"),
	}
	for _, s := range same {
		if got := mustPattern(t, s).Fingerprint(); got != fp {
			t.Errorf("within/max_partial changed the fingerprint: %s != %s", got, fp)
		}
	}
	other := []Spec{
		patSpec(time.Minute, 0, "", 0, "metric == 'a'", "metric == 'c'"),
		patSpec(time.Minute, 0, "", 0, "metric == 'a'"),
		patSpec(time.Minute, 0, "metric == 'c'", 0, "metric == 'a'", "metric == 'b'"),
		patSpec(time.Minute, 0, "", 3, "metric == 'a' && metric == 'b'"),
	}
	for _, s := range other {
		d, err := New(s)
		if err != nil {
			continue
		}
		if d.Fingerprint() == fp {
			t.Errorf("%q: same fingerprint", s.Pattern.Steps)
		}
	}
	a := mustPattern(t, patSpec(time.Minute, 0, "", 0, "value > 1", "value > 2")).Fingerprint()
	b := mustPattern(t, patSpec(time.Minute, 0, "", 0, "value > 2", "value > 1")).Fingerprint()
	if a == b {
		t.Error("fingerprint ignores the order of steps")
	}
}

// TestPatternSplit checks that evaluating a condition split into its
// event-only guard and the rest gives the same as evaluating it whole.
func TestPatternSplit(t *testing.T) {
	exprs := []struct {
		src         string
		guard, rest bool
	}{
		{"metric == 'b' && value > s1.value", true, true},
		{"value > s1.value && metric == 'b'", true, true},
		{"metric == 'b' and (value > prev.value || sensor == first.sensor) and value < 3", true, true},
		{"metric == 'b' || value > s1.value", false, true},
		{"value > s1.value", false, true},
		{"metric == 'b' && value >= 1", true, false},
		{"!(metric == 'a') && abs(value - s1.value) <= 1 && ts - s1.ts < 500", true, true},
		{"metric in ['a', 'b'] && (value - s1.value > 1 ? true : false)", true, true},
	}
	evs := []patEvent{{Value: 1, TS: 100, Sensor: "x", Metric: "a"}}
	for _, e := range exprs {
		c, err := compileCond(0, "step 2", e.src, 1)
		if err != nil {
			t.Fatalf("%s: %v", e.src, err)
		}
		if (c.guard != nil) != e.guard || (c.rest != nil) != e.rest {
			t.Errorf("%s: guard %v rest %v, want %v %v", e.src, c.guard != nil, c.rest != nil, e.guard, e.rest)
		}
		whole := &patCond{rest: mustCompileWhole(t, e.src), upto: 1}
		for _, m := range []string{"a", "b"} {
			for _, sensor := range []string{"x", "y"} {
				for v := -1.0; v <= 4; v += 0.5 {
					for _, ts := range []int64{100, 400, 700} {
						st := &patternState{}
						c1 := &patCtx{st: st, env: patEnv{Value: v, TS: ts, Sensor: sensor, Metric: m}}
						c2 := &patCtx{st: st, env: c1.env}
						if got, want := c1.match(c, evs), c2.match(whole, evs); got != want {
							t.Errorf("%s with %s %s %v %d: split %v, whole %v", e.src, m, sensor, v, ts, got, want)
						}
						if st.evalErrs != 0 {
							t.Errorf("%s: %d evaluation errors", e.src, st.evalErrs)
						}
					}
				}
			}
		}
	}
}

func mustCompileWhole(t *testing.T, src string) *vm.Program {
	t.Helper()
	c, err := compileCond(0, "x", "("+src+") || false && s1.ts > 0", 1)
	if err != nil {
		t.Fatal(err)
	}
	if c.guard != nil || c.rest == nil {
		t.Fatalf("%s: not compiled whole", src)
	}
	return c.rest
}

func TestPatternEvalErrors(t *testing.T) {
	d := mustPattern(t, patSpec(time.Minute, 0, "", 0, "ts % int(value) == 0"))
	st := d.NewState()
	var out Emitter
	st.Observe(&Event{Key: "k", TS: 10, Value: 0}, &out)
	st.Observe(&Event{Key: "k", TS: 20, Value: 5}, &out)
	if got := st.(*patternState).PatternStats().EvalErrors; got != 1 {
		t.Errorf("EvalErrors = %d, want 1", got)
	}
	if len(out.Alerts) != 1 || out.Alerts[0].TS != 20 {
		t.Errorf("alerts %+v", out.Alerts)
	}
}

func TestPatternRestoreBad(t *testing.T) {
	d := mustPattern(t, patSpec(time.Minute, 5, "", 0, "metric == 'a'", "metric == 'b'"))
	st := d.NewState()
	var out Emitter
	for i := range 8 {
		st.Observe(&Event{Key: "k", Metric: "a", Sensor: "s", TS: int64(i)}, &out)
	}
	b := st.AppendState(nil)
	for i := range b {
		if err := d.NewState().RestoreState(b[:i]); err == nil {
			t.Fatalf("restore of %d of %d bytes succeeded", i, len(b))
		}
	}
	if err := d.NewState().RestoreState(append(slices.Clone(b), 0)); err == nil {
		t.Fatal("restore with a trailing byte succeeded")
	}
	bad := slices.Clone(b)
	bad[0] = 2
	if err := d.NewState().RestoreState(bad); err == nil {
		t.Fatal("restore of version 2 succeeded")
	}
	// A complete partial match in a pattern without not_followed_by.
	one := mustPattern(t, patSpec(time.Minute, 5, "", 0, "metric == 'a'"))
	if err := one.NewState().RestoreState(b); err == nil {
		t.Fatal("restore of a 1-event partial match into a 1-step pattern succeeded")
	}
	// max_partial lowered: the oldest go.
	low := mustPattern(t, patSpec(time.Minute, 2, "", 0, "metric == 'a'", "metric == 'b'"))
	r := low.NewState()
	if err := r.RestoreState(b); err != nil {
		t.Fatal(err)
	}
	got := r.(*patternState).PatternStats()
	if got.Open != 2 || got.Dropped != 3+3 {
		t.Fatalf("after lowering max_partial: %+v", got)
	}
	if ts := r.(*patternState).parts[0].evs[0].TS; ts != 6 {
		t.Fatalf("kept the partial match of %d, want the newest (6, 7)", ts)
	}
}

// TestPatternFloodBounded: a million openings keep max_partial partial
// matches and bounded memory.
func TestPatternFloodBounded(t *testing.T) {
	d := mustPattern(t, patSpec(time.Hour, 100, "", 0, "metric == 'open'", "metric == 'close' && value == s1.value"))
	st := d.NewState().(*patternState)
	var out Emitter
	const n = 1_000_000
	for i := range n {
		st.Observe(&Event{Key: "k", Metric: "open", Value: float64(i), TS: int64(i)}, &out)
		if len(st.parts) > 100 || cap(st.parts) > 400 {
			t.Fatalf("after %d openings: %d open, capacity %d", i+1, len(st.parts), cap(st.parts))
		}
	}
	if got := st.PatternStats(); got.Open != 100 || got.Dropped != n-100 {
		t.Fatalf("stats %+v", got)
	}
	st.Observe(&Event{Key: "k", Metric: "close", Value: n - 50, TS: n}, &out)
	st.Observe(&Event{Key: "k", Metric: "close", Value: n - 500, TS: n}, &out)
	if len(out.Alerts) != 1 || out.Alerts[0].Value != n-50 {
		t.Fatalf("alerts %+v", out.Alerts)
	}
}

// TestPatternShared: one detector, states on many goroutines (go test -race).
func TestPatternShared(t *testing.T) {
	d := mustPattern(t, patSpec(time.Minute, 0, "metric == 'c' && value == s1.value", 0, "metric == 'a'", "metric == 'b' && value > s1.value"))
	var wg sync.WaitGroup
	counts := make([]int, 8)
	for g := range counts {
		wg.Go(func() {
			st := d.NewState()
			var out Emitter
			for i := range 2000 {
				ts := int64(i) * 5000
				st.Observe(&Event{Key: "k", Metric: string(rune('a' + i%3)), Value: float64(i % 7), TS: ts}, &out)
				if st.NextTimer() <= ts {
					st.Advance("k", ts, &out)
				}
			}
			counts[g] = len(out.Alerts)
		})
	}
	wg.Wait()
	for _, c := range counts {
		if c != counts[0] || c == 0 {
			t.Fatalf("alerts per goroutine %v", counts)
		}
	}
}

// patOracle is a pattern written as Go functions, matched by brute force.
type patOracle struct {
	name   string
	steps  []string
	nfb    string
	times  int
	fsteps []func(e patEvent, prev []patEvent) bool
	fnfb   func(e patEvent, m []patEvent) bool
}

var patOracles = []patOracle{
	{name: "a then larger b", steps: []string{"metric == 'a'", "metric == 'b' && value > s1.value"},
		fsteps: []func(patEvent, []patEvent) bool{
			func(e patEvent, _ []patEvent) bool { return e.Metric == "a" },
			func(e patEvent, m []patEvent) bool { return e.Metric == "b" && e.Value > m[0].Value },
		}},
	{name: "a, b, c rising", steps: []string{"metric == 'a'", "metric == 'b'", "metric != 'a' && value > prev.value"},
		fsteps: []func(patEvent, []patEvent) bool{
			func(e patEvent, _ []patEvent) bool { return e.Metric == "a" },
			func(e patEvent, _ []patEvent) bool { return e.Metric == "b" },
			func(e patEvent, m []patEvent) bool { return e.Metric != "a" && e.Value > m[len(m)-1].Value },
		}},
	{name: "3 times a", steps: []string{"metric == 'a'"}, times: 3,
		fsteps: []func(patEvent, []patEvent) bool{
			func(e patEvent, _ []patEvent) bool { return e.Metric == "a" },
			func(e patEvent, _ []patEvent) bool { return e.Metric == "a" },
			func(e patEvent, _ []patEvent) bool { return e.Metric == "a" },
		}},
	{name: "a not followed by b of its value", steps: []string{"metric == 'a'"}, nfb: "metric == 'b' && value == s1.value",
		fsteps: []func(patEvent, []patEvent) bool{
			func(e patEvent, _ []patEvent) bool { return e.Metric == "a" },
		},
		fnfb: func(e patEvent, m []patEvent) bool { return e.Metric == "b" && e.Value == m[0].Value }},
	{name: "a then b not followed by c", steps: []string{"metric == 'a'", "metric == 'b'"}, nfb: "metric == 'c'",
		fsteps: []func(patEvent, []patEvent) bool{
			func(e patEvent, _ []patEvent) bool { return e.Metric == "a" },
			func(e patEvent, _ []patEvent) bool { return e.Metric == "b" },
		},
		fnfb: func(e patEvent, _ []patEvent) bool { return e.Metric == "c" }},
}

type patMatch struct {
	evs  []patEvent
	last int // index of the last event
}

// matches finds every match: each event satisfying step 1 starts one,
// which takes the first later event satisfying each next step within w.
func (o *patOracle) matches(evs []patEvent, w int64) []patMatch {
	var out []patMatch
	for i, e := range evs {
		if !o.fsteps[0](e, nil) {
			continue
		}
		m := []patEvent{e}
		j := i + 1
		for k := 1; k < len(o.fsteps) && j <= len(evs); k++ {
			for j < len(evs) && (evs[j].TS-e.TS >= w || !o.fsteps[k](evs[j], m)) {
				j++
			}
			if j < len(evs) && evs[j].TS-e.TS < w {
				m = append(m, evs[j])
				j++
			} else {
				j = len(evs) + 1
			}
		}
		if len(m) == len(o.fsteps) {
			out = append(out, patMatch{m, j - 1})
		}
	}
	slices.SortStableFunc(out, func(a, b patMatch) int { return a.last - b.last })
	return out
}

type patTransition struct {
	State string
	TS    int64
}

// alerts is what the pattern should raise for evs.
func (o *patOracle) alerts(evs []patEvent, w int64) []patTransition {
	var out []patTransition
	ms := o.matches(evs, w)
	if o.fnfb == nil {
		firing, end := false, int64(0)
		for _, m := range ms {
			s, e := m.evs[len(m.evs)-1].TS, m.evs[0].TS+w
			if firing && s <= end {
				end = max(end, e)
				continue
			}
			if firing {
				out = append(out, patTransition{Resolved, end})
			}
			out = append(out, patTransition{Firing, s})
			firing, end = true, e
		}
		if firing {
			out = append(out, patTransition{Resolved, end})
		}
		return out
	}
	var overdue []patMatch
	for _, m := range ms {
		d := m.evs[0].TS + w
		ok := true
		for j := m.last + 1; j < len(evs) && evs[j].TS < d; j++ {
			if o.fnfb(evs[j], m.evs) {
				ok = false
				break
			}
		}
		if ok {
			overdue = append(overdue, m)
		}
	}
	slices.SortStableFunc(overdue, func(a, b patMatch) int { return int(a.evs[0].TS - b.evs[0].TS) })
	var fired []patEvent
	next := 0
	due := func(upto int64) {
		for ; next < len(overdue) && overdue[next].evs[0].TS+w <= upto; next++ {
			if fired == nil {
				fired = overdue[next].evs
				out = append(out, patTransition{Firing, fired[0].TS + w})
			}
		}
	}
	for _, e := range evs {
		due(e.TS)
		if fired != nil && o.fnfb(e, fired) {
			out = append(out, patTransition{Resolved, e.TS})
			fired = nil
		}
	}
	due(math.MaxInt64)
	return out
}

// TestPatternOracle compares the detector with brute-force matching on
// random streams, as is and restored before every call.
func TestPatternOracle(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		o := patOracles[rapid.IntRange(0, len(patOracles)-1).Draw(t, "pattern")]
		w := rapid.Int64Range(1, 50).Draw(t, "within") * 100
		n := rapid.IntRange(0, 120).Draw(t, "n")
		evs := make([]patEvent, n)
		ts := int64(1_000_000)
		for i := range evs {
			// gaps near multiples of 100 ms, so that events often fall on
			// and next to the within boundaries
			ts += max(0, rapid.Int64Range(0, 15).Draw(t, "gap")*100+rapid.SampledFrom([]int64{0, 0, -1, 1}).Draw(t, "jitter"))
			evs[i] = patEvent{TS: ts, Metric: string(rune('a' + rapid.IntRange(0, 2).Draw(t, "metric"))), Value: float64(rapid.IntRange(0, 3).Draw(t, "value")), Sensor: "s"}
		}
		want := o.alerts(evs, w)
		spec := patSpec(time.Duration(w)*time.Millisecond, 10_000, o.nfb, o.times, o.steps...)
		for _, restore := range []bool{false, true} {
			got := runPattern(t, spec, evs, restore)
			if !slices.Equal(got, want) {
				t.Fatalf("%s within %d restore=%v:\n got %v\nwant %v\nevents %v", o.name, w, restore, got, want, evs)
			}
		}
	})
}

// runPattern feeds one key's events as the pipeline does: watermark the
// largest ts - 1 after each, timers when due, +inf at the end.
func runPattern(t interface{ Fatalf(string, ...any) }, spec Spec, evs []patEvent, restore bool) []patTransition {
	det, err := New(spec)
	if err != nil {
		t.Fatalf("%v", err)
	}
	st := det.NewState()
	var out Emitter
	cycle := func() {
		if !restore {
			return
		}
		b := st.AppendState(nil)
		st = det.NewState()
		if err := st.RestoreState(b); err != nil {
			t.Fatalf("restore: %v", err)
		}
	}
	advance := func(wm int64) {
		for i := 0; st.NextTimer() <= wm; i++ {
			if i > 3 {
				t.Fatalf("Advance(%d) leaves timer %d", wm, st.NextTimer())
			}
			cycle()
			st.Advance("k", wm, &out)
		}
	}
	for _, e := range evs {
		cycle()
		st.Observe(&Event{Key: "k", Sensor: e.Sensor, Metric: e.Metric, Value: e.Value, TS: e.TS}, &out)
		advance(e.TS - 1)
	}
	advance(math.MaxInt64 - 1)
	res := make([]patTransition, len(out.Alerts))
	for i, a := range out.Alerts {
		res[i] = patTransition{a.State, a.TS}
	}
	return res
}

func TestPatternOracleSelf(t *testing.T) {
	// The oracle on a hand-made case, so that it is not wrong the same way.
	o := patOracles[0]
	evs := []patEvent{{TS: 0, Metric: "a", Value: 1}, {TS: 10, Metric: "a", Value: 2}, {TS: 20, Metric: "b", Value: 3}, {TS: 200, Metric: "b", Value: 5}}
	got := fmt.Sprint(o.alerts(evs, 100))
	if want := "[{firing 20} {resolved 110}]"; got != want {
		t.Fatalf("oracle: %s, want %s", got, want)
	}
}
