package pipeline

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// WindowType is tumbling, sliding or session.
type WindowType uint8

// Window types of SEMANTICS section 3.
const (
	Tumbling WindowType = iota + 1
	Sliding
	Session
)

// String returns the type as written in the config.
func (t WindowType) String() string {
	switch t {
	case Tumbling:
		return "tumbling"
	case Sliding:
		return "sliding"
	case Session:
		return "session"
	}
	return "unknown"
}

// KeyBy chooses what a window is keyed by.
type KeyBy uint8

// Key choices. The default, KeySensorMetric, is SEMANTICS section 1's key:
// sensor, or sensor/metric when the metric is not empty.
const (
	KeySensorMetric KeyBy = iota
	KeySensor
	KeyMetric
	KeySource
	KeyGlobal
)

// ParseKeyBy reads a key_by value from the config.
func ParseKeyBy(s string) (KeyBy, error) {
	switch s {
	case "", "sensor_metric":
		return KeySensorMetric, nil
	case "sensor":
		return KeySensor, nil
	case "metric":
		return KeyMetric, nil
	case "source":
		return KeySource, nil
	case "global":
		return KeyGlobal, nil
	}
	return 0, fmt.Errorf("unknown key_by %q: use sensor_metric, sensor, metric, source or global", s)
}

// WindowSpec describes one keyed window operator. Durations are whole
// milliseconds.
type WindowSpec struct {
	Name            string
	Type            WindowType
	Size            time.Duration // tumbling, sliding
	Slide           time.Duration // sliding
	Gap             time.Duration // session
	Offset          time.Duration // tumbling, sliding
	AllowedLateness time.Duration
	Aggs            []AggSpec
	KeyBy           KeyBy
	// Filters: globs with * and ?; empty means any.
	Sensors, Metrics, Sources []string
	// EarlyEvery, when > 0, makes Tick emit the partial results of every
	// open window ("final": false) at this processing-time interval, for
	// dashboards. Early results never replace the on-time firing.
	EarlyEvery time.Duration
}

// Validate checks the spec the way the config checker does, so a spec built
// in code fails early too.
func (w *WindowSpec) Validate() error {
	var errs []error
	ms := func(name string, d time.Duration) {
		if d%time.Millisecond != 0 {
			errs = append(errs, fmt.Errorf("%s %v is not a whole number of milliseconds", name, d))
		}
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	ms("size", w.Size)
	ms("slide", w.Slide)
	ms("gap", w.Gap)
	ms("offset", w.Offset)
	ms("allowed_lateness", w.AllowedLateness)
	switch w.Type {
	case Tumbling:
		if w.Size <= 0 {
			errs = append(errs, errors.New("tumbling window needs size > 0"))
		}
		if w.Offset >= w.Size && w.Size > 0 {
			errs = append(errs, errors.New("offset must be smaller than size"))
		}
	case Sliding:
		if w.Size <= 0 || w.Slide <= 0 {
			errs = append(errs, errors.New("sliding window needs size > 0 and slide > 0"))
		} else if w.Slide > w.Size {
			errs = append(errs, errors.New("slide must not exceed size"))
		} else if w.Offset >= w.Slide {
			errs = append(errs, errors.New("offset must be smaller than slide"))
		}
	case Session:
		if w.Gap <= 0 {
			errs = append(errs, errors.New("session window needs gap > 0"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown window type %d", w.Type))
	}
	if len(w.Aggs) == 0 {
		errs = append(errs, errors.New("no aggregates"))
	}
	for _, globs := range [][]string{w.Sensors, w.Metrics, w.Sources} {
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				errs = append(errs, fmt.Errorf("bad glob %q", g))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("window %q: %w", w.Name, err)
	}
	return nil
}

// fingerprint identifies the shape of the state a spec produces, so that a
// checkpoint taken under another shape is not restored into this one.
func (w *WindowSpec) fingerprint() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s size=%d slide=%d gap=%d offset=%d key=%d aggs=",
		w.Type, w.Size.Milliseconds(), w.Slide.Milliseconds(), w.Gap.Milliseconds(), w.Offset.Milliseconds(), w.KeyBy)
	n := needsOf(w.Aggs)
	fmt.Fprintf(&b, "%d", n)
	return b.String()
}

// filter decides which readings enter a window.
type filter struct {
	sensors, metrics, sources []string
}

func (f *filter) match(sensor, metric, source string) bool {
	return matchAny(f.sensors, sensor) && matchAny(f.metrics, metric) && matchAny(f.sources, source)
}

func matchAny(globs []string, s string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if glob(g, s) {
			return true
		}
	}
	return false
}

// Glob reports whether s matches pattern, as the globs of windows' and
// detectors' filters do: '*' any run of bytes ('/' included), '?' any one.
func Glob(pattern, s string) bool { return glob(pattern, s) }

// glob matches s against a pattern of literal bytes, '*' (any run) and '?'
// (any one byte). It does not allocate.
func glob(p, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := -1, -1
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				nextPx, nextSx = px, sx+1
				px++
				continue
			case '?':
				if sx < len(s) {
					px++
					sx++
					continue
				}
			default:
				if sx < len(s) && s[sx] == c {
					px++
					sx++
					continue
				}
			}
		}
		if nextSx > 0 && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}

// floorDiv returns floor(a/b) for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// ceilDiv returns ceil(a/b) for b > 0.
func ceilDiv(a, b int64) int64 {
	return -floorDiv(-a, b)
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
