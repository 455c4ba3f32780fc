//! Action and instruction text: the `actions=...` part of a flow, as ovs-ofctl parses it
//! for OpenFlow 1.3 and as `ovs-ofctl ofp-print` prints it.
//!
//! Parsing tracks what the packet looks like after each action (ethertype, VLAN tag, IP
//! protocol), starting from the match, as OVS does: `mod_vlan_vid` on an untagged flow
//! becomes `push_vlan:0x8100,set_field:...->vlan_vid`, and an action whose prerequisite is
//! missing (`dec_ttl` without `ip`, `pop_vlan` without a tag, `set_field` of `tcp_dst`
//! without `tcp`) is `OFPBAC_MATCH_INCONSISTENT`. Instructions must come in the OF1.1+
//! order ovs-ofctl requires: meter, apply actions, clear_actions, write_actions,
//! write_metadata, goto_table. Printing puts instructions in that same order.
//!
//! `copy_ttl_out`, `copy_ttl_in`, `push_pbb:E` and `pop_pbb` are OF1.3 actions Open vSwitch
//! does not implement; they are accepted and printed under those names.

use super::flow::{
    c_hex, exact, parse_field_value, syntax, Syntax, ETH_ARP, ETH_IP, ETH_IPV6, ETH_MPLS,
    ETH_MPLSM, ETH_PBB, ETH_RARP,
};
use super::value::{
    be_u64, format_ipv4_masked, format_ipv6, format_mac, format_port, parse_mac, parse_port,
    parse_uint, parse_uint_max, split_mask,
};
use super::{split_kv, Kv};
use crate::action::{port, Action, Instruction, OFPCML_NO_BUFFER};
use crate::error::{BadActionCode, BadInstructionCode, Error, Result};
use crate::field::{Field, OFPVID_PRESENT};
use crate::matches::Match;

/// What the packet is known to look like at some point of the action list.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PacketState {
    eth: Option<u16>,
    vlan: bool,
    proto: Option<u8>,
    icmp_type: Option<u8>,
    /// No match to check against (group buckets): every prerequisite is assumed met.
    unchecked: bool,
}

impl PacketState {
    /// The state a match guarantees.
    pub(crate) fn from_match(m: &Match) -> PacketState {
        let vlan = m
            .get(Field::VlanVid)
            .is_some_and(|(v, mk)| be_u64(v) & be_u64(mk) & u64::from(OFPVID_PRESENT) != 0);
        let to8 = |v: Option<u64>| v.and_then(|v| u8::try_from(v).ok());
        let icmp_type = to8(exact(m, Field::Icmpv6Type)).or(to8(exact(m, Field::Icmpv4Type)));
        PacketState {
            eth: exact(m, Field::EthType).and_then(|v| u16::try_from(v).ok()),
            vlan,
            proto: to8(exact(m, Field::IpProto)),
            icmp_type,
            unchecked: false,
        }
    }

    /// The state of a group bucket: nothing known, nothing checked (as ovs-ofctl does not
    /// check bucket actions against any match).
    pub(crate) fn unchecked() -> PacketState {
        PacketState {
            unchecked: true,
            ..PacketState::default()
        }
    }

    fn ip(&self) -> bool {
        matches!(self.eth, Some(ETH_IP | ETH_IPV6))
    }

    fn mpls(&self) -> bool {
        matches!(self.eth, Some(ETH_MPLS | ETH_MPLSM))
    }

    /// Whether `set_field` of `f` makes sense for this packet.
    fn can_set(&self, f: Field) -> bool {
        use Field as F;
        let v6 = self.eth == Some(ETH_IPV6);
        if self.unchecked {
            return true;
        }
        match f {
            F::VlanVid | F::VlanPcp => self.vlan,
            F::IpDscp | F::IpEcn | F::IpProto => self.ip(),
            F::Ipv4Src | F::Ipv4Dst => self.eth == Some(ETH_IP),
            F::TcpSrc | F::TcpDst => self.ip() && self.proto == Some(6),
            F::UdpSrc | F::UdpDst => self.ip() && self.proto == Some(17),
            F::SctpSrc | F::SctpDst => self.ip() && self.proto == Some(132),
            F::Icmpv4Type | F::Icmpv4Code => self.eth == Some(ETH_IP) && self.proto == Some(1),
            F::ArpOp | F::ArpSpa | F::ArpTpa | F::ArpSha | F::ArpTha => {
                matches!(self.eth, Some(ETH_ARP | ETH_RARP))
            }
            F::Ipv6Src | F::Ipv6Dst | F::Ipv6Flabel | F::Ipv6Exthdr => v6,
            F::Icmpv6Type | F::Icmpv6Code => v6 && self.proto == Some(58),
            F::Ipv6NdTarget => {
                v6 && self.proto == Some(58) && matches!(self.icmp_type, Some(135 | 136))
            }
            F::Ipv6NdSll => v6 && self.proto == Some(58) && self.icmp_type == Some(135),
            F::Ipv6NdTll => v6 && self.proto == Some(58) && self.icmp_type == Some(136),
            F::MplsLabel | F::MplsTc | F::MplsBos => self.mpls(),
            F::PbbIsid => self.eth == Some(ETH_PBB),
            _ => true,
        }
    }
}

/// `set_field` names: (name printed by ovs-ofctl, other accepted names, field).
const SET_FIELD_NAMES: [(&str, &[&str], Field); 40] = [
    ("in_port", &[], Field::InPort),
    ("in_phy_port", &[], Field::InPhyPort),
    ("metadata", &[], Field::Metadata),
    ("eth_dst", &["dl_dst"], Field::EthDst),
    ("eth_src", &["dl_src"], Field::EthSrc),
    ("eth_type", &["dl_type"], Field::EthType),
    ("vlan_vid", &[], Field::VlanVid),
    ("vlan_pcp", &["dl_vlan_pcp"], Field::VlanPcp),
    ("ip_dscp", &[], Field::IpDscp),
    ("nw_ecn", &["ip_ecn"], Field::IpEcn),
    ("nw_proto", &["ip_proto"], Field::IpProto),
    ("ip_src", &["nw_src", "ipv4_src"], Field::Ipv4Src),
    ("ip_dst", &["nw_dst", "ipv4_dst"], Field::Ipv4Dst),
    ("tcp_src", &["tp_src"], Field::TcpSrc),
    ("tcp_dst", &["tp_dst"], Field::TcpDst),
    ("udp_src", &[], Field::UdpSrc),
    ("udp_dst", &[], Field::UdpDst),
    ("sctp_src", &[], Field::SctpSrc),
    ("sctp_dst", &[], Field::SctpDst),
    ("icmp_type", &["icmpv4_type"], Field::Icmpv4Type),
    ("icmp_code", &["icmpv4_code"], Field::Icmpv4Code),
    ("arp_op", &[], Field::ArpOp),
    ("arp_spa", &[], Field::ArpSpa),
    ("arp_tpa", &[], Field::ArpTpa),
    ("arp_sha", &[], Field::ArpSha),
    ("arp_tha", &[], Field::ArpTha),
    ("ipv6_src", &[], Field::Ipv6Src),
    ("ipv6_dst", &[], Field::Ipv6Dst),
    ("ipv6_label", &["ipv6_flabel"], Field::Ipv6Flabel),
    ("icmpv6_type", &[], Field::Icmpv6Type),
    ("icmpv6_code", &[], Field::Icmpv6Code),
    ("nd_target", &["ipv6_nd_target"], Field::Ipv6NdTarget),
    ("nd_sll", &["ipv6_nd_sll"], Field::Ipv6NdSll),
    ("nd_tll", &["ipv6_nd_tll"], Field::Ipv6NdTll),
    ("mpls_label", &[], Field::MplsLabel),
    ("mpls_tc", &[], Field::MplsTc),
    ("mpls_bos", &[], Field::MplsBos),
    ("pbb_isid", &[], Field::PbbIsid),
    ("tun_id", &["tunnel_id"], Field::TunnelId),
    ("ipv6_exthdr", &[], Field::Ipv6Exthdr),
];

fn set_field_by_name(name: &str) -> Option<Field> {
    SET_FIELD_NAMES
        .iter()
        .find(|(n, alt, _)| *n == name || alt.contains(&name))
        .map(|(_, _, f)| *f)
}

fn set_field_name(f: Field) -> Option<&'static str> {
    SET_FIELD_NAMES
        .iter()
        .find(|(_, _, g)| *g == f)
        .map(|(n, _, _)| *n)
}

/// Formats a set_field value as ovs `mf_format` does for that field.
fn format_field_value(f: Field, v: &[u8]) -> String {
    use Field as F;
    match syntax(f) {
        Syntax::Port => format_port(u32::try_from(be_u64(v)).unwrap_or(u32::MAX)),
        Syntax::Mac => format_mac(v),
        Syntax::Ipv4 => format_ipv4_masked(v, &[0xff; 4]),
        Syntax::Ipv6 => format_ipv6(v),
        Syntax::Int => match f {
            F::Metadata | F::TunnelId | F::EthType | F::Ipv6Flabel | F::PbbIsid | F::Ipv6Exthdr => {
                c_hex(be_u64(v))
            }
            _ => be_u64(v).to_string(),
        },
    }
}

fn bad_arg(detail: String, off: usize) -> Error {
    Error::bad_action(BadActionCode::BadArgument, detail).at(off)
}

fn inconsistent(detail: String, off: usize) -> Error {
    Error::bad_action(BadActionCode::MatchInconsistent, detail).at(off)
}

fn num<T: TryFrom<u64>>(kv: &Kv<'_>, max: u64) -> Result<T> {
    parse_uint_max(kv.value, max)
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| {
            bad_arg(
                format!("{}: invalid argument `{}`", kv.key, kv.value),
                kv.val_off,
            )
        })
}

fn ethertype(kv: &Kv<'_>, allowed: &[u16]) -> Result<u16> {
    let e: u16 = num(kv, 0xffff)?;
    if !allowed.is_empty() && !allowed.contains(&e) {
        let list: Vec<String> = allowed.iter().map(|a| format!("{a:#06x}")).collect();
        return Err(bad_arg(
            format!("{}: ethertype must be {}", kv.key, list.join(" or ")),
            kv.val_off,
        ));
    }
    Ok(e)
}

/// Parses one action into `out`, updating `st`.
pub(crate) fn parse_action(kv: &Kv<'_>, st: &mut PacketState, out: &mut Vec<Action>) -> Result<()> {
    let key = kv.key;
    let unchecked = st.unchecked;
    let need = |ok: bool, what: &str| {
        if ok || unchecked {
            Ok(())
        } else {
            Err(inconsistent(
                format!("{key} requires {what} in the match or an earlier action"),
                kv.key_off,
            ))
        }
    };
    let set = |st: &PacketState, out: &mut Vec<Action>, f: Field, value: Vec<u8>| {
        if !st.can_set(f) {
            let n = set_field_name(f).unwrap_or("?");
            return Err(inconsistent(
                format!("{key}: setting {n} lacks correct prerequisites"),
                kv.key_off,
            ));
        }
        out.push(Action::SetField { field: f, value });
        Ok(())
    };
    let lkey = key.to_ascii_lowercase();
    match lkey.as_str() {
        "output" => {
            let p = parse_port(kv.value).ok_or_else(|| {
                Error::bad_action(
                    BadActionCode::BadOutPort,
                    format!("{}: output to unknown port", kv.value),
                )
                .at(kv.val_off)
            })?;
            if p == port::ANY {
                return Err(Error::bad_action(
                    BadActionCode::BadOutPort,
                    "output to ANY is not allowed",
                )
                .at(kv.val_off));
            }
            let max_len = if p == port::CONTROLLER {
                OFPCML_NO_BUFFER
            } else {
                0
            };
            out.push(Action::Output { port: p, max_len });
        }
        "controller" => {
            let mut max_len = OFPCML_NO_BUFFER;
            match kv.delim {
                Some('(') => {
                    for sub in split_kv(kv.value, kv.val_off) {
                        match sub.key {
                            "max_len" => max_len = num(&sub, 0xffff)?,
                            "reason" if sub.value == "action" => {}
                            "id" if parse_uint(sub.value) == Some(0) => {}
                            _ => {
                                return Err(bad_arg(
                                    format!(
                                        "controller: `{}` is not expressible in OpenFlow 1.3",
                                        sub.key
                                    ),
                                    sub.key_off,
                                ))
                            }
                        }
                    }
                }
                Some(_) => max_len = num(kv, 0xffff)?,
                None => {}
            }
            out.push(Action::Output {
                port: port::CONTROLLER,
                max_len,
            });
        }
        "set_queue" => out.push(Action::SetQueue(num(kv, u64::from(u32::MAX))?)),
        "group" => out.push(Action::Group(num(kv, u64::from(u32::MAX))?)),
        "push_vlan" => {
            out.push(Action::PushVlan(ethertype(kv, &[0x8100, 0x88a8])?));
            st.vlan = true;
        }
        "pop_vlan" | "strip_vlan" => {
            need(st.vlan, "a VLAN tag")?;
            out.push(Action::PopVlan);
            st.vlan = false;
        }
        "push_mpls" => {
            let e = ethertype(kv, &[ETH_MPLS, ETH_MPLSM])?;
            out.push(Action::PushMpls(e));
            st.eth = Some(e);
            st.proto = None;
        }
        "pop_mpls" => {
            let e = ethertype(kv, &[])?;
            need(st.mpls(), "mpls")?;
            out.push(Action::PopMpls(e));
            st.eth = Some(e);
        }
        "set_mpls_ttl" => {
            need(st.mpls(), "mpls")?;
            out.push(Action::SetMplsTtl(num(kv, 0xff)?));
        }
        "dec_mpls_ttl" => {
            need(st.mpls(), "mpls")?;
            out.push(Action::DecMplsTtl);
        }
        "mod_nw_ttl" | "set_nw_ttl" => {
            need(st.ip(), "ip or ipv6")?;
            out.push(Action::SetNwTtl(num(kv, 0xff)?));
        }
        "dec_ttl" => {
            if !kv.value.is_empty() {
                return Err(bad_arg(
                    "dec_ttl with controller ids is not expressible in OpenFlow 1.3".into(),
                    kv.val_off,
                ));
            }
            need(st.ip(), "ip or ipv6")?;
            out.push(Action::DecNwTtl);
        }
        "copy_ttl_out" => out.push(Action::CopyTtlOut),
        "copy_ttl_in" => out.push(Action::CopyTtlIn),
        "push_pbb" => {
            let e = ethertype(kv, &[ETH_PBB])?;
            out.push(Action::PushPbb(e));
            st.eth = Some(e);
            st.proto = None;
        }
        "pop_pbb" => {
            need(st.eth == Some(ETH_PBB), "dl_type=0x88e7")?;
            out.push(Action::PopPbb);
        }
        "set_field" => {
            let Some((v, name)) = kv.value.rsplit_once("->") else {
                return Err(Error::bad_action(
                    BadActionCode::BadSetArgument,
                    "set_field: missing `->`",
                )
                .at(kv.val_off));
            };
            let name_off = kv.val_off + v.len() + 2;
            let f = set_field_by_name(name).ok_or_else(|| {
                Error::bad_action(
                    BadActionCode::BadSetType,
                    format!("set_field: unknown field {name}"),
                )
                .at(name_off)
            })?;
            if v.contains('/') {
                return Err(Error::bad_action(
                    BadActionCode::BadSetArgument,
                    "set_field: a masked set_field is not expressible in OpenFlow 1.3",
                )
                .at(kv.val_off));
            }
            let (val, _) = parse_field_value(f, name, v, kv.val_off, false).map_err(|e| {
                Error::bad_action(BadActionCode::BadSetArgument, e.detail).at(kv.val_off)
            })?;
            if f == Field::VlanVid && be_u64(&val) & u64::from(OFPVID_PRESENT) == 0 {
                return Err(Error::bad_action(
                    BadActionCode::BadSetArgument,
                    format!("set_field: vlan_vid {v} lacks OFPVID_PRESENT (0x1000)"),
                )
                .at(kv.val_off));
            }
            set(st, out, f, val)?;
        }
        "mod_vlan_vid" | "mod_vlan_pcp" => {
            let pcp = key == "mod_vlan_pcp";
            let v: u16 = num(kv, if pcp { 7 } else { 0x0fff })?;
            if !st.vlan {
                out.push(Action::PushVlan(0x8100));
                st.vlan = true;
            }
            if pcp {
                out.push(Action::SetField {
                    field: Field::VlanPcp,
                    value: vec![u8::try_from(v).unwrap_or(0)],
                });
            } else {
                out.push(Action::SetField {
                    field: Field::VlanVid,
                    value: (v | OFPVID_PRESENT).to_be_bytes().to_vec(),
                });
            }
        }
        "mod_dl_src" | "mod_dl_dst" => {
            let mac = parse_mac(kv.value).ok_or_else(|| {
                bad_arg(
                    format!("{key}: invalid Ethernet address {}", kv.value),
                    kv.val_off,
                )
            })?;
            let f = if key == "mod_dl_src" {
                Field::EthSrc
            } else {
                Field::EthDst
            };
            set(st, out, f, mac.to_vec())?;
        }
        "mod_nw_src" | "mod_nw_dst" => {
            let a: std::net::Ipv4Addr = kv.value.parse().map_err(|_| {
                bad_arg(
                    format!("{key}: invalid IP address {}", kv.value),
                    kv.val_off,
                )
            })?;
            let f = if key == "mod_nw_src" {
                Field::Ipv4Src
            } else {
                Field::Ipv4Dst
            };
            set(st, out, f, a.octets().to_vec())?;
        }
        "mod_nw_tos" => {
            let v: u8 = num(kv, 0xff)?;
            if v & 3 != 0 {
                return Err(bad_arg(
                    format!("{}: not a valid TOS", kv.value),
                    kv.val_off,
                ));
            }
            set(st, out, Field::IpDscp, vec![v >> 2])?;
        }
        "mod_nw_ecn" => {
            let v: u8 = num(kv, 3)?;
            set(st, out, Field::IpEcn, vec![v])?;
        }
        "mod_tp_src" | "mod_tp_dst" => {
            let v: u16 = num(kv, 0xffff)?;
            let dst = key == "mod_tp_dst";
            let f = match (st.ip(), st.proto) {
                (true, Some(6)) => [Field::TcpSrc, Field::TcpDst],
                (true, Some(17)) => [Field::UdpSrc, Field::UdpDst],
                (true, Some(132)) => [Field::SctpSrc, Field::SctpDst],
                _ => {
                    return Err(inconsistent(
                        format!("{key} requires tcp, udp or sctp"),
                        kv.key_off,
                    ))
                }
            }[usize::from(dst)];
            set(st, out, f, v.to_be_bytes().to_vec())?;
        }
        _ => {
            // A bare port: `2`, `LOCAL`, `in_port`, `normal`...
            if kv.value.is_empty() && kv.delim.is_none() {
                if let Some(p) = parse_port(key).filter(|p| *p != port::ANY) {
                    let max_len = if p == port::CONTROLLER {
                        OFPCML_NO_BUFFER
                    } else {
                        0
                    };
                    out.push(Action::Output { port: p, max_len });
                    return Ok(());
                }
            }
            return Err(
                Error::bad_action(BadActionCode::BadType, format!("unknown action {key}"))
                    .at(kv.key_off),
            );
        }
    }
    Ok(())
}

fn parse_action_items(items: &[Kv<'_>], st: &mut PacketState) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    for kv in items {
        if kv.key == "drop" {
            if items.len() > 1 {
                return Err(bad_arg(
                    "\"drop\" must not be accompanied by any other action".into(),
                    kv.key_off,
                ));
            }
            continue;
        }
        parse_action(kv, st, &mut out)?;
    }
    Ok(out)
}

/// Parses an action list (a group bucket or `write_actions(...)`), where `m` is the match
/// whose packets the actions see. `base` is the offset of `s` in the whole text.
pub(crate) fn parse_actions_at(s: &str, base: usize, st: &mut PacketState) -> Result<Vec<Action>> {
    parse_action_items(&split_kv(s, base), st)
}

/// Parses a plain action list, e.g. a group bucket's `output:1,set_queue:2`, for packets
/// matched by `m` (use [`Match::any`] when nothing is known).
pub fn parse_actions(s: &str, m: &Match) -> Result<Vec<Action>> {
    parse_actions_at(s, 0, &mut PacketState::from_match(m))
}

/// Parses the instruction list of a flow (`meter:1,output:2,goto_table:3`) for packets
/// matched by `m` in table `table` (for the goto_table check; `None` when unknown).
pub fn parse_instructions(s: &str, m: &Match, table: Option<u8>) -> Result<Vec<Instruction>> {
    parse_instructions_at(s, 0, m, table)
}

const STAGES: [&str; 6] = [
    "meter",
    "apply_actions",
    "clear_actions",
    "write_actions",
    "write_metadata",
    "goto_table",
];

pub(crate) fn parse_instructions_at(
    s: &str,
    base: usize,
    m: &Match,
    table: Option<u8>,
) -> Result<Vec<Instruction>> {
    let items = split_kv(s, base);
    let mut st = PacketState::from_match(m);
    let mut slots: [Option<Instruction>; 6] = Default::default();
    let mut apply = Vec::new();
    let mut stage = 0usize;
    let has_drop = items.iter().any(|k| k.key == "drop");
    if has_drop && items.len() > 1 {
        let off = items
            .iter()
            .find(|k| k.key == "drop")
            .map_or(base, |k| k.key_off);
        return Err(bad_arg(
            "\"drop\" must not be accompanied by any other action or instruction".into(),
            off,
        ));
    }
    for kv in &items {
        let (slot, inst) = match kv.key {
            "drop" => continue,
            "meter" => (0, Instruction::Meter(num(kv, u64::from(u32::MAX))?)),
            "clear_actions" => (2, Instruction::ClearActions),
            "write_actions" => {
                let mut ws = st;
                (
                    3,
                    Instruction::WriteActions(parse_actions_at(kv.value, kv.val_off, &mut ws)?),
                )
            }
            "write_metadata" => {
                let (v, mk) = split_mask(kv.value);
                let bad = || {
                    Error::bad_instruction(
                        BadInstructionCode::UnsupMetadata,
                        format!("write_metadata: invalid value {}", kv.value),
                    )
                    .at(kv.val_off)
                };
                let metadata = parse_uint(v).ok_or_else(bad)?;
                let mask = match mk {
                    None => u64::MAX,
                    Some(mk) => parse_uint(mk).ok_or_else(bad)?,
                };
                (4, Instruction::WriteMetadata { metadata, mask })
            }
            "goto_table" => {
                let t: u8 = parse_uint_max(kv.value, 0xfe)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| {
                        Error::bad_instruction(
                            BadInstructionCode::BadTableId,
                            format!("goto_table: invalid table {}", kv.value),
                        )
                        .at(kv.val_off)
                    })?;
                if t <= table.unwrap_or(0) {
                    return Err(Error::bad_instruction(
                        BadInstructionCode::BadTableId,
                        format!(
                            "goto_table:{t} must go to a later table than {}",
                            table.unwrap_or(0)
                        ),
                    )
                    .at(kv.key_off));
                }
                (5, Instruction::GotoTable(t))
            }
            _ => {
                if stage > 1 {
                    return Err(order_err(1, stage, kv.key_off));
                }
                stage = 1;
                parse_action(kv, &mut st, &mut apply)?;
                continue;
            }
        };
        if slot < stage || slots[slot].is_some() {
            if slots[slot].is_some() {
                return Err(Error::bad_instruction(
                    BadInstructionCode::UnsupInst,
                    format!("instruction {} may be specified only once", STAGES[slot]),
                )
                .at(kv.key_off));
            }
            return Err(order_err(slot, stage, kv.key_off));
        }
        stage = slot;
        slots[slot] = Some(inst);
    }
    let mut out = Vec::new();
    let [meter, _, clear, write, meta, goto] = slots;
    out.extend(meter);
    if !apply.is_empty() {
        out.push(Instruction::ApplyActions(apply));
    }
    out.extend(clear);
    out.extend(write);
    out.extend(meta);
    out.extend(goto);
    Ok(out)
}

fn order_err(this: usize, seen: usize, off: usize) -> Error {
    Error::bad_instruction(
        BadInstructionCode::UnsupInst,
        format!(
            "invalid instruction ordering: {} must appear before {}, for OpenFlow 1.1+ compatibility",
            STAGES[this], STAGES[seen]
        ),
    )
    .at(off)
}

/// Formats one action as `ovs-ofctl ofp-print` does.
pub fn format_action(a: &Action) -> String {
    match a {
        Action::Output { port: p, max_len } => {
            if *p == port::CONTROLLER {
                format!("CONTROLLER:{max_len}")
            } else if *p < port::MAX {
                format!("output:{p}")
            } else {
                format_port(*p)
            }
        }
        Action::CopyTtlOut => "copy_ttl_out".into(),
        Action::CopyTtlIn => "copy_ttl_in".into(),
        Action::SetMplsTtl(t) => format!("set_mpls_ttl({t})"),
        Action::DecMplsTtl => "dec_mpls_ttl".into(),
        Action::PushVlan(e) => format!("push_vlan:{e:#x}"),
        Action::PopVlan => "pop_vlan".into(),
        Action::PushMpls(e) => format!("push_mpls:{e:#x}"),
        Action::PopMpls(e) => format!("pop_mpls:0x{e:04x}"),
        Action::SetQueue(q) => format!("set_queue:{q}"),
        Action::Group(g) => format!("group:{g}"),
        Action::SetNwTtl(t) => format!("mod_nw_ttl:{t}"),
        Action::DecNwTtl => "dec_ttl".into(),
        Action::SetField { field, value } => match set_field_name(*field) {
            Some(n) => format!("set_field:{}->{n}", format_field_value(*field, value)),
            None => format!("set_field:0x{}->field{}", hex(value), u8::from(*field)),
        },
        Action::PushPbb(e) => format!("push_pbb:{e:#x}"),
        Action::PopPbb => "pop_pbb".into(),
        Action::Experimenter { experimenter, data } => {
            format!("experimenter(id={experimenter:#x},data={})", hex(data))
        }
        Action::Unknown { typ, body } => format!("unknown_action(type={typ},body={})", hex(body)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Formats an action list (`drop` when empty), as in a group bucket.
pub fn format_actions(actions: &[Action]) -> String {
    if actions.is_empty() {
        "drop".into()
    } else {
        actions
            .iter()
            .map(format_action)
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn rank(i: &Instruction) -> usize {
    match i {
        Instruction::Meter(_) => 0,
        Instruction::ApplyActions(_) => 1,
        Instruction::ClearActions => 2,
        Instruction::WriteActions(_) => 3,
        Instruction::WriteMetadata { .. } => 4,
        Instruction::GotoTable(_) => 5,
        Instruction::Experimenter { .. } | Instruction::Unknown { .. } => 6,
    }
}

/// Formats an instruction list as the `actions=` part of `ovs-ofctl ofp-print` (`drop`
/// when it has no effect), in the order OVS decodes instructions into.
pub fn format_instructions(insts: &[Instruction]) -> String {
    let mut sorted: Vec<&Instruction> = insts.iter().collect();
    sorted.sort_by_key(|i| rank(i));
    let mut parts = Vec::new();
    for i in sorted {
        match i {
            Instruction::Meter(m) => parts.push(format!("meter:{m}")),
            Instruction::ApplyActions(a) => parts.extend(a.iter().map(format_action)),
            Instruction::ClearActions => parts.push("clear_actions".into()),
            Instruction::WriteActions(a) => parts.push(format!(
                "write_actions({})",
                a.iter().map(format_action).collect::<Vec<_>>().join(",")
            )),
            Instruction::WriteMetadata { metadata, mask } => {
                if *mask == u64::MAX {
                    parts.push(format!("write_metadata:{}", c_hex(*metadata)));
                } else {
                    parts.push(format!(
                        "write_metadata:{}/{}",
                        c_hex(*metadata),
                        c_hex(*mask)
                    ));
                }
            }
            Instruction::GotoTable(t) => parts.push(format!("goto_table:{t}")),
            Instruction::Experimenter { experimenter, data } => parts.push(format!(
                "experimenter_instruction(id={experimenter:#x},data={})",
                hex(data)
            )),
            Instruction::Unknown { typ, body } => parts.push(format!(
                "unknown_instruction(type={typ},body={})",
                hex(body)
            )),
        }
    }
    if parts.is_empty() {
        "drop".into()
    } else {
        parts.join(",")
    }
}
