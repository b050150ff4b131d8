package sensors

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// parseFloat parses a number already checked by the format's grammar (a JSON
// number, or isDecimal) and reports whether it is finite.
func parseFloat(b []byte) (float64, bool) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// tsUnit is the unit of a numeric timestamp, as a power-of-ten shift that
// turns it into milliseconds: s is 3 (×1000), ms 0, us -3, ns -6.
type tsUnit int8

const (
	unitS    tsUnit = 3
	unitMS   tsUnit = 0
	unitUS   tsUnit = -3
	unitNS   tsUnit = -6
	unitAuto tsUnit = 100
)

// parseUnit reads Options.TSUnit; "" means def.
func parseUnit(s string, def tsUnit) (tsUnit, error) {
	switch s {
	case "":
		return def, nil
	case "s":
		return unitS, nil
	case "ms":
		return unitMS, nil
	case "us":
		return unitUS, nil
	case "ns":
		return unitNS, nil
	case "auto":
		return unitAuto, nil
	}
	return 0, fmt.Errorf("unknown timestamp unit %q (want s, ms, us, ns or auto)", s)
}

// maxExp bounds the exponent of a decimal timestamp. Anything beyond it is
// either far out of range or rounds to 0 or -1 ms, so saturating is exact.
const maxExp = 1 << 40

// decimalMS converts the decimal number in b, read in unit u, to Unix
// milliseconds, rounding toward negative infinity. b is an optional sign,
// digits with an optional fraction (at least one digit in all), and an
// optional exponent: JSON numbers, CSV cells and influx integers all fit.
//
// The arithmetic is done on the decimal digits, not on a float64, so that
// 1700000000.123 s is exactly 1700000000123 ms and nanosecond timestamps
// beyond 2^53 lose nothing before the division. syntaxOK is false when b is
// not such a number; inRange is false when the result lies outside
// [MinTS, MaxTS].
func decimalMS(b []byte, u tsUnit) (ms int64, syntaxOK, inRange bool) {
	if ms, ok := integerMS(b, u); ok {
		return ms, true, ms >= MinTS && ms <= MaxTS
	}
	d, ok := scanDecimal(b)
	if !ok {
		return 0, false, false
	}
	if d.sig < 0 {
		return 0, true, true // zero, whatever the unit
	}
	shift := int64(u)
	if u == unitAuto {
		switch {
		case d.n <= 11: // |x| < 1e11
			shift = int64(unitS)
		case d.n <= 14: // |x| < 1e14
			shift = int64(unitMS)
		case d.n <= 17: // |x| < 1e17
			shift = int64(unitUS)
		default:
			shift = int64(unitNS)
		}
	}
	k := d.n + shift // digits of the result before the point
	if k > 16 {      // |result| >= 1e16 > 2^53
		return 0, true, false
	}
	v := d.floorSigned(d.digits(k))
	if v < MinTS || v > MaxTS {
		return 0, true, false
	}
	return v, true, true
}

// decimal is a decimal number in text as scanDecimal read it:
// |x| = 0.d1d2...dn × 10^n, d1 being its first non-zero digit.
type decimal struct {
	b      []byte
	neg    bool
	sig    int   // index in b of d1; -1 when x is zero
	lastNZ int   // index in b of the last non-zero digit
	n      int64 // digits of |x| before the point, counted from d1 (<= 0 for 0.0xyz)
}

// scanDecimal reads b: an optional sign, digits with an optional fraction
// (at least one digit in all), and an optional exponent. ok is false when b
// is not such a number.
func scanDecimal(b []byte) (d decimal, ok bool) {
	d.b = b
	i := 0
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		d.neg = b[i] == '-'
		i++
	}
	// Scan the mantissa, noting where its significant digits start and end.
	var (
		ndig  int  // digits in the mantissa
		point = -1 // index of the decimal point
	)
	d.sig, d.lastNZ = -1, -1
	for ; i < len(b); i++ {
		c := b[i]
		if c == '.' && point < 0 {
			point = i
			continue
		}
		if !isDigit(c) {
			break
		}
		ndig++
		if c != '0' {
			if d.sig < 0 {
				d.sig = i
			}
			d.lastNZ = i
		}
	}
	mantEnd := i
	if ndig == 0 {
		return d, false
	}
	if point < 0 {
		point = mantEnd
	}
	var exp int64
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '-' || b[i] == '+') {
			eneg = b[i] == '-'
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			return d, false
		}
		for ; i < len(b) && isDigit(b[i]); i++ {
			if exp < maxExp {
				exp = exp*10 + int64(b[i]-'0')
			}
		}
		if eneg {
			exp = -exp
		}
	}
	if i != len(b) {
		return d, false
	}
	if d.sig >= 0 {
		if d.sig < point {
			d.n = int64(point - d.sig)
		} else {
			d.n = -int64(d.sig - point - 1)
		}
		d.n += exp
	}
	return d, true
}

// digits returns the first k significant digits of |x| as an integer,
// zero-padded (|x| × 10^(k-n) truncated), and whether a non-zero digit lies
// beyond them. x is not zero, and k <= 19 so that the result fits.
func (d *decimal) digits(k int64) (v uint64, rem bool) {
	var taken int64
	for j := d.sig; j <= d.lastNZ; j++ {
		c := d.b[j]
		if c == '.' {
			continue
		}
		if taken >= k {
			return v * pow10u(k-taken), true
		}
		v = v*10 + uint64(c-'0')
		taken++
	}
	return v * pow10u(k-taken), false
}

// floorSigned applies x's sign to the magnitude v that digits returned,
// rounding toward negative infinity: a negative x with a remainder is one
// less. v fits in an int64.
func (d *decimal) floorSigned(v uint64, rem bool) int64 {
	r := int64(v)
	if d.neg {
		r = -r
		if rem {
			r--
		}
	}
	return r
}

// pow10u is 10^e for 0 <= e <= 19, and 1 below 0.
func pow10u(e int64) uint64 {
	p := uint64(1)
	for ; e > 0; e-- {
		p *= 10
	}
	return p
}

// pow10 holds the powers of ten integerMS scales by.
var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000}

// integerMS is the fast path of decimalMS for an integer of up to 18 digits
// in a fixed unit, the common case. ok is false when it does not apply.
func integerMS(b []byte, u tsUnit) (ms int64, ok bool) {
	if u == unitAuto || len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var v int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	switch {
	case u == unitS:
		if v > MaxTS/1000+1 || v < MinTS/1000-1 {
			return MaxTS + 1, true // out of range, without overflowing
		}
		return v * 1000, true
	case u < 0:
		p := pow10[-u]
		q := v / p
		if v%p < 0 {
			q-- // floor, not truncation
		}
		return q, true
	}
	return v, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isDecimal reports whether b is a decimal number as decimalMS and
// parseNumber accept it: optional sign, digits with an optional fraction, an
// optional exponent. It rejects what strconv.ParseFloat would also take but
// devices do not mean as numbers: "inf", "NaN", hex floats, underscores.
func isDecimal(b []byte) bool {
	i := 0
	if i < len(b) && (b[i] == '-' || b[i] == '+') {
		i++
	}
	d := 0
	for ; i < len(b) && isDigit(b[i]); i++ {
		d++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for ; i < len(b) && isDigit(b[i]); i++ {
			d++
		}
	}
	if d == 0 {
		return false
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '-' || b[i] == '+') {
			i++
		}
		e := 0
		for ; i < len(b) && isDigit(b[i]); i++ {
			e++
		}
		if e == 0 {
			return false
		}
	}
	return i == len(b)
}

// isInteger reports whether b is an optional '-' followed by one or more
// digits.
func isInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

// rfc3339MS parses b as an RFC 3339 time (time.RFC3339Nano, a space allowed
// in place of the 'T') and returns it in Unix milliseconds, rounded toward
// negative infinity.
func rfc3339MS(b []byte) (int64, bool) {
	// "2006-01-02T15:04:05Z" is the shortest form; 64 bytes leaves room for
	// a long fraction and an offset.
	if len(b) < 20 || len(b) > 64 {
		return 0, false
	}
	var a [64]byte
	n := copy(a[:], b)
	if a[10] == ' ' {
		a[10] = 'T'
	}
	t, err := time.Parse(time.RFC3339Nano, string(a[:n]))
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}

// textTS reads a timestamp given as text: a number in unit u when number
// says b looks like one, otherwise RFC 3339.
func textTS(b []byte, u tsUnit, number bool) (int64, error) {
	if number {
		ms, ok, in := decimalMS(b, u)
		if ok {
			if !in {
				return 0, ErrTSRange
			}
			return ms, nil
		}
	} else if ms, ok := rfc3339MS(b); ok {
		return ms, nil
	}
	return 0, fmt.Errorf("%w: %s", ErrUnreadableTS, excerpt(b))
}
