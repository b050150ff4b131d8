package sensors_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/sensors"
)

func TestJSONConformance(t *testing.T) { conformance(t, "json") }

func FuzzJSON(f *testing.F) {
	seedCorpus(f, "json")
	f.Fuzz(func(t *testing.T, p []byte, mode uint8) {
		opts := fuzzOptions(mode)
		opts.Columns, opts.Delimiter = nil, 0
		d, err := sensors.New("json", opts)
		if err != nil {
			t.Fatal(err)
		}
		fuzzDecode(t, d, [][]byte{p})
		// Differential check against a reference built on encoding/json.
		got, err := d.Decode(nil, p)
		want, reason, ok := refJSON(opts, p)
		if !ok {
			return
		}
		if r := sensors.Reason(err); r != reason {
			t.Fatalf("payload %q: reason %q (%v), reference says %q", p, r, err, reason)
		}
		if err == nil && encodeReadings(got) != encodeReadings(want) {
			t.Fatalf("payload %q:\ngot  %s\nwant %s", p, encodeReadings(got), encodeReadings(want))
		}
	})
}

// refJSON decodes p the slow, obvious way, with encoding/json and math/big,
// as the json decoder is documented to. It returns the readings or the
// reason of the error; ok is false when it cannot tell (an exponent too big
// for math/big to expand cheaply).
func refJSON(opts sensors.Options, p []byte) (rs []sensors.Reading, reason string, ok bool) {
	sensorKey, metricKey := or(opts.SensorField, "sensor"), or(opts.MetricField, "metric")
	valueKey, tsKey := or(opts.ValueField, "value"), or(opts.TSField, "ts")
	if len(p) > 1<<20 {
		return nil, "payload too long", true
	}
	if t := bytes.TrimLeft(p, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, "not a JSON object", true
	}
	if !json.Valid(p) {
		return nil, "invalid JSON", true
	}
	// Members in order of first appearance, each with its last value.
	type member struct {
		key string
		raw json.RawMessage
	}
	var members []member
	index := map[string]int{}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.Token() // {
	for dec.More() {
		tok, _ := dec.Token()
		key := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			panic(err)
		}
		if i, dup := index[key]; dup {
			members[i].raw = raw
			continue
		}
		index[key] = len(members)
		members = append(members, member{key, raw})
	}
	get := func(k string) json.RawMessage {
		if i, ok := index[k]; ok {
			return members[i].raw
		}
		return nil
	}
	text := func(raw json.RawMessage) (string, bool) {
		switch {
		case raw[0] == '"':
			var s string
			json.Unmarshal(raw, &s)
			return s, true
		case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
			return string(raw), true
		}
		return "", false
	}

	var sensor, metric string
	if raw := get(sensorKey); raw == nil {
		if opts.Sensor == "" {
			return nil, "no sensor", true
		}
		sensor = opts.Sensor
	} else if s, isText := text(raw); !isText {
		return nil, "sensor is not a string", true
	} else if s == "" {
		return nil, "no sensor", true
	} else {
		sensor = s
	}
	if raw := get(metricKey); raw != nil {
		s, isText := text(raw)
		if !isText {
			return nil, "metric is not a string", true
		}
		metric = s
	}
	isNum := func(raw json.RawMessage) bool { return raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9' }
	if raw := get(valueKey); raw != nil {
		if !isNum(raw) {
			return nil, "value is not a number", true
		}
		v, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsInf(v, 0) {
			return nil, "value is not a number", true
		}
		rs = append(rs, sensors.Reading{Sensor: sensor, Metric: metric, Value: v})
	} else {
		for _, m := range members {
			if m.key == sensorKey || m.key == metricKey || m.key == tsKey || !isNum(m.raw) {
				continue
			}
			v, err := strconv.ParseFloat(string(m.raw), 64)
			if err != nil || math.IsInf(v, 0) {
				return nil, "value is not a number", true
			}
			rs = append(rs, sensors.Reading{Sensor: sensor, Metric: m.key, Value: v})
		}
		if len(rs) == 0 {
			return nil, "no value", true
		}
	}
	ts := sensors.NoTS
	if raw := get(tsKey); raw != nil {
		var num string
		switch {
		case isNum(raw):
			num = string(raw)
		case raw[0] == '"':
			var s string
			json.Unmarshal(raw, &s)
			if regexp.MustCompile(`^-?[0-9]+$`).MatchString(s) {
				num = s
			} else {
				s2 := s
				if len(s2) > 10 && s2[10] == ' ' {
					s2 = s2[:10] + "T" + s2[11:]
				}
				t, err := time.Parse(time.RFC3339Nano, s2)
				if err != nil || len(s) > 64 {
					return nil, "unreadable timestamp", true
				}
				ts = t.UnixMilli()
			}
		default:
			return nil, "unreadable timestamp", true
		}
		if num != "" {
			ms, inRange, known := refMS(num, opts.TSUnit, "ms")
			if !known {
				return nil, "", false
			}
			if !inRange {
				return nil, "timestamp out of range", true
			}
			ts = ms
		}
	}
	for i := range rs {
		rs[i].TS = ts
	}
	return rs, "", true
}

// refMS converts a decimal number in unit (def when empty) to Unix ms, exactly,
// with math/big. known is false for exponents too large to expand.
func refMS(num, unit, def string) (ms int64, inRange, known bool) {
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		e, err := strconv.Atoi(num[i+1:])
		if err != nil || e > 1000 || e < -1000 {
			return 0, false, false
		}
	}
	x, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, false, false
	}
	if unit == "" {
		unit = def
	}
	if unit == "auto" {
		abs := new(big.Rat).Abs(x)
		switch {
		case abs.Cmp(big.NewRat(1e11, 1)) < 0:
			unit = "s"
		case abs.Cmp(big.NewRat(1e14, 1)) < 0:
			unit = "ms"
		case abs.Cmp(big.NewRat(1e17, 1)) < 0:
			unit = "us"
		default:
			unit = "ns"
		}
	}
	switch unit {
	case "s":
		x.Mul(x, big.NewRat(1000, 1))
	case "us":
		x.Quo(x, big.NewRat(1000, 1))
	case "ns":
		x.Quo(x, big.NewRat(1000000, 1))
	}
	// floor(x)
	q, m := new(big.Int).DivMod(x.Num(), x.Denom(), new(big.Int))
	_ = m // DivMod is Euclidean: with a positive denominator, q is the floor.
	if !q.IsInt64() || q.Int64() < sensors.MinTS || q.Int64() > sensors.MaxTS {
		return 0, false, true
	}
	return q.Int64(), true, true
}

// TestJSONNesting checks the depth limit, which matches encoding/json's.
func TestJSONNesting(t *testing.T) {
	d, _ := sensors.New("json", sensors.Options{})
	for _, depth := range []int{9999, 10000, 10001, 100000} {
		p := `{"sensor":"s","value":1,"x":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
		_, err := d.Decode(nil, []byte(p))
		if valid := json.Valid([]byte(p)); (err == nil) != valid {
			t.Errorf("depth %d: err %v, encoding/json valid %v", depth, err, valid)
		}
	}
}

// TestJSONRefCases runs the reference on hand-picked payloads, to check the
// reference itself and corners the golden cases do not spell out.
func TestJSONRefCases(t *testing.T) {
	for _, p := range []string{
		`{"sensor":"s","value":1,"ts":1.5e3}`,
		`{"sensor":"s","value":1,"ts":-0.0001}`,
		`{"sensor":"s","value":1,"ts":-1.5}`,
		`{"sensor":"s","value":1,"ts":9007199254740992}`,
		`{"sensor":"s","value":1,"ts":9007199254740993}`,
		`{"sensor":"s","value":1,"ts":-9007199254740992}`,
		`{"sensor":"s","value":1,"ts":1e-999}`,
		`{"sensor":"s","value":1,"ts":-1e-999}`,
		`{"sensor":"s","value":1,"ts":0.000e99999999999999999999}`,
		`{"sensor":"s","value":1,"ts":"-"}`,
		`{"sensor":"s","value":1,"ts":"2023-11-14 22:13:20.5+01:00"}`,
		`{"sensor":"s","value":1e-400}`,
		`{"sensor":"\ud83d\ude00\ud800x\udc00\u00e9\\\/","value":-0}`,
		"{\"sensor\":\"\xff\xfe\",\"value\":1}",
		`{"sensor":"s","a":1,"b":"x","a":"y","c":2,"b":3}`,
		`{"sensor":"s","a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"a":11,"j":"x"}`,
	} {
		for _, unit := range []string{"", "s", "us", "ns", "auto"} {
			opts := sensors.Options{TSUnit: unit}
			d, _ := sensors.New("json", opts)
			got, err := d.Decode(nil, []byte(p))
			want, reason, ok := refJSON(opts, []byte(p))
			if !ok {
				continue
			}
			if r := sensors.Reason(err); r != reason {
				t.Errorf("%s unit %q: reason %q (%v), reference %q", p, unit, r, err, reason)
			} else if err == nil && encodeReadings(got) != encodeReadings(want) {
				t.Errorf("%s unit %q:\ngot  %s\nwant %s", p, unit, encodeReadings(got), encodeReadings(want))
			}
		}
	}
}

// TestJSONAllocs checks the steady state of the common shapes allocates
// nothing.
func TestJSONAllocs(t *testing.T) {
	for _, s := range []string{
		`{"sensor":"s1","ts":1700000000000,"value":21.5}`,
		`{"sensor":"s1","metric":"temp","ts":"1700000000000","value":-3e2}`,
		`{"sensor":"s1","ts":1700000000000,"temp":21.5,"hum":40,"loc":"lab","ok":true,"cfg":{"a":[1,2]}}`,
		`{"sensor":"k\u00fcche","ts":1700000000.123,"value":1}`,
	} {
		d, _ := sensors.New("json", sensors.Options{TSUnit: "auto"})
		dst := make([]sensors.Reading, 0, 8)
		p := []byte(s)
		if _, err := d.Decode(dst, p); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { d.Decode(dst[:0], p) }); n != 0 {
			t.Errorf("%s: %v allocs per Decode", p, n)
		}
	}
}

func BenchmarkJSONDecode(b *testing.B) {
	for _, bc := range []struct{ name, payload string }{
		{"single", `{"sensor":"s1","ts":1700000000000,"value":21.5}`},
		{"multi", `{"sensor":"s1","ts":1700000000000,"temp":21.5,"hum":40.25,"pressure":1013,"loc":"lab"}`},
		{"rfc3339", `{"sensor":"s1","ts":"2023-11-14T22:13:20.123Z","value":21.5}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, _ := sensors.New("json", sensors.Options{})
			p := []byte(bc.payload)
			dst := make([]sensors.Reading, 0, 8)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dst, err = d.Decode(dst[:0], p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestJSONPayloadTooLong(t *testing.T) {
	d, _ := sensors.New("json", sensors.Options{})
	p := `{"sensor":"s","value":1,"pad":"` + strings.Repeat("x", 1<<20) + `"}`
	if _, err := d.Decode(nil, []byte(p)); sensors.Reason(err) != "payload too long" {
		t.Errorf("got %v, want payload too long", err)
	}
	// Just under the limit decodes; the decoder then drops its big buffers.
	p = `{"sensor":"s","value":1,"pad":"` + strings.Repeat("\\n", (1<<20-40)/2) + `"}`
	if _, err := d.Decode(nil, []byte(p)); err != nil {
		t.Errorf("payload under the limit: %v", err)
	}
}
