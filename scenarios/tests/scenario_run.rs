//! A real short scenario in network namespaces (root; SKIP otherwise): `shg-scenario run` with
//! shg-switch and shg-controller, traffic, a policy change, reachability probes and
//! assertions, then the same scenario interrupted with SIGINT. Checks the exit codes, the
//! report files, and that nothing of the run's (namespaces named with its prefix) is left.
//!
//! Binaries: shg-switch and shg-controller of this test's profile (`cargo test --workspace`
//! builds them), else of target/release; SKIP when neither exists.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHORT: &str = r#"
description = "A short real run: a call and a backup on a 10 Mbit/s uplink, one policy change, probes."
duration = "12s"

[gateway]
up = "10mbit"
down = "50mbit"

[[service]]
name = "a"
class = "interactive"
min_rate = "2mbit"
priority = 1
priority_bounds = [0, 1]
reach = ["wan"]

[[service]]
name = "b"
class = "bulk"
min_rate = "1mbit"
reach = ["wan"]

[[traffic]]
name = "a-up"
kind = "udp"
from = "a"
to = "wan"
rate = "1mbit"

[[traffic]]
name = "a-down"
kind = "udp"
from = "wan"
to = "a"
rate = "1mbit"

[[traffic]]
name = "a-ping"
kind = "ping"
from = "a"
to = "wan"
hz = 20

[[traffic]]
name = "b-up"
kind = "tcp"
from = "b"
to = "wan"
start = "2s"

[[phase]]
name = "start"
at = "0s"

[[phase]]
name = "boost"
at = "6s"
do = [{ action = "policy", service = "a", set = { user = { priority = 0 } } }]

[[assert]]
kind = "reach"
at = "1s"
from = "a"
to = "wan"
allowed = true

[[assert]]
kind = "reach"
at = "1.5s"
from = "a"
to = "b"
allowed = false

[[assert]]
kind = "admission"
phase = "boost"
accepted = true

[[assert]]
kind = "throughput"
traffic = "a-up"
phase = "boost"
min = "950kbit"
max = "1050kbit"

[[assert]]
kind = "loss"
traffic = "a-down"
max = 1.0

[[assert]]
kind = "throughput"
traffic = "b-up"
phase = "boost"
min = "4mbit"
max = "10mbit"

[[assert]]
kind = "rtt"
traffic = "a-ping"
phase = "boost"
p99_max = "50ms"
"#;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// shg-switch and shg-controller: this profile's, else release; None when absent.
fn gateway_bins() -> Option<(PathBuf, PathBuf)> {
    let me = PathBuf::from(env!("CARGO_BIN_EXE_shg-scenario"));
    let profile = me.parent()?.to_path_buf();
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release");
    for dir in [profile, release] {
        let (s, c) = (dir.join("shg-switch"), dir.join("shg-controller"));
        if s.is_file() && c.is_file() {
            return Some((s, c));
        }
    }
    None
}

/// Namespaces whose name starts with the run prefix of process `pid` (netns::prefix()).
fn leftovers(pid: u32) -> Vec<String> {
    let p = format!("shg{}", pid % 10_000_000);
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            n.strip_prefix(&p)
                .is_some_and(|r| r.len() > 1 && r.as_bytes()[1] == b'-')
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn a_short_scenario_runs_and_an_interrupted_one_tears_down() {
    if !is_root() {
        eprintln!("SKIP: needs root (network namespaces, veths, tc)");
        return;
    }
    let Some((switch, controller)) = gateway_bins() else {
        eprintln!("SKIP: shg-switch / shg-controller not built (cargo build -p shg-switch -p shg-controller)");
        return;
    };
    for tool in ["iperf3", "tc", "ping"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .status()
            .map_or(true, |s| !s.success())
        {
            eprintln!("SKIP: {tool} not installed (tests/setup.sh)");
            return;
        }
    }
    let work =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("scenario-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let file = work.join("short.toml");
    std::fs::write(&file, SHORT).unwrap();
    let cmd = |out: &Path, log: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_shg-scenario"));
        c.arg("run")
            .arg(&file)
            .arg("--out")
            .arg(out)
            .env("SHG_SWITCH", &switch)
            .env("SHG_CONTROLLER", &controller)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap());
        c
    };

    // 1. A full run.
    let out = work.join("run1");
    let log = work.join("run1.stderr");
    let t0 = Instant::now();
    let child = cmd(&out, &log).spawn().unwrap();
    let pid = child.id();
    let res = child.wait_with_output().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let report = std::fs::read_to_string(out.join("report.md")).unwrap_or_default();
    assert_eq!(
        res.status.code(),
        Some(0),
        "run failed:\n{stderr}\n{report}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        String::from_utf8_lossy(&res.stdout).trim(),
        out.join("report.md").to_string_lossy()
    );
    assert!(report.starts_with("# Scenario short: PASS"), "{report}");
    assert!(
        stderr.contains("phase boost") && stderr.contains("accepted"),
        "{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["passed"], true);
    assert_eq!(json["reach"][0]["received"], 20, "{}", json["reach"]);
    assert_eq!(json["reach"][1]["received"], 0, "{}", json["reach"]);
    assert!(json["grades"][0]["grade"].is_string(), "{}", json["grades"]);
    for f in [
        "throughput.svg",
        "rtt.svg",
        "gateway.toml",
        "switch.toml",
        "controller-1.log",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(
        leftovers(pid).is_empty(),
        "left behind: {:?}",
        leftovers(pid)
    );

    // 2. Interrupted in the middle of the timeline: exit 130, everything torn down.
    let out = work.join("run2");
    let log = work.join("run2.stderr");
    let mut child = cmd(&out, &log).spawn().unwrap();
    let pid = child.id();
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("timeline of")
    {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "never reached t=0"
        );
        if let Some(st) = child.try_wait().unwrap() {
            panic!(
                "exited early ({st}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !leftovers(pid).is_empty(),
        "the run's namespaces should exist while it runs"
    );
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let t_int = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            t_int.elapsed() < Duration::from_secs(30),
            "did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        leftovers(pid).is_empty(),
        "left behind after SIGINT: {:?}",
        leftovers(pid)
    );
    let _ = std::fs::remove_dir_all(&work);
}
