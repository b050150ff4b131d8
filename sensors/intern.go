package sensors

import (
	"strconv"
	"unicode/utf8"
)

// Interning bounds. A decoder keeps at most maxInterned names and forgets
// them all when one more arrives (a stream of ever-new names then costs one
// allocation per name, as without interning). Names longer than
// maxInternLen are not kept at all.
const (
	maxInterned  = 4096
	maxInternLen = 256
)

// interner hands out one shared string per distinct name, so that a decoder
// in steady state returns readings without allocating. It belongs to one
// decoder and is not safe for concurrent use.
type interner struct {
	m      map[string]string
	recent [8]string // a direct-mapped cache in front of m: streams repeat their names
	buf    []byte    // scratch for names that need repair
}

// text returns b as a string, replacing each byte of an invalid UTF-8
// sequence with U+FFFD (as encoding/json does), so that every name a decoder
// returns is valid UTF-8.
func (in *interner) text(b []byte) string {
	if !utf8.Valid(b) {
		in.buf = appendValidUTF8(in.buf[:0], b)
		b = in.buf
	}
	return in.valid(b)
}

// valid is text for b known to be valid UTF-8.
func (in *interner) valid(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	slot := &in.recent[(len(b)+int(b[0])+int(b[len(b)-1])<<1)&(len(in.recent)-1)]
	if string(b) == *slot {
		return *slot
	}
	if len(b) > maxInternLen {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		*slot = s
		return s
	}
	if in.m == nil {
		in.m = make(map[string]string, 64)
	} else if len(in.m) >= maxInterned {
		clear(in.m)
	}
	s := string(b)
	in.m[s] = s
	*slot = s
	return s
}

// appendValidUTF8 appends b to dst with every byte that does not start a
// valid UTF-8 sequence replaced by U+FFFD.
func appendValidUTF8(dst, b []byte) []byte {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return dst
}

// fieldSet collects the names of one payload's fields in order of first
// appearance, remembering for each the position of its last occurrence, so
// that a duplicate key keeps its first place and takes its last value (as a
// JavaScript or Python object built from the payload would).
type fieldSet struct {
	slots   []fieldSlot
	index   map[string]int // name -> slot, used once the set outgrows linearMax
	indexed bool
}

type fieldSlot struct {
	name string
	ref  int // the caller's index of the name's last occurrence
}

// linearMax is the number of names up to which a linear scan beats a map.
const linearMax = 8

func (s *fieldSet) reset() {
	s.slots = s.slots[:0]
	if s.indexed {
		clear(s.index)
		s.indexed = false
	}
}

// put records that name occurs at ref.
func (s *fieldSet) put(name string, ref int) {
	if s.indexed {
		if j, ok := s.index[name]; ok {
			s.slots[j].ref = ref
			return
		}
		s.index[name] = len(s.slots)
	} else {
		for j := range s.slots {
			if s.slots[j].name == name {
				s.slots[j].ref = ref
				return
			}
		}
		if len(s.slots) == linearMax {
			if s.index == nil {
				s.index = make(map[string]int)
			}
			for j, sl := range s.slots {
				s.index[sl.name] = j
			}
			s.index[name] = len(s.slots)
			s.indexed = true
		}
	}
	s.slots = append(s.slots, fieldSlot{name, ref})
}

// maxExcerpt bounds the quoted text of a payload excerpt in an error.
const maxExcerpt = 40

// excerpt quotes the start of b for an error message, in at most
// maxExcerpt bytes plus "..." (binary bytes take four bytes each quoted).
func excerpt(b []byte) string {
	q := strconv.Quote(string(b))
	if len(q) <= maxExcerpt {
		return q
	}
	n := min(len(b), maxExcerpt-2)
	for {
		for n > 0 && n < len(b) && !utf8.RuneStart(b[n]) {
			n--
		}
		if q = strconv.Quote(string(b[:n])); len(q) <= maxExcerpt || n == 0 {
			return q + "..."
		}
		n = n * 2 / 3
	}
}

// quoteName quotes a field or column name for an error message.
func quoteName(s string) string {
	if len(s) <= maxExcerpt-2 {
		return strconv.Quote(s)
	}
	return excerpt([]byte(s))
}
