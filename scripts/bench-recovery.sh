#!/usr/bin/env bash
# Recovery time after SIGKILL with LINES log entries (default 1,000,000)
# since the last checkpoint: edged run reads a file of LINES readings with
# checkpoints off (checkpoint_interval = 1h), is killed with SIGKILL once the
# pipeline has caught up, and is started again; the figure is the time from
# the restart to its "ready" log line (checkpoint restored, log replayed).
#
#   scripts/bench-recovery.sh dist/edged [LINES]
set -euo pipefail
bin=${1:?usage: $0 path/to/edged [LINES]}
lines=${2:-1000000}
dir=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin" simulate sine --sensors 1000 --rate 10 --seconds $(( lines / 10000 )) --seed 1 > "$dir/in.jsonl"
cat > "$dir/edged.toml" <<TOML
[device]
id = "bench"
data_dir = "$dir/data"
[pipeline]
max_out_of_orderness = "2s"
checkpoint_interval = "1h"
[[source]]
name = "f"
type = "file"
path = "$dir/in.jsonl"
[[window]]
name = "t10s"
type = "tumbling"
size = "10s"
aggregates = ["count", "sum", "mean", "min", "max"]
TOML
wait_for() { # file pattern timeout_s
	for _ in $(seq 1 $(( $3 * 10 ))); do grep -q "$2" "$1" && return 0; sleep 0.1; done
	echo "timeout waiting for $2 in $1" >&2; cat "$1" >&2; return 1
}
"$bin" run -c "$dir/edged.toml" 2> "$dir/run1.log" &
pid=$!
wait_for "$dir/run1.log" "file source at end of file" 120
# Wait until the pipeline has processed the whole log, then kill.
wait_for "$dir/run1.log" "ready: pipeline caught up" 120
sleep 0.5
kill -9 $pid; wait $pid 2>/dev/null || true
start=$(date +%s.%N)
"$bin" run -c "$dir/edged.toml" 2> "$dir/run2.log" &
pid=$!
wait_for "$dir/run2.log" "ready: pipeline caught up" 120
end=$(date +%s.%N)
kill -TERM $pid; wait $pid || true
grep -o 'ready: .*' "$dir/run2.log" | head -1
python3 -c "print(f'result: ready {($end-$start):.2f} s after restart, replaying $lines log entries')"
