//! Test harness for real-kernel topologies: network namespaces, veth pairs, addresses and
//! processes, each owned by a guard whose `Drop` tears down exactly what it created.
//!
//! Owns: names with a per-run prefix (`shg<pid><letter>`, so parallel runs and parallel tests
//! never collide), processes started inside a namespace (stopped by their PID only: SIGTERM,
//! then SIGKILL), and namespaces (their remaining processes killed by PID, then `ip netns del`,
//! which also removes the veth ends inside). Must never: touch the default namespace's routes or
//! addresses, attach anything to a real NIC, use addresses outside 198.18.0.0/15 and
//! 2001:db8::/32, or stop a process by name.
//!
//! Every helper shells out to `ip` (iproute2); a failing command returns an error carrying the
//! command line and its stderr.

#![allow(dead_code, unreachable_pub)] // shared by several test crates; each uses a subset

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Returns true (and prints why) when the caller must skip: real-kernel tests need root
/// (namespaces, veths, raw sockets) and a kernel with network namespaces and veth.
pub fn skip_unless_root(test: &str) -> bool {
    let uid = run("id", &["-u"])
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        eprintln!(
            "SKIP {test}: needs root (network namespaces, veth pairs, AF_PACKET); uid is {uid:?}"
        );
        return true;
    }
    if !Path::new("/proc/self/ns/net").exists() {
        eprintln!("SKIP {test}: kernel has no network namespaces (/proc/self/ns/net missing)");
        return true;
    }
    if run("ip", &["-V"]).is_err() {
        eprintln!("SKIP {test}: iproute2 `ip` not found (run tests/setup.sh)");
        return true;
    }
    false
}

/// A per-topology name prefix: `shg<pid><letter>` (at most 11 characters), leaving at least 4
/// characters for an interface suffix within IFNAMSIZ (15).
pub fn prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let letters = b"abcdefghijklmnopqrstuvwxyz";
    let idx = usize::try_from(n).unwrap_or(0) % letters.len();
    let pid = std::process::id() % 10_000_000;
    format!("shg{pid}{}", char::from(letters[idx]))
}

/// Runs a command to completion; Ok(stdout) when it exits 0, else an error with its stderr.
pub fn run(prog: &str, args: &[&str]) -> io::Result<String> {
    let mut c = Command::new(prog);
    c.args(args);
    run_prepared(c, prog, args)
}

/// [`run`] for a command already built (environment, leading options): `prog` and `args`
/// name it in the error.
pub fn run_prepared(mut c: Command, prog: &str, args: &[&str]) -> io::Result<String> {
    let out = c.stdin(Stdio::null()).output()?;
    check(prog, args, out)
}

fn check(prog: &str, args: &[&str], out: Output) -> io::Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "`{prog} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

/// Polls `cond` every `every` until it returns true or `timeout` passes; returns its last value.
pub fn wait_until(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Waits until a file contains `needle` (e.g. a daemon's log line saying it is ready).
pub fn wait_for_file_text(path: &Path, needle: &str, timeout: Duration) -> bool {
    wait_until(timeout, Duration::from_millis(100), || {
        std::fs::read_to_string(path).is_ok_and(|s| s.contains(needle))
    })
}

/// A network namespace named `<prefix><tag>`. Loopback is up; IPv6 is disabled by default on
/// interfaces created in it afterwards (no router solicitations or DAD polluting counters),
/// unless created with [`Netns::new_with_ipv6`].
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// `ip netns add NAME`, loopback up, IPv6 off for new interfaces.
    pub fn new(name: &str) -> io::Result<Netns> {
        let ns = Netns::new_with_ipv6(name)?;
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        ns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])?;
        Ok(ns)
    }

    /// `ip netns add NAME`, loopback up; IPv6 left as the kernel sets it.
    pub fn new_with_ipv6(name: &str) -> io::Result<Netns> {
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as given to `ip netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip netns exec NAME args...` to completion and returns its raw output.
    pub fn exec(&self, args: &[&str]) -> io::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .output()
    }

    /// Like [`Netns::exec`], but an error unless the command exits 0; returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> io::Result<String> {
        let out = self.exec(args)?;
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        check("ip", &full, out)
    }

    /// `ip -n NAME addr add CIDR dev IF` after checking the address is in the test ranges.
    pub fn add_addr(&self, ifname: &str, cidr: &str) -> io::Result<()> {
        if !in_test_range(cidr) {
            return Err(io::Error::other(format!(
                "{cidr}: test addresses must be in 198.18.0.0/15 or 2001:db8::/32"
            )));
        }
        run(
            "ip",
            &["-n", &self.name, "addr", "add", cidr, "dev", ifname],
        )
        .map(drop)
    }

    /// `ip -n NAME link set IF up`.
    pub fn link_up(&self, ifname: &str) -> io::Result<()> {
        run("ip", &["-n", &self.name, "link", "set", ifname, "up"]).map(drop)
    }

    /// The MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> io::Result<String> {
        let out = run("ip", &["-n", &self.name, "-o", "link", "show", ifname])?;
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_string)
            .ok_or_else(|| io::Error::other(format!("no MAC for {ifname} in {out}")))
    }

    /// Whether something listens on TCP `port` inside this namespace.
    pub fn tcp_listening(&self, port: u16) -> bool {
        let filter = format!("sport = :{port}");
        self.exec_ok(&["ss", "-Hltn", &filter])
            .is_ok_and(|s| !s.trim().is_empty())
    }

    /// Whether an established TCP connection to `port` exists inside this namespace.
    pub fn tcp_established_to(&self, port: u16) -> bool {
        let filter = format!("dport = :{port}");
        self.exec_ok(&["ss", "-Htn", "state", "established", &filter])
            .is_ok_and(|s| !s.trim().is_empty())
    }

    /// One `ping -c COUNT` from this namespace; true when at least one reply came back.
    pub fn ping(&self, dst: &str, count: u32) -> bool {
        let count = count.to_string();
        self.exec(&[
            "ping", "-n", "-q", "-c", &count, "-i", "0.2", "-W", "1", dst,
        ])
        .is_ok_and(|o| o.status.success())
    }

    /// Pings until one succeeds or `timeout` passes (the first packets of a flow may be lost
    /// while a controller installs flows).
    pub fn ping_until(&self, dst: &str, timeout: Duration) -> bool {
        wait_until(timeout, Duration::from_millis(200), || self.ping(dst, 1))
    }

    /// PIDs of processes whose network namespace is this one (`ip netns pids`).
    pub fn pids(&self) -> Vec<u32> {
        run("ip", &["netns", "pids", &self.name])
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still inside (a daemon forked by something we started): by PID only.
        for pid in self.pids() {
            let _ = run("kill", &["-KILL", &pid.to_string()]);
        }
        let _ = wait_until(Duration::from_secs(2), Duration::from_millis(50), || {
            self.pids().is_empty()
        });
        if let Err(e) = run("ip", &["netns", "del", &self.name]) {
            eprintln!("netns teardown: {e}");
        }
    }
}

/// Whether an address (with optional /len) lies in 198.18.0.0/15 or 2001:db8::/32.
pub fn in_test_range(cidr: &str) -> bool {
    let addr = cidr.split('/').next().unwrap_or("");
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => {
            let o = a.octets();
            o[0] == 198 && (o[1] == 18 || o[1] == 19)
        }
        Ok(std::net::IpAddr::V6(a)) => {
            let s = a.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
        Err(_) => false,
    }
}

/// A veth pair whose ends live in namespaces from the start (`ip link add A netns NS1 type veth
/// peer name B netns NS2`): nothing appears in the default namespace. Drop deletes the pair if
/// its namespace still exists (deleting a namespace deletes it too). Both ends are set up.
#[derive(Debug)]
pub struct Veth {
    a: String,
    a_ns: String,
}

impl Veth {
    /// Creates `a` in `a_ns` and `b` in `b_ns`, both up.
    pub fn new(a: &str, a_ns: &Netns, b: &str, b_ns: &Netns) -> io::Result<Veth> {
        for n in [a, b] {
            if n.len() > 15 {
                return Err(io::Error::other(format!(
                    "interface name {n:?} longer than 15"
                )));
            }
        }
        run(
            "ip",
            &[
                "link",
                "add",
                a,
                "netns",
                a_ns.name(),
                "type",
                "veth",
                "peer",
                "name",
                b,
                "netns",
                b_ns.name(),
            ],
        )?;
        let veth = Veth {
            a: a.to_string(),
            a_ns: a_ns.name().to_string(),
        };
        a_ns.link_up(a)?;
        b_ns.link_up(b)?;
        Ok(veth)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["-n", &self.a_ns, "link", "del", &self.a])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A process started inside a namespace (`ip netns exec NS PROG ARGS`: `ip` execs PROG, so the
/// child's PID is PROG's). stdout and stderr go to a log file. Drop: SIGTERM, up to 3 s grace,
/// then SIGKILL, then reap — always by PID.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    label: String,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` (program, arguments, environment and working directory are taken from it)
    /// inside `ns`, its output appended to `log`.
    pub fn spawn_in(ns: &Netns, cmd: &Command, log: &Path) -> io::Result<Proc> {
        let mut full = Command::new("ip");
        full.args([OsString::from("netns"), "exec".into(), ns.name().into()]);
        full.arg(cmd.get_program());
        full.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => full.env(k, v),
                None => full.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            full.current_dir(dir);
        }
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let child = full.stdin(Stdio::null()).stdout(out).stderr(err).spawn()?;
        let label = format!(
            "{} {}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        Ok(Proc {
            child: Some(child),
            label,
            log: log.to_path_buf(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The log file receiving its stdout and stderr.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The log's contents so far (empty if unreadable).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Some(exit code or -signal) once the process has ended.
    pub fn exited(&mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => Some(st.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                -st.signal().unwrap_or(0)
            })),
            _ => None,
        }
    }

    /// Waits up to `timeout` for the process to end by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let mut code = None;
        wait_until(timeout, Duration::from_millis(100), || {
            code = self.exited();
            code.is_some()
        });
        code
    }

    /// Stops the process (SIGTERM, grace, SIGKILL) and reaps it. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = child.id().to_string();
        let _ = run("kill", &["-TERM", &pid]);
        let ended = wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !ended {
            eprintln!("proc {pid} ({}) ignored SIGTERM; killing", self.label);
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// A one-line description for failure messages: command and log tail.
    pub fn describe(&self) -> String {
        let text = self.log_text();
        let tail: Vec<&str> = text.lines().rev().take(25).collect();
        let mut s = format!("`{}` (log {}):\n", self.label, self.log.display());
        for l in tail.into_iter().rev() {
            let _ = writeln!(s, "    {l}");
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A scratch directory under the target dir, removed on Drop unless the test is failing
/// (kept for the logs; its path is printed).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `<base>/<name>` afresh.
    pub fn new(base: &Path, name: &str) -> io::Result<Scratch> {
        let path = base.join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("SHG_KEEP_SCRATCH").is_some() {
            eprintln!("logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ranges() {
        assert!(in_test_range("198.18.0.1/24"));
        assert!(in_test_range("198.19.255.1"));
        assert!(in_test_range("2001:db8::1/64"));
        assert!(!in_test_range("198.20.0.1/24"));
        assert!(!in_test_range("10.0.0.1/8"));
        assert!(!in_test_range("2001:db9::1"));
    }

    #[test]
    fn prefixes_are_short_and_distinct() {
        let a = prefix();
        let b = prefix();
        assert_ne!(a, b);
        assert!(a.len() <= 11, "{a}");
    }
}
