//! Running a scenario: the topology, the gateway (controller first, then the switch), receivers, an idle RTT baseline, then the timeline (traffic starts, phase actions, probes, a progress line every second), then collection, teardown and the report.
//!
//! Every process is a [`Proc`] guard (stopped by its PID), every namespace and veth a guard of
//! [`Topo`]; they live in `Rig`, whose field order is the teardown order (traffic, receivers,
//! controller, switch, network). Ctrl-C/SIGTERM/SIGHUP set the [`interrupt`] flag: every wait
//! polls it and returns `Interrupted`, so the stack unwinds and the guards run; a panic unwinds
//! the same way. The report is written after teardown. Exit status: [`RunOutcome::passed`].

use super::check::{check_file, patch};
use super::model::*;
use super::policy::{
    controller_config, ApiClient, Controller, PolicyClient, UserChange, Verdict, API_ADDR,
};
use super::report::{Bin, DiscoveredResult, Event, PingSample, ReachResult, RunData, Series};
use super::topo::{Plan, Topo, ROUTER_IP, ROUTER_MAC};
use super::traffic::{iperf_intervals, parse_ping_log, parse_sent, probe_hits, RecvBin, Timeline};
use crate::bench::{machine_note, now_utc};
use crate::interrupt;
use crate::netns::{prefix, run, wait_until, Netns, Proc};
use std::fmt::Write as _;
use std::io::{self, IsTerminal as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Idle RTT baseline before t=0.
pub const BASELINE: Duration = Duration::from_secs(3);
/// Reachability probe: datagrams sent, and the receivers' port.
const PROBE_COUNT: u64 = 20;
const PROBE_PORT: u16 = 9000;
const UDP_BASE_PORT: u16 = 7001;
const TCP_BASE_PORT: u16 = 5201;
/// shg-switch's passive OpenFlow listener in the gateway namespace (for ovs-ofctl by hand).
const SWITCH_LISTEN: u16 = 6634;

/// `shg-scenario run` options.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// A file, or a library name.
    pub target: String,
    pub out: Option<PathBuf>,
    /// The command line, for the report.
    pub command: String,
}

/// What a run leaves.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub report: PathBuf,
    pub passed: bool,
    pub summary: String,
}

/// The binaries a run needs.
#[derive(Debug, Clone)]
pub struct Bins {
    pub switch: PathBuf,
    pub controller: PathBuf,
    pub shgctl: Option<PathBuf>,
    pub me: PathBuf,
}

fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// `$VAR`, else next to this executable, else `target/release/NAME` of this tree.
pub fn find_bin(name: &str, var: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var).map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let release = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/release")
        .join(name);
    [exe_dir().join(name), release]
        .into_iter()
        .find(|p| p.is_file())
}

impl Bins {
    /// Finds the binaries; an error names what is missing and how to build it.
    pub fn detect() -> io::Result<Bins> {
        let build = "cargo build --release -p shg-switch -p shg-controller -p shg-scenario";
        let switch = find_bin("shg-switch", "SHG_SWITCH").ok_or_else(|| {
            io::Error::other(format!(
                "shg-switch not found ({build}, or SHG_SWITCH=PATH)"
            ))
        })?;
        let controller = find_bin("shg-controller", "SHG_CONTROLLER").ok_or_else(|| {
            io::Error::other(format!(
                "shg-controller not found ({build}, or SHG_CONTROLLER=PATH)"
            ))
        })?;
        Ok(Bins {
            switch,
            controller,
            shgctl: find_bin("shgctl", "SHGCTL"),
            me: std::env::current_exe()?,
        })
    }
}

/// Root and the tools the scenario uses.
fn check_machine(s: &Scenario) -> io::Result<()> {
    let uid = run("id", &["-u"]).unwrap_or_default();
    if uid.trim() != "0" {
        return Err(io::Error::other(
            "needs root (network namespaces, veths, tc)",
        ));
    }
    let mut tools = vec![
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("ss", "iproute2"),
        ("ping", "iputils-ping"),
    ];
    if s.traffic
        .iter()
        .any(|t| matches!(t.kind, TrafficKind::Tcp { .. }))
    {
        tools.push(("iperf3", "iperf3"));
    }
    for (_, sw) in &s.device_software {
        tools.push(match sw {
            DeviceSoftware::Minidlna => ("minidlnad", "minidlna"),
            DeviceSoftware::Gmediarender => ("gmediarender", "gmediarender"),
        });
    }
    let missing: Vec<String> = tools
        .iter()
        .filter(|(t, _)| run("sh", &["-c", &format!("command -v {t}")]).is_err())
        .map(|(t, p)| format!("{t} (package {p})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "missing tools: {} (tests/setup.sh installs them)",
            missing.join(", ")
        )))
    }
}

fn out_dir(explicit: Option<PathBuf>, name: &str) -> io::Result<PathBuf> {
    let dir = match explicit {
        Some(d) => d,
        None => {
            let target = exe_dir()
                .parent()
                .map_or_else(|| PathBuf::from("target"), Path::to_path_buf);
            let ts = run("date", &["-u", "+%Y%m%d-%H%M%S"]).unwrap_or_default();
            let mut d = target
                .join("scenarios")
                .join(format!("{name}-{}", ts.trim()));
            if d.exists() {
                d = d.with_file_name(format!("{name}-{}-{}", ts.trim(), std::process::id()));
            }
            d
        }
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| io::Error::other(format!("create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Where a traffic item's processes run and write.
#[derive(Debug, Clone)]
struct TrafficRt {
    /// Client/sender host, server/receiver host, and whether iperf3 runs reversed.
    client: String,
    server: String,
    reverse: bool,
    port: u16,
    /// Files: receiver output, sender output, ping log.
    recv: PathBuf,
    send: PathBuf,
    /// When the sender/client was spawned, s on the timeline.
    spawned: Option<f64>,
    proc: Option<usize>,
}

/// Everything that runs. Field order = teardown order.
struct Rig {
    traffic: Vec<Proc>,
    receivers: Vec<Proc>,
    /// UPnP software of devices (`run`): (device, process).
    devices: Vec<(String, Proc)>,
    controller: Controller,
    switch: Option<Proc>,
    topo: Topo,
}

fn spawn(ns: &Netns, prog: &Path, args: &[String], log: &Path) -> io::Result<Proc> {
    let mut c = Command::new(prog);
    c.args(args).env("NO_COLOR", "1");
    Proc::spawn_in(ns, &c, log)
}

fn udp_listening(ns: &Netns, port: u16) -> bool {
    ns.exec_ok(&["ss", "-Hlun", &format!("sport = :{port}")])
        .is_ok_and(|s| !s.trim().is_empty())
}

fn ping_args(hz: u32, count: u64, dst: &str) -> Vec<String> {
    vec![
        "-D".into(),
        "-O".into(),
        "-n".into(),
        "-i".into(),
        format!("{:.4}", 1.0 / f64::from(hz.max(1))),
        "-c".into(),
        count.to_string(),
        "-W".into(),
        "1".into(),
        dst.into(),
    ]
}

/// Progress output: a status line (overwritten on a terminal) and event lines.
struct Progress {
    tty: bool,
    last_status: Instant,
}

impl Progress {
    fn event(&self, t: f64, what: &str) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!("[{t:6.1} s] {}", what.replace('\n', "\n           "));
    }

    fn status(&mut self, line: &str) {
        if self.tty {
            eprint!("\r\x1b[K{line}");
        } else if self.last_status.elapsed() >= Duration::from_secs(5) {
            eprintln!("{line}");
            self.last_status = Instant::now();
        }
    }

    fn done(&self) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
    }
}

fn log_step(msg: &str) {
    eprintln!("shg-scenario: {msg}");
}

/// Runs a scenario; Ok when it ran to the end (passed or not), with the report written.
#[allow(clippy::too_many_lines, reason = "the run, step by step")]
pub fn run_scenario(opts: &RunOpts) -> io::Result<RunOutcome> {
    let wall0 = Instant::now();
    let file = super::resolve(&opts.target).map_err(io::Error::other)?;
    let s = check_file(&file).map_err(|errs| {
        io::Error::other(format!(
            "{} is not a valid scenario:\n{}",
            file.display(),
            errs.iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    })?;
    interrupt::install()?;
    check_machine(&s)?;
    let bins = Bins::detect()?;
    let dir = out_dir(opts.out.clone(), &s.name)?;
    std::fs::copy(&file, dir.join("scenario.toml"))?;
    log_step(&format!(
        "{}: {} ({} s); output in {}",
        s.name,
        s.description.lines().next().unwrap_or(""),
        s.duration.as_secs(),
        dir.display()
    ));
    let p = prefix();
    let plan = Plan::new(&p, &s);
    let mut data = RunData {
        scenario: s.clone(),
        command: opts.command.clone(),
        date: now_utc(),
        machine: machine_note(),
        prefix: p.clone(),
        addresses: plan
            .hosts
            .iter()
            .map(|h| (h.name.clone(), h.ipv4.clone()))
            .chain([("wan".to_string(), super::topo::WAN_IP.to_string())])
            .collect(),
        series: s
            .traffic
            .iter()
            .map(|t| Series {
                name: t.name.clone(),
                ..Series::default()
            })
            .collect(),
        line: Vec::new(),
        events: Vec::new(),
        verdicts: Vec::new(),
        reach: Vec::new(),
        discovered: Vec::new(),
        errors: Vec::new(),
        notes: Vec::new(),
        wall_s: 0.0,
    };

    // Network and gateway.
    let topo = Topo::build(plan, &s)?;
    log_step(&format!(
        "topology up: namespaces {p}-{{gw,isp,wan,{}}}",
        topo.plan
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    ));
    let switch_ctl = dir.join("switch.ctl");
    let mut controller = Controller::new(&bins.controller, &topo.gw, &dir, &switch_ctl);
    controller.discovery = topo.plan.discovery.as_ref().map(|d| d.ctl_if.clone());
    match ApiClient::setup(bins.shgctl.as_deref(), &topo.gw, &dir) {
        Ok(a) => controller.api = Some(a),
        Err(e) => {
            let why = format!("policy changes go by the config file and SIGHUP: the controller's API could not be set up ({e})");
            log_step(&why);
            data.notes.push(why);
        }
    }
    let mut policies: Vec<PolicyFields> = s.services.iter().map(|x| x.policy.clone()).collect();
    let mut accepted_text = controller_config(&s, &topo.plan, &policies);
    controller.write_config(&accepted_text)?;
    let mut rig = Rig {
        traffic: Vec::new(),
        receivers: Vec::new(),
        devices: Vec::new(),
        controller,
        switch: None,
        topo,
    };
    rig.controller.start(&rig.topo.gw)?;
    rig.switch = Some(start_switch(&bins, &rig.topo, &dir, &switch_ctl)?);
    rig.controller.wait_synced(1, Duration::from_secs(20))?;
    log_step("shg-controller synced with shg-switch (policy applied)");
    if let Some(a) = &rig.controller.api {
        let how = if a.reachable() {
            format!("policy changes go through the controller's HTTPS API (https://{API_ADDR} in the gateway namespace): the ISP with its client certificate, the home user with a token (shgctl)")
        } else {
            "the controller's API does not answer: policy changes fall back to the config file and SIGHUP".to_string()
        };
        log_step(&how);
        data.notes.push(how);
    }

    // UPnP software on devices, and when the controller's inventory shows each.
    if !s.device_software.is_empty() {
        data.discovered = start_devices(&s, &mut rig, &dir)?;
        for r in &data.discovered {
            let what = match (r.after_s, &r.error) {
                (Some(t), _) => format!(
                    "{} discovered by the controller {t:.2} s after its launch ({})",
                    r.device,
                    r.types.join(", ")
                ),
                (None, Some(e)) => format!("{}: {e}", r.device),
                (None, None) => format!("{}: not discovered", r.device),
            };
            log_step(&what);
            data.notes.push(what);
        }
    }

    // Receivers.
    let mut rts: Vec<TrafficRt> = Vec::new();
    for (i, t) in s.traffic.iter().enumerate() {
        let k = u16::try_from(i).unwrap_or(0);
        let (client, server, reverse) = if t.from == "wan" {
            (t.to.clone(), t.from.clone(), true)
        } else {
            (t.from.clone(), t.to.clone(), false)
        };
        let rt = TrafficRt {
            client,
            server,
            reverse,
            port: match t.kind {
                TrafficKind::Udp { .. } => UDP_BASE_PORT + k,
                TrafficKind::Tcp { .. } => TCP_BASE_PORT + k,
                TrafficKind::Ping { .. } => 0,
            },
            recv: dir.join(format!("{}.recv", t.name)),
            send: dir.join(format!("{}.send", t.name)),
            spawned: None,
            proc: None,
        };
        match t.kind {
            TrafficKind::Udp { .. } => {
                let ns = rig
                    .topo
                    .ns(&t.to)
                    .ok_or_else(|| io::Error::other("unknown host"))?;
                let args: Vec<String> =
                    ["agent", "udp-recv", "--port", &rt.port.to_string(), "--out"]
                        .iter()
                        .map(ToString::to_string)
                        .chain([rt.recv.to_string_lossy().into_owned()])
                        .collect();
                rig.receivers.push(spawn(
                    ns,
                    &bins.me,
                    &args,
                    &dir.join(format!("{}.recv.log", t.name)),
                )?);
            }
            TrafficKind::Tcp { .. } => {
                let ns = rig
                    .topo
                    .ns(&rt.server)
                    .ok_or_else(|| io::Error::other("unknown host"))?;
                let json = if rt.reverse {
                    dir.join(format!("{}.server.json", t.name))
                } else {
                    rt.recv.clone()
                };
                let args: Vec<String> = vec![
                    "-s".into(),
                    "-1".into(),
                    "-i".into(),
                    "1".into(),
                    "-p".into(),
                    rt.port.to_string(),
                    "-J".into(),
                    "--logfile".into(),
                    json.to_string_lossy().into_owned(),
                ];
                rig.receivers.push(spawn(
                    ns,
                    Path::new("iperf3"),
                    &args,
                    &dir.join(format!("{}.server.log", t.name)),
                )?);
            }
            TrafficKind::Ping { .. } => {}
        }
        rts.push(rt);
    }
    let mut probe_targets: Vec<String> = Vec::new();
    for a in &s.asserts {
        if let Assert::Reach { to, .. } = a {
            if !probe_targets.contains(to) {
                probe_targets.push(to.clone());
            }
        }
    }
    for to in &probe_targets {
        let ns = rig
            .topo
            .ns(to)
            .ok_or_else(|| io::Error::other("unknown host"))?;
        let args: Vec<String> = [
            "agent",
            "udp-recv",
            "--port",
            &PROBE_PORT.to_string(),
            "--out",
        ]
        .iter()
        .map(ToString::to_string)
        .chain([dir
            .join(format!("probe-{to}.recv"))
            .to_string_lossy()
            .into_owned()])
        .collect();
        rig.receivers.push(spawn(
            ns,
            &bins.me,
            &args,
            &dir.join(format!("probe-{to}.log")),
        )?);
    }
    let ready = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        interrupt::interrupted()
            || (s.traffic.iter().zip(&rts).all(|(t, rt)| match t.kind {
                TrafficKind::Udp { .. } => rig
                    .topo
                    .ns(&t.to)
                    .is_some_and(|ns| udp_listening(ns, rt.port)),
                TrafficKind::Tcp { .. } => rig
                    .topo
                    .ns(&rt.server)
                    .is_some_and(|ns| ns.tcp_listening(rt.port)),
                TrafficKind::Ping { .. } => true,
            }) && probe_targets.iter().all(|to| {
                rig.topo
                    .ns(to)
                    .is_some_and(|ns| udp_listening(ns, PROBE_PORT))
            }))
    });
    interrupt::check()?;
    if !ready {
        return Err(io::Error::other(
            "receivers (udp-recv, iperf3 -s) did not start listening within 10 s",
        ));
    }

    // Warm-up (neighbour entries) and the idle baseline.
    let mut pairs: Vec<(String, String)> = Vec::new();
    for t in &s.traffic {
        let (a, b) = if t.from == "wan" {
            (t.to.clone(), t.from.clone())
        } else {
            (t.from.clone(), t.to.clone())
        };
        if !pairs.contains(&(a.clone(), b.clone())) {
            pairs.push((a, b));
        }
    }
    for (a, b) in &pairs {
        let (Some(ns), Some(ip)) = (rig.topo.ns(a), rig.topo.plan.ip_of(b)) else {
            continue;
        };
        if !ns.ping_until(ip, Duration::from_secs(3)) {
            data.notes
                .push(format!("warm-up: {a} could not ping {b} ({ip}) before t=0"));
        }
        interrupt::check()?;
    }
    let pings: Vec<usize> = s
        .traffic
        .iter()
        .enumerate()
        .filter(|(_, t)| matches!(t.kind, TrafficKind::Ping { .. }))
        .map(|(i, _)| i)
        .collect();
    if !pings.is_empty() {
        log_step(&format!("idle baseline: {} s of pings", BASELINE.as_secs()));
        let mut base = Vec::new();
        for &i in &pings {
            let t = &s.traffic[i];
            let TrafficKind::Ping { hz } = t.kind else {
                continue;
            };
            let (Some(ns), Some(ip)) = (rig.topo.ns(&t.from), rig.topo.plan.ip_of(&t.to)) else {
                continue;
            };
            let count = u64::from(hz) * BASELINE.as_secs();
            let log = dir.join(format!("{}.baseline.ping", t.name));
            base.push((
                i,
                log.clone(),
                spawn(ns, Path::new("ping"), &ping_args(hz, count, ip), &log)?,
            ));
        }
        let t0 = Instant::now();
        for (i, log, mut p) in base {
            while p.exited().is_none() && t0.elapsed() < BASELINE + Duration::from_secs(4) {
                interrupt::sleep(Duration::from_millis(50))?;
            }
            p.stop();
            let ev = parse_ping_log(&std::fs::read_to_string(&log).unwrap_or_default());
            // The first reply may carry a neighbour resolution.
            data.series[i].idle_rtts = ev.iter().skip(1).filter_map(|e| e.rtt_ms).collect();
        }
    }

    // The timeline.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Ev {
        Phase(usize),
        Start(usize),
        Probe(usize),
    }
    let mut evs: Vec<(Duration, Ev)> = Vec::new();
    for (i, p) in s.phases.iter().enumerate() {
        evs.push((p.at, Ev::Phase(i)));
    }
    for (i, t) in s.traffic.iter().enumerate() {
        evs.push((t.start, Ev::Start(i)));
    }
    let reach_asserts: Vec<&Assert> = s
        .asserts
        .iter()
        .filter(|a| matches!(a, Assert::Reach { .. }))
        .collect();
    for (k, a) in reach_asserts.iter().enumerate() {
        if let Assert::Reach { at, .. } = a {
            evs.push((*at, Ev::Probe(k)));
        }
    }
    evs.sort();
    let t0 = Instant::now();
    let tl = Timeline {
        t0_unix: super::traffic::now_ns() as f64 / 1e9,
    };
    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        last_status: Instant::now(),
    };
    log_step(&format!(
        "t=0: timeline of {} s starts",
        s.duration.as_secs()
    ));
    let now_t = || t0.elapsed().as_secs_f64();
    let mut next_ev = 0usize;
    let mut next_tick = Duration::ZERO;
    let mut last_line: Option<(f64, u64, u64)> = None;
    let mut syncs_seen = rig.controller.connect_syncs();
    let mut controller_should_run = true;
    let mut current_phase = String::from("-");
    loop {
        interrupt::check()?;
        let el = t0.elapsed();
        if el >= s.duration {
            break;
        }
        // Due events.
        while let Some(&(at, ev)) = evs.get(next_ev) {
            if at > t0.elapsed() {
                break;
            }
            next_ev += 1;
            match ev {
                Ev::Phase(i) => {
                    let ph = &s.phases[i];
                    current_phase = ph.name.clone();
                    data.events.push(Event {
                        t: now_t(),
                        what: format!("phase {} begins", ph.name),
                    });
                    progress.event(now_t(), &format!("phase {}", ph.name));
                    for a in &ph.actions {
                        let what = act(
                            a,
                            &s,
                            &mut rig,
                            &mut policies,
                            &mut accepted_text,
                            &mut controller_should_run,
                            &ph.name,
                            &mut data,
                        )?;
                        progress.event(now_t(), &what);
                        data.events.push(Event { t: now_t(), what });
                    }
                }
                Ev::Start(i) => {
                    let t = &s.traffic[i];
                    match start_traffic(t, &mut rts[i], &rig, &bins, &s) {
                        Ok(p) => {
                            rts[i].spawned = Some(now_t());
                            rts[i].proc = Some(rig.traffic.len());
                            rig.traffic.push(p);
                        }
                        Err(e) => data.series[i].errors.push(format!("start: {e}")),
                    }
                }
                Ev::Probe(k) => {
                    if let Some(Assert::Reach {
                        from, to, spoof, ..
                    }) = reach_asserts.get(k)
                    {
                        let r = probe(
                            &rig.topo,
                            &bins,
                            &dir,
                            u32::try_from(k).unwrap_or(0),
                            from,
                            to,
                            *spoof,
                            now_t(),
                        )?;
                        let what = format!(
                            "probe {from} → {to}{}: {} of {} arrived{}",
                            spoof.map_or("", |x| if x == Spoof::Ip {
                                " (spoofed IP)"
                            } else {
                                " (spoofed MAC)"
                            }),
                            r.received,
                            r.sent,
                            r.error
                                .as_ref()
                                .map_or(String::new(), |e| format!(" ({e})"))
                        );
                        progress.event(now_t(), &what);
                        data.events.push(Event { t: now_t(), what });
                        data.reach.push(r);
                    }
                }
            }
        }
        // Once a second: line counters, supervision, the status line.
        if t0.elapsed() >= next_tick {
            next_tick += Duration::from_secs(1);
            let t = now_t();
            if let Ok((rx, tx)) = rig.topo.line_bytes() {
                if let Some((lt, lrx, ltx)) = last_line {
                    let dt = (t - lt).max(1e-3);
                    #[allow(clippy::cast_precision_loss, reason = "byte counters")]
                    let (up, down) = (
                        (rx.saturating_sub(lrx)) as f64 * 8.0 / dt,
                        (tx.saturating_sub(ltx)) as f64 * 8.0 / dt,
                    );
                    data.line.push((t, up, down));
                }
                last_line = Some((t, rx, tx));
            }
            if let Some(sw) = rig.switch.as_mut() {
                if let Some(code) = sw.exited() {
                    let msg = format!(
                        "shg-switch exited with {code} at t={t:.1} s: {}",
                        sw.describe()
                    );
                    data.errors.push(msg.clone());
                    progress.event(t, &msg);
                    rig.switch = None;
                    break;
                }
            }
            if controller_should_run && !rig.controller.running() {
                let msg = format!(
                    "shg-controller died at t={t:.1} s (log {})",
                    rig.controller.log_path().display()
                );
                data.errors.push(msg.clone());
                progress.event(t, &msg);
                controller_should_run = false;
            }
            let syncs = rig.controller.connect_syncs();
            if syncs > syncs_seen {
                let text = rig.controller.log_text();
                let rec = text.lines().rfind(|l| l.contains("sync (connect) done"));
                let words = rec
                    .and_then(|l| l.split("sync (connect) done").nth(1))
                    .unwrap_or_default();
                // When it happened, by the controller's own clock (same machine).
                let at = rec
                    .and_then(super::traffic::log_time_unix)
                    .map_or(t, |u| tl.at(u));
                let what = format!("controller synced with the switch{words}");
                progress.event(at, &what);
                data.events.push(Event { t: at, what });
                syncs_seen = syncs;
            }
            let mut st = format!("[{t:5.1}/{} s] {current_phase}", s.duration.as_secs());
            if let Some((_, u, d)) = data.line.last() {
                let _ = write!(st, " | line ↑ {:.1} ↓ {:.1} Mbit/s", u / 1e6, d / 1e6);
            }
            for &i in &pings {
                let txt = std::fs::read_to_string(&rts[i].recv).unwrap_or_default();
                if let Some(r) = txt
                    .lines()
                    .rev()
                    .find_map(|l| super::traffic::parse_ping_line(l).and_then(|e| e.rtt_ms))
                {
                    let _ = write!(st, " | {} {r:.2} ms", s.traffic[i].name);
                }
            }
            progress.status(&st);
        }
        let next = evs
            .get(next_ev)
            .map_or(next_tick, |(at, _)| (*at).min(next_tick))
            .min(s.duration);
        let wait = next
            .saturating_sub(t0.elapsed())
            .min(Duration::from_millis(100));
        interrupt::sleep(wait)?;
    }
    progress.done();
    log_step(&format!(
        "t={:.1}: end of the timeline; collecting",
        now_t()
    ));

    // Let the traffic end by itself (bounded), then the receivers.
    let grace = Instant::now();
    for (i, rt) in rts.iter().enumerate() {
        if let Some(pi) = rt.proc {
            let Some(p) = rig.traffic.get_mut(pi) else {
                continue;
            };
            let code = loop {
                if let Some(c) = p.exited() {
                    break Some(c);
                }
                if grace.elapsed() > Duration::from_secs(10) {
                    break None;
                }
                interrupt::sleep(Duration::from_millis(50))?;
            };
            match code {
                Some(0) => {}
                // ping exits 1 when some replies were missing: its log says which.
                Some(1) if matches!(s.traffic[i].kind, TrafficKind::Ping { .. }) => {}
                Some(c) => data.series[i]
                    .errors
                    .push(format!("exited with {c}: {}", p.describe())),
                None => {
                    data.series[i]
                        .errors
                        .push("did not finish within 10 s of the end; stopped".into());
                    p.stop();
                }
            }
        } else if data.series[i].errors.is_empty()
            && s.traffic[i].start < s.duration
            && data.errors.is_empty()
        {
            data.series[i].errors.push("never started".into());
        }
    }
    interrupt::sleep(Duration::from_millis(600))?;
    for p in &mut rig.receivers {
        p.stop();
    }
    if let Some(ctl) = &bins.shgctl {
        for what in ["dump-flows", "dump-queues"] {
            if let Ok(o) = Command::new(ctl)
                .args(["switch", "--ctl"])
                .arg(&switch_ctl)
                .arg(what)
                .output()
            {
                let _ = std::fs::write(dir.join(format!("final.{what}.txt")), o.stdout);
            }
        }
    }
    // The ISP's downstream queue (backlog, drops): where downstream delay forms.
    if let Ok(t) =
        rig.topo
            .isp
            .exec_ok(&["tc", "-s", "qdisc", "show", "dev", &rig.topo.plan.router_if])
    {
        let _ = std::fs::write(dir.join("final.isp-qdisc.txt"), t);
    }
    if let Some(sw) = rig.switch.as_mut() {
        if let Some(code) = sw.exited() {
            data.errors
                .push(format!("shg-switch exited with {code}: {}", sw.describe()));
        }
    }
    collect(&s, &rts, tl, &mut data);
    data.events.sort_by(|a, b| a.t.total_cmp(&b.t));
    drop(rig);
    log_step("torn down (processes stopped by PID, namespaces deleted)");

    data.wall_s = wall0.elapsed().as_secs_f64();
    let md = data.markdown();
    std::fs::write(dir.join("report.md"), &md)?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&data.json()).map_err(io::Error::other)? + "\n",
    )?;
    std::fs::write(dir.join("throughput.svg"), data.svg_throughput())?;
    std::fs::write(dir.join("rtt.svg"), data.svg_rtt())?;
    let judged = data.judge();
    let failed = judged.iter().filter(|j| !j.pass).count();
    let summary = format!(
        "{}: {} — {} of {} assertions hold{}",
        s.name,
        if data.passed() { "PASS" } else { "FAIL" },
        judged.len() - failed,
        judged.len(),
        if data.errors.is_empty() {
            String::new()
        } else {
            format!("; {} error(s)", data.errors.len())
        }
    );
    Ok(RunOutcome {
        report: dir.join("report.md"),
        dir,
        passed: data.passed(),
        summary,
    })
}

/// Fixed UDNs of the device software (at most one device runs each).
const MINIDLNA_UUID: &str = "4d696e69-444c-164e-9d41-0000000051a1";
const RENDERER_UUID: &str = "5c7a1f63-0000-4000-8000-0000000051e3";

/// minidlna's config for a device whose LAN interface is `ifname`, files under `dir`.
/// notify_interval 5 gives max-age 20 s.
fn minidlna_conf(ifname: &str, dir: &Path, name: &str) -> String {
    let d = dir.to_string_lossy();
    format!(
        "port=8200\nnetwork_interface={ifname}\nmedia_dir={d}/media\ndb_dir={d}/db\nlog_dir={d}/log\n\
         friendly_name=shg-scenario {name}\ninotify=no\nnotify_interval=5\nserial=12345678\n\
         model_number=1\nuuid={MINIDLNA_UUID}\n"
    )
}

/// Starts each device's UPnP software in its namespace (with `239.0.0.0/8` routed on its
/// interface there: libupnp sends no NOTIFY without it), then polls the controller's inventory
/// (`shgctl devices`) until every one shows up with a device type, or 30 s.
fn start_devices(s: &Scenario, rig: &mut Rig, dir: &Path) -> io::Result<Vec<DiscoveredResult>> {
    let mut launched: Vec<(String, Instant)> = Vec::new();
    for (name, sw) in &s.device_software {
        let (Some(ns), Some(h)) = (rig.topo.ns(name), rig.topo.plan.host(name)) else {
            return Err(io::Error::other(format!("{name}: unknown device")));
        };
        let ddir = dir.join(format!("device-{name}"));
        for sub in ["media", "db", "log"] {
            std::fs::create_dir_all(ddir.join(sub))?;
        }
        ns.exec_ok(&["ip", "route", "add", "239.0.0.0/8", "dev", &h.host_if])?;
        let mut c = match sw {
            DeviceSoftware::Minidlna => {
                let conf = ddir.join("minidlna.conf");
                std::fs::write(&conf, minidlna_conf(&h.host_if, &ddir, name))?;
                let mut c = Command::new("minidlnad");
                c.arg("-f")
                    .arg(&conf)
                    .arg("-P")
                    .arg(ddir.join("minidlna.pid"))
                    .arg("-S");
                c
            }
            DeviceSoftware::Gmediarender => {
                let mut c = Command::new("gmediarender");
                c.args(["-I", &h.host_if, "-p", "49494", "-u", RENDERER_UUID, "-f"])
                    .arg(format!("shg-scenario {name}"))
                    .env("GST_REGISTRY", ddir.join("gst-registry.bin"))
                    .env("HOME", &ddir);
                c
            }
        };
        c.env("NO_COLOR", "1");
        let log = dir.join(format!("device-{name}.{}.log", sw.as_str()));
        let t = Instant::now();
        let mut p = Proc::spawn_in(ns, &c, &log)?;
        let port = sw.http_port();
        let ok = wait_until(Duration::from_secs(15), Duration::from_millis(20), || {
            interrupt::interrupted()
                || (ns.tcp_listening(port)
                    && (*sw != DeviceSoftware::Gmediarender
                        || std::fs::read_to_string(&log)
                            .is_ok_and(|x| x.contains("Ready for rendering"))))
        });
        interrupt::check()?;
        if !ok || p.exited().is_some() {
            return Err(io::Error::other(format!(
                "{name}: {} did not start: {}",
                sw.as_str(),
                p.describe()
            )));
        }
        log_step(&format!(
            "{name}: {} runs (PID {}), ready after {:.2} s",
            sw.as_str(),
            p.pid(),
            t.elapsed().as_secs_f64()
        ));
        rig.devices.push((name.clone(), p));
        launched.push((name.clone(), t));
    }
    let mut out: Vec<DiscoveredResult> = launched
        .iter()
        .map(|(n, _)| DiscoveredResult {
            device: n.clone(),
            after_s: None,
            types: Vec::new(),
            error: None,
        })
        .collect();
    let Some(api) = rig.controller.api.clone() else {
        for r in &mut out {
            r.error =
                Some("the controller's API is not set up: the inventory cannot be read".into());
        }
        return Ok(out);
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_err = None;
    while out.iter().any(|r| r.after_s.is_none()) && Instant::now() < deadline {
        interrupt::check()?;
        match api.devices() {
            Ok(v) => {
                let list = v["devices"].as_array().cloned().unwrap_or_default();
                for (r, (_, t)) in out.iter_mut().zip(&launched) {
                    if r.after_s.is_some() {
                        continue;
                    }
                    let ip = rig.topo.plan.ip_of(&r.device).unwrap_or_default();
                    let types: Vec<String> = list
                        .iter()
                        .filter(|d| d["address"].as_str() == Some(ip))
                        .filter_map(|d| d["device_type"].as_str())
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect();
                    if !types.is_empty() {
                        r.after_s = Some(t.elapsed().as_secs_f64());
                        r.types = types;
                    }
                }
            }
            Err(e) => last_err = Some(e.to_string()),
        }
        interrupt::sleep(Duration::from_millis(100))?;
    }
    for r in &mut out {
        if r.after_s.is_none() {
            r.error = Some(format!(
                "not in the controller's inventory 30 s after launch{}",
                last_err
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (last API error: {e})"))
            ));
        }
    }
    Ok(out)
}

fn start_switch(bins: &Bins, topo: &Topo, dir: &Path, ctl: &Path) -> io::Result<Proc> {
    let mut conf = String::from("datapath_id = \"0000000000000001\"\n");
    let _ = write!(
        conf,
        "\n[[port]]\nname = \"{}\"\nnumber = 1\n",
        topo.plan.uplink_if
    );
    for h in &topo.plan.hosts {
        let _ = write!(
            conf,
            "\n[[port]]\nname = \"{}\"\nnumber = {}\n",
            h.switch_if, h.port
        );
    }
    if let Some(d) = &topo.plan.discovery {
        let _ = write!(
            conf,
            "\n[[port]]\nname = \"{}\"\nnumber = {}\n",
            d.switch_if, d.port
        );
    }
    let path = dir.join("switch.toml");
    std::fs::write(&path, conf)?;
    let mut c = Command::new(&bins.switch);
    c.arg("--config")
        .arg(&path)
        .arg("--controller")
        .arg(format!("tcp:127.0.0.1:{}", super::policy::CONTROLLER_PORT))
        .arg("--listen")
        .arg(format!("ptcp:{SWITCH_LISTEN}:127.0.0.1"))
        .arg("--fail-mode")
        .arg("secure")
        .arg("--ctl")
        .arg(ctl)
        .arg("--log")
        .arg("warn")
        .env("NO_COLOR", "1");
    let mut p = Proc::spawn_in(&topo.gw, &c, &dir.join("switch.log"))?;
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        ctl.exists() || interrupt::interrupted()
    });
    interrupt::check()?;
    if !up || p.exited().is_some() {
        return Err(io::Error::other(format!(
            "shg-switch did not start: {}",
            p.describe()
        )));
    }
    Ok(p)
}

fn start_traffic(
    t: &Traffic,
    rt: &mut TrafficRt,
    rig: &Rig,
    bins: &Bins,
    s: &Scenario,
) -> io::Result<Proc> {
    let secs = (t.stop.min(s.duration)).saturating_sub(t.start);
    let dst_ip = |h: &str| {
        rig.topo
            .plan
            .ip_of(h)
            .map(str::to_string)
            .ok_or_else(|| io::Error::other(format!("{h}: unknown host")))
    };
    let log = rt.send.with_extension("send.log");
    match t.kind {
        TrafficKind::Udp { rate_bps, size } => {
            let ns = rig
                .topo
                .ns(&t.from)
                .ok_or_else(|| io::Error::other("unknown host"))?;
            let args: Vec<String> = vec![
                "agent".into(),
                "udp-send".into(),
                "--dst".into(),
                format!("{}:{}", dst_ip(&t.to)?, rt.port),
                "--id".into(),
                rt.port.to_string(),
                "--rate".into(),
                rate_bps.to_string(),
                "--size".into(),
                size.to_string(),
                "--secs".into(),
                format!("{:.3}", secs.as_secs_f64()),
                "--out".into(),
                rt.send.to_string_lossy().into_owned(),
            ];
            spawn(ns, &bins.me, &args, &log)
        }
        TrafficKind::Tcp { rate_bps } => {
            let ns = rig
                .topo
                .ns(&rt.client)
                .ok_or_else(|| io::Error::other("unknown host"))?;
            let json = if rt.reverse {
                rt.recv.clone()
            } else {
                rt.send.clone()
            };
            let whole = secs.as_secs().max(1).to_string();
            let mut args: Vec<String> = vec![
                "-c".into(),
                dst_ip(&rt.server)?,
                "-p".into(),
                rt.port.to_string(),
                "-t".into(),
                whole,
                "-i".into(),
                "1".into(),
                "-C".into(),
                "cubic".into(),
                "-J".into(),
                "--logfile".into(),
                json.to_string_lossy().into_owned(),
                "--connect-timeout".into(),
                "3000".into(),
            ];
            if rt.reverse {
                args.push("-R".into());
            }
            if let Some(r) = rate_bps {
                args.push("-b".into());
                args.push(r.to_string());
            }
            spawn(ns, Path::new("iperf3"), &args, &log)
        }
        TrafficKind::Ping { hz } => {
            let ns = rig
                .topo
                .ns(&t.from)
                .ok_or_else(|| io::Error::other("unknown host"))?;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a count of at most 100 Hz × 600 s"
            )]
            let count = (secs.as_secs_f64() * f64::from(hz)).floor().max(1.0) as u64;
            spawn(
                ns,
                Path::new("ping"),
                &ping_args(hz, count, &dst_ip(&t.to)?),
                &rt.recv,
            )
        }
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "the run's state, passed explicitly"
)]
fn act(
    a: &Action,
    s: &Scenario,
    rig: &mut Rig,
    policies: &mut [PolicyFields],
    accepted_text: &mut String,
    controller_should_run: &mut bool,
    phase: &str,
    data: &mut RunData,
) -> io::Result<String> {
    Ok(match a {
        Action::Policy {
            service,
            set,
            unset,
        } => {
            let Some(i) = s.services.iter().position(|x| &x.name == service) else {
                return Ok(format!("policy: {service}: not a service"));
            };
            let mut next: Vec<PolicyFields> = policies.to_vec();
            next[i] = patch(&policies[i], set, unset);
            let text = controller_config(s, &rig.topo.plan, &next);
            // The home user's own keys go as the user's request; anything else as the ISP's.
            let only_user = PolicyFields {
                user: None,
                ..set.clone()
            } == PolicyFields::default()
                && unset.iter().all(|k| k.starts_with("user."));
            let pushed = if only_user {
                let u = set.user.clone().unwrap_or_default();
                let gone = |k: &str| unset.iter().any(|x| x == k);
                let change = UserChange {
                    priority: u
                        .priority
                        .map(Some)
                        .or(gone("user.priority").then_some(None)),
                    max_rate: u
                        .max_rate
                        .map(Some)
                        .or(gone("user.max_rate").then_some(None)),
                };
                rig.controller.set_user(service, &change, &text)
            } else {
                rig.controller.push(&text)
            };
            let verdict = match pushed {
                Ok(v) => v,
                Err(e) => {
                    data.errors.push(format!("phase {phase}: policy push: {e}"));
                    Verdict::Failed(e.to_string())
                }
            };
            if matches!(verdict, Verdict::Accepted(_)) {
                policies.clone_from_slice(&next);
                *accepted_text = text;
            } else {
                // The controller keeps the old policy; so does its file (for a later restart).
                rig.controller.write_config(accepted_text)?;
            }
            let what = format!(
                "policy for {service} ({}): {} — {}",
                describe_patch(set, unset),
                verdict.label(),
                verdict.text()
            );
            data.verdicts
                .push((phase.to_string(), service.clone(), verdict));
            what
        }
        Action::KillController => {
            rig.controller.kill();
            *controller_should_run = false;
            "controller killed (SIGKILL by PID)".into()
        }
        Action::StopController => {
            rig.controller.stop();
            *controller_should_run = false;
            "controller stopped (SIGTERM by PID)".into()
        }
        Action::StartController => {
            rig.controller.start(&rig.topo.gw)?;
            *controller_should_run = true;
            "controller started".into()
        }
        Action::StopDevice { device } => match rig.devices.iter_mut().find(|(n, _)| n == device) {
            Some((_, p)) => {
                let pid = p.pid();
                p.stop();
                format!("{device}'s UPnP software stopped (SIGTERM to PID {pid})")
            }
            None => format!("{device}: runs no UPnP software"),
        },
    })
}

fn describe_patch(set: &PolicyFields, unset: &[String]) -> String {
    let mut v = Vec::new();
    macro_rules! show {
        ($($f:ident),*) => {$( if let Some(x) = &set.$f { v.push(format!("{} = {:?}", stringify!($f), x)); } )*};
    }
    show!(
        class,
        min_rate,
        max_rate,
        down_min_rate,
        down_max_rate,
        latency,
        priority,
        priority_bounds,
        reach
    );
    if let Some(u) = &set.user {
        if let Some(p) = u.priority {
            v.push(format!("user.priority = {p}"));
        }
        if let Some(m) = &u.max_rate {
            v.push(format!("user.max_rate = {m:?}"));
        }
    }
    for k in unset {
        v.push(format!("unset {k}"));
    }
    v.join(", ")
}

/// A reachability probe: [`PROBE_COUNT`] UDP datagrams from `from` to the receiver on `to`.
#[allow(clippy::too_many_arguments, reason = "probe parameters")]
fn probe(
    topo: &Topo,
    bins: &Bins,
    dir: &Path,
    id: u32,
    from: &str,
    to: &str,
    spoof: Option<Spoof>,
    t: f64,
) -> io::Result<ReachResult> {
    let mut r = ReachResult {
        at: t,
        from: from.to_string(),
        to: to.to_string(),
        spoof,
        sent: 0,
        received: 0,
        error: None,
    };
    let (Some(ns), Some(h), Some(dst)) = (topo.ns(from), topo.plan.host(from), topo.plan.ip_of(to))
    else {
        r.error = Some("unknown host".into());
        return Ok(r);
    };
    let dev = h.host_if.clone();
    // The next hop and its MAC: the router for the WAN, else the destination itself.
    let (nh, nh_mac) = if to == "wan" {
        (ROUTER_IP.to_string(), ROUTER_MAC.to_string())
    } else {
        let d = topo.plan.host(to).map(|x| (x.ipv4.clone(), x.mac.clone()));
        d.unwrap_or_default()
    };
    let mut undo: Vec<Vec<String>> = Vec::new();
    let mut bind = None;
    // Spoofed MAC: a macvlan on the host's interface with another MAC, moved into a
    // namespace of its own with the host's address, so the host's own traffic is untouched.
    let mut spoof_ns: Option<Netns> = None;
    let setup = (|| -> io::Result<()> {
        match spoof {
            Some(Spoof::Ip) => {
                // A static neighbour entry (the right MAC): no ARP from the spoofed address.
                ns.exec_ok(&[
                    "ip",
                    "neigh",
                    "replace",
                    &nh,
                    "lladdr",
                    &nh_mac,
                    "dev",
                    &dev,
                    "nud",
                    "permanent",
                ])?;
                let ip = topo.plan.spoof_ip();
                ns.exec_ok(&["ip", "addr", "add", &format!("{ip}/32"), "dev", &dev])?;
                undo.push(vec![
                    "ip".into(),
                    "addr".into(),
                    "del".into(),
                    format!("{ip}/32"),
                    "dev".into(),
                    dev.clone(),
                ]);
                bind = Some(ip.to_string());
            }
            Some(Spoof::Mac) => {
                let sns = Netns::new(&format!("{}-spoof{id}", topo.plan.prefix))?;
                let mv = format!("{}m{id}", topo.plan.prefix);
                ns.exec_ok(&[
                    "ip", "link", "add", &mv, "link", &dev, "type", "macvlan", "mode", "bridge",
                ])?;
                ns.exec_ok(&[
                    "ip",
                    "link",
                    "set",
                    &mv,
                    "address",
                    "02:00:00:00:0f:01",
                    "netns",
                    sns.name(),
                ])?;
                sns.add_addr(&mv, &format!("{}/24", h.ipv4))?;
                sns.link_up(&mv)?;
                sns.exec_ok(&["ip", "route", "add", "198.18.2.0/24", "via", ROUTER_IP])?;
                sns.exec_ok(&[
                    "ip",
                    "neigh",
                    "replace",
                    &nh,
                    "lladdr",
                    &nh_mac,
                    "dev",
                    &mv,
                    "nud",
                    "permanent",
                ])?;
                spoof_ns = Some(sns);
            }
            None => {}
        }
        Ok(())
    })();
    let sender_ns = spoof_ns.as_ref().unwrap_or(ns);
    if let Err(e) = setup {
        r.error = Some(format!("setup: {e}"));
    } else {
        let mut args: Vec<String> = vec![
            "agent".into(),
            "udp-send".into(),
            "--dst".into(),
            format!("{dst}:{PROBE_PORT}"),
            "--id".into(),
            id.to_string(),
            "--count".into(),
            PROBE_COUNT.to_string(),
        ];
        if let Some(b) = &bind {
            args.push("--bind".into());
            args.push(b.clone());
        }
        match spawn(
            sender_ns,
            &bins.me,
            &args,
            &dir.join(format!("probe-{id}.send.log")),
        ) {
            Ok(mut p) => {
                let ok = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                    p.exited().is_some()
                });
                match p.exited() {
                    Some(0) => r.sent = PROBE_COUNT,
                    _ if !ok => r.error = Some("sender did not finish".into()),
                    Some(c) => r.error = Some(format!("sender exited with {c}: {}", p.describe())),
                    None => {}
                }
            }
            Err(e) => r.error = Some(format!("sender: {e}")),
        }
        std::thread::sleep(Duration::from_millis(300));
        let text =
            std::fs::read_to_string(dir.join(format!("probe-{to}.recv"))).unwrap_or_default();
        r.received = probe_hits(&text).iter().filter(|(i, _)| *i == id).count() as u64;
    }
    for u in undo.iter().rev() {
        let refs: Vec<&str> = u.iter().map(String::as_str).collect();
        if let Err(e) = ns.exec_ok(&refs) {
            r.error.get_or_insert(format!("undo: {e}"));
        }
    }
    Ok(r)
}

/// Reads every traffic item's output onto the timeline.
fn collect(s: &Scenario, rts: &[TrafficRt], tl: Timeline, data: &mut RunData) {
    for (i, (t, rt)) in s.traffic.iter().zip(rts).enumerate() {
        let series = &mut data.series[i];
        if rt.spawned.is_none() {
            continue;
        }
        match t.kind {
            TrafficKind::Udp { .. } => {
                let text = std::fs::read_to_string(&rt.recv).unwrap_or_default();
                let bins: Vec<RecvBin> = text.lines().filter_map(RecvBin::from_json_line).collect();
                series.received = Some(bins.iter().map(|b| b.pkts).sum());
                series.bins = bins
                    .iter()
                    .map(|b| {
                        let t0 = tl.at(b.t_unix);
                        Bin {
                            t0,
                            t1: t0 + b.len_s,
                            bytes: b.bytes,
                            pkts: b.pkts,
                            lost: b.lost,
                            owd_p99_ms: b.owd_p99_ms,
                        }
                    })
                    .collect();
                match std::fs::read_to_string(&rt.send)
                    .ok()
                    .as_deref()
                    .and_then(parse_sent)
                {
                    Some(n) => series.sent = Some(n),
                    None => series.errors.push("the sender wrote no summary".into()),
                }
            }
            TrafficKind::Tcp { .. } => {
                let text = std::fs::read_to_string(&rt.recv).unwrap_or_default();
                match iperf_intervals(&text) {
                    Ok((start, iv)) => {
                        let spawned = rt.spawned.unwrap_or(0.0);
                        let base = start.map_or(spawned, |st| tl.at(st).max(spawned));
                        series.bins = iv
                            .iter()
                            .map(|(a, b, bytes)| Bin {
                                t0: base + a,
                                t1: base + b,
                                bytes: *bytes,
                                pkts: 0,
                                lost: 0,
                                owd_p99_ms: None,
                            })
                            .collect();
                    }
                    Err(e) => series.errors.push(format!("{} ({})", e, rt.recv.display())),
                }
            }
            TrafficKind::Ping { .. } => {
                let text = std::fs::read_to_string(&rt.recv).unwrap_or_default();
                series.pings = parse_ping_log(&text)
                    .iter()
                    .map(|e| PingSample {
                        t: tl.at(e.t_unix),
                        rtt_ms: e.rtt_ms,
                    })
                    .collect();
                if series.pings.is_empty() {
                    series.errors.push("no ping output".into());
                }
            }
        }
    }
}
