package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Warnings returns what is valid but unsafe in the config, one line each in
// the form of problems ("file:line: what, and how to fix it"): an HTTP
// endpoint reachable from the network without a token, and MQTT, NATS or
// Kafka without TLS to a server that is not on this machine. `edged check` prints them;
// they do not make the config invalid. They never contain a secret.
func (c *Config) Warnings() []string {
	var ws []string
	add := func(path, format string, args ...any) {
		p := Problem{File: c.File, Msg: fmt.Sprintf(format, args...)}
		if c.meta != nil {
			p.Line = c.meta.line(path)
		}
		if p.File == "" {
			ws = append(ws, p.Msg)
			return
		}
		ws = append(ws, p.String())
	}
	if h := &c.HTTP; h.Enabled && h.Token == "" {
		if host, _, err := net.SplitHostPort(h.Listen); err == nil && !isLoopback(host) {
			where := h.Listen
			if host == "" {
				where += " (every interface)"
			}
			add("http.listen", "http listens on %s without a token: anyone on the network can read the metrics; set [http] token or listen on 127.0.0.1", where)
		}
	}
	const fix = "use ssl:// (or wss://), with tls_ca if the broker's certificate is not signed by a public CA"
	for i := range c.Sources {
		s := &c.Sources[i]
		if s.Type != "mqtt" {
			continue
		}
		if hp, ok := plainRemote(s.Broker); ok {
			add("source."+strconv.Itoa(i)+".broker", "source %q: MQTT without TLS to %s: the readings%s cross the network in clear and can be read or changed on the way; %s",
				s.Name, hp, andCredentials(s.Broker, s.Username, s.Password), fix)
		}
	}
	for i := range c.Outputs {
		o := &c.Outputs[i]
		if key, what, hp, fix, ok := fleetPlain(o); ok {
			add("output."+strconv.Itoa(i)+"."+key, "output %q: %s without TLS to %s: the records%s cross the network in clear and can be read or changed on the way; %s",
				o.Name, what, hp, andCredentials(o.URL, o.Username, o.Password), fix)
		}
		if o.Type != "mqtt" {
			continue
		}
		if hp, ok := plainRemote(o.Broker); ok {
			add("output."+strconv.Itoa(i)+".broker", "output %q: MQTT without TLS to %s: the records%s cross the network in clear and can be read or changed on the way; %s",
				o.Name, hp, andCredentials(o.Broker, o.Username, o.Password), fix)
		}
	}
	return ws
}

// andCredentials names the credentials that go with the connection: the
// password (or username) keys, or the user information in the URL.
func andCredentials(broker, user, pass string) string {
	if u, err := url.Parse(broker); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			pass = "set"
		} else if u.User.Username() != "" {
			user = "set"
		}
	}
	switch {
	case pass != "":
		return " and the password"
	case user != "":
		return " and the username"
	}
	return ""
}

// plainRemote returns the host:port of a broker URL without TLS (tcp://,
// mqtt://, ws://) whose host is not this machine; never the URL's user
// information.
func plainRemote(broker string) (string, bool) {
	u, err := url.Parse(broker)
	if err != nil {
		return "", false
	}
	switch strings.ToLower(u.Scheme) {
	case "tcp", "mqtt", "ws":
	default:
		return "", false
	}
	if u.Host == "" || isLoopback(u.Hostname()) {
		return "", false
	}
	return u.Host, true
}

// isLoopback reports whether host (a name or an address, "" meaning every
// interface) is reachable from this machine only.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return ip != nil && ip.IsLoopback()
}
