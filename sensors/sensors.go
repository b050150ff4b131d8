// Package sensors turns payload bytes into readings.
//
// A decoder is registered by name in an init function and created per stream
// with New, because some formats (CSV with a header) keep state between
// payloads. Decoders do no I/O: the ingest package hands them one payload at a
// time (one line, one MQTT message) and appends the readings they return to
// the log.
//
// # Ownership
//
// Decode appends to a caller-owned slice and returns it, so a caller that
// reuses the slice decodes without allocating in steady state. The strings in
// a Reading may be interned by the decoder and shared between readings; they
// are immutable and safe to retain.
//
// # Errors
//
// A malformed payload is reported as an error value whose text is the reason
// ("no value", "value is not a number", ...). Decoders never panic on any
// input; each one has a fuzz target that checks this.
package sensors

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Reading is one measured value. TS is event time in Unix milliseconds; it is
// NoTS when the payload carried no timestamp, and the caller stamps it with
// ingestion time.
type Reading struct {
	Sensor string
	Metric string
	Value  float64
	TS     int64
	Source string
}

// NoTS marks a reading whose payload had no timestamp.
const NoTS int64 = -1 << 63

// Timestamps are bounded to ±2^53 ms (about ±285,000 years) so that window
// arithmetic in the pipeline never overflows. Decoders reject readings outside.
const (
	MinTS int64 = -(1 << 53)
	MaxTS int64 = 1 << 53
)

// Key returns the default key of a reading: the sensor, or sensor/metric when
// the metric is not empty.
func (r *Reading) Key() string {
	if r.Metric == "" {
		return r.Sensor
	}
	return r.Sensor + "/" + r.Metric
}

// Decoder decodes payloads of one stream. A Decoder is not safe for
// concurrent use; create one per stream with New.
type Decoder interface {
	// Decode appends the readings of payload to dst and returns the extended
	// slice. On a malformed payload it returns dst unchanged (len(dst) as on
	// entry) and an error whose text says why. A payload that is valid but
	// carries no reading (a CSV header, a blank line) returns dst and nil.
	Decode(dst []Reading, payload []byte) ([]Reading, error)
}

// Options configures a decoder. The zero value means the documented defaults.
type Options struct {
	// SensorField, MetricField, ValueField and TSField name the fields (JSON
	// keys, CSV columns, Influx tags) that carry those parts of a reading.
	// Defaults: "sensor", "metric", "value", "ts".
	SensorField string
	MetricField string
	ValueField  string
	TSField     string
	// TSUnit is the unit of a numeric timestamp: "s", "ms", "us", "ns" or
	// "auto" (chosen by magnitude). Default: "ms" for json and csv, "ns" for
	// influx (the line protocol's own default).
	TSUnit string
	// Sensor is the sensor name used when a payload names none (for example
	// taken from an MQTT topic). Empty means such payloads are malformed.
	Sensor string
	// Columns names the CSV columns when the stream has no header line.
	Columns []string
	// Delimiter separates CSV fields. Default ','.
	Delimiter rune
}

// NewFunc creates a decoder with the given options. It returns an error when
// the options make no sense for the format.
type NewFunc func(opts Options) (Decoder, error)

var (
	mu       sync.RWMutex
	registry = map[string]NewFunc{}
)

// Register makes a decoder available by name. It panics when name is empty,
// fn is nil or the name is already registered. It is meant to be called from
// init functions.
func Register(name string, fn NewFunc) {
	mu.Lock()
	defer mu.Unlock()
	if name == "" {
		panic("sensors: Register with empty name")
	}
	if fn == nil {
		panic("sensors: Register " + name + " with nil func")
	}
	if _, dup := registry[name]; dup {
		panic("sensors: Register called twice for " + name)
	}
	registry[name] = fn
}

// Names returns the registered decoder names, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ErrUnknownFormat is returned by New for a name nobody registered.
var ErrUnknownFormat = errors.New("unknown format")

// New creates a decoder of the named format.
func New(name string, opts Options) (Decoder, error) {
	mu.RLock()
	fn := registry[name]
	mu.RUnlock()
	if fn == nil {
		return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownFormat, name, Names())
	}
	return fn(opts)
}

// Known reports whether a decoder of that name is registered.
func Known(name string) bool {
	mu.RLock()
	defer mu.RUnlock()
	_, ok := registry[name]
	return ok
}
