package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// checkRoundTrip requires c.Effective() to parse back to c (secrets aside,
// as they are redacted) and to be stable.
func checkRoundTrip(t *testing.T, c *Config) {
	t.Helper()
	eff := c.Effective()
	back, err := Parse("effective.toml", eff)
	if err != nil {
		t.Fatalf("Effective output does not parse:\n%v\n--- output:\n%s", err, eff)
	}
	want := *c
	want.File = back.File
	want.meta = back.meta // positions differ between the two texts
	want.Sources = append([]Source(nil), c.Sources...)
	for i := range want.Sources {
		if want.Sources[i].Password != "" {
			want.Sources[i].Password = "<redacted>"
		}
	}
	want.Outputs = append([]Output(nil), c.Outputs...)
	for i := range want.Outputs {
		if want.Outputs[i].Password != "" {
			want.Outputs[i].Password = "<redacted>"
		}
	}
	if want.Broker.Password != "" {
		want.Broker.Password = "<redacted>"
	}
	if want.HTTP.Token != "" {
		want.HTTP.Token = "<redacted>"
	}
	if !reflect.DeepEqual(*back, want) {
		t.Errorf("round trip changed the config\n got %+v\nwant %+v\n--- effective:\n%s", *back, want, eff)
	}
	back.File = c.File
	if again := back.Effective(); !bytes.Equal(again, eff) {
		t.Errorf("Effective is not stable:\n%s\n---\n%s", eff, again)
	}
}

func TestEffectiveRoundTrip(t *testing.T) {
	t.Setenv("EDGED_TEST_PASS", "hunter2")
	c, err := Parse("edged.toml", []byte(`
[device]
id = "gw-01"

[pipeline]
idle_timeout = "0s"
max_out_of_orderness = "1m30s"

[[source]]
name = "lab"
type = "mqtt"
broker = "tcp://127.0.0.1:1883"
topics = ["sensors/#", "a/+/b"]
qos = 0
client_id = "edged-1"
username = "u"
password = "${EDGED_TEST_PASS}"
max_out_of_orderness = "0s"

[[source]]
name = "uart"
type = "serial"
format = "csv"
port = "/dev/ttyUSB0"
columns = ["sensor", "value"]
delimiter = "\t"
ts_unit = "ms"
sensor = "quote \" backslash \\ dollar $${HOME} unicode µ control \u0001\r\n"

[[window]]
name = "t"
type = "tumbling"
size = "10s"
offset = "1500ms"
allowed_lateness = "0s"
early_every = "1s"
sensors = ["boiler*"]
metrics = ["temp"]
sources = ["lab"]

[[window]]
name = "s"
type = "sliding"
size = "1d"
slide = "1h"
aggregates = ["p99.9", "stddev"]
key_by = "global"

[[window]]
name = "sess"
type = "session"
gap = "30s"

[[detector]]
name = "hot"
type = "threshold"
match = "boiler*"
above = 80
below = -1.5e-3

[[detector]]
name = "drift"
type = "zscore"
sigma = 4.0
window = "1d"
warmup = 100

[[output]]
name = "cloud"
type = "mqtt"
broker = "ssl://broker.example:8883"
topic = "edged/{device}/{window}/{key}"
qos = 0

[[output]]
name = "local"
type = "file"
path = "/var/lib/edged/out.jsonl"

[log]
level = "debug"
format = "json"
`))
	if err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, c)

	eff := string(c.Effective())
	for _, want := range []string{
		"[device]\nid          = \"gw-01\"\ndata_dir    = \"/var/lib/edged\"\nclock_check = \"build-date\"\n",
		"idle_timeout         = \"0s\"",
		"max_out_of_orderness = \"1m30s\"",
		"checkpoint_interval  = \"1s\"",
		`password             = "<redacted>"`,
		"qos                  = 0",
		`size       = "24h"`,
		`offset           = "1s500ms"`,
		`aggregates       = ["count", "mean", "min", "max"]`,
		`above = 80.0`,
		`$${HOME}`,
		"[log]\nlevel  = \"debug\"\nformat = \"json\"\n",
	} {
		if !strings.Contains(eff, want) {
			t.Errorf("Effective lacks %q:\n%s", want, eff)
		}
	}
	if strings.Contains(eff, "hunter2") {
		t.Errorf("Effective shows a secret:\n%s", eff)
	}
	// Sections come in a fixed order.
	last := -1
	for _, h := range []string{"[device]", "[pipeline]", "[[source]]", "[[window]]", "[[detector]]", "[[output]]", "[log]"} {
		i := strings.Index(eff, "\n"+h+"\n")
		if i <= last {
			t.Errorf("section %s out of order in:\n%s", h, eff)
		}
		last = i
	}
}

func TestEffectiveDefaultsOnly(t *testing.T) {
	defer func(h func() (string, error)) { hostname = h }(hostname)
	hostname = func() (string, error) { return "gw-host", nil }
	c, err := Parse("edged.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `# Effective edged configuration: defaults filled in, secrets redacted.
# Read from edged.toml.

[device]
id          = "gw-host"
data_dir    = "/var/lib/edged"
clock_check = "build-date"

[pipeline]
max_out_of_orderness = "2s"
allowed_lateness     = "0s"
idle_timeout         = "30s"
checkpoint_interval  = "1s"
state_interval       = "30s"

[store]
max_bytes        = "256MiB"
retain           = "168h"
outbox_max_bytes = "64MiB"
quarantine_max   = 10000
commit_interval  = "250ms"

[broker]
enabled = false

[http]
enabled = true
listen  = "127.0.0.1:9464"

[log]
level  = "info"
format = "text"
`
	if got := string(c.Effective()); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	checkRoundTrip(t, c)
}

func TestFormatDuration(t *testing.T) {
	for _, s := range []string{"0s", "1ns", "1us", "1ms", "1s", "10s", "1m", "1m30s", "1h", "24h", "1s500ms", "1h1m1s1ms1us1ns", "2562047h47m16s854ms775us807ns"} {
		d, err := ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := formatDuration(Duration(d)); got != s {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, s)
		}
	}
}

func TestFormatFloat(t *testing.T) {
	for f, want := range map[float64]string{80: "80.0", -1.5: "-1.5", 1e21: "1e+21", 0.001: "0.001", 0: "0.0"} {
		if got := formatFloat(f); got != want {
			t.Errorf("formatFloat(%v) = %q, want %q", f, got, want)
		}
	}
}

func TestParseDurationDays(t *testing.T) {
	for s, ok := range map[string]bool{"1d": true, "1.5d": true, "1d12h": true, "infd": false, "nand": false, "1e9d": false, "-1d": false} {
		_, err := ParseDuration(s)
		if (err == nil) != ok {
			t.Errorf("ParseDuration(%q) error = %v, want ok = %v", s, err, ok)
		}
	}
}
