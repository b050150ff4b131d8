package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/edged/edged/internal/config"
	"github.com/edged/edged/pipeline"
	"github.com/edged/edged/sensors"
)

// maxLine bounds one input line; longer lines are reported and skipped.
const maxLine = 64 << 10

// batchInput is one bounded input of edged batch.
type batchInput struct {
	path   string // "-" is stdin
	source string // the engine's source name
	format string
	opts   sensors.Options
}

func cmdBatch(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("batch", flag.ContinueOnError)
	path := fs.String("c", "", "config `file`")
	fs.StringVar(path, "config", "", "config `file` (same as -c)")
	format := fs.String("format", "", "input `format` (json, csv, influx, ...); default: the source's, or by file extension")
	source := fs.String("source", "", "take format, field mapping and name from the configured source `NAME`")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, flagUsage(fs, "edged batch -c FILE [--format F] [--source NAME] [FILE|-]..."))
		return err
	}
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if *format != "" && !sensors.Known(*format) {
		return usagef("--format %q: unknown format; known: %s", *format, strings.Join(sensors.Names(), ", "))
	}
	inputs, err := batchInputs(cfg, pos, *format, *source)
	if err != nil {
		return err
	}
	specs, err := windowSpecs(cfg)
	if err != nil {
		return usageError{err}
	}
	dets, err := detectorSpecs(cfg)
	if err != nil {
		return err
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
	var srcs []pipeline.SourceSpec
	seen := map[string]bool{}
	for _, in := range inputs {
		if !seen[in.source] {
			seen[in.source] = true
			srcs = append(srcs, pipeline.SourceSpec{Name: in.source, MaxOutOfOrderness: sourceOOO(cfg, cfg.SourceByName(in.source)).D()})
		}
	}
	eng, err := pipeline.New(pipeline.Config{
		Sources:               srcs,
		DefaultOutOfOrderness: cfg.Pipeline.MaxOutOfOrderness.D(),
		Windows:               specs,
		Detectors:             dets,
	}, sink, time.Now().UnixMilli())
	if err != nil {
		return usageError{err}
	}

	rep := newBadReport(stderr)
	var lines, readings int64
	for _, in := range inputs {
		n, r, err := batchRead(in, stdin, eng, rep)
		lines += n
		readings += r
		if err != nil {
			return err
		}
		if writeErr != nil {
			return fmt.Errorf("write records: %w", writeErr)
		}
	}
	eng.Flush()
	if err := out.Flush(); err != nil && writeErr == nil {
		writeErr = err
	}
	if writeErr != nil {
		return fmt.Errorf("write records: %w", writeErr)
	}
	st := eng.Stats()
	fmt.Fprintf(stderr, "edged batch: %d lines, %d readings, %d bad lines%s, %d late, %d window records%s\n",
		lines, readings, rep.total, rep.summary(), st.Late, st.Fired, alertSummary(st))
	return nil
}

// batchInputs decides what to read and how to decode it.
func batchInputs(cfg *config.Config, paths []string, format, source string) ([]batchInput, error) {
	var base *config.Source
	switch {
	case source != "":
		if base = cfg.SourceByName(source); base == nil {
			return nil, usagef("--source %q: no such [[source]] in %s", source, cfg.File)
		}
	case len(cfg.Sources) == 1:
		base = &cfg.Sources[0]
	}
	if len(paths) == 0 {
		// No files named: read the config's file and stdin sources, or stdin.
		var ins []batchInput
		for i := range cfg.Sources {
			s := &cfg.Sources[i]
			if (s.Type != "file" && s.Type != "stdin") || (source != "" && s.Name != source) {
				continue
			}
			in := batchInput{path: s.Path, source: s.Name, format: s.Format, opts: decoderOptions(s)}
			if s.Type == "stdin" {
				in.path = "-"
			}
			if format != "" {
				in.format = format
			}
			ins = append(ins, in)
		}
		if len(ins) > 0 {
			return ins, nil
		}
		paths = []string{"-"}
	}
	var ins []batchInput
	for _, p := range paths {
		in := batchInput{path: p, source: "batch", format: format}
		if base != nil {
			in.source = base.Name
			in.opts = decoderOptions(base)
			if in.format == "" {
				in.format = base.Format
			}
		}
		if in.format == "" {
			in.format = formatByExt(p)
		}
		ins = append(ins, in)
	}
	return ins, nil
}

// formatByExt guesses a format from a file name, json when in doubt.
func formatByExt(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv", ".tsv":
		return "csv"
	case ".lp", ".influx", ".line":
		return "influx"
	}
	return "json"
}

// batchRead decodes one input line by line into the engine.
func batchRead(in batchInput, stdin io.Reader, eng *pipeline.Engine, rep *badReport) (lines, readings int64, err error) {
	dec, err := sensors.New(in.format, in.opts)
	if err != nil {
		return 0, 0, usageError{fmt.Errorf("source %q: %w", in.source, err)}
	}
	name := in.path
	var r io.Reader = stdin
	if in.path == "-" {
		name = "stdin"
	} else {
		f, err := os.Open(in.path)
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, maxLine)
	var rs []sensors.Reading
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// An over-long line: report it once and drop it up to its newline.
			lines++
			rep.bad(name, lines, errLineTooLong, line)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return lines, readings, nil
			}
			if err != nil {
				return lines, readings, fmt.Errorf("read %s: %w", name, err)
			}
			continue
		}
		if len(line) > 0 {
			lines++
			payload := line
			if payload[len(payload)-1] == '\n' {
				payload = payload[:len(payload)-1]
			}
			if n := len(payload); n > 0 && payload[n-1] == '\r' {
				payload = payload[:n-1]
			}
			var derr error
			rs, derr = dec.Decode(rs[:0], payload)
			if derr != nil {
				rep.bad(name, lines, derr, payload)
			}
			var now int64
			for i := range rs {
				rs[i].Source = in.source
				if rs[i].TS == sensors.NoTS {
					if now == 0 {
						now = time.Now().UnixMilli()
					}
					rs[i].TS = now
				}
				if perr := eng.Process(&rs[i], now); perr != nil {
					rep.bad(name, lines, perr, payload)
					continue
				}
				readings++
			}
		}
		if err == io.EOF {
			return lines, readings, nil
		}
		if err != nil {
			return lines, readings, fmt.Errorf("read %s: %w", name, err)
		}
	}
}

var errLineTooLong = fmt.Errorf("line too long: longer than %d bytes", maxLine)

// badReport prints bad input lines to stderr without flooding it: the first
// ten, then at most one a second, and counts them all by reason.
type badReport struct {
	w       io.Writer
	total   int64
	reasons map[string]int64
	printed int
	last    time.Time
	quiet   int64
}

func newBadReport(w io.Writer) *badReport { return &badReport{w: w, reasons: map[string]int64{}} }

func (b *badReport) bad(name string, line int64, err error, payload []byte) {
	b.total++
	reason := err.Error()
	if i := strings.IndexByte(reason, ':'); i > 0 {
		reason = reason[:i]
	}
	b.reasons[reason]++
	now := time.Now()
	if b.printed >= 10 && now.Sub(b.last) < time.Second {
		b.quiet++
		return
	}
	b.printed++
	b.last = now
	ex := string(payload)
	if len(ex) > 80 {
		ex = ex[:80] + "..."
	}
	suffix := ""
	if b.quiet > 0 {
		suffix = fmt.Sprintf(" (%d more bad lines not shown)", b.quiet)
		b.quiet = 0
	}
	fmt.Fprintf(b.w, "%s:%d: %v: %q%s\n", name, line, err, ex, suffix)
}

func (b *badReport) summary() string {
	if b.total == 0 {
		return ""
	}
	keys := make([]string, 0, len(b.reasons))
	for k := range b.reasons {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, b.reasons[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// alertSummary adds the alerts to a summary line when detectors ran.
func alertSummary(st pipeline.Stats) string {
	if st.Alerts == 0 && st.DetectorLate == 0 {
		return ""
	}
	return fmt.Sprintf(", %d alerts (%d readings late for the detectors)", st.Alerts, st.DetectorLate)
}
