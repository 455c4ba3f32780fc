//! (f) Egress QoS seen by ovs-ofctl: shg-switch started from a TOML file with a shaped port
//! and two queues; `queue-get-config`, `queue-stats` and `dump-ports` against its passive
//! listener print the configured rates (tenths of a percent of the shaped rate, as ovs-ofctl
//! shows them in percent) and the traffic a set_queue flow sent; a queue added at runtime
//! through the control socket (`set-queue`) shows up in `queue-get-config`.

use std::process::Command;
use std::time::Duration;

use crate::netns::{skip_unless_root, wait_until, Proc};
use crate::ofctl::{counter, ofctl};
use crate::topo::{shg_binary, Star};

/// The switch's passive listener for this test.
const QOS_LISTEN_PORT: u16 = 6636;

fn ofctl_installed() -> bool {
    Command::new("ovs-ofctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails the test with the switch's log.
fn fail(what: String, sw: &Proc) -> ! {
    panic!("{what}\n--- switch: {}", sw.describe())
}

/// The lines of `text` that contain `needle`, trimmed.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.contains(needle))
        .collect()
}

#[test]
fn ovs_ofctl_reads_queue_config_and_stats() {
    if skip_unless_root("ovs_ofctl_reads_queue_config_and_stats") {
        return;
    }
    if !ofctl_installed() {
        eprintln!("skipping ovs_ofctl_reads_queue_config_and_stats: ovs-ofctl not installed");
        return;
    }
    let _serial = crate::serial();
    let topo = Star::new("qos").expect("topology");
    let ctl = topo.scratch.join("shg-qos.ctl");
    let toml = format!(
        r#"datapath_id = "0000000000000042"
listen = ["ptcp:{QOS_LISTEN_PORT}:127.0.0.1"]
ctl = "{ctl}"

[[port]]
name = "{p1}"
rate = "20mbit"

[[port.queue]]
id = 1
min_rate = "6mbit"
priority = 0

[[port.queue]]
id = 2
min_rate = "500kbit"
max_rate = "15mbit"
priority = 5

[[port]]
name = "{p2}"

[[port]]
name = "{p3}"
"#,
        ctl = ctl.display(),
        p1 = topo.sw_ports[0],
        p2 = topo.sw_ports[1],
        p3 = topo.sw_ports[2],
    );
    let conf = topo.scratch.join("qos.toml");
    std::fs::write(&conf, toml).expect("write config");
    let mut cmd = Command::new(shg_binary());
    cmd.arg("--config")
        .arg(&conf)
        .args(["--log", "debug"])
        .env("NO_COLOR", "1");
    let mut sw = Proc::spawn_in(&topo.sw, &cmd, &topo.scratch.join("shg-switch-qos.log"))
        .expect("spawn shg-switch");
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        topo.sw.tcp_listening(QOS_LISTEN_PORT)
    });
    assert!(
        up,
        "shg-switch never listened: exited {:?}; {}",
        sw.exited(),
        sw.describe()
    );
    let of = |cmd: &str, args: &[&str], sw: &Proc| {
        ofctl(&topo, QOS_LISTEN_PORT, cmd, args).unwrap_or_else(|e| fail(e, sw))
    };

    // QUEUE_GET_CONFIG: 6 Mbit/s of 20 is 30 %, 0.5 is 2.5 %, 15 is 75 %.
    let qc = of("queue-get-config", &["1"], &sw);
    let q1 = lines_with(&qc, "queue 1");
    let q2 = lines_with(&qc, "queue 2");
    assert!(
        q1.len() == 1 && q1[0].contains("min_rate:30.0%") && !q1[0].contains("max_rate"),
        "queue-get-config:\n{qc}"
    );
    assert!(
        q2.len() == 1 && q2[0].contains("min_rate:2.5%") && q2[0].contains("max_rate:75.0%"),
        "queue-get-config:\n{qc}"
    );

    // Traffic: h2 -> h1 through queue 1 of the shaped port (ARP included), h1 -> h2 plain,
    // once every port has its carrier (a frame output to a port whose link is still down
    // counts as a tx drop).
    let links_up = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        shg_switch::ctl::request(&ctl, "show")
            .is_ok_and(|(ok, t)| ok && t.matches("link up").count() == 3)
    });
    if !links_up {
        fail("the switch's ports never all had their link up".into(), &sw);
    }
    of("add-flow", &["in_port=2,actions=set_queue:1,output:1"], &sw);
    of("add-flow", &["in_port=1,actions=output:2"], &sw);
    if !topo.hosts[1].ping_until(&Star::ip(1), Duration::from_secs(8)) {
        fail("no ping reply through the shaped port".into(), &sw);
    }
    assert!(topo.hosts[1].ping(&Star::ip(1), 5), "5 more pings");

    // OFPMP_QUEUE: queue 1 of port 1 carried the pings and the ARP; queue 2 nothing.
    let qs = of("queue-stats", &["1"], &sw);
    let s1 = lines_with(&qs, "queue 1:");
    let s2 = lines_with(&qs, "queue 2:");
    assert!(s1.len() == 1 && s2.len() == 1, "queue-stats:\n{qs}");
    let pkts1 = counter(s1[0], "pkts").unwrap_or(0);
    assert!(pkts1 >= 6, "queue 1 sent {pkts1} frames:\n{qs}");
    assert!(counter(s1[0], "bytes").unwrap_or(0) >= pkts1 * 42, "{qs}");
    assert_eq!(counter(s1[0], "errors"), Some(0), "{qs}");
    assert_eq!(counter(s2[0], "pkts"), Some(0), "{qs}");
    eprintln!("{qc}{qs}");
    // shgctl show: the datapath thread's counters saw the same frames go through the shaper.
    let show = match shg_switch::ctl::request(&ctl, "show") {
        Ok((true, t)) => t,
        other => fail(format!("shgctl show: {other:?}"), &sw),
    };
    let enqueued = show
        .split_once("shaped: enqueued ")
        .and_then(|(_, rest)| rest.split(',').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        enqueued.is_some_and(|n| n >= pkts1),
        "shaped frames {enqueued:?} < queue 1's {pkts1}:\n{show}"
    );
    assert!(show.contains("rx errors 0"), "{show}");
    // Port 1's tx counters count what left its scheduler: at least what queue 1 sent.
    let dp = of("dump-ports", &["1"], &sw);
    let tx = lines_with(&dp, "tx pkts=");
    assert!(!tx.is_empty(), "dump-ports:\n{dp}");
    let tx_pkts = counter(tx[0], "pkts").unwrap_or(0);
    assert!(
        tx_pkts >= pkts1,
        "port tx {tx_pkts} < queue 1 {pkts1}:\n{dp}"
    );
    assert_eq!(counter(tx[0], "drop"), Some(0), "{dp}");

    // The control socket: dump-queues agrees; a queue added at runtime is reported.
    let (ok, text) = shg_switch::ctl::request(&ctl, "dump-queues 1").expect("ctl socket");
    assert!(ok, "{text}");
    let dq1 = lines_with(&text, "queue=1 ");
    assert!(
        dq1.len() == 1 && dq1[0].contains("priority=0 min_rate=6000000 max_rate=none"),
        "dump-queues:\n{text}"
    );
    let (ok, text) = shg_switch::ctl::request(&ctl, "set-queue 1 3 min=2mbit max=4mbit priority=1")
        .expect("ctl socket");
    assert!(ok, "set-queue: {text}");
    let qc = of("queue-get-config", &["1"], &sw);
    let q3 = lines_with(&qc, "queue 3");
    assert!(
        q3.len() == 1 && q3[0].contains("min_rate:10.0%") && q3[0].contains("max_rate:20.0%"),
        "queue-get-config after set-queue:\n{qc}"
    );
    let (ok, text) =
        shg_switch::ctl::request(&ctl, "set-queue 1 3 min=30mbit").expect("ctl socket");
    assert!(!ok && text.contains("error:"), "refused: {text}");
    if let Some(code) = sw.exited() {
        fail(format!("shg-switch exited with {code}"), &sw);
    }
}
