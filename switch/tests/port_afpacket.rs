//! AF_PACKET and TAP backends on a real kernel (needs root; skips with a message otherwise).
//!
//! Topology, all in namespaces this test creates (`shg<pid>h1`, `shg<pid>h2`, `shg<pid>sw`) and
//! deletes in a Drop guard even on panic:
//!
//! ```text
//!   h1: eth0 198.18.0.1/24 ──veth── sw: p1 (port 1)
//!   h2: eth0 198.18.0.2/24 ──veth── sw: p2 (port 2)      sw: local0 (TAP, LOCAL) 198.18.0.3/24
//! ```
//!
//! Veths keep their default offloads (TSO/GSO, partial checksums). The switch side runs in the
//! test process: a setup thread enters `sw` with setns(CLONE_NEWNET) (`port::link::enter_netns`),
//! opens the ports and spawns the datapath thread, which inherits the namespace; TCP peers are
//! threads that entered h1/h2 the same way. A small "agent" thread applies the datapath's link
//! events to the Ofproto, as the real agent does.
//!
//! Checks: ping h1→h2 and h1→LOCAL with no duplicates (PACKET_IGNORE_OUTGOING); a raw
//! 802.1Q-tagged frame from h1 reaches h2 with its tag (tags the kernel moved into metadata are
//! restored by the ports); 8 MiB each way
//! over TCP with every byte verified, and frames larger than the MTU seen on port 1 (GSO
//! super-frames passed through, with their partial checksums finished by the receiving
//! kernel); carrier loss on a veth reported through netlink as a link event.

use shg_flows::mods::FlowModCommand;
use shg_flows::text::parse_flow;
use shg_switch::datapath::{self, DatapathHandle, DpEvent, LOCAL_PORT};
use shg_switch::ofproto::{Ofproto, OfprotoConfig};
use shg_switch::port::afpacket::AfPacketPort;
use shg_switch::port::link::enter_netns;
use shg_switch::port::tap::TapPort;
use shg_switch::port::PortBackend;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{args:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn sh(args: &[&str]) -> String {
    run(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Namespaces created by this run; deleted on drop (also when the test panics).
struct Netns {
    created: Vec<String>,
}

impl Netns {
    fn add(&mut self, name: &str) -> Result<(), String> {
        run(&["ip", "netns", "add", name])?;
        self.created.push(name.to_owned());
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in self.created.drain(..).rev() {
            if let Err(e) = run(&["ip", "netns", "del", &n]) {
                eprintln!("teardown: {e}");
            }
        }
    }
}

fn ns_path(ns: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(ns)
}

/// Runs `f` on a new thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = ns_path(ns);
    std::thread::spawn(move || {
        enter_netns(&path).unwrap_or_else(|e| panic!("{e}"));
        f()
    })
}

/// Deterministic test bytes (xorshift64*), so the receiver can verify without a copy.
struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const TRANSFER: usize = 8 << 20;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

fn send_stream(s: &mut TcpStream, seed: u64) -> Result<(), String> {
    let mut gen = Stream(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = TRANSFER;
    while left > 0 {
        let n = left.min(buf.len());
        gen.fill(&mut buf[..n]);
        s.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
        left -= n;
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))
}

/// Reads until EOF and checks every byte against the generator.
fn recv_stream(s: &mut TcpStream, seed: u64) -> Result<usize, String> {
    let mut gen = Stream(seed);
    let mut buf = vec![0u8; 64 * 1024];
    let mut expect = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    // The generator works in 8-byte words: keep a carry of generated-but-unused bytes.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("read after {total} bytes: {e}"))?;
        if n == 0 {
            return Ok(total);
        }
        while carry.len() < n {
            gen.fill(&mut expect);
            carry.extend_from_slice(&expect);
        }
        if buf[..n] != carry[..n] {
            let at = buf[..n]
                .iter()
                .zip(&carry[..n])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!("corrupted byte at offset {}", total + at));
        }
        carry.drain(..n);
        total += n;
    }
}

#[test]
fn afpacket_and_tap_ports_forward_ping_and_tcp_with_offloads() {
    if !is_root() {
        eprintln!("SKIPPED port_afpacket: needs root (netns, veth, AF_PACKET, TAP)");
        return;
    }
    let p = format!("shg{}", std::process::id());
    let (h1, h2, sw) = (format!("{p}h1"), format!("{p}h2"), format!("{p}sw"));
    let mut netns = Netns {
        created: Vec::new(),
    };
    if let Err(e) = netns.add(&h1) {
        eprintln!("SKIPPED port_afpacket: network namespaces unavailable: {e}");
        return;
    }
    netns.add(&h2).unwrap();
    netns.add(&sw).unwrap();
    sh(&[
        "ip", "-n", &h1, "link", "add", "eth0", "type", "veth", "peer", "name", "p1", "netns", &sw,
    ]);
    sh(&[
        "ip", "-n", &h2, "link", "add", "eth0", "type", "veth", "peer", "name", "p2", "netns", &sw,
    ]);
    for (ns, addr) in [(&h1, "198.18.0.1/24"), (&h2, "198.18.0.2/24")] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
    }
    sh(&["ip", "-n", &sw, "link", "set", "p1", "up"]);
    sh(&["ip", "-n", &sw, "link", "set", "p2", "up"]);
    // Offloads stay at their defaults: show them in the log for the record.
    if let Ok(o) = run(&["ip", "netns", "exec", &h1, "ethtool", "-k", "eth0"]) {
        let keep = [
            "tx-checksumming:",
            "tcp-segmentation-offload:",
            "generic-segmentation-offload:",
        ];
        for l in o.lines().filter(|l| keep.iter().any(|k| l.starts_with(k))) {
            eprintln!("h1 eth0 {l}");
        }
    }

    // The switch core: 1 -> 2 + LOCAL, 2 -> 1 + LOCAL, LOCAL -> 1 + 2.
    let mut of = Ofproto::new(OfprotoConfig::default());
    for f in [
        "priority=10,in_port=1,actions=output:2,output:LOCAL",
        "priority=10,in_port=2,actions=output:1,output:LOCAL",
        "priority=10,in_port=LOCAL,actions=output:1,output:2",
    ] {
        let fm = parse_flow(f, FlowModCommand::Add).expect(f);
        of.tables.apply_flow_mod(&fm, clock()).expect(f);
    }
    let of = Arc::new(Mutex::new(of));

    // Open the ports and start the datapath inside the switch namespace.
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
    let of2 = of.clone();
    let dp: DatapathHandle = in_netns(&sw, move || {
        let p1 = AfPacketPort::open("p1").expect("open p1");
        let p2 = AfPacketPort::open("p2").expect("open p2");
        let local = TapPort::open("local0").expect("open tap local0");
        assert!(p1.mtu() >= 1500, "mtu {}", p1.mtu());
        assert_ne!(p1.info().hw_addr, [0; 6]);
        assert_eq!(
            p1.info().curr_speed_kbps,
            10_000_000,
            "veth reports 10 Gbit/s"
        );
        // Carrier comes up asynchronously after `ip link set up` (linkwatch).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(p1.link_up() && p2.link_up()) {
            assert!(Instant::now() < deadline, "p1/p2 carrier never came up");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!local.link_up(), "tap is not up until configured");
        let ports: Vec<(u32, Box<dyn PortBackend>)> = vec![
            (1, Box::new(p1)),
            (2, Box::new(p2)),
            (LOCAL_PORT, Box::new(local)),
        ];
        {
            let mut of = of2.lock().unwrap();
            for (no, b) in &ports {
                let _ = of.add_port(*no, b.info(), b.link_up(), clock());
            }
        }
        datapath::spawn(ports, of2, ev_tx, clock).expect("spawn datapath")
    })
    .join()
    .expect("switch setup thread");

    // A minimal agent: applies link events, records them.
    let link_events: Arc<Mutex<Vec<(u32, bool)>>> = Arc::default();
    {
        let (of, rec) = (of.clone(), link_events.clone());
        std::thread::spawn(move || {
            while let Some(ev) = ev_rx.blocking_recv() {
                if let DpEvent::PortLink { port, up } = ev {
                    rec.lock().unwrap().push((port, up));
                    let _ = of.lock().unwrap().set_port_link(port, up, clock());
                }
            }
        });
    }
    let wait_link = |port: u32, up: bool| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !link_events.lock().unwrap().contains(&(port, up)) {
            assert!(
                Instant::now() < deadline,
                "no link event ({port}, {up}): {:?}",
                link_events.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    // The gateway's own stack configures LOCAL; netlink tells the datapath it came up.
    sh(&[
        "ip",
        "-n",
        &sw,
        "addr",
        "add",
        "198.18.0.3/24",
        "dev",
        "local0",
    ]);
    sh(&["ip", "-n", &sw, "link", "set", "local0", "up"]);
    wait_link(LOCAL_PORT, true);

    for target in ["198.18.0.2", "198.18.0.3"] {
        let out = run(&[
            "ip", "netns", "exec", &h1, "ping", "-c", "3", "-i", "0.2", "-W", "2", target,
        ])
        .unwrap_or_else(|e| panic!("ping {target} through the switch failed: {e}"));
        assert!(
            !out.contains("DUP!"),
            "duplicate replies (own transmissions looped?):\n{out}"
        );
    }

    // 802.1Q: the kernel strips a tag into metadata on receive (on the switch's p1 and on h2's
    // eth0); the AF_PACKET port puts it back. A tagged frame sent raw from h1 must arrive at
    // h2 still tagged (this kernel may lack 8021q, so no VLAN sub-interfaces are used).
    let (ready_tx, ready_rx) = mpsc::channel();
    let receiver = in_netns(&h2, move || -> Result<Vec<u8>, String> {
        let mut port = AfPacketPort::open("eth0").map_err(|e| e.to_string())?;
        ready_tx.send(()).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while Instant::now() < deadline {
            got.clear();
            port.recv_batch(&mut got, 32).map_err(|e| e.to_string())?;
            if let Some(p) = got
                .iter()
                .find(|p| p.data.len() > 18 && p.data[18..].starts_with(b"shg-vlan-probe"))
            {
                return Ok(p.data.clone());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err("tagged probe never arrived at h2".into())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("receiver ready");
    let probe: Vec<u8> = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x11, 0x81, 0x00, 0x20, 0x64, 0x88, 0xb5]);
        f.extend_from_slice(b"shg-vlan-probe");
        f.resize(64, 0);
        f
    };
    let to_send = probe.clone();
    in_netns(&h1, move || {
        let mut port = AfPacketPort::open("eth0").expect("open h1 eth0");
        for _ in 0..3 {
            let n = port
                .send_batch(&[shg_switch::port::Packet::plain(to_send.clone())])
                .expect("send probe");
            assert_eq!(n, 1);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .join()
    .expect("vlan sender");
    let received = receiver
        .join()
        .expect("vlan receiver")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        received, probe,
        "the 802.1Q tag (prio 1, vid 100) survived the switch"
    );

    // TCP, 8 MiB each way, every byte checked.
    let (port_tx, port_rx) = mpsc::channel();
    let server = in_netns(&h2, move || -> Result<usize, String> {
        let l = TcpListener::bind("198.18.0.2:0").map_err(|e| format!("bind: {e}"))?;
        port_tx
            .send(l.local_addr().map_err(|e| e.to_string())?.port())
            .map_err(|e| e.to_string())?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut s = loop {
            match l.accept() {
                Ok((s, _)) => break s,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        s.set_nonblocking(false).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let got = recv_stream(&mut s, 1)?;
        send_stream(&mut s, 2)?;
        Ok(got)
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server bound");
    let client = in_netns(&h1, move || -> Result<usize, String> {
        let addr = SocketAddr::from(([198, 18, 0, 2], port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        send_stream(&mut s, 1)?;
        recv_stream(&mut s, 2)
    });
    let client_got = client.join().expect("client thread");
    let server_got = server.join().expect("server thread");
    assert_eq!(server_got, Ok(TRANSFER), "h1 -> h2 transfer");
    assert_eq!(client_got, Ok(TRANSFER), "h2 -> h1 transfer");

    let (c1, c2) = {
        let of = of.lock().unwrap();
        (of.ports[&1].counters, of.ports[&2].counters)
    };
    eprintln!("port 1: {c1:?}\nport 2: {c2:?}\ndatapath: {:?}", dp.stats());
    assert!(c1.rx_bytes >= TRANSFER as u64 && c2.rx_bytes >= TRANSFER as u64);
    // The average received frame is larger than an MTU-sized frame: GSO super-frames passed.
    assert!(
        c1.rx_bytes / c1.rx_packets.max(1) > 1514,
        "no GSO frames seen on port 1: {c1:?}"
    );

    // Carrier loss on h2's side reaches the datapath through netlink.
    sh(&["ip", "-n", &h2, "link", "set", "eth0", "down"]);
    wait_link(2, false);
    sh(&["ip", "-n", &h2, "link", "set", "eth0", "up"]);
    wait_link(2, true);
    drop(dp);
}
