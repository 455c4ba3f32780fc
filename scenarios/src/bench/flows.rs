//! `shg-scenario bench flows`: flow-table scale. The same generated flow file (mixed masks,
//! [`crate::flowgen`]) goes into shg-switch and into Open vSwitch (userspace datapath) with
//! `ovs-ofctl -O OpenFlow13 add-flows` over TCP, timed, then `dump-flows` of each, timed and
//! counted; RSS of shg-switch and ovs-vswitchd before and after. Sizes 10 000 and `--n`
//! (default 100 000); both switches are started afresh for each size, and which one goes
//! first alternates. After them, the same add-flows goes into the round-trip reference
//! ([`super::answer`], which answers barriers and drops the flows): what ovs-ofctl's round
//! trips alone take on this machine.

use super::{count_dumped_flows, machine_note, now_utc, ofctl, Env, Ovs, Shg};
use crate::flowgen;
use crate::interrupt;
use crate::netns::{prefix, Netns, Proc, Veth};
use crate::procfs;
use crate::stats::{fmt_opt, fmt_ratio, ratio};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `bench flows`.
#[derive(Debug, Clone)]
pub struct FlowsOpts {
    /// The large size (default 100 000); 10 000 is always measured too.
    pub n: usize,
    pub out: Option<PathBuf>,
    pub switch: Option<PathBuf>,
    pub command: String,
}

/// Which switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Shg,
    Ovs,
    /// The round-trip reference (no table: add-flows only).
    Answer,
}

impl Which {
    fn key(self) -> &'static str {
        match self {
            Which::Shg => "shg-switch",
            Which::Ovs => "ovs-vswitchd",
            Which::Answer => "reference (answers barriers, drops flows)",
        }
    }
}

/// One switch, one size.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowsRow {
    pub which: Which,
    pub n: usize,
    pub add_secs: Option<f64>,
    /// CPU time (user + system, all threads) the switch process used during add-flows, s.
    pub add_cpu_secs: Option<f64>,
    pub dump_secs: Option<f64>,
    pub dumped: Option<usize>,
    pub rss_before_kb: Option<u64>,
    pub rss_after_add_kb: Option<u64>,
    pub rss_after_dump_kb: Option<u64>,
    pub error: Option<String>,
}

/// A `bench flows` run.
#[derive(Debug, Clone, Default)]
pub struct FlowsReport {
    pub command: String,
    pub date: String,
    pub machine: String,
    pub rows: Vec<FlowsRow>,
}

fn mb(kb: Option<u64>) -> Option<f64> {
    #[allow(clippy::cast_precision_loss, reason = "memory sizes")]
    kb.map(|k| k as f64 / 1024.0)
}

impl FlowsReport {
    fn row(&self, which: Which, n: usize) -> Option<&FlowsRow> {
        self.rows.iter().find(|r| r.which == which && r.n == n)
    }

    /// results.md.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Command: `{}`. Run {}; {}.\n",
            self.command, self.date, self.machine
        );
        s.push_str(
            "`ovs-ofctl -O OpenFlow13 add-flows` of one generated file (mixed masks) over TCP \
             into each switch, started afresh per size; then `dump-flows`. ovs-ofctl sends each \
             flow mod followed by a barrier and waits for the reply, so add-flows time is \
             mostly round trips; the switch's own CPU time is shown next to it. The reference \
             (`shg-scenario bench answer`) answers the barriers and drops the flows, polling \
             its socket as shg-switch does: its time is what the round trips alone take.\n\n",
        );
        s.push_str(
            "| switch | flows | add-flows s | × OVS | switch CPU s during add | dump-flows s | × OVS \
             | flows dumped | RSS MB before | after add | after dump |\n",
        );
        s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
        let mut sizes: Vec<usize> = self.rows.iter().map(|r| r.n).collect();
        sizes.dedup();
        for n in sizes {
            for which in [Which::Shg, Which::Ovs, Which::Answer] {
                let Some(r) = self.row(which, n) else {
                    continue;
                };
                let other = self.row(Which::Ovs, n);
                let (add_ratio, dump_ratio) = if which != Which::Ovs {
                    (
                        fmt_ratio(ratio(r.add_secs, other.and_then(|o| o.add_secs))),
                        fmt_ratio(ratio(r.dump_secs, other.and_then(|o| o.dump_secs))),
                    )
                } else {
                    (String::new(), String::new())
                };
                let _ = writeln!(
                    s,
                    "| {} | {n} | {} | {add_ratio} | {} | {} | {dump_ratio} | {} | {} | {} | {} |",
                    which.key(),
                    fmt_opt(r.add_secs, 2),
                    fmt_opt(r.add_cpu_secs, 2),
                    fmt_opt(r.dump_secs, 2),
                    r.dumped.map_or("-".into(), |d| d.to_string()),
                    fmt_opt(mb(r.rss_before_kb), 1),
                    fmt_opt(mb(r.rss_after_add_kb), 1),
                    fmt_opt(mb(r.rss_after_dump_kb), 1),
                );
            }
        }
        super::errors_section(
            &mut s,
            self.rows.iter().filter_map(|r| {
                r.error
                    .as_ref()
                    .map(|e| format!("{} {}: {e}", r.which.key(), r.n))
            }),
        );
        s
    }

    /// results.json.
    pub fn json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "switch": r.which.key(),
                    "flows": r.n,
                    "add_secs": r.add_secs,
                    "add_cpu_secs": r.add_cpu_secs,
                    "dump_secs": r.dump_secs,
                    "dumped": r.dumped,
                    "rss_before_kb": r.rss_before_kb,
                    "rss_after_add_kb": r.rss_after_add_kb,
                    "rss_after_dump_kb": r.rss_after_dump_kb,
                    "error": r.error,
                })
            })
            .collect();
        json!({
            "benchmark": "flows",
            "command": self.command,
            "date": self.date,
            "machine": self.machine,
            "rows": rows,
        })
    }
}

/// The switch being measured: which, its `tcp:` target, its PID.
struct Sut<'a> {
    which: Which,
    target: &'a str,
    pid: u32,
}

/// Adds the file to one switch, dumps, measures.
fn measure_one(
    ns: &Netns,
    sut: &Sut<'_>,
    file: &str,
    n: usize,
    dir: &std::path::Path,
    hz: u64,
) -> io::Result<FlowsRow> {
    let Sut { which, target, pid } = *sut;
    let mut row = FlowsRow {
        which,
        n,
        add_secs: None,
        add_cpu_secs: None,
        dump_secs: None,
        dumped: None,
        rss_before_kb: procfs::rss_kb(pid).ok(),
        rss_after_add_kb: None,
        rss_after_dump_kb: None,
        error: None,
    };
    let log = dir.join(format!("{}-{n}.ofctl.log", which.key()));
    let t = Duration::from_secs(600);
    let ticks0 = procfs::cpu_ticks(pid).ok();
    let added = ofctl(ns, &["add-flows", target, file], &log, t);
    if let (Some(a), Ok(b)) = (ticks0, procfs::cpu_ticks(pid)) {
        #[allow(clippy::cast_precision_loss, reason = "tick counts")]
        let secs = b.saturating_sub(a) as f64 / hz as f64;
        row.add_cpu_secs = Some(secs);
    }
    match added {
        Ok((_, took)) => row.add_secs = Some(took.as_secs_f64()),
        Err(e) => {
            interrupt::check()?;
            row.error = Some(e.to_string());
            return Ok(row);
        }
    }
    row.rss_after_add_kb = procfs::rss_kb(pid).ok();
    if which == Which::Answer {
        // No table to dump.
        return Ok(row);
    }
    let dump_log = dir.join(format!("{}-{n}.dump.txt", which.key()));
    match ofctl(ns, &["dump-flows", target], &dump_log, t) {
        Ok((text, took)) => {
            row.dump_secs = Some(took.as_secs_f64());
            row.dumped = Some(count_dumped_flows(&text));
        }
        Err(e) => {
            interrupt::check()?;
            row.error = Some(e.to_string());
        }
    }
    row.rss_after_dump_kb = procfs::rss_kb(pid).ok();
    // The dump of 100 000 flows is large: keep only its size.
    let _ = std::fs::remove_file(&dump_log);
    Ok(row)
}

/// Runs the benchmark; returns the report (also written to the output directory).
pub fn run_flows(opts: &FlowsOpts) -> io::Result<(FlowsReport, PathBuf)> {
    interrupt::install()?;
    let env = Env::detect(opts.switch.clone())?;
    let dir = env.out_dir(opts.out.clone(), "flows")?;
    let mut report = FlowsReport {
        command: opts.command.clone(),
        date: now_utc(),
        machine: machine_note(),
        rows: Vec::new(),
    };
    let p = prefix();
    let sw = Netns::new(&format!("{p}sw"))?;
    // Two veth pairs inside the switch namespace: shg gets one end of each, OVS the other.
    let mut veths = Vec::new();
    for i in 1..=2 {
        veths.push(Veth::new(
            &format!("{p}f{i}a"),
            &sw,
            &format!("{p}f{i}b"),
            &sw,
        )?);
    }
    let shg_ports: Vec<String> = (1..=2).map(|i| format!("{p}f{i}a")).collect();
    let ovs_ports: Vec<String> = (1..=2).map(|i| format!("{p}f{i}b")).collect();
    let hz = procfs::clk_tck().max(1);
    let mut sizes = vec![10_000usize];
    if opts.n != 10_000 {
        sizes.push(opts.n);
    }
    for (k, &n) in sizes.iter().enumerate() {
        let file = dir.join(format!("flows-{n}.txt"));
        flowgen::write_flow_file(&file, n, false)?;
        let file = file.to_string_lossy().into_owned();
        let order = if k % 2 == 0 {
            [Which::Shg, Which::Ovs, Which::Answer]
        } else {
            [Which::Ovs, Which::Shg, Which::Answer]
        };
        for which in order {
            interrupt::check()?;
            eprintln!("bench flows: {n} flows into {}", which.key());
            let row = match which {
                Which::Shg => {
                    let mut shg =
                        Shg::start(&env, &sw, &format!("shg-{n}"), &shg_ports, 6701, &dir)?;
                    interrupt::sleep(Duration::from_secs(1))?;
                    let row = measure_one(
                        &sw,
                        &Sut {
                            which,
                            target: &shg.target,
                            pid: shg.pid(),
                        },
                        &file,
                        n,
                        &dir,
                        hz,
                    )?;
                    shg.check_alive()?;
                    row
                }
                Which::Ovs => {
                    let mut ovs = Ovs::start(&sw, &dir.join(format!("ovs-{n}")), false)?;
                    let target = ovs.add_bridge(&format!("{p}ovs"), &ovs_ports, 6702)?;
                    interrupt::sleep(Duration::from_secs(1))?;
                    let row = measure_one(
                        &sw,
                        &Sut {
                            which,
                            target: &target,
                            pid: ovs.pid(),
                        },
                        &file,
                        n,
                        &dir,
                        hz,
                    )?;
                    ovs.check_alive()?;
                    row
                }
                Which::Answer => {
                    let mut answer = start_answer(&sw, 6703, &dir, n)?;
                    let row = measure_one(
                        &sw,
                        &Sut {
                            which,
                            target: "tcp:127.0.0.1:6703",
                            pid: answer.pid(),
                        },
                        &file,
                        n,
                        &dir,
                        hz,
                    )?;
                    if answer.exited().is_some() {
                        return Err(io::Error::other(format!(
                            "the round-trip reference stopped: {}",
                            answer.describe()
                        )));
                    }
                    row
                }
            };
            report_row(&row);
            report.rows.push(row);
        }
    }
    drop(veths);
    drop(sw);
    super::datapath::write_outputs(&dir, &report.json(), &report.markdown())?;
    Ok((report, dir))
}

/// The progress line of one row.
fn report_row(row: &FlowsRow) {
    eprintln!(
        "    add-flows {} s, dump-flows {} s ({} flows), RSS {} -> {} MB",
        fmt_opt(row.add_secs, 2),
        fmt_opt(row.dump_secs, 2),
        row.dumped.map_or("-".into(), |d| d.to_string()),
        fmt_opt(mb(row.rss_before_kb), 1),
        fmt_opt(mb(row.rss_after_dump_kb), 1),
    );
}

/// Starts the round-trip reference (`shg-scenario bench answer`) in `ns` on 127.0.0.1:`port`
/// and waits until it listens.
fn start_answer(ns: &Netns, port: u16, dir: &Path, n: usize) -> io::Result<Proc> {
    let addr = format!("127.0.0.1:{port}");
    let log = dir.join(format!("answer-{n}.log"));
    super::start_self(
        ns,
        &["bench", "answer", &addr],
        &log,
        "listening",
        "the round-trip reference",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(which: Which, n: usize, add: f64) -> FlowsRow {
        FlowsRow {
            which,
            n,
            add_secs: Some(add),
            add_cpu_secs: Some(add / 2.0),
            dump_secs: Some(add / 4.0),
            dumped: Some(n),
            rss_before_kb: Some(10 * 1024),
            rss_after_add_kb: Some(20 * 1024),
            rss_after_dump_kb: Some(21 * 1024),
            error: None,
        }
    }

    #[test]
    fn table_has_ratio_against_ovs_of_the_same_size() {
        let r = FlowsReport {
            command: "c".into(),
            date: "d".into(),
            machine: "m".into(),
            rows: vec![
                row(Which::Shg, 10_000, 0.2),
                row(Which::Ovs, 10_000, 0.8),
                row(Which::Ovs, 100_000, 8.0),
                row(Which::Shg, 100_000, 2.0),
                FlowsRow {
                    dump_secs: None,
                    dumped: None,
                    rss_after_dump_kb: None,
                    ..row(Which::Answer, 100_000, 3.2)
                },
            ],
        };
        let md = r.markdown();
        assert!(
            md.contains(
                "| shg-switch | 10000 | 0.20 | 0.25× | 0.10 | 0.05 | 0.25× | 10000 | 10.0 | 20.0 | 21.0 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| shg-switch | 100000 | 2.00 | 0.25× |"),
            "{md}"
        );
        assert!(
            md.contains("| ovs-vswitchd | 100000 | 8.00 |  | 4.00 |"),
            "{md}"
        );
        // The reference: add-flows only, against OVS too.
        assert!(
            md.contains(
                "| reference (answers barriers, drops flows) | 100000 | 3.20 | 0.40× | 1.60 | - |"
            ),
            "{md}"
        );
        assert_eq!(r.json()["rows"][3]["add_secs"], json!(2.0));
    }
}
