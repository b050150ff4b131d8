package pipeline

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/edged/edged/internal/sketch"
)

// AggKind is one aggregate function.
type AggKind uint8

// The aggregates of SEMANTICS section 4.
const (
	AggCount AggKind = iota
	AggSum
	AggMean
	AggMin
	AggMax
	AggFirst
	AggLast
	AggStddev
	AggRange
	AggQuantile
)

// AggSpec is one configured aggregate: its output field name, its kind and,
// for percentiles, the quantile in (0,1).
type AggSpec struct {
	Name string
	Kind AggKind
	Q    float64
}

// ParseAgg reads an aggregate name as written in the config: count, sum,
// mean, min, max, first, last, stddev, range, or pNN such as p50, p95, p99.9.
func ParseAgg(name string) (AggSpec, error) {
	kinds := map[string]AggKind{
		"count": AggCount, "sum": AggSum, "mean": AggMean, "min": AggMin,
		"max": AggMax, "first": AggFirst, "last": AggLast, "stddev": AggStddev,
		"range": AggRange,
	}
	if k, ok := kinds[name]; ok {
		return AggSpec{Name: name, Kind: k}, nil
	}
	if strings.HasPrefix(name, "p") && len(name) > 1 {
		v, err := strconv.ParseFloat(name[1:], 64)
		if err == nil && v > 0 && v < 100 && name[1] != '+' && name[1] != '-' {
			return AggSpec{Name: name, Kind: AggQuantile, Q: v / 100}, nil
		}
	}
	return AggSpec{}, fmt.Errorf("unknown aggregate %q: use count, sum, mean, min, max, first, last, stddev, range or pNN (e.g. p95, p99.9)", name)
}

// aggNeeds says which optional parts of aggState an aggregate list needs.
type aggNeeds uint8

const (
	needFirstLast aggNeeds = 1 << iota
	needMoments
	needSketch
)

func needsOf(specs []AggSpec) aggNeeds {
	var n aggNeeds
	for _, s := range specs {
		switch s.Kind {
		case AggFirst, AggLast:
			n |= needFirstLast
		case AggStddev:
			n |= needMoments
		case AggQuantile:
			n |= needSketch
		}
	}
	return n
}

// aggState is the running state of all aggregates of one pane, window or
// session. Count, sum, min and max are always kept inline (they are cheap,
// and min and max clamp percentiles); first/last, moments and the sketch
// live in an extension that exists only when some aggregate needs them, so
// that the common pane is 32 bytes and merging many panes stays in cache.
type aggState struct {
	count int64
	sum   float64
	min   float64
	max   float64
	x     *aggExt
}

// aggExt holds the optional parts of an aggState.
type aggExt struct {
	firstTS int64
	lastTS  int64
	first   float64
	last    float64
	mean    float64 // Welford running mean, for stddev
	m2      float64 // Welford sum of squared deviations
	sk      *sketch.Sketch
}

// add folds one reading into a. A tie in event time keeps the earlier
// arrival as first and the later arrival as last.
func (a *aggState) add(v float64, ts int64, n aggNeeds, pool *aggPool) {
	if a.count == 0 {
		a.min, a.max = v, v
	} else {
		if v < a.min {
			a.min = v
		}
		if v > a.max {
			a.max = v
		}
	}
	a.count++
	a.sum += v
	if n == 0 {
		return
	}
	x := a.x
	if x == nil {
		x = pool.getExt()
		a.x = x
	}
	if n&needFirstLast != 0 {
		if a.count == 1 || ts < x.firstTS {
			x.firstTS, x.first = ts, v
		}
		if a.count == 1 || ts >= x.lastTS {
			x.lastTS, x.last = ts, v
		}
	}
	if n&needMoments != 0 {
		d := v - x.mean
		x.mean += d / float64(a.count)
		x.m2 += d * (v - x.mean)
	}
	if n&needSketch != 0 {
		if x.sk == nil {
			x.sk = pool.getSketch()
		}
		x.sk.Add(v)
	}
}

// merge folds b into a. b must hold readings later in event time than a's
// when first/last ties matter (panes and sessions are merged in time order).
func (a *aggState) merge(b *aggState, n aggNeeds, pool *aggPool) {
	if b.count == 0 {
		return
	}
	if a.count == 0 {
		a.min, a.max = b.min, b.max
	} else {
		if b.min < a.min {
			a.min = b.min
		}
		if b.max > a.max {
			a.max = b.max
		}
	}
	na := a.count
	a.count += b.count
	a.sum += b.sum
	if n == 0 || b.x == nil {
		return
	}
	x, y := a.x, b.x
	if x == nil {
		x = pool.getExt()
		a.x = x
	}
	if n&needFirstLast != 0 {
		if na == 0 || y.firstTS < x.firstTS {
			x.firstTS, x.first = y.firstTS, y.first
		}
		if na == 0 || y.lastTS >= x.lastTS {
			x.lastTS, x.last = y.lastTS, y.last
		}
	}
	if n&needMoments != 0 {
		if na == 0 {
			x.mean, x.m2 = y.mean, y.m2
		} else {
			// Chan et al.'s parallel update.
			fa, fb := float64(na), float64(b.count)
			d := y.mean - x.mean
			t := fa + fb
			x.mean += d * fb / t
			x.m2 += y.m2 + d*d*fa*fb/t
		}
	}
	if n&needSketch != 0 && y.sk != nil {
		if x.sk == nil {
			x.sk = pool.getSketch()
		}
		x.sk.Merge(y.sk)
	}
}

// reset empties a, returning its extension to the pool.
func (a *aggState) reset(pool *aggPool) {
	if a.x != nil {
		pool.putExt(a.x)
	}
	*a = aggState{}
}

// value computes one aggregate from a. a must not be empty.
func (a *aggState) value(s *AggSpec) float64 {
	switch s.Kind {
	case AggCount:
		return float64(a.count)
	case AggSum:
		return a.sum
	case AggMean:
		return a.sum / float64(a.count)
	case AggMin:
		return a.min
	case AggMax:
		return a.max
	case AggRange:
		return a.max - a.min
	}
	x := a.x
	if x == nil {
		return math.NaN()
	}
	switch s.Kind {
	case AggFirst:
		return x.first
	case AggLast:
		return x.last
	case AggStddev:
		v := x.m2 / float64(a.count)
		if v < 0 {
			v = 0
		}
		return math.Sqrt(v)
	case AggQuantile:
		if x.sk == nil {
			return math.NaN()
		}
		return x.sk.QuantileClamped(s.Q, a.min, a.max)
	}
	return math.NaN()
}

// aggPool recycles extensions and sketches so that steady-state windows do
// not allocate. It belongs to one operator and is not safe for concurrent
// use.
type aggPool struct {
	exts     []*aggExt
	sketches []*sketch.Sketch
}

// maxPooled bounds each free list. Tumbling windows free all their keys'
// state at once at a window end and need it again right after, so the
// bound is generous; beyond it memory goes back to the garbage collector.
const maxPooled = 1 << 16

func (p *aggPool) getExt() *aggExt {
	if n := len(p.exts); n > 0 {
		x := p.exts[n-1]
		p.exts = p.exts[:n-1]
		return x
	}
	return new(aggExt)
}

func (p *aggPool) putExt(x *aggExt) {
	if x.sk != nil {
		p.putSketch(x.sk)
	}
	if len(p.exts) < maxPooled {
		*x = aggExt{}
		p.exts = append(p.exts, x)
	}
}

func (p *aggPool) getSketch() *sketch.Sketch {
	if n := len(p.sketches); n > 0 {
		s := p.sketches[n-1]
		p.sketches = p.sketches[:n-1]
		return s
	}
	return new(sketch.Sketch)
}

func (p *aggPool) putSketch(s *sketch.Sketch) {
	if len(p.sketches) < maxPooled {
		s.Reset()
		p.sketches = append(p.sketches, s)
	}
}
