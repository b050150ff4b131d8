package cep

import (
	"encoding/binary"
	"errors"
	"math"
)

// States encode themselves with these helpers: a version byte, then fixed
// little-endian fields and length-prefixed slices, read back through a
// cursor with a sticky error.

func appendU64(b []byte, v uint64) []byte  { return binary.LittleEndian.AppendUint64(b, v) }
func appendU32(b []byte, v uint32) []byte  { return binary.LittleEndian.AppendUint32(b, v) }
func appendI64(b []byte, v int64) []byte   { return appendU64(b, uint64(v)) }
func appendF64(b []byte, v float64) []byte { return appendU64(b, math.Float64bits(v)) }
func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendLifecycle encodes a Lifecycle.
func appendLifecycle(b []byte, l *Lifecycle) []byte {
	b = appendBool(b, l.Firing)
	return appendI64(b, l.LastNotify)
}

var errState = errors.New("bad detector state")

// decoder reads what the append helpers wrote.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) u64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.err = errState
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) u32() uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.err = errState
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) i64() int64   { return int64(d.u64()) }
func (d *decoder) f64() float64 { return math.Float64frombits(d.u64()) }

func (d *decoder) byte1() byte {
	if d.err != nil || len(d.b) < 1 {
		d.err = errState
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bool1() bool { return d.byte1() == 1 }

// count reads a slice length, refusing one the rest cannot hold (each
// element takes at least min bytes).
func (d *decoder) count(min int) int {
	n := d.u64()
	if d.err == nil && n > uint64(len(d.b)/max(1, min)) {
		d.err = errState
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func (d *decoder) lifecycle(l *Lifecycle) {
	l.Firing = d.bool1()
	l.LastNotify = d.i64()
}

// version checks the leading version byte.
func (d *decoder) version(want byte) {
	if d.byte1() != want && d.err == nil {
		d.err = errState
	}
}

// versions reads the leading version byte, which must be within [lo, hi],
// and returns it.
func (d *decoder) versions(lo, hi byte) byte {
	v := d.byte1()
	if (v < lo || v > hi) && d.err == nil {
		d.err = errState
	}
	return v
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errState
	}
	return d.err
}
