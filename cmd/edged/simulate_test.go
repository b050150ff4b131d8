package main

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edged/edged/internal/broker"
	"github.com/edged/edged/internal/config"
)

type simLine struct {
	Sensor string   `json:"sensor"`
	Metric string   `json:"metric"`
	TS     int64    `json:"ts"`
	Value  *float64 `json:"value"`
}

func parseSimLines(t *testing.T, out string) []simLine {
	t.Helper()
	var ls []simLine
	for i, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var r simLine
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Sensor == "" || r.Value == nil || r.TS == 0 {
			t.Fatalf("line %d %q: not a reading (%v)", i+1, l, err)
		}
		ls = append(ls, r)
	}
	return ls
}

func TestSimulateCLIStdout(t *testing.T) {
	out, se, code := runEdged(t, ".", nil, "simulate", "--count", "25")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, se)
	}
	rs := parseSimLines(t, out)
	if len(rs) != 25 {
		t.Fatalf("%d readings, want 25", len(rs))
	}
	// Defaults: 10 sensors sim-0..9 at 1 Hz from 1700000000000, sine
	// around 20 with amplitude 10.
	for i, r := range rs {
		want := "sim-" + string(rune('0'+i%10))
		if r.Sensor != want || r.TS != 1_700_000_000_000+int64(i/10)*1000 || math.Abs(*r.Value-20) > 11 {
			t.Fatalf("reading %d: %+v, want %s at +%ds", i, r, want, i/10)
		}
	}
	// Same seed, same output; another seed, another.
	again, _, _ := runEdged(t, ".", nil, "simulate", "--count", "25")
	other, _, _ := runEdged(t, ".", nil, "simulate", "--count", "25", "--seed", "2")
	if again != out || other == out {
		t.Fatal("output not determined by the seed")
	}
	// --duration: 5 sensors at 4 Hz for 3 s of event time.
	out, se, code = runEdged(t, ".", nil, "simulate", "--sensors", "5", "--rate", "4", "--duration", "3s", "--sensor", "t", "--metric", "temp",
		"--signal", "walk", "--start", "2024-01-01T00:00:00Z")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, se)
	}
	rs = parseSimLines(t, out)
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	if len(rs) != 60 || rs[0].TS != start || rs[59].TS != start+2750 || rs[59].Sensor != "t-4" || rs[0].Metric != "temp" {
		t.Fatalf("%d readings, first %+v, last %+v", len(rs), rs[0], rs[len(rs)-1])
	}
	// Without --count or --duration, unpaced output stops after 10 minutes.
	out, _, code = runEdged(t, ".", nil, "simulate", "--sensors", "2")
	if n := strings.Count(out, "\n"); code != 0 || n != 1200 {
		t.Fatalf("exit %d, %d readings, want 1200", code, n)
	}
}

// --labels writes the injected anomalies, and each shows in the readings.
func TestSimulateCLILabels(t *testing.T) {
	dir := t.TempDir()
	lf := filepath.Join(dir, "labels.jsonl")
	out, se, code := runEdged(t, ".", nil, "simulate", "--sensors", "4", "--duration", "30m", "--anomalies", "spike,flatline,dropout",
		"--anomaly-every", "1m", "--labels", lf, "--noise", "0.5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, se)
	}
	rs := parseSimLines(t, out)
	raw, err := os.ReadFile(lf)
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		s  string
		ts int64
	}
	val := map[key]float64{}
	for _, r := range rs {
		val[key{r.Sensor, r.TS}] = *r.Value
	}
	var n int
	kinds := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var lab struct {
			Sensor, Kind string
			Start, End   int64
			Readings     int
			Value        float64
		}
		if err := json.Unmarshal([]byte(l), &lab); err != nil {
			t.Fatalf("label %q: %v", l, err)
		}
		n++
		kinds[lab.Kind]++
		for ts := lab.Start; ts <= lab.End; ts += 1000 {
			v, ok := val[key{lab.Sensor, ts}]
			switch lab.Kind {
			case "spike":
				if !ok || v != lab.Value || math.Abs(v-20) < 50 {
					t.Fatalf("label %s: reading %v at %d", l, v, ts)
				}
			case "flatline":
				if !ok || v != lab.Value {
					t.Fatalf("label %s: reading %v at %d", l, v, ts)
				}
			case "dropout":
				if ok {
					t.Fatalf("label %s: reading at %d", l, ts)
				}
			}
		}
	}
	if n != 29 || kinds["spike"] == 0 || kinds["flatline"] == 0 || kinds["dropout"] == 0 {
		t.Fatalf("%d labels (%v), want 29 of each kind", n, kinds)
	}
	// Without --labels the readings are the same.
	plain, _, _ := runEdged(t, ".", nil, "simulate", "--sensors", "4", "--duration", "30m", "--anomalies", "spike,flatline,dropout",
		"--anomaly-every", "1m", "--noise", "0.5")
	if plain != out {
		t.Fatal("--labels changed the readings")
	}
}

func TestSimulateCLIUsage(t *testing.T) {
	out, _, code := runEdged(t, ".", nil, "simulate", "-h")
	if code != 0 || !strings.Contains(out, "--anomalies") || !strings.Contains(out, "mqtt://") || !strings.Contains(out, "simulate sine") {
		t.Fatalf("-h: exit %d:\n%s", code, out)
	}
	for _, args := range [][]string{
		{"--rate", "0"}, {"--signal", "square"}, {"--anomalies", "spikes"}, {"--count", "1", "--duration", "1s"},
		{"--to", "ftp://x"}, {"--qos", "3"}, {"extra"}, {"--anomalies", "spike", "--anomaly-every", "1s"},
		{"--realtime", "--start", "0"}, {"--bogus"},
	} {
		_, se, code := runEdged(t, ".", nil, append([]string{"simulate"}, args...)...)
		if code != 2 || se == "" {
			t.Errorf("%v: exit %d, want 2 with a message (%q)", args, code, se)
		}
	}
	// The sine demo is untouched.
	out, _, code = runEdged(t, ".", nil, "simulate", "sine", "--seconds", "1", "--rate", "10")
	if code != 0 || strings.Count(out, "\n") != 10 || !strings.HasPrefix(out, `{"sensor":"sine","ts":1700000000`) {
		t.Fatalf("simulate sine: exit %d:\n%s", code, out)
	}
}

// Paced output: --realtime on stdout, event time from the clock.
func TestSimulateCLIRealtime(t *testing.T) {
	before := time.Now().UnixMilli()
	t0 := time.Now()
	out, se, code := runEdged(t, ".", nil, "simulate", "--realtime", "--sensors", "2", "--rate", "10", "--count", "10")
	el := time.Since(t0)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, se)
	}
	rs := parseSimLines(t, out)
	if len(rs) != 10 || rs[0].TS < before || rs[9].TS-rs[0].TS != 400 {
		t.Fatalf("%d readings from %d to %d (started %d)", len(rs), rs[0].TS, rs[len(rs)-1].TS, before)
	}
	if el < 350*time.Millisecond || el > 5*time.Second {
		t.Fatalf("5 steps at 10 Hz took %v", el)
	}
}

// MQTT output to an embedded broker, received by a paho subscriber.
func TestSimulateCLIMQTT(t *testing.T) {
	b, err := broker.Start(context.Background(), config.Broker{Listen: "127.0.0.1:0", Username: "u", Password: "p"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	sub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID("sim-sub").SetUsername("u").SetPassword("p"))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	var mu sync.Mutex
	got := map[string][]simLine{}
	tok := sub.Subscribe("site/#", 1, func(_ paho.Client, m paho.Message) {
		var r simLine
		if err := json.Unmarshal(m.Payload(), &r); err != nil {
			t.Errorf("payload %q: %v", m.Payload(), err)
		}
		mu.Lock()
		got[m.Topic()] = append(got[m.Topic()], r)
		mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// Unpaced, then paced (the default for MQTT) at 20 Hz.
	for _, extra := range [][]string{{"--realtime=false"}, {"--rate", "20"}} {
		mu.Lock()
		clear(got)
		mu.Unlock()
		args := append([]string{"simulate", "--to", "mqtt://u:p@" + b.Addr() + "/site/{sensor}/{metric}", "--sensors", "3", "--metric", "temp", "--count", "30"}, extra...)
		_, se, code := runEdged(t, ".", nil, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", extra, code, se)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			n := 0
			for _, rs := range got {
				n += len(rs)
			}
			mu.Unlock()
			if n >= 30 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v: %d of 30 messages received", extra, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		if len(got) != 3 || len(got["site/sim-1/temp"]) != 10 || got["site/sim-1/temp"][0].Sensor != "sim-1" || got["site/sim-1/temp"][0].Metric != "temp" {
			t.Fatalf("%v: topics %v", extra, got)
		}
		mu.Unlock()
	}
	// A wrong password is an error, exit 1.
	_, se, code := runEdged(t, ".", nil, "simulate", "--to", "mqtt://u:wrong@"+b.Addr()+"/x", "--count", "1")
	if code != 1 || !strings.Contains(se, "cannot connect") {
		t.Fatalf("wrong password: exit %d: %s", code, se)
	}
}

// --to pty creates a pseudo-terminal a serial source can open.
func TestSimulateCLIPty(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("no /dev/ptmx")
	}
	cmd := exec.Command(edgedBin, "simulate", "--to", "pty", "--sensors", "2", "--rate", "50")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit %d after an interrupt", code)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Error("no exit after an interrupt")
		}
	}()
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	path := regexp.MustCompile(`/dev/pts/\d+`).FindString(line)
	if path == "" {
		t.Fatalf("no pty path in %q", line)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for i := 0; i < 10; i++ {
		if !sc.Scan() {
			t.Fatalf("read %s: %v", path, sc.Err())
		}
		if i == 0 {
			continue // may start mid-line
		}
		var r simLine
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || !strings.HasPrefix(r.Sensor, "sim-") {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
	}
}
