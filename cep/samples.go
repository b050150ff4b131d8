package cep

// maxWindowReadings bounds the readings a rolling window (zscore, mad)
// keeps per key: when a window holds this many, the oldest reading leaves
// it early, before it is Window old. Alerts say how many readings the
// baseline held, so a truncated window shows. At 16 bytes a reading (24
// for mad) a full window is 160 KB (240 KB) per key. Checkpoints refuse a
// longer window, so changing it means new state fingerprints.
const maxWindowReadings = 10000

// sample is one reading kept in a rolling window.
type sample struct {
	ts int64
	v  float64
}

// sampleRing keeps the readings of a rolling window, oldest first. Its
// buffer grows by doubling up to maxWindowReadings and is then reused, so
// a key in steady state does not allocate.
type sampleRing struct {
	buf  []sample
	head int // index of the oldest reading
	n    int
}

// at returns the i-th oldest reading.
func (r *sampleRing) at(i int) sample {
	j := r.head + i
	if j >= len(r.buf) {
		j -= len(r.buf)
	}
	return r.buf[j]
}

// oldest returns the oldest reading; the ring must not be empty.
func (r *sampleRing) oldest() sample { return r.buf[r.head] }

// pop removes the oldest reading and returns it; the ring must not be empty.
func (r *sampleRing) pop() sample {
	s := r.buf[r.head]
	r.head++
	if r.head == len(r.buf) {
		r.head = 0
	}
	r.n--
	if r.n == 0 {
		r.head = 0
	}
	return s
}

// push appends the newest reading. The caller keeps n below
// maxWindowReadings (pop first).
func (r *sampleRing) push(s sample) {
	if r.n == len(r.buf) {
		r.grow(min(max(8, 2*len(r.buf)), maxWindowReadings))
	}
	j := r.head + r.n
	if j >= len(r.buf) {
		j -= len(r.buf)
	}
	r.buf[j] = s
	r.n++
}

// grow reallocates the buffer with room for c readings, oldest first.
func (r *sampleRing) grow(c int) {
	nb := make([]sample, c)
	for i := 0; i < r.n; i++ {
		nb[i] = r.at(i)
	}
	r.buf, r.head = nb, 0
}

// appendSamples encodes the ring's readings, oldest first.
func appendSamples(b []byte, r *sampleRing) []byte {
	b = appendU64(b, uint64(r.n))
	for i := 0; i < r.n; i++ {
		s := r.at(i)
		b = appendI64(b, s.ts)
		b = appendF64(b, s.v)
	}
	return b
}

// samples decodes what appendSamples wrote into r, replacing its contents.
// A ring of more than maxWindowReadings readings, or with a value that is
// not finite, is refused.
func (d *decoder) samples(r *sampleRing) {
	n := d.count(16)
	if n > maxWindowReadings {
		d.err = errState
		n = 0
	}
	r.head, r.n = 0, 0
	if len(r.buf) < n {
		c := 8
		for c < n {
			c *= 2
		}
		r.buf = make([]sample, min(c, maxWindowReadings))
	}
	for i := 0; i < n; i++ {
		ts, v := d.i64(), d.f64()
		if !finite(v) && d.err == nil {
			d.err = errState
		}
		r.push(sample{ts: ts, v: v})
	}
}
