package sketch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"pgregory.net/rapid"
)

// eps is the slack allowed on top of Alpha for floating-point rounding in
// bucket indexing and interpolation.
const eps = 1e-9

// tb is what the helpers need of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

// exact returns the numpy "linear" quantile of sorted (ascending) and the
// two neighbouring values and weight it interpolates with.
func exact(sorted []float64, q float64) (v, a, b, frac float64) {
	rank := q * float64(len(sorted)-1)
	lo, hi := int(math.Floor(rank)), int(math.Ceil(rank))
	a, b, frac = sorted[lo], sorted[hi], rank-float64(lo)
	if d := b - a; !math.IsInf(d, 0) {
		return a + d*frac, a, b, frac
	}
	return a*(1-frac) + b*frac, a, b, frac // b-a overflows

}

// checkQuantile fails unless s.Quantile(q) is within Alpha of the exact
// linear quantile of sorted, relative to the interpolated magnitudes of the
// neighbouring values; that is relative error Alpha when both neighbours
// have the same sign.
func checkQuantile(t tb, s *Sketch, sorted []float64, q float64) {
	t.Helper()
	got := s.Quantile(q)
	want, a, b, f := exact(sorted, q)
	bound := (Alpha + eps) * ((1-f)*math.Abs(a) + f*math.Abs(b))
	if !(math.Abs(got-want) <= bound) {
		t.Fatalf("Quantile(%v) = %v, exact %v (neighbours %v, %v): error %.4g > bound %.4g (n=%d)",
			q, got, want, a, b, math.Abs(got-want), bound, len(sorted))
	}
}

// checkRelative fails unless s.Quantile(q) has relative error at most
// Alpha+eps against the exact linear quantile of sorted, whose values must
// all have the same sign.
func checkRelative(t tb, s *Sketch, sorted []float64, q float64) {
	t.Helper()
	got := s.Quantile(q)
	want, _, _, _ := exact(sorted, q)
	if rel := math.Abs(got-want) / math.Abs(want); !(rel <= Alpha+eps) {
		t.Fatalf("Quantile(%v) = %v, exact %v: relative error %.6g > %v (n=%d)", q, got, want, rel, Alpha, len(sorted))
	}
}

// checkInvariants fails unless s's internal state is consistent.
func checkInvariants(t tb, s *Sketch) {
	t.Helper()
	sum := s.zero
	for _, st := range []*store{&s.neg, &s.pos} {
		if len(st.counts) != cap(st.counts) || len(st.counts) > MaxBuckets {
			t.Fatalf("store window len %d cap %d", len(st.counts), cap(st.counts))
		}
		for _, c := range st.counts {
			sum += uint64(c)
		}
	}
	if sum != s.count {
		t.Fatalf("count %d, but buckets hold %d", s.count, sum)
	}
}

// bucketMaps returns the non-empty buckets of s by key.
func bucketMaps(s *Sketch) (neg, pos map[int]uint32) {
	m := func(st *store) map[int]uint32 {
		r := map[int]uint32{}
		for j, c := range st.counts {
			if c != 0 {
				r[int(st.off)+j] = c
			}
		}
		return r
	}
	return m(&s.neg), m(&s.pos)
}

// checkSameBuckets fails unless a and b have exactly the same buckets.
func checkSameBuckets(t tb, a, b *Sketch) {
	t.Helper()
	an, ap := bucketMaps(a)
	bn, bp := bucketMaps(b)
	if a.zero != b.zero || a.count != b.count || !maps.Equal(an, bn) || !maps.Equal(ap, bp) {
		t.Fatalf("buckets differ:\nzero %d vs %d, count %d vs %d\nneg %v\nvs  %v\npos %v\nvs  %v",
			a.zero, b.zero, a.count, b.count, an, bn, ap, bp)
	}
	if ea, eb := a.AppendBinary(nil), b.AppendBinary(nil); !bytes.Equal(ea, eb) {
		t.Fatalf("equal buckets but different encodings:\n%x\n%x", ea, eb)
	}
}

func sketchOf(xs ...float64) *Sketch {
	s := new(Sketch)
	for _, x := range xs {
		s.Add(x)
	}
	return s
}

func sortedCopy(xs []float64) []float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s
}

// reference returns xs sorted, with the values a Sketch counts as zero
// replaced by 0.
func reference(xs []float64) []float64 {
	s := sortedCopy(xs)
	for i, x := range s {
		if math.Abs(x) < ZeroThreshold {
			s[i] = 0
		}
	}
	return s
}

func seq(from, to, step float64) []float64 {
	var r []float64
	for x := from; x <= to; x += step {
		r = append(r, x)
	}
	return r
}

// qGrid is 0, 0.01, ..., 1 plus some high percentiles.
var qGrid = func() []float64 {
	var r []float64
	for i := 0; i <= 100; i++ {
		r = append(r, float64(i)/100)
	}
	return append(r, 0.995, 0.999, 0.9999, 0.001)
}()

func TestBucketValues(t *testing.T) {
	if minIndex != -1036 || maxIndex != 35488 {
		t.Fatalf("index range [%d, %d]", minIndex, maxIndex)
	}
	for i := minIndex; i <= maxIndex; i++ {
		v := value(i)
		// 2*gamma^i/(gamma+1), computed without overflow.
		want := min(math.Pow(gamma, float64(i-1))*(2*gamma/(gamma+1)), math.MaxFloat64)
		if math.IsInf(v, 0) || math.Abs(v-want) > 1e-9*want {
			t.Fatalf("value(%d) = %v, want %v", i, v, want)
		}
		if k := index(v); k != i {
			t.Fatalf("index(value(%d)) = %d", i, k)
		}
	}
}

func TestEmpty(t *testing.T) {
	var s Sketch
	if s.Count() != 0 {
		t.Fatalf("Count = %d", s.Count())
	}
	for _, q := range []float64{0, 0.5, 1} {
		if v := s.Quantile(q); !math.IsNaN(v) {
			t.Errorf("Quantile(%v) = %v, want NaN", q, v)
		}
		if v := s.QuantileClamped(q, 1, 2); !math.IsNaN(v) {
			t.Errorf("QuantileClamped(%v) = %v, want NaN", q, v)
		}
	}
	if got, want := s.Size(), int(unsafe.Sizeof(s)); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
	enc := s.AppendBinary(nil)
	if want := []byte{1, 0, 0, 0}; !bytes.Equal(enc, want) {
		t.Errorf("encoding %x, want %x", enc, want)
	}
	var d Sketch
	if err := d.UnmarshalBinary(enc); err != nil || d.Count() != 0 {
		t.Fatalf("round trip: %v, count %d", err, d.Count())
	}
	s.Merge(&d)
	s.Merge(nil)
	s.Merge(&s)
	if s.Count() != 0 || s.Size() != int(unsafe.Sizeof(s)) {
		t.Errorf("merging empties: count %d size %d", s.Count(), s.Size())
	}
}

func TestSingleValue(t *testing.T) {
	for _, v := range []float64{
		1, 0.5, 3.7, 1e-5, 42, 1e300, math.MaxFloat64, ZeroThreshold,
		math.Nextafter(ZeroThreshold, 1), math.Pow(gamma, 7), math.Nextafter(math.Pow(gamma, 7), 10),
		-1, -42, -1e-5, -math.MaxFloat64, -ZeroThreshold,
		0, math.Copysign(0, -1), 5e-324, -1e-10, math.Nextafter(ZeroThreshold, 0),
	} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			s := sketchOf(v)
			want := v
			if math.Abs(v) < ZeroThreshold {
				want = 0
			}
			if s.Count() != 1 {
				t.Fatalf("Count = %d", s.Count())
			}
			for _, q := range []float64{0, 0.25, 0.5, 0.99, 1} {
				got := s.Quantile(q)
				if !(math.Abs(got-want) <= (Alpha+eps)*math.Abs(want)) {
					t.Errorf("Quantile(%v) = %v, want %v ±1%%", q, got, want)
				}
				if got := s.QuantileClamped(q, v, v); got != v {
					t.Errorf("QuantileClamped(%v, %v, %v) = %v", q, v, v, got)
				}
			}
			checkInvariants(t, s)
		})
	}
}

func TestIgnoresNaNAndInf(t *testing.T) {
	s := sketchOf(math.NaN(), math.Inf(1), math.Inf(-1))
	if s.Count() != 0 || s.Size() != int(unsafe.Sizeof(*s)) {
		t.Fatalf("Count = %d, Size = %d after NaN and Inf", s.Count(), s.Size())
	}
	s.Add(5)
	s.Add(math.NaN())
	if s.Count() != 1 {
		t.Fatalf("Count = %d", s.Count())
	}
}

func TestQuantiles(t *testing.T) {
	var ints, alternating []float64
	for i := 1; i <= 1000; i++ {
		ints = append(ints, float64(i%37))
		alternating = append(alternating, float64(i)*math.Pow(-1, float64(i)))
	}
	var decades []float64
	for e := -9; e <= 25; e++ {
		decades = append(decades, math.Pow(10, float64(e)))
	}
	for _, tc := range []struct {
		name string
		xs   []float64
	}{
		{"1..100", seq(1, 100, 1)},
		{"fractions", seq(0.001, 0.1, 0.001)},
		{"negatives", seq(-100, -1, 1)},
		{"zeros", []float64{0, 0, math.Copysign(0, -1), 1e-12, -1e-10, 5e-324}},
		{"zeros and positives", []float64{0, 0, 0, 1, 2, 3, 1e-10}},
		{"zeros and negatives", []float64{0, 0, -1, -2, -3}},
		{"mixed signs", seq(-50, 50, 0.5)},
		{"alternating signs", alternating},
		{"integers mod 37 (duplicates)", ints},
		{"two values", []float64{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 8, 8, 8, 8}},
		{"decades 1e-9..1e25", decades},
		{"huge", []float64{1e307, 1e308, math.MaxFloat64, math.MaxFloat64 / 3}},
		{"huge negative", []float64{-1e307, -1e308, -math.MaxFloat64}},
		{"tiny", []float64{ZeroThreshold, 2e-9, 3e-9, 1e-8}},
		{"temperatures", seq(-20, 40, 0.1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sketchOf(tc.xs...)
			sorted := reference(tc.xs)
			for _, q := range qGrid {
				checkQuantile(t, s, sorted, q)
			}
			checkInvariants(t, s)
		})
	}
}

func TestQuantileEdges(t *testing.T) {
	xs := []float64{1, 1, 1, 1.001, 1.001}
	s := sketchOf(xs...)
	// 1 lies at the top of its bucket and 1.001 near the bottom of its
	// bucket, so the estimates fall outside [1, 1.001] and get clamped.
	if v := s.Quantile(0); !(v < 1) {
		t.Errorf("Quantile(0) = %v, want an estimate below 1", v)
	}
	if v := s.Quantile(1); !(v > 1.001) {
		t.Errorf("Quantile(1) = %v, want an estimate above 1.001", v)
	}
	for q, want := range map[float64]float64{0: 1, 0.1: 1, 0.5: 1, 0.9: 1.001, 1: 1.001} {
		if got := s.QuantileClamped(q, 1, 1.001); got != want {
			t.Errorf("QuantileClamped(%v) = %v, want %v", q, got, want)
		}
	}
	// The clamp bounds are returned exactly for q = 0 and q = 1.
	if got := s.QuantileClamped(0, 0.9999, 1.1); got != 0.9999 {
		t.Errorf("QuantileClamped(0) = %v", got)
	}
	if got := s.QuantileClamped(1, 0.9999, 1.1); got != 1.1 {
		t.Errorf("QuantileClamped(1) = %v", got)
	}
	for _, q := range []float64{-0.1, 1.1, math.NaN(), math.Inf(1), math.Inf(-1)} {
		if v := s.Quantile(q); !math.IsNaN(v) {
			t.Errorf("Quantile(%v) = %v, want NaN", q, v)
		}
		if v := s.QuantileClamped(q, 1, 1.001); !math.IsNaN(v) {
			t.Errorf("QuantileClamped(%v) = %v, want NaN", q, v)
		}
	}
	// Interpolation between neighbours of different signs stays finite.
	s = sketchOf(-math.MaxFloat64, math.MaxFloat64)
	if v := s.Quantile(0.5); math.IsInf(v, 0) || math.IsNaN(v) || math.Abs(v) > 0.03*math.MaxFloat64 {
		t.Errorf("Quantile(0.5) of ±MaxFloat64 = %v", v)
	}
}

// splits returns several ways to cut xs into parts.
func splits(xs []float64) map[string][][]float64 {
	n := len(xs)
	var roundRobin [3][]float64
	for i, x := range xs {
		roundRobin[i%3] = append(roundRobin[i%3], x)
	}
	var bySign [2][]float64
	for _, x := range xs {
		if x < 0 {
			bySign[0] = append(bySign[0], x)
		} else {
			bySign[1] = append(bySign[1], x)
		}
	}
	return map[string][][]float64{
		"halves":      {xs[:n/2], xs[n/2:]},
		"with empty":  {nil, xs, nil},
		"round robin": roundRobin[:],
		"by sign":     bySign[:],
		"singletons": func() [][]float64 {
			var r [][]float64
			for i := range xs {
				r = append(r, xs[i:i+1])
			}
			return r
		}(),
	}
}

func TestMergeEqualsUnion(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	wide := make([]float64, 3000) // spans 129 decades, so collapses
	for i := range wide {
		wide[i] = math.Pow(10, -9+129*rng.Float64())
	}
	lognormal := make([]float64, 2000)
	for i := range lognormal {
		lognormal[i] = math.Exp(rng.NormFloat64()*3) * float64(1-2*(i%2))
	}
	for _, tc := range []struct {
		name string
		xs   []float64
	}{
		{"1..100", seq(1, 100, 1)},
		{"mixed signs with zeros", append(seq(-50, 50, 0.25), 0, 0, 1e-12)},
		{"lognormal both signs", lognormal},
		{"collapsing positives", wide},
		{"collapsing negatives", func() []float64 {
			r := slices.Clone(wide)
			for i := range r {
				r[i] = -r[i]
			}
			return r
		}()},
	} {
		union := sketchOf(tc.xs...)
		checkInvariants(t, union)
		for how, parts := range splits(tc.xs) {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				var sketches []*Sketch
				for _, p := range parts {
					sketches = append(sketches, sketchOf(p...))
				}
				// Merge into an empty sketch in order, and into the last
				// part's sketch in reverse order.
				var fwd Sketch
				for _, p := range sketches {
					fwd.Merge(p)
				}
				rev := sketches[len(sketches)-1]
				for i := len(sketches) - 2; i >= 0; i-- {
					rev.Merge(sketches[i])
				}
				checkSameBuckets(t, &fwd, union)
				checkSameBuckets(t, rev, union)
				checkInvariants(t, &fwd)
				checkInvariants(t, rev)
				for _, q := range qGrid {
					if a, b := fwd.Quantile(q), union.Quantile(q); a != b {
						t.Fatalf("Quantile(%v): merged %v, union %v", q, a, b)
					}
				}
			})
		}
	}
}

func TestMergeSelf(t *testing.T) {
	xs := append(seq(-10, 10, 0.3), 0)
	s := sketchOf(xs...)
	s.Merge(s)
	checkSameBuckets(t, s, sketchOf(append(slices.Clone(xs), xs...)...))
}

func TestReset(t *testing.T) {
	xs := append(seq(-30, 30, 0.01), 0)
	s := sketchOf(xs...)
	size := s.Size()
	s.Reset()
	if s.Count() != 0 || !math.IsNaN(s.Quantile(0.5)) || s.Size() != size {
		t.Fatalf("after Reset: count %d, p50 %v, size %d (was %d)", s.Count(), s.Quantile(0.5), s.Size(), size)
	}
	checkInvariants(t, s)
	allocs := testing.AllocsPerRun(20, func() {
		s.Reset()
		for _, x := range xs {
			s.Add(x)
		}
	})
	if allocs != 0 {
		t.Errorf("Reset and refill allocated %v times", allocs)
	}
	checkSameBuckets(t, s, sketchOf(xs...))
	// Data in another range moves the empty windows within their buffers.
	s.Reset()
	buf := unsafe.SliceData(s.pos.counts)
	ys := seq(1e6, 2e6, 1000)
	for _, y := range ys {
		s.Add(y)
	}
	if unsafe.SliceData(s.pos.counts) != buf {
		t.Errorf("refill in another range reallocated")
	}
	checkSameBuckets(t, s, sketchOf(ys...))
	sorted := sortedCopy(ys)
	for _, q := range qGrid {
		checkQuantile(t, s, sorted, q)
	}
}

func TestSteadyStateAllocs(t *testing.T) {
	xs := append(seq(-100, 100, 0.01), 0)
	s := sketchOf(xs...)
	o := sketchOf(xs[:5000]...)
	for name, f := range map[string]func(){
		"Add":      func() { s.Add(xs[1234]); s.Add(-0.5); s.Add(0) },
		"Merge":    func() { s.Merge(o) },
		"Quantile": func() { s.Quantile(0.99) },
		"QuantileClamped": func() {
			s.QuantileClamped(0.5, -100, 100)
		},
	} {
		if allocs := testing.AllocsPerRun(100, f); allocs != 0 {
			t.Errorf("%s allocated %v times", name, allocs)
		}
	}
}

func TestGrowth(t *testing.T) {
	// Values arriving in ascending, descending and alternating outward order
	// grow the windows every way; all must give the same buckets.
	xs := seq(0.01, 1000, 0.37)
	orders := map[string][]float64{
		"ascending":  xs,
		"descending": reversed(xs),
		"outward":    outward(xs),
	}
	want := sketchOf(xs...)
	for name, order := range orders {
		s := sketchOf(order...)
		checkInvariants(t, s)
		checkSameBuckets(t, s, want)
		if s.Size() > int(unsafe.Sizeof(*s))+4*MaxBuckets {
			t.Errorf("%s: Size %d", name, s.Size())
		}
	}
}

func reversed(xs []float64) []float64 {
	r := slices.Clone(xs)
	slices.Reverse(r)
	return r
}

func outward(xs []float64) []float64 {
	var r []float64
	mid := len(xs) / 2
	for i := 0; mid-i-1 >= 0 || mid+i < len(xs); i++ {
		if mid+i < len(xs) {
			r = append(r, xs[mid+i])
		}
		if mid-i-1 >= 0 {
			r = append(r, xs[mid-i-1])
		}
	}
	return r
}

func TestCollapse(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const decades = 120
	xs := make([]float64, 20000)
	for i := range xs {
		xs[i] = math.Pow(10, -9+decades*rng.Float64())
	}
	for _, sign := range []float64{1, -1} {
		t.Run(fmt.Sprint("sign ", sign), func(t *testing.T) {
			ys := slices.Clone(xs)
			for i := range ys {
				ys[i] *= sign
			}
			s := sketchOf(ys...)
			checkInvariants(t, s)
			st := &s.pos
			if sign < 0 {
				st = &s.neg
			}
			if len(st.counts) != MaxBuckets {
				t.Fatalf("window has %d buckets, want %d", len(st.counts), MaxBuckets)
			}
			if s.Size() > int(unsafe.Sizeof(*s))+4*MaxBuckets {
				t.Errorf("Size = %d", s.Size())
			}
			// The lowest kept key holds the collapsed values; every value
			// in a higher key keeps its accuracy, and collapsed ones are
			// overestimated.
			lowest := int(st.off)
			idx := func(v float64) int {
				k := index(math.Abs(v))
				if v < 0 {
					k = -k
				}
				return k
			}
			sorted := sortedCopy(ys)
			accurate := 0
			for _, q := range qGrid {
				_, a, b, _ := exact(sorted, q)
				if idx(a) > lowest && idx(b) > lowest {
					checkRelative(t, s, sorted, q)
					accurate++
				} else if want, _, _, _ := exact(sorted, q); s.Quantile(q) < want-(Alpha+eps)*math.Abs(want) {
					t.Errorf("collapsed Quantile(%v) = %v underestimates %v", q, s.Quantile(q), want)
				}
			}
			// 120 decades keep about 35.5: roughly the top 30% of
			// quantiles are exact-bucket.
			if accurate < 25 {
				t.Errorf("only %d of %d quantiles in kept buckets", accurate, len(qGrid))
			}
			// Kept buckets hold the magnitudes nearest the top of the
			// range for positives and nearest zero for negatives: the
			// highest ~30% of quantiles either way.
			for _, q := range []float64{0.75, 0.9, 0.95, 0.99, 1} {
				checkRelative(t, s, sorted, q)
			}
		})
	}
}

func TestCollapseJump(t *testing.T) {
	// A value far above everything collapses all existing buckets into the
	// lowest kept one, whatever the order of arrival.
	a := sketchOf(ZeroThreshold, 1e-8, 1e-7, 1e300)
	b := sketchOf(1e300, 1e-7, ZeroThreshold, 1e-8)
	checkInvariants(t, a)
	checkSameBuckets(t, a, b)
	an, ap := bucketMaps(a)
	if len(an) != 0 || len(ap) != 2 || ap[index(1e300)] != 1 || ap[index(1e300)-MaxBuckets+1] != 3 {
		t.Fatalf("buckets %v %v", an, ap)
	}
	if got, want := a.Quantile(1), 1e300; math.Abs(got-want) > Alpha*want {
		t.Errorf("Quantile(1) = %v", got)
	}
	if got := a.QuantileClamped(0.3, ZeroThreshold, 1e300); got <= 1e250 {
		t.Errorf("collapsed p30 = %v, expected an overestimate", got)
	}
	c := sketchOf(-ZeroThreshold, -1e300)
	d := sketchOf(-1e300, -ZeroThreshold)
	checkSameBuckets(t, c, d)
	if got := c.Quantile(1); got < -1e-5 || got > 0 {
		t.Errorf("negative collapse: Quantile(1) = %v", got)
	}
}

func TestSaturation(t *testing.T) {
	var s Sketch
	s.Add(1)
	s.pos.counts[0-int(s.pos.off)] = math.MaxUint32 - 1
	s.count = math.MaxUint32 - 1
	s.Add(1)
	s.Add(1)
	if s.Count() != math.MaxUint32 {
		t.Fatalf("Count = %d", s.Count())
	}
	s.Merge(sketchOf(1, 1, 2))
	if s.Count() != math.MaxUint32+1 {
		t.Fatalf("Count after merge = %d", s.Count())
	}
	checkInvariants(t, &s)
	s.Reset()
	s.zero, s.count = math.MaxUint64, math.MaxUint64
	s.Add(0)
	s.Add(5)
	s.Merge(sketchOf(0, 3))
	if s.Count() != math.MaxUint64 {
		t.Fatalf("Count = %d", s.Count())
	}
	checkInvariants(t, &s)
}

// drawMagnitudes draws n values in [ZeroThreshold, MaxFloat64] spanning at
// most about 30 decades from one of several distributions.
func drawMagnitudes(t *rapid.T, n int) []float64 {
	unit := rapid.Float64Range(0, 1)
	pow10 := func(e float64) float64 { return math.Pow(10, e) }
	var g *rapid.Generator[float64]
	switch dist := rapid.IntRange(0, 8).Draw(t, "dist"); dist {
	case 0: // log-uniform over up to 30 decades anywhere
		lo := rapid.Float64Range(-9, 278).Draw(t, "lo10")
		w := rapid.Float64Range(0, 30).Draw(t, "decades")
		g = rapid.Map(unit, func(u float64) float64 { return pow10(lo + w*u) })
	case 1: // uniform
		scale := pow10(rapid.Float64Range(-3, 300).Draw(t, "scale10"))
		g = rapid.Map(unit, func(u float64) float64 { return scale * (1e-6 + u) })
	case 2: // exponential
		scale := pow10(rapid.Float64Range(-3, 290).Draw(t, "scale10"))
		g = rapid.Map(rapid.Float64Range(0, math.Nextafter(1, 0)), func(u float64) float64 {
			return scale * (1e-6 - math.Log1p(-u))
		})
	case 3: // Pareto, heavy-tailed
		scale := pow10(rapid.Float64Range(-9, 280).Draw(t, "scale10"))
		shape := rapid.Float64Range(0.5, 3).Draw(t, "shape")
		g = rapid.Map(rapid.Float64Range(0, 1-1e-12), func(u float64) float64 {
			return scale * math.Pow(1-u, -1/shape)
		})
	case 4: // narrow, around a centre
		centre := pow10(rapid.Float64Range(-8, 300).Draw(t, "centre10"))
		spread := rapid.Float64Range(0, 0.1).Draw(t, "spread")
		g = rapid.Map(unit, func(u float64) float64 { return centre * (1 + spread*(u-0.5)) })
	case 5: // a few distinct values
		lo := rapid.Float64Range(-9, 278).Draw(t, "lo10")
		vals := rapid.SliceOfN(rapid.Map(unit, func(u float64) float64 { return pow10(lo + 30*u) }), 1, 5).Draw(t, "distinct")
		g = rapid.SampledFrom(vals)
	case 6: // on and next to bucket boundaries gamma^i
		i0 := rapid.IntRange(minIndex+1, maxIndex-1500).Draw(t, "i0")
		g = rapid.Custom(func(t *rapid.T) float64 {
			v := math.Pow(gamma, float64(i0+rapid.IntRange(0, 1499).Draw(t, "i")))
			switch rapid.IntRange(0, 2).Draw(t, "nudge") {
			case 0:
				v = math.Nextafter(v, 0)
			case 2:
				v = math.Nextafter(v, math.Inf(1))
			}
			return v
		})
	case 7: // integer sensor readings
		g = rapid.Map(rapid.IntRange(1, 5000), func(i int) float64 { return float64(i) })
	case 8: // the extremes of the range
		if rapid.Bool().Draw(t, "top") {
			g = rapid.Map(unit, func(u float64) float64 { return math.Min(pow10(280+30*u), math.MaxFloat64) })
		} else {
			g = rapid.Map(unit, func(u float64) float64 { return ZeroThreshold * pow10(25*u) })
		}
	}
	xs := rapid.SliceOfN(g, n, n).Draw(t, "magnitudes")
	for _, x := range xs {
		if !(x >= ZeroThreshold && x <= math.MaxFloat64) {
			t.Fatalf("generator produced %v", x)
		}
	}
	return xs
}

// mergeRandomSplit builds sketches of random parts of xs and merges them
// in a random order into one, checking that it equals union.
func mergeRandomSplit(t *rapid.T, xs []float64, union *Sketch) *Sketch {
	k := rapid.IntRange(1, 6).Draw(t, "parts")
	cuts := rapid.SliceOfN(rapid.IntRange(0, len(xs)), k-1, k-1).Draw(t, "cuts")
	slices.Sort(cuts)
	cuts = append(append([]int{0}, cuts...), len(xs))
	var parts []*Sketch
	for i := 0; i < k; i++ {
		parts = append(parts, sketchOf(xs[cuts[i]:cuts[i+1]]...))
	}
	parts = rapid.Permutation(parts).Draw(t, "order")
	m := parts[0]
	for _, p := range parts[1:] {
		m.Merge(p)
	}
	checkInvariants(t, m)
	checkSameBuckets(t, m, union)
	return m
}

var propertyQs = []float64{0.5, 0.9, 0.95, 0.99}

func TestPropertyAccuracy(t *testing.T) {
	for _, sign := range []float64{1, -1} {
		t.Run(fmt.Sprint("sign ", sign), func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				n := rapid.IntRange(1, 2000).Draw(t, "n")
				xs := drawMagnitudes(t, n)
				for i := range xs {
					xs[i] *= sign
				}
				union := sketchOf(xs...)
				m := mergeRandomSplit(t, xs, union)
				sorted := sortedCopy(xs)
				q := rapid.SampledFrom(propertyQs).Draw(t, "q")
				checkRelative(t, m, sorted, q)
				checkRelative(t, m, sorted, rapid.Float64Range(0, 1).Draw(t, "any q"))
			})
		})
	}
}

func TestPropertyMixedSigns(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 2000).Draw(t, "n")
		xs := drawMagnitudes(t, n)
		signs := rapid.SliceOfN(rapid.IntRange(-1, 1), n, n).Draw(t, "signs")
		for i := range xs {
			xs[i] *= float64(signs[i]) // 0 makes a zero
		}
		union := sketchOf(xs...)
		m := mergeRandomSplit(t, xs, union)
		sorted := sortedCopy(xs)
		for _, q := range propertyQs {
			checkQuantile(t, m, sorted, q)
		}
		checkQuantile(t, m, sorted, rapid.Float64Range(0, 1).Draw(t, "any q"))
	})
}

func TestEncodingGolden(t *testing.T) {
	s := sketchOf(1, 1, 1.03, 1.2, 0, -1, -2)
	// zero 1; neg: key -35 (=-index(2)) count 1, 34 empty, key 0 count 1;
	// pos: keys 0..2 counts 2 0 1, 7 empty, key 10 count 1.
	want := []byte{1, 1, 2, 69, 1, 1, 34, 1, 1, 2, 0, 3, 2, 0, 1, 7, 1, 1}
	if got := s.AppendBinary(nil); !bytes.Equal(got, want) {
		t.Fatalf("encoding\n%v, want\n%v", got, want)
	}
	prefix := []byte("xyz")
	if got := s.AppendBinary(prefix); !bytes.Equal(got, append([]byte("xyz"), want...)) {
		t.Fatalf("AppendBinary to prefix: %v", got)
	}
}

// encodingCases are sketches for the round-trip tests.
func encodingCases() map[string]*Sketch {
	rng := rand.New(rand.NewPCG(5, 6))
	var wide, lognormal, sparse []float64
	for range 5000 {
		wide = append(wide, math.Pow(10, -9+200*rng.Float64())*float64(1-2*rng.IntN(2)))
		lognormal = append(lognormal, math.Exp(2*rng.NormFloat64()+3))
	}
	for i := 0; i < 300; i++ {
		sparse = append(sparse, math.Pow(gamma, float64(i*i%1000)))
	}
	big := sketchOf(1, 2, 3)
	big.Merge(big)
	big.zero = 1 << 40
	big.count += 1 << 40
	return map[string]*Sketch{
		"empty":     new(Sketch),
		"zeros":     sketchOf(0, 0, 1e-10),
		"single":    sketchOf(42),
		"negative":  sketchOf(-1, -2, -1e300),
		"mixed":     sketchOf(append(seq(-20, 40, 0.1), 0)...),
		"lognormal": sketchOf(lognormal...),
		"sparse":    sketchOf(sparse...),
		"wide":      sketchOf(wide...),
		"extremes":  sketchOf(ZeroThreshold, math.MaxFloat64, -ZeroThreshold, -math.MaxFloat64),
		"big zero":  big,
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	dirty := sketchOf(seq(-1e5, 1e5, 7)...) // buffers and windows elsewhere
	for name, s := range encodingCases() {
		t.Run(name, func(t *testing.T) {
			enc := s.AppendBinary(nil)
			for _, d := range []*Sketch{new(Sketch), dirty} {
				if err := d.UnmarshalBinary(enc); err != nil {
					t.Fatal(err)
				}
				checkInvariants(t, d)
				checkSameBuckets(t, d, s)
				for _, q := range qGrid {
					if a, b := d.Quantile(q), s.Quantile(q); a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
						t.Fatalf("Quantile(%v) = %v after round trip, was %v", q, a, b)
					}
				}
			}
			// Every strict prefix is truncated.
			for i := range enc {
				var d Sketch
				if err := d.UnmarshalBinary(enc[:i]); err == nil {
					t.Fatalf("prefix of %d/%d bytes decoded", i, len(enc))
				}
			}
		})
	}
}

func TestEncodingSize(t *testing.T) {
	// Zero runs inside a run cost one byte each; longer gaps start a run.
	for _, tc := range []struct {
		key  int
		runs uint64
	}{{1, 1}, {2, 1}, {3, 1}, {4, 2}, {100, 2}} {
		s := sketchOf(1, math.Pow(gamma, float64(tc.key)-0.5))
		enc := s.AppendBinary(nil)
		if runs := uint64(enc[3]); runs != tc.runs {
			t.Errorf("keys 0 and %d: %d runs, want %d (%v)", tc.key, runs, tc.runs, enc)
		}
	}
}

// appendUvarints appends each of vs as a uvarint.
func appendUvarints(b []byte, vs ...uint64) []byte {
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func TestUnmarshalErrors(t *testing.T) {
	pos := func(vs ...uint64) []byte { return appendUvarints([]byte{1, 0, 0}, vs...) }
	key := func(k int64) []byte { return binary.AppendVarint(nil, k) }
	run := func(k int64, rest ...uint64) []byte {
		return appendUvarints(append([]byte{1, 0, 0, 1}, key(k)...), rest...)
	}
	// long is a run of MaxBuckets+1 buckets, full one of MaxBuckets.
	long := []uint64{MaxBuckets + 1}
	for range MaxBuckets + 1 {
		long = append(long, 1)
	}
	full := append([]uint64{MaxBuckets}, long[2:]...)
	for _, tc := range []struct {
		name string
		b    []byte
		msg  string
	}{
		{"nil", nil, "empty"},
		{"version 0", []byte{0, 0, 0, 0}, "version 0"},
		{"version 2", []byte{2, 0, 0, 0}, "version 2"},
		{"version only", []byte{1}, "truncated"},
		{"no positive store", []byte{1, 0, 0}, "truncated"},
		{"trailing bytes", []byte{1, 0, 0, 0, 0}, "trailing"},
		{"varint overflow", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0}, "overflow"},
		{"too many runs", pos(MaxBuckets + 1), "runs"},
		{"huge run count", pos(1 << 62), "runs"},
		{"key too high", run(int64(maxIndex)+1, 1, 1), "out of range"},
		{"key too low", run(int64(minIndex)-1, 1, 1), "out of range"},
		{"run past max key", run(int64(maxIndex), 2, 1, 1), "out of range"},
		{"negative key out of range", append(append([]byte{1, 0, 1}, key(int64(-minIndex)+1)...), 1, 1, 0), "out of range"},
		{"empty run", run(0, 0), "empty run"},
		{"run too long", run(0, long...), "span"},
		{"gap too long", append(appendUvarints(append([]byte{1, 0, 0, 2}, key(0)...), 1, 1), appendUvarints(nil, MaxBuckets+1, 1, 1)...), "span"},
		{"span too wide", append(appendUvarints(append([]byte{1, 0, 0, 2}, key(0)...), 1, 1), appendUvarints(nil, MaxBuckets-2, 2, 1, 1)...), "span"},
		{"count too big", run(0, 1, 1<<32), "exceeds"},
		{"run truncated", run(0, 10, 1, 2), "truncated"},
		{"total overflow", append(appendUvarints([]byte{1}, math.MaxUint64, 0, 1), append(key(0), 1, 1)...), "overflow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sketchOf(1, 2, -3, 0)
			before := s.AppendBinary(nil)
			err := s.UnmarshalBinary(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("UnmarshalBinary(%v) = %v, want error containing %q", tc.b, err, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "sketch: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if after := s.AppendBinary(nil); !bytes.Equal(before, after) {
				t.Errorf("failed UnmarshalBinary changed the sketch")
			}
		})
	}
	// The largest valid spans decode.
	var s Sketch
	if err := s.UnmarshalBinary(run(int64(maxIndex)-MaxBuckets+1, full...)); err != nil {
		t.Errorf("MaxBuckets-wide store: %v", err)
	}
	if err := s.UnmarshalBinary(append(appendUvarints(append([]byte{1, 0, 0, 2}, key(int64(minIndex))...), 1, 1), appendUvarints(nil, MaxBuckets-2, 1, 1)...)); err != nil {
		t.Errorf("MaxBuckets-wide store with a gap: %v", err)
	}
	checkInvariants(t, &s)
}

// checkDecode is the body of the random-input tests: UnmarshalBinary must
// not panic, and what it accepts must be a consistent sketch that survives
// an encode/decode round trip and further use.
func checkDecode(t tb, b []byte) {
	t.Helper()
	var s Sketch
	if err := s.UnmarshalBinary(b); err != nil {
		return
	}
	checkInvariants(t, &s)
	enc := s.AppendBinary(nil)
	var d Sketch
	if err := d.UnmarshalBinary(enc); err != nil {
		t.Fatalf("re-encoding of accepted input %x fails: %v", b, err)
	}
	checkSameBuckets(t, &d, &s)
	for _, q := range []float64{0, 0.5, 0.99, 1} {
		if v := s.Quantile(q); s.Count() > 0 && math.IsNaN(v) {
			t.Fatalf("Quantile(%v) = NaN for %x", q, b)
		}
	}
	s.Add(1)
	s.Add(-1e300)
	s.Merge(&d)
	checkInvariants(t, &s)
}

func TestUnmarshalRandom(t *testing.T) {
	var valid [][]byte
	for _, s := range encodingCases() {
		valid = append(valid, s.AppendBinary(nil))
	}
	rapid.Check(t, func(t *rapid.T) {
		var b []byte
		if rapid.Bool().Draw(t, "mutate") {
			b = slices.Clone(rapid.SampledFrom(valid).Draw(t, "valid"))
			for range rapid.IntRange(1, 4).Draw(t, "mutations") {
				if len(b) == 0 {
					break
				}
				i := rapid.IntRange(0, len(b)-1).Draw(t, "at")
				switch rapid.IntRange(0, 2).Draw(t, "how") {
				case 0:
					b[i] = rapid.Byte().Draw(t, "byte")
				case 1:
					b = b[:i]
				case 2:
					b = slices.Insert(b, i, rapid.Byte().Draw(t, "byte"))
				}
			}
		} else {
			b = rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, "bytes")
			if len(b) > 0 && rapid.Bool().Draw(t, "v1") {
				b[0] = 1
			}
		}
		checkDecode(t, b)
	})
}

func FuzzUnmarshal(f *testing.F) {
	for _, s := range encodingCases() {
		f.Add(s.AppendBinary(nil))
	}
	f.Add([]byte{1, 0, 0, 1, 0, 1, 1})
	f.Add([]byte{1, 0, 1, 1, 2, 1, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
	})
}

// benchValues returns n lognormal values spanning a few decades, like
// latencies or sensor readings.
func benchValues(n int) []float64 {
	rng := rand.New(rand.NewPCG(7, 8))
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = math.Exp(rng.NormFloat64()*1.5 + 4)
	}
	return xs
}

func BenchmarkAdd(b *testing.B) {
	xs := benchValues(4096)
	s := sketchOf(xs...) // steady state: the buckets cover the values
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.Add(xs[i&4095])
		i++
	}
}

func BenchmarkMerge(b *testing.B) {
	xs := benchValues(10000)
	src := sketchOf(xs...)
	dst := sketchOf(xs...)
	b.ReportAllocs()
	for b.Loop() {
		dst.Merge(src)
	}
}

func BenchmarkQuantile(b *testing.B) {
	s := sketchOf(benchValues(10000)...)
	for _, q := range []float64{0.5, 0.99} {
		b.Run(fmt.Sprint("q=", q), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Quantile(q)
			}
		})
	}
}

func BenchmarkAppendBinary(b *testing.B) {
	s := sketchOf(benchValues(10000)...)
	buf := s.AppendBinary(nil)
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendBinary(buf[:0])
	}
}

func BenchmarkUnmarshalBinary(b *testing.B) {
	s := sketchOf(benchValues(10000)...)
	enc := s.AppendBinary(nil)
	var d Sketch
	b.ReportAllocs()
	for b.Loop() {
		if err := d.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
}
