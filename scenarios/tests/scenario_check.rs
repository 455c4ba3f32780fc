//! Scenario files without root: every library file checks, errors carry their paths (all of
//! them at once), policy patches, the controller config generated from a scenario, and
//! `shg-scenario check`/`list` as a user runs them.

use shg_scenario::scenario::check::{check_file, check_str, patch};
use shg_scenario::scenario::model::*;
use shg_scenario::scenario::policy::{controller_config, map_controller_path};
use shg_scenario::scenario::topo::Plan;
use shg_scenario::scenario::{library_dir, library_files};
use std::process::Command;
use std::time::Duration;

const MINI: &str = r#"
description = "mini"
duration = "10s"
[gateway]
up = "20mbit"
down = "100mbit"
[[service]]
name = "call"
class = "interactive"
min_rate = "2mbit"
priority = 1
priority_bounds = [0, 1]
reach = ["wan"]
user = { max_rate = "3mbit" }
[[service]]
name = "nas"
class = "bulk"
queue = 7
reach = ["lan", "call"]
[[device]]
name = "laptop"
[[traffic]]
name = "media"
kind = "udp"
from = "call"
to = "wan"
rate = "1mbit"
[[traffic]]
name = "p"
kind = "ping"
from = "call"
to = "wan"
hz = 50
[[phase]]
name = "boost"
at = "5s"
do = [{ action = "policy", service = "call", set = { user = { priority = 0 } }, unset = ["user.max_rate"] }]
[[assert]]
kind = "loss"
traffic = "media"
phase = "boost"
max = 1.0
[[assert]]
kind = "grade"
service = "call"
min = "A"
"#;

fn paths(text: &str) -> Vec<String> {
    match check_str("t", text) {
        Ok(_) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.path).collect(),
    }
}

#[test]
fn every_library_scenario_checks() {
    let files = library_files();
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for want in [
        "family-evening",
        "isp-iptv",
        "isolation",
        "controller-failover",
        "admission-rejection",
        "dlna-discovery",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {}",
            library_dir().display()
        );
    }
    for f in &files {
        let s = check_file(f).unwrap_or_else(|e| {
            panic!(
                "{}: {}",
                f.display(),
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(!s.asserts.is_empty(), "{}: no assertions", f.display());
        assert!(!s.description.trim().is_empty());
        // Every address the run will use is in the test ranges.
        let plan = Plan::new("shg1234567a", &s);
        for h in &plan.hosts {
            assert!(shg_scenario::netns::in_test_range(&h.ipv4), "{}", h.ipv4);
        }
    }
    let fe = check_file(&library_dir().join("family-evening.toml")).unwrap();
    assert!(
        fe.duration.as_secs() <= 60,
        "family-evening must stay well under 90 s of wall time"
    );
    assert_eq!(
        (fe.gateway.up_bps, fe.gateway.down_bps),
        (20_000_000, 100_000_000)
    );
    for svc in ["call", "tv", "game", "backup"] {
        assert!(fe.is_service(svc), "{svc}");
    }
}

#[test]
fn dlna_discovery_runs_devices_and_gives_the_controller_a_lan_interface() {
    let s = check_file(&library_dir().join("dlna-discovery.toml")).unwrap();
    assert!(s.duration.as_secs() <= 30, "must run in under 60 s");
    assert_eq!(
        s.software_of("renderer"),
        Some(DeviceSoftware::Gmediarender)
    );
    assert_eq!(s.software_of("server"), Some(DeviceSoftware::Minidlna));
    assert!(s
        .asserts
        .iter()
        .any(|a| matches!(a, Assert::Discovered { .. })));
    assert!(s.phases.iter().any(|p| p
        .actions
        .iter()
        .any(|a| matches!(a, Action::StopDevice { device } if device == "renderer"))));
    let plan = Plan::new("shg1234567a", &s);
    let d = plan.discovery.clone().expect("a discovery port");
    assert!(d.ctl_if.len() <= 15 && d.switch_if.len() <= 15);
    assert!(plan.hosts.iter().all(|h| h.port != d.port));
    assert!(shg_scenario::netns::in_test_range(
        shg_scenario::scenario::topo::CTL_LAN_IP
    ));
    // The controller's LAN port is a LAN port of the policy.
    let policies: Vec<_> = s.services.iter().map(|x| x.policy.clone()).collect();
    let conf = controller_config(&s, &plan, &policies);
    assert!(conf.contains(&format!("\"{}\"", d.switch_if)), "{conf}");
    assert!(conf.contains("\"device:MediaRenderer\""), "{conf}");
    // Without `run`, no discovery port (the other scenarios are unchanged).
    let iso = check_file(&library_dir().join("isolation.toml")).unwrap();
    assert!(Plan::new("shg1234567a", &iso).discovery.is_none());
}

#[test]
fn device_software_keys_are_checked_with_paths() {
    let bad = r#"
description = "x"
duration = "10s"
[gateway]
up = "20mbit"
down = "100mbit"
[[service]]
name = "media"
class = "streaming"
reach = ["device:MediaRenderer"]
[[device]]
name = "tv"
run = "vlc"
[[device]]
name = "box"
run = 3
[[device]]
name = "laptop"
colour = "red"
[[device]]
name = "r1"
run = "gmediarender"
[[device]]
name = "r2"
run = "gmediarender"
[[phase]]
name = "a"
at = "1s"
do = [{ action = "stop-device", device = "laptop" }, { action = "stop-device" }]
[[assert]]
kind = "discovered"
device = "media"
within = "90s"
[[assert]]
kind = "discovered"
device = "r1"
[[assert]]
kind = "discovered"
device = "r1"
within = "5"
"#;
    let p = paths(bad);
    for want in [
        "device[0].run",
        "device[1].run",
        "device[2].colour",
        "device[4].run",
        "phase[0].do[0].device",
        "phase[0].do[1].device",
        "assert[0].device",
        "assert[0].within",
        "assert[1].within",
        "assert[2].within",
    ] {
        assert!(
            p.iter().any(|x| x == want),
            "no error at {want}; got {p:#?}"
        );
    }
    let ok = r#"
description = "x"
duration = "10s"
[gateway]
up = "20mbit"
down = "100mbit"
[[service]]
name = "media"
class = "streaming"
reach = ["device:MediaRenderer"]
[[device]]
name = "r1"
run = "gmediarender"
[[phase]]
name = "off"
at = "5s"
do = [{ action = "stop-device", device = "r1" }]
[[assert]]
kind = "discovered"
device = "r1"
within = "2.5s"
"#;
    let s = check_str("t", ok).unwrap();
    assert_eq!(
        s.asserts,
        vec![Assert::Discovered {
            device: "r1".into(),
            within: Duration::from_millis(2500)
        }]
    );
    assert_eq!(
        s.device_software,
        vec![("r1".into(), DeviceSoftware::Gmediarender)]
    );
}

#[test]
fn the_mini_scenario_checks_and_its_model_is_right() {
    let s = check_str("mini", MINI).unwrap();
    assert_eq!(s.services[0].queue, 1); // assigned, skipping nas's explicit 7
    assert_eq!(s.services[1].queue, 7);
    assert_eq!(s.traffic[1].kind, TrafficKind::Ping { hz: 50 });
    assert_eq!(s.traffic[0].stop, s.duration);
    assert_eq!(
        s.window(Some("boost"))
            .map(|(a, b)| (a.as_secs(), b.as_secs())),
        Some((5, 10))
    );
    assert_eq!(
        s.window(None).map(|(a, b)| (a.as_secs(), b.as_secs())),
        Some((0, 10))
    );
}

#[test]
fn syntax_errors_say_where() {
    let e = check_str("t", "description = \"x\"\nduration = \n").unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].path, "line 2", "{e:?}");
    assert!(e[0].message.starts_with("TOML syntax"), "{e:?}");
}

#[test]
fn every_error_is_reported_with_its_path() {
    let bad = r#"
description = "x"
duration = "5"
colour = "red"
[gateway]
up = "20mbps"
[[service]]
name = "call"
class = "chatty"
min_rate = "0mbit"
priority = 9
reach = ["wan", "nope"]
[[service]]
name = "call"
class = "bulk"
[[service]]
name = "Wan"
class = "bulk"
rat = 5
[[traffic]]
name = "a"
kind = "udp"
from = "call"
to = "mars"
size = 9000
hz = 3
[[traffic]]
name = "b"
kind = "tcp"
from = "call"
to = "wan"
start = "4s"
stop = "2s"
[[traffic]]
name = "c"
kind = "smtp"
from = "call"
to = "wan"
[[traffic]]
name = "d"
kind = "tcp"
from = "call"
to = "wan"
stop = "3s"
[[phase]]
name = "p1"
at = "3s"
do = [{ action = "policy", service = "ghost", set = { min_rate = "lots", queue = 3 }, unset = ["colour"] }]
[[phase]]
name = "p2"
at = "2s"
do = [{ action = "reboot" }]
[[assert]]
kind = "throughput"
traffic = "a"
service = "call"
[[assert]]
kind = "rtt"
traffic = "d"
p99_max = "1ms"
[[assert]]
kind = "reach"
at = "1s"
from = "wan"
to = "call"
allowed = true
spoof = "dns"
[[assert]]
kind = "grade"
service = "call"
min = "E"
[[assert]]
kind = "admission"
phase = "p9"
accepted = false
[[assert]]
kind = "loss"
traffic = "b"
max = 120.0
"#;
    let p = paths(bad);
    for want in [
        "duration",
        "colour",
        "gateway.up",
        "gateway.down",
        "service[0].class",
        "service[0].min_rate",
        "service[0].priority",
        "service[0].reach[1]",
        "service[1].name",
        "service[2].rat",
        "traffic[0].to",
        "traffic[0].size",
        "traffic[0].hz",
        "traffic[0].rate",
        "traffic[2].kind",
        "phase[0].do[0].service",
        "phase[0].do[0].set.min_rate",
        "phase[0].do[0].set.queue",
        "phase[0].do[0].unset[0]",
        "phase[1].do[0]",
        "assert[0]",
        "assert[1].traffic",
        "assert[2].from",
        "assert[2].spoof",
        "assert[3].min",
        "assert[4].phase",
        "assert[5].traffic",
        "assert[5].max",
    ] {
        assert!(
            p.iter().any(|x| x == want),
            "no error at {want}; got {p:#?}"
        );
    }
    // Each error comes once and carries a message.
    let errs = check_str("t", bad).unwrap_err();
    assert!(errs.iter().all(|e| !e.message.is_empty()));
    let rendered = errs.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert!(
        rendered
            .iter()
            .any(|l| l.starts_with("service[0].min_rate: \"0mbit\" must be > 0")),
        "{rendered:#?}"
    );
    assert!(
        rendered
            .iter()
            .any(|l| l.starts_with("gateway.up: ") && l.contains("byte units")),
        "{rendered:#?}"
    );
}

#[test]
fn phases_must_be_in_order_and_times_inside_the_run() {
    let text = MINI.replace("at = \"5s\"", "at = \"11s\"");
    assert!(
        paths(&text).contains(&"phase[0].at".to_string()),
        "{:?}",
        paths(&text)
    );
    let text = MINI.replace("hz = 50", "hz = 50\nstart = \"9.5s\"");
    assert!(paths(&text).contains(&"traffic[1].stop".to_string()));
}

#[test]
fn patches_set_and_unset() {
    let s = check_str("mini", MINI).unwrap();
    let Action::Policy { set, unset, .. } = &s.phases[0].actions[0] else {
        panic!("not a policy action");
    };
    let p = patch(&s.services[0].policy, set, unset);
    assert_eq!(
        p.user,
        Some(UserFields {
            priority: Some(0),
            max_rate: None
        })
    );
    assert_eq!(p.min_rate.as_deref(), Some("2mbit"));
    let p2 = patch(&p, &PolicyFields::default(), &["user.priority".to_string()]);
    assert_eq!(p2.user, None, "an empty user table is dropped");
}

#[test]
fn the_controller_config_names_ports_identities_and_queues() {
    let s = check_str("mini", MINI).unwrap();
    let plan = Plan::new("shg42a", &s);
    let pol: Vec<PolicyFields> = s.services.iter().map(|x| x.policy.clone()).collect();
    let t = controller_config(&s, &plan, &pol);
    for want in [
        "listen = \"ptcp:6653:127.0.0.1\"",
        "lan = [\"shg42as3\"]",
        "local = false",
        "port = \"shg42as0\"\nup_rate = \"20mbit\"\ndown_rate = \"100mbit\"",
        "[services.call]\nport = \"shg42as1\"\nmac = \"02:00:00:00:01:01\"\nipv4 = [\"198.18.1.11\"]\nqueue = 1\nclass = \"interactive\"",
        "priority_bounds = [0, 1]",
        "reach = [\"lan\", \"call\"]",
        "[services.call.user]\nmax_rate = \"3mbit\"",
        "[services.nas]\nport = \"shg42as2\"",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    // It is valid TOML.
    assert!(t.parse::<toml::Table>().is_ok(), "{t}");
    assert_eq!(
        map_controller_path("services.nas.min_rate: \"0mbit\" must be > 0", &s),
        "service[1].min_rate: \"0mbit\" must be > 0"
    );
    assert_eq!(
        map_controller_path("uplink up: guarantees", &s),
        "uplink up: guarantees"
    );
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shg-scenario"))
}

#[test]
fn check_and_list_commands() {
    let dir = std::env::temp_dir().join(format!("shg-scn-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        MINI.replace("rate = \"1mbit\"", "rate = \"1mbps\"")
            .replace("hz = 50", "hz = 500"),
    )
    .unwrap();
    let out = bin().arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("traffic[0].rate: "), "{stdout}");
    assert!(
        stdout.contains("traffic[1].hz: 500: must be 1..=100"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 2, "{stdout}");

    let out = bin().args(["check", "family-evening"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = bin().arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("family-evening") && l.contains("50 s")),
        "{stdout}"
    );
    assert!(stdout.lines().count() >= 5, "{stdout}");

    let out = bin().args(["run", "no-such-scenario"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    let out = bin().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
