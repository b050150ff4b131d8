package ingest

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"testing"
)

// wireOrder spells a byte order out for a value of n bytes: the byte of
// the big-endian value at each position on the wire ("CDAB": C first).
// The four-letter names of 64-bit values follow the same pattern.
func wireOrder(order string, n int) string {
	if n == 8 && len(order) == 4 {
		return map[string]string{"ABCD": "ABCDEFGH", "CDAB": "GHEFCDAB", "BADC": "BADCFEHG", "DCBA": "HGFEDCBA"}[order]
	}
	if n == 2 && len(order) == 4 {
		return map[string]string{"ABCD": "AB", "BADC": "BA", "DCBA": "BA"}[order]
	}
	return order
}

// onWire lays the big-endian bytes be out as order says, as registers:
// an oracle written apart from the decoder (by letters, not by swaps).
func onWire(order string, be []byte) []uint16 {
	o := wireOrder(order, len(be))
	wire := make([]byte, len(be))
	for i := range wire {
		wire[i] = be[o[i]-'A']
	}
	regs := make([]uint16, len(wire)/2)
	for i := range regs {
		regs[i] = binary.BigEndian.Uint16(wire[2*i:])
	}
	return regs
}

// regBytes is registers as they come in a response.
func regBytes(regs []uint16) []byte {
	out := make([]byte, 2*len(regs))
	for i, r := range regs {
		binary.BigEndian.PutUint16(out[2*i:], r)
	}
	return out
}

// beBytes is v as big-endian bytes of its type's width.
func beBytes(typ string, v float64) []byte {
	b := make([]byte, 8)
	switch typ {
	case "int16":
		return binary.BigEndian.AppendUint16(nil, uint16(int16(v)))
	case "uint16":
		return binary.BigEndian.AppendUint16(nil, uint16(v))
	case "int32":
		return binary.BigEndian.AppendUint32(nil, uint32(int32(v)))
	case "uint32":
		return binary.BigEndian.AppendUint32(nil, uint32(v))
	case "float32":
		return binary.BigEndian.AppendUint32(nil, math.Float32bits(float32(v)))
	case "int64":
		binary.BigEndian.PutUint64(b, uint64(int64(v)))
	case "uint64":
		binary.BigEndian.PutUint64(b, uint64(v))
	case "float64":
		binary.BigEndian.PutUint64(b, math.Float64bits(v))
	}
	return b
}

// typeCases are values of every type that float64 holds exactly.
var typeCases = []struct {
	typ    string
	v      float64
	orders []string
}{
	{"int16", -12345, []string{"AB", "BA", "ABCD", "BADC", "DCBA"}},
	{"uint16", 65535, []string{"AB", "BA"}},
	{"uint16", 0x1234, []string{"AB", "BA"}},
	{"int32", -2000000001, []string{"ABCD", "DCBA", "BADC", "CDAB"}},
	{"uint32", 4000000001, []string{"ABCD", "DCBA", "BADC", "CDAB"}},
	{"float32", 21.5, []string{"ABCD", "DCBA", "BADC", "CDAB"}},
	{"float32", -0.15625, []string{"ABCD", "DCBA", "BADC", "CDAB"}},
	{"int64", -1234567890123, []string{"ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB", "ABCD", "DCBA", "BADC", "CDAB"}},
	{"uint64", 1<<63 + 1<<40, []string{"ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB"}},
	{"float64", math.Pi, []string{"ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB", "CDAB"}},
	{"float64", -1e300, []string{"ABCDEFGH", "HGFEDCBA"}},
}

func TestModbusValueEveryTypeAndOrder(t *testing.T) {
	for _, tc := range typeCases {
		for _, order := range tc.orders {
			reg, err := compileRegister(ModbusRegister{Name: "x", Kind: "holding", Address: 10, Type: tc.typ, ByteOrder: order, Scale: 1})
			if err != nil {
				t.Fatalf("%s %s: %v", tc.typ, order, err)
			}
			regs := onWire(order, beBytes(tc.typ, tc.v))
			// The value sits after two other registers of its block.
			data := regBytes(append([]uint16{0xdead, 0xbeef}, regs...))
			if got := reg.value(reg.raw(data, 8)); got != tc.v {
				t.Errorf("%s %s on the wire as %04x: got %v, want %v", tc.typ, order, regs, got, tc.v)
			}
		}
	}
	// Scale and offset; bits.
	reg, _ := compileRegister(ModbusRegister{Name: "x", Kind: "input", Type: "int16", Scale: 0.1, Offset: -40})
	if got := reg.value(reg.raw(regBytes([]uint16{uint16(0xffff & -5)}), 0)); math.Abs(got-(-40.5)) > 1e-12 {
		t.Errorf("int16 -5 * 0.1 - 40 = %v", got)
	}
	coil, _ := compileRegister(ModbusRegister{Name: "c", Kind: "coil", Address: 11, Scale: 1})
	for addr, want := range map[uint16]float64{11: 1, 12: 0, 18: 1, 19: 0} {
		coil.addr = addr
		// Bits from address 3: byte 0 holds 3..10, byte 1 holds 11..18.
		if got := coil.value(coil.raw([]byte{0x00, 0x81, 0x00}, 3)); got != want {
			t.Errorf("coil %d: %v, want %v", addr, got, want)
		}
	}
}

func TestModbusCompileRefuses(t *testing.T) {
	for _, r := range []ModbusRegister{
		{Name: "", Kind: "holding"},
		{Name: "a", Kind: "holdings"},
		{Name: "a", Kind: "coil", Type: "float32"},
		{Name: "a", Kind: "input", Type: "bool"},
		{Name: "a", Kind: "input", Type: "int16", ByteOrder: "CDAB"},
		{Name: "a", Kind: "input", Type: "float32", ByteOrder: "ABCDEFGH"},
		{Name: "a", Kind: "input", Type: "float64", Address: 65533},
	} {
		if _, err := compileRegister(r); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}

func TestModbusPlan(t *testing.T) {
	mk := func(name, kind string, addr uint16, typ string) mbReg {
		r, err := compileRegister(ModbusRegister{Name: name, Kind: kind, Address: addr, Type: typ, Scale: 1})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	regs := []mbReg{
		mk("c", "holding", 2, "float32"),  // 2-3
		mk("a", "holding", 0, "uint16"),   // 0
		mk("b", "holding", 1, "int16"),    // 1: a, b, c adjacent
		mk("gap", "holding", 5, "uint16"), // 4 is not read
		mk("i", "input", 0, "float64"),    // another table
		mk("k1", "coil", 0, ""), mk("k2", "coil", 1, ""), mk("k9", "coil", 9, ""),
	}
	for a := uint16(100); a < 100+130; a++ { // 130 adjacent registers: two requests
		regs = append(regs, mk("r"+strconv.Itoa(int(a)), "input", a, "uint16"))
	}
	var got []string
	for _, b := range planBlocks(regs) {
		got = append(got, b.kind.String()+":"+strconv.Itoa(int(b.start))+"+"+strconv.Itoa(int(b.count)))
	}
	want := []string{"coil:0+2", "coil:9+1", "holding:0+4", "holding:5+1", "input:0+4", "input:100+125", "input:225+5"}
	if !slices.Equal(got, want) {
		t.Errorf("plan %v, want %v", got, want)
	}
	if b := planBlocks(regs)[2]; b.names != "a,b,c" || b.need() != 8 {
		t.Errorf("block %q needs %d bytes", b.names, b.need())
	}
}

// FuzzModbusValue: any response bytes and any register of the map decode
// without a panic, and every byte order reads what the oracle laid out.
func FuzzModbusValue(f *testing.F) {
	f.Add([]byte{0x41, 0xac, 0, 0, 1, 2, 3, 4}, uint8(0), uint8(0))
	f.Add([]byte{0xff, 0xff, 0x7f, 0xc0, 0, 0, 0, 0}, uint8(5), uint8(3))
	types := []string{"int16", "uint16", "int32", "uint32", "float32", "int64", "uint64", "float64"}
	f.Fuzz(func(t *testing.T, data []byte, ti, oi uint8) {
		typ := types[int(ti)%len(types)]
		width := 2
		switch typ {
		case "int32", "uint32", "float32":
			width = 4
		case "int64", "uint64", "float64":
			width = 8
		}
		var names []string
		for n := range mbOrders[8*width] {
			names = append(names, n)
		}
		slices.Sort(names)
		order := names[int(oi)%len(names)]
		if len(data) < width {
			return
		}
		be := data[:width]
		reg, err := compileRegister(ModbusRegister{Name: "x", Kind: "input", Type: typ, ByteOrder: order, Scale: 1})
		if err != nil {
			t.Fatal(err)
		}
		raw := reg.raw(regBytes(onWire(order, be)), 0)
		want := uint64(0)
		for _, b := range be {
			want = want<<8 | uint64(b)
		}
		if raw != want {
			t.Fatalf("%s %s: raw %x, want %x", typ, order, raw, want)
		}
		_ = reg.value(raw)
	})
}
