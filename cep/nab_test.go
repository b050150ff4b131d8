package cep_test

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/cep"
	"github.com/edged/edged/internal/simulate"
)

// The detector benchmark (issue 19): every detector, as configured, on
// labelled data, scored the way the Numenta Anomaly Benchmark (NAB) scores
// detectors. BENCHMARKS.md section "Detectors on labelled data, scored
// like NAB" holds the report of
//
//	make eval-detectors          # = scripts/eval-detectors.sh
//
// which runs go test ./cep -run TestNABEval -v with EDGED_SKAB set to a
// copy of the SKAB data set (github.com/waico/SKAB, the data directory;
// 4 MB, not shipped with edged). Without it the SKAB part is skipped with
// a SKIP line and the simulator part runs alone.
//
// # Data
//
// SKAB: 34 runs of a water pump test bed with a valve closed, a rotor
// unbalanced, cavitation and so on (valve1, valve2, other), one anomaly
// segment each, labelled per reading, plus the anomaly-free run; 8
// channels a run (vibration, current, pressure, temperatures, voltage,
// flow), one reading a second. Each channel is a key; a run's detections
// are the firing alerts of any of its keys, as an engineer watching the
// pump would see them.
//
// Simulator: internal/simulate, four signals (a sine with noise, a random
// walk, white noise, and a random walk read by a coarse sensor: rounded
// to 0.5), 4 sensors each, one reading a second for 4 hours, an anomaly
// every 20 minutes on one of them (spike, drift, shift or flatline, as
// drawn), with the labels the generator keeps; seeds 1 and 2. Each sensor
// is a series.
//
// # Scoring (NAB)
//
// As NAB's sweeper (numenta/NAB nab/sweeper.py): each label gets an
// anomaly window of 10% of the series' length divided by its number of
// labels, centred on the label's first reading; overlapping windows
// merge. A window marks an anomaly's start, as NAB's do: a detection
// later in a long anomaly (SKAB's run for minutes) is a false positive. A detection is a firing alert, at the row of
// the reading it fired on. The first detection in a window scores
// 2*sigmoid(-5*p) - 1 scaled to 1 at the window's start (p: the position
// in the window, -1 at its start, 0 at its end), so early detection is
// rewarded; later ones in the same window count nothing. A window without
// detection costs A_fn. A detection outside every window costs A_fp, less
// when it is just after a window (the same sigmoid of the distance past
// it). Rows in the probationary period (the first 15%, at most 750) are
// not scored: the detectors learn there. Normalized: 100 * (score - null)
// / (perfect - null) over all series, where null is the score of a
// detector that never fires (every window missed) and perfect detects
// every window at its start with no false positive. Profiles: standard
// (A_tp 1, A_fp 0.11, A_fn 1), reward low FP (A_fp 0.22), reward low FN
// (A_fn 2).
//
// # Detectors
//
// As a user would configure them without seeing the labels: anomaly with
// no parameters; zscore and mad with their documented defaults and the
// windows of the stable core's example; rate, threshold, range, flatline
// and deadman set the way an engineer sets them from a stretch of normal
// operation: from the probationary period of each series (the largest
// change per second seen, times 2; the range seen, widened by 10% or
// 50%; a series stuck for 100 sampling intervals; silent for 10).
// pattern needs conditions written for the process and is not included.

// nabProfile is a NAB cost matrix.
type nabProfile struct {
	name           string
	tp, fp, fn     float64
	normalizedName string
}

var nabProfiles = []nabProfile{
	{"standard", 1, 0.11, 1, "NAB standard"},
	{"reward_low_fp", 1, 0.22, 1, "low FP"},
	{"reward_low_fn", 1, 0.11, 2, "low FN"},
}

// nabWindow is an anomaly window: rows lo..hi, both inclusive.
type nabWindow struct{ lo, hi int }

// nabLabel is a labelled anomaly: rows first..last, both inclusive, and
// its kind when known.
type nabLabel struct {
	first, last int
	kind        string
}

// nabWindows builds the anomaly windows of n rows with labels, as NAB's
// labeler does: 10% of the rows, shared among the labels, centred on each
// label's first row, merged when they overlap. As in NAB, a window marks
// the start of an anomaly: a detection later in a long anomaly (SKAB's
// last several minutes) is a false positive.
func nabWindows(n int, labels []nabLabel) []nabWindow {
	if len(labels) == 0 {
		return nil
	}
	width := int(0.1 * float64(n) / float64(len(labels)))
	var ws []nabWindow
	for _, l := range labels {
		w := nabWindow{max(0, l.first-width/2), min(n-1, l.first+width/2)}
		if k := len(ws); k > 0 && w.lo <= ws[k-1].hi {
			ws[k-1].hi = max(ws[k-1].hi, w.hi)
			continue
		}
		ws = append(ws, w)
	}
	return ws
}

func scaledSigmoid(pos float64) float64 {
	if pos >= 3 {
		return -1
	}
	return 2/(1+math.Exp(5*pos)) - 1
}

// nabResult is one detector's score on one series under one profile.
type nabResult struct {
	score, null, perfect float64
	windows, found, fp   int
}

func (r *nabResult) add(o nabResult) {
	r.score += o.score
	r.null += o.null
	r.perfect += o.perfect
	r.windows += o.windows
	r.found += o.found
	r.fp += o.fp
}

// normalized is NAB's normalized score: 0 never firing, 100 perfect.
func (r nabResult) normalized() float64 {
	if r.perfect == r.null {
		return math.NaN()
	}
	return 100 * (r.score - r.null) / (r.perfect - r.null)
}

// nabScore scores detections (rows, ascending, without repeats) on n rows
// with the windows, as nab/sweeper.py does at a threshold.
func nabScore(n int, windows []nabWindow, detections []int, p nabProfile) nabResult {
	prob := min(int(math.Floor(0.15*float64(n))), 750)
	maxTP := scaledSigmoid(-1)
	var res nabResult
	best := make([]float64, len(windows))
	hit := make([]bool, len(windows))
	for i, w := range windows {
		if w.hi >= prob { // a window wholly in the probationary period is not scored
			res.windows++
			res.null -= p.fn
			res.perfect += p.tp
		}
		best[i] = math.Inf(-1)
	}
	for _, d := range detections {
		if d < prob {
			continue
		}
		// The window holding d, or the last one before it.
		j := sort.Search(len(windows), func(j int) bool { return windows[j].lo > d }) - 1
		if j >= 0 && d <= windows[j].hi {
			w := windows[j]
			width := float64(w.hi - w.lo + 1)
			pos := -float64(w.hi-d+1) / width
			best[j] = max(best[j], scaledSigmoid(pos)*p.tp/maxTP)
			hit[j] = true
			continue
		}
		res.fp++
		pos := 3.0
		if j >= 0 {
			w := windows[j]
			pos = float64(d-w.hi) / float64(max(1, w.hi-w.lo))
		}
		res.score += scaledSigmoid(pos) * p.fp
	}
	for i, w := range windows {
		if w.hi < prob {
			continue
		}
		if hit[i] {
			res.found++
			res.score += best[i]
		} else {
			res.score -= p.fn
		}
	}
	return res
}

// TestNABScore checks the scorer against hand-computed cases.
func TestNABScore(t *testing.T) {
	std := nabProfiles[0]
	ws := nabWindows(1000, []nabLabel{{500, 500, ""}})
	if len(ws) != 1 || ws[0] != (nabWindow{450, 550}) {
		t.Fatalf("windows %v", ws)
	}
	f := func(dets []int, want float64) {
		t.Helper()
		r := nabScore(1000, ws, dets, std)
		if math.Abs(r.score-want) > 1e-9 {
			t.Errorf("detections %v: score %v, want %v", dets, r.score, want)
		}
	}
	f(nil, -1)                                               // missed
	f([]int{450}, 1)                                         // at the window's start: perfect
	f([]int{100}, -1)                                        // in the probationary period: not scored
	f([]int{300, 450, 500}, -0.11+1)                         // a false positive before any window, then found
	f([]int{550}, scaledSigmoid(-1.0/101)/scaledSigmoid(-1)) // at its end: next to nothing
	f([]int{450, 650}, 1+0.11*scaledSigmoid(1))              // one window width after: almost a full FP
	r := nabResult{null: -1, perfect: 1, score: 0}
	if r.normalized() != 50 {
		t.Errorf("normalized %v", r.normalized())
	}
	// Overlapping windows merge; a long label does not stretch its window.
	if ws := nabWindows(1000, []nabLabel{{500, 500, ""}, {520, 700, ""}}); len(ws) != 1 || ws[0] != (nabWindow{475, 545}) {
		t.Errorf("merged windows %v", ws)
	}
}

// nabSeries is one labelled series: rows of readings of one or more keys
// at the same times.
type nabSeries struct {
	set    string // data set: "SKAB" or "simulator"
	name   string
	keys   []string
	ts     []int64     // event time of each row, Unix ms
	values [][]float64 // values[k][row]
	labels []nabLabel
}

// probRows is the series' probationary period in rows.
func (s *nabSeries) probRows() int { return min(int(math.Floor(0.15*float64(len(s.ts)))), 750) }

// nabDetector is one detector under evaluation: its spec for a key of a
// series.
type nabDetector struct {
	name, config string
	spec         func(s *nabSeries, k int) cep.Spec
}

func fixed(spec cep.Spec) func(*nabSeries, int) cep.Spec {
	return func(*nabSeries, int) cep.Spec { return spec }
}

// nabDetectors are the detectors under evaluation, as configured.
func nabDetectors() []nabDetector {
	dets := []nabDetector{
		{"anomaly", "defaults", fixed(cep.Spec{Type: "anomaly"})},
		{"zscore", "window 1d, warmup 100 (sigma 4)", fixed(cep.Spec{Type: "zscore", Window: 24 * time.Hour, Warmup: 100})},
		{"zscore", "window 1h (sigma 4)", fixed(cep.Spec{Type: "zscore", Window: time.Hour})},
		{"zscore-ewma", "alpha 0.01 (sigma 4)", fixed(cep.Spec{Type: "zscore", Alpha: 0.01})},
		{"mad", "window 1d (sigma 6)", fixed(cep.Spec{Type: "mad", Window: 24 * time.Hour})},
		{"mad", "window 1h (sigma 6)", fixed(cep.Spec{Type: "mad", Window: time.Hour})},
		{"rate", "max_rate 2 x the largest seen in normal operation", func(s *nabSeries, k int) cep.Spec {
			r := 0.0
			for i := 1; i < s.probRows(); i++ {
				if dt := float64(s.ts[i]-s.ts[i-1]) / 1000; dt > 0 {
					r = max(r, math.Abs(s.values[k][i]-s.values[k][i-1])/dt)
				}
			}
			return cep.Spec{Type: "rate", MaxRate: max(2*r, 1e-9)}
		}},
		{"threshold", "above/below the normal range + 10% of it", func(s *nabSeries, k int) cep.Spec {
			lo, hi := normalRange(s, k)
			m := 0.1 * (hi - lo)
			return cep.Spec{Type: "threshold", Above: ptr(hi + m), Below: ptr(lo - m)}
		}},
		{"range", "min/max: the normal range + 50% of it", func(s *nabSeries, k int) cep.Spec {
			lo, hi := normalRange(s, k)
			m := 0.5 * (hi - lo)
			return cep.Spec{Type: "range", Min: ptr(lo - m), Max: ptr(hi + m)}
		}},
		{"flatline", "duration 100 sampling intervals, tolerance 0", func(s *nabSeries, k int) cep.Spec {
			return cep.Spec{Type: "flatline", Duration: 100 * s.interval()}
		}},
		{"deadman", "duration 10 sampling intervals", func(s *nabSeries, k int) cep.Spec {
			return cep.Spec{Type: "deadman", Duration: 10 * s.interval()}
		}},
	}
	return dets
}

func ptr(v float64) *float64 { return &v }

// normalRange is the range of key k's values in the probationary period.
func normalRange(s *nabSeries, k int) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for i := range s.probRows() {
		lo, hi = min(lo, s.values[k][i]), max(hi, s.values[k][i])
	}
	return lo, hi
}

// interval is the series' median sampling interval.
func (s *nabSeries) interval() time.Duration {
	d := make([]int64, 0, len(s.ts))
	for i := 1; i < len(s.ts); i++ {
		d = append(d, s.ts[i]-s.ts[i-1])
	}
	if len(d) == 0 {
		return time.Second
	}
	slices.Sort(d)
	return time.Duration(max(1, d[len(d)/2])) * time.Millisecond
}

// detect runs det on every key of s as the pipeline does (readings in
// order, timers when due) and returns the rows of its firing alerts, and
// how many there were.
func detect(t testing.TB, det nabDetector, s *nabSeries) []int {
	rows := map[int]bool{}
	for k, key := range s.keys {
		spec := det.spec(s, k)
		spec.Name = det.name
		d, err := cep.New(spec)
		if err != nil {
			panic(fmt.Sprintf("%s on %s: %v", det.name, s.name, err))
		}
		st := d.NewState()
		var out cep.Emitter
		var ev cep.Event
		collect := func(row int) {
			for _, a := range out.Alerts {
				if a.State == cep.Firing {
					rows[row] = true
				}
			}
			out.Alerts = out.Alerts[:0]
		}
		for i, ts := range s.ts {
			v := s.values[k][i]
			if math.IsNaN(v) { // no reading (a dropout)
				continue
			}
			for nt := st.NextTimer(); nt < ts; nt = st.NextTimer() {
				st.Advance(key, nt, &out)
				// A timer alert belongs to the last row at or before it.
				collect(sort.Search(len(s.ts), func(j int) bool { return s.ts[j] > nt }) - 1)
			}
			ev = cep.Event{Key: key, Value: v, TS: ts}
			st.Observe(&ev, &out)
			collect(i)
		}
	}
	out := make([]int, 0, len(rows))
	for r := range rows {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// loadSKAB reads the SKAB runs under dir (a SKAB checkout or its data
// directory).
func loadSKAB(t testing.TB, dir string) []nabSeries {
	t.Helper()
	if fi, err := os.Stat(filepath.Join(dir, "data")); err == nil && fi.IsDir() {
		dir = filepath.Join(dir, "data")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.csv"))
	slices.Sort(files)
	var out []nabSeries
	for _, f := range files {
		s, err := readSKAB(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		rel, _ := filepath.Rel(dir, f)
		s.name = rel
		out = append(out, s)
	}
	return out
}

// readSKAB reads one SKAB run: "datetime;ch1;...;ch8;anomaly;changepoint"
// with times in "2006-01-02 15:04:05" (the anomaly-free run has no label
// columns).
func readSKAB(path string) (nabSeries, error) {
	s := nabSeries{set: "SKAB"}
	f, err := os.Open(path)
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var head []string
	anomaly := -1
	inLabel := false
	for row := -1; sc.Scan(); row++ {
		cols := strings.Split(strings.TrimSpace(sc.Text()), ";")
		if row == -1 {
			head = cols
			for i, c := range cols[1:] {
				if c == "anomaly" {
					anomaly = i + 1
					break
				}
				s.keys = append(s.keys, c)
			}
			s.values = make([][]float64, len(s.keys))
			continue
		}
		if len(cols) != len(head) {
			return s, fmt.Errorf("row %d: %d columns, want %d", row+1, len(cols), len(head))
		}
		tm, err := time.Parse("2006-01-02 15:04:05", cols[0])
		if err != nil {
			return s, fmt.Errorf("row %d: %v", row+1, err)
		}
		s.ts = append(s.ts, tm.UnixMilli())
		for k := range s.keys {
			v, err := strconv.ParseFloat(cols[k+1], 64)
			if err != nil {
				return s, fmt.Errorf("row %d: %v", row+1, err)
			}
			s.values[k] = append(s.values[k], v)
		}
		if anomaly > 0 {
			a := cols[anomaly] == "1" || cols[anomaly] == "1.0"
			switch {
			case a && !inLabel:
				s.labels = append(s.labels, nabLabel{row, row, ""})
			case a:
				s.labels[len(s.labels)-1].last = row
			}
			inLabel = a
		}
	}
	return s, sc.Err()
}

// simSeries generates the simulator's labelled series.
func simSeries(t testing.TB, seed uint64) []nabSeries {
	t.Helper()
	const (
		sensors = 4
		hours   = 4
		t0      = 1700000000000
	)
	type setup struct {
		name    string
		cfg     simulate.Config
		quantum float64 // the sensor's resolution, 0 for the generator's own
	}
	kinds := []simulate.Kind{simulate.Spike, simulate.Drift, simulate.Shift, simulate.Flatline}
	setups := []setup{
		{"sine", simulate.Config{Signal: simulate.Sine, Period: 10 * time.Minute, Amplitude: 10, Offset: 20, Noise: 0.2}, 0},
		{"walk", simulate.Config{Signal: simulate.Walk, Period: 5 * time.Minute, Amplitude: 5, Offset: 50, Noise: 0.1}, 0},
		{"noise", simulate.Config{Signal: simulate.Noise, Amplitude: 2, Offset: 100}, 0},
		{"coarse", simulate.Config{Signal: simulate.Walk, Period: 20 * time.Minute, Amplitude: 2, Offset: 20, Noise: 0.1}, 0.5},
	}
	var out []nabSeries
	for _, su := range setups {
		c := su.cfg
		c.Prefix, c.Sensors, c.Rate = su.name, sensors, 1
		c.Anomalies, c.AnomalyEvery = kinds, 20*time.Minute
		c.Seed, c.Start = seed, t0
		g, err := simulate.New(c)
		if err != nil {
			t.Fatal(err)
		}
		series := make([]nabSeries, sensors)
		index := map[string]int{}
		for i, n := range g.Names() {
			series[i] = nabSeries{set: "simulator", name: fmt.Sprintf("%s seed %d", n, seed), keys: []string{n}, values: [][]float64{nil}}
			index[n] = i
		}
		var step []simulate.Reading
		for range hours * 3600 {
			step = g.Next(step[:0])
			for _, r := range step {
				s := &series[index[r.Sensor]]
				v := r.Value
				if su.quantum > 0 {
					v = math.Round(v/su.quantum) * su.quantum
				}
				s.ts = append(s.ts, r.TS)
				s.values[0] = append(s.values[0], v)
			}
		}
		labels := g.Labels(nil)
		if l, ok := g.Active(); ok {
			labels = append(labels, l)
		}
		for _, l := range labels {
			s := &series[index[l.Sensor]]
			first := sort.Search(len(s.ts), func(j int) bool { return s.ts[j] >= l.Start })
			last := sort.Search(len(s.ts), func(j int) bool { return s.ts[j] > l.End }) - 1
			if first <= last {
				s.labels = append(s.labels, nabLabel{first, last, l.Kind})
			}
		}
		out = append(out, series...)
	}
	return out
}

// nabData is the evaluation's data: SKAB when EDGED_SKAB names it, and the
// simulator's series.
func nabData(t testing.TB) []nabSeries {
	var data []nabSeries
	if dir := os.Getenv("EDGED_SKAB"); dir != "" {
		data = loadSKAB(t, dir)
		if len(data) == 0 {
			t.Fatalf("EDGED_SKAB=%s: no SKAB runs (*/*.csv) found", dir)
		}
	} else {
		fmt.Println("SKIP SKAB: EDGED_SKAB is not set (make eval-detectors fetches it; see scripts/eval-detectors.sh)")
	}
	for _, seed := range []uint64{1, 2} {
		data = append(data, simSeries(t, seed)...)
	}
	return data
}

// nabRun scores every detector on every series: results[d][set][profile].
func nabRun(t testing.TB, dets []nabDetector, data []nabSeries) []map[string][]nabResult {
	out := make([]map[string][]nabResult, len(dets))
	for i, det := range dets {
		out[i] = map[string][]nabResult{}
		for j := range data {
			s := &data[j]
			rows := detect(t, det, s)
			ws := nabWindows(len(s.ts), s.labels)
			for _, set := range []string{s.set, "all"} {
				if out[i][set] == nil {
					out[i][set] = make([]nabResult, len(nabProfiles))
				}
				for p, prof := range nabProfiles {
					out[i][set][p].add(nabScore(len(s.ts), ws, rows, prof))
				}
			}
		}
	}
	return out
}

// nabDiagnose prints, per detector, the recall per kind of anomaly (the
// simulator's labels) and where the false positives are: during a
// labelled anomaly (after its window) or outside any.
func nabDiagnose(dets []nabDetector, data []nabSeries) {
	for _, det := range dets {
		found, total := map[string]int{}, map[string]int{}
		fpIn, fpOut := map[string]int{}, map[string]int{}
		for j := range data {
			s := &data[j]
			rows := detect(nil, det, s)
			ws := nabWindows(len(s.ts), s.labels)
			prob := s.probRows()
			for _, l := range s.labels {
				if l.first < prob {
					continue
				}
				k := s.set + "/" + l.kind
				total[k]++
				for _, w := range ws {
					if w.lo <= l.first && l.first <= w.hi && slices.ContainsFunc(rows, func(r int) bool { return w.lo <= r && r <= w.hi }) {
						found[k]++
						break
					}
				}
			}
			for _, r := range rows {
				if r < prob || slices.ContainsFunc(ws, func(w nabWindow) bool { return w.lo <= r && r <= w.hi }) {
					continue
				}
				if slices.ContainsFunc(s.labels, func(l nabLabel) bool { return l.first <= r && r <= l.last }) {
					fpIn[s.set]++
				} else {
					fpOut[s.set]++
				}
			}
		}
		fmt.Printf("%s (%s):", det.name, det.config)
		keys := make([]string, 0, len(total))
		for k := range total {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Printf(" %s %d/%d", k, found[k], total[k])
		}
		for set := range fpIn {
			fmt.Printf("; %s FP during an anomaly %d", set, fpIn[set])
		}
		for set := range fpOut {
			fmt.Printf("; %s FP outside %d", set, fpOut[set])
		}
		fmt.Println()
	}
}

// TestNABEval prints the benchmark's table (with -v) and checks the
// targets of issue 19 on it: anomaly with its defaults beats every other
// detector, and mad and zscore with their defaults do not score below
// never firing.
func TestNABEval(t *testing.T) {
	if testing.Short() {
		t.Skip("the detector benchmark takes a while")
	}
	data := nabData(t)
	dets := nabDetectors()
	start := time.Now()
	res := nabRun(t, dets, data)
	sets := []string{"all"}
	counts := map[string]int{}
	for _, s := range data {
		if counts[s.set] == 0 {
			sets = append(sets, s.set)
		}
		counts[s.set]++
	}
	if testing.Verbose() {
		fmt.Printf("\n%d series (", len(data))
		for i, set := range sets[1:] {
			if i > 0 {
				fmt.Print(", ")
			}
			fmt.Printf("%s %d", set, counts[set])
		}
		fmt.Printf("), %v\n\n", time.Since(start).Round(time.Millisecond))
		fmt.Print("| detector | configured | ")
		for _, set := range sets {
			fmt.Printf("%s: NAB standard | ", set)
		}
		fmt.Print("all: low FP | all: low FN | ")
		for _, set := range sets[1:] {
			fmt.Printf("%s: windows found, false positives | ", set)
		}
		fmt.Print("\n|" + strings.Repeat(" --- |", 2+2*len(sets)+1) + "\n")
		for i, d := range dets {
			fmt.Printf("| %s | %s | ", d.name, d.config)
			for _, set := range sets {
				fmt.Printf("%.1f | ", res[i][set][0].normalized())
			}
			a := res[i]["all"]
			fmt.Printf("%.1f | %.1f | ", a[1].normalized(), a[2].normalized())
			for _, set := range sets[1:] {
				r := res[i][set][0]
				fmt.Printf("%d of %d, %d | ", r.found, r.windows, r.fp)
			}
			fmt.Println()
		}
	}
	if os.Getenv("EDGED_NAB_DIAGNOSE") != "" {
		nabDiagnose(dets, data)
	}
	for _, set := range sets {
		best := res[0][set][0].normalized()
		for i, d := range dets[1:] {
			if got := res[i+1][set][0].normalized(); got >= best {
				t.Errorf("%s: %s (%s) scores %.1f, anomaly %.1f: anomaly must score best", set, d.name, d.config, got, best)
			}
			if (d.name == "zscore" || d.name == "mad") && res[i+1][set][0].normalized() < 0 {
				t.Errorf("%s: %s (%s) scores %.1f, below never firing", set, d.name, d.config, res[i+1][set][0].normalized())
			}
		}
	}
}
