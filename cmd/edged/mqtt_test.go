package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/internal/broker"
	"github.com/edged/edged/internal/config"
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
//
// It runs against each broker the source is used with: mosquitto, the
// embedded broker (mochi-mqtt, here in the test's process) and
// nats-server's MQTT listener.
func TestMQTTKillRedelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the real binary")
	}
	t.Run("mosquitto", func(t *testing.T) {
		b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1, MaxInflight: 100})
		mqttKillRedelivery(t, b.Addr)
	})
	t.Run("embedded", func(t *testing.T) {
		b, err := broker.Start(context.Background(), config.Broker{Listen: "127.0.0.1:0"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		mqttKillRedelivery(t, b.Addr())
	})
	t.Run("nats", func(t *testing.T) {
		n := mqtttest.StartNATS(t, mqtttest.Options{})
		mqttKillRedelivery(t, n.Addr)
	})
}

func mqttKillRedelivery(t *testing.T, addr string) {
	dir := t.TempDir()
	cfg := mqttRunConfig(t, dir, "tcp://"+addr, "kill/#")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d", seed)

	d := startDaemon(t, cfg)
	d.waitFor(t, mqttConnected, 10*time.Second)
	const n = 2000
	pubDone := make(chan error, 1)
	go func() {
		p, err := mqtttest.Dial(addr, "kill-publisher", 1, 100)
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
	mqttBench         = flag.Int("mqtt.bench", 0, "run TestMQTTBench with this many readings (see scripts/bench-mqtt.sh)")
	mqttBenchInflight = flag.Int("mqtt.bench.inflight", 1000, "TestMQTTBench: mosquitto's max_inflight_messages")
	mqttBenchQoS      = flag.String("mqtt.bench.qos", "0,1", "TestMQTTBench: the QoS levels to run")
	mqttBenchOther    = flag.String("mqtt.bench.other", "", "TestMQTTBench: also run this edged binary (an A/B against another build, e.g. main's)")
)

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

// benchPayloads are n JSON readings from 1,000 sensors, one per
// millisecond of event time, 5% of them up to 1.5 s out of order (within
// the pipeline's 2 s max_out_of_orderness).
func benchPayloads(n int) [][]byte {
	rng := rand.New(rand.NewPCG(13, 13))
	out := make([][]byte, n)
	for i := range out {
		ts := 1_700_000_000_000 + int64(i)
		if rng.Float64() < 0.05 {
			ts -= rng.Int64N(1500)
		}
		out[i] = fmt.Appendf(nil, `{"sensor":"s%d","value":%.2f,"ts":%d}`, rng.IntN(1000), 20+10*rng.Float64(), ts)
	}
	return out
}

// benchPublish publishes payloads to topic as fast as the broker takes
// them (QoS 1: up to 1,000 in flight) and returns when it took them all.
func benchPublish(t *testing.T, addr, topic string, qos byte, payloads [][]byte) time.Duration {
	t.Helper()
	p, err := mqtttest.Dial(addr, fmt.Sprintf("bench-pub-%d", time.Now().UnixNano()), qos, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	for _, pl := range payloads {
		if err := p.Publish(topic, pl); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Wait(10 * time.Minute); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// TestMQTTBenchCounter is the counting subscriber of TestMQTTBench, run in
// a process of its own (so that its CPU time is its own):
// EDGED_BENCH_COUNT="addr topic qos n".
func TestMQTTBenchCounter(t *testing.T) {
	spec := os.Getenv("EDGED_BENCH_COUNT")
	if spec == "" {
		t.Skip("run by TestMQTTBench")
	}
	var addr, topic string
	var qos, n int
	if _, err := fmt.Sscan(spec, &addr, &topic, &qos, &n); err != nil {
		t.Fatal(err)
	}
	var cpu0 time.Duration
	res, err := mqtttest.Count(addr, fmt.Sprintf("bench-count-%d", os.Getpid()), topic, byte(qos), n, 5*time.Second, func() {
		cpu0 = selfCPU()
		fmt.Println("READY")
	})
	cpu := selfCPU() - cpu0
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESULT %d %d %d %d\n", res.Messages, res.First.UnixNano(), res.Last.UnixNano(), cpu.Nanoseconds())
}

type benchResult struct {
	kept    int
	took    time.Duration // from the first publish to the last message kept
	cpu     time.Duration
	rss     int64 // VmHWM
	anon    int64 // peak RssAnon
	file    int64 // peak RssFile
	publish time.Duration
}

func (r benchResult) rate() float64 { return float64(r.kept) / r.took.Seconds() }
func (r benchResult) usPer() float64 {
	if r.kept == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.kept)
}

// benchCount runs the counting subscriber while payloads are published.
func benchCount(t *testing.T, addr string, qos byte, payloads [][]byte) benchResult {
	t.Helper()
	topic := fmt.Sprintf("bench/count%d", qos)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestMQTTBenchCounter$", "-test.count", "1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("EDGED_BENCH_COUNT=%s %s %d %d", addr, topic, qos, len(payloads)))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "READY" {
	}
	start := time.Now()
	pub := benchPublish(t, addr, topic, qos, payloads)
	var res benchResult
	res.publish = pub
	for sc.Scan() {
		var n int
		var first, last, cpu int64
		if _, err := fmt.Sscanf(sc.Text(), "RESULT %d %d %d %d", &n, &first, &last, &cpu); err == nil {
			res.kept, res.took, res.cpu = n, time.Unix(0, last).Sub(start), time.Duration(cpu)
		}
	}
	cmd.Wait()
	return res
}

// benchEdged runs edged run, subscribed at qos, while payloads are
// published: an MQTT source into the durable log, a 10 s tumbling window
// per sensor, its records published back to the broker at QoS 1,
// checkpoints at their defaults.
func benchEdged(t *testing.T, bin string, b *mqtttest.Broker, qos byte, payloads [][]byte) benchResult {
	t.Helper()
	dir := t.TempDir()
	httpAddr := freePort(t)
	topic := fmt.Sprintf("bench/edged%d", qos)
	cfg := filepath.Join(dir, "edged.toml")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
[device]
id = "gw-bench"
data_dir = %q
[pipeline]
max_out_of_orderness = "2s"
[http]
listen = %q
[[source]]
name = "lab"
type = "mqtt"
broker = %q
topics = [%q]
qos = %d
[[window]]
name = "w10s"
type = "tumbling"
size = "10s"
aggregates = ["count", "mean", "min", "max"]
[[output]]
name = "up"
type = "mqtt"
broker = %q
topic = "results/{window}/{key}"
qos = 1
`, filepath.Join(dir, "data"), httpAddr, b.URL(), topic, qos, b.URL())), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemonBin(t, bin, cfg)
	d.waitFor(t, mqttConnected, 20*time.Second)
	readings := func() int {
		resp, err := http.Get("http://" + httpAddr + "/status")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var st struct {
			Sources []struct {
				Readings int `json:"readings"`
			} `json:"sources"`
		}
		if json.NewDecoder(resp.Body).Decode(&st) != nil || len(st.Sources) == 0 {
			return -1
		}
		return st.Sources[0].Readings
	}
	cpu0, _ := procCPU(t, d.cmd.Process.Pid)
	// The peak of RSS's parts: the heap and stacks (anon), and the pages
	// of the data file mapped by bbolt (file).
	stopSampling := make(chan struct{})
	sampled := make(chan [2]int64, 1)
	go func() {
		var peak [2]int64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
			for _, l := range strings.Split(string(status), "\n") {
				for i, key := range []string{"RssAnon:", "RssFile:"} {
					if v, ok := strings.CutPrefix(l, key); ok {
						kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
						peak[i] = max(peak[i], kb<<10)
					}
				}
			}
			select {
			case <-stopSampling:
				sampled <- peak
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	res := benchResult{publish: benchPublish(t, b.Addr, topic, qos, payloads)}
	// Until every reading is in, or none came for 5 s.
	last, lastAt := -1, time.Now()
	for {
		n := readings()
		now := time.Now()
		if n != last {
			last, lastAt = n, now
			res.took = now.Sub(start)
		}
		if n >= len(payloads) || now.Sub(lastAt) > 5*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.kept = last
	cpu1, rss := procCPU(t, d.cmd.Process.Pid)
	res.cpu, res.rss = cpu1-cpu0, rss
	close(stopSampling)
	peak := <-sampled
	res.anon, res.file = peak[0], peak[1]
	if code := d.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d; log:\n%s", code, d.log)
	}
	return res
}

// TestMQTTBench is issue 13's workload end to end: a producer publishes n
// JSON readings from 1,000 sensors (5% out of order) to mosquitto as fast
// as it can; edged run (MQTT source, durable log, checkpoints, a 10 s
// tumbling count/mean/min/max per sensor published back to mosquitto)
// keeps them. For each QoS, a plain counting subscriber (its own process,
// acknowledging at once) gets the same stream first, in the same run.
// Figures: readings kept, edged's CPU per reading (utime+stime of the
// process over the run / readings), throughput against the counting
// subscriber's, peak RSS (VmHWM).
func TestMQTTBench(t *testing.T) {
	if *mqttBench <= 0 {
		t.Skip("a benchmark: scripts/bench-mqtt.sh, or go test ./cmd/edged -run '^TestMQTTBench$' -mqtt.bench 1000000 -v")
	}
	n := *mqttBench
	b := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1, MaxInflight: *mqttBenchInflight})
	payloads := benchPayloads(n)
	t.Logf("mosquitto max_inflight_messages %d, max_queued_messages unlimited; %d readings from 1,000 sensors, 5%% out of order", *mqttBenchInflight, n)
	for _, q := range strings.Split(*mqttBenchQoS, ",") {
		qos := byte(q[0] - '0')
		c := benchCount(t, b.Addr, qos, payloads)
		e := benchEdged(t, edgedBin, b, qos, payloads)
		t.Logf("QoS %d counting subscriber: %d of %d in %v: %.0f msg/s, %.2f us CPU per message (published in %v)",
			qos, c.kept, n, c.took.Round(time.Millisecond), c.rate(), c.usPer(), c.publish.Round(time.Millisecond))
		report := func(name string, e benchResult) {
			t.Logf("QoS %d %s: %d of %d readings kept in %v: %.0f readings/s (%.0f%% of the counting subscriber's; target >= 80%%), %.2f us CPU per reading (target <= %s), peak RSS %.1f MiB (target <= 25; sampled peaks: anon %.1f, file-backed %.1f) (published in %v)",
				qos, name, e.kept, n, e.took.Round(time.Millisecond), e.rate(), 100*e.rate()/c.rate(), e.usPer(), map[byte]string{0: "2.5", 1: "3"}[qos],
				float64(e.rss)/(1<<20), float64(e.anon)/(1<<20), float64(e.file)/(1<<20), e.publish.Round(time.Millisecond))
		}
		report("edged", e)
		if *mqttBenchOther != "" {
			report(*mqttBenchOther, benchEdged(t, *mqttBenchOther, b, qos, payloads))
		}
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
