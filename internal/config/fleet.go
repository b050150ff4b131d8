package config

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The fleet outputs' rules: jetstream and kafka (docs/fleet.md).

// templateFields are the placeholders of a jetstream subject or a kafka
// topic template.
var templateFields = []string{"device", "type", "window", "detector", "key", "state"}

var (
	natsSchemes    = []string{"nats", "tls", "ws", "wss"}
	saslMechanisms = []string{"plain", "scram-sha-256", "scram-sha-512"}
)

// outputKeys are the output keys that belong to some output types only;
// a key not listed here is common to all.
var outputKeys = map[string][]string{
	"broker":           {"mqtt"},
	"qos":              {"mqtt"},
	"alert_topic":      {"mqtt"},
	"batch":            {"mqtt"},
	"batch_topic":      {"mqtt"},
	"status_topic":     {"mqtt"},
	"latest":           {"mqtt"},
	"latest_topic":     {"mqtt"},
	"ha_discovery":     {"mqtt"},
	"ha_prefix":        {"mqtt"},
	"keepalive":        {"mqtt"},
	"topic":            {"mqtt", "kafka"},
	"client_id":        {"mqtt", "jetstream", "kafka"},
	"username":         {"mqtt", "jetstream", "kafka"},
	"password":         {"mqtt", "jetstream", "kafka"},
	"tls_ca":           {"mqtt", "jetstream", "kafka"},
	"tls_cert":         {"mqtt", "jetstream", "kafka"},
	"tls_key":          {"mqtt", "jetstream", "kafka"},
	"tls_insecure":     {"mqtt", "jetstream", "kafka"},
	"inflight":         {"mqtt", "jetstream", "kafka"},
	"backlog_rate":     {"mqtt", "jetstream", "kafka"},
	"live_first":       {"jetstream", "kafka"},
	"url":              {"jetstream"},
	"subject":          {"jetstream"},
	"stream":           {"jetstream"},
	"create_stream":    {"jetstream"},
	"duplicate_window": {"jetstream"},
	"credentials":      {"jetstream"},
	"nkey":             {"jetstream"},
	"brokers":          {"kafka"},
	"tls":              {"kafka"},
	"sasl_mechanism":   {"kafka"},
	"path":             {"file"},
}

// foreignKeys reports the keys written in the output's table that its type
// does not use: a key parsed and ignored would be a silent mistake.
func (v validator) foreignKeys(l loc, typ string) {
	keys := make([]string, 0, len(outputKeys))
	for k := range outputKeys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		types := outputKeys[k]
		if slices.Contains(types, typ) || !v.m.isSet(l.child(k).key) {
			continue
		}
		v.add(l.child(k), "%s is only for type = %s: remove it from this %s output", k, quoteList(types, " or "), typ)
	}
}

// fleet checks a jetstream or kafka output.
func (v validator) fleet(l loc, o *Output) {
	if (o.TLSCert == "") != (o.TLSKey == "") {
		v.add(l.child("tls_key"), "set both tls_cert and tls_key (the client certificate and its key), or neither")
	}
	if o.Inflight < 1 || o.Inflight > 65535 {
		v.add(l.child("inflight"), "invalid inflight %d: use 1 to 65535, e.g. 256", o.Inflight)
	}
	if *o.BacklogRate < 0 {
		v.add(l.child("backlog_rate"), "invalid backlog_rate %v: records per second, 0 for no limit", *o.BacklogRate)
	}
	switch o.Type {
	case "jetstream":
		v.natsURL(l.child("url"), o.URL)
		v.template(l.child("subject"), o.Subject, "subject", natsSubjectToken)
		if bad := strings.IndexAny(o.Stream, " \t\r\n.*>/\\"); o.Stream == "" || bad >= 0 || len(o.Stream) > 255 {
			v.add(l.child("stream"), `invalid stream name %q: use letters, digits, '_' and '-' (no '.', '*', '>', '/' or spaces), e.g. stream = "EDGED"`, o.Stream)
		}
		if o.DuplicateWindow < Duration(100*time.Millisecond) {
			v.add(l.child("duplicate_window"), `invalid duplicate_window %s: at least 100ms; set it to the longest outage you expect, e.g. "24h"`, time.Duration(o.DuplicateWindow))
		}
		if o.Credentials != "" && (o.NKey != "" || o.Username != "") {
			v.add(l.child("credentials"), "credentials (a NATS .creds file) already authenticates: remove nkey or username/password")
		} else if o.NKey != "" && o.Username != "" {
			v.add(l.child("nkey"), "nkey already authenticates: remove username/password")
		}
		if o.Password != "" && o.Username == "" {
			v.add(l.child("username"), "missing: password is set but username is not")
		}
	case "kafka":
		if !kafkaBuilt {
			v.add(l.child("type"), `this edged is built without Kafka: install the edged-kafka package (or build with make build TAGS=kafka), or use type = "jetstream" or "mqtt"`)
			return
		}
		if len(o.Brokers) == 0 {
			v.add(l.child("brokers"), `missing: a kafka output needs brokers = ["kafka-1.example:9092"]`)
		}
		for _, b := range o.Brokers {
			if _, port, err := net.SplitHostPort(b); err != nil || port == "" || strings.Contains(b, "://") {
				v.add(l.child("brokers"), `invalid broker %q: use host:port, e.g. "kafka-1.example:9092"`, b)
				break
			}
		}
		v.template(l.child("topic"), o.Topic, "topic", kafkaTopicChar)
		if o.SASLMechanism != "" {
			if v.oneOf(l.child("sasl_mechanism"), o.SASLMechanism, saslMechanisms, false) && o.Username == "" {
				v.add(l.child("username"), "missing: sasl_mechanism needs username and password")
			}
		}
		if o.Password != "" && o.Username == "" {
			v.add(l.child("username"), "missing: password is set but username is not")
		}
	}
}

// natsURL checks a jetstream output's server URL (several may be given,
// separated by commas, as nats.go takes them).
func (v validator) natsURL(l loc, s string) {
	const hint = `use a URL such as "nats://127.0.0.1:4222" or "tls://nats.example:4222"`
	if strings.TrimSpace(s) == "" {
		v.add(l, "missing: a jetstream output needs url: %s", hint)
		return
	}
	for _, one := range strings.Split(s, ",") {
		u, err := url.Parse(strings.TrimSpace(one))
		if err != nil || u.Scheme == "" || u.Host == "" {
			v.add(l, "invalid server URL %q: %s", one, hint)
			return
		}
		if !slices.Contains(natsSchemes, strings.ToLower(u.Scheme)) {
			v.add(l, "invalid server URL %q: unknown scheme %q; use one of %s", u.Redacted(), u.Scheme, strings.Join(natsSchemes, ", "))
			return
		}
	}
}

// template checks a subject or topic template: known placeholders, and
// literal text that ok accepts.
func (v validator) template(l loc, s, what string, ok func(lit string) string) {
	if s == "" {
		v.add(l, "missing: set %s, e.g. %q", what, map[string]string{"subject": "edged.{device}.{type}", "topic": "edged"}[what])
		return
	}
	lit := s
	for rest := s; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			v.add(l, "invalid %s %q: '{' without '}'", what, s)
			return
		}
		if name := rest[i+1 : i+j]; !slices.Contains(templateFields, name) {
			v.add(l, "invalid %s %q: unknown placeholder {%s}; use %s", what, s, name, "{"+strings.Join(templateFields, "}, {")+"}")
			return
		}
		rest = rest[i+j+1:]
	}
	for _, f := range templateFields {
		lit = strings.ReplaceAll(lit, "{"+f+"}", "x")
	}
	if msg := ok(lit); msg != "" {
		v.add(l, "invalid %s %q: %s", what, s, msg)
	}
}

// natsSubjectToken checks a subject with its placeholders filled.
func natsSubjectToken(s string) string {
	for _, tok := range strings.Split(s, ".") {
		switch {
		case tok == "":
			return "an empty token (a leading, trailing or doubled '.')"
		case strings.ContainsAny(tok, "*>"):
			return "the wildcards * and > cannot be used when publishing"
		case strings.ContainsAny(tok, " \t\r\n"):
			return "a subject cannot hold spaces"
		}
	}
	return ""
}

// kafkaTopicChar checks a topic with its placeholders filled: Kafka takes
// letters, digits, '.', '_' and '-', up to 249 of them.
func kafkaTopicChar(s string) string {
	if len(s) > 249 {
		return "longer than Kafka's 249 characters"
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return "Kafka topics take only letters, digits, '.', '_' and '-'"
		}
	}
	return ""
}

// fleetPlain reports a jetstream or kafka output that reaches a server off
// this machine without TLS: the key to point at, the protocol, the server
// and the fix.
func fleetPlain(o *Output) (key, what, hostport, fix string, plain bool) {
	const ca = "with tls_ca if the server's certificate is not signed by a public CA"
	switch o.Type {
	case "jetstream":
		for _, one := range strings.Split(o.URL, ",") {
			u, err := url.Parse(strings.TrimSpace(one))
			if err != nil || u.Host == "" || isLoopback(u.Hostname()) {
				continue
			}
			if s := strings.ToLower(u.Scheme); (s == "nats" || s == "ws") && o.TLSCA == "" && o.TLSCert == "" {
				return "url", "NATS", u.Host, "use tls:// (or wss://), " + ca, true
			}
		}
	case "kafka":
		if o.TLS || o.TLSCA != "" || o.TLSCert != "" {
			return
		}
		for _, b := range o.Brokers {
			if host, _, err := net.SplitHostPort(b); err == nil && !isLoopback(host) {
				return "brokers", "Kafka", b, "set tls = true, " + ca, true
			}
		}
	}
	return
}
