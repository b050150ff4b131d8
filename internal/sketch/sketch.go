// Package sketch provides Sketch, a mergeable quantile sketch with 1%
// relative accuracy in the style of DDSketch (Masson, Rim and Lee, "DDSketch:
// A Fast and Fully-Mergeable Quantile Sketch with Relative-Error
// Guarantees", VLDB 2019), for per-window percentiles.
//
// # Accuracy
//
// A value v with |v| >= ZeroThreshold falls in bucket
// i = ceil(log(|v|)/log(gamma)), gamma = (1+Alpha)/(1-Alpha), which holds
// the values in (gamma^(i-1), gamma^i]; the bucket reports the value
// 2*gamma^i/(gamma+1), which is within Alpha (1%) of every value in it.
// Values with |v| < ZeroThreshold are counted as exactly 0. Quantiles
// interpolate linearly between the estimates of the two closest ranks, as
// numpy's default percentile method does between exact values, so a
// quantile is within 1% of the exact one whenever those two ranks hold
// values of the same sign (a quantile between a negative and a positive
// neighbour is within 1% of the larger of their magnitudes instead).
//
// # Memory
//
// Positive and negative values each have a dense array of uint32 counters
// covering the range of buckets seen so far, grown on demand with some
// slack and never wider than MaxBuckets: at most 2*4*MaxBuckets = 32 KiB
// per sketch, and typically a few hundred bytes to 3 KiB for sensor
// readings. MaxBuckets buckets span a factor of gamma^4096, about 35.5
// orders of magnitude (for example 1e-9 to 3e26). When the magnitudes of
// one sign span more than that, the MaxBuckets highest buckets by value are
// kept and the lower values are counted in the lowest kept bucket, as
// DDSketch's CollapsingLowestDenseStore does: positive values of the
// smallest magnitudes and negative values of the largest magnitudes (the
// most negative values) collapse. Collapsed values are overestimated, so
// only the quantiles that fall among them lose accuracy: for data of one
// sign, the lowest quantiles. Quantiles above the collapsed values keep
// their 1% accuracy, and nothing collapses while the magnitudes of each
// sign span at most 35 orders of magnitude.
//
// A single bucket counts at most 2^32-1 values; values beyond that are
// dropped (and not counted by Count).
//
// # Encoding
//
// AppendBinary writes version 1 of a compact little-endian encoding in
// which every integer is a varint as written by encoding/binary:
//
//	byte     version, 1
//	uvarint  count of values in the zero bucket
//	store    negative values, bucket keys are -i
//	store    positive values, bucket keys are i
//
// where a store is
//
//	uvarint  number of runs of buckets (0 for an empty store)
//	each run:
//	  first run:  varint key of its first bucket
//	  later runs: uvarint number of empty buckets skipped since the
//	              previous run
//	  uvarint  number of buckets in the run, at least 1
//	  uvarint  count of each bucket in the run, in key order
//
// Runs may contain empty buckets; AppendBinary starts a new run after
// three or more empty buckets. The encoding depends only on the bucket
// counts, so equal sketches have equal encodings.
package sketch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

const (
	// Alpha is the relative accuracy of a Sketch: each bucket reports a
	// value within a factor 1±Alpha of every value it counts.
	Alpha = 0.01

	// ZeroThreshold is the smallest magnitude a Sketch tells apart from
	// zero: Add counts values v with |v| < ZeroThreshold as 0.
	ZeroThreshold = 1e-9

	// MaxBuckets is the most buckets a Sketch keeps for the values of one
	// sign, which bounds its memory to about 2*4*MaxBuckets bytes (32 KiB).
	MaxBuckets = 4096

	encVersion = 1

	// maxZeroGap is the longest run of empty buckets AppendBinary writes
	// inside a run; a longer gap starts a new run.
	maxZeroGap = 2
)

var (
	gamma      = (1 + Alpha) / (1 - Alpha)
	lnGamma    = math.Log(gamma)
	invLnGamma = 1 / lnGamma
	// lnRepFactor is log(2/(gamma+1)): the value of bucket i is
	// exp(i*lnGamma + lnRepFactor) = 2*gamma^i/(gamma+1).
	lnRepFactor = math.Log(2 / (gamma + 1))

	// minIndex and maxIndex are the bucket indexes of ZeroThreshold and
	// of the largest float64, the range of any bucket index.
	minIndex = index(ZeroThreshold)
	maxIndex = index(math.MaxFloat64)
)

// index returns the bucket index of a, which must be finite and at least
// ZeroThreshold.
func index(a float64) int {
	return int(math.Ceil(math.Log(a) * invLnGamma))
}

// value returns the value a bucket with index i reports.
func value(i int) float64 {
	x := float64(i)*lnGamma + lnRepFactor
	if x < 700 {
		return math.Exp(x)
	}
	// math.Exp on amd64 returns +Inf for results of 2^1023 and more, so
	// square a smaller one; min guards against rounding past MaxFloat64.
	h := math.Exp(x / 2)
	return min(h*h, math.MaxFloat64)
}

// Sketch is a DDSketch with relative accuracy Alpha = 0.01, a summary of a
// multiset of float64 values that answers quantile queries within 1%
// relative error and can be merged with other sketches.
//
// The zero value is an empty sketch ready to use. The struct is 48 bytes on
// 32-bit platforms and 80 bytes on 64-bit ones; a sketch allocates its
// bucket arrays on first use and keeps them across Reset and
// UnmarshalBinary for reuse. A Sketch is plain data that owns its
// buffers: copying a Sketch value makes two sketches sharing buffers, so
// use Merge into an empty sketch (or an encode/decode round trip) to copy
// one instead.
//
// A Sketch is not safe for concurrent use: methods that modify it (Add,
// Merge, Reset, UnmarshalBinary) must not run concurrently with any other
// method on it. The read-only methods (Count, Quantile, QuantileClamped,
// AppendBinary, Size, and Merge's argument) may run concurrently with each
// other.
type Sketch struct {
	neg   store  // values < 0 by key -index(|v|), so keys ascend with values
	pos   store  // values > 0 by key index(v)
	zero  uint64 // values v with |v| < ZeroThreshold
	count uint64 // zero plus the sum of all bucket counts
}

// Add adds v to s. NaN and ±Inf are ignored. Add does not allocate when the
// bucket range s already covers includes v's bucket.
func (s *Sketch) Add(v float64) {
	a := math.Abs(v)
	if !(a <= math.MaxFloat64) || s.count == math.MaxUint64 {
		return // NaN, ±Inf, or no room left to count
	}
	if a < ZeroThreshold {
		s.zero++
		s.count++
		return
	}
	k := index(a)
	st := &s.pos
	if v < 0 {
		st = &s.neg
		k = -k
	}
	j := k - int(st.off)
	if uint(j) >= uint(len(st.counts)) {
		var dropped uint64
		j, dropped = st.slot(k)
		s.count -= dropped
	}
	if st.counts[j] == math.MaxUint32 {
		return
	}
	st.counts[j]++
	s.count++
}

// Merge adds the counts of o into s, so that s summarises the values of
// both; o is not modified and not retained. Merging a sketch into itself
// doubles its counts. A nil o is treated as empty. Merge does not allocate
// when the bucket range s covers includes o's buckets.
func (s *Sketch) Merge(o *Sketch) {
	if o == nil || o.count == 0 {
		return
	}
	n := min(o.zero, math.MaxUint64-s.count)
	s.zero += n
	s.count += n
	s.mergeStore(&s.neg, &o.neg)
	s.mergeStore(&s.pos, &o.pos)
}

// mergeStore adds the counts of src into dst, one of s's stores.
func (s *Sketch) mergeStore(dst, src *store) {
	lo, hi, ok := src.bounds()
	if !ok {
		return
	}
	if lo < int(dst.off) || hi >= int(dst.off)+len(dst.counts) {
		s.count -= dst.makeRoom(lo, hi)
	}
	srcOff, dstOff := int(src.off), int(dst.off)
	for k := lo; k <= hi; k++ {
		c := src.counts[k-srcOff]
		if c == 0 {
			continue
		}
		j := max(k-dstOff, 0) // keys below dst's window collapse into its lowest bucket
		n := min(uint64(c), math.MaxUint64-s.count)
		sum := uint64(dst.counts[j]) + n
		if sum > math.MaxUint32 {
			n -= sum - math.MaxUint32
			sum = math.MaxUint32
		}
		dst.counts[j] = uint32(sum)
		s.count += n
	}
}

// Count returns the number of values s holds: the values added and merged
// in, less NaNs, infinities and any dropped because a bucket was full.
func (s *Sketch) Count() uint64 {
	return s.count
}

// Reset empties s. It keeps s's bucket arrays and their position, so that
// refilling s does not allocate as long as the values need no more buckets
// than before. To release the arrays instead, assign Sketch{} to *s.
func (s *Sketch) Reset() {
	clear(s.neg.counts)
	clear(s.pos.counts)
	s.zero = 0
	s.count = 0
}

// Quantile returns an estimate of the q-quantile of the values in s, for q
// in [0, 1]: the value at rank q*(Count()-1) of the sorted values,
// interpolating linearly between the two closest ranks (numpy's default
// "linear" method), each estimated within 1%. It returns NaN when s is
// empty or q is outside [0, 1] or NaN. Quantile does not allocate.
func (s *Sketch) Quantile(q float64) float64 {
	if !(q >= 0 && q <= 1) || s.count == 0 {
		return math.NaN()
	}
	// The explicit conversion rounds the product to float64 before the
	// subtraction below: on arm64 Go would otherwise fuse them into one
	// FMA, and a fraction of 2e-16 instead of 0 interpolates towards an
	// unrelated neighbour.
	rank := float64(q * float64(s.count-1))
	r := min(uint64(rank), s.count-1) // float64 rounding can push rank past count-1
	frac := rank - float64(r)
	if frac <= 0 || r == s.count-1 {
		v, _ := s.rankValues(r, r)
		return v
	}
	v1, v2 := s.rankValues(r, r+1)
	if v1 == v2 {
		return v1
	}
	if d := v2 - v1; !math.IsInf(d, 0) {
		return v1 + d*frac
	}
	return v1*(1-frac) + v2*frac // signs differ and v2-v1 overflows
}

// QuantileClamped returns Quantile(q) clamped to [min, max], where the
// caller passes the exact minimum and maximum of the values it added to s;
// it returns exactly min for q = 0 and exactly max for q = 1. Like
// Quantile it returns NaN when s is empty or q is outside [0, 1].
func (s *Sketch) QuantileClamped(q, min, max float64) float64 {
	if !(q >= 0 && q <= 1) || s.count == 0 {
		return math.NaN()
	}
	switch q {
	case 0:
		return min
	case 1:
		return max
	}
	v := s.Quantile(q)
	if v < min {
		v = min
	}
	if v > max {
		v = max
	}
	return v
}

// rankValues returns the estimated values at 0-based ranks r1 <= r2 in
// ascending order; r2 must be less than s.count.
func (s *Sketch) rankValues(r1, r2 uint64) (v1, v2 float64) {
	w := rankWalk{r1: r1, r2: r2}
	if w.store(&s.neg, true) {
		return w.v1, w.v2
	}
	if s.zero > 0 {
		cum := w.cum + s.zero
		if !w.got1 && r1 < cum {
			w.v1, w.got1 = 0, true
		}
		if r2 < cum {
			return w.v1, 0
		}
		w.cum = cum
	}
	w.store(&s.pos, false)
	return w.v1, w.v2
}

// rankWalk finds the buckets holding two ranks by walking the buckets in
// ascending order of value.
type rankWalk struct {
	r1, r2 uint64 // ranks sought, r1 <= r2
	cum    uint64 // values in the buckets walked so far
	v1, v2 float64
	got1   bool
}

// store walks st, the negative store if neg, and reports whether it found
// r2.
func (w *rankWalk) store(st *store, neg bool) bool {
	for j, c := range st.counts {
		if c == 0 {
			continue
		}
		cum := w.cum + uint64(c)
		if w.r2 < cum || (!w.got1 && w.r1 < cum) {
			k := int(st.off) + j
			var v float64
			if neg {
				v = -value(-k)
			} else {
				v = value(k)
			}
			if !w.got1 {
				w.v1, w.got1 = v, true
			}
			if w.r2 < cum {
				w.v2 = v
				return true
			}
		}
		w.cum = cum
	}
	return false
}

// Size returns the approximate number of bytes of memory s occupies: the
// Sketch struct and its bucket arrays. It is meant for state-size metrics.
func (s *Sketch) Size() int {
	return int(unsafe.Sizeof(*s)) + 4*(cap(s.neg.counts)+cap(s.pos.counts))
}

// AppendBinary appends the version 1 binary encoding of s (see the package
// documentation) to dst and returns the extended slice; s retains no
// reference to it. Sketches with equal bucket counts have equal encodings.
func (s *Sketch) AppendBinary(dst []byte) []byte {
	dst = append(dst, encVersion)
	dst = binary.AppendUvarint(dst, s.zero)
	dst = s.neg.appendBinary(dst)
	return s.pos.appendBinary(dst)
}

// UnmarshalBinary replaces the contents of s with the sketch encoded in b
// by AppendBinary, reusing s's bucket arrays when they are large enough. It
// does not retain b. It returns an error, and leaves s unchanged, when b
// has an unknown version or is truncated, malformed or describes a sketch
// that AppendBinary cannot produce (such as one wider than MaxBuckets); it
// does not panic on any input.
func (s *Sketch) UnmarshalBinary(b []byte) error {
	if len(b) == 0 {
		return errors.New("sketch: empty encoding")
	}
	if b[0] != encVersion {
		return fmt.Errorf("sketch: unsupported encoding version %d", b[0])
	}
	// Validate everything before touching s.
	d := decoder{b: b[1:]}
	zero := d.uvarint()
	nlo, nhi, nsum := d.store(-maxIndex, -minIndex, nil)
	plo, phi, psum := d.store(minIndex, maxIndex, nil)
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return d.err
	}
	total := nsum + psum // at most 2*MaxBuckets*(2^32-1), no overflow
	if zero > math.MaxUint64-total {
		return errors.New("sketch: invalid encoding: total count overflows uint64")
	}
	s.neg.prepare(nlo, nhi)
	s.pos.prepare(plo, phi)
	d = decoder{b: b[1:]}
	d.uvarint()
	d.store(-maxIndex, -minIndex, &s.neg)
	d.store(minIndex, maxIndex, &s.pos)
	s.zero = zero
	s.count = zero + total
	return nil
}

// decoder reads varints from b, recording the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("sketch: invalid encoding: "+format, args...)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		if n == 0 {
			d.err = errors.New("sketch: truncated encoding")
		} else {
			d.fail("varint overflows 64 bits")
		}
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		if n == 0 {
			d.err = errors.New("sketch: truncated encoding")
		} else {
			d.fail("varint overflows 64 bits")
		}
		return 0
	}
	d.b = d.b[n:]
	return v
}

// store reads one store whose keys must lie in [minKey, maxKey], returning
// the keys of its first and last buckets (lo > hi when it has none) and
// the sum of its counts. If dst is non-nil it stores the counts into dst,
// which must already cover [lo, hi] and be empty; it is only used once the
// encoding has been validated.
func (d *decoder) store(minKey, maxKey int, dst *store) (lo, hi int, sum uint64) {
	lo, hi = 0, -1
	runs := d.uvarint()
	if runs > MaxBuckets {
		d.fail("%d runs of buckets", runs)
	}
	for r := uint64(0); r < runs && d.err == nil; r++ {
		var start int
		if r == 0 {
			k := d.varint()
			if d.err == nil && (k < int64(minKey) || k > int64(maxKey)) {
				d.fail("bucket key %d out of range [%d, %d]", k, minKey, maxKey)
			}
			start = int(k)
			lo = start
		} else {
			gap := d.uvarint()
			if gap > MaxBuckets {
				d.fail("buckets span more than %d keys", MaxBuckets)
			}
			start = hi + 1 + int(gap)
		}
		n := d.uvarint()
		switch {
		case d.err != nil:
		case n == 0:
			d.fail("empty run of buckets")
		case n > MaxBuckets || start-lo+int(n) > MaxBuckets:
			d.fail("buckets span more than %d keys", MaxBuckets)
		case start+int(n)-1 > maxKey:
			d.fail("bucket key %d out of range [%d, %d]", start+int(n)-1, minKey, maxKey)
		case n > uint64(len(d.b)):
			d.err = errors.New("sketch: truncated encoding")
		}
		if d.err != nil {
			break
		}
		for k := start; k < start+int(n); k++ {
			c := d.uvarint()
			if c > math.MaxUint32 {
				d.fail("bucket count %d exceeds 2^32-1", c)
			}
			if d.err != nil {
				break
			}
			sum += c
			if dst != nil {
				dst.counts[k-int(dst.off)] = uint32(c)
			}
		}
		hi = start + int(n) - 1
	}
	return lo, hi, sum
}

// store is a dense array of bucket counters: counts[j] counts the values
// with bucket key off+j. The window [off, off+len(counts)) always spans the
// whole array (len(counts) == cap(counts)) and at most MaxBuckets keys.
// When the keys in use would span more than MaxBuckets, the lowest ones are
// collapsed into the lowest kept key, which is then counts[0]: keys below
// off count there.
type store struct {
	counts []uint32
	off    int32
}

// bounds returns the lowest and highest keys with a non-zero count, or
// ok = false if there are none.
func (st *store) bounds() (lo, hi int, ok bool) {
	c := st.counts
	i := 0
	for i < len(c) && c[i] == 0 {
		i++
	}
	if i == len(c) {
		return 0, 0, false
	}
	j := len(c) - 1
	for c[j] == 0 {
		j--
	}
	return int(st.off) + i, int(st.off) + j, true
}

// slot returns the position in counts of key k, which lies outside the
// window, after moving, growing or collapsing the window as needed to
// include it. dropped is the number of values lost because collapsing
// filled a bucket beyond 2^32-1.
func (st *store) slot(k int) (j int, dropped uint64) {
	if k < int(st.off) && len(st.counts) == MaxBuckets && st.counts[MaxBuckets-1] != 0 {
		// The window is as wide as it gets and its top bucket is in use,
		// so k's bucket collapses into the lowest kept one. This is the
		// steady state for data wider than MaxBuckets buckets.
		return 0, 0
	}
	dropped = st.makeRoom(k, k)
	return max(k-int(st.off), 0), dropped
}

// makeRoom moves or grows the window so that it covers the keys in use and
// the keys [klo, khi], as far as MaxBuckets allows: if they span more than
// MaxBuckets keys it keeps the highest MaxBuckets and collapses the counts
// of lower keys in use into the lowest kept key. It returns the number of
// values lost because the collapsed bucket would exceed 2^32-1.
func (st *store) makeRoom(klo, khi int) (dropped uint64) {
	elo, ehi, inUse := st.bounds()
	lo, hi := klo, khi
	if inUse {
		lo, hi = min(lo, elo), max(hi, ehi)
	}
	if hi-lo+1 > MaxBuckets {
		lo = hi - MaxBuckets + 1
	}
	off, n := int(st.off), len(st.counts)
	if lo >= off && hi < off+n {
		return 0
	}
	span := hi - lo + 1
	if span > n {
		n = grownLen(span)
	}
	// Leave the slack on the side the keys grow towards.
	var newOff int
	switch {
	case !inUse || (klo < elo && khi > ehi):
		newOff = lo - (n-span)/2
	case khi > ehi:
		newOff = lo
	default:
		newOff = hi - n + 1
	}
	reuse := n <= cap(st.counts)
	buf := st.counts
	if !reuse {
		buf = make([]uint32, n)
	}
	if inUse {
		var collapsed uint64 // counts of the keys in use below lo
		for k := elo; k < lo && k <= ehi; k++ {
			collapsed += uint64(st.counts[k-off])
		}
		from, moved := max(elo, lo), 0
		if from <= ehi {
			moved = copy(buf[from-newOff:], st.counts[from-off:ehi-off+1])
		}
		if reuse {
			clear(buf[:max(from-newOff, 0)])
			clear(buf[from-newOff+moved:])
		}
		if collapsed > 0 {
			c := uint64(buf[lo-newOff]) + collapsed
			if c > math.MaxUint32 {
				dropped = c - math.MaxUint32
				c = math.MaxUint32
			}
			buf[lo-newOff] = uint32(c)
		}
	}
	st.counts = buf
	st.off = int32(newOff)
	return dropped
}

// grownLen returns the length of a new window for span keys, with room to
// grow.
func grownLen(span int) int {
	n := (span + span/4 + 8 + 7) &^ 7
	return min(n, MaxBuckets)
}

// prepare empties st and sets its window to cover the keys [lo, hi], or
// leaves the window where it is if lo > hi.
func (st *store) prepare(lo, hi int) {
	clear(st.counts)
	if lo > hi {
		return
	}
	span := hi - lo + 1
	n := len(st.counts)
	if span > n {
		n = grownLen(span)
		st.counts = make([]uint32, n)
	}
	st.off = int32(lo - (n-span)/2)
}

// appendBinary appends the encoding of st to dst.
func (st *store) appendBinary(dst []byte) []byte {
	c := st.counts
	first := 0
	for first < len(c) && c[first] == 0 {
		first++
	}
	runs := 0
	for i := first; i < len(c); {
		_, i = nextRun(c, i)
		runs++
	}
	dst = binary.AppendUvarint(dst, uint64(runs))
	prevEnd := 0
	for i := first; i < len(c); {
		end, next := nextRun(c, i)
		if i == first {
			dst = binary.AppendVarint(dst, int64(int(st.off)+i))
		} else {
			dst = binary.AppendUvarint(dst, uint64(i-prevEnd-1))
		}
		dst = binary.AppendUvarint(dst, uint64(end-i+1))
		for _, x := range c[i : end+1] {
			dst = binary.AppendUvarint(dst, uint64(x))
		}
		prevEnd, i = end, next
	}
	return dst
}

// nextRun returns the position end of the last bucket of the run that
// starts at position i of c, where c[i] != 0, and the position next of the
// first bucket of the following run (len(c) if none). A run ends before
// more than maxZeroGap empty buckets.
func nextRun(c []uint32, i int) (end, next int) {
	end = i
	for j := i + 1; j < len(c); j++ {
		if c[j] != 0 {
			if j-end-1 > maxZeroGap {
				return end, j
			}
			end = j
		}
	}
	return end, len(c)
}
