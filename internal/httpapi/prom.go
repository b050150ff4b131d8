package httpapi

import (
	"bufio"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The Prometheus text exposition format (version 0.0.4), written by hand to
// keep the binary small: families sorted by name, samples by their label
// values, so that the output is stable.

// Metric types.
const (
	counter = "counter"
	gauge   = "gauge"
)

// label is one label pair; a sample's labels are in a fixed order per
// family.
type label struct{ name, value string }

type sample struct {
	labels []label
	value  float64
}

// family is one metric: its HELP, its TYPE and its samples.
type family struct {
	name, help, typ string
	samples         []sample
}

// metrics collects families.
type metrics struct {
	fams map[string]*family
}

func newMetrics() *metrics { return &metrics{fams: map[string]*family{}} }

// add records a sample of the family name; labels alternate names and
// values. The help and type of the first sample of a family are kept.
func (m *metrics) add(name, typ, help string, value float64, labels ...string) {
	f := m.fams[name]
	if f == nil {
		f = &family{name: name, help: help, typ: typ}
		m.fams[name] = f
	}
	s := sample{value: value}
	for i := 0; i+1 < len(labels); i += 2 {
		s.labels = append(s.labels, label{labels[i], labels[i+1]})
	}
	f.samples = append(f.samples, s)
}

// write writes every family in the text format, sorted.
func (m *metrics) write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, n := range slices.Sorted(maps.Keys(m.fams)) {
		f := m.fams[n]
		slices.SortStableFunc(f.samples, func(a, b sample) int { return compareLabels(a.labels, b.labels) })
		bw.WriteString("# HELP ")
		bw.WriteString(f.name)
		bw.WriteByte(' ')
		bw.WriteString(escapeHelp(f.help))
		bw.WriteString("\n# TYPE ")
		bw.WriteString(f.name)
		bw.WriteByte(' ')
		bw.WriteString(f.typ)
		bw.WriteByte('\n')
		for _, s := range f.samples {
			bw.WriteString(f.name)
			if len(s.labels) > 0 {
				bw.WriteByte('{')
				for i, l := range s.labels {
					if i > 0 {
						bw.WriteByte(',')
					}
					bw.WriteString(l.name)
					bw.WriteString(`="`)
					bw.WriteString(escapeLabel(l.value))
					bw.WriteByte('"')
				}
				bw.WriteByte('}')
			}
			bw.WriteByte(' ')
			bw.WriteString(formatValue(s.value))
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

func compareLabels(a, b []label) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if c := strings.Compare(a[i].name, b[i].name); c != 0 {
			return c
		}
		if c := strings.Compare(a[i].value, b[i].value); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// escapeHelp escapes a HELP text: backslash and newline.
func escapeHelp(s string) string {
	if !strings.ContainsAny(s, "\\\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// escapeLabel escapes a label value: backslash, double quote and newline.
// Invalid UTF-8 is replaced, as the format requires UTF-8.
func escapeLabel(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// formatValue writes a sample value: integers exactly, without an
// exponent, others without one unless very small or large; NaN and the
// infinities as the format spells them.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.FormatInt(int64(v), 10)
	case math.Abs(v) >= 1e-6 && math.Abs(v) < 1e21:
		return strconv.FormatFloat(v, 'f', -1, 64) // 1699999997.999, not 1.699999997999e+09
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
