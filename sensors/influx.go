package sensors

import (
	"fmt"
	"strconv"
)

func init() { Register("influx", newInflux) }

// influxDecoder decodes one line of InfluxDB line protocol per payload:
//
//	measurement[,tag=value...] field=value[,field=value...] [timestamp]
//
// The sensor is the tag named Options.SensorField when present, else the
// measurement. Each numeric field (float, integer "1i", unsigned "1u") is a
// reading named after its key; the field named Options.ValueField is named
// after the measurement when the sensor came from a tag, else it has no
// metric. Booleans and strings are validated and ignored. The timestamp is
// an integer in Options.TSUnit, nanoseconds by default.
//
// Escapes follow the protocol: "\," and "\ " in the measurement, also "\="
// in tag keys, tag values and field keys, "\"" and "\\" in string field
// values; a backslash before any other character is kept as it is.
type influxDecoder struct {
	sensorTag, valueField string
	unit                  tsUnit

	names  interner
	buf    []byte
	fields []influxField
	set    fieldSet
}

type influxField struct {
	numeric bool    // a float, integer or unsigned
	ok      bool    // numeric and finite
	v       float64 // the value when ok
}

func newInflux(opts Options) (Decoder, error) {
	unit, err := parseUnit(opts.TSUnit, unitNS)
	if err != nil {
		return nil, fmt.Errorf("influx: %w", err)
	}
	return &influxDecoder{
		sensorTag:  or(opts.SensorField, "sensor"),
		valueField: or(opts.ValueField, "value"),
		unit:       unit,
	}, nil
}

// Characters that end an element: the measurement ends at an unescaped
// comma or space, a key or tag value also at an unescaped '='.
const (
	stopMeasurement = 1 << iota
	stopKey
)

// Decode implements Decoder.
func (d *influxDecoder) Decode(dst []Reading, line []byte) ([]Reading, error) {
	line = trimEOL(line)
	if len(line) > maxLine {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(line), maxLine)
	}
	if cap(d.fields) > 1024 {
		d.fields, d.set = nil, fieldSet{}
	}
	i := 0
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if i == len(line) || line[i] == '#' {
		return dst, nil
	}

	// Measurement and tags.
	ms, me, mesc, err := scanElem(line, i, stopMeasurement)
	if err != nil {
		return dst, err
	}
	if me == ms {
		return dst, fmt.Errorf("%w: missing measurement", ErrInvalidLine)
	}
	i = me
	var sensor string
	for i < len(line) && line[i] == ',' {
		ks, ke, kesc, err := scanElem(line, i+1, stopKey)
		if err != nil {
			return dst, err
		}
		if ke == ks {
			return dst, fmt.Errorf("%w: missing tag key at offset %d", ErrInvalidLine, ks)
		}
		if ke == len(line) || line[ke] != '=' {
			return dst, fmt.Errorf("%w: missing tag value at offset %d", ErrInvalidLine, ke)
		}
		vs, ve, vesc, err := scanElem(line, ke+1, stopKey)
		if err != nil {
			return dst, err
		}
		if ve == vs {
			return dst, fmt.Errorf("%w: missing tag value at offset %d", ErrInvalidLine, vs)
		}
		if ve < len(line) && line[ve] == '=' {
			return dst, fmt.Errorf("%w: unescaped '=' in tag value at offset %d", ErrInvalidLine, ve)
		}
		if d.is(line[ks:ke], kesc, stopKey, d.sensorTag) {
			sensor = d.name(line[vs:ve], vesc, stopKey)
		}
		i = ve
	}
	fromTag := sensor != ""
	if i == len(line) {
		return dst, fmt.Errorf("%w: missing fields", ErrInvalidLine)
	}
	for i < len(line) && line[i] == ' ' {
		i++
	}
	if i == len(line) {
		return dst, fmt.Errorf("%w: missing fields", ErrInvalidLine)
	}

	// Fields.
	d.fields = d.fields[:0]
	d.set.reset()
	for {
		ks, ke, kesc, err := scanElem(line, i, stopKey)
		if err != nil {
			return dst, err
		}
		if ke == ks {
			return dst, fmt.Errorf("%w: missing field key at offset %d", ErrInvalidLine, ks)
		}
		if ke == len(line) || line[ke] != '=' {
			return dst, fmt.Errorf("%w: missing field value at offset %d", ErrInvalidLine, ke)
		}
		key := d.name(line[ks:ke], kesc, stopKey)
		i = ke + 1
		var f influxField
		if i < len(line) && line[i] == '"' {
			j, ok := skipString(line, i+1)
			if !ok {
				return dst, fmt.Errorf("%w: unterminated string in field %s", ErrInvalidLine, quoteName(key))
			}
			i = j
		} else {
			vs := i
			for i < len(line) && line[i] != ',' && line[i] != ' ' {
				i++
			}
			if f, err = fieldValue(line[vs:i]); err != nil {
				return dst, fmt.Errorf("%w: field=%s", err, quoteName(key))
			}
		}
		d.set.put(key, len(d.fields))
		d.fields = append(d.fields, f)
		if i < len(line) && line[i] == ',' {
			i++
			continue
		}
		break
	}

	// Timestamp.
	ts := NoTS
	if i < len(line) && line[i] != ' ' {
		return dst, fmt.Errorf("%w: unexpected %s at offset %d", ErrInvalidLine, excerpt(line[i:i+1]), i)
	}
	for i < len(line) && line[i] == ' ' {
		i++
	}
	if i < len(line) {
		ts0 := i
		for i < len(line) && line[i] != ' ' {
			i++
		}
		tb := line[ts0:i]
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i < len(line) {
			return dst, fmt.Errorf("%w: data after the timestamp at offset %d", ErrInvalidLine, i)
		}
		if !isInteger(tb) {
			return dst, fmt.Errorf("%w: %s", ErrUnreadableTS, excerpt(tb))
		}
		ms, _, in := decimalMS(tb, d.unit)
		if !in {
			return dst, ErrTSRange
		}
		ts = ms
	}

	// Readings.
	var meas string
	n0 := len(dst)
	for _, sl := range d.set.slots {
		f := d.fields[sl.ref]
		if !f.numeric {
			continue
		}
		if !f.ok {
			return dst[:n0], fmt.Errorf("%w: field=%s", ErrNotNumber, quoteName(sl.name))
		}
		if meas == "" {
			meas = d.name(line[ms:me], mesc, stopMeasurement)
		}
		r := Reading{Sensor: sensor, Metric: sl.name, Value: f.v, TS: ts}
		if !fromTag {
			r.Sensor = meas
		}
		if sl.name == d.valueField {
			r.Metric = ""
			if fromTag {
				r.Metric = meas
			}
		}
		dst = append(dst, r)
	}
	if len(dst) == n0 {
		return dst, ErrNoValue
	}
	return dst, nil
}

// scanElem scans a measurement (stop = stopMeasurement) or a key or tag
// value (stop = stopKey) starting at i. It returns the element's extent and
// whether it contains a backslash. A backslash always takes the next byte
// with it, so an escaped separator never ends an element.
func scanElem(line []byte, i, stop int) (start, end int, esc bool, err error) {
	start = i
	for i < len(line) {
		c := line[i]
		switch {
		case c == ',' || c == ' ':
			return start, i, esc, nil
		case c == '=' && stop == stopKey:
			return start, i, esc, nil
		case c == '\\':
			esc = true
			i++
			if i < len(line) && line[i] >= 0x20 && line[i] != 0x7f {
				i++
			}
		case c < 0x20 || c == 0x7f:
			return 0, 0, false, fmt.Errorf("%w: control character at offset %d", ErrInvalidLine, i)
		default:
			i++
		}
	}
	return start, i, esc, nil
}

// unescape appends b to dst without the backslashes of the escapes valid in
// a measurement or key.
func unescape(dst, b []byte, stop int) []byte {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\\' && i+1 < len(b) {
			switch n := b[i+1]; {
			case n == ',' || n == ' ' || (n == '=' && stop == stopKey):
				dst = append(dst, n)
				i++
				continue
			}
		}
		dst = append(dst, c)
	}
	return dst
}

// name returns the unescaped, interned text of an element.
func (d *influxDecoder) name(b []byte, esc bool, stop int) string {
	if esc {
		d.buf = unescape(d.buf[:0], b, stop)
		b = d.buf
	}
	return d.names.text(b)
}

// is reports whether the element b is s.
func (d *influxDecoder) is(b []byte, esc bool, stop int, s string) bool {
	if esc {
		d.buf = unescape(d.buf[:0], b, stop)
		b = d.buf
	}
	return string(b) == s
}

// skipString skips a string field value whose opening quote precedes i and
// returns the index after its closing quote.
func skipString(line []byte, i int) (int, bool) {
	for i < len(line) {
		switch line[i] {
		case '"':
			return i + 1, true
		case '\\':
			if i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\') {
				i += 2
				continue
			}
		}
		i++
	}
	return 0, false
}

// fieldValue parses an unquoted field value.
func fieldValue(b []byte) (influxField, error) {
	if len(b) == 0 {
		return influxField{}, fmt.Errorf("%w: missing field value", ErrInvalidLine)
	}
	switch string(b) {
	case "t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE":
		return influxField{}, nil
	}
	switch last := b[len(b)-1]; last {
	case 'i':
		if !isInteger(b[:len(b)-1]) {
			break
		}
		v, err := strconv.ParseInt(string(b[:len(b)-1]), 10, 64)
		if err != nil {
			return influxField{}, fmt.Errorf("%w: integer out of range", ErrInvalidLine)
		}
		return influxField{numeric: true, ok: true, v: float64(v)}, nil
	case 'u':
		if len(b) < 2 || b[0] == '-' || !isInteger(b[:len(b)-1]) {
			break
		}
		v, err := strconv.ParseUint(string(b[:len(b)-1]), 10, 64)
		if err != nil {
			return influxField{}, fmt.Errorf("%w: unsigned integer out of range", ErrInvalidLine)
		}
		return influxField{numeric: true, ok: true, v: float64(v)}, nil
	default:
		if isDecimal(b) {
			v, ok := parseFloat(b)
			return influxField{numeric: true, ok: ok, v: v}, nil
		}
	}
	return influxField{}, fmt.Errorf("%w: invalid field value %s", ErrInvalidLine, excerpt(b))
}
