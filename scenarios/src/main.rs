//! `shg-scenario`: benchmarks in network namespaces (needs root).
//!
//! ```text
//! shg-scenario bench datapath [--quick] [--reps N] [--out DIR] [--flows N] [--tcp-secs S]
//!                             [--udp-secs S] [--switch PATH]
//! shg-scenario bench flows [--n N] [--out DIR] [--switch PATH]
//! ```

use shg_scenario::bench::datapath::{run_datapath, DatapathOpts};
use shg_scenario::bench::flows::{run_flows, FlowsOpts};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
Usage:
  shg-scenario bench datapath [--quick] [--reps N] [--out DIR] [--flows N]
                              [--tcp-secs S] [--udp-secs S] [--switch PATH]
      Linux bridge vs OVS userspace (userspace TSO) vs shg-switch (1 flow; N flows, default
      10000) on one namespace topology: TCP 1/4 streams, 64-byte UDP, idle RTT, switch CPU
      and RSS. Medians of N repetitions (default 3; --quick: 1, short tests).
  shg-scenario bench flows [--n N] [--out DIR] [--switch PATH]
      ovs-ofctl add-flows / dump-flows of 10000 and N (default 100000) flows into shg-switch
      and OVS, timed, with RSS.

Both need root. Results (results.json, results.md) go to --out, default
target/bench/<kind>-<UTC time>. shg-switch is taken from --switch, $SHG_SWITCH, or next
to this executable (cargo build --release -p shg-switch -p shg-scenario).
";

fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, String> {
    let v = v.ok_or_else(|| format!("{flag}: needs a value"))?;
    v.parse()
        .map_err(|_| format!("{flag} {v:?}: not a valid value"))
}

enum Cmd {
    Datapath(DatapathOpts),
    Flows(FlowsOpts),
    Help,
}

fn parse(args: Vec<String>) -> Result<Cmd, String> {
    let command = std::iter::once("shg-scenario".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut it = args.into_iter();
    let (a, b) = (it.next(), it.next());
    match (a.as_deref(), b.as_deref()) {
        (None | Some("-h" | "--help" | "help"), _) => Ok(Cmd::Help),
        (Some("bench"), Some("datapath")) => {
            let mut o = DatapathOpts {
                quick: false,
                reps: None,
                out: None,
                switch: None,
                flows: 10_000,
                tcp_secs: None,
                udp_secs: None,
                command,
            };
            while let Some(f) = it.next() {
                match f.as_str() {
                    "--quick" => o.quick = true,
                    "--reps" => o.reps = Some(value(&f, it.next())?),
                    "--out" => o.out = Some(PathBuf::from(value::<String>(&f, it.next())?)),
                    "--switch" => o.switch = Some(PathBuf::from(value::<String>(&f, it.next())?)),
                    "--flows" => o.flows = value(&f, it.next())?,
                    "--tcp-secs" => o.tcp_secs = Some(value(&f, it.next())?),
                    "--udp-secs" => o.udp_secs = Some(value(&f, it.next())?),
                    "-h" | "--help" => return Ok(Cmd::Help),
                    _ => return Err(format!("{f}: unknown option")),
                }
            }
            Ok(Cmd::Datapath(o))
        }
        (Some("bench"), Some("flows")) => {
            let mut o = FlowsOpts {
                n: 100_000,
                out: None,
                switch: None,
                command,
            };
            while let Some(f) = it.next() {
                match f.as_str() {
                    "--n" => o.n = value(&f, it.next())?,
                    "--out" => o.out = Some(PathBuf::from(value::<String>(&f, it.next())?)),
                    "--switch" => o.switch = Some(PathBuf::from(value::<String>(&f, it.next())?)),
                    "-h" | "--help" => return Ok(Cmd::Help),
                    _ => return Err(format!("{f}: unknown option")),
                }
            }
            Ok(Cmd::Flows(o))
        }
        _ => Err("unknown command".into()),
    }
}

fn main() -> ExitCode {
    let cmd = match parse(std::env::args().skip(1).collect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shg-scenario: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        Cmd::Help => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Cmd::Datapath(o) => run_datapath(&o).map(|(r, dir)| (r.markdown(), dir)),
        Cmd::Flows(o) => run_flows(&o).map(|(r, dir)| (r.markdown(), dir)),
    };
    // Every guard has been dropped by now: namespaces and processes are gone.
    match result {
        Ok((md, dir)) => {
            println!("{md}");
            eprintln!("results in {}", dir.display());
            ExitCode::SUCCESS
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
