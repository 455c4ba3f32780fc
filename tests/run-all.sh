#!/usr/bin/env bash
# Runs every test of the workspace: formatting, lints, unit/property/oracle tests, bounded fuzzing.
# Usage: tests/run-all.sh            (SHG_FUZZ_SECS=N sets the time per fuzz target, default 15)
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh
export SHG_FUZZ_SECS=${SHG_FUZZ_SECS:-15}
# Where setup.sh put the os-ken venv; the interop and oracle tests read it.
export SHG_VENV=${SHG_VENV:-${HOME:-/root}/.cache/shg/venv}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# Includes the interop tests (tests/interop/, OFTest among them), which skip where a peer is missing.
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee target/test.log
