package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestHTTPDefaults(t *testing.T) {
	c, err := Parse("edged.toml", []byte("[device]\nid = \"gw\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.HTTP.Enabled || c.HTTP.Listen != "127.0.0.1:9464" || c.HTTP.Token != "" {
		t.Errorf("defaults: %+v", c.HTTP)
	}
	// enabled = false is kept, and printed.
	c, err = Parse("edged.toml", []byte("[device]\nid = \"gw\"\n[http]\nenabled = false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Enabled {
		t.Error("enabled = false not kept")
	}
	if eff := string(c.Effective()); !strings.Contains(eff, "[http]\nenabled = false\n\n") {
		t.Errorf("effective:\n%s", eff)
	}
	checkRoundTrip(t, c)
}

func TestHTTPTokenRedacted(t *testing.T) {
	t.Setenv("EDGED_TEST_HTTP_TOKEN", "s3cr3t-t0ken")
	c, err := Parse("edged.toml", []byte("[device]\nid = \"gw\"\n[http]\nlisten = \":9464\"\ntoken = \"${EDGED_TEST_HTTP_TOKEN}\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Token != "s3cr3t-t0ken" {
		t.Fatalf("token %q", c.HTTP.Token)
	}
	eff := string(c.Effective())
	if strings.Contains(eff, "s3cr3t") || !strings.Contains(eff, `token   = "<redacted>"`) || !strings.Contains(eff, `listen  = ":9464"`) {
		t.Errorf("effective:\n%s", eff)
	}
	checkRoundTrip(t, c)
	if ws := c.Warnings(); len(ws) != 0 {
		t.Errorf("warnings with a token: %q", ws)
	}
}

func TestHTTPValidate(t *testing.T) {
	for _, tc := range []struct {
		name, http string
		want       string // "" = valid
	}{
		{"default", "", ""},
		{"every interface", `listen = ":9464"`, ""},
		{"ipv6", `listen = "[::1]:9464"`, ""},
		{"no port", `listen = "127.0.0.1"`, `edged.toml:4: http: listen: invalid address "127.0.0.1": use host:port`},
		{"disabled and wrong", "enabled = false\nlisten = \"nonsense\"", ""},
		{"token newline", `token = "abc\n"`, "edged.toml:4: http: token: the token contains spaces or control characters"},
		{"unknown key", `port = 9464`, `edged.toml:4: http: unknown key "port"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("edged.toml", []byte("[device]\nid = \"gw\"\n[http]\n"+tc.http+"\n"))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var cerr *Error
			if !errors.As(err, &cerr) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "abc") {
				t.Errorf("the token appears in the problem: %v", err)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	t.Setenv("EDGED_TEST_PASS", "pw")
	c, err := Parse("edged.toml", []byte(`[device]
id = "gw"

[http]
listen = "0.0.0.0:9464"

[[source]]
name = "lab"
type = "mqtt"
broker = "tcp://broker.example:1883"
topics = ["a/#"]
username = "gw"
password = "${EDGED_TEST_PASS}"

[[source]]
name = "local"
type = "mqtt"
broker = "tcp://127.0.0.1:1883"
topics = ["a/#"]

[[source]]
name = "named-local"
type = "mqtt"
broker = "mqtt://localhost:1883"
topics = ["a/#"]

[[source]]
name = "v6"
type = "mqtt"
broker = "ws://[::1]:8083"
topics = ["a/#"]

[[source]]
name = "tls"
type = "mqtt"
broker = "ssl://broker.example:8883"
topics = ["a/#"]

[[source]]
name = "f"
type = "file"
path = "/tmp/x"

[[output]]
name = "cloud"
type = "mqtt"
broker = "ws://user:secretinurl@10.0.0.5:8083/mqtt"

[[output]]
name = "safe"
type = "mqtt"
broker = "wss://10.0.0.5:8084/mqtt"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`edged.toml:5: http listens on 0.0.0.0:9464 without a token: anyone on the network can read the metrics; set [http] token or listen on 127.0.0.1`,
		`edged.toml:10: source "lab": MQTT without TLS to broker.example:1883: the readings and the password cross the network in clear and can be read or changed on the way; use ssl:// (or wss://), with tls_ca if the broker's certificate is not signed by a public CA`,
		`edged.toml:47: output "cloud": MQTT without TLS to 10.0.0.5:8083: the records and the password cross the network in clear and can be read or changed on the way; use ssl:// (or wss://), with tls_ca if the broker's certificate is not signed by a public CA`,
	}
	got := c.Warnings()
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, w := range got {
		if strings.Contains(w, "secretinurl") || strings.Contains(w, "pw ") {
			t.Errorf("a secret in %q", w)
		}
	}

	// Listening on every interface, on a LAN address, on loopback.
	for listen, warn := range map[string]string{
		":9464":            "http listens on :9464 (every interface) without a token",
		"[::]:9464":        "http listens on [::]:9464 without a token",
		"192.168.1.5:9464": "http listens on 192.168.1.5:9464 without a token",
		"127.0.0.1:9464":   "",
		"localhost:9464":   "",
		"[::1]:9464":       "",
	} {
		c, err := Parse("", []byte("[device]\nid = \"gw\"\n[http]\nlisten = \""+listen+"\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		ws := c.Warnings()
		switch {
		case warn == "" && len(ws) > 0:
			t.Errorf("%s: %q", listen, ws)
		case warn != "" && (len(ws) != 1 || !strings.HasPrefix(ws[0], warn)):
			t.Errorf("%s: %q, want %q", listen, ws, warn)
		}
		// Disabled: nothing listens.
		c.HTTP.Enabled = false
		if ws := c.Warnings(); len(ws) > 0 {
			t.Errorf("%s disabled: %q", listen, ws)
		}
	}
}
