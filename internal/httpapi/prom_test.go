package httpapi

import (
	"bufio"
	"math"
	"regexp"
	"strings"
	"testing"
)

func TestPromText(t *testing.T) {
	m := newMetrics()
	// Added out of order, to be sorted.
	m.add("b_total", counter, "B things.", 3, "source", "zeta")
	m.add("b_total", counter, "ignored: the first help stays", 1, "source", `a"b\c`+"\nd")
	m.add("b_total", counter, "", 2, "source", "alpha")
	m.add("a_gauge", gauge, "A help with a \\ backslash\nand a newline.", 0.25)
	m.add("c", gauge, "Special values.", math.Inf(1), "k", "inf")
	m.add("c", gauge, "", math.Inf(-1), "k", "minf")
	m.add("c", gauge, "", math.NaN(), "k", "nan")
	m.add("c", gauge, "", 1e6, "k", "million")
	m.add("c", gauge, "", -42, "k", "neg")
	m.add("c", gauge, "", 1e300, "k", "zbig")
	m.add("c", gauge, "", 1.5e-7, "k", "zsmall")
	m.add("c", gauge, "", 1699999997.999, "k", "time")
	m.add("d", gauge, "Invalid UTF-8 in a label.", 1, "k", "a\xffb")
	var b strings.Builder
	if err := m.write(&b); err != nil {
		t.Fatal(err)
	}
	want := `# HELP a_gauge A help with a \\ backslash\nand a newline.
# TYPE a_gauge gauge
a_gauge 0.25
# HELP b_total B things.
# TYPE b_total counter
b_total{source="a\"b\\c\nd"} 1
b_total{source="alpha"} 2
b_total{source="zeta"} 3
# HELP c Special values.
# TYPE c gauge
c{k="inf"} +Inf
c{k="million"} 1000000
c{k="minf"} -Inf
c{k="nan"} NaN
c{k="neg"} -42
c{k="time"} 1699999997.999
c{k="zbig"} 1e+300
c{k="zsmall"} 1.5e-07
# HELP d Invalid UTF-8 in a label.
# TYPE d gauge
d{k="a` + "\uFFFD" + `b"} 1
`
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Stable: writing again gives the same text.
	var b2 strings.Builder
	m.write(&b2)
	if b2.String() != b.String() {
		t.Error("output not stable")
	}
	checkExposition(t, b.String())
}

// Lines of the text format (version 0.0.4), strictly.
var (
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (?:[^\\\n]|\\\\|\\n)*$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*")*\})? ([-+]?(?:[0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?|Inf|NaN))$`)
)

// checkExposition checks text line by line: every family has one HELP and
// one TYPE line before its samples, families are sorted and not repeated,
// no sample repeats a label set, and counters end in _total.
func checkExposition(t *testing.T, text string) map[string]string {
	t.Helper()
	types := map[string]string{}
	seen := map[string]bool{}
	var cur, last string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "# HELP "):
			mm := helpLine.FindStringSubmatch(l)
			if mm == nil {
				t.Errorf("bad HELP line %q", l)
				continue
			}
			if _, dup := types[mm[1]]; dup {
				t.Errorf("family %s twice", mm[1])
			}
			if mm[1] < last {
				t.Errorf("family %s after %s: not sorted", mm[1], last)
			}
			cur, last = mm[1], mm[1]
			types[cur] = ""
		case strings.HasPrefix(l, "# TYPE "):
			mm := typeLine.FindStringSubmatch(l)
			if mm == nil || mm[1] != cur || types[cur] != "" {
				t.Errorf("bad or misplaced TYPE line %q", l)
				continue
			}
			types[cur] = mm[2]
			if mm[2] == counter && !strings.HasSuffix(cur, "_total") {
				t.Errorf("counter %s does not end in _total", cur)
			}
		default:
			mm := sampleLine.FindStringSubmatch(l)
			if mm == nil {
				t.Errorf("bad sample line %q", l)
				continue
			}
			if mm[1] != cur || types[cur] == "" {
				t.Errorf("sample %q outside its family", l)
			}
			key := mm[1] + mm[2]
			if seen[key] {
				t.Errorf("sample %s twice", key)
			}
			seen[key] = true
		}
	}
	return types
}
