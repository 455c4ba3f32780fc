//! `shg-scenario bench stall`: how long frames wait while the switch's control plane works.
//!
//! One topology (hosts h1, h2, each with a veth to the switch namespace; 198.18.6.0/24) and
//! shg-switch with two flows (port 1 <-> port 2, priority 200). h1 pings h2 every 5 ms
//! (`ping -i 0.005`) through three phases, the RTTs of each kept: idle; while a client sends
//! `--flows` FLOW_MODs back to back (no barrier in between, as a controller pushing a policy
//! does: [`flowmod_storm`], run in the switch namespace) and waits for one final barrier; while
//! `ovs-ofctl dump-flows` reads those flows back. The FLOW_MODs match `in_port=3`, a port that
//! does not exist, so the pinged path never changes; each one still empties the megaflow cache.
//! Configurations: the datapath thread under the normal scheduler and SCHED_FIFO
//! (`--datapath-priority realtime`): on two busy cores the first also measures CPU contention.
//! Both with the switch's defaults (pings repeated by the kernel fast path after the first,
//! until a control message takes the copy back). Then two under SCHED_FIFO with the kernel
//! fast path off, so that every ping reaches the datapath thread: with its own copies of
//! decisions (looked up without the `Ofproto` lock) and without them (`--thread-copies off`:
//! each frame waits for the lock while the control plane holds it).

use super::{machine_note, now_utc, ofctl, Env, Shg};
use crate::interrupt;
use crate::netns::{prefix, Netns, Proc, Veth};
use crate::parse::parse_ping;
use crate::stats::{fmt_opt as fmt, percentile};
use serde_json::{json, Value};
use shg_flows::mods::FlowModCommand;
use shg_flows::text::flow::parse_flow;
use shg_flows::wire::message::{decode, encode, frame_len, HelloElement, Message};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Options of `bench stall`.
#[derive(Debug, Clone)]
pub struct StallOpts {
    /// FLOW_MODs sent in the storm (and dumped after).
    pub flows: usize,
    /// Repetitions of every configuration.
    pub reps: u32,
    pub out: Option<PathBuf>,
    pub switch: Option<PathBuf>,
    pub command: String,
}

/// Pings per phase (every 5 ms: 2 s).
const PINGS: u32 = 400;
/// The switch's OpenFlow listener inside its namespace.
const OF_PORT: u16 = 6711;

/// What the control plane does while h1 pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    FlowMods,
    Dump,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Idle, Phase::FlowMods, Phase::Dump];

    fn key(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::FlowMods => "flow_mods",
            Phase::Dump => "dump_flows",
        }
    }
}

/// One configuration of the switch.
#[derive(Debug, Clone, Copy)]
struct Config {
    key: &'static str,
    args: &'static [&'static str],
}

const CONFIGS: [Config; 4] = [
    Config {
        key: "shg",
        args: &[],
    },
    Config {
        key: "shg_realtime",
        args: &["--datapath-priority", "realtime"],
    },
    Config {
        key: "shg_rt_thread_copies",
        args: &[
            "--datapath-priority",
            "realtime",
            "--kernel-fast-path",
            "off",
        ],
    },
    Config {
        key: "shg_rt_pipeline",
        args: &[
            "--datapath-priority",
            "realtime",
            "--kernel-fast-path",
            "off",
            "--thread-copies",
            "off",
        ],
    },
];

/// One phase of one repetition.
#[derive(Debug, Clone, Default)]
pub struct StallSample {
    pub config: String,
    pub rep: u32,
    pub phase: String,
    /// How long the control operation took (none when idle).
    pub op_secs: Option<f64>,
    pub sent: u32,
    /// Replies' RTTs, ms.
    pub rtts_ms: Vec<f64>,
    pub error: Option<String>,
}

impl StallSample {
    /// The `q` quantile of the RTTs (nearest rank), ms.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        percentile(&self.rtts_ms, q * 100.0)
    }
}

/// The whole run.
#[derive(Debug, Clone, Default)]
pub struct StallReport {
    pub command: String,
    pub date: String,
    pub machine: String,
    pub flows: usize,
    pub samples: Vec<StallSample>,
}

impl StallReport {
    /// results.md.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Command: `{}`. Run {}; {}.\n\nh1 pings h2 every 5 ms ({PINGS} pings) through shg-switch \
             while it is idle, while it takes {} pipelined FLOW_MODs (then one barrier), and while \
             `ovs-ofctl dump-flows` reads them back. RTT quantiles over each phase's replies.\n\n\
             | configuration | rep | phase | operation s | replies | RTT p50 ms | p99 ms | max ms |\n\
             |---|---|---|---|---|---|---|---|\n",
            self.command, self.date, self.machine, self.flows
        );
        for x in &self.samples {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {}/{} | {} | {} | {} |{}",
                x.config,
                x.rep,
                x.phase,
                fmt(x.op_secs, 2),
                x.rtts_ms.len(),
                x.sent,
                fmt(x.quantile(0.5), 3),
                fmt(x.quantile(0.99), 3),
                fmt(x.quantile(1.0), 3),
                x.error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(" error: {e}")),
            );
        }
        s
    }

    /// results.json.
    pub fn json(&self) -> Value {
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|x| {
                json!({
                    "config": x.config, "rep": x.rep, "phase": x.phase, "op_secs": x.op_secs,
                    "sent": x.sent, "replies": x.rtts_ms.len(),
                    "rtt_p50_ms": x.quantile(0.5), "rtt_p99_ms": x.quantile(0.99),
                    "rtt_max_ms": x.quantile(1.0), "error": x.error,
                })
            })
            .collect();
        json!({
            "benchmark": "stall", "command": self.command, "date": self.date,
            "machine": self.machine, "flows": self.flows, "samples": samples,
        })
    }
}

/// Runs the benchmark; returns the report and the output directory.
pub fn run_stall(opts: &StallOpts) -> io::Result<(StallReport, PathBuf)> {
    interrupt::install()?;
    let env = Env::detect(opts.switch.clone())?;
    let dir = env.out_dir(opts.out.clone(), "stall")?;
    let mut report = StallReport {
        command: opts.command.clone(),
        date: now_utc(),
        machine: machine_note(),
        flows: opts.flows,
        samples: Vec::new(),
    };
    let p = prefix();
    let sw = Netns::new(&format!("{p}sw"))?;
    let h1 = Netns::new(&format!("{p}h1"))?;
    let h2 = Netns::new(&format!("{p}h2"))?;
    let _v1 = Veth::new(&format!("{p}h1t"), &h1, &format!("{p}s1t"), &sw)?;
    let _v2 = Veth::new(&format!("{p}h2t"), &h2, &format!("{p}s2t"), &sw)?;
    h1.add_addr(&format!("{p}h1t"), "198.18.6.1/24")?;
    h2.add_addr(&format!("{p}h2t"), "198.18.6.2/24")?;
    let ports = vec![format!("{p}s1t"), format!("{p}s2t")];
    let exe = std::env::current_exe()?;
    let exe = exe.to_string_lossy().into_owned();
    let t = Duration::from_secs(300);
    let ofl = dir.join("ofctl.log");
    for rep in 1..=opts.reps.max(1) {
        for cfg in CONFIGS {
            interrupt::check()?;
            eprintln!("bench stall: rep {rep}, {}", cfg.key);
            let name = format!("{}-{rep}", cfg.key);
            let shg = Shg::start_with_args(&env, &sw, &name, &ports, OF_PORT, &dir, cfg.args)?;
            for f in [
                "priority=200,in_port=1,actions=output:2",
                "priority=200,in_port=2,actions=output:1",
            ] {
                ofctl(&sw, &["add-flow", &shg.target, f], &ofl, t)?;
            }
            if !h1.ping_until("198.18.6.2", Duration::from_secs(10)) {
                return Err(io::Error::other("h1 cannot ping h2 through shg-switch"));
            }
            for phase in Phase::ALL {
                let mut x = StallSample {
                    config: cfg.key.into(),
                    rep,
                    phase: phase.key().into(),
                    ..StallSample::default()
                };
                let log = dir.join(format!("ping-{name}-{}.txt", phase.key()));
                let mut ping = Command::new("ping");
                ping.args(["-n", "-i", "0.005", "-W", "1", "-c", &PINGS.to_string()])
                    .arg("198.18.6.2");
                let mut pinger = Proc::spawn_in(&h1, &ping, &log)?;
                interrupt::sleep(Duration::from_millis(300))?;
                let op = match phase {
                    Phase::Idle => Ok(None),
                    Phase::FlowMods => sw
                        .exec_ok(&[
                            &exe,
                            "bench",
                            "flowmod-storm",
                            &format!("127.0.0.1:{OF_PORT}"),
                            &opts.flows.to_string(),
                        ])
                        .and_then(|out| {
                            out.trim()
                                .parse::<f64>()
                                .map(Some)
                                .map_err(|_| io::Error::other(format!("storm client said {out:?}")))
                        }),
                    Phase::Dump => ofctl(&sw, &["dump-flows", &shg.target], &ofl, t)
                        .map(|(_, took)| Some(took.as_secs_f64())),
                };
                match op {
                    Ok(secs) => x.op_secs = secs,
                    Err(e) => x.error = Some(e.to_string()),
                }
                if pinger.wait_exit(Duration::from_secs(30)).is_none() {
                    pinger.stop();
                }
                drop(pinger);
                match parse_ping(&std::fs::read_to_string(&log).unwrap_or_default()) {
                    Ok(r) => {
                        x.sent = r.sent;
                        x.rtts_ms = r.rtts_ms;
                    }
                    Err(e) => x.error = Some(x.error.map_or(e.clone(), |o| format!("{o}; {e}"))),
                }
                eprintln!(
                    "    {}: op {} s, p99 {} ms, max {} ms",
                    phase.key(),
                    fmt(x.op_secs, 2),
                    fmt(x.quantile(0.99), 3),
                    fmt(x.quantile(1.0), 3)
                );
                report.samples.push(x);
            }
            drop(shg);
        }
    }
    std::fs::write(dir.join("results.md"), report.markdown())?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&report.json()).map_err(io::Error::other)?,
    )?;
    Ok((report, dir))
}

/// The storm client (`shg-scenario bench flowmod-storm ADDR N`, run inside the switch's
/// namespace): HELLO, then `n` FLOW_MOD ADDs written back to back (`in_port=3`, a distinct
/// `dl_dst` each, priority 100, output:3), then one BARRIER; returns the seconds from the
/// first FLOW_MOD to the barrier reply. An OFPT_ERROR from the switch is an error.
pub fn flowmod_storm(addr: &str, n: usize) -> io::Result<f64> {
    let mut msgs = Vec::with_capacity(n * 96);
    for i in 0..n {
        let b = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
        let f = format!(
            "priority=100,in_port=3,dl_dst=02:00:{:02x}:{:02x}:{:02x}:{:02x},actions=output:3",
            b[0], b[1], b[2], b[3]
        );
        let fm = parse_flow(&f, FlowModCommand::Add).map_err(io::Error::other)?;
        msgs.extend(encode(
            u32::try_from(i + 2).unwrap_or(u32::MAX),
            &Message::FlowMod(fm),
        ));
    }
    const BARRIER_XID: u32 = 0xb000_000f;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    s.write_all(&encode(
        1,
        &Message::Hello {
            version: 4,
            elements: vec![HelloElement::versions(&[4])],
        },
    ))?;
    let t0 = Instant::now();
    s.write_all(&msgs)?;
    s.write_all(&encode(BARRIER_XID, &Message::BarrierRequest))?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let k = s.read(&mut chunk)?;
        if k == 0 {
            return Err(io::Error::other("the switch closed the connection"));
        }
        buf.extend_from_slice(&chunk[..k]);
        while let Some(len) = frame_len(&buf) {
            if buf.len() < len {
                break;
            }
            match decode(&buf[..len]) {
                Ok((BARRIER_XID, Message::BarrierReply)) => return Ok(t0.elapsed().as_secs_f64()),
                Ok((xid, Message::Error { code, .. })) => {
                    return Err(io::Error::other(format!(
                        "the switch refused message {xid}: {}",
                        code.name()
                    )))
                }
                _ => {}
            }
            buf.drain(..len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_report() {
        let x = StallSample {
            config: "shg".into(),
            rep: 1,
            phase: "flow_mods".into(),
            op_secs: Some(0.25),
            sent: 5,
            rtts_ms: vec![0.5, 0.1, 0.3, 0.2, 9.0],
            error: None,
        };
        assert_eq!(x.quantile(0.5), Some(0.3));
        assert_eq!(x.quantile(1.0), Some(9.0));
        assert_eq!(x.quantile(0.99), Some(9.0));
        let r = StallReport {
            flows: 10,
            samples: vec![x],
            ..StallReport::default()
        };
        assert!(r
            .markdown()
            .contains("| shg | 1 | flow_mods | 0.25 | 5/5 | 0.300 | 9.000 | 9.000 |"));
        assert_eq!(r.json()["samples"][0]["rtt_max_ms"], json!(9.0));
    }
}
