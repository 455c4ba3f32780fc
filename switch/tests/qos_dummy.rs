//! Egress QoS through the real datapath thread over dummy ports (no root): a shaped port sends
//! at its rate (real clock), a priority queue overtakes a bulk backlog (ARP frames too: they
//! go where set_queue sends them), the thread sleeps once the schedulers are empty, GSO frames
//! leave as wire-size frames, PACKET_OUT frames are paced, counters add up; and the control
//! socket's `dump-queues`, `set-queue`, `del-queue`, `set-port-rate` (pure, on an `Ofproto`).

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use shg_flows::mods::FlowModCommand;
use shg_flows::text::parse_flow;
use shg_switch::ctl;
use shg_switch::datapath::{self, DatapathHandle, DpEvent, Output};
use shg_switch::ofproto::{Ofproto, OfprotoConfig};
use shg_switch::port::dummy::{DummyHandle, DummyPort};
use shg_switch::port::{Packet, PortBackend, PortInfo, VnetHdr};
use shg_switch::qos::{PortQosConfig, QueueConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// A `len`-byte frame to `dst` from `src` with `ethertype`, carrying `seq` after the header.
fn frame(dst: u8, src: u8, ethertype: u16, seq: u32, len: usize) -> Packet {
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&mac(dst));
    d.extend_from_slice(&mac(src));
    d.extend_from_slice(&ethertype.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes());
    d.resize(len, 0xab);
    Packet::plain(d)
}

const BULK: u16 = 0x88b5;
const ARP: u16 = 0x0806;

fn ethertype_of(p: &Packet) -> u16 {
    u16::from_be_bytes([p.data[12], p.data[13]])
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// 8 Mbit/s, a latency queue (1: priority 0, 2 Mbit/s guaranteed) and a bulk queue (2).
fn two_queues(rate: u64) -> PortQosConfig {
    PortQosConfig {
        rate: Some(rate),
        queues: vec![
            QueueConfig {
                id: 1,
                min_rate: rate / 4,
                max_rate: None,
                priority: 0,
            },
            QueueConfig {
                id: 2,
                min_rate: 0,
                max_rate: None,
                priority: 7,
            },
        ],
    }
}

struct Rig {
    dp: DatapathHandle,
    of: Arc<Mutex<Ofproto>>,
    /// Ports 1 (input), 2 (shaped), 3 (unshaped).
    h: Vec<DummyHandle>,
    _events: UnboundedReceiver<DpEvent>,
}

impl Rig {
    fn new(flows: &[&str], qos: PortQosConfig) -> Rig {
        let mut of = Ofproto::new(OfprotoConfig::default());
        let mut ports: Vec<(u32, Box<dyn PortBackend>)> = Vec::new();
        let mut h = Vec::new();
        for n in 1..=3u8 {
            let (port, handle) = DummyPort::new(&format!("q{n}"), mac(n));
            let _ = of.add_port(u32::from(n), port.info(), true, clock());
            ports.push((u32::from(n), Box::new(port)));
            h.push(handle);
        }
        of.set_port_qos(2, qos, clock()).expect("valid QoS");
        for f in flows {
            let fm = parse_flow(f, FlowModCommand::Add).expect(f);
            of.tables.apply_flow_mod(&fm, clock()).expect(f);
        }
        let of = Arc::new(Mutex::new(of));
        let (tx, events) = unbounded_channel();
        let dp = datapath::spawn(ports, of.clone(), tx, clock).expect("spawn datapath");
        Rig {
            dp,
            of,
            h,
            _events: events,
        }
    }

    fn of(&self) -> MutexGuard<'_, Ofproto> {
        self.of.lock().unwrap()
    }

    /// Frames queued in port 2's scheduler, plus frames injected but not yet received.
    fn in_flight(&self) -> usize {
        self.of().qos[&2].backlog().0 + self.h[0].pending_rx()
    }

    /// Waits until port 2's scheduler is empty, collecting what it sent.
    fn drain(&self, sent: &mut Vec<Packet>) {
        wait_for("the shaped port to drain", 20, || {
            sent.extend(self.h[1].take_sent());
            (self.in_flight() == 0).then_some(())
        });
        // The last dequeued frames are sent right after the lock is released.
        std::thread::sleep(Duration::from_millis(20));
        sent.extend(self.h[1].take_sent());
    }

    /// Wake-ups of every kind (readiness, QoS timers, spinning polls).
    fn wakeups(&self) -> u64 {
        let s = self.dp.stats();
        s.wakeups + s.qos_timer_wakeups + s.spin_polls
    }
}

const MBIT: u64 = 1_000_000;

/// A bulk backlog kept up for ~1.3 s leaves at the shaped 8 Mbit/s (±10 %, real clock); the
/// port, queue and datapath counters agree with what the dummy port really sent.
#[test]
fn frames_leave_at_the_shaped_rate() {
    let r = Rig::new(
        &["in_port=1,actions=set_queue:2,output:2"],
        two_queues(8 * MBIT),
    );
    const LEN: usize = 1000;
    let start = Instant::now();
    let mut samples: Vec<(Duration, usize)> = Vec::new();
    let mut sent_bytes = 0usize;
    let mut sent = Vec::new();
    let mut seq = 0u32;
    while start.elapsed() < Duration::from_millis(1300) {
        // Keep about 40 frames (40 ms at 8 Mbit/s) waiting, so the link never idles.
        for _ in r.in_flight()..40 {
            r.h[0].inject(frame(2, 1, BULK, seq, LEN));
            seq += 1;
        }
        let got = r.h[1].take_sent();
        sent_bytes += got.iter().map(|p| p.data.len()).sum::<usize>();
        sent.extend(got);
        samples.push((start.elapsed(), sent_bytes));
        std::thread::sleep(Duration::from_millis(2));
    }
    let at = |t: Duration| {
        samples
            .iter()
            .find(|(s, _)| *s >= t)
            .copied()
            .expect("a sample after t")
    };
    let (t0, b0) = at(Duration::from_millis(200));
    let (t1, b1) = at(Duration::from_millis(1200));
    let rate = (b1 - b0) as f64 * 8.0 / (t1 - t0).as_secs_f64();
    eprintln!("shaped rate: {:.3} Mbit/s", rate / 1e6);
    assert!(
        (rate - 8e6).abs() <= 0.1 * 8e6,
        "shaped rate {:.3} Mbit/s, want 8 ± 0.8",
        rate / 1e6
    );
    assert!(sent.iter().all(|p| p.data.len() == LEN));

    r.drain(&mut sent);
    let of = r.of();
    let c = of.ports[&2].counters;
    let stats = of.qos[&2].stats();
    let q2 = stats.iter().find(|q| q.id == 2).expect("queue 2");
    let n = sent.len() as u64;
    assert_eq!(c.tx_packets, n, "port tx_packets counts frames that left");
    assert_eq!(c.tx_bytes, n * LEN as u64);
    assert_eq!(q2.tx_packets, n);
    assert_eq!(q2.unknown_queue, 0);
    assert_eq!(
        c.tx_dropped,
        q2.drops_overflow + q2.drops_aqm,
        "every scheduler drop is a port tx drop"
    );
    assert_eq!(
        u64::from(seq),
        n + c.tx_dropped,
        "every injected frame was sent or dropped, once"
    );
    let st = r.dp.stats();
    assert_eq!(st.qos_drops, c.tx_dropped);
    assert_eq!(st.qos_enqueued, u64::from(seq) - q2.drops_overflow);
    assert!(st.qos_timer_wakeups > 100, "paced by timers: {st:?}");
    // Frames of one queue keep their order.
    let seqs: Vec<u32> = sent
        .iter()
        .map(|p| u32::from_be_bytes([p.data[14], p.data[15], p.data[16], p.data[17]]))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "reordered");
}

/// ARP frames set_queue'd to the priority queue leave while a bulk backlog still waits; once
/// everything is sent the datapath thread sleeps (no wake-ups at all).
#[test]
fn priority_queue_overtakes_bulk_and_idle_thread_sleeps() {
    let r = Rig::new(
        &[
            "priority=20,in_port=1,dl_dst=02:00:00:00:00:03,actions=set_queue:1,output:2",
            "priority=10,in_port=1,actions=set_queue:2,output:2",
        ],
        two_queues(8 * MBIT),
    );
    const N_BULK: u32 = 100;
    for seq in 0..N_BULK {
        r.h[0].inject(frame(2, 1, BULK, seq, 1000));
    }
    wait_for("the bulk backlog", 5, || {
        (r.h[0].pending_rx() == 0 && r.of().qos[&2].backlog().0 > 0).then_some(())
    });
    let mut sent = r.h[1].take_sent();
    let bulk_before = sent.len();
    for seq in 0..5 {
        r.h[0].inject(frame(3, 1, ARP, seq, 60));
    }
    wait_for("the ARP frames", 5, || {
        sent.extend(r.h[1].take_sent());
        (sent.iter().filter(|p| ethertype_of(p) == ARP).count() == 5).then_some(())
    });
    let last_arp = sent
        .iter()
        .rposition(|p| ethertype_of(p) == ARP)
        .expect("ARP sent");
    let bulk_between = sent[bulk_before..last_arp]
        .iter()
        .filter(|p| ethertype_of(p) == BULK)
        .count();
    let bulk_left = N_BULK as usize - bulk_before - bulk_between;
    eprintln!("bulk frames: {bulk_before} before ARP, {bulk_between} between, {bulk_left} after");
    assert!(
        bulk_left >= 50,
        "ARP left only after {bulk_between} more bulk frames ({bulk_before} before); \
         {bulk_left} still queued"
    );
    r.drain(&mut sent);
    {
        let of = r.of();
        let stats = of.qos[&2].stats();
        let q: BTreeMap<u32, _> = stats.iter().map(|q| (q.id, q)).collect();
        assert_eq!(q[&1].tx_packets, 5, "the ARP frames went to queue 1");
        assert_eq!(q[&1].tx_bytes, 5 * 60);
        assert_eq!(
            q[&2].tx_packets + q[&2].drops_aqm + q[&2].drops_overflow,
            100
        );
        assert!(q[&1].sojourn.count() == 5);
    }

    // Idle: every scheduler is empty, nothing arrives, so nothing wakes the thread.
    let before = r.wakeups();
    std::thread::sleep(Duration::from_millis(300));
    let after = r.wakeups();
    assert_eq!(before, after, "datapath thread woke while idle");
    assert_eq!(r.of().next_qos_wakeup(), None);
}

/// A 64 KB-style TCP GSO frame to a shaped port leaves as wire-size frames with valid
/// headers; a UFO frame (cannot be split) is dropped and counted.
#[test]
fn gso_frame_to_a_shaped_port_leaves_as_wire_size_frames() {
    let r = Rig::new(
        &["in_port=1,actions=output:2", "in_port=3,actions=output:2"],
        PortQosConfig {
            rate: Some(500 * MBIT),
            queues: Vec::new(),
        },
    );
    let (gso, payload) = gso_frame();
    r.h[0].inject(gso);
    let want = PAYLOAD.div_ceil(usize::from(MSS));
    let mut sent = Vec::new();
    wait_for("the segments", 5, || {
        sent.extend(r.h[1].take_sent());
        (sent.len() >= want).then_some(())
    });
    assert_eq!(sent.len(), want);
    let mut seq = 1000u32;
    let mut got = Vec::new();
    for p in &sent {
        assert!(p.vnet.is_plain(), "{:?}", p.vnet);
        assert!(p.data.len() <= 14 + 40 + usize::from(MSS));
        let s = SlicedPacket::from_ethernet(&p.data).expect("parses");
        let Some(NetSlice::Ipv4(_)) = &s.net else {
            panic!("not IPv4")
        };
        let Some(TransportSlice::Tcp(t)) = &s.transport else {
            panic!("not TCP")
        };
        assert_eq!(t.sequence_number(), seq);
        seq += u32::try_from(t.payload().len()).unwrap();
        got.extend_from_slice(t.payload());
    }
    assert_eq!(got, payload, "the segments carry the payload, in order");
    {
        let of = r.of();
        assert_eq!(of.ports[&2].counters.tx_packets, want as u64);
    }

    // UFO (gso_type 3) is refused by the splitter: dropped and counted, nothing sent.
    let mut ufo = frame(2, 1, 0x0800, 0, 3000);
    ufo.vnet.gso_type = 3;
    ufo.vnet.gso_size = 1400;
    r.h[2].inject(ufo);
    wait_for("the split error", 5, || {
        (r.dp.stats().gso_split_errors == 1).then_some(())
    });
    assert_eq!(r.of().ports[&2].counters.tx_dropped, 1);
    std::thread::sleep(Duration::from_millis(20));
    assert!(r.h[1].take_sent().is_empty());
}

const PAYLOAD: usize = 6000;
const MSS: u16 = 1448;

/// A TCPv4 GSO frame carrying PAYLOAD bytes in MSS-byte segments, and its payload.
fn gso_frame() -> (Packet, Vec<u8>) {
    let mut d = Vec::new();
    let b = etherparse::PacketBuilder::ethernet2(mac(1), mac(2))
        .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        .tcp(40000, 80, 1000, 64000)
        .ack(1);
    let payload: Vec<u8> = (0..PAYLOAD)
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    b.write(&mut d, &payload).unwrap();
    let gso = Packet {
        data: d,
        vnet: VnetHdr {
            flags: 0,
            gso_type: 1,
            hdr_len: 54,
            gso_size: MSS,
            csum_start: 34,
            csum_offset: 16,
        },
    };
    (gso, payload)
}

/// Above 1 Gbit/s (every rate of the port) a GSO frame is queued and sent whole, with its
/// GSO metadata (the kernel segments it), and counted as one frame of its own size.
#[test]
fn gso_frame_to_a_fast_shaped_port_leaves_whole() {
    let r = Rig::new(&["in_port=1,actions=output:2"], two_queues(10_000 * MBIT));
    let (gso, _) = gso_frame();
    let len = gso.data.len();
    r.h[0].inject(gso.clone());
    let mut sent = Vec::new();
    wait_for("the frame", 5, || {
        sent.extend(r.h[1].take_sent());
        (!sent.is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(20));
    sent.extend(r.h[1].take_sent());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].vnet, gso.vnet);
    assert_eq!(sent[0].data, gso.data);
    let of = r.of();
    assert_eq!(of.ports[&2].counters.tx_packets, 1);
    assert_eq!(of.ports[&2].counters.tx_bytes, len as u64);
}

/// PACKET_OUT frames (`DatapathHandle::transmit`) to a shaped port go through its scheduler:
/// paced, counted once.
#[test]
fn packet_out_to_a_shaped_port_is_paced() {
    let r = Rig::new(&[], two_queues(8 * MBIT));
    let outs: Vec<Output> = (0..30)
        .map(|s| Output::Port {
            port: 2,
            queue: None,
            pkt: frame(2, 9, BULK, s, 1000),
        })
        .collect();
    let t = Instant::now();
    r.dp.transmit(outs);
    let mut sent = Vec::new();
    wait_for("30 frames", 5, || {
        sent.extend(r.h[1].take_sent());
        (sent.len() == 30).then_some(())
    });
    let took = t.elapsed();
    // 30 kB at 8 Mbit/s is 30 ms, less the port's initial burst (3 kB): never faster.
    assert!(took >= Duration::from_millis(24), "not paced: {took:?}");
    let of = r.of();
    assert_eq!(of.ports[&2].counters.tx_packets, 30);
    let stats = of.qos[&2].stats();
    let q2 = stats.iter().find(|q| q.id == 2).expect("queue 2");
    assert_eq!(
        q2.tx_packets, 30,
        "no set_queue: the default (lowest-priority) queue"
    );
}

// ---------------------------------------------------------------------------------------
// The control socket's QoS commands (pure: `ctl::execute` on an Ofproto)

fn ctl_switch() -> Ofproto {
    let mut of = Ofproto::new(OfprotoConfig::default());
    for (n, name) in [(1u32, "lan"), (2, "uplink")] {
        let _ = of.add_port(
            n,
            PortInfo {
                name: name.into(),
                hw_addr: mac(u8::try_from(n).unwrap()),
                curr_speed_kbps: 1_000_000,
                max_speed_kbps: 0,
                ifindex: None,
            },
            true,
            0,
        );
    }
    of.set_port_qos(2, two_queues(20 * MBIT), 0).unwrap();
    of
}

/// Parses `dump-queues` lines into key → value maps, checking the keys and their order.
fn parse_dump(text: &str) -> Vec<BTreeMap<String, String>> {
    const KEYS: [&str; 16] = [
        "port",
        "queue",
        "port_rate",
        "priority",
        "min_rate",
        "max_rate",
        "tx_packets",
        "tx_bytes",
        "drops_overflow",
        "drops_aqm",
        "ecn_marked",
        "unknown_queue",
        "backlog_packets",
        "backlog_bytes",
        "sojourn_p50_ms",
        "sojourn_p99_ms",
    ];
    text.lines()
        .map(|l| {
            let kv: Vec<(String, String)> = l
                .split(' ')
                .map(|w| {
                    let (k, v) = w.split_once('=').unwrap_or_else(|| panic!("{w} in {l}"));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let keys: Vec<&str> = kv.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, KEYS, "{l}");
            kv.into_iter().collect()
        })
        .collect()
}

#[test]
fn ctl_dump_queues_prints_stable_key_value_lines() {
    let mut of = ctl_switch();
    // Two frames through queue 1, one unknown id to the default queue.
    let mut outs = vec![
        Output::Port {
            port: 2,
            queue: Some(1),
            pkt: frame(2, 1, BULK, 0, 100),
        },
        Output::Port {
            port: 2,
            queue: Some(1),
            pkt: frame(2, 1, BULK, 1, 100),
        },
        Output::Port {
            port: 2,
            queue: Some(42),
            pkt: frame(2, 1, BULK, 2, 500),
        },
    ];
    of.enqueue_shaped(&mut outs, 1_000_000);
    let mut due = Vec::new();
    of.dequeue_shaped(3_000_000, 2, &mut due);

    let all = parse_dump(&ctl::execute(&mut of, "dump-queues", 5_000_000).unwrap());
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(all[0]["port"], "1", "the unshaped port's queue 0");
    assert_eq!(all[0]["port_rate"], "none");
    let only = parse_dump(&ctl::execute(&mut of, "dump-queues uplink", 5_000_000).unwrap());
    assert_eq!(only, all[1..].to_vec(), "by name = the port's lines");
    assert_eq!(
        parse_dump(&ctl::execute(&mut of, "dump-queues 2", 5_000_000).unwrap()),
        only
    );
    let (q1, q2) = (&only[0], &only[1]);
    assert_eq!(q1["queue"], "1");
    assert_eq!(q1["port_rate"], "20000000");
    assert_eq!(q1["priority"], "0");
    assert_eq!(q1["min_rate"], "5000000");
    assert_eq!(q1["max_rate"], "none");
    assert_eq!(q1["tx_packets"], "2");
    assert_eq!(q1["tx_bytes"], "200");
    assert_eq!(q1["backlog_packets"], "0");
    // Both waited 2 ms (enqueued at 1 ms, sent at 3 ms).
    let p50: f64 = q1["sojourn_p50_ms"].parse().unwrap();
    assert!((1.8..=2.2).contains(&p50), "{p50}");
    assert_eq!(q2["queue"], "2");
    assert_eq!(q2["unknown_queue"], "1");
    assert_eq!(q2["backlog_packets"], "1");
    assert_eq!(q2["backlog_bytes"], "500");
    assert_eq!(q2["tx_packets"], "0");
    assert_eq!(q2["sojourn_p99_ms"], "none", "nothing sent yet");

    // clear-queue-stats restarts the percentiles, keeps the counters.
    let msg = ctl::execute(&mut of, "clear-queue-stats uplink", 5_000_000).unwrap();
    assert!(msg.contains("1 shaped port"), "{msg}");
    let after = parse_dump(&ctl::execute(&mut of, "dump-queues uplink", 5_000_000).unwrap());
    assert_eq!(after[0]["sojourn_p50_ms"], "none");
    assert_eq!(after[0]["tx_packets"], "2");
    assert!(ctl::execute(&mut of, "clear-queue-stats 9", 0).is_err());

    assert!(ctl::execute(&mut of, "dump-queues wan", 0)
        .unwrap_err()
        .contains("no port is named \"wan\""));
    assert!(ctl::execute(&mut of, "dump-queues 9", 0)
        .unwrap_err()
        .contains("port 9 does not exist"));
}

#[test]
fn ctl_set_queue_del_queue_and_set_port_rate() {
    let mut of = ctl_switch();
    // Create queue 3 and update queue 1; QUEUE_GET_CONFIG's source changes with them.
    let out = ctl::execute(
        &mut of,
        "set-queue uplink 3 min=2mbit max=10mbit priority=2",
        1,
    )
    .unwrap();
    assert!(
        out.contains("queue 3: priority 2, min 2mbit, max 10mbit"),
        "{out}"
    );
    assert!(out.contains("default queue: 2"), "{out}");
    ctl::execute(&mut of, "set-queue 2 1 min=6mbit", 2).unwrap();
    let cfg = of.port_qos(2).unwrap().clone();
    let q: BTreeMap<u32, QueueConfig> = cfg.queues.iter().map(|q| (q.id, *q)).collect();
    assert_eq!(q[&1].min_rate, 6 * MBIT);
    assert_eq!(q[&1].priority, 0, "unchanged keys stay");
    assert_eq!(
        q[&3],
        QueueConfig {
            id: 3,
            min_rate: 2 * MBIT,
            max_rate: Some(10 * MBIT),
            priority: 2
        }
    );
    // The scheduler's refusals are the error text; nothing changes.
    let e = ctl::execute(&mut of, "set-queue 2 3 max=30mbit", 3).unwrap_err();
    assert!(e.contains("exceeds the port rate"), "{e}");
    let e = ctl::execute(&mut of, "set-queue 2 4 min=15mbit", 3).unwrap_err();
    assert!(e.contains("guarantees sum to"), "{e}");
    assert_eq!(of.port_qos(2), Some(&cfg));
    // Argument errors.
    for (line, needle) in [
        ("set-queue 2", "usage"),
        ("set-queue 2 x", "not a queue id"),
        ("set-queue 2 3 min=2", "no unit"),
        ("set-queue 2 3 priority=8", "not a priority"),
        ("set-queue 2 3 weight=1", "unknown argument"),
        ("set-queue 2 3 min=9mbit max=8mbit", "above the ceiling"),
        ("del-queue 2 9", "has no queue 9"),
        ("del-queue 1 0", "not shaped"),
        ("set-port-rate 2 0mbit", "zero"),
        ("set-port-rate 2 none", "needs a shaped port"),
    ] {
        let e = ctl::execute(&mut of, line, 4).unwrap_err();
        assert!(e.contains(needle), "{line}: {e}");
    }
    assert_eq!(of.port_qos(2), Some(&cfg));

    // del-queue: frames of a removed queue are not lost (they move to the default queue).
    let mut outs = vec![Output::Port {
        port: 2,
        queue: Some(3),
        pkt: frame(2, 1, BULK, 0, 100),
    }];
    of.enqueue_shaped(&mut outs, 5);
    let out = ctl::execute(&mut of, "del-queue uplink 3", 6).unwrap();
    assert!(!out.contains("queue 3:"), "{out}");
    assert_eq!(of.qos[&2].backlog(), (1, 100));
    assert_eq!(of.port_qos(2).unwrap().queues.len(), 2);

    // set-port-rate: shape an unshaped port (it gets the default queue 0), change a rate,
    // stop shaping.
    let out = ctl::execute(&mut of, "set-port-rate lan 5mbit", 7).unwrap();
    assert!(
        out.contains("rate: 5mbit") && out.contains("queue 0:"),
        "{out}"
    );
    assert_eq!(of.port_qos(1).unwrap().rate, Some(5 * MBIT));
    ctl::execute(&mut of, "set-port-rate 2 30mbit", 8).unwrap();
    assert_eq!(of.port_qos(2).unwrap().rate, Some(30 * MBIT));
    let out = ctl::execute(&mut of, "set-port-rate 1 none", 9).unwrap();
    assert!(out.contains("not shaped"), "{out}");
    assert!(of.port_qos(1).is_none());
    assert!(ctl::is_change("set-port-rate 1 none") && !ctl::is_change("dump-queues"));
}

#[test]
fn ctl_show_and_trace_name_the_shaped_port_and_its_queue() {
    let mut of = ctl_switch();
    for f in [
        "priority=20,in_port=1,arp,actions=set_queue:1,output:2",
        "priority=10,in_port=1,actions=set_queue:9,output:2",
        "priority=10,in_port=3,actions=output:2",
    ] {
        let fm = parse_flow(f, FlowModCommand::Add).expect(f);
        of.tables.apply_flow_mod(&fm, 0).expect(f);
    }
    let show = ctl::execute(&mut of, "show", 0).unwrap();
    assert!(
        show.contains("egress: shaped to 20mbit, queues 1,2"),
        "{show}"
    );
    let t = ctl::execute(&mut of, "trace in_port=1,arp", 0).unwrap();
    assert!(t.contains("port 2 is shaped: enqueued on queue 1"), "{t}");
    assert!(t.contains("Datapath actions: output:2(queue 1)"), "{t}");
    let t = ctl::execute(&mut of, "trace in_port=1,tcp", 0).unwrap();
    assert!(
        t.contains("port 2 is shaped and has no queue 9: enqueued on its default queue 2"),
        "{t}"
    );
    let t = ctl::execute(&mut of, "trace in_port=3,tcp", 0).unwrap();
    assert!(
        t.contains("port 2 is shaped: enqueued on its default queue 2"),
        "{t}"
    );
    assert!(t.contains("Datapath actions: output:2\n"), "{t}");
    // A trace never touches the scheduler.
    assert_eq!(of.qos[&2].backlog(), (0, 0));
}
