package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The example, as written: a PLC over TCP with one slave.
const modbusTCPExample = `[[source]]
name       = "plc"
type       = "modbus"
controller = "tcp://192.168.1.20:502"
slave_id   = 1
poll_every = "1s"
timeout    = "500ms"
registers  = [
  { name = "temp",  kind = "holding", address = 0, type = "float32", byte_order = "ABCD", scale = 1.0 },
  { name = "count", kind = "input",   address = 10, type = "uint32", byte_order = "CDAB" },
  { name = "alarm", kind = "coil",    address = 3 },
]
`

func TestModbusDefaults(t *testing.T) {
	c, err := Parse("edged.toml", []byte(modbusTCPExample))
	if err != nil {
		t.Fatal(err)
	}
	s := &c.Sources[0]
	if s.Format != "" || s.Baud != 0 || s.Timeout.D() != 500*time.Millisecond || s.PollEvery.D() != time.Second {
		t.Errorf("source %+v: no format and no serial settings for TCP, the timeout and poll as written", s)
	}
	r := s.Registers
	if r[1].Scale != 1 || r[2].Type != "bool" || r[2].ByteOrder != "" || r[1].ByteOrder != "CDAB" {
		t.Errorf("registers %+v", r)
	}
	sl := s.ModbusSlaves()
	if len(sl) != 1 || sl[0].SlaveID != 1 || sl[0].Sensor != "plc" || len(sl[0].Registers) != 3 {
		t.Errorf("slaves %+v", sl)
	}
	checkRoundTrip(t, c)

	// RTU, several slaves, defaults everywhere.
	c, err = Parse("edged.toml", []byte(`[[source]]
name = "meters"
type = "modbus"
controller = "file:///dev/ttyUSB0"
[[source.slave]]
slave_id = 1
registers = [{ name = "v", kind = "input", address = 0 }, { name = "e", kind = "holding", address = 0, type = "float64" }]
[[source.slave]]
slave_id = 2
sensor = "meter-b"
registers = [{ name = "v", kind = "input", address = 0, type = "int32" }]
`))
	if err != nil {
		t.Fatal(err)
	}
	s = &c.Sources[0]
	if s.Baud != 9600 || s.DataBits != 8 || s.Parity != "none" || s.StopBits != 1 || s.PollEvery.D() != time.Second || s.Timeout.D() != time.Second {
		t.Errorf("RTU defaults %+v", s)
	}
	sl = s.ModbusSlaves()
	if sl[0].Sensor != "meters-1" || sl[1].Sensor != "meter-b" || sl[0].Registers[0].Type != "uint16" || sl[0].Registers[0].ByteOrder != "AB" ||
		sl[0].Registers[1].ByteOrder != "ABCDEFGH" || sl[1].Registers[0].ByteOrder != "ABCD" {
		t.Errorf("slaves %+v", sl)
	}
	checkRoundTrip(t, c)

	// A TCP unit id 0 survives the effective config.
	c, err = Parse("edged.toml", []byte("[[source]]\nname=\"p\"\ntype=\"modbus\"\ncontroller=\"tcp://h\"\nslave_id=0\nregisters=[{name=\"a\",kind=\"coil\",address=0}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sources[0].SlaveID != 0 {
		t.Fatalf("slave_id %d", c.Sources[0].SlaveID)
	}
	checkRoundTrip(t, c)
}

func TestModbusController(t *testing.T) {
	for in, want := range map[string]ModbusController{
		"tcp://10.0.0.1":        {TCP: "10.0.0.1:502"},
		"tcp://plc.local:1502/": {TCP: "plc.local:1502"},
		"tcp://[::1]:502":       {TCP: "[::1]:502"},
		"file:///dev/ttyUSB0":   {Path: "/dev/ttyUSB0"},
		"":                      {},
	} {
		got, err := ParseModbusController(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"udp://h:502", "tcp://", "tcp://h:70000", "file://dev/ttyUSB0", "/dev/ttyUSB0", "tcp://h/x"} {
		if _, err := ParseModbusController(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestModbusRegisterMap: every mistake in a register map is reported at
// its line, with the fix.
func TestModbusRegisterMap(t *testing.T) {
	head := "[[source]]\nname = \"plc\"\ntype = \"modbus\"\ncontroller = \"tcp://127.0.0.1:502\"\nregisters = [\n"
	reg := func(name string, lines ...string) problemCase {
		return problemCase{name: name, config: head + strings.Join(lines, "\n") + "\n]\n"}
	}
	cases := []problemCase{}
	add := func(tc problemCase, line int, want ...string) {
		tc.line, tc.want = line, want
		cases = append(cases, tc)
	}
	add(reg("overlap",
		`{ name = "a", kind = "holding", address = 0, type = "float32" },`,
		`{ name = "b", kind = "input", address = 1 },`,
		`{ name = "c", kind = "holding", address = 1, type = "uint16" },`), 8,
		`edged.toml:8: source[0] "plc": registers[2] "c": address: holding "c" at 1-1 overlaps holding "a" at 0-1 (source[0] "plc": registers[0] "a" at line 6)`)
	add(reg("overlap 64-bit",
		`{ name = "a", kind = "input", address = 10, type = "uint16" },`,
		`{ name = "b", kind = "input", address = 7, type = "float64" },`), 7, `input "b" at 7-10 overlaps input "a" at 10-10`)
	add(reg("coil too long", `{ name = "a", kind = "coil", address = 0, type = "float32" },`), 6,
		`type: type float32 is too long for a coil, which holds one bit: use type = "bool"`)
	add(reg("bool register", `{ name = "a", kind = "input", address = 0, type = "bool" },`), 6, `type bool is for kind coil or discrete`)
	add(reg("CDAB on int16", `{ name = "a", kind = "holding", address = 0, type = "int16", byte_order = "CDAB" },`), 6,
		`byte_order: byte_order "CDAB" swaps 16-bit words, but a int16 is one word: use "AB"`)
	add(reg("64-bit order on float32", `{ name = "a", kind = "holding", address = 0, type = "float32", byte_order = "GHEFCDAB" },`), 6,
		`byte_order "GHEFCDAB" is for 64-bit types, but a float32 has 4 bytes`)
	add(reg("bad order", `{ name = "a", kind = "holding", address = 0, type = "uint64", byte_order = "ABDC" },`), 6,
		`invalid byte_order "ABDC" for a 64-bit uint64: use "ABCDEFGH", "HGFEDCBA"`)
	add(reg("order on coil", `{ name = "a", kind = "discrete", address = 0, byte_order = "AB" },`), 6, `a discrete holds one bit and has no byte order`)
	add(reg("address past the end", `{ name = "a", kind = "holding", address = 65535, type = "uint32" },`), 6,
		`address: invalid address 65535: protocol addresses are 0 to 65535`)
	add(reg("negative address", `{ name = "a", kind = "holding", address = -1 },`), 6, `invalid address -1`)
	add(reg("duplicate name", `{ name = "a", kind = "holding", address = 0 },`, `{ name = "a", kind = "holding", address = 1 },`), 7,
		`duplicate name "a", already used by source[0] "plc": registers[0] "a" at line 6`)
	add(reg("no kind", `{ name = "a", address = 0 },`), 6, `kind: missing: set kind = "coil", "discrete", "holding" or "input"`)
	add(reg("bad type", `{ name = "a", kind = "holding", address = 0, type = "float" },`), 6, `type: invalid value "float"`)
	add(reg("no name", `{ kind = "holding", address = 0 },`), 6, `name: missing: every register needs a name`)
	add(reg("scale 0", `{ name = "a", kind = "holding", address = 0, scale = 0.0 },`), 6, `invalid scale 0`)
	add(reg("unknown register key", `{ name = "a", kind = "holding", address = 0, bit = 3 },`), 6, `unknown key "bit"`)
	runProblemCases(t, cases)

	// Several problems at once, each on its line.
	_, err := Parse("edged.toml", []byte(head+`{ name = "a", kind = "coil", address = 0, type = "int32" },
{ name = "b", kind = "holding", address = 0, type = "int16", byte_order = "CDAB" },
{ name = "c", kind = "holding", address = 0 },
]
`))
	var cerr *Error
	if !errors.As(err, &cerr) || len(cerr.Problems) != 3 || cerr.Problems[0].Line != 6 || cerr.Problems[1].Line != 7 || cerr.Problems[2].Line != 8 {
		t.Fatalf("want 3 problems on lines 6, 7 and 8: %v", err)
	}
}

func TestModbusSourceKeys(t *testing.T) {
	regs := "registers = [{ name = \"a\", kind = \"holding\", address = 0 }]\n"
	src := func(lines ...string) string {
		return "[[source]]\nname = \"m\"\ntype = \"modbus\"\n" + strings.Join(lines, "\n") + "\n"
	}
	runProblemCases(t, []problemCase{
		{"no controller", src(regs), []string{`controller: missing: a modbus source needs controller = "tcp://`}, 1},
		{"bad scheme", src(`controller = "udp://h:502"`, regs), []string{`edged.toml:4: source[0] "m": controller: invalid controller "udp://h:502": unknown scheme "udp"`}, 4},
		{"serial key on tcp", src(`controller = "tcp://h"`, `baud = 9600`, regs), []string{`baud: baud is for an RTU line`}, 5},
		{"format", src(`controller = "tcp://h"`, `format = "json"`, regs), []string{`format: not used by a modbus source`}, 5},
		{"mqtt key", src(`controller = "tcp://h"`, regs, `topics = ["a"]`), []string{`topics: not used by a modbus source`}, 7},
		{"rtu slave 0", src(`controller = "file:///dev/ttyUSB0"`, `slave_id = 0`, regs), []string{`slave_id: invalid slave_id 0: use 1 to 247`}, 5},
		{"tcp slave 256", src(`controller = "tcp://h"`, `slave_id = 256`, regs), []string{`invalid slave_id 256: use 0 to 255`}, 5},
		{"rtu data bits", src(`controller = "file:///dev/ttyUSB0"`, `data_bits = 5`, regs), []string{`invalid data_bits 5`}, 5},
		{"no registers", src(`controller = "tcp://h"`), []string{`registers: missing: list the values to read`}, 1},
		{"timeout", src(`controller = "tcp://h"`, `timeout = "0s"`, regs), []string{`timeout: must be between "1ms" and "1m"`}, 5},
		{"poll", src(`controller = "tcp://h"`, `poll_every = "0s"`, regs), []string{`poll_every: must be at least "1ms"`}, 5},
		{"both forms", src(`controller = "tcp://h"`, `slave_id = 3`, `[[source.slave]]`, `slave_id = 1`, regs), []string{`slave_id: set slave_id and registers for one slave, or one [[source.slave]] table per slave, not both`}, 5},
		{"sensor with slaves", src(`controller = "tcp://h"`, `sensor = "x"`, `[[source.slave]]`, `slave_id = 1`, regs), []string{`edged.toml:5: source[0] "m": sensor: sensor names the readings of a source with one slave`}, 5},
		{"slave without id", src(`controller = "tcp://h"`, `[[source.slave]]`, regs), []string{`slave[0] (slave_id 0): slave_id: missing: every [[source.slave]] needs its slave_id`}, 5},
		{"duplicate slave", src(`controller = "tcp://h"`, `[[source.slave]]`, `slave_id = 1`, regs, `[[source.slave]]`, `slave_id = 1`, regs), []string{`edged.toml:10: source[0] "m": slave[1] (slave_id 1): slave_id: duplicate slave_id 1, already polled by source[0] "m": slave[0] (slave_id 1) at line 5`}, 10},
		{"duplicate sensor", src(`controller = "tcp://h"`, `[[source.slave]]`, `slave_id = 1`, `sensor = "x"`, regs, `[[source.slave]]`, `slave_id = 2`, `sensor = "x"`, regs), []string{`sensor "x" is already the sensor of`}, 12},
		{"modbus key on serial", "[[source]]\nname = \"s\"\ntype = \"serial\"\nport = \"/dev/ttyS0\"\nslave_id = 1\n", []string{`edged.toml:5: source[0] "s": slave_id: slave_id is a key of modbus sources`}, 5},
		{"shared RTU line", src(`controller = "file:///dev/ttyUSB0"`, regs) + "[[source]]\nname = \"m2\"\ntype = \"modbus\"\ncontroller = \"file:///dev/ttyUSB0\"\n" + regs,
			[]string{`edged.toml:10: source[1] "m2": controller: the RTU line (path /dev/ttyUSB0) is already polled by source[0] "m" at line 1`}, 10},
	})
	// Two TCP sources to one device are fine; a USB identity needs no
	// controller.
	for _, ok := range []string{
		src(`controller = "tcp://h"`, regs) + "[[source]]\nname = \"m2\"\ntype = \"modbus\"\ncontroller = \"tcp://h\"\n" + regs,
		src(`usb_vid = "0403"`, `usb_pid = "6001"`, `baud = 19200`, `parity = "even"`, regs),
	} {
		if _, err := Parse("edged.toml", []byte(ok)); err != nil {
			t.Errorf("%v\n%s", err, ok)
		}
	}
}
