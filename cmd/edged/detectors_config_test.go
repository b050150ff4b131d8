package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestDetectorsConfig runs configs/detectors.toml (every kind of detector
// on a cold store) over three hours of two rooms' readings with one episode
// per fault, through `edged batch`: each detector fires on its episode and
// on nothing else.
func TestDetectorsConfig(t *testing.T) {
	const t0 = int64(1700000000000)
	const step = 10_000 // ms
	min := func(m float64) int64 { return t0 + int64(m*60_000) }
	type episode struct {
		name      string
		key       string
		from, to  int64 // when its alerts may fire
		detectors []string
	}
	episodes := []episode{
		{"too warm", "room1/temp", min(32), min(38), []string{"too_warm"}},
		{"probe fault", "room1/temp", min(50), min(50.5), []string{"probe_fault", "temp_jump"}},
		{"power spike", "room1/power", min(60), min(60.5), []string{"power_unusual", "power_zscore", "power_spike"}},
		{"stuck probe", "room1/temp", min(89), min(91), []string{"stuck_probe"}},
		{"door left open", "room1", min(110), min(116), []string{"door_then_warm", "door_left_open"}},
		{"box silent", "room2/temp", min(154), min(156), []string{"box_silent"}},
	}

	rng := rand.New(rand.NewPCG(7, 7))
	var in bytes.Buffer
	for i := 0; ; i++ {
		ts := t0 + int64(i)*step
		m := float64(ts-t0) / 60_000
		if m >= 180 {
			break
		}
		for _, room := range []string{"room1", "room2"} {
			if room == "room2" && m > 150 {
				continue // box_silent
			}
			temp := 4 + 0.05*math.Sin(float64(i)/7) + (rng.Float64()-0.5)*0.04
			power := 1000 + 10*math.Sin(float64(i)/13) + (rng.Float64()-0.5)*6
			door := 0
			if room == "room1" {
				switch {
				case m >= 30 && m < 32: // too_warm: up to 9 at 0.04 degC/s
					temp = 4 + 5*(m-30)/2
				case m >= 32 && m < 36:
					temp = 9
				case m >= 36 && m < 38:
					temp = 9 - 5*(m-36)/2
				case m == 50: // probe_fault
					temp = -273.2
				case m >= 70 && m < 95: // stuck_probe
					temp = 4
				case m >= 110 && m < 118: // door open, the room warms by 3
					door = 1
					temp = 4 + 3*math.Min(1, (m-110)/6)
				case m >= 118 && m < 124:
					temp = 7 - 3*(m-118)/6
				}
				if m == 60 {
					power = 3000
				}
			}
			fmt.Fprintf(&in, `{"sensor":%q,"ts":%d,"temp":%.3f,"door":%d,"power":%.1f}`+"\n", room, ts, temp, door, power)
		}
	}

	out, stderr, code := runEdged(t, ".", in.Bytes(), "batch", "-c", "../../configs/detectors.toml", "-")
	if code != 0 {
		t.Fatalf("edged batch: exit %d\n%s", code, stderr)
	}
	found := map[string][]string{} // episode -> detectors that fired on it
	for _, l := range strings.Split(out, "\n") {
		var r struct {
			Type, Detector, Key, State, Reason string
			TS                                 int64
			Score                              *float64
		}
		if l == "" || json.Unmarshal([]byte(l), &r) != nil || r.Type != "alert" {
			continue
		}
		if r.Score == nil || !(*r.Score >= 0 && *r.Score <= 1) {
			t.Errorf("alert without a score in [0, 1]: %s", l)
		}
		if r.State != "firing" {
			continue
		}
		ok := false
		for _, e := range episodes {
			if r.Key == e.key && r.TS >= e.from && r.TS <= e.to && slices.Contains(e.detectors, r.Detector) {
				found[e.name] = append(found[e.name], r.Detector)
				ok = true
			}
		}
		if !ok {
			t.Errorf("alert outside its episode (minute %.1f): %s", float64(r.TS-t0)/60_000, l)
		}
	}
	for _, e := range episodes {
		for _, d := range e.detectors {
			if n := strings.Count(strings.Join(found[e.name], " ")+" ", d+" "); n != 1 {
				t.Errorf("%s: detector %s fired %d times, want once", e.name, d, n)
			}
		}
	}
	if t.Failed() {
		var alerts []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, `"type":"alert"`) {
				alerts = append(alerts, l)
			}
		}
		t.Logf("alerts:\n%s\nstderr:\n%s", strings.Join(alerts, "\n"), stderr)
	}
}
