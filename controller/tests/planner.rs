//! The planner against a fake switch: plans are applied to shg-flows' real tables, then real
//! frames (built by hand, keys extracted by `shg_flows::key`) are looked up to check what the
//! pipeline does with them: isolation, anti-spoofing, scoped broadcast, queue and meter
//! selection; and that re-planning is empty and changes stay minimal.

use shg_controller::config::parse;
use shg_controller::fake_switch::FakeSwitch;
use shg_controller::model::Policy;
use shg_controller::planner::pipeline::{cookie, meter_down, meter_up, table, QueueSetting};
use shg_controller::planner::{plan, Change, Observed, Plan};
use shg_flows::action::{port as ofport, Action};
use shg_flows::field::FlowKey;
use shg_flows::key::extract;
use shg_flows::mods::{FlowModCommand, MeterBand, MeterModCommand};
use shg_flows::table::PipelineResult;
use shg_flows::text::parse_flow;
use std::collections::BTreeMap;

const UPLINK: u32 = 1;
const LAN: u32 = 2;
const A: u32 = 3;
const B: u32 = 4;
const C: u32 = 5;
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
const MAC_C: [u8; 6] = [2, 0, 0, 0, 0, 0x0c];
const IP_A: [u8; 4] = [10, 0, 0, 10];
const IP_B: [u8; 4] = [10, 0, 0, 11];
const WAN_MAC: [u8; 6] = [2, 0xee, 0, 0, 0, 1];
const LAN_MAC: [u8; 6] = [2, 0x1a, 0, 0, 0, 1];
const BCAST: [u8; 6] = [0xff; 6];
const SSDP_MAC: [u8; 6] = [1, 0, 0x5e, 0x7f, 0xff, 0xfa];
const SSDP_IP: [u8; 4] = [239, 255, 255, 250];

fn config(a_reach: &str, extra: &str) -> String {
    format!(
        r#"
[gateway]
datapath_id = "1"
listen = "ptcp:6653"
lan = [2]
{extra}
[gateway.uplink]
port = 1
up_rate = "20mbit"
down_rate = "100mbit"

[services.a]
port = "veth-a"
mac = "02:00:00:00:00:0a"
ipv4 = ["10.0.0.10"]
ipv6 = ["2001:db8::a"]
class = "interactive"
queue = 7
min_rate = "6mbit"
max_rate = "10mbit"
down_max_rate = "50mbit"
reach = [{a_reach}]

[services.b]
port = 4
mac = "02:00:00:00:00:0b"
ipv4 = ["10.0.0.11"]
class = "bulk"
queue = 3
min_rate = "2mbit"
reach = ["wan", "lan"]

[services.c]
port = 5
mac = "02:00:00:00:00:0c"
ipv4 = ["10.0.0.12"]
class = "best-effort"
queue = 9
max_rate = "4mbit"
reach = ["wan"]
"#
    )
}

fn policy(text: &str) -> Policy {
    parse(text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn ports() -> BTreeMap<String, u32> {
    [("veth-a".to_string(), A)].into_iter().collect()
}

fn fresh_switch() -> FakeSwitch {
    FakeSwitch::new(8, ports())
}

/// Plans `p` against the switch, applies it, and checks that a re-plan is empty.
fn converge(sw: &mut FakeSwitch, old: Option<&Policy>, p: &Policy, now: u64) -> Plan {
    let pl = plan(old, p, &sw.observe(now), now).expect("admitted");
    sw.apply(&pl, now)
        .unwrap_or_else(|(i, e)| panic!("change {i} ({}) refused: {e:?}", pl.changes[i]));
    let again = plan(Some(p), p, &sw.observe(now + 1), now + 1).unwrap();
    assert!(
        again.is_empty(),
        "second plan not empty:\n{}",
        again
            .changes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    pl
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

fn udp4(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 28 + 4, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&40000u16.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.extend_from_slice(&[0, 12, 0, 0, b'p', b'i', b'n', b'g']);
    eth(dst_mac, src_mac, 0x0800, &ip)
}

fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa);
    eth(BCAST, sha, 0x0806, &a)
}

fn run(sw: &mut FakeSwitch, frame: &[u8], in_port: u32) -> PipelineResult {
    let mut key = FlowKey::default();
    extract(frame, in_port, &mut key);
    let len = u64::try_from(frame.len()).unwrap();
    PipelineResult::clone(&sw.tables.lookup(&key, len, 5_000_000_000))
}

fn outputs(r: &PipelineResult) -> Vec<u32> {
    r.actions
        .iter()
        .filter_map(|a| match a {
            Action::Output { port, .. } => Some(*port),
            _ => None,
        })
        .collect()
}

/// The role of the flow that decided in the last table visited.
fn last_role(r: &PipelineResult) -> cookie::Role {
    let hit = r.trace.last().and_then(|s| s.hit.as_ref()).expect("a hit");
    cookie::parse(hit.cookie).expect("a planner cookie").0
}

fn setup(a_reach: &str) -> (FakeSwitch, Policy) {
    let p = policy(&config(a_reach, ""));
    let mut sw = fresh_switch();
    converge(&mut sw, None, &p, 1_000);
    (sw, p)
}

#[test]
fn service_to_wan_is_queued_and_metered() {
    let (mut sw, _) = setup(r#""wan""#);
    let r = run(&mut sw, &udp4(MAC_A, WAN_MAC, IP_A, [8, 8, 8, 8], 53), A);
    assert_eq!(
        r.actions,
        vec![
            Action::SetQueue(7),
            Action::Output {
                port: UPLINK,
                max_len: 0
            }
        ]
    );
    assert_eq!(r.meters, vec![meter_up(7)]);
    let m = sw.meters.get(meter_up(7)).expect("A's meter");
    assert_eq!(
        m.bands().cloned().collect::<Vec<_>>(),
        vec![MeterBand::Drop {
            rate: 10_000,
            burst_size: 1_000
        }]
    );
    // B has no cap: no meter, its own queue. B also reaches the LAN, so a unicast to an
    // unknown MAC goes to both (the uplink last, behind B's queue).
    let r = run(&mut sw, &udp4(MAC_B, WAN_MAC, IP_B, [8, 8, 8, 8], 53), B);
    assert_eq!(r.meters, Vec::<u32>::new());
    assert_eq!(
        r.actions,
        vec![
            Action::Output {
                port: LAN,
                max_len: 0
            },
            Action::SetQueue(3),
            Action::Output {
                port: UPLINK,
                max_len: 0
            }
        ]
    );
    // The uplink's queues: default 0 (lowest priority) and one per service.
    let q = &sw.queues[&UPLINK];
    assert_eq!(q.rate, Some(20_000_000));
    let ids: Vec<(u32, u64, u8)> = q
        .queues
        .iter()
        .map(|q| (q.queue_id, q.min_rate, q.priority))
        .collect();
    assert_eq!(
        ids,
        vec![(0, 0, 7), (3, 2_000_000, 4), (7, 6_000_000, 0), (9, 0, 6)]
    );
    // LAN to an unknown MAC: the other non-service ports (one bridge), the uplink through
    // the default queue, named explicitly.
    let r = run(
        &mut sw,
        &udp4(LAN_MAC, WAN_MAC, [10, 0, 0, 99], [8, 8, 8, 8], 53),
        LAN,
    );
    assert_eq!(
        r.actions,
        vec![
            Action::Output {
                port: ofport::LOCAL,
                max_len: 0
            },
            Action::SetQueue(0),
            Action::Output {
                port: UPLINK,
                max_len: 0
            }
        ]
    );
}

#[test]
fn service_to_service_denied_unless_allowed_both_ways() {
    let (mut sw, _) = setup(r#""wan""#);
    let r = run(&mut sw, &udp4(MAC_A, MAC_B, IP_A, IP_B, 80), A);
    assert!(outputs(&r).is_empty(), "{:?}", r.actions);
    assert_eq!(last_role(&r), cookie::Role::Deny);
    let r = run(&mut sw, &udp4(MAC_B, MAC_A, IP_B, IP_A, 80), B);
    assert!(outputs(&r).is_empty());
    // A not reaching lan: LAN -> A denied too.
    let r = run(
        &mut sw,
        &udp4(LAN_MAC, MAC_A, [10, 0, 0, 99], IP_A, 80),
        LAN,
    );
    assert!(outputs(&r).is_empty());

    let (mut sw, _) = setup(r#""wan", "b""#);
    let r = run(&mut sw, &udp4(MAC_A, MAC_B, IP_A, IP_B, 80), A);
    assert_eq!(outputs(&r), vec![B]);
    assert_eq!(
        r.meters,
        vec![meter_up(7)],
        "A's cap applies to all its traffic"
    );
    let r = run(&mut sw, &udp4(MAC_B, MAC_A, IP_B, IP_A, 80), B);
    assert_eq!(outputs(&r), vec![A], "allowed the other way too");
    // C is still isolated from both.
    let r = run(
        &mut sw,
        &udp4([2, 0, 0, 0, 0, 0x0c], MAC_A, [10, 0, 0, 12], IP_A, 80),
        C,
    );
    assert!(outputs(&r).is_empty());
}

#[test]
fn spoofed_sources_hit_counted_drop_flows() {
    let (mut sw, _) = setup(r#""wan""#);
    // Foreign source MAC from A's port: A's port drop flow.
    let r = run(
        &mut sw,
        &udp4([2, 9, 9, 9, 9, 9], WAN_MAC, IP_A, [8, 8, 8, 8], 53),
        A,
    );
    assert!(r.actions.is_empty());
    assert_eq!(last_role(&r), cookie::Role::SpoofDrop);
    assert_eq!(r.trace.len(), 1, "dropped at ingress");
    // A's MAC with B's IP: the MAC guard.
    let r = run(&mut sw, &udp4(MAC_A, WAN_MAC, IP_B, [8, 8, 8, 8], 53), A);
    assert!(r.actions.is_empty());
    assert_eq!(last_role(&r), cookie::Role::MacGuard);
    // ARP claiming B's address from A.
    let r = run(&mut sw, &arp_request(MAC_A, IP_B, [10, 0, 0, 1]), A);
    assert!(r.actions.is_empty());
    assert_eq!(last_role(&r), cookie::Role::MacGuard);
    // A's MAC arriving on the uplink.
    let r = run(&mut sw, &udp4(MAC_A, MAC_B, [1, 2, 3, 4], IP_B, 53), UPLINK);
    assert_eq!(last_role(&r), cookie::Role::MacGuard);
    // The drops are visible in flow stats.
    let obs = sw.observe(6_000_000_000);
    let count = |role| {
        obs.flows
            .iter()
            .filter(|f| cookie::parse(f.cookie) == Some((role, 7)))
            .map(|f| f.packet_count)
            .sum::<u64>()
    };
    assert_eq!(count(cookie::Role::SpoofDrop), 1);
    assert_eq!(count(cookie::Role::MacGuard), 3);
}

#[test]
fn broadcast_and_multicast_are_scoped() {
    let (mut sw, _) = setup(r#""wan", "gateway""#);
    let arp = arp_request(MAC_A, IP_A, [10, 0, 0, 1]);
    let r = run(&mut sw, &arp, A);
    assert_eq!(outputs(&r), vec![ofport::LOCAL, UPLINK]);
    assert_eq!(
        r.actions[1],
        Action::SetQueue(7),
        "A's ARP goes to A's queue"
    );
    // B reaches wan and lan: its ARP goes there, never to A or C.
    let r = run(&mut sw, &arp_request(MAC_B, IP_B, [10, 0, 0, 1]), B);
    assert_eq!(outputs(&r), vec![LAN, UPLINK]);
    // SSDP from B: the LAN (B reaches lan), never the uplink (SSDP is a home-network affair).
    let r = run(&mut sw, &udp4(MAC_B, SSDP_MAC, IP_B, SSDP_IP, 1900), B);
    assert_eq!(outputs(&r), vec![LAN]);
    // SSDP from A (wan, gateway): LOCAL only; from C (wan only): no one, counted.
    let r = run(&mut sw, &udp4(MAC_A, SSDP_MAC, IP_A, SSDP_IP, 1900), A);
    assert_eq!(outputs(&r), vec![ofport::LOCAL]);
    let r = run(
        &mut sw,
        &udp4(MAC_C, SSDP_MAC, [10, 0, 0, 12], SSDP_IP, 1900),
        C,
    );
    assert!(outputs(&r).is_empty());
    assert_eq!(last_role(&r), cookie::Role::Flood);
    // Other multicast from B keeps B's scope.
    let r = run(&mut sw, &udp4(MAC_B, SSDP_MAC, IP_B, SSDP_IP, 5353), B);
    assert_eq!(outputs(&r), vec![LAN, UPLINK]);
    // SSDP from the LAN: other non-service ports and services reaching lan (B), not A or C.
    let r = run(
        &mut sw,
        &udp4(LAN_MAC, SSDP_MAC, [10, 0, 0, 99], SSDP_IP, 1900),
        LAN,
    );
    assert_eq!(outputs(&r), vec![B, ofport::LOCAL, UPLINK]);
    // ARP from the uplink reaches services reaching wan: all three.
    let r = run(&mut sw, &arp_request(WAN_MAC, [10, 0, 0, 1], IP_A), UPLINK);
    assert_eq!(outputs(&r), vec![LAN, A, B, C, ofport::LOCAL]);

    // Allowing A <-> B lets their broadcasts meet.
    let (mut sw, _) = setup(r#""wan", "b""#);
    let r = run(&mut sw, &arp_request(MAC_A, IP_A, IP_B), A);
    assert_eq!(outputs(&r), vec![B, UPLINK]);
    let r = run(&mut sw, &arp_request(MAC_B, IP_B, IP_A), B);
    assert_eq!(outputs(&r), vec![LAN, A, UPLINK]);
}

#[test]
fn uplink_and_lan_reach_a_service_by_mac() {
    let (mut sw, _) = setup(r#""wan", "lan""#);
    let r = run(
        &mut sw,
        &udp4(WAN_MAC, MAC_A, [8, 8, 8, 8], IP_A, 5000),
        UPLINK,
    );
    assert_eq!(outputs(&r), vec![A]);
    assert_eq!(r.meters, vec![meter_down(7)], "A's downstream cap");
    let r = run(
        &mut sw,
        &udp4(LAN_MAC, MAC_A, [10, 0, 0, 99], IP_A, 5000),
        LAN,
    );
    assert_eq!(outputs(&r), vec![A]);
    assert!(r.meters.is_empty());
    // C does not reach lan.
    let r = run(
        &mut sw,
        &udp4(LAN_MAC, MAC_C, [10, 0, 0, 99], [10, 0, 0, 12], 5000),
        LAN,
    );
    assert!(outputs(&r).is_empty());
}

#[test]
fn max_rate_change_touches_only_the_meter() {
    let (mut sw, p) = setup(r#""wan""#);
    let p2 =
        policy(&config(r#""wan""#, "").replace("max_rate = \"10mbit\"", "max_rate = \"8mbit\""));
    let pl = converge(&mut sw, Some(&p), &p2, 2_000);
    assert_eq!(pl.services, vec!["~a".to_string()]);
    assert_eq!(pl.changes.len(), 1, "{:?}", pl.changes);
    let Change::Meter(mm) = &pl.changes[0] else {
        panic!("{:?}", pl.changes)
    };
    assert_eq!(
        (mm.command, mm.meter_id, mm.bands[0].rate()),
        (MeterModCommand::Modify, meter_up(7), 8_000)
    );
}

#[test]
fn user_priority_change_touches_only_the_queue() {
    let text = config(r#""wan""#, "");
    let (mut sw, p) = setup(r#""wan""#);
    let p2 = policy(&format!(
        "{}\n[services.b.user]\npriority = 5\n",
        text.replace(
            "queue = 3\n",
            "queue = 3\npriority = 4\npriority_bounds = [3, 5]\n"
        )
    ));
    let pl = converge(&mut sw, Some(&p), &p2, 2_000);
    assert_eq!(
        pl.changes,
        vec![Change::SetQueue {
            port: UPLINK,
            queue: QueueSetting {
                queue_id: 3,
                min_rate: 2_000_000,
                max_rate: None,
                priority: 5
            }
        }]
    );
}

#[test]
fn removing_a_service_deletes_only_what_involves_it() {
    let (mut sw, p) = setup(r#""wan""#);
    let before = sw.observe(1_500);
    let text = config(r#""wan""#, "");
    let cut = text.find("[services.c]").unwrap();
    let p2 = policy(&text[..cut]);
    let pl = converge(&mut sw, Some(&p), &p2, 2_000);
    assert_eq!(pl.services, vec!["-c".to_string()]);
    let mut deleted = 0;
    for c in &pl.changes {
        match c {
            Change::Flow(fm) if fm.command == FlowModCommand::DeleteStrict => {
                deleted += 1;
                let (_, owner) = cookie::parse(fm.cookie).expect("ours");
                let s = format!("{:?}", fm.r#match);
                assert!(
                    owner == 9 || s.contains(&format!("\"in_port\": \"{C:08x}\"")),
                    "deleted a flow not involving c: {c}"
                );
            }
            Change::Flow(fm) => {
                // Only broadcast scopes that listed C's port may change.
                assert_eq!(fm.command, FlowModCommand::ModifyStrict, "{c}");
                assert_eq!(cookie::parse(fm.cookie).unwrap().0, cookie::Role::Flood);
                let old = before
                    .flows
                    .iter()
                    .find(|f| f.table_id == fm.table_id && f.r#match == fm.r#match)
                    .unwrap();
                let has_c =
                    |i: &[shg_flows::action::Instruction]| format!("{i:?}").contains("port: 5,");
                assert!(has_c(&old.instructions) && !has_c(&fm.instructions), "{c}");
            }
            Change::Meter(mm) => {
                assert_eq!(
                    (mm.command, mm.meter_id),
                    (MeterModCommand::Delete, meter_up(9))
                )
            }
            Change::DeleteQueue { port, queue_id } => assert_eq!((*port, *queue_id), (UPLINK, 9)),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(deleted >= 5, "{deleted}");
    // A still works.
    let r = run(&mut sw, &udp4(MAC_A, WAN_MAC, IP_A, [8, 8, 8, 8], 53), A);
    assert_eq!(outputs(&r), vec![UPLINK]);
    // C's port now drops everything at ingress (unknown port).
    let r = run(
        &mut sw,
        &udp4(MAC_C, WAN_MAC, [10, 0, 0, 12], [8, 8, 8, 8], 53),
        C,
    );
    assert!(r.actions.is_empty());
    assert_eq!(last_role(&r), cookie::Role::Miss);
}

fn foreign_flow(text: &str) -> Change {
    Change::Flow(parse_flow(text, FlowModCommand::Add).unwrap())
}

#[test]
fn foreign_flows_are_reported_and_left_alone() {
    let (mut sw, p) = setup(r#""wan""#);
    for f in [
        "cookie=0x1234,table=0,priority=500,in_port=2,actions=drop",
        "cookie=0x99,table=5,priority=1,actions=output:2",
    ] {
        sw.apply_change(&foreign_flow(f), 1_200).unwrap();
    }
    let pl = plan(Some(&p), &p, &sw.observe(1_300), 1_300).unwrap();
    assert!(pl.is_empty(), "{:?}", pl.changes);
    assert_eq!(
        pl.foreign,
        vec![
            "cookie=0x1234, table=0, priority=500,in_port=2".to_string(),
            "cookie=0x99, table=5, priority=1".to_string()
        ]
    );

    // With foreign_flows = "delete" they go, exactly those two.
    let p2 = policy(&config(r#""wan""#, "foreign_flows = \"delete\""));
    let pl = converge(&mut sw, Some(&p), &p2, 1_400);
    let cookies: Vec<(FlowModCommand, u64)> =
        pl.flow_mods().map(|f| (f.command, f.cookie)).collect();
    assert_eq!(
        cookies,
        vec![
            (FlowModCommand::DeleteStrict, 0x1234),
            (FlowModCommand::DeleteStrict, 0x99)
        ]
    );
}

#[test]
fn a_foreign_flow_in_a_planner_slot_is_replaced() {
    let (mut sw, p) = setup(r#""wan""#);
    // Someone rewrote the table-2 miss flow to flood.
    sw.apply_change(
        &foreign_flow("cookie=0x5,table=2,priority=0,actions=output:2"),
        1_200,
    )
    .unwrap();
    let pl = converge(&mut sw, Some(&p), &p, 1_300);
    assert_eq!(pl.flow_mods().count(), 1);
    let fm = pl.flow_mods().next().unwrap();
    assert_eq!(
        (fm.command, fm.table_id),
        (FlowModCommand::Add, table::FORWARD)
    );
    assert!(pl.foreign[0].contains("replaced"), "{:?}", pl.foreign);
}

#[test]
fn stale_planner_flows_are_deleted_and_changed_ones_modified() {
    let (mut sw, p) = setup(r#""wan""#);
    // A leftover from an older plan (planner cookie, no longer wanted) and a tampered flow.
    let stale = format!(
        "cookie=0x{:x},table=0,priority=300,in_port=9,actions=goto_table:1",
        cookie::make(cookie::Role::SpoofAllow, 42)
    );
    sw.apply_change(&foreign_flow(&stale), 1_200).unwrap();
    let tampered = format!(
        "cookie=0x{:x},table=0,priority=0,actions=goto_table:1",
        cookie::make(cookie::Role::Miss, 0)
    );
    sw.apply_change(&foreign_flow(&tampered), 1_200).unwrap();
    let pl = converge(&mut sw, Some(&p), &p, 1_300);
    let cmds: Vec<FlowModCommand> = pl.flow_mods().map(|f| f.command).collect();
    assert_eq!(
        cmds,
        vec![FlowModCommand::DeleteStrict, FlowModCommand::ModifyStrict]
    );
    assert!(pl.foreign.is_empty());
}

#[test]
fn ports_by_name_resolve_and_unknown_names_are_left_out() {
    let p = policy(&config(r#""wan""#, ""));
    let mut sw = FakeSwitch::new(8, BTreeMap::new());
    let pl = converge(&mut sw, None, &p, 1_000);
    assert_eq!(
        pl.notes,
        vec!["services.a.port: the switch has no port \"veth-a\"; service left out".to_string()]
    );
    assert!(!sw.queues[&UPLINK].queues.iter().any(|q| q.queue_id == 7));
    // The port appears: only A's flows, meters and queue are added.
    sw.ports = ports();
    let pl = converge(&mut sw, Some(&p), &p, 2_000);
    for c in &pl.changes {
        match c {
            Change::Flow(fm) => {
                let (role, owner) = cookie::parse(fm.cookie).unwrap();
                assert!(
                    owner == 7 || owner == A || role == cookie::Role::Flood,
                    "{c}"
                );
            }
            Change::Meter(mm) => {
                assert!(mm.meter_id == meter_up(7) || mm.meter_id == meter_down(7))
            }
            Change::SetQueue { queue, .. } => assert_eq!(queue.queue_id, 7),
            other => panic!("{other}"),
        }
    }
}

#[test]
fn plan_order_is_safe_on_a_fresh_switch() {
    let p = policy(&config(r#""wan""#, ""));
    let sw = fresh_switch();
    let pl = plan(None, &p, &sw.observe(0), 0).unwrap();
    // Queues and meters first; flows table 2 before 1 before 0, each high priority first.
    let first_flow = pl
        .changes
        .iter()
        .position(|c| matches!(c, Change::Flow(_)))
        .unwrap();
    assert!(pl.changes[..first_flow]
        .iter()
        .all(|c| !matches!(c, Change::Flow(_))));
    let order: Vec<(std::cmp::Reverse<u8>, std::cmp::Reverse<u16>)> = pl
        .flow_mods()
        .map(|f| (std::cmp::Reverse(f.table_id), std::cmp::Reverse(f.priority)))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    // Empty observed state, but from a fresh switch: no deletes at all.
    assert!(pl.flow_mods().all(|f| f.command == FlowModCommand::Add));
}

#[test]
fn rejected_policy_gets_no_plan() {
    let p =
        policy(&config(r#""wan""#, "").replace("min_rate = \"2mbit\"", "min_rate = \"13mbit\""));
    let err = plan(None, &p, &Observed::default(), 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "uplink up: guarantees 19mbit > 18mbit (20mbit × 0.9): short by 1mbit; held by b 13mbit, a 6mbit"
    );
}

/// Every planned flow, printed in ovs-ofctl syntax, is accepted by Open vSwitch's own parser
/// as OpenFlow 1.3 (no experimenter actions, nothing OVS would refuse).
#[test]
fn open_vswitch_accepts_every_planned_flow() {
    use shg_flows::text::{format_instructions, format_match};
    use std::process::Command;
    if !Command::new("ovs-ofctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipping: ovs-ofctl not installed");
        return;
    }
    let p = policy(&config(r#""wan", "lan", "gateway", "b""#, ""));
    let pl = plan(None, &p, &fresh_switch().observe(0), 0).unwrap();
    let mut n = 0;
    for fm in pl.flow_mods() {
        let m = format_match(&fm.r#match);
        let acts = format_instructions(&fm.instructions);
        let acts = if acts.is_empty() {
            "drop".to_string()
        } else {
            acts
        };
        let sep = if m.is_empty() { "" } else { "," };
        let text = format!(
            "table={},priority={},cookie=0x{:x}{sep}{m},actions={acts}",
            fm.table_id, fm.priority, fm.cookie
        );
        let out = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13", "parse-flow", &text])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ovs-ofctl refused {text}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // And our parser reads the same text back to the same flow.
        let back = parse_flow(&text, FlowModCommand::Add).unwrap();
        assert_eq!(
            (back.r#match, &back.instructions),
            (fm.r#match, &fm.instructions),
            "{text}"
        );
        n += 1;
    }
    assert!(n > 30, "{n}");
}
