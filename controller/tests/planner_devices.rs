//! Device reach against a fake switch: `device:TYPE` and `device:uuid:...` in a service's
//! reach, resolved against the devices discovery reports ([`KnownDevice`]), planned, applied to
//! shg-flows' real tables, and checked with real frames (IPv4 ping, ARP, SSDP NOTIFY, M-SEARCH
//! and its unicast answer); devices appearing, moving and leaving change only their own flows.

use shg_controller::config::parse;
use shg_controller::fake_switch::FakeSwitch;
use shg_controller::model::Policy;
use shg_controller::planner::pipeline::{cookie, device_type_name};
use shg_controller::planner::{plan, Change, KnownDevice, Plan};
use shg_flows::action::{port as ofport, Action};
use shg_flows::field::FlowKey;
use shg_flows::key::extract;
use shg_flows::mods::FlowModCommand;
use shg_flows::table::PipelineResult;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

const UPLINK: u32 = 1;
const LAN: u32 = 2;
const LAN2: u32 = 6;
/// `media`: wan + device:MediaRenderer.
const M: u32 = 3;
/// `other`: wan only.
const O: u32 = 4;
/// `lanny`: lan.
const L: u32 = 5;
/// `pinned`: one renderer by UDN.
const P: u32 = 7;
const LOCAL: u32 = ofport::LOCAL;

const MAC_M: [u8; 6] = [2, 0, 0, 0, 0, 0x03];
const MAC_O: [u8; 6] = [2, 0, 0, 0, 0, 0x04];
const MAC_P: [u8; 6] = [2, 0, 0, 0, 0, 0x07];
const IP_M: [u8; 4] = [198, 18, 0, 3];
const IP_O: [u8; 4] = [198, 18, 0, 4];
const IP_P: [u8; 4] = [198, 18, 0, 7];

const MAC_R: [u8; 6] = [2, 0x1a, 0, 0, 0, 0x50];
const MAC_S: [u8; 6] = [2, 0x1a, 0, 0, 0, 0x51];
const MAC_H: [u8; 6] = [2, 0x1a, 0, 0, 0, 0x99];
const IP_R: [u8; 4] = [198, 18, 1, 50];
const IP_R2: [u8; 4] = [198, 18, 1, 60];
const IP_S: [u8; 4] = [198, 18, 1, 51];
const IP_H: [u8; 4] = [198, 18, 1, 99];

const UDN_R: &str = "uuid:5f9ec1b3-ed59-4c8d-a1f5-000000000050";
const UDN_S: &str = "uuid:4d696e69-444c-164e-9d41-000000000051";

const BCAST: [u8; 6] = [0xff; 6];
const SSDP_MAC: [u8; 6] = [1, 0, 0x5e, 0x7f, 0xff, 0xfa];
const SSDP_IP: [u8; 4] = [239, 255, 255, 250];

fn config(pinned_reach: &str) -> String {
    format!(
        r#"
[gateway]
datapath_id = "1"
listen = "ptcp:6653"
lan = [2, 6]

[gateway.uplink]
port = 1
up_rate = "20mbit"
down_rate = "100mbit"

[services.media]
port = 3
mac = "02:00:00:00:00:03"
ipv4 = ["198.18.0.3"]
class = "streaming"
queue = 5
reach = ["wan", "device:MediaRenderer"]

[services.other]
port = 4
mac = "02:00:00:00:00:04"
ipv4 = ["198.18.0.4"]
class = "bulk"
queue = 6
reach = ["wan"]

[services.lanny]
port = 5
mac = "02:00:00:00:00:05"
ipv4 = ["198.18.0.5"]
class = "best-effort"
queue = 8
reach = ["lan", "device:MediaServer"]

[services.pinned]
port = 7
mac = "02:00:00:00:00:07"
ipv4 = ["198.18.0.7"]
class = "best-effort"
queue = 9
reach = [{pinned_reach}]
"#
    )
}

fn policy(text: &str) -> Policy {
    parse(text).unwrap_or_else(|e| panic!("{e:?}"))
}

fn renderer(ip: [u8; 4]) -> KnownDevice {
    KnownDevice {
        udn: UDN_R.into(),
        device_types: vec!["urn:schemas-upnp-org:device:MediaRenderer:1".into()],
        ipv4: Ipv4Addr::from(ip),
    }
}

fn server() -> KnownDevice {
    KnownDevice {
        udn: UDN_S.into(),
        device_types: vec!["urn:schemas-upnp-org:device:MediaServer:1".into()],
        ipv4: Ipv4Addr::from(IP_S),
    }
}

fn lines(p: &Plan) -> String {
    p.changes
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Plans `p` with `devices` discovered, applies it, and checks that a re-plan is empty.
fn converge(
    sw: &mut FakeSwitch,
    old: Option<&Policy>,
    p: &Policy,
    devices: &[KnownDevice],
    now: u64,
) -> Plan {
    let observe = |sw: &FakeSwitch, now| {
        let mut o = sw.observe(now);
        o.devices = devices.to_vec();
        o
    };
    let pl = plan(old, p, &observe(sw, now), now).expect("admitted");
    sw.apply(&pl, now)
        .unwrap_or_else(|(i, e)| panic!("change {i} ({}) refused: {e:?}", pl.changes[i]));
    let again = plan(Some(p), p, &observe(sw, now + 1), now + 1).unwrap();
    assert!(
        again.is_empty(),
        "second plan not empty:\n{}",
        lines(&again)
    );
    pl
}

fn setup(pinned_reach: &str, devices: &[KnownDevice]) -> (FakeSwitch, Policy) {
    let p = policy(&config(pinned_reach));
    let mut sw = FakeSwitch::new(8, BTreeMap::new());
    converge(&mut sw, None, &p, devices, 1_000);
    (sw, p)
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

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + l4.len()).unwrap().to_be_bytes();
    let mut ip = vec![0x45, 0, total[0], total[1], 0, 0, 0, 0, 64, proto, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(l4);
    ip
}

/// An ICMP echo request (`reply`: an echo reply).
fn ping(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], reply: bool) -> Vec<u8> {
    let icmp = [if reply { 0 } else { 8 }, 0, 0, 0, 0, 1, 0, 1];
    eth(dst_mac, src_mac, 0x0800, &ipv4(1, src, dst, &icmp))
}

fn udp4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    ports: (u16, u16),
    body: &[u8],
) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&ports.0.to_be_bytes());
    u.extend_from_slice(&ports.1.to_be_bytes());
    u.extend_from_slice(&u16::try_from(8 + body.len()).unwrap().to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(body);
    eth(dst_mac, src_mac, 0x0800, &ipv4(17, src, dst, &u))
}

fn notify(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    udp4(
        mac,
        SSDP_MAC,
        ip,
        SSDP_IP,
        (1900, 1900),
        b"NOTIFY * HTTP/1.1\r\nNTS: ssdp:alive\r\n\r\n",
    )
}

fn msearch(mac: [u8; 6], ip: [u8; 4]) -> Vec<u8> {
    udp4(
        mac,
        SSDP_MAC,
        ip,
        SSDP_IP,
        (40000, 1900),
        b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n",
    )
}

fn arp(op: u16, dst: [u8; 6], sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa);
    eth(dst, sha, 0x0806, &a)
}

fn arp_request(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    arp(1, BCAST, sha, spa, [0; 6], tpa)
}

fn arp_reply(sha: [u8; 6], spa: [u8; 4], tha: [u8; 6], tpa: [u8; 4]) -> Vec<u8> {
    arp(2, tha, sha, spa, tha, tpa)
}

fn run(sw: &mut FakeSwitch, frame: &[u8], in_port: u32) -> PipelineResult {
    let mut key = FlowKey::default();
    extract(frame, in_port, &mut key);
    let len = u64::try_from(frame.len()).unwrap();
    PipelineResult::clone(&sw.tables.lookup(&key, len, 5_000_000_000))
}

fn outs(sw: &mut FakeSwitch, frame: &[u8], in_port: u32) -> Vec<u32> {
    run(sw, frame, in_port)
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Output { port, .. } => Some(*port),
            _ => None,
        })
        .collect()
}

/// The rule (role name, owner) of the flow that decided in the last table visited.
fn last_rule(r: &PipelineResult) -> (&'static str, u32) {
    let hit = r.trace.last().and_then(|s| s.hit.as_ref()).expect("a hit");
    cookie::rule_name(hit.cookie).expect("a planner cookie")
}

fn r_owner() -> u32 {
    cookie::device_owner(UDN_R)
}

#[test]
fn device_type_names_are_read_from_urns() {
    let t = device_type_name;
    assert_eq!(
        t("urn:schemas-upnp-org:device:MediaRenderer:1"),
        Some("MediaRenderer")
    );
    assert_eq!(
        t("urn:schemas-upnp-org:device:MediaRenderer:3"),
        Some("MediaRenderer")
    );
    assert_eq!(
        t("urn:schemas-wifialliance-org:device:WFADevice:1"),
        Some("WFADevice")
    );
    assert_eq!(t("urn:schemas-upnp-org:device:Basic"), Some("Basic"));
    assert_eq!(
        t("urn:schemas-upnp-org:service:AVTransport:1"),
        None,
        "a service type is not a device type"
    );
    assert_eq!(t("MediaRenderer"), None);
    assert_eq!(t("urn::device:MediaRenderer:1"), None);
    assert_eq!(t("urn:schemas-upnp-org:device::1"), None);
    assert_eq!(t("urn:schemas-upnp-org:device:MediaRenderer:1:x"), None);
    assert_eq!(t(""), None);
}

#[test]
fn a_service_reaches_a_discovered_renderer_but_not_a_media_server() {
    let (mut sw, _) = setup(r#""wan""#, &[renderer(IP_R), server()]);

    // media -> renderer: ARP (broadcast: media's scope plus the LAN ports), then ping.
    let r = run(&mut sw, &arp_request(MAC_M, IP_M, IP_R), M);
    assert_eq!(last_rule(&r), ("device_arp", r_owner()));
    assert_eq!(
        r.actions,
        vec![
            Action::Output {
                port: LAN,
                max_len: 0
            },
            Action::Output {
                port: LAN2,
                max_len: 0
            },
            Action::SetQueue(5),
            Action::Output {
                port: UPLINK,
                max_len: 0
            }
        ]
    );
    let r = run(&mut sw, &arp_reply(MAC_R, IP_R, MAC_M, IP_M), LAN);
    assert_eq!(last_rule(&r), ("device_in", r_owner()));
    assert_eq!(
        r.actions,
        vec![Action::Output {
            port: M,
            max_len: 0
        }]
    );
    let r = run(&mut sw, &ping(MAC_M, MAC_R, IP_M, IP_R, false), M);
    assert_eq!(last_rule(&r), ("device_out", r_owner()));
    assert_eq!(
        r.actions,
        vec![
            Action::Output {
                port: LAN,
                max_len: 0
            },
            Action::Output {
                port: LAN2,
                max_len: 0
            }
        ],
        "to the LAN ports only, no queue (the uplink is not among them)"
    );
    assert_eq!(
        outs(&mut sw, &ping(MAC_R, MAC_M, IP_R, IP_M, true), LAN2),
        vec![M],
        "the answer, from either LAN port"
    );
    // The other way round: the renderer asks for media's MAC and pings it.
    let r = run(&mut sw, &arp_request(MAC_R, IP_R, IP_M), LAN);
    assert_eq!(last_rule(&r), ("device_arp", r_owner()));
    // The LAN's own scope stays (LAN2, LOCAL, uplink, lanny reaching lan), plus media.
    assert_eq!(
        outs(&mut sw, &arp_request(MAC_R, IP_R, IP_M), LAN),
        vec![M, L, LAN2, LOCAL, UPLINK]
    );
    assert_eq!(
        outs(&mut sw, &arp_reply(MAC_M, IP_M, MAC_R, IP_R), M),
        vec![LAN, LAN2]
    );
    assert_eq!(
        outs(&mut sw, &ping(MAC_R, MAC_M, IP_R, IP_M, false), LAN),
        vec![M]
    );
    assert_eq!(
        outs(
            &mut sw,
            &udp4(MAC_R, MAC_M, IP_R, IP_M, (5000, 5001), b"x"),
            LAN
        ),
        vec![M],
        "any IPv4, not only ICMP"
    );

    // The media server: not reachable from media, and it cannot reach media.
    assert_eq!(
        outs(&mut sw, &ping(MAC_M, MAC_S, IP_M, IP_S, false), M),
        vec![UPLINK],
        "media's default scope (wan), not the LAN"
    );
    let r = run(&mut sw, &ping(MAC_S, MAC_M, IP_S, IP_M, true), LAN);
    assert!(r.actions.is_empty());
    assert_eq!(last_rule(&r), ("deny", 5));
    assert_eq!(
        outs(&mut sw, &arp_request(MAC_S, IP_S, IP_M), LAN),
        vec![L, LAN2, LOCAL, UPLINK],
        "the server's ARP for media stays in the LAN's scope"
    );
    assert!(outs(&mut sw, &arp_reply(MAC_S, IP_S, MAC_M, IP_M), LAN).is_empty());
    // Another LAN host spoofing nothing: denied.
    assert!(outs(&mut sw, &ping(MAC_H, MAC_M, IP_H, IP_M, false), LAN).is_empty());
    // The renderer cannot reach `other` (no device reach), nor the other way.
    assert!(outs(&mut sw, &ping(MAC_R, MAC_O, IP_R, IP_O, false), LAN).is_empty());
    assert_eq!(
        outs(&mut sw, &ping(MAC_O, MAC_R, IP_O, IP_R, false), O),
        vec![UPLINK]
    );
    // Anti-spoofing still holds: media claiming another address is dropped at ingress.
    let r = run(&mut sw, &ping(MAC_M, MAC_R, IP_O, IP_R, false), M);
    assert!(r.actions.is_empty());
    assert_eq!(r.trace.len(), 1);
}

#[test]
fn without_discovered_devices_nothing_is_allowed() {
    let (mut sw, _) = setup(r#""device:uuid:unknown""#, &[]);
    assert_eq!(
        outs(&mut sw, &ping(MAC_M, MAC_R, IP_M, IP_R, false), M),
        vec![UPLINK],
        "media's wan default only"
    );
    assert!(outs(&mut sw, &ping(MAC_R, MAC_M, IP_R, IP_M, true), LAN).is_empty());
    assert!(outs(&mut sw, &arp_reply(MAC_R, IP_R, MAC_M, IP_M), LAN).is_empty());
    assert!(!outs(&mut sw, &arp_request(MAC_R, IP_R, IP_M), LAN).contains(&M));
    // pinned has nothing but a device entry: its ARP and pings go nowhere.
    assert!(outs(&mut sw, &arp_request(MAC_P, IP_P, IP_R), P).is_empty());
    assert!(outs(&mut sw, &ping(MAC_P, MAC_R, IP_P, IP_R, false), P).is_empty());
    // No device flow exists at all.
    let obs = sw.observe(2_000);
    assert!(obs
        .flows
        .iter()
        .all(|f| cookie::parse_device(f.cookie).is_none()));
}

#[test]
fn one_device_by_udn() {
    // UUIDs compare without case.
    let sel = format!(
        r#""device:{}""#,
        UDN_R.to_uppercase().replace("UUID:", "uuid:")
    );
    let (mut sw, _) = setup(&sel, &[renderer(IP_R), server()]);
    assert_eq!(
        outs(&mut sw, &ping(MAC_P, MAC_R, IP_P, IP_R, false), P),
        vec![LAN, LAN2]
    );
    assert_eq!(
        outs(&mut sw, &ping(MAC_R, MAC_P, IP_R, IP_P, true), LAN),
        vec![P]
    );
    assert!(outs(&mut sw, &ping(MAC_P, MAC_S, IP_P, IP_S, false), P).is_empty());
    assert!(outs(&mut sw, &ping(MAC_S, MAC_P, IP_S, IP_P, true), LAN).is_empty());
    // ARP from pinned (reaching nothing else) goes to the LAN ports only.
    assert_eq!(
        outs(&mut sw, &arp_request(MAC_P, IP_P, IP_R), P),
        vec![LAN, LAN2]
    );
}

#[test]
fn embedded_device_types_count() {
    let igd = KnownDevice {
        udn: "uuid:igd-1".into(),
        device_types: vec![
            "urn:schemas-upnp-org:device:InternetGatewayDevice:1".into(),
            "urn:schemas-upnp-org:device:WANDevice:1".into(),
            "urn:schemas-upnp-org:device:WANConnectionDevice:1".into(),
        ],
        ipv4: Ipv4Addr::from(IP_H),
    };
    let (mut sw, _) = setup(r#""device:WANConnectionDevice""#, &[igd]);
    assert_eq!(
        outs(&mut sw, &ping(MAC_P, MAC_H, IP_P, IP_H, false), P),
        vec![LAN, LAN2]
    );
    // A prefix of a type name is not the type.
    let (mut sw, _) = setup(
        r#""device:WANConnection""#,
        &[KnownDevice {
            udn: "uuid:igd-1".into(),
            device_types: vec!["urn:schemas-upnp-org:device:WANConnectionDevice:1".into()],
            ipv4: Ipv4Addr::from(IP_H),
        }],
    );
    assert!(outs(&mut sw, &ping(MAC_P, MAC_H, IP_P, IP_H, false), P).is_empty());
}

/// Every flow change of `pl`, as (command, device role, owner); panics on any other change.
fn device_changes(pl: &Plan) -> Vec<(FlowModCommand, cookie::DeviceRole, u32)> {
    pl.changes
        .iter()
        .map(|c| match c {
            Change::Flow(fm) => {
                let (role, owner) = cookie::parse_device(fm.cookie)
                    .unwrap_or_else(|| panic!("not a device flow: {c}"));
                (fm.command, role, owner)
            }
            other => panic!("not a flow change: {other}"),
        })
        .collect()
}

#[test]
fn devices_appearing_moving_and_leaving_change_only_their_flows() {
    let p = policy(&config(&format!(r#""device:{UDN_R}""#)));
    let mut sw = FakeSwitch::new(8, BTreeMap::new());
    converge(&mut sw, None, &p, &[server()], 1_000);
    // lanny selects media servers but reaches the whole LAN already: no device flows.
    assert!(sw
        .observe(1_000)
        .flows
        .iter()
        .all(|f| cookie::parse_device(f.cookie).is_none()));
    let base: BTreeSet<(u8, u16, u64)> = sw
        .observe(1_000)
        .flows
        .iter()
        .map(|f| (f.table_id, f.priority, f.cookie))
        .collect();

    // A device nobody selects changes nothing.
    let quiet = KnownDevice {
        udn: "uuid:printer".into(),
        device_types: vec!["urn:schemas-upnp-org:device:Printer:1".into()],
        ipv4: Ipv4Addr::from(IP_H),
    };
    let pl = converge(&mut sw, Some(&p), &p, &[server(), quiet.clone()], 2_000);
    assert!(pl.is_empty(), "{}", lines(&pl));

    // The renderer appears: only adds, all its own. media and pinned select it: per service
    // 2 LAN ports × (2 In + 1 Arp) + 2 Out + 1 Arp = 9, plus SSDP from it on each LAN port.
    let devs = [server(), quiet.clone(), renderer(IP_R)];
    let pl = converge(&mut sw, Some(&p), &p, &devs, 3_000);
    let ch = device_changes(&pl);
    assert_eq!(ch.len(), 9 + 9 + 2, "{}", lines(&pl));
    assert!(ch
        .iter()
        .all(|(c, _, o)| *c == FlowModCommand::Add && *o == r_owner()));
    let ssdp = ch
        .iter()
        .filter(|(_, r, _)| *r == cookie::DeviceRole::Ssdp)
        .count();
    assert_eq!(ssdp, 2);
    assert_eq!(
        outs(&mut sw, &ping(MAC_M, MAC_R, IP_M, IP_R, false), M),
        vec![LAN, LAN2]
    );
    let cookies_at_r: BTreeSet<u64> = sw
        .observe(3_000)
        .flows
        .iter()
        .filter(|f| !base.contains(&(f.table_id, f.priority, f.cookie)))
        .map(|f| f.cookie)
        .collect();

    // It moves: its old flows are deleted, new ones added, nothing else touched.
    let moved = [server(), quiet.clone(), renderer(IP_R2)];
    let pl = converge(&mut sw, Some(&p), &p, &moved, 4_000);
    let ch = device_changes(&pl);
    assert!(ch.iter().all(|(_, _, o)| *o == r_owner()), "{}", lines(&pl));
    let dels = ch
        .iter()
        .filter(|(c, ..)| *c == FlowModCommand::DeleteStrict)
        .count();
    let adds = ch
        .iter()
        .filter(|(c, ..)| *c == FlowModCommand::Add)
        .count();
    assert_eq!((dels, adds), (20, 20), "{}", lines(&pl));
    assert!(outs(&mut sw, &ping(MAC_R, MAC_M, IP_R, IP_M, true), LAN).is_empty());
    assert_eq!(
        outs(&mut sw, &ping(MAC_R, MAC_M, IP_R2, IP_M, true), LAN),
        vec![M]
    );

    // It leaves: exactly its flows go, and the switch is back where it was.
    let pl = converge(&mut sw, Some(&p), &p, &[server(), quiet.clone()], 5_000);
    let ch = device_changes(&pl);
    assert_eq!(ch.len(), 20);
    assert!(ch
        .iter()
        .all(|(c, _, o)| *c == FlowModCommand::DeleteStrict && *o == r_owner()));
    let now: BTreeSet<(u8, u16, u64)> = sw
        .observe(5_000)
        .flows
        .iter()
        .map(|f| (f.table_id, f.priority, f.cookie))
        .collect();
    assert_eq!(now, base);

    // It comes back: the same cookies as the first time (stable per UDN).
    converge(&mut sw, Some(&p), &p, &devs, 6_000);
    let again: BTreeSet<u64> = sw
        .observe(6_000)
        .flows
        .iter()
        .filter(|f| !base.contains(&(f.table_id, f.priority, f.cookie)))
        .map(|f| f.cookie)
        .collect();
    assert_eq!(again, cookies_at_r);
    assert!(again
        .iter()
        .all(|c| cookie::parse_device(*c).is_some_and(|(_, o)| o == r_owner())));
}

#[test]
fn ssdp_is_scoped_by_device_reach() {
    let (mut sw, _) = setup(r#""device:MediaServer""#, &[renderer(IP_R), server()]);
    // NOTIFY from the renderer: the LAN's own scope plus media (selects renderers).
    assert_eq!(
        outs(&mut sw, &notify(MAC_R, IP_R), LAN),
        vec![M, L, LAN2, LOCAL, UPLINK]
    );
    // NOTIFY from the server: plus pinned (selects media servers); lanny already has lan.
    assert_eq!(
        outs(&mut sw, &notify(MAC_S, IP_S), LAN2),
        vec![LAN, L, P, LOCAL, UPLINK]
    );
    // NOTIFY from an unknown LAN host: only lanny (lan) among the services.
    assert_eq!(
        outs(&mut sw, &notify(MAC_H, IP_H), LAN),
        vec![L, LAN2, LOCAL, UPLINK]
    );
    // M-SEARCH from services: to the LAN ports when they reach lan or devices, never the
    // uplink; `other` (wan only) reaches no one.
    assert_eq!(outs(&mut sw, &msearch(MAC_M, IP_M), M), vec![LAN, LAN2]);
    assert_eq!(outs(&mut sw, &msearch(MAC_P, IP_P), P), vec![LAN, LAN2]);
    let r = run(&mut sw, &msearch(MAC_O, IP_O), O);
    assert!(r.actions.is_empty());
    assert_eq!(last_rule(&r), ("flood", 6), "a counted drop");
    // The answers are unicast: from the renderer to media they pass, from the server or an
    // unknown host to media they do not.
    let answer = |mac, ip, to_mac, to_ip| {
        udp4(
            mac,
            to_mac,
            ip,
            to_ip,
            (1900, 40000),
            b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n",
        )
    };
    assert_eq!(
        outs(&mut sw, &answer(MAC_R, IP_R, MAC_M, IP_M), LAN),
        vec![M]
    );
    assert!(outs(&mut sw, &answer(MAC_S, IP_S, MAC_M, IP_M), LAN).is_empty());
    assert!(outs(&mut sw, &answer(MAC_H, IP_H, MAC_M, IP_M), LAN).is_empty());
    assert_eq!(
        outs(&mut sw, &answer(MAC_S, IP_S, MAC_P, IP_P), LAN),
        vec![P]
    );
    assert!(outs(&mut sw, &answer(MAC_R, IP_R, MAC_O, IP_O), LAN).is_empty());
    // Other multicast from a device is not widened.
    assert_eq!(
        outs(
            &mut sw,
            &udp4(MAC_R, SSDP_MAC, IP_R, SSDP_IP, (5353, 5353), b"x"),
            LAN
        ),
        vec![L, LAN2, LOCAL, UPLINK]
    );

    // Without devices: media's M-SEARCH still goes out (it depends on the policy only), but
    // no device's NOTIFY reaches it.
    let (mut sw, _) = setup(r#""device:MediaServer""#, &[]);
    assert_eq!(outs(&mut sw, &msearch(MAC_M, IP_M), M), vec![LAN, LAN2]);
    assert_eq!(
        outs(&mut sw, &notify(MAC_R, IP_R), LAN),
        vec![L, LAN2, LOCAL, UPLINK]
    );
}

#[test]
fn devices_sharing_an_address_are_reached_together() {
    // One host runs a renderer and a server; pinned selects the server only, media the
    // renderer. Flows are per address, owned by the smallest selected UDN.
    let r = renderer(IP_S);
    let devs = [r.clone(), server()];
    let p = policy(&config(r#""device:MediaServer""#));
    let mut sw = FakeSwitch::new(8, BTreeMap::new());
    converge(&mut sw, None, &p, &devs, 1_000);
    assert_eq!(
        outs(&mut sw, &ping(MAC_M, MAC_S, IP_M, IP_S, false), M),
        vec![LAN, LAN2]
    );
    assert_eq!(
        outs(&mut sw, &ping(MAC_S, MAC_P, IP_S, IP_P, true), LAN),
        vec![P]
    );
    let owners: BTreeSet<u32> = sw
        .observe(1_000)
        .flows
        .iter()
        .filter_map(|f| cookie::parse_device(f.cookie))
        .map(|(_, o)| o)
        .collect();
    let smaller = UDN_R.min(UDN_S);
    assert_eq!(
        owners,
        [cookie::device_owner(UDN_R), cookie::device_owner(UDN_S)]
            .into_iter()
            .collect(),
        "media's flows are the renderer's, pinned's the server's"
    );
    assert_eq!(smaller, UDN_S);
    // SSDP from the shared address is owned by the smaller UDN.
    let r = run(&mut sw, &notify(MAC_S, IP_S), LAN);
    assert_eq!(last_rule(&r), ("device_ssdp", cookie::device_owner(UDN_S)));
    assert_eq!(
        outs(&mut sw, &notify(MAC_S, IP_S), LAN),
        vec![M, L, LAN2, P, LOCAL, UPLINK]
    );
}

#[test]
fn unusable_device_addresses_are_left_out_with_a_note() {
    let mut at_service = renderer(IP_O);
    at_service.udn = "uuid:liar".into();
    let mut zero = renderer([0, 0, 0, 0]);
    zero.udn = "uuid:zero".into();
    let p = policy(&config(r#""wan""#));
    let mut sw = FakeSwitch::new(8, BTreeMap::new());
    let pl = converge(&mut sw, None, &p, &[at_service, zero], 1_000);
    assert_eq!(
        pl.notes,
        vec![
            "device uuid:liar: address 198.18.0.4 belongs to a service; left out".to_string(),
            "device uuid:zero: address 0.0.0.0 is not unicast; left out".to_string(),
        ]
    );
    assert!(pl
        .flow_mods()
        .all(|f| cookie::parse_device(f.cookie).is_none()));
    // `other` still cannot reach media, with or without the fake renderer.
    assert!(outs(&mut sw, &ping(MAC_O, MAC_M, IP_O, IP_M, false), O).is_empty());
}

/// The device flows, printed in ovs-ofctl syntax, are accepted by Open vSwitch's parser.
#[test]
fn open_vswitch_accepts_the_device_flows() {
    use shg_flows::text::{format_instructions, format_match, parse_flow};
    use std::process::Command;
    if !Command::new("ovs-ofctl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipping: ovs-ofctl not installed");
        return;
    }
    let p = policy(&config(&format!(r#""device:{UDN_R}", "gateway""#)));
    let mut obs = FakeSwitch::new(8, BTreeMap::new()).observe(0);
    obs.devices = vec![renderer(IP_R), server()];
    let pl = plan(None, &p, &obs, 0).unwrap();
    let mut n = 0;
    for fm in pl.flow_mods() {
        let ssdp = cookie::parse(fm.cookie).is_some_and(|(r, _)| r == cookie::Role::Flood)
            && fm.priority == 220;
        if cookie::parse_device(fm.cookie).is_none() && !ssdp {
            continue;
        }
        let m = format_match(&fm.r#match);
        let acts = format_instructions(&fm.instructions);
        let acts = if acts.is_empty() { "drop".into() } else { acts };
        let text = format!(
            "table={},priority={},cookie=0x{:x},{m},actions={acts}",
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
        let back = parse_flow(&text, FlowModCommand::Add).unwrap();
        assert_eq!(
            (back.r#match, &back.instructions),
            (fm.r#match, &fm.instructions),
            "{text}"
        );
        n += 1;
    }
    assert!(n >= 20, "{n}");
}
