#!/usr/bin/env bash
# Footprint of the real binaries (issue 7): binary sizes of make cross; RSS
# of edged run with 1,000 simulated sensors at 1 Hz, 3 windows and 3
# detectors; RSS with 100,000 keys of window state; start to ready on an
# empty data_dir; CPU per 1,000 readings of the 1,000-sensor workload under
# qemu arm64 against amd64 natively. Prints a markdown table.
#
#   make build cross && scripts/bench-footprint.sh [DIST]    # or: make bench-footprint
#
# Environment (defaults): WARMUP=30 seconds before sampling, SECS=60 seconds
# sampled, EVERY=3 seconds between samples, BIG_SENSORS=100000 at
# BIG_RATE=0.2 Hz for the big-state runs, RUNS=20 starts, QEMU (the arm64
# emulator; the qemu row is skipped when it is not installed), GOGC and
# GOMEMLIMIT are passed through to edged when set.
#
# RSS: VmRSS and VmHWM from /proc/PID/status; "steady max" is the largest
# VmRSS sampled after the warm-up, with its RssAnon (Go heap, stacks) and
# RssFile (mapped pages of the binary and of the bbolt file: page cache the
# kernel can reclaim) parts; "peak" is the VmHWM at the end (the whole run),
# or the largest sample if larger (the kernel's counters lag a little).
# CPU: utime+stime from /proc/PID/stat (under qemu, of the qemu process,
# which runs the emulated binary in itself). Readings: the
# daemon's edged_readings_total from /metrics. Keys: /status
# pipeline.state_keys (every window's and detector's keys with state),
# sampled with RSS; after the stop, edged inspect's checkpoint line.
set -euo pipefail
. "$(dirname "$0")/footprint-config.sh"

dist=${1:-dist}
warmup=${WARMUP:-30}
secs=${SECS:-60}
every=${EVERY:-3}
big=${BIG_SENSORS:-100000}
bigrate=${BIG_RATE:-0.2}
runs=${RUNS:-20}
qemu=${QEMU:-$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)}
bin=$dist/edged
for f in "$bin" "$dist"/edged-linux-arm64; do
	[ -x "$f" ] || { echo "$f: not found; run make build cross first" >&2; exit 1; }
done
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
arm64=$(cd "$dist" && pwd)/edged-linux-arm64

tmp=$(mktemp -d)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "command: $(printf '%q ' env WARMUP="$warmup" SECS="$secs" EVERY="$every" BIG_SENSORS="$big" BIG_RATE="$bigrate" RUNS="$runs" ${GOGC:+GOGC=$GOGC} ${GOMEMLIMIT:+GOMEMLIMIT=$GOMEMLIMIT} "$0" "$dist")"
echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $("$bin" version 2>&1 | head -1), $(go version 2>/dev/null | awk '{print $3}')"
[ -n "$qemu" ] && echo "qemu: $("$qemu" --version | head -1)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# config NAME SENSORS RATE FULL: a config in $tmp/NAME with its own data_dir,
# file output and HTTP port (scripts/footprint-config.sh).
config() {
	local name=$1 sensors=$2 rate=$3 full=$4 d=$tmp/$1
	mkdir -p "$d"
	echo "$(freeport)" > "$d/port"
	footprint_config "$d" "$(cat "$d/port")" "$sensors" "$rate" "$full"
	"$bin" check -c "$d/edged.toml" > /dev/null
}

# http DIR PATH: GET from the daemon of config DIR.
http() { curl -sf --max-time 2 "http://127.0.0.1:$(cat "$1/port")$2"; }
readings() { http "$1" /metrics | awk '/^edged_readings_total/{s+=$2} END{print s+0}'; }
keys() { http "$1" /status | python3 -c 'import json,sys; s=json.load(sys.stdin); print((s.get("pipeline") or {}).get("state_keys", s["checkpoint"].get("keys", 0)))'; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
kib() { awk -v k="$2" '$1==k":"{print $2}' "/proc/$1/status"; }

# measure NAME [EMULATOR]: run config NAME, wait for /healthz, warm up,
# sample; writes NAME/result: steady max RSS and peak (MiB), CPU s, readings,
# readings/s, CPU ms per 1,000 readings, state keys min and max, and the
# anonymous and file-backed parts of the steady max (MiB).
measure() {
	local name=$1 d=$tmp/$1 pid i ok=0 r0 r1 c0 c1 rss max=0 anon=0 file=0 k kmin= kmax=0 t0
	shift
	"$@" "$bin" run -c "$d/edged.toml" 2> "$d/log" &
	pid=$!
	pids+=("$pid")
	for ((i = 0; i < 600; i++)); do # 60 s at most
		if http "$d" /healthz > /dev/null 2>&1; then ok=1; break; fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	[ "$ok" = 1 ] || { echo "$name: not ready within 60 s" >&2; cat "$d/log" >&2; return 1; }
	sleep "$warmup"
	r0=$(readings "$d"); c0=$(ticks "$pid"); t0=$(date +%s.%N)
	for ((i = 0; i < secs / every; i++)); do
		sleep "$every"
		rss=$(kib "$pid" VmRSS)
		if ((rss > max)); then max=$rss anon=$(kib "$pid" RssAnon) file=$(kib "$pid" RssFile); fi
		k=$(keys "$d" || echo 0)
		((k > kmax)) && kmax=$k
		if [ -z "$kmin" ] || ((k < kmin)); then kmin=$k; fi
	done
	r1=$(readings "$d"); c1=$(ticks "$pid")
	local hwm; hwm=$(kib "$pid" VmHWM)
	kill -TERM "$pid"
	for ((i = 0; i < 600; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	grep -q "stopped cleanly" "$d/log" || echo "$name: did not stop cleanly (see its log)" >&2
	grep -E 'level=(WARN|ERROR)' "$d/log" | head -3 >&2 || true
	echo "$name: edged inspect: $("${bin%-linux-arm64}" inspect -c "$d/edged.toml" 2>&1 | grep '^checkpoint' | sed 's/  */ /g')" >&2
	python3 - "$c0" "$c1" "$(getconf CLK_TCK)" "$r0" "$r1" "$t0" "$(date +%s.%N)" "$max" "$hwm" "$kmin" "$kmax" "$anon" "$file" > "$d/result" <<'PY'
import sys
c0, c1, tck, r0, r1, t0, t1, rss, hwm, kmin, kmax, anon, file = map(float, sys.argv[1:])
cpu = (c1 - c0) / tck
n = r1 - r0
print(f"{rss/1024:.1f} {max(hwm, rss)/1024:.1f} {cpu:.2f} {n:.0f} {n/(t1-t0):.0f} {1000*cpu/max(n,1)*1000:.2f} {kmin:.0f} {kmax:.0f} {anon/1024:.1f} {file/1024:.1f}")
PY
	echo "$name: $(cat "$d/result")" >&2
}
res() { awk -v f="$2" '{print $f}' "$tmp/$1/result"; }

# 1. Binary sizes.
sizes=()
for f in "$dist"/edged-linux-*; do
	s=$(stat -c %s "$f")
	strip=$(file -b "$f" | grep -o 'not stripped\|stripped' | head -1)
	sizes+=("| binary size $(basename "$f") ($strip) | $s bytes = $(awk -v s="$s" 'BEGIN{printf "%.2f MiB (%.2f MB)", s/1048576, s/1e6}') | $(case $f in *arm64) awk -v s="$s" 'BEGIN{print (s<=15e6 ? "<= 15 MB: met" : "<= 15 MB: NOT met")}';; *) echo -;; esac) |")
done

# 2, 3. RSS.
echo "sampling: ${warmup}s warm-up, then ${secs}s, every ${every}s, per run" >&2
config small 1000 1 1
measure small
config big1 "$big" "$bigrate" 0
measure big1
config bigfull "$big" "$bigrate" 1
measure bigfull

# 5. The workload of (2) under qemu arm64.
if [ -n "$qemu" ]; then
	config qemu 1000 1 1
	bin=$arm64 measure qemu "$qemu"
fi

# 4. Start to ready: exec to the "ready" log line and to /healthz 200, on a
# fresh data_dir each time (empty log), config of (2).
config start 1000 1 1
python3 - "$bin" "$tmp/start" "$runs" > "$tmp/start/result" <<'PY'
import os, shutil, signal, statistics, subprocess, sys, threading, time, urllib.request
bin, d, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
port = open(f"{d}/port").read().strip()
ready, health = [], []
for i in range(runs):
    shutil.rmtree(f"{d}/data", ignore_errors=True)
    got = {}
    def poll():
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline and "h" not in got:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=0.2) as r:
                    if r.status == 200:
                        got["h"] = time.perf_counter()
                        return
            except Exception:
                pass
            time.sleep(0.001)
    t0 = time.perf_counter()
    p = subprocess.Popen([bin, "run", "-c", f"{d}/edged.toml"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    th = threading.Thread(target=poll); th.start()
    for line in p.stderr:  # bounded: the daemon is stopped below
        if "ready" in line and "r" not in got:
            got["r"] = time.perf_counter()
            break
    th.join()
    p.send_signal(signal.SIGTERM)
    try:
        p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill(); p.communicate()
    if "r" not in got or "h" not in got:
        sys.exit(f"run {i}: no ready line or /healthz 200")
    ready.append((got["r"] - t0) * 1000); health.append((got["h"] - t0) * 1000)
print(f"{statistics.median(ready):.1f} {max(ready):.1f} {statistics.median(health):.1f} {max(health):.1f}")
PY
echo "start: $(cat "$tmp/start/result")" >&2

met() { awk -v v="$1" -v t="$2" 'BEGIN{print (v<=t ? "met" : "NOT met")}'; }
echo
echo "| what | figure | target |"
echo "| --- | --- | --- |"
printf '%s\n' "${sizes[@]}"
echo "| RSS, 1,000 sensors at 1 Hz, 3 windows + 3 detectors (steady max / peak) | $(res small 1) / $(res small 2) MiB (anon $(res small 9) + file $(res small 10)); $(res small 7)-$(res small 8) state keys | <= 25 MiB: $(met "$(res small 1)" 25) |"
echo "| RSS, $big sensors at $bigrate Hz, 1 tumbling 10 s window (steady max / peak) | $(res big1 1) / $(res big1 2) MiB (anon $(res big1 9) + file $(res big1 10)); $(res big1 7)-$(res big1 8) state keys | <= 60 MiB: $(met "$(res big1 1)" 60) |"
echo "| RSS, $big sensors at $bigrate Hz, 3 windows + 3 detectors (steady max / peak) | $(res bigfull 1) / $(res bigfull 2) MiB (anon $(res bigfull 9) + file $(res bigfull 10)); $(res bigfull 7)-$(res bigfull 8) state keys | - |"
echo "| start to ready, empty log, amd64: \"ready\" line (median / max of $runs) | $(awk '{print $1" / "$2}' "$tmp/start/result") ms | <= 200 ms: $(met "$(awk '{print $2}' "$tmp/start/result")" 200) |"
echo "| start to /healthz 200 (median / max of $runs) | $(awk '{print $3" / "$4}' "$tmp/start/result") ms | - |"
echo "| CPU per 1,000 readings, workload of (2), amd64 native | $(res small 6) ms ($(res small 3) CPU s for $(res small 4) readings, $(res small 5)/s) | - |"
if [ -n "$qemu" ]; then
	echo "| CPU per 1,000 readings, same, qemu arm64 (qemu process) | $(res qemu 6) ms ($(res qemu 3) CPU s for $(res qemu 4) readings, $(res qemu 5)/s; RSS $(res qemu 1) / $(res qemu 2) MiB) | x$(awk -v a="$(res qemu 6)" -v b="$(res small 6)" 'BEGIN{printf "%.1f", a/b}') of amd64, relative only |"
fi
echo "| CPU per 1,000 readings, $big sensors, 1 window / 3+3 | $(res big1 6) / $(res bigfull 6) ms ($(res big1 5) / $(res bigfull 5) readings/s) | - |"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (on $(nproc) CPUs; other work on the machine skews the timings)"
