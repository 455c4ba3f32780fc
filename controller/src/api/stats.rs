//! From counter samples to answers, pure: per-service achieved rate vs guarantee, drops, queue delay, a grade; the congestion report and when it began.
//!
//! [`parse_queue_counters`] reads shg-switch's `dump-queues` lines (rates in bit/s, sojourn
//! percentiles in ms). A [`Tracker`] keeps the last two [`Sample`]s; rates are the byte
//! difference over the time between them. Rules (also in docs/api.md):
//! - a service *has demand* when its queue holds a backlog or dropped packets in the interval;
//! - the uplink is *congested* when the queues on it send at >= 90 % of the shaped rate and
//!   some queue has demand; it is congested *by* the services sending above their guarantee
//!   (largest excess first), and it *hurts* services with demand that get less than 95 % of
//!   their guarantee, or whose p99 queue delay is over their latency target;
//! - grade A..F: A is all well; a p99 delay over the target costs two grades (three beyond
//!   twice the target); demand served below 95 % of the guarantee gives D at best (F below
//!   50 %); more than 1 % of packets dropped costs one grade more.
//!
//! Never reads the clock: samples carry their time.

use super::control::{ApiEvent, QueueCounters, Sample};
use crate::model::{Policy, PortRef};
use serde::Serialize;
use std::collections::BTreeMap;

/// Share of the shaped rate above which a link with demand counts as congested.
pub const CONGESTED_UTILISATION: f64 = 0.9;
/// Share of its guarantee below which a service with demand is hurt.
pub const GUARANTEE_MET: f64 = 0.95;
/// The congestion resource the uplink's egress is called.
pub const UPLINK_UP: &str = "uplink up";

/// Parses `dump-queues` output (one `key=value` line per queue).
pub fn parse_queue_counters(text: &str) -> Result<Vec<QueueCounters>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let kv: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .collect();
        let at = |what: &str| format!("dump-queues line {}: {what}", i + 1);
        let get = |k: &str| kv.get(k).copied().ok_or_else(|| at(&format!("no {k}=")));
        let num = |k: &str| -> Result<u64, String> {
            get(k)?.parse().map_err(|_| at(&format!("bad {k}")))
        };
        let opt = |k: &str| -> Result<Option<u64>, String> {
            match kv.get(k).copied() {
                None | Some("none") => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| at(&format!("bad {k}"))),
            }
        };
        let ms = |k: &str| -> Result<Option<f64>, String> {
            match kv.get(k).copied() {
                None | Some("none") => Ok(None),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(Some)
                    .ok_or_else(|| at(&format!("bad {k}"))),
            }
        };
        let port = match get("port")? {
            "LOCAL" => shg_flows::action::port::LOCAL,
            p => p.parse().map_err(|_| at("bad port"))?,
        };
        out.push(QueueCounters {
            port,
            queue: u32::try_from(num("queue")?).map_err(|_| at("bad queue"))?,
            port_rate: opt("port_rate")?,
            priority: opt("priority")?.and_then(|p| u8::try_from(p).ok()),
            min_rate: opt("min_rate")?,
            max_rate: opt("max_rate")?,
            tx_packets: num("tx_packets")?,
            tx_bytes: num("tx_bytes")?,
            drops_overflow: opt("drops_overflow")?.unwrap_or(0),
            drops_aqm: opt("drops_aqm")?.unwrap_or(0),
            ecn_marked: opt("ecn_marked")?.unwrap_or(0),
            backlog_packets: opt("backlog_packets")?.unwrap_or(0),
            backlog_bytes: opt("backlog_bytes")?.unwrap_or(0),
            sojourn_p50_ms: ms("sojourn_p50_ms")?,
            sojourn_p99_ms: ms("sojourn_p99_ms")?,
        });
    }
    Ok(out)
}

/// A port of the policy as a number (names through the switch's port list).
pub fn resolve_port(p: &PortRef, ports: &BTreeMap<String, u32>) -> Option<u32> {
    match p {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(s) => ports.get(s).copied(),
    }
}

/// One service now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub class: &'static str,
    pub queue: u32,
    /// The priority in force (the user's choice, else the ISP's).
    pub priority: u8,
    pub priority_bounds: [u8; 2],
    /// Guaranteed rate towards the WAN, bits/s.
    pub guarantee_bps: u64,
    /// Cap in force, bits/s.
    pub cap_bps: Option<u64>,
    /// Measured over the last interval, bits/s.
    pub achieved_bps: u64,
    /// Dropped in the last interval (queue overflow and AQM), packets.
    pub drops: u64,
    /// Dropped since the switch started, packets.
    pub drops_total: u64,
    pub backlog_bytes: u64,
    pub delay_p50_ms: Option<f64>,
    pub delay_p99_ms: Option<f64>,
    pub latency_target_ms: Option<f64>,
    /// Whether it wanted more than it got (backlog or drops).
    pub demand: bool,
    /// A (all well) to F.
    pub grade: String,
}

/// The uplink now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkStatus {
    pub resource: &'static str,
    pub port: Option<u32>,
    /// Shaped rate, bits/s (the switch's, else the policy's up_rate).
    pub rate_bps: u64,
    pub achieved_bps: u64,
    /// achieved / rate.
    pub utilisation: f64,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// False until two samples were taken (rates are 0 until then).
    pub measured: bool,
    /// Length of the interval the rates are over, ms.
    pub interval_ms: u64,
    pub connected: bool,
    pub policy_version: u64,
    pub uplink: LinkStatus,
    pub services: Vec<ServiceStatus>,
}

/// A service holding a congested resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    pub service: String,
    pub achieved_bps: u64,
    pub guarantee_bps: u64,
    pub excess_bps: u64,
}

/// A service hurt by congestion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hurt {
    pub service: String,
    pub reason: String,
}

/// One resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Congestion {
    pub resource: &'static str,
    pub congested: bool,
    /// Wall-clock ms since 1970 when it began (while congested).
    pub since_ms: Option<u64>,
    /// How long it has lasted, seconds.
    pub duration_s: f64,
    pub utilisation: f64,
    pub by: Vec<Holder>,
    pub hurts: Vec<Hurt>,
    /// One sentence for people.
    pub summary: String,
}

/// `GET /v1/congestion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CongestionReport {
    pub congested: bool,
    pub resources: Vec<Congestion>,
}

/// The last two samples and when the current congestion began.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    prev: Option<Sample>,
    cur: Option<Sample>,
    /// (at_ns, wall_ms) of the first congested sample of the current episode.
    since: Option<(u64, u64)>,
}

fn rate(prev: u64, cur: u64, dt_ns: u64) -> u64 {
    if dt_ns == 0 {
        return 0;
    }
    let bits = u128::from(cur.saturating_sub(prev)) * 8 * 1_000_000_000;
    u64::try_from(bits / u128::from(dt_ns)).unwrap_or(u64::MAX)
}

#[allow(clippy::cast_precision_loss)] // rates and counters far below 2^52
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn grade(s: &ServiceStatus, sent_packets: u64) -> String {
    let mut g = 0u8;
    if let (Some(t), Some(p99)) = (s.latency_target_ms, s.delay_p99_ms) {
        if p99 > 2.0 * t {
            g = 3;
        } else if p99 > t {
            g = 2;
        }
    }
    if s.demand && s.guarantee_bps > 0 {
        let got = ratio(s.achieved_bps, s.guarantee_bps);
        if got < 0.5 {
            g = g.max(4);
        } else if got < GUARANTEE_MET {
            g = g.max(3);
        }
    }
    if ratio(s.drops, sent_packets.saturating_add(s.drops)) > 0.01 {
        g = g.saturating_add(1);
    }
    ["A", "B", "C", "D", "F"][usize::from(g.min(4))].to_string()
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// The latest sample.
    pub fn latest(&self) -> Option<&Sample> {
        self.cur.as_ref()
    }

    /// Takes a new sample; returns the congestion events it causes (began / ended).
    pub fn update(
        &mut self,
        s: Sample,
        policy: &Policy,
        ports: &BTreeMap<String, u32>,
    ) -> Vec<ApiEvent> {
        if self.cur.as_ref().is_some_and(|c| s.at_ns <= c.at_ns) {
            return Vec::new(); // not newer: ignore
        }
        self.prev = self.cur.take();
        self.cur = Some(s);
        let was = self.since.is_some();
        let st = self.status(policy, ports, true, 0);
        let (congested, by) = congestion_of(&st);
        let mut ev = Vec::new();
        if congested && !was {
            if let Some(c) = &self.cur {
                self.since = Some((c.at_ns, c.wall_ms));
            }
            ev.push(ApiEvent::Congestion {
                resource: UPLINK_UP.into(),
                congested: true,
                by: by.iter().map(|h| h.service.clone()).collect(),
            });
        } else if !congested && was {
            self.since = None;
            ev.push(ApiEvent::Congestion {
                resource: UPLINK_UP.into(),
                congested: false,
                by: Vec::new(),
            });
        }
        ev
    }

    /// Per-service status from the last two samples.
    pub fn status(
        &self,
        policy: &Policy,
        ports: &BTreeMap<String, u32>,
        connected: bool,
        policy_version: u64,
    ) -> StatusReport {
        let uplink = resolve_port(&policy.gateway.uplink.port, ports);
        let (prev, cur) = (self.prev.as_ref(), self.cur.as_ref());
        let dt = match (prev, cur) {
            (Some(p), Some(c)) => c.at_ns.saturating_sub(p.at_ns),
            _ => 0,
        };
        let find = |s: Option<&Sample>, q: u32| -> Option<QueueCounters> {
            s?.queues
                .iter()
                .find(|c| Some(c.port) == uplink && c.queue == q)
                .cloned()
        };
        let mut services = Vec::new();
        for s in policy.services.values() {
            let c = find(cur, s.queue).unwrap_or_default();
            let p = find(prev, s.queue).unwrap_or_else(|| c.clone());
            let drops_total = c.drops_overflow.saturating_add(c.drops_aqm);
            let drops = drops_total.saturating_sub(p.drops_overflow.saturating_add(p.drops_aqm));
            let sent = c.tx_packets.saturating_sub(p.tx_packets);
            #[allow(clippy::cast_precision_loss)]
            let latency_target_ms = s.latency_us.map(|us| us as f64 / 1000.0);
            let mut st = ServiceStatus {
                name: s.name.clone(),
                class: s.class.name(),
                queue: s.queue,
                priority: s.effective_priority(),
                priority_bounds: [s.priority_bounds.0, s.priority_bounds.1],
                guarantee_bps: s.min_rate,
                cap_bps: s.effective_max_rate(),
                achieved_bps: if dt > 0 {
                    rate(p.tx_bytes, c.tx_bytes, dt)
                } else {
                    0
                },
                drops: if dt > 0 { drops } else { 0 },
                drops_total,
                backlog_bytes: c.backlog_bytes,
                delay_p50_ms: c.sojourn_p50_ms,
                delay_p99_ms: c.sojourn_p99_ms,
                latency_target_ms,
                demand: c.backlog_bytes > 0 || (dt > 0 && drops > 0),
                grade: String::new(),
            };
            st.grade = grade(&st, sent);
            services.push(st);
        }
        let on_uplink: Vec<&QueueCounters> = cur
            .map(|c| c.queues.iter().filter(|q| Some(q.port) == uplink).collect())
            .unwrap_or_default();
        let rate_bps = on_uplink
            .iter()
            .find_map(|q| q.port_rate)
            .unwrap_or(policy.gateway.uplink.up_rate);
        let achieved_bps = if dt > 0 {
            on_uplink
                .iter()
                .map(|q| {
                    let before = prev
                        .and_then(|p| {
                            p.queues
                                .iter()
                                .find(|x| x.port == q.port && x.queue == q.queue)
                        })
                        .map_or(q.tx_bytes, |x| x.tx_bytes);
                    rate(before, q.tx_bytes, dt)
                })
                .fold(0u64, u64::saturating_add)
        } else {
            0
        };
        StatusReport {
            measured: dt > 0,
            interval_ms: dt / 1_000_000,
            connected,
            policy_version,
            uplink: LinkStatus {
                resource: UPLINK_UP,
                port: uplink,
                rate_bps,
                achieved_bps,
                utilisation: ratio(achieved_bps, rate_bps),
            },
            services,
        }
    }

    /// The congestion report for the last interval.
    pub fn congestion(&self, policy: &Policy, ports: &BTreeMap<String, u32>) -> CongestionReport {
        let st = self.status(policy, ports, true, 0);
        let (congested, by) = congestion_of(&st);
        let mut hurts = Vec::new();
        for s in &st.services {
            if s.demand
                && s.guarantee_bps > 0
                && ratio(s.achieved_bps, s.guarantee_bps) < GUARANTEE_MET
            {
                hurts.push(Hurt {
                    service: s.name.clone(),
                    reason: format!(
                        "gets {} of its guaranteed {}",
                        shg_flows::rate::format_rate(s.achieved_bps),
                        shg_flows::rate::format_rate(s.guarantee_bps)
                    ),
                });
            } else if let (Some(t), Some(p99)) = (s.latency_target_ms, s.delay_p99_ms) {
                if p99 > t {
                    hurts.push(Hurt {
                        service: s.name.clone(),
                        reason: format!("p99 queue delay {p99:.1} ms is over its {t:.1} ms target"),
                    });
                }
            }
        }
        let now = self.cur.as_ref().map_or((0, 0), |c| (c.at_ns, c.wall_ms));
        let since = self.since.filter(|_| congested);
        #[allow(clippy::cast_precision_loss)]
        let duration_s = since.map_or(0.0, |(ns, _)| now.0.saturating_sub(ns) as f64 / 1e9);
        let summary = if congested {
            let names: Vec<String> = by.iter().map(|h| h.service.clone()).collect();
            format!(
                "the uplink towards the internet is full ({:.0} % of {}){}",
                st.uplink.utilisation * 100.0,
                shg_flows::rate::format_rate(st.uplink.rate_bps),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(", mostly used by {}", names.join(", "))
                }
            )
        } else {
            "no congestion".to_string()
        };
        CongestionReport {
            congested,
            resources: vec![Congestion {
                resource: UPLINK_UP,
                congested,
                since_ms: since.map(|(_, w)| w),
                duration_s,
                utilisation: st.uplink.utilisation,
                by: if congested { by } else { Vec::new() },
                hurts: if congested { hurts } else { Vec::new() },
                summary,
            }],
        }
    }
}

/// Whether the uplink is congested in `st`, and the services above their guarantee.
fn congestion_of(st: &StatusReport) -> (bool, Vec<Holder>) {
    let demand = st.services.iter().any(|s| s.demand);
    let congested = st.measured && st.uplink.utilisation >= CONGESTED_UTILISATION && demand;
    let mut by: Vec<Holder> = st
        .services
        .iter()
        .filter(|s| s.achieved_bps > s.guarantee_bps)
        .map(|s| Holder {
            service: s.name.clone(),
            achieved_bps: s.achieved_bps,
            guarantee_bps: s.guarantee_bps,
            excess_bps: s.achieved_bps - s.guarantee_bps,
        })
        .collect();
    by.sort_by(|a, b| {
        b.excess_bps
            .cmp(&a.excess_bps)
            .then(a.service.cmp(&b.service))
    });
    (congested, by)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "port=1 queue=3 port_rate=20000000 priority=4 min_rate=1000000 max_rate=none tx_packets=10 tx_bytes=1500 drops_overflow=2 drops_aqm=1 ecn_marked=0 unknown_queue=0 backlog_packets=1 backlog_bytes=1500 sojourn_p50_ms=0.120 sojourn_p99_ms=1.500";

    #[test]
    fn parses_dump_queues() {
        let q = parse_queue_counters(&format!("{LINE}\n\n")).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].port, 1);
        assert_eq!(q[0].queue, 3);
        assert_eq!(q[0].port_rate, Some(20_000_000));
        assert_eq!(q[0].max_rate, None);
        assert_eq!(q[0].drops_overflow + q[0].drops_aqm, 3);
        assert_eq!(q[0].sojourn_p99_ms, Some(1.5));
        assert!(parse_queue_counters("port=1 queue=x tx_packets=1 tx_bytes=1").is_err());
        assert!(parse_queue_counters("port=1 queue=1").is_err());
    }

    #[test]
    fn rates_and_grades() {
        assert_eq!(rate(0, 1_250_000, 1_000_000_000), 10_000_000);
        assert_eq!(rate(5, 1, 1_000_000_000), 0);
        let mut s = ServiceStatus {
            name: "x".into(),
            class: "interactive",
            queue: 1,
            priority: 0,
            priority_bounds: [0, 1],
            guarantee_bps: 6_000_000,
            cap_bps: None,
            achieved_bps: 6_000_000,
            drops: 0,
            drops_total: 0,
            backlog_bytes: 0,
            delay_p50_ms: Some(1.0),
            delay_p99_ms: Some(5.0),
            latency_target_ms: Some(10.0),
            demand: true,
            grade: String::new(),
        };
        assert_eq!(grade(&s, 100), "A");
        s.delay_p99_ms = Some(15.0);
        assert_eq!(grade(&s, 100), "C");
        s.achieved_bps = 2_000_000;
        assert_eq!(grade(&s, 100), "F");
        s.delay_p99_ms = Some(1.0);
        s.achieved_bps = 5_000_000;
        s.drops = 10;
        assert_eq!(grade(&s, 100), "F");
        s.drops = 0;
        assert_eq!(grade(&s, 100), "D");
    }
}
