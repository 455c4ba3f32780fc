//! The datapath's per-packet path allocates nothing in steady state: frames in pooled buffers
//! through `process_packet` (megaflow cache hits, NORMAL learning, set_field, set_queue,
//! meters, select groups, a flood) and back to the pool, counted by a global allocator.

use shg_flows::mods::{FlowModCommand, GroupModCommand, MeterModCommand};
use shg_flows::text;
use shg_switch::datapath::execute::process_packet;
use shg_switch::datapath::Output;
use shg_switch::ofproto::{FailMode, Ofproto, OfprotoConfig};
use shg_switch::port::{pool, Packet, PortInfo};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

// --- allocation counting (per thread, so parallel tests do not interfere) ---

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

#[allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only forwards to System.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

// --- a four-port switch and frames ---

fn switch(flows: &[&str]) -> Ofproto {
    let mut of = Ofproto::new(OfprotoConfig {
        fail_mode: FailMode::Secure,
        ..OfprotoConfig::default()
    });
    for n in 1..=4u32 {
        let info = PortInfo {
            name: format!("p{n}"),
            hw_addr: [2, 0, 0, 0, 1, u8::try_from(n).unwrap()],
            curr_speed_kbps: 1_000_000,
            max_speed_kbps: 1_000_000,
            ifindex: None,
        };
        of.add_port(n, info, true, 0);
    }
    for s in flows {
        if let Some(g) = s.strip_prefix("group:") {
            let gm = text::parse_group(g, GroupModCommand::Add).unwrap();
            of.groups.apply_group_mod(&gm, 0).unwrap();
        } else if let Some(m) = s.strip_prefix("meter:") {
            let mm = text::parse_meter(m, MeterModCommand::Add).unwrap();
            of.meters.apply_meter_mod(&mm, 0).unwrap();
        } else {
            let fm = text::parse_flow(s, FlowModCommand::Add).unwrap();
            of.tables.apply_flow_mod(&fm, 0).unwrap();
        }
    }
    of
}

/// An Ethernet/IPv4/UDP frame from host `src` to host `dst` (MACs and addresses by number).
fn udp(src: u8, dst: u8, sport: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&[2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src, 0x08, 0x00]);
    let mut ip = [
        0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, src, 198, 18, 0, dst,
    ];
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let sum = !u16::try_from(sum).unwrap();
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&[0x30, 0x39, 0, 26, 0, 0]);
    f.extend_from_slice(&[0xab; 18]);
    f
}

/// Sends `frames` (in_port, bytes) through `of` `rounds` times, as the datapath loop does:
/// each frame copied into a pooled buffer, the outputs' buffers given back to the pool.
/// Returns the allocations `process_packet` and the recycling made after the first round (the
/// warm-up), and the outputs of the last round.
fn run(of: &mut Ofproto, frames: &[(u32, Vec<u8>)], rounds: usize) -> (usize, Vec<String>) {
    let mut out: Vec<Output> = Vec::with_capacity(64);
    let mut last = Vec::new();
    let mut counted = 0;
    for round in 0..rounds {
        let now = 1_000_000 + u64::try_from(round).unwrap() * 1_000;
        for (in_port, bytes) in frames {
            let mut data = pool::take();
            data.extend_from_slice(bytes);
            let before = allocs();
            process_packet(of, *in_port, Packet::plain(data), now, &mut out);
            let during = allocs() - before;
            if round + 1 == rounds {
                last.extend(out.iter().map(|o| match o {
                    Output::Port { port, queue, .. } => format!("port {port} queue {queue:?}"),
                    Output::Controller(_) => "controller".to_string(),
                }));
            }
            let before = allocs();
            for o in out.drain(..) {
                if let Output::Port { pkt, .. } = o {
                    pkt.recycle();
                }
            }
            if round > 0 {
                counted += during + (allocs() - before);
            }
        }
    }
    (counted, last)
}

fn assert_no_alloc(flows: &[&str], frames: &[(u32, Vec<u8>)], expect: &[&str]) {
    let mut of = switch(flows);
    let (n, outputs) = run(&mut of, frames, 50);
    let last = flows.last().copied().unwrap_or_default();
    assert_eq!(outputs, expect, "{} flows, the last {last}", flows.len());
    assert_eq!(
        n,
        0,
        "{n} allocations in 49 rounds of {} frames ({} flows, the last {last})",
        frames.len(),
        flows.len()
    );
}

#[test]
fn one_output_flow() {
    assert_no_alloc(
        &["in_port=1,actions=output:2"],
        &[(1, udp(1, 2, 1000)), (1, udp(1, 2, 1001))],
        &["port 2 queue None", "port 2 queue None"],
    );
}

#[test]
fn normal_learning_both_ways() {
    assert_no_alloc(
        &["actions=NORMAL"],
        &[(1, udp(1, 2, 1000)), (2, udp(2, 1, 1000))],
        &["port 2 queue None", "port 1 queue None"],
    );
}

#[test]
fn many_flows_rewrites_queue_and_meter() {
    let mut flows: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                "priority={},udp,nw_dst=198.19.{}.{},tp_dst={},actions=drop",
                100 + i % 50,
                i / 256,
                i % 256,
                1000 + i % 7
            )
        })
        .collect();
    flows.push("meter:meter=1,kbps,band=type=drop,rate=1000000".to_string());
    flows.push(
        "priority=1,udp,actions=meter:1,set_field:198.18.0.9->ip_dst,dec_ttl,set_queue:1,output:2"
            .to_string(),
    );
    let flows: Vec<&str> = flows.iter().map(String::as_str).collect();
    assert_no_alloc(
        &flows,
        &[(1, udp(1, 2, 1000)), (3, udp(3, 2, 2000))],
        &["port 2 queue Some(1)", "port 2 queue Some(1)"],
    );
}

#[test]
fn select_group() {
    assert_no_alloc(
        &[
            "group:group_id=7,type=select,bucket=output:3,bucket=output:4",
            "in_port=1,actions=group:7",
        ],
        &[(1, udp(1, 2, 1000))],
        &["port 3 queue None"],
    );
}

#[test]
fn flood() {
    assert_no_alloc(
        &["in_port=2,actions=FLOOD"],
        &[(2, udp(2, 9, 1000))],
        &[
            "port 1 queue None",
            "port 3 queue None",
            "port 4 queue None",
        ],
    );
}

#[test]
fn vlan_push_then_pop_in_a_second_table() {
    assert_no_alloc(
        &[
            "table=0,in_port=1,actions=push_vlan:0x8100,set_field:4196->vlan_vid,goto_table:1",
            "table=1,dl_vlan=100,actions=pop_vlan,output:2,output:3",
        ],
        &[(1, udp(1, 2, 1000)), (1, udp(1, 2, 1001))],
        &[
            "port 2 queue None",
            "port 3 queue None",
            "port 2 queue None",
            "port 3 queue None",
        ],
    );
}
