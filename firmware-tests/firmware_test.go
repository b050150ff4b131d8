//go:build firmware

package firmwaretests

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/internal/mqtttest"
)

// forEachTarget runs test once per target, the targets in parallel (go
// test -parallel bounds how many at once).
// A missing mosquitto or socat fails the tests: they exist to be run, and
// a skipped firmware test would pass silently.
func forEachTarget(t *testing.T, test func(t *testing.T, tc *TestCase)) {
	targets, err := Targets()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mqtttest.MosquittoPath); err != nil {
		t.Fatalf("mosquitto: %v (apt-get install mosquitto)", err)
	}
	if _, err := exec.LookPath("socat"); err != nil {
		t.Fatalf("%v (apt-get install socat)", err)
	}
	for _, tg := range targets {
		t.Run(tg.Name, func(t *testing.T) {
			t.Parallel()
			t.Logf("running %s", tg)
			test(t, NewTestCase(t, tg))
		})
	}
}

// TestDemoBoots runs configs/demo.toml as shipped (data dir and broker port
// from EDGED_DEMO_DIR and EDGED_DEMO_PORT): the embedded broker starts, the
// simulated sensors' 10 s windows are printed on stdout and published to
// the embedded broker, SIGINT stops it cleanly.
func TestDemoBoots(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tc *TestCase) {
		port := FreePort(t)
		app := tc.StartEdged(filepath.Join(repoRoot(), "configs", "demo.toml"),
			"EDGED_DEMO_DIR="+tc.Path("demo-data"), "EDGED_DEMO_PORT="+strconv.Itoa(port), "EDGED_DEMO_HTTP_PORT="+strconv.Itoa(FreePort(t)))
		m := app.Find(brokerAddrRE)
		if m == nil {
			t.Fatalf("no %q in the log:\n%s", brokerAddrRE, app.Log())
		}
		if m[1] != fmt.Sprintf("127.0.0.1:%d", port) {
			t.Errorf("embedded broker on %s, want 127.0.0.1:%d", m[1], port)
		}
		sub := Subscribe(t, "tcp://"+m[1], "fw-demo-"+tc.Target.Name, "edged/demo/temp_10s/#")

		// The first 10 s window closes 2 s (max_out_of_orderness) after its
		// end: up to 12 s after the start.
		rec, err := app.WaitForStdout(regexp.MustCompile(`^\{"type":"window","window":"temp_10s".*`), 60*time.Second)
		if err != nil {
			t.Fatalf("%v\nlog:\n%s", err, app.Log())
		}
		var r Record
		if err := json.Unmarshal([]byte(rec[0]), &r); err != nil || r.Count == 0 || !strings.HasPrefix(r.Key, "sim-") {
			t.Errorf("window record %q: %v", rec[0], err)
		}
		if !Eventually(30*time.Second, func() bool { return sub.Count() > 0 }) {
			t.Errorf("no window record reached the embedded broker's subscriber; log:\n%s", app.Log())
		}
		code, err := app.Stop(syscall.SIGINT, stopTimeout)
		if err != nil || code != 0 {
			t.Fatalf("SIGINT: exit %d, %v; log:\n%s", code, err, app.Log())
		}
		if app.Find(stoppedRE) == nil {
			t.Errorf("no %q in the log:\n%s", stoppedRE, app.Log())
		}
		t.Logf("%d window records on stdout, %d on the embedded broker", len(app.Stdout()), sub.Count())
	})
}

// The end-to-end scenario's input: one reading per tick on each source,
// ticks 100 ms of event time apart (10 per 1 s window), value = tick.
const (
	base      = int64(1_700_000_000_000)
	tickMs    = 100
	lastTick  = 200 // ticks 0..200: windows 0..19 complete, tick 200 closes them
	phaseA    = 40  // ticks before the first check that records flow
	killTick  = 80  // the serial source pauses after this tick; the kill follows
	windows   = lastTick * tickMs / 1000
	serialKey = "ser"
	mqttKey   = "mq"
)

func tickTS(i int) int64 { return base + int64(i)*tickMs }

// TestEndToEnd: a serial source (CSV lines on a socat pseudo-terminal)
// and an MQTT source (QoS 1 on a real mosquitto) into a 1 s tumbling
// window, records to an upstream mosquitto through an MQTT output.
//
//  1. Readings from both sources reach the window and its records reach
//     the upstream subscriber.
//  2. While MQTT readings keep coming, edged is killed with SIGKILL, then
//     started again; the rest of the input follows.
//  3. SIGTERM: exit 0, "edged stopped cleanly", a clean last stop.
//  4. Upstream, every seq 1..N that edged committed arrived at least once,
//     duplicates carry the same payload, and each window's aggregates are
//     those of the input.
//
// The serial source pauses before the kill, and the kill waits until its
// last reading is through the pipeline: a serial port cannot replay, so
// what it sent in the last commit interval before a crash is lost by
// design (README: what survives a crash). The MQTT source loses nothing:
// a message is acknowledged once durable, and the broker sends the rest
// again.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	forEachTarget(t, func(t *testing.T, tc *TestCase) {
		in := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1})
		up := mqtttest.StartMosquitto(t, mqtttest.Options{MaxQueued: -1})
		dev := "fw-" + tc.Target.Name
		sub := Subscribe(t, up.URL(), "fw-up-"+tc.Target.Name, "up/"+dev+"/#")
		pty := StartSerialPty(t, tc.Path("tty"), tc.Path("tty-peer"))
		// Its own HTTP port: the default, 127.0.0.1:9464, is one per machine.
		httpAddr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		cfg := tc.WriteFile("edged.toml", fmt.Sprintf(`
[device]
id = %q
data_dir = %q
[http]
listen = %q
[pipeline]
max_out_of_orderness = "0s"
allowed_lateness = "0s"
idle_timeout = "0s"
checkpoint_interval = "200ms"
[[source]]
name = "tty"
type = "serial"
port = %q
baud = 115200
format = "csv"
columns = ["sensor", "ts", "value"]
[[source]]
name = "lab"
type = "mqtt"
broker = %q
topics = ["fw/#"]
qos = 1
[[window]]
name = "w1s"
type = "tumbling"
size = "1s"
aggregates = ["count", "sum", "min", "max"]
[[output]]
name = "up"
type = "mqtt"
broker = %q
topic = "up/{device}/{window}/{key}"
qos = 1
[[output]]
name = "local"
type = "file"
path = %q
`, dev, tc.Path("data"), httpAddr, pty.Dev, in.URL(), up.URL(), tc.Path("out.jsonl")))

		pub, err := mqtttest.Dial(in.Addr, "fw-sensors-"+tc.Target.Name, 1, 20)
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		serial := func(i int) {
			if err := pty.Write(fmt.Sprintf("%s,%d,%d\n", serialKey, tickTS(i), i)); err != nil {
				t.Fatal(err)
			}
		}
		publish := func(i int) error {
			if err := pub.Publish("fw/"+mqttKey, fmt.Appendf(nil, `{"sensor":%q,"ts":%d,"value":%d}`, mqttKey, tickTS(i), i)); err != nil {
				return err
			}
			return pub.Flush()
		}
		serialOpened := regexp.MustCompile(`serial port opened`)
		mqttConnected := regexp.MustCompile(`mqtt source connected`)
		sourcesUp := func(app *App) {
			t.Helper()
			for _, re := range []*regexp.Regexp{serialOpened, mqttConnected} {
				if _, err := app.WaitLogged(re, readyTimeout); err != nil {
					t.Fatalf("%v\nlog:\n%s", err, app.Log())
				}
			}
		}
		waitWindow := func(app *App, key string, k int, timeout time.Duration) {
			t.Helper()
			if !Eventually(timeout, func() bool { return sub.Has("w1s", key, base+int64(k)*1000) }) {
				t.Fatalf("window %d of %s not upstream after %v (%d records there); log:\n%s", k, key, timeout, sub.Count(), app.Log())
			}
		}

		// 1. Both sources flow through the window to the upstream broker.
		t0 := time.Now()
		app := tc.StartEdged(cfg)
		sourcesUp(app)
		for i := 0; i <= phaseA; i++ {
			if err := publish(i); err != nil {
				t.Fatal(err)
			}
			serial(i)
			time.Sleep(25 * time.Millisecond)
		}
		for _, key := range []string{serialKey, mqttKey} {
			waitWindow(app, key, phaseA*tickMs/1000-1, 60*time.Second)
		}
		t.Logf("phase 1: records of both sources upstream after %v", time.Since(t0).Round(time.Millisecond))

		// 2. The upstream broker goes away (records wait in the outbox),
		// and edged is killed with SIGKILL while MQTT readings flow.
		up.Stop()
		for i := phaseA + 1; i <= killTick; i++ {
			if err := publish(i); err != nil {
				t.Fatal(err)
			}
			serial(i)
			time.Sleep(25 * time.Millisecond)
		}
		pubDone := make(chan error, 1)
		var published atomic.Int64
		published.Store(killTick)
		go func() {
			for i := killTick + 1; i <= lastTick; i++ {
				if err := publish(i); err != nil {
					pubDone <- err
					return
				}
				published.Store(int64(i))
				time.Sleep(40 * time.Millisecond)
			}
			pubDone <- pub.Wait(60 * time.Second)
		}()
		// The serial source's last tick so far (killTick, at a window's
		// start) fires the window before it: once that is in the file
		// output, every serial line sent is in the log.
		if !Eventually(60*time.Second, func() bool {
			return FileHas(tc.Path("out.jsonl"), "w1s", serialKey, base+(killTick*tickMs/1000-1)*1000)
		}) {
			t.Fatalf("the serial source's last window before the kill is not in the file output; log:\n%s", app.Log())
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		if err := app.Kill(); err != nil {
			t.Fatal(err)
		}
		atKill, upAtKill := published.Load(), sub.Count()
		if atKill >= lastTick {
			t.Logf("note: the MQTT publisher had finished before the kill")
		}
		t.Logf("phase 2: upstream broker down, SIGKILL at MQTT tick %d of %d, %d records upstream", atKill, lastTick, upAtKill)
		up.Restart()
		if !pty.Alive() {
			t.Fatal("socat exited when edged was killed")
		}
		app = tc.StartEdged(cfg)
		if app.Find(regexp.MustCompile(`previous run did not stop cleanly`)) == nil {
			t.Errorf("the restart after SIGKILL did not notice the unclean stop; log:\n%s", app.Log())
		}
		sourcesUp(app)
		if !Eventually(30*time.Second, func() bool { return HTTPStatus("http://"+httpAddr+"/healthz") == 200 }) {
			t.Errorf("/healthz on %s: %d, want 200 once recovered; log:\n%s", httpAddr, HTTPStatus("http://"+httpAddr+"/healthz"), app.Log())
		}
		for i := killTick + 1; i <= lastTick; i++ {
			serial(i)
			time.Sleep(10 * time.Millisecond)
		}
		select {
		case err := <-pubDone:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(90 * time.Second):
			t.Fatalf("the MQTT publisher had not finished 90 s after the restart (at tick %d of %d)", published.Load(), lastTick)
		}
		for _, key := range []string{serialKey, mqttKey} {
			waitWindow(app, key, windows-1, 90*time.Second)
		}

		// 3. SIGTERM: a clean stop with a final checkpoint.
		// The final checkpoint is the one taken after the signal: it covers
		// the whole log (its offset is the log's end) and every record
		// committed (its next seq follows the outbox's last).
		ticks, _ := app.CPUTicks()
		termAt := time.Now().UnixMilli()
		code, err := app.Stop(syscall.SIGTERM, stopTimeout)
		if err != nil || code != 0 {
			t.Fatalf("SIGTERM: exit %d, %v; log:\n%s", code, err, app.Log())
		}
		stopped := app.Find(stoppedRE)
		if stopped == nil {
			t.Errorf("no %q in the log:\n%s", stoppedRE, app.Log())
		}
		var st struct {
			CleanShutdown bool
			LogEnd        uint64
			OutboxLastSeq uint64
			Checkpoint    *struct {
				Offset  uint64
				NextSeq int
				Time    int64
			}
		}
		if err := json.Unmarshal([]byte(tc.MustRun("inspect", "-c", cfg, "--json")), &st); err != nil {
			t.Fatalf("inspect --json: %v", err)
		}
		if !st.CleanShutdown {
			t.Errorf("inspect: last stop not clean after SIGTERM")
		}
		if st.Checkpoint == nil {
			t.Fatalf("inspect: no checkpoint after SIGTERM")
		}
		if c := st.Checkpoint; c.Offset != st.LogEnd || c.Time < termAt || uint64(c.NextSeq) != st.OutboxLastSeq+1 {
			t.Errorf("inspect: last checkpoint at log offset %d (log end %d), taken %d ms after SIGTERM, next seq %d (outbox last %d): "+
				"want a final checkpoint after the signal covering the log and the outbox", c.Offset, st.LogEnd, c.Time-termAt, c.NextSeq, st.OutboxLastSeq)
		}
		if stopped != nil && stopped[1] != strconv.FormatUint(st.LogEnd, 10) {
			t.Errorf("the clean stop logged log_offset=%s, want the log's end %d", stopped[1], st.LogEnd)
		}

		// 4. Upstream: nothing lost, nothing changed.
		n := st.Checkpoint.NextSeq - 1
		dups, err := sub.Check(n)
		if err != nil {
			t.Errorf("upstream: %v", err)
		}
		if err := FileCheck(tc.Path("out.jsonl"), n); err != nil {
			t.Errorf("file output: %v", err)
		}
		if want := 2 * windows; n != want {
			t.Errorf("edged committed %d records, want %d (%d windows x 2 keys)", n, want, windows)
		}
		mqttDups := 0
		seen := map[string]bool{}
		seqOfID := map[string]int{}
		for _, r := range sub.Records() {
			// No duplicates by id: a record recomputed after the crash
			// must come back with its first seq, not as a new record.
			if prev, ok := seqOfID[r.ID]; ok || r.ID == "" {
				t.Errorf("record id %q at seq %d and at seq %d", r.ID, prev, r.Seq)
			}
			seqOfID[r.ID] = r.Seq
			k := int((r.Start - base) / 1000)
			id := fmt.Sprintf("%s/%d", r.Key, k)
			if r.Type != "window" || r.Window != "w1s" || r.Device != dev || (r.Key != serialKey && r.Key != mqttKey) ||
				r.Start != base+int64(k)*1000 || k < 0 || k >= windows || !r.Final || r.Rev != 0 || seen[id] {
				t.Errorf("unexpected record (or a window twice): %+v", r)
				continue
			}
			seen[id] = true
			first, last := k*10, k*10+9
			sum := float64((first + last) * 10 / 2)
			switch {
			case r.Min != float64(first) || r.Max != float64(last):
				t.Errorf("%s: min %v max %v, want %d and %d", id, r.Min, r.Max, first, last)
			case r.Key == serialKey && (r.Count != 10 || r.Sum != sum):
				t.Errorf("%s: count %d sum %v, want 10 and %v", id, r.Count, r.Sum, sum)
			case r.Key == mqttKey && r.Count < 10:
				t.Errorf("%s: count %d, want 10 (MQTT readings lost)", id, r.Count)
			case r.Key == mqttKey && r.Count == 10 && r.Sum != sum:
				t.Errorf("%s: sum %v, want %v", id, r.Sum, sum)
			case r.Key == mqttKey && r.Count > 10:
				// At least once into the log: a message committed but not
				// yet acknowledged when the process died comes again, so
				// the extra readings are some of the window's own.
				extra := r.Count - 10
				mqttDups += extra
				if lo, hi := sum+float64(extra*first), sum+float64(extra*last); r.Sum < lo || r.Sum > hi {
					t.Errorf("%s: count %d sum %v: the %d extra readings are not the window's own (sum in [%v, %v])", id, r.Count, r.Sum, extra, lo, hi)
				}
			}
		}
		if len(seen) != 2*windows || len(seqOfID) != 2*windows {
			t.Errorf("%d distinct windows and %d distinct ids upstream, want %d", len(seen), len(seqOfID), 2*windows)
		}
		// Redelivered are at most the messages the broker had in flight
		// to edged (mosquitto's max_inflight_messages, 20) when it died.
		if mqttDups > 20 {
			t.Errorf("%d MQTT readings counted twice: more than the 20 the broker can have had in flight at the kill", mqttDups)
		}
		t.Logf("%d records upstream (%d duplicate deliveries, same payload), %d MQTT readings counted twice after the kill; "+
			"second run used %.2f s of CPU; whole scenario %v",
			n, dups, mqttDups, float64(ticks)/100, time.Since(t0).Round(time.Millisecond))
	})
}
