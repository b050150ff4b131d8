// Package sensortest checks that a sensors.Decoder keeps the contract
// documented on sensors.Decoder. Every decoder's tests call Conformance with
// a few valid payloads of its format, and its fuzz target calls CheckDecode
// on every input.
//
// The checks are:
//
//   - the valid payloads, fed in order to one decoder, decode without error;
//   - decoding is deterministic: fresh decoders fed the same payloads return
//     the same readings, whether dst starts nil, non-empty, or is reused;
//   - Decode appends to dst and never changes the readings already in it;
//   - on error, the returned slice has the length dst had on entry, and the
//     error text is a short single line;
//   - no input panics: every truncation of a valid payload and many
//     single-byte mutations of it, fed after the payloads before it;
//   - a payload rejected with an error leaves the decoder as it was: the
//     valid payload after a rejected mutation decodes as in the first run;
//   - every reading has a sensor, no source, a finite value and a timestamp
//     that is sensors.NoTS or within [sensors.MinTS, sensors.MaxTS], and its
//     strings are valid UTF-8.
package sensortest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/edged/edged/sensors"
)

// maxFailures bounds the failures Check reports, so that one systematic bug
// does not bury the output.
const maxFailures = 20

// MaxErrorLen is the longest error text a decoder may return.
const MaxErrorLen = 200

// Conformance runs Check and reports its failures with t.Error.
func Conformance(t testing.TB, newDecoder func() sensors.Decoder, valid [][]byte) {
	t.Helper()
	if err := Check(newDecoder, valid); err != nil {
		t.Error(err)
	}
}

// Check tests decoders made by newDecoder against the contract, using valid
// as sample payloads: they are fed in order to one decoder (a stateful
// decoder such as csv sees its header first) and must all decode without
// error. Check returns every failure joined with errors.Join, or nil.
func Check(newDecoder func() sensors.Decoder, valid [][]byte) error {
	c := &checker{}
	if len(valid) == 0 {
		c.failf("no valid payloads to check with")
		return c.err()
	}

	// The reference run: nil dst, one decoder.
	ref := make([][]sensors.Reading, len(valid))
	d := newDecoder()
	for i, p := range valid {
		out, err, v := CheckDecode(d, nil, p)
		c.add(v, "valid[%d] %s", i, quote(p))
		if err != nil {
			c.failf("valid[%d] %s: unexpected error: %v", i, quote(p), err)
		}
		ref[i] = out
	}

	// Determinism and append semantics: a fresh decoder, a non-empty dst
	// carried from call to call.
	d = newDecoder()
	dst := append([]sensors.Reading(nil), sentinel...)
	want := append([]sensors.Reading(nil), sentinel...)
	for i, p := range valid {
		n := len(dst)
		var err error
		var v error
		dst, err, v = CheckDecode(d, dst, p)
		c.add(v, "valid[%d] %s after other readings", i, quote(p))
		if err == nil && v == nil && !equal(dst[n:], ref[i]) {
			c.failf("valid[%d] %s: not deterministic: got %v, first run gave %v", i, quote(p), dst[n:], ref[i])
		}
		want = append(want, ref[i]...)
		if err != nil || v != nil {
			dst = append(dst[:0:0], want...) // reported already; go on from a sane dst
		}
	}
	if !equal(dst, want) {
		c.failf("readings appended to a non-empty dst: got %v, want %v", dst, want)
	}

	// A reused dst: decoders must not depend on what lies in its spare
	// capacity.
	d = newDecoder()
	reuse := make([]sensors.Reading, 0, 64)
	for i := range reuse[:cap(reuse)] {
		reuse[:cap(reuse)][i] = sensors.Reading{Sensor: "stale", Metric: "stale", Value: 1, TS: 1}
	}
	for i, p := range valid {
		out, err, v := CheckDecode(d, reuse[:0], p)
		c.add(v, "valid[%d] %s into a reused dst", i, quote(p))
		if err == nil && !equal(out, ref[i]) {
			c.failf("valid[%d] %s into a reused dst: got %v, want %v", i, quote(p), out, ref[i])
		}
		if cap(out) > cap(reuse) {
			reuse = out
		}
	}

	// Mutations: each on a fresh decoder that has seen the payloads before.
	for i, p := range valid {
		for _, m := range mutations(p) {
			d := newDecoder()
			for _, q := range valid[:i] {
				_, _ = d.Decode(nil, q) // known good, checked above
			}
			_, err, v := CheckDecode(d, append([]sensors.Reading(nil), sentinel...), m)
			c.add(v, "mutation %s of valid[%d]", quote(m), i)
			if err != nil && v == nil {
				// A rejected payload leaves the decoder as it was.
				out, err, v := CheckDecode(d, nil, p)
				c.add(v, "valid[%d] after rejected mutation %s", i, quote(m))
				if v == nil && (err != nil || !equal(out, ref[i])) {
					c.failf("valid[%d] %s after rejected mutation %s: got %v, %v; want %v", i, quote(p), quote(m), out, err, ref[i])
				}
			}
			if c.n > maxFailures {
				return c.err()
			}
		}
	}
	return c.err()
}

// CheckDecode calls d.Decode(dst, payload), recovering a panic, and checks
// the outcome of that one call against the contract. It returns what Decode
// returned, and a violation error (nil when the call kept the contract).
func CheckDecode(d sensors.Decoder, dst []sensors.Reading, payload []byte) (out []sensors.Reading, err error, violation error) {
	before := append([]sensors.Reading(nil), dst...)
	n := len(dst)
	func() {
		defer func() {
			if r := recover(); r != nil {
				violation = fmt.Errorf("panic: %v", r)
			}
		}()
		out, err = d.Decode(dst, payload)
	}()
	if violation != nil {
		return dst, nil, violation
	}
	var errs []error
	if len(out) < n {
		errs = append(errs, fmt.Errorf("returned %d readings, fewer than the %d in dst", len(out), n))
	} else if !equal(out[:n], before) {
		errs = append(errs, errors.New("changed readings already in dst"))
	}
	if err != nil {
		if len(out) != n {
			errs = append(errs, fmt.Errorf("error %q with len %d, want dst's len %d", err, len(out), n))
		}
		switch s := err.Error(); {
		case s == "":
			errs = append(errs, errors.New("empty error text"))
		case len(s) > MaxErrorLen:
			errs = append(errs, fmt.Errorf("error text longer than %d bytes: %q", MaxErrorLen, s))
		case strings.ContainsAny(s, "\n\r"):
			errs = append(errs, fmt.Errorf("error text spans lines: %q", s))
		}
	} else if len(out) >= n {
		for j, r := range out[n:] {
			if e := CheckReading(r); e != nil {
				errs = append(errs, fmt.Errorf("reading %d %+v: %w", j, r, e))
			}
		}
	}
	return out, err, errors.Join(errs...)
}

// CheckReading checks the invariants of one decoded reading.
func CheckReading(r sensors.Reading) error {
	var errs []error
	if r.Sensor == "" {
		errs = append(errs, errors.New("no sensor"))
	}
	if r.Source != "" {
		errs = append(errs, errors.New("source set by the decoder"))
	}
	if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) {
		errs = append(errs, errors.New("value not finite"))
	}
	if r.TS != sensors.NoTS && (r.TS < sensors.MinTS || r.TS > sensors.MaxTS) {
		errs = append(errs, errors.New("timestamp out of range"))
	}
	if !utf8.ValidString(r.Sensor) || !utf8.ValidString(r.Metric) {
		errs = append(errs, errors.New("sensor or metric not valid UTF-8"))
	}
	return errors.Join(errs...)
}

// sentinel readings fill dst before calls that must leave them alone.
var sentinel = []sensors.Reading{
	{Sensor: "sentinel-a", Metric: "m", Value: -1.5, TS: 42, Source: "src"},
	{Sensor: "sentinel-b", Value: 7, TS: sensors.NoTS},
}

// interesting are the bytes the mutations put into payloads: structure of
// every supported format, and bytes that break UTF-8 or lines.
var interesting = []byte{0, '\n', '\r', '\t', ' ', '"', '\\', ',', ';', '=', ':',
	'{', '}', '[', ']', '-', '+', '.', 'e', '0', '9', 'i', 'u', 'x', '#', 0x7f, 0xc3, 0xff}

// maxMutated bounds the positions mutated in one payload.
const maxMutated = 256

// mutations returns variants of p: every prefix, and for each position up to
// maxMutated the payload with that byte removed, replaced or preceded by each
// interesting byte, plus p doubled.
func mutations(p []byte) [][]byte {
	var ms [][]byte
	for k := 0; k < len(p); k++ {
		ms = append(ms, p[:k:k])
	}
	n := min(len(p), maxMutated)
	for k := 0; k < n; k++ {
		ms = append(ms, cat(p[:k], nil, p[k+1:]))
		for _, b := range interesting {
			if b != p[k] {
				ms = append(ms, cat(p[:k], []byte{b}, p[k+1:]))
			}
			ms = append(ms, cat(p[:k], []byte{b}, p[k:]))
		}
	}
	ms = append(ms, cat(p, nil, p))
	return ms
}

func cat(a, b, c []byte) []byte {
	out := make([]byte, 0, len(a)+len(b)+len(c))
	return append(append(append(out, a...), b...), c...)
}

// equal compares readings, values bit for bit.
func equal(a, b []sensors.Reading) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Sensor != y.Sensor || x.Metric != y.Metric || x.TS != y.TS || x.Source != y.Source ||
			math.Float64bits(x.Value) != math.Float64bits(y.Value) {
			return false
		}
	}
	return true
}

// quote shows a payload in a failure, shortened.
func quote(p []byte) string {
	if len(p) > 80 {
		return fmt.Sprintf("%q...", p[:80])
	}
	return fmt.Sprintf("%q", p)
}

type checker struct {
	errs []error
	n    int
}

func (c *checker) failf(format string, args ...any) {
	c.n++
	if c.n <= maxFailures {
		c.errs = append(c.errs, fmt.Errorf(format, args...))
	}
}

// add records a violation v, if any, with context.
func (c *checker) add(v error, format string, args ...any) {
	if v != nil {
		c.failf("%s: %w", fmt.Sprintf(format, args...), v)
	}
}

func (c *checker) err() error {
	if c.n > maxFailures {
		c.errs = append(c.errs, fmt.Errorf("... stopped after %d failures", c.n))
	}
	return errors.Join(c.errs...)
}
