package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/edged/edged/internal/natstest"
)

// streamCount is how many messages the stream holds (0 before it exists).
func streamCount(t *testing.T, js jetstream.JetStream, name string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// TestJetStreamCrashDuringBacklog: the NATS server is down while edged
// processes its input, so the outbox fills; the server comes back and the
// backlog goes out (300 records/s); edged is SIGKILLed during the replay
// and restarted. The stream ends with every seq from 1 to N exactly once
// (the records sent again after the kill are dropped by the server by
// Nats-Msg-Id), each with its Edged-Device and Edged-Seq headers.
func TestJetStreamCrashDuringBacklog(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
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
id = "gw-js"
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
name = "fleet"
type = "jetstream"
url = %q
subject = "edged.{device}.{type}"
stream = "EDGED"
duplicate_window = "1h"
backlog_rate = 300
`, filepath.Join(dir, "data"), input, srv.URL())), 0o644)
	if _, se, code := runEdged(t, ".", nil, "check", "-c", cfg); code != 0 {
		t.Fatalf("check: %s", se)
	}
	srv.Stop()
	d := startDaemon(t, cfg)
	d.waitFor(t, regexp.MustCompile(`ready: pipeline caught up`), 30*time.Second)
	time.Sleep(500 * time.Millisecond) // a checkpoint or two: the outbox holds everything
	srv.Restart()
	_, js := srv.Connect(t)
	deadline := time.Now().Add(20 * time.Second)
	for streamCount(t, js, "EDGED") < 300 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	d.stop(t, syscall.SIGKILL)
	got := streamCount(t, js, "EDGED")
	if got == 0 {
		t.Fatal("nothing delivered before the kill")
	}
	d = startDaemon(t, cfg)
	deadline = time.Now().Add(60 * time.Second)
	for n := uint64(0); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		// Done when the stream stops growing near the end.
		c := streamCount(t, js, "EDGED")
		if c >= 2990 && c == n {
			break
		}
		n = c
	}
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d:\n%s", code, d.log)
	}
	so, se, code := runEdged(t, ".", nil, "inspect", "-c", cfg, "--json")
	if code != 0 {
		t.Fatalf("inspect: %s", se)
	}
	var st struct {
		OutboxLastSeq uint64
		Cursors       map[string]uint64
	}
	json.Unmarshal([]byte(so), &st)
	total := st.OutboxLastSeq
	if total < 2990 || st.Cursors["fleet"] != total {
		t.Fatalf("outbox ends at %d, the output's cursor at %d", total, st.Cursors["fleet"])
	}
	msgs := srv.Read(t, "EDGED")
	seen := map[uint64]bool{}
	for _, m := range msgs {
		seq, _ := strconv.ParseUint(m.Header.Get("Edged-Seq"), 10, 64)
		var r struct {
			Device string
			Seq    uint64
			ID     string
		}
		json.Unmarshal(m.Data, &r)
		if seq == 0 || seq != r.Seq || r.Device != "gw-js" || m.Header.Get("Edged-Device") != "gw-js" || m.Header.Get(jetstream.MsgIDHeader) != r.ID {
			t.Fatalf("stream seq %d: headers %v, body %s", m.Seq, m.Header, m.Data)
		}
		if m.Subject != "edged.gw-js.window" {
			t.Fatalf("subject %q", m.Subject)
		}
		if seen[seq] {
			t.Fatalf("seq %d stored twice", seq)
		}
		seen[seq] = true
	}
	for seq := uint64(1); seq <= total; seq++ {
		if !seen[seq] {
			t.Fatalf("seq %d of %d missing (%d stored before the kill, %d in all)", seq, total, got, len(msgs))
		}
	}
	if uint64(len(msgs)) != total {
		t.Fatalf("%d messages for %d records", len(msgs), total)
	}
	t.Logf("%d records, %d stored before the kill", total, got)
}
