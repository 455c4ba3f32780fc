//! Shared by the api*.rs tests: certificates made with the openssl CLI, a server on 127.0.0.1:0
//! over the fake control plane, and a tiny blocking HTTPS client.
#![allow(dead_code, unreachable_pub)]

use shg_controller::api::control::{QueueCounters, Role, Sample};
use shg_controller::api::fake::FakeControlPlane;
use shg_controller::api::ratelimit::Limits;
use shg_controller::api::tls::{client_config, server_config, TlsFiles};
use shg_controller::api::tokens::TokenStore;
use shg_controller::api::{serve, Api, ApiConfig};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub const GATEWAY: &str = include_str!("../../../tests/fixtures/controller/gateway.toml");

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("shg-api-{tag}-{}-{n}", std::process::id()));
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

fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "30",
            "-subj",
            &format!("/CN=shg test {name}"),
        ],
    );
}

fn leaf(dir: &Path, ca: &str, name: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN=shg test {name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "30",
            "-extfile",
            &format!("{name}.ext"),
        ],
    );
}

/// Certificates for one test binary: a server CA and the server's certificate (localhost,
/// 127.0.0.1), the ISP CA and an ISP client certificate, a rogue CA and its client certificate.
pub fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("shg-api-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        ca(&d, "server-ca");
        leaf(
            &d,
            "server-ca",
            "server",
            "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
        );
        let client = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n";
        ca(&d, "isp-ca");
        leaf(&d, "isp-ca", "isp", client);
        ca(&d, "rogue-ca");
        leaf(&d, "rogue-ca", "rogue", client);
        d
    })
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Who {
    Nobody,
    Isp,
    /// A client certificate from another CA.
    Rogue,
    Token(String),
}

/// A running server over a fake control plane.
pub struct TestServer {
    pub addr: SocketAddr,
    pub fake: FakeControlPlane,
    pub user: String,
    pub user2: String,
    pub monitor: String,
    pub tokens: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn ports() -> BTreeMap<String, u32> {
    [("lan1".to_string(), 3u32), ("veth-call".to_string(), 10u32)]
        .into_iter()
        .collect()
}

pub fn test_config() -> ApiConfig {
    ApiConfig {
        body_limit: 64 * 1024,
        limits: Limits {
            burst: 1000,
            per_second: 1000,
            max_clients: 1000,
        },
        poll_interval: Duration::from_millis(30),
        heartbeat: Duration::from_millis(500),
        ..ApiConfig::default()
    }
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(test_config())
    }

    pub fn start_with(config: ApiConfig) -> TestServer {
        let c = certs();
        let dir = TempDir::new("srv");
        let tokens = dir.0.join("tokens");
        let mut store = TokenStore::open(&tokens).unwrap();
        let (user, _) = store.create(Role::User, "test user").unwrap();
        let (user2, _) = store.create(Role::User, "second user").unwrap();
        let (monitor, _) = store.create(Role::Monitor, "test monitor").unwrap();
        let fake = FakeControlPlane::new(GATEWAY, ports()).unwrap();
        let (tls, isp) = server_config(&TlsFiles {
            cert: c.join("server.pem"),
            key: c.join("server.key"),
            isp_ca: c.join("isp-ca.pem"),
        })
        .unwrap();
        let api = Api::new(Arc::new(fake.clone()), store, Some(isp), config);
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
                serve(api, l, tls, async {
                    let _ = rx.await;
                })
                .await;
            });
        });
        TestServer {
            addr,
            fake,
            user,
            user2,
            monitor,
            tokens,
            stop: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn user(&self) -> Who {
        Who::Token(self.user.clone())
    }

    pub fn monitor(&self) -> Who {
        Who::Token(self.monitor.clone())
    }

    /// One request on a new connection.
    pub fn req(&self, who: &Who, method: &str, path: &str, body: Option<&str>) -> Resp {
        self.req_h(who, method, path, &[], body.map(str::as_bytes))
    }

    pub fn req_h(
        &self,
        who: &Who,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let mut s = connect(self.addr, who);
        let mut h = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Who::Token(t) = who {
            h.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                h.push_str("Content-Type: application/json\r\n");
            }
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            {
                h.push_str(&format!("Content-Length: {}\r\n", b.len()));
            }
        }
        h.push_str("\r\n");
        let mut all = h.into_bytes();
        all.extend_from_slice(body.unwrap_or_default());
        // The server may answer (413) and stop reading before the whole body is sent.
        let _ = s.write_all(&all);
        let _ = s.flush();
        read_resp(&mut BufReader::new(s))
    }

    pub fn json(
        &self,
        who: &Who,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let r = self.req(who, method, path, body);
        (r.status, r.json())
    }
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

pub fn connect(addr: SocketAddr, who: &Who) -> Tls {
    let c = certs();
    let (cert, key);
    let pair = match who {
        Who::Isp => {
            cert = c.join("isp.pem");
            key = c.join("isp.key");
            Some((cert.as_path(), key.as_path()))
        }
        Who::Rogue => {
            cert = c.join("rogue.pem");
            key = c.join("rogue.key");
            Some((cert.as_path(), key.as_path()))
        }
        _ => None,
    };
    let config = client_config(&c.join("server-ca.pem"), pair).unwrap();
    let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one answer; an event stream's head only (its body never ends).
pub fn read_resp(r: &mut impl BufRead) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("status line {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if resp
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        return resp;
    }
    let len: usize = resp.header("content-length").unwrap().parse().unwrap();
    resp.body.resize(len, 0);
    r.read_exact(&mut resp.body).unwrap();
    resp
}

/// Queue counters on the uplink (port 1) for a sample.
pub fn queue(queue: u32, tx_bytes: u64, backlog: u64, drops: u64, p99: f64) -> QueueCounters {
    QueueCounters {
        port: 1,
        queue,
        port_rate: Some(20_000_000),
        priority: Some(0),
        tx_packets: tx_bytes / 1000,
        tx_bytes,
        drops_overflow: drops,
        backlog_bytes: backlog,
        backlog_packets: backlog / 1000,
        sojourn_p50_ms: Some(p99 / 4.0),
        sojourn_p99_ms: Some(p99),
        ..QueueCounters::default()
    }
}

/// Two samples one second apart: the uplink (20 Mbit/s) full, nas (1 Mbit/s guaranteed)
/// sending 16 Mbit/s, videocall (6 Mbit/s guaranteed) backlogged at 3 Mbit/s with drops.
pub fn congested_samples() -> (Sample, Sample) {
    let s0 = Sample {
        at_ns: 1_000_000_000,
        wall_ms: 1_700_000_000_000,
        queues: vec![
            queue(0, 0, 0, 0, 0.0),
            queue(1, 0, 0, 0, 1.0),
            queue(2, 0, 0, 0, 1.0),
            queue(3, 0, 0, 0, 1.0),
        ],
        ..Sample::default()
    };
    let s1 = Sample {
        at_ns: 2_000_000_000,
        wall_ms: 1_700_000_001_000,
        queues: vec![
            queue(0, 0, 0, 0, 0.0),
            queue(1, 375_000, 30_000, 40, 45.0),
            queue(2, 0, 0, 0, 1.0),
            queue(3, 2_000_000, 60_000, 0, 80.0),
        ],
        ..Sample::default()
    };
    (s0, s1)
}

/// Polls `f` until it returns Some (or panics after `secs`).
pub fn wait_for<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < end, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}
