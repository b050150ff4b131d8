package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/edged/edged/store"
)

func cmdInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	path := fs.String("c", "", "config `file`")
	fs.StringVar(path, "config", "", "config `file` (same as -c)")
	outbox := fs.Bool("outbox", false, "print the outbox records, one JSON object per line, in seq order")
	quarantine := fs.Bool("quarantine", false, "print the quarantined payloads with source, time and reason")
	check := fs.Bool("check", false, "run bbolt's consistency check over the whole file")
	asJSON := fs.Bool("json", false, "print the figures as JSON")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, flagUsage(fs, "edged inspect -c FILE [--outbox | --quarantine | --check] [--json]"))
		return err
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.Device.DataDir, &store.Options{DeviceID: cfg.Device.ID, LockTimeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		return err
	}
	defer st.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	switch {
	case *outbox:
		return st.ReadOutbox(0, 0, func(r *store.Record) error {
			w.Write(r.Body)
			return w.WriteByte('\n')
		})
	case *quarantine:
		return st.ReadQuarantine(func(id uint64, q *store.QEntry) error {
			b, _ := json.Marshal(map[string]any{
				"id": id, "time": time.UnixMilli(q.Time).UTC().Format(time.RFC3339Nano), "source": q.Source,
				"reason": q.Reason, "payload": string(q.Payload),
			})
			w.Write(b)
			return w.WriteByte('\n')
		})
	case *check:
		if err := st.Check(); err != nil {
			return err
		}
		fmt.Fprintf(w, "%s: consistent\n", st.Path())
		return nil
	}
	s, err := st.Stats()
	if err != nil {
		return err
	}
	if *asJSON {
		b, _ := json.MarshalIndent(s, "", "  ")
		w.Write(b)
		return w.WriteByte('\n')
	}
	printStats(w, s)
	return nil
}

func printStats(w io.Writer, s *store.Stats) {
	ts := func(ms int64) string {
		if ms == 0 {
			return "-"
		}
		t := time.UnixMilli(ms)
		return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), time.Since(t).Round(time.Second))
	}
	mib := func(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "data file   %s, %s, format %d, device %q, last stop %s\n", s.Path, mib(s.FileBytes), s.FormatVersion, s.DeviceID,
		map[bool]string{true: "clean", false: "not clean (running, or crashed)"}[s.CleanShutdown])
	fmt.Fprintf(w, "            %d free pages of %d bytes (%s) reused before the file grows; the file never shrinks by itself\n", s.FreePages, s.PageSize, mib(s.FreeBytes))
	fmt.Fprintf(w, "log         offsets %d..%d (%d entries), %s in %d chunks; oldest %s, newest %s\n", s.LogFirst, s.LogEnd, s.LogEnd-s.LogFirst, mib(s.LogBytes), s.LogChunks, ts(s.LogOldestIngest), ts(s.LogNewestIngest))
	fmt.Fprintf(w, "            retention: max %s, %s; %d entries dropped so far\n", mib(s.LogMaxBytes), time.Duration(s.LogRetainMs)*time.Millisecond, s.LogDropped)
	if c := s.Checkpoint; c != nil {
		fmt.Fprintf(w, "checkpoint  at log offset %d, %s, next seq %d, %d keys of state in %d windows, last one wrote %d bytes\n", c.Offset, ts(c.Time), c.NextSeq, c.Keys, s.StateOps, c.Bytes)
	} else {
		fmt.Fprintf(w, "checkpoint  none yet\n")
	}
	fmt.Fprintf(w, "outbox      %d records (seq %d..%d), %s of max %s, oldest %s; %d dropped by the quota so far\n", s.OutboxCount, s.OutboxFirstSeq, s.OutboxLastSeq, mib(s.OutboxBytes), mib(s.OutboxMaxBytes), ts(s.OutboxOldest), s.OutboxDropped)
	for name, c := range s.Cursors {
		fmt.Fprintf(w, "            output %q delivered up to seq %d\n", name, c)
	}
	fmt.Fprintf(w, "quarantine  %d payloads kept, %d in all, %d dropped (edged inspect --quarantine lists them)\n", s.QuarantineCount, s.QuarantineTotal, s.QuarantineDropped)
	for name, p := range s.Positions {
		fmt.Fprintf(w, "source      %q position %s\n", name, p)
	}
}
