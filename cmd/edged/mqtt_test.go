package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edged/edged/internal/mqtttest"
	"github.com/edged/edged/sensors"
)

var mqttConnected = regexp.MustCompile(`mqtt source connected`)

// mqttRunConfig writes an edged.toml with one MQTT source "lab" on broker
// subscribed to topic at QoS 1 (persistent session, the default), debug
// logs (the checkpoint lines tell how far the pipeline got).
func mqttRunConfig(t *testing.T, dir, broker, topic string) string {
	t.Helper()
	cfg := filepath.Join(dir, "edged.toml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[device]
id = "gw-mqtt"
data_dir = %q
[pipeline]
checkpoint_interval = "100ms"
state_interval = "100ms" # waitLogOffset follows the state checkpoints
[log]
level = "debug"
[[source]]
name = "lab"
type = "mqtt"
broker = %q
topics = [%q]
qos = 1
[[window]]
name = "t1s"
type = "tumbling"
size = "1s"
aggregates = ["count", "sum"]
`, filepath.Join(dir, "data"), broker, topic)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var checkpointLine = regexp.MustCompile(`checkpoint committed.* offset=(\d+)`)

// waitLogOffset reads the daemon's log until a state checkpoint at log offset
// min or beyond: the pipeline has processed that many log entries.
func (d *daemon) waitLogOffset(t *testing.T, min uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	var last uint64
	for {
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatalf("daemon exited before its log reached offset %d; log:\n%s", min, d.log)
			}
			if m := checkpointLine.FindStringSubmatch(l); m != nil {
				last, _ = strconv.ParseUint(m[1], 10, 64)
				if last >= min {
					return
				}
				continue // not kept: there are many
			}
			d.log.WriteString(l + "\n")
		case <-deadline:
			t.Fatalf("log offset %d after %v, waiting for %d; log:\n%s", last, timeout, min, d.log)
		}
	}
}

// logValues returns how often each value of source lab is in the log.
func logValues(t *testing.T, cfg string) map[float64]int {
	t.Helper()
	out, errOut, code := runEdged(t, ".", nil, "inspect", "-c", cfg, "--log")
	if code != 0 {
		t.Fatalf("inspect --log: exit %d: %s", code, errOut)
	}
	vals := map[float64]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e struct {
			Offset uint64   `json:"offset"`
			Source string   `json:"source"`
			Value  *float64 `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("inspect --log line %q: %v", sc.Text(), err)
		}
		if e.Source == "lab" && e.Value != nil {
			vals[*e.Value]++
		}
	}
	return vals
}

func missingValues(vals map[float64]int, n int) []int {
	var miss []int
	for i := 0; i < n; i++ {
		if vals[float64(i)] == 0 {
			miss = append(miss, i)
		}
	}
	return miss
}

// TestMQTTKillRedelivery publishes 2,000 QoS 1 messages while `edged run`
// is killed with SIGKILL at random moments and restarted: every message
// the broker accepted ends up in the log (at least once), because edged
// acknowledges a message only once it is durable and the broker keeps the
// rest for the persistent session.
func TestMQTTKillRedelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the real binary")
	}
	b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1, MaxInflight: 100})
	dir := t.TempDir()
	cfg := mqttRunConfig(t, dir, b.URL(), "kill/#")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d", seed)

	d := startDaemon(t, cfg)
	d.waitFor(t, mqttConnected, 10*time.Second)
	const n = 2000
	pubDone := make(chan error, 1)
	go func() {
		p, err := mqtttest.Dial(b.Addr, "kill-publisher", 1, 100)
		if err != nil {
			pubDone <- err
			return
		}
		defer p.Close()
		for i := 0; i < n; i++ {
			payload := fmt.Sprintf(`{"sensor":"s%d","value":%d,"ts":%d}`, i%10, i, 1_700_000_000_000+int64(i))
			if err := p.Publish(fmt.Sprintf("kill/s%d", i%10), []byte(payload)); err != nil {
				pubDone <- err
				return
			}
			if i%10 == 9 { // about 2 s in all
				p.Flush()
				time.Sleep(10 * time.Millisecond)
			}
		}
		pubDone <- p.Wait(30 * time.Second)
	}()
	// Kill at random moments while the publisher runs: at least 3 times,
	// at most 5.
	kills, published := 0, false
	for !published || kills < 3 {
		select {
		case err := <-pubDone:
			if err != nil {
				t.Fatal(err)
			}
			published = true
			continue
		case <-time.After(time.Duration(50+rng.IntN(400)) * time.Millisecond):
		}
		if kills == 5 {
			continue
		}
		d.stop(t, syscall.SIGKILL)
		kills++
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		d = startDaemon(t, cfg)
		d.waitFor(t, mqttConnected, 10*time.Second)
	}
	d.waitLogOffset(t, n, 30*time.Second)
	time.Sleep(200 * time.Millisecond)
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}
	vals := logValues(t, cfg)
	// Duplicates push the log past n before the last messages are in:
	// give the broker's redeliveries a run or two more.
	for round := 0; round < 2 && len(missingValues(vals, n)) > 0; round++ {
		t.Logf("%d readings not in the log yet: running edged again", len(missingValues(vals, n)))
		d = startDaemon(t, cfg)
		d.waitFor(t, mqttConnected, 10*time.Second)
		time.Sleep(2 * time.Second)
		if code := d.stop(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
		}
		vals = logValues(t, cfg)
	}
	if miss := missingValues(vals, n); len(miss) > 0 {
		t.Fatalf("seed %d: %d of %d acknowledged readings lost after %d kills, e.g. %v", seed, len(miss), n, kills, miss[:min(10, len(miss))])
	}
	entries := 0
	for _, c := range vals {
		entries += c
	}
	t.Logf("%d kills: all %d readings in the log, %d entries (%d duplicates: at least once)", kills, n, entries, entries-n)
}

// mqttBadPayloads returns n malformed JSON payloads of several kinds, each
// checked against the json decoder.
func mqttBadPayloads(t *testing.T, rng *rand.Rand, n int) [][]byte {
	dec, err := sensors.New("json", sensors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const printable = "abcxyz0123456789{}[]:,\"'. -+eE\\/"
	var out [][]byte
	for len(out) < n {
		var p []byte
		switch rng.IntN(8) {
		case 0: // truncated
			good := fmt.Sprintf(`{"sensor":"s%d","value":%d.5,"ts":1700000000000}`, rng.IntN(99), rng.IntN(1000))
			p = []byte(good[:1+rng.IntN(len(good)-2)])
		case 1:
			p = fmt.Appendf(nil, `{"sensor":"s1","value":"%d degrees"}`, rng.IntN(100))
		case 2:
			p = fmt.Appendf(nil, `{"value":%d}`, rng.IntN(100))
		case 3:
			p = fmt.Appendf(nil, `{"sensor":"s1","value":1,"ts":"%d o'clock"}`, rng.IntN(24))
		case 4:
			p = fmt.Appendf(nil, `[%d,%d]`, rng.IntN(9), rng.IntN(9))
		case 5:
			p = fmt.Appendf(nil, `{"sensor":"s%d"}`, rng.IntN(9))
		case 6: // random printable garbage
			p = make([]byte, 1+rng.IntN(40))
			for i := range p {
				p[i] = printable[rng.IntN(len(printable))]
			}
		case 7: // random bytes, often not even UTF-8
			p = make([]byte, 1+rng.IntN(40))
			for i := range p {
				p[i] = byte(rng.IntN(256))
			}
		}
		if rs, err := dec.Decode(nil, p); err == nil {
			_ = rs // valid after all (or blank): not a malformed payload
			continue
		}
		out = append(out, p)
	}
	return out
}

// TestMQTTMalformedPayloads mixes 1,000 random malformed payloads into
// 100,000 good ones: every good reading is in the log, every bad payload
// in the quarantine with a reason, and the daemon keeps running (and
// exits 0 on SIGTERM).
func TestMQTTMalformedPayloads(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 messages through the real binary")
	}
	b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1, MaxInflight: 1000})
	dir := t.TempDir()
	cfg := mqttRunConfig(t, dir, b.URL(), "m/#")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d", seed)
	const good, bad = 100_000, 1_000
	bads := mqttBadPayloads(t, rng, bad)
	// Positions of the bad ones among all; never last, so that the last
	// good reading's commit covers every quarantine record.
	isBad := map[int]bool{}
	for len(isBad) < bad {
		isBad[rng.IntN(good+bad-1)] = true
	}

	d := startDaemon(t, cfg)
	d.waitFor(t, mqttConnected, 10*time.Second)
	start := time.Now()
	p, err := mqtttest.Dial(b.Addr, "malformed-publisher", 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	gi, bi := 0, 0
	for i := 0; i < good+bad; i++ {
		var payload []byte
		if isBad[i] {
			payload = bads[bi]
			bi++
		} else {
			payload = fmt.Appendf(nil, `{"sensor":"m%d","value":%d,"ts":%d}`, gi%50, gi, 1_700_000_000_000+int64(gi))
			gi++
		}
		if err := p.Publish(fmt.Sprintf("m/%d", i%50), payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	p.Close()
	d.waitLogOffset(t, good, 60*time.Second)
	took := time.Since(start)
	select {
	case err := <-d.done:
		t.Fatalf("daemon exited: %v; log:\n%s", err, d.log)
	default:
	}
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}
	if n := strings.Count(d.log.String(), "payload quarantined"); n == 0 || n > 20 {
		t.Errorf("%d \"payload quarantined\" log lines for %d bad payloads: want a few (rate limited)", n, bad)
	}

	vals := logValues(t, cfg)
	if miss := missingValues(vals, good); len(miss) > 0 {
		t.Fatalf("%d good readings missing from the log, e.g. %v", len(miss), miss[:min(10, len(miss))])
	}
	if len(vals) != good {
		t.Errorf("%d distinct values in the log, want %d", len(vals), good)
	}

	out, errOut, code := runEdged(t, ".", nil, "inspect", "-c", cfg, "--quarantine")
	if code != 0 {
		t.Fatalf("inspect --quarantine: exit %d: %s", code, errOut)
	}
	roundTrip := func(p []byte) string { // as inspect prints it: JSON of the bytes as a string
		b, _ := json.Marshal(string(p))
		var s string
		json.Unmarshal(b, &s)
		return s
	}
	var want, got []string
	for _, p := range bads {
		want = append(want, roundTrip(p))
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var q struct{ Source, Reason, Payload string }
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			t.Fatalf("inspect --quarantine line %q: %v", sc.Text(), err)
		}
		if q.Source != "lab" || q.Reason == "" || !strings.Contains(q.Reason, "(topic m/") {
			t.Errorf("quarantine record without source or reason: %s", sc.Text())
		}
		got = append(got, q.Payload)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("%d payloads quarantined, want exactly the %d bad ones", len(got), len(want))
	}
	t.Logf("%d messages (%d malformed) published and in the log within %v", good+bad, bad, took.Round(time.Millisecond))
}

var (
	mqttBench         = flag.Int("mqtt.bench", 0, "run TestMQTTBench with this many messages (see scripts/bench-mqtt.sh)")
	mqttBenchInflight = flag.Int("mqtt.bench.inflight", 1000, "TestMQTTBench: mosquitto's max_inflight_messages")
)

// bufConn reads through a buffer (for the buffered counting subscriber).
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// procCPU returns the user+system CPU time of process pid so far, and its
// peak RSS.
func procCPU(t *testing.T, pid int) (time.Duration, int64) {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (in parentheses, may hold spaces).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // sysconf(_SC_CLK_TCK) on Linux
	var hwm int64
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			hwm, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return time.Duration(ut+st) * time.Second / clkTck, hwm << 10
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestMQTTBench compares edged's MQTT ingest (QoS 1, into the durable log,
// acknowledged after each commit) with a paho subscriber that only counts
// (acknowledging at once), on the same mosquitto in the same run. Each
// subscriber's persistent session first gets n messages queued at the
// broker; the figure is how fast it drains them: from its CONNACK to the
// last message counted (edged: to the checkpoint that covers the n-th log
// entry, i.e. committed and through the pipeline).
func TestMQTTBench(t *testing.T) {
	if *mqttBench <= 0 {
		t.Skip("a benchmark: scripts/bench-mqtt.sh, or go test ./cmd/edged -run TestMQTTBench -mqtt.bench 1000000 -v")
	}
	n := *mqttBench
	b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1, MaxInflight: *mqttBenchInflight})
	publishN := func(topic string) {
		p, err := mqtttest.Dial(b.Addr, "bench-publisher", 1, 1000)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for i := 0; i < n; i++ {
			payload := fmt.Appendf(nil, `{"sensor":"s%d","value":%d.5,"ts":%d}`, i%100, i, 1_700_000_000_000+int64(i))
			if err := p.Publish(topic, payload); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Wait(5 * time.Minute); err != nil {
			t.Fatal(err)
		}
		p.Close()
		t.Logf("published %d QoS 1 messages to %s in %v (%.0f/s)", n, topic, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	}

	// The counting subscribers: plain paho (its defaults: it reads the
	// socket without a buffer, acknowledges at once), and the same with a
	// buffered reader under it.
	countDrain := func(name string, buffered bool) (rate float64, cpu time.Duration) {
		var count atomic.Int64
		done := make(chan struct{})
		topic := "bench/" + name
		opts := paho.NewClientOptions().AddBroker(b.URL()).SetClientID("bench-" + name).SetCleanSession(false).
			SetStore(paho.NewMemoryStore()).SetAutoReconnect(false).SetProtocolVersion(4).
			SetDefaultPublishHandler(func(_ paho.Client, _ paho.Message) {
				if count.Add(1) == int64(n) {
					close(done)
				}
			})
		if buffered {
			opts.SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
				c, err := net.Dial("tcp", u.Host)
				if err != nil {
					return nil, err
				}
				return &bufConn{Conn: c, r: bufio.NewReaderSize(c, 32<<10)}, nil
			})
		}
		c := paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect: %v", name, tok.Error())
		}
		if tok := c.Subscribe(topic+"/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: subscribe: %v", name, tok.Error())
		}
		c.Disconnect(100)
		publishN(topic + "/x")
		cpu0 := selfCPU()
		start := time.Now()
		c = paho.NewClient(opts)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect: %v", name, tok.Error())
		}
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			t.Fatalf("%s: %d of %d after 5 minutes", name, count.Load(), n)
		}
		took := time.Since(start)
		cpu = selfCPU() - cpu0
		c.Disconnect(100)
		t.Logf("%s: %d messages in %v", name, n, took.Round(time.Millisecond))
		return float64(n) / took.Seconds(), cpu
	}
	countRate, countCPU := countDrain("count", false)
	bufRate, bufCPU := countDrain("count-buffered", true)

	// edged.
	dir := t.TempDir()
	cfg := mqttRunConfig(t, dir, b.URL(), "bench/edged/#")
	d := startDaemon(t, cfg) // creates the session
	d.waitFor(t, mqttConnected, 10*time.Second)
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}
	publishN("bench/edged/x")
	d = startDaemon(t, cfg)
	d.waitFor(t, mqttConnected, 10*time.Second)
	start := time.Now()
	cpu0, _ := procCPU(t, d.cmd.Process.Pid)
	d.waitLogOffset(t, uint64(n), 5*time.Minute)
	edgedTook := time.Since(start)
	cpu1, rss := procCPU(t, d.cmd.Process.Pid)
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}
	edgedRate := float64(n) / edgedTook.Seconds()
	perM := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(n) }

	t.Logf("mosquitto max_inflight_messages %d", *mqttBenchInflight)
	t.Logf("counting paho subscriber: %.0f msg/s, %.2f CPU s per 1M messages (test process)", countRate, perM(countCPU))
	t.Logf("counting paho subscriber, buffered reads: %.0f msg/s, %.2f CPU s per 1M messages (test process)", bufRate, perM(bufCPU))
	t.Logf("edged (QoS 1, durable log, ack after commit): %d readings in %v: %.0f readings/s, %.2f CPU s per 1M readings, peak RSS %.1f MiB",
		n, edgedTook.Round(time.Millisecond), edgedRate, perM(cpu1-cpu0), float64(rss)/(1<<20))
	t.Logf("result: edged at %.0f%% of the counting paho subscriber's rate (target >= 80%%), %.0f%% of the buffered one's", 100*edgedRate/countRate, 100*edgedRate/bufRate)
}
