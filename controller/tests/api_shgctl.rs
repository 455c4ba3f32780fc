//! `shgctl` against the running API server, as a process: tables, --json, exit codes
//! (0 ok, 1 refused, 2 usage, 3 cannot connect), the token store, the event stream.

mod api_support;

use api_support::*;
use std::process::{Command, Output};

struct Ctl<'a> {
    s: &'a TestServer,
}

impl Ctl<'_> {
    fn run(&self, who: &Who, args: &[&str]) -> Output {
        let c = certs();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_shgctl"));
        cmd.args(args)
            .arg("--server")
            .arg(format!("https://127.0.0.1:{}", self.s.addr.port()))
            .arg("--ca")
            .arg(c.join("server-ca.pem"))
            .env_remove("SHG_TOKEN")
            .env_remove("SHG_API")
            .env_remove("SHG_API_CA");
        match who {
            Who::Isp => {
                cmd.arg("--cert")
                    .arg(c.join("isp.pem"))
                    .arg("--key")
                    .arg(c.join("isp.key"));
            }
            Who::Token(t) => {
                cmd.env("SHG_TOKEN", t);
            }
            _ => {}
        }
        cmd.output().unwrap()
    }
}

fn text(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn api_shgctl_end_to_end() {
    let s = TestServer::start();
    let ctl = Ctl { s: &s };

    // A token made with shgctl in the server's store works at once.
    let (code, out, err) = text(&ctl.run(
        &Who::Nobody,
        &[
            "token",
            "create",
            "--role",
            "monitor",
            "--label",
            "grafana",
            "--store",
            s.tokens.to_str().unwrap(),
        ],
    ));
    assert_eq!(code, 0, "{err}");
    let token = out.lines().next().unwrap().to_string();
    assert!(token.starts_with("shg_"), "{out}");
    let (code, out, _) = text(&ctl.run(&Who::Token(token.clone()), &["whoami"]));
    assert_eq!((code, out.starts_with("role monitor")), (0, true), "{out}");
    let (code, out, _) = text(&ctl.run(
        &Who::Nobody,
        &["token", "list", "--store", s.tokens.to_str().unwrap()],
    ));
    assert_eq!(code, 0);
    assert!(out.contains("monitor  grafana"), "{out}");
    assert!(!out.contains(&token), "the list never shows a token");

    // Tables for people, JSON for scripts.
    let (code, out, err) = text(&ctl.run(&s.user(), &["status"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("uplink: "), "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("SERVICE"), "{out}");
    assert!(out.contains("videocall"), "{out}");
    let (code, out, _) = text(&ctl.run(&s.user(), &["status", "--json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["services"].as_array().unwrap().len(), 3);
    let (code, out, _) = text(&ctl.run(&s.user(), &["services"]));
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("iptv") && l.contains("streaming") && l.contains("6mbit")),
        "{out}"
    );
    let (code, out, _) = text(&ctl.run(&s.user(), &["priorities"]));
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("iptv") && l.contains("2,4")),
        "{out}"
    );
    let (code, out, _) = text(&ctl.run(&s.user(), &["trace", "iptv", "wan"]));
    assert_eq!(code, 0);
    assert!(out.contains("verdict: forwarded"), "{out}");
    let (code, out, _) = text(&ctl.run(&s.user(), &["congestion"]));
    assert_eq!((code, out.trim()), (0, "uplink up: no congestion"));
    let (code, out, _) = text(&ctl.run(&s.monitor(), &["devices"]));
    assert_eq!((code, out.starts_with("NAME")), (0, true), "{out}");

    // The user's priority: within bounds accepted, outside refused with the reason (exit 1).
    let (code, _, err) = text(&ctl.run(&s.user(), &["priority", "set", "iptv", "1"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("403 outside_bounds") && err.contains("bounds 2..=4"),
        "{err}"
    );
    let (code, out, err) =
        text(&ctl.run(&s.user(), &["priority", "set", "iptv", "4", "--dry-run"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("dry run: would be accepted (version stays 1)"),
        "{out}"
    );
    let (code, out, _) = text(&ctl.run(&s.user(), &["priority", "set", "iptv", "4"]));
    assert_eq!(code, 0);
    assert!(out.starts_with("accepted: version 2"), "{out}");

    // The ISP pushes the config file (TOML) and reads the policy back.
    let dir = TempDir::new("ctl");
    let file = dir.0.join("gateway.toml");
    std::fs::write(&file, GATEWAY).unwrap();
    let (code, out, err) = text(&ctl.run(
        &Who::Isp,
        &["policy", "put", file.to_str().unwrap(), "--dry-run"],
    ));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would be accepted") && out.contains("QUEUE port=1 id=2"),
        "{out}"
    );
    let (code, _, err) = text(&ctl.run(
        &Who::Isp,
        &["policy", "put", file.to_str().unwrap(), "--if-match", "1"],
    ));
    assert_eq!(code, 1);
    assert!(err.contains("412 version_mismatch"), "{err}");
    let (code, out, _) = text(&ctl.run(&Who::Isp, &["policy", "get"]));
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["services"]["iptv"]["user"]["priority"], 4);
    let mut bad = GATEWAY.replace("min_rate = \"1mbit\"", "min_rate = \"0mbit\"");
    bad.push('\n');
    std::fs::write(&file, bad).unwrap();
    let (code, _, err) = text(&ctl.run(&Who::Isp, &["policy", "put", file.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(err.contains("services.nas.min_rate"), "{err}");

    // Metrics: monitor yes, user no.
    let (code, out, _) = text(&ctl.run(&s.monitor(), &["metrics"]));
    assert_eq!(code, 0);
    assert!(out.contains("shg_policy_version 2"), "{out}");
    let (code, _, err) = text(&ctl.run(&s.user(), &["metrics"]));
    assert_eq!(code, 1);
    assert!(err.contains("403"), "{err}");

    // The event stream: a change made while it is open is printed.
    let user = s.user();
    let handle = {
        let exe = env!("CARGO_BIN_EXE_shgctl");
        let c = certs();
        let mut cmd = Command::new(exe);
        cmd.args(["events", "--count", "1", "--json", "--server"])
            .arg(format!("https://127.0.0.1:{}", s.addr.port()))
            .arg("--ca")
            .arg(c.join("server-ca.pem"))
            .env("SHG_TOKEN", &s.monitor)
            .stdout(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, _, _) = text(&ctl.run(&user, &["priority", "set", "iptv", "isp"]));
    assert_eq!(code, 0);
    let out = handle.wait_with_output().unwrap();
    let (code, out, _) = text(&out);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(
        (last["type"].as_str(), last["version"].as_u64()),
        (Some("policy"), Some(3)),
        "{out}"
    );

    // Exit codes: usage 2, cannot connect 3, no credentials 1.
    let (code, _, err) = text(&ctl.run(&s.user(), &["status", "--bogus"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = text(&ctl.run(&s.user(), &["priority", "set", "iptv"]));
    assert_eq!(code, 2);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = Command::new(env!("CARGO_BIN_EXE_shgctl"))
        .args([
            "status",
            "--server",
            &format!("https://127.0.0.1:{port}"),
            "--ca",
        ])
        .arg(certs().join("server-ca.pem"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _, err) = text(&ctl.run(&Who::Nobody, &["status"]));
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
}
