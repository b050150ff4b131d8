package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a string such as "10s",
// "1m30s", "500ms" or "1d" (days are accepted as a convenience).
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Ms returns d in whole milliseconds.
func (d Duration) Ms() int64 { return time.Duration(d).Milliseconds() }

// MarshalText writes d in the form ParseDuration reads.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration reads a Go duration string, with "d" (24h) also accepted as a
// unit. A bare "0" is zero. Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("empty duration: use a number with a unit, e.g. \"10s\", \"1m\", \"500ms\"")
	}
	var total time.Duration
	rest := s
	// Split off day components, which time.ParseDuration does not know.
	if i := strings.IndexByte(rest, 'd'); i > 0 {
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err == nil && !(n > -106751 && n < 106751) { // NaN, ±Inf or beyond ±292 years
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		if err == nil {
			total = time.Duration(n * float64(24*time.Hour))
			rest = rest[i+1:]
		}
	}
	if rest != "" {
		v, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: use a number with a unit, e.g. \"10s\", \"1m\", \"500ms\", \"1d\"", s)
		}
		total += v
	}
	if total < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return total, nil
}

// Size is a byte count written in TOML as a string such as "256MiB", "1GB"
// or "4096" (bytes).
type Size int64

// MarshalText writes s with a binary unit when it divides evenly.
func (s Size) MarshalText() ([]byte, error) {
	v := int64(s)
	for _, u := range []struct {
		name string
		n    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return []byte(strconv.FormatInt(v/u.n, 10) + u.name), nil
		}
	}
	return []byte(strconv.FormatInt(v, 10)), nil
}

// UnmarshalText parses a size string.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// ParseSize reads "123", "64KiB", "256MiB", "1GiB", "10MB" (decimal units)
// or "1.5GiB".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := len(t)
	for i > 0 && (t[i-1] < '0' || t[i-1] > '9') {
		i--
	}
	num, unit := strings.TrimSpace(t[:i]), strings.TrimSpace(t[i:])
	mult := map[string]float64{
		"": 1, "B": 1,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"KB": 1e3, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	}[unit]
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || n < 0 {
		return 0, fmt.Errorf("invalid size %q: use a number with a unit, e.g. \"256MiB\", \"1GiB\", \"512KiB\"", s)
	}
	return int64(n * mult), nil
}

// Tolerance is a detector's tolerance: a number in the series' units
// (tolerance = 0.5), or a string with a percent sign, relative to the
// series' typical level (tolerance = "2%": Value 0.02, Relative).
type Tolerance struct {
	Value    float64
	Relative bool
}

// String writes t as in the config file.
func (t Tolerance) String() string {
	if t.Relative {
		return strconv.FormatFloat(t.Value*100, 'g', -1, 64) + "%"
	}
	return strconv.FormatFloat(t.Value, 'g', -1, 64)
}

// ParseTolerance reads a relative tolerance such as "2%" or "0.5 %".
func ParseTolerance(s string) (Tolerance, error) {
	num, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	if ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err == nil && f >= 0 && f <= 1e6 {
			return Tolerance{Value: f / 100, Relative: true}, nil
		}
	}
	return Tolerance{}, fmt.Errorf("invalid tolerance %q: use a number in the series' units (tolerance = 0.5) or a percentage of its level (tolerance = \"2%%\")", s)
}
