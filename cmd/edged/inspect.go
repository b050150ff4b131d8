package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const inspectHelp = `
Without a flag, prints the figures of the data file named by the config's
data_dir: log, checkpoint, outbox, quarantine. It works on the data dir of a
stopped daemon (the file is opened read-only).

A data file that bbolt cannot read (a torn write, a bad disk, a copy cut
short) makes every command fail with "data file is corrupt" and the way
out: --check tells what is damaged; to start fresh, stop edged and move the
file aside (mv DATA_DIR/edged.db DATA_DIR/edged.db.broken): edged then
creates a new one. The log entries still readable in the broken file are
printed by --salvage, which needs no config:

  edged inspect --salvage DATA_DIR/edged.db.broken > salvaged.jsonl

One JSON object per line, in offset order:
  {"offset":12,"source":"lab","sensor":"s1","metric":"","value":21.5,"ts":1700000000000,"ingest":1700000000050}
and for the daemon's idle markers:
  {"offset":13,"idle":"lab","ingest":1700000030050}
The readings keep the field names of edged batch's json format, so the
salvaged history can be reprocessed (idle lines count as bad lines there;
jq -c 'select(.sensor)' drops them):

  edged batch -c edged.toml --format json salvaged.jsonl

--salvage walks the log with bbolt (read-only) and goes on after a damaged
page from the next one it can reach. When bbolt cannot open the file at all
(both meta pages damaged) or cannot reach the log, it scans the file page by
page for log chunks instead. stderr says how many chunks were readable and
which offsets were not. Exit status 0 when it could read the log, even
partly; 1 when nothing could be salvaged.
`

func cmdInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	path := fs.String("c", "", "config `file`")
	fs.StringVar(path, "config", "", "config `file` (same as -c)")
	outbox := fs.Bool("outbox", false, "print the outbox records, one JSON object per line, in seq order")
	quarantine := fs.Bool("quarantine", false, "print the quarantined payloads with source, time and reason")
	check := fs.Bool("check", false, "run bbolt's consistency check over the whole file")
	asJSON := fs.Bool("json", false, "print the figures as JSON")
	salvagePath := fs.String("salvage", "", "print the log entries still readable in a broken data `file` (moved aside), as JSON lines; no -c needed")
	logEntries := fs.Bool("log", false, "print the ingest log's entries, one JSON object per line, in offset order (the format of --salvage)")
	logFrom := fs.Uint64("from", 0, "with --log: the first log `offset` to print (default: the oldest kept)")
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, flagUsage(fs, "edged inspect -c FILE [--outbox | --quarantine | --check | --log [--from OFFSET]] [--json]\n       edged inspect --salvage DATA_FILE")+inspectHelp)
		return err
	}
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	if *salvagePath != "" {
		if *outbox || *quarantine || *check || *asJSON || *path != "" {
			return usagef("--salvage takes only the data file to read")
		}
		return salvage(*salvagePath, stdout, stderr)
	}
	fromSet := false
	fs.Visit(func(f *flag.Flag) { fromSet = fromSet || f.Name == "from" })
	if fromSet && !*logEntries {
		return usagef("--from goes with --log")
	}
	if *logEntries && (*outbox || *quarantine || *check || *asJSON) {
		return usagef("--log prints the log entries; use it without --outbox, --quarantine, --check and --json")
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if *logEntries {
		return inspectLog(cfg.Device.DataDir, cfg.Device.ID, stdout, *logFrom)
	}
	return inspectStore(cfg.Device.DataDir, cfg.Device.ID, stdout, *outbox, *quarantine, *check, *asJSON)
}

func inspectStore(dir, device string, stdout io.Writer, outbox, quarantine, check, asJSON bool) (err error) {
	dataFile := filepath.Join(dir, store.FileName)
	defer store.ReadGuard(dataFile, &err, nil)()
	// A read-only Open says when there is no data file and checks its
	// extent first.
	st, err := store.Open(dir, &store.Options{DeviceID: device, LockTimeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		return err
	}
	defer st.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	switch {
	case outbox:
		return st.ReadOutbox(0, 0, func(r *store.Record) error {
			w.Write(r.Body)
			return w.WriteByte('\n')
		})
	case quarantine:
		return st.ReadQuarantine(func(id uint64, q *store.QEntry) error {
			b, _ := json.Marshal(map[string]any{
				"id": id, "time": time.UnixMilli(q.Time).UTC().Format(time.RFC3339Nano), "source": q.Source,
				"reason": q.Reason, "payload": string(q.Payload),
			})
			w.Write(b)
			return w.WriteByte('\n')
		})
	case check:
		// bbolt checks in a goroutine of its own, where a fault on a
		// damaged page would crash edged: read every page here first,
		// under readGuard.
		if err := st.TouchAll(); err != nil {
			return &store.CorruptError{Path: st.Path(), Err: err}
		}
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
	if asJSON {
		b, _ := json.MarshalIndent(s, "", "  ")
		w.Write(b)
		return w.WriteByte('\n')
	}
	printStats(w, s)
	return nil
}

// inspectLog prints the log entries from offset from (or the oldest kept)
// as JSON lines, like --salvage.
func inspectLog(dir, device string, stdout io.Writer, from uint64) (err error) {
	dataFile := filepath.Join(dir, store.FileName)
	defer store.ReadGuard(dataFile, &err, nil)()
	// A read-only Open says when there is no data file and checks its
	// extent first.
	st, err := store.Open(dir, &store.Options{DeviceID: device, LockTimeout: 2 * time.Second, ReadOnly: true})
	if err != nil {
		return err
	}
	defer st.Close()
	w := bufio.NewWriterSize(stdout, 64<<10)
	var b []byte
	_, err = st.ReadLog(max(from, st.LogFirst()), 0, func(off uint64, e *store.Entry) error {
		b = appendEntryJSON(b[:0], off, e)
		_, err := w.Write(b)
		return err
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
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
	if f := s.Flushed; f != nil {
		fmt.Fprintf(w, "            records committed ahead of the state up to log offset %d (+%d of its records), next seq %d, %s; a restart replays from the state and commits none of them again\n", f.Offset, f.Within, f.NextSeq, ts(f.Time))
	}
	fmt.Fprintf(w, "outbox      %d records (seq %d..%d), %s of max %s, oldest %s; %d dropped by the quota so far\n", s.OutboxCount, s.OutboxFirstSeq, s.OutboxLastSeq, mib(s.OutboxBytes), mib(s.OutboxMaxBytes), ts(s.OutboxOldest), s.OutboxDropped)
	for _, name := range slices.Sorted(maps.Keys(s.Outputs)) {
		o := s.Outputs[name]
		fmt.Fprintf(w, "output      %q delivered up to position %d; %d waiting, oldest %s", name, o.Cursor, o.Backlog, ts(o.OldestWaiting))
		if st := o.StatusReadable; st != nil {
			fmt.Fprintf(w, "; %v records/s, %v sent, %v acked, %v reconnects", st["records_per_s"], st["sent"], st["acked"], st["reconnects"])
			if e, _ := st["last_error"].(string); e != "" {
				at, _ := st["last_error_at"].(float64)
				fmt.Fprintf(w, "; last error %s: %s", ts(int64(at)), e)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "quarantine  %d payloads kept, %d in all, %d dropped (edged inspect --quarantine lists them)\n", s.QuarantineCount, s.QuarantineTotal, s.QuarantineDropped)
	for name, p := range s.Positions {
		fmt.Fprintf(w, "source      %q position %s\n", name, p)
	}
}

// salvageLogBucket is the name of the ingest log's bucket (store/store.go).
var salvageLogBucket = []byte("log")

// guarded runs f and returns what it panicked with, if anything. The
// caller's goroutine must have debug.SetPanicOnFault set.
func guarded(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// salvage prints the log entries still readable in the data file at path,
// in offset order, and reports on stderr what it could not read. It walks
// the log bucket with bbolt, read-only, guarding every step: a damaged page
// makes bbolt panic or fault, which loses that page, not the walk. When
// bbolt cannot open the file or reach (the rest of) the log, it scans the
// file page by page for log chunks instead.
func salvage(path string, stdout, stderr io.Writer) (err error) {
	defer store.ReadGuard(path, &err, nil)()
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return usagef("--salvage %s: a directory; name the data file (%s)", path, filepath.Join(path, store.FileName))
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	sv := &salvager{w: w}
	if f, err := os.Open(path); err == nil {
		if need, ok := store.MetaExtent(f); ok && fi.Size() < need {
			sv.problems = append(sv.problems, fmt.Sprintf("the file is %d bytes but its pages reach %d bytes: it was cut short, what was beyond is lost", fi.Size(), need))
		}
		f.Close()
	}
	complete, err := sv.boltWalk(path)
	if err != nil {
		return err
	}
	scanned := !complete
	if scanned {
		if err := sv.pageScan(path, fi.Size()); err != nil {
			return err
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write entries: %w", err)
	}

	span := ""
	if sv.entries > 0 {
		span = fmt.Sprintf(", offsets %d..%d", sv.first, sv.last)
	}
	fmt.Fprintf(stderr, "edged inspect --salvage: %s: %d chunks readable (%d entries%s), %d chunks unreadable, %d offset ranges lost to damaged pages\n",
		path, sv.chunks, sv.entries, span, sv.badChunks, sv.lostRanges)
	for i, pr := range sv.problems {
		if i == 20 {
			fmt.Fprintf(stderr, "  ... and %d more\n", len(sv.problems)-i)
			break
		}
		fmt.Fprintf(stderr, "  %s\n", pr)
	}
	if scanned && sv.chunks == 0 {
		return fmt.Errorf("%s: nothing could be salvaged: bbolt cannot read it and no log chunk was found in its pages", path)
	}
	return nil
}

// salvager prints the chunks of the log it can read, in offset order, and
// keeps count of what it could not.
type salvager struct {
	w *bufio.Writer

	next       uint64 // the offset the next chunk should start at
	started    bool
	chunks     int   // chunks decoded and printed
	badChunks  int   // chunks found but not decodable
	lostRanges int   // ranges of offsets behind damaged pages
	entries    int64 // entries printed
	first      uint64
	last       uint64
	problems   []string
	ch         store.Chunk
	buf        []byte

	c *bolt.Cursor // the bbolt walk's
}

func (s *salvager) problem(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

// boltWalk prints the chunks bbolt can reach. It returns false when it
// could not walk the log to its end: bbolt cannot open the file, the root
// page is damaged, or no key after a damaged page could be reached.
func (s *salvager) boltWalk(path string) (complete bool, err error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return false, fmt.Errorf("%s is locked by a running edged: salvage a file that was moved aside, or stop edged", path)
	}
	if err != nil {
		s.problem("bbolt cannot open the file at all (%v): both of its meta pages are damaged, or it is not a bbolt file; scanned its pages for log chunks instead", err)
		return false, nil
	}
	defer db.Close()
	tx, err := db.Begin(false)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	defer tx.Rollback()
	var b *bolt.Bucket
	if p := guarded(func() { b = tx.Bucket(salvageLogBucket) }); p != nil {
		s.problem("bbolt cannot read the root page, which lists the buckets (%v); scanned the file's pages for log chunks instead", p)
		return false, nil
	}
	if b == nil {
		s.problem("bbolt finds no log bucket: not an edged data file, or its root page is damaged; scanned the file's pages for log chunks instead")
		return false, nil
	}
	s.c = b.Cursor()
	return s.walk(), nil
}

func (s *salvager) walk() (complete bool) {
	var k, v []byte
	p := guarded(func() { k, v = s.c.First() })
	for {
		if p != nil {
			from := s.next
			var ok bool
			k, v, ok = s.resume(from)
			s.lostRanges++
			switch {
			case !ok:
				s.problem("offsets %d and later: bbolt fails on the pages that lead to them (%v); scanned the file's pages for them instead", from, p)
				return false
			case k == nil:
				s.problem("offsets %d to the end of the log: unreadable, in damaged pages (%v)", from, p)
				return true
			case len(k) != 8:
				s.problem("offsets %d and later: unreadable, in damaged pages (%v)", from, p)
			case !s.started:
				s.problem("offsets before %d: unreadable, in damaged pages (%v); some may have been dropped by retention before", binary.BigEndian.Uint64(k), p)
				s.started, s.next = true, binary.BigEndian.Uint64(k)
			default:
				s.problem("offsets %d..%d: unreadable, in damaged pages (%v)", from, binary.BigEndian.Uint64(k)-1, p)
				s.next = binary.BigEndian.Uint64(k)
			}
		}
		if k == nil {
			return true
		}
		if pk := guarded(func() { s.boltChunk(k, v) }); pk != nil {
			s.badChunks++
			s.problem("chunk at offset %d: unreadable (%v)", s.next, pk)
			s.next++
		}
		p = guarded(func() { k, v = s.c.Next() })
	}
}

// boltChunk prints the chunk stored under key k.
func (s *salvager) boltChunk(k, v []byte) {
	if len(k) != 8 {
		s.badChunks++
		s.problem("a key of %d bytes after offset %d: not a log key, a damaged page", len(k), s.next)
		return
	}
	off := binary.BigEndian.Uint64(k)
	if s.started && off < s.next {
		s.badChunks++
		s.problem("chunk at offset %d: overlaps the previous chunk (which ends at %d), skipped", off, s.next)
		return
	}
	if s.started && off > s.next {
		s.problem("offsets %d..%d: missing, no chunk holds them", s.next, off-1)
	}
	s.started = true
	s.next = off
	if err := store.DecodeChunk(v, &s.ch); err != nil {
		s.badChunks++
		s.problem("chunk at offset %d (%d bytes): unreadable (%v)", off, len(v), err)
		s.next = off + 1
		return
	}
	s.print(off)
}

// print writes the entries of s.ch, the chunk at offset off.
func (s *salvager) print(off uint64) {
	for i := range s.ch.Entries {
		e := &s.ch.Entries[i]
		o := off + uint64(i)
		b := appendEntryJSON(s.buf[:0], o, e)
		s.w.Write(b)
		s.buf = b
		if s.entries == 0 {
			s.first = o
		}
		s.last = o
		s.entries++
	}
	s.chunks++
	s.next = off + uint64(len(s.ch.Entries))
}

// Leaf pages as bbolt writes them (in the machine's byte order): a 16-byte
// header (page id uint64, flags uint16, element count uint16, overflow
// pages uint32), then 16 bytes per element (flags, pos, key size, value
// size; uint32 each, pos counted from the element), then keys and values.
const (
	boltLeafPage   = 0x02
	boltBucketElem = 0x01
)

// rawChunk locates a candidate log chunk found by pageScan.
type rawChunk struct {
	at   int64 // file offset of the value
	size int
	n    int // entries
}

// pageScan reads the file page by page, without bbolt's tree, and prints
// every log chunk at offset s.next or later that it finds in a leaf page:
// an element with an 8-byte key whose value decodes as a chunk. Log chunks
// never change once written, so a stale copy of a page (bbolt copies on
// write) holds the same chunk; the first copy that decodes is kept.
func (s *salvager) pageScan(path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	ps := int64(os.Getpagesize())
	for _, off := range []int64{0, 4096} {
		if m, ok := store.ReadBoltMeta(f, off); ok {
			ps = int64(m.PageSize)
			break
		}
	}
	min := uint64(0)
	if s.started {
		min = s.next
	}
	e := binary.NativeEndian
	found := map[uint64]rawChunk{}
	page := make([]byte, ps)
	var val []byte
	for id := int64(2); (id+1)*ps <= size; id++ {
		if _, err := f.ReadAt(page, id*ps); err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if e.Uint64(page) != uint64(id) || e.Uint16(page[8:]) != boltLeafPage {
			continue
		}
		count := int64(e.Uint16(page[10:]))
		extent := min64(size, (id+1+int64(e.Uint32(page[12:])))*ps) - id*ps
		for i := int64(0); i < count && 16+(i+1)*16 <= ps; i++ {
			el := page[16+i*16:]
			flags, pos, ksize, vsize := e.Uint32(el), int64(e.Uint32(el[4:])), int64(e.Uint32(el[8:])), int64(e.Uint32(el[12:]))
			kAt := 16 + i*16 + pos
			if flags&boltBucketElem != 0 || ksize != 8 || kAt+8+vsize > extent || kAt+8 > ps {
				continue
			}
			key := binary.BigEndian.Uint64(page[kAt:])
			if key < min {
				continue
			}
			if _, dup := found[key]; dup {
				continue
			}
			at := id*ps + kAt + 8
			val = append(val[:0], make([]byte, vsize)...)
			if _, err := f.ReadAt(val, at); err != nil {
				continue
			}
			if store.DecodeChunk(val, &s.ch) != nil {
				continue
			}
			found[key] = rawChunk{at: at, size: int(vsize), n: len(s.ch.Entries)}
		}
	}
	keys := make([]uint64, 0, len(found))
	for k := range found {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c := found[k]
		if s.started && k < s.next {
			s.problem("page scan: chunk at offset %d overlaps the previous one (which ends at %d), skipped", k, s.next)
			continue
		}
		if s.started && k > s.next {
			s.lostRanges++
			s.problem("offsets %d..%d: not found in any readable page", s.next, k-1)
		}
		val = append(val[:0], make([]byte, c.size)...)
		if _, err := f.ReadAt(val, c.at); err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if err := store.DecodeChunk(val, &s.ch); err != nil {
			return fmt.Errorf("read %s: chunk at offset %d changed: %w", path, k, err)
		}
		s.started = true
		s.print(k)
	}
	if len(keys) > 0 {
		s.problem("the page scan found %d chunks; the log's end is unknown to it, and it may also find entries that retention had dropped", len(keys))
	}
	return nil
}

func min64(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}

// resume finds the first key the cursor can reach at or after from, when
// the walk broke there. Seek(x) fails while x leads into the damaged page
// and works from the first key of the next readable page on: search for
// the smallest x that works, doubling the step, then bisecting.
func (s *salvager) resume(from uint64) (k, v []byte, ok bool) {
	seek := func(x uint64) bool {
		var key [8]byte
		binary.BigEndian.PutUint64(key[:], x)
		return guarded(func() { k, v = s.c.Seek(key[:]) }) == nil
	}
	if seek(from) {
		return k, v, true
	}
	lo, hi := from, uint64(0)
	for step := uint64(1); ; step *= 2 {
		if step > ^uint64(0)-from || step == 0 {
			return nil, nil, false
		}
		if seek(from + step) {
			hi = from + step
			break
		}
		lo = from + step
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if seek(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return k, v, seek(hi)
}

// appendEntryJSON appends a log entry as the JSON line --log and --salvage
// print: the reading with the field names edged batch's json format reads,
// an idle marker or a processing-time tick.
func appendEntryJSON(b []byte, off uint64, e *store.Entry) []byte {
	b = append(b, `{"offset":`...)
	b = strconv.AppendUint(b, off, 10)
	switch e.Kind {
	case store.EntryIdle:
		b = append(b, `,"idle":`...)
		b = record.AppendString(b, e.Source)
	case store.EntryTick:
		b = append(b, `,"tick":true`...)
	default:
		b = append(b, `,"source":`...)
		b = record.AppendString(b, e.Source)
		b = append(b, `,"sensor":`...)
		b = record.AppendString(b, e.Sensor)
		b = append(b, `,"metric":`...)
		b = record.AppendString(b, e.Metric)
		b = append(b, `,"value":`...)
		b = record.AppendFloat(b, e.Value)
		b = append(b, `,"ts":`...)
		b = strconv.AppendInt(b, e.TS, 10)
	}
	b = append(b, `,"ingest":`...)
	b = strconv.AppendInt(b, e.Ingest, 10)
	return append(b, "}\n"...)
}
