//! One bad configuration per validation rule, kept as data: `tests/fixtures/switch/bad/NAME.toml`
//! and `NAME.expected` (the error lines, in order; a line ending in `*` matches by prefix).
//! Good files in `good/` must parse, and `NAME.expected` is their `--check-config` summary.
//! The binary is checked too: `--help`, `--check-config`, and exit code 1 with the errors.

use shg_switch::config::{parse_toml, validate};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/switch")
        .join(sub)
}

fn tomls(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

fn errors_of(path: &Path) -> Result<String, String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).unwrap();
    parse_toml(&name, &text)
        .and_then(|raw| validate(&raw))
        .map(|c| c.summary())
        .map_err(|e| e.to_string())
}

fn matches_expected(got: &str, expected: &str) -> bool {
    let got: Vec<&str> = got.lines().collect();
    let exp: Vec<&str> = expected.lines().collect();
    got.len() == exp.len()
        && got
            .iter()
            .zip(&exp)
            .all(|(g, e)| match e.strip_suffix('*') {
                Some(prefix) => g.starts_with(prefix),
                None => g == e,
            })
}

#[test]
fn every_bad_fixture_fails_with_its_message() {
    let files = tomls(&fixtures("bad"));
    assert!(files.len() >= 20, "fixtures missing: {files:?}");
    let mut failures = Vec::new();
    for f in &files {
        let expected = std::fs::read_to_string(f.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{}: no .expected: {e}", f.display()));
        match errors_of(f) {
            Ok(summary) => failures.push(format!("{}: accepted:\n{summary}", f.display())),
            Err(got) if !matches_expected(&got, &expected) => failures.push(format!(
                "{}:\n  expected: {}\n  got:      {}",
                f.display(),
                expected.trim_end().replace('\n', "\n            "),
                got.replace('\n', "\n            ")
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn good_fixtures_parse() {
    let files = tomls(&fixtures("good"));
    assert!(!files.is_empty());
    for f in files {
        let summary = errors_of(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let expected = std::fs::read_to_string(f.with_extension("expected")).unwrap();
        assert_eq!(summary, expected, "{}", f.display());
    }
}

fn switch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shg-switch"))
}

#[test]
fn binary_help_check_config_and_errors() {
    let out = switch().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--datapath-id",
        "--port",
        "--controller",
        "--listen",
        "--fail-mode",
        "--ctl",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }

    let good = fixtures("good/full.toml");
    let out = switch()
        .args(["--check-config", "--config"])
        .arg(&good)
        .args(["--fail-mode", "secure"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fail_mode: secure\n"),
        "the flag overrides the file: {text}"
    );
    assert!(text.contains("port 7: veth2\n"), "{text}");

    let bad = fixtures("bad/all-errors-reported.toml");
    let out = switch().arg("--config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("port[1].number: 0 is not a valid port number"),
        "{err}"
    );
    assert!(err.contains("fail_mode: \"closed\""), "{err}");

    let out = switch()
        .args(["--port", "x=veth1", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--port x=veth1: \"x\" is not a port number"),
        "{err}"
    );
    assert!(err.contains("--bogus: unknown option"), "{err}");
}
