// Package cep holds edged's anomaly detectors and event patterns: per-key
// state machines that watch readings (or window results) in event time and
// raise alerts with a lifecycle: "firing" once when a condition starts to
// hold, "resolved" once when it stops (SEMANTICS section 5).
//
// # Contract with the pipeline
//
// The pipeline owns keys, ordering, watermarks and checkpoints; a detector
// only sees one key's events. For each key the pipeline calls Observe with
// the key's events in event-time order (ties in arrival order): it buffers
// readings until the watermark passes them, so readings out of order within
// max_out_of_orderness give the same alerts as in order. Detectors driven
// by the passage of event time (deadman, "for duration") ask for a timer
// with NextTimer and get Advance when the watermark reaches it. A State is
// plain data with explicit encoding (AppendState, RestoreState), so that
// checkpoints can store it and a restart continues exactly.
//
// # Scores and the alert lifecycle
//
// Every alert carries a score from 0 to 1, on one scale for every
// detector (score.go): min_score sets what fires across detectors alike.
// The statistical detectors (zscore, mad, anomaly) never divide by a
// spread of zero: a floor learned from the series (its quantization step,
// a small fraction of its level) keeps flat and quantized series from
// turning every change into an infinite deviation. zscore, mad, rate and
// anomaly resolve an alert only after resolve_count readings back within
// bounds, so an anomaly is one alert, not a storm. anomaly (anomaly.go) is
// the detector that needs no tuning.
//
// cep knows nothing of bbolt or MQTT.
package cep

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"
)

// NoTimer means a state wants no Advance.
const NoTimer int64 = math.MaxInt64

// Event is one reading of one key, as a detector sees it.
type Event struct {
	Key    string
	Source string
	Sensor string
	Metric string
	Value  float64
	TS     int64 // event time, Unix ms
}

// Alert states.
const (
	Firing   = "firing"
	Resolved = "resolved"
)

// Alert is one state change of one key's alert.
type Alert struct {
	Detector string
	Key      string
	State    string // Firing or Resolved
	TS       int64  // event time of the change
	Value    float64
	// Score grades how anomalous the reading is, 0 to 1, on one scale for
	// every detector (see scoreOf). A resolved alert carries the score of
	// the reading that resolved it.
	Score  float64
	Reason string // what was observed and what was expected
}

// Emitter collects the alerts a state raises. The pipeline passes one per
// call; states must not keep it.
type Emitter struct {
	Alerts []Alert
}

// Emit records an alert.
func (e *Emitter) Emit(a Alert) { e.Alerts = append(e.Alerts, a) }

// Detector makes the per-key states of one configured detector. It is
// immutable after construction and safe to share.
type Detector interface {
	// Name is the configured name, written in every alert.
	Name() string
	// NewState returns the state of a key seen for the first time.
	NewState() State
	// Fingerprint identifies the shape of the detector's state: a restored
	// checkpoint taken under another fingerprint is dropped.
	Fingerprint() string
}

// State is one key's detector state. It is used by one goroutine.
type State interface {
	// Observe handles the key's next event.
	Observe(ev *Event, out *Emitter)
	// NextTimer is the event time at which the state wants Advance, or
	// NoTimer.
	NextTimer() int64
	// Advance tells the state the watermark reached wm (>= NextTimer()).
	Advance(key string, wm int64, out *Emitter)
	// AppendState appends the state's encoding to dst.
	AppendState(dst []byte) []byte
	// RestoreState replaces the state with the one encoded in b.
	RestoreState(b []byte) error
}

// Spec is a detector's configuration, translated from the config file.
// Each detector type reads the fields it needs and ignores the others.
type Spec struct {
	Name string
	Type string

	Above, Below *float64      // threshold
	Hysteresis   float64       // threshold: resolve only Hysteresis inside the limit
	ForCount     int           // threshold: fire after this many readings in a row beyond the limit
	ForDuration  time.Duration // threshold: fire after the condition held this long (event time)
	Sigma        float64       // zscore, mad: how many deviations count as an outlier
	Window       time.Duration // zscore, mad: rolling baseline in event time
	Alpha        float64       // zscore: EWMA weight instead of a window
	Warmup       int           // zscore, mad: readings of a key before it may fire
	MaxRate      float64       // rate: largest |change| per second that is normal
	Duration     time.Duration // flatline: stuck this long; deadman: silent this long
	Tolerance    Tolerance     // flatline: changes within this count as stuck; zscore, mad: smaller deviations never fire
	MinScore     float64       // threshold, zscore, mad, rate, anomaly: fire only at this score or more (0..1)
	ResolveCount int           // zscore, mad, rate, anomaly: readings in a row back within bounds that resolve an alert (0: defaultResolveCount)
	Min, Max     *float64      // range: physically possible values
	Renotify     time.Duration // re-send "firing" every so often while it holds (event time)
	Pattern      *PatternSpec  // pattern
	// ProcessingTime lets the pipeline also drive the states' timers in
	// processing time while the whole input stopped (deadman only: see
	// [ProcessingTimer] and [UsesProcessingTime]).
	ProcessingTime bool
}

// PatternSpec configures a pattern detector (see pattern.go).
type PatternSpec struct {
	Steps         []string      // conditions, in order: "followed by"
	NotFollowedBy string        // optional: after the steps, this must not occur within Within
	Within        time.Duration // the whole sequence's time limit
	Times         int           // for a single step: it must occur this many times within Within
	MaxPartial    int           // bound on open partial matches per key (default 100)
}

// NewFunc builds a detector from its spec.
type NewFunc func(Spec) (Detector, error)

// registry is filled by init functions of this package's files; it is
// never written after init.
var registry = map[string]NewFunc{}

func register(typ string, fn NewFunc) {
	if _, dup := registry[typ]; dup {
		panic("cep: detector type registered twice: " + typ)
	}
	registry[typ] = fn
}

// Types returns the detector types, sorted.
func Types() []string {
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// ErrUnknownType is returned by New for a type nobody registered.
var ErrUnknownType = errors.New("unknown detector type")

// New builds the detector a spec describes.
func New(s Spec) (Detector, error) {
	fn := registry[s.Type]
	if fn == nil {
		return nil, fmt.Errorf("detector %q: %w %q (known: %v)", s.Name, ErrUnknownType, s.Type, Types())
	}
	d, err := fn(s)
	if err != nil {
		return nil, fmt.Errorf("detector %q: %w", s.Name, err)
	}
	if s.ProcessingTime && !UsesProcessingTime(d) {
		return nil, fmt.Errorf("detector %q: processing_time is only for deadman detectors", s.Name)
	}
	return d, nil
}

// processingTimed is implemented by detectors configured to run their
// states' timers in processing time too.
type processingTimed interface {
	ProcessingTime() bool
}

// UsesProcessingTime reports whether d was configured with processing
// time (Spec.ProcessingTime) and its states implement [ProcessingTimer].
// The pipeline then calls AdvanceProcessing on its keys when it is told,
// through the log, that the processing time advanced while every source
// was idle.
func UsesProcessingTime(d Detector) bool {
	p, ok := d.(processingTimed)
	if !ok || !p.ProcessingTime() {
		return false
	}
	_, ok = d.NewState().(ProcessingTimer)
	return ok
}

// Lifecycle turns a condition into alert transitions: firing once when it
// starts to hold, resolved once when it stops, and, with Renotify, firing
// again every Renotify of event time while it holds. States embed it.
type Lifecycle struct {
	Firing     bool
	LastNotify int64 // event time of the last firing alert
}

// Set updates the condition at event time ts and emits a transition.
func (l *Lifecycle) Set(holds bool, det, key string, ts int64, value, score float64, reason string, renotify time.Duration, out *Emitter) {
	switch {
	case holds && !l.Firing:
		l.Firing, l.LastNotify = true, ts
		out.Emit(Alert{Detector: det, Key: key, State: Firing, TS: ts, Value: value, Score: score, Reason: reason})
	case !holds && l.Firing:
		l.Firing = false
		out.Emit(Alert{Detector: det, Key: key, State: Resolved, TS: ts, Value: value, Score: score, Reason: reason})
	case holds && renotify > 0 && ts-l.LastNotify >= renotify.Milliseconds():
		l.LastNotify = ts
		out.Emit(Alert{Detector: det, Key: key, State: Firing, TS: ts, Value: value, Score: score, Reason: reason})
	}
}

// FormatValue writes a value for a reason text.
func FormatValue(v float64) string {
	return fmt.Sprintf("%.6g", v)
}
