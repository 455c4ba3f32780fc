//! Action lists <-> `ofp_action_*` bytes.
//!
//! Decoding is structural: every action's length must be >= 8, a multiple of 8, fit in the
//! list, and equal the fixed size of its type (`OFPBAC_BAD_LEN` otherwise). Unknown types
//! become [`Action::Unknown`] and experimenter actions stay opaque; answering them is
//! [`crate::validate`]'s job. Set-field follows what Open vSwitch answers in OpenFlow 1.3:
//! - a class other than OPENFLOW_BASIC: `OFPBAC_BAD_SET_TYPE`;
//! - the hasmask bit: ONF experimenter error 4250 (`OFPBAC_BAD_SET_MASK`, which has no OF1.3
//!   code), i.e. [`ErrorCode::Experimenter`] `{ exp_type: 4250, experimenter:
//!   ONF_EXPERIMENTER_ID }`;
//! - an OXM length that is not the field's width: `OFPBAC_BAD_SET_LEN`; one running past the
//!   action: also `OFPBAC_BAD_SET_LEN` (OVS answers `OFPBMC_BAD_LEN` there; the spec's
//!   "length problem in SET_FIELD action" fits better);
//! - non-zero bytes after the TLV: `OFPBAC_BAD_SET_ARGUMENT`.
//!
//! An unknown basic field number decodes to `SetField { field: Field::Unknown(n), .. }` with
//! the value as sent; validation answers `OFPBAC_BAD_SET_TYPE`.

use crate::action::Action;
use crate::error::{BadActionCode, Error, ErrorCode, Result};
use crate::field::{Field, OFPXMC_OPENFLOW_BASIC};
use crate::wire::buf::{Reader, Writer};
use crate::wire::oxm::{read_oxm_header, recode, write_oxm_tlv};

/// The Open Networking Foundation experimenter id, used by OF1.3 extension error codes.
pub const ONF_EXPERIMENTER_ID: u32 = 0x4f4e_4600;
/// ONF extension error (exp_type) for "set-field with hasmask" in OF1.3.
pub const ONF_ERR_BAD_SET_MASK: u16 = 4250;

fn bac(code: BadActionCode, detail: impl Into<std::borrow::Cow<'static, str>>, at: usize) -> Error {
    Error::bad_action(code, detail).at(at)
}

fn bac_len(e: Error) -> Error {
    recode(e, ErrorCode::BadAction(BadActionCode::BadLen))
}

/// Reads actions filling exactly `len` bytes.
pub fn decode_actions(r: &mut Reader<'_>, len: usize) -> Result<Vec<Action>> {
    let mut list = r.sub(len, "action list").map_err(bac_len)?;
    let mut out = Vec::new();
    while !list.is_empty() {
        out.push(decode_action(&mut list)?);
    }
    Ok(out)
}

/// Reads one action (header, body and padding).
pub fn decode_action(r: &mut Reader<'_>) -> Result<Action> {
    let at = r.offset();
    let typ = r.u16("action type").map_err(bac_len)?;
    let alen = r.u16("action length").map_err(bac_len)?;
    if alen < 8 || alen % 8 != 0 {
        return Err(bac(
            BadActionCode::BadLen,
            format!("action type {typ} has length {alen}, not a multiple of 8 of at least 8"),
            at,
        ));
    }
    let mut b = r
        .sub(usize::from(alen) - 4, "action body")
        .map_err(bac_len)?;
    let fixed = |want: u16| -> Result<()> {
        if alen == want {
            Ok(())
        } else {
            Err(bac(
                BadActionCode::BadLen,
                format!("action type {typ} has length {alen}, expected {want}"),
                at,
            ))
        }
    };
    let a = match typ {
        0 => {
            fixed(16)?;
            let port = b.u32("output port").map_err(bac_len)?;
            let max_len = b.u16("output max_len").map_err(bac_len)?;
            Action::Output { port, max_len }
        }
        11 | 12 | 16 | 18 | 24 | 27 => {
            fixed(8)?;
            match typ {
                11 => Action::CopyTtlOut,
                12 => Action::CopyTtlIn,
                16 => Action::DecMplsTtl,
                18 => Action::PopVlan,
                24 => Action::DecNwTtl,
                _ => Action::PopPbb,
            }
        }
        15 | 23 => {
            fixed(8)?;
            let ttl = b.u8("ttl").map_err(bac_len)?;
            if typ == 15 {
                Action::SetMplsTtl(ttl)
            } else {
                Action::SetNwTtl(ttl)
            }
        }
        17 | 19 | 20 | 26 => {
            fixed(8)?;
            let ethertype = b.u16("ethertype").map_err(bac_len)?;
            match typ {
                17 => Action::PushVlan(ethertype),
                19 => Action::PushMpls(ethertype),
                20 => Action::PopMpls(ethertype),
                _ => Action::PushPbb(ethertype),
            }
        }
        21 | 22 => {
            fixed(8)?;
            let id = b.u32("id").map_err(bac_len)?;
            if typ == 21 {
                Action::SetQueue(id)
            } else {
                Action::Group(id)
            }
        }
        25 => decode_set_field(&mut b, at)?,
        0xffff => {
            let experimenter = b.u32("experimenter id").map_err(bac_len)?;
            Action::Experimenter {
                experimenter,
                data: b.rest().to_vec(),
            }
        }
        _ => Action::Unknown {
            typ,
            body: b.rest().to_vec(),
        },
    };
    Ok(a)
}

fn decode_set_field(b: &mut Reader<'_>, at: usize) -> Result<Action> {
    let set_len = |e: Error| recode(e, ErrorCode::BadAction(BadActionCode::BadSetLen));
    let h = read_oxm_header(b).map_err(set_len)?;
    if h.class != OFPXMC_OPENFLOW_BASIC {
        return Err(bac(
            BadActionCode::BadSetType,
            format!("set_field OXM class 0x{:04x} is not supported", h.class),
            at,
        ));
    }
    if h.hasmask {
        return Err(Error::new(
            ErrorCode::Experimenter {
                exp_type: ONF_ERR_BAD_SET_MASK,
                experimenter: ONF_EXPERIMENTER_ID,
            },
            "set_field OXM has the hasmask bit set (OFPBAC_BAD_SET_MASK)",
        )
        .at(at));
    }
    let field = Field::from(h.field);
    if let Some(info) = field.info() {
        if usize::from(h.length) != info.len {
            return Err(bac(
                BadActionCode::BadSetLen,
                format!(
                    "set_field {} has OXM length {}, expected {}",
                    info.name, h.length, info.len
                ),
                at,
            ));
        }
    }
    let value = b
        .bytes(usize::from(h.length), "set_field value")
        .map_err(set_len)?
        .to_vec();
    if b.rest().iter().any(|&x| x != 0) {
        return Err(bac(
            BadActionCode::BadSetArgument,
            "set_field padding is not zero",
            at,
        ));
    }
    Ok(Action::SetField { field, value })
}

/// Writes one action, padded to 8 bytes.
pub fn encode_action(a: &Action, w: &mut Writer) {
    let start = w.len();
    w.u16(a.type_code());
    w.u16(0);
    match a {
        Action::Output { port, max_len } => {
            w.u32(*port);
            w.u16(*max_len);
            w.zeros(6);
        }
        Action::CopyTtlOut
        | Action::CopyTtlIn
        | Action::DecMplsTtl
        | Action::PopVlan
        | Action::DecNwTtl
        | Action::PopPbb => w.zeros(4),
        Action::SetMplsTtl(ttl) | Action::SetNwTtl(ttl) => {
            w.u8(*ttl);
            w.zeros(3);
        }
        Action::PushVlan(e) | Action::PushMpls(e) | Action::PopMpls(e) | Action::PushPbb(e) => {
            w.u16(*e);
            w.zeros(2);
        }
        Action::SetQueue(id) | Action::Group(id) => w.u32(*id),
        Action::SetField { field, value } => write_oxm_tlv(*field, value, None, w),
        Action::Experimenter { experimenter, data } => {
            w.u32(*experimenter);
            w.bytes(data);
        }
        Action::Unknown { body, .. } => w.bytes(body),
    }
    w.pad_to(start, 8);
    w.patch_len_since(start + 2, start);
}

/// Writes actions (each padded to 8 bytes).
pub fn encode_actions(actions: &[Action], w: &mut Writer) {
    for a in actions {
        encode_action(a, w);
    }
}

/// Bytes [`encode_actions`] writes.
pub fn actions_wire_len(actions: &[Action]) -> usize {
    let mut w = Writer::new();
    encode_actions(actions, &mut w);
    w.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(b: &[u8]) -> Result<Vec<Action>> {
        decode_actions(&mut Reader::new(b), b.len())
    }

    fn bac_code(e: &Error) -> ErrorCode {
        e.code
    }

    #[test]
    fn golden_bytes() {
        let acts = vec![
            Action::Output {
                port: 2,
                max_len: 0xffe5,
            },
            Action::PushVlan(0x8100),
            Action::SetField {
                field: Field::VlanVid,
                value: vec![0x10, 0x0a],
            },
            Action::Group(7),
        ];
        let mut w = Writer::new();
        encode_actions(&acts, &mut w);
        #[rustfmt::skip]
        let want = [
            0, 0, 0, 16, 0, 0, 0, 2, 0xff, 0xe5, 0, 0, 0, 0, 0, 0,
            0, 17, 0, 8, 0x81, 0, 0, 0,
            0, 25, 0, 16, 0x80, 0, 0x0c, 2, 0x10, 0x0a, 0, 0, 0, 0, 0, 0,
            0, 22, 0, 8, 0, 0, 0, 7,
        ];
        assert_eq!(w.buf, want);
        assert_eq!(dec(&w.buf).unwrap(), acts);
        assert_eq!(actions_wire_len(&acts), want.len());
    }

    #[test]
    fn lengths_and_set_field_errors() {
        let len = ErrorCode::BadAction(BadActionCode::BadLen);
        // length 4, length 12, length past the end, output of length 8
        assert_eq!(bac_code(&dec(&[0, 11, 0, 4, 0, 0, 0, 0]).unwrap_err()), len);
        assert_eq!(
            bac_code(&dec(&[0, 11, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err()),
            len
        );
        assert_eq!(
            bac_code(&dec(&[0, 11, 0, 16, 0, 0, 0, 0]).unwrap_err()),
            len
        );
        assert_eq!(bac_code(&dec(&[0, 0, 0, 8, 0, 0, 0, 1]).unwrap_err()), len);
        // pop_vlan with 16 bytes
        assert_eq!(
            bac_code(&dec(&[0, 18, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err()),
            len
        );
        // set_field with a mask
        let e = dec(&[
            0, 25, 0, 16, 0x80, 0, 0x1d, 4, 0, 80, 0xff, 0xff, 0, 0, 0, 0,
        ])
        .unwrap_err();
        assert_eq!(
            e.code,
            ErrorCode::Experimenter {
                exp_type: 4250,
                experimenter: 0x4f4e_4600
            }
        );
        // set_field tcp_dst with length 3
        let e = dec(&[0, 25, 0, 16, 0x80, 0, 0x1c, 3, 0, 80, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadAction(BadActionCode::BadSetLen));
        // set_field unknown field with a length past the action
        let e = dec(&[0, 25, 0, 8, 0x80, 0, 0x7e, 9]).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadAction(BadActionCode::BadSetLen));
        // experimenter class
        let e = dec(&[0, 25, 0, 16, 0xff, 0xff, 0x02, 6, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadAction(BadActionCode::BadSetType));
        // non-zero padding
        let e = dec(&[0, 25, 0, 16, 0x80, 0, 0x1c, 2, 0, 80, 0, 0, 0, 0, 0, 1]).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadAction(BadActionCode::BadSetArgument));
        // unknown type and unknown field are values
        assert_eq!(
            dec(&[0, 99, 0, 8, 1, 2, 3, 4]).unwrap(),
            vec![Action::Unknown {
                typ: 99,
                body: vec![1, 2, 3, 4]
            }]
        );
        assert_eq!(
            dec(&[0, 25, 0, 8, 0x80, 0, 0x7e, 0]).unwrap(),
            vec![Action::SetField {
                field: Field::Unknown(63),
                value: vec![]
            }]
        );
    }
}
