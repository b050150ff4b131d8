package cep_test

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/cep"
	"github.com/edged/edged/internal/simulate"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/record"
	"github.com/edged/edged/sensors"
)

// The detector evaluation (issue 6): a labelled synthetic data set from
// internal/simulate, run through the pipeline with the detectors set up for
// the anomaly kinds, scored against the labels. BENCHMARKS.md section
// "Detectors: precision, recall, delay" holds the report of
//
//	go test ./cep -run TestDetectorEval -v
//
// Environment:
//
//	EDGED_EVAL_SEED=n   evaluate seed n instead of evalSeed (tuning used
//	                    tuneSeed: EDGED_EVAL_SEED=1 shows what it saw)
//	EDGED_EVAL_LONG=1   also run 24 hours of event time on seeds 3, 4 and 5
//	                    (about 30 s more), with the same floors
//	EDGED_EVAL_SWEEP=1  TestEvalParameterSweep: the grid of parameters the
//	                    detectors were chosen from, on tuneSeed (about a
//	                    minute)
//
// # Data set
//
// evalGroups independent generators of evalSensors sensors each (names
// g<group>-<i>, so 50 sensors in all), 1 reading a second per sensor,
// signal Offset 20 + 10*sin(2*pi*t/10m + phase) + N(0, 0.2), values
// rounded to 3 decimals; each generator injects one anomaly every ~2
// minutes (kind drawn uniformly from spike, drift, shift, flatline,
// dropout) on one of its sensors. Five generators instead of one give five
// times the labels (about 180 per kind in 6 hours instead of 36) for the
// same readings: a floor of 0.95 then rests on enough labels to mean
// something. With AnomalyEvery 2m the generator caps an anomaly at 96 s,
// so shifts, drifts and flatlines last 60-96 s (drifts always 96 s) and
// dropouts 30-96 s.
//
// Readings reach the engine as a gateway would get them: each one delayed
// by a uniform 0-2 s after its event time, in arrival order, from one
// source with max_out_of_orderness 3 s, so no reading is late and the
// detectors see every key in event-time order.
//
// # Scoring
//
// Only "firing" alerts count. An alert of detector D for key K at event
// time TS matches the label L of sensor K when L.start <= TS <= L.end +
// tol(D), tol(D) being the detector's own window or duration (evalDet.tol;
// 10 s, ten readings, for rate, which has neither): what D still sees of
// the anomaly after it ended, such as the step back at the end of a shift
// or drift. The tolerance tail is cut at the start of the sensor's next
// label, so an alert matches at most one label. Then, per detector:
//
//	precision  alerts matching a label of a kind the detector targets /
//	           all its alerts
//	explained  alerts matching a label of any kind / all its alerts (the
//	           rest went off on clean data)
//	recall     per kind: labels matched by at least one alert / labels of
//	           that kind (a label still running when the data ends is not
//	           counted)
//	delay      per kind: first matching alert's TS - L.start, over the
//	           labels found (median and p95, nearest rank)

const (
	evalGroups  = 5
	evalSensors = 10
	evalHours   = 6
	// tuneSeed is the seed the parameters below were chosen on; evalSeed
	// is the one the floors are asserted on, never used for tuning.
	tuneSeed uint64 = 1
	evalSeed uint64 = 2
	evalT0   int64  = 1700000000000
)

// evalDet is one detector under evaluation.
type evalDet struct {
	spec    cep.Spec
	targets []string      // the anomaly kinds it is there for
	tol     time.Duration // how long after a label's end an alert still matches it
}

// valueKinds are the anomalies that change the values (not the timing or
// the variation) of the readings; a value detector's alerts on any of them
// are correct.
var valueKinds = []string{"spike", "shift", "drift"}

// evalDetectors are the detectors under evaluation, chosen on tuneSeed
// with TestEvalParameterSweep (BENCHMARKS.md gives the reasons).
func evalDetectors() []evalDet {
	return []evalDet{
		// Spikes, shifts (and the end of drifts): a 30-s Hampel filter,
		// alerting only on deviations of at least 10, the amplitude of the
		// signal's normal swing.
		{cep.Spec{Name: "mad", Type: "mad", Window: 30 * time.Second, Sigma: 6, Warmup: 30, Tolerance: cep.Tolerance{Value: 10}}, valueKinds, 30 * time.Second},
		// The same without the tolerance: what the tolerance buys.
		{cep.Spec{Name: "mad-t0", Type: "mad", Window: 30 * time.Second, Sigma: 6, Warmup: 30}, valueKinds, 30 * time.Second},
		// For comparison: mean and stddev instead of median and MAD.
		{cep.Spec{Name: "zscore", Type: "zscore", Window: 30 * time.Second, Sigma: 6, Warmup: 30, Tolerance: cep.Tolerance{Value: 10}}, valueKinds, 30 * time.Second},
		// The normal change is at most 0.105/s (the sine) plus noise (the
		// difference of two readings has a stddev of 0.28): 5/s is 5 times
		// the largest normal change with 3 sigma of noise.
		{cep.Spec{Name: "rate", Type: "rate", MaxRate: 5}, valueKinds, 10 * time.Second},
		// Half the shortest flatline (60 s); a repeated value is exact.
		{cep.Spec{Name: "flatline", Type: "flatline", Duration: 30 * time.Second, Tolerance: cep.Tolerance{Value: 0.001}}, []string{"flatline"}, 30 * time.Second},
		// Ten sampling intervals, a third of the shortest dropout (30 s).
		{cep.Spec{Name: "deadman", Type: "deadman", Duration: 10 * time.Second}, []string{"dropout"}, 10 * time.Second},
	}
}

// evalAlert is one firing alert.
type evalAlert struct {
	det, key string
	ts       int64
}

// evalData is the outcome of one run: the labels and the alerts.
type evalData struct {
	labels   []simulate.Label
	alerts   []evalAlert
	readings int64
	late     int64
}

// evalRun generates the data set for seed, feeds it to an engine running
// dets, and collects labels and firing alerts.
func evalRun(t testing.TB, seed uint64, hours int, dets []evalDet) evalData {
	t.Helper()
	var data evalData
	specs := make([]pipeline.DetectorSpec, len(dets))
	for i, d := range dets {
		det, err := cep.New(d.spec)
		if err != nil {
			t.Fatal(err)
		}
		specs[i] = pipeline.DetectorSpec{Detector: det}
	}
	sink := pipeline.SinkFunc(func(r *pipeline.Record) {
		if r.Kind == record.KindAlert && r.State == cep.Firing {
			data.alerts = append(data.alerts, evalAlert{det: r.Name, key: r.Key, ts: r.TS})
		}
	})
	const source = "sim"
	e, err := pipeline.New(pipeline.Config{
		Sources:   []pipeline.SourceSpec{{Name: source, MaxOutOfOrderness: 3 * time.Second}},
		Detectors: specs,
	}, sink, evalT0)
	if err != nil {
		t.Fatal(err)
	}
	gens := make([]*simulate.Generator, evalGroups)
	for g := range gens {
		gens[g], err = simulate.New(simulate.Config{
			Prefix: "g" + strconv.Itoa(g), Sensors: evalSensors, Rate: 1,
			Signal: simulate.Sine, Period: 10 * time.Minute, Amplitude: 10, Offset: 20, Noise: 0.2,
			Anomalies:    []simulate.Kind{simulate.Spike, simulate.Drift, simulate.Shift, simulate.Flatline, simulate.Dropout},
			AnomalyEvery: 2 * time.Minute,
			Seed:         seed<<8 | uint64(g), Start: evalT0,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Arrival delays: their own stream, so they do not move the data.
	jitter := rand.New(rand.NewPCG(seed, 0xde1a7))
	type arrival struct {
		at int64 // processing time
		r  sensors.Reading
	}
	var pending []arrival
	var step []simulate.Reading
	deliver := func(upTo int64) {
		slices.SortStableFunc(pending, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
		n := 0
		for n < len(pending) && pending[n].at <= upTo {
			if err := e.Process(&pending[n].r, pending[n].at); err != nil {
				t.Fatal(err)
			}
			n++
		}
		pending = slices.Delete(pending, 0, n)
	}
	steps := hours * 3600
	for range steps {
		var ts int64
		for _, g := range gens {
			ts = g.NextTS()
			step = g.Next(step[:0])
			for _, r := range step {
				pending = append(pending, arrival{at: r.TS + jitter.Int64N(2000),
					r: sensors.Reading{Sensor: r.Sensor, Metric: r.Metric, Value: r.Value, TS: r.TS, Source: source}})
			}
			data.labels = g.Labels(data.labels)
		}
		// Everything that arrives before the next step's readings are made.
		deliver(ts + 999)
	}
	deliver(math.MaxInt64)
	e.Flush()
	for _, g := range gens {
		if l, ok := g.Active(); ok {
			data.labels = append(data.labels, l)
		}
	}
	st := e.Stats()
	data.readings, data.late = st.Readings, st.DetectorLate
	return data
}

// kindScore is one detector's result on one anomaly kind.
type kindScore struct {
	labels, found int
	delays        []int64 // ms, of the labels found
}

func (k *kindScore) recall() float64 {
	if k.labels == 0 {
		return math.NaN()
	}
	return float64(k.found) / float64(k.labels)
}

// quantile is the nearest-rank q-quantile of the delays, in ms.
func (k *kindScore) quantile(q float64) int64 {
	if len(k.delays) == 0 {
		return -1
	}
	d := slices.Clone(k.delays)
	slices.Sort(d)
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

// detScore is one detector's result.
type detScore struct {
	det       evalDet
	alerts    int // firing alerts
	onTarget  int // matching a label of a targeted kind
	onOther   int // matching a label of another kind
	unlabeled int // matching no label: false alarms
	kinds     map[string]*kindScore
}

// explained is the share of alerts matching a label of any kind.
func (d *detScore) explained() float64 {
	if d.alerts == 0 {
		return math.NaN()
	}
	return float64(d.onTarget+d.onOther) / float64(d.alerts)
}

func (d *detScore) precision() float64 {
	if d.alerts == 0 {
		return math.NaN()
	}
	return float64(d.onTarget) / float64(d.alerts)
}

// evalScore scores the alerts of each detector against the labels.
func evalScore(data evalData, dets []evalDet) []*detScore {
	// Labels by sensor, in time order.
	bySensor := map[string][]simulate.Label{}
	for _, l := range data.labels {
		bySensor[l.Sensor] = append(bySensor[l.Sensor], l)
	}
	for _, ls := range bySensor {
		slices.SortFunc(ls, func(a, b simulate.Label) int { return cmp.Compare(a.Start, b.Start) })
	}
	out := make([]*detScore, len(dets))
	for i, d := range dets {
		s := &detScore{det: d, kinds: map[string]*kindScore{}}
		out[i] = s
		for _, k := range simulate.KindNames {
			s.kinds[k] = &kindScore{}
		}
		tol := d.tol.Milliseconds()
		// first[sensor][j] is the first alert time matching label j.
		first := map[string][]int64{}
		for sensor, ls := range bySensor {
			f := make([]int64, len(ls))
			for j := range f {
				f[j] = math.MaxInt64
			}
			first[sensor] = f
		}
		for _, a := range data.alerts {
			if a.det != d.spec.Name {
				continue
			}
			s.alerts++
			ls := bySensor[a.key]
			// The last label starting at or before the alert.
			j := sort.Search(len(ls), func(j int) bool { return ls[j].Start > a.ts }) - 1
			if j < 0 {
				s.unlabeled++
				continue
			}
			end := ls[j].End + tol
			if j+1 < len(ls) {
				end = min(end, ls[j+1].Start-1)
			}
			if a.ts > end {
				s.unlabeled++
				continue
			}
			if slices.Contains(d.targets, ls[j].Kind) {
				s.onTarget++
			} else {
				s.onOther++
			}
			first[a.key][j] = min(first[a.key][j], a.ts)
		}
		for sensor, ls := range bySensor {
			for j, l := range ls {
				if l.Truncated {
					continue
				}
				ks := s.kinds[l.Kind]
				ks.labels++
				if f := first[sensor][j]; f != math.MaxInt64 {
					ks.found++
					ks.delays = append(ks.delays, f-l.Start)
				}
			}
		}
	}
	return out
}

// specText writes a detector's parameters as in the config file.
func specText(s cep.Spec) string {
	var p []string
	add := func(k, v string) { p = append(p, k+" "+v) }
	if s.Window > 0 {
		add("window", s.Window.String())
	}
	if s.Sigma > 0 {
		add("sigma", strconv.FormatFloat(s.Sigma, 'g', -1, 64))
	}
	if s.Warmup > 0 {
		add("warmup", strconv.Itoa(s.Warmup))
	}
	if s.MaxRate > 0 {
		add("max_rate", strconv.FormatFloat(s.MaxRate, 'g', -1, 64)+"/s")
	}
	if s.Duration > 0 {
		add("duration", s.Duration.String())
	}
	if s.Tolerance.Value > 0 {
		add("tolerance", s.Tolerance.String())
	}
	return s.Type + ": " + strings.Join(p, ", ")
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

func secs(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64) + " s"
}

// evalReport writes the two markdown tables of the report. The second
// leaves out the kinds a detector does not target and never matched.
func evalReport(scores []*detScore) string {
	var b strings.Builder
	b.WriteString("| detector | parameters | targets | match tolerance | firing alerts | on a target label | on another label | on no label | precision | explained |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range scores {
		fmt.Fprintf(&b, "| %s | %s | %s | %v | %d | %d | %d | %d | %s | %s |\n", s.det.spec.Name, specText(s.det.spec),
			strings.Join(s.det.targets, ", "), s.det.tol, s.alerts, s.onTarget, s.onOther, s.unlabeled, pct(s.precision()), pct(s.explained()))
	}
	b.WriteString("\n| detector | kind | labels | found | recall | median delay | p95 delay | precision |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range scores {
		for _, k := range simulate.KindNames {
			ks := s.kinds[k]
			target := slices.Contains(s.det.targets, k)
			if !target && ks.found == 0 {
				continue
			}
			name, prec := k, pct(s.precision())
			if !target {
				name, prec = k+" (not a target)", "-"
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s | %s | %s |\n", s.det.spec.Name, name, ks.labels, ks.found,
				pct(ks.recall()), secs(ks.quantile(0.5)), secs(ks.quantile(0.95)), prec)
		}
	}
	return b.String()
}

// evalFloor is one asserted floor: the detector's recall on the kind, its
// precision, and a ceiling on the p95 delay.
type evalFloor struct {
	det, kind         string
	recall, precision float64
	p95               time.Duration
}

// evalFloors: spikes, flatlines and dropouts as the issue asks. Shifts: a
// shift is a step of at least 20 (twice the tolerance, 100 noise sigma,
// six times the largest normal change over the 30-s window), which both
// value detectors see at its first reading unless they are still firing
// for an earlier anomaly of the same sensor: recall 0.95 at the detector's
// precision floor. The delays are what the rules give: a spike or shift at
// its first reading (p95 within a second); a flatline Duration after the
// last reading before it (its run starts there, the flatline repeats that
// value); a dropout Duration after the last reading before it.
var evalFloors = []evalFloor{
	{"mad", "spike", 0.95, 0.9, time.Second},
	{"mad", "shift", 0.95, 0.9, time.Second},
	{"zscore", "spike", 0.95, 0.9, time.Second},
	{"zscore", "shift", 0.95, 0.9, time.Second},
	{"flatline", "flatline", 0.9, 0.9, 30 * time.Second},
	{"deadman", "dropout", 0.95, 0.95, 10 * time.Second},
}

func evalCheck(t *testing.T, seed uint64, hours int) {
	dets := evalDetectors()
	start := time.Now()
	data := evalRun(t, seed, hours, dets)
	took := time.Since(start)
	scores := evalScore(data, dets)
	if data.late != 0 {
		t.Errorf("seed %d: %d readings late for the detectors", seed, data.late)
	}
	if testing.Verbose() {
		fmt.Printf("\nseed %d: %d h of event time, %d readings, %d labels, %v\n\n%s\n", seed, hours, data.readings, len(data.labels), took.Round(time.Millisecond), evalReport(scores))
	}
	byName := map[string]*detScore{}
	for _, s := range scores {
		byName[s.det.spec.Name] = s
	}
	for _, f := range evalFloors {
		s := byName[f.det]
		ks := s.kinds[f.kind]
		r, p, d := ks.recall(), s.precision(), ks.quantile(0.95)
		if !(r >= f.recall && p >= f.precision) {
			t.Errorf("seed %d: %s on %s: recall %.3f (floor %.2f), precision %.3f (floor %.2f)", seed, f.det, f.kind, r, f.recall, p, f.precision)
		}
		if d > f.p95.Milliseconds() {
			t.Errorf("seed %d: %s on %s: p95 delay %s, want at most %v", seed, f.det, f.kind, secs(d), f.p95)
		}
	}
}

func TestDetectorEval(t *testing.T) {
	seed := evalSeed
	if s := os.Getenv("EDGED_EVAL_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("EDGED_EVAL_SEED: %v", err)
		}
		seed = n
	}
	evalCheck(t, seed, evalHours)
	if os.Getenv("EDGED_EVAL_LONG") != "" {
		for _, s := range []uint64{3, 4, 5} {
			evalCheck(t, s, 24)
		}
	}
}

// TestEvalParameterSweep prints the grid the parameters were chosen from, on
// the tuning seed (EDGED_EVAL_SWEEP=1; about a minute).
func TestEvalParameterSweep(t *testing.T) {
	if os.Getenv("EDGED_EVAL_SWEEP") == "" {
		t.Skip("set EDGED_EVAL_SWEEP=1 to run the parameter sweep")
	}
	var dets []evalDet
	add := func(s cep.Spec, targets []string, tol time.Duration) {
		s.Name = specText(s)
		dets = append(dets, evalDet{s, targets, tol})
	}
	for _, w := range []time.Duration{15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute} {
		for _, sg := range []float64{4, 6, 8} {
			for _, tol := range []float64{0, 5, 10} {
				add(cep.Spec{Type: "mad", Window: w, Sigma: sg, Warmup: int(w.Seconds()), Tolerance: cep.Tolerance{Value: tol}}, valueKinds, w)
				add(cep.Spec{Type: "zscore", Window: w, Sigma: sg, Warmup: int(w.Seconds()), Tolerance: cep.Tolerance{Value: tol}}, valueKinds, w)
			}
		}
	}
	for _, r := range []float64{2, 5, 10, 20} {
		add(cep.Spec{Type: "rate", MaxRate: r}, valueKinds, 10*time.Second)
	}
	for _, d := range []time.Duration{10 * time.Second, 30 * time.Second} {
		for _, tol := range []float64{0.001, 0.05} {
			add(cep.Spec{Type: "flatline", Duration: d, Tolerance: cep.Tolerance{Value: tol}}, []string{"flatline"}, d)
		}
	}
	for _, d := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second} {
		add(cep.Spec{Type: "deadman", Duration: d}, []string{"dropout"}, d)
	}
	seed := tuneSeed
	data := evalRun(t, seed, evalHours, dets)
	fmt.Printf("seed %d\n| detector | precision | explained | %s |\n", seed, strings.Join(simulate.KindNames, " | "))
	for _, s := range evalScore(data, dets) {
		fmt.Printf("| %s | %s | %s |", s.det.spec.Name, pct(s.precision()), pct(s.explained()))
		for _, k := range simulate.KindNames {
			ks := s.kinds[k]
			fmt.Printf(" %s %s |", pct(ks.recall()), secs(ks.quantile(0.5)))
		}
		fmt.Println()
	}
}
