#!/usr/bin/env bash
# Idle daemon: edged run with the embedded broker and SENSORS simulated
# sensors at 1 Hz (spikes, drifts, flatlines, dropouts) into one 10 s
# tumbling window; after 5 s of warm-up, CPU (utime+stime from
# /proc/PID/stat) and RSS (VmRSS, VmHWM) over SECONDS.
#
#   scripts/bench-idle.sh dist/edged [SENSORS] [SECONDS]
set -euo pipefail
bin=${1:?usage: $0 path/to/edged [SENSORS] [SECONDS]}
sensors=${2:-1000}
secs=${3:-30}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/edged.toml" <<TOML
[device]
id = "idle"
data_dir = "$dir/data"
[broker]
enabled = true
listen = "127.0.0.1:$port"
[[source]]
name = "sim"
type = "simulate"
sensors = $sensors
rate = 1
anomalies = ["spike", "drift", "flatline", "dropout"]
anomaly_every = "1m"
[[window]]
name = "w10s"
type = "tumbling"
size = "10s"
aggregates = ["count", "mean", "min", "max"]
TOML
"$bin" run -c "$dir/edged.toml" 2> "$dir/log" &
pid=$!
sleep 5
tick=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' /proc/$pid/stat; }
c0=$(cpu)
sleep "$secs"
c1=$(cpu)
rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
kill -TERM $pid; wait $pid
python3 -c "print(f'result: {$sensors} sensors at 1 Hz: CPU {($c1-$c0)/$tick/$secs*100:.2f}% of one core, RSS {$rss/1024:.1f} MiB, peak {$hwm/1024:.1f} MiB')"
