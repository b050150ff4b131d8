package config

import (
	"os"
	"strconv"
	"time"
)

// Defaults of the stable core (SEMANTICS section 8).
const (
	DefaultDataDir            = "/var/lib/edged"
	DefaultMaxOutOfOrderness  = Duration(2 * time.Second)
	DefaultAllowedLateness    = Duration(0)
	DefaultIdleTimeout        = Duration(30 * time.Second)
	DefaultCheckpointInterval = Duration(time.Second)
	DefaultStateInterval      = Duration(30 * time.Second)
	DefaultFormat             = "json"
	DefaultQoS                = 1
	DefaultBaud               = 9600
	DefaultKeyBy              = "sensor_metric"
	DefaultLogLevel           = "info"
	DefaultStoreMaxBytes      = Size(256 << 20)
	DefaultStoreRetain        = Duration(7 * 24 * time.Hour)
	DefaultOutboxMaxBytes     = Size(64 << 20)
	DefaultQuarantineMax      = 10000
	DefaultCommitInterval     = Duration(250 * time.Millisecond)
	DefaultLogFormat          = "text"
	DefaultHTTPListen         = "127.0.0.1:9464"
)

// DefaultAggregates are a window's aggregates when it lists none.
var DefaultAggregates = []string{"count", "mean", "min", "max"}

// hostname gives the default device id; a variable so tests can replace it.
var hostname = os.Hostname

// setDefaults fills in every value the file left out. A key written in the
// file is never replaced, even with a zero value (qos = 0 and
// idle_timeout = "0s" mean what they say); m tells which keys were written.
func (c *Config) setDefaults(m *meta) {
	unset := func(path string, zero bool) bool { return zero && !m.isSet(path) }

	if c.Device.ID == "" {
		if h, err := hostname(); err == nil {
			c.Device.ID = h
		}
	}
	if c.Device.DataDir == "" {
		c.Device.DataDir = DefaultDataDir
	}
	if c.Device.ClockCheck == "" {
		c.Device.ClockCheck = "build-date"
	}
	if c.Broker.Listen == "" {
		c.Broker.Listen = "127.0.0.1:1883"
	}
	if unset("http.enabled", !c.HTTP.Enabled) {
		c.HTTP.Enabled = true
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = DefaultHTTPListen
	}

	p := &c.Pipeline
	if unset("pipeline.max_out_of_orderness", p.MaxOutOfOrderness == 0) {
		p.MaxOutOfOrderness = DefaultMaxOutOfOrderness
	}
	if unset("pipeline.allowed_lateness", p.AllowedLateness == 0) {
		p.AllowedLateness = DefaultAllowedLateness
	}
	if unset("pipeline.idle_timeout", p.IdleTimeout == 0) {
		p.IdleTimeout = DefaultIdleTimeout
	}
	if unset("pipeline.checkpoint_interval", p.CheckpointInterval == 0) {
		p.CheckpointInterval = DefaultCheckpointInterval
	}
	if unset("pipeline.state_interval", p.StateInterval == 0) {
		p.StateInterval = max(DefaultStateInterval, p.CheckpointInterval)
	}

	st := &c.Store
	if st.MaxBytes == 0 {
		st.MaxBytes = DefaultStoreMaxBytes
	}
	if st.Retain == 0 {
		st.Retain = DefaultStoreRetain
	}
	if st.OutboxMaxBytes == 0 {
		st.OutboxMaxBytes = DefaultOutboxMaxBytes
	}
	if st.QuarantineMax == 0 {
		st.QuarantineMax = DefaultQuarantineMax
	}
	if st.CommitInterval == 0 {
		st.CommitInterval = DefaultCommitInterval
	}

	for i := range c.Sources {
		s := &c.Sources[i]
		at := "source." + strconv.Itoa(i) + "."
		if s.Format == "" && s.Type != "modbus" { // a modbus source reads registers, not payloads
			s.Format = DefaultFormat
		}
		if s.Type == "mqtt" && unset(at+"qos", s.QoS == 0) {
			s.QoS = DefaultQoS
		}
		switch s.Type {
		case "modbus":
			modbusDefaults(s, at, m)
		case "serial":
			if unset(at+"baud", s.Baud == 0) {
				s.Baud = DefaultBaud
			}
			if s.DataBits == 0 {
				s.DataBits = 8
			}
			if s.Parity == "" {
				s.Parity = "none"
			}
			if s.StopBits == 0 {
				s.StopBits = 1
			}
			if s.LineEnd == "" {
				s.LineEnd = "\n"
			}
			if s.MaxLine == 0 {
				s.MaxLine = 4 << 10
			}
		case "mqtt":
			if s.CleanSession == nil {
				cs := s.QoS == 0
				s.CleanSession = &cs
			}
			if s.Keepalive == 0 {
				s.Keepalive = Duration(30 * time.Second)
			}
			if s.Overflow == "" {
				s.Overflow = "block"
			}
		case "simulate":
			if s.Sensors == 0 {
				s.Sensors = 10
			}
			if s.Rate == 0 {
				s.Rate = 1
			}
			if s.Signal == "" {
				s.Signal = "sine"
			}
			if s.Period == 0 {
				s.Period = Duration(time.Minute)
			}
			if unset(at+"amplitude", s.Amplitude == 0) {
				s.Amplitude = 10
			}
			if unset(at+"offset", s.Offset == 0) {
				s.Offset = 20
			}
			if unset(at+"noise", s.Noise == 0) {
				s.Noise = 0.1
			}
			if s.AnomalyEvery == 0 {
				s.AnomalyEvery = Duration(5 * time.Minute)
			}
			if unset(at+"seed", s.Seed == 0) {
				s.Seed = 1
			}
		}
	}

	for i := range c.Windows {
		w := &c.Windows[i]
		at := "window." + strconv.Itoa(i) + "."
		if unset(at+"aggregates", len(w.Aggregates) == 0) {
			w.Aggregates = append([]string(nil), DefaultAggregates...)
		}
		if w.KeyBy == "" {
			w.KeyBy = DefaultKeyBy
		}
	}

	for i := range c.Outputs {
		o := &c.Outputs[i]
		at := "output." + strconv.Itoa(i) + "."
		if o.Type == "jetstream" || o.Type == "kafka" {
			fleetDefaults(o, func(key string, zero bool) bool { return unset(at+key, zero) })
			continue
		}
		if o.Type != "mqtt" {
			continue
		}
		if unset(at+"qos", o.QoS == 0) {
			o.QoS = DefaultQoS
		}
		if o.Topic == "" {
			o.Topic = "edged/{device}/{window}/{key}"
		}
		if o.AlertTopic == "" {
			o.AlertTopic = "edged/{device}/alerts/{detector}/{key}"
		}
		if o.BatchTopic == "" {
			o.BatchTopic = "edged/{device}/batch"
		}
		if o.StatusTopic == "" {
			o.StatusTopic = "edged/{device}/status"
		}
		if o.LatestTopic == "" {
			o.LatestTopic = "edged/{device}/latest/{window}/{key}"
		}
		if o.LatestAlertTopic == "" {
			o.LatestAlertTopic = "edged/{device}/latest_alert/{detector}/{key}"
		}
		if o.Latest == nil {
			t := true
			o.Latest = &t
		}
		if o.HAPrefix == "" {
			o.HAPrefix = "homeassistant"
		}
		if o.Inflight == 0 {
			o.Inflight = 64
		}
		if o.BacklogRate == nil {
			r := 500.0
			o.BacklogRate = &r
		}
		if o.Keepalive == 0 {
			o.Keepalive = Duration(30 * time.Second)
		}
	}

	if c.Log.Level == "" {
		c.Log.Level = DefaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = DefaultLogFormat
	}
}

// fleetDefaults fills in a jetstream or kafka output's defaults; unset
// reports whether a key of the output is absent from the file.
func fleetDefaults(o *Output, unset func(key string, zero bool) bool) {
	t := true
	if o.LiveFirst == nil {
		o.LiveFirst = &t
	}
	if unset("inflight", o.Inflight == 0) {
		o.Inflight = 256
	}
	if o.BacklogRate == nil {
		r := 500.0
		o.BacklogRate = &r
	}
	switch o.Type {
	case "jetstream":
		if unset("subject", o.Subject == "") {
			o.Subject = "edged.{device}.{type}"
		}
		if unset("stream", o.Stream == "") {
			o.Stream = "EDGED"
		}
		if o.CreateStream == nil {
			o.CreateStream = &t
		}
		if unset("duplicate_window", o.DuplicateWindow == 0) {
			o.DuplicateWindow = Duration(2 * time.Minute)
		}
	case "kafka":
		if unset("topic", o.Topic == "") {
			o.Topic = "edged"
		}
		if o.SASLMechanism == "" && o.Username != "" {
			o.SASLMechanism = "plain"
		}
	}
}
