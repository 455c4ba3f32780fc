//! Interop tests against real peers, in network namespaces (issue 3, item 5; docs/interop.md).
//!
//! Each test builds its own topology ([`topo::Star`]: hosts h1-h3, switch namespace `sw`) and
//! starts the switch under test (shg-switch; OVS with `SHG_INTEROP_SWITCH=ovs`) with the three
//! switch-side veths as OpenFlow ports 1-3:
//! - `osken_l2_learning_pings` — an os-ken L2-learning app (tests/interop/osken_l2.py) controls it;
//! - `ovs_ofctl_manages_flows_meters_groups` — ovs-ofctl against `--listen ptcp:`;
//! - `ovs_testcontroller_over_tls_pings` — ovs-testcontroller over pssl with an openssl-made CA;
//! - `tshark_sees_no_malformed_openflow` — captures (a) and (b) style sessions;
//! - `faucet_vlans_forward_and_isolate` — Faucet with two VLANs (tests/interop/faucet.yaml);
//! - `osken_switch_tester_subset` (tester.rs) — os-ken's OF1.3 switch tester on a curated subset;
//! - `ovs_ofctl_reads_queue_config_and_stats` (qos.rs) — ovs-ofctl queue-get-config, queue-stats
//!   and dump-ports against a shg-switch with a shaped port and queues from its TOML file;
//! - `oftest_suite` (oftest.rs) — OFTest's OpenFlow 1.3 suite (own topology: 4 veth pairs);
//! - `kernel_fast_path_forwards_counts_and_obeys_flow_changes` (kfast.rs) — shg-switch with
//!   its kernel fast path, ovs-ofctl reading counters and changing the flow.
//!
//! They need root; without it they print SKIP and pass. Logs of a failing test are kept under
//! target/tmp/interop-*.

mod kfast;
#[path = "../common/netns.rs"]
mod netns;
mod ofctl;
mod oftest;
#[path = "../common/ovs.rs"]
mod ovs;
mod qos;
mod tester;
mod topo;

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use netns::{run, skip_unless_root, wait_for_file_text, wait_until, Netns, Proc, Scratch};
use topo::{interop_dir, setup_venv, venv, Star, Switch, SwitchSpec, Target, TlsFiles};

/// Port of controllers inside the switch namespace (its own loopback: no collisions).
const CTL_PORT: u16 = 6653;
/// Passive listener of the switch for ovs-ofctl.
pub(crate) const LISTEN_PORT: u16 = 6634;
/// TLS controller port.
const TLS_PORT: u16 = 6658;

/// Starts `osken_run.py APPS...` in `ns` listening on 127.0.0.1:`port`; waits until it listens.
pub(crate) fn start_osken(
    ns: &Netns,
    scratch: &Scratch,
    port: u16,
    extra: &[&str],
    log: &str,
) -> Proc {
    let venv = venv().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.arg(interop_dir().join("osken_run.py"))
        .args([
            "--ofp-listen-host",
            "127.0.0.1",
            "--ofp-tcp-listen-port",
            &port.to_string(),
        ])
        .args(extra)
        .current_dir(interop_dir())
        .env("OSKEN_HUB_TYPE", "eventlet")
        .env("PYTHONUNBUFFERED", "1");
    let mut p = Proc::spawn_in(ns, &cmd, &scratch.join(log)).expect("spawn os-ken");
    let up = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        ns.tcp_listening(port)
    });
    assert!(
        up,
        "os-ken never listened on {port}: exited {:?}; {}",
        p.exited(),
        p.describe()
    );
    p
}

/// Interop tests run one at a time (a held guard): they share 2 cores with timing-sensitive
/// peers (the switch tester counts packets within seconds). Taken first, so it is released last,
/// after the test's topology is torn down.
pub(crate) fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Fails the test with the logs of everything involved.
fn fail(what: &str, sw: &Switch, peers: &[&Proc]) -> ! {
    let mut msg = format!("{what}\n--- switch: {}", sw.describe());
    for p in peers {
        msg.push_str(&format!("\n--- peer: {}", p.describe()));
    }
    panic!("{msg}");
}

/// The os-ken L2 scenario on a built topology; returns the switch and controller (still running).
fn osken_l2_scenario(topo: &Star, target: Target) -> (Switch, Proc) {
    let ctl = start_osken(
        &topo.sw,
        &topo.scratch,
        CTL_PORT,
        &["osken_l2"],
        "osken-l2.log",
    );
    let mut spec = SwitchSpec::new(1, &topo.sw_ports);
    spec.controllers.push(format!("tcp:127.0.0.1:{CTL_PORT}"));
    let mut sw = Switch::start(target, &topo.sw, &spec, topo.scratch.path()).expect("start switch");
    if !wait_for_file_text(
        ctl.log(),
        "l2: switch 0000000000000001 connected",
        Duration::from_secs(15),
    ) {
        fail(
            "switch never completed the handshake with os-ken (no SwitchFeatures)",
            &sw,
            &[&ctl],
        );
    }
    if let Err(e) = topo.ping_all(Duration::from_secs(8)) {
        fail(&e, &sw, &[&ctl]);
    }
    if let Err(e) = sw.check_alive() {
        fail(&e, &sw, &[&ctl]);
    }
    let log = ctl.log_text();
    if !log.contains("l2: flow") {
        fail(
            "pings passed but os-ken installed no flow: the controller was not in the path",
            &sw,
            &[&ctl],
        );
    }
    (sw, ctl)
}

/// (a) os-ken L2-learning app controls the switch; pings pass between all three hosts.
#[test]
fn osken_l2_learning_pings() {
    if skip_unless_root("osken_l2_learning_pings") {
        return;
    }
    let _serial = serial();
    let topo = Star::new("osken").expect("topology");
    let (_sw, _ctl) = osken_l2_scenario(&topo, Target::from_env());
}

/// Faucet (a production controller: multi-table pipeline, VLANs by push/pop, learning by
/// packet-in) controls the switch with tests/interop/faucet.yaml: h1 and h2 on VLAN 100 reach
/// each other, h3 on VLAN 200 reaches neither, and Faucet receives no OpenFlow error.
#[test]
fn faucet_vlans_forward_and_isolate() {
    if skip_unless_root("faucet_vlans_forward_and_isolate") {
        return;
    }
    let venv = setup_venv("SHG_FAUCET_VENV", "faucet-venv");
    assert!(
        venv.join("bin/faucet").exists(),
        "Faucet not found in {} (run tests/setup.sh, or set SHG_FAUCET_VENV)",
        venv.display()
    );
    let _serial = serial();
    let topo = Star::new("faucet").expect("topology");
    let (log, exceptions) = (
        topo.scratch.join("faucet.log"),
        topo.scratch.join("faucet-exceptions.log"),
    );
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(venv.join("bin/faucet"));
    cmd.args([
        "--ryu-ofp-listen-host",
        "127.0.0.1",
        "--ryu-ofp-tcp-listen-port",
        &CTL_PORT.to_string(),
    ])
    .env("PATH", path)
    .env("FAUCET_CONFIG", interop_dir().join("faucet.yaml"))
    .env("FAUCET_LOG", &log)
    .env("FAUCET_EXCEPTION_LOG", &exceptions)
    .env("FAUCET_PROMETHEUS_ADDR", "127.0.0.1")
    .env("FAUCET_PROMETHEUS_PORT", "9302");
    let ctl = Proc::spawn_in(&topo.sw, &cmd, &topo.scratch.join("faucet.out")).expect("faucet");
    let up = wait_until(Duration::from_secs(30), Duration::from_millis(100), || {
        topo.sw.tcp_listening(CTL_PORT)
    });
    let mut spec = SwitchSpec::new(1, &topo.sw_ports);
    spec.controllers.push(format!("tcp:127.0.0.1:{CTL_PORT}"));
    let mut sw = Switch::start(Target::from_env(), &topo.sw, &spec, topo.scratch.path())
        .expect("start switch");
    if !up {
        fail("Faucet never listened", &sw, &[&ctl]);
    }
    if !wait_for_file_text(&log, "Cold start configuring DP", Duration::from_secs(20)) {
        fail("Faucet never configured the switch", &sw, &[&ctl]);
    }
    let faucet_log = || std::fs::read_to_string(&log).unwrap_or_default();
    for (a, b) in [(0, 1), (1, 0)] {
        if !topo.hosts[a].ping_until(&Star::ip(b + 1), Duration::from_secs(10)) {
            fail(
                &format!(
                    "h{} cannot ping h{} on their shared VLAN\n--- faucet.log:\n{}",
                    a + 1,
                    b + 1,
                    faucet_log()
                ),
                &sw,
                &[&ctl],
            );
        }
    }
    for (a, b) in [(2, 0), (0, 2), (2, 1)] {
        if topo.hosts[a].ping(&Star::ip(b + 1), 2) {
            fail(
                &format!("h{} reached h{} across VLANs", a + 1, b + 1),
                &sw,
                &[&ctl],
            );
        }
    }
    if let Err(e) = sw.check_alive() {
        fail(&e, &sw, &[&ctl]);
    }
    let text = faucet_log();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("OFError") || l.contains("OFPErrorMsg"))
        .collect();
    let raised = std::fs::read_to_string(&exceptions).unwrap_or_default();
    if !errors.is_empty() || !raised.trim().is_empty() {
        fail(
            &format!(
                "Faucet saw OpenFlow errors or raised:\n{}\n{raised}",
                errors.join("\n")
            ),
            &sw,
            &[&ctl],
        );
    }
    // Faucet was in the path: it learned hosts from packet-ins (its eth_src table).
    assert!(
        text.contains("L2 learned"),
        "Faucet learned no host:\n{text}"
    );
}

/// (b) ovs-ofctl -O OpenFlow13 manages the switch through its passive listener.
#[test]
fn ovs_ofctl_manages_flows_meters_groups() {
    if skip_unless_root("ovs_ofctl_manages_flows_meters_groups") {
        return;
    }
    let _serial = serial();
    let topo = Star::new("ofctl").expect("topology");
    let mut spec = SwitchSpec::new(1, &topo.sw_ports);
    spec.listen.push(format!("ptcp:{LISTEN_PORT}:127.0.0.1"));
    let sw = Switch::start(Target::from_env(), &topo.sw, &spec, topo.scratch.path())
        .expect("start switch");
    if !wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        topo.sw.tcp_listening(LISTEN_PORT)
    }) {
        fail("switch never listened on the ptcp port", &sw, &[]);
    }
    if let Err(e) = ofctl::scenario(&topo, LISTEN_PORT, Target::from_env()) {
        fail(&e, &sw, &[]);
    }
}

/// Makes a CA and two leaf certificates (controller: SAN IP 127.0.0.1; switch) with openssl.
fn make_pki(dir: &Path) -> (TlsFiles, TlsFiles) {
    let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend_from_slice(&ec);
    let (ca_key, ca_pem) = (d("ca.key"), d("ca.pem"));
    ca.extend_from_slice(&[
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
        "-days",
        "2",
        "-subj",
        "/CN=shg interop test CA",
    ]);
    ca.extend_from_slice(&[
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run("openssl", &ca).expect("CA");
    let ext = d("leaf.ext");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write ext");
    let leaf = |name: &str| {
        let (key, csr, pem) = (
            d(&format!("{name}.key")),
            d(&format!("{name}.csr")),
            d(&format!("{name}.pem")),
        );
        let mut req = vec!["req", "-new"];
        req.extend_from_slice(&ec);
        let subj = format!("/CN=shg interop {name}");
        req.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subj]);
        run("openssl", &req).expect("CSR");
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        )
        .expect("sign");
        TlsFiles {
            key: key.into(),
            cert: pem.into(),
            ca: ca_pem.clone().into(),
        }
    };
    (leaf("ctl"), leaf("sw"))
}

/// (c) ovs-testcontroller (L2 learning) over TLS controls the switch; pings pass.
#[test]
fn ovs_testcontroller_over_tls_pings() {
    if skip_unless_root("ovs_testcontroller_over_tls_pings") {
        return;
    }
    let _serial = serial();
    let topo = Star::new("tls").expect("topology");
    let (ctl_pki, sw_pki) = make_pki(topo.scratch.path());
    let mut cmd = topo::ovs_cmd("ovs-testcontroller", &topo.scratch.join("tc"));
    std::fs::create_dir_all(topo.scratch.join("tc/run")).expect("mkdir");
    cmd.args(["-O", "OpenFlow13", &format!("pssl:{TLS_PORT}:127.0.0.1")])
        .arg("-p")
        .arg(&ctl_pki.key)
        .arg("-c")
        .arg(&ctl_pki.cert)
        .arg("-C")
        .arg(&ctl_pki.ca)
        .arg("-vconsole:info");
    let mut tc =
        Proc::spawn_in(&topo.sw, &cmd, &topo.scratch.join("testcontroller.log")).expect("spawn");
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        topo.sw.tcp_listening(TLS_PORT)
    });
    assert!(
        up,
        "ovs-testcontroller never listened: exited {:?}; {}",
        tc.exited(),
        tc.describe()
    );
    let mut spec = SwitchSpec::new(1, &topo.sw_ports);
    spec.controllers.push(format!("tls:127.0.0.1:{TLS_PORT}"));
    spec.tls = Some(sw_pki);
    let mut sw = Switch::start(Target::from_env(), &topo.sw, &spec, topo.scratch.path())
        .expect("start switch");
    if !wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
        topo.sw.tcp_established_to(TLS_PORT)
    }) {
        fail("switch never connected to the TLS controller", &sw, &[&tc]);
    }
    if let Err(e) = topo.ping_all(Duration::from_secs(8)) {
        fail(&e, &sw, &[&tc]);
    }
    if let Err(e) = sw.check_alive() {
        fail(&e, &sw, &[&tc]);
    }
}

/// (e) tshark captures OpenFlow sessions (os-ken L2 and ovs-ofctl) on loopback inside `sw` and
/// finds nothing malformed and no expert error.
#[test]
fn tshark_sees_no_malformed_openflow() {
    if skip_unless_root("tshark_sees_no_malformed_openflow") {
        return;
    }
    let _serial = serial();
    let topo = Star::new("tshark").expect("topology");
    let cap = topo.scratch.join("of.pcapng");
    let mut cmd = Command::new("tshark");
    cmd.args(["-i", "lo", "-n", "-w"]).arg(&cap).args([
        "-f",
        &format!("tcp port {CTL_PORT} or tcp port {LISTEN_PORT}"),
    ]);
    let mut shark =
        Proc::spawn_in(&topo.sw, &cmd, &topo.scratch.join("tshark.log")).expect("spawn tshark");
    assert!(
        wait_for_file_text(shark.log(), "Capturing on", Duration::from_secs(20)),
        "tshark did not start: {}",
        shark.describe()
    );
    let target = Target::from_env();
    {
        // Session 1: os-ken L2 learning with pings (packet-in, flow-mod, packet-out).
        let (_sw, _ctl) = osken_l2_scenario(&topo, target);
    }
    {
        // Session 2: ovs-ofctl requests of every kind the switch answers (results not judged here).
        let mut spec = SwitchSpec::new(1, &topo.sw_ports);
        spec.listen.push(format!("ptcp:{LISTEN_PORT}:127.0.0.1"));
        let dir = topo.scratch.join("session2");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let _sw = Switch::start(target, &topo.sw, &spec, &dir).expect("start switch");
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            topo.sw.tcp_listening(LISTEN_PORT)
        });
        ofctl::exercise(&topo, LISTEN_PORT);
    }
    std::thread::sleep(Duration::from_millis(500));
    shark.stop();
    let dissect = |filter: &str| {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&cap)
            .args([
                "-n",
                "-d",
                &format!("tcp.port=={LISTEN_PORT},openflow"),
                "-Y",
                filter,
            ])
            .output()
            .expect("tshark -r");
        assert!(
            out.status.success(),
            "tshark -r -Y {filter:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let of = dissect("openflow_v4");
    let n_of = of.lines().count();
    assert!(
        n_of >= 20,
        "capture holds only {n_of} OpenFlow 1.3 packets:\n{of}"
    );
    for ty in [
        "OFPT_PACKET_IN",
        "OFPT_FLOW_MOD",
        "OFPT_MULTIPART_REPLY",
        "OFPT_FEATURES_REPLY",
    ] {
        assert!(of.contains(ty), "no {ty} in the capture:\n{of}");
    }
    let bad = dissect("_ws.malformed || _ws.expert.severity==error");
    assert!(
        bad.trim().is_empty(),
        "tshark flags malformed OpenFlow:\n{bad}\n(capture kept in {})",
        cap.display()
    );
}
