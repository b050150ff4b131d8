package uplink

import (
	"encoding/json"
	"strings"

	"github.com/edged/edged/internal/mqttconn"
	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
)

// dashboards publishes, for live window records, the latest value of each
// window and key retained (a dashboard that connects later sees it at
// once), and the Home Assistant discovery config of each new window, key
// and aggregate. These are QoS 0 conveniences: the records themselves go
// through the outbox with their acknowledgements.
func (m *MQTT) dashboards(c *mqttconn.Publisher, recs []store.Record) {
	for i := range recs {
		r := &recs[i]
		if record.Kind(r.Kind) != record.KindWindow || (m.LatestTopic == "" && m.HAPrefix == "") {
			continue
		}
		latest := m.fill(m.LatestTopic, r)
		if m.LatestTopic != "" {
			c.Publish(latest, 0, true, r.Body)
		}
		if m.HAPrefix != "" && m.LatestTopic != "" {
			m.discover(c, r, latest)
		}
	}
}

// HADiscovery is the Home Assistant MQTT discovery payload of one sensor
// (https://www.home-assistant.io/integrations/sensor.mqtt/): the fields
// edged fills.
type HADiscovery struct {
	Name              string   `json:"name"`
	UniqueID          string   `json:"unique_id"`
	ObjectID          string   `json:"object_id"`
	StateTopic        string   `json:"state_topic"`
	ValueTemplate     string   `json:"value_template"`
	AvailabilityTopic string   `json:"availability_topic,omitempty"`
	PayloadAvailable  string   `json:"payload_available,omitempty"`
	PayloadNotAvail   string   `json:"payload_not_available,omitempty"`
	StateClass        string   `json:"state_class,omitempty"`
	Device            HADevice `json:"device"`
}

// HADevice groups the sensors of one gateway in Home Assistant.
type HADevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
}

// discover publishes the discovery configs of r's aggregates once per
// process (they are retained by the broker).
func (m *MQTT) discover(c *mqttconn.Publisher, r *store.Record, stateTopic string) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(r.Body, &fields) != nil {
		return
	}
	m.haMu.Lock()
	defer m.haMu.Unlock()
	if m.haSeen == nil {
		m.haSeen = map[string]bool{}
	}
	for agg := range fields {
		if !record.IsAggregate(agg) {
			continue
		}
		obj := haID(m.Device + "_" + r.Name + "_" + r.Key + "_" + agg)
		if m.haSeen[obj] {
			continue
		}
		m.haSeen[obj] = true
		d := HADiscovery{
			Name:          r.Name + " " + r.Key + " " + agg,
			UniqueID:      "edged_" + obj,
			ObjectID:      obj,
			StateTopic:    stateTopic,
			ValueTemplate: "{{ value_json." + agg + " }}",
			StateClass:    "measurement",
			Device:        HADevice{Identifiers: []string{"edged_" + haID(m.Device)}, Name: m.Device, Manufacturer: "edged", Model: "edged gateway"},
		}
		if m.StatusTopic != "" {
			d.AvailabilityTopic, d.PayloadAvailable, d.PayloadNotAvail = m.statusTopic(), "online", "offline"
		}
		b, _ := json.Marshal(d)
		c.Publish(m.HAPrefix+"/sensor/"+obj+"/config", 0, true, b)
	}
}

// haID keeps the characters Home Assistant accepts in an object id.
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
