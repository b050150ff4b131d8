package sensors

import (
	"math/big"
	"strconv"
	"strings"
	"testing"
)

// refDecimalUS is decimalUS done with math/big. ok is false for inputs it
// does not judge (not a number, or an exponent too large to expand).
func refDecimalUS(s string) (us int64, inRange, ok bool) {
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
		s2 := strings.Replace(strings.Replace(s, ".e", ".0e", 1), ".E", ".0E", 1)
		if strings.HasSuffix(s2, ".") {
			s2 += "0"
		}
		if x, good = new(big.Rat).SetString(strings.TrimPrefix(s2, "+")); !good {
			return 0, false, false
		}
	}
	x.Mul(x, big.NewRat(1e6, 1))
	q := new(big.Int).Div(x.Num(), x.Denom()) // Euclidean: floor for a positive denominator
	if !q.IsInt64() || q.Int64() < -maxUS || q.Int64() > maxUS {
		return 0, false, true
	}
	return q.Int64(), true, true
}

func TestDecimalUS(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "+0", "0.0", "1", "-1", "1.5", "-1.5", "0.0000005", "-0.0000005", ".5", "5.", "-.5",
		"1700000000", "1700000000.123", "1700000000.1234567", "1.276020076001e+09", "268435456",
		"9007199254740.992", "9007199254740.992999", "9007199254740.993", "-9007199254740.992999",
		"-9007199254740.993", "9223372036854.775807", "99999999999999999999", "1e13", "1e12", "-1e-400",
		"1e-400", "123456789012345678901234567890e-20", "00001700000000",
	} {
		us, ok, in := decimalUS([]byte(s))
		rus, rin, rok := refDecimalUS(s)
		if !rok {
			t.Fatalf("reference cannot judge %q", s)
		}
		if !ok || in != rin || (in && us != rus) {
			t.Errorf("decimalUS(%q) = %d, %v, %v; want %d, in range %v", s, us, ok, in, rus, rin)
		}
	}
	for _, s := range []string{"", "-", "+", ".", "e5", "1e", "1e+", "1.2.3", "1e5.5", "0x10", "inf", "NaN", " 1", "--1"} {
		if _, ok, _ := decimalUS([]byte(s)); ok {
			t.Errorf("decimalUS(%q) accepted", s)
		}
	}
}

func FuzzDecimalUS(f *testing.F) {
	for _, s := range []string{"1700000000.123", "-0.0000005", "1e3", "9007199254740.993", "-1.5e-3", ".5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		us, ok, in := decimalUS([]byte(s))
		if ok != isDecimal([]byte(s)) {
			t.Fatalf("decimalUS(%q) syntax %v, isDecimal %v", s, ok, !ok)
		}
		rus, rin, rok := refDecimalUS(s)
		if !rok {
			return
		}
		if !ok || in != rin || (in && us != rus) {
			t.Fatalf("decimalUS(%q) = %d, %v, %v; want %d, in range %v", s, us, ok, in, rus, rin)
		}
	})
}

func TestAddUS(t *testing.T) {
	for _, tc := range []struct {
		a, b, sum int64
		ok        bool
	}{
		{1, 2, 3, true},
		{maxUS, 0, maxUS, true},
		{maxUS, 1, 0, false},
		{-maxUS, -1, 0, false},
		{maxUS, -maxUS, 0, true},
		{maxUS, maxUS, 0, false},
		{-maxUS, -maxUS, 0, false},
	} {
		s, ok := addUS(tc.a, tc.b)
		if ok != tc.ok || (ok && s != tc.sum) {
			t.Errorf("addUS(%d, %d) = %d, %v; want %d, %v", tc.a, tc.b, s, ok, tc.sum, tc.ok)
		}
	}
}
