package cep

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// t0 is 2023-11-14T22:13:20Z, the start of the test series.
const t0 int64 = 1700000000000

// sec and minute turn an offset from t0 into event time.
func sec(n float64) int64    { return t0 + int64(n*1000) }
func minute(n float64) int64 { return t0 + int64(n*60000) }

func fp(v float64) *float64 { return &v }

// step is one input of a series: a reading of key "k", or, with wm set, the
// watermark reaching ts with no reading.
type step struct {
	ts int64
	v  float64
	wm bool
}

func rd(ts int64, v float64) step { return step{ts: ts, v: v} }
func wmAt(ts int64) step          { return step{ts: ts, wm: true} }

// readings makes a series of readings every dt from start.
func readings(start, dt int64, vs ...float64) []step {
	out := make([]step, len(vs))
	for i, v := range vs {
		out[i] = rd(start+int64(i)*dt, v)
	}
	return out
}

func series(parts ...[]step) []step { return slices.Concat(parts...) }

// advanceTo fires st's timers up to wm one at a time, each at its own time,
// as the pipeline's timer heap does.
func advanceTo(t testing.TB, st State, wm int64, out *Emitter) {
	t.Helper()
	for i := 0; ; i++ {
		nt := st.NextTimer()
		if nt > wm {
			return
		}
		if i == 10000 {
			t.Fatalf("timer loop: NextTimer %d does not move past %d", nt, wm)
		}
		st.Advance("k", nt, out)
	}
}

// feed feeds steps to st as the pipeline would with no out-of-orderness:
// before a reading at ts the watermark has passed ts-1, so timers due
// before ts fire first; a reading at a timer's time comes before it.
func feed(t testing.TB, st State, steps []step) []Alert {
	t.Helper()
	var out Emitter
	for _, s := range steps {
		if s.wm {
			advanceTo(t, st, s.ts, &out)
			continue
		}
		advanceTo(t, st, s.ts-1, &out)
		st.Observe(&Event{Key: "k", Value: s.v, TS: s.ts}, &out)
	}
	return out.Alerts
}

// wantAlert is an expected alert: its state, time and value, and a substring
// of its reason.
type wantAlert struct {
	state  string
	ts     int64
	value  float64
	reason string
}

func firingAt(ts int64, v float64, reason string) wantAlert { return wantAlert{Firing, ts, v, reason} }
func resolvedAt(ts int64, v float64, reason string) wantAlert {
	return wantAlert{Resolved, ts, v, reason}
}

func mustNew(t testing.TB, s Spec) Detector {
	t.Helper()
	if s.Name == "" {
		s.Name = "det"
	}
	d, err := New(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkSeries runs the series on a fresh state of the spec's detector and
// compares the alerts with want, then requires the same alerts when the
// series is shuffled within a bound and sorted back (as the pipeline
// does), and when the state is checkpointed and restored into a fresh
// state at every split point.
func checkSeries(t *testing.T, s Spec, steps []step, want ...wantAlert) {
	t.Helper()
	d := mustNew(t, s)
	got := feed(t, d.NewState(), steps)
	if !matches(got, want) {
		t.Fatalf("alerts:\n%s\nwant:\n%s", fmtAlerts(got), fmtWant(want))
	}
	checkSorted(t, d, steps, got)
	checkCheckpoints(t, d, steps, got)
}

func matches(got []Alert, want []wantAlert) bool {
	if len(got) != len(want) {
		return false
	}
	for i, w := range want {
		g := got[i]
		if g.Detector != "det" || g.Key != "k" || g.State != w.state || g.TS != w.ts || !sameValue(g.Value, w.value) || !strings.Contains(g.Reason, w.reason) {
			return false
		}
	}
	return true
}

// sameValue is == with NaN equal to itself.
func sameValue(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

func sameAlerts(a, b []Alert) bool {
	return slices.EqualFunc(a, b, func(x, y Alert) bool {
		xv, yv := x.Value, y.Value
		x.Value, y.Value = 0, 0
		return x == y && sameValue(xv, yv)
	})
}

func fmtAlerts(as []Alert) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "  %s t0%+v %v %q\n", a.State, time.Duration(a.TS-t0)*time.Millisecond, a.Value, a.Reason)
	}
	return b.String()
}

func fmtWant(ws []wantAlert) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "  %s t0%+v %v ...%q...\n", w.state, time.Duration(w.ts-t0)*time.Millisecond, w.value, w.reason)
	}
	return b.String()
}

// checkSorted delivers the readings out of order (neighbours with
// different timestamps swapped at random, watermark steps kept in place),
// sorts them back by event time, stable, as the pipeline's per-key buffer
// does, and requires the same alerts.
func checkSorted(t *testing.T, d Detector, steps []step, want []Alert) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, uint64(len(steps))))
	for range 5 {
		arrived := slices.Clone(steps)
		for i := 0; i+1 < len(arrived); i++ {
			a, b := arrived[i], arrived[i+1]
			if !a.wm && !b.wm && a.ts != b.ts && rng.IntN(2) == 0 {
				arrived[i], arrived[i+1] = b, a
				i++
			}
		}
		// Sort each run between watermark steps.
		for lo := 0; lo < len(arrived); {
			hi := lo
			for hi < len(arrived) && !arrived[hi].wm {
				hi++
			}
			slices.SortStableFunc(arrived[lo:hi], func(a, b step) int { return cmp.Compare(a.ts, b.ts) })
			lo = hi + 1
		}
		if got := feed(t, d.NewState(), arrived); !sameAlerts(got, want) {
			t.Fatalf("sorted after arriving out of order: alerts:\n%s\nwant:\n%s", fmtAlerts(got), fmtAlerts(want))
		}
	}
}

// checkCheckpoints splits the series at every point: the first part runs
// on one state, which is encoded and restored into a fresh state that runs
// the rest; the alerts must be those of the uninterrupted run. It also
// requires that the restored state encodes the same, and that damaged
// encodings are refused.
func checkCheckpoints(t *testing.T, d Detector, steps []step, want []Alert) {
	t.Helper()
	for i := 0; i <= len(steps); i++ {
		a := d.NewState()
		got := feed(t, a, steps[:i])
		prefix := []byte("prefix")
		enc := a.AppendState(slices.Clone(prefix))
		if !bytes.HasPrefix(enc, prefix) {
			t.Fatalf("split %d: AppendState did not append", i)
		}
		enc = enc[len(prefix):]
		b := d.NewState()
		if err := b.RestoreState(enc); err != nil {
			t.Fatalf("split %d: restore: %v", i, err)
		}
		if again := b.AppendState(nil); !bytes.Equal(again, enc) {
			t.Fatalf("split %d: restored state encodes differently", i)
		}
		got = append(got, feed(t, b, steps[i:])...)
		if !sameAlerts(got, want) {
			t.Fatalf("split %d: alerts:\n%s\nwant (no restart):\n%s", i, fmtAlerts(got), fmtAlerts(want))
		}
		checkDamaged(t, d, enc)
	}
}

// checkDamaged requires RestoreState to refuse a truncated encoding, one
// with a trailing byte and one with another version.
func checkDamaged(t *testing.T, d Detector, enc []byte) {
	t.Helper()
	for _, n := range []int{0, 1, len(enc) / 2, len(enc) - 1} {
		if n < len(enc) {
			if err := d.NewState().RestoreState(enc[:n]); err == nil {
				t.Fatalf("restore accepted %d of %d bytes", n, len(enc))
			}
		}
	}
	if err := d.NewState().RestoreState(append(slices.Clone(enc), 0)); err == nil {
		t.Fatal("restore accepted a trailing byte")
	}
	bad := slices.Clone(enc)
	bad[0]++
	if err := d.NewState().RestoreState(bad); err == nil {
		t.Fatal("restore accepted another version")
	}
}
