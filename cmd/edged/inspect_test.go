package main

import (
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/store"
)

// salvaged parses the output of inspect --salvage: offset -> line.
func salvaged(t *testing.T, out string) map[uint64]string {
	t.Helper()
	m := map[uint64]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var e struct{ Offset *uint64 }
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Offset == nil {
			t.Fatalf("salvage line %q: %v", l, err)
		}
		if _, dup := m[*e.Offset]; dup {
			t.Fatalf("offset %d salvaged twice", *e.Offset)
		}
		m[*e.Offset] = l
	}
	return m
}

// pagesInUse reads bbolt's high-water mark from the data file's meta pages.
func pagesInUse(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, ok := store.MetaExtent(f)
	if !ok {
		t.Fatal("no valid meta page")
	}
	return n
}

// TestCorruptDataFile damages copies of a real data file in three ways and
// checks what each command says about it, and what --salvage recovers.
func TestCorruptDataFile(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "input.jsonl")
	size := crashInput(t, input, 20000)
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "edged.toml")
	replayConfig(t, cfg, data, input, replayWindows)
	runToEnd(t, cfg, size)
	good := filepath.Join(data, "edged.db")
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	// The intact file: everything salvaged, and edged batch over it gives
	// what it gives over the original input.
	out, se := edgedOK(t, "inspect", "--salvage", good)
	all := salvaged(t, out)
	if len(all) != 20000 || !strings.Contains(se, "0 chunks unreadable, 0 offset ranges lost") {
		t.Fatalf("salvage of the intact file: %d entries; %s", len(all), se)
	}
	file := filepath.Join(dir, "salvaged.jsonl")
	writeFile(t, file, out)
	fromSalvage, _ := edgedOK(t, "batch", "-c", cfg, "--format", "json", file)
	fromInput, _ := edgedOK(t, "batch", "-c", cfg)
	if fromSalvage != fromInput {
		t.Errorf("batch over the salvaged log differs from batch over the input:\n%s", firstDiff(fromSalvage, fromInput))
	}
	if so, se := edgedOK(t, "inspect", "-c", cfg, "--check"); !strings.Contains(so, "consistent") {
		t.Fatalf("inspect --check on the intact file: %s %s", so, se)
	}

	used := pagesInUse(t, good)
	cases := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }},
		{"4 KiB of garbage in the middle", func(b []byte) []byte {
			at := used / 2 &^ 4095
			rng := rand.New(rand.NewPCG(1, 2))
			for i := at; i < at+4096; i += 8 {
				binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
			}
			return b
		}},
		{"4 KiB of garbage on a page of the log", func(b []byte) []byte {
			at := logLeafPage(t, b, 10000)
			rng := rand.New(rand.NewPCG(3, 4))
			for i := at; i < at+4096; i += 8 {
				binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
			}
			return b
		}},
		{"first 8 KiB zeroed", func(b []byte) []byte {
			clear(b[:8192])
			return b
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cdir := t.TempDir()
			cdata := filepath.Join(cdir, "data")
			os.MkdirAll(cdata, 0o700)
			broken := filepath.Join(cdata, "edged.db")
			writeFile(t, broken, string(c.damage(append([]byte(nil), raw...))))
			ccfg := filepath.Join(cdir, "edged.toml")
			replayConfig(t, ccfg, cdata, input, replayWindows)

			// inspect fails with the CorruptError and its way out, or,
			// when bbolt can still read what inspect reads, --check does.
			wayOut := "edged inspect --salvage " + broken + ".broken"
			_, se, code := runEdged(t, ".", nil, "inspect", "-c", ccfg)
			t.Logf("inspect: exit %d: %s", code, firstLine(se))
			if code != 0 && (code != 1 || !strings.Contains(se, "data file is corrupt") || !strings.Contains(se, wayOut)) {
				t.Errorf("inspect: exit %d, want 1 with the corrupt message and the way out:\n%s", code, se)
			}
			_, se, code = runEdged(t, ".", nil, "inspect", "-c", ccfg, "--check")
			t.Logf("inspect --check: exit %d: %s", code, firstLine(se))
			if code != 1 || !strings.Contains(se, "data file is corrupt") || !strings.Contains(se, wayOut) {
				t.Errorf("inspect --check: exit %d, want 1 with the corrupt message and the way out:\n%s", code, se)
			}
			_, se, code = runEdged(t, ".", nil, "replay", "-c", ccfg)
			t.Logf("replay: exit %d: %s", code, firstLine(se))
			if code != 1 || !strings.Contains(se, "data file is corrupt") {
				t.Errorf("replay: exit %d, want 1 with the corrupt message:\n%s", code, se)
			}

			// edged run must not start on it. (Its message is store.Open's;
			// see the report on bbolt panics in its own goroutine.)
			code, se = runBriefly(t, ccfg)
			t.Logf("run: exit %d: %s", code, firstLine(se))
			if code != 1 || !strings.Contains(se, "corrupt") || strings.Contains(se, "goroutine ") {
				t.Errorf("edged run on a damaged file: exit %d, want 1 with the corrupt message and no crash:\n%s", code, se)
			}

			// salvage: a broken copy keeps what is readable, each entry as
			// in the intact file.
			so, se, code := runEdged(t, ".", nil, "inspect", "--salvage", broken)
			got := salvaged(t, so)
			t.Logf("salvage: exit %d, %d of %d entries: %s", code, len(got), len(all), strings.ReplaceAll(se, "\n", " | "))
			if code != 0 || len(got) == 0 {
				t.Fatalf("salvage: exit %d, %d entries:\n%s", code, len(got), se)
			}
			for off, l := range got {
				if all[off] != l {
					t.Fatalf("salvaged entry differs from the intact file's:\n got %s\nwant %s", l, all[off])
				}
			}
			if c.name == "4 KiB of garbage on a page of the log" && (len(got) == len(all) || !strings.Contains(se, "unreadable, in damaged pages")) {
				t.Errorf("salvage did not report the damaged page of the log:\n%s", se)
			}
			if len(got) < len(all)/2 {
				t.Errorf("only %d of %d entries salvaged", len(got), len(all))
			}
		})
	}
}

// logLeafPage returns the file offset of a bbolt leaf page that holds log
// chunks, the first one whose first key is at least near.
func logLeafPage(t *testing.T, b []byte, near uint64) int64 {
	t.Helper()
	e := binary.NativeEndian
	var ch store.Chunk
	for at := int64(2 * 4096); at+4096 <= int64(len(b)); at += 4096 {
		p := b[at:]
		if e.Uint64(p) != uint64(at/4096) || e.Uint16(p[8:]) != boltLeafPage || e.Uint16(p[10:]) == 0 {
			continue
		}
		pos, ks, vs := int64(e.Uint32(p[20:])), int64(e.Uint32(p[24:])), int64(e.Uint32(p[28:]))
		if ks != 8 || 16+pos+8+vs > int64(len(p)) {
			continue
		}
		k := binary.BigEndian.Uint64(p[16+pos:])
		if k >= near && store.DecodeChunk(p[16+pos+8:16+pos+8+vs], &ch) == nil {
			return at
		}
	}
	t.Fatal("no leaf page of the log found")
	return 0
}

// runBriefly runs `edged run` for at most 3 s; -1 means it was still
// running (and was killed).
func runBriefly(t *testing.T, cfg string) (int, string) {
	t.Helper()
	cmd := exec.Command(edgedBin, "run", "-c", cfg)
	var se strings.Builder
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), se.String()
	case <-time.After(3 * time.Second):
		cmd.Process.Kill()
		<-done
		return -1, se.String()
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// TestSalvageUsage covers --salvage's own errors.
func TestSalvageUsage(t *testing.T) {
	dir := t.TempDir()
	notBolt := filepath.Join(dir, "notes.txt")
	writeFile(t, notBolt, strings.Repeat("not a data file\n", 1000))
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"inspect", "--salvage", notBolt}, 1, "nothing could be salvaged"},
		{[]string{"inspect", "--salvage", filepath.Join(dir, "missing.db")}, 1, "no such file"},
		{[]string{"inspect", "--salvage", dir}, 2, "a directory"},
		{[]string{"inspect", "--salvage", notBolt, "--outbox"}, 2, "--salvage takes only"},
	} {
		_, se, code := runEdged(t, ".", nil, c.args...)
		if code != c.code || !strings.Contains(se, c.msg) {
			t.Errorf("%q: exit %d, want %d and %q:\n%s", c.args, code, c.code, c.msg, se)
		}
	}
	if so, _, code := runEdged(t, ".", nil, "inspect", "-h"); code != 0 || !strings.Contains(so, "--salvage DATA_FILE") || !strings.Contains(so, `"idle":"lab"`) {
		t.Errorf("inspect -h does not document --salvage:\n%s", so)
	}
}

// TestInspectShowsRecordsAheadOfState: records committed without the state
// (a flush) are reported beside the state checkpoint, with the point a
// restart replays to.
func TestInspectShowsRecordsAheadOfState(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "edged.toml")
	writeFile(t, cfg, "[device]\nid = \"gw\"\ndata_dir = \""+data+"\"\n[http]\nenabled = false\n[[source]]\nname = \"in\"\ntype = \"stdin\"\n[[window]]\nname = \"w\"\ntype = \"tumbling\"\nsize = \"1s\"\naggregates = [\"count\"]\n")
	st, err := store.Open(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := store.Record{ID: "a", Name: "w", Key: "k", Body: []byte(`{"seq":1}`)}
	if err := st.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{Offset: 5, NextSeq: 1, Time: 1_700_000_000_000}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(&store.Checkpoint{Records: []store.Record{rec}, Flush: &store.FlushMeta{Offset: 9, Within: 1, NextSeq: 2, Time: 1_700_000_001_000}}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	out, _ := edgedOK(t, "inspect", "-c", cfg)
	for _, want := range []string{"checkpoint  at log offset 5,", "records committed ahead of the state up to log offset 9 (+1 of its records), next seq 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
}
