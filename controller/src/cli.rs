//! The `shg-controller` command line: argument parsing and the commands, as functions of (args, file reader) → (output, exit code).
//!
//! The binary only reads files and prints; everything else is here so tests drive it without
//! a process. `--config FILE` runs the daemon ([`run_controller`], [`crate::runtime`]): it
//! loads, validates and admits the policy (a refusal is printed, exit 1), then meets the
//! switch and keeps it in line until SIGTERM/SIGINT.

use crate::admission::admit;
use crate::config::{self, summary};
use crate::model::Policy;
use crate::planner::{plan, Observed};
use crate::runtime::{ApiFlags, Options};
use std::path::{Path, PathBuf};

/// `shg-controller --help`.
pub const USAGE: &str = "\
Usage: shg-controller --config FILE.toml [--store DIR] [--switch-ctl PATH] [API OPTIONS]
                                            run the controller for the gateway in FILE
       shg-controller check-config FILE     validate FILE (syntax, every rule, admission)
       shg-controller plan FILE             print what FILE would install on an empty switch

--store DIR        keep the accepted policy and the master generation id in DIR (crash-safe);
                   without it nothing persists
--switch-ctl PATH  shg-switch's control socket: egress queues and port rates are set through
                   it (Open vSwitch has none: queue changes are then skipped)
API options (each overrides the key of FILE's [api] table; without [api] and without
these, no API is served):
--api-listen IP:PORT     the HTTPS API's address            (api.listen)
--api-cert FILE          its certificate chain, PEM          (api.cert)
--api-key FILE           its private key, PEM                (api.key)
--api-isp-ca FILE        CA of the ISP's client certificates (api.isp_ca)
--api-tokens FILE        bearer token store (shgctl token)   (api.tokens)
--metrics-listen IP:PORT plain /metrics, loopback only       (api.metrics_listen)
FILE's [discovery] table runs SSDP/UPnP discovery (docs/config.md). An API push is stored
and also written back to FILE, so SIGHUP re-reads what the API set (docs/api.md).

The daemon logs to stderr (RUST_LOG sets the filter, default info), reloads FILE on SIGHUP
and exits on SIGTERM or SIGINT leaving the switch's flows in place.
check-config prints every error on its own line, path first, and exits 1; or prints a
summary of the policy and exits 0. The config format is described in docs/config.md.
";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per process; boxing would only add noise"
)]
pub enum Command {
    Help,
    CheckConfig(PathBuf),
    /// Validate, admit and plan against an empty switch (a dry run; no connection).
    Plan(PathBuf),
    Run(Options),
}

/// Parses the arguments after the program name.
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    match args {
        [] => return Err("missing --config FILE or check-config FILE".into()),
        [h] if h == "-h" || h == "--help" => return Ok(Command::Help),
        [c, f] if c == "check-config" => return Ok(Command::CheckConfig(PathBuf::from(f))),
        [c, f] if c == "plan" => return Ok(Command::Plan(PathBuf::from(f))),
        _ => {}
    }
    let (mut config, mut store, mut ctl) = (None, None, None);
    let mut api = ApiFlags::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let value = match inline {
            Some(v) => v,
            None if key.starts_with("--") => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{key} needs a value"))?,
            None => return Err(format!("unexpected argument {a:?}")),
        };
        if value.is_empty() {
            return Err(format!("{key} needs a value"));
        }
        let addr = |v: &str| {
            v.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("{key} {v:?}: expected IP:PORT"))
        };
        let twice = || format!("{key} given twice");
        let path = |slot: &mut Option<PathBuf>, v: String| match slot.replace(PathBuf::from(v)) {
            Some(_) => Err(twice()),
            None => Ok(()),
        };
        match key {
            "--config" => path(&mut config, value)?,
            "--store" => path(&mut store, value)?,
            "--switch-ctl" => path(&mut ctl, value)?,
            "--api-cert" => path(&mut api.cert, value)?,
            "--api-key" => path(&mut api.key, value)?,
            "--api-isp-ca" => path(&mut api.isp_ca, value)?,
            "--api-tokens" => path(&mut api.tokens, value)?,
            "--api-listen" => {
                if api.listen.replace(addr(&value)?).is_some() {
                    return Err(twice());
                }
            }
            "--metrics-listen" => {
                if api.metrics_listen.replace(addr(&value)?).is_some() {
                    return Err(twice());
                }
            }
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    let config = config.ok_or("missing --config FILE")?;
    Ok(Command::Run(Options {
        config,
        store,
        switch_ctl: ctl,
        api,
    }))
}

/// Validation and admission of a config text: the policy, or every error line.
pub fn check_text(text: &str) -> Result<Policy, Vec<String>> {
    let policy =
        config::parse(text).map_err(|es| es.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    if let Err(r) = admit(&policy) {
        return Err(r.reasons);
    }
    Ok(policy)
}

/// What a command printed and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

fn load(path: &Path, read: &dyn Fn(&Path) -> std::io::Result<String>) -> Result<Policy, Outcome> {
    let text = read(path).map_err(|e| Outcome {
        stdout: String::new(),
        stderr: format!("{}: {e}\n", path.display()),
        code: 1,
    })?;
    check_text(&text).map_err(|lines| Outcome {
        stdout: String::new(),
        stderr: lines.iter().map(|l| format!("{l}\n")).collect(),
        code: 1,
    })
}

/// Runs a command; `read` reads a file (the only I/O).
pub fn run(cmd: &Command, read: &dyn Fn(&Path) -> std::io::Result<String>) -> Outcome {
    match cmd {
        Command::Help => Outcome {
            stdout: USAGE.into(),
            stderr: String::new(),
            code: 0,
        },
        Command::CheckConfig(path) => match load(path, read) {
            Ok(p) => Outcome {
                stdout: format!("{}: valid\n{}", path.display(), summary(&p)),
                stderr: String::new(),
                code: 0,
            },
            Err(o) => o,
        },
        Command::Plan(path) => match load(path, read) {
            Ok(p) => dry_run(&p),
            Err(o) => o,
        },
        Command::Run(opts) => run_controller(opts),
    }
}

/// `plan FILE`: the policy's summary and its plan against an empty switch.
fn dry_run(policy: &Policy) -> Outcome {
    let mut out = summary(policy);
    match plan(None, policy, &Observed::default(), 0) {
        Ok(p) => {
            out.push_str(&format!("plan: {}\n", p.summary()));
            for n in &p.notes {
                out.push_str(&format!("note: {n}\n"));
            }
            for c in &p.changes {
                out.push_str(&format!("{c}\n"));
            }
            Outcome {
                stdout: out,
                stderr: String::new(),
                code: 0,
            }
        }
        Err(r) => Outcome {
            stdout: String::new(),
            stderr: format!("{r}\n"),
            code: 1,
        },
    }
}

/// The controller proper: runs the daemon ([`crate::runtime::run`]) until SIGTERM/SIGINT.
/// It prints its own log (stderr); the outcome carries only the exit code.
pub fn run_controller(opts: &Options) -> Outcome {
    Outcome {
        stdout: String::new(),
        stderr: String::new(),
        code: crate::runtime::run(opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn run_options_in_any_order() {
        let want = Command::Run(Options {
            config: "g.toml".into(),
            store: Some("/var/s".into()),
            switch_ctl: Some("/run/sw.ctl".into()),
            api: ApiFlags::default(),
        });
        assert_eq!(
            parse_args(&args(&[
                "--config",
                "g.toml",
                "--store",
                "/var/s",
                "--switch-ctl",
                "/run/sw.ctl"
            ])),
            Ok(want.clone())
        );
        assert_eq!(
            parse_args(&args(&[
                "--switch-ctl=/run/sw.ctl",
                "--store=/var/s",
                "--config=g.toml"
            ])),
            Ok(want)
        );
        assert_eq!(
            parse_args(&args(&["--config", "g.toml"])),
            Ok(Command::Run(Options {
                config: "g.toml".into(),
                store: None,
                switch_ctl: None,
                api: ApiFlags::default(),
            }))
        );
        assert!(parse_args(&args(&["--store", "x"]))
            .unwrap_err()
            .contains("--config"));
        assert!(parse_args(&args(&["--config"]))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_args(&args(&["--config", "a", "--config", "b"]))
            .unwrap_err()
            .contains("twice"));
        assert!(parse_args(&args(&["--bogus", "a"])).is_err());
        assert!(parse_args(&args(&["--config", "a", "stray"])).is_err());
        let Ok(Command::Run(o)) = parse_args(&args(&[
            "--config",
            "g.toml",
            "--api-listen",
            "198.18.0.1:8443",
            "--api-cert=c.pem",
            "--api-key",
            "k.pem",
            "--api-isp-ca",
            "ca.pem",
            "--api-tokens",
            "tokens",
            "--metrics-listen",
            "127.0.0.1:9100",
        ])) else {
            panic!("api flags not parsed");
        };
        assert_eq!(
            o.api,
            ApiFlags {
                listen: Some("198.18.0.1:8443".parse().unwrap()),
                cert: Some("c.pem".into()),
                key: Some("k.pem".into()),
                isp_ca: Some("ca.pem".into()),
                tokens: Some("tokens".into()),
                metrics_listen: Some("127.0.0.1:9100".parse().unwrap()),
            }
        );
        assert!(
            parse_args(&args(&["--config", "g", "--api-listen", "8443"]))
                .unwrap_err()
                .contains("IP:PORT")
        );
        assert!(parse_args(&args(&[
            "--config",
            "g",
            "--api-tokens",
            "a",
            "--api-tokens=b"
        ]))
        .unwrap_err()
        .contains("twice"));
        assert_eq!(
            parse_args(&args(&["check-config", "f"])),
            Ok(Command::CheckConfig("f".into()))
        );
        assert_eq!(
            parse_args(&args(&["plan", "f"])),
            Ok(Command::Plan("f".into()))
        );
    }
}
