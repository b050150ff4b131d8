package config

// Config is a whole edged configuration file after defaults are applied.
// The names under [device], [pipeline], [[source]], [[window]], [[detector]]
// and [[output]] listed in SEMANTICS section 8 are the stable core: they keep
// their meaning across releases.
type Config struct {
	Device    Device     `toml:"device"`
	Pipeline  Pipeline   `toml:"pipeline"`
	Store     Store      `toml:"store"`
	Broker    Broker     `toml:"broker"`
	HTTP      HTTP       `toml:"http"`
	Sources   []Source   `toml:"source"`
	Windows   []Window   `toml:"window"`
	Detectors []Detector `toml:"detector"`
	Outputs   []Output   `toml:"output"`
	Log       Log        `toml:"log"`

	// File is the path the config was read from ("" when built in code).
	File string `toml:"-"`

	meta *meta // positions of the keys, for Problemf
}

// Device identifies the gateway.
type Device struct {
	// ID goes into every uplinked record. Default: the host name.
	ID string `toml:"id"`
	// DataDir holds the bbolt file. Default: "/var/lib/edged".
	DataDir string `toml:"data_dir"`
	// ClockCheck decides when the gateway's clock is unsynchronised, for
	// readings that carry no event time (SEMANTICS section 1): "build-date"
	// (default: a clock before this edged was built is wrong), "kernel" (also
	// when the kernel reports no time synchronisation, adjtimex STA_UNSYNC),
	// or "off".
	ClockCheck string `toml:"clock_check"`
}

// Broker is the embedded MQTT broker, off by default: one binary can serve
// sensors and dashboards on a gateway with no other broker.
type Broker struct {
	Enabled bool `toml:"enabled"`
	// Listen is the TCP address. Default "127.0.0.1:1883".
	Listen string `toml:"listen"`
	// WSListen, when set, also serves MQTT over websockets (dashboards in a
	// browser), e.g. "127.0.0.1:8083".
	WSListen string `toml:"ws_listen"`
	// Username and Password, when set, are required of every client;
	// otherwise anyone who can reach Listen may connect.
	Username string `toml:"username"`
	Password string `toml:"password"`
}

// HTTP is the daemon's observability endpoint: /healthz (200 once the
// pipeline has caught up with the log after recovery, 503 before and while
// stopping), /metrics (Prometheus text format) and /status (JSON).
type HTTP struct {
	// Enabled: default true (on the loopback address, so only the gateway
	// itself can reach it).
	Enabled bool `toml:"enabled"`
	// Listen is the TCP address. Default "127.0.0.1:9464" (9464 is the
	// port of OpenTelemetry's Prometheus exporter; set another one if
	// something else on the gateway uses it). ":9464" or "0.0.0.0:9464"
	// listens on every interface: set Token then.
	Listen string `toml:"listen"`
	// Token, when set, is required of every request as
	// "Authorization: Bearer <token>". A secret: take it from the
	// environment ("${EDGED_HTTP_TOKEN}"); it is never logged or printed.
	Token string `toml:"token"`
}

// Pipeline holds the event-time settings shared by all windows.
type Pipeline struct {
	MaxOutOfOrderness  Duration `toml:"max_out_of_orderness"` // default 2s
	AllowedLateness    Duration `toml:"allowed_lateness"`     // default 0s
	IdleTimeout        Duration `toml:"idle_timeout"`         // default 30s; 0 disables idleness
	CheckpointInterval Duration `toml:"checkpoint_interval"`  // default 1s
	// StateInterval: how often a checkpoint also writes the operators'
	// state (the other checkpoints commit the records only). Default 30s;
	// at least checkpoint_interval.
	StateInterval Duration `toml:"state_interval"`
}

// Store tunes the data file in data_dir (store.Options).
type Store struct {
	// MaxBytes caps the ingest log; the oldest entries a checkpoint covers
	// are dropped first. Default 256MiB. On 32-bit ARM keep max_bytes +
	// outbox_max_bytes well under 1GiB.
	MaxBytes Size `toml:"max_bytes"`
	// Retain drops log entries older than this. Default 7d.
	Retain Duration `toml:"retain"`
	// OutboxMaxBytes caps the outbox; when full the oldest records are
	// dropped and counted. Default 64MiB.
	OutboxMaxBytes Size `toml:"outbox_max_bytes"`
	// QuarantineMax caps the number of quarantined payloads. Default 10000.
	QuarantineMax int `toml:"quarantine_max"`
	// CommitInterval is the longest a reading waits for its group commit
	// (20ms at most when an MQTT acknowledgement waits). Longer means less
	// SD-card wear at low rates and more input unsynced at a power cut.
	// Default 250ms.
	CommitInterval Duration `toml:"commit_interval"`
}

// Source is one input: an MQTT subscription, a serial port, a file, stdin,
// the simulator or Modbus slaves.
type Source struct {
	Name   string `toml:"name"`   // required, unique
	Type   string `toml:"type"`   // mqtt | serial | file | stdin | simulate | modbus
	Format string `toml:"format"` // json | csv | influx | senml | nmea | kv | raw; default json

	// MaxOutOfOrderness overrides [pipeline] max_out_of_orderness for this
	// source when set.
	MaxOutOfOrderness *Duration `toml:"max_out_of_orderness"`

	// Decoder field mapping (see sensors.Options).
	SensorField string   `toml:"sensor_field"`
	MetricField string   `toml:"metric_field"`
	ValueField  string   `toml:"value_field"`
	TSField     string   `toml:"ts_field"`
	TSUnit      string   `toml:"ts_unit"` // s | ms | us | ns | auto
	Sensor      string   `toml:"sensor"`  // default sensor name for payloads that carry none
	Columns     []string `toml:"columns"` // csv without header
	Delimiter   string   `toml:"delimiter"`

	// mqtt
	Broker   string   `toml:"broker"`
	Topics   []string `toml:"topics"`
	QoS      int      `toml:"qos"` // default 1
	ClientID string   `toml:"client_id"`
	Username string   `toml:"username"`
	Password string   `toml:"password"`
	// TLS: a CA bundle to verify the broker, and a client certificate and
	// key when the broker asks for one (paths). TLSInsecure skips the
	// broker's verification (tests only).
	TLSCA       string `toml:"tls_ca"`
	TLSCert     string `toml:"tls_cert"`
	TLSKey      string `toml:"tls_key"`
	TLSInsecure bool   `toml:"tls_insecure"`
	// CleanSession: default false for qos >= 1 (the broker keeps the
	// subscription and unacknowledged messages while edged is away), true
	// for qos 0.
	CleanSession *bool `toml:"clean_session"`
	// TopicTemplate lets the topic feed the reading, e.g.
	// "sensors/{sensor}/{metric}": a payload without a sensor (or metric)
	// takes it from the topic. "+" in the template matches a level that is
	// ignored.
	TopicTemplate string   `toml:"topic_template"`
	Keepalive     Duration `toml:"keepalive"` // default 30s
	// Overflow: what an MQTT source does when the log cannot keep up.
	// "block" (default): it stops reading from the broker, which keeps the
	// messages (TCP backpressure; nothing dropped at any QoS). "drop": it
	// keeps reading and drops the oldest messages held beyond 1,024,
	// counted in /metrics (edged_source_dropped_total).
	Overflow string `toml:"overflow"`

	// serial
	Port     string  `toml:"port"`
	Baud     int     `toml:"baud"`      // default 9600 when type = serial
	DataBits int     `toml:"data_bits"` // 5..8, default 8
	Parity   string  `toml:"parity"`    // none | odd | even | mark | space; default none
	StopBits float64 `toml:"stop_bits"` // 1, 1.5 or 2; default 1
	// LineEnd frames lines: "\n" (default; a trailing "\r" is dropped) or
	// another single byte such as "\r" or ";".
	LineEnd string `toml:"line_end"`
	// MaxLine bounds a line; a longer one is quarantined. Default 4KiB.
	MaxLine Size `toml:"max_line"`
	// PollCommand, when set, is written to the port every PollEvery (for
	// sensors that answer only when asked); escapes \r \n \t \xHH.
	PollCommand string   `toml:"poll_command"`
	PollEvery   Duration `toml:"poll_every"`
	// USB identity, to find the port by device rather than by path (it may
	// come back under another name after an unplug): hex VID and PID such
	// as "0403" and "6001", and the serial number. Any one set enables it.
	USBVID    string `toml:"usb_vid"`
	USBPID    string `toml:"usb_pid"`
	USBSerial string `toml:"usb_serial"`

	// simulate: synthetic sensors named <sensor>-0 .. <sensor>-(N-1)
	// ("sim" when sensor is empty).
	Sensors      int      `toml:"sensors"`       // default 10
	Rate         float64  `toml:"rate"`          // readings per second per sensor, default 1
	Signal       string   `toml:"signal"`        // sine | walk | noise; default sine
	Period       Duration `toml:"period"`        // sine period, default 1m
	Amplitude    float64  `toml:"amplitude"`     // default 10
	Offset       float64  `toml:"offset"`        // the signal's mean, default 20
	Noise        float64  `toml:"noise"`         // stddev of added noise, default 0.1
	Metric       string   `toml:"metric"`        // metric of the readings, default ""
	Anomalies    []string `toml:"anomalies"`     // spike | drift | shift | flatline | dropout
	AnomalyEvery Duration `toml:"anomaly_every"` // default 5m
	Seed         int64    `toml:"seed"`          // default 1

	// file
	Path string `toml:"path"`

	// modbus: a Modbus TCP device or an RTU line (serial settings and USB
	// identity as for serial), polled every poll_every (default 1s).
	//
	// Controller is "tcp://host:port" (port 502 when left out) or
	// "file:///dev/ttyUSB0" for RTU; it may be left out for RTU when a
	// USB identity is set.
	Controller string `toml:"controller"`
	// SlaveID and Registers describe the one slave of a source that polls
	// one; Slave lists several on one line or connection instead.
	SlaveID   int              `toml:"slave_id"`
	Registers []ModbusRegister `toml:"registers"`
	Slave     []ModbusSlave    `toml:"slave"`
	// Timeout is the longest a slave may take to answer a request (on RTU,
	// on top of the time the bytes take on the wire). Default 1s.
	Timeout Duration `toml:"timeout"`
}

// ModbusSlave is one slave of a modbus source with several
// ([[source.slave]]).
type ModbusSlave struct {
	SlaveID int `toml:"slave_id"` // required: 1-247 on RTU, 0-255 on TCP
	// Sensor names the slave's readings. Default "<source>-<slave_id>".
	Sensor    string           `toml:"sensor"`
	Registers []ModbusRegister `toml:"registers"`
}

// ModbusRegister is one value read from a slave: its reading has the
// slave's sensor and the register's name as metric, and the value
// raw * scale + offset.
type ModbusRegister struct {
	Name string `toml:"name"` // required, unique within the slave
	Kind string `toml:"kind"` // coil | discrete | holding | input; required
	// Address is the protocol address, from 0 (Modicon register 40001 is
	// holding address 0).
	Address int `toml:"address"`
	// Type: int16 | uint16 | int32 | uint32 | int64 | uint64 | float32 |
	// float64 for holding and input registers (default uint16); bool for
	// coil and discrete (the default and only one).
	Type string `toml:"type"`
	// ByteOrder of a value over several bytes, A the most significant:
	// AB or BA for 16-bit types; ABCD (big-endian), DCBA, BADC or CDAB for
	// 32-bit; ABCDEFGH, HGFEDCBA, BADCFEHG or GHEFCDAB (or the four-letter
	// names) for 64-bit. Default big-endian (AB, ABCD, ABCDEFGH).
	ByteOrder string  `toml:"byte_order"`
	Scale     float64 `toml:"scale"` // default 1
	Offset    float64 `toml:"offset"`
}

// Window is one keyed event-time window with its aggregates.
type Window struct {
	Name       string   `toml:"name"`       // required, unique
	Type       string   `toml:"type"`       // tumbling | sliding | session
	Size       Duration `toml:"size"`       // tumbling, sliding
	Slide      Duration `toml:"slide"`      // sliding
	Gap        Duration `toml:"gap"`        // session
	Offset     Duration `toml:"offset"`     // tumbling, sliding: shifts the epoch alignment
	Aggregates []string `toml:"aggregates"` // count sum mean min max first last stddev range pNN; default ["count","mean","min","max"]

	// AllowedLateness overrides [pipeline] allowed_lateness for this window.
	AllowedLateness *Duration `toml:"allowed_lateness"`
	// KeyBy chooses the key: "sensor_metric" (default: sensor, or
	// sensor/metric when metric is set), "sensor", "metric", "source" or
	// "global" (one key, "*").
	KeyBy string `toml:"key_by"`

	// Filter: globs (* and ?) the reading must match to enter the window.
	// Empty means all.
	Sensors     []string `toml:"sensors"`
	Metrics     []string `toml:"metrics"`
	FromSources []string `toml:"sources"`

	// EarlyEvery, when set, emits partial results ("final": false) of open
	// windows every so often in processing time.
	EarlyEvery Duration `toml:"early_every"`

	// HA tells Home Assistant what the window's values measure, for the
	// MQTT outputs with ha_discovery: the first entry whose match fits a
	// key gives its sensors' unit, device class and state class.
	HA []HAClass `toml:"ha"`
}

// HAClass describes a window's values to Home Assistant (the
// unit_of_measurement, device_class and state_class of its MQTT sensors),
// e.g. { match = "*/temp", unit_of_measurement = "°C", device_class =
// "temperature" }. The count aggregate gets neither unit nor device class.
type HAClass struct {
	// Match is a glob on the window's key ("boiler-*/temp"); empty matches
	// every key.
	Match string `toml:"match"`
	// Unit is the values' unit_of_measurement, such as "°C", "%" or "kWh".
	Unit string `toml:"unit_of_measurement"`
	// DeviceClass is one of Home Assistant's numeric sensor device classes,
	// such as "temperature", "humidity", "power", "energy", "voltage".
	DeviceClass string `toml:"device_class"`
	// StateClass: "measurement" (default), "measurement_angle", "total" or
	// "total_increasing".
	StateClass string `toml:"state_class"`
}

// Detector is one anomaly detector. Only the keys of the stable core are
// defined here; the cep package documents the rest.
type Detector struct {
	Name  string   `toml:"name"`
	Type  string   `toml:"type"` // anomaly | threshold | zscore | mad | rate | flatline | deadman | range | pattern
	Match string   `toml:"match"`
	Above *float64 `toml:"above"`
	Below *float64 `toml:"below"`
	Sigma float64  `toml:"sigma"`
	// Window is the rolling baseline of zscore and mad, in event time.
	Window Duration `toml:"window"`
	Alpha  float64  `toml:"alpha"`
	Warmup int      `toml:"warmup"`

	// Which readings, keyed how (as for windows); or a window's results.
	KeyBy       string   `toml:"key_by"`
	Sensors     []string `toml:"sensors"`
	Metrics     []string `toml:"metrics"`
	FromSources []string `toml:"sources"`
	OnWindow    string   `toml:"on_window"` // watch this window's results instead of readings
	Field       string   `toml:"field"`     // the aggregate it watches, default "mean"

	Hysteresis  float64  `toml:"hysteresis"`   // threshold
	ForCount    int      `toml:"for_count"`    // threshold: readings in a row
	ForDuration Duration `toml:"for_duration"` // threshold: event time the condition holds
	MaxRate     float64  `toml:"max_rate"`     // rate: |change| per second
	Duration    Duration `toml:"duration"`     // flatline, deadman
	// Tolerance: flatline, changes within it count as stuck; zscore, mad,
	// anomaly: smaller deviations never fire. A number in the series'
	// units, or "2%" of its level.
	Tolerance Tolerance `toml:"tolerance"`
	Min       *float64  `toml:"min"` // range
	Max       *float64  `toml:"max"` // range

	// ProcessingTime (deadman): also fire in processing time while the
	// whole input stopped (every source idle, the watermark standing
	// still). Default false: event time only.
	ProcessingTime bool `toml:"processing_time"`

	// Pattern (see cep/pattern.go): conditions in order, each followed by
	// the next within Within; NotFollowedBy; Times for a counted single step.
	Steps         []string `toml:"steps"`
	NotFollowedBy string   `toml:"not_followed_by"`
	Within        Duration `toml:"within"`
	Times         int      `toml:"times"`
	MaxPartial    int      `toml:"max_partial"`

	// MinScore (threshold, zscore, mad, rate, anomaly): fire only when the
	// alert's score (0 to 1) is at least this; anomaly's default 0.75.
	MinScore float64 `toml:"min_score"`
	// ResolveCount (zscore, mad, rate, anomaly): readings in a row back
	// within bounds before a firing alert resolves; default 10.
	ResolveCount int `toml:"resolve_count"`

	// The alert lifecycle.
	Renotify Duration          `toml:"renotify"` // send "firing" again every so often while it holds
	Severity string            `toml:"severity"` // copied into the alerts, e.g. "critical"
	Labels   map[string]string `toml:"labels"`   // copied into the alerts
}

// Output is one destination of records.
type Output struct {
	Name   string `toml:"name"`
	Type   string `toml:"type"` // mqtt | file | stdout | jetstream | kafka
	Broker string `toml:"broker"`
	// Topic is the template of window and late records' topics:
	// {device}, {window}, {key}, {type}. Default "edged/{device}/{window}/{key}".
	// For kafka, the template of every record's topic (also {detector},
	// {state}); default "edged".
	Topic string `toml:"topic"`
	// AlertTopic is the template of alerts' topics: {device}, {detector},
	// {key}, {state}. Default "edged/{device}/alerts/{detector}/{key}".
	AlertTopic string `toml:"alert_topic"`
	QoS        int    `toml:"qos"` // default 1
	Path       string `toml:"path"`

	// mqtt connection (as for an mqtt source).
	ClientID    string   `toml:"client_id"`
	Username    string   `toml:"username"`
	Password    string   `toml:"password"`
	TLSCA       string   `toml:"tls_ca"`
	TLSCert     string   `toml:"tls_cert"`
	TLSKey      string   `toml:"tls_key"`
	TLSInsecure bool     `toml:"tls_insecure"`
	Keepalive   Duration `toml:"keepalive"` // default 30s

	// Inflight bounds the messages sent and not yet acknowledged. Default 64.
	Inflight int `toml:"inflight"`
	// Batch, when > 1, sends up to this many records per message, as a JSON
	// array on BatchTopic, to save per-message overhead on metered links.
	Batch      int    `toml:"batch"`
	BatchTopic string `toml:"batch_topic"` // default "edged/{device}/batch"
	// BacklogRate bounds the messages per second of the backlog replayed
	// after an outage, behind the live records. Default 500; 0 = no limit.
	BacklogRate *float64 `toml:"backlog_rate"`
	// StatusTopic gets a retained "online", and "offline" as the last will.
	// Default "edged/{device}/status".
	StatusTopic string `toml:"status_topic"`
	// Latest publishes each live window record again, retained, on
	// LatestTopic, so that a dashboard that connects later sees current
	// values at once. Default on; LatestTopic default
	// "edged/{device}/latest/{window}/{key}".
	Latest      *bool  `toml:"latest"`
	LatestTopic string `toml:"latest_topic"`
	// LatestAlertTopic gets the latest alert of each detector and key,
	// retained (with latest on), so that a dashboard sees which alerts
	// fire now. Default "edged/{device}/latest_alert/{detector}/{key}".
	LatestAlertTopic string `toml:"latest_alert_topic"`
	// HADiscovery publishes Home Assistant MQTT discovery configs (retained)
	// under HAPrefix (default "homeassistant"): a sensor for each window,
	// key and aggregate (state on latest_topic; unit and classes from the
	// window's ha entries) and a binary_sensor for each detector and key
	// (on while firing, the reason as an attribute; state on
	// latest_alert_topic). Needs latest on. They are published again at
	// every reconnect and when Home Assistant announces itself ("online"
	// on <ha_prefix>/status).
	HADiscovery bool   `toml:"ha_discovery"`
	HAPrefix    string `toml:"ha_prefix"`

	// Fleet outputs (jetstream, kafka): store-and-forward to a broker that a
	// central engine reads; docs/fleet.md. They share username, password,
	// tls_*, inflight (default 256) and backlog_rate with mqtt.

	// LiveFirst sends, after an outage, the records committed since the
	// reconnect before the backlog (as mqtt does). false sends every
	// device's records in seq order, which a consumer that keeps one seq
	// per device needs. Default true.
	LiveFirst *bool `toml:"live_first"`

	// URL is a jetstream output's server: nats://, tls://, ws:// or wss://,
	// several separated by commas.
	URL string `toml:"url"`
	// Subject is the template of a jetstream output's subjects: {device},
	// {type}, {window}, {detector}, {key}, {state}. Default
	// "edged.{device}.{type}".
	Subject string `toml:"subject"`
	// Stream is the JetStream stream the records go to. Default "EDGED".
	Stream string `toml:"stream"`
	// CreateStream creates Stream (file storage, the subjects of Subject,
	// DuplicateWindow) when it does not exist. Default true.
	CreateStream *bool `toml:"create_stream"`
	// DuplicateWindow is how long the stream remembers a Nats-Msg-Id: set
	// it to the longest outage expected. Used when edged creates the
	// stream; an existing stream with a shorter one gets a warning in the
	// log. Default "2m" (JetStream's own default).
	DuplicateWindow Duration `toml:"duplicate_window"`
	// Credentials is a NATS credentials file (JWT and nkey seed); NKey an
	// nkey seed file.
	Credentials string `toml:"credentials"`
	NKey        string `toml:"nkey"`

	// Brokers are a kafka output's seed brokers, host:port.
	Brokers []string `toml:"brokers"`
	// TLS turns on TLS to the Kafka brokers (also on when tls_ca or
	// tls_cert is set).
	TLS bool `toml:"tls"`
	// SASLMechanism authenticates to Kafka with username and password:
	// "plain", "scram-sha-256" or "scram-sha-512". Default "plain" when a
	// username is set.
	SASLMechanism string `toml:"sasl_mechanism"`
}

// Log configures the daemon's own logging.
type Log struct {
	Level  string `toml:"level"`  // debug | info | warn | error; default info
	Format string `toml:"format"` // text | json; default text
}
