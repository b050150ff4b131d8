package sensors

import (
	"fmt"
)

func init() { Register("kv", newKV) }

// kvDecoder decodes one line of key=value pairs per payload:
//
//	sensor=s1 ts=1700000000000 temp=21.5, hum=40 loc="lab 2"
//
// Pairs are separated by spaces, tabs or commas, in any number. A value is
// either unquoted, running to the next separator, or quoted with '"', with
// \" and \\ as escapes. The pairs named Options.SensorField, MetricField,
// ValueField and TSField play those parts as json members do; with a value
// pair the line is one reading, without one every other unquoted value is a
// reading named after its key, and quoted values are labels. A repeated key
// keeps its first place and takes its last value.
type kvDecoder struct {
	sensorKey, metricKey, valueKey, tsKey string
	sensor                                string // Options.Sensor
	unit                                  tsUnit

	names interner
	buf   []byte   // unescaped quoted values
	pairs []kvPair // the pairs other than sensor/metric/value/ts
	set   fieldSet
}

// kvPair locates one pair in the line.
type kvPair struct {
	ks, ke int  // the key
	vs, ve int  // the value, inside the quotes when quoted
	quoted bool // the value was quoted
	esc    bool // the quoted value holds a backslash
}

func newKV(opts Options) (Decoder, error) {
	unit, err := parseUnit(opts.TSUnit, unitMS)
	if err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	d := &kvDecoder{
		sensorKey: or(opts.SensorField, "sensor"),
		metricKey: or(opts.MetricField, "metric"),
		valueKey:  or(opts.ValueField, "value"),
		tsKey:     or(opts.TSField, "ts"),
		sensor:    opts.Sensor,
		unit:      unit,
	}
	if err := distinct(d.sensorKey, d.metricKey, d.valueKey, d.tsKey); err != nil {
		return nil, fmt.Errorf("kv: %w", err)
	}
	return d, nil
}

func isKVSep(c byte) bool { return c == ' ' || c == '\t' || c == ',' }

// isControl reports whether c is an ASCII control character other than tab.
func isControl(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7f }

// Decode implements Decoder.
func (d *kvDecoder) Decode(dst []Reading, line []byte) ([]Reading, error) {
	line = trimEOL(line)
	if len(line) > maxLine {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(line), maxLine)
	}
	if cap(d.pairs) > 1024 || cap(d.buf) > 64<<10 {
		d.pairs, d.buf, d.set = nil, nil, fieldSet{}
	}
	d.pairs = d.pairs[:0]
	var sensor, metric, value, ts kvPair
	var hasSensor, hasMetric, hasValue, hasTS bool
	for i := 0; ; {
		for i < len(line) && isKVSep(line[i]) {
			i++
		}
		if i == len(line) {
			break
		}
		var p kvPair
		p.ks = i
		for i < len(line) && !isKVSep(line[i]) && line[i] != '=' {
			if c := line[i]; c == '"' || isControl(c) {
				return dst, d.unexpected(line, i, "in key")
			}
			i++
		}
		p.ke = i
		if p.ke == p.ks {
			return dst, fmt.Errorf("%w: empty key at offset %d", ErrInvalidKV, i)
		}
		if i == len(line) || line[i] != '=' {
			return dst, fmt.Errorf("%w: %s has no '='", ErrInvalidKV, excerpt(line[p.ks:p.ke]))
		}
		i++
		if i < len(line) && line[i] == '"' {
			p.quoted = true
			i++
			p.vs = i
			for {
				if i == len(line) {
					return dst, fmt.Errorf("%w: unterminated quoted value of %s", ErrInvalidKV, excerpt(line[p.ks:p.ke]))
				}
				c := line[i]
				if c == '"' {
					break
				}
				if c == '\\' && i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\') {
					p.esc = true
					i++
				}
				i++
			}
			p.ve = i
			i++
			if i < len(line) && !isKVSep(line[i]) {
				return dst, d.unexpected(line, i, "after a quoted value")
			}
		} else {
			p.vs = i
			for i < len(line) && !isKVSep(line[i]) {
				if c := line[i]; c == '"' || isControl(c) {
					return dst, d.unexpected(line, i, "in an unquoted value")
				}
				i++
			}
			p.ve = i
		}
		switch k := line[p.ks:p.ke]; {
		case string(k) == d.valueKey:
			value, hasValue = p, true
		case string(k) == d.sensorKey:
			sensor, hasSensor = p, true
		case string(k) == d.tsKey:
			ts, hasTS = p, true
		case string(k) == d.metricKey:
			metric, hasMetric = p, true
		default:
			d.pairs = append(d.pairs, p)
		}
	}
	if !hasSensor && !hasMetric && !hasValue && !hasTS && len(d.pairs) == 0 {
		return dst, nil // a blank line
	}

	var r Reading
	if hasSensor {
		r.Sensor = d.text(line, sensor)
		if r.Sensor == "" {
			return dst, ErrNoSensor
		}
	} else if r.Sensor = d.sensor; r.Sensor == "" {
		return dst, ErrNoSensor
	}
	if hasMetric {
		r.Metric = d.text(line, metric)
	}
	n0 := len(dst)
	if hasValue {
		b := line[value.vs:value.ve]
		if !value.quoted && len(b) == 0 {
			return dst, ErrNoValue
		}
		f, ok := 0.0, !value.quoted && isDecimal(b)
		if ok {
			f, ok = parseFloat(b)
		}
		if !ok {
			return dst, fmt.Errorf("%w: key=%s", ErrNotNumber, quoteName(d.valueKey))
		}
		r.Value = f
		dst = append(dst, r)
	} else {
		d.set.reset()
		for i, p := range d.pairs {
			d.set.put(d.names.text(line[p.ks:p.ke]), i)
		}
		for _, sl := range d.set.slots {
			p := d.pairs[sl.ref]
			b := line[p.vs:p.ve]
			if p.quoted || len(b) == 0 {
				continue // a label, or no value
			}
			f, ok := 0.0, isDecimal(b)
			if ok {
				f, ok = parseFloat(b)
			}
			if !ok {
				return dst[:n0], fmt.Errorf("%w: key=%s", ErrNotNumber, quoteName(sl.name))
			}
			dst = append(dst, Reading{Sensor: r.Sensor, Metric: sl.name, Value: f})
		}
		if len(dst) == n0 {
			return dst, ErrNoValue
		}
	}
	t := NoTS
	if hasTS {
		b := d.value(line, ts)
		if len(b) > 0 {
			var err error
			if t, err = textTS(b, d.unit, isDecimal(b)); err != nil {
				return dst[:n0], err
			}
		}
	}
	for i := n0; i < len(dst); i++ {
		dst[i].TS = t
	}
	return dst, nil
}

// unexpected reports the byte at i.
func (d *kvDecoder) unexpected(line []byte, i int, where string) error {
	return fmt.Errorf("%w: unexpected %s at offset %d %s", ErrInvalidKV, excerpt(line[i:i+1]), i, where)
}

// value returns the value of p, unescaped, valid until the next use of d.buf.
func (d *kvDecoder) value(line []byte, p kvPair) []byte {
	b := line[p.vs:p.ve]
	if !p.esc {
		return b
	}
	d.buf = d.buf[:0]
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) && (b[i+1] == '"' || b[i+1] == '\\') {
			i++
		}
		d.buf = append(d.buf, b[i])
	}
	return d.buf
}

// text returns the value of p as an interned string.
func (d *kvDecoder) text(line []byte, p kvPair) string {
	return d.names.text(d.value(line, p))
}
