package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// problemCase is one config with one mistake: the problem it must give,
// as substrings of the message, and the line it must name.
type problemCase struct {
	name   string
	config string
	want   []string
	line   int
}

// checkOneProblem parses tc.config and requires exactly one problem, on
// tc.line, whose text contains every substring of tc.want.
func checkOneProblem(t *testing.T, tc problemCase) {
	t.Helper()
	_, err := Parse("edged.toml", []byte(tc.config))
	if err == nil {
		t.Fatalf("Parse succeeded, want a problem containing %q", tc.want)
	}
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error %T is not a *config.Error: %v", err, err)
	}
	if len(cerr.Problems) != 1 {
		t.Fatalf("got %d problems, want 1:\n%v", len(cerr.Problems), err)
	}
	p := cerr.Problems[0]
	if p.Line != tc.line {
		t.Errorf("problem on line %d, want line %d: %v", p.Line, tc.line, p)
	}
	if p.File != "edged.toml" {
		t.Errorf("File = %q, want edged.toml", p.File)
	}
	for _, w := range tc.want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("problem %q\ndoes not contain %q", err.Error(), w)
		}
	}
}

func runProblemCases(t *testing.T, cases []problemCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { checkOneProblem(t, tc) })
	}
}

func TestSyntaxErrors(t *testing.T) {
	runProblemCases(t, []problemCase{
		{"missing value", "[pipeline]\nidle_timeout =\n", []string{"edged.toml:2:", "invalid TOML"}, 2},
		{"unclosed header", "[device]\nid = \"a\"\n[pipeline\n", []string{"edged.toml:3:", "invalid TOML"}, 3},
		{"duplicate key", "[device]\nid = \"a\"\nid = \"b\"\n", []string{"edged.toml:3:", "already been defined"}, 3},
		{"unterminated string", "[device]\n\nid = \"gw\n", []string{"edged.toml:3:"}, 3},
		{"single table after array", "[[source]]\nname = \"a\"\ntype = \"stdin\"\n[source]\n", []string{"edged.toml:4:"}, 4},
	})
	// A syntax error carries the column too.
	_, err := Parse("edged.toml", []byte("[pipeline]\nidle_timeout = \n"))
	var cerr *Error
	if !errors.As(err, &cerr) || cerr.Problems[0].Col == 0 {
		t.Fatalf("syntax error without column: %v", err)
	}
}

func TestUnknownKeysAndTypes(t *testing.T) {
	runProblemCases(t, []problemCase{
		{"unknown window key with suggestion", `[[window]]
name = "temp_10s"
type = "tumbling"
size = "10s"
sise = "5s"
`, []string{`edged.toml:5: window[0] "temp_10s": unknown key "sise" (did you mean "size"? allowed: name, type, size,`}, 5},
		{"unknown top-level array", "[[sources]]\nname = \"a\"\n", []string{`unknown key "sources" (did you mean "source"?`, "allowed: device, pipeline, store, broker, http, source, window, detector, output, log"}, 1},
		{"unknown device key", "[device]\nid = \"gw\"\nidd = \"x\"\n", []string{`edged.toml:3: device: unknown key "idd" (did you mean "id"?`}, 3},
		{"unknown key without suggestion", "[log]\nlevel = \"info\"\ncolour = true\n", []string{`log: unknown key "colour" (allowed: level, format)`}, 3},
		{"unknown dotted key", "pipeline.idle = \"1s\"\n", []string{`pipeline: unknown key "idle"`}, 1},
		{"unknown quoted key", "[pipeline]\n\"idle timeout\" = \"1s\"\n", []string{`pipeline: unknown key "idle timeout" (did you mean "idle_timeout"?`}, 2},
		{"unknown detector key", "[[detector]]\nname = \"d\"\ntype = \"rate\"\nper = \"1s\"\n", []string{`detector[0] "d": unknown key "per"`}, 4},
		{"single table for an array", "[source]\nname = \"a\"\ntype = \"stdin\"\n", []string{"source: expected an array of tables [[source]], got a single table [source]: write [[source]]"}, 1},
		{"array for a table", "[[pipeline]]\nidle_timeout = \"1s\"\n", []string{"pipeline: expected a table [pipeline], got an array of tables"}, 1},
		{"scalar for a table", "device = \"gw\"\n", []string{"device: expected a table [device], got string \"gw\""}, 1},
		{"duration as integer", "[pipeline]\n\nmax_out_of_orderness = 2\n", []string{`edged.toml:3: pipeline: max_out_of_orderness: expected a duration string such as "2s", got integer 2`}, 3},
		{"invalid duration", "[[window]]\nname = \"temp_10s\"\ntype = \"tumbling\"\nsize = \"10x\"\n", []string{`edged.toml:4: window[0] "temp_10s": size: invalid duration "10x": use a number with a unit, e.g. "10s", "1m", "500ms"`}, 4},
		{"negative duration", "[pipeline]\nidle_timeout = \"-1s\"\n", []string{`idle_timeout: invalid duration "-1s": must not be negative`}, 2},
		{"integer as string", "[[output]]\nname = \"o\"\ntype = \"mqtt\"\nbroker = \"tcp://b:1883\"\ntopic = \"t\"\nqos = \"1\"\n", []string{`output[0] "o": qos: expected an integer such as 1, got string "1"`}, 6},
		{"integer as float", "[[output]]\nname = \"o\"\ntype = \"stdout\"\nqos = 1.0\n", []string{`qos: expected an integer such as 1 (without a decimal point), got float 1`}, 4},
		{"float as string", "[[detector]]\nname = \"d\"\ntype = \"threshold\"\nabove = \"80\"\n", []string{`above: expected a number such as 1.5, got string "80"`}, 4},
		{"string as integer", "[[source]]\nname = 5\ntype = \"stdin\"\n", []string{`source[0]: name: expected a string, got integer 5`}, 2},
		{"string as boolean", "[device]\nid = true\n", []string{"device: id: expected a string, got boolean true"}, 2},
		{"string list as string", "[[source]]\nname = \"s\"\ntype = \"mqtt\"\nbroker = \"tcp://b\"\ntopics = \"sensors/#\"\n", []string{`topics: expected an array of strings such as ["a", "b"], got string "sensors/#"`}, 5},
		{"array element of wrong type", "[[window]]\nname = \"w\"\ntype = \"tumbling\"\nsize = \"1s\"\naggregates = [\n  \"count\",\n  5,\n]\n", []string{`window[0] "w": aggregates[1]: expected a string, got integer 5`}, 7},
		{"secret of wrong type", "[[source]]\nname = \"s\"\ntype = \"stdin\"\npassword = 12345\n", []string{"password: expected a string, got a integer"}, 4},
		{"date for a string", "[device]\nid = 1979-05-27\n", []string{"id: expected a string, got a date/time"}, 2},
	})

	// The value of a secret key is never printed.
	_, err := Parse("edged.toml", []byte("[[source]]\nname = \"s\"\ntype = \"stdin\"\npassword = 12345\n"))
	if err == nil || strings.Contains(err.Error(), "12345") {
		t.Errorf("secret value printed: %v", err)
	}
}

func TestDeviceAndPipelineRules(t *testing.T) {
	runProblemCases(t, []problemCase{
		{"device id with space", "[device]\nid = \"gw 01\"\n", []string{`device: id: invalid id "gw 01": use only letters, digits`}, 2},
		{"device id with slash", "[device]\nid = \"gw/01\"\n", []string{`invalid id "gw/01"`}, 2},
		{"checkpoint interval zero", "[pipeline]\ncheckpoint_interval = \"0s\"\n", []string{`pipeline: checkpoint_interval: must be more than 0, e.g. "1s"`}, 2},
		{"state interval below checkpoint interval", "[pipeline]\ncheckpoint_interval = \"5s\"\nstate_interval = \"2s\"\n", []string{`pipeline: state_interval: must be at least checkpoint_interval (5s), e.g. "30s"`}, 3},
		{"out of orderness not whole ms", "[pipeline]\nmax_out_of_orderness = \"1500us\"\n", []string{`max_out_of_orderness: 1ms500us is not a whole number of milliseconds`, `"2ms"`}, 2},
		{"lateness not whole ms", "[pipeline]\nallowed_lateness = \"10us\"\n", []string{`allowed_lateness: 10us is not a whole number of milliseconds`, `"1ms"`}, 2},
	})
}

func TestSourceRules(t *testing.T) {
	const mqtt = "[[source]]\nname = \"lab\"\ntype = \"mqtt\"\n"
	runProblemCases(t, []problemCase{
		{"missing name", "[[source]]\ntype = \"stdin\"\n", []string{`source[0]: name: missing: every [[source]] needs a name`}, 1},
		{"invalid name", "[[source]]\nname = \"a b\"\ntype = \"stdin\"\n", []string{`name: invalid name "a b": use only letters, digits, '_', '.' and '-'`}, 2},
		{"name with mqtt wildcard", "[[source]]\nname = \"a+b\"\ntype = \"stdin\"\n", []string{`invalid name "a+b"`}, 2},
		{"duplicate name", "[[source]]\nname = \"a\"\ntype = \"stdin\"\n\n[[source]]\nname = \"a\"\ntype = \"stdin\"\n", []string{`source[1] "a": name: duplicate name "a", already used by source[0] "a" at line 1`}, 6},
		{"missing type", "[[source]]\nname = \"a\"\n", []string{`source[0] "a": type: missing: set type = "mqtt", "serial", "file", "stdin", "simulate" or "modbus"`}, 1},
		{"invalid type", "[[source]]\nname = \"a\"\ntype = \"kafka\"\n", []string{`type: invalid value "kafka": use "mqtt", "serial", "file", "stdin", "simulate" or "modbus"`}, 3},
		{"type with suggestion", "[[source]]\nname = \"a\"\ntype = \"seriall\"\n", []string{`invalid value "seriall" (did you mean "serial"?)`}, 3},
		{"invalid format", "[[source]]\nname = \"a\"\ntype = \"stdin\"\nformat = \"xml\"\n", []string{`format: invalid value "xml": use "json", "csv", "influx", "senml", "nmea", "kv" or "raw"`}, 4},
		{"mqtt without broker", mqtt + "topics = [\"a/#\"]\n", []string{`source[0] "lab": broker: missing: an mqtt source needs a broker`}, 1},
		{"mqtt bad scheme", mqtt + "broker = \"http://b:1883\"\ntopics = [\"a\"]\n", []string{`broker: invalid broker URL "http://b:1883": unknown scheme "http"; use one of tcp, ssl, tls, mqtt, mqtts, ws, wss`}, 4},
		{"mqtt no scheme", mqtt + "broker = \"127.0.0.1:1883\"\ntopics = [\"a\"]\n", []string{`invalid broker URL`}, 4},
		{"mqtt no host", mqtt + "broker = \"tcp://\"\ntopics = [\"a\"]\n", []string{`invalid broker URL "tcp:": no host`}, 4},
		{"mqtt broker password not shown", mqtt + "broker = \"http://u:hunter2@b\"\ntopics = [\"a\"]\n", []string{`unknown scheme "http"`}, 4},
		{"mqtt without topics", mqtt + "broker = \"tcp://b:1883\"\n", []string{`topics: missing: an mqtt source needs at least one topic filter`}, 1},
		{"mqtt empty topics", mqtt + "broker = \"tcp://b:1883\"\ntopics = []\n", []string{`topics: missing`}, 5},
		{"mqtt bad filter", mqtt + "broker = \"tcp://b:1883\"\ntopics = [\n  \"a/#\",\n  \"a/#/b\",\n]\n", []string{`topics[1]: invalid topic filter "a/#/b"`}, 7},
		{"mqtt bad plus", mqtt + "broker = \"tcp://b:1883\"\ntopics = [\"a/b+\"]\n", []string{`topics[0]: invalid topic filter "a/b+"`}, 5},
		{"mqtt bad overflow", mqtt + "broker = \"tcp://b:1883\"\ntopics = [\"a\"]\noverflow = \"drop-oldest\"\n", []string{`overflow: invalid value "drop-oldest" (did you mean "drop"?): use "block" or "drop"`}, 6},
		{"qos out of range", mqtt + "broker = \"tcp://b:1883\"\ntopics = [\"a\"]\nqos = 3\n", []string{`qos: invalid qos 3: use 0 (at most once), 1 (at least once) or 2 (exactly once)`}, 6},
		{"serial without port", "[[source]]\nname = \"s\"\ntype = \"serial\"\n", []string{`source[0] "s": port: missing: a serial source needs port = "/dev/ttyUSB0"`}, 1},
		{"serial baud zero", "[[source]]\nname = \"s\"\ntype = \"serial\"\nport = \"/dev/ttyS0\"\nbaud = 0\n", []string{`baud: invalid baud 0: use the device's rate, e.g. 9600 or 115200`}, 5},
		{"file without path", "[[source]]\nname = \"f\"\ntype = \"file\"\n", []string{`path: missing: a file source needs path =`}, 1},
		{"invalid ts_unit", "[[source]]\nname = \"a\"\ntype = \"stdin\"\nts_unit = \"sec\"\n", []string{`ts_unit: invalid value "sec": use "s", "ms", "us", "ns" or "auto"`}, 4},
		{"long delimiter", "[[source]]\nname = \"a\"\ntype = \"stdin\"\nformat = \"csv\"\ndelimiter = \";;\"\n", []string{`delimiter: invalid delimiter ";;": use a single character`}, 5},
		{"source out of orderness not whole ms", "[[source]]\nname = \"a\"\ntype = \"stdin\"\nmax_out_of_orderness = \"1.5ms\"\n", []string{`source[0] "a": max_out_of_orderness: 1ms500us is not a whole number of milliseconds`}, 4},
	})
}

func TestWindowRules(t *testing.T) {
	const w = "[[window]]\nname = \"w\"\n"
	runProblemCases(t, []problemCase{
		{"missing name", "[[window]]\ntype = \"tumbling\"\nsize = \"1s\"\n", []string{`window[0]: name: missing: every [[window]] needs a name`}, 1},
		{"invalid name", "[[window]]\nname = \"temp/10s\"\ntype = \"tumbling\"\nsize = \"1s\"\n", []string{`invalid name "temp/10s"`}, 2},
		{"duplicate name", w + "type = \"tumbling\"\nsize = \"1s\"\n" + w + "type = \"tumbling\"\nsize = \"2s\"\n", []string{`window[1] "w": name: duplicate name "w", already used by window[0] "w" at line 1`}, 6},
		{"missing type", w + "size = \"1s\"\n", []string{`type: missing: set type = "tumbling", "sliding" or "session"`}, 1},
		{"invalid type", w + "type = \"hopping\"\nsize = \"1s\"\n", []string{`type: invalid value "hopping": use "tumbling", "sliding" or "session"`}, 3},
		{"tumbling without size", w + "type = \"tumbling\"\n", []string{`window[0] "w": size: a tumbling window needs a size greater than 0`}, 1},
		{"tumbling zero size", w + "type = \"tumbling\"\nsize = \"0s\"\n", []string{`size: a tumbling window needs a size greater than 0`}, 4},
		{"tumbling with slide", w + "type = \"tumbling\"\nsize = \"10s\"\nslide = \"1s\"\n", []string{`slide: not allowed for a tumbling window: remove slide, or use type = "sliding"`}, 5},
		{"tumbling with gap", w + "type = \"tumbling\"\nsize = \"10s\"\ngap = \"1s\"\n", []string{`gap: not allowed for a tumbling window`}, 5},
		{"tumbling offset too big", w + "type = \"tumbling\"\nsize = \"10s\"\noffset = \"10s\"\n", []string{`offset: 10s must be less than size 10s`}, 5},
		{"size not whole ms", w + "type = \"tumbling\"\nsize = \"1500us\"\n", []string{`size: 1ms500us is not a whole number of milliseconds`}, 4},
		{"sliding without slide", w + "type = \"sliding\"\nsize = \"10s\"\n", []string{`slide: a sliding window needs a slide greater than 0`}, 1},
		{"sliding without size", w + "type = \"sliding\"\nslide = \"10s\"\n", []string{`size: a sliding window needs a size greater than 0`}, 1},
		{"sliding slide longer than size", w + "type = \"sliding\"\nsize = \"10s\"\nslide = \"20s\"\n", []string{`slide: 20s is longer than size 10s: slide must be at most size`}, 5},
		{"sliding slide below 1ms", w + "type = \"sliding\"\nsize = \"10s\"\nslide = \"500us\"\n", []string{`slide: 500us is not a whole number of milliseconds`}, 5},
		{"sliding offset too big", w + "type = \"sliding\"\nsize = \"10s\"\nslide = \"2s\"\noffset = \"3s\"\n", []string{`offset: 3s must be less than slide 2s`}, 6},
		{"sliding with gap", w + "type = \"sliding\"\nsize = \"10s\"\nslide = \"2s\"\ngap = \"3s\"\n", []string{`gap: not allowed for a sliding window`}, 6},
		{"session without gap", w + "type = \"session\"\n", []string{`gap: a session window needs a gap greater than 0`}, 1},
		{"session with size", w + "type = \"session\"\ngap = \"30s\"\nsize = \"1m\"\n", []string{`size: not allowed for a session window`}, 5},
		{"session with slide", w + "type = \"session\"\ngap = \"30s\"\nslide = \"1m\"\n", []string{`slide: not allowed for a session window`}, 5},
		{"session with offset", w + "type = \"session\"\ngap = \"30s\"\noffset = \"1s\"\n", []string{`offset: not allowed for a session window`}, 5},
		{"session with zero offset written", w + "type = \"session\"\ngap = \"30s\"\noffset = \"0s\"\n", []string{`offset: not allowed for a session window`}, 5},
		{"unknown aggregate", w + "type = \"tumbling\"\nsize = \"1s\"\naggregates = [\"count\", \"avg\"]\n", []string{`window[0] "w": aggregates[1]: unknown aggregate "avg" (did you mean "mean"?`}, 5},
		{"unknown aggregate no suggestion", w + "type = \"tumbling\"\nsize = \"1s\"\naggregates = [\"entropy\"]\n", []string{`unknown aggregate "entropy" (allowed: count, sum, mean, min, max, first, last, stddev, range, or a percentile pNN`}, 5},
		{"aggregate typo", w + "type = \"tumbling\"\nsize = \"1s\"\naggregates = [\"stddevv\"]\n", []string{`unknown aggregate "stddevv" (did you mean "stddev"?`}, 5},
		{"upper-case aggregate", w + "type = \"tumbling\"\nsize = \"1s\"\naggregates = [\"P95\"]\n", []string{`unknown aggregate "P95" (did you mean "p95"? aggregate names are lower case)`}, 5},
		{"percentile 100", w + "type = \"tumbling\"\nsize = \"1s\"\naggregates = [\"p100\"]\n", []string{`invalid percentile "p100": use pNN or pNN.N with 0 < NN < 100`}, 5},
		{"percentile 0", w + "type = \"tumbling\"\nsize = \"1s\"\naggregates = [\"p0\"]\n", []string{`invalid percentile "p0"`}, 5},
		{"duplicate aggregate", w + "type = \"tumbling\"\nsize = \"1s\"\naggregates = [\n  \"count\",\n  \"p95\",\n  \"p95\",\n]\n", []string{`aggregates[2]: duplicate aggregate "p95": list each aggregate once`}, 8},
		{"empty aggregates", w + "type = \"tumbling\"\nsize = \"1s\"\naggregates = []\n", []string{`aggregates: empty: list at least one aggregate`}, 5},
		{"invalid key_by", w + "type = \"tumbling\"\nsize = \"1s\"\nkey_by = \"device\"\n", []string{`key_by: invalid value "device": use "sensor_metric", "sensor", "metric", "source" or "global"`}, 5},
		{"bad sensors glob", w + "type = \"tumbling\"\nsize = \"1s\"\nsensors = [\"boiler*\", \"[a\"]\n", []string{`sensors[1]: invalid glob "[a"`}, 5},
		{"bad metrics glob", w + "type = \"tumbling\"\nsize = \"1s\"\nmetrics = [\"a\\\\\"]\n", []string{`metrics[0]: invalid glob`}, 5},
		{"unknown source", "[[source]]\nname = \"lab\"\ntype = \"stdin\"\n" + w + "type = \"tumbling\"\nsize = \"1s\"\nsources = [\"lab\", \"lba\"]\n", []string{`edged.toml:8: window[0] "w": sources: no source named "lba" (configured: lab)`}, 8},
		{"unknown source none configured", w + "type = \"tumbling\"\nsize = \"1s\"\nsources = [\"lab\"]\n", []string{`window[0] "w": sources: no source named "lab" (none are configured)`}, 5},
		{"allowed lateness not whole ms", w + "type = \"tumbling\"\nsize = \"1s\"\nallowed_lateness = \"1.5ms\"\n", []string{`allowed_lateness: 1ms500us is not a whole number of milliseconds`}, 5},
		{"allowed lateness wrong type", w + "type = \"tumbling\"\nsize = \"1s\"\nallowed_lateness = 5\n", []string{`allowed_lateness: expected a duration string such as "2s", got integer 5`}, 5},
	})
}

func TestDetectorRules(t *testing.T) {
	const d = "[[detector]]\nname = \"d\"\n"
	runProblemCases(t, []problemCase{
		{"missing name", "[[detector]]\ntype = \"threshold\"\nabove = 1\n", []string{`detector[0]: name: missing`}, 1},
		{"invalid name", "[[detector]]\nname = \"#\"\ntype = \"threshold\"\nabove = 1\n", []string{`invalid name "#"`}, 2},
		{"duplicate name", d + "type = \"threshold\"\nabove = 1\n" + d + "type = \"threshold\"\nbelow = 1\n", []string{`detector[1] "d": name: duplicate name "d"`}, 6},
		{"missing type", d, []string{`type: missing: set type = "anomaly", "threshold", "zscore", "mad", "rate", "flatline", "deadman", "range" or "pattern"`}, 1},
		{"invalid type", d + "type = \"spike\"\n", []string{`type: invalid value "spike"`}, 3},
		{"threshold without bounds", d + "type = \"threshold\"\n", []string{`above: missing: a threshold detector needs above = N and/or below = N`}, 1},
		{"processing_time on another type", d + "type = \"flatline\"\nduration = \"1m\"\nprocessing_time = true\n",
			[]string{`edged.toml:5: detector[0] "d": processing_time: processing_time is only for type = "deadman"`, `remove it from this flatline detector`}, 5},
		{"processing_time without idleness", "[pipeline]\nidle_timeout = \"0s\"\n" + d + "type = \"deadman\"\nduration = \"1m\"\nprocessing_time = true\n",
			[]string{`edged.toml:7: detector[0] "d": processing_time: processing_time needs idleness`, `set idle_timeout = "30s"`}, 7},
		{"threshold nan", d + "type = \"threshold\"\nabove = nan\n", []string{`above: above must be a finite number`}, 4},
		{"zscore zero sigma", d + "type = \"zscore\"\nwindow = \"1h\"\nsigma = 0.0\n", []string{`sigma: a zscore detector needs sigma > 0`}, 5},
		{"zscore negative sigma", d + "type = \"zscore\"\nwindow = \"1h\"\nsigma = -1\n", []string{`sigma: a zscore detector needs sigma > 0`}, 5},
		{"zscore without baseline", d + "type = \"zscore\"\nsigma = 3\n", []string{`window: missing: a zscore detector needs a baseline`}, 1},
		{"zscore with both baselines", d + "type = \"zscore\"\nsigma = 3\nwindow = \"1h\"\nalpha = 0.1\n", []string{`alpha: a zscore detector takes window or alpha, not both`}, 6},
		{"alpha out of range", d + "type = \"zscore\"\nsigma = 3\nalpha = 1.5\n", []string{`alpha: invalid alpha 1.5: use a number between 0 and 1 (exclusive)`}, 5},
		{"alpha zero written", d + "type = \"zscore\"\nsigma = 3\nalpha = 0.0\n", []string{`invalid alpha 0`}, 5},
		{"negative warmup", d + "type = \"zscore\"\nsigma = 3\nalpha = 0.1\nwarmup = -1\n", []string{`warmup: invalid warmup -1`}, 6},
		{"bad match glob", d + "type = \"threshold\"\nabove = 1\nmatch = \"[\"\n", []string{`match: invalid glob "["`}, 5},
		{"anomaly with sigma", d + "type = \"anomaly\"\nsigma = 4\n", []string{`sigma: an anomaly detector takes no sigma`, `set min_score`}, 4},
		{"anomaly with window", d + "type = \"anomaly\"\nwindow = \"1h\"\n", []string{`window: an anomaly detector takes no window`}, 4},
		{"min_score out of range", d + "type = \"anomaly\"\nmin_score = 1.5\n", []string{`min_score: invalid min_score 1.5: use a score between 0 and 1`}, 4},
		{"min_score on deadman", d + "type = \"deadman\"\nduration = \"1m\"\nmin_score = 0.5\n", []string{`min_score: min_score is for detectors with graded scores`, `remove it from this deadman detector`}, 5},
		{"resolve_count zero", d + "type = \"mad\"\nwindow = \"1h\"\nresolve_count = 0\n", []string{`resolve_count: invalid resolve_count 0: use 1 or more readings`}, 5},
		{"resolve_count on threshold", d + "type = \"threshold\"\nabove = 1\nresolve_count = 3\n", []string{`resolve_count: resolve_count is for anomaly, zscore, mad and rate detectors (threshold has hysteresis)`}, 5},
		{"tolerance on rate", d + "type = \"rate\"\nmax_rate = 1\ntolerance = 0.5\n", []string{`tolerance: tolerance is for anomaly, zscore, mad and flatline detectors`}, 5},
		{"tolerance negative", d + "type = \"mad\"\nwindow = \"1h\"\ntolerance = -1\n", []string{`tolerance: invalid tolerance -1`}, 5},
		{"tolerance bad percent", d + "type = \"mad\"\nwindow = \"1h\"\ntolerance = \"2 percent\"\n", []string{`tolerance: invalid tolerance "2 percent": use a number in the series' units (tolerance = 0.5) or a percentage of its level (tolerance = "2%")`}, 5},
		{"tolerance wrong type", d + "type = \"mad\"\nwindow = \"1h\"\ntolerance = true\n", []string{`tolerance: expected a number such as 0.5 or a percentage such as "2%", got boolean true`}, 5},
	})
}

// The keys of scores and the alert lifecycle reach the config as written:
// a tolerance as a number or a percentage, min_score, resolve_count.
func TestDetectorScoreKeys(t *testing.T) {
	c, err := Parse("edged.toml", []byte(`[device]
id = "gw"
data_dir = "/tmp/x"
[[source]]
name = "s"
type = "stdin"
[[detector]]
name = "a"
type = "anomaly"
min_score = 0.9
resolve_count = 3
tolerance = "2.5%"
[[detector]]
name = "m"
type = "mad"
window = "1h"
tolerance = 2
[[detector]]
name = "z"
type = "zscore"
window = "1h"
tolerance = 0.25
[[output]]
name = "o"
type = "stdout"
`))
	if err != nil {
		t.Fatal(err)
	}
	a, m, z := c.Detectors[0], c.Detectors[1], c.Detectors[2]
	if a.MinScore != 0.9 || a.ResolveCount != 3 || a.Tolerance != (Tolerance{Value: 0.025, Relative: true}) {
		t.Errorf("anomaly: %+v", a)
	}
	if m.Tolerance != (Tolerance{Value: 2}) || z.Tolerance != (Tolerance{Value: 0.25}) {
		t.Errorf("tolerances: %+v %+v", m.Tolerance, z.Tolerance)
	}
	eff := string(c.Effective())
	for _, want := range []string{`tolerance     = "2.5%"`, `min_score     = 0.9`, `resolve_count = 3`, `tolerance = 2.0`} {
		if !strings.Contains(eff, want) {
			t.Errorf("effective config lacks %q:\n%s", want, eff)
		}
	}
	again, err := Parse("effective.toml", c.Effective())
	if err != nil || again.Detectors[0].Tolerance != a.Tolerance || again.Detectors[1].Tolerance != m.Tolerance {
		t.Errorf("effective config does not read back: %v", err)
	}
}

func TestOutputAndLogRules(t *testing.T) {
	const o = "[[output]]\nname = \"cloud\"\n"
	runProblemCases(t, []problemCase{
		{"missing name", "[[output]]\ntype = \"stdout\"\n", []string{`output[0]: name: missing`}, 1},
		{"duplicate name", o + "type = \"stdout\"\n" + o + "type = \"stdout\"\n", []string{`output[1] "cloud": name: duplicate name "cloud"`}, 5},
		{"missing type", o, []string{`type: missing: set type = "mqtt", "file", "stdout", "jetstream" or "kafka"`}, 1},
		{"invalid type", o + "type = \"amqp\"\n", []string{`invalid value "amqp"`}, 3},
		{"mqtt without broker", o + "type = \"mqtt\"\ntopic = \"t\"\n", []string{`output[0] "cloud": broker: missing: an mqtt output needs a broker`}, 1},
		{"mqtt topic wildcard", o + "type = \"mqtt\"\nbroker = \"ssl://b:8883\"\ntopic = \"edged/#\"\n", []string{`topic: invalid topic "edged/#": the wildcards + and # cannot be used when publishing`}, 5},
		{"mqtt qos", o + "type = \"mqtt\"\nbroker = \"ssl://b:8883\"\ntopic = \"t\"\nqos = -1\n", []string{`qos: invalid qos -1`}, 6},
		{"file without path", o + "type = \"file\"\n", []string{`path: missing: a file output needs path =`}, 1},
		{"log level", "[log]\nlevel = \"verbose\"\n", []string{`log: level: invalid value "verbose": use "debug", "info", "warn" or "error"`}, 2},
		{"log level typo", "[log]\nlevel = \"warning\"\n", []string{`(did you mean "warn"?)`}, 2},
		{"log format", "[log]\nformat = \"logfmt\"\n", []string{`log: format: invalid value "logfmt": use "text" or "json"`}, 2},
	})
}

// TestAllProblemsAtOnce checks that every mistake in a file is reported, in
// line order, each on its own line, and nothing else.
func TestAllProblemsAtOnce(t *testing.T) {
	src := `[pipeline]
max_out_of_orderness = 2

[[source]]
name = "lab"
type = "stdin"

[[window]]
name = "temp_10s"
type = "tumbling"
size = "10x"
aggregates = ["count", "p95"]
sise = "1s"
`
	_, err := Parse("edged.toml", []byte(src))
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("want *Error, got %v", err)
	}
	want := []struct {
		line int
		text string
	}{
		{2, `edged.toml:2: pipeline: max_out_of_orderness: expected a duration string such as "2s", got integer 2`},
		{11, `edged.toml:11: window[0] "temp_10s": size: invalid duration "10x": use a number with a unit, e.g. "10s", "1m", "500ms"`},
		{13, `edged.toml:13: window[0] "temp_10s": unknown key "sise" (did you mean "size"? allowed: name, type, size,`},
	}
	if len(cerr.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(cerr.Problems), len(want), err)
	}
	lines := strings.Split(err.Error(), "\n")
	for i, w := range want {
		if cerr.Problems[i].Line != w.line {
			t.Errorf("problem %d on line %d, want %d", i, cerr.Problems[i].Line, w.line)
		}
		if !strings.HasPrefix(lines[i], w.text) {
			t.Errorf("line %d of the error:\n got %s\nwant %s", i, lines[i], w.text)
		}
	}
}

// TestProblemsSorted mixes problems found in different passes (decoding,
// validation, cross references) and checks they come out by line.
func TestProblemsSorted(t *testing.T) {
	src := `[[window]]
name = "w"
type = "tumbling"
size = "1s"
sources = ["nope"]

[[source]]
name = "s"
type = "bogus"

[log]
level = 3
`
	_, err := Parse("edged.toml", []byte(src))
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("want *Error, got %v", err)
	}
	var got []int
	for _, p := range cerr.Problems {
		got = append(got, p.Line)
	}
	if want := []int{5, 9, 12}; !equalInts(got, want) {
		t.Fatalf("lines %v, want %v:\n%v", got, want, err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestValidConfigs(t *testing.T) {
	for name, src := range map[string]string{
		"empty":         "",
		"comments only": "# nothing here\n\n",
		"source glob in window": `[[source]]
name = "lab-1"
type = "stdin"
[[window]]
name = "w"
type = "tumbling"
size = "1s"
sources = ["lab-*", "lab-1"]
sensors = ["boiler?", "[a-c]*"]
metrics = ["temp"]
`,
		"percentiles": `[[window]]
name = "w"
type = "sliding"
size = "1m"
slide = "7s"
offset = "1s"
aggregates = ["p1", "p5", "p50", "p95", "p99", "p99.9", "p0.5", "first", "last", "range", "sum", "stddev"]
`,
		"float as integer": `[[detector]]
name = "hot"
type = "threshold"
above = 80
below = -10.5
`,
		"zscore with alpha": `[[detector]]
name = "drift"
type = "zscore"
sigma = 4.0
alpha = 0.01
warmup = 0
`,
		"other detectors take no required keys yet": `[[detector]]
name = "a"
type = "flatline"
[[detector]]
name = "b"
type = "deadman"
`,
		"inline tables and dotted keys": `pipeline.idle_timeout = "0s"
device = { id = "gw.01", data_dir = "/tmp/edged" }
source = [{ name = "a", type = "simulate" }]
`,
		"days": `[[detector]]
name = "drift"
type = "zscore"
sigma = 4.0
window = "1d"
`,
		"zero qos": `[[output]]
name = "o"
type = "mqtt"
broker = "wss://b.example/mqtt"
topic = "edged/{device}/{window}/{key}"
qos = 0
`,
		"tab delimiter": "[[source]]\nname = \"a\"\ntype = \"stdin\"\nformat = \"csv\"\ndelimiter = \"\\t\"\ncolumns = [\"sensor\", \"value\"]\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse("edged.toml", []byte(src)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	_, err := Load("testdata/does-not-exist.toml")
	if err == nil || !strings.Contains(err.Error(), "read config") {
		t.Fatalf("Load of a missing file: %v", err)
	}
	path := t.TempDir() + "/edged.toml"
	if err := writeFile(path, "[log]\nlevel = \"loud\"\n"); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":2: log: level:") {
		t.Fatalf("Load error does not name the file: %v", err)
	}
	if err := writeFile(path, "[log]\nlevel = \"debug\"\n"); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != path || c.Log.Level != "debug" {
		t.Fatalf("File = %q, level = %q", c.File, c.Log.Level)
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{Problems: []Problem{
		{File: "a.toml", Line: 3, Col: 7, Msg: "invalid TOML: x"},
		{File: "a.toml", Line: 4, Path: `window[0] "w": size`, Msg: "bad"},
		{File: "a.toml", Path: "device: id", Msg: "empty"},
	}}
	want := "a.toml:3:7: invalid TOML: x\na.toml:4: window[0] \"w\": size: bad\na.toml: device: id: empty"
	if e.Error() != want {
		t.Fatalf("got\n%s\nwant\n%s", e.Error(), want)
	}
	var err error = e
	var got *Error
	if !errors.As(err, &got) || got != e {
		t.Fatal("errors.As does not find *Error")
	}
}

func TestStoreSection(t *testing.T) {
	c, err := Parse("edged.toml", []byte("[store]\nmax_bytes = \"64MiB\"\nretain = \"2d\"\ncommit_interval = \"1s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.MaxBytes != 64<<20 || c.Store.Retain.D() != 48*time.Hour || c.Store.CommitInterval.D() != time.Second || c.Store.OutboxMaxBytes != DefaultOutboxMaxBytes {
		t.Fatalf("store %+v", c.Store)
	}
	_, err = Parse("edged.toml", []byte("[store]\nmax_bytes = \"10KiB\"\n\ncommit_interval = \"1m\"\n"))
	for _, want := range []string{"edged.toml:2: store: max_bytes: must be at least 1MiB", "edged.toml:4: store: commit_interval: must be between"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
}

func TestIngestKeys(t *testing.T) {
	f := func(name, text string, wants ...string) {
		t.Helper()
		_, err := Parse("edged.toml", []byte(text))
		for _, w := range wants {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %v does not contain %q", name, err, w)
			}
		}
		if len(wants) == 0 && err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	f("serial ok", "[[source]]\nname=\"s\"\ntype=\"serial\"\nusb_vid=\"0403\"\nparity=\"even\"\nstop_bits=1.5\npoll_command=\"R\\r\"\npoll_every=\"5s\"\n")
	f("serial bad", "[[source]]\nname=\"s\"\ntype=\"serial\"\nport=\"/dev/x\"\ndata_bits=9\nparity=\"odd-ish\"\nstop_bits=3\nline_end=\"ab\"\npoll_every=\"1s\"\nusb_pid=\"60x1\"\n",
		"edged.toml:5: source[0] \"s\": data_bits: invalid data_bits 9", "parity: invalid value \"odd-ish\"", "stop_bits: invalid stop_bits 3",
		"line_end: invalid line_end", "poll_every: set both poll_command", "usb_pid: invalid usb_pid \"60x1\"")
	f("serial without port", "[[source]]\nname=\"s\"\ntype=\"serial\"\n", "a serial source needs port")
	f("mqtt tls", "[[source]]\nname=\"m\"\ntype=\"mqtt\"\nbroker=\"ssl://b:8883\"\ntopics=[\"a/#\"]\ntls_cert=\"c.pem\"\ntopic_template=\"a/b\"\n",
		"tls_key: set both tls_cert and tls_key", "topic_template: invalid topic_template \"a/b\"")
	f("simulate", "[[source]]\nname=\"sim\"\ntype=\"simulate\"\nsignal=\"walk\"\nanomalies=[\"spike\",\"dropout\"]\nrate=0.5\n")
	f("simulate bad", "[[source]]\nname=\"sim\"\ntype=\"simulate\"\nsignal=\"square\"\nanomalies=[\"spike\",\"meteor\"]\nrate=5000.0\n",
		"signal: invalid value \"square\"", "anomalies[1]: invalid value \"meteor\"", "rate: invalid rate 5000")
	f("broker", "[broker]\nenabled=true\nlisten=\"1883\"\nusername=\"u\"\n", "broker: listen: invalid address \"1883\"", "broker: password: set both username and password")
	c, err := Parse("edged.toml", []byte("[[source]]\nname=\"m\"\ntype=\"mqtt\"\nbroker=\"tcp://b:1883\"\ntopics=[\"a/#\"]\nqos=0\n"))
	if err != nil || c.Sources[0].CleanSession == nil || !*c.Sources[0].CleanSession {
		t.Errorf("qos 0: clean session by default: %v", err)
	}
}

// processing_time is off by default, and the effective config writes it
// when it is on (so that it reads back the same).
func TestDeadmanProcessingTime(t *testing.T) {
	c, err := Parse("edged.toml", []byte("[[detector]]\nname = \"d\"\ntype = \"deadman\"\nduration = \"1m\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Detectors[0].ProcessingTime {
		t.Fatal("processing_time on by default")
	}
	if strings.Contains(string(c.Effective()), "processing_time") {
		t.Fatalf("effective config writes processing_time = false:\n%s", c.Effective())
	}
	c, err = Parse("edged.toml", []byte("[[detector]]\nname = \"d\"\ntype = \"deadman\"\nduration = \"1m\"\nprocessing_time = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	eff := c.Effective()
	if !strings.Contains(string(eff), "processing_time = true") {
		t.Fatalf("effective config without processing_time:\n%s", eff)
	}
	c2, err := Parse("effective.toml", eff)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Detectors[0].ProcessingTime {
		t.Fatal("processing_time lost in the round trip")
	}
}
