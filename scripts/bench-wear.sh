#!/usr/bin/env bash
# SD-card wear of the real daemon: bytes edged sends to the storage layer
# (/proc/PID/io write_bytes) per second and per reading, for the footprint
# workload (scripts/footprint-config.sh: 1,000 simulated sensors at 1 Hz,
# three windows, three detectors, file output), once per state_interval
# given.
#
#   make build && scripts/bench-wear.sh [BIN] [STATE_INTERVAL...]   # default: dist/edged 1s 30s
#
# Environment (defaults): WARMUP=35 seconds before measuring (past the
# first 30 s state checkpoint), SECS=60 seconds measured (two 30 s state
# checkpoints), SENSORS=1000.
set -euo pipefail
. "$(dirname "$0")/footprint-config.sh"

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
readings() { get /metrics | awk '/^edged_readings_total/{s+=$2} END{print s+0}'; }
commits() { get /metrics | awk '/^edged_checkpoints_total/{c=$2} /^edged_state_checkpoints_total/{s=$2} END{print c+0, s+0}'; }
for si in "${intervals[@]}"; do
	d=$tmp/$si
	mkdir -p "$d"
	footprint_config "$d" "$port" "$sensors" 1 1 "$si"
	"$bin" run -c "$d/edged.toml" 2> "$d/log" &
	pid=$!
	for ((i = 0; i < 100; i++)); do get /healthz > /dev/null 2>&1 && break; sleep 0.1; done
	sleep "$warmup"
	w0=$(awk '/^write_bytes/{print $2}' "/proc/$pid/io"); r0=$(readings); read -r c0 s0 <<< "$(commits)"
	sleep "$secs"
	w1=$(awk '/^write_bytes/{print $2}' "/proc/$pid/io"); r1=$(readings); read -r c1 s1 <<< "$(commits)"
	cpb=$(get /status | python3 -c 'import json,sys; print(json.load(sys.stdin)["checkpoint"].get("bytes", 0))')
	kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=
	awk -v si="$si" -v w=$((w1 - w0)) -v r=$((r1 - r0)) -v s="$secs" -v cpb="$cpb" -v c=$((c1 - c0)) -v st=$((s1 - s0)) \
		'BEGIN{printf "| %s | %.0f KB/s (%.1f GB/day) | %.0f | %d | %d (%d) |\n", si, w/s/1e3, w/s*86400/1e9, w/(r>0?r:1), cpb, c, st}'
done
