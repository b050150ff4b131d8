package pipeline

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Kind is the type of an output record.
type Kind uint8

// Record kinds, written as the record's "type" field.
const (
	KindWindow Kind = iota + 1
	KindLate
	KindAlert
)

// String returns the record type as written in JSON.
func (k Kind) String() string {
	switch k {
	case KindWindow:
		return "window"
	case KindLate:
		return "late"
	case KindAlert:
		return "alert"
	}
	return "unknown"
}

// Record is one output record (SEMANTICS section 5). The engine reuses one
// Record for every emission: a Sink must copy what it keeps (AppendJSON is
// the usual way) before it returns.
type Record struct {
	Kind Kind
	// Name is the window's name for window and late records, the detector's
	// for alerts.
	Name string
	Key  string

	// Window records.
	Start, End int64
	Rev        int32
	Final      bool
	Aggs       []AggSpec // the configured aggregates, in config order
	Values     []float64 // one value per entry of Aggs

	// Late records (and the reading behind an alert).
	Source, Sensor, Metric string
	Value                  float64
	TS                     int64
	Watermark              int64

	// Alerts.
	State    string
	Reason   string
	Severity string            // written when set
	Labels   map[string]string // written when set, keys sorted
}

// Sink receives records from the engine, on the engine's goroutine, in the
// order they are produced. The record is only valid during the call.
type Sink interface {
	Emit(r *Record)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(r *Record)

// Emit calls f(r).
func (f SinkFunc) Emit(r *Record) { f(r) }

// AppendJSON appends r as one JSON object (no newline) to dst. Field order is
// fixed: type first, then identity, then values, as in SEMANTICS section 5.
func (r *Record) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, r.Kind.String()...)
	dst = append(dst, '"')
	switch r.Kind {
	case KindWindow:
		dst = appendStrField(dst, "window", r.Name)
		dst = appendStrField(dst, "key", r.Key)
		dst = appendIntField(dst, "start", r.Start)
		dst = appendIntField(dst, "end", r.End)
		dst = appendIntField(dst, "rev", int64(r.Rev))
		dst = append(dst, `,"final":`...)
		dst = strconv.AppendBool(dst, r.Final)
		for i := range r.Aggs {
			dst = append(dst, ',', '"')
			dst = append(dst, r.Aggs[i].Name...)
			dst = append(dst, '"', ':')
			if r.Aggs[i].Kind == AggCount {
				dst = strconv.AppendInt(dst, int64(r.Values[i]), 10)
			} else {
				dst = AppendFloat(dst, r.Values[i])
			}
		}
	case KindLate:
		dst = appendStrField(dst, "window", r.Name)
		dst = appendStrField(dst, "source", r.Source)
		dst = appendStrField(dst, "sensor", r.Sensor)
		dst = appendStrField(dst, "metric", r.Metric)
		dst = append(dst, `,"value":`...)
		dst = AppendFloat(dst, r.Value)
		dst = appendIntField(dst, "ts", r.TS)
		dst = appendIntField(dst, "watermark", r.Watermark)
	case KindAlert:
		dst = appendStrField(dst, "detector", r.Name)
		dst = appendStrField(dst, "key", r.Key)
		dst = appendStrField(dst, "state", r.State)
		dst = appendIntField(dst, "ts", r.TS)
		dst = append(dst, `,"value":`...)
		dst = AppendFloat(dst, r.Value)
		dst = appendStrField(dst, "reason", r.Reason)
		if r.Severity != "" {
			dst = appendStrField(dst, "severity", r.Severity)
		}
		if len(r.Labels) > 0 {
			dst = append(dst, `,"labels":{`...)
			keys := make([]string, 0, len(r.Labels))
			for k := range r.Labels {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for i, k := range keys {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = AppendString(dst, k)
				dst = append(dst, ':')
				dst = AppendString(dst, r.Labels[k])
			}
			dst = append(dst, '}')
		}
	}
	return append(dst, '}')
}

func appendStrField(dst []byte, name, v string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return AppendString(dst, v)
}

func appendIntField(dst []byte, name string, v int64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, v, 10)
}

// AppendFloat appends v as a JSON number the way encoding/json writes a
// float64 (shortest representation, exponent only for very large or small
// magnitudes). NaN and infinities, which JSON cannot carry, become null.
func AppendFloat(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(v)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, v, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hex = "0123456789abcdef"

// AppendString appends s as a quoted JSON string, escaping what JSON
// requires and replacing invalid UTF-8 with U+FFFD.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
