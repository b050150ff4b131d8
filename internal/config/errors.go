package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a config file.
type Problem struct {
	// File is the name the config was loaded under, as given to Load or Parse.
	File string
	// Line is the 1-based line of the offending key, table header or syntax
	// error; 0 when the problem has no place in the file.
	Line int
	// Col is the 1-based column of a TOML syntax error; 0 otherwise.
	Col int
	// Path is the key path as printed, with the parts separated by ": ",
	// such as `window[1] "temp_10s": size` or `pipeline: idle_timeout`.
	// Array elements are numbered from 0, in file order, and shown with
	// their name when they have one. Path is empty for syntax errors and
	// for unknown keys at the top level.
	Path string
	// Msg says what is wrong and what is allowed instead.
	Msg string
}

// String formats p as "file:line[:col]: path: msg".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in one config file, sorted by line. Load and
// Parse return it as their error; get at the list with errors.As:
//
//	var cerr *config.Error
//	if errors.As(err, &cerr) {
//		for _, p := range cerr.Problems { ... }
//	}
type Error struct {
	Problems []Problem
}

// Error returns one line per problem.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders problems by line, then column, keeping the order in
// which they were found for equal places.
func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Line != ps[j].Line {
			return ps[i].Line < ps[j].Line
		}
		return ps[i].Col < ps[j].Col
	})
}

// Problemf makes an error located at a key of the loaded config, such as
// "detector.2.steps", in the form of the config's own errors
// (file:line: where: what), for checks done outside this package.
func (c *Config) Problemf(path, disp, format string, args ...any) error {
	p := Problem{File: c.File, Path: disp, Msg: fmt.Sprintf(format, args...)}
	if c.meta != nil {
		p.Line = c.meta.line(path)
	}
	return &Error{Problems: []Problem{p}}
}
