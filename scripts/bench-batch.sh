#!/usr/bin/env bash
# End-to-end benchmark of `edged batch`: LINES JSON lines (default 10,000,000)
# from 1,000 sensors, delayed up to 2 s, through configs/bench.toml (or the given config), pinned
# to one core. Prints lines/s and peak RSS.
#
#   scripts/bench-batch.sh dist/edged [LINES] [CONFIG under configs/, default bench.toml]
set -euo pipefail
bin=${1:?usage: $0 path/to/edged [LINES]}
lines=${2:-10000000}
cfg=${3:-bench.toml}
sensors=1000
rate=10
seconds=$(( lines / sensors / rate ))
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
in=$dir/input.jsonl

"$bin" simulate sine --sensors $sensors --rate $rate --seconds $seconds --seed 1 > "$in"
n=$(wc -l < "$in")
size=$(du -m "$in" | cut -f1)
echo "input: $n lines, $size MiB, $sensors sensors, config configs/$cfg"

pin=""
command -v taskset >/dev/null && pin="taskset -c 0"
start=$(date +%s.%N)
# Peak RSS from the kernel's accounting of the child (ru_maxrss, KiB).
rss=$(python3 - "$bin" "$in" "$cfg" $pin <<'PY'
import resource, subprocess, sys
binp, inp, cfg, pin = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with open("/dev/null", "w") as out:
    p = subprocess.run(pin + [binp, "batch", "-c", "configs/" + cfg, inp], stdout=out, stderr=subprocess.PIPE, text=True)
sys.stderr.write(p.stderr)
if p.returncode != 0:
    sys.exit(p.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
end=$(date +%s.%N)
python3 -c "
n=$n; t=$end-$start; rss=$rss
print(f'result: {n} lines in {t:.2f} s = {n/t:,.0f} lines/s on one core; peak RSS {rss/1024:.1f} MiB')
"
