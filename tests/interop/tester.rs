//! (d) os-ken's OpenFlow 1.3 switch tester (`os_ken.tests.switch.tester`).
//!
//! Topology: one namespace `sw` holding the target switch (dpid 1: shg-switch, or OVS with
//! `SHG_INTEROP_SWITCH=ovs`) and the tester switch (dpid 2: OVS userspace), their ports 1/2/3
//! wired pairwise by veth, both connected to the tester app on 127.0.0.1:6653.
//!
//! `osken_switch_tester_subset` (CI) runs a curated subset of cases that OVS passes and whose
//! expected behaviour the spec states plainly, and requires every case to pass.
//! `osken_switch_tester_run` (ignored; driven by tests/interop/tester-full.sh) runs the case
//! files or directories listed in `SHG_TESTER_CASES` (paths relative to os_ken/tests/switch/of13)
//! and copies the tester log to `SHG_TESTER_LOG`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns::{prefix, run, skip_unless_root, Netns, Proc, Scratch, Veth};
use crate::start_osken;
use crate::topo::{osken_pkg_dir, venv, Ovs, Switch, SwitchSpec, Target};

/// Cases for CI: about 3 minutes on 2 cores. All pass on shg-switch; OVS 3.1 passes them except
/// the meter (it reports burst 1000 for a band set with burst 0) and some timing flakes.
const SUBSET: &[&str] = &[
    "action/00_OUTPUT.json",
    "action/17_PUSH_VLAN.json",
    "action/18_POP_VLAN.json",
    "action/23_SET_NW_TTL_IPv4.json",
    "action/24_DEC_NW_TTL_IPv4.json",
    "action/25_SET_FIELD/03_ETH_DST.json",
    "action/25_SET_FIELD/12_IPV4_DST.json",
    "match/00_IN_PORT.json",
    "match/02_METADATA.json",
    "match/03_ETH_DST.json",
    "match/05_ETH_TYPE.json",
    "match/06_VLAN_VID.json",
    "match/11_IPV4_SRC_Mask.json",
    "match/13_TCP_SRC_IPv4.json",
    "group/00_ALL.json",
    "group/01_SELECT_Ether.json",
    "meter/01_DROP_01_PKTPS_00_100.json",
];

/// One case's result from a tester log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaseResult {
    /// The test file's description, e.g. `action: 00_OUTPUT`.
    pub file: String,
    /// The case's description, e.g. `ethernet/ipv4/tcp-->'actions=output:2'`.
    pub case: String,
    pub ok: bool,
    /// The tester's error line for a failed case.
    pub reason: String,
}

/// Parses the tester's log: a file header line (`action: 00_OUTPUT`), then per case
/// `    <description> OK|ERROR`, an error followed by an indented reason line.
pub(crate) fn parse_log(log: &str) -> Vec<CaseResult> {
    let lines: Vec<&str> = log.lines().collect();
    let mut file = String::new();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        // The tester prints a progress dot (no newline) while a case waits, so a case line
        // may start with dots.
        let line = line.trim_start_matches('.');
        if !line.starts_with(' ') {
            if let Some((kind, _)) = line.split_once(": ") {
                if ["action", "match", "group", "meter"]
                    .iter()
                    .any(|k| kind.starts_with(k))
                {
                    file = line.trim().to_string();
                }
            }
            continue;
        }
        let Some(body) = line.strip_prefix("    ") else {
            continue;
        };
        if body.starts_with(' ') {
            continue;
        }
        let trimmed = body.trim_end();
        let (case, ok) = if let Some(c) = trimmed.strip_suffix(" OK") {
            (c, true)
        } else if let Some(c) = trimmed.strip_suffix(" ERROR") {
            (c, false)
        } else {
            continue;
        };
        let reason = if ok {
            String::new()
        } else {
            lines
                .get(i + 1)
                .map(|l| l.trim().to_string())
                .unwrap_or_default()
        };
        out.push(CaseResult {
            file: file.clone(),
            case: case.trim().to_string(),
            ok,
            reason,
        });
    }
    out
}

/// The running pair of switches and their topology. Drop order: switches, veths, namespace.
#[derive(Debug)]
struct TesterTopo {
    target: Option<Proc>,
    ovs: Ovs,
    _veths: Vec<Veth>,
    ns: Netns,
    scratch: Scratch,
}

impl TesterTopo {
    fn new(target: Target, label: &str) -> std::io::Result<TesterTopo> {
        let p = prefix();
        let scratch = Scratch::new(
            Path::new(env!("CARGO_TARGET_TMPDIR")),
            &format!("interop-{label}-{p}"),
        )?;
        let ns = Netns::new(&format!("{p}sw"))?;
        let mut veths = Vec::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 1..=3 {
            let (ai, bi) = (format!("{p}a{i}"), format!("{p}b{i}"));
            veths.push(Veth::new(&ai, &ns, &bi, &ns)?);
            a.push(ai);
            b.push(bi);
        }
        let ctl = format!("tcp:127.0.0.1:{}", crate::CTL_PORT);
        let mut target_spec = SwitchSpec::new(1, &a);
        target_spec.controllers.push(ctl.clone());
        let mut tester_spec = SwitchSpec::new(2, &b);
        tester_spec.controllers.push(ctl);
        let ovs = Ovs::start(&ns, scratch.path())?;
        ovs.add_bridge("tester", &tester_spec)?;
        let target = match target {
            Target::Ovs => {
                ovs.add_bridge("target", &target_spec)?;
                None
            }
            Target::Shg => match Switch::start(Target::Shg, &ns, &target_spec, scratch.path())? {
                Switch::Shg(p) => Some(p),
                Switch::Ovs(_) => None,
            },
        };
        Ok(TesterTopo {
            target,
            ovs,
            _veths: veths,
            ns,
            scratch,
        })
    }
}

/// Case descriptions left out of the CI subset: MPLS and PBB are not in shg's feature list (OVS
/// rejects PBB too), and they cost a receive timeout each.
const SUBSET_EXCLUDE: &[&str] = &["mpls", "itag", "pbb"];

/// Copies case file `src` to `dst` without the cases whose description contains any of
/// `exclude` (JSON: a description string, then one object per case).
fn filter_cases(src: &Path, dst: &Path, exclude: &[&str]) {
    let py = venv().expect("venv").join("bin/python");
    let script = "import json,sys\n\
        src,dst,ex=sys.argv[1],sys.argv[2],sys.argv[3:]\n\
        l=json.load(open(src))\n\
        keep=[c for c in l if isinstance(c,str) or not any(e in c.get('description','') for e in ex)]\n\
        json.dump(keep,open(dst,'w'),indent=1)\n";
    let mut args = vec!["-c", script, path_str(src), path_str(dst)];
    args.extend_from_slice(exclude);
    run(&py.to_string_lossy(), &args).expect("filter cases");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Runs the tester over `cases` (files or directories relative to of13/; files filtered by
/// `exclude`); returns the results and the log text.
fn run_tester(
    target: Target,
    cases: &[String],
    exclude: &[&str],
    label: &str,
    timeout: Duration,
) -> (Vec<CaseResult>, String) {
    let of13 = osken_pkg_dir().expect("os-ken").join("tests/switch/of13");
    let topo = TesterTopo::new(target, label).expect("tester topology");
    // The tester takes one directory: put the chosen files (or directories) into one.
    let dir = topo.scratch.join("cases");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for c in cases {
        let src = of13.join(c);
        assert!(src.exists(), "no tester case {}", src.display());
        let dst = dir.join(c.replace('/', "__"));
        if src.is_file() && !exclude.is_empty() {
            filter_cases(&src, &dst, exclude);
        } else {
            std::os::unix::fs::symlink(&src, &dst).expect("symlink");
        }
    }
    let dir_s = dir.to_string_lossy().into_owned();
    let mut tester = start_osken(
        &topo.ns,
        &topo.scratch,
        crate::CTL_PORT,
        &[
            "--test-switch-dir",
            &dir_s,
            "--test-switch-target",
            "0000000000000001",
            "--test-switch-tester",
            "0000000000000002",
            "os_ken.tests.switch.tester",
        ],
        "tester.log",
    );
    let code = tester.wait_exit(timeout);
    let log = tester.log_text();
    let results = parse_log(&log);
    if code.is_none() || results.is_empty() {
        let sw = topo
            .target
            .as_ref()
            .map(Proc::describe)
            .unwrap_or_else(|| topo.ovs.describe());
        panic!(
            "tester {} after {timeout:?} with {} results\n--- tester: {}\n--- target: {sw}",
            if code.is_none() {
                "still running"
            } else {
                "ended"
            },
            results.len(),
            tester.describe()
        );
    }
    drop(topo);
    (results, log)
}

/// A case file's description: its first JSON string (`"action: 00_OUTPUT"`).
fn file_description(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let start = text.find('"')? + 1;
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_string())
}

/// Formats failed cases, one per line, for a failure message.
fn failures(results: &[CaseResult]) -> String {
    results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("  {} | {} | {}", r.file, r.case, r.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

/// (d) The curated subset: every case must pass (a failure is retried once: 2-core timing).
#[test]
fn osken_switch_tester_subset() {
    if skip_unless_root("osken_switch_tester_subset") {
        return;
    }
    let _serial = crate::serial();
    let target = Target::from_env();
    let cases: Vec<String> = SUBSET.iter().map(|s| s.to_string()).collect();
    let (results, _) = run_tester(
        target,
        &cases,
        SUBSET_EXCLUDE,
        "tester",
        Duration::from_secs(420),
    );
    let failed_files: Vec<String> = results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.file.clone())
        .collect();
    let mut final_results = results.clone();
    if !failed_files.is_empty() {
        // Retry only the files with failures; a case counts as passed if the retry passes it.
        let of13 = osken_pkg_dir().expect("os-ken").join("tests/switch/of13");
        let retry: Vec<String> = SUBSET
            .iter()
            .filter(|c| file_description(&of13.join(c)).is_some_and(|d| failed_files.contains(&d)))
            .map(|s| s.to_string())
            .collect();
        if !retry.is_empty() {
            let (again, _) = run_tester(
                target,
                &retry,
                SUBSET_EXCLUDE,
                "tester-retry",
                Duration::from_secs(300),
            );
            for r in &mut final_results {
                if !r.ok
                    && again
                        .iter()
                        .any(|a| a.file == r.file && a.case == r.case && a.ok)
                {
                    r.ok = true;
                }
            }
        }
    }
    let ok = final_results.iter().filter(|r| r.ok).count();
    eprintln!("tester subset: {ok}/{} cases passed", final_results.len());
    assert!(
        final_results.len() >= SUBSET.len(),
        "too few results: {final_results:#?}"
    );
    assert!(
        final_results.iter().all(|r| r.ok),
        "{}/{} tester cases failed (file | case | tester's reason):\n{}",
        final_results.len() - ok,
        final_results.len(),
        failures(&final_results)
    );
}

/// The full or partial differential run, for tests/interop/tester-full.sh: `SHG_TESTER_CASES`
/// (space-separated, relative to of13/), `SHG_TESTER_LOG` (where the log is copied),
/// `SHG_INTEROP_SWITCH` (target), `SHG_TESTER_TIMEOUT` (seconds, default 3600).
#[test]
#[ignore = "long: run by tests/interop/tester-full.sh"]
fn osken_switch_tester_run() {
    if skip_unless_root("osken_switch_tester_run") {
        return;
    }
    let _serial = crate::serial();
    let cases: Vec<String> = std::env::var("SHG_TESTER_CASES")
        .unwrap_or_else(|_| "action match group meter".into())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let secs = std::env::var("SHG_TESTER_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    let (results, log) = run_tester(
        Target::from_env(),
        &cases,
        &[],
        "tester-run",
        Duration::from_secs(secs),
    );
    if let Some(path) = std::env::var_os("SHG_TESTER_LOG") {
        std::fs::write(PathBuf::from(path), &log).expect("write log");
    }
    let ok = results.iter().filter(|r| r.ok).count();
    eprintln!("tester run: {ok}/{} cases passed", results.len());
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn parses_ok_and_error_cases() {
        let log = "--- Test start ---\naction: 00_OUTPUT\n    ethernet/ipv4/tcp-->'actions=output:2'      OK\n\
                   match: 03_ETH_DST\n    ethernet/ipv4-->'eth_dst=ff:ff:ff:ff:ff:ff,actions=output:2'   ERROR\n\
                   \x20       Failed to add flows: OFPErrorMsg[type=0x04, code=0x00]\n";
        let r = parse_log(log);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].file, "action: 00_OUTPUT");
        assert!(r[0].ok);
        assert_eq!(
            r[1].case,
            "ethernet/ipv4-->'eth_dst=ff:ff:ff:ff:ff:ff,actions=output:2'"
        );
        assert!(!r[1].ok);
        assert!(r[1].reason.starts_with("Failed to add flows"));
    }

    #[test]
    fn a_case_line_after_progress_dots_counts() {
        let log = "meter: 01_DROP_00_KBPS_00_1M\n....    ethernet/ipv4/tcp-->'in_port=1,actions=meter:1,output:2'      OK\n\
                   ..    ethernet/ipv6/tcp-->'in_port=1,actions=meter:1,output:2'      ERROR\n\
                   \x20       Received incorrect throughput\n";
        let r = parse_log(log);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].ok && !r[1].ok);
        assert_eq!(r[1].file, "meter: 01_DROP_00_KBPS_00_1M");
    }
}
