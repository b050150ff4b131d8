package sensors

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

func init() { Register("json", newJSON) }

// JSON limits. maxJSONDepth matches encoding/json's nesting limit.
const (
	maxJSONPayload = 1 << 20
	maxJSONDepth   = 10000
)

// jsonDecoder decodes one JSON object per payload.
//
// Single mode (the value field is present): one reading, its metric from the
// metric field. Multi mode (no value field): one reading per other numeric
// field, named after it, in payload order. The object is scanned once by a
// hand-written scanner that validates all of it, nested values included, and
// records where the interesting members lie; strings are only decoded when
// they become part of a reading. A duplicate key keeps its first place and
// takes its last value.
type jsonDecoder struct {
	sensorKey, metricKey, valueKey, tsKey string
	sensor                                string // Options.Sensor
	unit                                  tsUnit

	names  interner
	buf    []byte      // unescaped strings
	fields []jsonField // members other than sensor/metric/value/ts
	set    fieldSet
}

// jval locates one JSON value in the payload.
type jval struct {
	kind  byte // 0 absent, '"' string, '0' number, 't' true, 'f' false, 'n' null, '{' object, '[' array
	plain bool // a string with no escapes and only ASCII: its raw bytes are its value
	start int  // for a string, the first byte after the opening quote
	end   int  // for a string, the index of the closing quote
}

type jsonField struct {
	key, val jval
}

func newJSON(opts Options) (Decoder, error) {
	unit, err := parseUnit(opts.TSUnit, unitMS)
	if err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	d := &jsonDecoder{
		sensorKey: or(opts.SensorField, "sensor"),
		metricKey: or(opts.MetricField, "metric"),
		valueKey:  or(opts.ValueField, "value"),
		tsKey:     or(opts.TSField, "ts"),
		sensor:    opts.Sensor,
		unit:      unit,
	}
	if err := distinct(d.sensorKey, d.metricKey, d.valueKey, d.tsKey); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return d, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// distinct checks that the sensor, metric, value and ts names differ.
func distinct(names ...string) error {
	roles := [...]string{"sensor", "metric", "value", "ts"}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[i] == names[j] {
				return fmt.Errorf("%s and %s fields are both named %q", roles[i], roles[j], names[i])
			}
		}
	}
	return nil
}

// Decode implements Decoder.
func (d *jsonDecoder) Decode(dst []Reading, p []byte) ([]Reading, error) {
	if len(p) > maxJSONPayload {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLong, len(p), maxJSONPayload)
	}
	if cap(d.fields) > 1024 || cap(d.buf) > 64<<10 {
		// Do not keep what a huge payload left behind.
		d.fields, d.buf, d.set = nil, nil, fieldSet{}
	}
	var sensor, metric, value, ts jval
	d.fields = d.fields[:0]
	s := jscan{b: p}
	s.ws()
	if s.i == len(p) || p[s.i] != '{' {
		return dst, ErrNotObject
	}
	s.i++
	for first := true; ; first = false {
		key, val, ok := s.member(1, first)
		if !ok {
			if s.err != nil {
				return dst, s.err
			}
			break
		}
		switch k := d.key(p, key); {
		case string(k) == d.valueKey:
			value = val
		case string(k) == d.sensorKey:
			sensor = val
		case string(k) == d.tsKey:
			ts = val
		case string(k) == d.metricKey:
			metric = val
		default:
			d.fields = append(d.fields, jsonField{key, val})
		}
	}
	s.ws()
	if s.i != len(p) {
		return dst, fmt.Errorf("%w: data after the object at offset %d", ErrInvalidJSON, s.i)
	}
	var r Reading
	switch sensor.kind {
	case 0:
		if d.sensor == "" {
			return dst, ErrNoSensor
		}
		r.Sensor = d.sensor
	case '"', '0':
		r.Sensor = d.text(p, sensor)
		if r.Sensor == "" {
			return dst, ErrNoSensor
		}
	default:
		return dst, ErrSensorType
	}
	switch metric.kind {
	case 0:
	case '"', '0':
		r.Metric = d.text(p, metric)
	default:
		return dst, ErrMetricType
	}
	n0 := len(dst)
	if value.kind != 0 {
		if value.kind != '0' {
			return dst, ErrNotNumber
		}
		f, ok := parseFloat(p[value.start:value.end])
		if !ok {
			return dst, ErrNotNumber
		}
		r.Value = f
		dst = append(dst, r)
	} else {
		// Multi mode: dedupe the names, then emit the numeric ones.
		d.set.reset()
		for i, f := range d.fields {
			d.set.put(d.text(p, f.key), i)
		}
		for _, sl := range d.set.slots {
			v := d.fields[sl.ref].val
			if v.kind != '0' {
				continue // a label
			}
			f, ok := parseFloat(p[v.start:v.end])
			if !ok {
				return dst[:n0], fmt.Errorf("%w: field=%s", ErrNotNumber, quoteName(sl.name))
			}
			dst = append(dst, Reading{Sensor: r.Sensor, Metric: sl.name, Value: f})
		}
		if len(dst) == n0 {
			return dst, ErrNoValue
		}
	}
	t, err := d.ts(p, ts)
	if err != nil {
		return dst[:n0], err
	}
	for i := n0; i < len(dst); i++ {
		dst[i].TS = t
	}
	return dst, nil
}

// ts reads the timestamp member.
func (d *jsonDecoder) ts(p []byte, v jval) (int64, error) {
	switch v.kind {
	case 0:
		return NoTS, nil
	case '0':
		ms, _, in := decimalMS(p[v.start:v.end], d.unit)
		if !in {
			return 0, ErrTSRange
		}
		return ms, nil
	case '"':
		b := p[v.start:v.end]
		if !v.plain {
			d.buf = unquote(d.buf[:0], b)
			b = d.buf
		}
		return textTS(b, d.unit, isInteger(b))
	case 't':
		return 0, fmt.Errorf("%w: true", ErrUnreadableTS)
	case 'f':
		return 0, fmt.Errorf("%w: false", ErrUnreadableTS)
	case 'n':
		return 0, fmt.Errorf("%w: null", ErrUnreadableTS)
	case '{':
		return 0, fmt.Errorf("%w: an object", ErrUnreadableTS)
	default:
		return 0, fmt.Errorf("%w: an array", ErrUnreadableTS)
	}
}

// key returns the decoded bytes of the key at k, valid until the next use of
// d.buf.
func (d *jsonDecoder) key(p []byte, k jval) []byte {
	if k.plain {
		return p[k.start:k.end]
	}
	d.buf = unquote(d.buf[:0], p[k.start:k.end])
	return d.buf
}

// text returns the string (or the number's text) at v, interned.
func (d *jsonDecoder) text(p []byte, v jval) string {
	if v.plain || v.kind == '0' {
		return d.names.valid(p[v.start:v.end])
	}
	d.buf = unquote(d.buf[:0], p[v.start:v.end])
	return d.names.valid(d.buf)
}

// jscan is a cursor over a JSON payload with a sticky error: after the first
// syntax error every method is a no-op and err says what went wrong.
type jscan struct {
	b   []byte
	i   int
	err error
}

func (s *jscan) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jscan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// unexpected records and returns a syntax error at the cursor.
func (s *jscan) unexpected(want string) error {
	if s.err == nil {
		if s.i >= len(s.b) {
			s.err = fmt.Errorf("%w: unexpected end of input", ErrInvalidJSON)
		} else {
			s.err = fmt.Errorf("%w: unexpected %s at offset %d, want %s", ErrInvalidJSON, excerpt(s.b[s.i:s.i+1]), s.i, want)
		}
	}
	return s.err
}

func (s *jscan) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidJSON}, args...)...)
	}
}

// member reads the next member of the object whose '{' was just read
// (first: no member read yet): its key and value, and true; or false at
// the object's end (its '}' read) and on a syntax error (in s.err).
func (s *jscan) member(depth int, first bool) (key, val jval, ok bool) {
	s.ws()
	switch c := s.peek(); {
	case c == '}':
		s.i++
		return key, val, false
	case first:
	case c == ',':
		s.i++
		s.ws()
	default:
		s.unexpected("',' or '}'")
		return key, val, false
	}
	if s.peek() != '"' {
		s.unexpected("a string key")
		return key, val, false
	}
	key = s.str()
	if s.err != nil {
		return key, val, false
	}
	s.ws()
	if s.peek() != ':' {
		s.unexpected("':'")
		return key, val, false
	}
	s.i++
	s.ws()
	val = s.value(depth)
	return key, val, s.err == nil
}

// value scans the value at the cursor, which must not be whitespace, and
// returns where it lies.
func (s *jscan) value(depth int) jval {
	if s.err != nil {
		return jval{}
	}
	switch c := s.peek(); c {
	case '"':
		return s.str()
	case '{', '[':
		start := s.i
		s.container(depth)
		return jval{kind: c, start: start, end: s.i}
	case 't':
		return s.literal("true", 't')
	case 'f':
		return s.literal("false", 'f')
	case 'n':
		return s.literal("null", 'n')
	default:
		if c == '-' || isDigit(c) {
			return s.number()
		}
		s.unexpected("a value")
		return jval{}
	}
}

func (s *jscan) literal(lit string, kind byte) jval {
	start := s.i
	for j := 0; j < len(lit); j++ {
		if s.peek() != lit[j] {
			s.unexpected(strconv.Quote(lit))
			return jval{}
		}
		s.i++
	}
	return jval{kind: kind, start: start, end: s.i}
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *jscan) number() jval {
	start := s.i
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		s.unexpected("a digit")
		return jval{}
	}
	if s.peek() == '.' {
		s.i++
		if !isDigit(s.peek()) {
			s.unexpected("a digit")
			return jval{}
		}
		s.digits()
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !isDigit(s.peek()) {
			s.unexpected("a digit")
			return jval{}
		}
		s.digits()
	}
	return jval{kind: '0', start: start, end: s.i}
}

func (s *jscan) digits() {
	for s.i < len(s.b) && isDigit(s.b[s.i]) {
		s.i++
	}
}

// str scans the string at the cursor (on its opening quote).
func (s *jscan) str() jval {
	if s.err != nil {
		return jval{}
	}
	start := s.i + 1
	plain := true
	b := s.b
	for i := start; i < len(b); {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return jval{kind: '"', plain: plain, start: start, end: i}
		case c == '\\':
			plain = false
			if i+1 == len(b) {
				s.i = len(b)
				s.unexpected("")
				return jval{}
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if hex4(b[i+2:]) < 0 {
					s.fail("invalid \\u escape at offset %d", i)
					return jval{}
				}
				i += 6
			default:
				s.fail("invalid escape %s at offset %d", excerpt(b[i:i+2]), i)
				return jval{}
			}
		case c < 0x20:
			s.fail("control character in string at offset %d", i)
			return jval{}
		case c >= utf8.RuneSelf:
			plain = false
			i++
		default:
			i++
		}
	}
	s.i = len(b)
	s.unexpected("")
	return jval{}
}

// container scans an object or array at the cursor, validating it.
func (s *jscan) container(depth int) {
	if depth >= maxJSONDepth {
		s.fail("nesting deeper than %d at offset %d", maxJSONDepth, s.i)
		return
	}
	open := s.b[s.i]
	s.i++
	s.ws()
	if open == '{' {
		if s.peek() == '}' {
			s.i++
			return
		}
		for s.err == nil {
			if s.peek() != '"' {
				s.unexpected("a string key")
				return
			}
			s.str()
			s.ws()
			if s.peek() != ':' {
				s.unexpected("':'")
				return
			}
			s.i++
			s.ws()
			s.value(depth + 1)
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
				s.ws()
			case '}':
				s.i++
				return
			default:
				s.unexpected("',' or '}'")
			}
		}
		return
	}
	if s.peek() == ']' {
		s.i++
		return
	}
	for s.err == nil {
		s.value(depth + 1)
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return
		default:
			s.unexpected("',' or ']'")
		}
	}
}

// hex4 decodes the four hex digits at the start of b, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// unquote appends the value of the JSON string body b (already validated by
// jscan.str) to dst. Like encoding/json it turns a lone surrogate and each
// byte of invalid UTF-8 into U+FFFD.
func unquote(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		if c == '\\' {
			switch b[i+1] {
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(b[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						if r2 := utf16.DecodeRune(r, hex4(b[i+2:])); r2 != utf8.RuneError {
							dst = utf8.AppendRune(dst, r2)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
				continue
			default: // '"', '\\', '/'
				dst = append(dst, b[i+1])
			}
			i += 2
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, b[i:i+n]...)
		}
		i += n
	}
	return dst
}
