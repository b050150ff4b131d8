package sensors

import (
	"bytes"
	"fmt"
	"unicode/utf8"
)

func init() { Register("csv", newCSV) }

// maxLine bounds a csv or influx line.
const maxLine = 64 << 10

// csvDecoder decodes one CSV line per payload and keeps the stream's header.
//
// Without Options.Columns the first non-blank line is the header. A header
// the decoder cannot use (no sensor column and no Options.Sensor, or a
// column named like a number) is rejected, and so is every following line,
// each taken as a new header candidate, until a usable one arrives. A line
// equal to the header, field by field after trimming, is a header sent again
// (a device reconnecting) and yields nothing.
type csvDecoder struct {
	sensorKey, metricKey, valueKey, tsKey string
	sensor                                string // Options.Sensor
	unit                                  tsUnit
	delim                                 []byte

	// The header and what it maps to. ok is false until a usable header
	// has been seen; with Options.Columns it is always true.
	headerCells                 []string // the header's cells, trimmed
	cols                        []string // the column names: header as valid UTF-8
	ok                          bool
	sensorCol, metricCol, tsCol int // -1 when absent
	valueCol                    int // -1 in multi mode
	metricCols                  []int

	names  interner
	fields [][]byte // the current line's cells
	buf    []byte   // unquoted cells
}

func newCSV(opts Options) (Decoder, error) {
	unit, err := parseUnit(opts.TSUnit, unitMS)
	if err != nil {
		return nil, fmt.Errorf("csv: %w", err)
	}
	delim := opts.Delimiter
	if delim == 0 {
		delim = ','
	}
	if delim == '"' || delim == '\r' || delim == '\n' || delim == utf8.RuneError || !utf8.ValidRune(delim) {
		return nil, fmt.Errorf("csv: invalid delimiter %q", delim)
	}
	d := &csvDecoder{
		sensorKey: or(opts.SensorField, "sensor"),
		metricKey: or(opts.MetricField, "metric"),
		valueKey:  or(opts.ValueField, "value"),
		tsKey:     or(opts.TSField, "ts"),
		sensor:    opts.Sensor,
		unit:      unit,
		delim:     utf8.AppendRune(nil, delim),
	}
	if err := distinct(d.sensorKey, d.metricKey, d.valueKey, d.tsKey); err != nil {
		return nil, fmt.Errorf("csv: %w", err)
	}
	if opts.Columns != nil {
		cols := make([][]byte, len(opts.Columns))
		for i, c := range opts.Columns {
			cols[i] = []byte(c)
		}
		if err := d.header(cols); err != nil {
			return nil, fmt.Errorf("csv: columns: %w", err)
		}
	}
	return d, nil
}

// Decode implements Decoder.
func (d *csvDecoder) Decode(dst []Reading, line []byte) ([]Reading, error) {
	line = trimEOL(line)
	if len(line) > maxLine {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(line), maxLine)
	}
	if len(bytes.Trim(line, " \t")) == 0 {
		return dst, nil
	}
	line = bytes.TrimPrefix(line, bom)
	fields, err := d.split(line)
	if err != nil {
		return dst, err
	}
	if !d.ok {
		return dst, d.header(fields)
	}
	if d.isHeader(fields) {
		return dst, nil
	}
	if len(fields) != len(d.cols) {
		return dst, fmt.Errorf("%w: expected %d fields, got %d", ErrFieldCount, len(d.cols), len(fields))
	}

	sensor := d.sensor
	if d.sensorCol >= 0 {
		if c := trimCell(fields[d.sensorCol]); len(c) > 0 {
			sensor = d.names.text(c)
		}
	}
	if sensor == "" {
		return dst, ErrNoSensor
	}
	ts := NoTS
	var tsErr error
	if d.tsCol >= 0 {
		if c := trimCell(fields[d.tsCol]); len(c) > 0 {
			ts, tsErr = textTS(c, d.unit, isDecimal(c))
		}
	}
	n0 := len(dst)
	if d.valueCol >= 0 {
		c := trimCell(fields[d.valueCol])
		if len(c) == 0 {
			return dst, ErrNoValue
		}
		if !isDecimal(c) {
			return dst, ErrNotNumber
		}
		v, ok := parseFloat(c)
		if !ok {
			return dst, ErrNotNumber
		}
		var metric string
		if d.metricCol >= 0 {
			metric = d.names.text(trimCell(fields[d.metricCol]))
		}
		dst = append(dst, Reading{Sensor: sensor, Metric: metric, Value: v, TS: ts})
	} else {
		for _, j := range d.metricCols {
			c := trimCell(fields[j])
			if len(c) == 0 {
				continue
			}
			v, ok := 0.0, isDecimal(c)
			if ok {
				v, ok = parseFloat(c)
			}
			if !ok {
				return dst[:n0], fmt.Errorf("%w: col=%s", ErrNotNumber, quoteName(d.cols[j]))
			}
			dst = append(dst, Reading{Sensor: sensor, Metric: d.cols[j], Value: v, TS: ts})
		}
		if len(dst) == n0 {
			return dst, ErrNoValue
		}
	}
	if tsErr != nil {
		return dst[:n0], tsErr
	}
	return dst, nil
}

var bom = []byte("\xef\xbb\xbf")

// trimEOL strips one trailing "\n" and then one trailing "\r".
func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// trimCell strips spaces and tabs around a cell.
func trimCell(b []byte) []byte { return bytes.Trim(b, " \t") }

// header adopts fields as the header if it is usable.
func (d *csvDecoder) header(fields [][]byte) error {
	d.ok = false
	sensorCol, metricCol, valueCol, tsCol := -1, -1, -1, -1
	for j, f := range fields {
		name := trimCell(f)
		switch string(name) {
		case d.sensorKey:
			sensorCol = j
		case d.metricKey:
			metricCol = j
		case d.valueKey:
			valueCol = j
		case d.tsKey:
			tsCol = j
		}
		if isDecimal(name) {
			return fmt.Errorf("%w: column %d is named %s", ErrHeaderData, j+1, excerpt(name))
		}
	}
	if sensorCol < 0 && d.sensor == "" {
		return ErrHeaderNoSensor
	}
	d.headerCells, d.cols = d.headerCells[:0], d.cols[:0]
	for _, f := range fields {
		name := trimCell(f)
		d.headerCells = append(d.headerCells, string(name))
		d.cols = append(d.cols, string(appendValidUTF8(nil, name)))
	}
	d.sensorCol, d.metricCol, d.valueCol, d.tsCol = sensorCol, metricCol, valueCol, tsCol
	d.metricCols = d.metricCols[:0]
	if valueCol < 0 {
		for j, name := range d.cols {
			if j != sensorCol && j != metricCol && j != tsCol && name != "" {
				d.metricCols = append(d.metricCols, j)
			}
		}
	}
	d.ok = true
	return nil
}

// isHeader reports whether fields repeat the header.
func (d *csvDecoder) isHeader(fields [][]byte) bool {
	if len(fields) != len(d.headerCells) {
		return false
	}
	for j, f := range fields {
		if string(trimCell(f)) != d.headerCells[j] {
			return false
		}
	}
	return true
}

// split cuts line into cells following RFC 4180: a cell that starts with a
// double quote (after optional blanks) runs to the matching quote, and ""
// inside it stands for one quote. The cells are valid until the next call.
func (d *csvDecoder) split(line []byte) ([][]byte, error) {
	if cap(d.buf) < len(line) {
		d.buf = make([]byte, 0, len(line))
	}
	buf := d.buf[:0] // never grows: unquoted cells are shorter than the line
	d.fields = d.fields[:0]
	delim := d.delim
	for i := 0; ; {
		j := i
		for j < len(line) && (line[j] == ' ' || line[j] == '\t') && line[j] != delim[0] {
			j++
		}
		if j < len(line) && line[j] == '"' {
			j++
			start := len(buf)
			for {
				k := bytes.IndexByte(line[j:], '"')
				if k < 0 {
					return nil, fmt.Errorf("%w: unterminated quoted field %d", ErrInvalidCSV, len(d.fields)+1)
				}
				buf = append(buf, line[j:j+k]...)
				j += k + 1
				if j < len(line) && line[j] == '"' {
					buf = append(buf, '"')
					j++
					continue
				}
				break
			}
			d.fields = append(d.fields, buf[start:len(buf):len(buf)])
			for j < len(line) && (line[j] == ' ' || line[j] == '\t') && line[j] != delim[0] {
				j++
			}
			if j == len(line) {
				return d.fields, nil
			}
			if !bytes.HasPrefix(line[j:], delim) {
				return nil, fmt.Errorf("%w: unexpected %s after quoted field %d", ErrInvalidCSV, excerpt(line[j:j+1]), len(d.fields))
			}
			i = j + len(delim)
			continue
		}
		k := bytes.Index(line[i:], delim)
		end := len(line)
		if k >= 0 {
			end = i + k
		}
		f := line[i:end]
		if q := bytes.IndexByte(f, '"'); q >= 0 {
			return nil, fmt.Errorf("%w: bare quote in field %d", ErrInvalidCSV, len(d.fields)+1)
		}
		if bytes.IndexByte(f, '\n') >= 0 {
			return nil, fmt.Errorf("%w: more than one line", ErrInvalidCSV)
		}
		d.fields = append(d.fields, f)
		if k < 0 {
			return d.fields, nil
		}
		i = end + len(delim)
	}
}
