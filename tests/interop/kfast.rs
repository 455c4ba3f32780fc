//! shg-switch with `--kernel-fast-path on`, driven by ovs-ofctl: the kernel forwards most
//! frames, OpenFlow still sees every one, and a flow change takes effect at once.
//!
//! Star topology, flow `actions=NORMAL` (learning). Checks: a ping flood h1 -> h2 gets every
//! reply while the datapath thread receives only a small share of the frames (`shgctl switch
//! show`: its rx frames against the ports' counters); `dump-flows` and `dump-ports` count every
//! frame the kernel forwarded; a higher-priority `actions=drop` flow stops the very next pings
//! (no copy of the old decision is left in the kernel); deleting it forwards again.
//! Runs against shg-switch only (OVS has no such option).

use std::time::Duration;

use crate::netns::{skip_unless_root, wait_until};
use crate::ofctl::{counter, ofctl, ofctl_opts};
use crate::topo::{Star, Switch, SwitchSpec, Target};
use crate::{serial, LISTEN_PORT};

/// The datapath thread's received frames, from `show` on the control socket.
fn dp_rx_frames(ctl: &std::path::Path) -> u64 {
    let (ok, text) = shg_switch::ctl::request(ctl, "show").expect("control socket");
    assert!(ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("rx frames "))
        .unwrap_or_else(|| panic!("no rx frames line in:\n{text}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"))
}

/// `rx_pkts` of `port` in `dump-ports`.
fn port_rx(topo: &Star, port: &str) -> u64 {
    let out = ofctl(topo, LISTEN_PORT, "dump-ports", &[port]).expect("dump-ports");
    counter(&out, "rx pkts").unwrap_or_else(|| panic!("{out}"))
}

/// shg-switch on the topology's switch ports with the fast path on, listening for ovs-ofctl;
/// its control socket.
fn start(topo: &Star) -> (Switch, std::path::PathBuf) {
    let mut spec = SwitchSpec::new(1, &topo.sw_ports);
    spec.listen.push(format!("ptcp:{LISTEN_PORT}:127.0.0.1"));
    spec.extra = vec!["--kernel-fast-path".into(), "on".into()];
    let sw =
        Switch::start(Target::Shg, &topo.sw, &spec, topo.scratch.path()).expect("start switch");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            topo.sw.tcp_listening(LISTEN_PORT)
        }),
        "no listener: {}",
        sw.describe()
    );
    (sw, topo.scratch.path().join("shg-1.ctl"))
}

#[test]
fn kernel_fast_path_forwards_counts_and_obeys_flow_changes() {
    if skip_unless_root("kernel_fast_path_forwards_counts_and_obeys_flow_changes") {
        return;
    }
    if Target::from_env() != Target::Shg {
        eprintln!("SKIP kernel_fast_path...: shg-switch only");
        return;
    }
    let _serial = serial();
    let topo = Star::new("kfast").expect("topology");
    let (mut sw, ctl) = start(&topo);
    let add = |f: &str| ofctl(&topo, LISTEN_PORT, "add-flow", &[f]).expect("add-flow");
    add("actions=NORMAL");
    let (h1, h2) = (&topo.hosts[0], &topo.hosts[1]);
    assert!(
        h1.ping_until(&Star::ip(2), Duration::from_secs(10)),
        "{}",
        sw.describe()
    );

    // A flood of 2000 pings: every reply comes back, mostly forwarded by the kernel.
    let dp0 = dp_rx_frames(&ctl);
    let rx0 = port_rx(&topo, "1");
    let out = h1
        .exec(&[
            "ping",
            "-n",
            "-q",
            "-f",
            "-c",
            "2000",
            "-W",
            "1",
            &Star::ip(2),
        ])
        .expect("ping -f");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2000 packets transmitted, 2000 received"),
        "{text}\n{}",
        sw.describe()
    );
    let dp = dp_rx_frames(&ctl) - dp0;
    let rx = port_rx(&topo, "1") - rx0;
    assert!(rx >= 2000, "port 1 counted {rx} frames for 2000 requests");
    assert!(
        dp < 400,
        "the datapath thread received {dp} of the {rx}+ frames: the kernel fast path did not take over"
    );
    let flows = ofctl(&topo, LISTEN_PORT, "dump-flows", &[]).expect("dump-flows");
    let n = counter(&flows, "n_packets").unwrap_or(0);
    assert!(
        n >= 4000,
        "the NORMAL flow counted {n} of 4000+ frames:\n{flows}"
    );

    // The decision changes: the next pings are dropped, none forwarded by an old copy.
    // (`actions=NORMAL` above has ovs-ofctl's default priority, 32768.)
    add("priority=40000,actions=drop");
    let out = h1
        .exec(&[
            "ping",
            "-n",
            "-q",
            "-c",
            "5",
            "-i",
            "0.05",
            "-W",
            "1",
            &Star::ip(2),
        ])
        .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" 0 received"),
        "forwarded after actions=drop:\n{text}"
    );
    ofctl_opts(
        &topo,
        LISTEN_PORT,
        &["--strict"],
        "del-flows",
        &["priority=40000"],
    )
    .expect("del-flows");
    assert!(
        h2.ping_until(&Star::ip(1), Duration::from_secs(5)),
        "no forwarding once the drop flow is gone: {}",
        sw.describe()
    );
    sw.check_alive().expect("switch alive");
}

/// IPv6 decided by addresses: `ipv6,ipv6_dst=...,actions=output:N` each way. The megaflow
/// masks read the IPv6 destination, which the kernel key holds, so a `ping -6` flood is
/// forwarded by the kernel after its first frames, and dump-flows counts every frame.
#[test]
fn kernel_fast_path_takes_ipv6_flows_matched_on_addresses() {
    if skip_unless_root("kernel_fast_path_takes_ipv6_flows_matched_on_addresses") {
        return;
    }
    if Target::from_env() != Target::Shg {
        eprintln!("SKIP kernel_fast_path_takes_ipv6...: shg-switch only");
        return;
    }
    let _serial = serial();
    let topo = Star::new("kfast6").expect("topology");
    let (h1, h2) = (&topo.hosts[0], &topo.hosts[1]);
    let ip6 = |i: usize| format!("2001:db8:63::{i}");
    // IPv6 on the two hosts' links only, addresses without DAD, neighbours static (no
    // neighbour discovery through the switch: only the two flows below exist).
    let macs: Vec<String> = [h1, h2]
        .iter()
        .map(|h| h.mac(h.name()).expect("mac").trim().to_string())
        .collect();
    for (i, h) in [h1, h2].into_iter().enumerate() {
        let dev = h.name();
        h.exec_ok(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{dev}.disable_ipv6=0"),
        ])
        .expect("enable IPv6");
        h.exec_ok(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{}/64", ip6(i + 1)),
            "dev",
            dev,
            "nodad",
        ])
        .expect("address");
        let other = 1 - i;
        h.exec_ok(&[
            "ip",
            "-6",
            "neigh",
            "replace",
            &ip6(other + 1),
            "lladdr",
            &macs[other],
            "dev",
            dev,
            "nud",
            "permanent",
        ])
        .expect("neighbour");
    }
    let (mut sw, ctl) = start(&topo);
    for f in [
        format!("priority=100,ipv6,ipv6_dst={},actions=output:2", ip6(2)),
        format!("priority=100,ipv6,ipv6_dst={},actions=output:1", ip6(1)),
    ] {
        ofctl(&topo, LISTEN_PORT, "add-flow", &[&f]).expect("add-flow");
    }
    let ping6 = |args: &[&str]| {
        let mut full = vec!["ping", "-6", "-n", "-q"];
        full.extend_from_slice(args);
        let dst = ip6(2);
        full.push(&dst);
        let out = h1.exec(&full).expect("ping -6");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = ping6(&["-c", "3", "-i", "0.2", "-W", "1"]);
    assert!(first.contains(" 3 received"), "{first}\n{}", sw.describe());

    let dp0 = dp_rx_frames(&ctl);
    let text = ping6(&["-f", "-c", "2000", "-W", "1"]);
    assert!(
        text.contains("2000 packets transmitted, 2000 received"),
        "{text}\n{}",
        sw.describe()
    );
    let dp = dp_rx_frames(&ctl) - dp0;
    assert!(
        dp < 400,
        "the datapath thread received {dp} of 4000 frames: the kernel fast path did not take over"
    );
    let flows = ofctl(&topo, LISTEN_PORT, "dump-flows", &[]).expect("dump-flows");
    let counted: u64 = flows
        .lines()
        .filter(|l| l.contains("ipv6_dst="))
        .filter_map(|l| counter(l, "n_packets"))
        .sum();
    assert!(
        counted >= 4006,
        "the two IPv6 flows counted {counted} of 4006+ frames:\n{flows}"
    );
    sw.check_alive().expect("switch alive");
}
