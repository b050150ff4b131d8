package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeFile writes s to path or fails the test.
func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// edgedOK runs the binary and fails the test unless it exits 0.
func edgedOK(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	so, se, code := runEdged(t, ".", nil, args...)
	if code != 0 {
		t.Fatalf("edged %s: exit %d\n%s", strings.Join(args, " "), code, se)
	}
	return so, se
}

// runToEnd runs `edged run` until its file source named by path (of size
// bytes) is at its end, then stops it with SIGTERM.
func runToEnd(t *testing.T, cfg string, size int64) {
	t.Helper()
	d := startDaemon(t, cfg)
	d.waitFor(t, regexp.MustCompile(fmt.Sprintf(`file source at end of file.* offset=%d\b`, size)), 60*time.Second)
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}
}

var uplinkFields = regexp.MustCompile(`,"device":"[^"]*","seq":\d+,"id":"[0-9a-f]+"}$`)

// windowRecords returns the window records of JSON lines, without the
// fields only uplinked records carry (device, seq, id).
func windowRecords(out string) []string {
	var recs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, `{"type":"window"`) {
			recs = append(recs, uplinkFields.ReplaceAllString(l, "}"))
		}
	}
	return recs
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

const replayWindows = `
[[window]]
name = "t1s"
type = "tumbling"
size = "1s"
aggregates = ["count", "sum", "mean", "min", "max", "first", "last", "p95"]
[[window]]
name = "s5s"
type = "sliding"
size = "5s"
slide = "1s"
aggregates = ["count", "max"]
[[window]]
name = "sess"
type = "session"
gap = "30ms"
key_by = "global"
aggregates = ["count", "sum"]
`

func replayConfig(t *testing.T, path, data, input, windows string) {
	t.Helper()
	writeFile(t, path, fmt.Sprintf(`
[device]
id = "gw-replay"
data_dir = %q
[pipeline]
max_out_of_orderness = "2s"
allowed_lateness = "1s"
checkpoint_interval = "50ms"
[log]
level = "info"
[[source]]
name = "f"
type = "file"
path = %q
%s`, data, input, windows))
}

// TestReplay runs the daemon over a file, then replays its log: the whole
// log gives what edged batch gives on the same input, a range gives what
// batch gives on the readings in that range, another config gives its own
// windows, and none of it changes a byte of the data file.
func TestReplay(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "input.jsonl")
	size := crashInput(t, input, 20000)
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "edged.toml")
	replayConfig(t, cfg, data, input, replayWindows)
	runToEnd(t, cfg, size)

	dataFile := filepath.Join(data, "edged.db")
	hashBefore := fileHash(t, dataFile)
	outboxBefore, _ := edgedOK(t, "inspect", "-c", cfg, "--outbox")
	statsBefore, _ := edgedOK(t, "inspect", "-c", cfg, "--json")

	t.Run("whole log equals batch", func(t *testing.T) {
		batch, batchErr := edgedOK(t, "batch", "-c", cfg)
		replay, replayErr := edgedOK(t, "replay", "-c", cfg)
		if replay != batch {
			t.Fatalf("replay differs from batch on the same input:\n%s\n%s", firstDiff(replay, batch), replayErr)
		}
		m := regexp.MustCompile(`, (\d+) late, (\d+) window records`).FindStringSubmatch(batchErr)
		if m == nil {
			t.Fatalf("batch summary: %s", batchErr)
		}
		want := fmt.Sprintf("edged replay: 20000 entries in range of 20000 in the log, offsets 0..19999, %s window records, %s late\n", m[2], m[1])
		if replayErr != want {
			t.Errorf("summary:\n got %q\nwant %q", replayErr, want)
		}
		// The daemon fired the same windows, in the same order, up to the
		// end of the log (it does not flush: its open windows wait for
		// more input).
		live, rep := windowRecords(outboxBefore), windowRecords(replay)
		if len(live) < 100 || len(live) > len(rep) {
			t.Fatalf("%d window records in the outbox, %d replayed", len(live), len(rep))
		}
		for i := range live {
			if live[i] != rep[i] {
				t.Fatalf("window record %d: outbox %s, replay %s", i, live[i], rep[i])
			}
		}
	})

	t.Run("event-time range equals batch on the readings in it", func(t *testing.T) {
		from, to := int64(1_700_000_050_000), int64(1_700_000_080_000)
		raw, err := os.ReadFile(input)
		if err != nil {
			t.Fatal(err)
		}
		var in strings.Builder
		n := 0
		for _, l := range strings.Split(string(raw), "\n") {
			var r struct{ TS int64 }
			if json.Unmarshal([]byte(l), &r) == nil && r.TS >= from && r.TS < to {
				in.WriteString(l + "\n")
				n++
			}
		}
		ranged := filepath.Join(dir, "ranged.jsonl")
		writeFile(t, ranged, in.String())
		batch, _ := edgedOK(t, "batch", "-c", cfg, ranged)
		replay, se := edgedOK(t, "replay", "-c", cfg,
			"--from", time.UnixMilli(from).UTC().Format(time.RFC3339), "--to", fmt.Sprint(to))
		if replay != batch {
			t.Fatalf("replay of [%d, %d) differs from batch on those readings:\n%s", from, to, firstDiff(replay, batch))
		}
		if !strings.Contains(se, fmt.Sprintf("edged replay: %d entries in range of 20000 in the log", n)) {
			t.Errorf("summary: %s (want %d entries in range)", se, n)
		}
	})

	t.Run("config override", func(t *testing.T) {
		other := filepath.Join(dir, "other.toml")
		replayConfig(t, other, filepath.Join(dir, "elsewhere"), input, `
[[window]]
name = "t2s"
type = "tumbling"
size = "2s"
aggregates = ["count", "mean"]
`)
		batch, _ := edgedOK(t, "batch", "-c", other)
		replay, _ := edgedOK(t, "replay", "-c", cfg, "--config-override", other)
		if replay != batch {
			t.Fatalf("replay with the 2 s window differs from batch with it:\n%s", firstDiff(replay, batch))
		}
		recs := windowRecords(replay)
		if len(recs) < 50 {
			t.Fatalf("only %d window records", len(recs))
		}
		for _, r := range recs {
			var w struct {
				Window     string
				Start, End int64
			}
			json.Unmarshal([]byte(r), &w)
			if w.Window != "t2s" || w.End-w.Start != 2000 || w.Start%2000 != 0 {
				t.Fatalf("not a record of the 2 s window: %s", r)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "elsewhere")); err == nil {
			t.Errorf("replay used the override's data_dir")
		}
	})

	t.Run("live state untouched", func(t *testing.T) {
		outboxAfter, _ := edgedOK(t, "inspect", "-c", cfg, "--outbox")
		statsAfter, _ := edgedOK(t, "inspect", "-c", cfg, "--json")
		if outboxAfter != outboxBefore {
			t.Errorf("outbox changed by replay")
		}
		if statsAfter != statsBefore {
			t.Errorf("inspect --json changed by replay:\n%s\n%s", statsBefore, statsAfter)
		}
		if fileHash(t, dataFile) != hashBefore {
			t.Errorf("the data file changed")
		}
	})

	t.Run("bad usage", func(t *testing.T) {
		for _, args := range [][]string{
			{"--from", "yesterday"},
			{"--from", "1h"},
			{"--by", "arrival"},
			{"--from", "1700000002000", "--to", "1700000001000"},
			{"--config-override", filepath.Join(dir, "missing.toml")},
			{"extra"},
		} {
			_, se, code := runEdged(t, ".", nil, append([]string{"replay", "-c", cfg}, args...)...)
			if code != 2 || !strings.HasPrefix(se, "edged replay: ") {
				t.Errorf("replay %q: exit %d, want 2: %s", args, code, se)
			}
		}
	})

	t.Run("while the daemon runs", func(t *testing.T) {
		d := startDaemon(t, cfg)
		d.waitFor(t, regexp.MustCompile(`edged running`), 30*time.Second)
		_, se, code := runEdged(t, ".", nil, "replay", "-c", cfg)
		if c := d.stop(t, syscall.SIGTERM); c != 0 {
			t.Fatalf("SIGTERM: exit %d; log:\n%s", c, d.log)
		}
		if code != 1 || !strings.Contains(se, "locked by another process") || !strings.Contains(se, "cp -a "+data) {
			t.Errorf("replay beside a running daemon: exit %d, want 1 and the locked message:\n%s", code, se)
		}
	})
}

// TestReplayRangeByHand checks a range against windows worked out by hand.
func TestReplayRangeByHand(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "input.jsonl")
	var in strings.Builder
	for i, ts := range []int64{0, 500, 1200, 1800, 2500, 3100} {
		fmt.Fprintf(&in, `{"sensor":"s1","ts":%d,"value":%d}`+"\n", 1_700_000_000_000+ts, i+1)
	}
	writeFile(t, input, in.String())
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "edged.toml")
	replayConfig(t, cfg, data, input, `
[[window]]
name = "t1s"
type = "tumbling"
size = "1s"
aggregates = ["count", "sum"]
`)
	runToEnd(t, cfg, int64(in.Len()))

	// [1.0 s, 3.0 s) holds the readings at 1.2 s (3), 1.8 s (4), 2.5 s (5).
	out, se := edgedOK(t, "replay", "-c", cfg, "--from", "1700000001000", "--to", "2023-11-14T22:13:23Z")
	want := `{"type":"window","window":"t1s","key":"s1","start":1700000001000,"end":1700000002000,"rev":0,"final":true,"count":2,"sum":7}
{"type":"window","window":"t1s","key":"s1","start":1700000002000,"end":1700000003000,"rev":0,"final":true,"count":1,"sum":5}
`
	if out != want {
		t.Errorf("replay of [1 s, 3 s):\n%s\nwant:\n%s", out, want)
	}
	if want := "edged replay: 3 entries in range of 6 in the log, offsets 2..4, 2 window records, 0 late\n"; se != want {
		t.Errorf("summary %q, want %q", se, want)
	}

	// By ingestion time: all six arrived within the last hour, none before.
	if _, se := edgedOK(t, "replay", "-c", cfg, "--by", "ingest", "--from", "-1h"); !strings.Contains(se, ": 6 entries in range of 6") {
		t.Errorf("--by ingest --from -1h: %s", se)
	}
	out, se = edgedOK(t, "replay", "-c", cfg, "--by", "ingest", "--to", "-1h")
	if out != "" || !strings.Contains(se, ": 0 entries in range of 6 in the log, no offsets, 0 window records") {
		t.Errorf("--by ingest --to -1h: %q %s", out, se)
	}
}

// TestReplayIdleMarkers checks that replay applies the daemon's idleness
// decisions where the log holds them: source b never delivers, so only its
// idle marker lets the watermark follow source a, and readings of a that
// arrive behind that watermark are late. edged batch, with no markers,
// sees no late reading at all.
func TestReplayIdleMarkers(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	reading := func(w *strings.Builder, ts int64) {
		fmt.Fprintf(w, `{"sensor":"s1","ts":%d,"value":%d}`+"\n", 1_700_000_000_000+ts, ts/100)
	}
	var part1, part2 strings.Builder
	for ts := int64(0); ts < 5000; ts += 100 {
		reading(&part1, ts)
	}
	for ts := int64(5000); ts < 8000; ts += 100 {
		reading(&part2, ts)
	}
	reading(&part2, 1000) // behind a's watermark once b is idle
	reading(&part2, 1500)
	writeFile(t, a, part1.String())
	writeFile(t, b, "")
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "edged.toml")
	writeFile(t, cfg, fmt.Sprintf(`
[device]
id = "gw-idle"
data_dir = %q
[pipeline]
max_out_of_orderness = "2s"
idle_timeout = "300ms"
checkpoint_interval = "50ms"
[log]
level = "info"
[[source]]
name = "a"
type = "file"
path = %q
[[source]]
name = "b"
type = "file"
path = %q
[[window]]
name = "t1s"
type = "tumbling"
size = "1s"
aggregates = ["count", "sum"]
`, data, a, b))

	d := startDaemon(t, cfg)
	idle := regexp.MustCompile(`source idle.* source=[ab]\b`)
	d.waitFor(t, idle, 30*time.Second)
	d.waitFor(t, idle, 30*time.Second)
	f, err := os.OpenFile(a, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(part2.String())
	f.Close()
	d.waitFor(t, regexp.MustCompile(`source idle.* source=a\b`), 30*time.Second)
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}

	outbox, _ := edgedOK(t, "inspect", "-c", cfg, "--outbox")
	replay, se := edgedOK(t, "replay", "-c", cfg)
	if !strings.Contains(se, "idle markers applied") || !strings.Contains(se, ", 2 late") {
		t.Errorf("summary: %s (want idle markers applied and 2 late)", se)
	}
	live, rep := windowRecords(outbox), windowRecords(replay)
	if len(live) == 0 || len(live) > len(rep) {
		t.Fatalf("%d window records in the outbox, %d replayed", len(live), len(rep))
	}
	for i := range live {
		if live[i] != rep[i] {
			t.Fatalf("window record %d: outbox %s, replay %s", i, live[i], rep[i])
		}
	}
	if _, se := edgedOK(t, "batch", "-c", cfg); !strings.Contains(se, " 0 late") {
		t.Errorf("batch (no idle markers) should see no late reading: %s", se)
	}
}

// firstDiff describes the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d (of %d and %d):\n got: %s\nwant: %s", i+1, len(g), len(w), gl, wl)
		}
	}
	return "equal"
}

// TestReplayWithNewDetector: the daemon ran without detectors; a replay
// with --config-override adding one shows the alerts it would have raised
// on that history, and leaves the live outbox as it was.
func TestReplayWithNewDetector(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	var b strings.Builder
	for i := 0; i < 60; i++ {
		v := 20.0
		if i >= 20 && i < 30 {
			v = 95 // overheating for 10 s
		}
		fmt.Fprintf(&b, `{"sensor":"boiler1","ts":%d,"value":%g}`+"\n", 1_700_000_000_000+int64(i)*1000, v)
	}
	writeFile(t, input, b.String())
	base := fmt.Sprintf(`
[device]
id = "gw-r"
data_dir = %q
[pipeline]
max_out_of_orderness = "0s"
[[source]]
name = "f"
type = "file"
path = %q
[[window]]
name = "w10s"
type = "tumbling"
size = "10s"
aggregates = ["count"]
`, filepath.Join(dir, "data"), input)
	cfg := filepath.Join(dir, "edged.toml")
	writeFile(t, cfg, base)
	runToEnd(t, cfg, int64(b.Len()))
	before := fileHash(t, filepath.Join(dir, "data", "edged.db"))
	override := filepath.Join(dir, "override.toml")
	writeFile(t, override, base+`
[[detector]]
name = "overheat"
type = "threshold"
above = 80.0
for_count = 3
`)
	so, _ := edgedOK(t, "replay", "-c", cfg, "--config-override", override)
	want := []string{
		`{"type":"alert","detector":"overheat","key":"boiler1","state":"firing","ts":1700000022000,"value":95,"score":0.997,"reason":"value 95 > 80 for 3 readings"}`,
		`{"type":"alert","detector":"overheat","key":"boiler1","state":"resolved","ts":1700000030000,"value":20,"score":0,"reason":"value 20 back within the limit"}`,
	}
	for _, w := range want {
		if !strings.Contains(so, w) {
			t.Errorf("replay output lacks %s:\n%s", w, so)
		}
	}
	if fileHash(t, filepath.Join(dir, "data", "edged.db")) != before {
		t.Error("replay changed the data file")
	}
}
