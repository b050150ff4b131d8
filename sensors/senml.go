package sensors

import "fmt"

func init() { Register("senml", newSenML) }

// SenML limits and constants (RFC 8428).
const (
	// senmlVersion is the highest base version (bver) understood; a pack
	// declaring a higher one must not be used (RFC 8428 section 4.4).
	senmlVersion = 10
	// senmlRelativeUS is 2^28 s in microseconds: resolved times below it
	// are relative to "now" (RFC 8428 section 4.5.3).
	senmlRelativeUS = (1 << 28) * 1_000_000
	// maxUS bounds a time in microseconds: [MinTS, MaxTS] ms with room for
	// the sub-millisecond digits.
	maxUS = MaxTS*1000 + 999
)

// senmlDecoder decodes a SenML JSON pack (RFC 8428): one JSON array of
// records per payload, each record with a numeric "v" one reading.
//
// Base fields (bn, bt, bv, bver) apply to the record they appear in and to
// the later ones until replaced. The name is bn+n; the time bt+t seconds,
// each resolved to whole microseconds rounding toward negative infinity;
// the value bv+v. The pack is atomic: a problem in any record rejects it.
type senmlDecoder struct {
	sensor string // Options.Sensor

	names interner
	bn    []byte // the current base name, unescaped
	name  []byte // scratch: bn+n
	key   []byte // scratch: an unescaped key
}

func newSenML(opts Options) (Decoder, error) {
	return &senmlDecoder{sensor: opts.Sensor}, nil
}

// senmlRecord holds where the fields of one record lie; a repeated field
// keeps its last value.
type senmlRecord struct {
	bn, bt, bu, bv, bs, bver jval
	n, u, v, vs, vb, vd      jval
	s, t, ut                 jval
}

// field returns the slot of the SenML label k, or nil for another label.
func (r *senmlRecord) field(k []byte) *jval {
	switch string(k) {
	case "bn":
		return &r.bn
	case "bt":
		return &r.bt
	case "bu":
		return &r.bu
	case "bv":
		return &r.bv
	case "bs":
		return &r.bs
	case "bver":
		return &r.bver
	case "n":
		return &r.n
	case "u":
		return &r.u
	case "v":
		return &r.v
	case "vs":
		return &r.vs
	case "vb":
		return &r.vb
	case "vd":
		return &r.vd
	case "s":
		return &r.s
	case "t":
		return &r.t
	case "ut":
		return &r.ut
	}
	return nil
}

// senmlBase is the base state carried from record to record.
type senmlBase struct {
	bt int64   // base time, µs
	bv float64 // base value
}

// Decode implements Decoder.
func (d *senmlDecoder) Decode(dst []Reading, p []byte) ([]Reading, error) {
	if len(p) > maxJSONPayload {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLong, len(p), maxJSONPayload)
	}
	if cap(d.bn) > 64<<10 || cap(d.name) > 64<<10 || cap(d.key) > 64<<10 {
		d.bn, d.name, d.key = nil, nil, nil
	}
	n0 := len(dst)
	s := jscan{b: p}
	s.ws()
	if s.peek() != '[' {
		return dst, ErrNotArray
	}
	s.i++
	s.ws()
	d.bn = d.bn[:0]
	var base senmlBase
	if s.peek() == ']' {
		s.i++
	} else {
		for rec := 1; ; rec++ {
			var err error
			if dst, err = d.record(dst, &s, rec, &base); err != nil {
				return dst[:n0], err
			}
			s.ws()
			c := s.peek()
			if c == ',' {
				s.i++
				s.ws()
				continue
			}
			if c == ']' {
				s.i++
				break
			}
			return dst[:n0], s.unexpected("',' or ']'")
		}
	}
	s.ws()
	if s.i != len(p) {
		return dst[:n0], fmt.Errorf("%w: data after the array at offset %d", ErrInvalidJSON, s.i)
	}
	if len(dst) == n0 {
		return dst, ErrNoValue
	}
	return dst, nil
}

// record scans the record at the cursor, updates the base state and
// appends its reading, if any, to dst.
func (d *senmlDecoder) record(dst []Reading, s *jscan, rec int, base *senmlBase) ([]Reading, error) {
	p := s.b
	if s.peek() != '{' {
		s.value(1)
		if s.err != nil {
			return dst, s.err
		}
		return dst, fmt.Errorf("%w: record %d is not an object", ErrInvalidSenML, rec)
	}
	var r senmlRecord
	s.i++
	for first := true; ; first = false {
		key, val, ok := s.member(2, first)
		if !ok {
			if s.err != nil {
				return dst, s.err
			}
			break
		}
		k := p[key.start:key.end]
		if !key.plain {
			d.key = unquote(d.key[:0], k)
			k = d.key
		}
		if f := r.field(k); f != nil {
			*f = val
		} else if len(k) > 0 && k[len(k)-1] == '_' {
			// RFC 8428 section 4.4: labels ending in '_' must be
			// understood, or the pack rejected.
			return dst, fmt.Errorf("%w: record %d: unknown mandatory field %s", ErrInvalidSenML, rec, excerpt(k))
		}
	}

	// Types, in a fixed order.
	for _, f := range [...]struct {
		v    jval
		name string
	}{{r.bn, "bn"}, {r.bu, "bu"}, {r.n, "n"}, {r.u, "u"}, {r.vs, "vs"}, {r.vd, "vd"}} {
		if f.v.kind != 0 && f.v.kind != '"' {
			return dst, fmt.Errorf("%w: record %d: %q is not a string", ErrInvalidSenML, rec, f.name)
		}
	}
	if r.vb.kind != 0 && r.vb.kind != 't' && r.vb.kind != 'f' {
		return dst, fmt.Errorf("%w: record %d: \"vb\" is not a boolean", ErrInvalidSenML, rec)
	}
	if r.bver.kind != 0 {
		if r.bver.kind != '0' {
			return dst, fmt.Errorf("%w: record %d: \"bver\" is not a number", ErrInvalidSenML, rec)
		}
		if v, ok := parseFloat(p[r.bver.start:r.bver.end]); !ok || v > senmlVersion {
			return dst, fmt.Errorf("%w: record %d: bver %s is not supported", ErrInvalidSenML, rec, excerpt(p[r.bver.start:r.bver.end]))
		}
	}
	bv, err := senmlNumber(p, r.bv, rec, "bv")
	if err != nil {
		return dst, err
	}
	if _, err := senmlNumber(p, r.bs, rec, "bs"); err != nil {
		return dst, err
	}
	v, err := senmlNumber(p, r.v, rec, "v")
	if err != nil {
		return dst, err
	}
	if _, err := senmlNumber(p, r.s, rec, "s"); err != nil {
		return dst, err
	}
	bt, err := senmlTime(p, r.bt, rec, "bt")
	if err != nil {
		return dst, err
	}
	t, err := senmlTime(p, r.t, rec, "t")
	if err != nil {
		return dst, err
	}
	if _, err := senmlTime(p, r.ut, rec, "ut"); err != nil {
		return dst, err
	}

	// The base state, which applies to this record already.
	if r.bn.kind != 0 {
		d.bn = d.str(d.bn[:0], p, r.bn)
	}
	if r.bt.kind != 0 {
		base.bt = bt
	}
	if r.bv.kind != 0 {
		base.bv = bv
	}
	if r.v.kind == 0 {
		return dst, nil // no numeric value: vs, vb, vd or s only
	}

	// The reading.
	val := base.bv + v
	if !finite(val) {
		return dst, fmt.Errorf("%w: record %d: bv+v overflows", ErrNotNumber, rec)
	}
	d.name = append(d.name[:0], d.bn...)
	if r.n.kind != 0 {
		d.name = d.str(d.name, p, r.n)
	}
	var sensor, metric string
	switch {
	case d.sensor != "":
		sensor, metric = d.sensor, d.names.text(d.name)
	case len(d.name) == 0:
		return dst, fmt.Errorf("%w: record %d", ErrNoSensor, rec)
	default:
		sensor, metric = d.split(d.name)
	}
	ts := NoTS
	us, ok := addUS(base.bt, t)
	switch {
	case !ok:
		return dst, fmt.Errorf("%w: record %d", ErrTSRange, rec)
	case us == 0:
		// "Now": the caller stamps ingestion time.
	case us < senmlRelativeUS:
		return dst, fmt.Errorf("%w: record %d", ErrRelativeTime, rec)
	default:
		ts = us / 1000 // us > 0, so truncation is the floor; us <= maxUS, so ts <= MaxTS
	}
	return append(dst, Reading{Sensor: sensor, Metric: metric, Value: val, TS: ts}), nil
}

// senmlNumber reads the value field v (0 when absent).
func senmlNumber(p []byte, v jval, rec int, name string) (float64, error) {
	if v.kind == 0 {
		return 0, nil
	}
	if v.kind == '0' {
		if x, ok := parseFloat(p[v.start:v.end]); ok {
			return x, nil
		}
	}
	return 0, fmt.Errorf("%w: record %d: %q", ErrNotNumber, rec, name)
}

// senmlTime reads the time field v in µs (0 when absent).
func senmlTime(p []byte, v jval, rec int, name string) (int64, error) {
	if v.kind == 0 {
		return 0, nil
	}
	if v.kind != '0' {
		return 0, fmt.Errorf("%w: record %d: %q", ErrUnreadableTS, rec, name)
	}
	us, ok, in := decimalUS(p[v.start:v.end])
	if !ok {
		return 0, fmt.Errorf("%w: record %d: %q", ErrUnreadableTS, rec, name)
	}
	if !in {
		return 0, fmt.Errorf("%w: record %d: %q", ErrTSRange, rec, name)
	}
	return us, nil
}

// str appends the value of the JSON string at v to dst.
func (d *senmlDecoder) str(dst, p []byte, v jval) []byte {
	if v.plain {
		return append(dst, p[v.start:v.end]...)
	}
	return unquote(dst, p[v.start:v.end])
}

// split maps a resolved name to sensor and metric: at the last '/' or ':'
// when it has a byte on each side, else the whole name is the sensor.
func (d *senmlDecoder) split(name []byte) (sensor, metric string) {
	for i := len(name) - 1; i >= 0; i-- {
		if c := name[i]; c == '/' || c == ':' {
			if i == 0 || i == len(name)-1 {
				break
			}
			return d.names.text(name[:i]), d.names.text(name[i+1:])
		}
	}
	return d.names.text(name), ""
}

// finite reports whether f is neither NaN nor an infinity.
func finite(f float64) bool { return f-f == 0 }

// addUS adds two times in µs, each within ±maxUS; ok is false when the sum
// leaves that range.
func addUS(a, b int64) (int64, bool) {
	s := a + b // no overflow: 2*maxUS < 2^64
	if (a > 0 && b > 0 && s < 0) || (a < 0 && b < 0 && s >= 0) {
		return 0, false
	}
	return s, s >= -maxUS && s <= maxUS
}

// decimalUS converts the decimal number of seconds in b (a JSON number) to
// microseconds, rounding toward negative infinity. syntaxOK is false when b
// is not a number; inRange is false when |result| > maxUS.
func decimalUS(b []byte) (us int64, syntaxOK, inRange bool) {
	d, ok := scanDecimal(b)
	if !ok {
		return 0, false, false
	}
	if d.sig < 0 {
		return 0, true, true
	}
	k := d.n + 6 // digits of the result before the point
	if k > 19 {  // |result| >= 1e19 > maxUS
		return 0, true, false
	}
	v, rem := d.digits(k)
	if v > uint64(maxUS) {
		return 0, true, false
	}
	us = d.floorSigned(v, rem)
	if us < -maxUS {
		return 0, true, false
	}
	return us, true, true
}
