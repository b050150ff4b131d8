package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads the config file at path and returns it with defaults filled in
// and every rule checked. A file that cannot be read gives the os error
// wrapped ("read config: ..."); a file with problems gives an *Error listing
// all of them, and no Config.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse reads a config from data; name is the file name used in problems
// and kept in Config.File. It does what Load does after reading the file:
// decode the TOML, substitute ${VAR} and ${VAR:-default} in string values,
// fill in defaults and validate. The error, if any, is an *Error holding
// every problem found, sorted by line.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, os.LookupEnv)
}

// parse is Parse with the environment lookup injected.
func parse(name string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		p := Problem{File: name, Msg: err.Error()}
		var perr toml.ParseError
		if errors.As(err, &perr) {
			p.Line, p.Col = perr.Position.Line, perr.Position.Col
			if at := perr.Position.Start; at >= 0 && at < len(data) {
				// BurntSushi counts an error at a newline on the next
				// line; place it at the end of the line it ends instead.
				p.Line, p.Col = lineCol(data, at)
			}
			p.Msg = "invalid TOML: " + strings.ReplaceAll(perr.Message, "\n", `\n`)
		}
		return nil, &Error{Problems: []Problem{p}}
	}
	m := newMeta(name)
	m.pos = scanPositions(data)
	c := &Config{File: name}
	d := decoder{m: m, lookup: lookup}
	d.table(loc{}, raw, reflect.ValueOf(c).Elem())
	c.setDefaults(m)
	c.validate(m)
	c.meta = m
	if len(m.probs) > 0 {
		sortProblems(m.probs)
		return nil, &Error{Problems: m.probs}
	}
	return c, nil
}

// meta is what the loader knows about a file besides its values: where each
// key is written, which keys were written at all (so that an explicit
// qos = 0 is not replaced by the default), and the problems found so far.
type meta struct {
	file  string
	pos   positions
	set   map[string]bool // key paths present in the file
	bad   map[string]bool // key paths that already have a problem
	probs []Problem
}

func newMeta(file string) *meta {
	return &meta{file: file, pos: positions{}, set: map[string]bool{}, bad: map[string]bool{}}
}

// isSet reports whether the key at path was written in the file.
func (m *meta) isSet(path string) bool { return m.set[path] }

// line returns the line of path, or of its nearest ancestor that has one.
func (m *meta) line(path string) int {
	for path != "" {
		if p, ok := m.pos[path]; ok {
			return p.line
		}
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// addAt records a problem placed at the key path at and shown under disp.
// Only the first problem for a key path is kept, so that a value that
// failed to decode does not also fail the rules that read it.
func (m *meta) addAt(at, disp, format string, args ...any) {
	if m.bad[at] {
		return
	}
	m.bad[at] = true
	m.probs = append(m.probs, Problem{File: m.file, Line: m.line(at), Path: disp, Msg: fmt.Sprintf(format, args...)})
}

// add records a problem with the key at l.
func (m *meta) add(l loc, format string, args ...any) { m.addAt(l.key, l.disp, format, args...) }

// loc names a key twice: key is the path used for positions
// ("window.1.size") and disp the path shown to people
// (`window[1] "temp_10s": size`).
type loc struct{ key, disp string }

// child is the key name inside the table at l.
func (l loc) child(name string) loc {
	if l.key == "" {
		return loc{key: name, disp: name}
	}
	return loc{key: l.key + "." + name, disp: l.disp + ": " + name}
}

// index is element i of the array at l, shown with its name if it has one.
func (l loc) index(i int, name string) loc {
	disp := l.disp + "[" + strconv.Itoa(i) + "]"
	if name != "" {
		disp += " " + strconv.Quote(name)
	}
	return loc{key: l.key + "." + strconv.Itoa(i), disp: disp}
}

// lineCol returns the 1-based line and byte column of offset at in data.
func lineCol(data []byte, at int) (line, col int) {
	line = 1 + bytes.Count(data[:at], []byte("\n"))
	col = at - bytes.LastIndexByte(data[:at], '\n')
	return line, col
}
