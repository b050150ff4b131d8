package simulate

import (
	"math"
	"reflect"
	"testing"
	"time"
)

const t0 = 1_700_000_000_000

// run generates steps and returns the readings and every label.
func run(t *testing.T, c Config, steps int) ([]Reading, []Label) {
	t.Helper()
	g, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	var rs []Reading
	var ls []Label
	for range steps {
		rs = g.Next(rs)
		ls = g.Labels(ls)
	}
	if l, ok := g.Active(); ok {
		ls = append(ls, l)
	}
	return rs, ls
}

func allKinds() []Kind { return []Kind{Spike, Drift, Shift, Flatline, Dropout} }

func baseConfig() Config {
	return Config{Sensors: 5, Rate: 1, Amplitude: 10, Offset: 20, Noise: 0.1, Seed: 7, Start: t0,
		Anomalies: allKinds(), AnomalyEvery: time.Minute}
}

func TestSimulateDeterministic(t *testing.T) {
	for _, sig := range []Signal{Sine, Walk, Noise} {
		c := baseConfig()
		c.Signal = sig
		a, la := run(t, c, 1800)
		b, lb := run(t, c, 1800)
		if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(la, lb) {
			t.Fatalf("%s: same seed, different output", sig)
		}
		if len(la) < 25 {
			t.Fatalf("%s: %d labels in 30 minutes with one a minute", sig, len(la))
		}
		c.Seed = 8
		d, ld := run(t, c, 1800)
		if reflect.DeepEqual(a, d) || reflect.DeepEqual(la, ld) {
			t.Fatalf("%s: seeds 7 and 8 give the same output", sig)
		}
	}
}

// The clean signal does not depend on the anomalies: outside the labels,
// the readings with and without anomalies are the same.
func TestSimulateAnomaliesOverlayCleanSignal(t *testing.T) {
	c := baseConfig()
	c.Signal = Walk
	dirty, labels := run(t, c, 3600)
	c.Anomalies = nil
	clean, none := run(t, c, 3600)
	if len(none) != 0 {
		t.Fatalf("labels without anomalies: %v", none)
	}
	in := func(r Reading) bool {
		for _, l := range labels {
			if r.Sensor == l.Sensor && r.TS >= l.Start && r.TS <= l.End {
				return true
			}
		}
		return false
	}
	cm := map[[2]any]float64{}
	for _, r := range clean {
		cm[[2]any{r.Sensor, r.TS}] = r.Value
	}
	differ := 0
	for _, r := range dirty {
		if v := cm[[2]any{r.Sensor, r.TS}]; v != r.Value {
			if !in(r) {
				t.Fatalf("reading %+v differs from the clean %v outside every label", r, v)
			}
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("anomalies changed nothing")
	}
}

// Each kind shows in the data exactly at its label's times.
func TestSimulateAnomalyShapes(t *testing.T) {
	for _, sig := range []Signal{Sine, Walk, Noise} {
		c := baseConfig()
		c.Signal = sig
		c.Sensors = 3
		dirty, labels := run(t, c, 2*3600)
		c.Anomalies = nil
		clean, _ := run(t, c, 2*3600)
		type key struct {
			s  string
			ts int64
		}
		dm, cm := map[key]float64{}, map[key]float64{}
		for _, r := range dirty {
			dm[key{r.Sensor, r.TS}] = r.Value
		}
		for _, r := range clean {
			cm[key{r.Sensor, r.TS}] = r.Value
		}
		seen := map[string]int{}
		var prevEnd int64
		for _, l := range labels {
			seen[l.Kind]++
			if l.Start <= prevEnd {
				t.Fatalf("%s: label %+v overlaps the previous one", sig, l)
			}
			prevEnd = l.End
			n := int((l.End-l.Start)/1000) + 1
			if n != l.Readings {
				t.Fatalf("%s: %+v: %d steps from start to end, label says %d readings", sig, l, n, l.Readings)
			}
			for ts := l.Start; ts <= l.End; ts += 1000 {
				k := key{l.Sensor, ts}
				v, ok := dm[k]
				cv := cm[k]
				switch l.Kind {
				case "dropout":
					if ok {
						t.Fatalf("%s: %+v: reading at %d", sig, l, ts)
					}
					continue
				case "spike":
					if v != l.Value || math.Abs(v-20) < 50 || math.Abs(v-20) > 100 {
						t.Fatalf("%s: %+v: spike reading %v", sig, l, v)
					}
				case "shift":
					if math.Abs(v-cv-l.Delta) > 0.0015 || math.Abs(l.Delta) < 20 || math.Abs(l.Delta) > 40 {
						t.Fatalf("%s: %+v: at %d %v, clean %v", sig, l, ts, v, cv)
					}
				case "drift":
					want := l.Delta * float64(ts-l.Start+1000) / float64(l.End-l.Start+1000)
					if math.Abs(v-cv-want) > 0.0015 {
						t.Fatalf("%s: %+v: at %d drift %v, want %v", sig, l, ts, v-cv, want)
					}
				case "flatline":
					before := dm[key{l.Sensor, l.Start - 1000}]
					if v != before || v != l.Value {
						t.Fatalf("%s: %+v: at %d %v, before the flatline %v", sig, l, ts, v, before)
					}
				}
				if !ok {
					t.Fatalf("%s: %+v: no reading at %d", sig, l, ts)
				}
			}
			// Just outside the label the sensor is itself again.
			for _, ts := range []int64{l.Start - 1000, l.End + 1000} {
				k := key{l.Sensor, ts}
				if _, ok := dm[k]; !ok || dm[k] != cm[k] {
					if l.Kind == "flatline" && ts < l.Start {
						continue
					}
					t.Fatalf("%s: %+v: at %d %v, clean %v", sig, l, ts, dm[k], cm[k])
				}
			}
		}
		for _, k := range KindNames {
			if seen[k] < 10 {
				t.Errorf("%s: %d %s in 120 anomalies", sig, seen[k], k)
			}
		}
	}
}

func TestSimulateRateAndTimes(t *testing.T) {
	c := Config{Sensors: 4, Rate: 3, Amplitude: 1, Start: t0, Seed: 1}
	rs, _ := run(t, c, 30)
	if len(rs) != 120 {
		t.Fatalf("%d readings, want 120", len(rs))
	}
	want := []int64{0, 333, 667, 1000, 1333}
	for i, w := range want {
		for s := range 4 {
			r := rs[i*4+s]
			if r.TS != t0+w || r.Sensor != []string{"sim-0", "sim-1", "sim-2", "sim-3"}[s] {
				t.Fatalf("reading %d: %+v, want sim-%d at +%d", i*4+s, r, s, w)
			}
		}
	}
	if last := rs[len(rs)-1].TS; last != t0+9667 { // round(29*1000/3)
		t.Fatalf("last ts +%d", last-t0)
	}
	// 10 Hz for a minute.
	c = Config{Sensors: 2, Rate: 10, Prefix: "p", Metric: "temp", Start: t0, Amplitude: 10, Offset: 20}
	rs, _ = run(t, c, 600)
	if len(rs) != 1200 || rs[1199].TS != t0+59_900 || rs[0].Metric != "temp" || rs[0].Sensor != "p-0" {
		t.Fatalf("%d readings, last %+v", len(rs), rs[len(rs)-1])
	}
	// Sine: period 1m, amplitude 10, offset 20, no noise; phases spread.
	for _, r := range rs {
		phase := 0.0
		if r.Sensor == "p-1" {
			phase = math.Pi
		}
		w := 20 + 10*math.Sin(2*math.Pi*float64(r.TS-t0)/60000+phase)
		if math.Abs(r.Value-w) > 0.0006 {
			t.Fatalf("%+v, want %v", r, w)
		}
	}
}

func TestSimulateSignalStatistics(t *testing.T) {
	for _, sig := range []Signal{Walk, Noise} {
		c := Config{Sensors: 20, Rate: 1, Signal: sig, Period: 10 * time.Second, Amplitude: 5, Offset: 100, Seed: 3}
		rs, _ := run(t, c, 2000)
		var sum, sq float64
		for _, r := range rs {
			sum += r.Value
			sq += r.Value * r.Value
		}
		n := float64(len(rs))
		mean := sum / n
		sd := math.Sqrt(sq/n - mean*mean)
		if math.Abs(mean-100) > 0.5 || math.Abs(sd-5) > 0.5 {
			t.Errorf("%s: mean %.3f sd %.3f, want about 100 and 5", sig, mean, sd)
		}
	}
}

// A run cut in the middle of a step (edged simulate --count) keeps its
// labels true to the readings delivered.
func TestSimulateTruncate(t *testing.T) {
	c := Config{Sensors: 4, Rate: 1, Amplitude: 10, Offset: 20, Start: t0, Anomalies: []Kind{Shift}, AnomalyEvery: time.Minute}
	g, _ := New(c)
	var rs []Reading
	var lab Label
	for {
		rs = g.Next(rs[:0])
		if l, ok := g.Active(); ok {
			lab = l
			break
		}
	}
	idx := g.index[lab.Sensor]
	// Deliver the readings of the sensors before the anomaly's: the label
	// loses its only reading and goes.
	g.Truncate(rs, idx)
	if l, ok := g.Active(); ok {
		t.Fatalf("label %+v kept after its reading was cut", l)
	}
	// Again, two steps in, cut after the anomaly's sensor: it keeps both.
	g, _ = New(c)
	for {
		rs = g.Next(rs[:0])
		if l, ok := g.Active(); ok && l.Readings == 2 {
			break
		}
	}
	g.Truncate(rs, idx+1)
	l, ok := g.Active()
	if !ok || l.Readings != 2 || !l.Truncated {
		t.Fatalf("label %+v", l)
	}
	g.Truncate(rs, idx)
	l, _ = g.Active()
	if l.Readings != 1 || l.End != l.Start {
		t.Fatalf("cut before the sensor: label %+v", l)
	}
}

func TestSimulateValidate(t *testing.T) {
	bad := []Config{
		{Sensors: -1},
		{Rate: 1001},
		{Rate: -1},
		{Signal: "square"},
		{Noise: -1},
		{Amplitude: math.NaN()},
		{Anomalies: []Kind{Spike}}, // no AnomalyEvery
		{Anomalies: []Kind{Spike}, AnomalyEvery: time.Second},         // under two steps
		{Anomalies: []Kind{Kind(99)}, AnomalyEvery: 10 * time.Second}, // unknown
	}
	for _, c := range bad {
		if _, err := New(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
	if _, err := ParseKinds([]string{"spike", " Drift", "", "none"}); err != nil {
		t.Error(err)
	}
	if _, err := ParseKinds([]string{"spikes"}); err == nil {
		t.Error("spikes accepted")
	}
}

func BenchmarkSimulateStep1000(b *testing.B) {
	g, _ := New(Config{Sensors: 1000, Rate: 1, Amplitude: 10, Noise: 0.1, Anomalies: allKinds(), AnomalyEvery: time.Minute})
	var rs []Reading
	b.ReportAllocs()
	for b.Loop() {
		rs = g.Next(rs[:0])
	}
}
