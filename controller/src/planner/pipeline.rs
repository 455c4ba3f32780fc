//! The desired switch state compiled from a policy: the three-table pipeline, the meters and the uplink's queues.
//!
//! Plain OpenFlow 1.3 only (goto_table, meter, apply_actions with set_queue and output; no
//! experimenter actions, no groups), so shg-switch and Open vSwitch 3.1 userspace both accept
//! it. Every flow carries a planner cookie ([`cookie`]) naming its role and its owner (a
//! service's queue id or a port number). Priorities are fixed per role, so a re-plan of an
//! unchanged service yields byte-identical flows.
//!
//! Table 0, ingress anti-spoofing:
//!
//! | prio | match | instructions | cookie role |
//! |---|---|---|---|
//! | 300 | in_port=S, eth_src=S.mac, ip, ipv4_src=each S.ipv4 | goto 1 | `SpoofAllow` |
//! | 300 | in_port=S, eth_src=S.mac, arp, arp_sha=S.mac, arp_spa=each S.ipv4 and 0.0.0.0 (probe) | goto 1 | `SpoofAllow` |
//! | 300 | in_port=S, eth_src=S.mac, ipv6, ipv6_src=each S.ipv6 | goto 1 | `SpoofAllow` |
//! | 300 | in_port=S, eth_src=S.mac, ipv6, icmpv6, ipv6_src=:: (DAD), if S has IPv6 | goto 1 | `SpoofAllow` |
//! | 200 | eth_src=S.mac (S's MAC with a wrong address, or on another port) | drop | `MacGuard` |
//! | 100 | in_port=S (any other source MAC, any other ethertype) | drop | `SpoofDrop` |
//! | 100 | in_port=uplink / LAN / LOCAL | goto 1 | `PortAdmit` |
//! | 0 | anything else (unknown port) | drop | `Miss` |
//!
//! Table 1, classification and metering (caps):
//!
//! | prio | match | instructions | cookie role |
//! |---|---|---|---|
//! | 200 | in_port=S (if S has a max_rate in force) | meter 2·queue, goto 2 | `MeterUp` |
//! | 200 | in_port=uplink, eth_dst=S.mac (if S has down_max_rate) | meter 2·queue+1, goto 2 | `MeterDown` |
//! | 0 | anything | goto 2 | `Miss` |
//!
//! Table 2, forwarding and queue selection. A service's frames to the uplink get
//! `set_queue:S.queue` just before `output:uplink` (always the last output, so no other port
//! sees a queue it does not have); frames from non-service ports to the uplink get
//! `set_queue:0`, the default queue.
//!
//! | prio | match | instructions | cookie role |
//! |---|---|---|---|
//! | 300 | in_port=X, eth_dst=T.mac, for every source X allowed to reach service T | output T | `Unicast` (owner T) |
//! | 280 | in_port=LAN, eth_dst=S.mac, ip/arp from an allowed device's address | output S | `DeviceRole::In` (owner: the device) |
//! | 250 | eth_dst=T.mac (everyone else) | drop | `Deny` (owner T) |
//! | 220 | in_port=S, multicast, udp 239.255.255.250:1900 (SSDP) | S's SSDP scope, or drop | `Flood` (owner S) |
//! | 220 | in_port=LAN, multicast, SSDP from an allowed device's address | the LAN's scope and the services allowed to reach it | `DeviceRole::Ssdp` |
//! | 220 | broadcast ARP between a service and an allowed device | the sender's scope and the other side | `DeviceRole::Arp` |
//! | 200 | in_port=X, eth_dst=multicast (ARP, SSDP, ND, ...) | output to X's allowed ports | `Flood` |
//! | 150 | in_port=S, ip/arp to an allowed device's address | output the LAN ports | `DeviceRole::Out` |
//! | 100 | in_port=X (unknown unicast) | output to X's allowed non-service ports | `Default` |
//! | 0 | anything | drop | `Miss` |
//!
//! Who may reach whom: service S reaches the uplink with `wan`, the LAN ports with `lan`,
//! LOCAL with `gateway`, and service T when either lists the other (so both directions are
//! consistent). A non-service port reaches service S under the same keyword in S's list. The
//! uplink, LAN ports and LOCAL form one bridge among themselves. Broadcast and multicast only
//! go to allowed ports, so a service never sees another service's ARP or SSDP unless allowed.
//! `device:` entries let a service and the discovered devices they select talk over IPv4 and
//! ARP, and scope SSDP; the rules and the exact flows are in [`devices`]'s documentation.

pub mod devices;

pub use devices::{device_type_name, SSDP_ADDR, SSDP_PORT};

use super::KnownDevice;
use crate::model::{Policy, PortRef, Reach, Service};
use shg_flows::action::{port as ofport, Action, Instruction};
use shg_flows::field::Field;
use shg_flows::matches::Match;
use shg_flows::mods::{meter_flags, MeterBand};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// The planner's cookies: `0x534847` ("SHG") in the top 24 bits, a role in the next 8, the owner in the low 32.
pub mod cookie {
    /// Magic in the top 24 bits of every planner cookie.
    pub const MAGIC: u64 = 0x5348_4700_0000_0000;
    /// Mask selecting the magic.
    pub const MAGIC_MASK: u64 = 0xffff_ff00_0000_0000;

    /// What a planner flow is for.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    #[repr(u8)]
    pub enum Role {
        SpoofAllow = 1,
        MacGuard = 2,
        SpoofDrop = 3,
        PortAdmit = 4,
        MeterUp = 5,
        MeterDown = 6,
        Unicast = 7,
        Deny = 8,
        Flood = 9,
        Default = 10,
        Miss = 11,
    }

    impl Role {
        const ALL: [Role; 11] = [
            Role::SpoofAllow,
            Role::MacGuard,
            Role::SpoofDrop,
            Role::PortAdmit,
            Role::MeterUp,
            Role::MeterDown,
            Role::Unicast,
            Role::Deny,
            Role::Flood,
            Role::Default,
            Role::Miss,
        ];
    }

    /// The cookie of a flow with `role` owned by `owner` (queue id or port number).
    pub fn make(role: Role, owner: u32) -> u64 {
        MAGIC | (u64::from(role as u8) << 32) | u64::from(owner)
    }

    /// True for cookies the planner makes.
    pub fn is_ours(c: u64) -> bool {
        c & MAGIC_MASK == MAGIC
    }

    impl Role {
        /// Snake-case name, as traces and logs print it.
        pub fn name(self) -> &'static str {
            match self {
                Role::SpoofAllow => "spoof_allow",
                Role::MacGuard => "mac_guard",
                Role::SpoofDrop => "spoof_drop",
                Role::PortAdmit => "port_admit",
                Role::MeterUp => "meter_up",
                Role::MeterDown => "meter_down",
                Role::Unicast => "unicast",
                Role::Deny => "deny",
                Role::Flood => "flood",
                Role::Default => "default",
                Role::Miss => "miss",
            }
        }
    }

    /// Roles of the flows that `device:` reach adds (role bytes from 0x10), owned by a device:
    /// the owner is [`device_owner`] of its UDN. Kept apart from [`Role`] so that code matching
    /// every `Role` stays exhaustive.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    #[repr(u8)]
    pub enum DeviceRole {
        /// LAN port → service: IPv4 and ARP from the device's address to the service's MAC.
        In = 0x10,
        /// Service → LAN ports: IPv4 and ARP to the device's address.
        Out = 0x11,
        /// Broadcast ARP between a service and the device.
        Arp = 0x12,
        /// SSDP multicast from the device's address, to the services allowed to reach it.
        Ssdp = 0x13,
    }

    impl DeviceRole {
        const ALL: [DeviceRole; 4] = [
            DeviceRole::In,
            DeviceRole::Out,
            DeviceRole::Arp,
            DeviceRole::Ssdp,
        ];

        /// Snake-case name, as traces and logs print it.
        pub fn name(self) -> &'static str {
            match self {
                DeviceRole::In => "device_in",
                DeviceRole::Out => "device_out",
                DeviceRole::Arp => "device_arp",
                DeviceRole::Ssdp => "device_ssdp",
            }
        }
    }

    /// The cookie of a device flow.
    pub fn make_device(role: DeviceRole, owner: u32) -> u64 {
        MAGIC | (u64::from(role as u8) << 32) | u64::from(owner)
    }

    /// `(role, owner)` of a device flow's cookie.
    pub fn parse_device(c: u64) -> Option<(DeviceRole, u32)> {
        if !is_ours(c) {
            return None;
        }
        let role = u8::try_from((c >> 32) & 0xff).ok()?;
        let owner = u32::try_from(c & 0xffff_ffff).ok()?;
        DeviceRole::ALL
            .into_iter()
            .find(|r| *r as u8 == role)
            .map(|r| (r, owner))
    }

    /// The owner bits of a device's flows: FNV-1a (32 bit) of its UDN in ASCII lower case
    /// (UUIDs compare without case), so a device keeps its cookies across plans and restarts.
    pub fn device_owner(udn: &str) -> u32 {
        udn.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193)
        })
    }

    /// `(role name, owner)` of any planner cookie, service or device role.
    pub fn rule_name(c: u64) -> Option<(&'static str, u32)> {
        parse(c)
            .map(|(r, o)| (r.name(), o))
            .or_else(|| parse_device(c).map(|(r, o)| (r.name(), o)))
    }

    /// `(role, owner)` of a planner cookie.
    pub fn parse(c: u64) -> Option<(Role, u32)> {
        if !is_ours(c) {
            return None;
        }
        let role = u8::try_from((c >> 32) & 0xff).ok()?;
        let owner = u32::try_from(c & 0xffff_ffff).ok()?;
        Role::ALL
            .into_iter()
            .find(|r| *r as u8 == role)
            .map(|r| (r, owner))
    }
}

use cookie::Role;

/// Flow priorities, fixed per role.
pub mod prio {
    pub const SPOOF_ALLOW: u16 = 300;
    pub const MAC_GUARD: u16 = 200;
    pub const SPOOF_DROP: u16 = 100;
    pub const PORT_ADMIT: u16 = 100;
    pub const METER: u16 = 200;
    pub const UNICAST: u16 = 300;
    pub const DENY: u16 = 250;
    pub const FLOOD: u16 = 200;
    pub const DEFAULT: u16 = 100;
    pub const MISS: u16 = 0;
    /// LAN → service from an allowed device's address (above `DENY`).
    pub const DEVICE_IN: u16 = 280;
    /// SSDP and broadcast ARP scoped by device reach (above `FLOOD`).
    pub const SCOPED: u16 = 220;
    /// Service → an allowed device's address (above `DEFAULT`).
    pub const DEVICE_OUT: u16 = 150;
}

/// Table ids.
pub mod table {
    pub const INGRESS: u8 = 0;
    pub const CLASSIFY: u8 = 1;
    pub const FORWARD: u8 = 2;
}

/// The uplink's default queue (non-service traffic).
pub const DEFAULT_QUEUE: u32 = 0;
/// Priority of the default queue (served last).
pub const DEFAULT_QUEUE_PRIORITY: u8 = 7;
/// Meter ids the planner owns: `2·queue` (up) and `2·queue + 1` (down).
pub const METER_IDS: std::ops::RangeInclusive<u32> = 2..=(2 * crate::config::QUEUE_MAX + 1);

/// Meter id of a service's upstream cap.
pub fn meter_up(queue: u32) -> u32 {
    queue.saturating_mul(2)
}

/// Meter id of a service's downstream cap.
pub fn meter_down(queue: u32) -> u32 {
    queue.saturating_mul(2).saturating_add(1)
}

/// One flow the policy wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredFlow {
    pub table_id: u8,
    pub priority: u16,
    pub cookie: u64,
    pub r#match: Match,
    pub instructions: Vec<Instruction>,
}

/// One meter the policy wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMeter {
    pub meter_id: u32,
    pub flags: u16,
    pub bands: Vec<MeterBand>,
}

/// One egress queue of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueSetting {
    pub queue_id: u32,
    /// Guaranteed rate, bits/s.
    pub min_rate: u64,
    /// Ceiling, bits/s (`None`: the port's rate).
    pub max_rate: Option<u64>,
    /// 0 is served first.
    pub priority: u8,
}

/// A port's shaping and queues.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortQueues {
    /// Shaped rate, bits/s (`None`: not shaped).
    pub rate: Option<u64>,
    pub queues: Vec<QueueSetting>,
}

/// Everything the policy wants on the switch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Desired {
    pub flows: Vec<DesiredFlow>,
    pub meters: Vec<DesiredMeter>,
    /// Queues by port number (only the uplink today).
    pub queues: BTreeMap<u32, PortQueues>,
    /// Services or ports left out, and why (e.g. an interface name the switch does not have).
    pub notes: Vec<String>,
}

/// A cap as a meter: one drop band, kbit/s rounded up, burst of 100 ms (at least 120 kbit).
pub fn cap_meter(meter_id: u32, bps: u64) -> DesiredMeter {
    let kbps = u32::try_from(bps.div_ceil(1000)).unwrap_or(u32::MAX);
    DesiredMeter {
        meter_id,
        flags: meter_flags::KBPS | meter_flags::BURST | meter_flags::STATS,
        bands: vec![MeterBand::Drop {
            rate: kbps,
            burst_size: (kbps / 10).max(120),
        }],
    }
}

fn resolve(p: &PortRef, names: &BTreeMap<String, u32>) -> Option<u32> {
    match p {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(s) => names.get(s).copied(),
    }
}

/// A non-service port and the keyword services use for it.
#[derive(Debug, Clone, Copy)]
struct Other {
    port: u32,
    kind: Reach2,
}

/// `Reach` without payload, for non-service ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach2 {
    Wan,
    Lan,
    Gateway,
}

impl Reach2 {
    fn reach(self) -> Reach {
        match self {
            Reach2::Wan => Reach::Wan,
            Reach2::Lan => Reach::Lan,
            Reach2::Gateway => Reach::Gateway,
        }
    }
}

fn m_in(port: u32) -> Match {
    let mut m = Match::any();
    m.set_u64(Field::InPort, u64::from(port));
    m
}

fn multicast(m: &mut Match) {
    m.set_masked(Field::EthDst, &[1, 0, 0, 0, 0, 0], &[1, 0, 0, 0, 0, 0]);
}

fn goto(t: u8) -> Vec<Instruction> {
    vec![Instruction::GotoTable(t)]
}

fn out(port: u32) -> Action {
    Action::Output { port, max_len: 0 }
}

/// Outputs to `ports` (ascending, uplink last behind `set_queue:queue`); `None` when empty.
fn outputs(ports: &[u32], uplink: u32, queue: u32) -> Option<Vec<Instruction>> {
    let mut ps: Vec<u32> = ports.iter().copied().filter(|&p| p != uplink).collect();
    ps.sort_unstable();
    ps.dedup();
    let mut acts: Vec<Action> = ps.into_iter().map(out).collect();
    if ports.contains(&uplink) {
        acts.push(Action::SetQueue(queue));
        acts.push(out(uplink));
    }
    (!acts.is_empty()).then(|| vec![Instruction::ApplyActions(acts)])
}

/// Compiles `p` against the switch's port names and the devices discovery knows.
pub fn compile(p: &Policy, port_names: &BTreeMap<String, u32>, known: &[KnownDevice]) -> Desired {
    let mut d = Desired::default();
    let g = &p.gateway;
    let Some(uplink) = resolve(&g.uplink.port, port_names) else {
        d.notes.push(format!(
            "gateway.uplink.port: the switch has no port {}; nothing planned",
            g.uplink.port
        ));
        return d;
    };
    let mut others = vec![Other {
        port: uplink,
        kind: Reach2::Wan,
    }];
    for (i, l) in g.lan.iter().enumerate() {
        match resolve(l, port_names) {
            Some(port) => others.push(Other {
                port,
                kind: Reach2::Lan,
            }),
            None => d.notes.push(format!(
                "gateway.lan[{i}]: the switch has no port {l}; left out"
            )),
        }
    }
    if g.local {
        others.push(Other {
            port: ofport::LOCAL,
            kind: Reach2::Gateway,
        });
    }
    let mut svcs: Vec<(&Service, u32)> = Vec::new();
    for s in p.services.values() {
        match resolve(&s.port, port_names) {
            Some(port) => svcs.push((s, port)),
            None => d.notes.push(format!(
                "services.{}.port: the switch has no port {}; service left out",
                s.name, s.port
            )),
        }
    }

    let mut flows: Vec<DesiredFlow> = Vec::new();
    let mut meters: Vec<DesiredMeter> = Vec::new();
    let mut add = |table_id, priority, cookie, r#match, instructions| {
        flows.push(DesiredFlow {
            table_id,
            priority,
            cookie,
            r#match,
            instructions,
        });
    };

    // Table 0.
    for &(s, port) in &svcs {
        let allow = cookie::make(Role::SpoofAllow, s.queue);
        let base = {
            let mut m = m_in(port);
            m.set(Field::EthSrc, &s.mac);
            m
        };
        for ip in &s.ipv4 {
            let mut m = base;
            m.set_u64(Field::EthType, 0x0800);
            m.set(Field::Ipv4Src, &ip.octets());
            add(table::INGRESS, prio::SPOOF_ALLOW, allow, m, goto(1));
        }
        let probe = (!s.ipv4.is_empty()).then_some(std::net::Ipv4Addr::UNSPECIFIED);
        for ip in s.ipv4.iter().copied().chain(probe) {
            let mut m = base;
            m.set_u64(Field::EthType, 0x0806);
            m.set(Field::ArpSha, &s.mac);
            m.set(Field::ArpSpa, &ip.octets());
            add(table::INGRESS, prio::SPOOF_ALLOW, allow, m, goto(1));
        }
        for ip in &s.ipv6 {
            let mut m = base;
            m.set_u64(Field::EthType, 0x86dd);
            m.set(Field::Ipv6Src, &ip.octets());
            add(table::INGRESS, prio::SPOOF_ALLOW, allow, m, goto(1));
        }
        if !s.ipv6.is_empty() {
            let mut m = base;
            m.set_u64(Field::EthType, 0x86dd);
            m.set_u64(Field::IpProto, 58);
            m.set(Field::Ipv6Src, &Ipv6Addr::UNSPECIFIED.octets());
            add(table::INGRESS, prio::SPOOF_ALLOW, allow, m, goto(1));
        }
        let mut guard = Match::any();
        guard.set(Field::EthSrc, &s.mac);
        add(
            table::INGRESS,
            prio::MAC_GUARD,
            cookie::make(Role::MacGuard, s.queue),
            guard,
            Vec::new(),
        );
        add(
            table::INGRESS,
            prio::SPOOF_DROP,
            cookie::make(Role::SpoofDrop, s.queue),
            m_in(port),
            Vec::new(),
        );
    }
    for o in &others {
        add(
            table::INGRESS,
            prio::PORT_ADMIT,
            cookie::make(Role::PortAdmit, o.port),
            m_in(o.port),
            goto(1),
        );
    }
    add(
        table::INGRESS,
        prio::MISS,
        cookie::make(Role::Miss, 0),
        Match::any(),
        Vec::new(),
    );

    // Table 1.
    for &(s, port) in &svcs {
        if let Some(max) = s.effective_max_rate() {
            meters.push(cap_meter(meter_up(s.queue), max));
            add(
                table::CLASSIFY,
                prio::METER,
                cookie::make(Role::MeterUp, s.queue),
                m_in(port),
                vec![
                    Instruction::Meter(meter_up(s.queue)),
                    Instruction::GotoTable(2),
                ],
            );
        }
        if let Some(max) = s.down_max_rate {
            meters.push(cap_meter(meter_down(s.queue), max));
            let mut m = m_in(uplink);
            m.set(Field::EthDst, &s.mac);
            add(
                table::CLASSIFY,
                prio::METER,
                cookie::make(Role::MeterDown, s.queue),
                m,
                vec![
                    Instruction::Meter(meter_down(s.queue)),
                    Instruction::GotoTable(2),
                ],
            );
        }
    }
    add(
        table::CLASSIFY,
        prio::MISS,
        cookie::make(Role::Miss, 1),
        Match::any(),
        goto(2),
    );

    // Table 2.
    let other_ports = |s: &Service| -> Vec<u32> {
        others
            .iter()
            .filter(|o| s.reaches(&o.kind.reach()))
            .map(|o| o.port)
            .collect()
    };
    for &(t, t_port) in &svcs {
        let uni = cookie::make(Role::Unicast, t.queue);
        let mut sources: Vec<u32> = svcs
            .iter()
            .filter(|(s, _)| p.services_allowed(&s.name, &t.name))
            .map(|(_, port)| *port)
            .collect();
        sources.extend(other_ports(t));
        sources.sort_unstable();
        for src in sources {
            let mut m = m_in(src);
            m.set(Field::EthDst, &t.mac);
            add(
                table::FORWARD,
                prio::UNICAST,
                uni,
                m,
                vec![Instruction::ApplyActions(vec![out(t_port)])],
            );
        }
        let mut deny = Match::any();
        deny.set(Field::EthDst, &t.mac);
        add(
            table::FORWARD,
            prio::DENY,
            cookie::make(Role::Deny, t.queue),
            deny,
            Vec::new(),
        );
    }
    // Every port's broadcast/multicast scope, shared with the device flows.
    let mut flood_of: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &(s, port) in &svcs {
        let mut flood = other_ports(s);
        flood.extend(
            svcs.iter()
                .filter(|(t, _)| p.services_allowed(&s.name, &t.name))
                .map(|(_, tp)| *tp),
        );
        flood_of.insert(port, flood);
    }
    for o in &others {
        let mut flood: Vec<u32> = others
            .iter()
            .filter(|x| x.port != o.port)
            .map(|x| x.port)
            .collect();
        flood.extend(
            svcs.iter()
                .filter(|(t, _)| t.reaches(&o.kind.reach()))
                .map(|(_, tp)| *tp),
        );
        flood_of.insert(o.port, flood);
    }
    let lans: Vec<u32> = others
        .iter()
        .filter(|o| o.kind == Reach2::Lan)
        .map(|o| o.port)
        .collect();
    let dev = devices::Ctx {
        policy: p,
        svcs: &svcs,
        lans: &lans,
        local: g.local.then_some(ofport::LOCAL),
        uplink,
        flood_of: &flood_of,
    };
    for f in dev
        .ssdp_flows()
        .into_iter()
        .chain(dev.flows(known, &mut d.notes))
    {
        add(f.table_id, f.priority, f.cookie, f.r#match, f.instructions);
    }
    for &(s, port) in &svcs {
        let plain = other_ports(s);
        let flood = flood_of.get(&port).cloned().unwrap_or_default();
        let mut m = m_in(port);
        multicast(&mut m);
        if let Some(i) = outputs(&flood, uplink, s.queue) {
            add(
                table::FORWARD,
                prio::FLOOD,
                cookie::make(Role::Flood, s.queue),
                m,
                i,
            );
        }
        if let Some(i) = outputs(&plain, uplink, s.queue) {
            add(
                table::FORWARD,
                prio::DEFAULT,
                cookie::make(Role::Default, s.queue),
                m_in(port),
                i,
            );
        }
    }
    for o in &others {
        let plain: Vec<u32> = others
            .iter()
            .filter(|x| x.port != o.port)
            .map(|x| x.port)
            .collect();
        let flood = flood_of.get(&o.port).cloned().unwrap_or_default();
        let mut m = m_in(o.port);
        multicast(&mut m);
        if let Some(i) = outputs(&flood, uplink, DEFAULT_QUEUE) {
            add(
                table::FORWARD,
                prio::FLOOD,
                cookie::make(Role::Flood, o.port),
                m,
                i,
            );
        }
        if let Some(i) = outputs(&plain, uplink, DEFAULT_QUEUE) {
            add(
                table::FORWARD,
                prio::DEFAULT,
                cookie::make(Role::Default, o.port),
                m_in(o.port),
                i,
            );
        }
    }
    add(
        table::FORWARD,
        prio::MISS,
        cookie::make(Role::Miss, 2),
        Match::any(),
        Vec::new(),
    );

    // Uplink queues: the default queue and one per service.
    let mut queues = vec![QueueSetting {
        queue_id: DEFAULT_QUEUE,
        min_rate: 0,
        max_rate: None,
        priority: DEFAULT_QUEUE_PRIORITY,
    }];
    for &(s, _) in &svcs {
        queues.push(QueueSetting {
            queue_id: s.queue,
            min_rate: s.min_rate,
            max_rate: None,
            priority: s.effective_priority(),
        });
    }
    d.queues.insert(
        uplink,
        PortQueues {
            rate: Some(g.uplink.up_rate),
            queues,
        },
    );
    meters.sort_by_key(|m| m.meter_id);
    d.flows = flows;
    d.meters = meters;
    d
}
