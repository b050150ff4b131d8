package ingest

import (
	"fmt"
	"math"
	"slices"
)

// This file turns a register map into requests (the plan) and the bytes of
// a response into values. It does no I/O.

// mbKind is a Modbus data table.
type mbKind uint8

const (
	mbCoil mbKind = iota
	mbDiscrete
	mbHolding
	mbInput
)

var mbKindNames = [...]string{"coil", "discrete", "holding", "input"}

func (k mbKind) String() string { return mbKindNames[k] }

// bits reports whether the table holds single bits (coil, discrete).
func (k mbKind) bits() bool { return k == mbCoil || k == mbDiscrete }

// maxCount is the most a read request may ask for: 2000 bits or 125
// registers (the Modbus application protocol).
func (k mbKind) maxCount() int {
	if k.bits() {
		return 2000
	}
	return 125
}

// mbType is how a register's bytes are read.
type mbType uint8

const (
	mbBool mbType = iota
	mbInt16
	mbUint16
	mbInt32
	mbUint32
	mbInt64
	mbUint64
	mbFloat32
	mbFloat64
)

var mbTypeNames = [...]string{"bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"}

func (t mbType) String() string { return mbTypeNames[t] }

// words is the number of 16-bit registers a value of the type takes (1
// bit for bool).
func (t mbType) words() int {
	switch t {
	case mbInt32, mbUint32, mbFloat32:
		return 2
	case mbInt64, mbUint64, mbFloat64:
		return 4
	}
	return 1
}

// mbOrder says how the bytes of a value are laid out in its registers,
// relative to big-endian (ABCD): the registers in reverse order (CDAB),
// the two bytes of each register swapped (BADC), or both (DCBA).
type mbOrder struct{ wordSwap, byteSwap bool }

// mbOrders are the byte orders by width in bits: the 64-bit forms, and
// the four-letter names applied to 64-bit values by the same pattern.
var mbOrders = map[int]map[string]mbOrder{
	16: {"AB": {}, "BA": {byteSwap: true}, "ABCD": {}, "BADC": {byteSwap: true}, "DCBA": {byteSwap: true}},
	32: {"ABCD": {}, "CDAB": {wordSwap: true}, "BADC": {byteSwap: true}, "DCBA": {wordSwap: true, byteSwap: true}},
	64: {"ABCDEFGH": {}, "GHEFCDAB": {wordSwap: true}, "BADCFEHG": {byteSwap: true}, "HGFEDCBA": {wordSwap: true, byteSwap: true},
		"ABCD": {}, "CDAB": {wordSwap: true}, "BADC": {byteSwap: true}, "DCBA": {wordSwap: true, byteSwap: true}},
}

// mbReg is a register of the plan.
type mbReg struct {
	name   string // the metric
	kind   mbKind
	addr   uint16
	typ    mbType
	order  mbOrder
	scale  float64
	offset float64
}

// compileRegister checks r and returns it in the plan's form.
func compileRegister(r ModbusRegister) (mbReg, error) {
	out := mbReg{name: r.Name, addr: r.Address, scale: r.Scale, offset: r.Offset}
	if r.Name == "" {
		return out, fmt.Errorf("a register at %s %d has no name", r.Kind, r.Address)
	}
	k := slices.Index(mbKindNames[:], r.Kind)
	if k < 0 {
		return out, fmt.Errorf("register %q: unknown kind %q (coil, discrete, holding or input)", r.Name, r.Kind)
	}
	out.kind = mbKind(k)
	typ := r.Type
	if typ == "" {
		typ = "uint16"
		if out.kind.bits() {
			typ = "bool"
		}
	}
	t := slices.Index(mbTypeNames[:], typ)
	if t < 0 {
		return out, fmt.Errorf("register %q: unknown type %q", r.Name, typ)
	}
	out.typ = mbType(t)
	if out.kind.bits() != (out.typ == mbBool) {
		return out, fmt.Errorf("register %q: type %s does not fit a %s", r.Name, typ, r.Kind)
	}
	if out.typ != mbBool {
		width := 16 * out.typ.words()
		name := r.ByteOrder
		if name == "" {
			name = "ABCD"
		}
		o, ok := mbOrders[width][name]
		if !ok {
			return out, fmt.Errorf("register %q: byte order %q does not fit a %d-bit %s", r.Name, r.ByteOrder, width, typ)
		}
		out.order = o
	}
	if int(r.Address)+out.typ.words() > 65536 {
		return out, fmt.Errorf("register %q: a %s at %d runs past address 65535", r.Name, typ, r.Address)
	}
	if out.scale == 0 {
		out.scale = 1
	}
	return out, nil
}

// mbBlock is one read request: count registers (or bits) of kind from
// start, covering regs.
type mbBlock struct {
	kind  mbKind
	start uint16
	count uint16
	regs  []mbReg
	names string // of its registers, for logs
	log   failLog
}

// planBlocks groups registers into as few requests as the protocol
// allows: registers of one kind that are adjacent (or overlap) share a
// request of up to 125 registers (2000 bits). Gaps are never read, so a
// device with a sparse map does not answer "illegal address".
func planBlocks(regs []mbReg) []mbBlock {
	sorted := slices.Clone(regs)
	slices.SortStableFunc(sorted, func(a, b mbReg) int {
		if a.kind != b.kind {
			return int(a.kind) - int(b.kind)
		}
		return int(a.addr) - int(b.addr)
	})
	var out []mbBlock
	for _, r := range sorted {
		end := int(r.addr) + r.typ.words()
		if n := len(out); n > 0 {
			b := &out[n-1]
			bend := int(b.start) + int(b.count)
			if b.kind == r.kind && int(r.addr) <= bend && max(end, bend)-int(b.start) <= r.kind.maxCount() {
				b.count = uint16(max(end, bend) - int(b.start))
				b.regs = append(b.regs, r)
				b.names += "," + r.name
				continue
			}
		}
		out = append(out, mbBlock{kind: r.kind, start: r.addr, count: uint16(end - int(r.addr)), regs: []mbReg{r}, names: r.name})
	}
	return out
}

// need is how many bytes a response to b must carry.
func (b *mbBlock) need() int {
	if b.kind.bits() {
		return (int(b.count) + 7) / 8
	}
	return 2 * int(b.count)
}

// raw returns the value of r, whose block starts at start, from the
// response data as it came off the wire: bits packed from the least
// significant bit of the first byte; registers as big-endian 16-bit words.
// data must hold the whole block (need).
func (r *mbReg) raw(data []byte, start uint16) uint64 {
	off := int(r.addr - start)
	if r.typ == mbBool {
		return uint64(data[off/8]>>(off%8)) & 1
	}
	n := r.typ.words()
	b := data[2*off : 2*off+2*n]
	var v uint64
	for i := range n {
		w := i
		if r.order.wordSwap {
			w = n - 1 - i
		}
		hi, lo := b[2*w], b[2*w+1]
		if r.order.byteSwap {
			hi, lo = lo, hi
		}
		v = v<<16 | uint64(hi)<<8 | uint64(lo)
	}
	return v
}

// value is raw read as the register's type, then scaled: raw * scale +
// offset. A float register holding NaN or an infinity gives a value that
// is not finite; the caller quarantines it.
func (r *mbReg) value(raw uint64) float64 {
	var v float64
	switch r.typ {
	case mbBool, mbUint16, mbUint32, mbUint64:
		v = float64(raw)
	case mbInt16:
		v = float64(int16(raw))
	case mbInt32:
		v = float64(int32(raw))
	case mbInt64:
		v = float64(int64(raw))
	case mbFloat32:
		v = float64(math.Float32frombits(uint32(raw)))
	case mbFloat64:
		v = math.Float64frombits(raw)
	}
	if r.scale == 1 && r.offset == 0 {
		return v // integers above 2^53 stay as exact as float64 allows
	}
	return v*r.scale + r.offset
}
