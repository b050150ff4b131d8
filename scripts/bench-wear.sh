#!/usr/bin/env bash
# SD-card wear of the real daemon: bytes edged sends to the storage layer
# (/proc/PID/io write_bytes) per second and per reading, for the footprint
# workload of bench-footprint.sh (1,000 simulated sensors at 1 Hz, three
# windows, three detectors, file output), once per state_interval given.
#
#   make build && scripts/bench-wear.sh [BIN] [STATE_INTERVAL...]   # default: dist/edged 1s 30s
#
# Environment (defaults): WARMUP=35 seconds before measuring (past the
# first 30 s state checkpoint), SECS=60 seconds measured (two 30 s state
# checkpoints), SENSORS=1000.
set -euo pipefail

bin=${1:-dist/edged}
shift || true
intervals=("$@")
[ ${#intervals[@]} -gt 0 ] || intervals=(1s 30s)
warmup=${WARMUP:-35}
secs=${SECS:-60}
sensors=${SENSORS:-1000}
[ -x "$bin" ] || { echo "$bin: not found; run make build first" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")

tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "command: $(printf '%q ' env WARMUP="$warmup" SECS="$secs" SENSORS="$sensors" "$0" "$bin" "${intervals[@]}")"
echo "machine: $(nproc) CPUs, $("$bin" version 2>&1 | head -1), data_dir on $(df -T "$tmp" | awk 'NR==2{print $2}')"
echo
echo "| state_interval | bytes written/s | bytes/reading | state checkpoint (bytes) | commits (state) in ${secs} s |"
echo "| --- | --- | --- | --- | --- |"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
get() { curl -sf --max-time 2 "http://127.0.0.1:$port$1"; }
for si in "${intervals[@]}"; do
	d=$tmp/$si
	mkdir -p "$d"
	cat > "$d/edged.toml" <<TOML
[device]
id = "wear"
data_dir = "$d/data"
[pipeline]
max_out_of_orderness = "2s"
checkpoint_interval = "1s"
state_interval = "$si"
[http]
listen = "127.0.0.1:$port"
[[source]]
name = "sim"
type = "simulate"
sensors = $sensors
rate = 1.0
anomalies = ["spike", "drift", "flatline", "dropout"]
anomaly_every = "1m"
[[window]]
name = "t10s"
type = "tumbling"
size = "10s"
aggregates = ["count", "mean", "max"]
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
[[output]]
name = "file"
type = "file"
path = "$d/out.jsonl"
TOML
	"$bin" run -c "$d/edged.toml" 2> "$d/log" &
	pid=$!
	for ((i = 0; i < 100; i++)); do get /healthz > /dev/null 2>&1 && break; sleep 0.1; done
	sleep "$warmup"
	readings() { get /metrics | awk '/^edged_readings_total/{s+=$2} END{print s+0}'; }
	commits() { get /metrics | awk '/^edged_checkpoints_total/{c=$2} /^edged_state_checkpoints_total/{s=$2} END{print c+0, s+0}'; }
	w0=$(awk '/^write_bytes/{print $2}' "/proc/$pid/io"); r0=$(readings); read -r c0 s0 <<< "$(commits)"
	sleep "$secs"
	w1=$(awk '/^write_bytes/{print $2}' "/proc/$pid/io"); r1=$(readings); read -r c1 s1 <<< "$(commits)"
	cpb=$(get /status | python3 -c 'import json,sys; print(json.load(sys.stdin)["checkpoint"].get("bytes", 0))')
	kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
	awk -v si="$si" -v w=$((w1 - w0)) -v r=$((r1 - r0)) -v s="$secs" -v cpb="$cpb" -v c=$((c1 - c0)) -v st=$((s1 - s0)) \
		'BEGIN{printf "| %s | %.0f KB/s (%.1f GB/day) | %.0f | %d | %d (%d) |\n", si, w/s/1e3, w/s*86400/1e9, w/(r>0?r:1), cpb, c, st}'
done
