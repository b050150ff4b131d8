package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// walkTarget has a field of every kind the decoder supports, including
// some Config does not use yet.
type walkTarget struct {
	On     bool      `toml:"on"`
	N      int       `toml:"n"`
	Small  int8      `toml:"small"`
	F      float64   `toml:"f"`
	PF     *float64  `toml:"pf"`
	S      string    `toml:"s"`
	L      []string  `toml:"l"`
	D      Duration  `toml:"d"`
	PD     *Duration `toml:"pd"`
	Buf    Size      `toml:"buf"`
	Nested struct {
		A int `toml:"A"`
	} `toml:"nested"`
	Items []struct {
		B int `toml:"B"`
	} `toml:"items"`
	Ints   []int  `toml:"ints"`
	Hidden string `toml:"-"`
}

func decodeInto(t *testing.T, src string, dst any) []Problem {
	t.Helper()
	var raw map[string]any
	if _, err := toml.Decode(src, &raw); err != nil {
		t.Fatal(err)
	}
	m := newMeta("t.toml")
	m.pos = scanPositions([]byte(src))
	d := decoder{m: m, lookup: func(string) (string, bool) { return "", false }}
	d.table(loc{}, raw, reflect.ValueOf(dst).Elem())
	sortProblems(m.probs)
	return m.probs
}

func TestDecodeKinds(t *testing.T) {
	var w walkTarget
	probs := decodeInto(t, `
on = true
n = 7
small = 100
f = 3
pf = 2.5
s = "x"
l = ["a", "b"]
d = "1m"
pd = "0s"
buf = "64KiB"
nested = { A = 4 }
items = [{ B = 1 }, { B = 2 }]
ints = [1, 2, 3]
`, &w)
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	if !w.On || w.N != 7 || w.Small != 100 || w.F != 3 || *w.PF != 2.5 || w.S != "x" ||
		!reflect.DeepEqual(w.L, []string{"a", "b"}) || w.D.D().Minutes() != 1 || w.PD == nil || *w.PD != 0 ||
		w.Buf != 64<<10 || w.Nested.A != 4 || len(w.Items) != 2 || w.Items[1].B != 2 ||
		!reflect.DeepEqual(w.Ints, []int{1, 2, 3}) {
		t.Fatalf("decoded %+v", w)
	}
}

func TestDecodeKindProblems(t *testing.T) {
	var w walkTarget
	probs := decodeInto(t, `on = "yes"
n = 1.5
small = 300
pf = true
buf = "lots"
nested = 1
items = { B = 1 }
ints = [1, "2"]
Hidden = "x"
d = "1x"
`, &w)
	want := []string{
		`t.toml:1: on: expected a boolean (true or false), got string "yes"`,
		`t.toml:2: n: expected an integer such as 1, got float 1.5`,
		`t.toml:3: small: integer 300 is out of range`,
		`t.toml:4: pf: expected a number such as 1.5, got boolean true`,
		`t.toml:5: buf: invalid size "lots"`,
		`t.toml:6: nested: expected a table [nested], got integer 1`,
		`t.toml:7: items: expected an array of tables [[items]], got a single table [items]`,
		`t.toml:8: ints[1]: expected an integer such as 1, got string "2"`,
		`t.toml:9: unknown key "Hidden"`,
		`t.toml:10: d: invalid duration "1x"`,
	}
	if len(probs) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(probs), len(want), probs)
	}
	for i, w := range want {
		if got := probs[i].String(); !strings.HasPrefix(got, w) {
			t.Errorf("problem %d:\n got %s\nwant %s", i, got, w)
		}
	}
	if w.PF != nil {
		t.Errorf("pointer set despite a problem")
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"name", "type", "size", "slide", "gap", "offset", "aggregates", "allowed_lateness", "key_by"}
	for in, want := range map[string]string{
		"sise": "size", "Size": "size", "aggregate": "aggregates", "keyby": "key_by",
		"allowed-lateness": "allowed_lateness", "slid": "slide", "xyz": "", "id": "", "types": "type",
	} {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
