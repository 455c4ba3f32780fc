#!/usr/bin/env bash
# The main job, until the scenario runner (shg-scenario, issue 9) can run the family-evening
# scenario: a service-hosting gateway in network namespaces, driven end to end.
#
#   three "service" namespaces (svc1..3) --veth--> shg-switch (namespace sw)
#   1. no controller, fail-mode standalone: the switch learns MACs, all services reach each other;
#   2. a controller-style policy pushed over OpenFlow 1.3 (ovs-ofctl against --listen): services
#      isolated from each other except svc1<->svc2, svc3 rate-limited by a meter;
#   3. what the switch says: dump-flows, dump-meters, dump-ports and a trace of a denied packet.
#
# Needs root. Creates only namespaces named shgmj<pid>-*, addresses in 198.18.0.0/15, and
# removes them (and stops the switch by its PID) on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "main-job: needs root (network namespaces)"; exit 1; }
bash tests/setup.sh
cargo build --release -q -p shg-switch -p shg-controller
SW=target/release/shg-switch
CTL=target/release/shgctl

P="shgmj$$"
W=$(mktemp -d)
SWPID=""
cleanup() {
  [[ -n $SWPID ]] && kill "$SWPID" 2>/dev/null && wait "$SWPID" 2>/dev/null || true
  for ns in sw svc1 svc2 svc3; do ip netns del "$P-$ns" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

say() { printf '\n== %s\n' "$*"; }
for ns in sw svc1 svc2 svc3; do ip netns add "$P-$ns"; done
ip -n "$P-sw" link set lo up
for i in 1 2 3; do
  ip link add "${P}h$i" netns "$P-svc$i" type veth peer name "${P}s$i" netns "$P-sw"
  ip -n "$P-svc$i" addr add "198.18.0.$i/24" dev "${P}h$i"
  ip -n "$P-svc$i" link set "${P}h$i" address "02:00:00:00:00:0$i" up
  ip -n "$P-svc$i" link set lo up
  ip -n "$P-sw" link set "${P}s$i" up
done

say "starting shg-switch (3 ports, fail-mode standalone, OpenFlow on 127.0.0.1:6653 in its namespace)"
ip netns exec "$P-sw" "$SW" --datapath-id 0x1 --port "1=${P}s1" --port "2=${P}s2" --port "3=${P}s3" \
  --fail-mode standalone --listen ptcp:6653:127.0.0.1 --ctl "$W/switch.ctl" --log warn &
SWPID=$!
for _ in $(seq 50); do [[ -S $W/switch.ctl ]] && break; sleep 0.1; done
"$CTL" switch --ctl "$W/switch.ctl" show

ping_ok() { ip netns exec "$P-svc$1" ping -q -c 2 -i 0.2 -W 1 "198.18.0.$2" >/dev/null 2>&1; }
matrix() {
  for a in 1 2 3; do for b in 1 2 3; do
    [[ $a == "$b" ]] && continue
    if ping_ok "$a" "$b"; then echo "  svc$a -> svc$b: reachable"; else echo "  svc$a -> svc$b: blocked"; fi
  done; done
}
say "1. no controller: L2 learning"
matrix

say "2. policy over OpenFlow 1.3: isolate services, allow svc1<->svc2, meter svc3 to 1 Mbit/s"
OFCTL="ip netns exec $P-sw ovs-ofctl -O OpenFlow13"
$OFCTL add-meter tcp:127.0.0.1:6653 'meter=1,kbps,burst,band=type=drop,rate=1000,burst_size=100'
cat > "$W/policy.flows" <<FLOWS
table=0,priority=0,actions=drop
table=0,priority=100,in_port=1,dl_src=02:00:00:00:00:01,actions=goto_table:1
table=0,priority=100,in_port=2,dl_src=02:00:00:00:00:02,actions=goto_table:1
table=0,priority=100,in_port=3,dl_src=02:00:00:00:00:03,actions=meter:1,goto_table:1
table=1,priority=0,actions=drop
table=1,priority=50,in_port=1,dl_dst=02:00:00:00:00:02,actions=output:2
table=1,priority=50,in_port=2,dl_dst=02:00:00:00:00:01,actions=output:1
table=1,priority=40,arp,in_port=1,actions=output:2
table=1,priority=40,arp,in_port=2,actions=output:1
FLOWS
$OFCTL add-flows tcp:127.0.0.1:6653 "$W/policy.flows"
matrix

say "3. what the switch says"
"$CTL" switch --ctl "$W/switch.ctl" dump-flows
"$CTL" switch --ctl "$W/switch.ctl" dump-meters
"$CTL" switch --ctl "$W/switch.ctl" dump-ports
say "trace: why svc3 cannot reach svc1"
"$CTL" switch --ctl "$W/switch.ctl" trace "in_port=3,icmp,dl_src=02:00:00:00:00:03,dl_dst=02:00:00:00:00:01,nw_src=198.18.0.3,nw_dst=198.18.0.1"
