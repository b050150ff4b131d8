package main

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edged/edged/ingest"
	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/internal/mqttconn"
	"github.com/edged/edged/internal/simulate"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/record"
	"github.com/edged/edged/sensors"
)

// cmdSimulate is edged simulate: synthetic sensors with injected anomalies
// (simulateSensors), or `edged simulate sine`, the event-time demo.
func cmdSimulate(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "sine" {
		return cmdSimulateSine(args, stdout, stderr)
	}
	return simulateSensors(args, stdout, stderr)
}

// cmdSimulateSine is edged simulate sine: sine samples delayed at random,
// in arrival order, or --compare.
func cmdSimulateSine(args []string, stdout, stderr io.Writer) error {
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
		buf = record.AppendString(buf, a.Sensor)
		buf = append(buf, `,"ts":`...)
		buf = strconv.AppendInt(buf, a.TS, 10)
		buf = append(buf, `,"value":`...)
		buf = record.AppendFloat(buf, a.Value)
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
				if r.Kind == record.KindWindow {
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

const simulateSynopsis = `edged simulate [flags]
       edged simulate sine [flags]    the event-time demo (edged simulate sine -h)

Synthetic sensors NAME-0 .. NAME-(N-1) (NAME is --sensor) with anomalies
injected at known times, deterministic for a seed. Each reading is one JSON
object, {"sensor":"sim-0","ts":1700000000000,"value":21.503} ("metric" too
with --metric), one per line, or one MQTT message.

  --to stdout (default)   JSON lines, as fast as possible (not paced: event
                          time starts at --start) unless --realtime
  --to mqtt://[user:pass@]host:port/TOPIC-TEMPLATE
                          one message per reading to the topic, where
                          {sensor} and {metric} are replaced (default
                          sensors/{sensor}); mqtts://, ws:// and wss:// too
  --to pty                a new pseudo-terminal (its path is printed on
                          stderr: use it as a serial source's port)
  --to PATH               lines written to a file, fifo or a terminal such
                          as /dev/pts/3 (one end of a socat pty pair)

Outputs other than stdout are paced in real time by default (--realtime=false
to turn it off): event time is the clock when each reading is due. Without
--duration or --count, paced output runs until interrupted and unpaced
output stops after 10m of event time.

Anomalies (--anomalies spike,drift,shift,flatline,dropout): one every
--anomaly-every on a random sensor; --labels FILE writes each one as a JSON
line {"sensor","kind","start","end","readings",...} (event times of the
first and last readings affected, inclusive).`

// simulateSensors is the general form of edged simulate.
func simulateSensors(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	var c simulate.Config
	fs.IntVar(&c.Sensors, "sensors", 10, "number of sensors")
	fs.StringVar(&c.Prefix, "sensor", "sim", "sensor name `prefix`: sensors are PREFIX-0 .. PREFIX-(N-1)")
	fs.StringVar(&c.Metric, "metric", "", "metric `name` of every reading (default none)")
	fs.Float64Var(&c.Rate, "rate", 1, "readings per second per sensor (`Hz`, at most 1000)")
	signalName := fs.String("signal", "sine", "clean signal: sine, walk (random walk around --offset) or noise")
	fs.DurationVar(&c.Period, "period", time.Minute, "sine period; time constant of the walk")
	fs.Float64Var(&c.Amplitude, "amplitude", 10, "sine amplitude; stddev of walk and noise")
	fs.Float64Var(&c.Offset, "offset", 20, "the signal's mean")
	fs.Float64Var(&c.Noise, "noise", 0.1, "stddev of the gaussian noise added to every reading")
	anomalies := fs.String("anomalies", "", "comma-separated `kinds` to inject: spike, drift, shift, flatline, dropout (default none)")
	fs.DurationVar(&c.AnomalyEvery, "anomaly-every", 5*time.Minute, "one anomaly every `D` of event time, on a random sensor")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed (same seed, same readings and labels)")
	start := fs.String("start", "1700000000000", "event time of the first reading of unpaced output: Unix `ms` or RFC 3339")
	duration := fs.Duration("duration", 0, "stop after `D` of event time")
	count := fs.Int64("count", 0, "stop after `N` readings")
	realtime := fs.Bool("realtime", false, "pace the output in real time, event time from the clock (default: only for outputs other than stdout)")
	to := fs.String("to", "stdout", "where readings go: stdout, mqtt://host:port/topic/{sensor}, pty, or a `path`")
	qos := fs.Int("qos", 1, "MQTT quality of service (0, 1 or 2)")
	clientID := fs.String("client-id", "", "MQTT client `id` (default edged-simulate-PID)")
	labels := fs.String("labels", "", "write the injected anomalies' labels as JSON lines to `file`")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, flagUsage(fs, simulateSynopsis))
		return err
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q: edged simulate takes flags only (see edged simulate -h), or `sine`", pos[0])
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.Signal = simulate.Signal(*signalName)
	if c.Anomalies, err = simulate.ParseKinds(strings.Split(*anomalies, ",")); err != nil {
		return usagef("--anomalies: %v", err)
	}
	// Zero means "default" to the generator; here the defaults are the
	// flags', so a zero given is a mistake.
	if c.Sensors <= 0 || c.Rate <= 0 || c.Period <= 0 {
		return usagef("need --sensors > 0, --rate > 0 and --period > 0")
	}
	if err := c.Validate(); err != nil {
		return usagef("%v", flagNames(err))
	}
	if *duration < 0 || *count < 0 {
		return usagef("--duration and --count must not be negative")
	}
	if set["duration"] && set["count"] {
		return usagef("give --duration or --count, not both")
	}
	if *qos < 0 || *qos > 2 {
		return usagef("--qos %d: use 0, 1 or 2", *qos)
	}
	dest, err := parseSimDest(*to)
	if err != nil {
		return usageError{err}
	}
	paced := dest.kind != "stdout"
	if set["realtime"] {
		paced = *realtime
	}
	if paced && set["start"] {
		return usagef("--start is for unpaced output: paced output takes event time from the clock")
	}
	if c.Start, err = parseStart(*start); err != nil {
		return usagef("--start: %v", err)
	}
	var steps int64 // 0: no limit
	switch {
	case set["duration"]:
		steps = int64(math.Ceil(duration.Seconds()*c.Rate - 1e-9))
	case set["count"]:
	case !paced:
		steps = int64(math.Ceil(10 * 60 * c.Rate))
	}
	if set["duration"] && steps == 0 || set["count"] && *count == 0 {
		return nil
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var lw *labelWriter
	if *labels != "" {
		f, err := os.Create(*labels)
		if err != nil {
			return err
		}
		lw = &labelWriter{f: f, w: bufio.NewWriter(f)}
		defer lw.close()
	}
	sink, err := dest.open(ctx, stdout, stderr, *qos, *clientID)
	if err != nil {
		return err
	}
	runErr := simulateRun(ctx, c, sink, lw, steps, *count, paced)
	if err := sink.close(); runErr == nil {
		runErr = err
	}
	if lw != nil {
		if err := lw.close(); runErr == nil {
			runErr = err
		}
	}
	return runErr
}

// flagNames words a config error with the flags' names.
func flagNames(err error) string {
	s := err.Error()
	for _, f := range []string{"sensors", "rate", "signal", "period", "noise", "amplitude", "offset"} {
		if strings.HasPrefix(s, f+" ") {
			return "--" + s
		}
	}
	if strings.HasPrefix(s, "anomaly_every ") {
		return "--anomaly-every " + strings.TrimPrefix(s, "anomaly_every ")
	}
	return s
}

func parseStart(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%q: use Unix milliseconds or RFC 3339, e.g. 2024-01-01T00:00:00Z", s)
	}
	return t.UnixMilli(), nil
}

// simulateRun generates steps (0: no limit) or count readings (0: no
// limit), paced or not, into sink, and the labels into lw.
func simulateRun(ctx context.Context, c simulate.Config, sink simSink, lw *labelWriter, steps, count int64, paced bool) error {
	g, err := simulate.New(c)
	if err != nil {
		return usageError{err}
	}
	if paced {
		g.Rebase(time.Now().UnixMilli())
	}
	var rs []simulate.Reading
	var ls []simulate.Label
	var written int64
	writeLabels := func() error {
		ls = g.Labels(ls[:0])
		return lw.write(ls)
	}
	for steps == 0 || g.Step() < steps {
		if ctx.Err() != nil {
			break
		}
		if paced {
			now := time.Now().UnixMilli()
			due := g.NextTS()
			if d := now - due; d > 5000 || d < -5000 {
				g.Rebase(now) // the clock jumped, or the output held us up
				due = now
			}
			if due > now && !ingest.Sleep(ctx, time.Duration(due-now)*time.Millisecond) {
				break
			}
		}
		rs = g.Next(rs[:0])
		n := len(rs)
		if count > 0 && written+int64(n) > count {
			n = int(count - written)
		}
		if err := sink.write(ctx, rs[:n]); err != nil {
			return err
		}
		written += int64(n)
		if n < len(rs) {
			g.Truncate(rs, n)
		}
		if paced {
			if err := sink.flush(); err != nil {
				return err
			}
		}
		if err := writeLabels(); err != nil {
			return err
		}
		if count > 0 && written >= count {
			break
		}
	}
	if err := sink.flush(); err != nil {
		return err
	}
	if l, ok := g.Active(); ok {
		return lw.write([]simulate.Label{l})
	}
	return nil
}

// labelWriter writes labels as JSON lines; a nil one drops them.
type labelWriter struct {
	f *os.File
	w *bufio.Writer
}

func (lw *labelWriter) write(ls []simulate.Label) error {
	if lw == nil || len(ls) == 0 {
		return nil
	}
	for _, l := range ls {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		lw.w.Write(append(b, '\n'))
	}
	return lw.w.Flush()
}

func (lw *labelWriter) close() error {
	if lw.f == nil {
		return nil
	}
	err := lw.w.Flush()
	if cerr := lw.f.Close(); err == nil {
		err = cerr
	}
	lw.f = nil
	return err
}

// simDest is where edged simulate writes.
type simDest struct {
	kind     string // stdout | mqtt | pty | path
	path     string
	broker   string // scheme://host:port
	user     string
	pass     string
	template string
}

func parseSimDest(s string) (simDest, error) {
	switch s {
	case "", "-", "stdout":
		return simDest{kind: "stdout"}, nil
	case "pty":
		return simDest{kind: "pty"}, nil
	}
	scheme, _, ok := strings.Cut(s, "://")
	if !ok {
		return simDest{kind: "path", path: s}, nil
	}
	const hint = "use e.g. mqtt://127.0.0.1:1883/sensors/{sensor}"
	u, err := url.Parse(s)
	if err != nil {
		return simDest{}, fmt.Errorf("--to %q: %v: %s", s, err, hint)
	}
	d := simDest{kind: "mqtt"}
	switch strings.ToLower(scheme) {
	case "mqtt", "tcp":
		d.broker = "tcp://"
	case "mqtts", "ssl", "tls":
		d.broker = "ssl://"
	case "ws", "wss":
		d.broker = strings.ToLower(scheme) + "://"
	default:
		return simDest{}, fmt.Errorf("--to %q: unknown scheme %q: %s (or mqtts://, ws://, wss://)", s, scheme, hint)
	}
	if u.Hostname() == "" {
		return simDest{}, fmt.Errorf("--to %q: no host: %s", s, hint)
	}
	host := u.Host
	if u.Port() == "" {
		port := map[string]string{"tcp://": "1883", "ssl://": "8883", "ws://": "80", "wss://": "443"}[d.broker]
		host = net.JoinHostPort(u.Hostname(), port)
	}
	d.broker += host
	if d.broker[:2] == "ws" {
		d.broker += "/mqtt"
	}
	if u.User != nil {
		d.user = u.User.Username()
		d.pass, _ = u.User.Password()
	}
	d.template = strings.TrimPrefix(u.Path, "/")
	if d.template == "" {
		d.template = "sensors/{sensor}"
	}
	if strings.ContainsAny(d.template, "+#") {
		return simDest{}, fmt.Errorf("--to %q: a topic to publish to cannot hold + or #: %s", s, hint)
	}
	return d, nil
}

// simSink receives the readings of each step.
type simSink interface {
	write(ctx context.Context, rs []simulate.Reading) error
	flush() error
	close() error
}

func (d simDest) open(ctx context.Context, stdout, stderr io.Writer, qos int, clientID string) (simSink, error) {
	switch d.kind {
	case "stdout":
		return &lineSink{w: bufio.NewWriterSize(stdout, 64<<10)}, nil
	case "pty":
		m, sl, path, err := simulate.OpenPTY()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "edged simulate: writing to the pseudo-terminal %s (a serial source's port); Ctrl-C to stop\n", path)
		return &lineSink{w: bufio.NewWriterSize(m, 64<<10), closers: []io.Closer{m, sl}}, nil
	case "path":
		f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		return &lineSink{w: bufio.NewWriterSize(f, 64<<10), closers: []io.Closer{f}}, nil
	}
	if clientID == "" {
		clientID = "edged-simulate-" + strconv.Itoa(os.Getpid())
	}
	o := mqttconn.PublisherOptions{ClientID: clientID, Username: d.user, Password: d.pass, Keepalive: 30 * time.Second,
		Timeout: 10 * time.Second, AckBuffer: 1 << 16}
	dial := func(ctx context.Context) (*mqttconn.Publisher, error) {
		return mqttconn.DialPublisher(ctx, d.broker, o)
	}
	p, err := dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot connect to the MQTT broker %s: %v (is one running there? edged run with [broker] enabled = true is one)", d.broker, err)
	}
	return &mqttSink{p: p, dial: dial, template: d.template, qos: byte(qos), stderr: stderr}, nil
}

func appendReading(b []byte, r *simulate.Reading) []byte {
	b = append(b, `{"sensor":`...)
	b = record.AppendString(b, r.Sensor)
	if r.Metric != "" {
		b = append(b, `,"metric":`...)
		b = record.AppendString(b, r.Metric)
	}
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, r.TS, 10)
	b = append(b, `,"value":`...)
	b = record.AppendFloat(b, r.Value)
	return append(b, '}')
}

// lineSink writes JSON lines.
type lineSink struct {
	w       *bufio.Writer
	buf     []byte
	closers []io.Closer
}

func (s *lineSink) write(_ context.Context, rs []simulate.Reading) error {
	for i := range rs {
		s.buf = append(appendReading(s.buf[:0], &rs[i]), '\n')
		if _, err := s.w.Write(s.buf); err != nil {
			return err
		}
	}
	return nil
}

func (s *lineSink) flush() error { return s.w.Flush() }

func (s *lineSink) close() error {
	err := s.w.Flush()
	for _, c := range s.closers {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	s.closers = nil
	return err
}

// mqttSink publishes one message per reading and waits for the broker's
// acknowledgements of each step's messages. A lost connection is made
// again (every second, while the step is retried).
type mqttSink struct {
	p        *mqttconn.Publisher
	dial     func(context.Context) (*mqttconn.Publisher, error)
	template string
	qos      byte
	buf      []byte
	stderr   io.Writer
}

func (s *mqttSink) write(ctx context.Context, rs []simulate.Reading) error {
	for {
		if s.p == nil {
			p, err := s.dial(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				fmt.Fprintf(s.stderr, "edged simulate: reconnecting: %v\n", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
				continue
			}
			s.p = p
		}
		err := s.send(ctx, rs)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		fmt.Fprintf(s.stderr, "edged simulate: connection lost: %v\n", err)
		s.p.Close()
		s.p = nil
	}
}

// send publishes rs and waits for their acknowledgements (QoS 1 and 2).
func (s *mqttSink) send(ctx context.Context, rs []simulate.Reading) error {
	want := 0
	for i := range rs {
		r := &rs[i]
		topic := strings.ReplaceAll(s.template, "{sensor}", r.Sensor)
		topic = strings.ReplaceAll(topic, "{metric}", r.Metric)
		s.buf = appendReading(s.buf[:0], r)
		if _, err := s.p.Publish(topic, s.qos, false, s.buf); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if s.qos > 0 {
			want++
		}
	}
	for ; want > 0; want-- {
		select {
		case _, ok := <-s.p.Acks():
			if !ok {
				return fmt.Errorf("publish: %w", s.p.Err())
			}
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

func (s *mqttSink) flush() error { return nil }

func (s *mqttSink) close() error {
	if s.p != nil {
		s.p.Close()
	}
	return nil
}

// simulateConfig is the generator's config for a simulate source: the
// sensors start at the clock, Start is set by the source.
func simulateConfig(s *config.Source) (simulate.Config, error) {
	kinds, err := simulate.ParseKinds(s.Anomalies)
	if err != nil {
		return simulate.Config{}, err
	}
	c := simulate.Config{
		Prefix: s.Sensor, Metric: s.Metric, Sensors: s.Sensors, Rate: s.Rate, Signal: simulate.Signal(s.Signal),
		Period: s.Period.D(), Amplitude: s.Amplitude, Offset: s.Offset, Noise: s.Noise,
		Anomalies: kinds, AnomalyEvery: s.AnomalyEvery.D(), Seed: uint64(s.Seed),
	}
	return c, c.Validate()
}
