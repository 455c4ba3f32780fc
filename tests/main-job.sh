#!/usr/bin/env bash
# The main job: the family-evening scenario (scenarios/library/family-evening.toml) on a fresh
# machine. A home gateway in network namespaces: shg-switch with a 20 Mbit/s shaped uplink,
# shg-controller compiling the policy into flows and queues, a video call, a 4K stream, a game
# download and a cloud backup competing for the line; midway the user boosts the call. The run
# asserts bandwidth and latency per service and writes a report (Markdown, JSON, SVG plots with
# a bufferbloat grade per service), printed at the end.
#
# Needs root (network namespaces). Installs what it needs first (tests/setup.sh: apt packages,
# iperf3 among them). Creates only namespaces with a per-run prefix, addresses in
# 198.18.0.0/15, and removes them (processes stopped by PID) whatever happens. Exit status: the
# scenario's (0 when every assertion held).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "main-job: needs root (network namespaces)"; exit 1; }
bash tests/setup.sh
cargo build --release -q -p shg-switch -p shg-controller -p shg-scenario
OUT=${1:-target/scenarios/main-job-$(date -u +%Y%m%d-%H%M%S)}
status=0
target/release/shg-scenario run family-evening --out "$OUT" || status=$?
if [[ -f $OUT/report.md ]]; then
  printf '\n================ %s/report.md ================\n' "$OUT"
  cat "$OUT/report.md"
  printf '\nPlots: %s/throughput.svg, %s/rtt.svg\n' "$OUT" "$OUT"
fi
exit "$status"
