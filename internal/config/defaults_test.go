package config

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	defer func(h func() (string, error)) { hostname = h }(hostname)
	hostname = func() (string, error) { return "gw-test", nil }

	c, err := Parse("edged.toml", []byte(`
[[source]]
name = "lab"
type = "mqtt"
broker = "tcp://127.0.0.1:1883"
topics = ["sensors/#"]

[[source]]
name = "uart"
type = "serial"
port = "/dev/ttyUSB0"

[[source]]
name = "in"
type = "stdin"

[[window]]
name = "w"
type = "tumbling"
size = "10s"

[[output]]
name = "cloud"
type = "mqtt"
broker = "ssl://broker.example:8883"
topic = "edged/{device}"

[[output]]
name = "out"
type = "stdout"
`))
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("device.id", c.Device.ID, "gw-test")
	check("device.data_dir", c.Device.DataDir, "/var/lib/edged")
	check("pipeline.max_out_of_orderness", c.Pipeline.MaxOutOfOrderness.D(), 2*time.Second)
	check("pipeline.allowed_lateness", c.Pipeline.AllowedLateness.D(), time.Duration(0))
	check("pipeline.idle_timeout", c.Pipeline.IdleTimeout.D(), 30*time.Second)
	check("pipeline.checkpoint_interval", c.Pipeline.CheckpointInterval.D(), time.Second)
	check("pipeline.state_interval", c.Pipeline.StateInterval.D(), 30*time.Second)
	check("source[0].format", c.Sources[0].Format, "json")
	check("source[0].qos", c.Sources[0].QoS, 1)
	check("source[0].max_out_of_orderness", c.Sources[0].MaxOutOfOrderness, (*Duration)(nil))
	check("source[1].baud", c.Sources[1].Baud, 9600)
	check("source[1].qos", c.Sources[1].QoS, 0) // qos only defaults for mqtt
	check("source[2].format", c.Sources[2].Format, "json")
	check("source[2].baud", c.Sources[2].Baud, 0) // baud only defaults for serial
	check("window.aggregates", c.Windows[0].Aggregates, []string{"count", "mean", "min", "max"})
	check("window.key_by", c.Windows[0].KeyBy, "sensor_metric")
	check("window.allowed_lateness", c.Windows[0].AllowedLateness, (*Duration)(nil))
	check("output[0].qos", c.Outputs[0].QoS, 1)
	check("output[1].qos", c.Outputs[1].QoS, 0)
	check("log.level", c.Log.Level, "info")
	check("log.format", c.Log.Format, "text")
	check("File", c.File, "edged.toml")
}

// TestDefaultsKeepExplicitZeros checks that a zero written in the file is
// not replaced by a non-zero default.
func TestDefaultsKeepExplicitZeros(t *testing.T) {
	c, err := Parse("edged.toml", []byte(`
[device]
id = "gw-01"
data_dir = "/data/edged"

[pipeline]
max_out_of_orderness = "0s"
idle_timeout = "0s"

[[source]]
name = "lab"
type = "mqtt"
broker = "tcp://b:1883"
topics = ["#"]
qos = 0
max_out_of_orderness = "0s"

[[window]]
name = "w"
type = "tumbling"
size = "1m"
aggregates = ["p95"]
key_by = "global"
allowed_lateness = "0s"

[[output]]
name = "cloud"
type = "mqtt"
broker = "tcp://b:1883"
topic = "t"
qos = 0
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Device.ID != "gw-01" || c.Device.DataDir != "/data/edged" {
		t.Errorf("device = %+v", c.Device)
	}
	if c.Pipeline.MaxOutOfOrderness != 0 || c.Pipeline.IdleTimeout != 0 {
		t.Errorf("pipeline = %+v, want explicit zeros kept", c.Pipeline)
	}
	if c.Sources[0].QoS != 0 || c.Outputs[0].QoS != 0 {
		t.Errorf("qos = %d, %d, want 0, 0", c.Sources[0].QoS, c.Outputs[0].QoS)
	}
	if p := c.Sources[0].MaxOutOfOrderness; p == nil || *p != 0 {
		t.Errorf("source max_out_of_orderness = %v, want 0s", p)
	}
	if p := c.Windows[0].AllowedLateness; p == nil || *p != 0 {
		t.Errorf("window allowed_lateness = %v, want 0s", p)
	}
	if !reflect.DeepEqual(c.Windows[0].Aggregates, []string{"p95"}) || c.Windows[0].KeyBy != "global" {
		t.Errorf("window = %+v", c.Windows[0])
	}
}

func TestHostnameFailure(t *testing.T) {
	defer func(h func() (string, error)) { hostname = h }(hostname)
	hostname = func() (string, error) { return "", errors.New("no name") }
	checkOneProblem(t, problemCase{
		name:   "no host name",
		config: "[pipeline]\n",
		want:   []string{`edged.toml: device: id: empty, and the host name is unknown: set id = "gw-01" under [device]`},
		line:   0,
	})
	if _, err := Parse("edged.toml", []byte("[device]\nid = \"gw\"\n")); err != nil {
		t.Fatalf("explicit id: %v", err)
	}
}
