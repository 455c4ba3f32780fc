//! End-to-end test of the northbound API wired into the real daemon: `shgctl` against `shg-controller` (with `[api]` and `[discovery]`) driving shg-switch, in network namespaces.
//!
//! One namespace `sw` holds shg-switch (ports 1..4 = veths `<p>s1`..`<p>s4`, whose peers
//! `<p>h1`..`<p>h4` stay in `sw` too: the test looks at flows and queues, not at traffic) and
//! shg-controller, whose config file has an `[api]` table (certificates made here with the
//! openssl CLI, relative paths resolved against the file's directory, a plain `/metrics` on
//! loopback) and a `[discovery]` table on `<p>d0` (198.18.1.1/24), a veth to the namespace
//! `dev` (198.18.1.2/24) where `shg-discover --advertise` plays a UPnP device. Every `shgctl`
//! runs inside `sw` against https://127.0.0.1:8443 — a user token made with
//! `shgctl token create`, a monitor token, or the ISP's client certificate.
//!
//! Checked, in order: `status` and `services` answer (`--json`); the user raises a service's
//! priority within the ISP's bounds → accepted and applied, the switch's queue (dump-queues)
//! changes, the store and the config file hold it (the file keeps `[api]`), and an event
//! stream sees the `policy` event; a priority outside the bounds → 403, nothing changes (file,
//! store, queues); an ISP `PUT /v1/policy?dry_run=true` → a plan with the meter it would add,
//! nothing changes; the real ISP push → flows change on the switch and the file holds it; a
//! SIGHUP afterwards changes nothing (the reload re-reads what the API wrote: 0 changes, no
//! flow touched, same version); `/metrics` answers the monitor (not the user) and on the
//! plain loopback listener; the fake device appears in `devices` and the flows (a service
//! reaches `device:HomeGateway`), and leaves both after its byebye.
//!
//! Needs root (SKIP otherwise), the openssl CLI and python3. shg-switch and shg-discover
//! are the workspace binaries (`SHG_SWITCH_BIN` overrides the switch). `SHG_KEEP_SCRATCH=1`
//! keeps the logs.

#[path = "../../tests/common/netns.rs"]
mod netns;

use netns::{
    prefix, run, skip_unless_root, wait_for_file_text, wait_until, Netns, Proc, Scratch, Veth,
};
use serde_json::Value;
use shg_controller::runtime::queues::parse_dump_queues;
use shg_flows::mods::MeterModCommand;
use shg_flows::text::parse_meter;
use shg_flows::wire::message::{encode, Message};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const API: &str = "https://127.0.0.1:8443";
const DEVICE_IP: &str = "198.18.1.2";

/// The policy: uplink s1, LAN s2, services `call` (priority 3, the user may choose 1..=4)
/// and `backup` (it may reach HomeGateway devices on the LAN). `user_prio`: call's
/// `[services.call.user]`; `backup_max`: backup's cap.
fn policy(p: &str, user_prio: Option<u8>, backup_max: Option<&str>) -> String {
    let mut t = format!(
        r#"[gateway]
datapath_id = "0000000000000001"
listen = "ptcp:6653:127.0.0.1"
lan = ["{p}s2"]
local = false

[gateway.uplink]
port = "{p}s1"
up_rate = "20mbit"
down_rate = "100mbit"

[services.call]
port = "{p}s3"
mac = "02:00:00:00:01:01"
ipv4 = ["198.18.0.11"]
class = "streaming"
queue = 1
min_rate = "2mbit"
priority = 3
priority_bounds = [1, 4]
reach = ["wan"]

[services.backup]
port = "{p}s4"
mac = "02:00:00:00:01:02"
ipv4 = ["198.18.0.12"]
class = "bulk"
queue = 2
min_rate = "1mbit"
priority = 5
reach = ["wan", "device:HomeGateway"]
"#
    );
    if let Some(m) = backup_max {
        t = t.replace(
            "priority = 5\n",
            &format!("priority = 5\nmax_rate = \"{m}\"\n"),
        );
    }
    if let Some(u) = user_prio {
        t.push_str(&format!("\n[services.call.user]\npriority = {u}\n"));
    }
    t
}

fn daemon_tables(p: &str) -> String {
    format!(
        "\n# This machine's settings.\n[api]\nlisten = \"127.0.0.1:8443\"\ncert = \"certs/server.pem\"\nkey = \"certs/server.key\"\nisp_ca = \"certs/isp-ca.pem\"\ntokens = \"tokens\"\nmetrics_listen = \"127.0.0.1:9100\"\n\n[discovery]\ninterfaces = [\"{p}d0\"]\n"
    )
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl CLI (installed by tests/setup.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`NAME.pem`, `NAME.key`) and a certificate it signs (`LEAF.pem`, `LEAF.key`).
fn ca_and_leaf(dir: &Path, ca: &str, leaf: &str, ext: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    let (k, c, s) = (
        format!("{ca}.key"),
        format!("{ca}.pem"),
        format!("/CN=shg e2e {ca}"),
    );
    a.extend(["-keyout", &k, "-out", &c, "-days", "2", "-subj", &s]);
    openssl(dir, &a);
    std::fs::write(dir.join(format!("{leaf}.ext")), ext).unwrap();
    let (lk, lr, ls) = (
        format!("{leaf}.key"),
        format!("{leaf}.csr"),
        format!("/CN=shg e2e {leaf}"),
    );
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend(["-keyout", &lk, "-out", &lr, "-subj", &ls]);
    openssl(dir, &a);
    let (lp, le) = (format!("{leaf}.pem"), format!("{leaf}.ext"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &lr,
            "-CA",
            &c,
            "-CAkey",
            &k,
            "-CAcreateserial",
            "-out",
            &lp,
            "-days",
            "2",
            "-extfile",
            &le,
        ],
    );
}

/// The workspace binary `name` of this build (next to this test's profile directory).
fn workspace_bin(name: &str, var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .unwrap_or_default();
    assert!(
        p.exists(),
        "{name} not found at {} (build it: `cargo build -p shg-switch`, or set {var})",
        p.display()
    );
    p
}

/// Sends a file of OpenFlow messages to 127.0.0.1:6634 and reads until the BARRIER_REPLY
/// of xid 9999, counting OFPT_ERRORs.
const OFP_SENDER: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", 6634), timeout=10)
s.sendall(open(sys.argv[1], "rb").read())
buf, errors = b"", 0
while True:
    d = s.recv(65536)
    if not d:
        sys.exit("closed before the barrier reply")
    buf += d
    while len(buf) >= 8 and len(buf) >= int.from_bytes(buf[2:4], "big"):
        n = int.from_bytes(buf[2:4], "big")
        typ, xid = buf[1], int.from_bytes(buf[4:8], "big")
        buf = buf[n:]
        errors += typ == 1
        if typ == 21 and xid == 9999:
            print("errors=%d" % errors)
            sys.exit(0)
"#;

/// HELLO, a METER_MOD per id, BARRIER_REQUEST (xid 9999).
fn meter_mods(cmd: MeterModCommand, ids: std::ops::Range<u32>) -> Vec<u8> {
    let mut b = encode(
        1,
        &Message::Hello {
            version: 4,
            elements: Vec::new(),
        },
    );
    for id in ids {
        let text = if cmd == MeterModCommand::Delete {
            format!("meter={id}")
        } else {
            format!("meter={id},kbps,band=type=drop,rate=1000")
        };
        let m = parse_meter(&text, cmd).expect("meter");
        b.extend(encode(id, &Message::MeterMod(m)));
    }
    b.extend(encode(9999, &Message::BarrierRequest));
    b
}

/// Who calls the API.
#[derive(Clone, Copy)]
enum Who<'a> {
    Token(&'a str),
    Isp,
}

/// Everything the test runs. Field order = drop order.
struct Rig {
    ctl: Option<Proc>,
    device: Option<Proc>,
    sw: Option<Proc>,
    _veths: Vec<Veth>,
    dev: Netns,
    ns: Netns,
    p: String,
    scratch: Scratch,
    started: Instant,
}

impl Rig {
    fn fail(&self, what: &str) -> ! {
        let d = |p: &Option<Proc>| p.as_ref().map_or_else(String::new, Proc::describe);
        panic!(
            "{what}\n--- controller: {}\n--- switch: {}\n--- device: {}",
            d(&self.ctl),
            d(&self.sw),
            d(&self.device)
        );
    }

    fn config(&self) -> PathBuf {
        self.scratch.join("gateway.toml")
    }

    fn ctl_log(&self) -> String {
        self.ctl.as_ref().map(Proc::log_text).unwrap_or_default()
    }

    /// `shgctl ARGS` in the switch namespace: (exit code, stdout, stderr).
    fn shgctl(&self, who: Who<'_>, args: &[&str]) -> (i32, String, String) {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            self.ns.name(),
            env!("CARGO_BIN_EXE_shgctl"),
        ])
        .args(args)
        .args(["--server", API, "--timeout", "10", "--ca"])
        .arg(self.scratch.join("certs/server-ca.pem"));
        match who {
            Who::Token(t) => {
                c.args(["--token", t]);
            }
            Who::Isp => {
                c.arg("--cert")
                    .arg(self.scratch.join("certs/isp.pem"))
                    .arg("--key")
                    .arg(self.scratch.join("certs/isp.key"));
            }
        }
        let out = c.output().expect("run shgctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `shgctl --json ARGS` that must succeed: its JSON.
    fn json(&self, who: Who<'_>, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (code, out, err) = self.shgctl(who, &a);
        if code != 0 {
            self.fail(&format!("shgctl {args:?} exited {code}: {err}"));
        }
        serde_json::from_str(&out)
            .unwrap_or_else(|e| self.fail(&format!("shgctl {args:?}: not JSON ({e}): {out}")))
    }

    fn dump_flows(&self) -> String {
        self.ns
            .exec_ok(&[
                "ovs-ofctl",
                "-O",
                "OpenFlow13",
                "dump-flows",
                "tcp:127.0.0.1:6634",
            ])
            .unwrap_or_else(|e| self.fail(&format!("dump-flows: {e}")))
    }

    /// (identity, duration) of every flow: identity without counters and ages.
    fn flows(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .dump_flows()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("cookie="))
            .map(|l| {
                let mut dur = 0.0;
                let id: Vec<&str> = l
                    .split(", ")
                    .filter(|part| {
                        if let Some(d) = part.strip_prefix("duration=") {
                            dur = d.trim_end_matches('s').parse().unwrap_or(0.0);
                            return false;
                        }
                        !["n_packets=", "n_bytes=", "idle_age=", "hard_age="]
                            .iter()
                            .any(|k| part.starts_with(k))
                    })
                    .collect();
                (id.join(", "), dur)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The uplink's (port 1) queue `id`: (min_rate, priority).
    fn queue(&self, id: u32) -> (u64, u8) {
        let (ok, text) =
            shg_controller::switch_ctl::request(&self.scratch.join("sw.ctl"), "dump-queues")
                .unwrap_or_else(|e| self.fail(&format!("dump-queues: {e}")));
        assert!(ok, "dump-queues: {text}");
        let q = parse_dump_queues(&text).unwrap_or_else(|e| self.fail(&e));
        q.get(&1)
            .and_then(|pq| pq.queues.iter().find(|q| q.queue_id == id))
            .map(|q| (q.min_rate, q.priority))
            .unwrap_or_else(|| self.fail(&format!("no queue {id} on the uplink:\n{text}")))
    }

    fn file(&self) -> String {
        std::fs::read_to_string(self.config()).unwrap_or_default()
    }

    fn store(&self) -> shg_controller::store::Record {
        shg_controller::store::Store::open(&self.scratch.join("store"))
            .and_then(|s| s.load())
            .ok()
            .flatten()
            .unwrap_or_else(|| self.fail("no store record"))
    }

    /// Sends `bytes` (OpenFlow messages after a HELLO, ending with a BARRIER_REQUEST of xid
    /// 9999) to the switch's passive listener from inside the namespace; returns
    /// `errors=N` (the OFPT_ERRORs it answered) once the barrier is answered.
    fn ofp_send(&self, bytes: &[u8]) -> String {
        let blob = self.scratch.join("ofp.bin");
        std::fs::write(&blob, bytes).unwrap();
        self.ns
            .exec_ok(&["python3", "-c", OFP_SENDER, &blob.to_string_lossy()])
            .unwrap_or_else(|e| self.fail(&format!("OpenFlow sender: {e}")))
    }

    fn step(&self, what: &str) {
        eprintln!("[{:>5.1} s] {what}", self.started.elapsed().as_secs_f64());
    }
}

fn make_rig() -> Rig {
    let started = Instant::now();
    let p = prefix();
    let scratch = Scratch::new(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        &format!("e2e-api-{p}"),
    )
    .expect("scratch");
    let ns = Netns::new(&format!("{p}sw")).expect("netns");
    let dev = Netns::new(&format!("{p}dev")).expect("netns");
    let mut veths = Vec::new();
    for n in 1..=4 {
        veths.push(Veth::new(&format!("{p}s{n}"), &ns, &format!("{p}h{n}"), &ns).expect("veth"));
    }
    veths.push(Veth::new(&format!("{p}d0"), &ns, &format!("{p}d1"), &dev).expect("veth"));
    ns.add_addr(&format!("{p}d0"), "198.18.1.1/24")
        .expect("addr");
    dev.add_addr(&format!("{p}d1"), &format!("{DEVICE_IP}/24"))
        .expect("addr");
    ns.link_up("lo").expect("lo up");
    dev.link_up("lo").expect("lo up");
    // Certificates: the server's (127.0.0.1) from a server CA; the ISP's client certificate.
    let certs = scratch.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    ca_and_leaf(
        &certs,
        "server-ca",
        "server",
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
    );
    ca_and_leaf(
        &certs,
        "isp-ca",
        "isp",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n",
    );
    std::fs::write(
        scratch.join("gateway.toml"),
        format!("{}{}", policy(&p, None, None), daemon_tables(&p)),
    )
    .unwrap();
    Rig {
        ctl: None,
        device: None,
        sw: None,
        _veths: veths,
        dev,
        ns,
        p,
        scratch,
        started,
    }
}

/// A token of `role` made with `shgctl token create`.
fn token(rig: &Rig, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shgctl"))
        .args([
            "token", "create", "--role", role, "--label", "e2e", "--json", "--store",
        ])
        .arg(rig.scratch.join("tokens"))
        .output()
        .expect("shgctl token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("token JSON");
    v["token"].as_str().expect("token").to_string()
}

#[test]
fn shgctl_against_the_daemon() {
    if skip_unless_root("shgctl_against_the_daemon") {
        return;
    }
    let mut rig = make_rig();
    let user = token(&rig, "user");
    let monitor = token(&rig, "monitor");

    // The controller (API, discovery), then the switch.
    let mut c = Command::new(env!("CARGO_BIN_EXE_shg-controller"));
    c.arg("--config")
        .arg(rig.config())
        .arg("--store")
        .arg(rig.scratch.join("store"))
        .arg("--switch-ctl")
        .arg(rig.scratch.join("sw.ctl"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    rig.ctl = Some(Proc::spawn_in(&rig.ns, &c, &rig.scratch.join("controller.log")).unwrap());
    let log = rig.scratch.join("controller.log");
    if !wait_for_file_text(&log, "waiting for the switch", Duration::from_secs(10))
        || !rig.ctl_log().contains("api: https://127.0.0.1:8443")
    {
        rig.fail("the controller did not start its API and wait for the switch");
    }
    // No switch yet: a push is stored and written back, applied when the switch comes.
    let o = rig.json(Who::Token(&user), &["priority", "set", "call", "2"]);
    assert_eq!(
        (&o["applied"], &o["changed"], &o["version"]),
        (&Value::Bool(false), &Value::Bool(true), &Value::from(2)),
        "{o}"
    );
    let st = rig.json(Who::Token(&user), &["status"]);
    assert_eq!(st["connected"], Value::Bool(false), "{st}");
    rig.step("push without a switch: stored, not applied");
    let mut s = Command::new(workspace_bin("shg-switch", "SHG_SWITCH_BIN"));
    s.args(["--datapath-id", "1"]);
    for n in 1..=4 {
        s.arg("--port").arg(format!("{n}={}s{n}", rig.p));
    }
    s.args([
        "--controller",
        "tcp:127.0.0.1:6653",
        "--listen",
        "ptcp:6634:127.0.0.1",
        "--fail-mode",
        "secure",
        "--ctl",
    ])
    .arg(rig.scratch.join("sw.ctl"))
    .env("NO_COLOR", "1");
    rig.sw = Some(Proc::spawn_in(&rig.ns, &s, &rig.scratch.join("switch.log")).unwrap());
    if !wait_for_file_text(&log, "sync (connect) done", Duration::from_secs(15)) {
        rig.fail("no first sync");
    }
    rig.step("controller and switch up, first sync done");

    // Reads.
    let st = rig.json(Who::Token(&user), &["status"]);
    assert_eq!(st["connected"], Value::Bool(true), "{st}");
    assert_eq!(st["policy_version"], 2, "{st}");
    assert_eq!(
        rig.queue(1),
        (2_000_000, 2),
        "the offline push was not applied at connect"
    );
    let sv = rig.json(Who::Token(&user), &["services"]);
    let names: Vec<&str> = sv["services"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["backup", "call"], "{sv}");
    rig.step("status and services answered");

    // The user raises call's priority within the ISP's bounds; an event stream watches.
    let mut events = Command::new("ip")
        .args(["netns", "exec", rig.ns.name(), env!("CARGO_BIN_EXE_shgctl")])
        .args([
            "events",
            "--count",
            "2",
            "--timeout",
            "20",
            "--server",
            API,
            "--token",
            &user,
            "--ca",
        ])
        .arg(rig.scratch.join("certs/server-ca.pem"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("shgctl events");
    let mut ev_out = BufReader::new(events.stdout.take().expect("events stdout"));
    let mut hello = String::new();
    let _ = ev_out.read_line(&mut hello);
    assert!(hello.starts_with("hello"), "event stream: {hello:?}");
    let o = rig.json(Who::Token(&user), &["priority", "set", "call", "1"]);
    assert_eq!(
        (&o["applied"], &o["changed"], &o["version"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::from(3)),
        "{o}"
    );
    assert_eq!(rig.queue(1), (2_000_000, 1), "the queue did not change");
    let file = rig.file();
    let p = shg_controller::config::parse(&file)
        .unwrap_or_else(|e| rig.fail(&format!("the written-back file: {e:?}\n{file}")));
    assert_eq!(p.services["call"].user.priority, Some(1), "{file}");
    let d = shg_controller::config::daemon_settings(&file).unwrap();
    assert!(
        d.api.is_some() && d.discovery.is_some(),
        "[api] or [discovery] lost:\n{file}"
    );
    let rec = rig.store();
    assert_eq!((rec.version, rec.policy.as_str()), (3, file.as_str()));
    let mut seen = String::new();
    for _ in 0..2 {
        let _ = ev_out.read_line(&mut seen);
    }
    let _ = events.wait();
    assert!(
        seen.contains("policy {") && seen.contains("user PUT /v1/priorities"),
        "events: {seen}"
    );
    rig.step("user priority within bounds: applied, queue changed, file written back, event seen");

    // Outside the bounds: 403, nothing changes.
    let (code, _, err) = rig.shgctl(Who::Token(&user), &["priority", "set", "call", "0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("403 outside_bounds"), "{err}");
    assert_eq!(rig.queue(1), (2_000_000, 1));
    assert_eq!(rig.file(), file);
    assert_eq!(rig.store().version, 3);
    rig.step("user priority outside bounds: 403, nothing changed");

    // The ISP: a dry run, then the real push (backup capped: a meter and its flow).
    let isp_file = rig.scratch.join("isp.toml");
    std::fs::write(&isp_file, policy(&rig.p, Some(1), Some("5mbit"))).unwrap();
    let isp_path = isp_file.to_string_lossy().into_owned();
    let before = rig.flows();
    let o = rig.json(Who::Isp, &["policy", "put", &isp_path, "--dry-run"]);
    let changes: Vec<&str> = o["plan"]["changes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        (&o["dry_run"], &o["applied"]),
        (&Value::Bool(true), &Value::Bool(false)),
        "{o}"
    );
    assert!(changes.iter().any(|c| c.contains("meter")), "{o}");
    let ids = |f: &[(String, f64)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&rig.flows()),
        ids(&before),
        "a dry run changed the flows"
    );
    assert_eq!(rig.file(), file);
    assert_eq!(rig.store().version, 3);
    rig.step(&format!(
        "isp dry run: {} planned change(s), nothing changed",
        changes.len()
    ));
    let o = rig.json(Who::Isp, &["policy", "put", &isp_path]);
    assert_eq!(
        (&o["applied"], &o["version"]),
        (&Value::Bool(true), &Value::from(4)),
        "{o}"
    );
    let after = rig.flows();
    assert_ne!(ids(&after), ids(&before));
    assert!(
        after.iter().any(|f| f.0.contains("meter:"))
            && !before.iter().any(|f| f.0.contains("meter:")),
        "no meter instruction appeared"
    );
    let file = rig.file();
    let p = shg_controller::config::parse(&file).unwrap();
    assert_eq!(p.services["backup"].max_rate, Some(5_000_000), "{file}");
    assert!(shg_controller::config::daemon_settings(&file)
        .unwrap()
        .api
        .is_some());
    rig.step("isp push: applied, flows changed, file written back");

    // SIGHUP re-reads the file the API wrote: nothing changes.
    let pid = rig.ctl.as_ref().map_or(0, Proc::pid).to_string();
    run("kill", &["-HUP", &pid]).unwrap();
    if !wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        rig.ctl_log().contains("sync (reload) done")
    }) {
        rig.fail("no sync after SIGHUP");
    }
    let log = rig.ctl_log();
    let line = log
        .lines()
        .find(|l| l.contains("sync (reload) done"))
        .unwrap_or_default();
    assert!(line.ends_with(": 0 change(s)"), "{line}");
    let again = rig.flows();
    assert_eq!(
        again.iter().map(|f| &f.0).collect::<Vec<_>>(),
        after.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    assert!(
        again.iter().zip(&after).all(|(a, b)| a.1 >= b.1),
        "a flow was touched"
    );
    assert_eq!(rig.store().version, 4);
    assert_eq!(
        rig.json(Who::Token(&monitor), &["status"])["policy_version"],
        4
    );
    rig.step("SIGHUP: 0 changes, version 4 kept");

    // The switch refuses a push (its meter table is full of foreign meters): 502, and the
    // store, the file, the policy in force and the flows are as before.
    let full = rig.ofp_send(&meter_mods(MeterModCommand::Add, 3000..4024));
    assert!(full.contains("errors="), "{full}");
    let file = rig.file();
    let before = rig.flows();
    let capped = rig.scratch.join("isp2.toml");
    std::fs::write(
        &capped,
        policy(&rig.p, Some(1), Some("5mbit"))
            .replace("priority = 3\n", "priority = 3\nmax_rate = \"8mbit\"\n"),
    )
    .unwrap();
    let (code, _, err) = rig.shgctl(Who::Isp, &["policy", "put", &capped.to_string_lossy()]);
    assert!(
        code == 1 && err.contains("502 switch_refused"),
        "{code}: {err}"
    );
    assert_eq!(rig.file(), file, "the file was not put back");
    assert_eq!(rig.store().version, 4);
    assert_eq!(
        rig.json(Who::Token(&monitor), &["status"])["policy_version"],
        4
    );
    assert_eq!(
        ids(&rig.flows()),
        ids(&before),
        "the refused push was not rolled back"
    );
    rig.ofp_send(&meter_mods(MeterModCommand::Delete, 3000..4024));
    rig.step(&format!(
        "switch refused a push ({}; {}): 502, everything put back",
        full.trim(),
        err.lines().next().unwrap_or("").trim()
    ));

    // Metrics: the monitor yes, the user no, the plain listener on loopback.
    let (code, text, err) = rig.shgctl(Who::Token(&monitor), &["metrics"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("shg_policy_version 4\n"), "{text}");
    assert!(text.contains("shg_switch_connected 1\n"), "{text}");
    let (code, _, err) = rig.shgctl(Who::Token(&user), &["metrics"]);
    assert!(code == 1 && err.contains("403"), "{code} {err}");
    let plain = rig
        .ns
        .exec_ok(&[
            "python3",
            "-c",
            "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9100/metrics',timeout=5).read().decode())",
        ])
        .unwrap_or_else(|e| rig.fail(&format!("plain metrics: {e}")));
    assert!(plain.contains("shg_policy_version 4"), "{plain}");
    rig.step("metrics: monitor 200, user 403, plain loopback listener 200");

    // Discovery: a UPnP device appears on the LAN interface, is listed and re-planned for.
    let replans = rig.ctl_log().matches("sync (devices) done").count();
    let mut dcmd = Command::new(env!("CARGO_BIN_EXE_shg-discover"));
    dcmd.args(["--interface", &format!("{}d1", rig.p)]).args([
        "--advertise",
        "e2e device",
        "--no-search",
        "--watch",
        "--max-age",
        "60",
    ]);
    rig.device = Some(Proc::spawn_in(&rig.dev, &dcmd, &rig.scratch.join("device.log")).unwrap());
    let listed = |rig: &Rig| -> usize {
        let v = rig.json(Who::Token(&user), &["devices"]);
        v["devices"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|d| {
                        d["address"] == DEVICE_IP
                            && d["device_type"]
                                .as_str()
                                .is_some_and(|t| t.contains("HomeGateway"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    if !wait_until(Duration::from_secs(8), Duration::from_millis(200), || {
        listed(&rig) == 1
    }) {
        rig.fail("the device was not listed by GET /v1/devices within 8 s");
    }
    if !wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        rig.ctl_log().matches("sync (devices) done").count() > replans
            && rig.dump_flows().contains(DEVICE_IP)
    }) {
        rig.fail(&format!(
            "no re-plan for the device, or no flow for {DEVICE_IP}:\n{}",
            rig.dump_flows()
        ));
    }
    rig.step("device appeared: listed, re-planned, flows for its address installed");
    if let Some(mut d) = rig.device.take() {
        d.stop(); // SIGTERM: byebye
    }
    if !wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
        listed(&rig) == 0 && !rig.dump_flows().contains(DEVICE_IP)
    }) {
        rig.fail("the device's entry or flows stayed after its byebye");
    }
    rig.step("device gone: unlisted, its flows removed");
    let elapsed = rig.started.elapsed();
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}
