//! The policy side of a run: the controller's config generated from the scenario, the controller process, and [`PolicyClient`], the way a new policy reaches the controller.
//!
//! By default a policy change goes through the controller's HTTPS API ([`ApiClient`]), as the
//! ISP and the home user make it: the runner makes a server CA and certificate, an ISP CA and
//! client certificate (openssl CLI) and a user token (`shgctl token create`) in the run's
//! `api/` directory, and the controller's config gets an `[api]` table on 127.0.0.1:8443 in the
//! gateway namespace. A change to the home user's own keys (`user.priority`,
//! `user.max_rate`) is `shgctl priority set` with the user's token (`PUT /v1/priorities`:
//! the ISP's bounds apply); anything else is the ISP's whole-policy push (`shgctl policy put`
//! with the client certificate). The verdict is the API's answer.
//!
//! The fallback, used only when the API cannot be set up (no `shgctl` or `openssl`) or does
//! not answer (shgctl's exit code 3), is the config file: rewrite it (atomically), SIGHUP the
//! controller's PID, read the verdict from its log (`sync (reload) done`, or `reload of FILE
//! refused, nothing changed:` followed by one reason per line). Which one carried a push is
//! printed and named in the verdict. Owns: the controller's config file, store directory,
//! API files and logs in the run's output directory; the controller process (stopped or
//! killed by its PID only).

use super::model::{PolicyFields, Scenario};
use super::topo::Plan;
use crate::netns::{run, wait_until, Netns, Proc};
use shg_flows::rate::format_rate;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The controller's HTTPS API inside the gateway namespace.
pub const API_ADDR: &str = "127.0.0.1:8443";

/// The controller's OpenFlow port inside the gateway namespace.
pub const CONTROLLER_PORT: u16 = 6653;

/// What the controller said about a pushed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted (and applied, when a switch is connected); the controller's words.
    Accepted(String),
    /// Refused by validation or admission: nothing changed; every reason.
    Rejected(String),
    /// Accepted, but applying it to the switch failed.
    Failed(String),
}

impl Verdict {
    pub fn text(&self) -> &str {
        match self {
            Verdict::Accepted(t) | Verdict::Rejected(t) | Verdict::Failed(t) => t,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Accepted(_) => "accepted",
            Verdict::Rejected(_) => "rejected",
            Verdict::Failed(_) => "failed",
        }
    }
}

/// The home user's change to one service's own keys: `Some(None)` returns to the ISP's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    pub priority: Option<Option<u8>>,
    pub max_rate: Option<Option<String>>,
}

/// Pushes a whole policy (the controller's config text) and returns the verdict.
pub trait PolicyClient {
    fn push(&mut self, config: &str) -> io::Result<Verdict>;

    /// The home user changes `service`'s own keys; `config` is the whole resulting policy,
    /// for clients that can only push whole policies (the default).
    fn set_user(
        &mut self,
        service: &str,
        change: &UserChange,
        config: &str,
    ) -> io::Result<Verdict> {
        let _ = (service, change);
        self.push(config)
    }
}

/// Why the API could not be used for a push.
fn unreachable(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, msg)
}

/// The verdict in `shgctl --json`'s answer to a write: exit 0 with the push's outcome, or
/// exit 1 with the API's error document. `how` names the route for the report. Exit 3 (the
/// server cannot be reached) is a `ConnectionRefused` error; other failures are errors.
pub fn verdict_from_shgctl(
    code: i32,
    stdout: &str,
    stderr: &str,
    how: &str,
) -> io::Result<Verdict> {
    let v: Option<serde_json::Value> = serde_json::from_str(stdout).ok();
    let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
    match (code, v) {
        (0, Some(v)) => {
            let version = v["version"].as_u64().unwrap_or(0);
            let summary = s(&v["plan"]["summary"]);
            Ok(Verdict::Accepted(if v["applied"].as_bool() == Some(true) {
                format!("{how}: policy version {version}, applied: {summary}")
            } else if v["changed"].as_bool() == Some(false) {
                format!("{how}: unchanged (policy version {version})")
            } else {
                format!(
                    "{how}: policy version {version} stored; no switch connected to apply it to"
                )
            }))
        }
        (1, Some(v)) if v["error"].is_string() => {
            let code = s(&v["error"]);
            let mut lines = Vec::new();
            let reasons: Vec<String> = v["admission"]["reasons"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            let errors: Vec<String> = v["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| format!("{}: {}", s(&e["field"]), s(&e["message"])))
                        .collect()
                })
                .unwrap_or_default();
            if !reasons.is_empty() {
                lines.extend(reasons);
            } else if !errors.is_empty() {
                lines.extend(errors);
            } else {
                lines.push(s(&v["message"]));
            }
            let text = format!("{how}: {code}\n{}", lines.join("\n"));
            Ok(match code.as_str() {
                "switch_refused" | "unavailable" => Verdict::Failed(text),
                _ => Verdict::Rejected(text),
            })
        }
        (3, _) => Err(unreachable(format!(
            "the API does not answer: {}",
            stderr.trim()
        ))),
        (c, _) => Err(io::Error::other(format!(
            "shgctl exited with {c}: {}",
            stderr.trim()
        ))),
    }
}

/// The controller's HTTPS API as the ISP (client certificate) and the home user (token) use
/// it, through `shgctl` run in the gateway namespace.
#[derive(Debug, Clone)]
pub struct ApiClient {
    shgctl: PathBuf,
    ns: String,
    dir: PathBuf,
    user_token: String,
    pushes: u32,
}

fn openssl(dir: &Path, args: &[&str]) -> io::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| io::Error::other(format!("openssl: {e} (tests/setup.sh installs it)")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A CA (`CA.pem`, `CA.key`) and a certificate it signs (`LEAF.pem`, `LEAF.key`) with the
/// X.509 extensions `ext`.
fn ca_and_leaf(dir: &Path, ca: &str, leaf: &str, ext: &str) -> io::Result<()> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (k, c, subj) = (
        format!("{ca}.key"),
        format!("{ca}.pem"),
        format!("/CN=shg-scenario {ca}"),
    );
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend(["-keyout", &k, "-out", &c, "-days", "7", "-subj", &subj]);
    openssl(dir, &a)?;
    std::fs::write(dir.join(format!("{leaf}.ext")), ext)?;
    let (lk, lr, lp, le) = (
        format!("{leaf}.key"),
        format!("{leaf}.csr"),
        format!("{leaf}.pem"),
        format!("{leaf}.ext"),
    );
    let lsubj = format!("/CN=shg-scenario {leaf}");
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend(["-keyout", &lk, "-out", &lr, "-subj", &lsubj]);
    openssl(dir, &a)?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &lr,
            "-CA",
            &c,
            "-CAkey",
            &k,
            "-CAcreateserial",
            "-out",
            &lp,
            "-days",
            "7",
            "-extfile",
            &le,
        ],
    )
}

impl ApiClient {
    /// Makes the API's files under `run_dir/api` (certificates, the token store with one user
    /// token) for a controller in `ns`.
    pub fn setup(shgctl: Option<&Path>, ns: &Netns, run_dir: &Path) -> io::Result<ApiClient> {
        let shgctl = shgctl
            .ok_or_else(|| {
                io::Error::other("shgctl not found (cargo build --release -p shg-controller)")
            })?
            .to_path_buf();
        let dir = run_dir.join("api");
        std::fs::create_dir_all(&dir)?;
        ca_and_leaf(
            &dir,
            "server-ca",
            "server",
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
        )?;
        ca_and_leaf(
            &dir,
            "isp-ca",
            "isp",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n",
        )?;
        let out = Command::new(&shgctl)
            .args([
                "token",
                "create",
                "--role",
                "user",
                "--label",
                "shg-scenario",
                "--json",
                "--store",
            ])
            .arg(dir.join("tokens"))
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            io::Error::other(format!(
                "shgctl token create: {e}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
        let user_token = v["token"]
            .as_str()
            .ok_or_else(|| io::Error::other("shgctl token create: no token"))?
            .to_string();
        Ok(ApiClient {
            shgctl,
            ns: ns.name().to_string(),
            dir,
            user_token,
            pushes: 0,
        })
    }

    /// The controller config's `[api]` table for these files.
    pub fn config_table(&self) -> String {
        let f = |n: &str| q(&self.dir.join(n).to_string_lossy());
        format!(
            "\n# The northbound API (shg-scenario made the certificates and the user's token).\n[api]\nlisten = {}\ncert = {}\nkey = {}\nisp_ca = {}\ntokens = {}\n",
            q(API_ADDR),
            f("server.pem"),
            f("server.key"),
            f("isp-ca.pem"),
            f("tokens")
        )
    }

    /// `shgctl ARGS --json` in the gateway namespace as the user (`isp`: with the ISP's
    /// certificate instead): (exit code, stdout, stderr).
    fn shgctl(&self, isp: bool, args: &[&str]) -> io::Result<(i32, String, String)> {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns])
            .arg(&self.shgctl)
            .args(args)
            .args([
                "--json",
                "--timeout",
                "20",
                "--server",
                &format!("https://{API_ADDR}"),
                "--ca",
            ])
            .arg(self.dir.join("server-ca.pem"));
        if isp {
            c.arg("--cert")
                .arg(self.dir.join("isp.pem"))
                .arg("--key")
                .arg(self.dir.join("isp.key"));
        } else {
            c.args(["--token", &self.user_token]);
        }
        let out = c.output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// The controller's device inventory (`shgctl devices`, as the user): `GET /v1/devices`.
    pub fn devices(&self) -> io::Result<serde_json::Value> {
        let (code, out, err) = self.shgctl(false, &["devices"])?;
        if code != 0 {
            return Err(io::Error::other(format!(
                "shgctl devices exited with {code}: {}",
                err.trim()
            )));
        }
        serde_json::from_str(&out)
            .map_err(|e| io::Error::other(format!("shgctl devices: {e}: {}", out.trim())))
    }

    /// Whether the API answers (`whoami` as the user).
    pub fn reachable(&self) -> bool {
        self.shgctl(false, &["whoami"])
            .is_ok_and(|(c, _, _)| c == 0)
    }
}

impl PolicyClient for ApiClient {
    /// The ISP's whole-policy push: `PUT /v1/policy` with the TOML text.
    fn push(&mut self, config: &str) -> io::Result<Verdict> {
        self.pushes += 1;
        let file = self.dir.join(format!("push-{}.toml", self.pushes));
        std::fs::write(&file, config)?;
        let (code, out, err) = self.shgctl(true, &["policy", "put", &file.to_string_lossy()])?;
        verdict_from_shgctl(code, &out, &err, "API, isp PUT /v1/policy")
    }

    /// The home user's choice: `PUT /v1/priorities` with the user's token.
    fn set_user(
        &mut self,
        service: &str,
        change: &UserChange,
        config: &str,
    ) -> io::Result<Verdict> {
        let prio = match change.priority {
            Some(Some(p)) => p.to_string(),
            Some(None) => "isp".to_string(),
            // shgctl always sends a priority: keep the one in force.
            None => match user_priority(config, service) {
                Some(p) => p.to_string(),
                None => "isp".to_string(),
            },
        };
        let mut args = vec!["priority".to_string(), "set".into(), service.into(), prio];
        if let Some(m) = &change.max_rate {
            args.push("--max-rate".into());
            args.push(m.clone().unwrap_or_else(|| "isp".into()));
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = self.shgctl(false, &a)?;
        verdict_from_shgctl(code, &out, &err, "API, user PUT /v1/priorities")
    }
}

/// `services.NAME.user.priority` in a generated config (what the user chose before).
pub fn user_priority(config: &str, service: &str) -> Option<u8> {
    let t: toml::Table = config.parse().ok()?;
    let p = t
        .get("services")?
        .get(service)?
        .get("user")?
        .get("priority")?;
    p.as_integer().and_then(|x| u8::try_from(x).ok())
}

fn q(s: &str) -> String {
    // Validated names, rates and durations: plain ASCII; Debug quoting is valid TOML.
    format!("{s:?}")
}

/// The controller's config for scenario `s` on `plan`, with `policies` (one per service, in
/// `s.services` order) as the services' current policy keys.
pub fn controller_config(s: &Scenario, plan: &Plan, policies: &[PolicyFields]) -> String {
    let mut t = format!(
        "# Generated by shg-scenario for scenario {:?} (run prefix {}).\n\n[gateway]\n\
         datapath_id = \"0000000000000001\"\nlisten = \"ptcp:{CONTROLLER_PORT}:127.0.0.1\"\n",
        s.name, plan.prefix
    );
    let lan: Vec<String> = plan
        .hosts
        .iter()
        .filter(|h| !h.service)
        .map(|h| q(&h.switch_if))
        .chain(plan.discovery.iter().map(|d| q(&d.switch_if)))
        .collect();
    let _ = writeln!(t, "lan = [{}]\nlocal = false", lan.join(", "));
    if let Some(h) = s.gateway.headroom {
        let _ = writeln!(t, "headroom = {h}");
    }
    if let Some(i) = s.gateway.interactive_share {
        let _ = writeln!(t, "interactive_share = {i}");
    }
    let _ = writeln!(
        t,
        "\n[gateway.uplink]\nport = {}\nup_rate = {}\ndown_rate = {}",
        q(&plan.uplink_if),
        q(&format_rate(s.gateway.up_bps)),
        q(&format_rate(s.gateway.down_bps))
    );
    for (svc, p) in s.services.iter().zip(policies) {
        let Some(h) = plan.host(&svc.name) else {
            continue;
        };
        let _ = writeln!(
            t,
            "\n[services.{}]\nport = {}\nmac = {}\nipv4 = [{}]\nqueue = {}",
            svc.name,
            q(&h.switch_if),
            q(&h.mac),
            q(&h.ipv4),
            svc.queue
        );
        if let Some(c) = &p.class {
            let _ = writeln!(t, "class = {}", q(c));
        }
        for (k, v) in [
            ("min_rate", &p.min_rate),
            ("max_rate", &p.max_rate),
            ("down_min_rate", &p.down_min_rate),
            ("down_max_rate", &p.down_max_rate),
            ("latency", &p.latency),
        ] {
            if let Some(v) = v {
                let _ = writeln!(t, "{k} = {}", q(v));
            }
        }
        if let Some(pr) = p.priority {
            let _ = writeln!(t, "priority = {pr}");
        }
        if let Some([lo, hi]) = p.priority_bounds {
            let _ = writeln!(t, "priority_bounds = [{lo}, {hi}]");
        }
        if let Some(r) = &p.reach {
            let items: Vec<String> = r.iter().map(|x| q(x)).collect();
            let _ = writeln!(t, "reach = [{}]", items.join(", "));
        }
        if let Some(u) = &p.user {
            let _ = writeln!(t, "\n[services.{}.user]", svc.name);
            if let Some(pr) = u.priority {
                let _ = writeln!(t, "priority = {pr}");
            }
            if let Some(m) = &u.max_rate {
                let _ = writeln!(t, "max_rate = {}", q(m));
            }
        }
    }
    t
}

/// Maps the controller's error paths onto the scenario's (`services.call.min_rate` →
/// `service[0].min_rate`).
pub fn map_controller_path(line: &str, s: &Scenario) -> String {
    if let Some(rest) = line.strip_prefix("services.") {
        for (i, svc) in s.services.iter().enumerate() {
            if let Some(tail) = rest.strip_prefix(&format!("{}.", svc.name)) {
                return format!("service[{i}].{tail}");
            }
            if let Some(tail) = rest.strip_prefix(&format!("{}:", svc.name)) {
                return format!("service[{i}]:{tail}");
            }
        }
    }
    if let Some(rest) = line.strip_prefix("gateway.uplink.up_rate") {
        return format!("gateway.up{rest}");
    }
    if let Some(rest) = line.strip_prefix("gateway.uplink.down_rate") {
        return format!("gateway.down{rest}");
    }
    line.to_string()
}

/// The verdict in a controller log written after a SIGHUP (None: not there yet).
/// `seen_accept_for` is how long ago an "accepted" line without a sync was first seen.
pub fn verdict_in_log(text: &str) -> Option<Verdict> {
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("refused, nothing changed") {
            // The reasons follow on their own lines, up to the next log record.
            let mut reasons = vec![l
                .split("refused, nothing changed")
                .nth(1)
                .unwrap_or("")
                .trim_start_matches(':')
                .trim()
                .to_string()];
            for r in lines.iter().skip(i + 1) {
                if is_log_record(r) {
                    break;
                }
                reasons.push(r.trim().to_string());
            }
            let text = reasons
                .into_iter()
                .filter(|r| !r.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            return Some(Verdict::Rejected(text));
        }
        if l.contains("sync (reload) done") {
            let words = l.split("sync (reload) done").nth(1).unwrap_or("").trim();
            return Some(Verdict::Accepted(format!("applied {words}")));
        }
        if l.contains("sync (reload) failed") {
            return Some(Verdict::Failed(
                l.split("sync (reload) failed")
                    .nth(1)
                    .unwrap_or("")
                    .trim_start_matches(':')
                    .trim()
                    .to_string(),
            ));
        }
    }
    None
}

/// Whether a log line starts a tracing record (`2026-11-28T11:00:00.123Z  INFO ...`).
fn is_log_record(l: &str) -> bool {
    let b = l.as_bytes();
    b.len() > 11
        && b.get(..4).is_some_and(|y| y.iter().all(u8::is_ascii_digit))
        && b.get(4) == Some(&b'-')
        && b.get(10) == Some(&b'T')
}

/// shg-controller, run in the gateway namespace with the run's config, store and switch
/// control socket. Each start gets its own log (`controller-N.log`).
#[derive(Debug)]
pub struct Controller {
    bin: PathBuf,
    ns: String,
    config: PathBuf,
    store: PathBuf,
    switch_ctl: PathBuf,
    dir: PathBuf,
    proc: Option<Proc>,
    starts: u32,
    log: PathBuf,
    /// Syncs at connection in the logs of earlier starts.
    earlier_syncs: usize,
    /// Timeout for a verdict after SIGHUP.
    pub verdict_timeout: Duration,
    /// The HTTPS API, when set up: pushes go there first, and the config file carries its
    /// `[api]` table.
    pub api: Option<ApiClient>,
    /// `[discovery] interfaces` for the config file (a setting of the daemon, not policy).
    pub discovery: Option<String>,
}

impl Controller {
    /// A stopped controller with its files under `dir`.
    pub fn new(bin: &Path, ns: &Netns, dir: &Path, switch_ctl: &Path) -> Controller {
        Controller {
            bin: bin.to_path_buf(),
            ns: ns.name().to_string(),
            config: dir.join("gateway.toml"),
            store: dir.join("controller-store"),
            switch_ctl: switch_ctl.to_path_buf(),
            dir: dir.to_path_buf(),
            proc: None,
            starts: 0,
            log: dir.join("controller-1.log"),
            earlier_syncs: 0,
            verdict_timeout: Duration::from_secs(15),
            api: None,
            discovery: None,
        }
    }

    /// The config file it reads.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Writes the config file atomically (with the `[api]` table when the API is set up).
    pub fn write_config(&self, text: &str) -> io::Result<()> {
        let tmp = self.config.with_extension("toml.new");
        let mut full = match &self.api {
            Some(a) => format!("{text}{}", a.config_table()),
            None => text.to_string(),
        };
        if let Some(i) = &self.discovery {
            let _ = write!(
                full,
                "\n# SSDP discovery on the controller's LAN interface.\n[discovery]\ninterfaces = [{}]\n",
                q(i)
            );
        }
        std::fs::write(&tmp, full)?;
        std::fs::rename(&tmp, &self.config)
    }

    /// Starts it in `ns` (the namespace given to [`Controller::new`]); returns once it waits
    /// for the switch. A policy it refuses at start is an error with its reasons.
    pub fn start(&mut self, ns: &Netns) -> io::Result<()> {
        if self.proc.is_some() {
            return Err(io::Error::other("the controller is already running"));
        }
        debug_assert_eq!(ns.name(), self.ns);
        if self.starts > 0 {
            self.earlier_syncs += self.log_text().matches("sync (connect) done").count();
        }
        self.starts += 1;
        self.log = self.dir.join(format!("controller-{}.log", self.starts));
        let _ = std::fs::remove_file(&self.log);
        let mut c = Command::new(&self.bin);
        c.arg("--config")
            .arg(&self.config)
            .arg("--store")
            .arg(&self.store)
            .arg("--switch-ctl")
            .arg(&self.switch_ctl)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info");
        let mut p = Proc::spawn_in(ns, &c, &self.log)?;
        let log = self.log.clone();
        let ok = wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::fs::read_to_string(&log).is_ok_and(|s| s.contains("waiting for the switch"))
                || crate::interrupt::interrupted()
        });
        crate::interrupt::check()?;
        if let Some(code) = p.exited() {
            return Err(io::Error::other(format!(
                "shg-controller exited with {code}: {}",
                p.describe()
            )));
        }
        if !ok {
            return Err(io::Error::other(format!(
                "shg-controller did not start listening: {}",
                p.describe()
            )));
        }
        self.proc = Some(p);
        Ok(())
    }

    /// Whether it runs.
    pub fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.exited().is_none())
    }

    /// SIGKILL by PID (then reaped).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = run("kill", &["-KILL", &p.pid().to_string()]);
            p.stop();
        }
    }

    /// SIGTERM by PID; it exits leaving the switch's flows in place.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
    }

    /// The current log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The current log's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Completed syncs at connection since the first start (all its logs).
    pub fn connect_syncs(&self) -> usize {
        self.earlier_syncs + self.log_text().matches("sync (connect) done").count()
    }

    /// Waits until [`Controller::connect_syncs`] reaches `n`.
    pub fn wait_synced(&mut self, n: usize, timeout: Duration) -> io::Result<()> {
        let t0 = Instant::now();
        loop {
            crate::interrupt::check()?;
            if self.connect_syncs() >= n {
                return Ok(());
            }
            if let Some(p) = self.proc.as_mut() {
                if let Some(code) = p.exited() {
                    return Err(io::Error::other(format!(
                        "shg-controller exited with {code}: {}",
                        p.describe()
                    )));
                }
            }
            if t0.elapsed() > timeout {
                let tail: String = self
                    .log_text()
                    .lines()
                    .rev()
                    .take(15)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n    ");
                return Err(io::Error::other(format!(
                    "the controller did not sync with the switch within {timeout:?}; its log ({}):\n    {tail}",
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Controller {
    /// Whether an API push failed for want of an answer (then SIGHUP is used instead).
    fn api_unreachable(r: &io::Result<Verdict>) -> bool {
        match r {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                eprintln!("shg-scenario: {e}; this push goes by the config file and SIGHUP");
                true
            }
            _ => false,
        }
    }

    /// Rewrites the config file, SIGHUP by PID, and reads the verdict from the log.
    fn push_by_sighup(&mut self, config: &str) -> io::Result<Verdict> {
        let v = self.sighup(config)?;
        let how = "config file + SIGHUP";
        Ok(match v {
            Verdict::Accepted(t) => Verdict::Accepted(format!("{how}: {t}")),
            Verdict::Rejected(t) => Verdict::Rejected(format!("{how}: {t}")),
            Verdict::Failed(t) => Verdict::Failed(format!("{how}: {t}")),
        })
    }

    fn sighup(&mut self, config: &str) -> io::Result<Verdict> {
        if !self.running() {
            return Err(io::Error::other("the controller is not running"));
        }
        let pid = self.proc.as_ref().map_or(0, Proc::pid);
        let offset = self.log_text().len();
        self.write_config(config)?;
        run("kill", &["-HUP", &pid.to_string()])?;
        let t0 = Instant::now();
        let mut accepted_at: Option<Instant> = None;
        loop {
            crate::interrupt::check()?;
            let text = self.log_text();
            let new = text.get(offset..).unwrap_or("");
            if let Some(v) = verdict_in_log(new) {
                return Ok(v);
            }
            if new.contains("accepted and stored") && accepted_at.is_none() {
                accepted_at = Some(Instant::now());
            }
            // Accepted with no switch connected: stored, applied at the next connection.
            if accepted_at.is_some_and(|a| a.elapsed() > Duration::from_secs(5)) {
                return Ok(Verdict::Accepted(
                    "stored; no switch connected to apply it to".into(),
                ));
            }
            if t0.elapsed() > self.verdict_timeout {
                return Err(io::Error::other(format!(
                    "no verdict from the controller within {:?} of SIGHUP (log {})",
                    self.verdict_timeout,
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl PolicyClient for Controller {
    /// Through the API when it is set up and answers, else by the config file and SIGHUP.
    fn push(&mut self, config: &str) -> io::Result<Verdict> {
        if let Some(api) = self.api.as_mut() {
            let r = api.push(config);
            if !Controller::api_unreachable(&r) {
                return r;
            }
        }
        self.push_by_sighup(config)
    }

    fn set_user(
        &mut self,
        service: &str,
        change: &UserChange,
        config: &str,
    ) -> io::Result<Verdict> {
        if let Some(api) = self.api.as_mut() {
            let r = api.set_user(service, change, config);
            if !Controller::api_unreachable(&r) {
                return r;
            }
        }
        self.push_by_sighup(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_from_shgctl() {
        let ok = r#"{"version": 4, "changed": true, "dry_run": false, "applied": true, "admission": {"admitted": true, "reasons": []}, "plan": {"summary": "1 change(s): queue", "changes": []}}"#;
        assert_eq!(
            verdict_from_shgctl(0, ok, "", "API").unwrap(),
            Verdict::Accepted("API: policy version 4, applied: 1 change(s): queue".into())
        );
        let later = ok.replace("\"applied\": true", "\"applied\": false");
        assert!(verdict_from_shgctl(0, &later, "", "API")
            .unwrap()
            .text()
            .contains("no switch connected"));
        let refused = r#"{"error": "admission_refused", "message": "a; b", "admission": {"admitted": false, "reasons": ["uplink up: short by 4mbit", "held by backup"]}}"#;
        let Verdict::Rejected(t) = verdict_from_shgctl(1, refused, "shgctl: 422", "API").unwrap()
        else {
            panic!("not rejected");
        };
        assert_eq!(
            t,
            "API: admission_refused\nuplink up: short by 4mbit\nheld by backup"
        );
        let bounds = r#"{"error": "outside_bounds", "message": "services.call.priority: 3 is outside the ISP's bounds 0..=1 for call", "field": "services.call.priority"}"#;
        assert!(matches!(
            verdict_from_shgctl(1, bounds, "", "API").unwrap(),
            Verdict::Rejected(t) if t.contains("outside the ISP's bounds 0..=1")
        ));
        let invalid = r#"{"error": "invalid_policy", "message": "x", "errors": [{"field": "services.call.class", "message": "interactive services need priority 0..=1, got 3"}]}"#;
        assert!(verdict_from_shgctl(1, invalid, "", "API")
            .unwrap()
            .text()
            .ends_with("services.call.class: interactive services need priority 0..=1, got 3"));
        let failed = r#"{"error": "switch_refused", "message": "the switch refused"}"#;
        assert!(matches!(
            verdict_from_shgctl(1, failed, "", "API").unwrap(),
            Verdict::Failed(_)
        ));
        let e = verdict_from_shgctl(3, "", "shgctl: cannot connect", "API").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert!(verdict_from_shgctl(2, "", "usage", "API").is_err());
        let cfg = "[services.call]\nqueue = 1\n\n[services.call.user]\npriority = 1\n";
        assert_eq!(user_priority(cfg, "call"), Some(1));
        assert_eq!(user_priority(cfg, "tv"), None);
    }

    #[test]
    fn verdicts_from_the_log() {
        let rej = "2026-11-28T11:00:00.000000Z ERROR shg_controller::runtime: reload of /x/gateway.toml refused, nothing changed:\n\
                   uplink up: guarantees 23mbit > 18mbit (20mbit × 0.9): short by 5mbit; held by backup 15mbit, call 8mbit\n\
                   services.call.user.priority: 3 is outside the ISP's bounds 0..=1 for call\n\
                   2026-11-28T11:00:01.000000Z  INFO shg_controller::runtime: something else\n";
        let Some(Verdict::Rejected(t)) = verdict_in_log(rej) else {
            panic!("not rejected");
        };
        assert!(t.contains("short by 5mbit"), "{t}");
        assert!(t.contains("outside the ISP's bounds"), "{t}");
        assert!(!t.contains("something else"), "{t}");
        let ok =
            "2026-11-28T11:00:00.000000Z  INFO x: reload: policy version 2 accepted and stored\n\
                  2026-11-28T11:00:00.100000Z  INFO x: sync (reload) done in 12 ms: 3 change(s)\n";
        assert_eq!(
            verdict_in_log(ok),
            Some(Verdict::Accepted("applied in 12 ms: 3 change(s)".into()))
        );
        assert_eq!(verdict_in_log("2026-11-28T11:00:00.000000Z  INFO x: reload: policy version 2 accepted and stored\n"), None);
        assert!(matches!(
            verdict_in_log("2026-11-28T11:00:00Z ERROR x: sync (reload) failed: boom\n"),
            Some(Verdict::Failed(t)) if t == "boom"
        ));
    }
}
