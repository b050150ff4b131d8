package config

import "testing"

func TestHAClassRules(t *testing.T) {
	const w = "[[window]]\nname = \"w\"\ntype = \"tumbling\"\nsize = \"10s\"\n"
	runProblemCases(t, []problemCase{
		{"unknown device class", w + "ha = [{ device_class = \"temprature\" }]\n",
			[]string{`window[0] "w": ha[0]: device_class: invalid value "temprature" (did you mean "temperature"?)`}, 5},
		{"text device class", w + "ha = [{ device_class = \"timestamp\" }]\n",
			[]string{`"timestamp" is for text states, and a window's values are numbers`}, 5},
		{"unknown state class", w + "ha = [{ state_class = \"total_incresing\" }]\n",
			[]string{`state_class: invalid value "total_incresing" (did you mean "total_increasing"?)`}, 5},
		{"angle without wind", w + "ha = [{ device_class = \"temperature\", state_class = \"measurement_angle\" }]\n",
			[]string{`"measurement_angle" is for device_class = "wind_direction" only`}, 5},
		{"wind without angle", w + "ha = [{ device_class = \"wind_direction\", state_class = \"measurement\" }]\n",
			[]string{`device_class "wind_direction" needs state_class = "measurement_angle"`}, 5},
		{"bad match", w + "[[window.ha]]\nmatch = \"[\"\n", []string{`ha[0]: match: invalid glob "["`}, 6},
		{"unknown key", w + "[[window.ha]]\nunit = \"°C\"\n", []string{`unknown key "unit"`, `unit_of_measurement`}, 6},
		{"discovery without latest", "[[output]]\nname = \"ha\"\ntype = \"mqtt\"\nbroker = \"tcp://127.0.0.1:1883\"\nlatest = false\nha_discovery = true\n",
			[]string{`ha_discovery: Home Assistant reads the values from the retained latest topics: set latest = true`}, 6},
	})
	c, err := Parse("edged.toml", []byte(w+"ha = [\n  { match = \"*/temp\", unit_of_measurement = \"°C\", device_class = \"temperature\" },\n  { unit_of_measurement = \"kWh\", device_class = \"energy\", state_class = \"total_increasing\" },\n]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Windows[0].HA; len(got) != 2 || got[0] != (HAClass{Match: "*/temp", Unit: "°C", DeviceClass: "temperature"}) || got[1].StateClass != "total_increasing" {
		t.Errorf("ha entries %+v", got)
	}
	eff := c.Effective()
	c2, err := Parse("effective.toml", []byte(eff))
	if err != nil {
		t.Fatalf("the effective config does not parse: %v\n%s", err, eff)
	}
	if len(c2.Windows[0].HA) != 2 || c2.Windows[0].HA[0] != c.Windows[0].HA[0] {
		t.Errorf("ha entries lost in the effective config:\n%s", eff)
	}
}
