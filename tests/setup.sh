#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine. Idempotent: installs only what is missing.
#   - Open vSwitch tools (ovs-ofctl: the independent OpenFlow 1.3 oracle for codec and text tests)
#   - Rust toolchain components used by CI (rustfmt, clippy) when rustup is present
set -euo pipefail

need=()
command -v ovs-ofctl >/dev/null 2>&1 || need+=(openvswitch-common)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  for comp in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp" >/dev/null 2>&1 || echo "setup: could not add $comp"
  done
fi
echo "setup: ovs-ofctl $(ovs-ofctl --version | head -1 | awk '{print $NF}')"
