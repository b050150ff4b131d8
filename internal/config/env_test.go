package config

import (
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	env := map[string]string{"HOST": "broker.local", "EMPTY": "", "DOLLAR": "${HOST}"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "tcp://${HOST}:1883", want: "tcp://broker.local:1883"},
		{in: "${HOST}${HOST}", want: "broker.localbroker.local"},
		{in: "${MISSING:-fallback}", want: "fallback"},
		{in: "${HOST:-fallback}", want: "broker.local"},
		{in: "${EMPTY:-fallback}", want: "fallback"},
		{in: "${EMPTY}", want: ""},
		{in: "${MISSING:-}", want: ""},
		{in: "${MISSING:-a:-b}", want: "a:-b"},
		{in: "$${HOST}", want: "${HOST}"},
		{in: "$$${HOST}", want: "$${HOST}"}, // "$" then the escape "$${"
		{in: "cost $5 and $HOST", want: "cost $5 and $HOST"},
		{in: "${DOLLAR}", want: "${HOST}"}, // values are not expanded again
		{in: "${MISSING}", err: "environment variable MISSING is not set: set it, or give a default with ${MISSING:-default}"},
		{in: "${HOST", err: `unterminated "${"`},
		{in: "${}", err: `invalid variable reference "${}"`},
		{in: "${1X}", err: `invalid variable reference "${1X}"`},
		{in: "${A B}", err: `invalid variable reference "${A B}"`},
	} {
		got, err := expand(tc.in, lookup)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("expand(%q) error = %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("expand(%q): %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if tc.err == "" {
			// escapeDollar undoes expansion for any value.
			if back, err := expand(escapeDollar(got), lookup); err != nil || back != got {
				t.Errorf("expand(escapeDollar(%q)) = %q, %v", got, back, err)
			}
		}
	}
}

func TestEnvSubstitution(t *testing.T) {
	t.Setenv("EDGED_TEST_BROKER", "tcp://10.0.0.5:1883")
	t.Setenv("EDGED_TEST_TOPIC", "plant/#")
	t.Setenv("EDGED_TEST_PASS", "hunter2")
	t.Setenv("EDGED_TEST_SIZE", "30s")
	c, err := Parse("edged.toml", []byte(`
[device]
id = "${EDGED_TEST_DEVICE:-gw-07}"
[[source]]
name = "lab"
type = "mqtt"
broker = "${EDGED_TEST_BROKER}"
topics = ["${EDGED_TEST_TOPIC}", "literal/$${NOT_A_VAR}"]
username = "edged"
password = "${EDGED_TEST_PASS}"
[[window]]
name = "w"
type = "tumbling"
size = "${EDGED_TEST_SIZE}"
offset = "${EDGED_TEST_OFFSET:-5s}"
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sources[0]
	if c.Device.ID != "gw-07" || s.Broker != "tcp://10.0.0.5:1883" || s.Password != "hunter2" {
		t.Errorf("device %q broker %q password %q", c.Device.ID, s.Broker, s.Password)
	}
	if s.Topics[0] != "plant/#" || s.Topics[1] != "literal/${NOT_A_VAR}" {
		t.Errorf("topics = %q", s.Topics)
	}
	if c.Windows[0].Size.D().String() != "30s" || c.Windows[0].Offset.D().String() != "5s" {
		t.Errorf("size %v offset %v", c.Windows[0].Size, c.Windows[0].Offset)
	}
	if eff := string(c.Effective()); strings.Contains(eff, "hunter2") || !strings.Contains(eff, `"<redacted>"`) {
		t.Errorf("secret not redacted in Effective:\n%s", eff)
	}
}

func TestEnvProblems(t *testing.T) {
	t.Setenv("EDGED_TEST_SECRET", "hunter2")
	runProblemCases(t, []problemCase{
		{"unset variable", "[[source]]\nname = \"lab\"\ntype = \"mqtt\"\nbroker = \"tcp://b:1883\"\ntopics = [\"a\"]\npassword = \"${EDGED_TEST_UNSET}\"\n",
			[]string{`edged.toml:6: source[0] "lab": password: environment variable EDGED_TEST_UNSET is not set`}, 6},
		{"unset variable in array", "[[source]]\nname = \"lab\"\ntype = \"mqtt\"\nbroker = \"tcp://b:1883\"\ntopics = [\n  \"a\",\n  \"${EDGED_TEST_UNSET}\",\n]\n",
			[]string{`topics[1]: environment variable EDGED_TEST_UNSET is not set`}, 7},
		{"unset variable in duration", "[pipeline]\nidle_timeout = \"${EDGED_TEST_UNSET}\"\n",
			[]string{`pipeline: idle_timeout: environment variable EDGED_TEST_UNSET is not set`}, 2},
		{"bad default duration", "[pipeline]\nidle_timeout = \"${EDGED_TEST_UNSET:-soon}\"\n",
			[]string{`idle_timeout: invalid duration "soon"`}, 2},
		{"unterminated", "[device]\nid = \"${HOST\"\n", []string{`device: id: unterminated "${"`}, 2},
		// A substituted value is checked like a written one, and the
		// value of a secret never appears.
		{"substituted secret in wrong place", "[[source]]\nname = \"a\"\ntype = \"stdin\"\ntoken = \"${EDGED_TEST_SECRET}\"\n",
			[]string{`unknown key "token"`}, 4},
	})
	_, err := Parse("edged.toml", []byte("[[source]]\nname = \"a\"\ntype = \"stdin\"\npassword = \"${EDGED_TEST_SECRET}\"\nbaud = \"x\"\n"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks a secret or is missing: %v", err)
	}
}

func TestIsSecret(t *testing.T) {
	for key, want := range map[string]bool{
		"password": true, "Password": true, "token": true, "secret": true,
		"api_token": true, "client_secret": true, "mqtt_password": true,
		"username": false, "tokens": false, "secretary": false, "name": false,
	} {
		if got := isSecret(key); got != want {
			t.Errorf("isSecret(%q) = %v, want %v", key, got, want)
		}
	}
}
