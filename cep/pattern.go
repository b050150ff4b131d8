package cep

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr/vm"
)

func init() { register("pattern", newPattern) }

// pattern detects sequences of events on one key, in the manner of Flink
// CEP, much reduced.
//
// # Conditions
//
// Each step is a boolean expr-lang/expr expression (https://expr-lang.org),
// compiled once when the detector is built; a bad one is a config error
// naming the step, the text and expr's message. An expression reads the
// current event:
//
//	value  float64   ts  int64 (event time, Unix ms)
//	sensor, metric, source, key  string
//
// and the events matched by the earlier steps of the same partial match,
// each with .value, .ts, .sensor and .metric:
//
//	s1, s2, ... s16   the event step N matched
//	prev              the previous step's event (step N-1)
//	first             step 1's event
//
// Step 1 cannot read them, step N reads s1..s(N-1), not_followed_by reads
// s1..s<last step>. Besides expr's built-ins (abs, min, max, round, ...;
// now() is disabled: it is processing time) there is distance_km(lat1,
// lon1, lat2, lon2), the haversine distance in km between two points in
// degrees.
//
// A reading has one value: a pattern across metrics names them
// (metric == 'door'), and the readings it relates must share the
// detector's key: the default key_by, sensor_metric, keeps each metric
// apart, so a pattern across metrics needs key_by = "sensor" (one device
// reporting several metrics), "source" or "global". Examples, as config:
//
//	# door opened, then the temperature rises by more than 5 within 10 min
//	# (key_by = "sensor": the room's sensor reports door and temp)
//	steps  = ["metric == 'door' && value == 1",
//	          "metric == 'temp'",
//	          "metric == 'temp' && value - s2.value > 5"]
//	within = "10m"
//
//	# one card at two different readers within 5 min: the access system
//	# reports sensor = the card, metric = "swipe", value = the reader's
//	# number. How far apart the readers are is not in the readings: "more
//	# than 100 km apart" would need a lookup of the readers' places, which
//	# this detector does not do.
//	steps  = ["metric == 'swipe'",
//	          "metric == 'swipe' && value != prev.value"]
//	within = "5m"
//
//	# a GPS tracker whose consecutive fixes are more than 100 km apart
//	# (key_by = "sensor"): lat and lon arrive as two readings with the same
//	# ts, lat first (check your decoder's order)
//	steps  = ["metric == 'lat'",
//	          "metric == 'lon' && ts == s1.ts",
//	          "metric == 'lat' && ts > s1.ts",
//	          "metric == 'lon' && ts == s3.ts && distance_km(s1.value, s2.value, s3.value, value) > 100"]
//	within = "5m"
//
//	# 3 failed logins within 1 min (sliding)
//	steps  = ["metric == 'login_failed'"]
//	times  = 3
//	within = "1m"
//
//	# door opened and not closed within 5 min
//	steps           = ["metric == 'door' && value == 1"]
//	not_followed_by = "metric == 'door' && value == 0"
//	within          = "5m"
//
// Each of these is a case in testdata/patterns/*.test.
//
// # Matching
//
// Steps follow each other with relaxed contiguity (Flink's followedBy):
// other events may come in between, and a partial match waiting for step N
// takes the first event that satisfies it. Every event that satisfies step
// 1 opens a new partial match, and one event may open one and advance
// others (Flink's NO_SKIP: a1 a2 b matches (a1,b) and (a2,b)). A match
// must complete within Within of its first event: an event at ts belongs
// to the match only if ts - first.ts < Within. A partial match that cannot
// complete any more expires silently (no alert) once the watermark reaches
// first.ts + Within - 1, or at the key's next event.
//
// Times N (one step) is that step N times: it matches whenever N events
// satisfying it fall within Within (sliding, NO_SKIP, so each further
// event while the rate holds is another match).
//
// NotFollowedBy: once all steps matched, the match waits until
// first.ts + Within. If an event satisfying NotFollowedBy arrives before
// then the match is discarded; otherwise the absence is confirmed when the
// watermark reaches first.ts + Within - 1, and the match counts at
// first.ts + Within. Events between the steps are not checked against it.
//
// # Alerts
//
// A pattern is a condition over event time, so it follows the lifecycle of
// every detector (firing once when it starts to hold, resolved once when
// it stops; Renotify re-sends firing while it holds):
//
//   - Steps (and Times): the condition is "a complete match lies within the
//     last Within". It starts to hold at the match's last event (firing at
//     that ts, value = that event's value) and stops at first.ts + Within
//     of the latest match (resolved at that ts, when the watermark reaches
//     it or at the key's next later event). Matches while firing extend it
//     without a new alert; touching intervals are one. For Times this is
//     "N events within the sliding window": resolved when the count drops
//     below N.
//   - NotFollowedBy: the condition is "overdue". Firing at first.ts +
//     Within of a confirmed match (value = its last step's value); resolved
//     at the first later event that satisfies NotFollowedBy for that match
//     (the door finally closes). If it never comes, it stays firing (a
//     deadman detector is the tool for silent sensors). Confirmed matches
//     while firing raise nothing (but a firing again with Renotify).
//
// # Bounds
//
// A key holds at most MaxPartial (default 100) open partial matches,
// including complete ones waiting out NotFollowedBy. When a new one opens
// beyond that, the oldest is dropped and counted (PatternStats.Dropped):
// under a flood of openings the pattern keeps the most recent ones. A key
// holds at most MaxPartial * len(steps) events (Times counts as steps).
// Expired partial matches and conditions that fail at run time (e.g. an
// integer division by zero; they count as false) are counted too.
//
// # Cost
//
// Each condition is split at its top-level && into the conjuncts that read
// only the current event, evaluated once per event, and those that read
// earlier steps, evaluated per partial match waiting for that step and
// only when the first part holds: write the selective, event-only part
// (metric == 'swipe') as a conjunct of its own.
type pattern struct {
	name    string
	within  int64 // ms
	renot   time.Duration
	maxPart int
	times   int
	steps   []*patCond // Times expanded: the same condition N times
	nfb     *patCond   // nil if none
	conds   []*patCond // distinct conditions, by id
	later   []*patCond // distinct conditions of steps 2.. and nfb
	fp      string
	pool    sync.Pool // *patCtx
}

// PatternStats are a pattern state's counters.
type PatternStats struct {
	Open       int    // open partial matches
	Dropped    uint64 // partial matches dropped by the MaxPartial bound
	Expired    uint64 // partial matches that ran out of Within
	EvalErrors uint64 // condition evaluations that failed at run time
}

func newPattern(s Spec) (Detector, error) {
	ps := s.Pattern
	if ps == nil || len(ps.Steps) == 0 {
		return nil, errors.New("pattern needs steps")
	}
	switch {
	case len(ps.Steps) > patternMaxSteps:
		return nil, fmt.Errorf("pattern: at most %d steps (got %d)", patternMaxSteps, len(ps.Steps))
	case ps.Within <= 0:
		return nil, errors.New("pattern needs within (the time limit of a whole match)")
	case ps.Within < time.Millisecond:
		return nil, errors.New("pattern: within must be at least 1ms")
	case ps.Times < 0:
		return nil, errors.New("pattern: times must not be negative")
	case ps.Times > 1 && len(ps.Steps) != 1:
		return nil, fmt.Errorf("pattern: times needs exactly one step (got %d)", len(ps.Steps))
	case ps.MaxPartial < 0:
		return nil, errors.New("pattern: max_partial must not be negative")
	case s.Renotify < 0:
		return nil, errors.New("pattern: renotify must not be negative")
	}
	p := &pattern{name: s.Name, within: ps.Within.Milliseconds(), renot: s.Renotify, maxPart: ps.MaxPartial, times: max(1, ps.Times)}
	if p.maxPart == 0 {
		p.maxPart = 100
	}
	if p.times-1 > p.maxPart {
		return nil, fmt.Errorf("pattern: times = %d needs max_partial >= %d", p.times, p.times-1)
	}
	for i, src := range ps.Steps {
		c, err := compileCond(len(p.conds), fmt.Sprintf("step %d", i+1), src, i)
		if err != nil {
			return nil, fmt.Errorf("pattern: %w", err)
		}
		p.conds = append(p.conds, c)
		p.steps = append(p.steps, c)
	}
	for len(p.steps) < p.times {
		p.steps = append(p.steps, p.steps[0])
	}
	if ps.NotFollowedBy != "" {
		c, err := compileCond(len(p.conds), "not_followed_by", ps.NotFollowedBy, min(len(p.steps), patternMaxSteps))
		if err != nil {
			return nil, fmt.Errorf("pattern: %w", err)
		}
		p.conds = append(p.conds, c)
		p.nfb = c
	}
	for i, c := range p.conds {
		if i > 0 || p.times > 1 || c == p.nfb {
			p.later = append(p.later, c)
		}
	}
	h := fnv.New64a()
	for _, st := range ps.Steps {
		h.Write([]byte(st))
		h.Write([]byte{0})
	}
	fmt.Fprintf(h, "\x01%s\x01%d", ps.NotFollowedBy, p.times)
	p.fp = fmt.Sprintf("pattern/1/%016x", h.Sum64())
	p.pool.New = func() any { return &patCtx{} }
	return p, nil
}

func (p *pattern) Name() string { return p.name }

// Fingerprint changes with the steps, not_followed_by and times; within
// and max_partial may change under a stored state.
func (p *pattern) Fingerprint() string { return p.fp }

func (p *pattern) NewState() State { return &patternState{d: p, resolveAt: NoTimer} }

// patPartial is one partial match: the events its steps matched so far.
// All of them are complete only while waiting out NotFollowedBy.
type patPartial struct {
	evs []patEvent
}

type patternState struct {
	d *pattern
	Lifecycle
	parts     []patPartial // by first event time (they open in event order)
	resolveAt int64        // steps: when firing, the end of the latest match's window
	lastValue float64      // steps: the latest match's value, for resolved
	fired     []patEvent   // not_followed_by: the match that fired, while firing
	dropped   uint64
	expired   uint64
	evalErrs  uint64
}

// PatternStats returns the state's counters (the pipeline may show them).
func (s *patternState) PatternStats() PatternStats {
	return PatternStats{Open: len(s.parts), Dropped: s.dropped, Expired: s.expired, EvalErrors: s.evalErrs}
}

// patCtx is the scratch of one Observe: a reusable VM, the env, and the
// per-event results of the guards.
type patCtx struct {
	vm    vm.VM
	env   patEnv
	guard [patternMaxSteps + 1]int8 // by cond id: 0 not yet, 1 true, 2 false
	st    *patternState
}

func (c *patCtx) run(p *vm.Program) bool {
	out, err := c.vm.Run(p, &c.env)
	if err != nil {
		c.st.evalErrs++
		return false
	}
	b, _ := out.(bool)
	return b
}

// guardOK evaluates the event-only part of a condition, once per event.
func (c *patCtx) guardOK(cd *patCond) bool {
	if cd.guard == nil {
		return true
	}
	switch c.guard[cd.id] {
	case 1:
		return true
	case 2:
		return false
	}
	ok := c.run(cd.guard)
	c.guard[cd.id] = 2
	if ok {
		c.guard[cd.id] = 1
	}
	return ok
}

// match evaluates a condition for the current event after the events evs.
func (c *patCtx) match(cd *patCond, evs []patEvent) bool {
	if !c.guardOK(cd) {
		return false
	}
	if cd.rest == nil {
		return true
	}
	c.env.bind(evs, cd.upto)
	return c.run(cd.rest)
}

func (s *patternState) Observe(ev *Event, out *Emitter) {
	d := s.d
	if s.NextTimer() < ev.TS {
		// Whatever could only have completed before ev is final.
		s.advance(ev.Key, ev.TS-1, out)
	}
	ctx := d.pool.Get().(*patCtx)
	ctx.st = s
	ctx.env = patEnv{Value: ev.Value, TS: ev.TS, Sensor: ev.Sensor, Metric: ev.Metric, Source: ev.Source, Key: ev.Key}
	ctx.guard = [len(ctx.guard)]int8{}
	n := len(d.steps)
	pe := patEvent{Value: ev.Value, TS: ev.TS, Sensor: ev.Sensor, Metric: ev.Metric}

	if d.nfb != nil && s.Firing && len(s.fired) > 0 && ctx.match(d.nfb, s.fired) {
		reason := fmt.Sprintf("followed by %s after %v", pe.label(), msDur(ev.TS-s.fired[0].TS))
		s.fired = nil
		s.Set(false, d.name, ev.Key, ev.TS, ev.Value, 0, reason, d.renot, out)
	}
	if len(s.parts) > 0 && ctx.anyLater(d) {
		w := 0
		for i := range s.parts {
			p := &s.parts[i]
			k := len(p.evs)
			if k == n { // complete, waiting out not_followed_by
				if ctx.match(d.nfb, p.evs) {
					continue
				}
			} else if ctx.match(d.steps[k], p.evs) {
				p.evs = append(p.evs, pe)
				if k+1 == n && d.nfb == nil {
					s.matched(ev, p.evs, out)
					continue
				}
			}
			s.parts[w] = *p
			w++
		}
		clear(s.parts[w:])
		s.parts = s.parts[:w]
	}
	if ctx.match(d.steps[0], nil) {
		if n == 1 && d.nfb == nil {
			s.matched(ev, []patEvent{pe}, out)
		} else {
			evs := make([]patEvent, 1, n)
			evs[0] = pe
			s.open(evs)
		}
	}
	ctx.env.unbind()
	ctx.st = nil
	d.pool.Put(ctx)
}

// anyLater reports whether some partial match could move on this event:
// whether the guard of a condition after step 1 holds.
func (c *patCtx) anyLater(d *pattern) bool {
	for _, cd := range d.later {
		if c.guardOK(cd) {
			return true
		}
	}
	return false
}

// open adds a partial match, dropping the oldest beyond the bound.
func (s *patternState) open(evs []patEvent) {
	if over := len(s.parts) - s.d.maxPart + 1; over > 0 {
		clear(s.parts[:over])
		s.parts = s.parts[over:]
		s.dropped += uint64(over)
	}
	s.parts = append(s.parts, patPartial{evs: evs})
}

// matched handles a complete match of the steps (no not_followed_by).
func (s *patternState) matched(ev *Event, evs []patEvent, out *Emitter) {
	d := s.d
	end := evs[0].TS + d.within
	if s.Firing {
		s.resolveAt = max(s.resolveAt, end)
	} else {
		s.resolveAt = end
	}
	s.lastValue = ev.Value
	if !s.Firing || (d.renot > 0 && ev.TS-s.LastNotify >= d.renot.Milliseconds()) {
		s.Set(true, d.name, ev.Key, ev.TS, ev.Value, 1, d.describe(evs), d.renot, out)
	}
}

func (s *patternState) NextTimer() int64 {
	t := NoTimer
	if len(s.parts) > 0 {
		t = s.parts[0].evs[0].TS + s.d.within - 1
	}
	if s.d.nfb == nil && s.Firing {
		t = min(t, s.resolveAt)
	}
	return t
}

func (s *patternState) Advance(key string, wm int64, out *Emitter) { s.advance(key, wm, out) }

// advance settles what the watermark wm decides: no event at or before wm
// is still to come.
func (s *patternState) advance(key string, wm int64, out *Emitter) {
	d := s.d
	if d.nfb == nil && s.Firing && wm >= s.resolveAt {
		s.Set(false, d.name, key, s.resolveAt, s.lastValue, 0, fmt.Sprintf("no match within the last %v", msDur(d.within)), d.renot, out)
		s.resolveAt = NoTimer
	}
	i := 0
	for i < len(s.parts) && s.parts[i].evs[0].TS+d.within-1 <= wm {
		evs := s.parts[i].evs
		if len(evs) < len(d.steps) {
			s.expired++
		} else { // not_followed_by did not come: the match counts
			at := evs[0].TS + d.within
			last := evs[len(evs)-1]
			if !s.Firing || (d.renot > 0 && at-s.LastNotify >= d.renot.Milliseconds()) {
				if !s.Firing {
					s.fired = evs
				}
				reason := fmt.Sprintf("%s, not followed by (%s) within %v", d.describe(evs), d.nfb.src, msDur(d.within))
				s.Set(true, d.name, key, at, last.Value, 1, reason, d.renot, out)
			}
		}
		i++
	}
	if i > 0 {
		clear(s.parts[:i])
		s.parts = s.parts[i:]
		if len(s.parts) == 0 {
			s.parts = nil
		}
	}
}

// describe writes a match for a reason: its events, the first two and
// last two of a long one.
func (d *pattern) describe(evs []patEvent) string {
	var b strings.Builder
	if d.times > 1 {
		fmt.Fprintf(&b, "%d times within %v: ", d.times, msDur(d.within))
	} else {
		fmt.Fprintf(&b, "matched within %v: ", msDur(d.within))
	}
	for i, e := range evs {
		if len(evs) > 5 && i >= 2 && i < len(evs)-2 {
			if i == 2 {
				b.WriteString(", ...")
			}
			continue
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("s" + strconv.Itoa(i+1) + " " + e.label())
		if i > 0 {
			b.WriteString(" +" + msDur(e.TS-evs[0].TS).String())
		}
	}
	return b.String()
}

func (e *patEvent) label() string {
	name := e.Metric
	switch {
	case e.Sensor != "" && e.Metric != "":
		name = e.Sensor + "/" + e.Metric
	case e.Sensor != "":
		name = e.Sensor
	case name == "":
		name = "value"
	}
	return name + "=" + FormatValue(e.Value)
}

func msDur(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// State encoding, version 1: lifecycle, resolveAt, lastValue, the three
// counters, the fired match, then the partial matches; an event is value,
// ts, sensor, metric.

func appendPatEvents(b []byte, evs []patEvent) []byte {
	b = appendU64(b, uint64(len(evs)))
	for i := range evs {
		e := &evs[i]
		b = appendF64(b, e.Value)
		b = appendI64(b, e.TS)
		b = appendPatString(b, e.Sensor)
		b = appendPatString(b, e.Metric)
	}
	return b
}

func appendPatString(b []byte, s string) []byte {
	b = appendU64(b, uint64(len(s)))
	return append(b, s...)
}

// patDecoder reads strings, sharing equal ones.
type patDecoder struct {
	decoder
	intern map[string]string
}

func (d *patDecoder) str() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	raw := d.b[:n]
	d.b = d.b[n:]
	if s, ok := d.intern[string(raw)]; ok {
		return s
	}
	s := string(raw)
	d.intern[s] = s
	return s
}

// events reads a slice of events with capacity cp.
func (d *patDecoder) events(cp int) []patEvent {
	n := d.count(32)
	if d.err != nil || n == 0 {
		return nil
	}
	evs := make([]patEvent, n, max(n, cp))
	for i := range evs {
		evs[i] = patEvent{Value: d.f64(), TS: d.i64(), Sensor: d.str(), Metric: d.str()}
	}
	return evs
}

func (s *patternState) AppendState(b []byte) []byte {
	b = append(b, 1)
	b = appendLifecycle(b, &s.Lifecycle)
	b = appendI64(b, s.resolveAt)
	b = appendF64(b, s.lastValue)
	b = appendU64(b, s.dropped)
	b = appendU64(b, s.expired)
	b = appendU64(b, s.evalErrs)
	b = appendPatEvents(b, s.fired)
	b = appendU64(b, uint64(len(s.parts)))
	for i := range s.parts {
		b = appendPatEvents(b, s.parts[i].evs)
	}
	return b
}

func (s *patternState) RestoreState(b []byte) error {
	d := patDecoder{decoder: decoder{b: b}, intern: map[string]string{}}
	n := len(s.d.steps)
	d.version(1)
	var r patternState
	r.d = s.d
	d.lifecycle(&r.Lifecycle)
	r.resolveAt = d.i64()
	r.lastValue = d.f64()
	r.dropped = d.u64()
	r.expired = d.u64()
	r.evalErrs = d.u64()
	r.fired = d.events(0)
	if len(r.fired) != 0 && len(r.fired) != n {
		d.err = errState
	}
	np := d.count(8)
	if d.err == nil && np > 0 {
		r.parts = make([]patPartial, 0, np)
	}
	complete := n
	if s.d.nfb == nil {
		complete = n - 1
	}
	for i := 0; i < np && d.err == nil; i++ {
		evs := d.events(n)
		if len(evs) == 0 || len(evs) > complete || (i > 0 && evs[0].TS < r.parts[i-1].evs[0].TS) {
			d.err = errState
			break
		}
		r.parts = append(r.parts, patPartial{evs: evs})
	}
	if err := d.done(); err != nil {
		return err
	}
	if over := len(r.parts) - s.d.maxPart; over > 0 { // max_partial was lowered
		r.parts = r.parts[over:]
		r.dropped += uint64(over)
	}
	*s = r
	return nil
}
