#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine. Idempotent: installs only what is missing.
#   - Open vSwitch tools (ovs-ofctl: the independent OpenFlow 1.3 oracle for codec and text tests)
#   - Real peers for the interop tests (tests/interop, docs/interop.md): OVS userspace switch,
#     ovs-testcontroller, tshark, iperf3, iproute2, ping, openssl
#   - A Python venv with os-ken 4.2.2 (controller apps and the OF1.3 switch tester) at
#     $SHG_VENV (default $HOME/.cache/shg/venv; the interop tests read the same variable/default)
#   - Faucet 1.10.12 in its own venv at $SHG_FAUCET_VENV (default $HOME/.cache/shg/faucet-venv)
#   - Rust toolchain components used by CI (rustfmt, clippy) when rustup is present
set -euo pipefail

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

need=()
command -v ovs-ofctl >/dev/null 2>&1 || need+=(openvswitch-common)
command -v ovs-vswitchd >/dev/null 2>&1 || [[ -x /usr/sbin/ovs-vswitchd ]] || need+=(openvswitch-switch)
command -v ovs-testcontroller >/dev/null 2>&1 || need+=(openvswitch-testcontroller)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ip >/dev/null 2>&1 || [[ -x /usr/sbin/ip ]] || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}"
  # No daemon may start from a postinst (it would touch the real NIC): RUNLEVEL=1 plus a
  # policy-rc.d that refuses, created only if the machine has none and removed afterwards.
  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
  policy_added=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    policy_added=1
  fi
  # tshark asks whether non-root users may capture: answer no, without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  [[ -z $policy_added ]] || $SUDO rm -f /usr/sbin/policy-rc.d
fi

# os-ken in its own venv (pinned). Skipped when the venv already imports the pinned version.
SHG_VENV=${SHG_VENV:-${HOME:-/root}/.cache/shg/venv}
OSKEN_VERSION=4.2.2
if ! "$SHG_VENV/bin/python" -c "import os_ken, sys; sys.exit(os_ken.__version__ != '$OSKEN_VERSION')" >/dev/null 2>&1; then
  echo "setup: creating $SHG_VENV with os-ken==$OSKEN_VERSION"
  mkdir -p "$(dirname "$SHG_VENV")"
  python3 -m venv "$SHG_VENV"
  "$SHG_VENV/bin/pip" install -q --disable-pip-version-check "os-ken==$OSKEN_VERSION" >/dev/null
fi

# Faucet (a production OpenFlow 1.3 controller on os-ken 3.x) in a venv of its own (pinned).
SHG_FAUCET_VENV=${SHG_FAUCET_VENV:-${HOME:-/root}/.cache/shg/faucet-venv}
FAUCET_VERSION=1.10.12
if ! "$SHG_FAUCET_VENV/bin/pip" show faucet 2>/dev/null | grep -qx "Version: $FAUCET_VERSION"; then
  echo "setup: creating $SHG_FAUCET_VENV with faucet==$FAUCET_VERSION"
  mkdir -p "$(dirname "$SHG_FAUCET_VENV")"
  python3 -m venv "$SHG_FAUCET_VENV"
  "$SHG_FAUCET_VENV/bin/pip" install -q --disable-pip-version-check "faucet==$FAUCET_VERSION" >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  for comp in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp" >/dev/null 2>&1 || echo "setup: could not add $comp"
  done
fi
# --- discovery (controller/tests/discovery_devices.rs): real UPnP devices and clients --------
# minidlna (MediaServer), gmediarender (MediaRenderer; needs gstreamer's playbin from
# plugins-base or it aborts at start), miniupnpd (InternetGatewayDevice), gupnp-tools
# (gssdp-discover finds the gateway's own advertisement). Installed only when missing; no
# daemon may start from a postinst (same guard as above).
disc_need=()
for pkg in minidlna gmediarender gstreamer1.0-plugins-base miniupnpd gupnp-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || disc_need+=("$pkg")
done
command -v python3 >/dev/null 2>&1 || disc_need+=(python3)
if ((${#disc_need[@]})); then
  echo "setup: installing ${disc_need[*]}"
  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
  disc_policy_added=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    disc_policy_added=1
  fi
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q --no-install-recommends "${disc_need[@]}" >/dev/null
  [[ -z $disc_policy_added ]] || $SUDO rm -f /usr/sbin/policy-rc.d
fi
# --- end discovery ---------------------------------------------------------------------------

echo "setup: ovs-ofctl $(ovs-ofctl --version | head -1 | awk '{print $NF}'), os-ken $("$SHG_VENV/bin/python" -c 'import os_ken; print(os_ken.__version__)' 2>/dev/null || echo missing) in $SHG_VENV"

# --- northbound API (controller/tests/api_web.rs): headless Chromium + chromedriver ----------
api_need=()
command -v chromium >/dev/null 2>&1 || api_need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || api_need+=(chromium-driver)
if ((${#api_need[@]})); then
  echo "setup: installing ${api_need[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${api_need[@]}" >/dev/null
fi
# --- end northbound API ----------------------------------------------------------------------
