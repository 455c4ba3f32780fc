//! The scenario commands of `shg-scenario`: `run`, `check`, `list`, and the hidden `agent` (the built-in traffic tools, run inside namespaces by the runner).

use super::check::{check_file, patch};
use super::model::{Action, Assert, Scenario};
use super::policy::{controller_config, map_controller_path};
use super::run::{find_bin, run_scenario, RunOpts};
use super::topo::Plan;
use std::path::PathBuf;
use std::process::ExitCode;

/// Usage of the scenario commands.
pub const USAGE: &str = "
Scenarios (run needs root):
  shg-scenario run FILE.toml|NAME [--out DIR]
      Runs a scenario in network namespaces (needs root): shg-switch + shg-controller, the
      services and devices, timed traffic, phases and assertions. Progress on stderr; the
      report (report.md, report.json, throughput.svg, rtt.svg) goes to --out, default
      target/scenarios/<name>-<UTC time>; its path is printed. Exit 0 only when every
      assertion holds. NAME is a scenario of the library (shg-scenario list).
  shg-scenario check FILE.toml|NAME
      Checks a scenario file: every error with its path, exit 1. With shg-controller built,
      also the policy it generates and the policy after each phase's action (admission).
  shg-scenario list
      The library's scenarios (scenarios/library, or $SHG_SCENARIO_LIBRARY).
";

fn value(flag: &str, v: Option<&String>) -> Result<String, String> {
    v.cloned().ok_or_else(|| format!("{flag}: needs a value"))
}

/// Runs a scenario command; None when `args` is not one.
pub fn dispatch(args: &[String]) -> Option<ExitCode> {
    let cmd = args.first()?.as_str();
    let rest = args.get(1..).unwrap_or(&[]);
    Some(match cmd {
        "run" => cmd_run(args, rest),
        "check" => cmd_check(rest),
        "list" => cmd_list(),
        "agent" => cmd_agent(rest),
        _ => return None,
    })
}

fn cmd_run(all: &[String], rest: &[String]) -> ExitCode {
    let mut target = None;
    let mut out = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => match value(a, it.next()) {
                Ok(v) => out = Some(PathBuf::from(v)),
                Err(e) => return usage_error(&e),
            },
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            s if s.starts_with('-') => return usage_error(&format!("{s}: unknown option")),
            s if target.is_none() => target = Some(s.to_string()),
            s => return usage_error(&format!("{s}: one scenario per run")),
        }
    }
    let Some(target) = target else {
        return usage_error("run: which scenario? (a file or a name from `shg-scenario list`)");
    };
    let opts = RunOpts {
        target,
        out,
        command: std::iter::once("shg-scenario")
            .chain(all.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
    };
    match run_scenario(&opts) {
        Ok(o) => {
            eprintln!("shg-scenario: {}", o.summary);
            println!("{}", o.report.display());
            if o.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("shg-scenario: {e}");
            if e.kind() == std::io::ErrorKind::Interrupted {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn usage_error(e: &str) -> ExitCode {
    eprintln!("shg-scenario: {e}\n\n{USAGE}");
    ExitCode::from(2)
}

/// The controller's own check of the policy a scenario generates, and of the policy after
/// each phase's `policy` action: error lines (with scenario paths), or None when
/// shg-controller is not built.
pub fn controller_check(s: &Scenario) -> Option<Vec<String>> {
    let bin = find_bin("shg-controller", "SHG_CONTROLLER")?;
    let plan = Plan::new("shgcheck", s);
    let tmp = std::env::temp_dir().join(format!("shg-scenario-check-{}.toml", std::process::id()));
    let check = |text: &str| -> Result<(), Vec<String>> {
        if let Err(e) = std::fs::write(&tmp, text) {
            return Err(vec![format!("{}: {e}", tmp.display())]);
        }
        let out = std::process::Command::new(&bin)
            .arg("check-config")
            .arg(&tmp)
            .output();
        let _ = std::fs::remove_file(&tmp);
        match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| map_controller_path(l.trim(), s))
                .collect()),
            Err(e) => Err(vec![format!("{}: {e}", bin.display())]),
        }
    };
    let mut errs = Vec::new();
    let mut policies: Vec<_> = s.services.iter().map(|x| x.policy.clone()).collect();
    if let Err(lines) = check(&controller_config(s, &plan, &policies)) {
        errs.extend(lines.into_iter().map(|l| format!("controller: {l}")));
        return Some(errs);
    }
    for (pi, ph) in s.phases.iter().enumerate() {
        for (ai, a) in ph.actions.iter().enumerate() {
            let Action::Policy {
                service,
                set,
                unset,
            } = a
            else {
                continue;
            };
            let Some(i) = s.services.iter().position(|x| &x.name == service) else {
                continue;
            };
            let mut next = policies.clone();
            next[i] = patch(&policies[i], set, unset);
            let expect_reject = s.asserts.iter().any(|x| {
                matches!(x, Assert::Admission { phase, accepted: false, .. } if *phase == ph.name)
            });
            match (check(&controller_config(s, &plan, &next)), expect_reject) {
                (Ok(()), false) => policies = next,
                (Err(_), true) => {}
                (Ok(()), true) => errs.push(format!(
                    "phase[{pi}].do[{ai}]: the controller would accept this policy, but an assertion expects its rejection"
                )),
                (Err(lines), false) => errs.push(format!(
                    "phase[{pi}].do[{ai}]: the controller would refuse this policy: {}",
                    lines.join("; ")
                )),
            }
        }
    }
    Some(errs)
}

fn cmd_check(rest: &[String]) -> ExitCode {
    let [target] = rest else {
        return usage_error("check: one scenario file or name");
    };
    let path = match super::resolve(target) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shg-scenario: {e}");
            return ExitCode::FAILURE;
        }
    };
    match check_file(&path) {
        Err(errs) => {
            for e in &errs {
                println!("{e}");
            }
            eprintln!("{}: {} error(s)", path.display(), errs.len());
            ExitCode::FAILURE
        }
        Ok(s) => match controller_check(&s) {
            Some(errs) if !errs.is_empty() => {
                for e in &errs {
                    println!("{e}");
                }
                eprintln!("{}: {} error(s)", path.display(), errs.len());
                ExitCode::FAILURE
            }
            found => {
                println!(
                    "{}: valid: {} s, {} service(s), {} device(s), {} traffic item(s), {} phase(s), {} assertion(s){}",
                    path.display(),
                    s.duration.as_secs(),
                    s.services.len(),
                    s.devices.len(),
                    s.traffic.len(),
                    s.phases.len(),
                    s.asserts.len(),
                    if found.is_some() {
                        "; the controller admits its policies"
                    } else {
                        " (shg-controller not built: policies not checked by it)"
                    }
                );
                ExitCode::SUCCESS
            }
        },
    }
}

fn cmd_list() -> ExitCode {
    let files = super::library_files();
    if files.is_empty() {
        eprintln!("no scenarios in {}", super::library_dir().display());
        return ExitCode::FAILURE;
    }
    let mut ok = true;
    for f in files {
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match check_file(&f) {
            Ok(s) => println!(
                "{name:22} {:>4} s  {}",
                s.duration.as_secs(),
                s.description.lines().next().unwrap_or("").trim()
            ),
            Err(e) => {
                ok = false;
                println!(
                    "{name:22}   (invalid: {} error(s); shg-scenario check {name})",
                    e.len()
                );
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn cmd_agent(rest: &[String]) -> ExitCode {
    let r = match rest.first().map(String::as_str) {
        Some("udp-send") => super::traffic::agent_udp_send(&rest[1..]),
        Some("udp-recv") => super::traffic::agent_udp_recv(&rest[1..]),
        _ => Err(std::io::Error::other("agent: udp-send or udp-recv")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shg-scenario agent: {e}");
            ExitCode::FAILURE
        }
    }
}
