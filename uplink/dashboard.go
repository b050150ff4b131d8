package uplink

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/edged/edged/internal/mqttconn"
	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
)

// Dashboards: for live records, an MQTT output publishes the latest
// value of each window and key, and the latest alert of each detector and
// key, retained (a dashboard that connects later sees them at once), and,
// with HAPrefix set, the Home Assistant discovery config of each entity:
// a sensor per window, key and aggregate, a binary_sensor per detector and
// key. These are QoS 0 conveniences: the records themselves go through
// the outbox with their acknowledgements.
//
// Discovery follows https://www.home-assistant.io/integrations/mqtt/
// (as of Home Assistant 2025.10): configs are retained on
// <prefix>/<component>/<object id>/config, carry default_entity_id (which
// replaced object_id) and the device and origin blocks, and are published
// again on every connection and whenever Home Assistant announces itself
// with "online" on <prefix>/status (its birth message), so that a Home
// Assistant or broker that lost them gets them back.

// HAClass tells Home Assistant what the values of a window's key
// measure: the unit_of_measurement, device_class and state_class of its
// sensors (from the window's ha entries in the config).
type HAClass struct {
	Unit        string
	DeviceClass string
	StateClass  string // default "measurement"
}

// HAMaxEntities bounds the windows' and detectors' keys an output keeps
// for discovery (Home Assistant is no place for more); the keys beyond
// get no entity.
const HAMaxEntities = 10000

// haEntity is one window and key (a sensor per aggregate) or one
// detector and key (a binary sensor), as discovered.
type haEntity struct {
	alert     bool
	name, key string
	state     string   // its state topic (a latest topic)
	aggs      []string // window: the aggregates of its records
}

// haState is what an output remembers for discovery. Its mutex guards
// the maps; the publisher is safe for concurrent use.
type haState struct {
	mu       sync.Mutex
	entities map[string]*haEntity // by state topic
	order    []*haEntity
	aggs     map[string][]string // per window: its aggregates, shared by its keys
	full     bool
	birth    chan struct{} // Home Assistant said "online"
}

func (m *MQTT) haInit() {
	m.haOnce.Do(func() {
		m.ha.entities = map[string]*haEntity{}
		m.ha.aggs = map[string][]string{}
		m.ha.birth = make(chan struct{}, 1)
	})
}

// dashboards publishes what live records change for dashboards.
func (m *MQTT) dashboards(c *mqttconn.Publisher, recs []store.Record) {
	for i := range recs {
		r := &recs[i]
		var latest string
		switch record.Kind(r.Kind) {
		case record.KindWindow:
			latest = m.LatestTopic
		case record.KindAlert:
			latest = m.LatestAlertTopic
		}
		if latest == "" {
			continue
		}
		topic := m.fill(latest, r)
		if m.HAPrefix != "" {
			m.discover(c, r, topic)
		}
		c.Publish(topic, 0, true, r.Body)
	}
}

// discover publishes the discovery configs of r's entity the first time
// this process sees it (they are retained by the broker, and published
// again by haAnnounce).
func (m *MQTT) discover(c *mqttconn.Publisher, r *store.Record, stateTopic string) {
	m.haInit()
	m.ha.mu.Lock()
	defer m.ha.mu.Unlock()
	if m.ha.entities[stateTopic] != nil || m.ha.full {
		return
	}
	if len(m.ha.entities) >= HAMaxEntities {
		m.ha.full = true
		m.log().Warn("Home Assistant discovery: no entities beyond this many keys", "output", m.OutName, "max", HAMaxEntities)
		return
	}
	e := &haEntity{alert: record.Kind(r.Kind) == record.KindAlert, name: r.Name, key: r.Key, state: stateTopic}
	if !e.alert {
		aggs, ok := m.ha.aggs[r.Name]
		if !ok {
			aggs = aggregatesOf(r.Body)
			m.ha.aggs[r.Name] = aggs
		}
		e.aggs = aggs
	}
	m.ha.entities[stateTopic] = e
	m.ha.order = append(m.ha.order, e)
	m.haPublish(c, e)
}

// aggregatesOf lists the aggregates of a window record, in its order.
func aggregatesOf(body []byte) []string {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	var aggs []string
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return aggs
		}
		k, _ := t.(string)
		var v json.RawMessage
		if dec.Decode(&v) != nil {
			return aggs
		}
		if record.IsAggregate(k) {
			aggs = append(aggs, k)
		}
	}
	return aggs
}

// haAnnounce publishes every known entity's discovery config again: at
// each connection, and when Home Assistant comes online.
func (m *MQTT) haAnnounce(c *mqttconn.Publisher) {
	m.haInit()
	m.ha.mu.Lock()
	defer m.ha.mu.Unlock()
	for _, e := range m.ha.order {
		m.haPublish(c, e)
	}
}

// haBirth is the publisher's message handler: Home Assistant's birth
// message ("online" on <prefix>/status, not retained) asks for the
// discovery configs again. It must not block.
func (m *MQTT) haBirth(topic, payload []byte, retained bool) {
	if retained || string(payload) != "online" || string(topic) != m.HAPrefix+"/status" {
		return
	}
	select {
	case m.ha.birth <- struct{}{}:
	default:
	}
}

// haPublish publishes e's discovery configs. The caller holds ha.mu.
func (m *MQTT) haPublish(c *mqttconn.Publisher, e *haEntity) {
	for _, d := range m.haConfigs(e) {
		b, _ := json.Marshal(d.body)
		c.Publish(d.topic, 0, true, b)
	}
}

type haConfig struct {
	topic string
	body  map[string]any
}

// haConfigs returns the discovery configs of e.
func (m *MQTT) haConfigs(e *haEntity) []haConfig {
	dev := map[string]any{
		"identifiers":  []string{"edged_" + haID(m.Device)},
		"name":         m.Device,
		"manufacturer": "edged",
		"model":        "edged gateway",
	}
	origin := map[string]any{"name": "edged"}
	if m.Version != "" {
		dev["sw_version"] = m.Version
		origin["sw_version"] = m.Version
	}
	common := func(name, uid, entityID string) map[string]any {
		d := map[string]any{
			"name":              name,
			"unique_id":         "edged_" + uid,
			"default_entity_id": entityID,
			"state_topic":       e.state,
			"device":            dev,
			"origin":            origin,
		}
		if m.StatusTopic != "" {
			d["availability_topic"] = m.statusTopic()
			d["payload_available"], d["payload_not_available"] = "online", "offline"
		}
		return d
	}
	if e.alert {
		obj := haID(m.Device + "_" + e.name + "_" + e.key)
		d := common(e.name+" "+e.key, "alert_"+obj, "binary_sensor."+haSlug(m.Device+"_"+e.name+"_"+e.key))
		d["device_class"] = "problem"
		d["value_template"] = "{{ 'ON' if value_json.state == 'firing' else 'OFF' }}"
		d["payload_on"], d["payload_off"] = "ON", "OFF"
		d["json_attributes_topic"] = e.state
		d["json_attributes_template"] = "{{ {'reason': value_json.reason, 'state': value_json.state, 'value': value_json.value, " +
			"'ts': value_json.ts, 'severity': value_json.get('severity'), 'labels': value_json.get('labels')} | tojson }}"
		return []haConfig{{topic: m.HAPrefix + "/binary_sensor/" + obj + "/config", body: d}}
	}
	cls := m.haClass(e.name, e.key)
	out := make([]haConfig, 0, len(e.aggs))
	for _, agg := range e.aggs {
		obj := haID(m.Device + "_" + e.name + "_" + e.key + "_" + agg)
		d := common(e.name+" "+e.key+" "+agg, obj, "sensor."+haSlug(m.Device+"_"+e.name+"_"+e.key+"_"+agg))
		// value_json['p99.9']: a dotted name is not an attribute.
		d["value_template"] = "{{ value_json['" + agg + "'] }}"
		d["state_class"] = cls.StateClass
		if agg != "count" {
			if cls.Unit != "" {
				d["unit_of_measurement"] = cls.Unit
			}
			if cls.DeviceClass != "" {
				d["device_class"] = cls.DeviceClass
			}
		}
		out = append(out, haConfig{topic: m.HAPrefix + "/sensor/" + obj + "/config", body: d})
	}
	return out
}

// haClass returns the class of window's key, with the state class
// defaulted.
func (m *MQTT) haClass(window, key string) HAClass {
	var c HAClass
	if m.HAClassOf != nil {
		c = m.HAClassOf(window, key)
	}
	if c.StateClass == "" {
		c.StateClass = "measurement"
	}
	return c
}

// haID keeps the characters Home Assistant accepts in a discovery topic's
// object id and in a unique id.
func haID(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// haSlug is the object id of an entity id: lower-case letters, digits and
// single underscores, as Home Assistant's slugify makes them.
func haSlug(s string) string {
	var b strings.Builder
	under := true // no leading underscore
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			under = false
		} else if !under {
			b.WriteByte('_')
			under = true
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}
