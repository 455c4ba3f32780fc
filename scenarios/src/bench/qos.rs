//! `shg-scenario bench qos`: latency under load on a 20 Mbit/s uplink (issue 5, item 5).
//!
//! Three configurations on one topology, alternating within each repetition (reversed on even
//! ones): (a) `fifo`, Linux bridge + routed uplink shaped by tc HTB at 20 Mbit/s with one 1.5 MB
//! bfifo (bufferbloat); (b) `htb`, the same with a strict-priority HTB class for service A
//! (rate 6 Mbit/s, prio 0) and one class for the rest (14 Mbit/s, prio 1), each with a 1.5 MB
//! bfifo — the kernel anchor of `/work/shared/bench/anchor-bench.sh`; (c) `shg`, shg-switch with
//! the uplink port shaped to `rate = "20mbit"` and one queue per service (A: min 6 Mbit/s prio
//! 0; B and C: min 7 Mbit/s prio 1; all max 20 Mbit/s), chosen by `set_queue` flows on in_port,
//! so each service's ARP goes to its own queue too; the reverse direction is unshaped.
//!
//! Topology (per-run prefix `p`; addresses in 198.18.0.0/15):
//!
//! ```text
//!  p a ─ p ak / p sak ─┐                                        198.18.1.0/24 (LAN)
//!  p b ─ p bk / p sbk ─┼ bridge p br (.254) ─ routed ─ p swk / p wk ─ p w   198.18.2.0/24
//!  p c ─ p ck / p sck ─┘    (namespace p sw forwards IPv4; tc on p swk)
//!
//!  p a ─ p as / p sas ─┐
//!  p b ─ p bs / p sbs ─┼ shg-switch ports 1-3, uplink port 4 ─ p sws / p ws ─ p w
//!  p c ─ p cs / p scs ─┘                                        198.18.3.0/24 (one L2)
//! ```
//!
//! The kernel path is routed as in the anchor: `ip_rcv()` orphans the sender's skb, so TCP
//! Small Queues do not bound the bottleneck queue (a bridged local sender would hide the
//! bufferbloat); shg-switch's AF_PACKET receive consumes the skb the same way.
//!
//! One case (configuration × repetition): idle RTT (A pings the WAN host at 50 Hz, B at
//! 10 Hz), then load: B a bulk TCP upload (`iperf3 -C cubic`), C a UDP flood of 64-byte
//! payloads at 30 Mbit/s of payload (~49 Mbit/s of frames); after a ramp, phase 1: A sends 5
//! Mbit/s of UDP media in 1200-byte datagrams (iperf3: loss) while pinging at 50 Hz and B pings
//! at 10 Hz; phase 2: A sends greedy TCP (cubic; first 2 s omitted) and its goodput is
//! measured. Uplink utilisation is the WAN host's interface rx bytes over each phase against
//! 20 Mbit/s. For shg, `shgctl switch dump-queues` is read after each phase (sojourn p99 of
//! B's queue, parsed tolerantly; kept raw in the output directory).

use super::datapath::{write_outputs, TargetCheck};
use super::{machine_note, now_utc, ofctl, run_bounded, Env};
use crate::interrupt;
use crate::netns::{prefix, run, wait_until, Netns, Proc, Veth};
use crate::parse::{parse_iperf_tcp, parse_iperf_udp, parse_ping, PingResult};
use crate::procfs;
use crate::stats::{fmt_opt, median_of, percentile};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{self, BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The uplink's shaped rate, bit/s.
pub const UPLINK_BPS: f64 = 20e6;
/// A's guaranteed rate, bit/s.
pub const A_MIN_BPS: f64 = 6e6;
/// FIFO limit of the kernel configurations (≈ 600 ms at 20 Mbit/s), bytes.
pub const FIFO_BYTES: u32 = 1_500_000;
/// A's media stream: datagram payload and rate.
pub const MEDIA_LEN: u32 = 1200;
pub const MEDIA_RATE: &str = "5M";
/// C's flood: datagram payload and (payload) rate.
pub const FLOOD_LEN: u32 = 64;
pub const FLOOD_RATE: &str = "20M";
/// Ping rates (interval, s): A at 50 Hz, B at 10 Hz.
const A_PING_INTERVAL: &str = "0.02";
const B_PING_INTERVAL: &str = "0.1";
/// iperf3 servers on the WAN host: B's, C's, A's.
const PORT_B: u16 = 5201;
const PORT_C: u16 = 5202;
const PORT_A: u16 = 5203;
/// A's greedy TCP gets its own server: after a lossy media test (FIFO) the media server can
/// still be finishing that test ("the server is busy").
const PORT_A_GREEDY: u16 = 5204;
/// shg-switch's OpenFlow listener (inside the switch namespace).
const OF_PORT: u16 = 6711;
/// Seconds of A's greedy TCP omitted from its rate (slow start).
const GREEDY_OMIT_SECS: u32 = 2;

/// Options of `bench qos`.
#[derive(Debug, Clone)]
pub struct QosOpts {
    /// 1 repetition, 5 s idle, 10 s phases.
    pub quick: bool,
    /// Repetitions (default 3; 1 with `quick`).
    pub reps: Option<u32>,
    /// Output directory (default `target/bench/qos-<timestamp>`).
    pub out: Option<PathBuf>,
    /// shg-switch binary (default: next to this executable).
    pub switch: Option<PathBuf>,
    /// Configurations to run (default all three).
    pub configs: Vec<QosConfig>,
    /// Length of each load phase, s (default 15; 10 with `quick`).
    pub phase_secs: Option<u32>,
    /// The command line, for the report.
    pub command: String,
}

/// A configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QosConfig {
    /// Linux bridge, routed uplink, HTB 20 Mbit/s + one 1.5 MB bfifo.
    #[default]
    Fifo,
    /// Linux bridge, routed uplink, HTB with a priority class for A.
    Htb,
    /// shg-switch with per-service queues on the shaped uplink port.
    Shg,
}

impl QosConfig {
    /// In the order of the first repetition.
    pub const ALL: [QosConfig; 3] = [QosConfig::Fifo, QosConfig::Htb, QosConfig::Shg];

    /// Key in results.json and on the command line.
    pub fn key(self) -> &'static str {
        match self {
            QosConfig::Fifo => "fifo",
            QosConfig::Htb => "htb",
            QosConfig::Shg => "shg",
        }
    }

    /// Row label in results.md.
    pub fn label(self) -> &'static str {
        match self {
            QosConfig::Fifo => "Linux bridge + FIFO 1.5 MB shaped 20 Mbit/s (tc)",
            QosConfig::Htb => "Linux bridge + tc HTB, A prio class 6 Mbit/s",
            QosConfig::Shg => "shg-switch, uplink rate 20mbit, queue per service",
        }
    }

    /// Parses a key.
    pub fn from_key(s: &str) -> Option<QosConfig> {
        QosConfig::ALL.into_iter().find(|c| c.key() == s)
    }

    /// Parses `fifo,htb,shg`.
    pub fn parse_list(s: &str) -> Result<Vec<QosConfig>, String> {
        let mut v = Vec::new();
        for k in s.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            let c = QosConfig::from_key(k)
                .ok_or_else(|| format!("{k:?}: not a configuration (fifo, htb, shg)"))?;
            if !v.contains(&c) {
                v.push(c);
            }
        }
        if v.is_empty() {
            return Err("no configuration given".into());
        }
        Ok(v)
    }

    /// Whether this runs on the kernel (routed) path.
    fn kernel(self) -> bool {
        self != QosConfig::Shg
    }

    /// The WAN host's address on this configuration's path.
    pub fn dst(self) -> &'static str {
        if self.kernel() {
            "198.18.2.1"
        } else {
            "198.18.3.100"
        }
    }

    /// Order of repetition `rep` (1-based) among `configs`: forwards on odd, backwards on even.
    pub fn order(configs: &[QosConfig], rep: u32) -> Vec<QosConfig> {
        let mut v = configs.to_vec();
        if rep % 2 == 0 {
            v.reverse();
        }
        v
    }
}

/// The tc commands (arguments after `tc`) that shape `dev` for a kernel configuration.
pub fn tc_commands(cfg: QosConfig, dev: &str) -> Vec<Vec<String>> {
    let lim = FIFO_BYTES.to_string();
    let lines: Vec<String> = match cfg {
        QosConfig::Shg => Vec::new(),
        QosConfig::Fifo => vec![
            format!("qdisc add dev {dev} root handle 1: htb default 10 r2q 100"),
            format!("class add dev {dev} parent 1: classid 1:10 htb rate 20mbit ceil 20mbit"),
            format!("qdisc add dev {dev} parent 1:10 handle 10: bfifo limit {lim}"),
        ],
        QosConfig::Htb => vec![
            format!("qdisc add dev {dev} root handle 1: htb default 20 r2q 100"),
            format!("class add dev {dev} parent 1: classid 1:1 htb rate 20mbit ceil 20mbit"),
            format!(
                "class add dev {dev} parent 1:1 classid 1:10 htb rate 6mbit ceil 20mbit prio 0"
            ),
            format!(
                "class add dev {dev} parent 1:1 classid 1:20 htb rate 14mbit ceil 20mbit prio 1"
            ),
            format!("qdisc add dev {dev} parent 1:10 handle 10: bfifo limit {lim}"),
            format!("qdisc add dev {dev} parent 1:20 handle 20: bfifo limit {lim}"),
            // A (by source address) and the router's ARP to the priority class.
            format!(
                "filter add dev {dev} parent 1: protocol ip prio 1 u32 match ip src 198.18.1.1/32 flowid 1:10"
            ),
            format!(
                "filter add dev {dev} parent 1: protocol arp prio 2 u32 match u32 0 0 flowid 1:10"
            ),
        ],
    };
    lines
        .iter()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// shg-switch's TOML: service ports 1-3, the uplink port 4 shaped with one queue per service.
pub fn shg_config_toml(service_ports: &[String; 3], uplink: &str) -> String {
    // The shaper's timer wake-ups must not wait behind iperf3 on 2 cores (the kernel's HTB
    // runs in softirq context): the datapath thread runs SCHED_FIFO (docs/decisions.md D9).
    let mut s =
        String::from("datapath_id = \"0000000000000001\"\ndatapath_priority = \"realtime\"\n");
    for (i, name) in service_ports.iter().enumerate() {
        let _ = write!(s, "\n[[port]]\nname = \"{name}\"\nnumber = {}\n", i + 1);
    }
    let _ = write!(
        s,
        "\n[[port]]\nname = \"{uplink}\"\nnumber = 4\nrate = \"20mbit\"\n"
    );
    for (id, min, prio) in [(1, "6mbit", 0), (2, "7mbit", 1), (3, "7mbit", 1)] {
        let _ = write!(
            s,
            "\n[[port.queue]]\nid = {id}\nmin_rate = \"{min}\"\nmax_rate = \"20mbit\"\npriority = {prio}\n"
        );
    }
    s
}

/// The flows of the shg configuration (ovs-ofctl syntax): service port N → queue N on the
/// uplink (every frame, ARP included); from the uplink by destination, unshaped.
pub fn shg_flows() -> Vec<String> {
    let mut v = Vec::new();
    for n in 1..=3 {
        v.push(format!(
            "priority=10,in_port={n},actions=set_queue:{n},output:4"
        ));
    }
    for n in 1..=3 {
        v.push(format!(
            "priority=10,ip,in_port=4,nw_dst=198.18.3.{n},actions=output:{n}"
        ));
        v.push(format!(
            "priority=10,arp,in_port=4,arp_tpa=198.18.3.{n},actions=output:{n}"
        ));
    }
    v
}

/// One line of `dump-queues`: its `key=value` fields in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueLine {
    pub fields: Vec<(String, String)>,
}

impl QueueLine {
    /// The value of the first field named one of `keys`.
    pub fn get(&self, keys: &[&str]) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| keys.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
    }

    /// The queue id (`queue=`, `queue_id=`, `id=`, `q=`; `q2` and `queue:2` forms too).
    pub fn queue_id(&self) -> Option<u32> {
        self.get(&["queue", "queue_id", "id", "q"])
            .and_then(|v| leading_uint(v.trim_start_matches(['q', 'Q'])))
    }

    /// The port (number or name), when the line names one.
    pub fn port(&self) -> Option<&str> {
        self.get(&["port", "port_no", "in_port", "port_id"])
    }
}

/// `q2`, `q2:`, `queue2` as a queue id.
fn queue_word(t: &str) -> Option<u32> {
    let t = t.trim_end_matches(':').to_ascii_lowercase();
    let rest = t.strip_prefix("queue").or_else(|| t.strip_prefix('q'))?;
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

fn leading_uint(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Parses `dump-queues` output tolerantly: every line with at least one `key=value` (or
/// `key:value` after a `port`/`queue` word) token becomes a [`QueueLine`]; a port header line
/// (`port 4:` / `port=4` without a queue) applies to the queue lines after it.
pub fn parse_dump_queues(text: &str) -> Vec<QueueLine> {
    let mut out = Vec::new();
    let mut current_port: Option<String> = None;
    for line in text.lines() {
        let mut fields: Vec<(String, String)> = Vec::new();
        let toks: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .collect();
        let mut i = 0;
        while i < toks.len() {
            let t = toks[i];
            if let Some((k, v)) = t.split_once('=') {
                fields.push((k.to_ascii_lowercase(), v.to_string()));
            } else if let Some((k, v)) = t.split_once(':').filter(|(k, v)| {
                !v.is_empty() && matches!(k.to_ascii_lowercase().as_str(), "port" | "queue")
            }) {
                fields.push((k.to_ascii_lowercase(), v.to_string()));
            } else if let Some(n) = queue_word(t) {
                fields.push(("queue".into(), n.to_string()));
            } else if matches!(t.to_ascii_lowercase().as_str(), "port" | "queue") {
                if let Some(next) = toks.get(i + 1) {
                    let v = next.trim_end_matches(':');
                    if !v.is_empty() && !v.contains('=') {
                        fields.push((t.to_ascii_lowercase(), v.to_string()));
                        i += 1;
                    }
                }
            }
            i += 1;
        }
        if fields.is_empty() {
            continue;
        }
        let q = QueueLine { fields };
        if q.queue_id().is_none() {
            if let Some(p) = q.port() {
                current_port = Some(p.to_string());
            }
            continue;
        }
        let mut q = q;
        if q.port().is_none() {
            if let Some(p) = &current_port {
                q.fields.insert(0, ("port".into(), p.clone()));
            }
        }
        out.push(q);
    }
    out
}

/// A duration value in ms: `12.5` (ms as documented), `12.5ms`, `800us`/`800µs`, `1.2s`.
pub fn parse_ms(v: &str) -> Option<f64> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e' || c == '+'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let x: f64 = num.parse().ok()?;
    let k = match unit.trim() {
        "" | "ms" => 1.0,
        "us" | "µs" => 1e-3,
        "ns" => 1e-6,
        "s" => 1e3,
        _ => return None,
    };
    Some(x * k).filter(|x| x.is_finite())
}

/// Sojourn p99 (ms) of queue `queue` of port `port` (number `4` or interface name) in a
/// `dump-queues` text: Ok(value), or Err(why it is absent).
pub fn sojourn_p99(text: &str, port: &str, port_name: &str, queue: u32) -> Result<f64, String> {
    let lines = parse_dump_queues(text);
    let line = lines
        .iter()
        .find(|l| {
            l.queue_id() == Some(queue)
                && l.port().is_none_or(|p| {
                    p == port || p == port_name || p.trim_start_matches(['p', 'P']) == port
                })
        })
        .ok_or_else(|| format!("no line for port {port} queue {queue} in dump-queues"))?;
    let v = line
        .get(&["sojourn_p99", "sojourn_p99_ms", "p99", "delay_p99"])
        .ok_or_else(|| "no sojourn_p99= field in dump-queues".to_string())?;
    parse_ms(v).ok_or_else(|| format!("sojourn_p99={v}: not a duration"))
}

/// One repetition of one configuration.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub cfg: QosConfig,
    pub rep: u32,
    pub a_idle_p50_ms: Option<f64>,
    pub a_idle_p99_ms: Option<f64>,
    pub b_idle_p50_ms: Option<f64>,
    pub a_load_p50_ms: Option<f64>,
    pub a_load_p99_ms: Option<f64>,
    /// Pings of A without reply under load, %.
    pub a_ping_loss_pct: Option<f64>,
    pub media_loss_pct: Option<f64>,
    pub b_load_p99_ms: Option<f64>,
    /// `b_load_p99 - b_idle_p50`: B's end-to-end queue delay estimate, ms.
    pub b_qdelay_p99_ms: Option<f64>,
    /// shg only: `dump-queues` sojourn p99 of B's queue after phase 1, ms.
    pub b_sojourn_p99_ms: Option<f64>,
    /// shg only: the same for A's and C's queues.
    pub a_sojourn_p99_ms: Option<f64>,
    pub c_sojourn_p99_ms: Option<f64>,
    pub a_greedy_mbps: Option<f64>,
    /// WAN host rx bytes over the phase / 20 Mbit/s (fraction).
    pub util_media: Option<f64>,
    pub util_greedy: Option<f64>,
    /// What the WAN host's iperf3 servers received from B and C (payload Mbit/s, mean of
    /// the 1 s intervals inside phase 1 and inside phase 2 after A's omitted seconds).
    pub b_rx_p1_mbps: Option<f64>,
    pub c_rx_p1_mbps: Option<f64>,
    pub b_rx_p2_mbps: Option<f64>,
    pub c_rx_p2_mbps: Option<f64>,
    /// shg only: switch process CPU during phase 1, % of one core.
    pub switch_cpu_pct: Option<f64>,
    /// Whole machine busy during phase 1, % of all cores (other jobs show up here).
    pub machine_busy_pct: Option<f64>,
    pub errors: Vec<String>,
}

/// Medians of one configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Medians {
    pub a_idle_p50_ms: Option<f64>,
    pub a_idle_p99_ms: Option<f64>,
    pub a_load_p50_ms: Option<f64>,
    pub a_load_p99_ms: Option<f64>,
    pub a_ping_loss_pct: Option<f64>,
    pub media_loss_pct: Option<f64>,
    pub b_qdelay_p99_ms: Option<f64>,
    pub b_sojourn_p99_ms: Option<f64>,
    pub a_sojourn_p99_ms: Option<f64>,
    pub c_sojourn_p99_ms: Option<f64>,
    pub a_greedy_mbps: Option<f64>,
    pub util_media: Option<f64>,
    pub util_greedy: Option<f64>,
    pub b_rx_p1_mbps: Option<f64>,
    pub c_rx_p1_mbps: Option<f64>,
    pub b_rx_p2_mbps: Option<f64>,
    pub c_rx_p2_mbps: Option<f64>,
    pub switch_cpu_pct: Option<f64>,
    pub machine_busy_pct: Option<f64>,
}

/// Medians over the samples of `cfg`.
pub fn medians(samples: &[Sample], cfg: QosConfig) -> Medians {
    let s: Vec<&Sample> = samples.iter().filter(|s| s.cfg == cfg).collect();
    let m = |f: fn(&Sample) -> Option<f64>| median_of(s.iter().map(|x| f(x)));
    Medians {
        a_idle_p50_ms: m(|x| x.a_idle_p50_ms),
        a_idle_p99_ms: m(|x| x.a_idle_p99_ms),
        a_load_p50_ms: m(|x| x.a_load_p50_ms),
        a_load_p99_ms: m(|x| x.a_load_p99_ms),
        a_ping_loss_pct: m(|x| x.a_ping_loss_pct),
        media_loss_pct: m(|x| x.media_loss_pct),
        b_qdelay_p99_ms: m(|x| x.b_qdelay_p99_ms),
        b_sojourn_p99_ms: m(|x| x.b_sojourn_p99_ms),
        a_sojourn_p99_ms: m(|x| x.a_sojourn_p99_ms),
        c_sojourn_p99_ms: m(|x| x.c_sojourn_p99_ms),
        a_greedy_mbps: m(|x| x.a_greedy_mbps),
        util_media: m(|x| x.util_media),
        util_greedy: m(|x| x.util_greedy),
        b_rx_p1_mbps: m(|x| x.b_rx_p1_mbps),
        c_rx_p1_mbps: m(|x| x.c_rx_p1_mbps),
        b_rx_p2_mbps: m(|x| x.b_rx_p2_mbps),
        c_rx_p2_mbps: m(|x| x.c_rx_p2_mbps),
        switch_cpu_pct: m(|x| x.switch_cpu_pct),
        machine_busy_pct: m(|x| x.machine_busy_pct),
    }
}

/// The issue's targets for one configuration's medians.
pub fn targets(m: &Medians) -> Vec<TargetCheck> {
    let a_rtt = match (m.a_load_p99_ms, m.a_idle_p99_ms) {
        (Some(l), Some(i)) => TargetCheck {
            what: "A RTT p99 ≤ idle p99 + 1 ms".into(),
            measured: format!("{l:.2} vs {i:.2} ms idle"),
            met: Some(l <= i + 1.0),
        },
        _ => TargetCheck {
            what: "A RTT p99 ≤ idle p99 + 1 ms".into(),
            measured: "-".into(),
            met: None,
        },
    };
    let util = match (m.util_media, m.util_greedy) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // B's queue delay: the switch's own sojourn p99 where it reports one, else the ping estimate.
    let (qd, qd_src) = match (m.b_sojourn_p99_ms, m.b_qdelay_p99_ms) {
        (Some(s), _) => (Some(s), "dump-queues sojourn"),
        (None, e) => (e, "ping estimate"),
    };
    vec![
        a_rtt,
        TargetCheck {
            what: "media loss < 1 %".into(),
            measured: m.media_loss_pct.map_or("-".into(), |x| format!("{x:.2} %")),
            met: m.media_loss_pct.map(|x| x < 1.0),
        },
        TargetCheck {
            what: "greedy A ≥ 95 % of 6 Mbit/s (goodput ≥ 5.70)".into(),
            measured: m
                .a_greedy_mbps
                .map_or("-".into(), |x| format!("{x:.2} Mbit/s")),
            met: m.a_greedy_mbps.map(|x| x >= 0.95 * A_MIN_BPS / 1e6),
        },
        TargetCheck {
            what: "uplink ≥ 95 % utilised (lower of the two phases)".into(),
            measured: util.map_or("-".into(), |x| format!("{:.1} %", x * 100.0)),
            met: util.map(|x| x >= 0.95),
        },
        TargetCheck {
            what: "B queue delay p99 ≤ 20 ms".into(),
            measured: qd.map_or("-".into(), |x| format!("{x:.1} ms ({qd_src})")),
            met: qd.map(|x| x <= 20.0),
        },
    ]
}

/// Everything a run produced.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub command: String,
    pub date: String,
    pub machine: String,
    pub reps: u32,
    pub idle_secs: u32,
    pub ramp_secs: u32,
    pub phase_secs: u32,
    pub configs: Vec<QosConfig>,
    pub samples: Vec<Sample>,
    /// Notes about the run (e.g. how dump-queues was read).
    pub notes: Vec<String>,
}

fn met_str(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "-",
    }
}

fn pct(x: Option<f64>) -> String {
    fmt_opt(x.map(|v| v * 100.0), 1)
}

impl Report {
    /// results.md.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Command: `{}`. Run {}; {}.\n",
            self.command, self.date, self.machine
        );
        let _ = writeln!(
            s,
            "Medians of {} repetition(s), configurations alternating within each. Uplink shaped to \
             20 Mbit/s; load: B bulk TCP upload (iperf3 -C cubic), C UDP flood (-l {FLOOD_LEN} \
             -b {FLOOD_RATE}); idle pings {} s; {} s ramp; phase 1 ({} s): A media UDP \
             (-l {MEDIA_LEN} -b {MEDIA_RATE}) + A ping 50 Hz + B ping 10 Hz; phase 2 ({} s + {} s \
             omitted): A greedy TCP (cubic). Utilisation: WAN host rx bytes / (20 Mbit/s × phase). \
             B queue delay: B's ping p99 under load − B's idle median (all), and shg-switch's \
             `dump-queues` sojourn p99 of B's queue.\n",
            self.reps,
            self.idle_secs,
            self.ramp_secs,
            self.phase_secs,
            self.phase_secs,
            GREEDY_OMIT_SECS
        );
        s.push_str(
            "| configuration | A RTT p50 / p99 idle ms | A RTT p50 / p99 load ms | A ping loss % \
             | media loss % | A greedy Mbit/s | uplink util % media / greedy \
             | B qdelay p99 ms (ping) | switch sojourn p99 ms A / B / C | B / C rx Mbit/s media phase | B / C rx Mbit/s greedy phase \
             | switch CPU % of a core | machine busy % |\n",
        );
        s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for &cfg in &self.configs {
            let m = medians(&self.samples, cfg);
            let _ = writeln!(
                s,
                "| {} | {} / {} | {} / {} | {} | {} | {} | {} / {} | {} | {} / {} / {} | {} / {} | {} / {} | {} | {} |",
                cfg.label(),
                fmt_opt(m.a_idle_p50_ms, 3),
                fmt_opt(m.a_idle_p99_ms, 3),
                fmt_opt(m.a_load_p50_ms, 2),
                fmt_opt(m.a_load_p99_ms, 2),
                fmt_opt(m.a_ping_loss_pct, 1),
                fmt_opt(m.media_loss_pct, 2),
                fmt_opt(m.a_greedy_mbps, 2),
                pct(m.util_media),
                pct(m.util_greedy),
                fmt_opt(m.b_qdelay_p99_ms, 1),
                fmt_opt(m.a_sojourn_p99_ms, 2),
                fmt_opt(m.b_sojourn_p99_ms, 1),
                fmt_opt(m.c_sojourn_p99_ms, 0),
                fmt_opt(m.b_rx_p1_mbps, 2),
                fmt_opt(m.c_rx_p1_mbps, 2),
                fmt_opt(m.b_rx_p2_mbps, 2),
                fmt_opt(m.c_rx_p2_mbps, 2),
                if cfg == QosConfig::Shg {
                    fmt_opt(m.switch_cpu_pct, 0)
                } else {
                    "-".into()
                },
                fmt_opt(m.machine_busy_pct, 0),
            );
        }
        s.push_str("\nTargets (issue 5):\n\n| target |");
        for &cfg in &self.configs {
            let _ = write!(s, " {} |", cfg.key());
        }
        s.push_str("\n|---|");
        for _ in &self.configs {
            s.push_str("---|");
        }
        s.push('\n');
        let per_cfg: Vec<Vec<TargetCheck>> = self
            .configs
            .iter()
            .map(|&c| targets(&medians(&self.samples, c)))
            .collect();
        if let Some(first) = per_cfg.first() {
            for (i, t) in first.iter().enumerate() {
                let _ = write!(s, "| {} |", t.what);
                for checks in &per_cfg {
                    if let Some(c) = checks.get(i) {
                        let _ = write!(s, " {} ({}) |", c.measured, met_str(c.met));
                    }
                }
                s.push('\n');
            }
        }
        s.push_str(
            "\nEvery repetition (A RTT p99 idle / load ms, media loss %, A greedy Mbit/s, \
             util % media / greedy, B qdelay p99 ms, machine busy % in phase 1):\n\n| configuration |",
        );
        for r in 1..=self.reps {
            let _ = write!(s, " rep {r} |");
        }
        s.push_str("\n|---|");
        for _ in 1..=self.reps {
            s.push_str("---|");
        }
        s.push('\n');
        for &cfg in &self.configs {
            let _ = write!(s, "| {} |", cfg.key());
            for r in 1..=self.reps {
                match self.samples.iter().find(|x| x.cfg == cfg && x.rep == r) {
                    Some(x) => {
                        let _ = write!(
                            s,
                            " {} / {}, {}, {}, {} / {}, {}, {}{} |",
                            fmt_opt(x.a_idle_p99_ms, 2),
                            fmt_opt(x.a_load_p99_ms, 2),
                            fmt_opt(x.media_loss_pct, 2),
                            fmt_opt(x.a_greedy_mbps, 2),
                            pct(x.util_media),
                            pct(x.util_greedy),
                            fmt_opt(x.b_qdelay_p99_ms, 1),
                            fmt_opt(x.machine_busy_pct, 0),
                            if x.errors.is_empty() { "" } else { " (errors)" }
                        );
                    }
                    None => s.push_str(" - |"),
                }
            }
            s.push('\n');
        }
        super::errors_section(
            &mut s,
            self.samples.iter().flat_map(|x| {
                x.errors
                    .iter()
                    .map(move |e| format!("{} rep {}: {e}", x.cfg.key(), x.rep))
            }),
        );
        if !self.notes.is_empty() {
            s.push_str("\nNotes:\n\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// results.json.
    pub fn json(&self) -> Value {
        let configs: Vec<Value> = self
            .configs
            .iter()
            .map(|&cfg| {
                let m = medians(&self.samples, cfg);
                let t: Vec<Value> = targets(&m)
                    .into_iter()
                    .map(|t| json!({"target": t.what, "measured": t.measured, "met": t.met}))
                    .collect();
                json!({
                    "key": cfg.key(),
                    "label": cfg.label(),
                    "medians": {
                        "a_idle_p50_ms": m.a_idle_p50_ms,
                        "a_idle_p99_ms": m.a_idle_p99_ms,
                        "a_load_p50_ms": m.a_load_p50_ms,
                        "a_load_p99_ms": m.a_load_p99_ms,
                        "a_ping_loss_pct": m.a_ping_loss_pct,
                        "media_loss_pct": m.media_loss_pct,
                        "b_qdelay_p99_ms": m.b_qdelay_p99_ms,
                        "b_sojourn_p99_ms": m.b_sojourn_p99_ms,
                        "a_sojourn_p99_ms": m.a_sojourn_p99_ms,
                        "c_sojourn_p99_ms": m.c_sojourn_p99_ms,
                        "a_greedy_mbps": m.a_greedy_mbps,
                        "util_media": m.util_media,
                        "util_greedy": m.util_greedy,
                        "b_rx_p1_mbps": m.b_rx_p1_mbps,
                        "c_rx_p1_mbps": m.c_rx_p1_mbps,
                        "b_rx_p2_mbps": m.b_rx_p2_mbps,
                        "c_rx_p2_mbps": m.c_rx_p2_mbps,
                        "switch_cpu_pct": m.switch_cpu_pct,
                        "machine_busy_pct": m.machine_busy_pct,
                    },
                    "targets": t,
                })
            })
            .collect();
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|x| {
                json!({
                    "config": x.cfg.key(),
                    "rep": x.rep,
                    "a_idle_p50_ms": x.a_idle_p50_ms,
                    "a_idle_p99_ms": x.a_idle_p99_ms,
                    "b_idle_p50_ms": x.b_idle_p50_ms,
                    "a_load_p50_ms": x.a_load_p50_ms,
                    "a_load_p99_ms": x.a_load_p99_ms,
                    "a_ping_loss_pct": x.a_ping_loss_pct,
                    "media_loss_pct": x.media_loss_pct,
                    "b_load_p99_ms": x.b_load_p99_ms,
                    "b_qdelay_p99_ms": x.b_qdelay_p99_ms,
                    "b_sojourn_p99_ms": x.b_sojourn_p99_ms,
                    "a_sojourn_p99_ms": x.a_sojourn_p99_ms,
                    "c_sojourn_p99_ms": x.c_sojourn_p99_ms,
                    "a_greedy_mbps": x.a_greedy_mbps,
                    "util_media": x.util_media,
                    "util_greedy": x.util_greedy,
                    "b_rx_p1_mbps": x.b_rx_p1_mbps,
                    "c_rx_p1_mbps": x.c_rx_p1_mbps,
                    "b_rx_p2_mbps": x.b_rx_p2_mbps,
                    "c_rx_p2_mbps": x.c_rx_p2_mbps,
                    "switch_cpu_pct": x.switch_cpu_pct,
                    "machine_busy_pct": x.machine_busy_pct,
                    "errors": x.errors,
                })
            })
            .collect();
        json!({
            "benchmark": "qos",
            "command": self.command,
            "date": self.date,
            "machine": self.machine,
            "reps": self.reps,
            "idle_secs": self.idle_secs,
            "ramp_secs": self.ramp_secs,
            "phase_secs": self.phase_secs,
            "greedy_omit_secs": GREEDY_OMIT_SECS,
            "uplink_bps": UPLINK_BPS,
            "fifo_bytes": FIFO_BYTES,
            "media": {"len": MEDIA_LEN, "rate": MEDIA_RATE},
            "flood": {"len": FLOOD_LEN, "rate": FLOOD_RATE},
            "configs": configs,
            "samples": samples,
            "notes": self.notes,
        })
    }
}

/// The namespaces and veths. Field order = drop order: veths, then namespaces.
#[derive(Debug)]
struct Topo {
    _veths: Vec<Veth>,
    a: Netns,
    b: Netns,
    c: Netns,
    w: Netns,
    sw: Netns,
    p: String,
}

impl Topo {
    fn new(p: &str) -> io::Result<Topo> {
        let sw = Netns::new(&format!("{p}sw"))?;
        let a = Netns::new(&format!("{p}a"))?;
        let b = Netns::new(&format!("{p}b"))?;
        let c = Netns::new(&format!("{p}c"))?;
        let w = Netns::new(&format!("{p}w"))?;
        let mut veths = Vec::new();
        for (x, ns) in [("a", &a), ("b", &b), ("c", &c), ("w", &w)] {
            for path in ["k", "s"] {
                veths.push(Veth::new(
                    &format!("{p}{x}{path}"),
                    ns,
                    &format!("{p}s{x}{path}"),
                    &sw,
                )?);
            }
        }
        let topo = Topo {
            _veths: veths,
            a,
            b,
            c,
            w,
            sw,
            p: p.to_string(),
        };
        topo.kernel_path()?;
        for (i, ns) in topo.services().into_iter().enumerate() {
            let x = ["a", "b", "c"][i];
            ns.add_addr(&format!("{p}{x}s"), &format!("198.18.3.{}/24", i + 1))?;
        }
        topo.w.add_addr(&format!("{p}ws"), "198.18.3.100/24")?;
        Ok(topo)
    }

    /// Services on 198.18.1.0/24 behind a bridge in `sw`, which routes to the WAN host on
    /// 198.18.2.0/24.
    fn kernel_path(&self) -> io::Result<()> {
        let p = &self.p;
        let br = format!("{p}br");
        self.sw
            .exec_ok(&["ip", "link", "add", &br, "type", "bridge"])?;
        self.sw.exec_ok(&[
            "ip",
            "link",
            "set",
            &br,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        for x in ["a", "b", "c"] {
            self.sw
                .exec_ok(&["ip", "link", "set", &format!("{p}s{x}k"), "master", &br])?;
        }
        self.sw.link_up(&br)?;
        self.sw.add_addr(&br, "198.18.1.254/24")?;
        self.sw.add_addr(&format!("{p}swk"), "198.18.2.254/24")?;
        self.sw
            .exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        for (i, ns) in self.services().into_iter().enumerate() {
            let x = ["a", "b", "c"][i];
            ns.add_addr(&format!("{p}{x}k"), &format!("198.18.1.{}/24", i + 1))?;
            ns.exec_ok(&["ip", "route", "add", "198.18.2.0/24", "via", "198.18.1.254"])?;
        }
        self.w.add_addr(&format!("{p}wk"), "198.18.2.1/24")?;
        self.w
            .exec_ok(&["ip", "route", "add", "198.18.1.0/24", "via", "198.18.2.254"])?;
        Ok(())
    }

    fn services(&self) -> [&Netns; 3] {
        [&self.a, &self.b, &self.c]
    }

    /// The WAN host's interface on `cfg`'s path.
    fn wan_if(&self, cfg: QosConfig) -> String {
        format!("{}w{}", self.p, if cfg.kernel() { 'k' } else { 's' })
    }

    /// The uplink (switch side) of the kernel path, where tc shapes.
    fn kernel_uplink(&self) -> String {
        format!("{}swk", self.p)
    }

    /// shg-switch's service ports (1-3) and uplink (4).
    fn shg_ports(&self) -> ([String; 3], String) {
        let p = &self.p;
        (
            [format!("{p}sas"), format!("{p}sbs"), format!("{p}scs")],
            format!("{p}sws"),
        )
    }

    /// Bytes the WAN host's interface has received on `cfg`'s path.
    fn wan_rx_bytes(&self, cfg: QosConfig) -> io::Result<u64> {
        let path = format!("/sys/class/net/{}/statistics/rx_bytes", self.wan_if(cfg));
        let s = self.w.exec_ok(&["cat", &path])?;
        s.trim()
            .parse()
            .map_err(|_| io::Error::other(format!("{path}: {s:?}")))
    }

    /// Replaces the kernel uplink's qdisc with `cfg`'s (none for shg).
    fn shape(&self, cfg: QosConfig) -> io::Result<()> {
        let dev = self.kernel_uplink();
        let _ = self.sw.exec(&["tc", "qdisc", "del", "dev", &dev, "root"]);
        for args in tc_commands(cfg, &dev) {
            let mut full = vec!["tc"];
            full.extend(args.iter().map(String::as_str));
            self.sw.exec_ok(&full)?;
        }
        Ok(())
    }
}

/// A running shg-switch started from a TOML file (stopped by PID on Drop).
#[derive(Debug)]
struct ShgQos {
    sw: super::Shg,
    ctl: PathBuf,
}

/// Where `shgctl` is: `$SHGCTL`, next to the switch binary, next to this executable, or PATH.
fn find_shgctl(env: &Env) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SHGCTL").map(PathBuf::from) {
        return Some(p);
    }
    let mut cands = Vec::new();
    if let Some(d) = env.switch_bin.parent() {
        cands.push(d.join("shgctl"));
    }
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        cands.push(d.join("shgctl"));
    }
    if let Some(p) = cands.into_iter().find(|p| p.is_file()) {
        return Some(p);
    }
    run("sh", &["-c", "command -v shgctl"])
        .ok()
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_file())
}

/// The control socket's protocol (one request line; status line `0`/`1`, then text), for when
/// shgctl is absent or does not know a command yet.
fn ctl_request(path: &Path, line: &str) -> io::Result<(bool, String)> {
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut rd = io::BufReader::new(s);
    let mut status = String::new();
    rd.read_line(&mut status)?;
    let mut text = String::new();
    rd.read_to_string(&mut text)?;
    Ok((status.trim_end() == "0", text))
}

/// `shgctl switch --ctl PATH dump-queues`, else the control socket directly. Ok(text, how).
fn dump_queues(shgctl: Option<&Path>, ctl: &Path) -> Result<(String, &'static str), String> {
    let mut why = String::new();
    if let Some(bin) = shgctl {
        match Command::new(bin)
            .arg("switch")
            .arg("--ctl")
            .arg(ctl)
            .arg("dump-queues")
            .output()
        {
            Ok(o) if o.status.success() => {
                return Ok((
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                    "`shgctl switch --ctl PATH dump-queues`",
                ))
            }
            Ok(o) => {
                why = format!(
                    "shgctl: {}{}; ",
                    String::from_utf8_lossy(&o.stderr).trim(),
                    String::from_utf8_lossy(&o.stdout).trim()
                );
            }
            Err(e) => why = format!("shgctl: {e}; "),
        }
    }
    match ctl_request(ctl, "dump-queues") {
        Ok((true, text)) => Ok((text, "the control socket directly")),
        Ok((false, text)) => Err(format!("{why}control socket: {}", text.trim())),
        Err(e) => Err(format!("{why}control socket: {e}")),
    }
}

impl ShgQos {
    fn start(env: &Env, topo: &Topo, dir: &Path) -> io::Result<ShgQos> {
        let (svc, up) = topo.shg_ports();
        let conf = dir.join("shg-qos.toml");
        std::fs::write(&conf, shg_config_toml(&svc, &up))?;
        let sw = super::Shg::start_with_config(env, &topo.sw, "shg-qos", &conf, OF_PORT, dir)?;
        let flows = dir.join("shg-qos.flows");
        std::fs::write(&flows, shg_flows().join("\n") + "\n")?;
        let f = flows.to_string_lossy().into_owned();
        ofctl(
            &topo.sw,
            &["add-flows", &sw.target, &f],
            &dir.join("ofctl.log"),
            Duration::from_secs(30),
        )?;
        let (dump, _) = ofctl(
            &topo.sw,
            &["dump-flows", &sw.target],
            &dir.join("ofctl.log"),
            Duration::from_secs(30),
        )?;
        std::fs::write(dir.join("shg-qos.dump-flows.txt"), &dump)?;
        Ok(ShgQos {
            sw,
            ctl: dir.join("shg-qos.ctl"),
        })
    }
}

/// Starts a client in `ns` writing iperf3 JSON to `json`.
fn iperf_client(
    ns: &Netns,
    dst: &str,
    port: u16,
    secs: u32,
    extra: &[&str],
    json: &Path,
    log: &Path,
) -> io::Result<Proc> {
    let _ = std::fs::remove_file(json);
    let mut c = Command::new("iperf3");
    c.args(["-c", dst, "-p", &port.to_string(), "-t", &secs.to_string()])
        .args(["-J", "--logfile"])
        .arg(json)
        .args(["--connect-timeout", "3000"])
        .args(extra);
    Proc::spawn_in(ns, &c, log)
}

fn ping_proc(ns: &Netns, dst: &str, interval: &str, count: u32, log: &Path) -> io::Result<Proc> {
    let _ = std::fs::remove_file(log);
    let mut c = Command::new("ping");
    c.args([
        "-n",
        "-i",
        interval,
        "-c",
        &count.to_string(),
        "-W",
        "2",
        dst,
    ]);
    Proc::spawn_in(ns, &c, log)
}

/// Waits for `p` to end (at most `timeout`, waking on a signal); Err when it did not.
fn wait_proc(p: &mut Proc, timeout: Duration) -> io::Result<i32> {
    let t0 = Instant::now();
    loop {
        if let Some(c) = p.exited() {
            return Ok(c);
        }
        interrupt::check()?;
        if t0.elapsed() > timeout {
            p.stop();
            return Err(io::Error::other(format!(
                "did not end within {timeout:?}: {}",
                p.describe()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ping_result(log: &Path) -> Result<PingResult, String> {
    parse_ping(&std::fs::read_to_string(log).unwrap_or_default())
}

fn ping_loss_pct(p: &PingResult) -> Option<f64> {
    #[allow(clippy::cast_precision_loss, reason = "ping counts are small")]
    let (sent, got) = (f64::from(p.sent), p.rtts_ms.len() as f64);
    (sent > 0.0).then(|| (1.0 - got / sent).max(0.0) * 100.0)
}

/// Utilisation of the uplink: `bytes` over `secs` against 20 Mbit/s.
pub fn utilisation(bytes: u64, secs: f64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss, reason = "byte counts well below 2^53")]
    let bits = bytes as f64 * 8.0;
    (secs > 0.0).then(|| bits / (UPLINK_BPS * secs))
}

/// One interval line of iperf3's text output: (start s, end s, Mbit/s).
pub fn parse_iperf_intervals(text: &str) -> Vec<(f64, f64, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.contains("sender") || line.contains("receiver") {
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = toks.iter().position(|t| *t == "sec") else {
            continue;
        };
        let Some((a, b)) = i
            .checked_sub(1)
            .and_then(|j| toks[j].split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<f64>().ok()?, b.parse::<f64>().ok()?)))
        else {
            continue;
        };
        // sec, amount, unit, rate, rate unit
        let rate = toks.get(i + 3).and_then(|r| r.parse::<f64>().ok());
        let k = match toks.get(i + 4).copied() {
            Some("bits/sec") => 1e-6,
            Some("Kbits/sec") => 1e-3,
            Some("Mbits/sec") => 1.0,
            Some("Gbits/sec") => 1e3,
            _ => continue,
        };
        if let Some(r) = rate {
            out.push((a, b, r * k));
        }
    }
    out
}

/// Mean rate of the intervals lying within [from, to] (s since the test started).
pub fn mean_rate_within(intervals: &[(f64, f64, f64)], from: f64, to: f64) -> Option<f64> {
    let v: Vec<f64> = intervals
        .iter()
        .filter(|(a, b, _)| *a >= from - 0.05 && *b <= to + 0.05)
        .map(|(_, _, r)| *r)
        .collect();
    #[allow(clippy::cast_precision_loss, reason = "a handful of intervals")]
    let n = v.len() as f64;
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / n)
}

struct Ctx<'a> {
    env: &'a Env,
    topo: &'a Topo,
    dir: PathBuf,
    hz: u64,
    idle_secs: u32,
    ramp_secs: u32,
    phase_secs: u32,
    shg: Option<ShgQos>,
    /// The running shg-switch has not carried a case yet (its counters are fresh).
    shg_fresh: bool,
    shgctl: Option<PathBuf>,
    dq_how: Option<&'static str>,
}

impl Ctx<'_> {
    fn servers(&self, tag: &str) -> io::Result<Vec<Proc>> {
        let mut v = Vec::new();
        for port in [PORT_B, PORT_C, PORT_A, PORT_A_GREEDY] {
            let mut c = Command::new("iperf3");
            c.args(["-s", "-p", &port.to_string(), "-i", "1", "--forceflush"]);
            v.push(Proc::spawn_in(
                &self.topo.w,
                &c,
                &self.dir.join(format!("{tag}.server{port}.log")),
            )?);
        }
        let ok = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            [PORT_B, PORT_C, PORT_A, PORT_A_GREEDY]
                .iter()
                .all(|&p| self.topo.w.tcp_listening(p))
        });
        if ok {
            Ok(v)
        } else {
            Err(io::Error::other("iperf3 servers did not start"))
        }
    }

    fn switch_ticks(&self) -> Option<u64> {
        self.shg
            .as_ref()
            .and_then(|s| procfs::cpu_ticks(s.sw.pid()).ok())
    }

    fn dump_queues(&mut self, tag: &str, s: &mut Sample) -> Option<String> {
        if s.cfg != QosConfig::Shg {
            return None;
        }
        let shg = self.shg.as_ref()?;
        match dump_queues(self.shgctl.as_deref(), &shg.ctl) {
            Ok((text, how)) => {
                self.dq_how = Some(how);
                let _ = std::fs::write(self.dir.join(format!("{tag}.dump-queues.txt")), &text);
                Some(text)
            }
            Err(e) => {
                s.errors.push(format!("dump-queues ({tag}): {e}"));
                None
            }
        }
    }

    #[allow(clippy::too_many_lines, reason = "one case, step by step")]
    fn measure(&mut self, cfg: QosConfig, rep: u32) -> io::Result<Sample> {
        let mut s = Sample {
            cfg,
            rep,
            ..Sample::default()
        };
        let base = format!("{}.r{rep}", cfg.key());
        let d = &self.dir.clone();
        let dst = cfg.dst();
        self.topo.shape(cfg)?;
        if cfg == QosConfig::Shg {
            // A fresh switch per case (the percentiles are also restarted after the ramp with
            // clear-queue-stats, so phase 1's sojourn excludes the ramp).
            if !self.shg_fresh || self.shg.is_none() {
                self.shg = None;
                self.shg = Some(ShgQos::start(self.env, self.topo, &self.dir)?);
            }
            self.shg_fresh = false;
        }
        let _servers = self.servers(&base)?;
        for ns in self.topo.services() {
            if !ns.ping_until(dst, Duration::from_secs(5)) {
                return Err(io::Error::other(format!(
                    "{}: {} cannot reach the WAN host {dst}",
                    cfg.key(),
                    ns.name()
                )));
            }
        }

        // Idle RTT: A at 50 Hz, B at 10 Hz, at once.
        let (ai, bi) = (
            d.join(format!("{base}.idle.a.ping")),
            d.join(format!("{base}.idle.b.ping")),
        );
        let mut pa = ping_proc(&self.topo.a, dst, A_PING_INTERVAL, self.idle_secs * 50, &ai)?;
        let mut pb = ping_proc(&self.topo.b, dst, B_PING_INTERVAL, self.idle_secs * 10, &bi)?;
        let t = Duration::from_secs(u64::from(self.idle_secs) + 10);
        wait_proc(&mut pa, t)?;
        wait_proc(&mut pb, t)?;
        match ping_result(&ai) {
            Ok(p) => {
                s.a_idle_p50_ms = percentile(&p.rtts_ms, 50.0);
                s.a_idle_p99_ms = percentile(&p.rtts_ms, 99.0);
            }
            Err(e) => s.errors.push(format!("A idle ping: {e}")),
        }
        match ping_result(&bi) {
            Ok(p) => s.b_idle_p50_ms = percentile(&p.rtts_ms, 50.0),
            Err(e) => s.errors.push(format!("B idle ping: {e}")),
        }

        // Load: B bulk TCP, C UDP flood, for the ramp and both phases (stopped after phase 2;
        // the margin only guards against ending early when the phases run long).
        let phase = self.phase_secs;
        let load_secs = self.ramp_secs + 2 * phase + GREEDY_OMIT_SECS + 40;
        let (bj, cj) = (
            d.join(format!("{base}.b.json")),
            d.join(format!("{base}.c.json")),
        );
        let t_load = Instant::now();
        let mut pbulk = iperf_client(
            &self.topo.b,
            dst,
            PORT_B,
            load_secs,
            &["-C", "cubic"],
            &bj,
            &d.join(format!("{base}.b.stderr")),
        )?;
        let (fl, fr) = (FLOOD_LEN.to_string(), FLOOD_RATE.to_string());
        let mut pflood = iperf_client(
            &self.topo.c,
            dst,
            PORT_C,
            load_secs,
            &["-u", "-l", &fl, "-b", &fr],
            &cj,
            &d.join(format!("{base}.c.stderr")),
        )?;
        interrupt::sleep(Duration::from_secs(u64::from(self.ramp_secs)))?;
        if cfg == QosConfig::Shg {
            // Sojourn percentiles from here on describe phase 1 only, not the ramp.
            if let Some(shg) = self.shg.as_ref() {
                if let Err(e) = ctl_request(&shg.ctl, "clear-queue-stats") {
                    s.errors.push(format!("clear-queue-stats: {e}"));
                }
            }
        }
        for (name, p) in [("B", &mut pbulk), ("C", &mut pflood)] {
            if let Some(code) = p.exited() {
                s.errors.push(format!(
                    "{name}'s load ended early ({code}): {}",
                    p.describe()
                ));
            }
        }

        // Phase 1: A's media + pings.
        let (al, bl) = (
            d.join(format!("{base}.load.a.ping")),
            d.join(format!("{base}.load.b.ping")),
        );
        let ticks0 = self.switch_ticks();
        let sys0 = procfs::sys_ticks().ok();
        let rx0 = self.topo.wan_rx_bytes(cfg)?;
        let t0 = Instant::now();
        let p1_from = t0.duration_since(t_load).as_secs_f64();
        let mut pa = ping_proc(&self.topo.a, dst, A_PING_INTERVAL, phase * 50, &al)?;
        let mut pb = ping_proc(&self.topo.b, dst, B_PING_INTERVAL, phase * 10, &bl)?;
        let mj = d.join(format!("{base}.media.json"));
        let _ = std::fs::remove_file(&mj);
        let (ml, phase_s) = (MEDIA_LEN.to_string(), phase.to_string());
        let mjs = mj.to_string_lossy().into_owned();
        let port_a = PORT_A.to_string();
        let media = run_bounded(
            &self.topo.a,
            &[
                "iperf3",
                "-c",
                dst,
                "-p",
                &port_a,
                "-t",
                &phase_s,
                "-u",
                "-l",
                &ml,
                "-b",
                MEDIA_RATE,
                "-J",
                "--logfile",
                &mjs,
                "--connect-timeout",
                "3000",
            ],
            &d.join(format!("{base}.media.stderr")),
            Duration::from_secs(u64::from(phase) + 20),
        );
        let rx1 = self.topo.wan_rx_bytes(cfg)?;
        let secs = t0.elapsed().as_secs_f64();
        let p1_to = t_load.elapsed().as_secs_f64();
        let ticks1 = self.switch_ticks();
        if let (Some((b0, t0)), Some((b1, t1))) = (sys0, procfs::sys_ticks().ok()) {
            if t1 > t0 {
                #[allow(clippy::cast_precision_loss, reason = "tick counts")]
                let share = (b1.saturating_sub(b0)) as f64 / (t1 - t0) as f64;
                s.machine_busy_pct = Some(share * 100.0);
            }
        }
        s.util_media = utilisation(rx1.saturating_sub(rx0), secs);
        if let (Some(a), Some(b)) = (ticks0, ticks1) {
            s.switch_cpu_pct = procfs::pct_of_core(b.saturating_sub(a), self.hz, secs);
        }
        let mtext = std::fs::read_to_string(&mj).unwrap_or_default();
        match media
            .map_err(|e| e.to_string())
            .and_then(|(code, _)| parse_iperf_udp(&mtext).map_err(|e| format!("exit {code}: {e}")))
        {
            Ok(r) => s.media_loss_pct = Some(r.loss_pct),
            Err(e) => s.errors.push(format!("media: {e}")),
        }
        let t = Duration::from_secs(u64::from(phase) + 15);
        wait_proc(&mut pa, t)?;
        wait_proc(&mut pb, t)?;
        match ping_result(&al) {
            Ok(p) => {
                s.a_load_p50_ms = percentile(&p.rtts_ms, 50.0);
                s.a_load_p99_ms = percentile(&p.rtts_ms, 99.0);
                s.a_ping_loss_pct = ping_loss_pct(&p);
            }
            Err(e) => s.errors.push(format!("A ping under load: {e}")),
        }
        match ping_result(&bl) {
            Ok(p) => {
                s.b_load_p99_ms = percentile(&p.rtts_ms, 99.0);
                if let (Some(l), Some(i)) = (s.b_load_p99_ms, s.b_idle_p50_ms) {
                    s.b_qdelay_p99_ms = Some((l - i).max(0.0));
                }
            }
            Err(e) => s.errors.push(format!("B ping under load: {e}")),
        }
        if let Some(text) = self.dump_queues(&format!("{base}.phase1"), &mut s) {
            let (_, up) = self.topo.shg_ports();
            match sojourn_p99(&text, "4", &up, 2) {
                Ok(v) => s.b_sojourn_p99_ms = Some(v),
                Err(e) => s.errors.push(format!("B sojourn: {e}")),
            }
            s.a_sojourn_p99_ms = sojourn_p99(&text, "4", &up, 1).ok();
            s.c_sojourn_p99_ms = sojourn_p99(&text, "4", &up, 3).ok();
        }

        // Phase 2: A's greedy TCP.
        let gj = d.join(format!("{base}.greedy.json"));
        let _ = std::fs::remove_file(&gj);
        let gjs = gj.to_string_lossy().into_owned();
        let omit = GREEDY_OMIT_SECS.to_string();
        let port_a_greedy = PORT_A_GREEDY.to_string();
        let rx0 = self.topo.wan_rx_bytes(cfg)?;
        let t0 = Instant::now();
        let p2_from = t0.duration_since(t_load).as_secs_f64() + f64::from(GREEDY_OMIT_SECS);
        let greedy = run_bounded(
            &self.topo.a,
            &[
                "iperf3",
                "-c",
                dst,
                "-p",
                &port_a_greedy,
                "-t",
                &phase_s,
                "-O",
                &omit,
                "-C",
                "cubic",
                "-J",
                "--logfile",
                &gjs,
                "--connect-timeout",
                "3000",
            ],
            &d.join(format!("{base}.greedy.stderr")),
            Duration::from_secs(u64::from(phase + GREEDY_OMIT_SECS) + 20),
        );
        let rx1 = self.topo.wan_rx_bytes(cfg)?;
        s.util_greedy = utilisation(rx1.saturating_sub(rx0), t0.elapsed().as_secs_f64());
        let p2_to = t_load.elapsed().as_secs_f64();
        let gtext = std::fs::read_to_string(&gj).unwrap_or_default();
        match greedy
            .map_err(|e| e.to_string())
            .and_then(|(code, _)| parse_iperf_tcp(&gtext).map_err(|e| format!("exit {code}: {e}")))
        {
            Ok(r) => s.a_greedy_mbps = Some(r.gbps * 1e3),
            Err(e) => s.errors.push(format!("greedy A: {e}")),
        }
        let _ = self.dump_queues(&format!("{base}.phase2"), &mut s);

        // End of load: it must have lasted through phase 2; then B and C are stopped.
        for (name, p) in [("B", &mut pbulk), ("C", &mut pflood)] {
            if let Some(code) = p.exited() {
                s.errors
                    .push(format!("{name}'s load ended before phase 2 did ({code})"));
            }
            p.stop();
        }
        // What the WAN host received from B and C in each phase (servers' 1 s intervals).
        for (port, p1, p2) in [
            (PORT_B, &mut s.b_rx_p1_mbps, &mut s.b_rx_p2_mbps),
            (PORT_C, &mut s.c_rx_p1_mbps, &mut s.c_rx_p2_mbps),
        ] {
            let log = d.join(format!("{base}.server{port}.log"));
            let iv = parse_iperf_intervals(&std::fs::read_to_string(log).unwrap_or_default());
            *p1 = mean_rate_within(&iv, p1_from, p1_to);
            *p2 = mean_rate_within(&iv, p2_from, p2_to);
        }
        let _ = self
            .topo
            .sw
            .exec_ok(&[
                "tc",
                "-s",
                "qdisc",
                "show",
                "dev",
                &self.topo.kernel_uplink(),
            ])
            .map(|t| std::fs::write(d.join(format!("{base}.tc.txt")), t));
        drop(_servers);
        // Let the queues drain before the next case.
        interrupt::sleep(Duration::from_secs(2))?;
        Ok(s)
    }
}

fn log_step(msg: &str) {
    let ts = run("date", &["+%T"]).unwrap_or_default();
    eprintln!("[{}] {msg}", ts.trim());
}

/// Runs the benchmark; returns the report (also written to the output directory).
pub fn run_qos(opts: &QosOpts) -> io::Result<(Report, PathBuf)> {
    interrupt::install()?;
    let env = Env::detect(opts.switch.clone())?;
    if run("sh", &["-c", "command -v tc"]).is_err() {
        return Err(io::Error::other("missing tool: tc (iproute2)"));
    }
    let dir = env.out_dir(opts.out.clone(), "qos")?;
    let reps = opts.reps.unwrap_or(if opts.quick { 1 } else { 3 }).max(1);
    let phase_secs = opts
        .phase_secs
        .unwrap_or(if opts.quick { 10 } else { 15 })
        .max(3);
    let configs = if opts.configs.is_empty() {
        QosConfig::ALL.to_vec()
    } else {
        opts.configs.clone()
    };
    let mut report = Report {
        command: opts.command.clone(),
        date: now_utc(),
        machine: machine_note(),
        reps,
        idle_secs: if opts.quick { 5 } else { 10 },
        ramp_secs: 4,
        phase_secs,
        configs: configs.clone(),
        ..Report::default()
    };
    log_step(&format!(
        "bench qos: {} × {reps} rep(s), phases {phase_secs} s, output in {}",
        configs
            .iter()
            .map(|c| c.key())
            .collect::<Vec<_>>()
            .join(","),
        dir.display()
    ));
    let p = prefix();
    let topo = Topo::new(&p)?;
    log_step(&format!("topology {p}{{a,b,c,sw,w}} up"));
    let shg = if configs.contains(&QosConfig::Shg) {
        let s = ShgQos::start(&env, &topo, &dir)?;
        log_step("shg-switch up (uplink rate 20mbit, 3 queues), flows installed");
        Some(s)
    } else {
        None
    };
    let shg_fresh = shg.is_some();
    let mut ctx = Ctx {
        env: &env,
        topo: &topo,
        dir: dir.clone(),
        hz: procfs::clk_tck(),
        idle_secs: report.idle_secs,
        ramp_secs: report.ramp_secs,
        phase_secs,
        shgctl: find_shgctl(&env),
        shg,
        shg_fresh,
        dq_how: None,
    };
    for rep in 1..=reps {
        for cfg in QosConfig::order(&configs, rep) {
            log_step(&format!("rep {rep}/{reps}: {}", cfg.key()));
            let s = ctx.measure(cfg, rep)?;
            eprintln!(
                "    A rtt p99 idle {} / load {} ms, media loss {} %, greedy A {} Mbit/s, util {} / {} %, B qdelay {} ms (sojourn {}){}",
                fmt_opt(s.a_idle_p99_ms, 2),
                fmt_opt(s.a_load_p99_ms, 2),
                fmt_opt(s.media_loss_pct, 2),
                fmt_opt(s.a_greedy_mbps, 2),
                pct(s.util_media),
                pct(s.util_greedy),
                fmt_opt(s.b_qdelay_p99_ms, 1),
                fmt_opt(s.b_sojourn_p99_ms, 1),
                if s.errors.is_empty() {
                    String::new()
                } else {
                    format!("; errors: {}", s.errors.join("; "))
                }
            );
            report.samples.push(s);
            if let Some(shg) = ctx.shg.as_mut() {
                shg.sw.check_alive()?;
            }
        }
    }
    if let Some(how) = ctx.dq_how {
        report.notes.push(format!("dump-queues read with {how}."));
    }
    if ctx.shg.is_some() {
        report.notes.push(
            "shg sojourn p99 is what `dump-queues` reports after phase 1; the percentiles are \
             restarted with `clear-queue-stats` after the ramp, so the value covers phase 1 \
             only (raw dumps after each phase are in the output directory)."
                .into(),
        );
    }
    write_outputs(&dir, &report.json(), &report.markdown())?;
    Ok((report, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_queues_is_parsed_tolerantly() {
        let a = "port=4 queue=1 tx_packets=10 tx_bytes=1000 sojourn_p50=0.1 sojourn_p99=0.4\n\
                 port=4 queue=2 tx_packets=99 drops_codel=3 sojourn_p50=4.0 sojourn_p99=12.5\n";
        assert_eq!(sojourn_p99(a, "4", "x", 2), Ok(12.5));
        assert_eq!(sojourn_p99(a, "4", "x", 1), Ok(0.4));
        assert!(sojourn_p99(a, "4", "x", 3).is_err());
        // Header line per port, units, other key names.
        let b = "port 4 (shg1sws): rate=20mbit\n  queue_id=2 min_rate=7mbit sojourn_p99=800us\n\
                 port 1:\n  queue_id=2 sojourn_p99=99ms\n";
        assert_eq!(sojourn_p99(b, "4", "shg1sws", 2), Ok(0.8));
        let c = "shg1sws q2: tx=5, sojourn_p99=3ms";
        assert_eq!(parse_dump_queues(c)[0].queue_id(), Some(2));
        assert_eq!(sojourn_p99(c, "4", "shg1sws", 2), Ok(3.0));
        let d = "port=shg1sws queue=2 tx_packets=1\n";
        assert!(sojourn_p99(d, "4", "shg1sws", 2)
            .unwrap_err()
            .contains("no sojourn_p99"));
        assert!(sojourn_p99("", "4", "x", 2).is_err());
        assert_eq!(parse_ms("1.5s"), Some(1500.0));
        assert_eq!(parse_ms("abc"), None);
        assert_eq!(parse_ms("2parsecs"), None);
    }

    #[test]
    fn iperf_server_intervals() {
        let text =
            "[ ID] Interval           Transfer     Bitrate         Jitter    Lost/Total Datagrams
[  5]   0.00-1.00   sec   786 KBytes  6.44 Mbits/sec  0.032 ms  8534/21111 (40%)
[  5]   1.00-2.00   sec   996 KBytes  8.15 Mbits/sec  0.387 ms  37093/53027 (70%)
[  5]   2.00-3.00   sec  1.21 MBytes  10.2 Mbits/sec  0.024 ms  6585/26405 (25%)
[  5]   3.00-4.00   sec   120 KBytes   983 Kbits/sec
- - - - - - - - - - - - - - - - - - - - - - - - -
[  5]   0.00-4.00   sec  3.1 MBytes  6.4 Mbits/sec  0.094 ms  867613/1595426 (54%)  receiver
";
        let iv = parse_iperf_intervals(text);
        assert_eq!(iv.len(), 4);
        assert_eq!(iv[1], (1.0, 2.0, 8.15));
        assert!((iv[3].2 - 0.983).abs() < 1e-9);
        // Intervals inside [0.9, 3.1]: 1-2 and 2-3.
        let m = mean_rate_within(&iv, 0.9, 3.1).unwrap();
        assert!((m - (8.15 + 10.2) / 2.0).abs() < 1e-9);
        assert_eq!(mean_rate_within(&iv, 5.0, 9.0), None);
    }

    #[test]
    fn config_toml_and_flows_follow_the_issue() {
        let t = shg_config_toml(
            &["pa".to_string(), "pb".to_string(), "pc".to_string()],
            "pw",
        );
        assert!(
            t.contains("name = \"pw\"\nnumber = 4\nrate = \"20mbit\""),
            "{t}"
        );
        assert!(t.contains("id = 1\nmin_rate = \"6mbit\"\nmax_rate = \"20mbit\"\npriority = 0"));
        assert_eq!(t.matches("[[port.queue]]").count(), 3);
        // The queues come after the uplink's [[port]] (TOML attaches them to the last port).
        assert!(t.find("name = \"pw\"") < t.find("[[port.queue]]"));
        let f = shg_flows();
        assert!(f.contains(&"priority=10,in_port=2,actions=set_queue:2,output:4".to_string()));
        assert_eq!(f.iter().filter(|l| l.contains("arp_tpa")).count(), 3);
        for l in &f {
            if let Some(ip) = l.split("nw_dst=").nth(1).or(l.split("arp_tpa=").nth(1)) {
                let ip = ip.split(',').next().unwrap();
                assert!(crate::netns::in_test_range(ip), "{ip}");
            }
        }
    }

    #[test]
    fn tc_commands_shape_like_the_anchor() {
        let f = tc_commands(QosConfig::Fifo, "up");
        assert_eq!(f.len(), 3);
        assert!(f[2].join(" ").ends_with("bfifo limit 1500000"));
        let h: Vec<String> = tc_commands(QosConfig::Htb, "up")
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert!(h
            .iter()
            .any(|l| l.contains("classid 1:10 htb rate 6mbit ceil 20mbit prio 0")));
        assert!(h
            .iter()
            .any(|l| l.contains("classid 1:20 htb rate 14mbit ceil 20mbit prio 1")));
        assert!(h
            .iter()
            .any(|l| l.contains("match ip src 198.18.1.1/32 flowid 1:10")));
        assert!(tc_commands(QosConfig::Shg, "up").is_empty());
    }

    fn sample(cfg: QosConfig, rep: u32, load_p99: f64, qd: f64) -> Sample {
        Sample {
            cfg,
            rep,
            a_idle_p50_ms: Some(0.05),
            a_idle_p99_ms: Some(0.09),
            a_load_p50_ms: Some(load_p99 / 2.0),
            a_load_p99_ms: Some(load_p99),
            media_loss_pct: Some(0.0),
            a_greedy_mbps: Some(5.77),
            util_media: Some(0.97),
            util_greedy: Some(0.96),
            b_qdelay_p99_ms: Some(qd),
            ..Sample::default()
        }
    }

    #[test]
    fn targets_and_report() {
        let mut samples = vec![
            sample(QosConfig::Fifo, 1, 615.0, 600.0),
            sample(QosConfig::Htb, 1, 0.36, 580.0),
            sample(QosConfig::Shg, 1, 0.5, 30.0),
            sample(QosConfig::Shg, 2, 5.0, 30.0),
            sample(QosConfig::Shg, 3, 0.6, 30.0),
        ];
        samples[2].b_sojourn_p99_ms = Some(8.0);
        samples[3].errors.push("media: boom".into());
        let r = Report {
            command: "shg-scenario bench qos".into(),
            reps: 3,
            configs: QosConfig::ALL.to_vec(),
            samples,
            ..Report::default()
        };
        let t = targets(&medians(&r.samples, QosConfig::Htb));
        assert_eq!(t[0].met, Some(true)); // 0.36 <= 0.09 + 1
        assert_eq!(t[2].met, Some(true)); // 5.77 >= 5.70
        assert_eq!(t[3].met, Some(true));
        assert_eq!(t[4].met, Some(false)); // 580 ms by ping
        let f = targets(&medians(&r.samples, QosConfig::Fifo));
        assert_eq!(f[0].met, Some(false));
        let s = targets(&medians(&r.samples, QosConfig::Shg));
        assert_eq!(s[0].measured, "0.60 vs 0.09 ms idle"); // median of 0.5, 5.0, 0.6
        assert_eq!(s[4].met, Some(true)); // the switch's sojourn (8 ms) where reported
        assert!(s[4].measured.contains("dump-queues"));
        let md = r.markdown();
        assert!(md.contains("| A RTT p99 ≤ idle p99 + 1 ms | 615.00 vs 0.09 ms idle (**no**) | 0.36 vs 0.09 ms idle (yes) |"), "{md}");
        assert!(md.contains("- shg rep 2: media: boom"), "{md}");
        let j = r.json();
        assert_eq!(j["configs"][2]["key"], "shg");
        assert_eq!(j["configs"][1]["targets"][0]["met"], json!(true));
        assert_eq!(j["samples"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn names_fit_and_order_alternates() {
        let p = prefix();
        assert!(format!("{p}swk").len() <= 15);
        assert_eq!(
            QosConfig::order(&QosConfig::ALL, 2),
            vec![QosConfig::Shg, QosConfig::Htb, QosConfig::Fifo]
        );
        assert_eq!(
            QosConfig::parse_list("shg, fifo,shg"),
            Ok(vec![QosConfig::Shg, QosConfig::Fifo])
        );
        assert!(QosConfig::parse_list("cake").is_err());
        assert!((utilisation(25_000_000, 10.0).unwrap() - 1.0).abs() < 1e-12);
        for c in QosConfig::ALL {
            assert!(crate::netns::in_test_range(c.dst()));
        }
    }
}
