package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
	"github.com/edged/edged/store"
)

const replaySynopsis = "edged replay -c FILE [--from T] [--to T] [--by event|ingest] [--config-override OTHER.toml]"

const replayHelp = `
Re-runs the pipeline over a range of the local ingest log, with a fresh
engine, and prints the window and late records on stdout as JSON lines,
exactly like edged batch (no device, seq or id). The end of the range is
the end of input: every open window fires. Live state is not touched: the
data file is opened read-only, the outbox and the checkpoints stay as they
are, so replay works on the data dir of a stopped daemon; while edged runs
it holds the file, and replay needs a copy of the data dir.

T is RFC 3339 (2024-05-01T12:00:00Z), Unix milliseconds (1714564800000),
or a negative duration relative to now (-1h, -30m). The range is
[from, to): --from defaults to the start of the log, --to to its end.
Entries are selected by event time (--by event, the default) or by the
time the gateway received them (--by ingest). Idle markers, the daemon's
idleness decisions written into the log, are applied where they stand in
the log: all of them with --by event (they carry no event time), those in
the range with --by ingest.

--config-override OTHER.toml runs another pipeline over the same log: OTHER
is a whole config whose windows, pipeline settings and sources are used,
while device and data_dir still come from -c.

Exit status: 0 success, 1 runtime failure (data file missing, locked,
corrupt), 2 bad flags or config.
`

func cmdReplay(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	path := fs.String("c", "", "config `file` (its device and data_dir name the log to replay)")
	fs.StringVar(path, "config", "", "config `file` (same as -c)")
	fromS := fs.String("from", "", "`T`, the start of the range (inclusive): RFC 3339, Unix ms, or a negative duration from now like -1h; default: the start of the log")
	toS := fs.String("to", "", "`T`, the end of the range (exclusive); default: the end of the log")
	by := fs.String("by", "event", "select entries by `time`: event (the reading's time) or ingest (when the gateway received it)")
	override := fs.String("config-override", "", "run the windows and pipeline settings of `OTHER.toml` instead (device and data_dir stay those of -c)")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, flagUsage(fs, replaySynopsis)+replayHelp)
		return err
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if *by != "event" && *by != "ingest" {
		return usagef("--by %q: want event or ingest", *by)
	}
	now := time.Now()
	rng := replayRange{byIngest: *by == "ingest"}
	if *fromS != "" {
		if rng.from, err = parseReplayTime(*fromS, now); err != nil {
			return usagef("--from: %v", err)
		}
		rng.hasFrom = true
	}
	if *toS != "" {
		if rng.to, err = parseReplayTime(*toS, now); err != nil {
			return usagef("--to: %v", err)
		}
		rng.hasTo = true
	}
	if rng.hasFrom && rng.hasTo && rng.from >= rng.to {
		return usagef("empty range: --from %s is not before --to %s", fmtMs(rng.from), fmtMs(rng.to))
	}

	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	pcfg := cfg // the pipeline to run
	if *override != "" {
		if pcfg, err = loadConfig(*override); err != nil {
			return err
		}
		pcfg.Device = cfg.Device
	}
	specs, err := windowSpecs(pcfg)
	if err != nil {
		return usageError{err}
	}
	var srcs []pipeline.SourceSpec
	for i := range pcfg.Sources {
		s := &pcfg.Sources[i]
		srcs = append(srcs, pipeline.SourceSpec{Name: s.Name, MaxOutOfOrderness: sourceOOO(pcfg, s).D()})
	}

	out := bufio.NewWriterSize(stdout, 64<<10)
	var buf []byte
	var writeErr error
	sink := pipeline.SinkFunc(func(r *pipeline.Record) {
		buf = append(r.AppendJSON(buf[:0]), '\n')
		if _, err := out.Write(buf); err != nil && writeErr == nil {
			writeErr = err
		}
	})
	dets, err := detectorSpecs(pcfg)
	if err != nil {
		return err
	}
	eng, err := pipeline.New(pipeline.Config{
		Sources:               srcs,
		DefaultOutOfOrderness: pcfg.Pipeline.MaxOutOfOrderness.D(),
		Windows:               specs,
		Detectors:             dets,
	}, sink, now.UnixMilli())
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", pcfg.File, err)}
	}

	sum, err := replayLog(cfg, rng, eng, stderr)
	if err != nil {
		return err
	}
	eng.Flush()
	if err := out.Flush(); err != nil && writeErr == nil {
		writeErr = err
	}
	if writeErr != nil {
		return fmt.Errorf("write records: %w", writeErr)
	}
	st := eng.Stats()
	offsets := "no offsets"
	if sum.inRange > 0 {
		offsets = fmt.Sprintf("offsets %d..%d", sum.first, sum.last)
	}
	idle := ""
	if sum.idle > 0 {
		idle = fmt.Sprintf(", %d idle markers applied", sum.idle)
	}
	fmt.Fprintf(stderr, "edged replay: %d entries in range of %d in the log, %s, %d window records, %d late%s\n",
		sum.inRange, sum.total, offsets, st.Fired, st.Late, idle)
	return nil
}

// replayRange selects log entries by event or ingest time: [from, to).
type replayRange struct {
	byIngest       bool
	hasFrom, hasTo bool
	from, to       int64
}

func (r replayRange) contains(t int64) bool {
	return (!r.hasFrom || t >= r.from) && (!r.hasTo || t < r.to)
}

type replaySummary struct {
	total, inRange int64  // readings and idle markers in the log; readings in the range
	first, last    uint64 // offsets of the first and last reading in the range
	idle           int64  // idle markers applied
}

// replayLog feeds the selected entries of cfg's log to eng, in offset order,
// the way runner does in the daemon.
func replayLog(cfg *config.Config, rng replayRange, eng *pipeline.Engine, stderr io.Writer) (sum replaySummary, err error) {
	dataFile := filepath.Join(cfg.Device.DataDir, store.FileName)
	inEngine := false
	defer store.ReadGuard(dataFile, &err, &inEngine)()
	if _, err := os.Stat(dataFile); err != nil {
		return sum, fmt.Errorf("no data file at %s: edged has not run with this data_dir (%w)", dataFile, err)
	}
	if err := store.CheckExtent(dataFile); err != nil {
		return sum, err
	}
	st, err := store.Open(cfg.Device.DataDir, &store.Options{DeviceID: cfg.Device.ID, ReadOnly: true, LockTimeout: time.Second})
	if errors.Is(err, store.ErrLocked) {
		return sum, fmt.Errorf("%s: %w: edged is running on this data_dir. replay reads the data file of a stopped daemon: "+
			"stop edged first, or copy the data dir (cp -a %s /tmp/x; a copy taken while edged writes may be inconsistent, "+
			"edged inspect --check on it tells) and replay with a config whose data_dir is the copy", dataFile, store.ErrLocked, cfg.Device.DataDir)
	}
	if err != nil {
		return sum, err
	}
	defer st.Close()
	if first := st.LogFirst(); first > 0 {
		fmt.Fprintf(stderr, "edged replay: note: the log starts at offset %d; older entries were dropped by retention\n", first)
	}
	want := st.LogFirst()
	var rd sensors.Reading
	_, err = st.ReadLog(want, 0, func(off uint64, e *store.Entry) error {
		if off != want {
			return fmt.Errorf("log gap: expected offset %d, got %d", want, off)
		}
		want++
		sum.total++
		switch e.Kind {
		case store.EntryReading:
			t := e.TS
			if rng.byIngest {
				t = e.Ingest
			}
			if !rng.contains(t) {
				return nil
			}
			if sum.inRange == 0 {
				sum.first = off
			}
			sum.last = off
			sum.inRange++
			rd = sensors.Reading{Source: e.Source, Sensor: e.Sensor, Metric: e.Metric, Value: e.Value, TS: e.TS}
			inEngine = true
			_ = eng.Process(&rd, e.Ingest) // the daemon skips such readings too
			inEngine = false
		case store.EntryIdle:
			if rng.byIngest && !rng.contains(e.Ingest) {
				return nil
			}
			sum.idle++
			inEngine = true
			eng.MarkIdle(e.Source, e.Ingest)
			inEngine = false
		case store.EntryTick:
			// A processing-time tick (deadman with processing_time): as
			// the daemon applies it.
			if rng.byIngest && !rng.contains(e.Ingest) {
				return nil
			}
			inEngine = true
			eng.ProcessingTick(e.Ingest)
			inEngine = false
		}
		return nil
	})
	return sum, err
}

// parseReplayTime reads T: RFC 3339, Unix ms (digits only), or a negative
// Go duration relative to now.
func parseReplayTime(s string, now time.Time) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty time")
	}
	if isDigits(s) {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %v", s, err)
		}
		return ms, nil
	}
	if s[0] == '-' {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q: not a duration (want e.g. -1h or -30m): %v", s, err)
		}
		return now.Add(d).UnixMilli(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		hint := ""
		if _, derr := time.ParseDuration(s); derr == nil {
			hint = fmt.Sprintf(" (a time relative to now is negative: -%s)", s)
		}
		return 0, fmt.Errorf("%q: want RFC 3339 (2024-05-01T12:00:00Z), Unix ms or a negative duration like -1h%s", s, hint)
	}
	return t.UnixMilli(), nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func fmtMs(ms int64) string {
	return fmt.Sprintf("%s (%d)", time.UnixMilli(ms).UTC().Format(time.RFC3339Nano), ms)
}
