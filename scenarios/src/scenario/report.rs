//! What a run measured ([`RunData`]), the assertions judged against it, bufferbloat grades, and the report: `report.md`, `report.json`, `throughput.svg`, `rtt.svg` (hand-written SVG).
//!
//! Pure: everything here is a function of the data, so reports are tested from synthetic
//! samples. Conventions: throughput is payload (goodput) bit/s at the receiver; a window is
//! [phase start + settle, phase end) on the run's timeline (seconds since t=0); a bin is
//! counted in proportion to its overlap with the window. RTT percentiles are over replies;
//! lost pings count in loss only. Grade: added RTT = median RTT under load − median idle RTT
//! (the baseline measured before t=0), where "under load" is while any tcp traffic runs (2 s
//! after it starts), or any udp traffic when there is no tcp.

use super::model::*;
use super::policy::Verdict;
use crate::stats::percentile;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// A receiver bin on the timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    pub t0: f64,
    pub t1: f64,
    pub bytes: u64,
    pub pkts: u64,
    pub lost: u64,
    pub owd_p99_ms: Option<f64>,
}

/// One ping on the timeline: reply RTT or lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingSample {
    pub t: f64,
    pub rtt_ms: Option<f64>,
}

/// What one traffic item produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub bins: Vec<Bin>,
    pub pings: Vec<PingSample>,
    /// Ping replies of the idle baseline before t=0, ms.
    pub idle_rtts: Vec<f64>,
    /// UDP: datagrams sent and received over the whole run.
    pub sent: Option<u64>,
    pub received: Option<u64>,
    pub errors: Vec<String>,
}

/// A reachability probe's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct ReachResult {
    pub at: f64,
    pub from: String,
    pub to: String,
    pub spoof: Option<Spoof>,
    pub sent: u64,
    pub received: u64,
    pub error: Option<String>,
}

/// When a device running UPnP software appeared in the controller's inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveredResult {
    pub device: String,
    /// Seconds from its software's launch to its first sight in `GET /v1/devices`.
    pub after_s: Option<f64>,
    /// The device types the inventory showed for it.
    pub types: Vec<String>,
    pub error: Option<String>,
}

/// Something that happened on the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub t: f64,
    pub what: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RunData {
    pub scenario: Scenario,
    pub command: String,
    pub date: String,
    pub machine: String,
    pub prefix: String,
    /// Host name → address, for the report.
    pub addresses: Vec<(String, String)>,
    pub series: Vec<Series>,
    /// (t, up bit/s, down bit/s) on the line (the ISP router's counters), 1 s apart.
    pub line: Vec<(f64, f64, f64)>,
    pub events: Vec<Event>,
    /// Verdict of each phase's policy actions: (phase, service, verdict).
    pub verdicts: Vec<(String, String, Verdict)>,
    pub reach: Vec<ReachResult>,
    /// One per device that runs UPnP software.
    pub discovered: Vec<DiscoveredResult>,
    /// Errors that fail the run (a process that died, a tool that failed).
    pub errors: Vec<String>,
    pub notes: Vec<String>,
    /// Wall time of the whole run, s.
    pub wall_s: f64,
}

/// One judged assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub what: String,
    pub measured: String,
    pub pass: bool,
}

/// A service's bufferbloat grade.
#[derive(Debug, Clone, PartialEq)]
pub struct GradeRow {
    pub service: String,
    pub ping: String,
    pub idle_ms: Option<f64>,
    pub loaded_ms: Option<f64>,
    pub loaded_p99_ms: Option<f64>,
    pub added_ms: Option<f64>,
    pub grade: Option<Grade>,
}

impl RunData {
    fn series(&self, name: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.name == name)
    }

    /// [start + settle, end) of a phase (None: whole run).
    pub fn window(&self, phase: Option<&str>, settle: std::time::Duration) -> Option<(f64, f64)> {
        let (a, b) = self.scenario.window(phase)?;
        let a = (a + settle).as_secs_f64();
        Some((a, b.as_secs_f64().max(a)))
    }

    /// Mean receiver throughput of a traffic item over [a, b), bit/s.
    pub fn traffic_bps(&self, name: &str, a: f64, b: f64) -> Option<f64> {
        let s = self.series(name)?;
        if b <= a {
            return None;
        }
        #[allow(clippy::cast_precision_loss, reason = "byte counts")]
        let bytes: f64 = s
            .bins
            .iter()
            .map(|x| {
                let ov = (x.t1.min(b) - x.t0.max(a)).max(0.0);
                let len = (x.t1 - x.t0).max(1e-9);
                x.bytes as f64 * ov / len
            })
            .sum();
        Some(bytes * 8.0 / (b - a))
    }

    /// Traffic items a host sends (`Up`) or receives (`Down`), pings excluded.
    pub fn service_traffic(&self, host: &str, d: Direction) -> Vec<&Traffic> {
        self.scenario
            .traffic
            .iter()
            .filter(|t| !matches!(t.kind, TrafficKind::Ping { .. }))
            .filter(|t| match d {
                Direction::Up => t.from == host,
                Direction::Down => t.to == host,
            })
            .collect()
    }

    /// Sum of a host's traffic throughput in one direction over [a, b), bit/s.
    pub fn service_bps(&self, host: &str, d: Direction, a: f64, b: f64) -> Option<f64> {
        let v: Vec<f64> = self
            .service_traffic(host, d)
            .iter()
            .filter_map(|t| self.traffic_bps(&t.name, a, b))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }

    /// Loss of a udp or ping item over [a, b), %.
    pub fn loss_pct(&self, name: &str, a: f64, b: f64) -> Option<f64> {
        let s = self.series(name)?;
        let in_w = |t: f64| t >= a && t < b;
        if !s.pings.is_empty() {
            let all: Vec<&PingSample> = s.pings.iter().filter(|p| in_w(p.t)).collect();
            let lost = all.iter().filter(|p| p.rtt_ms.is_none()).count();
            #[allow(clippy::cast_precision_loss, reason = "counts")]
            return (!all.is_empty()).then(|| lost as f64 * 100.0 / all.len() as f64);
        }
        let (mut got, mut lost) = (0u64, 0u64);
        for x in s
            .bins
            .iter()
            .filter(|x| x.t0 >= a - 1e-9 && x.t1 <= b + 1e-9)
        {
            got += x.pkts;
            lost += x.lost;
        }
        #[allow(clippy::cast_precision_loss, reason = "counts")]
        ((got + lost) > 0).then(|| lost as f64 * 100.0 / (got + lost) as f64)
    }

    /// Replies' RTTs of a ping item over [a, b), ms.
    pub fn rtts(&self, name: &str, a: f64, b: f64) -> Vec<f64> {
        self.series(name).map_or_else(Vec::new, |s| {
            s.pings
                .iter()
                .filter(|p| p.t >= a && p.t < b)
                .filter_map(|p| p.rtt_ms)
                .collect()
        })
    }

    /// Intervals "under load" (see the module doc).
    pub fn load_windows(&self) -> Vec<(f64, f64)> {
        let pick = |tcp: bool| -> Vec<(f64, f64)> {
            self.scenario
                .traffic
                .iter()
                .filter(|t| match t.kind {
                    TrafficKind::Tcp { .. } => tcp,
                    TrafficKind::Udp { .. } => !tcp,
                    TrafficKind::Ping { .. } => false,
                })
                .map(|t| (t.start.as_secs_f64() + 2.0, t.stop.as_secs_f64()))
                .filter(|(a, b)| b > a)
                .collect()
        };
        let w = pick(true);
        if w.is_empty() {
            pick(false)
        } else {
            w
        }
    }

    /// A grade per host that sends a ping (its first ping item).
    pub fn grades(&self) -> Vec<GradeRow> {
        let loads = self.load_windows();
        let loaded = |t: f64| loads.iter().any(|(a, b)| t >= *a && t < *b);
        let mut rows: Vec<GradeRow> = Vec::new();
        for t in &self.scenario.traffic {
            if !matches!(t.kind, TrafficKind::Ping { .. })
                || rows.iter().any(|r| r.service == t.from)
            {
                continue;
            }
            let Some(s) = self.series(&t.name) else {
                continue;
            };
            let l: Vec<f64> = s
                .pings
                .iter()
                .filter(|p| loaded(p.t))
                .filter_map(|p| p.rtt_ms)
                .collect();
            let idle_ms = percentile(&s.idle_rtts, 50.0);
            let loaded_ms = percentile(&l, 50.0);
            let loaded_p99_ms = percentile(&l, 99.0);
            let added_ms = idle_ms.zip(loaded_ms).map(|(i, l)| (l - i).max(0.0));
            rows.push(GradeRow {
                service: t.from.clone(),
                ping: t.name.clone(),
                idle_ms,
                loaded_ms,
                loaded_p99_ms,
                added_ms,
                grade: added_ms.map(Grade::from_added_ms),
            });
        }
        rows
    }

    /// Every assertion, judged.
    #[allow(clippy::too_many_lines, reason = "one arm per kind")]
    pub fn judge(&self) -> Vec<Judged> {
        let ph = |p: &Option<String>| {
            p.as_deref()
                .map_or("the whole run".to_string(), |p| format!("phase {p}"))
        };
        let mut out = Vec::new();
        let grades = self.grades();
        let mut reach_i = 0;
        for a in &self.scenario.asserts {
            let j = match a {
                Assert::Throughput {
                    subject,
                    phase,
                    min_bps,
                    max_bps,
                    settle,
                } => {
                    let w = self.window(phase.as_deref(), *settle);
                    let (label, got) = match subject {
                        Subject::Traffic(t) => (
                            format!("{t} throughput"),
                            w.and_then(|(a, b)| self.traffic_bps(t, a, b)),
                        ),
                        Subject::Service(s, d) => (
                            format!(
                                "{s} {} throughput",
                                if *d == Direction::Up { "up" } else { "down" }
                            ),
                            w.and_then(|(a, b)| self.service_bps(s, *d, a, b)),
                        ),
                    };
                    let bounds = match (min_bps, max_bps) {
                        (Some(a), Some(b)) => format!("in {}..{}", fmt_rate(*a), fmt_rate(*b)),
                        (Some(a), None) => format!("≥ {}", fmt_rate(*a)),
                        (None, Some(b)) => format!("≤ {}", fmt_rate(*b)),
                        (None, None) => String::new(),
                    };
                    #[allow(clippy::cast_precision_loss, reason = "rates")]
                    let pass = got.is_some_and(|g| {
                        min_bps.is_none_or(|m| g >= m as f64)
                            && max_bps.is_none_or(|m| g <= m as f64)
                    });
                    Judged {
                        what: format!("{label} {bounds} over {}", ph(phase)),
                        measured: got.map_or("no data".into(), fmt_mbps),
                        pass,
                    }
                }
                Assert::Rtt {
                    traffic,
                    phase,
                    p50_max,
                    p99_max,
                    loss_max_pct,
                    settle,
                } => {
                    let w = self.window(phase.as_deref(), *settle);
                    let r = w.map(|(a, b)| self.rtts(traffic, a, b)).unwrap_or_default();
                    let p50 = percentile(&r, 50.0);
                    let p99 = percentile(&r, 99.0);
                    let loss = w.and_then(|(a, b)| self.loss_pct(traffic, a, b));
                    let mut what = Vec::new();
                    let mut pass = true;
                    if let Some(m) = p50_max {
                        what.push(format!("p50 ≤ {} ms", ms(m)));
                        pass &= p50.is_some_and(|x| x <= ms(m));
                    }
                    if let Some(m) = p99_max {
                        what.push(format!("p99 ≤ {} ms", ms(m)));
                        pass &= p99.is_some_and(|x| x <= ms(m));
                    }
                    if let Some(m) = loss_max_pct {
                        what.push(format!("loss ≤ {m} %"));
                        pass &= loss.is_some_and(|x| x <= *m);
                    }
                    Judged {
                        what: format!("{traffic} RTT {} over {}", what.join(", "), ph(phase)),
                        measured: format!(
                            "p50 {} / p99 {} ms, loss {} % ({} replies)",
                            opt(p50, 2),
                            opt(p99, 2),
                            opt(loss, 2),
                            r.len()
                        ),
                        pass,
                    }
                }
                Assert::Loss {
                    traffic,
                    phase,
                    max_pct,
                    settle,
                } => {
                    let w = self.window(phase.as_deref(), *settle);
                    let loss = w.and_then(|(a, b)| self.loss_pct(traffic, a, b));
                    Judged {
                        what: format!("{traffic} loss ≤ {max_pct} % over {}", ph(phase)),
                        measured: loss.map_or("no data".into(), |l| format!("{l:.3} %")),
                        pass: loss.is_some_and(|l| l <= *max_pct),
                    }
                }
                Assert::Reach {
                    at,
                    from,
                    to,
                    allowed,
                    spoof,
                } => {
                    let r = self.reach.get(reach_i);
                    reach_i += 1;
                    let sp = match spoof {
                        Some(Spoof::Ip) => " with a spoofed source IP",
                        Some(Spoof::Mac) => " with a spoofed source MAC",
                        None => "",
                    };
                    let what = format!(
                        "{from} → {to}{sp} {} at {:.1} s",
                        if *allowed { "reaches" } else { "is blocked" },
                        at.as_secs_f64()
                    );
                    match r {
                        Some(r) if r.error.is_none() => Judged {
                            what,
                            measured: format!("{} of {} datagrams arrived", r.received, r.sent),
                            pass: (r.received > 0) == *allowed,
                        },
                        Some(r) => Judged {
                            what,
                            measured: format!(
                                "probe failed: {}",
                                r.error.clone().unwrap_or_default()
                            ),
                            pass: false,
                        },
                        None => Judged {
                            what,
                            measured: "not run".into(),
                            pass: false,
                        },
                    }
                }
                Assert::Admission {
                    phase,
                    accepted,
                    contains,
                } => {
                    let v = self.verdicts.iter().find(|(p, _, _)| p == phase);
                    let what = format!(
                        "the policy of phase {phase} is {}{}",
                        if *accepted { "accepted" } else { "rejected" },
                        contains
                            .as_ref()
                            .map_or(String::new(), |c| format!(" with text containing {c:?}"))
                    );
                    match v {
                        Some((_, _, v)) => {
                            let ok_kind = matches!(v, Verdict::Accepted(_)) == *accepted
                                && !matches!(v, Verdict::Failed(_));
                            let ok_text = contains
                                .as_ref()
                                .is_none_or(|c| v.text().contains(c.as_str()));
                            Judged {
                                what,
                                measured: format!(
                                    "{}: {}",
                                    v.label(),
                                    v.text().replace('\n', " / ")
                                ),
                                pass: ok_kind && ok_text,
                            }
                        }
                        None => Judged {
                            what,
                            measured: "no verdict (the push did not happen)".into(),
                            pass: false,
                        },
                    }
                }
                Assert::Grade { service, min } => {
                    let g = grades.iter().find(|g| &g.service == service);
                    Judged {
                        what: format!("{service} bufferbloat grade {} or better", min.as_str()),
                        measured: g.map_or("no data".into(), |g| {
                            format!(
                                "{} (added {} ms)",
                                g.grade.map_or("-", Grade::as_str),
                                opt(g.added_ms, 2)
                            )
                        }),
                        pass: g.and_then(|g| g.grade).is_some_and(|g| g <= *min),
                    }
                }
                Assert::Discovered { device, within } => {
                    let r = self.discovered.iter().find(|r| &r.device == device);
                    let what = format!(
                        "{device} is in the controller's inventory within {:.1} s of its launch",
                        within.as_secs_f64()
                    );
                    match r {
                        Some(DiscoveredResult {
                            after_s: Some(t),
                            types,
                            ..
                        }) => Judged {
                            what,
                            measured: format!("after {t:.2} s ({})", types.join(", ")),
                            pass: *t <= within.as_secs_f64(),
                        },
                        Some(r) => Judged {
                            what,
                            measured: r.error.clone().unwrap_or_else(|| "not seen".to_string()),
                            pass: false,
                        },
                        None => Judged {
                            what,
                            measured: "not run".into(),
                            pass: false,
                        },
                    }
                }
            };
            out.push(j);
        }
        out
    }

    /// Whether the run passed: no error and every assertion held.
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.judge().iter().all(|j| j.pass)
    }

    /// Per host and direction, 1 s throughput series (t, bit/s) for the plot and JSON.
    pub fn throughput_series(&self) -> Vec<(String, Vec<(f64, f64)>)> {
        let mut hosts: Vec<String> = Vec::new();
        for t in &self.scenario.traffic {
            for h in [&t.from, &t.to] {
                if h != "wan" && !hosts.contains(h) {
                    hosts.push(h.clone());
                }
            }
        }
        let secs = self.scenario.duration.as_secs();
        let mut out = Vec::new();
        for h in hosts {
            for (d, arrow) in [(Direction::Up, "up"), (Direction::Down, "down")] {
                if self.service_traffic(&h, d).is_empty() {
                    continue;
                }
                #[allow(clippy::cast_precision_loss, reason = "seconds")]
                let pts: Vec<(f64, f64)> = (0..secs)
                    .map(|s| {
                        let a = s as f64;
                        (a + 0.5, self.service_bps(&h, d, a, a + 1.0).unwrap_or(0.0))
                    })
                    .collect();
                out.push((format!("{h} {arrow}"), pts));
            }
        }
        out
    }

    /// report.md.
    #[allow(clippy::too_many_lines, reason = "the report, section by section")]
    pub fn markdown(&self) -> String {
        let s = &self.scenario;
        let judged = self.judge();
        let passed = self.errors.is_empty() && judged.iter().all(|j| j.pass);
        let mut m = String::new();
        let _ = writeln!(
            m,
            "# Scenario {}: {}\n",
            s.name,
            if passed { "PASS" } else { "FAIL" }
        );
        let _ = writeln!(m, "{}\n", s.description.trim());
        let _ = writeln!(
            m,
            "Command: `{}`. Run {} ({:.0} s wall time); {}. Name prefix `{}`.\n",
            self.command, self.date, self.wall_s, self.machine, self.prefix
        );
        let _ = writeln!(
            m,
            "Line: {} up (the switch's shaped uplink, set by the controller), {} down (ISP router, \
             tc HTB with a {} ms FIFO). Hosts: {}; wan {}.\n",
            fmt_rate(s.gateway.up_bps),
            fmt_rate(s.gateway.down_bps),
            s.gateway.isp_buffer.as_millis(),
            self.addresses
                .iter()
                .filter(|(n, _)| n != "wan")
                .map(|(n, a)| format!("{n} {a}"))
                .collect::<Vec<_>>()
                .join(", "),
            super::topo::WAN_IP
        );
        m.push_str("## Assertions\n\n| | assertion | measured |\n|---|---|---|\n");
        for j in &judged {
            let _ = writeln!(
                m,
                "| {} | {} | {} |",
                if j.pass { "✅" } else { "❌" },
                j.what,
                j.measured.replace('|', "\\|")
            );
        }
        if judged.is_empty() {
            m.push_str("| | (none) | |\n");
        }
        m.push_str("\n## Bufferbloat grades\n\nAdded RTT = median RTT under load − median idle RTT (baseline before t=0). A+ < 5 ms, A < 30, B < 60, C < 200, D < 400, else F.\n\n| service | probe | idle ms | loaded median ms | loaded p99 ms | added ms | grade |\n|---|---|---|---|---|---|---|\n");
        for g in self.grades() {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | **{}** |",
                g.service,
                g.ping,
                opt(g.idle_ms, 3),
                opt(g.loaded_ms, 3),
                opt(g.loaded_p99_ms, 2),
                opt(g.added_ms, 2),
                g.grade.map_or("-", Grade::as_str)
            );
        }
        // Per phase summary.
        m.push_str("\n## Per phase\n\nMean receiver throughput (Mbit/s) and loss; RTT p50 / p99 (ms). Each window starts 2 s into its phase.\n\n");
        let mut windows: Vec<(String, Option<&str>)> = vec![("whole run".into(), None)];
        for p in &s.phases {
            windows.push((
                format!("{} (from {:.0} s)", p.name, p.at.as_secs_f64()),
                Some(p.name.as_str()),
            ));
        }
        m.push_str("| traffic |");
        for (w, _) in &windows {
            let _ = write!(m, " {w} |");
        }
        m.push_str("\n|---|");
        for _ in &windows {
            m.push_str("---|");
        }
        m.push('\n');
        for t in &s.traffic {
            let _ = write!(
                m,
                "| {} ({} {} → {}) |",
                t.name,
                kind_word(t.kind),
                t.from,
                t.to
            );
            for (_, ph) in &windows {
                let cell = self.window(*ph, std::time::Duration::from_secs(2)).map_or(
                    "-".into(),
                    |(a, b)| match t.kind {
                        TrafficKind::Ping { .. } => {
                            let r = self.rtts(&t.name, a, b);
                            format!(
                                "{} / {}{}",
                                opt(percentile(&r, 50.0), 2),
                                opt(percentile(&r, 99.0), 2),
                                self.loss_pct(&t.name, a, b)
                                    .filter(|l| *l > 0.0)
                                    .map_or(String::new(), |l| format!(", loss {l:.1} %"))
                            )
                        }
                        TrafficKind::Udp { .. } => format!(
                            "{}{}",
                            opt(self.traffic_bps(&t.name, a, b).map(|x| x / 1e6), 2),
                            self.loss_pct(&t.name, a, b)
                                .map_or(String::new(), |l| format!(", loss {l:.2} %"))
                        ),
                        TrafficKind::Tcp { .. } => {
                            opt(self.traffic_bps(&t.name, a, b).map(|x| x / 1e6), 2)
                        }
                    },
                );
                let _ = write!(m, " {cell} |");
            }
            m.push('\n');
        }
        let totals: Vec<String> = self
            .series
            .iter()
            .filter_map(|x| {
                let (sent, got) = (x.sent?, x.received?);
                #[allow(clippy::cast_precision_loss, reason = "counts")]
                let loss = if sent > 0 {
                    (sent.saturating_sub(got)) as f64 * 100.0 / sent as f64
                } else {
                    0.0
                };
                Some(format!(
                    "{}: {got} of {sent} datagrams ({loss:.2} % lost)",
                    x.name
                ))
            })
            .collect();
        if !totals.is_empty() {
            let _ = writeln!(m, "\nUDP totals: {}.", totals.join("; "));
        }
        m.push_str(
            "\n## Plots\n\n![throughput](throughput.svg)\n\n![rtt](rtt.svg)\n\n## Timeline\n\n",
        );
        for e in &self.events {
            let _ = writeln!(m, "- {:6.2} s: {}", e.t, e.what.replace('\n', " / "));
        }
        if !self.reach.is_empty() {
            m.push_str("\n## Reachability probes\n\nUDP datagrams from the source host to a receiver on the destination, counted there (a static neighbour entry makes spoofed frames leave the host).\n\n| at s | from | to | spoof | arrived / sent |\n|---|---|---|---|---|\n");
            for r in &self.reach {
                let _ = writeln!(
                    m,
                    "| {:.1} | {} | {} | {} | {} / {}{} |",
                    r.at,
                    r.from,
                    r.to,
                    match r.spoof {
                        Some(Spoof::Ip) => "ip",
                        Some(Spoof::Mac) => "mac",
                        None => "-",
                    },
                    r.received,
                    r.sent,
                    r.error
                        .as_ref()
                        .map_or(String::new(), |e| format!(" ({e})"))
                );
            }
        }
        let errs: Vec<String> = self
            .errors
            .iter()
            .cloned()
            .chain(
                self.series
                    .iter()
                    .flat_map(|x| x.errors.iter().map(move |e| format!("{}: {e}", x.name))),
            )
            .collect();
        if !errs.is_empty() {
            m.push_str("\n## Errors\n\n");
            for e in errs {
                let _ = writeln!(m, "- {}", e.replace('\n', "\n  "));
            }
        }
        if !self.notes.is_empty() {
            m.push_str("\n## Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(m, "- {n}");
            }
        }
        m
    }

    /// report.json.
    pub fn json(&self) -> Value {
        let s = &self.scenario;
        json!({
            "scenario": s.name,
            "description": s.description,
            "passed": self.passed(),
            "command": self.command,
            "date": self.date,
            "machine": self.machine,
            "prefix": self.prefix,
            "wall_s": self.wall_s,
            "duration_s": s.duration.as_secs_f64(),
            "line": {"up_bps": s.gateway.up_bps, "down_bps": s.gateway.down_bps,
                      "isp_buffer_ms": s.gateway.isp_buffer.as_millis()},
            "addresses": self.addresses.iter().map(|(n, a)| json!({"host": n, "ipv4": a})).collect::<Vec<_>>(),
            "phases": s.phases.iter().map(|p| json!({"name": p.name, "at_s": p.at.as_secs_f64()})).collect::<Vec<_>>(),
            "assertions": self.judge().iter().map(|j| json!({"assertion": j.what, "measured": j.measured, "pass": j.pass})).collect::<Vec<_>>(),
            "grades": self.grades().iter().map(|g| json!({
                "service": g.service, "ping": g.ping, "idle_ms": g.idle_ms, "loaded_ms": g.loaded_ms,
                "loaded_p99_ms": g.loaded_p99_ms, "added_ms": g.added_ms,
                "grade": g.grade.map(Grade::as_str)})).collect::<Vec<_>>(),
            "throughput": self.throughput_series().iter().map(|(n, pts)| json!({"series": n,
                "points": pts.iter().map(|(t, b)| json!([t, b])).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "traffic": self.series.iter().map(|x| json!({
                "name": x.name,
                "bins": x.bins.iter().map(|b| json!({"t0": b.t0, "t1": b.t1, "bytes": b.bytes, "pkts": b.pkts, "lost": b.lost, "owd_p99_ms": b.owd_p99_ms})).collect::<Vec<_>>(),
                "pings": x.pings.iter().map(|p| json!([p.t, p.rtt_ms])).collect::<Vec<_>>(),
                "idle_rtts_ms": x.idle_rtts,
                "sent": x.sent, "received": x.received, "errors": x.errors})).collect::<Vec<_>>(),
            "line_bps": self.line.iter().map(|(t, u, d)| json!([t, u, d])).collect::<Vec<_>>(),
            "events": self.events.iter().map(|e| json!({"t": e.t, "what": e.what})).collect::<Vec<_>>(),
            "verdicts": self.verdicts.iter().map(|(p, s, v)| json!({"phase": p, "service": s, "verdict": v.label(), "text": v.text()})).collect::<Vec<_>>(),
            "reach": self.reach.iter().map(|r| json!({"at": r.at, "from": r.from, "to": r.to,
                "spoof": r.spoof.map(|s| if s == Spoof::Ip { "ip" } else { "mac" }), "sent": r.sent, "received": r.received, "error": r.error})).collect::<Vec<_>>(),
            "discovered": self.discovered.iter().map(|r| json!({"device": r.device, "after_s": r.after_s, "types": r.types, "error": r.error})).collect::<Vec<_>>(),
            "errors": self.errors,
            "notes": self.notes,
        })
    }

    /// throughput.svg: per host and direction, Mbit/s over time, with phase markers.
    pub fn svg_throughput(&self) -> String {
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .throughput_series()
            .into_iter()
            .map(|(n, p)| (n, p.into_iter().map(|(t, b)| (t, b / 1e6)).collect()))
            .collect();
        let title = format!(
            "{}: throughput at the receivers (Mbit/s, 1 s bins)",
            self.scenario.name
        );
        svg_plot(
            &title,
            "Mbit/s",
            &series,
            &self.phase_marks(),
            self.scenario.duration.as_secs_f64(),
            None,
            true,
        )
    }

    /// rtt.svg: every ping reply's RTT over time, per ping item, with phase markers.
    pub fn svg_rtt(&self) -> String {
        let mut all: Vec<f64> = Vec::new();
        let series: Vec<(String, Vec<(f64, f64)>)> = self
            .scenario
            .traffic
            .iter()
            .filter(|t| matches!(t.kind, TrafficKind::Ping { .. }))
            .filter_map(|t| {
                let s = self.series(&t.name)?;
                let pts: Vec<(f64, f64)> = s
                    .pings
                    .iter()
                    .filter_map(|p| Some((p.t, p.rtt_ms?)))
                    .collect();
                all.extend(pts.iter().map(|p| p.1));
                Some((t.name.clone(), pts))
            })
            .collect();
        let top = percentile(&all, 99.5).map(|x| x * 1.1);
        let title = format!("{}: ping RTT (ms), every reply", self.scenario.name);
        svg_plot(
            &title,
            "ms",
            &series,
            &self.phase_marks(),
            self.scenario.duration.as_secs_f64(),
            top,
            false,
        )
    }

    fn phase_marks(&self) -> Vec<(f64, String)> {
        self.scenario
            .phases
            .iter()
            .map(|p| (p.at.as_secs_f64(), p.name.clone()))
            .collect()
    }
}

fn kind_word(k: TrafficKind) -> String {
    match k {
        TrafficKind::Udp { rate_bps, .. } => format!("udp {}", fmt_rate(rate_bps)),
        TrafficKind::Tcp { rate_bps } => {
            rate_bps.map_or("tcp".into(), |r| format!("tcp {}", fmt_rate(r)))
        }
        TrafficKind::Ping { hz } => format!("ping {hz} Hz"),
    }
}

fn ms(d: &std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `20000000` → `20 Mbit/s`.
pub fn fmt_rate(bps: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "rates")]
    let m = bps as f64 / 1e6;
    if m >= 1.0 {
        format!("{} Mbit/s", trim_num(m))
    } else {
        format!("{} kbit/s", trim_num(m * 1e3))
    }
}

fn trim_num(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn opt(x: Option<f64>, d: usize) -> String {
    x.map_or("-".into(), |v| format!("{v:.d$}"))
}

/// Series colours (colour-blind-friendly palette).
const PALETTE: [&str; 10] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
    "#999999", "#882255",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" tick step for a range (1, 2, 5 × 10^k) giving about `n` ticks.
pub fn nice_step(range: f64, n: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / n.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let k = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * mag
}

/// A line plot: `series` of (x s, y) points (a series named `… down` is dashed); vertical dashed markers at `marks`; y from 0 to
/// `y_top` (default: the data's maximum × 1.1); points above are drawn at the top edge.
#[allow(clippy::too_many_lines, reason = "axes, grid, series, legend")]
pub fn svg_plot(
    title: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    marks: &[(f64, String)],
    x_max: f64,
    y_top: Option<f64>,
    lines: bool,
) -> String {
    let (w, h) = (960.0, 420.0);
    let (ml, mr, mt, mb) = (60.0, 200.0, 40.0, 45.0);
    let (pw, ph) = (w - ml - mr, h - mt - mb);
    let data_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max);
    let top = y_top
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(data_max * 1.1)
        .max(1e-3);
    let step = nice_step(top, 6.0);
    let top = (top / step).ceil() * step;
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    let sx = |x: f64| ml + (x.clamp(0.0, x_max) / x_max) * pw;
    let sy = |y: f64| mt + ph - (y.clamp(0.0, top) / top) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{ml}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    // Grid and y ticks.
    let mut y = 0.0;
    while y <= top + step * 0.01 {
        let py = sy(y);
        let _ = writeln!(
            s,
            "<line x1=\"{ml}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#e0e0e0\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            ml + pw,
            ml - 6.0,
            py + 4.0,
            trim_num(y)
        );
        y += step;
    }
    let xs = nice_step(x_max, 10.0);
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        let px = sx(x);
        let _ = writeln!(
            s,
            "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#888\"/><text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            mt + ph,
            mt + ph + 5.0,
            mt + ph + 18.0,
            trim_num(x)
        );
        x += xs;
    }
    let _ = writeln!(
        s,
        "<rect x=\"{ml}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#444\"/>"
    );
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time (s)</text>",
        ml + pw / 2.0,
        h - 8.0
    );
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">{}</text>",
        mt + ph / 2.0,
        mt + ph / 2.0,
        esc(y_label)
    );
    // Phase markers.
    for (t, name) in marks {
        let px = sx(*t);
        let _ = writeln!(
            s,
            "<line class=\"phase\" x1=\"{px:.1}\" y1=\"{mt}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#555\" stroke-dasharray=\"5,4\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333\">{}</text>",
            mt + ph,
            px + 3.0,
            mt + 12.0,
            esc(name)
        );
    }
    // Series.
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = PALETTE.get(i % PALETTE.len()).copied().unwrap_or("#000");
        let coords: Vec<String> = pts
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        // A host's received ("… down") series is dashed, so up and down of one host tell apart.
        let dash = if name.ends_with(" down") {
            " stroke-dasharray=\"7,4\""
        } else {
            ""
        };
        if lines {
            let _ = writeln!(
                s,
                "<polyline class=\"series\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
                coords.join(" ")
            );
        } else {
            let _ = writeln!(
                s,
                "<polyline class=\"series\" fill=\"none\" stroke=\"{c}\" stroke-width=\"1\" stroke-opacity=\"0.8\" points=\"{}\"/>",
                coords.join(" ")
            );
        }
        let ly = mt + 10.0 + 18.0 * f64::from(u32::try_from(i).unwrap_or(0));
        let lx = ml + pw + 12.0;
        let _ = writeln!(
            s,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{c}\" stroke-width=\"3\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(name)
        );
    }
    if series.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#888\">no data</text>",
            ml + pw / 2.0,
            mt + ph / 2.0
        );
    }
    s.push_str("</svg>\n");
    s
}
