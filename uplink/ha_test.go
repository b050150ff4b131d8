package uplink

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edged/edged/internal/mqtttest"
	"github.com/edged/edged/record"
	"github.com/edged/edged/store"
	"github.com/edged/edged/store/storetest"
)

// Home Assistant's MQTT discovery schema for the two components edged
// publishes, as documented on https://www.home-assistant.io/integrations/
// sensor.mqtt/ and binary_sensor.mqtt/ (Home Assistant 2025.10): every
// key a discovery config may carry, by component; object_id is left out
// on purpose (deprecated for default_entity_id, removed in 2026.4).
var (
	haCommonKeys = []string{"availability", "availability_mode", "availability_template", "availability_topic",
		"default_entity_id", "device", "device_class", "enabled_by_default", "encoding", "entity_category",
		"entity_picture", "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic",
		"name", "origin", "payload_available", "payload_not_available", "platform", "qos", "state_topic", "unique_id",
		"value_template"}
	haKeys = map[string][]string{
		"sensor":        append([]string{"last_reset_value_template", "options", "state_class", "suggested_display_precision", "unit_of_measurement"}, haCommonKeys...),
		"binary_sensor": append([]string{"off_delay", "payload_off", "payload_on"}, haCommonKeys...),
	}
	haDeviceKeys = []string{"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
		"model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}
	haOriginKeys          = []string{"name", "sw_version", "support_url"}
	haBinaryDeviceClasses = []string{"battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
		"garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug",
		"power", "presence", "problem", "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window"}
	haStateClasses = []string{"measurement", "measurement_angle", "total", "total_increasing"}
	// The units Home Assistant accepts for the device classes this test uses.
	haUnits = map[string][]string{"temperature": {"°C", "°F", "K"}, "humidity": {"%"}}

	haConfigTopic = regexp.MustCompile(`^homeassistant/(sensor|binary_sensor)/([a-zA-Z0-9_-]+)/config$`)
	haEntityID    = regexp.MustCompile(`^(sensor|binary_sensor)\.[a-z0-9]+(_[a-z0-9]+)*$`)
)

// checkHAConfig checks one discovery config field by field against the
// schema above; retained holds every retained message on the broker.
func checkHAConfig(t *testing.T, topic string, cfg map[string]any, retained map[string][]byte, device string) {
	t.Helper()
	m := haConfigTopic.FindStringSubmatch(topic)
	if m == nil {
		t.Errorf("%s: not a discovery topic <prefix>/<component>/<object_id>/config", topic)
		return
	}
	component := m[1]
	str := func(k string) string {
		s, ok := cfg[k].(string)
		if !ok && cfg[k] != nil {
			t.Errorf("%s: %s is %T, want a string", topic, k, cfg[k])
		}
		return s
	}
	for k := range cfg {
		if !slices.Contains(haKeys[component], k) {
			t.Errorf("%s: key %q is not in the %s discovery schema", topic, k, component)
		}
	}
	for _, k := range []string{"name", "unique_id", "default_entity_id", "state_topic", "value_template", "device", "origin", "availability_topic"} {
		if cfg[k] == nil {
			t.Errorf("%s: %s missing", topic, k)
		}
	}
	if id := str("default_entity_id"); !haEntityID.MatchString(id) || !strings.HasPrefix(id, component+".") {
		t.Errorf("%s: default_entity_id %q: want %s.<lower-case letters, digits, single underscores>", topic, id, component)
	}
	if name := str("name"); strings.HasPrefix(strings.ToLower(name), strings.ToLower(device)) {
		t.Errorf("%s: name %q starts with the device's name (Home Assistant strips it and warns)", topic, name)
	}
	st := str("state_topic")
	if strings.ContainsAny(st, "+#") {
		t.Errorf("%s: state_topic %q has a wildcard", topic, st)
	}
	if retained[st] == nil {
		t.Errorf("%s: no retained state on state_topic %q (Home Assistant would show unknown until the next record)", topic, st)
	}
	if at := str("availability_topic"); string(retained[at]) != str("payload_available") {
		t.Errorf("%s: availability_topic %q holds %q, want payload_available %q", topic, at, retained[at], str("payload_available"))
	}
	if str("payload_not_available") != "offline" {
		t.Errorf("%s: payload_not_available %q, want the last will's \"offline\"", topic, str("payload_not_available"))
	}
	dev, _ := cfg["device"].(map[string]any)
	for k := range dev {
		if !slices.Contains(haDeviceKeys, k) {
			t.Errorf("%s: device key %q is not in the schema", topic, k)
		}
	}
	if ids, _ := dev["identifiers"].([]any); len(ids) == 0 || dev["name"] != device {
		t.Errorf("%s: device %v: needs identifiers and the device's name", topic, dev)
	}
	org, _ := cfg["origin"].(map[string]any)
	for k := range org {
		if !slices.Contains(haOriginKeys, k) {
			t.Errorf("%s: origin key %q is not in the schema", topic, k)
		}
	}
	if org["name"] != "edged" {
		t.Errorf("%s: origin %v: name is required", topic, org)
	}
	switch component {
	case "sensor":
		if !slices.Contains(haStateClasses, str("state_class")) {
			t.Errorf("%s: state_class %q", topic, str("state_class"))
		}
		if dc := str("device_class"); dc != "" && !slices.Contains(haUnits[dc], str("unit_of_measurement")) {
			t.Errorf("%s: unit %q is not one of device class %s's %v", topic, str("unit_of_measurement"), dc, haUnits[dc])
		}
	case "binary_sensor":
		if !slices.Contains(haBinaryDeviceClasses, str("device_class")) {
			t.Errorf("%s: device_class %q", topic, str("device_class"))
		}
		if str("json_attributes_topic") == "" || str("json_attributes_template") == "" {
			t.Errorf("%s: the alert's reason needs json_attributes_topic and _template", topic)
		}
	}
}

// renderJinja renders Home Assistant templates with Jinja2, each with
// value_json bound to its payload, as Home Assistant does: template and
// payload in, the rendered text out.
func renderJinja(t *testing.T, jobs [][2]string) []string {
	t.Helper()
	if exec.Command("python3", "-c", "import jinja2").Run() != nil {
		t.Log("SKIP rendering the templates: python3 with jinja2 (Debian python3-jinja2) not installed")
		return nil
	}
	in, _ := json.Marshal(jobs)
	cmd := exec.Command("python3", "-c", `
import json, sys, jinja2
env = jinja2.Environment(undefined=jinja2.StrictUndefined)
out = []
for tmpl, payload in json.load(sys.stdin):
    out.append(env.from_string(tmpl).render(value_json=json.loads(payload), value=payload))
json.dump(out, sys.stdout)
`)
	cmd.Stdin = strings.NewReader(string(in))
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jinja2: %v\n%s", err, b)
	}
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("jinja2 output %q: %v", b, err)
	}
	return out
}

// commitBodies commits records, as the runner would, after the outbox's
// last seq.
func commitBodies(t *testing.T, st *store.Store, bodies ...string) {
	t.Helper()
	var recs []store.Record
	seq := st.OutboxLastSeq()
	for _, b := range bodies {
		seq++
		var f struct{ Type, Window, Detector, Key string }
		if err := json.Unmarshal([]byte(b), &f); err != nil {
			t.Fatal(err)
		}
		k, _ := record.ParseKind(f.Type)
		name := f.Window + f.Detector
		id := fmt.Sprint("id", seq)
		recs = append(recs, store.Record{ID: id, Kind: uint8(k), Name: name, Key: f.Key,
			Body: record.AppendEnvelope([]byte(b), "gw-01", seq, id)})
	}
	if err := st.Commit(&store.Checkpoint{Meta: store.CheckpointMeta{NextSeq: seq + 1}, Records: recs}); err != nil {
		t.Fatal(err)
	}
}

// retainedOn collects what a client that connects now gets: the retained
// messages under filter, until none came for a moment.
func retainedOn(t *testing.T, url, filter string) map[string][]byte {
	t.Helper()
	got := map[string][]byte{}
	var mu sync.Mutex
	last := time.Now()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprint("ha-", time.Now().UnixNano())))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(50)
	tok := c.Subscribe(filter, 0, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		defer mu.Unlock()
		if m.Retained() && len(m.Payload()) > 0 {
			got[m.Topic()] = append([]byte(nil), m.Payload()...)
		}
		last = time.Now()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		quiet := time.Since(last) > 300*time.Millisecond
		mu.Unlock()
		if quiet {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

// waitFor polls cond every 20 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func haOutput(st *store.Store, url string) *MQTT {
	return &MQTT{OutName: "cloud", Device: "gw-01", Broker: url, QoS: 1, Topic: "edged/{device}/{window}/{key}",
		AlertTopic: "edged/{device}/alerts/{detector}/{key}", StatusTopic: "edged/{device}/status",
		LatestTopic: "edged/{device}/latest/{window}/{key}", LatestAlertTopic: "edged/{device}/latest_alert/{detector}/{key}",
		HAPrefix: "homeassistant", Version: "v1.2.3", RetryMin: 100 * time.Millisecond, Store: st,
		HAClassOf: func(window, key string) HAClass {
			if strings.HasSuffix(key, "/temp") {
				return HAClass{Unit: "°C", DeviceClass: "temperature"}
			}
			return HAClass{}
		}}
}

// TestHADiscovery: every aggregate of a window record (p99.9 included)
// becomes a Home Assistant sensor and every detector's key a binary
// sensor, each config checked field by field against the documented
// schema, and its templates rendered with Jinja2 against the retained
// state: the sensor shows the aggregate's value, the binary sensor is ON
// while the alert fires and OFF once it resolved, with the reason as an
// attribute.
func TestHADiscovery(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{})
	st, _ := storetest.MustOpen(t, nil)
	st.RegisterOutputs([]string{"cloud"})
	out := haOutput(st, b.URL())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- out.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if !waitFor(5*time.Second, func() bool {
		return string(retainedOn(t, b.URL(), "edged/gw-01/status")["edged/gw-01/status"]) == "online"
	}) {
		t.Fatal("the output did not connect")
	}
	commitBodies(t, st,
		`{"type":"window","window":"t_10s","key":"boiler-1/temp","start":0,"end":10000,"rev":0,"final":true,"count":10,"mean":20.5,"p99.9":23.25,"stddev":1.5}`,
		`{"type":"window","window":"t_10s","key":"hall","start":0,"end":10000,"rev":0,"final":true,"count":3,"mean":1,"p99.9":2,"stddev":0}`,
		`{"type":"alert","detector":"overheat","key":"boiler-1/temp","state":"firing","ts":9000,"value":81.2,"reason":"value 81.2 > 80 for 3 readings","severity":"critical"}`)
	if !waitFor(5*time.Second, func() bool { c, _ := st.Cursor("cloud"); return c == 3 }) {
		t.Fatal("records not delivered")
	}
	var ret map[string][]byte
	configs := map[string]map[string]any{}
	waitFor(5*time.Second, func() bool {
		ret = retainedOn(t, b.URL(), "#")
		for topic, p := range ret {
			if strings.HasPrefix(topic, "homeassistant/") {
				var c map[string]any
				if err := json.Unmarshal(p, &c); err != nil {
					t.Fatalf("%s: %v: %s", topic, err, p)
				}
				configs[topic] = c
			}
		}
		return len(configs) == 9
	})
	var sensors, binaries []string
	for topic := range configs {
		if strings.Contains(topic, "/binary_sensor/") {
			binaries = append(binaries, topic)
		} else {
			sensors = append(sensors, topic)
		}
	}
	slices.Sort(sensors)
	if len(sensors) != 8 || len(binaries) != 1 {
		t.Fatalf("discovery configs: sensors %v, binary sensors %v; want 2 keys x 4 aggregates and 1 alert", sensors, binaries)
	}
	uids := map[string]string{}
	for topic, c := range configs {
		checkHAConfig(t, topic, c, ret, "gw-01")
		uid, _ := c["unique_id"].(string)
		if prev, dup := uids[uid]; dup {
			t.Errorf("unique_id %q of %s and %s", uid, prev, topic)
		}
		uids[uid] = topic
	}
	// Units and classes from the window's ha entries: the temp key's
	// values are °C temperatures; its count is a plain number.
	p999 := configs["homeassistant/sensor/gw-01_t_10s_boiler-1_temp_p99_9/config"]
	if p999 == nil || p999["unit_of_measurement"] != "°C" || p999["device_class"] != "temperature" || p999["state_class"] != "measurement" ||
		p999["value_template"] != "{{ value_json['p99.9'] }}" || p999["default_entity_id"] != "sensor.gw_01_t_10s_boiler_1_temp_p99_9" {
		t.Errorf("p99.9 sensor: %v", p999)
	}
	if c := configs["homeassistant/sensor/gw-01_t_10s_boiler-1_temp_count/config"]; c == nil || c["unit_of_measurement"] != nil || c["device_class"] != nil {
		t.Errorf("count sensor: %v (a count has no unit or device class)", c)
	}
	if c := configs["homeassistant/sensor/gw-01_t_10s_hall_mean/config"]; c == nil || c["unit_of_measurement"] != nil {
		t.Errorf("hall's mean: %v (no ha entry matches it)", c)
	}

	// The templates, rendered as Home Assistant would.
	var jobs [][2]string
	var want []string
	for _, topic := range sensors {
		c := configs[topic]
		state := ret[c["state_topic"].(string)]
		var rec map[string]any
		json.Unmarshal(state, &rec)
		name, _ := c["name"].(string) // "<window> <key> <aggregate>"
		agg := name[strings.LastIndexByte(name, ' ')+1:]
		jobs = append(jobs, [2]string{c["value_template"].(string), string(state)})
		want = append(want, fmt.Sprint(rec[agg]))
	}
	bin := configs[binaries[0]]
	alertState := string(ret[bin["state_topic"].(string)])
	jobs = append(jobs, [2]string{bin["value_template"].(string), alertState}, [2]string{bin["json_attributes_template"].(string), alertState})
	if got := renderJinja(t, jobs); got != nil {
		for i, w := range want {
			g, err1 := strconv.ParseFloat(got[i], 64)
			wf, err2 := strconv.ParseFloat(w, 64)
			if err1 != nil || err2 != nil || g != wf {
				t.Errorf("%s: template %q gives %q, want the record's %s", sensors[i], jobs[i][0], got[i], w)
			}
		}
		if on := got[len(want)]; on != bin["payload_on"] {
			t.Errorf("binary sensor of a firing alert renders %q, want payload_on %q", on, bin["payload_on"])
		}
		var attrs map[string]any
		if err := json.Unmarshal([]byte(got[len(want)+1]), &attrs); err != nil || attrs["reason"] != "value 81.2 > 80 for 3 readings" || attrs["severity"] != "critical" {
			t.Errorf("alert attributes %q: %v", got[len(want)+1], err)
		}
	}

	// The alert resolves: the retained state says so, and the binary
	// sensor renders OFF.
	commitBodies(t, st, `{"type":"alert","detector":"overheat","key":"boiler-1/temp","state":"resolved","ts":12000,"value":75,"reason":"value 75 <= 80"}`)
	var resolved string
	waitFor(5*time.Second, func() bool {
		resolved = string(retainedOn(t, b.URL(), bin["state_topic"].(string))[bin["state_topic"].(string)])
		return strings.Contains(resolved, `"resolved"`)
	})
	if got := renderJinja(t, [][2]string{{bin["value_template"].(string), resolved}, {bin["json_attributes_template"].(string), resolved}}); got != nil {
		if got[0] != bin["payload_off"] {
			t.Errorf("binary sensor of a resolved alert renders %q, want payload_off %q (state %s)", got[0], bin["payload_off"], resolved)
		}
		if !strings.Contains(got[1], `"severity": null`) {
			t.Errorf("attributes of an alert without severity: %s", got[1])
		}
	}
}

// TestHADiscoveryAgain: the discovery configs come back when Home
// Assistant announces itself ("online" on homeassistant/status) and after
// the output reconnects, after they were removed from the broker.
func TestHADiscoveryAgain(t *testing.T) {
	b := mqtttest.StartMosquitto(t, mqtttest.Options{})
	st, _ := storetest.MustOpen(t, nil)
	st.RegisterOutputs([]string{"cloud"})
	out := haOutput(st, b.URL())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- out.Run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(300 * time.Millisecond)
	commitBodies(t, st, `{"type":"window","window":"w","key":"k","start":0,"end":10000,"rev":0,"final":true,"count":1}`,
		`{"type":"alert","detector":"d","key":"k","state":"firing","ts":1,"value":1,"reason":"r"}`)
	cfgs := []string{"homeassistant/sensor/gw-01_w_k_count/config", "homeassistant/binary_sensor/gw-01_d_k/config"}
	present := func() bool {
		ret := retainedOn(t, b.URL(), "homeassistant/#")
		return ret[cfgs[0]] != nil && ret[cfgs[1]] != nil
	}
	if !waitFor(5*time.Second, present) {
		t.Fatal("no discovery configs")
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("homeassistant"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(50)
	clear := func() {
		for _, topic := range cfgs { // what Home Assistant does when an entity is deleted
			c.Publish(topic, 0, true, "").WaitTimeout(5 * time.Second)
		}
		if !waitFor(3*time.Second, func() bool { return len(retainedOn(t, b.URL(), "homeassistant/#")) == 0 }) {
			t.Fatal("the retained configs could not be cleared")
		}
	}

	// A retained "online" (a Home Assistant configured to retain its
	// birth) seen at subscription does not count; a live one does.
	clear()
	c.Publish("homeassistant/status", 0, false, "online").WaitTimeout(5 * time.Second)
	if !waitFor(5*time.Second, present) {
		t.Fatal("Home Assistant's birth message did not bring the discovery configs back")
	}

	// The broker restarts (the connection drops): after the reconnect the
	// configs are published again.
	clear()
	b.Restart()
	if !waitFor(10*time.Second, present) {
		t.Fatalf("after a reconnect the discovery configs did not come back; reconnects %d", out.Stats().Reconnects)
	}
	if out.Stats().Reconnects == 0 {
		t.Error("the output did not reconnect")
	}
}
