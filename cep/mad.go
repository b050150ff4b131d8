package cep

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

func init() { register("mad", newMAD) }

// madScale makes the MAD of normally distributed data an estimate of its
// standard deviation.
const madScale = 1.4826

// mad is a Hampel filter: it fires while a value is further from the
// median of its key's recent readings than Sigma (default 6) times the
// scaled median absolute deviation: |v - median| > Sigma * 1.4826 * MAD.
// The baseline is the readings of the last Window of event time, at most
// maxWindowReadings of them. Median and MAD ignore outliers (up to half
// the window), so unlike zscore's mean and stddev they are not dragged by
// the spikes they should flag.
//
// A reading is judged against the window before it joins it, then joins
// it, firing or not. The first Warmup readings of a key only fill the
// window, and the window needs at least 2 readings to judge.
//
// Quantized and flat series: when more than half the window holds the
// same value the MAD is 0. The spread is then the median deviation of the
// readings that differ from the median (the typical size of the series'
// excursions), and in any case at least the floor learned from the series
// (spreadFloor: its quantization step, 0.1% of its level). So the usual
// excursions of a mostly constant series are not outliers, and a change
// away from a constant value is a level change judged against the floor,
// not an infinite deviation. Tolerance, when set, is the smallest
// deviation that may fire, in the series' units or relative to the median
// ("2%").
//
// The alert's score is scoreOf(|v - median| / (1.4826 * MAD)); MinScore,
// when set, is the smallest score that fires. Once firing, the alert
// resolves after ResolveCount (default 10) readings in a row back within
// the limit, so a burst of outliers is one alert. Reason: "value 31.2 is
// 10.9 from the median 20.3, limit 3.56 (3 x 1.4826 x MAD 0.8 over the
// last 10m0s, 120 readings)".
//
// The window keeps its readings in time order (a ring, for eviction) and
// in value order (a sorted slice, rebuilt on restore): the median is read
// off the middle, the MAD found by binary search, and a reading goes in
// and out with a binary search and a copy, so a reading costs O(log n)
// comparisons plus an O(n) memory move, and no allocation once the window
// is full.
type mad struct {
	name     string
	sigma    float64
	window   int64 // ms
	warmup   int64
	tol      Tolerance
	minScore float64
	resolve  int64
	renot    time.Duration
}

func newMAD(s Spec) (Detector, error) {
	switch {
	case s.Sigma < 0 || math.IsNaN(s.Sigma) || math.IsInf(s.Sigma, 0):
		return nil, errors.New("mad needs sigma > 0 (or none for the default 6)")
	case s.Window <= 0:
		return nil, errors.New("mad needs window > 0 (its baseline, in event time)")
	case s.Window < time.Millisecond:
		return nil, errors.New("mad: window must be at least 1ms")
	case s.Alpha != 0:
		return nil, errors.New("mad takes a window, not alpha")
	case s.Warmup < 0:
		return nil, errors.New("mad: warmup must not be negative")
	case s.Renotify < 0:
		return nil, errors.New("mad: renotify must not be negative")
	case s.ResolveCount < 0:
		return nil, errors.New("mad: resolve_count must not be negative")
	}
	if err := s.Tolerance.check("mad"); err != nil {
		return nil, err
	}
	if err := checkMinScore("mad", s.MinScore); err != nil {
		return nil, err
	}
	sigma := s.Sigma
	if sigma == 0 {
		sigma = defaultMADSigma
	}
	return &mad{name: s.Name, sigma: sigma, window: s.Window.Milliseconds(), warmup: int64(s.Warmup), tol: s.Tolerance,
		minScore: s.MinScore, resolve: resolveCount(s.ResolveCount), renot: s.Renotify}, nil
}

// defaultMADSigma is mad's Sigma when none is configured. Hampel filters
// that clean data use 3; an alert on real data, whose tails are heavier
// than a normal distribution's, needs more (BENCHMARKS.md: 3 and 4 score
// below never firing on the pump test bed, 5 and 6 above).
const defaultMADSigma = 6

func (m *mad) Name() string { return m.name }

func (m *mad) Fingerprint() string { return "mad/1" }

func (m *mad) NewState() State { return &madState{d: m} }

type madState struct {
	d *mad
	Lifecycle
	calm   int64       // readings in a row back within bounds while firing
	step   stepTracker // the series' quantization step
	seen   int64       // readings of the key so far
	win    sampleRing  // the window, oldest first
	sorted []float64   // the window's values, ascending; not encoded
}

func (s *madState) Observe(ev *Event, out *Emitter) {
	d, v := s.d, ev.Value
	if !finite(v) {
		return
	}
	for s.win.n > 0 && s.win.oldest().ts <= ev.TS-d.window {
		s.drop(s.win.pop().v)
	}
	if n := len(s.sorted); s.seen >= d.warmup && n >= 2 {
		med := median(s.sorted)
		dev := math.Abs(v - med)
		spread, zeroMAD := robustSpread(s.sorted, med)
		floor := spreadFloor(med, s.step.step)
		scale := max(madScale*spread, floor)
		z := dev / scale
		score := scoreOf(z)
		limit := d.sigma * scale
		cond := dev > limit && dev > d.tol.at(med) && score >= d.minScore
		holds := debounce(&s.Lifecycle, &s.calm, cond, d.resolve)
		if emits(&s.Lifecycle, holds, ev.TS, d.renot) {
			s.Set(holds, d.name, ev.Key, ev.TS, v, score, d.reason(holds, v, med, spread, zeroMAD, floor, limit, n), d.renot, out)
		}
	}
	s.step.add(v)
	s.seen++
	if s.win.n >= maxWindowReadings {
		s.drop(s.win.pop().v)
	}
	s.win.push(sample{ts: ev.TS, v: v})
	i, _ := slices.BinarySearch(s.sorted, v)
	s.sorted = append(s.sorted, 0)
	copy(s.sorted[i+1:], s.sorted[i:])
	s.sorted[i] = v
}

// drop removes one v from the sorted values.
func (s *madState) drop(v float64) {
	i, found := slices.BinarySearch(s.sorted, v)
	if !found {
		return // cannot happen: every value in the ring is in sorted
	}
	copy(s.sorted[i:], s.sorted[i+1:])
	s.sorted = s.sorted[:len(s.sorted)-1]
}

// median returns the median of ascending a (not empty).
func median(a []float64) float64 {
	n := len(a)
	if n%2 == 1 {
		return a[n/2]
	}
	lo, hi := a[n/2-1], a[n/2]
	return lo + (hi-lo)/2
}

// medianDeviation returns the median of |x - med| over ascending a (not
// empty), where med is a's median, in O(log n). The deviations of the
// values below med, read leftwards from med, ascend (lo(i) = med -
// a[r-1-i]), and so do those of the values from med on, read rightwards
// (hi(j) = a[r+j] - med): the median deviation is a k-th smallest of the
// union of two sorted runs, found by binary search on how many of the k+1
// smallest come from the left run.
func medianDeviation(a []float64, med float64) float64 {
	r, _ := slices.BinarySearch(a, med) // first value >= med
	return deviationMedian(a, med, r, r)
}

// robustSpread returns the MAD of ascending a around its median med, or,
// when that is 0 (more than half of a equals med), the median deviation of
// the values that differ from med, with zeroMAD set; 0 if all are equal.
func robustSpread(a []float64, med float64) (spread float64, zeroMAD bool) {
	r, _ := slices.BinarySearch(a, med) // first value >= med
	if m := deviationMedian(a, med, r, r); m > 0 {
		return m, false
	}
	// The values equal to med are a[r:e].
	e := r + sort.SearchFloat64s(a[r:], math.Nextafter(med, math.Inf(1)))
	if r == 0 && e == len(a) {
		return 0, true
	}
	return deviationMedian(a, med, r, e), true
}

// deviationMedian returns the median of |x - med| over the values of
// ascending a below lEnd (all <= med) and from rStart on (all >= med),
// where lEnd <= rStart, in O(log n). See medianDeviation.
func deviationMedian(a []float64, med float64, lEnd, rStart int) float64 {
	n := lEnd + len(a) - rStart
	nl, nh := lEnd, len(a)-rStart
	lo := func(i int) float64 { return med - a[lEnd-1-i] }
	hi := func(j int) float64 { return a[rStart+j] - med }
	k := (n - 1) / 2 // 0-based rank of the (lower) median deviation
	// The smallest i (taken from the left run, with j = k+1-i from the
	// right) such that the left run's next is not below the right run's
	// last taken.
	i, end := max(0, k+1-nh), min(k+1, nl)
	for i < end {
		m := int(uint(i+end) >> 1)
		if j := k + 1 - m; j > 0 && lo(m) < hi(j-1) {
			i = m + 1
		} else {
			end = m
		}
	}
	j := k + 1 - i
	kth := math.Inf(-1)
	if i > 0 {
		kth = lo(i - 1)
	}
	if j > 0 {
		kth = max(kth, hi(j-1))
	}
	if n%2 == 1 {
		return kth
	}
	// The next deviation in order is the smaller of the two runs' next.
	next := math.Inf(1)
	if i < nl {
		next = lo(i)
	}
	if j < nh {
		next = min(next, hi(j))
	}
	return kth + (next-kth)/2
}

func (m *mad) reason(firing bool, v, med, spread float64, zeroMAD bool, floor, limit float64, n int) string {
	lim := FormatValue(limit)
	if tol := m.tol.at(med); tol > limit {
		lim = FormatValue(tol) + " (the tolerance " + m.tol.String() + ")"
	}
	var back string
	if !firing && m.resolve > 1 {
		back = fmt.Sprintf("back within bounds for %d readings: ", m.resolve)
	}
	var how string
	switch {
	case spread == 0:
		how = fmt.Sprintf("a level change: the last %v, %d readings, were constant; %s x the spread floor %s", msDuration(m.window), n, FormatValue(m.sigma), FormatValue(floor))
	case madScale*spread < floor:
		how = fmt.Sprintf("%s x the spread floor %s, above 1.4826 x MAD %s, over the last %v, %d readings", FormatValue(m.sigma), FormatValue(floor), FormatValue(spread), msDuration(m.window), n)
	case zeroMAD:
		how = fmt.Sprintf("%s x %s x %s, the median deviation of the readings off the median: MAD 0 over the last %v, %d readings", FormatValue(m.sigma), FormatValue(madScale), FormatValue(spread), msDuration(m.window), n)
	default:
		how = fmt.Sprintf("%s x %s x MAD %s over the last %v, %d readings", FormatValue(m.sigma), FormatValue(madScale), FormatValue(spread), msDuration(m.window), n)
	}
	return fmt.Sprintf("%svalue %s is %s from the median %s, limit %s (%s)",
		back, FormatValue(v), FormatValue(math.Abs(v-med)), FormatValue(med), lim, how)
}

func (s *madState) NextTimer() int64                { return NoTimer }
func (s *madState) Advance(string, int64, *Emitter) {}

// mad states are encoded as version 2: version 1 (before the calm count
// and the step) is still restored, with both starting afresh.
func (s *madState) AppendState(b []byte) []byte {
	b = append(b, 2)
	b = appendLifecycle(b, &s.Lifecycle)
	b = appendI64(b, s.calm)
	b = appendStep(b, &s.step)
	b = appendI64(b, s.seen)
	return appendSamples(b, &s.win)
}

func (s *madState) RestoreState(b []byte) error {
	d := decoder{b: b}
	v := d.versions(1, 2)
	d.lifecycle(&s.Lifecycle)
	s.calm, s.step = 0, stepTracker{}
	if v >= 2 {
		s.calm = d.i64()
		d.stepTracker(&s.step)
	}
	s.seen = d.i64()
	d.samples(&s.win)
	s.sorted = s.sorted[:0]
	for i := 0; i < s.win.n; i++ {
		s.sorted = append(s.sorted, s.win.at(i).v)
	}
	slices.Sort(s.sorted)
	return d.done()
}
