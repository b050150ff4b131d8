package config

import "testing"

func TestScanPositions(t *testing.T) {
	src := "\uFEFF" + `# leading comment
top = 1
dotted.key . more = "x"   # comment with = and [brackets]
"quoted.key" = 2
'lit' = 3

[device]
id = """
multi = line
[not.a.table]
"""
data_dir = '''
also ''not'' a key = 1
'''

[[window]]
name = "a"
aggregates = [
  "count", # a comment ]
  "p95",
  [1, 2],
]

[[window]]
name = "b"
inline = { x = 1, y = { z = "}" } }
esc = "a\"b = c"

[[window.sub]]
k = 1

[[window.sub]]
k = 2

[window.sub.deep]
m = 3

[[window]]
name = "c"
when = 1979-05-27 07:32:00
after = 1

[ "spaced" . "table" ]
s = 1
"esc\u0041key\t\x41\e\"" = 2
`
	p := scanPositions([]byte(src))
	for key, want := range map[string]int{
		"top":                           2,
		"dotted":                        3,
		"dotted.key.more":               3,
		"quoted.key":                    4,
		"lit":                           5,
		"device":                        7,
		"device.id":                     8,
		"device.data_dir":               12,
		"window":                        16,
		"window.0":                      16,
		"window.0.name":                 17,
		"window.0.aggregates":           18,
		"window.0.aggregates.0":         19,
		"window.0.aggregates.1":         20,
		"window.0.aggregates.2":         21,
		"window.0.aggregates.2.1":       21,
		"window.1":                      24,
		"window.1.name":                 25,
		"window.1.inline.x":             26,
		"window.1.inline.y.z":           26,
		"window.1.esc":                  27,
		"window.1.sub.0":                29,
		"window.1.sub.0.k":              30,
		"window.1.sub.1.k":              33,
		"window.1.sub.1.deep.m":         36,
		"window.2.name":                 39,
		"window.2.when":                 40,
		"window.2.after":                41,
		"spaced.table.s":                44,
		"spaced.table.escAkey\tA\x1b\"": 45,
	} {
		if got := p[key].line; got != want {
			t.Errorf("line of %q = %d, want %d", key, got, want)
		}
	}
	for _, key := range []string{"multi", "not", "also ''not'' a key", "device.multi"} {
		if _, ok := p[key]; ok {
			t.Errorf("found key %q inside a multi-line string", key)
		}
	}
	if got := p["window.0.aggregates.1"].col; got != 3 {
		t.Errorf("column of window.0.aggregates.1 = %d, want 3", got)
	}
}

// TestScanPositionsNeverPanics feeds the scanner text that is not valid
// TOML (it only sees valid TOML in use, but must not hang or panic).
func TestScanPositionsNeverPanics(t *testing.T) {
	for _, src := range []string{
		"", "[", "[[", "a", "a =", "a = [", "a = {", `a = "`, `a = """`, "'", "= = =",
		"a = [1,,]", "]]]", "a = {b", "a.\n", "\"\\", "a = \"\\", "[a.\"b\n", "a = '''x",
		"a = 1979-05-27 ", "a = {b = [}",
	} {
		scanPositions([]byte(src))
	}
}
