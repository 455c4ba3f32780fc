//! Flow text: parsing `ovs-ofctl add-flow` strings into [`FlowMod`] values, and printing flow
//! mods, matches and dump-flows lines exactly as `ovs-ofctl ofp-print`/`dump-flows` do for
//! OpenFlow 1.3.
//!
//! Matches are parsed with the Open vSwitch field names and shorthands; 802.1Q fields go
//! through the same `vlan_tci` model OVS uses and come out as OF1.3 `vlan_vid`/`vlan_pcp`
//! exactly as OVS would encode them. A field whose prerequisite is missing (e.g. `tp_dst`
//! without `tcp`) is an `OFPBMC_BAD_PREREQ` error here; ovs-ofctl drops such a field with a
//! log message instead.

use super::action::{format_instructions, parse_instructions_at};
use super::split_kv;
use super::value::{
    be_u64, format_ipv4_masked, format_ipv6_masked, format_mac_masked, format_port,
    parse_ipv4_masked, parse_ipv6_masked, parse_mac, parse_port, parse_uint, parse_uint_max,
    split_mask,
};
use crate::action::{port, Instruction, OFPTT_ALL, OFP_NO_BUFFER};
use crate::error::{BadMatchCode, Error, FlowModFailedCode, Result};
use crate::field::{field_full_mask, Field, OFPVID_PRESENT};
use crate::matches::Match;
use crate::mods::{flow_flags, FlowMod, FlowModCommand};

pub(crate) const ETH_IP: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
pub(crate) const ETH_ARP: u16 = 0x0806;
pub(crate) const ETH_RARP: u16 = 0x8035;
pub(crate) const ETH_MPLS: u16 = 0x8847;
pub(crate) const ETH_MPLSM: u16 = 0x8848;
pub(crate) const ETH_PBB: u16 = 0x88e7;

/// Protocol shorthands: name, eth_type, ip_proto.
const PROTOCOLS: [(&str, u16, Option<u8>); 15] = [
    ("ip", ETH_IP, None),
    ("ipv4", ETH_IP, None),
    ("ipv6", ETH_IPV6, None),
    ("icmp", ETH_IP, Some(1)),
    ("icmp6", ETH_IPV6, Some(58)),
    ("tcp", ETH_IP, Some(6)),
    ("tcp6", ETH_IPV6, Some(6)),
    ("udp", ETH_IP, Some(17)),
    ("udp6", ETH_IPV6, Some(17)),
    ("sctp", ETH_IP, Some(132)),
    ("sctp6", ETH_IPV6, Some(132)),
    ("arp", ETH_ARP, None),
    ("rarp", ETH_RARP, None),
    ("mpls", ETH_MPLS, None),
    ("mplsm", ETH_MPLSM, None),
];

/// What a match keyword sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// A field set directly (value, optional mask).
    Direct(Field),
    DlVlan,
    VlanPcp,
    VlanVid,
    VlanTci,
    NwTos,
    TpSrc,
    TpDst,
    IcmpType,
    IcmpCode,
}

fn match_key(name: &str) -> Option<Key> {
    use Field as F;
    use Key::*;
    Some(match name {
        "in_port" => Direct(F::InPort),
        "in_phy_port" => Direct(F::InPhyPort),
        "metadata" => Direct(F::Metadata),
        "dl_src" | "eth_src" => Direct(F::EthSrc),
        "dl_dst" | "eth_dst" => Direct(F::EthDst),
        "dl_type" | "eth_type" => Direct(F::EthType),
        "dl_vlan" => DlVlan,
        "dl_vlan_pcp" | "vlan_pcp" => VlanPcp,
        "vlan_vid" => VlanVid,
        "vlan_tci" => VlanTci,
        "nw_src" | "ip_src" => Direct(F::Ipv4Src),
        "nw_dst" | "ip_dst" => Direct(F::Ipv4Dst),
        "nw_proto" | "ip_proto" => Direct(F::IpProto),
        "nw_tos" => NwTos,
        "ip_dscp" => Direct(F::IpDscp),
        "nw_ecn" | "ip_ecn" => Direct(F::IpEcn),
        "tp_src" | "tcp_src" | "udp_src" | "sctp_src" => TpSrc,
        "tp_dst" | "tcp_dst" | "udp_dst" | "sctp_dst" => TpDst,
        "icmp_type" | "icmpv6_type" => IcmpType,
        "icmp_code" | "icmpv6_code" => IcmpCode,
        "arp_op" => Direct(F::ArpOp),
        "arp_spa" => Direct(F::ArpSpa),
        "arp_tpa" => Direct(F::ArpTpa),
        "arp_sha" => Direct(F::ArpSha),
        "arp_tha" => Direct(F::ArpTha),
        "ipv6_src" => Direct(F::Ipv6Src),
        "ipv6_dst" => Direct(F::Ipv6Dst),
        "ipv6_label" => Direct(F::Ipv6Flabel),
        "nd_target" => Direct(F::Ipv6NdTarget),
        "nd_sll" => Direct(F::Ipv6NdSll),
        "nd_tll" => Direct(F::Ipv6NdTll),
        "mpls_label" => Direct(F::MplsLabel),
        "mpls_tc" => Direct(F::MplsTc),
        "mpls_bos" => Direct(F::MplsBos),
        "tun_id" | "tunnel_id" => Direct(F::TunnelId),
        // Not in Open vSwitch; accepted so every OF1.3 field has a text form.
        "pbb_isid" => Direct(F::PbbIsid),
        "ipv6_exthdr" => Direct(F::Ipv6Exthdr),
        _ => return None,
    })
}

/// The value syntax of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Int,
    Port,
    Mac,
    Ipv4,
    Ipv6,
}

pub(crate) fn syntax(f: Field) -> Syntax {
    use Field as F;
    match f {
        F::InPort | F::InPhyPort => Syntax::Port,
        F::EthSrc | F::EthDst | F::ArpSha | F::ArpTha | F::Ipv6NdSll | F::Ipv6NdTll => Syntax::Mac,
        F::Ipv4Src | F::Ipv4Dst | F::ArpSpa | F::ArpTpa => Syntax::Ipv4,
        F::Ipv6Src | F::Ipv6Dst | F::Ipv6NdTarget => Syntax::Ipv6,
        _ => Syntax::Int,
    }
}

fn bad_value(detail: String, off: usize) -> Error {
    Error::bad_match(BadMatchCode::BadValue, detail).at(off)
}

/// Parses `value[/mask]` for `f` into (value bytes, mask bytes) of the field's width.
/// `what` names the keyword in messages; `off` is the value's offset.
pub(crate) fn parse_field_value(
    f: Field,
    what: &str,
    s: &str,
    off: usize,
    allow_mask: bool,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let info = f.info().ok_or_else(|| {
        Error::bad_match(BadMatchCode::BadField, format!("unknown field {what}")).at(off)
    })?;
    let full = field_full_mask(f);
    let (v, m) = match syntax(f) {
        Syntax::Port => {
            if s.contains('/') {
                return Err(Error::bad_match(
                    BadMatchCode::BadMask,
                    format!("{what} cannot be masked"),
                )
                .at(off));
            }
            let p = parse_port(s).ok_or_else(|| {
                bad_value(format!("{s}: invalid or unknown port for {what}"), off)
            })?;
            (p.to_be_bytes().to_vec(), full.clone())
        }
        Syntax::Mac => {
            let (v, m) = split_mask(s);
            let v = parse_mac(v)
                .ok_or_else(|| bad_value(format!("{s}: invalid Ethernet address"), off))?;
            let m = match m {
                None => [0xff; 6],
                Some(m) => parse_mac(m).ok_or_else(|| {
                    Error::bad_match(BadMatchCode::BadMask, format!("{s}: invalid Ethernet mask"))
                        .at(off)
                })?,
            };
            (v.to_vec(), m.to_vec())
        }
        Syntax::Ipv4 => {
            let (v, m) = parse_ipv4_masked(s)
                .ok_or_else(|| bad_value(format!("{s}: invalid IP address"), off))?;
            (v.to_vec(), m.to_vec())
        }
        Syntax::Ipv6 => {
            let (v, m) = parse_ipv6_masked(s)
                .ok_or_else(|| bad_value(format!("{s}: invalid IPv6 address"), off))?;
            (v.to_vec(), m.to_vec())
        }
        Syntax::Int => {
            let (vs, ms) = split_mask(s);
            let width_max = if info.len >= 8 {
                u64::MAX
            } else {
                (1u64 << (info.len * 8)) - 1
            };
            let valid = info.valid_bits.unwrap_or(width_max);
            let v = parse_uint(vs).ok_or_else(|| {
                bad_value(format!("{what}: cannot parse integer value {vs}"), off)
            })?;
            if v & !valid != 0 {
                return Err(bad_value(format!("{what}: value {vs} out of range"), off));
            }
            let m = match ms {
                None => valid,
                Some(ms) => {
                    let m = parse_uint(ms).ok_or_else(|| {
                        Error::bad_match(
                            BadMatchCode::BadMask,
                            format!("{what}: cannot parse mask {ms}"),
                        )
                        .at(off)
                    })?;
                    if m & !width_max != 0 {
                        return Err(Error::bad_match(
                            BadMatchCode::BadMask,
                            format!("{what}: mask {ms} out of range"),
                        )
                        .at(off));
                    }
                    m & valid
                }
            };
            let tail = |x: u64| x.to_be_bytes()[8 - info.len..].to_vec();
            (tail(v), tail(m))
        }
    };
    let masked = m != full;
    if masked && (!allow_mask || !info.maskable) {
        return Err(
            Error::bad_match(BadMatchCode::BadMask, format!("{what} cannot be masked")).at(off),
        );
    }
    Ok((v, m))
}

/// Parser state for one match: OVS's 802.1Q TCI model and the generic L4 fields that are
/// resolved to TCP/UDP/SCTP/ICMP fields once the protocol is known.
#[derive(Debug, Default)]
struct MatchBuilder {
    m: Match,
    tci: u16,
    tci_mask: u16,
    tci_off: Option<usize>,
    /// (is_dst, value, mask, offset)
    tp: Vec<(bool, u16, u16, usize)>,
    /// (is_code, value, offset)
    icmp: Vec<(bool, u8, usize)>,
    offsets: Vec<(Field, usize)>,
}

impl MatchBuilder {
    fn set(&mut self, f: Field, v: &[u8], m: &[u8], off: usize) {
        self.m.set_masked(f, v, m);
        self.offsets.push((f, off));
    }

    fn item(
        &mut self,
        key: Key,
        name: &str,
        value: &str,
        key_off: usize,
        val_off: usize,
    ) -> Result<()> {
        let int = |max: u64| {
            parse_uint_max(value, max)
                .ok_or_else(|| bad_value(format!("{name}: invalid value {value}"), val_off))
        };
        let masked_int = |max: u64| -> Result<(u64, u64)> {
            let (v, m) = split_mask(value);
            let v = parse_uint_max(v, max)
                .ok_or_else(|| bad_value(format!("{name}: invalid value {value}"), val_off))?;
            let m = match m {
                None => max,
                Some(m) => parse_uint_max(m, max).ok_or_else(|| {
                    Error::bad_match(
                        BadMatchCode::BadMask,
                        format!("{name}: invalid mask {value}"),
                    )
                    .at(val_off)
                })?,
            };
            Ok((v, m))
        };
        self.tci_off = match key {
            Key::DlVlan | Key::VlanPcp | Key::VlanVid | Key::VlanTci => Some(key_off),
            _ => self.tci_off,
        };
        match key {
            Key::Direct(f) => {
                let (v, m) = parse_field_value(f, name, value, val_off, true)?;
                self.set(f, &v, &m, key_off);
            }
            Key::DlVlan => {
                let v = u16::try_from(int(0xffff)?).unwrap_or(u16::MAX);
                if v == 0xffff {
                    self.tci = 0;
                    self.tci_mask = 0xffff;
                } else if v <= 0x0fff {
                    self.tci = (self.tci & !0x0fff) | OFPVID_PRESENT | v;
                    self.tci_mask |= 0x1fff;
                } else {
                    return Err(bad_value(
                        format!("{name}: VLAN ID {value} out of range"),
                        val_off,
                    ));
                }
            }
            Key::VlanPcp => {
                let p = u16::try_from(int(7)?).unwrap_or(0);
                self.tci = (self.tci & !0xe000) | OFPVID_PRESENT | (p << 13);
                self.tci_mask |= 0xf000;
            }
            Key::VlanVid => {
                let (v, m) = masked_int(0x1fff)?;
                let (v, m) = (u16::try_from(v).unwrap_or(0), u16::try_from(m).unwrap_or(0));
                self.tci = (self.tci & !0x1fff) | (v & m);
                self.tci_mask = m | (self.tci_mask & 0xe000);
            }
            Key::VlanTci => {
                let (v, m) = masked_int(0xffff)?;
                let (v, m) = (u16::try_from(v).unwrap_or(0), u16::try_from(m).unwrap_or(0));
                self.tci = v & m;
                self.tci_mask = m;
            }
            Key::NwTos => {
                let v = int(0xff)?;
                if v & 3 != 0 {
                    return Err(bad_value(
                        format!("{name}: {value} is not a valid TOS (low 2 bits must be 0)"),
                        val_off,
                    ));
                }
                self.set(
                    Field::IpDscp,
                    &[u8::try_from(v >> 2).unwrap_or(0)],
                    &[0x3f],
                    key_off,
                );
            }
            Key::TpSrc | Key::TpDst => {
                let (v, m) = masked_int(0xffff)?;
                let (v, m) = (u16::try_from(v).unwrap_or(0), u16::try_from(m).unwrap_or(0));
                self.tp.push((key == Key::TpDst, v & m, m, key_off));
            }
            Key::IcmpType | Key::IcmpCode => {
                let v = u8::try_from(int(0xff)?).unwrap_or(0);
                self.icmp.push((key == Key::IcmpCode, v, key_off));
            }
        }
        Ok(())
    }

    /// Resolves the generic fields, converts the TCI to OF1.3 fields and checks every
    /// field's prerequisites.
    fn finish(mut self) -> Result<Match> {
        // 802.1Q, as OVS encodes vlan_tci into OXM.
        if self.tci_mask != 0 {
            let off = self.tci_off.unwrap_or(0);
            let vid = self.tci & 0x1fff;
            let vmask = self.tci_mask & 0x1fff;
            if vmask != 0 {
                self.set(
                    Field::VlanVid,
                    &vid.to_be_bytes(),
                    &vmask.to_be_bytes(),
                    off,
                );
            }
            if vid != 0 && self.tci_mask & 0xe000 != 0 {
                let pcp = u8::try_from((self.tci >> 13) & 7).unwrap_or(0);
                self.set(Field::VlanPcp, &[pcp], &[7], off);
            }
        }
        let eth = exact(&self.m, Field::EthType).and_then(|v| u16::try_from(v).ok());
        let proto = exact(&self.m, Field::IpProto);
        for &(dst, v, m, off) in &self.tp.clone() {
            let f = match (eth, proto) {
                (Some(ETH_IP | ETH_IPV6), Some(6)) => [Field::TcpSrc, Field::TcpDst],
                (Some(ETH_IP | ETH_IPV6), Some(17)) => [Field::UdpSrc, Field::UdpDst],
                (Some(ETH_IP | ETH_IPV6), Some(132)) => [Field::SctpSrc, Field::SctpDst],
                _ => {
                    return Err(Error::bad_match(
                        BadMatchCode::BadPrereq,
                        "transport port match needs tcp, udp or sctp (e.g. `tcp,tp_dst=80`)",
                    )
                    .at(off))
                }
            }[usize::from(dst)];
            self.set(f, &v.to_be_bytes(), &m.to_be_bytes(), off);
        }
        for &(code, v, off) in &self.icmp.clone() {
            let f = match (eth, proto) {
                (Some(ETH_IP), Some(1)) => [Field::Icmpv4Type, Field::Icmpv4Code],
                (Some(ETH_IPV6), Some(58)) => [Field::Icmpv6Type, Field::Icmpv6Code],
                _ => {
                    return Err(Error::bad_match(
                        BadMatchCode::BadPrereq,
                        "ICMP type/code match needs icmp or icmp6",
                    )
                    .at(off))
                }
            }[usize::from(code)];
            self.set(f, &[v], &[0xff], off);
        }
        for (f, _, _) in self.m.fields() {
            if let Err(why) = prereq_ok(&self.m, f) {
                let off = self
                    .offsets
                    .iter()
                    .rev()
                    .find(|(g, _)| *g == f)
                    .map_or(0, |(_, o)| *o);
                let name = f.info().map_or("?", |i| i.name);
                return Err(Error::bad_match(
                    BadMatchCode::BadPrereq,
                    format!("{name} requires {why}"),
                )
                .at(off));
            }
        }
        Ok(self.m)
    }
}

/// The value of a field matched exactly, as an integer.
pub(crate) fn exact(m: &Match, f: Field) -> Option<u64> {
    m.is_exact_field(f).then(|| m.value.get_u64(f))
}

/// OF1.3 prerequisites of a match field (section 7.2.3.8), checked against the match itself.
fn prereq_ok(m: &Match, f: Field) -> std::result::Result<(), &'static str> {
    use Field as F;
    let eth = exact(m, F::EthType).and_then(|v| u16::try_from(v).ok());
    let proto = exact(m, F::IpProto);
    let ip = matches!(eth, Some(ETH_IP | ETH_IPV6));
    let ok = |c: bool, why| if c { Ok(()) } else { Err(why) };
    match f {
        F::InPhyPort => ok(m.get(F::InPort).is_some(), "in_port"),
        F::VlanPcp => ok(
            m.get(F::VlanVid)
                .is_some_and(|(v, mk)| be_u64(v) & be_u64(mk) & 0x1000 != 0),
            "a VLAN tag (dl_vlan or vlan_vid)",
        ),
        F::IpDscp | F::IpEcn | F::IpProto => ok(ip, "ip or ipv6"),
        F::Ipv4Src | F::Ipv4Dst => ok(eth == Some(ETH_IP), "ip"),
        F::TcpSrc | F::TcpDst => ok(ip && proto == Some(6), "tcp or tcp6"),
        F::UdpSrc | F::UdpDst => ok(ip && proto == Some(17), "udp or udp6"),
        F::SctpSrc | F::SctpDst => ok(ip && proto == Some(132), "sctp or sctp6"),
        F::Icmpv4Type | F::Icmpv4Code => ok(eth == Some(ETH_IP) && proto == Some(1), "icmp"),
        F::ArpOp | F::ArpSpa | F::ArpTpa | F::ArpSha | F::ArpTha => {
            ok(matches!(eth, Some(ETH_ARP | ETH_RARP)), "arp")
        }
        F::Ipv6Src | F::Ipv6Dst | F::Ipv6Flabel | F::Ipv6Exthdr => {
            ok(eth == Some(ETH_IPV6), "ipv6")
        }
        F::Icmpv6Type | F::Icmpv6Code => ok(eth == Some(ETH_IPV6) && proto == Some(58), "icmp6"),
        F::Ipv6NdTarget => ok(
            eth == Some(ETH_IPV6)
                && proto == Some(58)
                && matches!(exact(m, F::Icmpv6Type), Some(135 | 136)),
            "icmp6 with icmp_type=135 or 136",
        ),
        F::Ipv6NdSll => ok(
            eth == Some(ETH_IPV6) && proto == Some(58) && exact(m, F::Icmpv6Type) == Some(135),
            "icmp6 with icmp_type=135",
        ),
        F::Ipv6NdTll => ok(
            eth == Some(ETH_IPV6) && proto == Some(58) && exact(m, F::Icmpv6Type) == Some(136),
            "icmp6 with icmp_type=136",
        ),
        F::MplsLabel | F::MplsTc | F::MplsBos => {
            ok(matches!(eth, Some(ETH_MPLS | ETH_MPLSM)), "mpls or mplsm")
        }
        F::PbbIsid => ok(eth == Some(ETH_PBB), "dl_type=0x88e7"),
        _ => Ok(()),
    }
}

/// Applies a protocol shorthand; returns false when `name` is not one.
fn protocol(b: &mut MatchBuilder, name: &str, off: usize) -> bool {
    match PROTOCOLS.iter().find(|(n, _, _)| *n == name) {
        Some(&(_, eth, proto)) => {
            b.set(Field::EthType, &eth.to_be_bytes(), &[0xff, 0xff], off);
            if let Some(p) = proto {
                b.set(Field::IpProto, &[p], &[0xff], off);
            }
            true
        }
        None => false,
    }
}

/// Parses a match alone (`tcp,nw_src=10.0.0.0/8,tp_dst=80`), checking prerequisites.
pub fn parse_match(s: &str) -> Result<Match> {
    let mut b = MatchBuilder::default();
    for kv in split_kv(s, 0) {
        if kv.value.is_empty() && protocol(&mut b, kv.key, kv.key_off) {
            continue;
        }
        let key = match_key(kv.key).ok_or_else(|| {
            Error::bad_match(
                BadMatchCode::BadField,
                format!("unknown match field {}", kv.key),
            )
            .at(kv.key_off)
        })?;
        b.item(key, kv.key, kv.value, kv.key_off, kv.val_off)?;
    }
    b.finish()
}

fn flow_err(code: FlowModFailedCode, detail: String, off: usize) -> Error {
    Error::flow_mod(code, detail).at(off)
}

/// Parses an `ovs-ofctl add-flow`/`mod-flows`/`del-flows` string for OpenFlow 1.3.
///
/// Follows ovs-ofctl: the table defaults to 0 for adds and modifies and to all tables (255)
/// for deletes; the priority defaults to 32768; `cookie=V` sets the cookie of an add (a
/// modify cannot change cookies in OF1.3, so it is ignored there), `cookie=V/M` selects
/// flows by cookie in modifies and deletes. Everything after `actions=` is the instruction
/// list. Also accepted, so that printed flow mods parse back: `idle:`/`hard:`/`table:`
/// spellings, `buf:`, `out_port`/`out_group` and `actions` with any command, `priority`
/// with non-strict deletes.
pub fn parse_flow(s: &str, command: FlowModCommand) -> Result<FlowMod> {
    parse_flow_at(s, 0, command)
}

fn parse_flow_at(s: &str, base: usize, command: FlowModCommand) -> Result<FlowMod> {
    let is_add = command == FlowModCommand::Add;
    let is_mod = matches!(
        command,
        FlowModCommand::Modify | FlowModCommand::ModifyStrict
    );
    let mut fm = FlowMod {
        command,
        table_id: OFPTT_ALL,
        ..FlowMod::default()
    };
    let (match_part, actions) = match s.find("action") {
        Some(i) => match s[i..].find('=') {
            Some(eq) => (&s[..i], Some((&s[i + eq + 1..], base + i + eq + 1))),
            None => {
                return Err(flow_err(
                    FlowModFailedCode::Unknown0,
                    "actions missing `=`".into(),
                    base + i,
                ))
            }
        },
        None => (s, None),
    };
    if actions.is_none() && (is_add || is_mod) {
        return Err(Error::bad_instruction(
            crate::error::BadInstructionCode::UnknownInst,
            "must specify an action (e.g. actions=drop)",
        )
        .at(base + s.len()));
    }
    let mut b = MatchBuilder::default();
    for kv in split_kv(match_part, base) {
        let (name, value, voff) = (kv.key, kv.value, kv.val_off);
        if value.is_empty() && kv.delim.is_none() {
            let flag = match name {
                "send_flow_rem" => Some(flow_flags::SEND_FLOW_REM),
                "check_overlap" => Some(flow_flags::CHECK_OVERLAP),
                "reset_counts" => Some(flow_flags::RESET_COUNTS),
                "no_packet_counts" => Some(flow_flags::NO_PKT_COUNTS),
                "no_byte_counts" => Some(flow_flags::NO_BYT_COUNTS),
                "no_readonly_table" | "allow_hidden_fields" => Some(0),
                _ => None,
            };
            if let Some(f) = flag {
                fm.flags |= f;
                continue;
            }
            if protocol(&mut b, name, kv.key_off) {
                continue;
            }
        }
        if let Some(key) = match_key(name) {
            b.item(key, name, value, kv.key_off, voff)?;
            continue;
        }
        if value.is_empty() {
            let known = [
                "table",
                "priority",
                "idle_timeout",
                "hard_timeout",
                "cookie",
                "out_port",
            ];
            let e = if known.contains(&name) {
                flow_err(
                    FlowModFailedCode::Unknown0,
                    format!("field {name} missing value"),
                    kv.key_off,
                )
            } else {
                Error::bad_match(BadMatchCode::BadField, format!("unknown keyword {name}"))
                    .at(kv.key_off)
            };
            return Err(e);
        }
        let u16v = |code| {
            parse_uint_max(value, 0xffff)
                .and_then(|v| u16::try_from(v).ok())
                .ok_or_else(|| flow_err(code, format!("{name}: invalid value {value}"), voff))
        };
        match name {
            "table" => {
                fm.table_id = parse_uint_max(value, 0xff)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| {
                        flow_err(
                            FlowModFailedCode::BadTableId,
                            format!("unknown table \"{value}\""),
                            voff,
                        )
                    })?;
            }
            "priority" => fm.priority = u16v(FlowModFailedCode::Unknown0)?,
            "idle_timeout" | "idle" => fm.idle_timeout = u16v(FlowModFailedCode::BadTimeout)?,
            "hard_timeout" | "hard" => fm.hard_timeout = u16v(FlowModFailedCode::BadTimeout)?,
            "cookie" => {
                let (v, m) = split_mask(value);
                let cv = parse_uint(v).ok_or_else(|| {
                    flow_err(
                        FlowModFailedCode::Unknown0,
                        format!("cookie: invalid value {v}"),
                        voff,
                    )
                })?;
                match m {
                    Some(m) => {
                        if is_add {
                            return Err(flow_err(
                                FlowModFailedCode::BadCommand,
                                "flow additions cannot use a cookie mask".into(),
                                kv.key_off,
                            ));
                        }
                        let mask = if m == "-1" { Some(u64::MAX) } else { parse_uint(m) };
                        let mask = mask.ok_or_else(|| {
                            flow_err(FlowModFailedCode::Unknown0, format!("cookie: invalid mask {m}"), voff)
                        })?;
                        fm.cookie = cv & mask;
                        fm.cookie_mask = mask;
                    }
                    None if is_add => fm.cookie = cv,
                    // OF1.3 modifies cannot change the cookie (ovs-ofctl sends cookie & mask).
                    None if is_mod => {}
                    None => {
                        return Err(flow_err(
                            FlowModFailedCode::BadCommand,
                            format!("cannot set cookie (to match on a cookie, specify a mask, e.g. cookie={value}/-1)"),
                            kv.key_off,
                        ))
                    }
                }
            }
            "out_port" => {
                fm.out_port = parse_port(value).ok_or_else(|| {
                    Error::bad_request(
                        crate::error::BadRequestCode::BadPort,
                        format!("{value} is not a valid OpenFlow port"),
                    )
                    .at(voff)
                })?;
            }
            "out_group" => {
                fm.out_group = super::value::parse_group_id(value).ok_or_else(|| {
                    Error::group_mod(
                        crate::error::GroupModFailedCode::InvalidGroup,
                        format!("{value} is not a valid OpenFlow group"),
                    )
                    .at(voff)
                })?;
            }
            "buf" | "buffer_id" => {
                fm.buffer_id = parse_uint(value)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        flow_err(
                            FlowModFailedCode::Unknown0,
                            format!("{name}: invalid value {value}"),
                            voff,
                        )
                    })?;
            }
            "flags" => {
                let extra = u16v(FlowModFailedCode::BadFlags)?;
                fm.flags |= extra;
            }
            "duration" | "n_packets" | "n_bytes" | "idle_age" | "hard_age" => {}
            _ => {
                return Err(Error::bad_match(
                    BadMatchCode::BadField,
                    format!("unknown keyword {name}"),
                )
                .at(kv.key_off))
            }
        }
    }
    fm.r#match = b.finish()?;
    if fm.table_id == OFPTT_ALL
        && !matches!(
            command,
            FlowModCommand::Delete | FlowModCommand::DeleteStrict
        )
    {
        // As ovs-ofctl encodes it: "all tables" means table 0 outside deletes.
        fm.table_id = 0;
    }
    if let Some((a, off)) = actions {
        let cur = if fm.table_id == OFPTT_ALL {
            None
        } else {
            Some(fm.table_id)
        };
        fm.instructions = parse_instructions_at(a, off, &fm.r#match, cur)?;
    }
    Ok(fm)
}

/// Parses a printed flow mod: an optional command word (`ADD`, `MOD`, `MOD_STRICT`, `DEL`,
/// `DEL_STRICT`, or ovs-ofctl's `add`, `modify`, `modify_strict`, `delete`,
/// `delete_strict`), then the flow as for [`parse_flow`]. Without a command word the
/// command is ADD. `parse_flow_mod(&format_flow_mod(fm))` gives `fm` back for every flow
/// mod whose printed form is complete (see [`format_flow_mod`]).
pub fn parse_flow_mod(s: &str) -> Result<FlowMod> {
    let lead = s.len() - s.trim_start().len();
    let rest = &s[lead..];
    let end = rest
        .find(|c: char| c == ',' || c.is_whitespace())
        .unwrap_or(rest.len());
    let word = &rest[..end];
    let cmd = match word.to_ascii_lowercase().as_str() {
        "add" => Some(FlowModCommand::Add),
        "mod" | "modify" => Some(FlowModCommand::Modify),
        "mod_strict" | "modify_strict" => Some(FlowModCommand::ModifyStrict),
        "del" | "delete" => Some(FlowModCommand::Delete),
        "del_strict" | "delete_strict" => Some(FlowModCommand::DeleteStrict),
        _ => None,
    };
    match cmd {
        Some(c) => parse_flow_at(&rest[end..], lead + end, c),
        None => parse_flow_at(s, 0, FlowModCommand::Add),
    }
}

/// C's `%#x`: `0` for zero, `0x..` otherwise.
pub(crate) fn c_hex(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

fn push(s: &mut String, item: String) {
    s.push_str(&item);
    s.push(',');
}

/// Formats a match as ovs `match_format` does (without priority).
pub fn format_match(m: &Match) -> String {
    format_match_prio(m, 0x8000)
}

/// `match_format` with a priority (printed first unless it is 32768).
pub(crate) fn format_match_prio(m: &Match, priority: u16) -> String {
    use Field as F;
    let mut s = String::new();
    if priority != 0x8000 {
        push(&mut s, format!("priority={priority}"));
    }
    let int = |f: Field| m.get(f).map(|(v, mk)| (be_u64(v), be_u64(mk)));
    let eth = exact(m, F::EthType).and_then(|v| u16::try_from(v).ok());
    let proto = exact(m, F::IpProto);
    let mut skip_type = false;
    let mut skip_proto = false;
    if let Some(e) = eth {
        skip_type = true;
        let name = match (e, proto) {
            (ETH_IP, Some(1)) => "icmp",
            (ETH_IP, Some(6)) => "tcp",
            (ETH_IP, Some(17)) => "udp",
            (ETH_IP, Some(132)) => "sctp",
            (ETH_IP, _) => "ip",
            (ETH_IPV6, Some(58)) => "icmp6",
            (ETH_IPV6, Some(6)) => "tcp6",
            (ETH_IPV6, Some(17)) => "udp6",
            (ETH_IPV6, Some(132)) => "sctp6",
            (ETH_IPV6, _) => "ipv6",
            (ETH_ARP, _) => "arp",
            (ETH_RARP, _) => "rarp",
            (ETH_MPLS, _) => "mpls",
            (ETH_MPLSM, _) => "mplsm",
            _ => {
                skip_type = false;
                ""
            }
        };
        if skip_type {
            skip_proto = !matches!(name, "ip" | "ipv6" | "arp" | "rarp" | "mpls" | "mplsm");
            push(&mut s, name.to_string());
        }
    }
    let be64 = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk)) = int(f) {
            if mk == u64::MAX {
                push(s, format!("{name}={}", c_hex(v)));
            } else {
                push(s, format!("{name}={}/{}", c_hex(v), c_hex(mk)));
            }
        }
    };
    be64(&mut s, "tun_id", F::TunnelId);
    be64(&mut s, "metadata", F::Metadata);
    if let Some((v, _)) = int(F::InPort) {
        push(
            &mut s,
            format!(
                "in_port={}",
                format_port(u32::try_from(v).unwrap_or(u32::MAX))
            ),
        );
    }
    // 802.1Q, as OVS decodes OXM vlan_vid/vlan_pcp into its TCI and prints it.
    let (mut tci, mut tmask) = int(F::VlanVid).map_or((0u64, 0u64), |(v, mk)| (v, mk));
    if let Some((p, _)) = int(F::VlanPcp) {
        tci |= (p << 13) | 0x1000;
        tmask |= 0xf000;
    }
    if tmask != 0 {
        let vid_mask = tmask & 0x0fff;
        let pcp_mask = tmask & 0xe000;
        if tmask & 0x1000 != 0
            && tci & 0x1000 != 0
            && (vid_mask == 0 || vid_mask == 0x0fff)
            && (pcp_mask == 0 || pcp_mask == 0xe000)
            && (vid_mask != 0 || pcp_mask != 0)
        {
            if vid_mask != 0 {
                push(&mut s, format!("dl_vlan={}", tci & 0x0fff));
            }
            if pcp_mask != 0 {
                push(&mut s, format!("dl_vlan_pcp={}", (tci >> 13) & 7));
            }
        } else if tmask == 0xffff {
            push(&mut s, format!("vlan_tci=0x{tci:04x}"));
        } else {
            push(&mut s, format!("vlan_tci=0x{tci:04x}/0x{tmask:04x}"));
        }
    }
    let mac = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk)) = m.get(f) {
            push(s, format!("{name}={}", format_mac_masked(v, mk)));
        }
    };
    mac(&mut s, "dl_src", F::EthSrc);
    mac(&mut s, "dl_dst", F::EthDst);
    if !skip_type {
        if let Some((v, _)) = int(F::EthType) {
            push(&mut s, format!("dl_type=0x{v:04x}"));
        }
    }
    let ip6 = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk)) = m.get(f) {
            push(s, format!("{name}={}", format_ipv6_masked(v, mk)));
        }
    };
    let ip4 = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk)) = m.get(f) {
            push(s, format!("{name}={}", format_ipv4_masked(v, mk)));
        }
    };
    ip6(&mut s, "ipv6_src", F::Ipv6Src);
    ip6(&mut s, "ipv6_dst", F::Ipv6Dst);
    if let Some((v, mk)) = int(F::Ipv6Flabel) {
        if mk == 0x000f_ffff {
            push(&mut s, format!("ipv6_label=0x{v:05x}"));
        } else {
            push(&mut s, format!("ipv6_label=0x{v:05x}/0x{mk:05x}"));
        }
    }
    ip4(&mut s, "arp_spa", F::ArpSpa);
    ip4(&mut s, "arp_tpa", F::ArpTpa);
    ip4(&mut s, "nw_src", F::Ipv4Src);
    ip4(&mut s, "nw_dst", F::Ipv4Dst);
    if !skip_proto {
        if let Some((v, _)) = int(F::IpProto) {
            push(&mut s, format!("nw_proto={v}"));
        }
    }
    if let Some((v, _)) = int(F::ArpOp) {
        push(&mut s, format!("arp_op={v}"));
    }
    mac(&mut s, "arp_sha", F::ArpSha);
    mac(&mut s, "arp_tha", F::ArpTha);
    if let Some((v, _)) = int(F::IpDscp) {
        push(&mut s, format!("nw_tos={}", v << 2));
    }
    if let Some((v, _)) = int(F::IpEcn) {
        push(&mut s, format!("nw_ecn={v}"));
    }
    for (name, f) in [
        ("mpls_label", F::MplsLabel),
        ("mpls_tc", F::MplsTc),
        ("mpls_bos", F::MplsBos),
    ] {
        if let Some((v, _)) = int(f) {
            push(&mut s, format!("{name}={v}"));
        }
    }
    let be16 = |s: &mut String, name: &str, f: Field| {
        if let Some((v, mk)) = int(f) {
            if mk == field_full_mask_u64(f) {
                push(s, format!("{name}={v}"));
            } else {
                push(s, format!("{name}=0x{v:x}/0x{mk:x}"));
            }
        }
    };
    be16(&mut s, "icmp_type", F::Icmpv4Type);
    be16(&mut s, "icmp_code", F::Icmpv4Code);
    be16(&mut s, "icmp_type", F::Icmpv6Type);
    be16(&mut s, "icmp_code", F::Icmpv6Code);
    ip6(&mut s, "nd_target", F::Ipv6NdTarget);
    mac(&mut s, "nd_sll", F::Ipv6NdSll);
    mac(&mut s, "nd_tll", F::Ipv6NdTll);
    for (src, dst) in [
        (F::TcpSrc, F::TcpDst),
        (F::UdpSrc, F::UdpDst),
        (F::SctpSrc, F::SctpDst),
    ] {
        be16(&mut s, "tp_src", src);
        be16(&mut s, "tp_dst", dst);
    }
    // Fields Open vSwitch has no match syntax for.
    if let Some((v, _)) = int(F::InPhyPort) {
        push(
            &mut s,
            format!(
                "in_phy_port={}",
                format_port(u32::try_from(v).unwrap_or(u32::MAX))
            ),
        );
    }
    for (name, f) in [("pbb_isid", F::PbbIsid), ("ipv6_exthdr", F::Ipv6Exthdr)] {
        if let Some((v, mk)) = int(f) {
            if mk == field_full_mask_u64(f) {
                push(&mut s, format!("{name}={}", c_hex(v)));
            } else {
                push(&mut s, format!("{name}={}/{}", c_hex(v), c_hex(mk)));
            }
        }
    }
    s.pop_if_comma();
    s
}

trait PopComma {
    fn pop_if_comma(&mut self);
}
impl PopComma for String {
    fn pop_if_comma(&mut self) {
        if self.ends_with(',') {
            self.pop();
        }
    }
}

fn field_full_mask_u64(f: Field) -> u64 {
    be_u64(&field_full_mask(f))
}

fn flags_text(flags: u16) -> String {
    let mut s = String::new();
    for (bit, name) in [
        (flow_flags::SEND_FLOW_REM, "send_flow_rem "),
        (flow_flags::CHECK_OVERLAP, "check_overlap "),
        (flow_flags::RESET_COUNTS, "reset_counts "),
        (flow_flags::NO_PKT_COUNTS, "no_packet_counts "),
        (flow_flags::NO_BYT_COUNTS, "no_byte_counts "),
    ] {
        if flags & bit != 0 {
            s.push_str(name);
        }
    }
    let rest = flags & !0x1f;
    if rest != 0 {
        // Not printed by OVS (it rejects unknown flags); kept so nothing is hidden.
        s.push_str(&format!("flags:0x{rest:x} "));
    }
    s
}

/// Formats a flow mod exactly as `ovs-ofctl ofp-print` prints an OF1.3 OFPT_FLOW_MOD after
/// `OFPT_FLOW_MOD (OF1.3) (xid=...): `, e.g.
/// `ADD table:1 priority=100,tcp,in_port=1,tp_dst=80 cookie:0x5 idle:10 actions=output:2`.
///
/// Like OVS, it does not show `out_group`, the cookie of a non-add without a cookie mask,
/// a cookie mask on an add, a cookie of all ones on an add, or table 0.
pub fn format_flow_mod(fm: &FlowMod) -> String {
    let mut s = match fm.command {
        FlowModCommand::Add => "ADD".to_string(),
        FlowModCommand::Modify => "MOD".into(),
        FlowModCommand::ModifyStrict => "MOD_STRICT".into(),
        FlowModCommand::Delete => "DEL".into(),
        FlowModCommand::DeleteStrict => "DEL_STRICT".into(),
        FlowModCommand::Unknown(c) => format!("cmd:{c}"),
    };
    if fm.table_id != 0 {
        s.push_str(&format!(" table:{}", fm.table_id));
    }
    s.push(' ');
    s.push_str(&format_match_prio(&fm.r#match, fm.priority));
    if !s.ends_with(' ') {
        s.push(' ');
    }
    if fm.command == FlowModCommand::Add {
        if fm.cookie != 0 && fm.cookie != u64::MAX {
            s.push_str(&format!("cookie:0x{:x} ", fm.cookie));
        }
    } else if fm.cookie_mask != 0 {
        s.push_str(&format!("cookie:0x{:x}/0x{:x} ", fm.cookie, fm.cookie_mask));
    }
    if fm.idle_timeout != 0 {
        s.push_str(&format!("idle:{} ", fm.idle_timeout));
    }
    if fm.hard_timeout != 0 {
        s.push_str(&format!("hard:{} ", fm.hard_timeout));
    }
    if fm.buffer_id != OFP_NO_BUFFER {
        s.push_str(&format!("buf:0x{:x} ", fm.buffer_id));
    }
    if fm.out_port != port::ANY {
        s.push_str(&format!("out_port:{} ", format_port(fm.out_port)));
    }
    s.push_str(&flags_text(fm.flags));
    s.push_str("actions=");
    s.push_str(&format_instructions(&fm.instructions));
    s
}

/// The plain values of one flow-stats entry, for [`format_flow_stats_line`].
#[derive(Debug, Clone, Copy)]
pub struct FlowStatsLine<'a> {
    pub cookie: u64,
    /// Time since the flow was added, in nanoseconds.
    pub duration_ns: u64,
    pub table_id: u8,
    pub packet_count: u64,
    pub byte_count: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// `ofp_flow_mod_flags` of the entry.
    pub flags: u16,
    pub priority: u16,
    pub r#match: &'a Match,
    pub instructions: &'a [Instruction],
}

/// Formats one `ovs-ofctl dump-flows` line (without the leading space OVS indents with):
/// `cookie=0x0, duration=1.5s, table=0, n_packets=3, n_bytes=180, idle_timeout=10,
/// priority=100,tcp,tp_dst=80 actions=output:2`. A packet or byte count of `u64::MAX`
/// (unknown) prints as `?`.
pub fn format_flow_stats_line(l: &FlowStatsLine<'_>) -> String {
    let mut s = format!("cookie=0x{:x}, duration=", l.cookie);
    let sec = l.duration_ns / 1_000_000_000;
    let nsec = l.duration_ns % 1_000_000_000;
    s.push_str(&sec.to_string());
    if nsec > 0 {
        if nsec % 1_000_000 == 0 {
            s.push_str(&format!(".{:03}", nsec / 1_000_000));
        } else {
            s.push_str(format!(".{nsec:09}").trim_end_matches('0'));
        }
    }
    s.push_str("s, ");
    s.push_str(&format!("table={}, ", l.table_id));
    let stat = |v: u64| {
        if v == u64::MAX {
            "?".to_string()
        } else {
            v.to_string()
        }
    };
    s.push_str(&format!(
        "n_packets={}, n_bytes={}, ",
        stat(l.packet_count),
        stat(l.byte_count)
    ));
    if l.idle_timeout != 0 {
        s.push_str(&format!("idle_timeout={}, ", l.idle_timeout));
    }
    if l.hard_timeout != 0 {
        s.push_str(&format!("hard_timeout={}, ", l.hard_timeout));
    }
    s.push_str(&flags_text(l.flags));
    let m = format_match_prio(l.r#match, l.priority);
    if !m.is_empty() {
        s.push_str(&m);
        s.push(' ');
    }
    s.push_str("actions=");
    s.push_str(&format_instructions(l.instructions));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_tci_maps_like_ovs() {
        // vlan_tci with a PCP-only mask and no CFI carries nothing OF1.3 can express.
        assert_eq!(parse_match("vlan_tci=0x6000/0xe000").unwrap(), Match::any());
        let m = parse_match("vlan_tci=0x1000/0x1000").unwrap();
        assert_eq!(
            m.get(Field::VlanVid),
            Some((&[0x10, 0][..], &[0x10, 0][..]))
        );
        assert_eq!(format_match(&m), "vlan_tci=0x1000/0x1000");
        let m = parse_match("dl_vlan=7,vlan_pcp=5").unwrap();
        assert!(m.is_exact(Field::VlanVid, 0x1007) && m.is_exact(Field::VlanPcp, 5));
        assert_eq!(format_match(&m), "dl_vlan=7,dl_vlan_pcp=5");
        let m = parse_match("vlan_vid=0x0005/0x0fff").unwrap();
        assert_eq!(format_match(&m), "vlan_tci=0x0005/0x0fff");
    }

    #[test]
    fn fields_ovs_cannot_name_still_print() {
        let mut m = Match::any();
        m.set_u64(Field::EthType, u64::from(ETH_PBB));
        m.set_u64(Field::PbbIsid, 0x123);
        m.set_u64(Field::InPort, 1);
        m.set_u64(Field::InPhyPort, 2);
        let text = format_match(&m);
        assert_eq!(
            text,
            "in_port=1,dl_type=0x88e7,in_phy_port=2,pbb_isid=0x123"
        );
        assert_eq!(parse_match(&text).unwrap(), m);
        assert_eq!(c_hex(0), "0");
        assert_eq!(c_hex(255), "0xff");
    }
}
