# footprint_config DIR PORT SENSORS RATE FULL [STATE_INTERVAL]: writes
# DIR/edged.toml, the workload of the footprint and wear benchmarks
# (bench-footprint.sh, bench-wear.sh): the simulator with SENSORS sensors
# at RATE Hz and injected anomalies, data_dir DIR/data, a file output to
# DIR/out.jsonl, HTTP on 127.0.0.1:PORT. FULL=1: three windows (tumbling
# 10 s, sliding 1 m / 10 s with p95, session 30 s) and three detectors
# (threshold, zscore, flatline); FULL=0: the tumbling window only.
# STATE_INTERVAL sets [pipeline] state_interval (default: edged's).
footprint_config() {
	local d=$1 port=$2 sensors=$3 rate=$4 full=$5 state=""
	[ -z "${6:-}" ] || state="state_interval = \"$6\""
	cat > "$d/edged.toml" <<TOML
[device]
id = "footprint"
data_dir = "$d/data"
[pipeline]
max_out_of_orderness = "2s"
checkpoint_interval = "1s"
$state
[http]
listen = "127.0.0.1:$port"
[[source]]
name = "sim"
type = "simulate"
sensors = $sensors
rate = $rate
anomalies = ["spike", "drift", "flatline", "dropout"]
anomaly_every = "1m"
[[window]]
name = "t10s"
type = "tumbling"
size = "10s"
aggregates = ["count", "mean", "max"]
TOML
	if [ "$full" = 1 ]; then cat >> "$d/edged.toml" <<TOML
[[window]]
name = "s1m"
type = "sliding"
size = "1m"
slide = "10s"
aggregates = ["count", "p95"]
[[window]]
name = "sess"
type = "session"
gap = "30s"
aggregates = ["count", "first", "last"]
[[detector]]
name = "hot"
type = "threshold"
above = 30.0
[[detector]]
name = "odd"
type = "zscore"
sigma = 4.0
alpha = 0.01
warmup = 30
[[detector]]
name = "stuck"
type = "flatline"
duration = "20s"
tolerance = 0.001
TOML
	fi
	cat >> "$d/edged.toml" <<TOML
[[output]]
name = "file"
type = "file"
path = "$d/out.jsonl"
TOML
}
