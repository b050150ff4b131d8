package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The values allowed for the enumerated keys, in the order they are listed
// in messages.
var (
	sourceTypes   = []string{"mqtt", "serial", "file", "stdin", "simulate", "modbus"}
	hex4          = regexp.MustCompile(`^[0-9A-Fa-f]{4}$`)
	formats       = []string{"json", "csv", "influx", "senml", "nmea", "kv", "raw"}
	tsUnits       = []string{"s", "ms", "us", "ns", "auto"}
	windowTypes   = []string{"tumbling", "sliding", "session"}
	keyBys        = []string{"sensor_metric", "sensor", "metric", "source", "global"}
	detectorTypes = []string{"anomaly", "threshold", "zscore", "mad", "rate", "flatline", "deadman", "range", "pattern"}
	outputTypes   = []string{"mqtt", "file", "stdout", "jetstream", "kafka"}
	logLevels     = []string{"debug", "info", "warn", "error"}
	logFormats    = []string{"text", "json"}
	brokerSchemes = []string{"tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss"}
)

// namePattern is what source, window, detector and output names (and the
// device id) may look like: they appear in MQTT topics and file names.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// validate checks every rule and records a problem, with its line, for each
// one broken. It runs after setDefaults.
func (c *Config) validate(m *meta) {
	v := validator{m: m}
	v.device(&c.Device)
	v.pipeline(&c.Pipeline)
	v.store(&c.Store)
	v.brokerSection(&c.Broker)
	v.httpSection(&c.HTTP)

	sourceNames := map[string]bool{}
	names := map[string]string{}
	for i := range c.Sources {
		s := &c.Sources[i]
		l := loc{key: "source", disp: "source"}.index(i, s.Name)
		v.name(l, s.Name, "source", names)
		v.source(l, s)
		sourceNames[s.Name] = true
	}
	v.modbusShared(c.Sources)
	names = map[string]string{}
	for i := range c.Windows {
		w := &c.Windows[i]
		l := loc{key: "window", disp: "window"}.index(i, w.Name)
		v.name(l, w.Name, "window", names)
		v.window(l, w, c.Sources, sourceNames)
		v.haClasses(l, w.HA)
	}
	names = map[string]string{}
	for i := range c.Detectors {
		d := &c.Detectors[i]
		l := loc{key: "detector", disp: "detector"}.index(i, d.Name)
		v.name(l, d.Name, "detector", names)
		v.detector(l, d)
		if d.ProcessingTime && d.Type == "deadman" && c.Pipeline.IdleTimeout <= 0 {
			v.add(l.child("processing_time"), `processing_time needs idleness, but [pipeline] idle_timeout is 0s: set idle_timeout = "30s" (how long a silent source takes to count as stopped), or remove processing_time`)
		}
		if d.OnWindow != "" && !slices.ContainsFunc(c.Windows, func(w Window) bool { return w.Name == d.OnWindow }) {
			v.add(l.child("on_window"), "no window named %q", d.OnWindow)
		}
	}
	names = map[string]string{}
	for i := range c.Outputs {
		o := &c.Outputs[i]
		l := loc{key: "output", disp: "output"}.index(i, o.Name)
		v.name(l, o.Name, "output", names)
		v.output(l, o)
	}
	v.log(&c.Log)
}

type validator struct{ m *meta }

func (v validator) add(l loc, format string, args ...any) { v.m.add(l, format, args...) }

// set reports whether the key at l was written in the file or holds a
// non-zero value.
func (v validator) set(l loc, nonZero bool) bool { return nonZero || v.m.isSet(l.key) }

// ok reports whether the key at l has no problem yet, so that rules which
// read it can trust its value.
func (v validator) ok(l loc) bool { return !v.m.bad[l.key] }

func (v validator) device(d *Device) {
	l := loc{key: "device", disp: "device"}
	switch id := l.child("id"); {
	case d.ID == "":
		v.add(id, `empty, and the host name is unknown: set id = "gw-01" under [device]`)
	case !namePattern.MatchString(d.ID):
		v.add(id, "invalid id %q: use only letters, digits, '_', '.' and '-' (it appears in MQTT topics)", d.ID)
	}
	if d.DataDir == "" {
		v.add(l.child("data_dir"), `empty: set a directory such as %q, or leave data_dir out`, DefaultDataDir)
	}
	v.oneOf(l.child("clock_check"), d.ClockCheck, []string{"build-date", "kernel", "off"}, false)
}

func (v validator) brokerSection(b *Broker) {
	if !b.Enabled {
		return
	}
	l := loc{key: "broker", disp: "broker"}
	for _, a := range []struct{ key, addr string }{{"listen", b.Listen}, {"ws_listen", b.WSListen}} {
		if a.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil || port == "" {
			v.add(l.child(a.key), "invalid address %q: use host:port, e.g. \"127.0.0.1:1883\" or \":1883\" for every interface", a.addr)
		}
	}
	if (b.Username == "") != (b.Password == "") {
		v.add(l.child("password"), "set both username and password, or neither")
	}
}

func (v validator) httpSection(h *HTTP) {
	if !h.Enabled {
		return
	}
	l := loc{key: "http", disp: "http"}
	if _, port, err := net.SplitHostPort(h.Listen); err != nil || port == "" {
		v.add(l.child("listen"), "invalid address %q: use host:port, e.g. %q (this gateway only) or \":9464\" for every interface (then set token)", h.Listen, DefaultHTTPListen)
	}
	if strings.ContainsFunc(h.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		// Never echo a secret.
		v.add(l.child("token"), "the token contains spaces or control characters (a trailing newline from a file?): it could not be sent in an Authorization header")
	}
}

func (v validator) pipeline(p *Pipeline) {
	l := loc{key: "pipeline", disp: "pipeline"}
	v.wholeMs(l.child("max_out_of_orderness"), p.MaxOutOfOrderness)
	v.wholeMs(l.child("allowed_lateness"), p.AllowedLateness)
	if p.CheckpointInterval <= 0 {
		v.add(l.child("checkpoint_interval"), `must be more than 0, e.g. "1s"`)
	}
	if p.StateInterval < 0 || (p.StateInterval > 0 && p.CheckpointInterval > 0 && p.StateInterval < p.CheckpointInterval) {
		v.add(l.child("state_interval"), `must be at least checkpoint_interval (%s), e.g. "30s": state is saved with a checkpoint`, p.CheckpointInterval.D())
	}
}

func (v validator) store(s *Store) {
	l := loc{key: "store", disp: "store"}
	if s.MaxBytes < 1<<20 {
		v.add(l.child("max_bytes"), `must be at least 1MiB, e.g. "256MiB"`)
	}
	if s.OutboxMaxBytes < 64<<10 {
		v.add(l.child("outbox_max_bytes"), `must be at least 64KiB, e.g. "64MiB"`)
	}
	if s.Retain < Duration(time.Minute) {
		v.add(l.child("retain"), `must be at least "1m", e.g. "7d"`)
	}
	if s.QuarantineMax < 1 {
		v.add(l.child("quarantine_max"), `must be at least 1, e.g. 10000`)
	}
	if s.CommitInterval < Duration(time.Millisecond) || s.CommitInterval > Duration(10*time.Second) {
		v.add(l.child("commit_interval"), `must be between "1ms" and "10s", e.g. "250ms"`)
	}
}

// wholeMs requires d, an event-time duration, to be whole milliseconds, as
// event time is kept in milliseconds.
func (v validator) wholeMs(l loc, d Duration) {
	if d%Duration(time.Millisecond) != 0 {
		near := max(Duration(d.D().Round(time.Millisecond)), Duration(time.Millisecond))
		v.add(l, "%s is not a whole number of milliseconds: event time is kept in ms; use e.g. %q", formatDuration(d), formatDuration(near))
	}
}

// name checks a source, window, detector or output name and that it is the
// only one of its kind; seen maps names to the display path of their first
// use.
func (v validator) name(l loc, name, kind string, seen map[string]string) {
	nl := l.child("name")
	switch {
	case name == "":
		v.add(nl, `missing: every [[%s]] needs a name = "..." (letters, digits, '_', '.' and '-')`, kind)
		return
	case !namePattern.MatchString(name):
		v.add(nl, "invalid name %q: use only letters, digits, '_', '.' and '-' (names appear in MQTT topics)", name)
	}
	if first, dup := seen[name]; dup {
		v.add(nl, "duplicate name %q, already used by %s: give each %s its own name", name, first, kind)
		return
	}
	first := l.disp
	if ln := v.m.line(l.key); ln > 0 {
		first += fmt.Sprintf(" at line %d", ln)
	}
	seen[name] = first
}

// oneOf checks that s is one of allowed; required says whether "" is a
// problem too.
func (v validator) oneOf(l loc, s string, allowed []string, required bool) bool {
	if s == "" {
		if required {
			v.add(l, "missing: set %s = %s", lastKey(l), quoteList(allowed, " or "))
			return false
		}
		return true
	}
	if slices.Contains(allowed, s) {
		return true
	}
	msg := fmt.Sprintf("invalid value %q: use %s", s, quoteList(allowed, " or "))
	if sug := suggest(s, allowed); sug != "" {
		msg = fmt.Sprintf("invalid value %q (did you mean %q?): use %s", s, sug, quoteList(allowed, " or "))
	}
	v.add(l, "%s", msg)
	return false
}

func (v validator) source(l loc, s *Source) {
	typeOK := v.oneOf(l.child("type"), s.Type, sourceTypes, true)
	if s.Type == "modbus" {
		if typeOK {
			v.modbus(l, s)
		}
		return
	}
	for _, k := range modbusOnly {
		if v.m.isSet(l.key + "." + k) {
			v.add(l.child(k), `%s is a key of modbus sources: remove it, or set type = "modbus"`, k)
		}
	}
	v.oneOf(l.child("format"), s.Format, formats, true)
	v.oneOf(l.child("ts_unit"), s.TSUnit, tsUnits, false)
	if s.Delimiter != "" && utf8.RuneCountInString(s.Delimiter) != 1 {
		v.add(l.child("delimiter"), `invalid delimiter %q: use a single character such as ",", ";" or "\t"`, s.Delimiter)
	}
	if s.MaxOutOfOrderness != nil {
		v.wholeMs(l.child("max_out_of_orderness"), *s.MaxOutOfOrderness)
	}
	v.qos(l.child("qos"), s.QoS)
	if !typeOK {
		return
	}
	switch s.Type {
	case "mqtt":
		v.broker(l.child("broker"), s.Broker, "mqtt source")
		if (s.TLSCert == "") != (s.TLSKey == "") {
			v.add(l.child("tls_key"), "set both tls_cert and tls_key (the client certificate and its key), or neither")
		}
		v.oneOf(l.child("overflow"), s.Overflow, []string{"block", "drop"}, false)
		if t := s.TopicTemplate; t != "" && !strings.Contains(t, "{sensor}") && !strings.Contains(t, "{metric}") {
			v.add(l.child("topic_template"), `invalid topic_template %q: name at least one level {sensor} or {metric}, e.g. "sensors/{sensor}/{metric}"`, t)
		}
		tl := l.child("topics")
		if len(s.Topics) == 0 {
			v.add(tl, `missing: an mqtt source needs at least one topic filter, e.g. topics = ["sensors/#"]`)
		}
		for i, t := range s.Topics {
			if msg := checkFilter(t); msg != "" {
				v.add(tl.index(i, ""), "%s", msg)
			}
		}
	case "serial":
		if s.Port == "" && s.USBVID == "" && s.USBPID == "" && s.USBSerial == "" {
			v.add(l.child("port"), `missing: a serial source needs port = "/dev/ttyUSB0" (or usb_vid/usb_pid/usb_serial to find it by USB identity; edged ports lists them)`)
		}
		if s.Baud <= 0 {
			v.add(l.child("baud"), "invalid baud %d: use the device's rate, e.g. 9600 or 115200", s.Baud)
		}
		if s.DataBits < 5 || s.DataBits > 8 {
			v.add(l.child("data_bits"), "invalid data_bits %d: use 5, 6, 7 or 8", s.DataBits)
		}
		v.oneOf(l.child("parity"), s.Parity, []string{"none", "odd", "even", "mark", "space"}, false)
		if s.StopBits != 1 && s.StopBits != 1.5 && s.StopBits != 2 {
			v.add(l.child("stop_bits"), "invalid stop_bits %v: use 1, 1.5 or 2", s.StopBits)
		}
		if len(s.LineEnd) != 1 {
			v.add(l.child("line_end"), `invalid line_end %q: use one byte, e.g. "\n" or "\r"`, s.LineEnd)
		}
		if s.MaxLine < 16 || s.MaxLine > 1<<20 {
			v.add(l.child("max_line"), `must be between 16 bytes and 1MiB, e.g. "4KiB"`)
		}
		if (s.PollCommand == "") != (s.PollEvery == 0) {
			v.add(l.child("poll_every"), `set both poll_command and poll_every (e.g. "5s"), or neither`)
		}
		for _, f := range []struct{ key, val string }{{"usb_vid", s.USBVID}, {"usb_pid", s.USBPID}} {
			if f.val != "" && !hex4.MatchString(f.val) {
				v.add(l.child(f.key), "invalid %s %q: use 4 hex digits as edged ports shows them, e.g. \"0403\"", f.key, f.val)
			}
		}
	case "simulate":
		if s.Sensors < 1 || s.Sensors > 1000000 {
			v.add(l.child("sensors"), "invalid sensors %d: use 1 to 1000000", s.Sensors)
		}
		if s.Rate <= 0 || s.Rate > 1000 {
			v.add(l.child("rate"), "invalid rate %v: readings per second per sensor, more than 0 and at most 1000", s.Rate)
		}
		v.oneOf(l.child("signal"), s.Signal, []string{"sine", "walk", "noise"}, false)
		al := l.child("anomalies")
		for i, a := range s.Anomalies {
			v.oneOf(al.index(i, ""), a, []string{"spike", "drift", "shift", "flatline", "dropout"}, true)
		}
	case "file":
		if s.Path == "" {
			v.add(l.child("path"), `missing: a file source needs path = "/path/to/readings.jsonl"`)
		}
	}
}

// qos checks an MQTT quality of service level.
func (v validator) qos(l loc, q int) {
	if q < 0 || q > 2 {
		v.add(l, "invalid qos %d: use 0 (at most once), 1 (at least once) or 2 (exactly once)", q)
	}
}

// broker checks an MQTT broker URL.
func (v validator) broker(l loc, s, what string) {
	const hint = `use a URL such as "tcp://127.0.0.1:1883" or "ssl://broker.example:8883"`
	if s == "" {
		v.add(l, "missing: an %s needs a broker: %s", what, hint)
		return
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		v.add(l, "invalid broker URL %q: %s", s, hint)
		return
	}
	if !slices.Contains(brokerSchemes, strings.ToLower(u.Scheme)) {
		v.add(l, "invalid broker URL %q: unknown scheme %q; use one of %s", u.Redacted(), u.Scheme, strings.Join(brokerSchemes, ", "))
		return
	}
	if u.Host == "" {
		v.add(l, "invalid broker URL %q: no host; %s", u.Redacted(), hint)
	}
}

// checkFilter checks an MQTT subscription topic filter and returns what is
// wrong with it, or "".
func checkFilter(t string) string {
	const hint = `"+" matches one whole level and "#" the rest, e.g. "sensors/+/temp" or "sensors/#"`
	if t == "" {
		return `empty topic filter: use e.g. "sensors/#"`
	}
	levels := strings.Split(t, "/")
	for i, lv := range levels {
		if strings.Contains(lv, "#") && (lv != "#" || i != len(levels)-1) {
			return fmt.Sprintf("invalid topic filter %q: %s", t, hint)
		}
		if strings.Contains(lv, "+") && lv != "+" {
			return fmt.Sprintf("invalid topic filter %q: %s", t, hint)
		}
	}
	return ""
}

func (v validator) window(l loc, w *Window, sources []Source, sourceNames map[string]bool) {
	size, slide, gap, offset := l.child("size"), l.child("slide"), l.child("gap"), l.child("offset")
	for _, d := range []struct {
		l loc
		d Duration
	}{{size, w.Size}, {slide, w.Slide}, {gap, w.Gap}, {offset, w.Offset}} {
		v.wholeMs(d.l, d.d)
	}
	if w.AllowedLateness != nil {
		v.wholeMs(l.child("allowed_lateness"), *w.AllowedLateness)
	}
	forbid := func(k loc, d Duration, why string) {
		if v.set(k, d != 0) {
			v.add(k, "not allowed for a %s window: %s", w.Type, why)
		}
	}

	if v.oneOf(l.child("type"), w.Type, windowTypes, true) {
		switch w.Type {
		case "tumbling":
			if w.Size <= 0 {
				v.add(size, `a tumbling window needs a size greater than 0, e.g. size = "10s"`)
			}
			forbid(slide, w.Slide, `remove slide, or use type = "sliding"`)
			forbid(gap, w.Gap, `remove gap, or use type = "session"`)
			if v.ok(size) && w.Size > 0 && w.Offset >= w.Size {
				v.add(offset, "%s must be less than size %s: the offset shifts windows within one size", formatDuration(w.Offset), formatDuration(w.Size))
			}
		case "sliding":
			if w.Size <= 0 {
				v.add(size, `a sliding window needs a size greater than 0, e.g. size = "1m"`)
			}
			switch {
			case w.Slide <= 0:
				v.add(slide, `a sliding window needs a slide greater than 0, e.g. slide = "10s"`)
			case w.Slide < Duration(time.Millisecond):
				v.add(slide, `%s is below 1ms: use at least "1ms"`, formatDuration(w.Slide))
			case v.ok(size) && w.Size > 0 && w.Slide > w.Size:
				v.add(slide, "%s is longer than size %s: slide must be at most size, or readings would fall between windows", formatDuration(w.Slide), formatDuration(w.Size))
			}
			forbid(gap, w.Gap, `remove gap, or use type = "session"`)
			if v.ok(slide) && w.Slide > 0 && w.Offset >= w.Slide {
				v.add(offset, "%s must be less than slide %s: the offset shifts windows within one slide", formatDuration(w.Offset), formatDuration(w.Slide))
			}
		case "session":
			if w.Gap <= 0 {
				v.add(gap, `a session window needs a gap greater than 0, e.g. gap = "30s"`)
			}
			forbid(size, w.Size, `a session lasts until no reading arrives for gap; remove size`)
			forbid(slide, w.Slide, "remove slide")
			forbid(offset, w.Offset, "remove offset")
		}
	}

	v.aggregates(l.child("aggregates"), w.Aggregates)
	v.oneOf(l.child("key_by"), w.KeyBy, keyBys, true)
	v.globs(l.child("sensors"), w.Sensors)
	v.globs(l.child("metrics"), w.Metrics)
	sl := l.child("sources")
	v.globs(sl, w.FromSources)
	for i, s := range w.FromSources {
		if !strings.ContainsAny(s, `*?[\`) && !sourceNames[s] {
			names := make([]string, len(sources))
			for j := range sources {
				names[j] = sources[j].Name
			}
			have := "none are configured"
			if len(names) > 0 {
				have = "configured: " + strings.Join(names, ", ")
			}
			v.m.addAt(sl.index(i, "").key, sl.disp, "no source named %q (%s)", s, have)
		}
	}
}

// aggregates checks a window's aggregate list.
func (v validator) aggregates(l loc, aggs []string) {
	if len(aggs) == 0 {
		v.add(l, `empty: list at least one aggregate, e.g. ["count", "mean"], or leave aggregates out for %s`, quoteList(DefaultAggregates, ", "))
		return
	}
	seen := map[string]bool{}
	for i, a := range aggs {
		el := l.index(i, "")
		if msg := checkAggregate(a); msg != "" {
			v.add(el, "%s", msg)
			continue
		}
		if seen[a] {
			v.add(el, "duplicate aggregate %q: list each aggregate once", a)
		}
		seen[a] = true
	}
}

// aggregateAliases are names people reach for and the aggregate they mean.
var aggregateAliases = map[string]string{
	"avg": "mean", "average": "mean", "median": "p50", "std": "stddev",
	"stdev": "stddev", "sd": "stddev", "total": "sum", "cnt": "count",
	"minimum": "min", "maximum": "max",
}

// checkAggregate returns what is wrong with aggregate name a, or "".
func checkAggregate(a string) string {
	if slices.Contains(basicAggregates, a) {
		return ""
	}
	if _, ok := IsPercentile(a); ok {
		return ""
	}
	const allowed = "allowed: count, sum, mean, min, max, first, last, stddev, range, or a percentile pNN such as p50, p95, p99.9"
	lower := strings.ToLower(a)
	if lower != a && checkAggregate(lower) == "" {
		return fmt.Sprintf("unknown aggregate %q (did you mean %q? aggregate names are lower case)", a, lower)
	}
	if alias, ok := aggregateAliases[lower]; ok {
		return fmt.Sprintf("unknown aggregate %q (did you mean %q? %s)", a, alias, allowed)
	}
	if rest, ok := strings.CutPrefix(lower, "p"); ok {
		if _, err := strconv.ParseFloat(rest, 64); err == nil {
			return fmt.Sprintf("invalid percentile %q: use pNN or pNN.N with 0 < NN < 100, e.g. p50, p95, p99.9", a)
		}
	}
	if sug := suggest(a, basicAggregates); sug != "" {
		return fmt.Sprintf("unknown aggregate %q (did you mean %q? %s)", a, sug, allowed)
	}
	return fmt.Sprintf("unknown aggregate %q (%s)", a, allowed)
}

// globs checks that each entry is a valid path.Match pattern.
func (v validator) globs(l loc, pats []string) {
	for i, p := range pats {
		if msg := checkGlob(p); msg != "" {
			v.add(l.index(i, ""), "%s", msg)
		}
	}
}

// checkGlob returns what is wrong with glob p, or "".
func checkGlob(p string) string {
	if p == "" {
		return `empty pattern: use a name, or a glob such as "boiler*"`
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Sprintf(`invalid glob %q: use * for any characters, ? for one, [abc] or [a-z] for a set, and \ to quote one of them`, p)
	}
	return ""
}

func (v validator) detector(l loc, d *Detector) {
	if d.Match != "" {
		if msg := checkGlob(d.Match); msg != "" {
			v.add(l.child("match"), "%s", msg)
		}
	}
	for _, f := range []struct {
		k string
		p *float64
	}{{"above", d.Above}, {"below", d.Below}} {
		if f.p != nil && (math.IsNaN(*f.p) || math.IsInf(*f.p, 0)) {
			v.add(l.child(f.k), "%s must be a finite number, not %v", f.k, *f.p)
		}
	}
	al := l.child("alpha")
	if v.set(al, d.Alpha != 0) && !(d.Alpha > 0 && d.Alpha < 1) {
		v.add(al, "invalid alpha %v: use a number between 0 and 1 (exclusive), e.g. 0.01", d.Alpha)
	}
	wl := l.child("window")
	v.wholeMs(wl, d.Window)
	for _, f := range []struct {
		k string
		d Duration
	}{{"for_duration", d.ForDuration}, {"duration", d.Duration}, {"within", d.Within}, {"renotify", d.Renotify}} {
		v.wholeMs(l.child(f.k), f.d)
	}
	if d.KeyBy != "" {
		v.oneOf(l.child("key_by"), d.KeyBy, []string{"sensor_metric", "sensor", "metric", "source", "global"}, false)
	}
	if d.Warmup < 0 {
		v.add(l.child("warmup"), "invalid warmup %d: use 0 or more readings", d.Warmup)
	}
	if !v.oneOf(l.child("type"), d.Type, detectorTypes, true) {
		return
	}
	v.detectorScores(l, d)
	if d.ProcessingTime && d.Type != "deadman" {
		v.add(l.child("processing_time"), `processing_time is only for type = "deadman" (a key silent while the whole input stopped): remove it from this %s detector`, d.Type)
	}
	switch d.Type {
	case "threshold":
		if d.Above == nil && d.Below == nil {
			v.add(l.child("above"), "missing: a threshold detector needs above = N and/or below = N")
		}
	case "anomaly":
		for _, k := range []struct {
			key string
			set bool
		}{{"sigma", d.Sigma != 0}, {"window", d.Window != 0}, {"alpha", d.Alpha != 0}} {
			if kl := l.child(k.key); v.set(kl, k.set) {
				v.add(kl, "an anomaly detector takes no %s: it learns each key's normal by itself; remove it, and set min_score (0 to 1, default 0.75) to change what fires", k.key)
			}
		}
	case "zscore":
		if sl := l.child("sigma"); v.set(sl, d.Sigma != 0) && !(d.Sigma > 0) {
			v.add(sl, "a zscore detector needs sigma > 0, e.g. sigma = 4.0 (the default)")
		}
		hasWindow, hasAlpha := v.set(wl, d.Window != 0), v.set(al, d.Alpha != 0)
		switch {
		case !hasWindow && !hasAlpha:
			v.add(wl, `missing: a zscore detector needs a baseline: window = "1h" (rolling, in event time) or alpha = 0.01 (EWMA)`)
		case hasWindow && hasAlpha:
			v.add(al, "a zscore detector takes window or alpha, not both: remove one")
		case hasWindow && d.Window <= 0:
			v.add(wl, `must be more than 0, e.g. window = "1h"`)
		}
	}
}

// detectorScores checks the keys of the scores and the alert lifecycle
// (min_score, resolve_count, tolerance) and that the detector's type has
// a use for them.
func (v validator) detectorScores(l loc, d *Detector) {
	has := func(types ...string) bool { return slices.Contains(types, d.Type) }
	if ml := l.child("min_score"); v.set(ml, d.MinScore != 0) {
		switch {
		case !has("anomaly", "threshold", "zscore", "mad", "rate"):
			v.add(ml, "min_score is for detectors with graded scores (anomaly, threshold, zscore, mad, rate): remove it from this %s detector", d.Type)
		case !(d.MinScore >= 0 && d.MinScore <= 1):
			v.add(ml, "invalid min_score %v: use a score between 0 and 1, e.g. 0.75", d.MinScore)
		}
	}
	if rl := l.child("resolve_count"); v.set(rl, d.ResolveCount != 0) {
		switch {
		case !has("anomaly", "zscore", "mad", "rate"):
			v.add(rl, "resolve_count is for anomaly, zscore, mad and rate detectors (threshold has hysteresis): remove it from this %s detector", d.Type)
		case d.ResolveCount < 1:
			v.add(rl, "invalid resolve_count %d: use 1 or more readings (default 10)", d.ResolveCount)
		}
	}
	if tl := l.child("tolerance"); v.set(tl, d.Tolerance != Tolerance{}) {
		switch {
		case !has("anomaly", "zscore", "mad", "flatline"):
			v.add(tl, "tolerance is for anomaly, zscore, mad and flatline detectors: remove it from this %s detector", d.Type)
		case !(d.Tolerance.Value >= 0) || math.IsInf(d.Tolerance.Value, 0):
			v.add(tl, "invalid tolerance %v: use a number >= 0 in the series' units, or a percentage such as \"2%%\"", d.Tolerance)
		}
	}
}

func (v validator) output(l loc, o *Output) {
	v.qos(l.child("qos"), o.QoS)
	if !v.oneOf(l.child("type"), o.Type, outputTypes, true) {
		return
	}
	v.foreignKeys(l, o.Type)
	switch o.Type {
	case "jetstream", "kafka":
		v.fleet(l, o)
	case "mqtt":
		v.broker(l.child("broker"), o.Broker, "mqtt output")
		for _, t := range []struct{ key, val string }{{"topic", o.Topic}, {"alert_topic", o.AlertTopic}, {"batch_topic", o.BatchTopic},
			{"status_topic", o.StatusTopic}, {"latest_topic", o.LatestTopic}, {"latest_alert_topic", o.LatestAlertTopic}} {
			if strings.ContainsAny(t.val, "+#") {
				v.add(l.child(t.key), "invalid topic %q: the wildcards + and # cannot be used when publishing", t.val)
			}
		}
		if o.HADiscovery && o.Latest != nil && !*o.Latest {
			v.add(l.child("ha_discovery"), "Home Assistant reads the values from the retained latest topics: set latest = true, or remove ha_discovery")
		}
		if (o.TLSCert == "") != (o.TLSKey == "") {
			v.add(l.child("tls_key"), "set both tls_cert and tls_key (the client certificate and its key), or neither")
		}
		if o.Inflight < 1 || o.Inflight > 65535 {
			v.add(l.child("inflight"), "invalid inflight %d: use 1 to 65535, e.g. 64", o.Inflight)
		}
		if o.Batch < 0 {
			v.add(l.child("batch"), "invalid batch %d: records per message, 0 or 1 for one each", o.Batch)
		}
		if *o.BacklogRate < 0 {
			v.add(l.child("backlog_rate"), "invalid backlog_rate %v: messages per second, 0 for no limit", *o.BacklogRate)
		}
	case "file":
		if o.Path == "" {
			v.add(l.child("path"), `missing: a file output needs path = "/var/lib/edged/out.jsonl"`)
		}
	}
}

func (v validator) log(g *Log) {
	l := loc{key: "log", disp: "log"}
	v.oneOf(l.child("level"), g.Level, logLevels, true)
	v.oneOf(l.child("format"), g.Format, logFormats, true)
}

// lastKey is the last key of l's path.
func lastKey(l loc) string {
	if i := strings.LastIndexByte(l.key, '.'); i >= 0 {
		return l.key[i+1:]
	}
	return l.key
}

// quoteList formats allowed values as "a", "b" or "c".
func quoteList(vals []string, last string) string {
	q := make([]string, len(vals))
	for i, s := range vals {
		q[i] = strconv.Quote(s)
	}
	if len(q) < 2 || last == ", " {
		return strings.Join(q, ", ")
	}
	return strings.Join(q[:len(q)-1], ", ") + last + q[len(q)-1]
}
