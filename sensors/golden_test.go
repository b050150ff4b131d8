package sensors_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/edged/edged/sensors"
	"github.com/edged/edged/sensors/sensortest"
)

var update = flag.Bool("update", false, "rewrite expected.json and expected.err of the golden cases from the decoders' output")

// The formats with golden cases under testdata/<format>/<case>/. A case
// holds:
//
//	payload.txt    payloads, one per line, fed in order to one decoder
//	options.json   optional decoder options (goldenOptions)
//	expected.json  the readings of all payloads, in order (absent: none)
//	expected.err   one line per failed payload: "N: error text", N counting
//	               payload lines from 1, or "new: error text" when New fails
//	               (absent: no errors)
var formats = []string{"json", "csv", "influx"}

// goldenOptions is options.json.
type goldenOptions struct {
	SensorField string   `json:"sensor_field"`
	MetricField string   `json:"metric_field"`
	ValueField  string   `json:"value_field"`
	TSField     string   `json:"ts_field"`
	TSUnit      string   `json:"ts_unit"`
	Sensor      string   `json:"sensor"`
	Columns     []string `json:"columns"`
	Delimiter   string   `json:"delimiter"`
	// Whole feeds payload.txt as a single payload instead of line by line.
	Whole bool `json:"whole"`
}

// goldenReading is one reading in expected.json; a null ts is NoTS.
type goldenReading struct {
	Sensor string  `json:"sensor"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	TS     *int64  `json:"ts"`
}

type goldenCase struct {
	name     string // format/case
	dir      string
	format   string
	opts     sensors.Options
	payloads [][]byte
}

// goldenCases loads the cases of one format.
func goldenCases(t testing.TB, format string) []goldenCase {
	t.Helper()
	root := filepath.Join("testdata", format)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		c := goldenCase{name: format + "/" + e.Name(), dir: filepath.Join(root, e.Name()), format: format}
		var o goldenOptions
		if b, err := os.ReadFile(filepath.Join(c.dir, "options.json")); err == nil {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&o); err != nil {
				t.Fatalf("%s/options.json: %v", c.dir, err)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		c.opts = sensors.Options{
			SensorField: o.SensorField, MetricField: o.MetricField, ValueField: o.ValueField,
			TSField: o.TSField, TSUnit: o.TSUnit, Sensor: o.Sensor, Columns: o.Columns,
		}
		if o.Delimiter != "" {
			r, n := utf8.DecodeRuneInString(o.Delimiter)
			if n != len(o.Delimiter) {
				t.Fatalf("%s/options.json: delimiter must be one character", c.dir)
			}
			c.opts.Delimiter = r
		}
		payload, err := os.ReadFile(filepath.Join(c.dir, "payload.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if o.Whole {
			c.payloads = [][]byte{payload}
		} else {
			payload = bytes.TrimSuffix(payload, []byte("\n"))
			c.payloads = bytes.Split(payload, []byte("\n"))
		}
		cases = append(cases, c)
	}
	if len(cases) == 0 {
		t.Fatalf("no golden cases in %s", root)
	}
	return cases
}

func (c goldenCase) newDecoder() (sensors.Decoder, error) { return sensors.New(c.format, c.opts) }

// run decodes the case's payloads, returning the readings and the error lines.
func (c goldenCase) run(t testing.TB) ([]sensors.Reading, []string) {
	t.Helper()
	d, err := c.newDecoder()
	if err != nil {
		return nil, []string{"new: " + err.Error()}
	}
	var (
		got  []sensors.Reading
		errs []string
	)
	for i, p := range c.payloads {
		n := len(got)
		got, err = d.Decode(got, p)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%d: %v", i+1, err))
			if len(got) != n {
				t.Errorf("payload %d: error %q but len(dst) went from %d to %d", i+1, err, n, len(got))
			}
		}
	}
	return got, errs
}

// validPrefix returns the payloads before the case's first failing one.
func (c goldenCase) validPrefix() [][]byte {
	d, err := c.newDecoder()
	if err != nil {
		return nil
	}
	for i, p := range c.payloads {
		if _, err := d.Decode(nil, p); err != nil {
			return c.payloads[:i]
		}
	}
	return c.payloads
}

func TestGolden(t *testing.T) {
	for _, format := range formats {
		for _, c := range goldenCases(t, format) {
			t.Run(c.name, func(t *testing.T) {
				got, gotErrs := c.run(t)
				if *update {
					writeGolden(t, c.dir, got, gotErrs)
					return
				}
				want, wantErrs := readGolden(t, c.dir)
				if g, w := strings.Join(gotErrs, "\n"), strings.Join(wantErrs, "\n"); g != w {
					t.Errorf("errors:\ngot:\n%s\nwant:\n%s", g, w)
				}
				if g, w := encodeReadings(got), encodeReadings(want); g != w {
					t.Errorf("readings:\ngot:\n%s\nwant:\n%s", g, w)
				}
			})
		}
	}
}

// TestGoldenReasons checks that every decode error of the golden cases has
// one of the documented reasons.
func TestGoldenReasons(t *testing.T) {
	seen := map[string]bool{}
	for _, format := range formats {
		for _, c := range goldenCases(t, format) {
			d, err := c.newDecoder()
			if err != nil {
				continue
			}
			for _, p := range c.payloads {
				_, err := d.Decode(nil, p)
				if err == nil {
					continue
				}
				r := sensors.Reason(err)
				if !isReason(err) || !strings.HasPrefix(err.Error(), r) {
					t.Errorf("%s: error %q wraps no documented reason", c.name, err)
				}
				seen[format+": "+r] = true
			}
		}
	}
	for _, want := range []string{
		"json: not a JSON object", "json: invalid JSON", "json: no sensor", "json: sensor is not a string",
		"json: metric is not a string", "json: no value", "json: value is not a number",
		"json: unreadable timestamp", "json: timestamp out of range",
		"csv: invalid CSV", "csv: no sensor", "csv: no value", "csv: value is not a number",
		"csv: unreadable timestamp", "csv: timestamp out of range",
		"csv: wrong number of fields", "csv: header has no sensor column", "csv: header looks like data",
		"influx: invalid line protocol", "influx: no value", "influx: value is not a number",
		"influx: unreadable timestamp", "influx: timestamp out of range",
	} {
		if !seen[want] {
			t.Errorf("no golden case covers %s", want)
		}
	}
}

// isReason reports whether err wraps one of the documented reasons.
func isReason(err error) bool {
	for _, r := range []error{
		sensors.ErrNotObject, sensors.ErrInvalidJSON, sensors.ErrInvalidCSV, sensors.ErrInvalidLine,
		sensors.ErrNoSensor, sensors.ErrSensorType, sensors.ErrMetricType, sensors.ErrNoValue,
		sensors.ErrNotNumber, sensors.ErrUnreadableTS, sensors.ErrTSRange, sensors.ErrLineTooLong,
		sensors.ErrPayloadTooLong, sensors.ErrFieldCount, sensors.ErrHeaderNoSensor, sensors.ErrHeaderData,
	} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

func readGolden(t *testing.T, dir string) ([]sensors.Reading, []string) {
	t.Helper()
	var rs []sensors.Reading
	if b, err := os.ReadFile(filepath.Join(dir, "expected.json")); err == nil {
		var gs []goldenReading
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&gs); err != nil {
			t.Fatalf("%s/expected.json: %v", dir, err)
		}
		for _, g := range gs {
			r := sensors.Reading{Sensor: g.Sensor, Metric: g.Metric, Value: g.Value, TS: sensors.NoTS}
			if g.TS != nil {
				r.TS = *g.TS
			}
			rs = append(rs, r)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var errs []string
	if b, err := os.ReadFile(filepath.Join(dir, "expected.err")); err == nil {
		s := strings.TrimRight(string(b), "\n")
		if s != "" {
			errs = strings.Split(s, "\n")
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return rs, errs
}

func writeGolden(t *testing.T, dir string, rs []sensors.Reading, errs []string) {
	t.Helper()
	jp, ep := filepath.Join(dir, "expected.json"), filepath.Join(dir, "expected.err")
	os.Remove(jp)
	os.Remove(ep)
	if len(rs) > 0 {
		if err := os.WriteFile(jp, []byte(encodeReadings(rs)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(errs) > 0 {
		if err := os.WriteFile(ep, []byte(strings.Join(errs, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// encodeReadings writes readings as expected.json holds them, one per line.
func encodeReadings(rs []sensors.Reading) string {
	var b strings.Builder
	b.WriteString("[\n")
	for i, r := range rs {
		g := goldenReading{Sensor: r.Sensor, Metric: r.Metric, Value: r.Value}
		if r.TS != sensors.NoTS {
			ts := r.TS
			g.TS = &ts
		}
		line, err := json.Marshal(g)
		if err != nil {
			line = []byte(fmt.Sprintf("%q", err.Error()))
		}
		b.WriteString("  ")
		b.Write(line)
		if i < len(rs)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	return b.String()
}

// conformance runs sensortest.Conformance on the valid payloads of every
// golden case of the format, each case with its own options.
func conformance(t *testing.T, format string) {
	for _, c := range goldenCases(t, format) {
		valid := c.validPrefix()
		if len(valid) == 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.newDecoder(); err != nil {
				t.Fatal(err)
			}
			sensortest.Conformance(t, func() sensors.Decoder {
				d, _ := c.newDecoder()
				return d
			}, valid)
		})
	}
}

// seedCorpus adds every golden payload of the format to f, each line and
// each whole file, with every options mode.
func seedCorpus(f *testing.F, format string) {
	for _, c := range goldenCases(f, format) {
		whole := bytes.Join(c.payloads, []byte("\n"))
		for _, p := range append(c.payloads, whole) {
			f.Add(p, uint8(0))
		}
		f.Add(whole, modeOf(c.opts))
	}
}

// fuzzOptions derives decoder options from a fuzz input's mode byte, so that
// the fuzzer explores units, default sensors and field mappings.
//
//	bits 0-2  TSUnit: "", s, ms, us, ns, auto
//	bit 3     Sensor "dflt"
//	bit 4     renamed fields: id, name, v, time
//	bit 5     csv: delimiter ';'
//	bit 6     csv: fixed columns
//	bit 7     csv: fixed columns for multi-metric
func fuzzOptions(mode uint8) sensors.Options {
	var o sensors.Options
	o.TSUnit = [...]string{"", "s", "ms", "us", "ns", "auto", "", "ms"}[mode&7]
	if mode&8 != 0 {
		o.Sensor = "dflt"
	}
	if mode&16 != 0 {
		o.SensorField, o.MetricField, o.ValueField, o.TSField = "id", "name", "v", "time"
	}
	if mode&32 != 0 {
		o.Delimiter = ';'
	}
	switch {
	case mode&64 != 0:
		o.Columns = []string{or(o.SensorField, "sensor"), or(o.TSField, "ts"), or(o.ValueField, "value")}
	case mode&128 != 0:
		o.Columns = []string{or(o.SensorField, "sensor"), or(o.TSField, "ts"), "temp", "hum"}
	}
	return o
}

// modeOf approximates the mode byte of a golden case's options.
func modeOf(o sensors.Options) uint8 {
	var m uint8
	for i, u := range []string{"", "s", "ms", "us", "ns", "auto"} {
		if o.TSUnit == u {
			m = uint8(i)
		}
	}
	if o.Sensor != "" {
		m |= 8
	}
	if o.Delimiter == ';' {
		m |= 32
	}
	return m
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// fuzzDecode is the body shared by the fuzz targets: it decodes each
// payload with the contract checked and fails on any violation.
func fuzzDecode(t *testing.T, d sensors.Decoder, payloads [][]byte) {
	dst := []sensors.Reading{{Sensor: "before", Value: 1, TS: 1}}
	for _, p := range payloads {
		out, _, v := sensortest.CheckDecode(d, dst, p)
		if v != nil {
			t.Fatalf("payload %q: %v", p, v)
		}
		dst = out[:1]
	}
}
