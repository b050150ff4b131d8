#!/usr/bin/env bash
# MQTT ingest: edged (QoS 1, into the durable log, each message acknowledged
# after its commit) against a plain paho subscriber that only counts (and
# acknowledges at once), on the same local mosquitto in the same run. Each
# subscriber's persistent session gets MESSAGES queued at the broker first;
# the figure is how fast it drains them. edged's CPU is its process's
# user+system time (/proc/PID/stat) over the drain. See TestMQTTBench in
# cmd/edged/mqtt_test.go.
#
#   scripts/bench-mqtt.sh [MESSAGES [MAX_INFLIGHT]]
#
# MESSAGES defaults to 1,000,000 (about 4 minutes in all, most of it
# publishing three times); MAX_INFLIGHT is mosquitto's max_inflight_messages
# (default here 1000; mosquitto's own default, 20, caps what one 20 ms
# commit can acknowledge).
set -euo pipefail
n=${1:-1000000}
inflight=${2:-1000}
cd "$(dirname "$0")/.."
go test ./cmd/edged -run '^TestMQTTBench$' -count 1 -v -timeout 30m \
	-mqtt.bench "$n" -mqtt.bench.inflight "$inflight" | grep -E 'mqtt_test.go|^(ok|FAIL|--- )'
