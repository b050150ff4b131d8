package record_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/edged/edged/record"
)

// The ids of records committed by an older release: a record recomputed
// after an upgrade must keep its id, or consumers would see it twice.
func TestIDsAreStable(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{record.WindowID("gw-1", "temp_10s", "s1", 1700000000000, 2), "b9674ff46211769646afd93406ab9ada"},
		{record.AlertID("gw-1", "overheat", "s1", 1700000003000, "firing"), "755fa7ae2db1d0a546cf1febb862fa0c"},
		{record.LateID("gw-1", "temp_10s", "lab", "s1", "t", 1699999990000, 21.7), "43e07762847e07c5b3dc5f5c68e676c5"},
	} {
		if c.got != c.want {
			t.Errorf("id %s, want %s", c.got, c.want)
		}
	}
}

func TestIDIsIdentityOnly(t *testing.T) {
	a := record.WindowID("gw", "w", "k", 1, 0)
	for _, other := range []string{
		record.WindowID("gw", "w", "k", 1, 1),
		record.WindowID("gw", "w", "k2", 1, 0),
		record.WindowID("gw", "w2", "k", 1, 0),
		record.WindowID("gw", "w", "k", 2, 0),
		record.WindowID("gw2", "w", "k", 1, 0),
		// Field boundaries are kept: "w"+"k1" is not "wk"+"1".
		record.WindowID("gw", "wk", "", 1, 0),
		record.AlertID("gw", "w", "k", 1, ""),
	} {
		if other == a {
			t.Fatalf("two identities share the id %s", a)
		}
	}
	if record.AlertID("gw", "d", "k", 5, "firing") == record.AlertID("gw", "d", "k", 5, "resolved") {
		t.Fatal("an alert's state is not in its id")
	}
	if record.LateID("gw", "w", "s", "x", "m", 5, 1) == record.LateID("gw", "w", "s", "x", "m", 5, math.Nextafter(1, 2)) {
		t.Fatal("a late reading's value is not in its id")
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	body := []byte(`{"type":"alert","detector":"hot","key":"a\"b","state":"firing","ts":5,"value":1,"reason":"x"}`)
	id := record.AlertID("gw \"1\"", "hot", `a"b`, 5, "firing")
	out := record.AppendEnvelope(body, `gw "1"`, 42, id)
	if !json.Valid(out) {
		t.Fatalf("not JSON: %s", out)
	}
	if !strings.HasSuffix(string(out), `,"device":"gw \"1\"","seq":42,"id":"`+id+`"}`) {
		t.Fatalf("envelope: %s", out)
	}
	e, ok := record.Parse(out)
	if !ok {
		t.Fatalf("not recognised: %s", out)
	}
	want := record.Envelope{Kind: record.KindAlert, Device: `gw "1"`, Seq: 42, ID: id, Name: "hot", Key: `a"b`, State: "firing"}
	if e != want {
		t.Fatalf("parsed %+v, want %+v", e, want)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, p := range []string{
		``,
		`21.5`,
		`{"sensor":"s1","value":1}`,
		`{"type":"window","window":"w","key":"k","start":1,"end":2,"rev":0,"final":true}`,  // no envelope
		`{"type":"window","window":"w","device":"gw","seq":0,"id":"x"}`,                    // seq 0
		`{"type":"window","window":"w","device":"","seq":1,"id":"x"}`,                      // no device
		`{"type":"window","window":"w","device":"gw","seq":1,"id":""}`,                     // no id
		`{"type":"metric","window":"w","device":"gw","seq":1,"id":"x"}`,                    // unknown type
		`{"type":"window","window":"w","device":"gw","seq":1,"id":"x"`,                     // cut short
		`[{"type":"window","window":"w","device":"gw","seq":1,"id":"x"}]`,                  // an array (a batch)
		`{"type":"window","window":"w","device":"gw","seq":-1,"id":"x"}`,                   // negative seq
		`{"type":"window","window":"w","device":"gw","seq":1,"id":"x"} trailing`,           // not one object
		`{"type":"window","window":"w","device":["gw"],"seq":1,"id":"x"}`,                  // device not a string
		`{"type":"window","window":"w","device":"gw","seq":18446744073709551616,"id":"x"}`, // seq overflows
	} {
		if e, ok := record.Parse([]byte(p)); ok {
			t.Errorf("%s recognised as %+v", p, e)
		}
	}
	// Whitespace around the object is fine (a line with its newline).
	if _, ok := record.Parse([]byte(" {\"type\":\"late\",\"window\":\"w\",\"device\":\"gw\",\"seq\":3,\"id\":\"x\"}\n")); !ok {
		t.Error("a record with its newline not recognised")
	}
}

func TestKinds(t *testing.T) {
	for _, k := range []record.Kind{record.KindWindow, record.KindLate, record.KindAlert} {
		if got, ok := record.ParseKind(k.String()); !ok || got != k {
			t.Errorf("kind %d: %q parses as %d", k, k.String(), got)
		}
	}
	if record.Kind(0).String() != "unknown" || record.Kind(9).String() != "unknown" {
		t.Error("an unknown kind has a name")
	}
	// The numbers are stored in the outbox: they never change.
	if record.KindWindow != 1 || record.KindLate != 2 || record.KindAlert != 3 {
		t.Error("kind numbers changed")
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "ctl\x00\x01\x1f\n\r\t", "ü€😀", "bad\xffutf8", "\u2028"} {
		b := record.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if back != want {
			t.Fatalf("%q -> %s -> %q", s, b, back)
		}
	}
}

func TestAppendFloat(t *testing.T) {
	for _, v := range []float64{0, 1, -1.5, 21.7, 1e-7, 1e21, 123456789012345678, 5e-324, math.MaxFloat64} {
		want, _ := json.Marshal(v)
		if got := record.AppendFloat(nil, v); string(got) != string(want) {
			t.Errorf("%v: %s, encoding/json %s", v, got, want)
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := record.AppendFloat(nil, v); string(got) != "null" {
			t.Errorf("%v: %s", v, got)
		}
	}
}

// FuzzParse: Parse never panics, and what it recognises is a JSON object
// whose envelope it reports.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"type":"window","window":"w","key":"k","device":"gw","seq":1,"id":"x"}`))
	f.Add([]byte(`{"type":"alert","detector":"d","state":"firing","device":"gw","seq":9,"id":"y"}`))
	f.Add([]byte(`{"sensor":"s"}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		e, ok := record.Parse(p)
		if !ok {
			return
		}
		if !json.Valid(p) || e.Device == "" || e.ID == "" || e.Seq == 0 || e.Kind.String() == "unknown" {
			t.Fatalf("%q recognised as %+v", p, e)
		}
	})
}
