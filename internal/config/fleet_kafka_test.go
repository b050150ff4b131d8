//go:build kafka

package config

import (
	"slices"
	"strings"
	"testing"
)

func TestKafkaOutputRules(t *testing.T) {
	const k = "[[output]]\nname = \"fleet\"\ntype = \"kafka\"\n"
	const b = "brokers = [\"kafka-1.example:9093\"]\n"
	runProblemCases(t, []problemCase{
		{"kafka without brokers", k, []string{`output[0] "fleet": brokers: missing: a kafka output needs brokers = ["kafka-1.example:9092"]`}, 1},
		{"kafka broker url", k + "brokers = [\"kafka://k:9092\"]\n", []string{`brokers: invalid broker "kafka://k:9092": use host:port`}, 4},
		{"kafka broker without port", k + "brokers = [\"k\"]\n", []string{`invalid broker "k"`}, 4},
		{"kafka topic chars", k + b + "topic = \"edged/{type}\"\n", []string{`topic: invalid topic "edged/{type}": Kafka topics take only letters, digits, '.', '_' and '-'`}, 5},
		{"kafka topic placeholder", k + b + "topic = \"edged.{sensor}\"\n", []string{`unknown placeholder {sensor}`}, 5},
		{"kafka topic empty", k + b + "topic = \"\"\n", []string{`topic: missing: set topic, e.g. "edged"`}, 5},
		{"sasl mechanism", k + b + "sasl_mechanism = \"gssapi\"\nusername = \"u\"\n", []string{`sasl_mechanism: invalid value "gssapi": use "plain", "scram-sha-256" or "scram-sha-512"`}, 5},
		{"sasl without user", k + b + "sasl_mechanism = \"plain\"\n", []string{`username: missing: sasl_mechanism needs username and password`}, 1},
		{"jetstream key on kafka", k + b + "stream = \"X\"\n", []string{`stream: stream is only for type = "jetstream": remove it from this kafka output`}, 5},
	})
}

func TestKafkaOutputDefaultsAndWarnings(t *testing.T) {
	c, err := Parse("edged.toml", []byte(`[device]
id = "gw"

[[output]]
name = "plain"
type = "kafka"
brokers = ["127.0.0.1:9092", "kafka-1.example:9092"]
username = "gw"
password = "pw"

[[output]]
name = "tls"
type = "kafka"
brokers = ["kafka-1.example:9093"]
tls = true
`))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Outputs[0]
	if o.Topic != "edged" || o.SASLMechanism != "plain" || !*o.LiveFirst || o.Inflight != 256 || *o.BacklogRate != 500 {
		t.Fatalf("defaults: %+v", o)
	}
	want := []string{
		`edged.toml:7: output "plain": Kafka without TLS to kafka-1.example:9092: the records and the password cross the network in clear and can be read or changed on the way; set tls = true, with tls_ca if the server's certificate is not signed by a public CA`,
	}
	if got := c.Warnings(); !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
