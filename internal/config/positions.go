package config

import (
	"bytes"
	"strconv"
	"strings"
)

// pos is a place in the config text: a 1-based line and byte column.
type pos struct{ line, col int }

// positions maps key paths to where they are written. A path joins keys with
// "." and numbers array elements and [[array]] tables from 0 in file order:
// "window.1.size" is the size key of the second [[window]], and
// "source.0.topics.2" is the third entry of the first source's topics.
// A path also maps every prefix to its first appearance, so "window.1" is
// the line of the second [[window]] header.
type positions map[string]pos

// record notes at for path and for every prefix of path not seen before.
func (p positions) record(path []string, at pos) {
	for i := 1; i <= len(path); i++ {
		k := strings.Join(path[:i], ".")
		if _, ok := p[k]; !ok {
			p[k] = at
		}
	}
}

// scanPositions finds the line of every table header, key and array element
// in src, which BurntSushi/toml has already accepted as valid TOML (the
// decoder does not expose positions). It is a small tolerant lexer: it
// follows [table] and [[array]] headers (counting the elements of each
// array of tables), dotted and quoted keys, inline tables, and strings and
// arrays that span lines, and never fails; a key it cannot place is
// reported at the line of its table instead.
func scanPositions(src []byte) positions {
	s := &scanner{src: src, line: 1, pos: positions{}, arrays: map[string]int{}}
	if strings.HasPrefix(string(src), "\uFEFF") {
		s.i = 3
		s.lineStart = 3
	}
	var table []string
	for s.i < len(s.src) {
		s.skipBlank()
		if s.eof() {
			break
		}
		switch c := s.src[s.i]; c {
		case '\n':
			s.advance()
		case '#':
			s.skipToEOL()
		case '[':
			at := s.here()
			s.i++
			array := s.peek() == '['
			if array {
				s.i++
			}
			table = s.resolve(s.keys(), array)
			s.pos.record(table, at)
			s.skipToEOL()
		default:
			at := s.here()
			keys := s.keys()
			s.skipBlank()
			if s.peek() != '=' {
				s.skipToEOL()
				continue
			}
			s.i++
			path := append(append([]string(nil), table...), keys...)
			s.pos.record(path, at)
			s.skipBlank()
			s.value(path)
		}
	}
	return s.pos
}

type scanner struct {
	src       []byte
	i         int
	line      int
	lineStart int
	pos       positions
	arrays    map[string]int // elements seen so far per array-of-tables path
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

func (s *scanner) here() pos { return pos{line: s.line, col: s.i - s.lineStart + 1} }

// advance moves past one byte, counting lines.
func (s *scanner) advance() {
	if s.eof() {
		return
	}
	if s.src[s.i] == '\n' {
		s.line++
		s.lineStart = s.i + 1
	}
	s.i++
}

// skipBlank skips spaces, tabs and carriage returns on the current line.
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.src[s.i] {
		case ' ', '\t', '\r':
			s.i++
		default:
			return
		}
	}
}

// skipToEOL moves to the next newline without consuming it.
func (s *scanner) skipToEOL() {
	for !s.eof() && s.src[s.i] != '\n' {
		s.i++
	}
}

// skipSpace skips blanks, newlines and comments, as allowed inside arrays
// and (TOML 1.1) inline tables.
func (s *scanner) skipSpace() {
	for !s.eof() {
		switch s.src[s.i] {
		case ' ', '\t', '\r', '\n':
			s.advance()
		case '#':
			s.skipToEOL()
		default:
			return
		}
	}
}

// keys reads a possibly dotted, possibly quoted key.
func (s *scanner) keys() []string {
	var keys []string
	for {
		s.skipBlank()
		keys = append(keys, s.key())
		s.skipBlank()
		if s.peek() != '.' {
			return keys
		}
		s.i++
	}
}

// key reads one bare or quoted key. It always consumes at least one byte
// unless at the end of a line, so the scanner cannot loop.
func (s *scanner) key() string {
	switch c := s.peek(); c {
	case '"', '\'':
		start := s.i
		s.str()
		raw := string(s.src[start:s.i])
		if len(raw) >= 2 && raw[len(raw)-1] == c {
			raw = raw[1 : len(raw)-1]
		} else {
			raw = strings.TrimLeft(raw, string(c))
		}
		if c == '"' {
			return unescapeBasic(raw)
		}
		return raw
	case '\n', 0:
		return ""
	}
	start := s.i
	for !s.eof() && !strings.ContainsRune(" \t\r\n=.[]#\"',{}", rune(s.src[s.i])) {
		s.i++
	}
	if s.i == start {
		s.i++
	}
	return string(s.src[start:s.i])
}

// resolve turns the keys of a header into a path, numbering the arrays of
// tables it passes through with their current (last) element.
func (s *scanner) resolve(keys []string, array bool) []string {
	var path []string
	for j, k := range keys {
		path = append(path, k)
		name := strings.Join(path, ".")
		if j == len(keys)-1 && array {
			n := s.arrays[name]
			s.arrays[name] = n + 1
			path = append(path, strconv.Itoa(n))
		} else if n, ok := s.arrays[name]; ok {
			path = append(path, strconv.Itoa(n-1))
		}
	}
	return path
}

// value skips one value, recording the elements of arrays and the keys of
// inline tables under path.
func (s *scanner) value(path []string) {
	switch s.peek() {
	case '"', '\'':
		s.str()
	case '[':
		s.i++
		for n := 0; ; {
			s.skipSpace()
			switch s.peek() {
			case 0:
				return
			case ']':
				s.i++
				return
			case ',':
				s.i++
				continue
			}
			ep := append(append([]string(nil), path...), strconv.Itoa(n))
			s.pos.record(ep, s.here())
			before := s.i
			s.value(ep)
			if s.i == before {
				s.i++
			}
			n++
		}
	case '{':
		s.i++
		for {
			s.skipSpace()
			switch s.peek() {
			case 0:
				return
			case '}':
				s.i++
				return
			case ',':
				s.i++
				continue
			}
			at := s.here()
			kp := append(append([]string(nil), path...), s.keys()...)
			s.skipBlank()
			if s.peek() == '=' {
				s.i++
			}
			s.pos.record(kp, at)
			s.skipSpace()
			before := s.i
			s.value(kp)
			if s.i == before && s.peek() != '}' {
				s.i++
			}
		}
	default:
		start := s.i
		s.scalar()
		// A local date-time may use a space instead of "T":
		// 1979-05-27 07:32:00.
		if s.i-start == 10 && s.src[start+4] == '-' && s.src[start+7] == '-' &&
			s.peek() == ' ' && s.i+1 < len(s.src) && s.src[s.i+1] >= '0' && s.src[s.i+1] <= '9' {
			s.i++
			s.scalar()
		}
	}
}

// scalar skips a number, boolean or date-time.
func (s *scanner) scalar() {
	for !s.eof() && !strings.ContainsRune(" \t\r\n,]}#", rune(s.src[s.i])) {
		s.i++
	}
}

// str skips a basic, literal or multi-line string starting at s.i.
func (s *scanner) str() {
	q := s.src[s.i]
	basic := q == '"'
	triple := []byte{q, q, q}
	if bytes.HasPrefix(s.src[s.i:], triple) {
		s.i += 3
		for !s.eof() {
			if basic && s.src[s.i] == '\\' {
				s.advance()
				s.advance()
				continue
			}
			if bytes.HasPrefix(s.src[s.i:], triple) {
				s.i += 3
				// Up to two more quotes belong to the content: """a"""".
				for k := 0; k < 2 && s.peek() == q; k++ {
					s.i++
				}
				return
			}
			s.advance()
		}
		return
	}
	s.i++
	for !s.eof() && s.src[s.i] != '\n' {
		c := s.src[s.i]
		if basic && c == '\\' && s.i+1 < len(s.src) && s.src[s.i+1] != '\n' {
			s.i += 2
			continue
		}
		s.i++
		if c == q {
			return
		}
	}
}

// unescapeBasic decodes the escapes of a TOML basic string key. Unknown
// escapes are kept as written; the key then simply matches nothing.
func unescapeBasic(s string) string {
	if !strings.ContainsRune(s, '\\') {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			b.WriteByte('\b')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'e':
			b.WriteByte(0x1b)
		case '"', '\\':
			b.WriteByte(s[i])
		case 'u', 'U', 'x':
			n := map[byte]int{'u': 4, 'U': 8, 'x': 2}[s[i]]
			if i+1+n <= len(s) {
				if r, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32); err == nil {
					b.WriteRune(rune(r))
					i += n
					continue
				}
			}
			b.WriteByte('\\')
			b.WriteByte(s[i])
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
