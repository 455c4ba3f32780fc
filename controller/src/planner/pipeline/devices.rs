//! Device reach and SSDP scoping: which discovered devices each service may reach, and the table-2 flows that let exactly those pairs talk.
//!
//! A `device:` entry selects devices from [`KnownDevice`]s: `device:TYPE` every device whose
//! root or embedded device type URN is `urn:DOMAIN:device:TYPE[:VERSION]` (TYPE compared
//! exactly, as UPnP writes it; any version), `device:uuid:...` the one device with that UDN
//! (UUIDs compare without case). A service with `lan` in its reach already reaches the whole
//! LAN, so its device entries add nothing. Devices are told apart by their IPv4 address only
//! (the switch does not know their MACs or ports): two devices on one address are reached
//! together, and the flows for an address carry the owner of the smallest selected UDN.
//! A device whose address is unusable (not unicast) or a service's own is left out with a note.
//!
//! Per service S and allowed device address A, on each LAN port L (table 2):
//!
//! | prio | match | actions | role |
//! |---|---|---|---|
//! | 280 | in_port=L, eth_dst=S.mac, ip, ipv4_src=A | output S | `In` |
//! | 280 | in_port=L, eth_dst=S.mac, arp, arp_spa=A | output S | `In` |
//! | 220 | in_port=L, eth_dst=broadcast, arp, arp_spa=A, arp_tpa=each S.ipv4 | L's flood scope and S | `Arp` |
//! | 150 | in_port=S, ip, ipv4_dst=A | output the LAN ports | `Out` |
//! | 150 | in_port=S, arp, arp_tpa=A | output the LAN ports | `Out` |
//! | 220 | in_port=S, eth_dst=broadcast, arp, arp_tpa=A | S's flood scope and the LAN ports | `Arp` |
//!
//! Per allowed device address A and LAN port L: SSDP from A (`in_port=L`, multicast,
//! `udp, ipv4_src=A, 239.255.255.250:1900`, prio 220, role `Ssdp`) goes to L's flood scope and
//! every service allowed to reach A. Per service S, SSDP it sends (`in_port=S`, multicast,
//! `udp, 239.255.255.250:1900`, prio 220, [`Role::Flood`] owned by S) goes to the LAN ports
//! if S has `lan` or any `device:` entry, to the services S may talk to, and to LOCAL if S has
//! `gateway`; never to the uplink; nowhere (a counted drop) if that is empty. It depends on the
//! policy only, so devices coming and going never touch it. SSDP answers are unicast and pass
//! by the `In` flows; a service without `lan` or device reach gets no SSDP from the LAN.

use super::cookie::{self, DeviceRole, Role};
use super::{m_in, multicast, out, outputs, prio, table, DesiredFlow, KnownDevice, DEFAULT_QUEUE};
use crate::model::{Policy, Reach, Service};
use shg_flows::action::Instruction;
use shg_flows::field::Field;
use shg_flows::matches::Match;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The SSDP multicast group.
pub const SSDP_ADDR: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
/// The SSDP port.
pub const SSDP_PORT: u16 = 1900;

const BROADCAST: [u8; 6] = [0xff; 6];

/// The device type name in a UPnP device type URN: `MediaRenderer` for
/// `urn:schemas-upnp-org:device:MediaRenderer:1`; `None` for anything not of the form
/// `urn:DOMAIN:device:NAME[:VERSION]`.
pub fn device_type_name(urn: &str) -> Option<&str> {
    let mut parts = urn.split(':');
    let scheme = parts.next()?;
    let domain = parts.next()?;
    let kind = parts.next()?;
    let name = parts.next()?;
    let ok = scheme.eq_ignore_ascii_case("urn")
        && !domain.is_empty()
        && kind == "device"
        && !name.is_empty()
        && parts.next().is_none_or(|v| !v.is_empty())
        && parts.next().is_none();
    ok.then_some(name)
}

/// Whether the `device:` selector `sel` (a type name or `uuid:...`) selects `d`.
fn selects(sel: &str, d: &KnownDevice) -> bool {
    if sel.starts_with("uuid:") {
        d.udn.eq_ignore_ascii_case(sel)
    } else {
        d.device_types
            .iter()
            .any(|t| device_type_name(t) == Some(sel))
    }
}

/// What compile already worked out and the device flows need.
pub(super) struct Ctx<'a> {
    pub(super) policy: &'a Policy,
    /// Services with a port on the switch.
    pub(super) svcs: &'a [(&'a Service, u32)],
    /// The LAN ports on the switch.
    pub(super) lans: &'a [u32],
    /// LOCAL, when it takes part.
    pub(super) local: Option<u32>,
    pub(super) uplink: u32,
    /// Each port's broadcast/multicast scope (as table 2's `Flood` flows have it).
    pub(super) flood_of: &'a BTreeMap<u32, Vec<u32>>,
}

/// One (service, device address) pair the policy allows.
struct Grant<'a> {
    svc: &'a Service,
    port: u32,
    addr: Ipv4Addr,
    /// The smallest selected UDN at `addr`, lower case.
    udn: String,
    owner: u32,
}

fn flow(priority: u16, cookie: u64, r#match: Match, instructions: Vec<Instruction>) -> DesiredFlow {
    DesiredFlow {
        table_id: table::FORWARD,
        priority,
        cookie,
        r#match,
        instructions,
    }
}

fn ssdp_match(m: &mut Match) {
    multicast(m);
    m.set_u64(Field::EthType, 0x0800);
    m.set_u64(Field::IpProto, 17);
    m.set(Field::Ipv4Dst, &SSDP_ADDR.octets());
    m.set_u64(Field::UdpDst, u64::from(SSDP_PORT));
}

impl Ctx<'_> {
    fn flood(&self, port: u32) -> Vec<u32> {
        self.flood_of.get(&port).cloned().unwrap_or_default()
    }

    fn has_device_reach(s: &Service) -> bool {
        s.reach.iter().any(|r| matches!(r, Reach::Device(_)))
    }

    /// Each service's own SSDP scope (one flow per service).
    pub(super) fn ssdp_flows(&self) -> Vec<DesiredFlow> {
        let mut v = Vec::new();
        for &(s, port) in self.svcs {
            let mut scope: Vec<u32> = Vec::new();
            if s.reaches(&Reach::Lan) || Self::has_device_reach(s) {
                scope.extend_from_slice(self.lans);
            }
            scope.extend(
                self.svcs
                    .iter()
                    .filter(|(t, _)| self.policy.services_allowed(&s.name, &t.name))
                    .map(|(_, tp)| *tp),
            );
            if s.reaches(&Reach::Gateway) {
                scope.extend(self.local);
            }
            let mut m = m_in(port);
            ssdp_match(&mut m);
            // The uplink is never in the scope, so the queue is moot.
            let acts = outputs(&scope, self.uplink, s.queue).unwrap_or_default();
            v.push(flow(
                prio::SCOPED,
                cookie::make(Role::Flood, s.queue),
                m,
                acts,
            ));
        }
        v
    }

    /// The pairs the policy allows among the known devices, one per (service, address).
    fn grants<'a>(&'a self, known: &[KnownDevice], notes: &mut Vec<String>) -> Vec<Grant<'a>> {
        let svc_addrs: BTreeSet<Ipv4Addr> = self
            .svcs
            .iter()
            .flat_map(|(s, _)| s.ipv4.iter().copied())
            .collect();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut usable: Vec<&KnownDevice> = Vec::new();
        for d in known {
            if !seen.insert(d.udn.to_ascii_lowercase()) {
                continue;
            }
            let a = d.ipv4;
            if a.is_unspecified() || a.is_multicast() || a.is_broadcast() || a.is_loopback() {
                notes.push(format!(
                    "device {}: address {a} is not unicast; left out",
                    d.udn
                ));
            } else if svc_addrs.contains(&a) {
                notes.push(format!(
                    "device {}: address {a} belongs to a service; left out",
                    d.udn
                ));
            } else {
                usable.push(d);
            }
        }
        let mut pairs: BTreeMap<(usize, Ipv4Addr), String> = BTreeMap::new();
        for (i, &(s, _)) in self.svcs.iter().enumerate() {
            if s.reaches(&Reach::Lan) {
                continue;
            }
            let sels: Vec<&str> = s
                .reach
                .iter()
                .filter_map(|r| match r {
                    Reach::Device(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect();
            for d in &usable {
                if !sels.iter().any(|sel| selects(sel, d)) {
                    continue;
                }
                let udn = d.udn.to_ascii_lowercase();
                pairs
                    .entry((i, d.ipv4))
                    .and_modify(|u| {
                        if udn < *u {
                            u.clone_from(&udn);
                        }
                    })
                    .or_insert(udn);
            }
        }
        pairs
            .into_iter()
            .filter_map(|((i, addr), udn)| {
                self.svcs.get(i).map(|&(svc, port)| Grant {
                    svc,
                    port,
                    addr,
                    owner: cookie::device_owner(&udn),
                    udn,
                })
            })
            .collect()
    }

    /// The flows for every allowed (service, device) pair and every allowed device's SSDP.
    pub(super) fn flows(&self, known: &[KnownDevice], notes: &mut Vec<String>) -> Vec<DesiredFlow> {
        let grants = self.grants(known, notes);
        let mut v = Vec::new();
        if self.lans.is_empty() {
            if !grants.is_empty() {
                notes.push("device reach: the switch has no LAN port; no device flows".into());
            }
            return v;
        }
        let dev = cookie::make_device;
        for g in &grants {
            let a = g.addr.octets();
            let s = g.svc;
            let to_s = vec![Instruction::ApplyActions(vec![out(g.port)])];
            for &l in self.lans {
                let mut m = m_in(l);
                m.set(Field::EthDst, &s.mac);
                m.set_u64(Field::EthType, 0x0800);
                m.set(Field::Ipv4Src, &a);
                v.push(flow(
                    prio::DEVICE_IN,
                    dev(DeviceRole::In, g.owner),
                    m,
                    to_s.clone(),
                ));
                let mut m = m_in(l);
                m.set(Field::EthDst, &s.mac);
                m.set_u64(Field::EthType, 0x0806);
                m.set(Field::ArpSpa, &a);
                v.push(flow(
                    prio::DEVICE_IN,
                    dev(DeviceRole::In, g.owner),
                    m,
                    to_s.clone(),
                ));
                let mut scope = self.flood(l);
                scope.push(g.port);
                let acts = outputs(&scope, self.uplink, DEFAULT_QUEUE).unwrap_or_default();
                for ip in &s.ipv4 {
                    let mut m = m_in(l);
                    m.set(Field::EthDst, &BROADCAST);
                    m.set_u64(Field::EthType, 0x0806);
                    m.set(Field::ArpSpa, &a);
                    m.set(Field::ArpTpa, &ip.octets());
                    v.push(flow(
                        prio::SCOPED,
                        dev(DeviceRole::Arp, g.owner),
                        m,
                        acts.clone(),
                    ));
                }
            }
            let to_lan = outputs(self.lans, self.uplink, s.queue).unwrap_or_default();
            let mut m = m_in(g.port);
            m.set_u64(Field::EthType, 0x0800);
            m.set(Field::Ipv4Dst, &a);
            v.push(flow(
                prio::DEVICE_OUT,
                dev(DeviceRole::Out, g.owner),
                m,
                to_lan.clone(),
            ));
            let mut m = m_in(g.port);
            m.set_u64(Field::EthType, 0x0806);
            m.set(Field::ArpTpa, &a);
            v.push(flow(
                prio::DEVICE_OUT,
                dev(DeviceRole::Out, g.owner),
                m,
                to_lan,
            ));
            let mut scope = self.flood(g.port);
            scope.extend_from_slice(self.lans);
            let mut m = m_in(g.port);
            m.set(Field::EthDst, &BROADCAST);
            m.set_u64(Field::EthType, 0x0806);
            m.set(Field::ArpTpa, &a);
            let acts = outputs(&scope, self.uplink, s.queue).unwrap_or_default();
            v.push(flow(prio::SCOPED, dev(DeviceRole::Arp, g.owner), m, acts));
        }
        // SSDP from each allowed device address to the services allowed to reach it, owned
        // by the smallest UDN any service selected there.
        let mut by_addr: BTreeMap<Ipv4Addr, (&str, Vec<u32>)> = BTreeMap::new();
        for g in &grants {
            let e = by_addr.entry(g.addr).or_insert((&g.udn, Vec::new()));
            if g.udn.as_str() < e.0 {
                e.0 = &g.udn;
            }
            e.1.push(g.port);
        }
        for (addr, (udn, ports)) in &by_addr {
            let owner = cookie::device_owner(udn);
            for &l in self.lans {
                let mut m = m_in(l);
                ssdp_match(&mut m);
                m.set(Field::Ipv4Src, &addr.octets());
                let mut scope = self.flood(l);
                scope.extend_from_slice(ports);
                let acts = outputs(&scope, self.uplink, DEFAULT_QUEUE).unwrap_or_default();
                v.push(flow(prio::SCOPED, dev(DeviceRole::Ssdp, owner), m, acts));
            }
        }
        v
    }
}
