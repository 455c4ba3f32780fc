//! The interop topology and the switches that can run in it.
//!
//! [`Star`]: hosts h1, h2, h3 (namespaces, 198.18.0.{1,2,3}/24) each with a veth to the switch
//! namespace `sw`, whose three veth ends become OpenFlow ports 1-3. The switch under test is
//! shg-switch, or OVS userspace when `SHG_INTEROP_SWITCH=ovs` (to check the tests themselves
//! against the reference switch, and for the differential tester run).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::netns::{prefix, run, wait_until, Netns, Proc, Scratch, Veth};
use crate::ovs::add_bridge_args;
pub(crate) use crate::ovs::ovs_cmd;

/// Repository root (this crate is `switch/`).
pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// tests/interop/ (the Python apps and launcher).
pub(crate) fn interop_dir() -> PathBuf {
    repo_root().join("tests").join("interop")
}

/// A venv made by tests/setup.sh: `$var` if set, else `$HOME/.cache/shg/<name>`.
pub(crate) fn setup_venv(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/shg")
            .join(name),
    }
}

/// The os-ken venv made by tests/setup.sh: `$SHG_VENV`, else `$HOME/.cache/shg/venv`.
pub(crate) fn venv() -> io::Result<PathBuf> {
    let dir = setup_venv("SHG_VENV", "venv");
    if dir.join("bin/python").exists() {
        Ok(dir)
    } else {
        Err(io::Error::other(format!(
            "os-ken venv not found at {} (run tests/setup.sh, or set SHG_VENV)",
            dir.display()
        )))
    }
}

/// site-packages/os_ken of the venv.
pub(crate) fn osken_pkg_dir() -> io::Result<PathBuf> {
    let py = venv()?.join("bin/python");
    let out = run(
        py.to_str().unwrap_or("python3"),
        &[
            "-c",
            "import os, os_ken; print(os.path.dirname(os_ken.__file__))",
        ],
    )?;
    Ok(PathBuf::from(out.trim()))
}

/// Which switch is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// shg-switch (this crate's binary).
    Shg,
    /// Open vSwitch userspace (netdev) datapath, the reference.
    Ovs,
}

impl Target {
    /// `SHG_INTEROP_SWITCH=ovs` selects OVS; anything else (or unset) shg-switch.
    pub(crate) fn from_env() -> Target {
        match std::env::var("SHG_INTEROP_SWITCH").as_deref() {
            Ok("ovs") => Target::Ovs,
            _ => Target::Shg,
        }
    }
}

/// TLS files for a switch's controller connection.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) key: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) ca: PathBuf,
}

/// What the switch is told: its datapath id, ports, controllers and listeners.
#[derive(Debug, Clone)]
pub(crate) struct SwitchSpec {
    pub(crate) dpid: u64,
    /// (OpenFlow port number, interface name in the switch namespace)
    pub(crate) ports: Vec<(u16, String)>,
    /// `tcp:IP:PORT` or `tls:IP:PORT`
    pub(crate) controllers: Vec<String>,
    /// `ptcp:PORT:IP`
    pub(crate) listen: Vec<String>,
    pub(crate) tls: Option<TlsFiles>,
    /// `secure` or `standalone`
    pub(crate) fail_mode: &'static str,
    /// More shg-switch options.
    pub(crate) extra: Vec<String>,
}

impl SwitchSpec {
    /// dpid, ports 1..n on the given interfaces, fail-mode secure, nothing else.
    pub(crate) fn new(dpid: u64, ifaces: &[String]) -> SwitchSpec {
        let ports = ifaces
            .iter()
            .enumerate()
            .map(|(i, n)| (u16::try_from(i + 1).unwrap_or(u16::MAX), n.clone()))
            .collect();
        SwitchSpec {
            dpid,
            ports,
            controllers: vec![],
            listen: vec![],
            tls: None,
            fail_mode: "secure",
            extra: Vec::new(),
        }
    }
}

/// A running switch (its processes stop on Drop).
#[derive(Debug)]
pub(crate) enum Switch {
    Shg(Proc),
    Ovs(Ovs),
}

impl Switch {
    /// Starts the `target` switch in `ns` as `spec` says; logs go into `scratch`.
    pub(crate) fn start(
        target: Target,
        ns: &Netns,
        spec: &SwitchSpec,
        dir: &Path,
    ) -> io::Result<Switch> {
        match target {
            Target::Shg => start_shg(ns, spec, dir).map(Switch::Shg),
            Target::Ovs => {
                let ovs = Ovs::start(ns, dir)?;
                ovs.add_bridge("br0", spec)?;
                Ok(Switch::Ovs(ovs))
            }
        }
    }

    /// Log excerpt for failure messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Switch::Shg(p) => p.describe(),
            Switch::Ovs(o) => o.describe(),
        }
    }

    /// Fails (with the switch's log) if the switch process has died.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        match self {
            Switch::Shg(p) => match p.exited() {
                Some(code) => Err(format!("shg-switch exited with {code}: {}", p.describe())),
                None => Ok(()),
            },
            Switch::Ovs(o) => o.check_alive().map_err(|e| e.to_string()),
        }
    }
}

/// The shg-switch binary built by cargo for this test.
pub(crate) fn shg_binary() -> &'static str {
    env!("CARGO_BIN_EXE_shg-switch")
}

fn start_shg(ns: &Netns, spec: &SwitchSpec, dir: &Path) -> io::Result<Proc> {
    let mut cmd = Command::new(shg_binary());
    cmd.arg("--datapath-id").arg(format!("{:016x}", spec.dpid));
    for (num, name) in &spec.ports {
        cmd.arg("--port").arg(format!("{num}={name}"));
    }
    for c in &spec.controllers {
        cmd.arg("--controller").arg(c);
    }
    for l in &spec.listen {
        cmd.arg("--listen").arg(l);
    }
    cmd.arg("--fail-mode").arg(spec.fail_mode);
    cmd.arg("--ctl")
        .arg(dir.join(format!("shg-{:x}.ctl", spec.dpid)));
    if let Some(tls) = &spec.tls {
        cmd.arg("--tls-key")
            .arg(&tls.key)
            .arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-ca")
            .arg(&tls.ca);
    }
    cmd.args(&spec.extra);
    let level = std::env::var("SHG_INTEROP_LOG").unwrap_or_else(|_| "debug".into());
    cmd.arg("--log").arg(level);
    cmd.env("RUST_BACKTRACE", "1").env("NO_COLOR", "1");
    Proc::spawn_in(
        ns,
        &cmd,
        &dir.join(format!("shg-switch-{:x}.log", spec.dpid)),
    )
}

/// OVS userspace as an interop switch: the shared instance ([`crate::ovs::Ovs`]) under
/// `<base>/ovs`, with bridges set up from a [`SwitchSpec`].
#[derive(Debug)]
pub(crate) struct Ovs(crate::ovs::Ovs);

impl Ovs {
    /// Starts OVS in `ns` with its state under `base/ovs` (made afresh).
    pub(crate) fn start(ns: &Netns, base: &Path) -> io::Result<Ovs> {
        crate::ovs::Ovs::start(ns, &base.join("ovs"), &[]).map(Ovs)
    }

    /// Adds a netdev bridge as `spec` says (OpenFlow 1.3 only, fast controller reconnect).
    pub(crate) fn add_bridge(&self, br: &str, spec: &SwitchSpec) -> io::Result<()> {
        let dpid = format!("other-config:datapath-id={:016x}", spec.dpid);
        let fail = format!("fail_mode={}", spec.fail_mode);
        let ports: Vec<(u16, &str)> = spec.ports.iter().map(|(n, i)| (*n, i.as_str())).collect();
        let args = add_bridge_args(br, &[&fail, &dpid], &ports);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.0.vsctl(&refs)?;
        if let Some(tls) = &spec.tls {
            self.0.vsctl(&[
                "set-ssl",
                path_str(&tls.key)?,
                path_str(&tls.cert)?,
                path_str(&tls.ca)?,
            ])?;
        }
        let mut targets: Vec<String> = spec
            .controllers
            .iter()
            .map(|c| {
                c.strip_prefix("tls:")
                    .map_or_else(|| c.clone(), |rest| format!("ssl:{rest}"))
            })
            .collect();
        targets.extend(spec.listen.iter().cloned());
        if !targets.is_empty() {
            let mut a = vec!["set-controller", br];
            a.extend(targets.iter().map(String::as_str));
            self.0.vsctl(&a)?;
            // Reconnect fast (default max_backoff is 8 s).
            let ids = self
                .0
                .vsctl(&["--bare", "--columns=_uuid", "find", "controller"])?;
            for id in ids.split_whitespace() {
                self.0
                    .vsctl(&["set", "controller", id, "max_backoff=1000"])?;
            }
        }
        Ok(())
    }

    /// ovs-vswitchd's log tail.
    pub(crate) fn describe(&self) -> String {
        self.0.describe()
    }

    /// Fails (with ovs-vswitchd's output) when it has died.
    pub(crate) fn check_alive(&mut self) -> io::Result<()> {
        self.0.check_alive()
    }
}

fn path_str(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::other(format!("non-UTF-8 path {}", p.display())))
}

/// Three hosts on one switch namespace. Field order = drop order: veths, then namespaces
/// (switch last), then the scratch directory. Processes started by a test are locals declared
/// after the `Star`, so they stop first.
#[derive(Debug)]
pub(crate) struct Star {
    _veths: Vec<Veth>,
    pub(crate) hosts: Vec<Netns>,
    /// Switch-side interface names: ports 1, 2, 3.
    pub(crate) sw_ports: Vec<String>,
    pub(crate) sw: Netns,
    pub(crate) scratch: Scratch,
}

impl Star {
    /// Builds the topology: `<p>sw`, `<p>h1..3`, veths `<p>h<i>` (host side, address
    /// 198.18.0.i/24) and `<p>s<i>` (switch side, no address).
    pub(crate) fn new(test: &str) -> io::Result<Star> {
        let p = prefix();
        let scratch = Scratch::new(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            &format!("interop-{test}-{p}"),
        )?;
        let sw = Netns::new(&format!("{p}sw"))?;
        let mut hosts = Vec::new();
        let mut veths = Vec::new();
        let mut sw_ports = Vec::new();
        for i in 1..=3 {
            let h = Netns::new(&format!("{p}h{i}"))?;
            let hif = format!("{p}h{i}");
            let sif = format!("{p}s{i}");
            veths.push(Veth::new(&hif, &h, &sif, &sw)?);
            h.add_addr(&hif, &format!("198.18.0.{i}/24"))?;
            hosts.push(h);
            sw_ports.push(sif);
        }
        // Every switch-side link must have carrier before a switch starts on them: a port
        // that comes up during the controller handshake is announced by a PORT_STATUS that
        // Faucet drops while its datapath is not up yet (seen once: port 1 never configured).
        for sif in &sw_ports {
            let up = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                run("ip", &["-n", sw.name(), "-o", "link", "show", sif])
                    .is_ok_and(|s| s.contains("state UP"))
            });
            if !up {
                return Err(io::Error::other(format!("{sif}: no carrier after 5 s")));
            }
        }
        Ok(Star {
            _veths: veths,
            hosts,
            sw_ports,
            sw,
            scratch,
        })
    }

    /// Host i's address (1-based).
    pub(crate) fn ip(i: usize) -> String {
        format!("198.18.0.{i}")
    }

    /// Pings every host pair in both directions; Err lists the pairs that never got a reply.
    pub(crate) fn ping_all(&self, timeout: Duration) -> Result<(), String> {
        let mut failed = Vec::new();
        for a in 0..3 {
            for b in 0..3 {
                if a != b && !self.hosts[a].ping_until(&Star::ip(b + 1), timeout) {
                    failed.push(format!("h{} -> h{}", a + 1, b + 1));
                }
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("no ping reply for {}", failed.join(", ")))
        }
    }
}
