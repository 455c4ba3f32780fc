//! One private Open vSwitch instance (ovsdb-server + ovs-vswitchd, userspace datapath) running
//! in a test namespace, shared by the interop tests, the controller's e2e test and the benchmarks.
//!
//! Owns: a directory made afresh (`run/`, `log/`, `db/`, `etc/`: every OVS program it runs gets
//! these through `OVS_RUNDIR` etc., so nothing touches the system's OVS), the database created
//! there by `ovsdb-tool`, and the two daemons, started inside the caller's namespace as
//! [`Proc`]s (stopped by their PID on Drop; ovs-vswitchd before ovsdb-server). The order is
//! database first (`ovs-vsctl --no-wait init`, then any `Open_vSwitch .` `other_config` keys,
//! which ovs-vswitchd reads once at start), ovs-vswitchd second: [`Ovs::start`] does both, and
//! [`Ovs::start_db`] + [`Ovs::start_vswitchd`] are the two steps for callers that stop and
//! restart ovs-vswitchd. Bridges are the callers' business (each wants its own settings and
//! controllers): [`add_bridge_args`] builds the common netdev/OpenFlow 1.3/ports part for
//! [`Ovs::vsctl`]. Must never: run a daemon outside the given namespace, use the system's OVS
//! directories, or stop a process by name.

#![allow(dead_code, unreachable_pub)] // shared by several crates; each uses a subset

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::{run, run_prepared, wait_until, Netns, Proc};

/// The OVS schema the database is created from.
const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
/// Log lines shown by [`Ovs::describe`].
const LOG_TAIL: usize = 20;

/// ovsdb-server and (once started) ovs-vswitchd with private directories under one `dir`.
#[derive(Debug)]
pub struct Ovs {
    // Field order = drop order: vswitchd stops before its database.
    vswitchd: Option<Proc>,
    _ovsdb: Proc,
    dir: PathBuf,
    ns: String,
}

impl Ovs {
    /// [`Ovs::start_db`] then [`Ovs::start_vswitchd`]: a running instance without bridges.
    pub fn start(ns: &Netns, dir: &Path, other_config: &[(&str, &str)]) -> io::Result<Ovs> {
        let mut ovs = Ovs::start_db(ns, dir, other_config)?;
        ovs.start_vswitchd(ns)?;
        Ok(ovs)
    }

    /// Makes `dir` afresh, creates the database, starts ovsdb-server in `ns` and waits for its
    /// socket, runs `ovs-vsctl --no-wait init` and sets `other_config:KEY=VALUE` on the
    /// `Open_vSwitch` row for each pair (e.g. `("userspace-tso-enable", "true")`). ovs-vswitchd
    /// is not started.
    pub fn start_db(ns: &Netns, dir: &Path, other_config: &[(&str, &str)]) -> io::Result<Ovs> {
        let _ = std::fs::remove_dir_all(dir);
        for sub in ["run", "log", "db", "etc"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let db = dir.join("db/conf.db");
        run("ovsdb-tool", &["create", path_str(&db)?, SCHEMA])?;
        let sock = dir.join("run/db.sock");
        let mut c = ovs_cmd("ovsdb-server", dir);
        c.arg(&db)
            .arg(format!("--remote=punix:{}", sock.display()))
            .arg(format!(
                "--log-file={}",
                dir.join("log/ovsdb-server.log").display()
            ));
        let ovsdb = Proc::spawn_in(ns, &c, &dir.join("log/ovsdb-server.out"))?;
        if !wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            sock.exists()
        }) {
            return Err(io::Error::other(format!(
                "ovsdb-server did not start: {}",
                ovsdb.describe()
            )));
        }
        let ovs = Ovs {
            vswitchd: None,
            _ovsdb: ovsdb,
            dir: dir.to_path_buf(),
            ns: ns.name().to_string(),
        };
        ovs.vsctl(&["--no-wait", "init"])?;
        if !other_config.is_empty() {
            let pairs: Vec<String> = other_config
                .iter()
                .map(|(k, v)| format!("other_config:{k}={v}"))
                .collect();
            let mut args = vec!["--no-wait", "set", "Open_vSwitch", "."];
            args.extend(pairs.iter().map(String::as_str));
            ovs.vsctl(&args)?;
        }
        Ok(ovs)
    }

    /// Starts ovs-vswitchd in `ns` (the namespace given to [`Ovs::start_db`]) and waits (up to
    /// 10 s) until it answers both through the database and on its unixctl socket.
    pub fn start_vswitchd(&mut self, ns: &Netns) -> io::Result<()> {
        self.spawn_vswitchd(ns)?;
        let ready = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            self.vsctl(&["show"]).is_ok() && self.appctl(&["version"]).is_ok()
        });
        if ready {
            return Ok(());
        }
        self.check_alive()?;
        Err(io::Error::other(format!(
            "ovs-vswitchd did not start within 10 s: {}",
            self.describe()
        )))
    }

    /// Starts ovs-vswitchd in `ns` and returns at once, without waiting for it to be ready (for
    /// a caller timing a restart itself). An error if it is running or `ns` is not the
    /// instance's namespace; one that has exited is replaced.
    pub fn spawn_vswitchd(&mut self, ns: &Netns) -> io::Result<()> {
        if ns.name() != self.ns {
            return Err(io::Error::other(format!(
                "ovs-vswitchd must run in netns {}, not {}",
                self.ns,
                ns.name()
            )));
        }
        if let Some(p) = self.vswitchd.as_mut() {
            if p.exited().is_none() {
                return Err(io::Error::other(format!(
                    "ovs-vswitchd is already running (pid {})",
                    p.pid()
                )));
            }
        }
        let mut c = ovs_cmd("ovs-vswitchd", &self.dir);
        c.arg(format!("unix:{}", self.dir.join("run/db.sock").display()))
            .arg(format!("--unixctl={}", self.unixctl().display()))
            .arg(format!("--log-file={}", self.vswitchd_log().display()));
        self.vswitchd = Some(Proc::spawn_in(
            ns,
            &c,
            &self.dir.join("log/ovs-vswitchd.out"),
        )?);
        Ok(())
    }

    /// Stops ovs-vswitchd (SIGTERM by PID, grace, SIGKILL) and waits for it to end; the
    /// database keeps running. Nothing happens when it is not running.
    pub fn stop_vswitchd(&mut self) {
        if let Some(mut p) = self.vswitchd.take() {
            p.stop();
        }
    }

    /// ovs-vswitchd's PID; 0 when it is not running.
    pub fn pid(&self) -> u32 {
        self.vswitchd.as_ref().map_or(0, Proc::pid)
    }

    /// The instance's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// ovs-vswitchd's log file (`--log-file`).
    pub fn vswitchd_log(&self) -> PathBuf {
        self.dir.join("log/ovs-vswitchd.log")
    }

    /// `unix:<dir>/run/<br>.mgmt`: the bridge's OpenFlow management socket, for ovs-ofctl.
    pub fn mgmt(&self, br: &str) -> String {
        format!("unix:{}", self.dir.join(format!("run/{br}.mgmt")).display())
    }

    /// `ovs-vsctl ARGS` against this instance's database (10 s timeout); stdout on success.
    pub fn vsctl(&self, args: &[&str]) -> io::Result<String> {
        let mut c = ovs_cmd("ovs-vsctl", &self.dir);
        c.arg(format!(
            "--db=unix:{}",
            self.dir.join("run/db.sock").display()
        ))
        .arg("--timeout=10")
        .args(args);
        run_prepared(c, "ovs-vsctl", args)
    }

    /// `ovs-appctl -t <ovs-vswitchd's unixctl socket> ARGS`; stdout on success.
    pub fn appctl(&self, args: &[&str]) -> io::Result<String> {
        let mut c = ovs_cmd("ovs-appctl", &self.dir);
        c.arg("-t").arg(self.unixctl()).args(args);
        run_prepared(c, "ovs-appctl", args)
    }

    /// `ovs-ofctl ARGS` with this instance's directories (see [`Ovs::mgmt`]); stdout on success.
    pub fn ofctl(&self, args: &[&str]) -> io::Result<String> {
        let mut c = ovs_cmd("ovs-ofctl", &self.dir);
        c.args(args);
        run_prepared(c, "ovs-ofctl", args)
    }

    /// Fails with its output's tail when ovs-vswitchd has died or was stopped.
    pub fn check_alive(&mut self) -> io::Result<()> {
        let Some(p) = self.vswitchd.as_mut() else {
            return Err(io::Error::other("ovs-vswitchd is not running (stopped)"));
        };
        match p.exited() {
            Some(code) => Err(io::Error::other(format!(
                "ovs-vswitchd exited with {code}: {}",
                p.describe()
            ))),
            None => Ok(()),
        }
    }

    /// For failure messages: the tail of ovs-vswitchd's log, or, when that is still empty
    /// (it failed before opening it), its captured output.
    pub fn describe(&self) -> String {
        let log = std::fs::read_to_string(self.vswitchd_log()).unwrap_or_default();
        if log.trim().is_empty() {
            if let Some(p) = &self.vswitchd {
                return format!("ovs-vswitchd (netns {}): {}", self.ns, p.describe());
            }
        }
        let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL).collect();
        format!(
            "ovs-vswitchd (netns {}) log {}:\n    {}",
            self.ns,
            self.vswitchd_log().display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
        )
    }

    fn unixctl(&self) -> PathBuf {
        self.dir.join("run/ovs-vswitchd.ctl")
    }
}

/// `ovs-vsctl` arguments adding the netdev (userspace datapath) bridge `br`, OpenFlow 1.3 only,
/// with `settings` on its row (e.g. `fail_mode=secure`) and, for each `(number, interface)` of
/// `ports`, a port with that OpenFlow number. Callers may append more `--` commands to the same
/// transaction, then run it with [`Ovs::vsctl`].
pub fn add_bridge_args(br: &str, settings: &[&str], ports: &[(u16, &str)]) -> Vec<String> {
    let mut args: Vec<String> = [
        "add-br",
        br,
        "--",
        "set",
        "bridge",
        br,
        "datapath_type=netdev",
        "protocols=OpenFlow13",
    ]
    .iter()
    .chain(settings)
    .map(ToString::to_string)
    .collect();
    for (num, name) in ports {
        args.extend(
            ["--", "add-port", br, name, "--", "set", "interface", name]
                .iter()
                .map(ToString::to_string),
        );
        args.push(format!("ofport_request={num}"));
    }
    args
}

/// A command for an OVS program whose run, log, database and configuration directories are
/// `dir`'s `run/`, `log/`, `db/` and `etc/`.
pub fn ovs_cmd(prog: &str, dir: &Path) -> Command {
    let mut c = Command::new(prog);
    c.env("OVS_RUNDIR", dir.join("run"))
        .env("OVS_LOGDIR", dir.join("log"))
        .env("OVS_DBDIR", dir.join("db"))
        .env("OVS_SYSCONFDIR", dir.join("etc"))
        .env("OVS_PKGDATADIR", "/usr/share/openvswitch");
    c
}

/// A path as UTF-8, for command arguments taken as `&str`.
fn path_str(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::other(format!("non-UTF-8 path {}", p.display())))
}
