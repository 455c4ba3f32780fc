//! Benchmarks: `bench datapath` (Linux bridge vs Open vSwitch userspace vs shg-switch on one
//! namespace topology), `bench flows` (flow-table scale: add-flows/dump-flows timing and
//! memory, shg-switch vs OVS), `bench qos` (latency under load on a shaped uplink: Linux
//! bridge + tc FIFO / HTB vs shg-switch egress queues) and `bench stall` (forwarding latency
//! while the control plane installs and dumps many flows).
//!
//! Owns: its namespaces (per-run prefix), the processes it starts (stopped by PID through the
//! [`Proc`] guards), an OVS instance with private directories, and its output directory. Must
//! never: depend on switch internals (it runs the `shg-switch` binary as a user would; the one
//! exception is [`forward`], the I/O reference, which is built from the switch's port backend
//! on purpose), stop a process by name, or use addresses outside 198.18.0.0/15 and
//! 2001:db8::/32.

pub mod answer;
pub mod datapath;
pub mod flows;
pub mod forward;
pub mod qos;
pub mod stall;
pub mod wake;

use crate::interrupt;
use crate::netns::{run, wait_for_file_text, wait_until, Netns, Proc};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs this executable (`shg-scenario`) with `args` in `ns`, its output in `log`, and waits
/// until the log says `ready` (at most 5 s); `what` names it in the error. For the references
/// the benchmarks run as subcommands (`bench forward`, `bench answer`).
pub(crate) fn start_self(
    ns: &Netns,
    args: &[&str],
    log: &Path,
    ready: &str,
    what: &str,
) -> io::Result<Proc> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(args);
    let mut proc = Proc::spawn_in(ns, &cmd, log)?;
    if !wait_for_file_text(log, ready, Duration::from_secs(5)) || proc.exited().is_some() {
        return Err(io::Error::other(format!(
            "{what} did not start: {}",
            proc.describe()
        )));
    }
    Ok(proc)
}

/// Everything a benchmark needs from the machine, checked before anything is created.
#[derive(Debug, Clone)]
pub struct Env {
    /// The shg-switch binary.
    pub switch_bin: PathBuf,
    /// The cargo target directory (for the default output directory).
    pub target_dir: PathBuf,
}

impl Env {
    /// Checks root, the tools, and finds shg-switch: `explicit`, else `$SHG_SWITCH`, else next
    /// to this executable (`target/release/shg-switch` when run as `target/release/shg-scenario`).
    pub fn detect(explicit: Option<PathBuf>) -> io::Result<Env> {
        let uid = run("id", &["-u"]).unwrap_or_default();
        if uid.trim() != "0" {
            return Err(io::Error::other(
                "needs root (network namespaces, veths, raw sockets)",
            ));
        }
        let tools = [
            ("ip", "iproute2"),
            ("iperf3", "iperf3"),
            ("ping", "iputils-ping"),
            ("ovs-vswitchd", "openvswitch-switch"),
            ("ovsdb-server", "openvswitch-switch"),
            ("ovs-ofctl", "openvswitch-common"),
            ("ovs-vsctl", "openvswitch-switch"),
            ("getconf", "libc-bin"),
            ("date", "coreutils"),
        ];
        let missing: Vec<String> = tools
            .iter()
            .filter(|(t, _)| run("sh", &["-c", &format!("command -v {t}")]).is_err())
            .map(|(t, p)| format!("{t} ({p})"))
            .collect();
        if !missing.is_empty() {
            return Err(io::Error::other(format!(
                "missing tools: {} (tests/setup.sh installs them)",
                missing.join(", ")
            )));
        }
        let exe = std::env::current_exe()?;
        let exe_dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        let switch_bin = explicit
            .or_else(|| std::env::var_os("SHG_SWITCH").map(PathBuf::from))
            .unwrap_or_else(|| exe_dir.join("shg-switch"));
        if !switch_bin.is_file() {
            return Err(io::Error::other(format!(
                "{} not found: `cargo build --release -p shg-switch -p shg-scenario` \
                 (or --switch PATH / SHG_SWITCH)",
                switch_bin.display()
            )));
        }
        // target/<profile>/shg-scenario -> target
        let target_dir = exe_dir
            .parent()
            .map_or_else(|| PathBuf::from("target"), Path::to_path_buf);
        Ok(Env {
            switch_bin,
            target_dir,
        })
    }

    /// `--out DIR`, else `<target>/bench/<kind>-<UTC timestamp>`; created.
    pub fn out_dir(&self, explicit: Option<PathBuf>, kind: &str) -> io::Result<PathBuf> {
        let dir = explicit.unwrap_or_else(|| {
            let ts = run("date", &["-u", "+%Y%m%d-%H%M%S"]).unwrap_or_default();
            self.target_dir
                .join("bench")
                .join(format!("{kind}-{}", ts.trim()))
        });
        std::fs::create_dir_all(&dir)
            .map_err(|e| io::Error::other(format!("create {}: {e}", dir.display())))?;
        Ok(dir)
    }
}

/// One line about the machine: CPU model, cores, memory, kernel, load.
pub fn machine_note() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| crate::procfs::parse_meminfo_total_kb(&m))
        .map_or(String::from("?"), |kb| {
            #[allow(clippy::cast_precision_loss, reason = "memory size")]
            let g = kb as f64 / 1024.0 / 1024.0;
            format!("{g:.0}")
        });
    let kernel = run("uname", &["-r"]).unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1 = load.split_whitespace().next().unwrap_or("?");
    format!(
        "{model}, {} cores, {mem_gib} GiB, kernel {}, load {load1} at start",
        crate::procfs::n_cpus(),
        kernel.trim()
    )
}

/// Appends the "Errors:" section of a results.md, one `- ` line per error; nothing when there
/// are none.
pub fn errors_section(s: &mut String, errors: impl IntoIterator<Item = String>) {
    let mut errors = errors.into_iter().peekable();
    if errors.peek().is_some() {
        s.push_str("\nErrors:\n\n");
        for e in errors {
            s.push_str("- ");
            s.push_str(&e);
            s.push('\n');
        }
    }
}

/// UTC date and time, `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    run("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Runs `args` in `ns` to completion, at most `timeout` (then it is killed by PID), waking on a
/// signal. stdout and stderr go to `log`. Returns the exit code and the wall time.
pub fn run_bounded(
    ns: &Netns,
    args: &[&str],
    log: &Path,
    timeout: Duration,
) -> io::Result<(i32, Duration)> {
    let (prog, rest) = args
        .split_first()
        .ok_or_else(|| io::Error::other("empty command"))?;
    let mut cmd = Command::new(prog);
    cmd.args(rest);
    let t0 = Instant::now();
    let mut p = Proc::spawn_in(ns, &cmd, log)?;
    loop {
        if let Some(code) = p.exited() {
            return Ok((code, t0.elapsed()));
        }
        if interrupt::interrupted() {
            p.stop();
            interrupt::check()?;
        }
        if t0.elapsed() > timeout {
            p.stop();
            return Err(io::Error::other(format!(
                "`{}` did not finish within {timeout:?}",
                args.join(" ")
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ovs-ofctl -O OpenFlow13 ARGS` in `ns`, bounded; Ok((stdout+stderr, wall time)) on exit 0.
pub fn ofctl(
    ns: &Netns,
    args: &[&str],
    log: &Path,
    timeout: Duration,
) -> io::Result<(String, Duration)> {
    let _ = std::fs::remove_file(log);
    let mut full = vec!["ovs-ofctl", "-O", "OpenFlow13"];
    full.extend_from_slice(args);
    let (code, took) = run_bounded(ns, &full, log, timeout)?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if code != 0 {
        let head: String = text.chars().take(600).collect();
        return Err(io::Error::other(format!(
            "`{}` exited {code}: {head}",
            full.join(" ")
        )));
    }
    Ok((text, took))
}

/// Number of flow lines in `ovs-ofctl dump-flows` output.
pub fn count_dumped_flows(text: &str) -> usize {
    text.lines().filter(|l| l.contains("actions=")).count()
}

/// A running shg-switch (stopped by PID on Drop).
#[derive(Debug)]
pub struct Shg {
    proc: Proc,
    /// `tcp:127.0.0.1:PORT` for ovs-ofctl, inside the switch namespace.
    pub target: String,
}

impl Shg {
    /// Starts shg-switch in `ns` with `ports` (numbered 1..), fail-mode secure (empty tables:
    /// nothing forwards until flows are added), listening for ovs-ofctl on 127.0.0.1:`port`.
    pub fn start(
        env: &Env,
        ns: &Netns,
        name: &str,
        ports: &[String],
        port: u16,
        dir: &Path,
    ) -> io::Result<Shg> {
        Shg::start_with_args(env, ns, name, ports, port, dir, &[])
    }

    /// [`Shg::start`] with more command-line arguments.
    pub fn start_with_args(
        env: &Env,
        ns: &Netns,
        name: &str,
        ports: &[String],
        port: u16,
        dir: &Path,
        args: &[&str],
    ) -> io::Result<Shg> {
        let mut first: Vec<String> = Vec::new();
        for p in ports {
            first.extend(["--port".to_string(), p.clone()]);
        }
        first.extend(args.iter().map(|a| (*a).to_string()));
        Shg::launch(env, ns, name, &first, port, dir, "shg-switch")
    }

    /// Starts shg-switch in `ns` from the TOML file `config` (ports, their QoS), with the
    /// listener, fail mode (secure), control socket (`DIR/NAME.ctl`) and log level of
    /// [`Shg::start`] given as flags (which override the file's keys).
    pub fn start_with_config(
        env: &Env,
        ns: &Netns,
        name: &str,
        config: &Path,
        port: u16,
        dir: &Path,
    ) -> io::Result<Shg> {
        let first = [
            "--config".to_string(),
            config.to_string_lossy().into_owned(),
        ];
        let what = format!("shg-switch --config {}", config.display());
        Shg::launch(env, ns, name, &first, port, dir, &what)
    }

    /// Runs shg-switch in `ns` with `first` then the listener on 127.0.0.1:`port`, fail mode
    /// secure, control socket `DIR/NAME.ctl` and log level warn; waits until it listens.
    /// `what` names it in the error.
    fn launch(
        env: &Env,
        ns: &Netns,
        name: &str,
        first: &[String],
        port: u16,
        dir: &Path,
        what: &str,
    ) -> io::Result<Shg> {
        let mut cmd = Command::new(&env.switch_bin);
        cmd.args(first)
            .arg("--listen")
            .arg(format!("ptcp:{port}:127.0.0.1"))
            .arg("--fail-mode")
            .arg("secure")
            .arg("--ctl")
            .arg(dir.join(format!("{name}.ctl")))
            .arg("--log")
            .arg("warn");
        cmd.env("NO_COLOR", "1");
        let mut proc = Proc::spawn_in(ns, &cmd, &dir.join(format!("{name}.log")))?;
        let up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            ns.tcp_listening(port) || interrupt::interrupted()
        });
        interrupt::check()?;
        if !up || proc.exited().is_some() {
            return Err(io::Error::other(format!(
                "{what} did not start: {}",
                proc.describe()
            )));
        }
        Ok(Shg {
            proc,
            target: format!("tcp:127.0.0.1:{port}"),
        })
    }

    /// The switch process's PID.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Fails with the log when the process has died.
    pub fn check_alive(&mut self) -> io::Result<()> {
        match self.proc.exited() {
            Some(code) => Err(io::Error::other(format!(
                "shg-switch exited with {code}: {}",
                self.proc.describe()
            ))),
            None => Ok(()),
        }
    }
}

/// Open vSwitch as the benchmarks run it: the shared instance ([`crate::ovs::Ovs`]) with
/// private directories under `dir`, optionally with userspace TSO, and a bench bridge.
#[derive(Debug)]
pub struct Ovs(crate::ovs::Ovs);

/// ovs-vswitchd's log line confirming `other_config:userspace-tso-enable=true`.
const TSO_ENABLED: &str = "Userspace TCP Segmentation Offloading support enabled";

impl Ovs {
    /// Starts OVS in `ns`. `userspace_tso` sets `other_config:userspace-tso-enable=true` in
    /// the database before ovs-vswitchd starts (it is read once at start: the same as setting
    /// it and restarting ovs-vswitchd); the log is checked for it.
    pub fn start(ns: &Netns, dir: &Path, userspace_tso: bool) -> io::Result<Ovs> {
        let other_config: &[(&str, &str)] = if userspace_tso {
            &[("userspace-tso-enable", "true")]
        } else {
            &[]
        };
        let ovs = crate::ovs::Ovs::start(ns, dir, other_config)?;
        let log = ovs.vswitchd_log();
        if userspace_tso && !wait_for_file_text(&log, TSO_ENABLED, Duration::from_secs(5)) {
            return Err(io::Error::other(format!(
                "ovs-vswitchd did not enable userspace TSO (see {})",
                log.display()
            )));
        }
        Ok(Ovs(ovs))
    }

    /// Adds netdev bridge `br` (OpenFlow 1.3, fail-mode secure, empty table) with `ports`
    /// numbered 1.., and a passive OpenFlow listener on 127.0.0.1:`port` for ovs-ofctl.
    /// Returns the `tcp:` target.
    pub fn add_bridge(&self, br: &str, ports: &[String], port: u16) -> io::Result<String> {
        let ports: Vec<(u16, &str)> = (1..).zip(ports).map(|(n, i)| (n, i.as_str())).collect();
        let args = crate::ovs::add_bridge_args(br, &["fail_mode=secure"], &ports);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.0.vsctl(&refs)?;
        self.0
            .vsctl(&["set-controller", br, &format!("ptcp:{port}:127.0.0.1")])?;
        Ok(format!("tcp:127.0.0.1:{port}"))
    }

    /// ovs-vswitchd's PID.
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Fails with the log tail when ovs-vswitchd has died.
    pub fn check_alive(&mut self) -> io::Result<()> {
        self.0.check_alive()
    }
}
