package main

import (
	"bufio"
	"container/heap"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
)

func cmdSimulate(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "sine" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stdout, "Usage: edged simulate sine [flags]   (edged simulate sine -h for flags)\n")
			return flag.ErrHelp
		}
		return usagef("simulate: name a generator: sine")
	}
	fs := flag.NewFlagSet("simulate sine", flag.ContinueOnError)
	seconds := fs.Int("seconds", 10, "event time to generate, in `seconds`")
	rate := fs.Int("rate", 100, "samples per second")
	freq := fs.Float64("freq", 1, "sine frequency in Hz")
	maxDelay := fs.Duration("max-delay", 2*time.Second, "each reading arrives late by a random delay in [0, `d`]")
	seed := fs.Uint64("seed", 1, "random seed (same seed, same output)")
	start := fs.Int64("start", 1_700_000_000_000, "event time of the first sample, Unix `ms`")
	sensor := fs.String("sensor", "sine", "sensor name (with --sensors N > 1: NAME-0 ... NAME-(N-1), phases spread evenly)")
	nsensors := fs.Int("sensors", 1, "number of sensors")
	compare := fs.Bool("compare", false, "instead of readings, print 1 s window sums by event time and by arrival time")
	pos, err := parseFlags(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, flagUsage(fs, "edged simulate sine [flags]"))
		return err
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if *seconds <= 0 || *rate <= 0 || *rate > 1000 || *maxDelay < 0 || *nsensors <= 0 {
		return usagef("need --seconds > 0, 0 < --rate <= 1000, --sensors > 0 and --max-delay >= 0")
	}
	g := &sineGen{sensor: *sensor, sensors: *nsensors, start: *start, seconds: *seconds, rate: *rate,
		freq: *freq, maxDelay: maxDelay.Milliseconds(), rng: rand.New(rand.NewPCG(*seed, *seed^0x5eed))}
	if *compare {
		return sineCompare(stdout, g)
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	var buf []byte
	var werr error
	g.run(func(a *arrival) {
		if werr != nil {
			return
		}
		buf = append(buf[:0], `{"sensor":`...)
		buf = pipeline.AppendString(buf, a.Sensor)
		buf = append(buf, `,"ts":`...)
		buf = strconv.AppendInt(buf, a.TS, 10)
		buf = append(buf, `,"value":`...)
		buf = pipeline.AppendFloat(buf, a.Value)
		buf = append(buf, "}\n"...)
		_, werr = w.Write(buf)
	})
	if werr != nil {
		return werr
	}
	return w.Flush()
}

// arrival is a reading with the processing time it reaches the gateway.
type arrival struct {
	sensors.Reading
	at  int64 // arrival (processing) time, Unix ms
	seq int64 // generation order, for ties
}

// sineGen samples sine waves and delays each sample randomly, producing
// the samples in arrival order (ties in event-time order) while holding only
// the samples of the last max-delay in memory.
type sineGen struct {
	sensor   string
	sensors  int
	start    int64
	seconds  int
	rate     int
	freq     float64
	maxDelay int64
	rng      *rand.Rand
}

func (g *sineGen) run(emit func(*arrival)) {
	names := []string{g.sensor}
	if g.sensors > 1 {
		names = make([]string, g.sensors)
		for i := range names {
			names[i] = fmt.Sprintf("%s-%d", g.sensor, i)
		}
	}
	var pending arrivalHeap
	var seq int64
	n := g.seconds * g.rate
	for i := 0; i < n; i++ {
		ts := g.start + int64(i)*1000/int64(g.rate)
		for s, name := range names {
			phase := 2 * math.Pi * float64(s) / float64(len(names))
			v := math.Sin(2*math.Pi*g.freq*float64(i)/float64(g.rate) + phase)
			var d int64
			if g.maxDelay > 0 {
				d = g.rng.Int64N(g.maxDelay + 1)
			}
			seq++
			heap.Push(&pending, arrival{sensors.Reading{Sensor: name, Value: v, TS: ts, Source: "sine"}, ts + d, seq})
		}
		// Everything due before the next sample time can go out now.
		next := g.start + int64(i+1)*1000/int64(g.rate)
		for pending.Len() > 0 && pending[0].at < next {
			a := heap.Pop(&pending).(arrival)
			emit(&a)
		}
	}
	for pending.Len() > 0 {
		a := heap.Pop(&pending).(arrival)
		emit(&a)
	}
}

// arrivalHeap orders samples by arrival time, then by generation order.
type arrivalHeap []arrival

func (h arrivalHeap) Len() int { return len(h) }
func (h arrivalHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h arrivalHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *arrivalHeap) Push(x any)   { *h = append(*h, x.(arrival)) }
func (h *arrivalHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sineCompare runs the same readings through 1 s tumbling windows twice:
// by event time (watermarks with the delay as bound) and by arrival time
// (what a system without event time computes), and prints both sums.
func sineCompare(w io.Writer, g *sineGen) error {
	var rs []arrival
	g.run(func(a *arrival) { rs = append(rs, *a) })
	start, rate, freq, maxDelay := g.start, g.rate, g.freq, g.maxDelay
	type result struct{ count, sum float64 }
	run := func(useArrival bool, ooo int64) (map[int64]result, error) {
		out := map[int64]result{}
		spec := pipeline.WindowSpec{Name: "sum_1s", Type: pipeline.Tumbling, Size: time.Second,
			Aggs: []pipeline.AggSpec{{Name: "count", Kind: pipeline.AggCount}, {Name: "sum", Kind: pipeline.AggSum}}}
		e, err := pipeline.New(pipeline.Config{DefaultOutOfOrderness: time.Duration(ooo) * time.Millisecond, Windows: []pipeline.WindowSpec{spec}},
			pipeline.SinkFunc(func(r *pipeline.Record) {
				if r.Kind == pipeline.KindWindow {
					out[r.Start] = result{r.Values[0], r.Values[1]}
				}
			}), 0)
		if err != nil {
			return nil, err
		}
		for _, a := range rs {
			r := a.Reading
			if useArrival {
				r.TS = a.at
			}
			if err := e.Process(&r, a.at); err != nil {
				return nil, err
			}
		}
		e.Flush()
		return out, nil
	}
	byEvent, err := run(false, maxDelay)
	if err != nil {
		return err
	}
	byArrival, err := run(true, 0)
	if err != nil {
		return err
	}
	starts := make([]int64, 0, len(byArrival))
	for s := range byArrival {
		starts = append(starts, s)
	}
	for s := range byEvent {
		if _, ok := byArrival[s]; !ok {
			starts = append(starts, s)
		}
	}
	slices.Sort(starts)
	fmt.Fprintf(w, "%g Hz sine sampled at %d Hz, each sample delayed by up to %d ms, summed in 1 s tumbling windows\n", freq, rate, maxDelay)
	fmt.Fprintf(w, "%8s  %22s  %22s\n", "window", "by event time", "by arrival time")
	fmt.Fprintf(w, "%8s  %6s %15s  %6s %15s\n", "(s)", "count", "sum", "count", "sum")
	for _, s := range starts {
		ev, ar := byEvent[s], byArrival[s]
		fmt.Fprintf(w, "%8d  %6.0f %15s  %6.0f %15s\n", (s-start)/1000, ev.count, fmtSum(ev.sum, ev.count), ar.count, fmtSum(ar.sum, ar.count))
	}
	return nil
}

func fmtSum(v, n float64) string {
	if n == 0 {
		return "-"
	}
	if math.Abs(v) < 1e-9 {
		return fmt.Sprintf("%.3f (%.0e)", 0.0, v)
	}
	return fmt.Sprintf("%.3f", v)
}
