package ingest

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/internal/modbustest"
	"github.com/edged/edged/store"
)

// runModbus runs m against a fake appender until the test ends.
func runModbus(t *testing.T, m *Modbus) (*fakeApp, *logBuf) {
	t.Helper()
	log, lb := newLog()
	m.Logger = log
	if m.Name == "" {
		m.Name = "mb"
	}
	if m.PollEvery == 0 {
		m.PollEvery = 50 * time.Millisecond
	}
	if m.Timeout == 0 {
		m.Timeout = 300 * time.Millisecond
	}
	if m.MinBackoff == 0 {
		m.MinBackoff, m.MaxBackoff = 50*time.Millisecond, 400*time.Millisecond
	}
	app := &fakeApp{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, app) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return within 5 s of the end of its context")
		}
	})
	return app, lb
}

// latest returns the newest value of each sensor/metric.
func latest(app *fakeApp) map[string]float64 {
	out := map[string]float64{}
	for _, e := range app.entries() {
		out[e.Sensor+"/"+e.Metric] = e.Value
	}
	return out
}

// everyType lays out one register of each type and byte order in unit
// 1's holding registers, and returns the registers and the values they
// must read.
func everyType() ([]uint16, []ModbusRegister, map[string]float64) {
	var hr []uint16
	var regs []ModbusRegister
	want := map[string]float64{}
	for i, tc := range typeCases {
		for _, order := range tc.orders {
			name := tc.typ + "_" + order + "_" + string(rune('a'+i))
			regs = append(regs, ModbusRegister{Name: name, Kind: "holding", Address: uint16(len(hr)), Type: tc.typ, ByteOrder: order, Scale: 1})
			hr = append(hr, onWire(order, beBytes(tc.typ, tc.v))...)
			want["dev/"+name] = tc.v
		}
	}
	return hr, regs, want
}

// TestModbusTCPEveryType: a real slave over TCP; values of every type and
// byte order come out exactly, with bits, scale and offset, in one
// request per run of adjacent registers.
func TestModbusTCPEveryType(t *testing.T) {
	hr, regs, want := everyType()
	regs = append(regs,
		ModbusRegister{Name: "temp", Kind: "input", Address: 0, Type: "int16", Scale: 0.1, Offset: -40},
		ModbusRegister{Name: "alarm", Kind: "coil", Address: 2, Scale: 1},
		ModbusRegister{Name: "door", Kind: "discrete", Address: 1, Scale: 1},
	)
	want["dev/temp"], want["dev/alarm"], want["dev/door"] = 0.1*623-40, 1, 0
	sl := modbustest.StartTCP(t, modbustest.Config{Units: map[int]modbustest.Unit{
		1: {HR: hr, IR: []uint16{623}, CO: []uint16{0, 0, 1}, DI: []uint16{1, 0}},
	}})
	m := &Modbus{TCP: sl.Addr, Slaves: []ModbusSlave{{ID: 1, Sensor: "dev", Registers: regs}}}
	app, lb := runModbus(t, m)
	waitFor(t, "a poll", 10*time.Second, func() bool { return len(latest(app)) == len(want) })
	got := latest(app)
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-9*math.Abs(v) || (v == 0 && got[k] != 0) {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
		if strings.Contains(k, "_") && got[k] != v {
			t.Errorf("%s = %v, not exactly %v", k, got[k], v)
		}
	}
	// One event time per poll, the poll's.
	es := app.entries()
	for _, e := range es[:len(want)] {
		if e.TS != es[0].TS || e.Source != "mb" || e.Kind != store.EntryReading {
			t.Fatalf("entry %+v: want the poll's time %d", e, es[0].TS)
		}
	}
	// The holding registers are adjacent: ceil(len/125) requests, plus one
	// each for input, coil and discrete.
	st := m.ModbusStats()
	polls := st.Polls
	reqs := int64((len(hr)+124)/125 + 3)
	if st.Slaves[0].Requests < reqs*polls || st.Slaves[0].Requests > reqs*(polls+1) || !st.Connected || !st.Slaves[0].Up {
		t.Errorf("stats %+v: want %d requests a poll", st, reqs)
	}
	if strings.Contains(lb.String(), "level=WARN") {
		t.Errorf("warnings:\n%s", lb)
	}
	// A value changed on the slave is read at the next poll.
	sl.Set(1, "ir", 0, 700)
	waitFor(t, "the new value", 5*time.Second, func() bool { return latest(app)["dev/temp"] == 0.1*700-40 })
}

// TestModbusRTUSlaves: three slaves on one RTU line (a pty), each with its
// values; the faults of one are counted per slave and do not stop the
// others: an illegal address, a busy slave, a bad CRC, a short answer, a
// slave that stops answering (its readings stop) and comes back; NaN is
// quarantined.
func TestModbusRTUSlaves(t *testing.T) {
	sl := modbustest.StartRTU(t, modbustest.Config{Units: map[int]modbustest.Unit{
		1:  {HR: []uint16{100, 0x41ac, 0x0000}},
		2:  {HR: []uint16{200}, IR: []uint16{0x7fc0, 0, 5}},
		17: {HR: []uint16{300, 301}, CO: []uint16{1}},
	}}, 115200)
	reg := func(name, kind string, addr uint16, typ string) ModbusRegister {
		return ModbusRegister{Name: name, Kind: kind, Address: addr, Type: typ, Scale: 1}
	}
	m := &Modbus{Port: sl.Dev, Baud: 115200, Slaves: []ModbusSlave{
		{ID: 1, Sensor: "s1", Registers: []ModbusRegister{reg("a", "holding", 0, "uint16"), reg("f", "holding", 1, "float32")}},
		{ID: 2, Sensor: "s2", Registers: []ModbusRegister{reg("a", "holding", 0, "uint16"), reg("nan", "input", 0, "float32"), reg("ok", "input", 2, "uint16"),
			reg("missing", "holding", 40, "uint16")}},
		{ID: 17, Sensor: "s17", Registers: []ModbusRegister{reg("a", "holding", 0, "uint16"), reg("b", "holding", 1, "uint16"), reg("k", "coil", 0, "")}},
	}}
	app, lb := runModbus(t, m)
	want := map[string]float64{"s1/a": 100, "s1/f": 21.5, "s2/a": 200, "s2/ok": 5, "s17/a": 300, "s17/b": 301, "s17/k": 1}
	waitFor(t, "every slave's values", 10*time.Second, func() bool { return len(latest(app)) == len(want) })
	for k, v := range latest(app) {
		if want[k] != v {
			t.Errorf("%s = %v, want %v", k, v, want[k])
		}
	}
	q := app.quarantine()
	if len(q) == 0 || !strings.Contains(q[0].Reason, `register "nan" (slave 2, input 0, float32): NaN is not a number`) || string(q[0].Payload) != `{"slave":2,"register":"nan","raw":"7fc00000"}` {
		t.Fatalf("quarantine %+v", q)
	}
	stat := func(id int) ModbusSlaveStats {
		for _, s := range m.ModbusStats().Slaves {
			if s.Slave == id {
				return s
			}
		}
		t.Fatalf("no stats for slave %d", id)
		return ModbusSlaveStats{}
	}
	reason := func(name string) int {
		for i, r := range ModbusErrorReasons {
			if r == name {
				return i
			}
		}
		t.Fatalf("no reason %q", name)
		return 0
	}
	waitFor(t, "the illegal address counted", 5*time.Second, func() bool { return stat(2).Errors[reason("illegal_data_address")] >= 2 })
	if !strings.Contains(lb.String(), `msg="modbus read failed" source=mb reason=illegal_data_address`) || !strings.Contains(lb.String(), "slave=2 registers=missing kind=holding address=40 count=1") {
		t.Errorf("the illegal address is not logged with its register:\n%s", lb)
	}
	if n := lb.count("reason=illegal_data_address"); n != 1 {
		t.Errorf("the illegal address logged %d times, want once (rate-limited)", n)
	}

	count := func(sensor string) int {
		n := 0
		for _, e := range app.entries() {
			if e.Sensor == sensor {
				n++
			}
		}
		return n
	}
	for _, fault := range []struct{ mode, reason string }{{"busy", "server_device_busy"}, {"crc", "crc"}, {"short", "frame"}, {"silent", "timeout"}} {
		before := stat(1).Errors[reason(fault.reason)]
		sl.Mode(1, fault.mode, 0)
		waitFor(t, fault.mode+" counted", 10*time.Second, func() bool { return stat(1).Errors[reason(fault.reason)] >= before+2 })
		n1, n17 := count("s1"), count("s17")
		waitFor(t, "the other slaves polled on", 10*time.Second, func() bool { return count("s17") >= n17+6 })
		if count("s1") != n1 {
			t.Errorf("%s: slave 1 gave readings", fault.mode)
		}
		if fault.mode == "silent" && stat(1).Up {
			t.Errorf("a silent slave is up")
		}
		if fault.mode == "busy" && !stat(1).Up {
			t.Errorf("a busy slave answers: it is up")
		}
		sl.Mode(1, "normal", 0)
		waitFor(t, "slave 1 back", 10*time.Second, func() bool { return count("s1") >= n1+4 })
	}
	if !strings.Contains(lb.String(), `msg="modbus read works again" source=mb slave=1 registers=a,f`) {
		t.Errorf("the recovery is not logged:\n%s", lb)
	}
	if s := stat(17); s.Errors != [mbReasons]int64{} || !s.Up {
		t.Errorf("slave 17 %+v: no errors", s)
	}
}

// TestModbusRTUReconnect: the line is pulled out mid-run and plugged back
// at the same path: the readings stop and resume, the loss is logged once,
// the reconnect counted.
func TestModbusRTUReconnect(t *testing.T) {
	sl := modbustest.StartRTU(t, modbustest.Config{Units: map[int]modbustest.Unit{3: {IR: []uint16{1}}}}, 9600)
	m := &Modbus{Port: sl.Dev, Baud: 9600, Slaves: []ModbusSlave{{ID: 3, Sensor: "m", Registers: []ModbusRegister{{Name: "v", Kind: "input", Scale: 1}}}}}
	app, lb := runModbus(t, m)
	waitFor(t, "readings", 10*time.Second, func() bool { return len(app.values("m")) >= 3 })
	if !m.ModbusStats().Connected {
		t.Error("not connected")
	}

	sl.Unplug()
	waitFor(t, "the loss logged", 5*time.Second, func() bool { return lb.count("modbus controller lost") == 1 })
	if m.ModbusStats().Connected || m.ModbusStats().Slaves[0].Up {
		t.Errorf("stats while unplugged: %+v", m.ModbusStats())
	}
	n := len(app.values("m"))
	time.Sleep(700 * time.Millisecond) // a few failed opens while it is away
	if len(app.values("m")) != n {
		t.Error("readings while unplugged")
	}

	sl.Plug()
	sl.Set(3, "ir", 0, 2)
	waitFor(t, "readings after the reconnect", 10*time.Second, func() bool { v := app.values("m"); return v[len(v)-1] == 2 })
	if m.Reconnects() != 1 || !m.ModbusStats().Connected {
		t.Errorf("%d reconnects (want 1), stats %+v", m.Reconnects(), m.ModbusStats())
	}
	log := lb.String()
	if got := strings.Count(log, "level=WARN msg=\"modbus controller"); got != 1 {
		t.Errorf("%d warnings about the controller, want 1 for the whole outage:\n%s", got, log)
	}
	if !strings.Contains(log, `msg="modbus controller reconnected" source=mb controller=`+sl.Dev) {
		t.Errorf("reconnect not logged with the path:\n%s", log)
	}
}

// TestModbusTCPReconnect: the device goes away (its port refuses), and
// comes back; a slow answer is a timeout that leaves the connection up,
// and the late answer is not taken for the next one.
func TestModbusTCPReconnect(t *testing.T) {
	sl := modbustest.StartTCP(t, modbustest.Config{Units: map[int]modbustest.Unit{1: {HR: []uint16{7, 8}}}})
	m := &Modbus{TCP: sl.Addr, Timeout: 200 * time.Millisecond, Slaves: []ModbusSlave{{ID: 1, Sensor: "p", Registers: []ModbusRegister{
		{Name: "a", Kind: "holding", Address: 0, Scale: 1}}}}}
	app, lb := runModbus(t, m)
	waitFor(t, "readings", 10*time.Second, func() bool { return len(app.values("p")) >= 3 })

	// Slow: timeouts, the connection stays.
	sl.Mode(1, "delay", 350)
	waitFor(t, "timeouts", 10*time.Second, func() bool { return m.ModbusStats().Slaves[0].Errors[mbTimeout] >= 2 })
	sl.Set(1, "hr", 0, 9)
	sl.Mode(1, "normal", 0)
	waitFor(t, "the new value", 10*time.Second, func() bool { v := app.values("p"); return v[len(v)-1] == 9 })
	n := len(app.values("p"))
	waitFor(t, "more readings", 10*time.Second, func() bool { return len(app.values("p")) >= n+5 })
	for _, v := range app.values("p")[n:] {
		if v != 9 {
			t.Fatalf("a late answer was read as a new one: %v", app.values("p")[n:])
		}
	}
	if m.Reconnects() != 0 {
		t.Errorf("%d reconnects for timeouts, want 0", m.Reconnects())
	}

	// The device goes away and comes back on the same port.
	sl.Unplug()
	waitFor(t, "the loss logged", 5*time.Second, func() bool { return lb.count("modbus controller lost") == 1 })
	time.Sleep(500 * time.Millisecond)
	if m.ModbusStats().Connected {
		t.Error("connected while the device is away")
	}
	sl.Plug()
	sl.Set(1, "hr", 0, 11)
	waitFor(t, "readings after the reconnect", 10*time.Second, func() bool { v := app.values("p"); return v[len(v)-1] == 11 })
	if m.Reconnects() != 1 {
		t.Errorf("%d reconnects, want 1", m.Reconnects())
	}
}

// TestModbusUnsyncedClock: while the gateway's clock is not synchronised a
// poll's values are quarantined, one payload per slave, not stamped.
func TestModbusUnsyncedClock(t *testing.T) {
	sl := modbustest.StartTCP(t, modbustest.Config{Units: map[int]modbustest.Unit{1: {HR: []uint16{5, 6}}, 2: {HR: []uint16{7}}}})
	clk := &Clock{Floor: time.Now().Add(24 * time.Hour)}
	m := &Modbus{TCP: sl.Addr, Clock: clk, Slaves: []ModbusSlave{
		{ID: 1, Sensor: "a", Registers: []ModbusRegister{{Name: "x", Kind: "holding", Scale: 1}, {Name: "y", Kind: "holding", Address: 1, Scale: 1}}},
		{ID: 2, Sensor: "b", Registers: []ModbusRegister{{Name: "x", Kind: "holding", Scale: 1}}}}}
	app, lb := runModbus(t, m)
	waitFor(t, "quarantined polls", 10*time.Second, func() bool { return len(app.quarantine()) >= 4 })
	if len(app.entries()) != 0 {
		t.Fatalf("readings stamped by an unsynchronised clock: %+v", app.entries())
	}
	q := app.quarantine()
	if !strings.HasPrefix(q[0].Reason, "clock not synchronised") || !strings.HasPrefix(string(q[0].Payload), `{"sensor":"a","ts":`) ||
		!strings.HasSuffix(string(q[0].Payload), `,"x":5,"y":6}`) || string(q[1].Payload[:14]) != `{"sensor":"b",` {
		t.Errorf("quarantine %q %q", q[0].Payload, q[1].Payload)
	}
	if n := lb.count("modbus poll quarantined"); n != 1 {
		t.Errorf("logged %d times, want once a minute", n)
	}
}

// TestModbusSkippedPolls: a poll that takes longer than poll_every skips
// the polls it overlaps, and counts them.
func TestModbusSkippedPolls(t *testing.T) {
	sl := modbustest.StartTCP(t, modbustest.Config{Units: map[int]modbustest.Unit{1: {HR: []uint16{5}}}})
	sl.Mode(1, "delay", 120)
	m := &Modbus{TCP: sl.Addr, PollEvery: 30 * time.Millisecond, Timeout: time.Second, Slaves: []ModbusSlave{
		{ID: 1, Sensor: "a", Registers: []ModbusRegister{{Name: "x", Kind: "holding", Scale: 1}}}}}
	app, _ := runModbus(t, m)
	waitFor(t, "readings", 10*time.Second, func() bool { return len(app.values("a")) >= 4 })
	st := m.ModbusStats()
	if st.PollsSkipped < 2*st.Polls || st.PollSeconds < 0.1 {
		t.Errorf("stats %+v: each poll of 120 ms skips 3 or 4 of 30 ms", st)
	}
}

// TestModbusStopsPromptly: a source waiting for a slow answer stops at
// once when its context ends, not after its timeout, over TCP and RTU.
func TestModbusStopsPromptly(t *testing.T) {
	cfg := modbustest.Config{Units: map[int]modbustest.Unit{1: {HR: []uint16{5}}}}
	for _, rtu := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "rtu"}[rtu], func(t *testing.T) {
			m := &Modbus{Name: "mb", Timeout: 20 * time.Second, Slaves: []ModbusSlave{
				{ID: 1, Sensor: "a", Registers: []ModbusRegister{{Name: "x", Kind: "holding", Scale: 1}}}}}
			var sl *modbustest.Slave
			if rtu {
				sl = modbustest.StartRTU(t, cfg, 115200)
				m.Port, m.Baud = sl.Dev, 115200
			} else {
				sl = modbustest.StartTCP(t, cfg)
				m.TCP = sl.Addr
			}
			sl.Mode(1, "delay", 3000)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx, &fakeApp{}) }()
			waitFor(t, "a request in flight", 10*time.Second, func() bool { return m.ModbusStats().Connected })
			time.Sleep(300 * time.Millisecond)
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil || time.Since(start) > time.Second {
					t.Errorf("Run: %v after %v", err, time.Since(start))
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run still waits for the slow answer")
			}
			if st := m.ModbusStats(); st.Slaves[0].Requests != 0 || st.Connected {
				t.Errorf("stats %+v: the request cut by the stop is not counted, and the port is closed", st)
			}
		})
	}
}
