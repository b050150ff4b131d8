package cep

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Pattern scripts (testdata/patterns/*.test), in the manner of Prometheus'
// promqltest. Lines, # comments and blank lines aside:
//
//	pattern [title]              a new case: a fresh detector and no keys;
//	  step EXPR                  its spec, indented: steps in order,
//	  not_followed_by EXPR
//	  within DUR
//	  times N
//	  max_partial N
//	  renotify DUR
//	expect error TEXT            right after the spec: New fails saying TEXT
//	key K                        the key of the following events (default "k")
//	TS METRIC VALUE [sensor=S] [key=K] [source=X]
//	                             an event (sensor defaults to the key); after it
//	                             the watermark is the largest ts so far - 1, and
//	                             every key whose timer is due gets Advance
//	advance TS                   the watermark moves to TS (end of input: a large TS)
//	expect firing at TS [value V] [key K] [reason ~ TEXT]
//	expect resolved at TS [value V] [key K] [reason ~ TEXT]
//	                             the next alert raised is this one
//	expect nothing               no alert is waiting to be expected
//	expect open N                the current key has N open partial matches
//	expect dropped N             ... and dropped N to the max_partial bound
//	expect expired N             ... and saw N run out of within
//	restore                      every key's state is encoded and restored into
//	                             a new state of a newly built detector
//
// TS is a Go duration after 2023-11-14T22:13:20Z (Unix ms 1700000000000),
// e.g. 0s, 90s, 9m59.999s, or a plain number of ms. Every alert must be
// expected, in order; what is left at the end of a case fails it.
//
// The runner runs each file twice: as written, and with every state
// encoded and restored before each Observe and Advance (a restart at every
// step must not change the alerts).

const scriptT0 = int64(1_700_000_000_000)

type patScript struct {
	t       *testing.T
	file    string
	restore bool // encode and restore before every call

	line  int
	title string
	spec  *Spec
	det   Detector
	err   error // New's error
	errOK bool  // ... and expect error expected it
	keys  map[string]State
	order []string // keys in first-seen order
	key   string
	maxTS int64
	wm    int64
	out   Emitter
	seen  int // alerts of out already expected
}

func TestPatternScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/patterns/*.test")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		for _, restore := range []bool{false, true} {
			name := filepath.Base(f)
			if restore {
				name += "/restore_every_step"
			}
			t.Run(name, func(t *testing.T) {
				s := &patScript{t: t, file: f, restore: restore}
				s.run()
			})
		}
	}
}

func (s *patScript) fatalf(format string, a ...any) {
	s.t.Helper()
	s.t.Fatalf("%s:%d (%s): %s", s.file, s.line, s.title, fmt.Sprintf(format, a...))
}

func (s *patScript) run() {
	f, err := os.Open(s.file)
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		s.line++
		raw := sc.Text()
		text := strings.TrimSpace(raw)
		if i := strings.Index(text, "#"); i == 0 {
			continue
		}
		if text == "" {
			continue
		}
		indented := raw[0] == ' ' || raw[0] == '\t'
		if indented {
			if s.spec == nil || s.det != nil || s.err != nil {
				s.fatalf("indented line outside a pattern spec: %q", text)
			}
			s.specLine(text)
			continue
		}
		if s.spec != nil && s.det == nil && s.err == nil && !strings.HasPrefix(text, "pattern") {
			s.build()
		}
		s.command(text)
	}
	if err := sc.Err(); err != nil {
		s.t.Fatal(err)
	}
	s.endCase()
}

func (s *patScript) specLine(text string) {
	word, arg, _ := strings.Cut(text, " ")
	arg = strings.TrimSpace(arg)
	p := s.spec.Pattern
	var err error
	switch word {
	case "step":
		p.Steps = append(p.Steps, arg)
	case "not_followed_by":
		p.NotFollowedBy = arg
	case "within":
		p.Within, err = time.ParseDuration(arg)
	case "times":
		p.Times, err = strconv.Atoi(arg)
	case "max_partial":
		p.MaxPartial, err = strconv.Atoi(arg)
	case "renotify":
		s.spec.Renotify, err = time.ParseDuration(arg)
	default:
		s.fatalf("unknown spec line %q", text)
	}
	if err != nil {
		s.fatalf("%q: %v", text, err)
	}
}

func (s *patScript) build() {
	s.det, s.err = New(*s.spec)
}

// endCase checks that every alert was expected.
func (s *patScript) endCase() {
	if s.spec != nil && s.det == nil && s.err == nil {
		s.build()
	}
	if s.err != nil && !s.errOK {
		s.fatalf("New: %v (not expected)", s.err)
	}
	if rest := s.out.Alerts[s.seen:]; len(rest) > 0 {
		s.fatalf("%d alerts not expected, first %s", len(rest), s.fmtAlert(rest[0]))
	}
}

func (s *patScript) command(text string) {
	f := strings.Fields(text)
	switch {
	case f[0] == "pattern":
		s.endCase()
		s.title = strings.TrimSpace(strings.TrimPrefix(text, "pattern"))
		s.spec = &Spec{Name: "p", Type: "pattern", Pattern: &PatternSpec{}}
		s.det, s.err, s.errOK = nil, nil, false
		s.keys, s.order, s.key = map[string]State{}, nil, "k"
		s.maxTS, s.wm = math.MinInt64, math.MinInt64
		s.out, s.seen = Emitter{}, 0
		return
	case s.spec == nil:
		s.fatalf("%q before the first pattern", text)
	case len(f) >= 2 && f[0] == "expect" && f[1] == "error":
		want := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(text, "expect"), " error"))
		if s.err == nil {
			s.fatalf("New succeeded, want an error containing %q", want)
		}
		if !strings.Contains(s.err.Error(), want) {
			s.fatalf("New: %v\nwant it to contain %q", s.err, want)
		}
		s.errOK = true
		return
	case s.err != nil && s.errOK:
		s.fatalf("%q after expect error", text)
	case s.err != nil:
		s.fatalf("New: %v", s.err)
	}
	switch {
	case f[0] == "key" && len(f) == 2:
		s.key = f[1]
	case f[0] == "advance" && len(f) == 2:
		s.advance(s.ts(f[1]))
	case f[0] == "restore" && len(f) == 1:
		s.restoreAll()
	case f[0] == "expect":
		s.expect(f[1:])
	case f[0][0] >= '0' && f[0][0] <= '9':
		s.event(f)
	default:
		s.fatalf("unknown line %q", text)
	}
}

func (s *patScript) ts(arg string) int64 {
	if ms, err := strconv.ParseInt(arg, 10, 64); err == nil {
		return scriptT0 + ms
	}
	d, err := time.ParseDuration(arg)
	if err != nil {
		s.fatalf("bad time %q: %v", arg, err)
	}
	return scriptT0 + d.Milliseconds()
}

func (s *patScript) fmtTS(ts int64) string {
	return fmt.Sprintf("%v (%d)", time.Duration(ts-scriptT0)*time.Millisecond, ts)
}

func (s *patScript) state(key string) State {
	st := s.keys[key]
	if st == nil {
		st = s.det.NewState()
		s.keys[key] = st
		s.order = append(s.order, key)
	}
	return st
}

// cycle encodes a key's state and restores it into a new state of a new
// detector, checking the encoding is stable.
func (s *patScript) cycle(key string) {
	b := s.keys[key].AppendState(nil)
	det, err := New(*s.spec)
	if err != nil {
		s.fatalf("New: %v", err)
	}
	if det.Fingerprint() != s.det.Fingerprint() {
		s.fatalf("fingerprint changed: %s, %s", det.Fingerprint(), s.det.Fingerprint())
	}
	st := det.NewState()
	if err := st.RestoreState(b); err != nil {
		s.fatalf("restore: %v", err)
	}
	if b2 := st.AppendState(nil); !slices.Equal(b, b2) {
		s.fatalf("encoding not stable across a restore")
	}
	s.keys[key] = st
}

func (s *patScript) restoreAll() {
	for _, k := range s.order {
		s.cycle(k)
	}
}

func (s *patScript) event(f []string) {
	if len(f) < 3 {
		s.fatalf("event: want TS METRIC VALUE [sensor=S] [key=K] [source=X]")
	}
	ev := Event{Key: s.key, TS: s.ts(f[0]), Metric: f[1]}
	var err error
	if ev.Value, err = strconv.ParseFloat(f[2], 64); err != nil {
		s.fatalf("bad value %q", f[2])
	}
	for _, kv := range f[3:] {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case ok && k == "sensor":
			ev.Sensor = v
		case ok && k == "key":
			ev.Key = v
		case ok && k == "source":
			ev.Source = v
		default:
			s.fatalf("bad event field %q", kv)
		}
	}
	if ev.Sensor == "" {
		ev.Sensor = ev.Key
	}
	if ev.TS <= s.wm {
		s.fatalf("event at %s is behind the watermark %s", s.fmtTS(ev.TS), s.fmtTS(s.wm))
	}
	st := s.state(ev.Key)
	if s.restore {
		s.cycle(ev.Key)
		st = s.keys[ev.Key]
	}
	st.Observe(&ev, &s.out)
	s.check(ev.Key)
	s.maxTS = max(s.maxTS, ev.TS)
	s.advance(s.maxTS - 1)
}

// advance moves the watermark and fires the due timers, keys in order of
// first appearance.
func (s *patScript) advance(wm int64) {
	if wm < s.wm {
		return
	}
	s.wm = wm
	for _, k := range s.order {
		for i := 0; s.keys[k].NextTimer() <= wm; i++ {
			if i > 10 {
				s.fatalf("key %s: Advance(%d) leaves NextTimer %d due", k, wm, s.keys[k].NextTimer())
			}
			if s.restore {
				s.cycle(k)
			}
			s.keys[k].Advance(k, wm, &s.out)
			s.check(k)
		}
	}
}

// check tests a state's invariants.
func (s *patScript) check(key string) {
	ps, ok := s.keys[key].(*patternState)
	if !ok {
		return
	}
	if len(ps.parts) > ps.d.maxPart {
		s.fatalf("key %s: %d partial matches open, bound %d", key, len(ps.parts), ps.d.maxPart)
	}
}

func (s *patScript) expect(f []string) {
	if len(f) == 0 {
		s.fatalf("expect what?")
	}
	pending := s.out.Alerts[s.seen:]
	switch f[0] {
	case "nothing":
		if len(pending) > 0 {
			s.fatalf("want no alert, got %s", s.fmtAlert(pending[0]))
		}
	case "open", "dropped", "expired":
		if len(f) != 2 {
			s.fatalf("expect %s N", f[0])
		}
		want, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			s.fatalf("bad count %q", f[1])
		}
		st := s.keys[s.key]
		if st == nil {
			st = s.det.NewState()
		}
		stats := st.(*patternState).PatternStats()
		got := uint64(stats.Open)
		switch f[0] {
		case "dropped":
			got = stats.Dropped
		case "expired":
			got = stats.Expired
		}
		if got != want {
			s.fatalf("key %s: %s = %d, want %d (%+v)", s.key, f[0], got, want, stats)
		}
	case Firing, Resolved:
		if len(f) < 3 || f[1] != "at" {
			s.fatalf("expect %s at TS [value V] [key K] [reason ~ TEXT]", f[0])
		}
		if len(pending) == 0 {
			s.fatalf("want %s at %s, got no alert", f[0], f[2])
		}
		a := pending[0]
		s.seen++
		want := s.ts(f[2])
		if a.State != f[0] || a.TS != want {
			s.fatalf("want %s at %s, got %s", f[0], s.fmtTS(want), s.fmtAlert(a))
		}
		if a.Detector != "p" {
			s.fatalf("alert of detector %q", a.Detector)
		}
		rest := f[3:]
		for len(rest) > 0 {
			switch {
			case rest[0] == "value" && len(rest) >= 2:
				v, err := strconv.ParseFloat(rest[1], 64)
				if err != nil {
					s.fatalf("bad value %q", rest[1])
				}
				if math.Abs(a.Value-v) > 1e-9*max(1, math.Abs(v)) {
					s.fatalf("want value %v, got %s", v, s.fmtAlert(a))
				}
				rest = rest[2:]
			case rest[0] == "key" && len(rest) >= 2:
				if a.Key != rest[1] {
					s.fatalf("want key %s, got %s", rest[1], s.fmtAlert(a))
				}
				rest = rest[2:]
			case rest[0] == "reason" && len(rest) >= 3 && rest[1] == "~":
				want := strings.Join(rest[2:], " ")
				if !strings.Contains(a.Reason, want) {
					s.fatalf("want reason containing %q, got %s", want, s.fmtAlert(a))
				}
				rest = nil
			default:
				s.fatalf("bad expectation %q", strings.Join(rest, " "))
			}
		}
	default:
		s.fatalf("unknown expectation %q", strings.Join(f, " "))
	}
}

func (s *patScript) fmtAlert(a Alert) string {
	return fmt.Sprintf("%s at %s key %s value %s (%s)", a.State, s.fmtTS(a.TS), a.Key, FormatValue(a.Value), a.Reason)
}
