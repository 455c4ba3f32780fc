//! The OpenFlow agent over real sockets on 127.0.0.1, no root: a raw OpenFlow client (our
//! codec) against `--listen`, the agent's own reconnecting `--controller` connection against a
//! listener the test stops and restarts, TLS both ways with certificates made by `openssl`
//! at test time, a peer that does not read, and the control socket.

use shg_flows::mods::FlowModCommand;
use shg_flows::text::flow::parse_flow;
use shg_flows::wire::message::{
    decode, encode, frame_len, HelloElement, Message, SwitchConfig, OFP_VERSION,
};
use shg_flows::wire::multipart::{FlowStatsRequest, MultipartReply, MultipartRequest};
use shg_switch::agent::{tls, Agent, Clock, Controller, Listener, NoTransmit, Plan};
use shg_switch::config::TlsFiles;
use shg_switch::ofproto::{Ofproto, OfprotoConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

/// A raw OpenFlow peer over any stream.
struct Peer<S> {
    s: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    fn new(s: S) -> Self {
        Peer { s, buf: Vec::new() }
    }

    async fn send(&mut self, xid: u32, m: &Message) {
        self.s.write_all(&encode(xid, m)).await.expect("write");
    }

    /// The next message, or None when the switch closed the connection.
    async fn recv_or_eof(&mut self) -> Option<(u32, Message)> {
        loop {
            if let Some(len) = frame_len(&self.buf) {
                if self.buf.len() >= len {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    return Some(decode(&frame).expect("switch sent a decodable message"));
                }
            }
            let mut chunk = [0u8; 65536];
            let n = tokio::time::timeout(WAIT, self.s.read(&mut chunk))
                .await
                .expect("no message from the switch in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message that is not an asynchronous one (echo requests are answered).
    async fn recv(&mut self) -> (u32, Message) {
        loop {
            let (xid, m) = self.recv_or_eof().await.expect("connection closed");
            match m {
                Message::EchoRequest(d) => self.send(xid, &Message::EchoReply(d)).await,
                Message::PortStatus { .. } | Message::PacketIn(_) => {}
                m => return (xid, m),
            }
        }
    }

    async fn hello(&mut self) {
        let (_, m) = self.recv().await;
        assert!(
            matches!(
                m,
                Message::Hello {
                    version: OFP_VERSION,
                    ..
                }
            ),
            "{m:?}"
        );
        self.send(
            1,
            &Message::Hello {
                version: OFP_VERSION,
                elements: vec![HelloElement::versions(&[OFP_VERSION])],
            },
        )
        .await;
    }

    /// HELLO, FEATURES, ECHO, FLOW_MOD + BARRIER, and a flow dump showing the flow.
    async fn session(&mut self) {
        self.hello().await;
        self.send(2, &Message::FeaturesRequest).await;
        let (xid, m) = self.recv().await;
        assert_eq!(xid, 2);
        match m {
            Message::FeaturesReply(f) => {
                assert_eq!(f.datapath_id, 0xabc);
                assert_eq!(f.n_tables, 8);
            }
            m => panic!("expected FEATURES_REPLY, got {m:?}"),
        }
        self.send(3, &Message::EchoRequest(b"ping".to_vec())).await;
        assert_eq!(self.recv().await, (3, Message::EchoReply(b"ping".to_vec())));
        let fm = parse_flow(
            "table=1,priority=100,tcp,tp_dst=80,actions=output:2",
            FlowModCommand::Add,
        )
        .unwrap();
        self.send(4, &Message::FlowMod(fm)).await;
        self.send(5, &Message::BarrierRequest).await;
        assert_eq!(self.recv().await, (5, Message::BarrierReply));
        self.send(
            6,
            &Message::MultipartRequest {
                flags: 0,
                body: MultipartRequest::Flow(FlowStatsRequest::default()),
            },
        )
        .await;
        let (xid, m) = self.recv().await;
        assert_eq!(xid, 6);
        match m {
            Message::MultipartReply {
                body: MultipartReply::Flow(flows),
                ..
            } => {
                assert_eq!(flows.len(), 1, "{flows:?}");
                assert_eq!((flows[0].table_id, flows[0].priority), (1, 100));
            }
            m => panic!("expected a flow stats reply, got {m:?}"),
        }
    }
}

fn of_config() -> OfprotoConfig {
    OfprotoConfig {
        datapath_id: 0xabc,
        n_tables: 8,
        ..OfprotoConfig::default()
    }
}

/// A running agent; stops it on drop.
struct Running {
    agent: Agent,
    of: Arc<Mutex<Ofproto>>,
    clock: Clock,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    fn start(plan: Plan, bound: usize) -> Running {
        Running::start_with(plan, bound, Ofproto::new(of_config()))
    }

    fn start_with(plan: Plan, bound: usize, of: Ofproto) -> Running {
        let of = Arc::new(Mutex::new(of));
        let clock = Clock::new();
        let agent = Agent::with_queue_bound(of.clone(), clock, Arc::new(NoTransmit), bound);
        let (stop, rx) = oneshot::channel::<()>();
        let a = agent.clone();
        let task = tokio::spawn(async move {
            a.run(plan, async {
                let _ = rx.await;
            })
            .await
        });
        Running {
            agent,
            of,
            clock,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(t) = self.task.take() {
            tokio::time::timeout(WAIT, t)
                .await
                .expect("agent stops on shutdown")
                .expect("agent task");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

async fn listen_plan(tls: Option<Arc<rustls::ServerConfig>>) -> (Plan, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plan = Plan {
        listeners: vec![Listener { listener, tls }],
        ..Plan::default()
    };
    (plan, addr)
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("shg-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn passive_tcp_session_and_ctl_dump_flows() {
    let (plan, addr) = listen_plan(None).await;
    let run = Running::start(plan, 4096);
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.session().await;
    assert_eq!(run.agent.connection_count(), 1);

    // The control socket shows the flow in ovs-ofctl format.
    let dir = TempDir::new("ctl");
    let path = dir.0.join("switch.ctl");
    std::fs::write(&path, b"stale").unwrap();
    assert!(
        shg_switch::ctl::bind(&path).is_err(),
        "a non-socket file in the way is an error, not removed"
    );
    std::fs::remove_file(&path).unwrap();
    // A stale socket (nobody listening) is removed.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let listener = shg_switch::ctl::bind(&path).expect("stale socket replaced");
    let (stop_ctl, stopped) = oneshot::channel::<()>();
    let ctl = tokio::spawn(shg_switch::ctl::serve(
        listener,
        run.of.clone(),
        run.clock,
        async {
            let _ = stopped.await;
        },
    ));
    let p = path.clone();
    let (ok, text) =
        tokio::task::spawn_blocking(move || shg_switch::ctl::request(&p, "dump-flows"))
            .await
            .unwrap()
            .unwrap();
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].starts_with(" cookie=0x0, duration="), "{text}");
    assert!(
        lines[0].ends_with(
            "s, table=1, n_packets=0, n_bytes=0, priority=100,tcp,tp_dst=80 actions=output:2"
        ),
        "{text}"
    );
    let p = path.clone();
    let (ok, text) =
        tokio::task::spawn_blocking(move || shg_switch::ctl::request(&p, "dump-flows table=9"))
            .await
            .unwrap()
            .unwrap();
    assert!(!ok);
    assert_eq!(
        text,
        "error: table 9 does not exist (this switch has 8 tables)\n"
    );
    let _ = stop_ctl.send(());
    ctl.await.unwrap();
    assert!(!path.exists(), "socket file removed at shutdown");

    run.stop().await;
    assert!(
        peer.recv_or_eof().await.is_none(),
        "shutdown closes connections"
    );
}

#[tokio::test]
async fn frame_shorter_than_header_closes() {
    let (plan, addr) = listen_plan(None).await;
    let run = Running::start(plan, 4096);
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.hello().await;
    // ofp_header with length 4.
    peer.s.write_all(&[4, 2, 0, 4, 0, 0, 0, 9]).await.unwrap();
    assert!(peer.recv_or_eof().await.is_none(), "connection closed");
    wait_for("the connection to be forgotten", || {
        run.agent.connection_count() == 0
    })
    .await;
    assert_eq!(
        run.agent
            .counters()
            .closed_bad_frame
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    run.stop().await;
}

/// A FLOW_MOD that brings the next deadline forward (a flow's hard timeout, long before the
/// peer's echo is due) wakes the timer task, which would otherwise sleep until the echo.
#[tokio::test]
async fn a_flow_timeout_earlier_than_the_echo_is_kept() {
    let (plan, addr) = listen_plan(None).await;
    let config = OfprotoConfig {
        echo_interval_ns: 60_000_000_000,
        echo_timeout_ns: 180_000_000_000,
        ..of_config()
    };
    let run = Running::start_with(plan, 4096, Ofproto::new(config));
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.hello().await;
    // SET_CONFIG turns on asynchronous messages for a connection the switch accepted. Then a
    // round trip, so that the timer has planned for the echo deadline.
    peer.send(
        2,
        &Message::SetConfig(SwitchConfig {
            flags: 0,
            miss_send_len: 128,
        }),
    )
    .await;
    peer.send(2, &Message::BarrierRequest).await;
    assert_eq!(peer.recv().await, (2, Message::BarrierReply));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fm = parse_flow(
        "priority=5,hard_timeout=1,send_flow_rem,actions=drop",
        FlowModCommand::Add,
    )
    .unwrap();
    let t0 = Instant::now();
    peer.send(3, &Message::FlowMod(fm)).await;
    let (_, m) = peer.recv().await;
    assert!(matches!(m, Message::FlowRemoved(_)), "{m:?}");
    let took = t0.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&took),
        "FLOW_REMOVED after {took:?}"
    );
    run.stop().await;
}

#[tokio::test]
async fn timer_sends_echo_and_closes_a_silent_peer() {
    let (plan, addr) = listen_plan(None).await;
    let config = OfprotoConfig {
        echo_interval_ns: 200_000_000,
        echo_timeout_ns: 600_000_000,
        ..of_config()
    };
    let run = Running::start_with(plan, 4096, Ofproto::new(config));
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.hello().await;
    let t0 = Instant::now();
    // Stay silent: the timer task must send an ECHO_REQUEST, then close the connection.
    let (_, m) = peer.recv_or_eof().await.expect("an echo request");
    assert!(matches!(m, Message::EchoRequest(_)), "{m:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(100),
        "{:?}",
        t0.elapsed()
    );
    assert!(peer.recv_or_eof().await.is_none(), "silent peer closed");
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t0.elapsed()
    );
    wait_for("the connection to be forgotten", || {
        run.agent.connection_count() == 0
    })
    .await;
    run.stop().await;
}

#[tokio::test]
async fn datapath_link_event_becomes_port_status() {
    let (mut plan, addr) = listen_plan(None).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    plan.dp_events = Some(rx);
    let mut of = Ofproto::new(of_config());
    let info = shg_switch::port::PortInfo {
        name: "p1".into(),
        hw_addr: [2, 0, 0, 0, 0, 1],
        curr_speed_kbps: 0,
        max_speed_kbps: 0,
        ifindex: None,
    };
    let _ = of.add_port(1, info, true, 0);
    let run = Running::start_with(plan, 4096, of);
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.hello().await;
    // A passive (tool) connection gets asynchronous messages once it sets its config, as
    // OVS's service connections do.
    peer.send(
        1,
        &Message::SetConfig(shg_flows::wire::message::SwitchConfig {
            flags: 0,
            miss_send_len: 128,
        }),
    )
    .await;
    // A barrier round trip: the switch has seen our config before the event.
    peer.send(2, &Message::BarrierRequest).await;
    assert_eq!(peer.recv().await, (2, Message::BarrierReply));
    tx.send(shg_switch::datapath::DpEvent::PortLink { port: 1, up: false })
        .unwrap();
    let (_, m) = peer.recv_or_eof().await.expect("a PORT_STATUS");
    match m {
        Message::PortStatus { port, .. } => assert_eq!(port.port_no, 1),
        m => panic!("expected PORT_STATUS, got {m:?}"),
    }
    assert!(!run.of.lock().unwrap().ports[&1].link_up);
    run.stop().await;
}

#[tokio::test]
async fn peer_that_does_not_read_is_closed() {
    let (plan, addr) = listen_plan(None).await;
    let run = Running::start(plan, 8);
    let mut peer = Peer::new(TcpStream::connect(addr).await.unwrap());
    peer.hello().await;
    // Echo requests with big payloads, never reading the replies: the switch's socket buffer
    // and then its bounded queue fill, and it must close the connection rather than block.
    let payload = vec![0x5a; 60_000];
    let one = encode(100, &Message::EchoRequest(payload));
    let counters = || {
        run.agent
            .counters()
            .closed_slow
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for _ in 0..2000 {
        if counters() > 0 || peer.s.write_all(&one).await.is_err() {
            break;
        }
    }
    wait_for("the slow peer to be closed", || counters() == 1).await;
    wait_for("the connection to be forgotten", || {
        run.agent.connection_count() == 0
    })
    .await;
    run.stop().await;
}

#[tokio::test]
async fn active_connection_reconnects_with_backoff() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plan = Plan {
        controllers: vec![Controller { addr, tls: None }],
        ..Plan::default()
    };
    let run = Running::start(plan, 4096);

    let (s, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut c = Peer::new(s);
    c.session().await;
    assert!(run.of.lock().unwrap().controller_connected());

    // The controller goes away: listener and connection.
    drop(c);
    drop(listener);
    wait_for("the agent to notice", || run.agent.connection_count() == 0).await;
    // The agent now retries every 1 s, 2 s, ... : wait past one failed attempt.
    let stopped_at = Instant::now();
    wait_for("a failed reconnect attempt", || {
        run.agent
            .counters()
            .connect_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    assert!(
        stopped_at.elapsed() >= Duration::from_millis(500),
        "backoff waits before retrying"
    );

    let listener = TcpListener::bind(addr).await.unwrap();
    let (s, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut c = Peer::new(s);
    c.hello().await;
    c.send(2, &Message::BarrierRequest).await;
    assert_eq!(c.recv().await, (2, Message::BarrierReply));
    run.stop().await;
}

/// CA, switch, controller and tool certificates made with the openssl CLI, plus a leaf
/// signed by another CA. None when openssl is missing.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn make() -> Option<Pki> {
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("SKIP: openssl not found; TLS tests need it to make certificates");
            return None;
        }
        let dir = TempDir::new("pki");
        let d = &dir.0;
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(
            d.join("leaf.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:shg-test-peer\n",
        )
        .unwrap();
        for ca in ["ca", "otherca"] {
            run(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=shg test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
        }
        for (leaf, ca) in [
            ("sw", "ca"),
            ("ctl", "ca"),
            ("tool", "ca"),
            ("rogue", "otherca"),
        ] {
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{leaf}.key"),
                "-out",
                &format!("{leaf}.csr"),
                "-subj",
                &format!("/CN={leaf}"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{leaf}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{leaf}.pem"),
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ]);
        }
        Some(Pki { dir })
    }

    fn files(&self, leaf: &str, ca: &str) -> TlsFiles {
        let p = |n: String| Some(self.dir.0.join(n));
        TlsFiles {
            key: p(format!("{leaf}.key")),
            cert: p(format!("{leaf}.pem")),
            ca: p(format!("{ca}.pem")),
        }
    }
}

fn localhost() -> rustls_pki_types::ServerName<'static> {
    rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
}

#[tokio::test]
async fn pssl_server_requires_a_client_certificate_from_the_ca() {
    let Some(pki) = Pki::make() else { return };
    let server = tls::server_config(&pki.files("sw", "ca")).unwrap();
    let (plan, addr) = listen_plan(Some(server)).await;
    let run = Running::start(plan, 4096);

    // A tool with a certificate from our CA gets a full session.
    let connector =
        tokio_rustls::TlsConnector::from(tls::client_config(&pki.files("tool", "ca")).unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(localhost(), tcp)
        .await
        .expect("TLS handshake");
    let mut peer = Peer::new(stream);
    peer.session().await;

    // A certificate from another CA is refused.
    let rogue =
        tokio_rustls::TlsConnector::from(tls::client_config(&pki.files("rogue", "ca")).unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let refused = match rogue.connect(localhost(), tcp).await {
        Err(_) => true,
        // TLS 1.3: the client finishes first; the server's refusal arrives on the first read.
        Ok(s) => Peer::new(s).recv_or_eof().await.is_none(),
    };
    assert!(
        refused,
        "a client certificate from another CA must be refused"
    );
    assert_eq!(run.agent.connection_count(), 1);
    run.stop().await;
}

#[tokio::test]
async fn tls_client_connects_to_a_controller_signed_by_the_ca() {
    let Some(pki) = Pki::make() else { return };
    // The test is the controller: TLS server requiring a client certificate from the CA.
    let acceptor =
        tokio_rustls::TlsAcceptor::from(tls::server_config(&pki.files("ctl", "ca")).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tls::client_config(&pki.files("sw", "ca")).unwrap();
    let plan = Plan {
        controllers: vec![Controller {
            addr,
            tls: Some(client),
        }],
        ..Plan::default()
    };
    let run = Running::start(plan, 4096);
    let (tcp, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let stream = acceptor
        .accept(tcp)
        .await
        .expect("switch presents a certificate from the CA");
    let mut c = Peer::new(stream);
    c.session().await;
    run.stop().await;
}

#[test]
fn tls_settings_name_bad_files() {
    let missing = TlsFiles {
        key: Some(Path::new("/nonexistent/k.pem").into()),
        cert: Some(Path::new("/nonexistent/c.pem").into()),
        ca: Some(Path::new("/nonexistent/ca.pem").into()),
    };
    let e = tls::client_config(&missing).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    let e = tls::server_config(&TlsFiles::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tls-key"), "{e}");
}
