//! The config file: the documented example is valid, and every validation and admission rule
//! has a failing file in tests/fixtures/controller/bad/NAME.toml whose errors are exactly the
//! lines of NAME.expected (checked through the library and through the `shg-controller` binary).

use shg_controller::cli::check_text;
use shg_controller::config::parse;
use shg_controller::model::{Class, PortRef, Reach, SwitchLink};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_shg-controller");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/controller")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn example_is_valid_and_means_what_the_docs_say() {
    let text = read(&fixtures().join("gateway.toml"));
    let p = check_text(&text).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let g = &p.gateway;
    assert_eq!(g.datapath_id, 1);
    assert_eq!(
        g.switch,
        SwitchLink::Listen("127.0.0.1:6653".parse().unwrap())
    );
    assert_eq!(g.uplink.port, PortRef::Number(1));
    assert_eq!(
        (g.uplink.up_rate, g.uplink.down_rate),
        (20_000_000, 100_000_000)
    );
    assert_eq!(
        g.lan,
        vec![PortRef::Number(2), PortRef::Name("lan1".into())]
    );
    assert_eq!(g.headroom_permille, 900);
    assert_eq!(g.interactive_share_permille, 500);
    assert_eq!(p.services.len(), 3);
    let call = &p.services["videocall"];
    assert_eq!(call.port, PortRef::Name("veth-call".into()));
    assert_eq!(call.class, Class::Interactive);
    assert_eq!(call.mac, [2, 0, 0, 0, 1, 1]);
    assert_eq!(call.ipv6.len(), 2);
    assert_eq!(call.latency_us, Some(10_000));
    assert_eq!(call.min_rate, 6_000_000);
    assert_eq!(call.reach, vec![Reach::Wan, Reach::Gateway]);
    let iptv = &p.services["iptv"];
    // The user's choices are in force; the ISP's stay visible.
    assert_eq!((iptv.priority, iptv.effective_priority()), (2, 3));
    assert_eq!(iptv.effective_max_rate(), Some(6_000_000));
    assert_eq!(iptv.max_rate, Some(8_000_000));
    assert!(iptv.reach.contains(&Reach::Device("MediaRenderer".into())));
    assert!(p.services_allowed("nas", "iptv"), "reach is symmetric");
    assert!(!p.services_allowed("nas", "videocall"));
    // Defaults: priority from the class, bounds = the priority.
    let nas = &p.services["nas"];
    assert_eq!((nas.priority, nas.priority_bounds), (4, (4, 4)));
}

#[test]
fn docs_example_is_the_fixture() {
    // docs/config.md embeds the complete example verbatim.
    let doc = read(&fixtures().join("../../../docs/config.md"));
    let example = read(&fixtures().join("gateway.toml"));
    assert!(
        doc.contains(&example),
        "docs/config.md must contain tests/fixtures/controller/gateway.toml verbatim"
    );
}

#[test]
fn minimal_is_valid() {
    let text = read(&fixtures().join("minimal.toml"));
    let p = check_text(&text).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    assert_eq!(p.services["nas"].min_rate, 0);
    assert_eq!(p.services["nas"].max_rate, None);
    assert!(p.gateway.local, "LOCAL takes part by default");
}

fn bad_cases() -> Vec<(String, PathBuf)> {
    let dir = fixtures().join("bad");
    let mut v = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            v.push((name, p));
        }
    }
    v.sort();
    v
}

#[test]
fn every_bad_file_fails_with_exactly_its_expected_lines() {
    let cases = bad_cases();
    assert!(cases.len() >= 50, "one file per rule: {}", cases.len());
    let mut failures = Vec::new();
    for (name, path) in &cases {
        let expected = read(&path.with_extension("expected"));
        let expected: Vec<&str> = expected.lines().collect();
        assert!(!expected.is_empty(), "{name}.expected is empty");
        match check_text(&read(path)) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(got) if got != expected => failures.push(format!(
                "{name}:\n  got      {got:?}\n  expected {expected:?}"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn syntax_errors_stop_early_but_rule_errors_are_all_reported() {
    let text = read(&fixtures().join("bad/many_errors.toml"));
    let errs = parse(&text).unwrap_err();
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert_eq!(
        errs[1].to_string(),
        "services.camera.min_rate: \"0mbit\" must be > 0"
    );
}

#[test]
fn binary_check_config_exit_codes_and_output() {
    let good = fixtures().join("gateway.toml");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(": valid\n"), "{stdout}");
    assert!(
        stdout.contains("service videocall: port \"veth-call\", interactive, queue 1, priority 0"),
        "{stdout}"
    );

    let bad = fixtures().join("bad/many_errors.toml");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        read(&bad.with_extension("expected"))
    );

    // `--config` runs the daemon; `plan` is the dry run (validate, admit, plan for an empty switch).
    let out = Command::new(BIN).arg("plan").arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("\nplan: "), "{stdout}");

    let out = Command::new(BIN)
        .arg("check-config")
        .arg("/nonexistent.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(BIN).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
