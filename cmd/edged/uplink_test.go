package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/internal/mqtttest"
)

// upSubscriber keeps a persistent session and records each seq's payload.
type upSubscriber struct {
	mu    sync.Mutex
	bySeq map[int]string
	dups  int
	bad   []string
}

func subscribeUp(t *testing.T, url, id string) *upSubscriber {
	s := &upSubscriber{bySeq: map[int]string{}}
	mqtttest.Subscribe(t, url, id, "edged/gw-up/w1s/#", func(_ string, payload []byte) {
		var r struct {
			Seq    int    `json:"seq"`
			ID     string `json:"id"`
			Device string `json:"device"`
		}
		if json.Unmarshal(payload, &r) != nil || r.Seq == 0 {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if prev, ok := s.bySeq[r.Seq]; ok {
			s.dups++
			if prev != string(payload) {
				s.bad = append(s.bad, fmt.Sprintf("seq %d: %s then %s", r.Seq, prev, payload))
			}
			return
		}
		s.bySeq[r.Seq] = string(payload)
	})
	return s
}

func (s *upSubscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bySeq)
}

// TestUplinkCrashDuringBacklog: the upstream broker is down while edged
// processes its input, so the outbox fills; the broker comes back and the
// backlog is replayed slowly; edged is SIGKILLed during the replay and
// restarted. The subscriber ends with every seq from 1 to N, and the
// duplicates carry the same payload (same id and seq).
func TestUplinkCrashDuringBacklog(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1})
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	var lines strings.Builder
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&lines, `{"sensor":"s%d","ts":%d,"value":%d}`+"\n", i%10, 1_700_000_000_000+int64(i)*100, i)
	}
	os.WriteFile(input, []byte(lines.String()), 0o644)
	cfg := filepath.Join(dir, "edged.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
[device]
id = "gw-up"
data_dir = %q
[pipeline]
max_out_of_orderness = "0s"
checkpoint_interval = "100ms"
[[source]]
name = "f"
type = "file"
path = %q
[[window]]
name = "w1s"
type = "tumbling"
size = "1s"
aggregates = ["count", "sum"]
[[output]]
name = "cloud"
type = "mqtt"
broker = %q
backlog_rate = 300
`, filepath.Join(dir, "data"), input, b.URL())), 0o644)
	sub := subscribeUp(t, b.URL(), "up-sub")
	b.Stop()
	d := startDaemon(t, cfg)
	d.waitFor(t, regexp.MustCompile(`ready: pipeline caught up`), 30*time.Second)
	time.Sleep(500 * time.Millisecond) // a checkpoint or two: the outbox holds everything
	b.Restart()
	// Kill edged while it replays the backlog (300 records/s of ~3,000).
	deadline := time.Now().Add(20 * time.Second)
	for sub.count() < 300 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	d.stop(t, syscall.SIGKILL)
	got := sub.count()
	if got == 0 {
		t.Fatal("nothing delivered before the kill")
	}
	d = startDaemon(t, cfg)
	deadline = time.Now().Add(60 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		// Done when the subscriber's count stops growing near the end.
		if c := sub.count(); c >= 2990 && c == n {
			break
		} else {
			n = c
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d:\n%s", code, d.log)
	}
	so, se, code := runEdged(t, ".", nil, "inspect", "-c", cfg, "--json")
	if code != 0 {
		t.Fatalf("inspect: %s", se)
	}
	var st struct {
		Checkpoint struct{ NextSeq int }
		Cursors    map[string]uint64
	}
	json.Unmarshal([]byte(so), &st)
	total := st.Checkpoint.NextSeq - 1
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for seq := 1; seq <= total; seq++ {
		if _, ok := sub.bySeq[seq]; !ok {
			t.Fatalf("seq %d of %d never arrived (%d received before the kill, %d in all)", seq, total, got, len(sub.bySeq))
		}
	}
	if len(sub.bad) > 0 {
		t.Fatalf("a seq arrived with two payloads: %v", sub.bad[0])
	}
	t.Logf("%d records, %d before the kill, %d duplicates (same payload)", total, got, sub.dups)
}

// TestSIGHUPReload: SIGHUP re-reads the config: a new window starts, the
// old one keeps its state, an invalid config is refused and the daemon runs
// on; SIGTERM still exits 0.
func TestSIGHUPReload(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	write := func(from, to int) {
		f, _ := os.OpenFile(input, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		for i := from; i < to; i++ {
			fmt.Fprintf(f, `{"sensor":"s","ts":%d,"value":1}`+"\n", 1_700_000_000_000+int64(i)*500)
		}
		f.Close()
	}
	cfgText := func(extra string) string {
		return fmt.Sprintf(`
[device]
id = "gw-hup"
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
%s`, filepath.Join(dir, "data"), input, extra)
	}
	cfg := filepath.Join(dir, "edged.toml")
	os.WriteFile(cfg, []byte(cfgText("")), 0o644)
	write(0, 10) // 5 s of readings: the 10 s window is open
	d := startDaemon(t, cfg)
	d.waitFor(t, regexp.MustCompile(`ready: pipeline caught up`), 20*time.Second)
	os.WriteFile(cfg, []byte(cfgText("[[window]]\nname = \"w2s\"\ntype = \"tumbling\"\nsize = \"2s\"\naggregates = [\"count\"]\n")), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitFor(t, regexp.MustCompile(`config reloaded`), 20*time.Second)
	d.waitFor(t, regexp.MustCompile(`ready: pipeline caught up`), 20*time.Second)
	os.WriteFile(cfg, []byte("this is not toml ["), 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitFor(t, regexp.MustCompile(`new config is invalid; running on`), 20*time.Second)
	write(10, 50) // to 25 s: the first 10 s window closes with all 20 readings
	time.Sleep(1500 * time.Millisecond)
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, d.log)
	}
	os.WriteFile(cfg, []byte(cfgText("[[window]]\nname = \"w2s\"\ntype = \"tumbling\"\nsize = \"2s\"\naggregates = [\"count\"]\n")), 0o644)
	out := strings.Join(outbox(t, cfg), "\n")
	if !strings.Contains(out, `"window":"w10s","key":"s","start":1700000000000,"end":1700000010000,"rev":0,"final":true,"count":20`) {
		t.Errorf("the 10 s window lost its state across the reload:\n%s", out)
	}
	if !strings.Contains(out, `"window":"w2s"`) {
		t.Errorf("the new window produced nothing:\n%s", out)
	}
}
