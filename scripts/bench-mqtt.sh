#!/usr/bin/env bash
# MQTT ingest at the broker's limit (issue 13), QoS 0 and QoS 1 in one run:
# a producer publishes MESSAGES JSON readings from 1,000 sensors (5% out of
# order) to a local mosquitto as fast as it takes them; first a plain
# counting subscriber (its own process; buffered reads, acknowledges at
# once) gets the stream, then `edged run` (MQTT source into the durable
# log, checkpoints at their defaults, a 10 s tumbling count/mean/min/max
# per sensor published back to mosquitto at QoS 1). For each QoS it prints
# readings kept, edged's CPU per reading (utime+stime of the process over
# the run / readings), its throughput against the counting subscriber's,
# and its peak RSS (VmHWM). See TestMQTTBench in cmd/edged/mqtt_test.go.
#
#   scripts/bench-mqtt.sh [MESSAGES [MAX_INFLIGHT]]
#
# MESSAGES defaults to 1,000,000 (a few minutes on 2 cores); MAX_INFLIGHT
# is mosquitto's max_inflight_messages (default here 1000; mosquitto's own
# default, 20, caps what one commit can acknowledge). The machine's load
# is printed first: CPU figures on a shared machine are noisy.
# EDGED_BENCH_OTHER=/path/to/edged runs that binary too, after this
# build, on the same stream (an A/B against another build, e.g. main's).
set -euo pipefail
n=${1:-1000000}
inflight=${2:-1000}
cd "$(dirname "$0")/.."
echo "load: $(uptime)"
go test ./cmd/edged -run '^TestMQTTBench$' -count 1 -v -timeout 60m \
	-mqtt.bench "$n" -mqtt.bench.inflight "$inflight" ${EDGED_BENCH_OTHER:+-mqtt.bench.other "$EDGED_BENCH_OTHER"} | grep -E 'mqtt_test.go|^(ok|FAIL|--- )'
