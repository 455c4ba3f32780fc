//! `shg-scenario`: benchmarks in network namespaces (needs root).
//!
//! ```text
//! shg-scenario bench datapath [--quick] [--reps N] [--out DIR] [--flows N] [--tcp-secs S]
//!                             [--udp-secs S] [--switch PATH]
//! shg-scenario bench flows [--n N] [--out DIR] [--switch PATH]
//! shg-scenario bench qos [--quick] [--reps N] [--out DIR] [--configs LIST] [--phase-secs S]
//!                        [--switch PATH]
//! shg-scenario bench stall [--flows N] [--reps N] [--out DIR] [--switch PATH]
//! shg-scenario bench forward IF_A IF_B [--kernel]   (the I/O reference bench datapath runs; bench::forward)
//! shg-scenario bench answer ADDR   (the round-trip reference bench flows runs; bench::answer)
//! shg-scenario run FILE|NAME [--out DIR] | check FILE|NAME | list   (shg_scenario::scenario)
//! ```

use shg_scenario::bench::answer::answer;
use shg_scenario::bench::datapath::{run_datapath, DatapathOpts};
use shg_scenario::bench::flows::{run_flows, FlowsOpts};
use shg_scenario::bench::forward::forward;
use shg_scenario::bench::qos::{run_qos, QosConfig, QosOpts};
use shg_scenario::bench::stall::{flowmod_storm, run_stall, StallOpts};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
Usage:
  (scenarios: run / check / list, below the benchmarks)
  shg-scenario bench datapath [--quick] [--reps N] [--out DIR] [--flows N]
                              [--tcp-secs S] [--udp-secs S] [--switch PATH]
      Linux bridge vs OVS userspace (userspace TSO) vs shg-switch (1 flow; 1 flow with
      --kernel-fast-path off; N flows, default 10000; egress queues: port toward the receiver
      shaped to 40gbit, 2 queues, set_queue:1) and, as I/O references, shg-switch's AF_PACKET
      ports forwarding to each other without OpenFlow, without and with the kernel fast path,
      on one namespace topology: TCP 1/4 streams, 64-byte UDP, idle RTT, switch CPU and RSS.
      Medians of N repetitions (default 3; --quick: 1, short tests).
  shg-scenario bench flows [--n N] [--out DIR] [--switch PATH]
      ovs-ofctl add-flows / dump-flows of 10000 and N (default 100000) flows into shg-switch
      and OVS, timed, with RSS; and add-flows into a round-trip reference that answers
      barriers and drops the flows (what the round trips alone take).
  shg-scenario bench qos [--quick] [--reps N] [--out DIR] [--configs fifo,htb,shg]
                         [--phase-secs S] [--switch PATH]
      Latency under load on a 20 Mbit/s uplink: Linux bridge + FIFO, Linux bridge + tc HTB
      priority class, shg-switch queues. B bulk TCP + C UDP flood; A media UDP + 50 Hz ping,
      then A greedy TCP. Medians of N repetitions (default 3; --quick: 1, 10 s phases).
  shg-scenario bench stall [--flows N] [--reps N] [--out DIR] [--switch PATH]
      Ping RTT (every 5 ms) through shg-switch while idle, while it takes N (default 100000)
      pipelined FLOW_MODs, and during ovs-ofctl dump-flows of them; datapath thread under
      the normal scheduler and realtime. N repetitions (default 2).

All need root. Results (results.json, results.md) go to --out, default
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
    Qos(QosOpts),
    Stall(StallOpts),
    /// The FLOW_MOD client of `bench stall` (run by it inside the switch namespace).
    Storm(String, usize),
    /// The I/O reference of `bench datapath` (run by it inside the switch namespace).
    Forward(String, String, bool),
    /// The round-trip reference of `bench flows` (run by it inside its namespace).
    Answer(String),
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
        (Some("bench"), Some("qos")) => {
            let mut o = QosOpts {
                quick: false,
                reps: None,
                out: None,
                switch: None,
                configs: QosConfig::ALL.to_vec(),
                phase_secs: None,
                command,
            };
            while let Some(f) = it.next() {
                match f.as_str() {
                    "--quick" => o.quick = true,
                    "--reps" => o.reps = Some(value(&f, it.next())?),
                    "--out" => o.out = Some(PathBuf::from(value::<String>(&f, it.next())?)),
                    "--switch" => o.switch = Some(PathBuf::from(value::<String>(&f, it.next())?)),
                    "--configs" => {
                        o.configs = QosConfig::parse_list(&value::<String>(&f, it.next())?)
                            .map_err(|e| format!("--configs: {e}"))?;
                    }
                    "--phase-secs" => o.phase_secs = Some(value(&f, it.next())?),
                    "-h" | "--help" => return Ok(Cmd::Help),
                    _ => return Err(format!("{f}: unknown option")),
                }
            }
            Ok(Cmd::Qos(o))
        }
        (Some("bench"), Some("stall")) => {
            let mut o = StallOpts {
                flows: 100_000,
                reps: 2,
                out: None,
                switch: None,
                command,
            };
            while let Some(f) = it.next() {
                match f.as_str() {
                    "--flows" => o.flows = value(&f, it.next())?,
                    "--reps" => o.reps = value(&f, it.next())?,
                    "--out" => o.out = Some(PathBuf::from(value::<String>(&f, it.next())?)),
                    "--switch" => o.switch = Some(PathBuf::from(value::<String>(&f, it.next())?)),
                    "-h" | "--help" => return Ok(Cmd::Help),
                    _ => return Err(format!("{f}: unknown option")),
                }
            }
            Ok(Cmd::Stall(o))
        }
        (Some("bench"), Some("flowmod-storm")) => {
            let addr = value::<String>("flowmod-storm ADDR", it.next())?;
            let n = value("flowmod-storm N", it.next())?;
            Ok(Cmd::Storm(addr, n))
        }
        (Some("bench"), Some("forward")) => {
            let a = value::<String>("forward IF_A", it.next())?;
            let b = value::<String>("forward IF_B", it.next())?;
            let kernel = match it.next().as_deref() {
                None => false,
                Some("--kernel") => true,
                Some(f) => return Err(format!("{f}: unknown option")),
            };
            Ok(Cmd::Forward(a, b, kernel))
        }
        (Some("bench"), Some("answer")) => {
            let addr = value::<String>("answer ADDR", it.next())?;
            if let Some(f) = it.next() {
                return Err(format!("{f}: unknown option"));
            }
            Ok(Cmd::Answer(addr))
        }
        _ => Err("unknown command".into()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = shg_scenario::scenario::cli::dispatch(&args) {
        return code;
    }
    let cmd = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shg-scenario: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        Cmd::Help => {
            print!("{USAGE}{}", shg_scenario::scenario::cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Cmd::Datapath(o) => run_datapath(&o).map(|(r, dir)| (r.markdown(), dir)),
        Cmd::Flows(o) => run_flows(&o).map(|(r, dir)| (r.markdown(), dir)),
        Cmd::Qos(o) => run_qos(&o).map(|(r, dir)| (r.markdown(), dir)),
        Cmd::Stall(o) => run_stall(&o).map(|(r, dir)| (r.markdown(), dir)),
        Cmd::Forward(a, b, kernel) => {
            let Err(e) = forward(&a, &b, kernel);
            eprintln!("shg-scenario bench forward: {e}");
            return ExitCode::FAILURE;
        }
        Cmd::Answer(addr) => {
            let Err(e) = answer(&addr);
            eprintln!("shg-scenario bench answer: {e}");
            return ExitCode::FAILURE;
        }
        Cmd::Storm(addr, n) => {
            return match flowmod_storm(&addr, n) {
                Ok(secs) => {
                    println!("{secs:.4}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("shg-scenario bench flowmod-storm: {e}");
                    ExitCode::FAILURE
                }
            };
        }
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
