package ingest

import (
	"bytes"
	"fmt"
	"strconv"
)

// frameKind tells what a framer hands over.
type frameKind uint8

const (
	frameLine    frameKind = iota // a complete line, without its delimiter
	frameTooLong                  // the first max bytes of a line longer than max
)

// framer cuts a byte stream into lines ending in delim, like a
// bufio.SplitFunc, but for a stream read in pieces whose reads may return
// nothing (a read timeout): it keeps the partial line between feeds and
// never holds more than max bytes of one. A line longer than max is handed
// over once, cut to its first max bytes and marked frameTooLong, and the
// rest of it, up to the next delimiter, is skipped.
type framer struct {
	delim    byte
	max      int
	partial  []byte // the line so far, when a feed ended inside it
	skipping bool   // inside a too-long line already handed over
}

func newFramer(delim byte, max int) *framer {
	return &framer{delim: delim, max: max}
}

// feed frames p. emit gets each frame; the slice is valid only during the
// call (it points into p or into the framer's buffer), so emit copies what
// it keeps.
func (f *framer) feed(p []byte, emit func(kind frameKind, b []byte)) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, f.delim)
		if f.skipping {
			if i < 0 {
				return
			}
			f.skipping = false
			p = p[i+1:]
			continue
		}
		if i < 0 {
			// No end in this piece: keep it, up to max.
			if len(f.partial)+len(p) > f.max {
				head := append(f.partial, p[:f.max-len(f.partial)]...)
				emit(frameTooLong, head)
				f.partial = f.partial[:0]
				f.skipping = true
				return
			}
			f.partial = append(f.partial, p...)
			return
		}
		line := p[:i]
		if len(f.partial) > 0 {
			if len(f.partial)+len(line) > f.max {
				line = append(f.partial, line[:f.max-len(f.partial)]...)
				emit(frameTooLong, line)
			} else {
				line = append(f.partial, line...)
				emit(frameLine, line)
			}
			f.partial = f.partial[:0]
		} else if len(line) > f.max {
			emit(frameTooLong, line[:f.max])
		} else {
			emit(frameLine, line)
		}
		p = p[i+1:]
	}
}

// reset drops what the framer holds (the port closed: a line cut by a
// disconnect never gets its end) and returns it.
func (f *framer) reset() []byte {
	rest := f.partial
	f.partial = nil
	f.skipping = false
	return rest
}

// trimFrame drops the line-end bytes around a frame: "\r\n" and "\n\r"
// endings leave a '\r' or '\n' on one side whichever byte frames the lines.
func trimFrame(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}

// UnescapePoll interprets the escapes of a serial source's poll_command:
// \r, \n, \t, \0, \\ and \xHH (one byte in hex). Other bytes stand for
// themselves, so a TOML string whose escapes TOML already interpreted is
// unchanged.
func UnescapePoll(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("poll_command %q ends with a lone backslash: write \\\\ for a backslash", s)
		}
		i++
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf(`poll_command %q: \x needs two hex digits, e.g. \x0d`, s)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf(`poll_command %q: \x needs two hex digits, e.g. \x0d`, s)
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf(`poll_command %q: unknown escape \%c (use \r \n \t \0 \\ or \xHH)`, s, s[i])
		}
	}
	return out, nil
}
