package sensors_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"

	"github.com/edged/edged/sensors"
)

func TestSenMLConformance(t *testing.T) { conformance(t, "senml") }

func FuzzSenML(f *testing.F) {
	seedCorpus(f, "senml")
	f.Fuzz(func(t *testing.T, p []byte, mode uint8) {
		var opts sensors.Options
		if mode&8 != 0 {
			opts.Sensor = "dflt"
		}
		d, err := sensors.New("senml", opts)
		if err != nil {
			t.Fatal(err)
		}
		fuzzDecode(t, d, [][]byte{p})
		// Differential check against a reference built on encoding/json.
		got, err := d.Decode(nil, p)
		want, reason, ok := refSenML(opts, p)
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

// refSenML decodes p the slow, obvious way, with encoding/json and
// math/big, as the senml decoder is documented to. It returns the readings
// or the reason of the error; ok is false when it cannot tell (a syntax
// error, whose place in the order of checks a one-pass scanner decides, or
// an exponent too big to expand cheaply).
func refSenML(opts sensors.Options, p []byte) (rs []sensors.Reading, reason string, ok bool) {
	if len(p) > 1<<20 {
		return nil, "payload too long", true
	}
	if t := bytes.TrimLeft(p, " \t\r\n"); len(t) == 0 || t[0] != '[' {
		return nil, "not a JSON array", true
	}
	var records []json.RawMessage
	if err := json.Unmarshal(p, &records); err != nil {
		return nil, "", false
	}
	var (
		bn string
		bt = new(big.Int) // µs
		bv float64
	)
	for _, raw := range records {
		var rec map[string]json.RawMessage
		if raw[0] != '{' {
			return nil, "invalid SenML", true
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		// Go maps keep the last of repeated keys, as the decoder does; but a
		// key ending in '_' must be seen even when repeated.
		if err := dec.Decode(&rec); err != nil {
			panic(err)
		}
		// Keys in raw order, to find the first mandatory extension.
		for _, k := range keysInOrder(raw) {
			switch k {
			case "bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut":
			default:
				if strings.HasSuffix(k, "_") {
					return nil, "invalid SenML", true
				}
			}
		}
		kind := func(k string) byte {
			v, ok := rec[k]
			if !ok {
				return 0
			}
			switch v[0] {
			case '"':
				return '"'
			case 't', 'f':
				return 'b'
			case 'n':
				return 'n'
			case '{', '[':
				return v[0]
			}
			return '0'
		}
		for _, k := range []string{"bn", "bu", "n", "u", "vs", "vd"} {
			if c := kind(k); c != 0 && c != '"' {
				return nil, "invalid SenML", true
			}
		}
		if c := kind("vb"); c != 0 && c != 'b' {
			return nil, "invalid SenML", true
		}
		if c := kind("bver"); c != 0 {
			if c != '0' {
				return nil, "invalid SenML", true
			}
			x, err := rec["bver"].MarshalJSON()
			if err != nil {
				panic(err)
			}
			if f, ok := refFloat(string(x)); !ok || f > 10 {
				return nil, "invalid SenML", true
			}
		}
		nums := map[string]float64{}
		for _, k := range []string{"bv", "bs", "v", "s"} {
			c := kind(k)
			if c == 0 {
				continue
			}
			if c != '0' {
				return nil, "value is not a number", true
			}
			f, ok := refFloat(string(rec[k]))
			if !ok {
				return nil, "value is not a number", true
			}
			nums[k] = f
		}
		times := map[string]*big.Int{}
		for _, k := range []string{"bt", "t", "ut"} {
			c := kind(k)
			if c == 0 {
				continue
			}
			if c != '0' {
				return nil, "unreadable timestamp", true
			}
			us, known := refUS(string(rec[k]))
			if !known {
				return nil, "", false
			}
			lim := new(big.Int).Mul(big.NewInt(sensors.MaxTS), big.NewInt(1000))
			lim.Add(lim, big.NewInt(999))
			if new(big.Int).Abs(us).Cmp(lim) > 0 {
				return nil, "timestamp out of range", true
			}
			times[k] = us
		}
		if _, ok := rec["bn"]; ok {
			json.Unmarshal(rec["bn"], &bn)
		}
		if x, ok := times["bt"]; ok {
			bt = x
		}
		if x, ok := nums["bv"]; ok {
			bv = x
		}
		v, ok := nums["v"]
		if !ok {
			continue
		}
		val := bv + v
		if math.IsInf(val, 0) || math.IsNaN(val) {
			return nil, "value is not a number", true
		}
		name := bn
		if _, ok := rec["n"]; ok {
			var n string
			json.Unmarshal(rec["n"], &n)
			name += n
		}
		r := sensors.Reading{Value: val, TS: sensors.NoTS}
		switch {
		case opts.Sensor != "":
			r.Sensor, r.Metric = opts.Sensor, name
		case name == "":
			return nil, "no sensor", true
		default:
			r.Sensor = name
			if i := strings.LastIndexAny(name, "/:"); i > 0 && i < len(name)-1 {
				r.Sensor, r.Metric = name[:i], name[i+1:]
			}
		}
		t := new(big.Int).Set(bt)
		if x, ok := times["t"]; ok {
			t.Add(t, x)
		}
		lim := new(big.Int).Mul(big.NewInt(sensors.MaxTS), big.NewInt(1000))
		lim.Add(lim, big.NewInt(999))
		switch {
		case new(big.Int).Abs(t).Cmp(lim) > 0:
			return nil, "timestamp out of range", true
		case t.Sign() == 0:
		case t.Cmp(big.NewInt(1<<28*1e6)) < 0:
			return nil, "relative time not supported", true
		default:
			r.TS = new(big.Int).Div(t, big.NewInt(1000)).Int64()
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return nil, "no value", true
	}
	return rs, "", true
}

// keysInOrder lists the keys of the JSON object raw in order.
func keysInOrder(raw []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.Token() // {
	var keys []string
	for dec.More() {
		tok, _ := dec.Token()
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return keys
}

// refFloat parses a JSON number as float64, finite.
func refFloat(s string) (float64, bool) {
	var f float64
	if err := json.Unmarshal([]byte(s), &f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// refUS converts a JSON number of seconds to µs, rounding toward negative
// infinity, with math/big. known is false for huge exponents.
func refUS(num string) (us *big.Int, known bool) {
	if i := strings.IndexAny(num, "eE"); i >= 0 {
		var e int
		if _, err := fmt.Sscan(num[i+1:], &e); err != nil || e > 1000 || e < -1000 {
			return nil, false
		}
	}
	x, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, false
	}
	x.Mul(x, big.NewRat(1e6, 1))
	q, _ := new(big.Int).DivMod(x.Num(), x.Denom(), new(big.Int))
	return q, true
}

// TestSenMLRefCases runs the reference on hand-picked payloads, to check
// the reference itself and corners the golden cases do not spell out.
func TestSenMLRefCases(t *testing.T) {
	for _, p := range []string{
		`[{"n":"a","v":1,"t":1.5e9}]`,
		`[{"n":"a","v":1,"bt":1700000000.0000005,"t":-0.0000005}]`,
		`[{"n":"a","v":1,"bt":-1e-999}]`,
		`[{"n":"a","v":1,"t":1e-999}]`,
		`[{"n":"a","v":1,"t":9007199254740.992999}]`,
		`[{"n":"a","v":1,"t":9007199254740.993}]`,
		`[{"n":"a","v":1,"bt":-9007199254740.992,"t":-1}]`,
		`[{"n":"a","v":1,"bt":9007199254740,"t":-9007199254740}]`,
		`[{"n":"a","v":1,"x_":1,"x_":2}]`,
		`[{"n":"a","bver":10.5,"v":1}]`,
		`[{"n":"a","bver":-1,"v":1}]`,
		`[{"n":"a","bn":"b","v":1}]`,
		`[{"n":"a","v":1,"t":0.000e99999999999999999999}]`,
		`[{"n":"a","vb":false,"ut":1e400}]`,
	} {
		d, _ := sensors.New("senml", sensors.Options{})
		got, err := d.Decode(nil, []byte(p))
		want, reason, ok := refSenML(sensors.Options{}, []byte(p))
		if !ok {
			continue
		}
		if r := sensors.Reason(err); r != reason {
			t.Errorf("%s: reason %q (%v), reference says %q", p, r, err, reason)
		}
		if err == nil && encodeReadings(got) != encodeReadings(want) {
			t.Errorf("%s:\ngot  %s\nwant %s", p, encodeReadings(got), encodeReadings(want))
		}
	}
}

func TestSenMLPayloadTooLong(t *testing.T) {
	d, _ := sensors.New("senml", sensors.Options{})
	p := `[{"n":"a/b","v":1,"vs":"` + strings.Repeat("x", 1<<20) + `"}]`
	if _, err := d.Decode(nil, []byte(p)); sensors.Reason(err) != "payload too long" {
		t.Errorf("got %v, want payload too long", err)
	}
}

// TestSenMLNesting checks the depth limit, which matches encoding/json's.
func TestSenMLNesting(t *testing.T) {
	d, _ := sensors.New("senml", sensors.Options{})
	for _, depth := range []int{9999, 10000, 10001, 100000} {
		p := `[{"n":"a","v":1,"x":` + strings.Repeat("[", depth-2) + strings.Repeat("]", depth-2) + `}]`
		_, err := d.Decode(nil, []byte(p))
		if valid := json.Valid([]byte(p)); (err == nil) != valid {
			t.Errorf("depth %d: err %v, encoding/json valid %v", depth, err, valid)
		}
	}
}

func TestSenMLAllocs(t *testing.T) {
	for _, s := range []string{
		`[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]`,
		`[{"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},{"n":"current","t":-5,"v":1.2},{"n":"status","vs":"ok"}]`,
		`[{"bn":"d\u00e9v/","n":"t\"emp","v":1}]`,
	} {
		for _, opts := range []sensors.Options{{}, {Sensor: "topic"}} {
			d, _ := sensors.New("senml", opts)
			dst := make([]sensors.Reading, 0, 8)
			p := []byte(s)
			if _, err := d.Decode(dst, p); err != nil {
				t.Fatal(err)
			}
			if n := testing.AllocsPerRun(100, func() { d.Decode(dst[:0], p) }); n != 0 {
				t.Errorf("%s %+v: %v allocs per Decode", p, opts, n)
			}
		}
	}
}

func BenchmarkSenMLDecode(b *testing.B) {
	for _, bc := range []struct{ name, pack string }{
		{"single", `[{"n":"urn:dev:ow:10e2073a01080063:temp","u":"Cel","t":1700000000,"v":23.1}]`},
		{"pack", `[{"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},` +
			`{"n":"current","t":-5,"v":1.2},{"n":"current","t":-4,"v":1.3},{"n":"current","t":-3,"v":1.4},` +
			`{"n":"current","t":-2,"v":1.5},{"n":"current","t":-1,"v":1.6},{"n":"current","v":1.7}]`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d, _ := sensors.New("senml", sensors.Options{})
			p := []byte(bc.pack)
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
