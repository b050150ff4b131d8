package pipeline

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/edged/edged/cep"
	"github.com/edged/edged/record"
	"github.com/edged/edged/sensors"
)

// Watermark values at the ends of time.
const (
	// MinWatermark is the watermark before any reading: nothing is late.
	MinWatermark int64 = math.MinInt64
	// MaxWatermark is the watermark at the end of bounded input: every
	// window fires.
	MaxWatermark int64 = math.MaxInt64
)

// SourceSpec declares an input whose watermark takes part in the minimum.
type SourceSpec struct {
	Name string
	// MaxOutOfOrderness bounds how far behind its newest reading a source's
	// readings may arrive and still count.
	MaxOutOfOrderness time.Duration
}

// Config is everything the engine needs to know.
type Config struct {
	// Sources are the inputs known up front. Until a source has delivered
	// its first reading, it holds the watermark back at MinWatermark (or
	// until it is idle). A reading from an undeclared source declares it,
	// with DefaultOutOfOrderness.
	Sources               []SourceSpec
	DefaultOutOfOrderness time.Duration
	Windows               []WindowSpec
	// Detectors run on the readings (or on a window's results), after the
	// windows; their alerts are records too.
	Detectors []DetectorSpec
	// Incremental tracks the keys that change, for Delta (checkpoints of
	// the daemon). Batch runs leave it off.
	Incremental bool

	// sweepMin is the number of empty keys from which they are dropped
	// from memory (default 1024; tests set 1).
	sweepMin int
}

// Engine is the event-time pipeline: per-source watermarks, the combined
// watermark and the window operators. It is single-threaded: all methods
// must be called from one goroutine, which also runs the Sink.
type Engine struct {
	cfg     Config
	sink    Sink
	sources []*sourceWM
	byName  map[string]*sourceWM
	last    *sourceWM // cache for the common run of readings from one source
	ops     []*windowOp
	dets    []*detectorOp
	wm      int64
	started int64 // processing time of the start, for sources never seen
	rec     Record
	skBuf   []byte // scratch for sketch encodings

	// Counters; read them with Stats.
	readings, late, fired, alerts int64
}

// sourceWM is one source's watermark state.
type sourceWM struct {
	name  string
	ooo   int64
	maxTS int64
	has   bool
	idle  bool
}

func (s *sourceWM) watermark() int64 {
	if !s.has {
		return MinWatermark
	}
	return s.maxTS - s.ooo - 1
}

// New builds an engine that sends its records to sink. now is the
// processing time in Unix ms at the start, for idleness.
func New(cfg Config, sink Sink, now int64) (*Engine, error) {
	e := &Engine{cfg: cfg, sink: sink, byName: map[string]*sourceWM{}, wm: MinWatermark, started: now}
	var errs []error
	for _, s := range cfg.Sources {
		if _, dup := e.byName[s.Name]; dup {
			errs = append(errs, fmt.Errorf("source %q declared twice", s.Name))
			continue
		}
		e.addSource(s.Name, s.MaxOutOfOrderness, now)
	}
	names := map[string]bool{}
	for i, w := range cfg.Windows {
		if err := w.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if names[w.Name] {
			errs = append(errs, fmt.Errorf("window %q declared twice", w.Name))
			continue
		}
		names[w.Name] = true
		op := newWindowOp(e, i, w, 0)
		op.lastEarly = now
		e.ops = append(e.ops, op)
	}
	for _, d := range cfg.Detectors {
		if d.Detector == nil {
			errs = append(errs, errors.New("detector without a cep.Detector"))
			continue
		}
		name := d.Detector.Name()
		if names["detector/"+name] {
			errs = append(errs, fmt.Errorf("detector %q declared twice", name))
			continue
		}
		names["detector/"+name] = true
		if d.OnWindow != "" && !names[d.OnWindow] {
			errs = append(errs, fmt.Errorf("detector %q: on_window %q: no such window", name, d.OnWindow))
			continue
		}
		e.dets = append(e.dets, newDetectorOp(e, d))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *Engine) addSource(name string, ooo time.Duration, now int64) *sourceWM {
	s := &sourceWM{name: name, ooo: ooo.Milliseconds(), maxTS: math.MinInt64}
	e.sources = append(e.sources, s)
	e.byName[name] = s
	return s
}

// ErrTimestamp is returned by Process for a reading without a usable event
// time (NoTS, or outside sensors.MinTS..MaxTS).
var ErrTimestamp = errors.New("reading has no usable event time")

// Process runs one reading through the pipeline at processing time now
// (Unix ms): it goes to every window whose filter it passes (or to the late
// side output), then its source's watermark and the combined watermark
// advance and due windows fire.
func (e *Engine) Process(r *sensors.Reading, now int64) error {
	if r.TS < sensors.MinTS || r.TS > sensors.MaxTS {
		return ErrTimestamp
	}
	src := e.last
	if src == nil || src.name != r.Source {
		src = e.byName[r.Source]
		if src == nil {
			src = e.addSource(r.Source, e.cfg.DefaultOutOfOrderness, now)
		}
		e.last = src
	}
	rejoined := src.idle
	src.idle = false
	e.readings++

	wm := e.wm
	for _, op := range e.ops {
		if op.filt.match(r.Sensor, r.Metric, r.Source) {
			op.add(r.Sensor, r.Metric, r.Source, r.Value, r.TS, wm)
		}
	}
	for _, d := range e.dets {
		d.add(r.Sensor, r.Metric, r.Source, r.Value, r.TS, wm)
	}
	if r.TS > src.maxTS || !src.has {
		src.maxTS = max(src.maxTS, r.TS)
		src.has = true
		e.advance(e.combined())
	} else if rejoined {
		e.advance(e.combined())
	}
	return nil
}

// combined is the minimum watermark over active sources, or the current
// watermark when every source is idle.
func (e *Engine) combined() int64 {
	wm := int64(math.MaxInt64)
	active := false
	for _, s := range e.sources {
		if s.idle {
			continue
		}
		active = true
		wm = min(wm, s.watermark())
	}
	if !active {
		return e.wm
	}
	return wm
}

// advance moves the watermark to wm (never backwards) and fires what is due,
// in the canonical order (time, window in config order, key).
func (e *Engine) advance(wm int64) {
	if wm <= e.wm {
		return
	}
	e.wm = wm
	for {
		// The earliest event over all operators: windows in config order,
		// then detectors in config order, then keys.
		var best *windowOp
		var bestKS *keyState
		t := int64(noTimer)
		for _, op := range e.ops {
			ks := op.heap.top()
			if ks == nil || ks.timer > wm {
				continue
			}
			if bestKS == nil || ks.timer < bestKS.timer {
				best, bestKS, t = op, ks, ks.timer
			}
		}
		var bestD *detectorOp
		var bestDK *detKey
		limit := e.timerLimit()
		for _, d := range e.dets {
			if len(d.heap) == 0 {
				continue
			}
			dk := d.heap[0]
			if dk.timer > limit || dk.timer >= t {
				continue
			}
			if bestDK == nil || dk.timer < bestDK.timer {
				bestD, bestDK = d, dk
			}
		}
		switch {
		case bestDK != nil:
			bestD.fire(bestDK, bestDK.timer)
		case best != nil:
			best.timer(bestKS, bestKS.timer)
		default:
			goto done
		}
	}
done:
	for _, op := range e.ops {
		op.sweep()
	}
}

// Tick is the engine's processing-time clock, called periodically by the
// daemon (not in batch mode). It emits the early results of windows that
// ask for them. Early results depend on processing time, so they are for
// dashboards only and never part of the exactly-once output.
func (e *Engine) Tick(now int64) {
	for _, op := range e.ops {
		if every := op.spec.EarlyEvery.Milliseconds(); every > 0 && now-op.lastEarly >= every {
			op.lastEarly = now
			op.emitEarly(e.wm)
		}
	}
}

// MarkIdle takes a source out of the watermark minimum until its next
// reading, which may let the watermark advance and windows fire. The daemon
// decides idleness in processing time (idle_timeout) and writes the
// decision into the ingest log, so that a replay marks the source idle at
// the same place. Unknown sources are declared first.
func (e *Engine) MarkIdle(source string, now int64) {
	s := e.byName[source]
	if s == nil {
		s = e.addSource(source, e.cfg.DefaultOutOfOrderness, now)
	}
	if s.idle {
		return
	}
	s.idle = true
	e.advance(e.combined())
}

// AllIdle reports whether the engine knows at least one source and every
// one is marked idle: the whole input stopped, and the watermark stands
// still until a reading arrives.
func (e *Engine) AllIdle() bool {
	for _, s := range e.sources {
		if !s.idle {
			return false
		}
	}
	return len(e.sources) > 0
}

// ProcessingDue returns the earliest processing time (Unix ms) at which a
// ProcessingTick would do something, or math.MaxInt64 when none would: while
// some source is active, or no detector runs in processing time
// (cep.UsesProcessingTime), or none of their keys has a reading waiting or
// a timer set. The daemon writes a tick into the log when the clock
// reaches it.
func (e *Engine) ProcessingDue() int64 {
	due := int64(noTimer)
	if !e.AllIdle() || e.wm == MaxWatermark {
		return due
	}
	for _, d := range e.dets {
		if d.proc && len(d.heap) > 0 {
			due = min(due, d.heap[0].timer)
		}
	}
	return due
}

// ProcessingTick tells the engine that processing time reached now while
// the whole input stopped: for each detector configured with processing
// time (in config order), the keys due by now get their waiting readings
// and cep.ProcessingTimer.AdvanceProcessing(key, now), and what they raise
// is emitted like any alert. It does nothing while some source is active
// (the watermark moves then) or after Flush. The daemon takes ticks from
// the ingest log (store.EntryTick), so a replay meets them at the same
// places and the run stays a function of the log.
func (e *Engine) ProcessingTick(now int64) {
	if !e.AllIdle() || e.wm == MaxWatermark {
		return
	}
	for _, d := range e.dets {
		if d.proc {
			d.processingTick(now)
		}
	}
}

// SourceIdle reports whether the named source is marked idle.
func (e *Engine) SourceIdle(name string) bool {
	s := e.byName[name]
	return s != nil && s.idle
}

// Sources returns the names of the sources the engine knows, declared or
// seen, in order of first appearance.
func (e *Engine) Sources() []string {
	out := make([]string, len(e.sources))
	for i, s := range e.sources {
		out[i] = s.name
	}
	return out
}

// Flush ends bounded input: the watermark becomes +infinity and every open
// window fires. Readings processed after Flush are all late.
func (e *Engine) Flush() { e.advance(MaxWatermark) }

// Watermark returns the combined watermark.
func (e *Engine) Watermark() int64 { return e.wm }

// Stats are the engine's counters.
type Stats struct {
	Readings int64 // readings processed
	Late     int64 // late records emitted (one per reading and window)
	Fired    int64 // window records emitted
	Alerts   int64 // alert records emitted
	// DetectorLate counts readings that reached a detector at or behind
	// the watermark: detectors see readings in event-time order only.
	DetectorLate int64
	Keys         int // keys with state, over all windows and detectors
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	st := Stats{Readings: e.readings, Late: e.late, Fired: e.fired, Alerts: e.alerts}
	for _, op := range e.ops {
		st.Keys += len(op.keys) - op.empties
	}
	for _, d := range e.dets {
		st.Keys += len(d.keys)
		st.DetectorLate += d.late
	}
	return st
}

func (e *Engine) emitWindow(op *windowOp, key string, start, end int64, rev int32, final bool, a *aggState) {
	for i := range op.spec.Aggs {
		op.values[i] = a.value(&op.spec.Aggs[i])
	}
	e.fired++
	e.rec = Record{
		Kind: record.KindWindow, Name: op.spec.Name, Key: key,
		Start: start, End: end, Rev: rev, Final: final,
		Aggs: op.spec.Aggs, Values: op.values,
	}
	e.sink.Emit(&e.rec)
	if final && rev == 0 {
		for _, d := range e.dets {
			if d.spec.OnWindow == op.spec.Name {
				d.window(op.spec.Name, key, op.keyOf(keyParts(op, key)), end, rev, op.spec.Aggs, op.values)
			}
		}
	}
}

// keyParts recovers the key parts of a rendered window key for a detector
// on that window (the detector keys its state the same way).
func keyParts(op *windowOp, key string) (string, string, string) {
	switch op.spec.KeyBy {
	case KeySensorMetric:
		for i := len(key) - 1; i >= 0; i-- {
			if key[i] == '/' {
				return key[:i], key[i+1:], ""
			}
		}
		return key, "", ""
	case KeyMetric:
		return "", key, ""
	case KeySource:
		return "", "", key
	}
	return key, "", ""
}

func (e *Engine) emitAlert(a *cep.Alert, spec *DetectorSpec) {
	e.alerts++
	e.rec = Record{
		Kind: record.KindAlert, Name: a.Detector, Key: a.Key,
		State: a.State, TS: a.TS, Value: a.Value, Score: a.Score, Reason: a.Reason,
		Severity: spec.Severity, Labels: spec.Labels,
	}
	e.sink.Emit(&e.rec)
}

func (e *Engine) emitLate(op *windowOp, sensor, metric, source string, v float64, ts int64) {
	e.late++
	e.rec = Record{
		Kind: record.KindLate, Name: op.spec.Name, Key: op.render(op.keyOf(sensor, metric, source)),
		Source: source, Sensor: sensor, Metric: metric, Value: v, TS: ts,
		Watermark: e.wm,
	}
	e.sink.Emit(&e.rec)
}
