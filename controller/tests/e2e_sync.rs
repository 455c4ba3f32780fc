//! The runtime's synchronisation (`runtime::apply::sync`) end to end over a real OpenFlow 1.3 byte stream, against an in-memory switch (no root needed).
//!
//! The switch side decodes every message with shg-flows, keeps its state in the crate's
//! `FakeSwitch` (shg-flows' flow, meter and group tables) and answers HELLO, FEATURES,
//! ROLE_REQUEST, the four multipart reads, BARRIER and ECHO like a switch; it can be told to
//! refuse some FLOW_MODs with an OFPT_ERROR. Checks: a first sync installs and verifies the
//! policy; a second one sends no change at all (no flush); a change the switch refuses is
//! reported with the change and the switch's reason, and everything applied around it is
//! rolled back to the exact state before; the same change applies once the switch accepts it.
//!
//! The `shg-controller` binary is run too (on 127.0.0.1 only): an inadmissible config exits 1
//! with the verdict; in `connect` mode it connects to the in-memory switch, installs the policy,
//! re-plans when a port the policy names appears (PORT_STATUS), exits 0 on SIGTERM, and a
//! second start (next generation id from the store) changes nothing.

use shg_controller::fake_switch::FakeSwitch;
use shg_controller::model::Policy;
use shg_controller::planner::Change;
use shg_controller::runtime::apply::{sync, SyncError};
use shg_controller::southbound::conn::OfConn;
use shg_flows::error::{Error, FlowModFailedCode};
use shg_flows::mods::FlowModCommand;
use shg_flows::wire::message::{
    decode, encode, error_reply, frame_len, HelloElement, Message, PortReason, SwitchFeatures,
};
use shg_flows::wire::multipart::{MultipartReply, MultipartRequest};
use shg_flows::wire::port::Port;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

type Refuse = Box<dyn Fn(&shg_flows::mods::FlowMod) -> bool + Send>;

/// The switch's state, shared with the test.
struct Shared {
    sw: FakeSwitch,
    /// Every FLOW_MOD / METER_MOD / GROUP_MOD received.
    mods: usize,
    refuse: Refuse,
    /// Ports 1..=n_ports exist (`ts1`..).
    n_ports: u32,
    /// Asynchronous messages to send to the controller.
    push: Vec<Message>,
}

fn ports() -> Vec<Port> {
    (1..=5u32)
        .map(|n| Port {
            port_no: n,
            name: format!("ts{n}"),
            ..Port::default()
        })
        .collect()
}

fn policy(extra_reach: bool) -> (String, Policy) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/controller/e2e/gateway.toml");
    let mut text = std::fs::read_to_string(path)
        .expect("fixture")
        .replace("@P@", "t");
    if extra_reach {
        text = text.replace("reach = [\"wan\"]", "reach = [\"wan\", \"cam\"]");
        assert!(text.contains("\"wan\", \"cam\""));
    }
    let p = shg_controller::cli::check_text(&text).expect("valid policy");
    (text, p)
}

async fn switch_side<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, st: Arc<Mutex<Shared>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some(len) = frame_len(&buf).filter(|&l| buf.len() >= l) {
            let frame: Vec<u8> = buf.drain(..len).collect();
            let (xid, msg) = decode(&frame).expect("controller sent a valid message");
            let out = answer(&mut st.lock().unwrap(), xid, msg, &frame);
            if let Some(bytes) = out {
                if io.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
        let pushed: Vec<Message> = std::mem::take(&mut st.lock().unwrap().push);
        for m in pushed {
            if io.write_all(&encode(0, &m)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = io.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

/// The switch's answer to one message (None: no answer).
fn answer(st: &mut Shared, xid: u32, msg: Message, frame: &[u8]) -> Option<Vec<u8>> {
    let reply = |m: Message| Some(encode(xid, &m));
    match msg {
        Message::Hello { .. } => reply(Message::Hello {
            version: 4,
            elements: vec![HelloElement::VersionBitmap(vec![1 << 4])],
        }),
        Message::FeaturesRequest => reply(Message::FeaturesReply(SwitchFeatures {
            datapath_id: 1,
            n_tables: 3,
            ..SwitchFeatures::default()
        })),
        Message::RoleRequest(r) => reply(Message::RoleReply(r)),
        Message::EchoRequest(d) => reply(Message::EchoReply(d)),
        Message::BarrierRequest => reply(Message::BarrierReply),
        Message::MultipartRequest { body, .. } => {
            let o = st.sw.observe(0);
            let body = match body {
                MultipartRequest::PortDesc => MultipartReply::PortDesc(
                    ports()
                        .into_iter()
                        .filter(|p| p.port_no <= st.n_ports)
                        .collect(),
                ),
                MultipartRequest::Flow(_) => MultipartReply::Flow(o.flows),
                MultipartRequest::GroupDesc => MultipartReply::GroupDesc(o.groups),
                MultipartRequest::MeterConfig { .. } => MultipartReply::MeterConfig(o.meters),
                other => panic!("unexpected multipart request {other:?}"),
            };
            reply(Message::MultipartReply { flags: 0, body })
        }
        Message::FlowMod(fm) => {
            st.mods += 1;
            let r = if (st.refuse)(&fm) {
                Err(Error::flow_mod(
                    FlowModFailedCode::Eperm,
                    "refused by the test",
                ))
            } else {
                st.sw.apply_change(&Change::Flow(fm), 0)
            };
            r.err().map(|e| encode(xid, &error_reply(&e, frame)))
        }
        Message::MeterMod(mm) => {
            st.mods += 1;
            st.sw
                .apply_change(&Change::Meter(mm), 0)
                .err()
                .map(|e| encode(xid, &error_reply(&e, frame)))
        }
        Message::GroupMod(gm) => {
            st.mods += 1;
            st.sw
                .apply_change(&Change::Group(gm), 0)
                .err()
                .map(|e| encode(xid, &error_reply(&e, frame)))
        }
        other => panic!("unexpected message {other:?}"),
    }
}

/// What identifies the switch's state (counters and ages aside).
fn state(st: &Arc<Mutex<Shared>>) -> (Vec<String>, Vec<String>) {
    let o = st.lock().unwrap().sw.observe(0);
    let mut flows: Vec<String> = o
        .flows
        .iter()
        .map(|f| {
            format!(
                "{} {} {:x} {:?} {:?}",
                f.table_id, f.priority, f.cookie, f.r#match, f.instructions
            )
        })
        .collect();
    flows.sort();
    let meters = o.meters.iter().map(|m| format!("{m:?}")).collect();
    (flows, meters)
}

#[test]
fn sync_installs_verifies_never_flushes_and_rolls_back_a_refused_change() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let names: BTreeMap<String, u32> =
            ports().into_iter().map(|p| (p.name, p.port_no)).collect();
        let st = Arc::new(Mutex::new(Shared {
            sw: FakeSwitch::new(3, names),
            mods: 0,
            refuse: Box::new(|_| false),
            n_ports: 5,
            push: Vec::new(),
        }));
        let (ctl_io, sw_io) = tokio::io::duplex(1 << 20);
        tokio::spawn(switch_side(sw_io, st.clone()));
        let mut conn = OfConn::handshake(ctl_io, Duration::from_secs(5))
            .await
            .expect("handshake");
        let (_, p1) = policy(false);

        // 1. An empty switch: everything installed, verified (queue changes skipped: no socket).
        let r = sync(&mut conn, None, None, &p1, 0)
            .await
            .expect("first sync");
        assert_eq!(r.skipped_queue, 5);
        assert_eq!(
            r.applied, 47,
            "44 flows (one SSDP scope flow per service) + 3 meters"
        );
        let installed = state(&st);
        assert_eq!(installed.0.len(), 44);
        assert_eq!(installed.1.len(), 3);
        let mods = st.lock().unwrap().mods;
        assert_eq!(mods, 47);

        // 2. Again: nothing to do, and nothing sent (no flush, no rewrite).
        let r = sync(&mut conn, None, Some(&p1), &p1, 0)
            .await
            .expect("second sync");
        assert_eq!(r.applied, 0);
        assert_eq!(
            st.lock().unwrap().mods,
            mods,
            "a matching switch got changes"
        );
        assert_eq!(state(&st), installed);

        // 3. web may now reach cam: new unicast flows both ways and wider floods. The switch
        // refuses the flow into cam (cookie owner = cam's queue 2): the error names it, and
        // what was applied around it (the flow into web, the modified floods) is undone.
        let (_, p2) = policy(true);
        st.lock().unwrap().refuse =
            Box::new(|fm| fm.command == FlowModCommand::Add && fm.cookie == 0x5348_4707_0000_0002);
        let before = st.lock().unwrap().mods;
        let e = sync(&mut conn, None, Some(&p1), &p2, 0)
            .await
            .expect_err("the refused change must fail the sync");
        let sent = st.lock().unwrap().mods - before;
        match &e {
            SyncError::Refused {
                change,
                reason,
                rolled_back,
            } => {
                assert!(
                    change.contains("cookie:0x5348470700000002") && change.contains("in_port=3"),
                    "{change}"
                );
                assert!(reason.contains("Eperm"), "{reason}");
                assert!(rolled_back);
            }
            other => panic!("expected Refused, got {other}"),
        }
        assert!(e.to_string().contains("rolled back"), "{e}");
        assert!(sent > 2, "the plan and its undo were sent ({sent} mods)");
        assert_eq!(state(&st), installed, "rollback did not restore the switch");

        // 4. Once the switch accepts it, the same change applies and verifies.
        st.lock().unwrap().refuse = Box::new(|_| false);
        let r = sync(&mut conn, None, Some(&p1), &p2, 0)
            .await
            .expect("sync after refusal");
        assert!(r.applied >= 2, "{}", r.applied);
        let now = state(&st);
        assert_ne!(now, installed);
        assert_eq!(now.0.len(), 46, "two new unicast flows");
        let r = sync(&mut conn, None, Some(&p2), &p2, 0)
            .await
            .expect("idempotent");
        assert_eq!(r.applied, 0);
    });
}

/// A child process killed (by PID) and reaped when dropped, e.g. when an assertion fails.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn new_shared() -> Arc<Mutex<Shared>> {
    let names: BTreeMap<String, u32> = ports().into_iter().map(|p| (p.name, p.port_no)).collect();
    Arc::new(Mutex::new(Shared {
        sw: FakeSwitch::new(3, names),
        mods: 0,
        refuse: Box::new(|_| false),
        n_ports: 5,
        push: Vec::new(),
    }))
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("e2e-sync-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn an_inadmissible_config_exits_1_with_the_verdict() {
    let d = scratch("bad");
    let (text, _) = policy(false);
    let cfg = d.join("bad.toml");
    std::fs::write(
        &cfg,
        text.replace("min_rate = \"10mbit\"", "min_rate = \"95mbit\""),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shg-controller"))
        .arg("--config")
        .arg(&cfg)
        .arg("--store")
        .arg(d.join("store"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("policy refused") && err.contains("short by 30mbit"),
        "{err}"
    );
    // Nothing was stored for a refused policy.
    assert!(!d.join("store/policy.store").exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_daemon_connects_installs_exits_on_sigterm_and_restarts_without_changes() {
    let d = scratch("daemon");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (text, _) = policy(false);
        let text = text.replace(
            "listen = \"ptcp:6653:127.0.0.1\"",
            &format!("connect = \"tcp:127.0.0.1:{port}\""),
        );
        let cfg = d.join("gateway.toml");
        std::fs::write(&cfg, text).unwrap();
        let st = new_shared();
        st.lock().unwrap().n_ports = 4;
        let mut mods_after_first = 0;
        for run in 1..=2u64 {
            let log = d.join(format!("controller-{run}.log"));
            let mut child = Reap(
                std::process::Command::new(env!("CARGO_BIN_EXE_shg-controller"))
                    .arg("--config")
                    .arg(&cfg)
                    .arg("--store")
                    .arg(d.join("store"))
                    .env("RUST_LOG", "info")
                    .env("NO_COLOR", "1")
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap(),
            );
            let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
                .await
                .expect("the controller never connected")
                .unwrap();
            let task = tokio::spawn(switch_side(tcp, st.clone()));
            let synced = async {
                loop {
                    let l = std::fs::read_to_string(&log).unwrap_or_default();
                    if l.contains("sync (connect) done") {
                        return l;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            let l = tokio::time::timeout(Duration::from_secs(10), synced)
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no sync: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                });
            assert!(
                l.contains(&format!("role: master (generation id {run})")),
                "{l}"
            );
            let mods = st.lock().unwrap().mods;
            if run == 1 {
                // nas's port (ts5) is missing: nas is left out (and its cap meter).
                assert!(
                    l.contains("services.nas.port: the switch has no port"),
                    "{l}"
                );
                assert_eq!(mods, 33, "{l}");
                // The port appears: PORT_STATUS ADD makes the controller plan again.
                {
                    let mut s = st.lock().unwrap();
                    s.n_ports = 5;
                    let port = ports().pop().unwrap();
                    s.push.push(Message::PortStatus {
                        reason: PortReason::Add,
                        port,
                    });
                }
                let replanned = async {
                    loop {
                        let l = std::fs::read_to_string(&log).unwrap_or_default();
                        if l.contains("sync (port) done") {
                            return l;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                let l = tokio::time::timeout(Duration::from_secs(10), replanned)
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "no re-plan on PORT_STATUS: {}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        )
                    });
                assert!(l.contains("port ts5 appeared as 5: re-planning"), "{l}");
                let mods = st.lock().unwrap().mods;
                // nas's 12 flows and its SSDP scope flow, its cap meter, the floods of the LAN
                // port and cam widened to nas, and the LAN's SSDP flow widened to nas.
                assert_eq!(mods, 33 + 13 + 1 + 2 + 1, "{l}");
                assert_eq!(state(&st).0.len(), 44);
                mods_after_first = mods;
            } else {
                assert_eq!(mods, mods_after_first, "a restart changed the switch: {l}");
                assert!(l.contains("already matches the policy (0 changes)"), "{l}");
            }
            let pid = child.0.id().to_string();
            assert!(std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success());
            let mut status = None;
            for _ in 0..250 {
                status = child.0.try_wait().unwrap();
                if status.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(status.and_then(|s| s.code()), Some(0));
            let l = std::fs::read_to_string(&log).unwrap();
            assert!(l.contains("exiting; the switch keeps its flows"), "{l}");
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let rec = shg_controller::store::Store::open(&d.join("store"))
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!((rec.version, rec.generation_id), (1, 2));
    });
    let _ = std::fs::remove_dir_all(&d);
}
