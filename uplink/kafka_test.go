//go:build kafka

package uplink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

// These tests run against franz-go's in-process Kafka (pkg/kfake): no
// Kafka broker can run on the machines the tests run on.

// positions maps the ids fleetProducer committed to their outbox
// positions (the outbox forgets what every output delivered).
var positions sync.Map

// fleetProducer commits n records from two devices, as own (gw) and
// relayed (gw2) records are: each device has its own gapless seq. It
// returns the next seq of each device.
func fleetProducer(t testing.TB, st *store.Store, seqs map[string]int, n int, every time.Duration) {
	for i := 0; i < n; i++ {
		dev := "gw"
		if i%3 == 2 {
			dev = "gw2"
		}
		seqs[dev]++
		seq := seqs[dev]
		id := fmt.Sprintf("%s-%d", dev, seq)
		key := fmt.Sprintf("k%d", seq%4)
		body := fmt.Sprintf(`{"type":"window","window":"w","key":%q,"start":%d,"end":%d,"rev":0,"final":true,"count":1,"device":%q,"seq":%d,"id":%q}`,
			key, seq*1000, seq*1000+1000, dev, seq, id)
		if _, err := st.AppendOutbox([]store.Record{{ID: id, Kind: uint8(record.KindWindow), Name: "w", Key: key, Body: []byte(body)}}); err != nil {
			t.Error(err)
			return
		}
		positions.Store(id, st.OutboxLastSeq())
		if every > 0 {
			time.Sleep(every)
		}
	}
}

// kafkaMsg is one record read back from the topic.
type kafkaMsg struct {
	partition int32
	offset    int64
	device    string
	seq       int
	id        string
	body      []byte
}

// readTopic reads every record of topic, per partition in offset order.
func readTopic(t *testing.T, addrs []string, topic string, want int) []kafkaMsg {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []kafkaMsg
	deadline := time.Now().Add(20 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			m := kafkaMsg{partition: r.Partition, offset: r.Offset, device: string(r.Key), body: r.Value}
			for _, h := range r.Headers {
				switch h.Key {
				case "id":
					m.id = string(h.Value)
				case "seq":
					m.seq, _ = strconv.Atoi(string(h.Value))
				}
			}
			out = append(out, m)
		})
	}
	return out
}

// checkTopic requires every seq 1..seqs[d] of every device once at least
// (exactly once when dups is false), with key, headers and body agreeing,
// and all of a device's records in one partition. It returns each
// device's records in topic order.
func checkTopic(t *testing.T, msgs []kafkaMsg, seqs map[string]int, dups bool) map[string][]kafkaMsg {
	t.Helper()
	per := map[string][]kafkaMsg{}
	seen := map[string]bool{}
	part := map[string]int32{}
	for _, m := range msgs {
		var r struct {
			Device string
			Seq    int
			ID     string
		}
		if err := json.Unmarshal(m.body, &r); err != nil {
			t.Fatalf("%v: %s", err, m.body)
		}
		if r.Device != m.device || r.Seq != m.seq || r.ID != m.id {
			t.Fatalf("key %q, headers id %q seq %d; body %s", m.device, m.id, m.seq, m.body)
		}
		if p, ok := part[m.device]; ok && p != m.partition {
			t.Fatalf("device %s in partitions %d and %d", m.device, p, m.partition)
		}
		part[m.device] = m.partition
		k := fmt.Sprint(m.device, "/", m.seq)
		if seen[k] && !dups {
			t.Fatalf("%s twice", k)
		}
		seen[k] = true
		per[m.device] = append(per[m.device], m)
	}
	total := 0
	for dev, n := range seqs {
		for s := 1; s <= n; s++ {
			if !seen[fmt.Sprint(dev, "/", s)] {
				t.Fatalf("%s seq %d of %d missing", dev, s, n)
			}
		}
		total += n
	}
	if len(seen) != total {
		t.Fatalf("%d distinct records, want %d", len(seen), total)
	}
	return per
}

// dedup is the consumer of docs/fleet.md: one value per device, drop seq <=
// last, flag seq > last+1 as a gap.
func dedup(per map[string][]kafkaMsg) (kept map[string][]int, gaps []string) {
	kept = map[string][]int{}
	for dev, ms := range per {
		last := 0
		for _, m := range ms {
			if m.seq <= last {
				continue
			}
			if m.seq > last+1 {
				gaps = append(gaps, fmt.Sprintf("%s %d..%d", dev, last+1, m.seq-1))
			}
			last = m.seq
			kept[dev] = append(kept[dev], m.seq)
		}
	}
	return kept, gaps
}

func newKafka(st *store.Store, addrs []string) *Kafka {
	return &Kafka{OutName: "fleet", Device: "gw", Brokers: addrs, Topic: "edged.{type}", Inflight: 32, LiveFirst: true,
		RetryMin: 50 * time.Millisecond, AckTimeout: 3 * time.Second, Store: st}
}

// TestKafkaDelivers: every record lands once, keyed by its device (own and
// relayed), with the headers id and seq, each device in one partition in
// seq order; the cursor reaches the end.
func TestKafkaDelivers(t *testing.T) {
	c := kfake.MustCluster(kfake.NumBrokers(2), kfake.SeedTopics(4, "edged.window"))
	defer c.Close()
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	seqs := map[string]int{}
	fleetProducer(t, st, seqs, 600, 0)
	out := newKafka(st, c.ListenAddrs())
	out.LiveFirst = false // the 600 committed before it started would be its backlog
	stop := runOutput(t, out)
	fleetProducer(t, st, seqs, 300, time.Millisecond)
	waitCursor(t, st, "fleet", 20*time.Second)
	stop()
	per := checkTopic(t, readTopic(t, c.ListenAddrs(), "edged.window", 900), seqs, false)
	for dev, ms := range per {
		for i, m := range ms {
			if m.seq != i+1 {
				t.Fatalf("%s: topic position %d holds seq %d", dev, i, m.seq)
			}
		}
	}
	if s := out.Stats(); s.Acked != 900 || s.Sent != 900 {
		t.Fatalf("stats %+v", s)
	}
}

// freeKafkaPort returns a loopback port for a cluster that must come back
// on the same address.
func freeKafkaPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// outageCluster starts a persistent one-broker cluster on port, again and
// again on the same data.
func outageCluster(t *testing.T, port int, dir string) *kfake.Cluster {
	var err error
	for i := 0; i < 50; i++ {
		var c *kfake.Cluster
		if c, err = kfake.NewCluster(kfake.Ports(port), kfake.DataDir(dir), kfake.SeedTopics(2, "edged.window")); err == nil {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("kfake on port %d: %v", port, err)
	return nil
}

// TestKafkaOutage: the broker goes away while records are committed and
// comes back with its data. Every record is in the topic (a record sent
// again by a new session may be there twice, with the same id and seq);
// live records after the reconnect come before the backlog is complete;
// within each lane a device's records are in seq order; the cursor ends
// at the end of the outbox.
func TestKafkaOutage(t *testing.T) {
	port, dir := freeKafkaPort(t), t.TempDir()
	c := outageCluster(t, port, dir)
	addrs := c.ListenAddrs()
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	out := newKafka(st, addrs)
	out.BacklogRate = 400
	out.AckTimeout = time.Second
	runOutput(t, out)
	seqs := map[string]int{}
	fleetProducer(t, st, seqs, 200, time.Millisecond)
	waitCursor(t, st, "fleet", 20*time.Second)
	c.Close()
	// Longer than the delivery timeout: the session fails; a shorter
	// outage is bridged by the client's own retries.
	fleetProducer(t, st, seqs, 600, 5*time.Millisecond)
	c = outageCluster(t, port, dir)
	defer c.Close()
	for i := 0; ; i++ {
		fleetProducer(t, st, seqs, 1, 5*time.Millisecond)
		if b := out.Stats().Boundary; b >= 800 && st.OutboxLastSeq() > b+300 {
			break
		}
		if i > 5000 {
			t.Fatal("the output did not reconnect")
		}
	}
	waitCursor(t, st, "fleet", 30*time.Second)
	boundary := out.Stats().Boundary
	total := seqs["gw"] + seqs["gw2"]
	msgs := readTopic(t, addrs, "edged.window", total)
	per := checkTopic(t, msgs, seqs, true)
	// Positions: the outbox position of a record is its place in commit
	// order, which fleetProducer makes 1 + (index); find each record's.
	pos := map[string]uint64{}
	positions.Range(func(k, v any) bool { pos[k.(string)] = v.(uint64); return true })
	// Per device, first copies in topic order: the live records (after the
	// boundary: all of the last session) are in seq order, and the first
	// of them comes before the last record committed during the outage.
	liveFirst := false
	for dev, ms := range per {
		seen := map[int]bool{}
		lastLive, firstLive, lastOutage := 0, -1, -1
		for i, m := range ms {
			if seen[m.seq] {
				continue
			}
			seen[m.seq] = true
			switch p := pos[m.id]; {
			case p > boundary:
				if m.seq < lastLive {
					t.Fatalf("%s: live seq %d after %d", dev, m.seq, lastLive)
				}
				lastLive = m.seq
				if firstLive < 0 {
					firstLive = i
				}
			case p > 200:
				lastOutage = i
			}
		}
		if firstLive >= 0 && firstLive < lastOutage {
			liveFirst = true
		}
	}
	if !liveFirst {
		for dev, ms := range per {
			var b strings.Builder
			for _, m := range ms {
				fmt.Fprintf(&b, "%d:%d ", m.seq, pos[m.id])
			}
			t.Logf("%s (seq:pos): %s", dev, b.String())
		}
		t.Logf("stats %+v", out.Stats())
		t.Fatal("no live record reached the topic before the backlog was through")
	}
	t.Logf("%d records, boundary %d, %d messages in the topic", total, boundary, len(msgs))
}

// TestKafkaInOrder: with live_first = false each device's records are in
// the topic in seq order across an outage, so the one-value consumer of
// docs/fleet.md keeps every record once and flags no gap.
func TestKafkaInOrder(t *testing.T) {
	port, dir := freeKafkaPort(t), t.TempDir()
	c := outageCluster(t, port, dir)
	addrs := c.ListenAddrs()
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	out := newKafka(st, addrs)
	out.LiveFirst = false
	runOutput(t, out)
	seqs := map[string]int{}
	fleetProducer(t, st, seqs, 200, time.Millisecond)
	waitCursor(t, st, "fleet", 20*time.Second)
	c.Close()
	fleetProducer(t, st, seqs, 300, time.Millisecond)
	c = outageCluster(t, port, dir)
	defer c.Close()
	fleetProducer(t, st, seqs, 300, 2*time.Millisecond)
	waitCursor(t, st, "fleet", 30*time.Second)
	total := seqs["gw"] + seqs["gw2"]
	per := checkTopic(t, readTopic(t, addrs, "edged.window", total), seqs, true)
	kept, gaps := dedup(per)
	if len(gaps) > 0 {
		t.Fatalf("gaps flagged: %v", gaps)
	}
	for dev, n := range seqs {
		if len(kept[dev]) != n {
			t.Fatalf("%s: %d kept, want %d", dev, len(kept[dev]), n)
		}
	}
}

// TestKafkaRefusedRecords: the broker refuses produce requests for a
// while (not authorized); each failure ends the session with the reason,
// the output retries with backoff, and delivers all once the broker
// accepts again; nothing acknowledged is lost, the cursor ends at the end.
func TestKafkaRefusedRecords(t *testing.T) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "edged.window"))
	defer c.Close()
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.TopicAuthorizationFailed, Count: -1})
	seqs := map[string]int{}
	fleetProducer(t, st, seqs, 100, 0)
	out := newKafka(st, c.ListenAddrs())
	out.RetryMin = 100 * time.Millisecond
	runOutput(t, out)
	deadline := time.Now().Add(10 * time.Second)
	for out.Stats().Reconnects < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if e := out.Stats().LastErr; !strings.Contains(e, "TOPIC_AUTHORIZATION_FAILED") || !strings.Contains(e, "to topic edged.window") {
		t.Fatalf("last error %q", e)
	}
	if c, _ := st.Cursor("fleet"); c != 0 {
		t.Fatalf("cursor %d while refused", c)
	}
	h.Remove()
	waitCursor(t, st, "fleet", 20*time.Second)
	checkTopic(t, readTopic(t, c.ListenAddrs(), "edged.window", 100), seqs, false)
}

// TestKafkaBadCredentials: SCRAM with a wrong password: a clear error,
// retried with a growing delay; nothing delivered; the right password
// delivers.
func TestKafkaBadCredentials(t *testing.T) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "gw", "right"),
		kfake.SeedTopics(1, "edged.window"))
	defer c.Close()
	st, _ := storetest.MustOpen(t, noSync)
	st.RegisterOutputs([]string{"fleet"})
	seqs := map[string]int{}
	fleetProducer(t, st, seqs, 10, 0)
	out := newKafka(st, c.ListenAddrs())
	out.SASLMechanism, out.Username, out.Password = "scram-sha-256", "gw", "wrong"
	out.RetryMin = 100 * time.Millisecond
	logs := lockedWriter{&sync.Mutex{}, &bytes.Buffer{}}
	out.Logger = slog.New(slog.NewTextHandler(logs, nil))
	stop := runOutput(t, out)
	time.Sleep(2 * time.Second)
	stop()
	s := out.Stats()
	if !strings.Contains(s.LastErr, "check username, password and sasl_mechanism") {
		t.Fatalf("last error %q", s.LastErr)
	}
	if s.Reconnects < 2 || s.Reconnects > 7 {
		t.Fatalf("%d reconnects in 2 s with a 100 ms backoff doubling", s.Reconnects)
	}
	if c, _ := st.Cursor("fleet"); c != 0 {
		t.Fatalf("cursor %d", c)
	}
	if l := logs.String(); !strings.Contains(l, "check username, password and sasl_mechanism") || strings.Contains(l, "wrong") {
		t.Fatalf("log:\n%s", l)
	}
	ok := newKafka(st, c.ListenAddrs())
	ok.SASLMechanism, ok.Username, ok.Password = "scram-sha-256", "gw", "right"
	runOutput(t, ok)
	waitCursor(t, st, "fleet", 20*time.Second)
}

func TestKafkaTopicNames(t *testing.T) {
	r := &store.Record{Kind: uint8(record.KindAlert), Name: "over heat", Key: "hall/s1", Body: []byte(`{"type":"alert","detector":"over heat","key":"hall/s1","state":"firing","ts":1,"value":2,"reason":"r","device":"gw","seq":1,"id":"x"}`)}
	if got := fill("edged.{type}.{detector}.{state}.{key}", "gw", r, kafkaTopic); got != "edged.alert.over_heat.firing.hall_s1" {
		t.Fatal(got)
	}
}

// TestKafkaRestartDuringBacklog: an output replays a backlog and stops
// (as a killed gateway would: its cursor is set back to where it was 200
// ms earlier, what a crash loses); a new output (a new producer session:
// Kafka's idempotence does not reach across) sends again from the cursor.
// The topic holds every record, some twice with the same id and seq; with
// live_first = false the one-value consumer of docs/fleet.md keeps each
// exactly once and flags no gap.
func TestKafkaRestartDuringBacklog(t *testing.T) {
	c := kfake.MustCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "edged.window"))
	defer c.Close()
	st, _ := storetest.MustOpen(t, noSync)
	// "held" never delivers: the outbox keeps every record, as it keeps
	// those after a crashed output's durable cursor.
	st.RegisterOutputs([]string{"fleet", "held"})
	seqs := map[string]int{}
	fleetProducer(t, st, seqs, 1500, 0)
	out := newKafka(st, c.ListenAddrs())
	out.LiveFirst, out.BacklogRate = false, 1000
	stop := runOutput(t, out)
	deadline := time.Now().Add(20 * time.Second)
	for out.Stats().Cursor < 500 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	cur, _ := st.Cursor("fleet")
	if cur < 500 || cur >= 1500 {
		t.Fatalf("cursor %d after the first run", cur)
	}
	// What a crash 200 ms earlier would have left (at 1000 records/s).
	if err := st.SetCursor("fleet", cur-200); err != nil {
		t.Fatal(err)
	}
	again := newKafka(st, c.ListenAddrs())
	again.LiveFirst = false
	runOutput(t, again)
	fleetProducer(t, st, seqs, 300, time.Millisecond)
	waitCursor(t, st, "fleet", 30*time.Second)
	total := seqs["gw"] + seqs["gw2"]
	msgs := readTopic(t, c.ListenAddrs(), "edged.window", total+200)
	per := checkTopic(t, msgs, seqs, true)
	if len(msgs) < total+200 {
		t.Fatalf("%d messages for %d records: the 200 sent again are not all there", len(msgs), total)
	}
	kept, gaps := dedup(per)
	if len(gaps) > 0 {
		t.Fatalf("gaps flagged: %v", gaps)
	}
	for dev, n := range seqs {
		if len(kept[dev]) != n {
			t.Fatalf("%s: %d kept, want %d", dev, len(kept[dev]), n)
		}
	}
	t.Logf("%d records, %d messages in the topic", total, len(msgs))
}
