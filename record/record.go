// Package record owns the format of edged's output records (SEMANTICS
// section 5): the record kinds and their names, the envelope that a record
// leaving the device carries (`device`, `seq`, `id`), how a record's id is
// derived from its identity, the JSON encoding of strings and numbers in a
// record, and the parsing of a record read back (another gateway's record
// to relay, an alert's state for a topic). The pipeline writes a record's
// body, the runner closes it with the envelope, ingest recognises and
// relays other gateways' records, the uplink reads what it needs for its
// topics: all through this package, which imports nothing of edged's.
package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// Kind is the type of an output record. Its number is stored in the
// outbox (store.Record.Kind); its name is the record's "type" field.
type Kind uint8

// Record kinds.
const (
	KindWindow Kind = iota + 1
	KindLate
	KindAlert
)

// String returns the record type as written in JSON ("unknown" for a kind
// edged does not define).
func (k Kind) String() string {
	switch k {
	case KindWindow:
		return "window"
	case KindLate:
		return "late"
	case KindAlert:
		return "alert"
	}
	return "unknown"
}

// ParseKind returns the kind named s.
func ParseKind(s string) (Kind, bool) {
	switch s {
	case "window":
		return KindWindow, true
	case "late":
		return KindLate, true
	case "alert":
		return KindAlert, true
	}
	return 0, false
}

// AppendEnvelope closes body, a record's JSON object as the pipeline writes
// it (ending in '}'), with the fields of a record that leaves the device:
// `device`, `seq` and `id`, in that order, last.
func AppendEnvelope(body []byte, device string, seq uint64, id string) []byte {
	if n := len(body); n > 0 && body[n-1] == '}' {
		body = body[:n-1] // reopen the object
	}
	body = append(body, `,"device":`...)
	body = AppendString(body, device)
	body = append(body, `,"seq":`...)
	body = strconv.AppendUint(body, seq, 10)
	body = append(body, `,"id":"`...)
	body = append(body, id...)
	return append(body, `"}`...)
}

// windowFields are the fields of a window record that are not aggregates.
var windowFields = map[string]bool{"type": true, "window": true, "key": true, "start": true, "end": true,
	"rev": true, "final": true, "device": true, "seq": true, "id": true}

// IsAggregate reports whether a field of a window record (as read back)
// holds an aggregate: every field but the window's identity and the
// envelope.
func IsAggregate(field string) bool { return !windowFields[field] }

// A record's id is derived from its identity only (SEMANTICS section 5), so
// that a record recomputed after a crash gets the same id: the first 16
// bytes of the SHA-256 of the kind's name, the device and the identity
// fields, each followed by a 0 byte, in hex.

// WindowID is the id of a window record: device, window, key, start, rev.
func WindowID(device, window, key string, start int64, rev int32) string {
	var h idHash
	h.str(KindWindow.String())
	h.str(device)
	h.str(window)
	h.str(key)
	h.num(start)
	h.num(int64(rev))
	return h.sum()
}

// AlertID is the id of an alert: device, detector, key, ts, state.
func AlertID(device, detector, key string, ts int64, state string) string {
	var h idHash
	h.str(KindAlert.String())
	h.str(device)
	h.str(detector)
	h.str(key)
	h.num(ts)
	h.str(state)
	return h.sum()
}

// LateID is the id of a late record: device, window, source, sensor,
// metric, ts and the value's bits.
func LateID(device, window, source, sensor, metric string, ts int64, value float64) string {
	var h idHash
	h.str(KindLate.String())
	h.str(device)
	h.str(window)
	h.str(source)
	h.str(sensor)
	h.str(metric)
	h.num(ts)
	h.num(int64(math.Float64bits(value)))
	return h.sum()
}

type idHash struct{ b []byte }

func (h *idHash) str(s string) { h.b = append(append(h.b, s...), 0) }
func (h *idHash) num(v int64)  { h.b = append(strconv.AppendInt(h.b, v, 10), 0) }
func (h *idHash) sum() string {
	sum := sha256.Sum256(h.b)
	return hex.EncodeToString(sum[:16])
}

// Envelope is what a record read back says about itself: its kind, the
// envelope (device, seq, id) and the fields that name it in topics.
type Envelope struct {
	Kind   Kind
	Device string
	Seq    uint64
	ID     string
	Name   string // the window (window and late records) or the detector (alerts)
	Key    string
	State  string // an alert's state
}

// parsed is the JSON shape Parse reads.
type parsed struct {
	Type     string `json:"type"`
	Device   string `json:"device"`
	Seq      uint64 `json:"seq"`
	ID       string `json:"id"`
	Window   string `json:"window"`
	Detector string `json:"detector"`
	Key      string `json:"key"`
	State    string `json:"state"`
}

// Parse recognises an edged record that left its device: one JSON object
// of a known type with a non-empty device and id and a seq of at least 1.
// Anything else (a sensor's payload, a record without its envelope, a JSON
// array) is not one. A cheap look at the bytes comes first, so sensor
// payloads cost little.
func Parse(p []byte) (Envelope, bool) {
	p = bytes.TrimSpace(p)
	if !bytes.HasPrefix(p, []byte(`{"type":"`)) || !bytes.Contains(p, []byte(`"device":`)) || !bytes.Contains(p, []byte(`"id":"`)) {
		return Envelope{}, false
	}
	return parse(p)
}

// parse is Parse's slow path, apart so that its variable, which escapes
// into json.Unmarshal, is not allocated for every sensor payload (an MQTT
// source calls Parse on each message: issue 13's zero allocations).
func parse(p []byte) (Envelope, bool) {
	var r parsed
	if json.Unmarshal(p, &r) != nil || r.Device == "" || r.ID == "" || r.Seq == 0 {
		return Envelope{}, false
	}
	k, ok := ParseKind(r.Type)
	if !ok {
		return Envelope{}, false
	}
	e := Envelope{Kind: k, Device: r.Device, Seq: r.Seq, ID: r.ID, Name: r.Window, Key: r.Key, State: r.State}
	if k == KindAlert {
		e.Name = r.Detector
	}
	return e, true
}

// AppendFloat appends v as a JSON number the way encoding/json writes a
// float64 (shortest representation, exponent only for very large or small
// magnitudes). NaN and infinities, which JSON cannot carry, become null.
func AppendFloat(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(v)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, v, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a quoted JSON string, escaping what JSON
// requires and replacing invalid UTF-8 with U+FFFD.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
