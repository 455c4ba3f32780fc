#!/usr/bin/env bash
# Full differential run of os-ken's OpenFlow 1.3 switch tester: shg-switch as target, then OVS
# userspace as target (same machine, same harness; the tester switch is OVS in both), every case
# file with a failure retried once (a case passes if either run passes it). Writes the per-case
# table into docs/interop.md between the tester-table markers. Needs root; ~40 minutes.
#
# Usage: tests/interop/tester-full.sh [CASES...]
#   CASES are paths relative to os_ken/tests/switch/of13 (default: action match group meter),
#   e.g. `tests/interop/tester-full.sh group action/00_OUTPUT.json`.
#   TARGETS="shg" (or "ovs") runs one target only; the other column keeps what its logs hold.
#   Logs are kept per target and case list (target/interop-tester/TARGET-CASES-{first,retry}.log),
#   so runs of different case lists add up: the table is built from every log there.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash tests/setup.sh
VENV=${SHG_VENV:-$HOME/.cache/shg/venv}
OF13=$("$VENV/bin/python" -c 'import os, os_ken; print(os.path.dirname(os_ken.__file__))')/tests/switch/of13
OUT=$PWD/target/interop-tester
mkdir -p "$OUT"
CASES=${*:-action match group meter}
TARGETS=${TARGETS:-shg ovs}

cargo build -q -p shg-switch
cargo test -q -p shg-switch --test interop --no-run 2>/dev/null

run() { # target cases log
  echo "== tester: target $1, cases: $2"
  SHG_INTEROP_SWITCH=$1 SHG_TESTER_CASES=$2 SHG_TESTER_LOG=$3 SHG_TESTER_TIMEOUT=7200 \
    cargo test -q -p shg-switch --test interop osken_switch_tester_run -- --ignored --exact \
    tester::osken_switch_tester_run --nocapture 2>&1 | grep -E "^tester run:|panicked" || true
}

SLUG=$(echo "$CASES" | tr ' /' '+_' | tr -cd 'A-Za-z0-9_+.-')
for t in $TARGETS; do
  rm -f "$OUT/$t-$SLUG-first.log" "$OUT/$t-$SLUG-retry.log"
  run "$t" "$CASES" "$OUT/$t-$SLUG-first.log"
  retry=$(python3 tests/interop/tester_table.py failed-files "$OF13" "$OUT/$t-$SLUG-first.log")
  if [[ -n $retry ]]; then
    run "$t" "$retry" "$OUT/$t-$SLUG-retry.log"
  fi
  python3 tests/interop/summarize_tester.py "$OUT/$t-$SLUG-first.log" | tail -1 | sed "s/^/$t first run: /"
done

shopt -s nullglob
python3 tests/interop/tester_table.py table "$OF13" docs/interop.md \
  --shg "$OUT"/shg-*.log --ovs "$OUT"/ovs-*.log
echo "table written to docs/interop.md (logs in $OUT)"
