//! The datapath thread over dummy ports (no root): forwarding by a real flow table, order within
//! a flow, PACKET_IN events, transmit(), send-failure accounting, link changes, port add and
//! remove, and zero CPU at rest.

use shg_flows::mods::FlowModCommand;
use shg_flows::table::FlowFilter;
use shg_flows::text::parse_flow;
use shg_switch::datapath::{self, DatapathHandle, DpEvent, Output};
use shg_switch::ofproto::{Ofproto, OfprotoConfig};
use shg_switch::port::dummy::{DummyHandle, DummyPort};
use shg_switch::port::{Packet, PortBackend};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

/// A 64-byte frame from `src` to `dst` carrying `seq` (experimental ethertype 0x88b5).
fn frame(src: u8, dst: u8, seq: u32) -> Packet {
    let mut d = Vec::with_capacity(64);
    d.extend_from_slice(&mac(dst));
    d.extend_from_slice(&mac(src));
    d.extend_from_slice(&[0x88, 0xb5]);
    d.extend_from_slice(&seq.to_be_bytes());
    d.resize(64, 0xab);
    Packet::plain(d)
}

fn seq_of(p: &Packet) -> u32 {
    u32::from_be_bytes([p.data[14], p.data[15], p.data[16], p.data[17]])
}

/// Polls `f` until it returns Some, or panics after 5 s.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Rig {
    dp: DatapathHandle,
    of: Arc<Mutex<Ofproto>>,
    events: UnboundedReceiver<DpEvent>,
    handles: Vec<DummyHandle>,
}

/// Three dummy ports (1, 2, 3) and flows: 1 -> 2, 2 -> 1, 3 -> CONTROLLER, table-miss drop.
fn rig() -> Rig {
    let mut of = Ofproto::new(OfprotoConfig::default());
    let mut ports: Vec<(u32, Box<dyn PortBackend>)> = Vec::new();
    let mut handles = Vec::new();
    for n in 1..=3u8 {
        let (port, handle) = DummyPort::new(&format!("d{n}"), mac(n));
        let _ = of.add_port(u32::from(n), port.info(), true, clock());
        ports.push((u32::from(n), Box::new(port)));
        handles.push(handle);
    }
    for f in [
        "priority=10,in_port=1,actions=output:2",
        "priority=10,in_port=2,actions=output:1",
        "priority=10,in_port=3,actions=CONTROLLER:128",
    ] {
        let fm = parse_flow(f, FlowModCommand::Add).expect(f);
        of.tables.apply_flow_mod(&fm, clock()).expect(f);
    }
    let of = Arc::new(Mutex::new(of));
    let (tx, events) = unbounded_channel();
    let dp = datapath::spawn(ports, of.clone(), tx, clock).expect("spawn datapath");
    let mut rig = Rig {
        dp,
        of,
        events,
        handles,
    };
    // Each port's link state is reported once when it joins.
    let mut initial: Vec<(u32, bool)> = (0..3)
        .map(|_| {
            wait_for("initial link events", || match rig.events.try_recv() {
                Ok(DpEvent::PortLink { port, up }) => Some((port, up)),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => None,
            })
        })
        .collect();
    initial.sort_unstable();
    assert_eq!(initial, vec![(1, true), (2, true), (3, true)]);
    rig
}

fn counters(of: &Arc<Mutex<Ofproto>>, port: u32) -> shg_switch::ofproto::PortCounters {
    of.lock().unwrap().ports[&port].counters
}

#[test]
fn forwards_by_flow_table_in_order() {
    let r = rig();
    let (h1, h2, h3) = (&r.handles[0], &r.handles[1], &r.handles[2]);
    for seq in 0..500 {
        h1.inject(frame(1, 2, seq));
    }
    for seq in 0..7 {
        h2.inject(frame(2, 1, 1000 + seq));
    }
    let mut got2 = Vec::new();
    wait_for("500 frames on port 2", || {
        got2.extend(h2.take_sent());
        (got2.len() >= 500).then_some(())
    });
    let seqs: Vec<u32> = got2.iter().map(seq_of).collect();
    assert_eq!(
        seqs,
        (0..500).collect::<Vec<_>>(),
        "frames of one flow keep their order"
    );
    assert_eq!(got2[0], frame(1, 2, 0), "frame bytes pass unchanged");
    let got1 = wait_for("7 frames on port 1", || {
        let s = h1.take_sent();
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(
        got1.iter().map(seq_of).collect::<Vec<_>>(),
        (1000..1007).collect::<Vec<_>>()
    );
    assert!(h3.take_sent().is_empty(), "nothing floods to port 3");
    let c1 = counters(&r.of, 1);
    let c2 = counters(&r.of, 2);
    assert_eq!(c1.rx_packets, 500);
    assert_eq!(c2.tx_packets, 500);
    assert_eq!(c2.tx_bytes, 500 * 64);
    let st = r.dp.stats();
    assert_eq!(st.rx_packets, 507);
    assert_eq!(st.tx_packets, 507);
    assert!(st.rx_batches >= 507 / datapath::RX_BATCH as u64, "{st:?}");
    assert_eq!(st.tx_dropped, 0);
}

/// With the thread's copies on, the frames after the first of a flow key go out while another
/// thread holds the `Ofproto` lock (as the agent does for a FLOW_MOD or a dump page), in
/// order; their counts reach the port and flow counters when the core takes the copies back.
#[test]
fn copies_forward_while_the_core_holds_its_lock() {
    let r = rig();
    r.dp.enable_thread_copies();
    let (h1, h2) = (&r.handles[0], &r.handles[1]);
    h1.inject(frame(1, 2, 0));
    let first = wait_for("the first frame on port 2", || {
        let s = h2.take_sent();
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(first.iter().map(seq_of).collect::<Vec<_>>(), vec![0]);
    assert_eq!(r.dp.stats().copied, 0, "the first frame ran the pipeline");
    let mut got = Vec::new();
    {
        let core = r.of.lock().unwrap();
        for seq in 1..=100 {
            h1.inject(frame(1, 2, seq));
        }
        wait_for("100 frames on port 2 while the lock is held", || {
            got.extend(h2.take_sent());
            (got.len() >= 100).then_some(())
        });
        assert_eq!(core.ports[&1].counters.rx_packets, 1, "not credited yet");
    }
    assert_eq!(
        got.iter().map(seq_of).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    assert_eq!(r.dp.stats().copied, 100);
    {
        let mut core = r.of.lock().unwrap();
        core.drain_fast_path(clock());
        assert_eq!(core.ports[&1].counters.rx_packets, 101);
        assert_eq!(core.ports[&2].counters.tx_packets, 101);
        assert_eq!(core.ports[&2].counters.tx_bytes, 101 * 64);
        let flows = core.tables.flow_stats(&FlowFilter::default());
        let (_, f) = flows
            .iter()
            .find(|(_, f)| f.priority == 10 && f.packet_count > 0)
            .expect("the in_port=1 flow counted");
        assert_eq!((f.packet_count, f.byte_count), (101, 101 * 64));
    }
    // Taken back: the next frame runs the pipeline again (and is copied again).
    h1.inject(frame(1, 2, 101));
    wait_for("frame 101", || (!h2.take_sent().is_empty()).then_some(()));
    assert_eq!(r.dp.stats().copied, 100);
}

#[test]
fn packet_in_events_reach_the_channel() {
    let mut r = rig();
    r.handles[2].inject(frame(3, 9, 42));
    let ev = wait_for("packet-in", || match r.events.try_recv() {
        Ok(DpEvent::PacketIn(ev)) => Some(ev),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(_) => None,
    });
    assert_eq!(ev.reason, 1, "OFPR_ACTION");
    assert_eq!(ev.total_len, 64);
    assert_eq!(ev.data, frame(3, 9, 42).data);
    assert_eq!(r.dp.stats().packet_ins, 1);
    // The frame went to the controller only: nothing left through a port.
    assert!(r.handles.iter().all(|h| h.take_sent().is_empty()));
}

#[test]
fn transmit_sends_in_order_and_counts_unknown_ports() {
    let r = rig();
    let outs: Vec<Output> = (0..10)
        .map(|s| Output::Port {
            port: 3,
            queue: None,
            pkt: frame(9, 3, s),
        })
        .chain(std::iter::once(Output::Port {
            port: 77,
            queue: None,
            pkt: frame(9, 3, 99),
        }))
        .collect();
    r.dp.transmit(outs);
    let sent = wait_for("transmitted frames", || {
        let s = r.handles[2].take_sent();
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(
        sent.iter().map(seq_of).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    wait_for("no_such_port counted", || {
        (r.dp.stats().no_such_port == 1).then_some(())
    });
}

#[test]
fn send_failures_become_tx_dropped() {
    let r = rig();
    r.handles[1].set_drop_tx(true);
    for seq in 0..20 {
        r.handles[0].inject(frame(1, 2, seq));
    }
    wait_for("drops counted in port stats", || {
        let c = counters(&r.of, 2);
        (c.tx_dropped == 20).then_some(())
    });
    let c = counters(&r.of, 2);
    assert_eq!(
        c.tx_packets, 0,
        "frames the backend refused are not counted as sent"
    );
    assert_eq!(c.tx_bytes, 0);
    assert_eq!(r.dp.stats().tx_dropped, 20);
    r.handles[1].set_drop_tx(false);
    r.handles[0].inject(frame(1, 2, 99));
    wait_for("recovers", || {
        (r.handles[1].take_sent().len() == 1).then_some(())
    });
}

#[test]
fn link_changes_become_events() {
    let mut r = rig();
    r.handles[1].set_link(false);
    let ev = wait_for("link down", || r.events.try_recv().ok());
    assert_eq!(ev, DpEvent::PortLink { port: 2, up: false });
    r.handles[1].set_link(true);
    let ev = wait_for("link up", || r.events.try_recv().ok());
    assert_eq!(ev, DpEvent::PortLink { port: 2, up: true });
    // Setting the same state again is not an event.
    r.handles[1].set_link(true);
    std::thread::sleep(Duration::from_millis(50));
    assert!(r.events.try_recv().is_err());
}

#[test]
fn ports_can_be_added_and_removed() {
    let mut r = rig();
    let (p4, h4) = DummyPort::new("d4", mac(4));
    {
        let mut of = r.of.lock().unwrap();
        let _ = of.add_port(4, p4.info(), true, clock());
        let fm = parse_flow(
            "priority=20,in_port=4,actions=output:1",
            FlowModCommand::Add,
        )
        .unwrap();
        of.tables.apply_flow_mod(&fm, clock()).unwrap();
    }
    r.dp.add_port(4, Box::new(p4));
    let ev = wait_for("port 4 joined", || r.events.try_recv().ok());
    assert_eq!(ev, DpEvent::PortLink { port: 4, up: true });
    h4.inject(frame(4, 1, 5));
    wait_for("4 -> 1", || {
        (r.handles[0].take_sent().len() == 1).then_some(())
    });

    r.dp.remove_port(2);
    r.handles[0].inject(frame(1, 2, 6));
    wait_for("output to a removed port is counted", || {
        (r.dp.stats().no_such_port == 1).then_some(())
    });
    assert!(r.handles[1].take_sent().is_empty());
    // The removed port's frames are no longer read.
    r.handles[1].inject(frame(2, 1, 7));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(r.handles[1].pending_rx(), 1);
}

/// utime + stime (clock ticks) of this process's thread named `name`.
fn thread_cpu_ticks(name: &str) -> Option<u64> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // pid (comm) state ... : comm may contain spaces; fields after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != name {
            continue;
        }
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // rest[0] is field 3 (state); utime is field 14, stime field 15.
        let utime: u64 = rest.get(11)?.parse().ok()?;
        let stime: u64 = rest.get(12)?.parse().ok()?;
        return Some(utime + stime);
    }
    None
}

#[test]
fn idle_datapath_uses_no_cpu() {
    let r = rig();
    for seq in 0..2000 {
        r.handles[0].inject(frame(1, 2, seq));
    }
    wait_for("traffic done", || {
        (r.dp.stats().tx_packets >= 2000).then_some(())
    });
    std::thread::sleep(Duration::from_millis(20));
    let name = r.dp.thread_name().to_owned();
    let wakeups_before = r.dp.stats().wakeups;
    let cpu_before = thread_cpu_ticks(&name).expect("datapath thread in /proc/self/task");
    std::thread::sleep(Duration::from_millis(300));
    let wakeups_after = r.dp.stats().wakeups;
    let cpu_after = thread_cpu_ticks(&name).expect("datapath thread in /proc/self/task");
    assert_eq!(
        wakeups_before, wakeups_after,
        "the idle datapath thread woke up"
    );
    // A spinning thread would accumulate ~30 ticks (10 ms each) in 300 ms.
    assert!(
        cpu_after.saturating_sub(cpu_before) <= 1,
        "datapath thread used CPU while idle: {cpu_before} -> {cpu_after} ticks"
    );
    // Shutdown joins the thread: it is gone from /proc.
    r.dp.shutdown();
    assert_eq!(thread_cpu_ticks(&name), None);
}
