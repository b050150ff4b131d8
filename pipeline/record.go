package pipeline

import (
	"slices"
	"strconv"

	"github.com/edged/edged/record"
)

// Record is one output record (SEMANTICS section 5). The engine reuses one
// Record for every emission: a Sink must copy what it keeps (AppendJSON is
// the usual way) before it returns.
type Record struct {
	Kind record.Kind
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
	Score    float64 // 0 to 1: how anomalous (cep's common scale)
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
	case record.KindWindow:
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
				dst = record.AppendFloat(dst, r.Values[i])
			}
		}
	case record.KindLate:
		dst = appendStrField(dst, "window", r.Name)
		dst = appendStrField(dst, "source", r.Source)
		dst = appendStrField(dst, "sensor", r.Sensor)
		dst = appendStrField(dst, "metric", r.Metric)
		dst = append(dst, `,"value":`...)
		dst = record.AppendFloat(dst, r.Value)
		dst = appendIntField(dst, "ts", r.TS)
		dst = appendIntField(dst, "watermark", r.Watermark)
	case record.KindAlert:
		dst = appendStrField(dst, "detector", r.Name)
		dst = appendStrField(dst, "key", r.Key)
		dst = appendStrField(dst, "state", r.State)
		dst = appendIntField(dst, "ts", r.TS)
		dst = append(dst, `,"value":`...)
		dst = record.AppendFloat(dst, r.Value)
		dst = append(dst, `,"score":`...)
		dst = record.AppendFloat(dst, r.Score)
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
				dst = record.AppendString(dst, k)
				dst = append(dst, ':')
				dst = record.AppendString(dst, r.Labels[k])
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
	return record.AppendString(dst, v)
}

func appendIntField(dst []byte, name string, v int64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, v, 10)
}

// ID returns the record's id as device's record: derived from its identity
// only (package record), so a record recomputed after a crash gets the same
// id.
func (r *Record) ID(device string) string {
	switch r.Kind {
	case record.KindWindow:
		return record.WindowID(device, r.Name, r.Key, r.Start, r.Rev)
	case record.KindAlert:
		return record.AlertID(device, r.Name, r.Key, r.TS, r.State)
	case record.KindLate:
		return record.LateID(device, r.Name, r.Source, r.Sensor, r.Metric, r.TS, r.Value)
	}
	return ""
}
