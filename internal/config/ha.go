package config

import "slices"

// Home Assistant's numeric sensor device classes and state classes
// (https://www.home-assistant.io/integrations/sensor/#device-class, as of
// Home Assistant 2025.10). A window's values are numbers, so the classes
// of text states (date, enum, timestamp) are refused.
var (
	haDeviceClasses = []string{"absolute_humidity", "apparent_power", "aqi", "area", "atmospheric_pressure", "battery",
		"blood_glucose_concentration", "carbon_dioxide", "carbon_monoxide", "conductivity", "current", "data_rate",
		"data_size", "distance", "duration", "energy", "energy_distance", "energy_storage", "frequency", "gas",
		"humidity", "illuminance", "irradiance", "moisture", "monetary", "nitrogen_dioxide", "nitrogen_monoxide",
		"nitrous_oxide", "ozone", "ph", "pm1", "pm10", "pm25", "pm4", "power", "power_factor", "precipitation",
		"precipitation_intensity", "pressure", "reactive_energy", "reactive_power", "signal_strength",
		"sound_pressure", "speed", "sulphur_dioxide", "temperature", "volatile_organic_compounds",
		"volatile_organic_compounds_parts", "voltage", "volume", "volume_flow_rate", "volume_storage", "water",
		"weight", "wind_direction", "wind_speed"}
	haTextClasses  = []string{"date", "enum", "timestamp"}
	haStateClasses = []string{"measurement", "measurement_angle", "total", "total_increasing"}
)

// DefaultHAStateClass is the state_class of a window's sensors when its ha
// entry sets none.
const DefaultHAStateClass = "measurement"

// haClasses checks a window's ha entries.
func (v validator) haClasses(l loc, cs []HAClass) {
	for i := range cs {
		c := &cs[i]
		el := l.child("ha").index(i, "")
		if v.set(el.child("match"), c.Match != "") {
			if msg := checkGlob(c.Match); msg != "" {
				v.add(el.child("match"), "%s", msg)
			}
		}
		dl := el.child("device_class")
		if slices.Contains(haTextClasses, c.DeviceClass) {
			v.add(dl, "%q is for text states, and a window's values are numbers: use a numeric class such as \"temperature\", or leave device_class out", c.DeviceClass)
		} else {
			v.oneOf(dl, c.DeviceClass, haDeviceClasses, false)
		}
		sl := el.child("state_class")
		if v.oneOf(sl, c.StateClass, haStateClasses, false) && v.ok(dl) {
			switch {
			case c.DeviceClass == "wind_direction" && c.StateClass != "" && c.StateClass != "measurement_angle":
				v.add(sl, `device_class "wind_direction" needs state_class = "measurement_angle" (or leave it out)`)
			case c.StateClass == "measurement_angle" && c.DeviceClass != "wind_direction":
				v.add(sl, `"measurement_angle" is for device_class = "wind_direction" only: use "measurement"`)
			}
		}
	}
}
