// Package simulate generates synthetic sensor readings, with anomalies
// injected at known times, for the simulate source of edged run and for the
// edged simulate command.
//
// # Determinism
//
// The output is a function of the Config alone: readings are generated
// step by step from an event-time index k (step k of every sensor has event
// time Start + round(k*1000/Rate) ms), never from the wall clock, so the
// same seed gives the same readings and the same labels. Each sensor draws
// its random numbers from its own stream and each anomaly from another, so
// the clean signal of a sensor does not depend on the anomalies configured
// (the same seed with and without anomalies gives the same readings outside
// the labelled intervals) nor on the number of sensors after it.
//
// # Signals
//
// Sensor i of N is named <Prefix>-<i>; at step k (t = k/Rate seconds):
//
//	sine   Offset + Amplitude*sin(2*pi*t/Period + 2*pi*i/N)
//	walk   Offset + x_k, x an AR(1) random walk pulled back to 0 with the
//	       time constant Period and a stationary stddev of Amplitude
//	noise  Offset + Amplitude*N(0,1)
//
// plus N(0, Noise) on every reading. Values are rounded to 3 decimals, as a
// real sensor's resolution would.
//
// # Anomalies
//
// Anomaly j (j = 0, 1, ...) starts at event time (j+1+u/10)*AnomalyEvery
// after Start (u uniform in [0,1)) on a random sensor, of a kind drawn
// uniformly from Anomalies. Its duration is capped at 0.8*AnomalyEvery, so
// at most one anomaly is active at a time and anomalies never overlap.
// "scale" below is Amplitude (or Noise when Amplitude is 0, or 1).
//
//	spike     one reading at Offset ± (5..10)*scale
//	drift     a linear trend added to the readings, growing to ± (2..4)*scale
//	          over 2 to 5 minutes, then gone (the sensor is recalibrated)
//	shift     a level shift of ± (2..4)*scale for 1 to 3 minutes
//	flatline  the sensor repeats its last reading before the anomaly for
//	          1 to 3 minutes
//	dropout   the sensor sends nothing for 30 s to 2 minutes
//
// Each anomaly is described by a Label (the ground truth for measuring
// detectors): sensor, kind, and the event times of the first and last
// readings it affected (for a dropout, of the first and last readings
// missing), both inclusive.
package simulate

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Kind is a kind of injected anomaly.
type Kind uint8

// The kinds of anomaly.
const (
	Spike Kind = iota + 1
	Drift
	Shift
	Flatline
	Dropout
)

var kindNames = map[Kind]string{Spike: "spike", Drift: "drift", Shift: "shift", Flatline: "flatline", Dropout: "dropout"}

// KindNames lists the anomaly kinds by name, in a fixed order.
var KindNames = []string{"spike", "drift", "shift", "flatline", "dropout"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKinds parses anomaly kind names ("spike", "drift", "shift",
// "flatline", "dropout"); "" and "none" are skipped. A kind named twice is
// drawn twice as often.
func ParseKinds(names []string) ([]Kind, error) {
	var out []Kind
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" || n == "none" {
			continue
		}
		found := false
		for k, s := range kindNames {
			if s == n {
				out = append(out, k)
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown anomaly %q: use %s", n, strings.Join(KindNames, ", "))
		}
	}
	return out, nil
}

// Signal is the shape of the clean signal.
type Signal string

// The signals.
const (
	Sine  Signal = "sine"
	Walk  Signal = "walk"
	Noise Signal = "noise"
)

// Config describes the simulated sensors. The zero values of Prefix,
// Sensors, Rate, Signal and Period take the defaults noted; the others are
// used as they are.
type Config struct {
	Prefix    string        // sensor names are <Prefix>-<i>; default "sim"
	Metric    string        // metric of every reading; default ""
	Sensors   int           // default 10
	Rate      float64       // readings per second per sensor, at most 1000; default 1
	Signal    Signal        // default sine
	Period    time.Duration // sine period, walk time constant; default 1m
	Amplitude float64
	Offset    float64
	Noise     float64 // stddev of the noise added to every reading

	Anomalies    []Kind
	AnomalyEvery time.Duration // needed when Anomalies is not empty

	Seed uint64
	// Start is the event time of step 0, Unix ms.
	Start int64
}

func (c *Config) defaults() {
	if c.Prefix == "" {
		c.Prefix = "sim"
	}
	if c.Sensors == 0 {
		c.Sensors = 10
	}
	if c.Rate == 0 {
		c.Rate = 1
	}
	if c.Signal == "" {
		c.Signal = Sine
	}
	if c.Period == 0 {
		c.Period = time.Minute
	}
}

// Validate reports the first problem with c, after defaults.
func (c Config) Validate() error {
	c.defaults()
	switch {
	case c.Sensors < 1:
		return fmt.Errorf("sensors %d: need at least 1", c.Sensors)
	case !(c.Rate > 0 && c.Rate <= 1000):
		return fmt.Errorf("rate %v: readings per second per sensor, more than 0 and at most 1000", c.Rate)
	case c.Signal != Sine && c.Signal != Walk && c.Signal != Noise:
		return fmt.Errorf("signal %q: use sine, walk or noise", c.Signal)
	case c.Period < time.Millisecond:
		return fmt.Errorf("period %v: need at least 1ms", c.Period)
	case math.IsNaN(c.Amplitude) || math.IsInf(c.Amplitude, 0) || math.IsNaN(c.Offset) || math.IsInf(c.Offset, 0):
		return errors.New("amplitude and offset must be finite numbers")
	case !(c.Noise >= 0) || math.IsInf(c.Noise, 0):
		return fmt.Errorf("noise %v: a standard deviation, 0 or more", c.Noise)
	}
	if len(c.Anomalies) > 0 {
		step := time.Duration(float64(time.Second) / c.Rate)
		if c.AnomalyEvery < 2*step {
			return fmt.Errorf("anomaly_every %v: need at least two readings' interval (%v at rate %v)", c.AnomalyEvery, 2*step, c.Rate)
		}
		for _, k := range c.Anomalies {
			if _, ok := kindNames[k]; !ok {
				return fmt.Errorf("unknown anomaly kind %d", k)
			}
		}
	}
	return nil
}

// Reading is one generated reading.
type Reading struct {
	Sensor string
	Metric string
	TS     int64 // event time, Unix ms
	Value  float64
}

// Label is the ground truth of one injected anomaly.
type Label struct {
	Sensor string `json:"sensor"`
	Metric string `json:"metric,omitempty"`
	Kind   string `json:"kind"`
	// Start and End are the event times (Unix ms, both inclusive) of the
	// first and last readings the anomaly affected; for a dropout, of the
	// first and last readings missing.
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	// Readings is the number of readings affected (missing, for a dropout).
	Readings int `json:"readings"`
	// Delta is what the anomaly added: to the spike's reading (relative to
	// the clean value), at the end of a drift, during a shift.
	Delta float64 `json:"delta,omitempty"`
	// Value is the value a flatline repeats, or the spike's reading.
	Value float64 `json:"value,omitempty"`
	// Truncated is set when generation stopped before the anomaly ended:
	// End is then the last reading generated.
	Truncated bool `json:"truncated,omitempty"`
}

// anomaly is anomaly j in step terms.
type anomaly struct {
	j      int64
	sensor int
	kind   Kind
	first  int64   // first step affected
	last   int64   // last step affected
	size   float64 // signed magnitude: spike offset from Offset, drift end, shift
	label  Label
	stuck  float64
}

// Generator produces the readings of a Config step by step. It is not safe
// for concurrent use.
type Generator struct {
	c      Config
	names  []string
	index  map[string]int
	rng    []*rand.Rand // per sensor
	walk   []float64    // per sensor: walk state
	last   []float64    // per sensor: last clean-or-anomalous value emitted
	phase  []float64
	phi    float64 // walk: pull-back factor per step
	sigma  float64 // walk: step stddev
	scale  float64 // anomaly scale
	k      int64   // next step
	start  int64   // event time of step 0 (moved by Rebase)
	lastTS int64   // event time of the last step generated
	prevTS int64   // event time of the step before it

	cur, next *anomaly
	done      []Label
}

// New returns a generator for c, at step 0.
func New(c Config) (*Generator, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.defaults()
	c.Anomalies = append([]Kind(nil), c.Anomalies...)
	g := &Generator{c: c, start: c.Start, names: make([]string, c.Sensors), index: make(map[string]int, c.Sensors), rng: make([]*rand.Rand, c.Sensors),
		walk: make([]float64, c.Sensors), last: make([]float64, c.Sensors), phase: make([]float64, c.Sensors)}
	dt := 1 / c.Rate
	g.phi = math.Exp(-dt / c.Period.Seconds())
	g.sigma = c.Amplitude * math.Sqrt(1-g.phi*g.phi)
	for i := range g.names {
		g.names[i] = c.Prefix + "-" + strconv.Itoa(i)
		g.index[g.names[i]] = i
		g.rng[i] = rand.New(rand.NewPCG(c.Seed, 0x5e45_0000_0000_0000|uint64(i)))
		g.phase[i] = 2 * math.Pi * float64(i) / float64(c.Sensors)
		if c.Signal == Walk {
			g.walk[i] = c.Amplitude * g.rng[i].NormFloat64() // start in the stationary distribution
		}
	}
	g.scale = c.Amplitude
	if g.scale == 0 {
		g.scale = c.Noise
	}
	if g.scale == 0 {
		g.scale = 1
	}
	if len(c.Anomalies) > 0 {
		g.next = g.anomaly(0)
	}
	return g, nil
}

// Config returns the generator's config with defaults filled in.
func (g *Generator) Config() Config { return g.c }

// Names returns the sensor names, in order.
func (g *Generator) Names() []string { return g.names }

// Step returns the index of the next step.
func (g *Generator) Step() int64 { return g.k }

// NextTS returns the event time of the next step.
func (g *Generator) NextTS() int64 { return g.start + g.offset(g.k) }

func (g *Generator) offset(k int64) int64 {
	return int64(math.Round(float64(k) * 1000 / g.c.Rate))
}

// Rebase moves the event time of the next step to ts and of every later
// step with it (the source re-anchors this way when the gateway's clock
// jumps). Values do not change: they depend on the step index only.
func (g *Generator) Rebase(ts int64) { g.start = ts - g.offset(g.k) }

// anomaly draws anomaly j from its own random stream.
func (g *Generator) anomaly(j int64) *anomaly {
	r := rand.New(rand.NewPCG(g.c.Seed^0xa0a0_5eed_0000_0000, uint64(j)))
	per := g.c.AnomalyEvery.Seconds() * g.c.Rate // steps between anomalies, >= 2
	a := &anomaly{j: j}
	a.first = int64(math.Floor((float64(j+1) + r.Float64()/10) * per))
	a.sensor = r.IntN(g.c.Sensors)
	a.kind = g.c.Anomalies[r.IntN(len(g.c.Anomalies))]
	sign := 1.0
	if r.IntN(2) == 0 {
		sign = -1
	}
	uniform := func(lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }
	var secs float64
	switch a.kind {
	case Spike:
		a.size = sign * uniform(5, 10) * g.scale
	case Drift:
		a.size = sign * uniform(2, 4) * g.scale
		secs = uniform(120, 300)
	case Shift:
		a.size = sign * uniform(2, 4) * g.scale
		secs = uniform(60, 180)
	case Flatline:
		secs = uniform(60, 180)
	case Dropout:
		secs = uniform(30, 120)
	}
	n := int64(math.Round(secs * g.c.Rate))
	n = min(n, int64(0.8*per))
	a.last = a.first + max(n, 1) - 1
	a.label = Label{Sensor: g.names[a.sensor], Metric: g.c.Metric, Kind: a.kind.String()}
	return a
}

// Next generates the next step and appends its readings, in sensor order,
// to dst. A sensor in a dropout has no reading.
func (g *Generator) Next(dst []Reading) []Reading {
	k := g.k
	ts := g.NextTS()
	if g.next != nil && g.next.first == k {
		g.cur, g.next = g.next, g.anomaly(g.next.j+1)
	}
	t := float64(k) / g.c.Rate
	w := 2 * math.Pi * t / g.c.Period.Seconds()
	for i, name := range g.names {
		r := g.rng[i]
		var v float64
		switch g.c.Signal {
		case Sine:
			v = g.c.Offset + g.c.Amplitude*math.Sin(w+g.phase[i])
		case Walk:
			if k > 0 {
				g.walk[i] = g.phi*g.walk[i] + g.sigma*r.NormFloat64()
			}
			v = g.c.Offset + g.walk[i]
		case Noise:
			v = g.c.Offset + g.c.Amplitude*r.NormFloat64()
		}
		if g.c.Noise > 0 {
			v += g.c.Noise * r.NormFloat64()
		}
		v = round3(v)
		if a := g.cur; a != nil && a.sensor == i {
			var skip bool
			v, skip = g.apply(a, k, ts, v)
			if skip {
				continue
			}
		}
		g.last[i] = v
		dst = append(dst, Reading{Sensor: name, Metric: g.c.Metric, TS: ts, Value: v})
	}
	if a := g.cur; a != nil && a.last == k {
		g.done = append(g.done, a.label)
		g.cur = nil
	}
	g.prevTS, g.lastTS = g.lastTS, ts
	g.k++
	return dst
}

// apply returns the value of a reading at step k of the anomaly's sensor,
// or skip for a dropout.
func (g *Generator) apply(a *anomaly, k, ts int64, clean float64) (v float64, skip bool) {
	if k == a.first {
		a.label.Start = ts
		a.stuck = g.last[a.sensor]
		if k == 0 {
			a.stuck = clean
		}
	}
	a.label.End = ts
	a.label.Readings++
	switch a.kind {
	case Spike:
		v = round3(g.c.Offset + a.size)
		a.label.Delta = round3(v - clean)
		a.label.Value = v
	case Drift:
		v = round3(clean + a.size*float64(k-a.first+1)/float64(a.last-a.first+1))
		a.label.Delta = round3(a.size)
	case Shift:
		v = round3(clean + a.size)
		a.label.Delta = round3(a.size)
	case Flatline:
		v = a.stuck
		a.label.Value = v
	case Dropout:
		return 0, true
	}
	return v, false
}

// Labels appends the labels of the anomalies that ended since the last
// call to dst.
func (g *Generator) Labels(dst []Label) []Label {
	dst = append(dst, g.done...)
	g.done = g.done[:0]
	return dst
}

// Active returns the label of the anomaly in progress, if any, as far as
// it was generated (Truncated set): for a run that stops in its middle.
func (g *Generator) Active() (Label, bool) {
	if g.cur == nil || g.cur.label.Readings == 0 {
		return Label{}, false
	}
	l := g.cur.label
	l.Truncated = true
	return l, true
}

// Truncate records that only the first n readings of the last step
// (step, as Next appended them) were delivered, the end of a run that
// stops at a count of readings: labels that counted a reading not delivered
// (or, for a dropout, a sensor after the cut) lose it. Call it last.
func (g *Generator) Truncate(step []Reading, n int) {
	if n >= len(step) || n < 0 {
		return
	}
	cut := g.index[step[n].Sensor] // sensors from cut on were not delivered
	fix := func(l *Label) bool {
		if l.End != g.lastTS || g.index[l.Sensor] < cut {
			return true
		}
		l.Readings--
		l.Truncated = true
		if l.Readings == 0 {
			return false
		}
		l.End = g.prevTS
		return true
	}
	kept := g.done[:0]
	for _, l := range g.done {
		if fix(&l) {
			kept = append(kept, l)
		}
	}
	g.done = kept
	if g.cur != nil && g.cur.label.Readings > 0 && !fix(&g.cur.label) {
		g.cur = nil
	}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
