//! Prerequisite and consistency checks for matches, actions and instructions, with OF1.3 error codes.
//!
//! Pure functions over values that already decoded; they decide which OFPT_ERROR a switch
//! answers to a flow_mod. Prerequisites are checked order-independently (the 1.3 spec's
//! table of prerequisites); actions are checked as Open vSwitch does, walking the list with
//! what the match guarantees and updating it on push/pop of VLAN, MPLS and PBB, so a
//! `set_field` after `push_vlan` may set `vlan_vid`, and an IP field after `push_mpls` is
//! inconsistent. Choices that differ from Open vSwitch are noted where they are made.

use crate::action::{group, meter, port, Action, Instruction, OFPTT_ALL};
use crate::error::{
    BadActionCode, BadInstructionCode, BadMatchCode, Error, ErrorCode, FlowModFailedCode,
    MeterModFailedCode, Result,
};
use crate::field::{field_full_mask, Field, OFPVID_PRESENT};
use crate::matches::Match;
use crate::mods::{flow_flags, FlowMod, FlowModCommand};

/// ONF extension error (exp_type, experimenter 0x4f4e4600) for a duplicate instruction in
/// OF1.3 (`OFPBIC_DUP_INST`, which only got a standard code in 1.4), as Open vSwitch answers.
pub const ONF_ERR_DUP_INST: u16 = 2600;

const ETH_IPV4: u16 = 0x0800;
const ETH_ARP: u16 = 0x0806;
const ETH_IPV6: u16 = 0x86dd;
const ETH_MPLS: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const ETH_PBB: u16 = 0x88e7;

/// What is known about a packet at one point: from the match, then through actions.
#[derive(Debug, Clone, Copy, Default)]
struct Known {
    in_port: bool,
    eth_type: Option<u16>,
    ip_proto: Option<u8>,
    icmpv6_type: Option<u8>,
    vlan: bool,
}

impl Known {
    fn of(m: &Match) -> Known {
        let exact = |f: Field| m.is_exact_field(f).then(|| m.value.get_u64(f));
        let vid_m = m.mask.get_u64(Field::VlanVid);
        let vid_v = m.value.get_u64(Field::VlanVid);
        let present = u64::from(OFPVID_PRESENT);
        Known {
            in_port: m.get(Field::InPort).is_some(),
            eth_type: exact(Field::EthType).and_then(|v| u16::try_from(v).ok()),
            ip_proto: exact(Field::IpProto).and_then(|v| u8::try_from(v).ok()),
            icmpv6_type: exact(Field::Icmpv6Type).and_then(|v| u8::try_from(v).ok()),
            vlan: vid_m & present != 0 && vid_v & present != 0,
        }
    }

    fn eth(&self, e: u16) -> bool {
        self.eth_type == Some(e)
    }
    fn ip(&self) -> bool {
        self.eth(ETH_IPV4) || self.eth(ETH_IPV6)
    }
    fn mpls(&self) -> bool {
        self.eth(ETH_MPLS) || self.eth(ETH_MPLS_MC)
    }
    fn proto(&self, p: u8) -> bool {
        self.ip() && self.ip_proto == Some(p)
    }
    fn icmpv6(&self) -> bool {
        self.eth(ETH_IPV6) && self.ip_proto == Some(58)
    }

    /// `None` when `field`'s prerequisites hold, else what is missing.
    fn missing(&self, field: Field) -> Option<&'static str> {
        use Field::*;
        let (ok, need) = match field {
            InPhyPort => (self.in_port, "in_port"),
            VlanPcp => (self.vlan, "vlan_vid with OFPVID_PRESENT"),
            IpDscp | IpEcn | IpProto => (self.ip(), "eth_type 0x0800 or 0x86dd"),
            Ipv4Src | Ipv4Dst => (self.eth(ETH_IPV4), "eth_type 0x0800"),
            TcpSrc | TcpDst => (self.proto(6), "IP with ip_proto 6"),
            UdpSrc | UdpDst => (self.proto(17), "IP with ip_proto 17"),
            SctpSrc | SctpDst => (self.proto(132), "IP with ip_proto 132"),
            Icmpv4Type | Icmpv4Code => (
                self.eth(ETH_IPV4) && self.ip_proto == Some(1),
                "eth_type 0x0800 and ip_proto 1",
            ),
            ArpOp | ArpSpa | ArpTpa | ArpSha | ArpTha => (self.eth(ETH_ARP), "eth_type 0x0806"),
            Ipv6Src | Ipv6Dst | Ipv6Flabel | Ipv6Exthdr => (self.eth(ETH_IPV6), "eth_type 0x86dd"),
            Icmpv6Type | Icmpv6Code => (self.icmpv6(), "eth_type 0x86dd and ip_proto 58"),
            Ipv6NdTarget => (
                self.icmpv6() && matches!(self.icmpv6_type, Some(135 | 136)),
                "ICMPv6 with icmpv6_type 135 or 136",
            ),
            Ipv6NdSll => (
                self.icmpv6() && self.icmpv6_type == Some(135),
                "ICMPv6 with icmpv6_type 135",
            ),
            Ipv6NdTll => (
                self.icmpv6() && self.icmpv6_type == Some(136),
                "ICMPv6 with icmpv6_type 136",
            ),
            MplsLabel | MplsTc | MplsBos => (self.mpls(), "eth_type 0x8847 or 0x8848"),
            PbbIsid => (self.eth(ETH_PBB), "eth_type 0x88e7"),
            _ => (true, ""),
        };
        (!ok).then_some(need)
    }
}

fn name(f: Field) -> String {
    f.info()
        .map_or_else(|| format!("field {}", u8::from(f)), |i| i.name.to_string())
}

/// Every present field's prerequisites are exactly matched (`OFPBMC_BAD_PREREQ`).
/// ICMPv6 ND fields need only the type, as the spec says (OVS also wants icmpv6_code 0);
/// ARP fields need 0x0806 (OVS also takes RARP 0x8035).
pub fn check_match_prereqs(m: &Match) -> Result<()> {
    let k = Known::of(m);
    for (f, _, _) in m.fields() {
        if let Some(need) = k.missing(f) {
            return Err(Error::bad_match(
                BadMatchCode::BadPrereq,
                format!("match on {} needs {need}", name(f)),
            ));
        }
    }
    Ok(())
}

fn bac(code: BadActionCode, detail: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::bad_action(code, detail)
}

/// Output ports an action may name besides 1..=port::MAX. Port 0 is never valid (the spec
/// numbers ports from 1; Open vSwitch lets `output:0` through).
fn reserved_output_ok(p: u32) -> bool {
    matches!(
        p,
        port::IN_PORT
            | port::TABLE
            | port::NORMAL
            | port::FLOOD
            | port::ALL
            | port::CONTROLLER
            | port::LOCAL
    )
}

/// Checks of one action that need no knowledge of the packet.
fn check_action_alone(a: &Action) -> Result<()> {
    match a {
        Action::Unknown { typ, .. } => Err(bac(
            BadActionCode::BadType,
            format!("unknown action type {typ}"),
        )),
        Action::Experimenter { experimenter, .. } => Err(bac(
            BadActionCode::BadExperimenter,
            format!("experimenter action 0x{experimenter:08x} is not supported"),
        )),
        Action::Output { port: p, .. } => {
            if *p == 0 || (*p > port::MAX && !reserved_output_ok(*p)) {
                Err(bac(
                    BadActionCode::BadOutPort,
                    format!("output to invalid port 0x{p:x}"),
                ))
            } else {
                Ok(())
            }
        }
        Action::Group(g) if *g > group::MAX => Err(bac(
            BadActionCode::BadOutGroup,
            format!("group action to invalid group 0x{g:x}"),
        )),
        Action::PushVlan(e) if !matches!(*e, 0x8100 | 0x88a8) => Err(bac(
            BadActionCode::BadArgument,
            format!("push_vlan ethertype 0x{e:04x} is not 0x8100/0x88a8"),
        )),
        Action::PushMpls(e) if !matches!(*e, ETH_MPLS | ETH_MPLS_MC) => Err(bac(
            BadActionCode::BadArgument,
            format!("push_mpls ethertype 0x{e:04x} is not 0x8847/0x8848"),
        )),
        // OVS takes any pop_mpls ethertype; values below 0x0600 are 802.3 lengths, not types.
        Action::PopMpls(e) if *e < 0x0600 => Err(bac(
            BadActionCode::BadArgument,
            format!("pop_mpls ethertype 0x{e:04x} is not an ethertype"),
        )),
        Action::PushPbb(e) if *e != ETH_PBB => Err(bac(
            BadActionCode::BadArgument,
            format!("push_pbb ethertype 0x{e:04x} is not 0x88e7"),
        )),
        Action::SetField { field, value } => check_set_field_alone(*field, value),
        _ => Ok(()),
    }
}

fn check_set_field_alone(field: Field, value: &[u8]) -> Result<()> {
    use Field::*;
    let Some(info) = field.info() else {
        return Err(bac(
            BadActionCode::BadSetType,
            format!("set_field of unknown field {}", u8::from(field)),
        ));
    };
    // Pipeline fields and pseudo-fields cannot be set (OVS answers in_port/in_phy_port with
    // BAD_SET_ARGUMENT and lets metadata through; the spec calls them unsupported types).
    if matches!(field, InPort | InPhyPort | Metadata | Ipv6Exthdr) {
        return Err(bac(
            BadActionCode::BadSetType,
            format!("set_field cannot set {}", info.name),
        ));
    }
    if value.len() != info.len {
        return Err(bac(
            BadActionCode::BadSetLen,
            format!(
                "set_field {} value has {} bytes, expected {}",
                info.name,
                value.len(),
                info.len
            ),
        ));
    }
    // Read-only in OVS: eth_type, ip_proto and mpls_bos.
    if matches!(field, EthType | IpProto | MplsBos) {
        return Err(bac(
            BadActionCode::BadSetArgument,
            format!("set_field cannot modify read-only {}", info.name),
        ));
    }
    let full = field_full_mask(field);
    if value.iter().zip(full.iter()).any(|(v, f)| v & !f != 0) {
        return Err(bac(
            BadActionCode::BadSetArgument,
            format!("set_field {} value out of range", info.name),
        ));
    }
    if field == VlanVid
        && value
            .first()
            .is_some_and(|b| u16::from(*b) << 8 & OFPVID_PRESENT == 0)
    {
        return Err(bac(
            BadActionCode::BadSetArgument,
            "set_field vlan_vid needs the OFPVID_PRESENT bit",
        ));
    }
    Ok(())
}

/// Checks an action list on its own, without a match (for group buckets, where Open vSwitch
/// does no consistency check): types, ports, groups, ethertypes and set_field field/value.
pub fn check_actions_no_match(actions: &[Action]) -> Result<()> {
    actions.iter().try_for_each(check_action_alone)
}

fn inconsistent(detail: String) -> Error {
    bac(BadActionCode::MatchInconsistent, detail)
}

/// Walks actions, updating what is known; `OFPBAC_MATCH_INCONSISTENT` when an action needs
/// something the packet is not known to have.
fn check_actions_with(actions: &[Action], k: &mut Known) -> Result<()> {
    for a in actions {
        check_action_alone(a)?;
        match a {
            Action::PushVlan(_) => k.vlan = true,
            Action::PopVlan => {
                if !k.vlan {
                    return Err(inconsistent(
                        "pop_vlan on a packet not known to be tagged".into(),
                    ));
                }
                k.vlan = false;
            }
            Action::PushMpls(e) => {
                k.eth_type = Some(*e);
                k.ip_proto = None;
                k.icmpv6_type = None;
            }
            Action::PopMpls(e) => {
                if !k.mpls() {
                    return Err(inconsistent(
                        "pop_mpls on a packet not known to be MPLS".into(),
                    ));
                }
                k.eth_type = Some(*e);
            }
            Action::SetMplsTtl(_) | Action::DecMplsTtl if !k.mpls() => {
                return Err(inconsistent(
                    "MPLS TTL action on a packet not known to be MPLS".into(),
                ));
            }
            Action::SetNwTtl(_) | Action::DecNwTtl if !k.ip() => {
                return Err(inconsistent(
                    "IP TTL action on a packet not known to be IP".into(),
                ));
            }
            Action::PushPbb(_) => {
                k.eth_type = Some(ETH_PBB);
                k.ip_proto = None;
                k.icmpv6_type = None;
                k.vlan = false;
            }
            Action::PopPbb => {
                if !k.eth(ETH_PBB) {
                    return Err(inconsistent(
                        "pop_pbb on a packet not known to be PBB".into(),
                    ));
                }
                k.eth_type = None;
            }
            Action::SetField { field, value } => {
                if let Some(need) = k.missing(*field) {
                    return Err(inconsistent(format!(
                        "set_field {} needs {need}",
                        name(*field)
                    )));
                }
                if *field == Field::VlanVid && !k.vlan {
                    return Err(inconsistent("set_field vlan_vid needs a VLAN tag".into()));
                }
                if *field == Field::Icmpv6Type {
                    k.icmpv6_type = value.first().copied();
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks actions against what `m` guarantees (see the module doc for the codes).
pub fn check_actions(actions: &[Action], m: &Match) -> Result<()> {
    check_actions_with(actions, &mut Known::of(m))
}

/// Checks a flow's instructions in table `table_id` of a pipeline with `n_tables` tables.
/// A type given twice is the ONF extension error 2600 (`OFPBIC_DUP_INST`) as
/// [`ErrorCode::Experimenter`] `{ exp_type: 2600, experimenter: 0x4f4e4600 }`, which is
/// what Open vSwitch answers in OF1.3. Write-actions are checked after apply-actions, with
/// what the apply-actions changed, as OVS does.
pub fn check_instructions(
    instrs: &[Instruction],
    table_id: u8,
    n_tables: u8,
    m: &Match,
) -> Result<()> {
    let mut seen: Vec<u16> = Vec::new();
    for i in instrs {
        match i {
            Instruction::Unknown { typ, .. } => {
                return Err(Error::bad_instruction(
                    BadInstructionCode::UnknownInst,
                    format!("unknown instruction type {typ}"),
                ))
            }
            Instruction::Experimenter { experimenter, .. } => {
                return Err(Error::bad_instruction(
                    BadInstructionCode::BadExperimenter,
                    format!("experimenter instruction 0x{experimenter:08x} is not supported"),
                ))
            }
            _ => {}
        }
        let t = i.type_code();
        if seen.contains(&t) {
            return Err(Error::new(
                ErrorCode::Experimenter {
                    exp_type: ONF_ERR_DUP_INST,
                    experimenter: crate::wire::action::ONF_EXPERIMENTER_ID,
                },
                format!("instruction type {t} appears twice (OFPBIC_DUP_INST)"),
            ));
        }
        seen.push(t);
    }
    for i in instrs {
        match i {
            Instruction::GotoTable(t) if *t <= table_id || *t >= n_tables => {
                return Err(Error::bad_instruction(
                    BadInstructionCode::BadTableId,
                    format!("goto_table:{t} from table {table_id} (tables 0..{n_tables})"),
                ))
            }
            Instruction::Meter(id) if *id == 0 || *id > meter::MAX => {
                return Err(Error::meter_mod(
                    MeterModFailedCode::InvalidMeter,
                    format!("meter instruction to invalid meter {id}"),
                ))
            }
            _ => {}
        }
    }
    let mut k = Known::of(m);
    for i in instrs {
        if let Instruction::ApplyActions(a) = i {
            check_actions_with(a, &mut k)?;
        }
    }
    for i in instrs {
        if let Instruction::WriteActions(a) = i {
            check_actions_with(a, &mut k)?;
        }
    }
    Ok(())
}

/// A flow_mod that passed [`check_flow_mod`] against `n_tables` tables, so that
/// `FlowTables::apply_checked_flow_mod` need not check it again.
#[derive(Debug, Clone, Copy)]
pub struct CheckedFlowMod<'a> {
    pub flow_mod: &'a FlowMod,
    pub n_tables: u8,
}

/// Checks a flow_mod before a table applies it: command, table id, flags, the match's
/// prerequisites (every command), and the instructions (ADD and MODIFY*).
pub fn check_flow_mod(fm: &FlowMod, n_tables: u8) -> Result<CheckedFlowMod<'_>> {
    let is_delete = match fm.command {
        FlowModCommand::Add | FlowModCommand::Modify | FlowModCommand::ModifyStrict => false,
        FlowModCommand::Delete | FlowModCommand::DeleteStrict => true,
        FlowModCommand::Unknown(c) => {
            return Err(Error::flow_mod(
                FlowModFailedCode::BadCommand,
                format!("unknown flow_mod command {c}"),
            ))
        }
    };
    if fm.table_id == OFPTT_ALL {
        if !is_delete {
            return Err(Error::flow_mod(
                FlowModFailedCode::BadTableId,
                "table_id OFPTT_ALL is only allowed in delete flow_mods",
            ));
        }
    } else if fm.table_id >= n_tables {
        return Err(Error::flow_mod(
            FlowModFailedCode::BadTableId,
            format!(
                "table {} does not exist (tables 0..{n_tables})",
                fm.table_id
            ),
        ));
    }
    let known = flow_flags::SEND_FLOW_REM
        | flow_flags::CHECK_OVERLAP
        | flow_flags::RESET_COUNTS
        | flow_flags::NO_PKT_COUNTS
        | flow_flags::NO_BYT_COUNTS;
    if fm.flags & !known != 0 {
        return Err(Error::flow_mod(
            FlowModFailedCode::BadFlags,
            format!("unknown flow_mod flags 0x{:04x}", fm.flags & !known),
        ));
    }
    check_match_prereqs(&fm.r#match)?;
    if !is_delete {
        check_instructions(&fm.instructions, fm.table_id, n_tables, &fm.r#match)?;
    }
    Ok(CheckedFlowMod {
        flow_mod: fm,
        n_tables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(fields: &[(Field, u64)]) -> Match {
        let mut m = Match::any();
        for (f, v) in fields {
            m.set_u64(*f, *v);
        }
        m
    }

    fn sf(field: Field, v: u64) -> Action {
        let n = field.len();
        Action::SetField {
            field,
            value: v.to_be_bytes()[8 - n..].to_vec(),
        }
    }

    #[test]
    fn prereqs() {
        use Field::*;
        let ok = [
            m(&[]),
            m(&[(EthType, 0x0800), (IpProto, 6), (TcpDst, 80)]),
            m(&[(EthType, 0x86dd), (IpProto, 17), (UdpSrc, 53)]),
            m(&[
                (EthType, 0x86dd),
                (IpProto, 58),
                (Icmpv6Type, 135),
                (Ipv6NdTarget, 1),
                (Ipv6NdSll, 2),
            ]),
            m(&[(InPort, 1), (InPhyPort, 1)]),
            m(&[(VlanVid, 0x1005), (VlanPcp, 3)]),
            m(&[(EthType, 0x8848), (MplsLabel, 5)]),
            m(&[(EthType, 0x88e7), (PbbIsid, 5)]),
            m(&[(EthType, 0x0806), (ArpOp, 1)]),
        ];
        for x in ok {
            check_match_prereqs(&x).unwrap_or_else(|e| panic!("{x:?}: {e}"));
        }
        let bad = [
            m(&[(InPhyPort, 1)]),
            m(&[(VlanPcp, 3)]),
            m(&[(VlanVid, 0), (VlanPcp, 3)]),
            m(&[(IpDscp, 3)]),
            m(&[(EthType, 0x86dd), (Ipv4Src, 1)]),
            m(&[(EthType, 0x0800), (TcpDst, 80)]),
            m(&[(EthType, 0x0800), (IpProto, 17), (TcpDst, 80)]),
            m(&[(EthType, 0x0800), (IpProto, 6), (SctpDst, 80)]),
            m(&[(EthType, 0x86dd), (IpProto, 1), (Icmpv4Type, 8)]),
            m(&[(EthType, 0x0800), (ArpOp, 1)]),
            m(&[(EthType, 0x0800), (Ipv6Flabel, 1)]),
            m(&[(EthType, 0x0800), (IpProto, 58), (Icmpv6Type, 1)]),
            m(&[
                (EthType, 0x86dd),
                (IpProto, 58),
                (Icmpv6Type, 136),
                (Ipv6NdSll, 1),
            ]),
            m(&[
                (EthType, 0x86dd),
                (IpProto, 58),
                (Icmpv6Type, 135),
                (Ipv6NdTll, 1),
            ]),
            m(&[(EthType, 0x86dd), (IpProto, 58), (Ipv6NdTarget, 1)]),
            m(&[(EthType, 0x0800), (MplsBos, 1)]),
            m(&[(PbbIsid, 1)]),
        ];
        for x in bad {
            let e = check_match_prereqs(&x).expect_err(&format!("{x:?}"));
            assert_eq!(
                e.code,
                ErrorCode::BadMatch(BadMatchCode::BadPrereq),
                "{x:?}"
            );
        }
        // vlan_vid=0x1000/0x1000 (any tag) satisfies vlan_pcp
        let mut x = m(&[(VlanPcp, 1)]);
        x.set_masked(VlanVid, &[0x10, 0x00], &[0x10, 0x00]);
        check_match_prereqs(&x).unwrap();
    }

    fn bac_of(r: Result<()>) -> BadActionCode {
        match r.expect_err("expected an error").code {
            ErrorCode::BadAction(c) => c,
            other => panic!("not a bad action: {other:?}"),
        }
    }

    #[test]
    fn actions() {
        use BadActionCode as C;
        let any = Match::any();
        let tcp = m(&[(Field::EthType, 0x0800), (Field::IpProto, 6)]);
        let c = |a: Vec<Action>, mm: &Match| bac_of(check_actions(&a, mm));
        assert_eq!(
            c(
                vec![Action::Unknown {
                    typ: 77,
                    body: vec![]
                }],
                &any
            ),
            C::BadType
        );
        assert_eq!(
            c(
                vec![Action::Experimenter {
                    experimenter: 1,
                    data: vec![]
                }],
                &any
            ),
            C::BadExperimenter
        );
        for p in [0, port::MAX + 1, port::ANY] {
            assert_eq!(
                c(
                    vec![Action::Output {
                        port: p,
                        max_len: 0
                    }],
                    &any
                ),
                C::BadOutPort
            );
        }
        for p in [
            1,
            port::MAX,
            port::IN_PORT,
            port::TABLE,
            port::NORMAL,
            port::FLOOD,
            port::ALL,
            port::CONTROLLER,
            port::LOCAL,
        ] {
            check_actions(
                &[Action::Output {
                    port: p,
                    max_len: 0,
                }],
                &any,
            )
            .unwrap();
        }
        assert_eq!(c(vec![Action::Group(group::ALL)], &any), C::BadOutGroup);
        check_actions(&[Action::Group(group::MAX)], &any).unwrap();
        assert_eq!(c(vec![Action::PushVlan(0x0800)], &any), C::BadArgument);
        assert_eq!(c(vec![Action::PushMpls(0x0800)], &any), C::BadArgument);
        assert_eq!(
            c(vec![Action::PushMpls(0x8847), Action::PopMpls(0x20)], &any),
            C::BadArgument
        );
        assert_eq!(c(vec![sf(Field::TcpDst, 80)], &any), C::MatchInconsistent);
        check_actions(&[sf(Field::TcpDst, 80)], &tcp).unwrap();
        assert_eq!(
            c(vec![Action::PushMpls(0x8847), sf(Field::TcpDst, 80)], &tcp),
            C::MatchInconsistent
        );
        check_actions(
            &[
                Action::PushMpls(0x8847),
                Action::SetMplsTtl(3),
                sf(Field::MplsLabel, 9),
            ],
            &tcp,
        )
        .unwrap();
        assert_eq!(c(vec![Action::PopVlan], &any), C::MatchInconsistent);
        assert_eq!(
            c(vec![sf(Field::VlanVid, 0x1001)], &any),
            C::MatchInconsistent
        );
        check_actions(
            &[
                Action::PushVlan(0x8100),
                sf(Field::VlanVid, 0x1001),
                Action::PopVlan,
            ],
            &any,
        )
        .unwrap();
        assert_eq!(
            c(
                vec![Action::PushVlan(0x8100), Action::PopVlan, Action::PopVlan],
                &any
            ),
            C::MatchInconsistent
        );
        assert_eq!(c(vec![Action::DecNwTtl], &any), C::MatchInconsistent);
        assert_eq!(c(vec![Action::DecMplsTtl], &tcp), C::MatchInconsistent);
        assert_eq!(c(vec![Action::PopMpls(0x0800)], &tcp), C::MatchInconsistent);
        assert_eq!(c(vec![Action::PopPbb], &any), C::MatchInconsistent);
        for f in [
            Field::InPort,
            Field::InPhyPort,
            Field::Metadata,
            Field::Unknown(90),
        ] {
            let a = Action::SetField {
                field: f,
                value: vec![0; f.len()],
            };
            assert_eq!(c(vec![a], &any), C::BadSetType);
        }
        assert_eq!(
            c(
                vec![Action::SetField {
                    field: Field::TcpDst,
                    value: vec![1]
                }],
                &tcp
            ),
            C::BadSetLen
        );
        let vlan = m(&[(Field::VlanVid, 0x1001)]);
        assert_eq!(c(vec![sf(Field::VlanPcp, 8)], &vlan), C::BadSetArgument);
        assert_eq!(
            c(vec![sf(Field::VlanVid, 0x0005)], &vlan),
            C::BadSetArgument
        );
        check_actions(&[sf(Field::VlanPcp, 7), sf(Field::VlanVid, 0x1fff)], &vlan).unwrap();
        check_actions_no_match(&[sf(Field::TcpDst, 80)]).unwrap();
        assert_eq!(
            bac_of(check_actions_no_match(&[Action::Group(group::ANY)])),
            C::BadOutGroup
        );
    }

    #[test]
    fn instructions_and_flow_mod() {
        let any = Match::any();
        let code = |r: Result<()>| r.expect_err("expected an error").code;
        let bic = |c| ErrorCode::BadInstruction(c);
        assert_eq!(
            code(check_instructions(
                &[Instruction::Unknown {
                    typ: 9,
                    body: vec![]
                }],
                0,
                4,
                &any
            )),
            bic(BadInstructionCode::UnknownInst)
        );
        assert_eq!(
            code(check_instructions(
                &[Instruction::Experimenter {
                    experimenter: 1,
                    data: vec![]
                }],
                0,
                4,
                &any
            )),
            bic(BadInstructionCode::BadExperimenter)
        );
        assert_eq!(
            code(check_instructions(
                &[Instruction::ClearActions, Instruction::ClearActions],
                0,
                4,
                &any
            )),
            ErrorCode::Experimenter {
                exp_type: 2600,
                experimenter: 0x4f4e_4600
            }
        );
        for t in [0, 1, 4, 200] {
            assert_eq!(
                code(check_instructions(&[Instruction::GotoTable(t)], 1, 4, &any)),
                bic(BadInstructionCode::BadTableId),
                "goto {t}"
            );
        }
        check_instructions(&[Instruction::GotoTable(3)], 1, 4, &any).unwrap();
        assert_eq!(
            code(check_instructions(&[Instruction::Meter(0)], 0, 4, &any)),
            ErrorCode::MeterModFailed(MeterModFailedCode::InvalidMeter)
        );
        // write-actions see what apply-actions pushed
        check_instructions(
            &[
                Instruction::ApplyActions(vec![Action::PushVlan(0x8100)]),
                Instruction::WriteActions(vec![sf(Field::VlanVid, 0x1002)]),
            ],
            0,
            4,
            &any,
        )
        .unwrap();
        assert_eq!(
            code(check_instructions(
                &[Instruction::WriteActions(vec![Action::Output {
                    port: 0,
                    max_len: 0
                }])],
                0,
                4,
                &any
            )),
            ErrorCode::BadAction(BadActionCode::BadOutPort)
        );

        let fmc = |c| ErrorCode::FlowModFailed(c);
        let base = FlowMod::default();
        check_flow_mod(&base, 4).unwrap();
        let with = |f: &dyn Fn(&mut FlowMod)| {
            let mut x = base.clone();
            f(&mut x);
            check_flow_mod(&x, 4).map(|_| ())
        };
        assert_eq!(
            code(with(&|x| x.table_id = 4)),
            fmc(FlowModFailedCode::BadTableId)
        );
        assert_eq!(
            code(with(&|x| x.table_id = OFPTT_ALL)),
            fmc(FlowModFailedCode::BadTableId)
        );
        with(&|x| {
            x.table_id = OFPTT_ALL;
            x.command = FlowModCommand::Delete;
            x.instructions = vec![Instruction::GotoTable(0)];
        })
        .unwrap();
        assert_eq!(
            code(with(&|x| x.command = FlowModCommand::Unknown(5))),
            fmc(FlowModFailedCode::BadCommand)
        );
        assert_eq!(
            code(with(&|x| x.flags = 1 << 5)),
            fmc(FlowModFailedCode::BadFlags)
        );
        with(&|x| x.flags = 0x1f).unwrap();
        assert_eq!(
            code(with(&|x| {
                x.command = FlowModCommand::DeleteStrict;
                x.r#match = m(&[(Field::TcpDst, 1)]);
            })),
            ErrorCode::BadMatch(BadMatchCode::BadPrereq)
        );
        assert_eq!(
            code(with(&|x| x.instructions = vec![Instruction::GotoTable(0)])),
            bic(BadInstructionCode::BadTableId)
        );
    }
}
