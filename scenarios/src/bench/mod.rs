//! Benchmarks: `bench datapath` (Linux bridge vs Open vSwitch userspace vs shg-switch on one
//! namespace topology), `bench flows` (flow-table scale: add-flows/dump-flows timing and
//! memory, shg-switch vs OVS), `bench qos` (latency under load on a shaped uplink: Linux
//! bridge + tc FIFO / HTB vs shg-switch egress queues) and `bench stall` (forwarding latency
//! while the control plane installs and dumps many flows).
//!
//! Owns: its namespaces (per-run prefix), the processes it starts (stopped by PID through the
//! [`Proc`] guards), an OVS instance with private directories, and its output directory. Must
//! never: depend on switch internals (it runs the `shg-switch` binary as a user would), stop a
//! process by name, or use addresses outside 198.18.0.0/15 and 2001:db8::/32.

pub mod datapath;
pub mod flows;
pub mod qos;
pub mod stall;
pub mod wake;

use crate::interrupt;
use crate::netns::{run, wait_until, Netns, Proc};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// One Open vSwitch instance (ovsdb-server + ovs-vswitchd, userspace datapath) with private
/// directories under `dir`, running in a namespace. Field order = drop order.
#[derive(Debug)]
pub struct Ovs {
    vswitchd: Proc,
    _ovsdb: Proc,
    dir: PathBuf,
}

impl Ovs {
    /// Starts OVS in `ns`. `userspace_tso` sets `other_config:userspace-tso-enable=true` in
    /// the database before ovs-vswitchd starts (it is read once at start: the same as setting
    /// it and restarting ovs-vswitchd); the log is checked for it.
    pub fn start(ns: &Netns, dir: &Path, userspace_tso: bool) -> io::Result<Ovs> {
        let _ = std::fs::remove_dir_all(dir);
        for sub in ["run", "log", "db", "etc"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let db = dir.join("db/conf.db");
        let mut c = ovs_cmd("ovsdb-tool", dir);
        c.arg("create")
            .arg(&db)
            .arg("/usr/share/openvswitch/vswitch.ovsschema");
        let out = c.output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ovsdb-tool create: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let sock = dir.join("run/db.sock");
        let mut c = ovs_cmd("ovsdb-server", dir);
        c.arg(&db)
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!(
                "--log-file={}",
                dir.join("log/ovsdb-server.log").display()
            ));
        let ovsdb = Proc::spawn_in(ns, &c, &dir.join("log/ovsdb-server.out"))?;
        if !wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            sock.exists()
        }) {
            return Err(io::Error::other(format!(
                "ovsdb-server did not start: {}",
                ovsdb.describe()
            )));
        }
        vsctl_in(dir, &["--no-wait", "init"])?;
        if userspace_tso {
            vsctl_in(
                dir,
                &[
                    "--no-wait",
                    "set",
                    "Open_vSwitch",
                    ".",
                    "other_config:userspace-tso-enable=true",
                ],
            )?;
        }
        let mut c = ovs_cmd("ovs-vswitchd", dir);
        let log = dir.join("log/ovs-vswitchd.log");
        c.arg(format!("unix:{}", sock.display()))
            .arg(format!(
                "--unixctl={}",
                dir.join("run/ovs-vswitchd.ctl").display()
            ))
            .arg(format!("--log-file={}", log.display()));
        let vswitchd = Proc::spawn_in(ns, &c, &dir.join("log/ovs-vswitchd.out"))?;
        let ovs = Ovs {
            vswitchd,
            _ovsdb: ovsdb,
            dir: dir.to_path_buf(),
        };
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            ovs.vsctl(&["show"]).is_ok() && ovs.appctl(&["version"]).is_ok()
        });
        if !ready {
            return Err(io::Error::other(format!(
                "ovs-vswitchd did not start: {}",
                ovs.vswitchd.describe()
            )));
        }
        if userspace_tso {
            let ok = wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
                std::fs::read_to_string(&log).is_ok_and(|s| {
                    s.contains("Userspace TCP Segmentation Offloading support enabled")
                })
            });
            if !ok {
                return Err(io::Error::other(format!(
                    "ovs-vswitchd did not enable userspace TSO (see {})",
                    log.display()
                )));
            }
        }
        Ok(ovs)
    }

    /// Adds netdev bridge `br` (OpenFlow 1.3, fail-mode secure, empty table) with `ports`
    /// numbered 1.., and a passive OpenFlow listener on 127.0.0.1:`port` for ovs-ofctl.
    /// Returns the `tcp:` target.
    pub fn add_bridge(&self, br: &str, ports: &[String], port: u16) -> io::Result<String> {
        let mut args: Vec<String> = [
            "add-br",
            br,
            "--",
            "set",
            "bridge",
            br,
            "datapath_type=netdev",
            "protocols=OpenFlow13",
            "fail_mode=secure",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        for (i, name) in ports.iter().enumerate() {
            args.extend([
                "--".into(),
                "add-port".into(),
                br.into(),
                name.clone(),
                "--".into(),
                "set".into(),
                "interface".into(),
                name.clone(),
                format!("ofport_request={}", i + 1),
            ]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.vsctl(&refs)?;
        self.vsctl(&["set-controller", br, &format!("ptcp:{port}:127.0.0.1")])?;
        Ok(format!("tcp:127.0.0.1:{port}"))
    }

    /// ovs-vswitchd's PID.
    pub fn pid(&self) -> u32 {
        self.vswitchd.pid()
    }

    /// `ovs-vsctl` against this instance.
    pub fn vsctl(&self, args: &[&str]) -> io::Result<String> {
        vsctl_in(&self.dir, args)
    }

    /// `ovs-appctl -t ovs-vswitchd` against this instance.
    pub fn appctl(&self, args: &[&str]) -> io::Result<String> {
        let mut c = ovs_cmd("ovs-appctl", &self.dir);
        c.arg("-t")
            .arg(self.dir.join("run/ovs-vswitchd.ctl"))
            .args(args);
        let out = c.output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ))
        }
    }

    /// Fails with the log tail when ovs-vswitchd has died.
    pub fn check_alive(&mut self) -> io::Result<()> {
        match self.vswitchd.exited() {
            Some(code) => Err(io::Error::other(format!(
                "ovs-vswitchd exited with {code}: {}",
                self.vswitchd.describe()
            ))),
            None => Ok(()),
        }
    }
}

/// A command for an OVS program with the instance's private directories.
fn ovs_cmd(prog: &str, dir: &Path) -> Command {
    let mut c = Command::new(prog);
    c.env("OVS_RUNDIR", dir.join("run"))
        .env("OVS_LOGDIR", dir.join("log"))
        .env("OVS_DBDIR", dir.join("db"))
        .env("OVS_SYSCONFDIR", dir.join("etc"))
        .env("OVS_PKGDATADIR", "/usr/share/openvswitch");
    c
}

fn vsctl_in(dir: &Path, args: &[&str]) -> io::Result<String> {
    let mut c = ovs_cmd("ovs-vsctl", dir);
    c.arg(format!("--db=unix:{}", dir.join("run/db.sock").display()))
        .arg("--timeout=10")
        .args(args);
    let out = c.output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "ovs-vsctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
