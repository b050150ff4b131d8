package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/internal/modbustest"
)

// metric returns the value of the sample of /metrics that starts with
// prefix (name and labels), or -1.
func metric(body, prefix string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// waitMetric polls /metrics until the sample prefix satisfies ok.
func waitMetric(t *testing.T, d *logged, addr, prefix string, ok func(float64) bool) string {
	t.Helper()
	_, body := pollHTTP(t, d, "http://"+addr+"/metrics", "", 20*time.Second, func(code int, body string) bool {
		return code == 200 && ok(metric(body, prefix))
	})
	return body
}

// TestModbusRunRTU runs `edged run` on an RTU line (a pty) with two
// slaves: readings of both reach windows in the output; a register the
// slave does not have and a slave that stops answering are counted per
// slave in /metrics, and the silent slave's keys fire a deadman; the line
// is pulled out and plugged back (a reconnect); SIGTERM exits 0.
func TestModbusRunRTU(t *testing.T) {
	sl := modbustest.StartRTU(t, modbustest.Config{
		Units:    map[int]modbustest.Unit{1: {HR: []uint16{0, 0x41ac, 0}}, 2: {IR: []uint16{0xfff6}}},
		Counters: []modbustest.Counter{{Unit: 1, Table: "hr", Address: 0}},
	}, 19200)
	dir := t.TempDir()
	httpAddr := freePort(t)
	cfg := filepath.Join(dir, "edged.toml")
	out := filepath.Join(dir, "out.jsonl")
	writeFile(t, cfg, fmt.Sprintf(`
[device]
id = "gw-modbus"
data_dir = %q
[pipeline]
max_out_of_orderness = "0s"
checkpoint_interval = "100ms"
[http]
listen = %q
[[source]]
name = "line"
type = "modbus"
controller = "file://%s"
baud = 19200
poll_every = "100ms"
timeout = "150ms"
[[source.slave]]
slave_id = 1
sensor = "plc"
registers = [
  { name = "count", kind = "holding", address = 0 },
  { name = "temp", kind = "holding", address = 1, type = "float32" },
  { name = "nothing", kind = "holding", address = 50 },
]
[[source.slave]]
slave_id = 2
registers = [{ name = "delta", kind = "input", address = 0, type = "int16", scale = 0.5 }]
[[window]]
name = "w1s"
type = "tumbling"
size = "1s"
aggregates = ["count", "min", "max"]
[[detector]]
name = "silent"
type = "deadman"
sources = ["line"]
duration = "1s"
[[output]]
name = "file"
type = "file"
path = %q
`, filepath.Join(dir, "data"), httpAddr, sl.Dev, out))
	d := startLogged(t, cfg)
	d.waitFor(t, regexp.MustCompile(`modbus controller opened" source=line controller=`+regexp.QuoteMeta(sl.Dev)+` slaves=2`), 10*time.Second)
	body := waitMetric(t, d, httpAddr, `edged_modbus_errors_total{source="line",slave="1",reason="illegal_data_address"}`, func(v float64) bool { return v >= 3 })
	for _, want := range []string{
		`edged_modbus_slave_up{source="line",slave="1"} 1`, `edged_modbus_slave_up{source="line",slave="2"} 1`,
		`edged_source_connected{source="line"} 1`, `edged_modbus_errors_total{source="line",slave="2",reason="timeout"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics without %s", want)
		}
	}
	// (A scrape may come between the two slaves of a poll.)
	if r1, r2 := metric(body, `edged_modbus_requests_total{source="line",slave="1"}`), metric(body, `edged_modbus_requests_total{source="line",slave="2"}`); r2 < 2 || r1 < 2*r2 || r1 > 2*r2+2 {
		t.Errorf("requests %v and %v: slave 1 takes 2 a poll (its adjacent registers in one), slave 2 one", r1, r2)
	}

	// Slave 2 stops answering: timeouts, down, its key goes silent.
	sl.Mode(2, "silent", 0)
	waitMetric(t, d, httpAddr, `edged_modbus_errors_total{source="line",slave="2",reason="timeout"}`, func(v float64) bool { return v >= 3 })
	waitMetric(t, d, httpAddr, `edged_modbus_slave_up{source="line",slave="2"}`, func(v float64) bool { return v == 0 })
	pollHTTP(t, d, "http://"+httpAddr+"/metrics", "", 20*time.Second, func(code int, body string) bool {
		b, err := os.ReadFile(out)
		return err == nil && strings.Contains(string(b), `"detector":"silent","key":"line-2/delta","state":"firing"`)
	})

	// The line is pulled out and plugged back.
	sl.Unplug()
	d.waitFor(t, regexp.MustCompile(`modbus controller lost; reconnecting" source=line`), 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	sl.Plug()
	waitMetric(t, d, httpAddr, `edged_source_reconnects_total{source="line"}`, func(v float64) bool { return v == 1 })
	readings := metric(waitMetric(t, d, httpAddr, `edged_modbus_slave_up{source="line",slave="2"}`, func(v float64) bool { return v == 1 }), `edged_readings_total{source="line"}`)
	waitMetric(t, d, httpAddr, `edged_readings_total{source="line"}`, func(v float64) bool { return v >= readings+6 })
	if code := d.stop(t); code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, d.log)
	}

	// The windows hold both slaves' readings, with their values.
	b, _ := os.ReadFile(out)
	keys := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct {
			Type, Key string
			Min, Max  float64
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Type != "window" {
			continue
		}
		keys[r.Key] = true
		switch {
		case r.Key == "plc/temp" && (r.Min != 21.5 || r.Max != 21.5), r.Key == "line-2/delta" && (r.Min != -5 || r.Max != -5):
			t.Errorf("window %s", l)
		}
	}
	if !keys["plc/count"] || !keys["plc/temp"] || !keys["line-2/delta"] || keys["plc/nothing"] {
		t.Errorf("window keys %v", keys)
	}
	log := d.log.String()
	if n := strings.Count(log, "reason=illegal_data_address"); n != 1 {
		t.Errorf("the illegal address logged %d times, want once a minute:\n%s", n, log)
	}
	if !strings.Contains(log, "slave=1 registers=nothing kind=holding address=50 count=1") {
		t.Errorf("the failing register is not named:\n%s", log)
	}
}

// TestModbusKillRestart: SIGKILL the daemon while it polls a TCP slave;
// every reading /metrics said was logged is in the log after the kill,
// once and in order, and a restart goes on after them.
func TestModbusKillRestart(t *testing.T) {
	sl := modbustest.StartTCP(t, modbustest.Config{
		Units:    map[int]modbustest.Unit{1: {HR: []uint16{0}}},
		Counters: []modbustest.Counter{{Unit: 1, Table: "hr", Address: 0}},
	})
	dir := t.TempDir()
	httpAddr := freePort(t)
	cfg := filepath.Join(dir, "edged.toml")
	writeFile(t, cfg, fmt.Sprintf(`
[device]
id = "gw-kill"
data_dir = %q
[store]
commit_interval = "20ms"
[http]
listen = %q
[[source]]
name = "plc"
type = "modbus"
controller = "tcp://%s"
poll_every = "20ms"
registers = [{ name = "count", kind = "holding", address = 0 }]
`, filepath.Join(dir, "data"), httpAddr, sl.Addr))
	counts := func() []float64 {
		so, se, code := runEdged(t, ".", nil, "inspect", "-c", cfg, "--log")
		if code != 0 {
			t.Fatalf("inspect --log: exit %d: %s", code, se)
		}
		var vs []float64
		sc := bufio.NewScanner(strings.NewReader(so))
		for sc.Scan() {
			var e struct {
				Sensor, Metric string
				Value          float64
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatal(err)
			}
			if e.Sensor != "plc" || e.Metric != "count" {
				t.Fatalf("entry %s", sc.Text())
			}
			vs = append(vs, e.Value)
		}
		return vs
	}

	var before []float64
	for round := range 3 {
		d := startLogged(t, cfg)
		body := waitMetric(t, d, httpAddr, `edged_log_end_offset`, func(v float64) bool { return v >= float64(len(before)+40) })
		logged := metric(body, "edged_log_end_offset")
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.done
		after := counts()
		if float64(len(after)) < logged {
			t.Fatalf("round %d: /metrics said %v entries were logged, %d after SIGKILL", round, logged, len(after))
		}
		if len(after) < len(before) || !slices.Equal(after[:len(before)], before) {
			t.Fatalf("round %d: the log lost or changed what it held before the restart", round)
		}
		for i := 1; i < len(after); i++ {
			// The slave's counter goes up by one per poll: within a run the
			// log has every value once, in order.
			if after[i] <= after[i-1] || (i >= len(before)+1 && after[i] != after[i-1]+1) {
				t.Fatalf("round %d: entry %d is %v after %v", round, i, after[i], after[i-1])
			}
		}
		before = after
	}
}

// TestModbusCheck: edged check reports a broken register map with
// file:line and the fix, every problem at once, exit 2.
func TestModbusCheck(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "edged.toml")
	writeFile(t, cfg, `[device]
id = "gw"
data_dir = "/tmp/x"
[[source]]
name = "plc"
type = "modbus"
controller = "tcp://127.0.0.1:502"
registers = [
  { name = "temp",  kind = "holding", address = 0, type = "float32" },
  { name = "over",  kind = "holding", address = 1 },
  { name = "alarm", kind = "coil",    address = 3, type = "float32" },
  { name = "small", kind = "input",   address = 0, type = "int16", byte_order = "CDAB" },
]
`)
	_, se, code := runEdged(t, dir, nil, "check", "-c", cfg)
	if code != 2 {
		t.Fatalf("exit %d: %s", code, se)
	}
	for _, want := range []string{
		cfg + `:10: source[0] "plc": registers[1] "over": address: holding "over" at 1-1 overlaps holding "temp" at 0-1`,
		cfg + `:11: source[0] "plc": registers[2] "alarm": type: type float32 is too long for a coil`,
		cfg + `:12: source[0] "plc": registers[3] "small": byte_order: byte_order "CDAB" swaps 16-bit words, but a int16 is one word`,
	} {
		if !strings.Contains(se, want) {
			t.Errorf("edged check output lacks\n%s\n---\n%s", want, se)
		}
	}
}
