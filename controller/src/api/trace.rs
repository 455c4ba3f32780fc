//! `trace`: what the installed pipeline does with a packet from a service to a destination, table by table. Pure.
//!
//! A probe packet is built from the policy (the service's port, MAC and first address; the
//! destination service's MAC and address, or an unknown unicast MAC for `wan`, `lan` and
//! `gateway`, which is how the first packet to a next hop looks), the flows the switch
//! reported are loaded into shg-flows' own `FlowTables`, and the packet walks them: each table
//! hit (priority, planner role, match, instructions), the meters, the queue it is put in, the
//! ports it leaves by and whether it reaches the destination.

use super::stats::resolve_port;
use crate::model::{Policy, Service};
use crate::planner::pipeline::cookie;
use crate::planner::Observed;
use serde::Serialize;
use shg_flows::action::{port as ofport, Action, Instruction};
use shg_flows::field::{Field, FlowKey};
use shg_flows::mods::{FlowMod, FlowModCommand};
use shg_flows::table::FlowTables;
use shg_flows::text::{format_instructions, format_match};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Destination MAC of the probe for non-service destinations: a unicast address no service
/// has (a next hop the switch has not learnt).
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0xff, 0xff, 0xfe];
/// Destination address of a `wan` probe (TEST-NET-3).
pub const WAN_PROBE_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// Where the probe goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Wan,
    Lan,
    Gateway,
    Service(String),
}

impl Destination {
    /// `wan`, `lan`, `gateway`, or a service name.
    pub fn parse(s: &str, policy: &Policy) -> Result<Destination, String> {
        match s {
            "wan" => Ok(Destination::Wan),
            "lan" => Ok(Destination::Lan),
            "gateway" => Ok(Destination::Gateway),
            other if policy.services.contains_key(other) => {
                Ok(Destination::Service(other.to_string()))
            }
            other => Err(format!(
                "destination {other:?} is not wan, lan, gateway or a service name"
            )),
        }
    }

    fn name(&self) -> String {
        match self {
            Destination::Wan => "wan".into(),
            Destination::Lan => "lan".into(),
            Destination::Gateway => "gateway".into(),
            Destination::Service(s) => s.clone(),
        }
    }
}

/// One table's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceStepView {
    pub table: u8,
    /// The matched flow's priority (`None`: no flow matched, the packet is dropped).
    pub priority: Option<u16>,
    pub cookie: Option<String>,
    /// The planner role of the flow (`spoof_allow`, `unicast`, `deny`, ...), or `foreign`.
    pub rule: String,
    pub r#match: String,
    pub instructions: String,
}

/// `GET /v1/trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceReport {
    pub service: String,
    pub destination: String,
    pub in_port: u32,
    /// The probe, in ovs-ofctl match syntax.
    pub packet: String,
    pub steps: Vec<TraceStepView>,
    pub meters: Vec<u32>,
    /// The egress queue chosen by `set_queue` (if any).
    pub queue: Option<u32>,
    /// Ports the packet leaves by, named (`uplink`, `lan:2`, `LOCAL`, a service name).
    pub outputs: Vec<String>,
    /// `forwarded` (it reaches the destination) or `dropped` (it does not).
    pub verdict: String,
    /// Why, in words.
    pub reason: String,
}

/// Why a trace could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceError {
    /// Unknown service or destination (400/404).
    NotFound(String),
    BadRequest(String),
    /// The switch was never read back, or a port name is not on it (503).
    Unavailable(String),
}

fn mac_u64(m: &[u8; 6]) -> u64 {
    m.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b))
}

/// Loads reported flows into fresh tables (flows the tables refuse are skipped).
pub fn tables_of(observed: &Observed) -> FlowTables {
    let mut top = 2u8;
    for f in &observed.flows {
        top = top.max(f.table_id);
        for i in &f.instructions {
            if let Instruction::GotoTable(t) = i {
                top = top.max(*t);
            }
        }
    }
    let mut t = FlowTables::new(top.saturating_add(1).min(254));
    for f in &observed.flows {
        let fm = FlowMod {
            cookie: f.cookie,
            table_id: f.table_id,
            command: FlowModCommand::Add,
            priority: f.priority,
            flags: f.flags,
            r#match: f.r#match,
            instructions: f.instructions.clone(),
            ..FlowMod::default()
        };
        let _ = t.apply_flow_mod(&fm, 0);
    }
    t
}

fn port_names(policy: &Policy, ports: &BTreeMap<String, u32>) -> BTreeMap<u32, String> {
    let mut m = BTreeMap::new();
    m.insert(ofport::LOCAL, "LOCAL".to_string());
    if let Some(n) = resolve_port(&policy.gateway.uplink.port, ports) {
        m.insert(n, "uplink".into());
    }
    for p in &policy.gateway.lan {
        if let Some(n) = resolve_port(p, ports) {
            m.insert(n, format!("lan:{n}"));
        }
    }
    for s in policy.services.values() {
        if let Some(n) = resolve_port(&s.port, ports) {
            m.insert(n, s.name.clone());
        }
    }
    m
}

fn set_ip(key: &mut FlowKey, text: &mut Vec<String>, src: Option<IpAddr>, dst: IpAddr) {
    match (src, dst) {
        (Some(IpAddr::V6(s)), d) => {
            let d6 = match d {
                IpAddr::V6(d) => d,
                IpAddr::V4(d) => d.to_ipv6_mapped(),
            };
            key.set_u64(Field::EthType, 0x86dd);
            key.set(Field::Ipv6Src, &s.octets());
            key.set(Field::Ipv6Dst, &d6.octets());
            key.set_u64(Field::IpProto, 6);
            key.set_u64(Field::TcpDst, 443);
            text.push(format!("tcp6,ipv6_src={s},ipv6_dst={d6},tp_dst=443"));
        }
        (s, d) => {
            let s4 = match s {
                Some(IpAddr::V4(s)) => s,
                _ => Ipv4Addr::UNSPECIFIED,
            };
            let d4 = match d {
                IpAddr::V4(d) => d,
                IpAddr::V6(_) => WAN_PROBE_V4,
            };
            key.set_u64(Field::EthType, 0x0800);
            key.set(Field::Ipv4Src, &s4.octets());
            key.set(Field::Ipv4Dst, &d4.octets());
            key.set_u64(Field::IpProto, 6);
            key.set_u64(Field::TcpDst, 443);
            text.push(format!("tcp,nw_src={s4},nw_dst={d4},tp_dst=443"));
        }
    }
}

fn first_addr(s: &Service) -> Option<IpAddr> {
    s.ipv4
        .first()
        .map(|a| IpAddr::V4(*a))
        .or_else(|| s.ipv6.first().map(|a| IpAddr::V6(*a)))
}

/// Traces a probe from `service` to `dest` through the flows in `observed`.
pub fn trace(
    policy: &Policy,
    observed: &Observed,
    service: &str,
    dest: &Destination,
) -> Result<TraceReport, TraceError> {
    let s = policy
        .services
        .get(service)
        .ok_or_else(|| TraceError::NotFound(format!("no service {service:?}")))?;
    let in_port = resolve_port(&s.port, &observed.ports).ok_or_else(|| {
        TraceError::Unavailable(format!("port {} of {service} is not on the switch", s.port))
    })?;
    let (dst_mac, dst_ip, want): (_, IpAddr, Vec<u32>) = match dest {
        Destination::Service(t) => {
            let t = policy
                .services
                .get(t)
                .ok_or_else(|| TraceError::NotFound(format!("no service {t:?}")))?;
            let ip = first_addr(t).unwrap_or(IpAddr::V4(WAN_PROBE_V4));
            let port = resolve_port(&t.port, &observed.ports);
            (t.mac, ip, port.into_iter().collect())
        }
        Destination::Wan => (
            NEXT_HOP_MAC,
            IpAddr::V4(WAN_PROBE_V4),
            resolve_port(&policy.gateway.uplink.port, &observed.ports)
                .into_iter()
                .collect(),
        ),
        Destination::Lan => (
            NEXT_HOP_MAC,
            IpAddr::V4(Ipv4Addr::new(198, 18, 255, 1)),
            policy
                .gateway
                .lan
                .iter()
                .filter_map(|p| resolve_port(p, &observed.ports))
                .collect(),
        ),
        Destination::Gateway => (
            NEXT_HOP_MAC,
            IpAddr::V4(Ipv4Addr::new(198, 18, 255, 2)),
            vec![ofport::LOCAL],
        ),
    };
    let dst_ip = match (first_addr(s), dst_ip) {
        (Some(IpAddr::V6(_)), IpAddr::V4(_)) => {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10))
        }
        (_, d) => d,
    };
    let mut key = FlowKey::default();
    key.set_u64(Field::InPort, u64::from(in_port));
    key.set_u64(Field::EthSrc, mac_u64(&s.mac));
    key.set_u64(Field::EthDst, mac_u64(&dst_mac));
    let mut text = vec![
        format!("in_port={in_port}"),
        format!("dl_src={}", crate::model::format_mac(&s.mac)),
        format!("dl_dst={}", crate::model::format_mac(&dst_mac)),
    ];
    set_ip(&mut key, &mut text, first_addr(s), dst_ip);
    let mut tables = tables_of(observed);
    let res = tables.lookup(&key, 100, 0);
    let names = port_names(policy, &observed.ports);
    let mut steps = Vec::new();
    let mut last_rule = "miss".to_string();
    for st in &res.trace {
        let view = match &st.hit {
            Some(h) => {
                let rule = cookie::rule_name(h.cookie).map_or_else(
                    || "foreign".to_string(),
                    |(name, owner)| format!("{name} (owner {owner})"),
                );
                last_rule = rule.clone();
                TraceStepView {
                    table: st.table_id,
                    priority: Some(h.priority),
                    cookie: Some(format!("0x{:x}", h.cookie)),
                    rule,
                    r#match: format_match(&h.r#match),
                    instructions: format_instructions(&h.instructions),
                }
            }
            None => {
                last_rule = "no flow matched".into();
                TraceStepView {
                    table: st.table_id,
                    priority: None,
                    cookie: None,
                    rule: "none".into(),
                    r#match: String::new(),
                    instructions: "drop (table miss)".into(),
                }
            }
        };
        steps.push(view);
    }
    let mut queue = None;
    let mut out_ports = Vec::new();
    for a in &res.actions {
        match a {
            Action::SetQueue(q) => queue = Some(*q),
            Action::Output { port, .. } => out_ports.push(*port),
            _ => {}
        }
    }
    let outputs: Vec<String> = out_ports
        .iter()
        .map(|p| names.get(p).cloned().unwrap_or_else(|| format!("port {p}")))
        .collect();
    let reaches = out_ports.iter().any(|p| want.contains(p));
    let (verdict, reason) = if reaches {
        (
            "forwarded",
            format!(
                "leaves by {}{}",
                outputs.join(", "),
                queue.map_or_else(String::new, |q| format!(" in queue {q}"))
            ),
        )
    } else if out_ports.is_empty() {
        ("dropped", format!("dropped by the {last_rule} flow"))
    } else {
        (
            "dropped",
            format!(
                "not sent towards {} (leaves only by {})",
                dest.name(),
                outputs.join(", ")
            ),
        )
    };
    Ok(TraceReport {
        service: service.to_string(),
        destination: dest.name(),
        in_port,
        packet: text.join(","),
        steps,
        meters: res.meters.clone(),
        queue,
        outputs,
        verdict: verdict.into(),
        reason,
    })
}
