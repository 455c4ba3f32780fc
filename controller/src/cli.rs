//! The `shg-controller` command line: argument parsing and the commands, as functions of (args, file reader) → (output, exit code).
//!
//! The binary only reads files and prints; everything else is here so tests drive it without
//! a process. `--config FILE` loads, validates, admits and plans against the switch state
//! known so far (none: the southbound that connects and reads the switch back plugs in at
//! [`run_controller`]).

use crate::admission::admit;
use crate::config::{self, summary};
use crate::model::Policy;
use crate::planner::{plan, Observed};
use std::path::{Path, PathBuf};

/// `shg-controller --help`.
pub const USAGE: &str = "\
Usage: shg-controller --config FILE.toml    run the controller for the gateway in FILE
       shg-controller check-config FILE     validate FILE (syntax, every rule, admission)

check-config prints every error on its own line, path first, and exits 1; or prints a
summary of the policy and exits 0. The config format is described in docs/config.md.
";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    CheckConfig(PathBuf),
    Run { config: PathBuf },
}

/// Parses the arguments after the program name.
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    match args {
        [] => Err("missing --config FILE or check-config FILE".into()),
        [h] if h == "-h" || h == "--help" => Ok(Command::Help),
        [c, f] if c == "check-config" => Ok(Command::CheckConfig(PathBuf::from(f))),
        [c, f] if c == "--config" => Ok(Command::Run {
            config: PathBuf::from(f),
        }),
        [c] if c.starts_with("--config=") => Ok(Command::Run {
            config: PathBuf::from(&c["--config=".len()..]),
        }),
        other => Err(format!("unexpected arguments: {}", other.join(" "))),
    }
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
        Command::Run { config } => match load(config, read) {
            Ok(p) => run_controller(&p, &Observed::default()),
            Err(o) => o,
        },
    }
}

/// The controller proper, given what is known of the switch. Today: the plan against
/// `observed` (an empty switch until the southbound reads the real one back).
pub fn run_controller(policy: &Policy, observed: &Observed) -> Outcome {
    let mut out = summary(policy);
    match plan(None, policy, observed, 0) {
        Ok(p) => {
            out.push_str(&format!("plan: {}\n", p.summary()));
            for n in &p.notes {
                out.push_str(&format!("note: {n}\n"));
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
