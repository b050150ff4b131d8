package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The modbus source's vocabulary: register kinds, value types and byte
// orders (Telegraf's names).
var (
	modbusKinds  = []string{"coil", "discrete", "holding", "input"}
	modbusTypes  = []string{"int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool"}
	modbusOrders = map[int][]string{ // by the width of the type in bits
		16: {"AB", "BA", "ABCD", "DCBA", "BADC"},
		32: {"ABCD", "DCBA", "BADC", "CDAB"},
		64: {"ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB", "ABCD", "DCBA", "BADC", "CDAB"},
	}
)

// Defaults of a modbus source.
const (
	DefaultModbusPollEvery = Duration(time.Second)
	DefaultModbusTimeout   = Duration(time.Second)
	DefaultModbusTCPPort   = "502"
)

// ModbusTypeBits is the width of a register type in bits (1 for bool, 0
// for an unknown type).
func ModbusTypeBits(typ string) int {
	switch typ {
	case "bool":
		return 1
	case "int16", "uint16":
		return 16
	case "int32", "uint32", "float32":
		return 32
	case "int64", "uint64", "float64":
		return 64
	}
	return 0
}

// ModbusController is a parsed controller: a TCP address or a serial
// device path (RTU).
type ModbusController struct {
	TCP  string // host:port, for Modbus TCP
	Path string // the device, for RTU ("" when found by USB identity)
}

// RTU reports whether the controller is a serial line.
func (c ModbusController) RTU() bool { return c.TCP == "" }

// ParseModbusController reads a controller URL: "tcp://host[:port]" or
// "file:///dev/ttyUSB0". An empty one is an RTU line found by its USB
// identity.
func ParseModbusController(s string) (ModbusController, error) {
	const hint = `use "tcp://192.168.1.20:502" for Modbus TCP or "file:///dev/ttyUSB0" for RTU on a serial line`
	if s == "" {
		return ModbusController{}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return ModbusController{}, fmt.Errorf("invalid controller %q: %s", s, hint)
	}
	switch strings.ToLower(u.Scheme) {
	case "tcp":
		if u.Host == "" || u.Path != "" && u.Path != "/" {
			return ModbusController{}, fmt.Errorf("invalid controller %q: %s", s, hint)
		}
		host, port := u.Hostname(), u.Port()
		if host == "" {
			return ModbusController{}, fmt.Errorf("invalid controller %q: no host; %s", s, hint)
		}
		if port == "" {
			port = DefaultModbusTCPPort
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return ModbusController{}, fmt.Errorf("invalid controller %q: port %q: %s", s, port, hint)
		}
		return ModbusController{TCP: net.JoinHostPort(host, port)}, nil
	case "file":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return ModbusController{}, fmt.Errorf("invalid controller %q: the device path must be absolute, with three slashes: %s", s, hint)
		}
		return ModbusController{Path: u.Path}, nil
	}
	return ModbusController{}, fmt.Errorf("invalid controller %q: unknown scheme %q; %s", s, u.Scheme, hint)
}

// ModbusSlaves returns the slaves of a modbus source, in the one form
// whichever the file used: its slave_id and registers, or its [[slave]]
// tables. The sensor of a slave without one is filled in.
func (s *Source) ModbusSlaves() []ModbusSlave {
	if len(s.Slave) == 0 {
		sensor := s.Sensor
		if sensor == "" {
			sensor = s.Name
		}
		return []ModbusSlave{{SlaveID: s.SlaveID, Sensor: sensor, Registers: s.Registers}}
	}
	out := slices.Clone(s.Slave)
	for i := range out {
		if out[i].Sensor == "" {
			out[i].Sensor = s.Name + "-" + strconv.Itoa(out[i].SlaveID)
		}
	}
	return out
}

// modbusKeys are the keys a modbus source uses; modbusOnly those that only
// it uses.
var (
	modbusKeys   = []string{"name", "type", "max_out_of_orderness", "sensor", "controller", "slave_id", "registers", "slave", "timeout", "poll_every", "baud", "data_bits", "parity", "stop_bits", "usb_vid", "usb_pid", "usb_serial"}
	modbusOnly   = []string{"controller", "slave_id", "registers", "slave", "timeout"}
	modbusSerial = []string{"baud", "data_bits", "parity", "stop_bits", "usb_vid", "usb_pid", "usb_serial"}
)

// modbusDefaults fills in a modbus source's defaults; at is its key path
// ("source.N.").
func modbusDefaults(s *Source, at string, m *meta) {
	unset := func(path string, zero bool) bool { return zero && !m.isSet(path) }
	if unset(at+"poll_every", s.PollEvery == 0) {
		s.PollEvery = DefaultModbusPollEvery
	}
	if unset(at+"timeout", s.Timeout == 0) {
		s.Timeout = DefaultModbusTimeout
	}
	if len(s.Slave) == 0 && unset(at+"slave_id", s.SlaveID == 0) {
		s.SlaveID = 1
	}
	if ctl, err := ParseModbusController(s.Controller); err == nil && ctl.RTU() {
		if unset(at+"baud", s.Baud == 0) {
			s.Baud = DefaultBaud
		}
		if s.DataBits == 0 {
			s.DataBits = 8
		}
		if s.Parity == "" {
			s.Parity = "none"
		}
		if s.StopBits == 0 {
			s.StopBits = 1
		}
	}
	regs := func(at string, rs []ModbusRegister) {
		for j := range rs {
			r := &rs[j]
			rat := at + strconv.Itoa(j) + "."
			if r.Type == "" {
				r.Type = "uint16"
				if r.Kind == "coil" || r.Kind == "discrete" {
					r.Type = "bool"
				}
			}
			if r.ByteOrder == "" {
				switch ModbusTypeBits(r.Type) {
				case 16:
					r.ByteOrder = "AB"
				case 32:
					r.ByteOrder = "ABCD"
				case 64:
					r.ByteOrder = "ABCDEFGH"
				}
			}
			if unset(rat+"scale", r.Scale == 0) {
				r.Scale = 1
			}
		}
	}
	regs(at+"registers.", s.Registers)
	for i := range s.Slave {
		regs(at+"slave."+strconv.Itoa(i)+".registers.", s.Slave[i].Registers)
	}
}

// modbus checks a modbus source: the controller, the serial settings of an
// RTU line, the slaves and their register maps.
func (v validator) modbus(l loc, s *Source) {
	// Keys of other source types have no effect here: refuse them.
	for _, k := range v.m.keysUnder(l.key) {
		if !slices.Contains(modbusKeys, k) {
			v.add(l.child(k), "not used by a modbus source (it reads registers, not payloads): remove it; a modbus source takes %s", strings.Join(modbusKeys, ", "))
		}
	}
	usb := s.USBVID != "" || s.USBPID != "" || s.USBSerial != ""
	cl := l.child("controller")
	ctl, err := ParseModbusController(s.Controller)
	switch {
	case err != nil:
		v.add(cl, "%v", err)
	case s.Controller == "" && !usb:
		v.add(cl, `missing: a modbus source needs controller = "tcp://192.168.1.20:502" (Modbus TCP) or "file:///dev/ttyUSB0" (RTU; or usb_vid/usb_pid/usb_serial to find the adapter, edged ports lists them)`)
	case !ctl.RTU():
		for _, k := range modbusSerial {
			if v.m.isSet(l.key + "." + k) {
				v.add(l.child(k), "%s is for an RTU line (controller = \"file:///dev/...\"), not Modbus TCP: remove it", k)
			}
		}
	default:
		if s.Baud <= 0 {
			v.add(l.child("baud"), "invalid baud %d: use the line's rate, e.g. 9600 or 19200", s.Baud)
		}
		if s.DataBits != 7 && s.DataBits != 8 {
			v.add(l.child("data_bits"), "invalid data_bits %d: Modbus RTU uses 8 (or 7 on old devices)", s.DataBits)
		}
		v.oneOf(l.child("parity"), s.Parity, []string{"none", "odd", "even", "mark", "space"}, false)
		if s.StopBits != 1 && s.StopBits != 1.5 && s.StopBits != 2 {
			v.add(l.child("stop_bits"), "invalid stop_bits %v: use 1, 1.5 or 2", s.StopBits)
		}
		for _, f := range []struct{ key, val string }{{"usb_vid", s.USBVID}, {"usb_pid", s.USBPID}} {
			if f.val != "" && !hex4.MatchString(f.val) {
				v.add(l.child(f.key), "invalid %s %q: use 4 hex digits as edged ports shows them, e.g. \"0403\"", f.key, f.val)
			}
		}
	}
	if s.PollEvery < Duration(time.Millisecond) {
		v.add(l.child("poll_every"), `must be at least "1ms", e.g. "1s"`)
	}
	if s.Timeout < Duration(time.Millisecond) || s.Timeout > Duration(time.Minute) {
		v.add(l.child("timeout"), `must be between "1ms" and "1m", e.g. "500ms": how long a slave may take to answer`)
	}
	if s.Sensor != "" && !namePattern.MatchString(s.Sensor) {
		v.add(l.child("sensor"), "invalid sensor %q: use only letters, digits, '_', '.' and '-'", s.Sensor)
	}

	idMax, idHint := 255, "0 to 255 (the unit id; 1 or 255 for most TCP devices)"
	if ctl.RTU() {
		idMax, idHint = 247, "1 to 247 (the slave's address on the line)"
	}
	checkID := func(l loc, id int) {
		if id > idMax || id < 0 || ctl.RTU() && id == 0 {
			v.add(l, "invalid slave_id %d: use %s", id, idHint)
		}
	}
	if len(s.Slave) == 0 {
		checkID(l.child("slave_id"), s.SlaveID)
		v.modbusRegisters(l.child("registers"), s.Registers)
		return
	}
	for _, k := range []string{"slave_id", "registers"} {
		if v.m.isSet(l.key + "." + k) {
			v.add(l.child(k), "set slave_id and registers for one slave, or one [[source.slave]] table per slave, not both: move them into a [[source.slave]]")
		}
	}
	if v.m.isSet(l.key + ".sensor") {
		v.add(l.child("sensor"), "sensor names the readings of a source with one slave: with [[source.slave]] tables set sensor in each (default \"<source>-<slave_id>\")")
	}
	sl := l.child("slave")
	ids := map[int]string{}
	sensors := map[string]string{}
	for i := range s.Slave {
		sv := &s.Slave[i]
		el := sl.index(i, "")
		el.disp = fmt.Sprintf("%s[%d] (slave_id %d)", sl.disp, i, sv.SlaveID)
		idl := el.child("slave_id")
		if !v.m.isSet(idl.key) {
			v.add(idl, "missing: every [[source.slave]] needs its slave_id")
		} else {
			checkID(idl, sv.SlaveID)
		}
		if first, dup := ids[sv.SlaveID]; dup {
			v.add(idl, "duplicate slave_id %d, already polled by %s: list each slave once", sv.SlaveID, first)
			continue
		}
		ids[sv.SlaveID] = v.where(el)
		sensor := sv.Sensor
		if sensor == "" {
			sensor = s.Name + "-" + strconv.Itoa(sv.SlaveID)
		} else if !namePattern.MatchString(sensor) {
			v.add(el.child("sensor"), "invalid sensor %q: use only letters, digits, '_', '.' and '-'", sensor)
		}
		if first, dup := sensors[sensor]; dup {
			v.add(el.child("sensor"), "sensor %q is already the sensor of %s: give each slave its own, or their readings mix", sensor, first)
		}
		sensors[sensor] = v.where(el)
		v.modbusRegisters(el.child("registers"), sv.Registers)
	}
}

// where names the element at l with its line, for messages that point
// at a first occurrence.
func (v validator) where(l loc) string {
	if ln := v.m.line(l.key); ln > 0 {
		return fmt.Sprintf("%s at line %d", l.disp, ln)
	}
	return l.disp
}

// modbusRegisters checks one slave's register map: every register's
// name, kind, type, address and byte order, and that no two overlap.
func (v validator) modbusRegisters(l loc, rs []ModbusRegister) {
	if len(rs) == 0 {
		v.add(l, `missing: list the values to read, e.g. registers = [{ name = "temp", kind = "holding", address = 0, type = "float32" }]`)
		return
	}
	type span struct {
		kind       string
		start, end int // [start, end) in registers, or in bits for coil and discrete
		l, el      loc // the address, the register
		name       string
	}
	var spans []span
	names := map[string]string{}
	for i := range rs {
		r := &rs[i]
		el := l.index(i, r.Name)
		switch nl := el.child("name"); {
		case r.Name == "":
			v.add(nl, "missing: every register needs a name (the metric of its readings)")
		case !namePattern.MatchString(r.Name):
			v.add(nl, "invalid name %q: use only letters, digits, '_', '.' and '-' (it becomes the metric)", r.Name)
		default:
			if first, dup := names[r.Name]; dup {
				v.add(nl, "duplicate name %q, already used by %s: give each register of a slave its own name", r.Name, first)
			}
			names[r.Name] = v.where(el)
		}
		kindOK := v.oneOf(el.child("kind"), r.Kind, modbusKinds, true)
		typeOK := v.oneOf(el.child("type"), r.Type, modbusTypes, true)
		bits := ModbusTypeBits(r.Type)
		if kindOK && typeOK {
			bitKind := r.Kind == "coil" || r.Kind == "discrete"
			switch {
			case bitKind && r.Type != "bool":
				v.add(el.child("type"), "type %s is too long for a %s, which holds one bit: use type = \"bool\" (or leave type out), or kind = \"holding\" or \"input\" for a %d-bit value", r.Type, r.Kind, bits)
				typeOK = false
			case !bitKind && r.Type == "bool":
				v.add(el.child("type"), "type bool is for kind coil or discrete: a %s register holds 16 bits; use uint16 (a status word) or int16", r.Kind)
				typeOK = false
			}
		}
		words := 1
		if bits > 16 {
			words = bits / 16
		}
		al := el.child("address")
		addrOK := true
		if r.Address < 0 || r.Address+words-1 > 65535 {
			v.add(al, "invalid address %d: protocol addresses are 0 to 65535, counted from 0 (Modicon 40001 is holding address 0), and a %s needs %d of them", r.Address, r.Type, words)
			addrOK = false
		}
		ol := el.child("byte_order")
		if typeOK {
			switch {
			case bits == 1:
				if v.m.isSet(ol.key) {
					v.add(ol, "a %s holds one bit and has no byte order: remove byte_order", r.Kind)
				}
			case !slices.Contains(modbusOrders[bits], r.ByteOrder):
				msg := fmt.Sprintf("invalid byte_order %q for a %d-bit %s: use %s", r.ByteOrder, bits, r.Type, quoteList(modbusOrders[bits], " or "))
				if bits == 16 && slices.Contains(modbusOrders[32], r.ByteOrder) {
					msg = fmt.Sprintf("byte_order %q swaps 16-bit words, but a %s is one word: use \"AB\" (big-endian, the default) or \"BA\" (bytes swapped)", r.ByteOrder, r.Type)
				} else if bits == 32 && slices.Contains(modbusOrders[64], r.ByteOrder) {
					msg = fmt.Sprintf("byte_order %q is for 64-bit types, but a %s has 4 bytes: use %s", r.ByteOrder, r.Type, quoteList(modbusOrders[32], " or "))
				}
				v.add(ol, "%s", msg)
			}
		}
		if sc := el.child("scale"); math.IsNaN(r.Scale) || math.IsInf(r.Scale, 0) || r.Scale == 0 {
			v.add(sc, "invalid scale %v: use a finite number other than 0 (the value is raw * scale + offset)", r.Scale)
		}
		if math.IsNaN(r.Offset) || math.IsInf(r.Offset, 0) {
			v.add(el.child("offset"), "invalid offset %v: use a finite number", r.Offset)
		}
		if kindOK && typeOK && addrOK {
			spans = append(spans, span{r.Kind, r.Address, r.Address + words, al, el, r.Name})
		}
	}
	// Overlaps, per kind (each kind is its own address space).
	for i := range spans {
		for j := 0; j < i; j++ {
			a, b := spans[j], spans[i]
			if a.kind != b.kind || b.start >= a.end || a.start >= b.end {
				continue
			}
			v.add(b.l, "%s %q at %d-%d overlaps %s %q at %d-%d (%s): each address is read as one value; fix the address, or remove one of them",
				b.kind, b.name, b.start, b.end-1, a.kind, a.name, a.start, a.end-1, v.where(a.el))
		}
	}
}

// modbusShared refuses two modbus sources on one RTU line: one port can
// be opened once, and the slaves of a line go in one source's
// [[source.slave]] tables, polled one request at a time.
func (v validator) modbusShared(srcs []Source) {
	seen := map[string]string{}
	for i := range srcs {
		s := &srcs[i]
		if s.Type != "modbus" {
			continue
		}
		ctl, err := ParseModbusController(s.Controller)
		if err != nil || !ctl.RTU() {
			continue
		}
		line := "path " + ctl.Path
		if s.USBVID != "" || s.USBPID != "" || s.USBSerial != "" {
			line = fmt.Sprintf("USB %s:%s:%s", strings.ToUpper(s.USBVID), strings.ToUpper(s.USBPID), strings.ToLower(s.USBSerial))
		}
		l := loc{key: "source", disp: "source"}.index(i, s.Name)
		if first, dup := seen[line]; dup {
			v.add(l.child("controller"), "the RTU line (%s) is already polled by %s: a serial port opens once; put this source's slaves into that source as [[source.slave]] tables", line, first)
			continue
		}
		seen[line] = v.where(l)
	}
}

// keysUnder lists the keys written in the file directly under path.
func (m *meta) keysUnder(path string) []string {
	var out []string
	prefix := path + "."
	for k := range m.set {
		if rest, ok := strings.CutPrefix(k, prefix); ok && !strings.Contains(rest, ".") {
			out = append(out, rest)
		}
	}
	slices.Sort(out)
	return out
}
