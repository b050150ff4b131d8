package cep

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

func init() { register("mad", newMAD) }

// madScale makes the MAD of normally distributed data an estimate of its
// standard deviation.
const madScale = 1.4826

// mad is a Hampel filter: it fires while a value is further from the
// median of its key's recent readings than Sigma (default 3) times the
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
// When more than half the window holds the same value the MAD is 0 and
// any other value is an outlier; Tolerance, when set, is the smallest
// deviation that may fire, for sensors whose readings are coarsely
// quantized.
//
// It resolves at the first reading back within the limit. Reason: "value
// 31.2 is 10.9 from the median 20.3, limit 3.56 (3 x 1.4826 x MAD 0.8 over
// the last 10m0s, 120 readings)".
//
// The window keeps its readings in time order (a ring, for eviction) and
// in value order (a sorted slice, rebuilt on restore): the median is read
// off the middle, the MAD found by binary search, and a reading goes in
// and out with a binary search and a copy, so a reading costs O(log n)
// comparisons plus an O(n) memory move, and no allocation once the window
// is full.
type mad struct {
	name   string
	sigma  float64
	window int64 // ms
	warmup int64
	tol    float64
	renot  time.Duration
}

func newMAD(s Spec) (Detector, error) {
	switch {
	case s.Sigma < 0 || math.IsNaN(s.Sigma) || math.IsInf(s.Sigma, 0):
		return nil, errors.New("mad needs sigma > 0 (or none for the default 3)")
	case s.Window <= 0:
		return nil, errors.New("mad needs window > 0 (its baseline, in event time)")
	case s.Window < time.Millisecond:
		return nil, errors.New("mad: window must be at least 1ms")
	case s.Alpha != 0:
		return nil, errors.New("mad takes a window, not alpha")
	case s.Warmup < 0:
		return nil, errors.New("mad: warmup must not be negative")
	case !(s.Tolerance >= 0) || math.IsInf(s.Tolerance, 0):
		return nil, errors.New("mad: tolerance must be a number >= 0")
	case s.Renotify < 0:
		return nil, errors.New("mad: renotify must not be negative")
	}
	sigma := s.Sigma
	if sigma == 0 {
		sigma = 3
	}
	return &mad{name: s.Name, sigma: sigma, window: s.Window.Milliseconds(), warmup: int64(s.Warmup), tol: s.Tolerance, renot: s.Renotify}, nil
}

func (m *mad) Name() string { return m.name }

func (m *mad) Fingerprint() string { return "mad/1" }

func (m *mad) NewState() State { return &madState{d: m} }

type madState struct {
	d *mad
	Lifecycle
	seen   int64      // readings of the key so far
	win    sampleRing // the window, oldest first
	sorted []float64  // the window's values, ascending; not encoded
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
		spread := medianDeviation(s.sorted, med)
		limit := d.sigma * madScale * spread
		holds := dev > limit && dev > d.tol
		if emits(&s.Lifecycle, holds, ev.TS, d.renot) {
			s.Set(holds, d.name, ev.Key, ev.TS, v, d.reason(v, med, spread, limit, n), d.renot, out)
		}
	}
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
	n := len(a)
	r, _ := slices.BinarySearch(a, med) // first value >= med
	nl, nh := r, n-r
	lo := func(i int) float64 { return med - a[r-1-i] }
	hi := func(j int) float64 { return a[r+j] - med }
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

func (m *mad) reason(v, med, spread, limit float64, n int) string {
	lim := FormatValue(limit)
	if m.tol > limit {
		lim = FormatValue(m.tol) + " (the tolerance)"
	}
	return fmt.Sprintf("value %s is %s from the median %s, limit %s (%s x %s x MAD %s over the last %v, %d readings)",
		FormatValue(v), FormatValue(math.Abs(v-med)), FormatValue(med), lim,
		FormatValue(m.sigma), FormatValue(madScale), FormatValue(spread), msDuration(m.window), n)
}

func (s *madState) NextTimer() int64                { return NoTimer }
func (s *madState) Advance(string, int64, *Emitter) {}

func (s *madState) AppendState(b []byte) []byte {
	b = append(b, 1)
	b = appendLifecycle(b, &s.Lifecycle)
	b = appendI64(b, s.seen)
	return appendSamples(b, &s.win)
}

func (s *madState) RestoreState(b []byte) error {
	d := decoder{b: b}
	d.version(1)
	d.lifecycle(&s.Lifecycle)
	s.seen = d.i64()
	d.samples(&s.win)
	s.sorted = s.sorted[:0]
	for i := 0; i < s.win.n; i++ {
		s.sorted = append(s.sorted, s.win.at(i).v)
	}
	slices.Sort(s.sorted)
	return d.done()
}
