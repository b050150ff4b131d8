package sensors

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

func init() { Register("raw", newRaw) }

// errRawSensor is New's error for a raw source without a sensor.
var errRawSensor = errors.New("raw format needs `sensor` in the source config")

// rawDecoder decodes a line of bare numbers: the whole line is one value of
// Options.Sensor with no metric, or, with Options.Columns, the line holds
// one number per column, named after it. Payloads carry no timestamp.
type rawDecoder struct {
	sensor string
	cols   []string // Options.Columns as valid UTF-8; "" skips a column
}

func newRaw(opts Options) (Decoder, error) {
	if opts.Sensor == "" {
		return nil, errRawSensor
	}
	d := &rawDecoder{sensor: opts.Sensor}
	for i, c := range opts.Columns {
		c = string(appendValidUTF8(nil, []byte(c)))
		for _, prev := range d.cols[:i] {
			if c != "" && c == prev {
				return nil, fmt.Errorf("raw: column %q named twice", c)
			}
		}
		d.cols = append(d.cols, c)
	}
	if len(d.cols) > 0 && !slices.ContainsFunc(d.cols, func(c string) bool { return c != "" }) {
		return nil, errors.New("raw: columns are all unnamed")
	}
	return d, nil
}

// Decode implements Decoder.
func (d *rawDecoder) Decode(dst []Reading, line []byte) ([]Reading, error) {
	line = trimEOL(line)
	if len(line) > maxLine {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(line), maxLine)
	}
	line = trimBlanks(line)
	if len(line) == 0 {
		return dst, nil
	}
	if len(d.cols) == 0 {
		v, ok := rawNumber(line)
		if !ok {
			return dst, fmt.Errorf("%w: %s", ErrNotNumber, excerpt(line))
		}
		return append(dst, Reading{Sensor: d.sensor, Value: v, TS: NoTS}), nil
	}

	sp := rawSplitter{rest: line, comma: bytes.IndexByte(line, ',') >= 0}
	n := 0
	for _, ok := sp.next(); ok; _, ok = sp.next() {
		n++
	}
	if n != len(d.cols) {
		return dst, fmt.Errorf("%w: expected %d fields, got %d", ErrFieldCount, len(d.cols), n)
	}
	n0 := len(dst)
	sp = rawSplitter{rest: line, comma: sp.comma}
	for j := 0; j < n; j++ {
		f, _ := sp.next()
		if len(f) == 0 || d.cols[j] == "" {
			continue
		}
		v, ok := rawNumber(f)
		if !ok {
			return dst[:n0], fmt.Errorf("%w: col=%s", ErrNotNumber, quoteName(d.cols[j]))
		}
		dst = append(dst, Reading{Sensor: d.sensor, Metric: d.cols[j], Value: v, TS: NoTS})
	}
	if len(dst) == n0 {
		return dst, ErrNoValue
	}
	return dst, nil
}

// rawSplitter cuts a trimmed, non-empty line into fields. With commas,
// each comma ends a field and blanks around fields are trimmed; without,
// runs of blanks separate the fields.
type rawSplitter struct {
	rest        []byte
	comma, done bool
}

// next returns the next field, or false after the last one.
func (s *rawSplitter) next() ([]byte, bool) {
	if s.done {
		return nil, false
	}
	var f []byte
	k := -1
	if s.comma {
		k = bytes.IndexByte(s.rest, ',')
	} else {
		for i, c := range s.rest {
			if c == ' ' || c == '\t' {
				k = i
				break
			}
		}
	}
	if k < 0 {
		f, s.done = s.rest, true
	} else {
		f, s.rest = s.rest[:k], s.rest[k+1:]
		if !s.comma {
			s.rest = trimBlanks(s.rest)
		}
	}
	return trimBlanks(f), true
}

// trimBlanks strips spaces and tabs around b.
func trimBlanks(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// rawNumber parses a decimal number, finite.
func rawNumber(b []byte) (float64, bool) {
	if !isDecimal(b) {
		return 0, false
	}
	return parseFloat(b)
}
