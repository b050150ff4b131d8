package sensors

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestInternerBound(t *testing.T) {
	var in interner
	for i := range 3 * maxInterned {
		name := fmt.Sprintf("sensor-%d", i)
		if got := in.text([]byte(name)); got != name {
			t.Fatalf("text(%q) = %q", name, got)
		}
		if len(in.m) > maxInterned {
			t.Fatalf("%d names kept, limit %d", len(in.m), maxInterned)
		}
	}
	long := strings.Repeat("x", maxInternLen+1)
	if got := in.text([]byte(long)); got != long {
		t.Fatal("long name changed")
	}
	if _, kept := in.m[long]; kept {
		t.Error("a name over maxInternLen was kept")
	}
	if got := in.text([]byte("a\xffb")); got != "a\uFFFDb" {
		t.Errorf("invalid UTF-8 gave %q", got)
	}
	a, b := in.text([]byte("same")), in.text([]byte("same"))
	if a != b || len(a) != 4 {
		t.Error("interning changed the name")
	}
}

func TestFieldSet(t *testing.T) {
	for _, n := range []int{3, linearMax, linearMax + 1, 50} {
		var s fieldSet
		for round := range 2 { // the second round reuses the set
			s.reset()
			// names 0..n-1, then each even name again
			for i := range n {
				s.put(strconv.Itoa(i), i)
			}
			for i := 0; i < n; i += 2 {
				s.put(strconv.Itoa(i), n+i)
			}
			if len(s.slots) != n {
				t.Fatalf("n=%d round %d: %d slots", n, round, len(s.slots))
			}
			for i, sl := range s.slots {
				want := i
				if i%2 == 0 {
					want = n + i
				}
				if sl.name != strconv.Itoa(i) || sl.ref != want {
					t.Fatalf("n=%d round %d: slot %d = %+v, want ref %d", n, round, i, sl, want)
				}
			}
		}
	}
}

// refDecimalMS is decimalMS done with math/big. ok is false for inputs it
// does not judge (not a number, or an exponent too large to expand).
func refDecimalMS(s string, u tsUnit) (ms int64, inRange, ok bool) {
	if !isDecimal([]byte(s)) {
		return 0, false, false
	}
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > 400 || e < -400 {
			return 0, false, false
		}
	}
	x, good := new(big.Rat).SetString(strings.TrimPrefix(s, "+"))
	if !good {
		// big.Rat rejects "1." and ".5"; add the missing zero.
		s2 := strings.Replace(strings.Replace(s, ".e", ".0e", 1), ".E", ".0E", 1)
		if strings.HasSuffix(s2, ".") {
			s2 += "0"
		}
		x, good = new(big.Rat).SetString(strings.TrimPrefix(s2, "+"))
		if !good {
			return 0, false, false
		}
	}
	if u == unitAuto {
		abs := new(big.Rat).Abs(x)
		switch {
		case abs.Cmp(big.NewRat(1e11, 1)) < 0:
			u = unitS
		case abs.Cmp(big.NewRat(1e14, 1)) < 0:
			u = unitMS
		case abs.Cmp(big.NewRat(1e17, 1)) < 0:
			u = unitUS
		default:
			u = unitNS
		}
	}
	switch u {
	case unitS:
		x.Mul(x, big.NewRat(1000, 1))
	case unitUS:
		x.Quo(x, big.NewRat(1000, 1))
	case unitNS:
		x.Quo(x, big.NewRat(1000000, 1))
	}
	q := new(big.Int).Div(x.Num(), x.Denom()) // Euclidean: floor for a positive denominator
	if !q.IsInt64() || q.Int64() < MinTS || q.Int64() > MaxTS {
		return 0, false, true
	}
	return q.Int64(), true, true
}

var units = []tsUnit{unitS, unitMS, unitUS, unitNS, unitAuto}

func TestDecimalMS(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "+0", "0.0", "1", "-1", "1.5", "-1.5", "0.0005", "-0.0005", ".5", "5.", "-.5",
		"1700000000", "1700000000.123", "1700000000.9999", "1700000000123", "1700000000123456",
		"1700000000123456789", "9223372036854775807", "-9223372036854775808", "99999999999999999999",
		"9007199254740992", "9007199254740993", "-9007199254740992", "-9007199254740993",
		"9007199254740.992", "9007199254740.993", "1e3", "1E-3", "1.7e12", "-1.7e-12", "1e16", "1e15",
		"0.000000001e9", "123456789012345678901234567890e-20", "00001700000000", "1e-400", "-1e-400",
		"99999999999", "100000000000", "99999999999999", "100000000000000", "99999999999999999",
		"100000000000000000", "000000000000000000000000001",
	} {
		for _, u := range units {
			ms, ok, in := decimalMS([]byte(s), u)
			rms, rin, rok := refDecimalMS(s, u)
			if !rok {
				t.Fatalf("reference cannot judge %q", s)
			}
			if !ok || in != rin || (in && ms != rms) {
				t.Errorf("decimalMS(%q, %d) = %d, %v, %v; want %d, in range %v", s, u, ms, ok, in, rms, rin)
			}
		}
	}
	for _, s := range []string{"", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "1e5.5", "0x10", "inf", "NaN", "1_0", " 1", "1 ", "--1"} {
		if _, ok, _ := decimalMS([]byte(s), unitMS); ok {
			t.Errorf("decimalMS(%q) accepted", s)
		}
		if isDecimal([]byte(s)) {
			t.Errorf("isDecimal(%q) = true", s)
		}
	}
}

func FuzzDecimalMS(f *testing.F) {
	for _, s := range []string{"1700000000.123", "-0.0005", "1e3", "9007199254740993", "-1.5e-3", ".5"} {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, s string, ui uint8) {
		u := units[int(ui)%len(units)]
		ms, ok, in := decimalMS([]byte(s), u)
		if ok != isDecimal([]byte(s)) {
			t.Fatalf("decimalMS(%q) syntax %v, isDecimal %v", s, ok, !ok)
		}
		rms, rin, rok := refDecimalMS(s, u)
		if !rok {
			return
		}
		if !ok || in != rin || (in && ms != rms) {
			t.Fatalf("decimalMS(%q, %d) = %d, %v, %v; want %d, in range %v", s, u, ms, ok, in, rms, rin)
		}
	})
}

// FuzzCSVSplit checks the CSV splitter against encoding/csv on the lines
// both accept alike: one record, no blank-before-quote leniency.
func FuzzCSVSplit(f *testing.F) {
	for _, s := range []string{`a,b,c`, `"a,b","c""d",e`, `,,`, `"",x`, `a;b`, `"a` + "\n" + `b",c`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		d := &csvDecoder{delim: []byte(",")}
		got, err := d.split([]byte(line))
		r := csv.NewReader(strings.NewReader(line))
		r.FieldsPerRecord = -1
		recs, rerr := r.ReadAll()
		if rerr != nil || len(recs) != 1 || strings.ContainsAny(line, "\r\n") {
			return
		}
		if err != nil {
			t.Fatalf("split(%q): %v; encoding/csv gives %q", line, err, recs[0])
		}
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if !slices.Equal(gs, recs[0]) {
			t.Fatalf("split(%q) = %q; encoding/csv gives %q", line, gs, recs[0])
		}
	})
}

func TestUnquote(t *testing.T) {
	for in, want := range map[string]string{
		`abc`:                  "abc",
		`\"\\\/\b\f\n\r\t`:     "\"\\/\b\f\n\r\t",
		`\u0041\u00e9\u4e2d`:   "Aé中",
		`\ud83d\ude00`:         "😀",
		`\ud83d`:               "\uFFFD",
		`\ud83dx`:              "\uFFFDx",
		`\ude00\ud83d`:         "\uFFFD\uFFFD",
		`\ud83d\u0041`:         "\uFFFDA",
		"\xff\xc3(":            "\uFFFD\uFFFD(",
		"caf\xc3\xa9":          "café",
		`\u0000`:               "\x00",
		`\uD800\uDC00`:         "\U00010000",
		"\xed\xa0\x80":         "\uFFFD\uFFFD\uFFFD", // an encoded surrogate is invalid UTF-8
		`\u002e\u002E\u00C9\/`: "..É/",
	} {
		got := string(unquote(nil, []byte(in)))
		if got != want || !utf8.ValidString(got) {
			t.Errorf("unquote(%q) = %q, want %q", in, got, want)
		}
		if !bytes.Equal(appendValidUTF8(nil, []byte(want)), []byte(want)) {
			t.Errorf("appendValidUTF8 changed valid %q", want)
		}
	}
}
