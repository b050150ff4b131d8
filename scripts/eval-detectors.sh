#!/usr/bin/env bash
# The detector benchmark of issue 19: every detector, as configured, on the
# SKAB pump test bed (github.com/waico/SKAB, 4 MB of CSV, not shipped with
# edged) and on the simulator's labelled anomalies, scored the way the
# Numenta Anomaly Benchmark scores (cep/nab_test.go says how). Prints the
# table that BENCHMARKS.md holds and fails when the anomaly detector does
# not score best, or zscore or mad score below never firing.
#
#   scripts/eval-detectors.sh            # or: make eval-detectors
#
# SKAB is looked for in $EDGED_SKAB (a SKAB checkout or its data directory),
# then in ${XDG_CACHE_HOME:-~/.cache}/edged/SKAB, where it is cloned when
# git can reach github.com. Without it the SKAB part is skipped with a SKIP
# line and the simulator part runs alone.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${EDGED_SKAB:-}" ]]; then
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/edged/SKAB"
	if [[ ! -d "$cache/data" ]] && command -v git >/dev/null; then
		mkdir -p "$(dirname "$cache")"
		if ! timeout 120 git clone --quiet --depth 1 https://github.com/waico/SKAB "$cache.tmp" 2>/dev/null; then
			rm -rf "$cache.tmp"
			echo "SKIP SKAB: could not clone https://github.com/waico/SKAB (set EDGED_SKAB to a copy)"
		else
			mv "$cache.tmp" "$cache"
		fi
	fi
	if [[ -d "$cache/data" ]]; then
		export EDGED_SKAB="$cache"
	fi
fi
exec "${GO:-go}" test ./cep -run '^TestNABEval$' -count=1 -v
