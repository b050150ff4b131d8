package ingest

import (
	"fmt"
	"strings"
)

// mqttTemplate is a parsed topic template such as "sensors/{sensor}/{metric}":
// one pattern per topic level. A level is literal text, "+" (any one level,
// ignored), "#" (the rest of the topic, last level only), or a placeholder
// {sensor} or {metric}, possibly with literal text around it
// ("node-{sensor}"); each placeholder at most once.
type mqttTemplate struct {
	levels []mqttLevel
	rest   bool // ends with "#"
}

type mqttLevelKind uint8

const (
	mqttLiteral mqttLevelKind = iota
	mqttPlus
	mqttSensor
	mqttMetric
)

type mqttLevel struct {
	kind           mqttLevelKind
	text           string // the literal, or the text before the placeholder
	suffix         string // the text after the placeholder
	hasPlaceholder bool
}

// parseMQTTTemplate parses t; "" gives nil (no template).
func parseMQTTTemplate(t string) (*mqttTemplate, error) {
	if t == "" {
		return nil, nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("invalid topic_template %q: %s", t, fmt.Sprintf(format, args...))
	}
	tt := &mqttTemplate{}
	parts := strings.Split(t, "/")
	seen := map[mqttLevelKind]bool{}
	for i, p := range parts {
		switch {
		case p == "#":
			if i != len(parts)-1 {
				return nil, bad(`"#" must be the last level`)
			}
			tt.rest = true
			continue
		case p == "+":
			tt.levels = append(tt.levels, mqttLevel{kind: mqttPlus})
			continue
		}
		l := mqttLevel{kind: mqttLiteral, text: p}
		for _, ph := range []struct {
			name string
			kind mqttLevelKind
		}{{"{sensor}", mqttSensor}, {"{metric}", mqttMetric}} {
			before, after, ok := strings.Cut(p, ph.name)
			if !ok {
				continue
			}
			if l.kind != mqttLiteral {
				return nil, bad("level %q: one placeholder per level", p)
			}
			if seen[ph.kind] {
				return nil, bad("%s appears twice", ph.name)
			}
			seen[ph.kind] = true
			l = mqttLevel{kind: ph.kind, text: before, suffix: after, hasPlaceholder: true}
		}
		if strings.ContainsAny(l.text+l.suffix, "+#{}") {
			return nil, bad(`level %q: "+" and "#" stand alone in a level, and the placeholders are {sensor} and {metric}`, p)
		}
		tt.levels = append(tt.levels, l)
	}
	if !seen[mqttSensor] && !seen[mqttMetric] {
		return nil, bad(`name at least one level {sensor} or {metric}, e.g. "sensors/{sensor}/{metric}"`)
	}
	return tt, nil
}

// match returns the sensor and metric that topic gives, and whether topic
// matches the template at all. A placeholder never matches an empty value.
func (t *mqttTemplate) match(topic string) (sensor, metric string, ok bool) {
	rest := topic
	for i, l := range t.levels {
		var level string
		if i > 0 { // levels after the first follow a separator
			if len(rest) == 0 || rest[0] != '/' {
				return "", "", false
			}
			rest = rest[1:]
		}
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			level, rest = rest[:j], rest[j:]
		} else {
			level, rest = rest, ""
		}
		switch l.kind {
		case mqttLiteral:
			if level != l.text {
				return "", "", false
			}
		case mqttPlus:
		default:
			if len(level) <= len(l.text)+len(l.suffix) || !strings.HasPrefix(level, l.text) || !strings.HasSuffix(level, l.suffix) {
				return "", "", false
			}
			v := level[len(l.text) : len(level)-len(l.suffix)]
			if l.kind == mqttSensor {
				sensor = v
			} else {
				metric = v
			}
		}
	}
	switch {
	case rest == "":
		// "#" also matches the parent level ("a/#" matches "a").
		return sensor, metric, true
	case t.rest && rest[0] == '/':
		return sensor, metric, true
	}
	return "", "", false
}

// CheckTopicTemplate reports whether t is a topic template an MQTT source
// can use ("" is: no template).
func CheckTopicTemplate(t string) error {
	_, err := parseMQTTTemplate(t)
	return err
}
