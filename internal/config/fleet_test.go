package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFleetOutputRules(t *testing.T) {
	const js = "[[output]]\nname = \"fleet\"\ntype = \"jetstream\"\n"
	const u = "url = \"tls://nats.example:4222\"\n"
	runProblemCases(t, []problemCase{
		{"jetstream without url", js, []string{`output[0] "fleet": url: missing: a jetstream output needs url`}, 1},
		{"jetstream bad scheme", js + "url = \"tcp://n:4222\"\n", []string{`url: invalid server URL "tcp://n:4222": unknown scheme "tcp"; use one of nats, tls, ws, wss`}, 4},
		{"jetstream url without host", js + "url = \"nats-server\"\n", []string{`url: invalid server URL "nats-server"`}, 4},
		{"jetstream second url bad", js + "url = \"nats://a:4222,mqtt://b:1\"\n", []string{`unknown scheme "mqtt"`}, 4},
		{"subject wildcard", js + u + "subject = \"edged.*.{type}\"\n", []string{`subject: invalid subject "edged.*.{type}": the wildcards * and > cannot be used`}, 5},
		{"subject empty token", js + u + "subject = \"edged..{type}\"\n", []string{`an empty token`}, 5},
		{"subject trailing dot", js + u + "subject = \"edged.{device}.\"\n", []string{`an empty token`}, 5},
		{"subject unknown placeholder", js + u + "subject = \"edged.{sensor}\"\n", []string{`unknown placeholder {sensor}; use {device}, {type}, {window}, {detector}, {key}, {state}`}, 5},
		{"subject unclosed", js + u + "subject = \"edged.{device\"\n", []string{`'{' without '}'`}, 5},
		{"subject space", js + u + "subject = \"edged. x\"\n", []string{`spaces`}, 5},
		{"stream with dot", js + u + "stream = \"A.B\"\n", []string{`stream: invalid stream name "A.B"`}, 5},
		{"stream empty", js + u + "stream = \"\"\n", []string{`stream: invalid stream name ""`}, 5},
		{"duplicate window zero", js + u + "duplicate_window = \"0s\"\n", []string{`duplicate_window: invalid duplicate_window 0s: at least 100ms`}, 5},
		{"creds and password", js + u + "credentials = \"/etc/edged/gw.creds\"\nusername = \"u\"\npassword = \"p\"\n", []string{`credentials: credentials (a NATS .creds file) already authenticates`}, 5},
		{"nkey and password", js + u + "nkey = \"/etc/edged/gw.nk\"\nusername = \"u\"\n", []string{`nkey: nkey already authenticates`}, 5},
		{"password without username", js + u + "password = \"p\"\n", []string{`username: missing: password is set but username is not`}, 1},
		{"inflight", js + u + "inflight = 0\n", []string{`inflight: invalid inflight 0: use 1 to 65535`}, 5},
		{"backlog rate", js + u + "backlog_rate = -1\n", []string{`backlog_rate: invalid backlog_rate -1`}, 5},
		{"tls key alone", js + u + "tls_cert = \"c.pem\"\n", []string{`tls_key: set both tls_cert and tls_key`}, 1},
		{"mqtt key on jetstream", js + u + "qos = 1\n", []string{`output[0] "fleet": qos: qos is only for type = "mqtt": remove it from this jetstream output`}, 5},
		{"topic on jetstream", js + u + "topic = \"t\"\n", []string{`topic: topic is only for type = "mqtt" or "kafka": remove it from this jetstream output`}, 5},
		{"kafka key on jetstream", js + u + "brokers = [\"k:9092\"]\n", []string{`brokers: brokers is only for type = "kafka"`}, 5},
		{"jetstream key on mqtt", "[[output]]\nname = \"c\"\ntype = \"mqtt\"\nbroker = \"ssl://b:8883\"\nsubject = \"a.b\"\n", []string{`subject: subject is only for type = "jetstream": remove it from this mqtt output`}, 5},
		{"live_first on file", "[[output]]\nname = \"f\"\ntype = \"file\"\npath = \"/tmp/x\"\nlive_first = false\n", []string{`live_first: live_first is only for type = "jetstream" or "kafka"`}, 5},
		{"path on stdout", "[[output]]\nname = \"s\"\ntype = \"stdout\"\npath = \"/tmp/x\"\n", []string{`path: path is only for type = "file"`}, 4},
	})
}

func TestFleetOutputDefaults(t *testing.T) {
	c, err := Parse("edged.toml", []byte("[device]\nid = \"gw\"\n[[output]]\nname = \"fleet\"\ntype = \"jetstream\"\nurl = \"nats://127.0.0.1:4222\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Outputs[0]
	if o.Subject != "edged.{device}.{type}" || o.Stream != "EDGED" || !*o.CreateStream || !*o.LiveFirst ||
		o.DuplicateWindow.D() != 2*time.Minute || o.Inflight != 256 || *o.BacklogRate != 500 {
		t.Fatalf("defaults: %+v", o)
	}
	if ws := c.Warnings(); len(ws) != 0 {
		t.Fatalf("loopback NATS warned: %q", ws)
	}
	c, err = Parse("edged.toml", []byte("[[output]]\nname = \"fleet\"\ntype = \"jetstream\"\nurl = \"nats://127.0.0.1:4222\"\n"+
		"subject = \"fleet.{device}.{window}.{key}\"\nstream = \"F\"\ncreate_stream = false\nlive_first = false\nduplicate_window = \"24h\"\ninflight = 16\nbacklog_rate = 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	o = c.Outputs[0]
	if o.Subject != "fleet.{device}.{window}.{key}" || o.Stream != "F" || *o.CreateStream || *o.LiveFirst ||
		o.DuplicateWindow.D() != 24*time.Hour || o.Inflight != 16 || *o.BacklogRate != 0 {
		t.Fatalf("set: %+v", o)
	}
}

func TestFleetWarnings(t *testing.T) {
	c, err := Parse("edged.toml", []byte(`[device]
id = "gw"

[[output]]
name = "plain"
type = "jetstream"
url = "nats://edge:pw@nats.example:4222"

[[output]]
name = "ws"
type = "jetstream"
url = "nats://127.0.0.1:4222, ws://10.0.0.9:8080"

[[output]]
name = "tls"
type = "jetstream"
url = "tls://nats.example:4222"

[[output]]
name = "ca"
type = "jetstream"
url = "nats://nats.example:4222"
tls_ca = "/etc/edged/ca.pem"

[[output]]
name = "local"
type = "jetstream"
url = "nats://localhost:4222"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`edged.toml:7: output "plain": NATS without TLS to nats.example:4222: the records and the password cross the network in clear and can be read or changed on the way; use tls:// (or wss://), with tls_ca if the server's certificate is not signed by a public CA`,
		`edged.toml:12: output "ws": NATS without TLS to 10.0.0.9:8080: the records cross the network in clear and can be read or changed on the way; use tls:// (or wss://), with tls_ca if the server's certificate is not signed by a public CA`,
	}
	if got := c.Warnings(); !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
