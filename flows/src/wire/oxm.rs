//! `ofp_match` and OXM TLVs <-> [`Match`]; bare OXM headers and ids for table features and set_field.
//!
//! Decoding checks structure and per-field validity only (class, field, length, mask rules,
//! value bits); prerequisites are order-independent facts about the whole match and are checked
//! by [`crate::validate::check_match_prereqs`]. Error choices, as Open vSwitch 3.x and the
//! OpenFlow 1.3.5 spec answer them:
//! - match type other than OFPMT_OXM (including OFPMT_STANDARD): `OFPBMC_BAD_TYPE` (OVS still
//!   accepts the deprecated OFPMT_STANDARD layout; we follow the 1.3 spec, where OXM is the match);
//! - any length problem (truncated match or TLV, TLV length wrong for its field):
//!   `OFPBMC_BAD_LEN` (OVS answers a known field with the wrong length as `OFPBMC_BAD_FIELD`;
//!   the spec's "length problem in match" is the better fit);
//! - non-basic class or unknown basic field: `OFPBMC_BAD_FIELD`;
//! - a field twice: `OFPBMC_DUP_FIELD` (also when the first had an all-zero mask, which OVS lets
//!   through);
//! - hasmask on a field the spec says is not maskable: `OFPBMC_BAD_MASK` (OVS tolerates an
//!   all-ones mask there);
//! - value bits set where the mask is 0: `OFPBMC_BAD_WILDCARDS`;
//! - value outside the field's valid bits (`vlan_pcp` > 7, `ip_dscp` > 63, ...): `OFPBMC_BAD_VALUE`.
//!
//! Mask bits outside a field's valid bits (e.g. `vlan_vid/0xffff`) are accepted and dropped,
//! as OVS does.

use crate::error::{BadMatchCode, Error, ErrorCode, Result};
use crate::field::{field_full_mask, Field, OFPXMC_EXPERIMENTER, OFPXMC_OPENFLOW_BASIC};
use crate::matches::Match;
use crate::wire::buf::{Reader, Writer};

/// `ofp_match_type` OFPMT_OXM.
pub const OFPMT_OXM: u16 = 1;
/// `ofp_match_type` OFPMT_STANDARD (deprecated, rejected).
pub const OFPMT_STANDARD: u16 = 0;

/// A 32-bit OXM header: `class:16 | field:7 | hasmask:1 | length:8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OxmHeader {
    pub class: u16,
    /// The 7-bit field number.
    pub field: u8,
    pub hasmask: bool,
    /// Payload length in bytes (value, plus mask when `hasmask`).
    pub length: u8,
}

impl OxmHeader {
    /// The header of a basic-class field, length derived from the field width.
    /// Unknown fields get length 0.
    pub fn basic(field: Field, hasmask: bool) -> OxmHeader {
        let width = field.len();
        let len = if hasmask { width * 2 } else { width };
        OxmHeader {
            class: OFPXMC_OPENFLOW_BASIC,
            field: u8::from(field) & 0x7f,
            hasmask,
            length: u8::try_from(len).unwrap_or(0),
        }
    }

    /// The header as it goes on the wire.
    pub fn raw(self) -> u32 {
        (u32::from(self.class) << 16)
            | (u32::from(self.field & 0x7f) << 9)
            | (u32::from(self.hasmask) << 8)
            | u32::from(self.length)
    }

    /// Splits a wire header into its parts (total: every u32 is some header).
    #[allow(clippy::cast_possible_truncation)] // each part is masked to its width first
    pub fn from_raw(raw: u32) -> OxmHeader {
        OxmHeader {
            class: (raw >> 16) as u16,
            field: ((raw >> 9) & 0x7f) as u8,
            hasmask: raw & 0x100 != 0,
            length: (raw & 0xff) as u8,
        }
    }

    /// The basic field, when the class is OFPXMC_OPENFLOW_BASIC.
    pub fn basic_field(self) -> Option<Field> {
        (self.class == OFPXMC_OPENFLOW_BASIC).then(|| Field::from(self.field))
    }
}

/// An OXM id as listed in table features: a header, plus the experimenter id when the class
/// is OFPXMC_EXPERIMENTER (then it occupies 8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OxmId {
    pub header: OxmHeader,
    pub experimenter: Option<u32>,
}

/// Re-tags a buffer-level error (always OFPBRC_BAD_LEN) with a more specific code,
/// keeping where it happened and why.
pub(crate) fn recode(e: Error, code: ErrorCode) -> Error {
    Error { code, ..e }
}

fn bmc(code: BadMatchCode, detail: impl Into<std::borrow::Cow<'static, str>>, at: usize) -> Error {
    Error::bad_match(code, detail).at(at)
}

fn bmc_len(e: Error) -> Error {
    recode(e, ErrorCode::BadMatch(BadMatchCode::BadLen))
}

/// Reads a bare 4-byte OXM header. Truncation is `OFPBMC_BAD_LEN`.
pub fn read_oxm_header(r: &mut Reader<'_>) -> Result<OxmHeader> {
    Ok(OxmHeader::from_raw(r.u32("OXM header").map_err(bmc_len)?))
}

/// Writes a bare 4-byte OXM header.
pub fn write_oxm_header(h: OxmHeader, w: &mut Writer) {
    w.u32(h.raw());
}

/// Reads one OXM id (4 bytes, or 8 for the experimenter class). Truncation is `OFPBMC_BAD_LEN`.
pub fn read_oxm_id(r: &mut Reader<'_>) -> Result<OxmId> {
    let header = read_oxm_header(r)?;
    let experimenter = if header.class == OFPXMC_EXPERIMENTER {
        Some(r.u32("OXM experimenter id").map_err(bmc_len)?)
    } else {
        None
    };
    Ok(OxmId {
        header,
        experimenter,
    })
}

/// Writes one OXM id.
pub fn write_oxm_id(id: OxmId, w: &mut Writer) {
    write_oxm_header(id.header, w);
    if let Some(e) = id.experimenter {
        w.u32(e);
    }
}

/// Reads one TLV without interpreting it: the header and its `length` payload bytes.
/// A payload running past the end is `OFPBMC_BAD_LEN`.
pub fn read_oxm_raw<'a>(r: &mut Reader<'a>) -> Result<(OxmHeader, &'a [u8])> {
    let h = read_oxm_header(r)?;
    let payload = r
        .bytes(usize::from(h.length), "OXM payload")
        .map_err(bmc_len)?;
    Ok((h, payload))
}

/// One decoded basic-class OXM TLV.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OxmTlv {
    pub field: Field,
    pub value: Vec<u8>,
    /// Present when the TLV had hasmask set.
    pub mask: Option<Vec<u8>>,
}

/// Reads and checks one match TLV (class, field, length, mask, value; see the module doc).
pub fn read_oxm_tlv(r: &mut Reader<'_>) -> Result<OxmTlv> {
    let at = r.offset();
    let (h, payload) = read_oxm_raw(r)?;
    if h.class != OFPXMC_OPENFLOW_BASIC {
        return Err(bmc(
            BadMatchCode::BadField,
            format!(
                "OXM class 0x{:04x} is not supported (only OPENFLOW_BASIC)",
                h.class
            ),
            at,
        ));
    }
    let field = Field::from(h.field);
    let Some(info) = field.info() else {
        return Err(bmc(
            BadMatchCode::BadField,
            format!("unknown OXM basic field {}", h.field),
            at,
        ));
    };
    let want = if h.hasmask { info.len * 2 } else { info.len };
    if payload.len() != want {
        return Err(bmc(
            BadMatchCode::BadLen,
            format!(
                "OXM {} has length {}, expected {want}",
                info.name,
                payload.len()
            ),
            at,
        ));
    }
    if h.hasmask && !info.maskable {
        return Err(bmc(
            BadMatchCode::BadMask,
            format!("OXM {} cannot be masked", info.name),
            at,
        ));
    }
    let (value, mask) = payload.split_at(info.len);
    if h.hasmask && value.iter().zip(mask.iter()).any(|(v, m)| v & !m != 0) {
        return Err(bmc(
            BadMatchCode::BadWildcards,
            format!("OXM {} has value bits set where the mask is 0", info.name),
            at,
        ));
    }
    let full = field_full_mask(field);
    if value.iter().zip(full.iter()).any(|(v, f)| v & !f != 0) {
        return Err(bmc(
            BadMatchCode::BadValue,
            format!(
                "OXM {} value has bits outside the field's valid bits",
                info.name
            ),
            at,
        ));
    }
    Ok(OxmTlv {
        field,
        value: value.to_vec(),
        mask: h.hasmask.then(|| mask.to_vec()),
    })
}

/// Writes one basic-class TLV; `mask` is written (with hasmask) when given.
/// `value` and `mask` must have the field's width (the caller's invariant).
pub fn write_oxm_tlv(field: Field, value: &[u8], mask: Option<&[u8]>, w: &mut Writer) {
    let len = value.len() + mask.map_or(0, <[u8]>::len);
    let h = OxmHeader {
        class: OFPXMC_OPENFLOW_BASIC,
        field: u8::from(field) & 0x7f,
        hasmask: mask.is_some(),
        length: u8::try_from(len).unwrap_or(u8::MAX),
    };
    write_oxm_header(h, w);
    w.bytes(value);
    if let Some(m) = mask {
        w.bytes(m);
    }
}

/// Decodes a run of match TLVs filling the whole reader into a [`Match`].
pub fn decode_oxm_fields(r: &mut Reader<'_>) -> Result<Match> {
    let mut m = Match::any();
    let mut seen = [false; 128];
    while !r.is_empty() {
        let at = r.offset();
        let tlv = read_oxm_tlv(r)?;
        let slot = usize::from(u8::from(tlv.field) & 0x7f);
        if seen[slot] {
            return Err(bmc(
                BadMatchCode::DupField,
                format!(
                    "OXM {} appears twice",
                    tlv.field.info().map_or("?", |i| i.name)
                ),
                at,
            ));
        }
        seen[slot] = true;
        match &tlv.mask {
            Some(mask) => m.set_masked(tlv.field, &tlv.value, mask),
            None => m.set(tlv.field, &tlv.value),
        };
    }
    Ok(m)
}

/// Writes the TLVs of a match in field-number order (no `ofp_match` header); hasmask only
/// when a field's mask is not its full mask.
pub fn encode_oxm_fields(m: &Match, w: &mut Writer) {
    for (field, value, mask) in m.fields() {
        if mask == field_full_mask(field).as_slice() {
            write_oxm_tlv(field, value, None, w);
        } else {
            write_oxm_tlv(field, value, Some(mask), w);
        }
    }
}

/// Reads one `ofp_match` (type OFPMT_OXM, length, OXM TLVs, padding to 8 bytes).
pub fn decode_match(r: &mut Reader<'_>) -> Result<Match> {
    let at = r.offset();
    let typ = r.u16("ofp_match type").map_err(bmc_len)?;
    let len = r.u16("ofp_match length").map_err(bmc_len)?;
    if typ != OFPMT_OXM {
        let what = if typ == OFPMT_STANDARD {
            "OFPMT_STANDARD (not in OpenFlow 1.3)"
        } else {
            "unknown"
        };
        return Err(bmc(
            BadMatchCode::BadType,
            format!("match type {typ} is {what}"),
            at,
        ));
    }
    let body_len = usize::from(len).checked_sub(4).ok_or_else(|| {
        bmc(
            BadMatchCode::BadLen,
            format!("ofp_match length {len} is below 4"),
            at,
        )
    })?;
    let mut body = r.sub(body_len, "OXM fields").map_err(bmc_len)?;
    let pad = (8 - usize::from(len) % 8) % 8;
    r.skip(pad, "ofp_match padding").map_err(bmc_len)?;
    decode_oxm_fields(&mut body)
}

/// Writes one `ofp_match` including its padding.
pub fn encode_match(m: &Match, w: &mut Writer) {
    let start = w.len();
    w.u16(OFPMT_OXM);
    w.u16(0);
    encode_oxm_fields(m, w);
    w.patch_len_since(start + 2, start);
    w.pad_to(start, 8);
}

/// Bytes [`encode_match`] writes for `m`, padding included.
pub fn match_wire_len(m: &Match) -> usize {
    let fields: usize = m
        .fields()
        .map(|(f, _, mask)| {
            let width = f.len();
            4 + if mask == field_full_mask(f).as_slice() {
                width
            } else {
                width * 2
            }
        })
        .sum();
    (4 + fields).div_ceil(8) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: &Error) -> BadMatchCode {
        match e.code {
            ErrorCode::BadMatch(c) => c,
            other => panic!("expected a BadMatch code, got {other:?}"),
        }
    }

    fn decode_hex_tlvs(tlvs: &[u8]) -> Result<Match> {
        let mut b = vec![0, 1];
        b.extend_from_slice(&u16::try_from(4 + tlvs.len()).unwrap().to_be_bytes());
        b.extend_from_slice(tlvs);
        while b.len() % 8 != 0 {
            b.push(0);
        }
        decode_match(&mut Reader::new(&b))
    }

    #[test]
    fn header_round_trip() {
        let h = OxmHeader::basic(Field::Ipv4Src, true);
        assert_eq!(h.raw(), 0x8000_1708);
        assert_eq!(OxmHeader::from_raw(0x8000_1708), h);
        assert_eq!(OxmHeader::basic(Field::InPort, false).raw(), 0x8000_0004);
        let mut w = Writer::new();
        write_oxm_id(
            OxmId {
                header: OxmHeader::from_raw(0xffff_0208),
                experimenter: Some(0x4f4e_4600),
            },
            &mut w,
        );
        assert_eq!(w.buf, [0xff, 0xff, 0x02, 0x08, 0x4f, 0x4e, 0x46, 0x00]);
        let id = read_oxm_id(&mut Reader::new(&w.buf)).unwrap();
        assert_eq!(id.experimenter, Some(0x4f4e_4600));
        assert_eq!(id.header.field, 1);
        let e = read_oxm_id(&mut Reader::new(&w.buf[..6])).unwrap_err();
        assert_eq!(code(&e), BadMatchCode::BadLen);
    }

    #[test]
    fn golden_match_bytes() {
        let mut m = Match::any();
        m.set_u64(Field::InPort, 1);
        m.set_u64(Field::EthType, 0x0800);
        m.set_masked(Field::Ipv4Src, &[10, 0, 0, 0], &[255, 0, 0, 0]);
        let mut w = Writer::new();
        encode_match(&m, &mut w);
        #[rustfmt::skip]
        let want = [
            0x00, 0x01, 0x00, 0x1e,
            0x80, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01,
            0x80, 0x00, 0x0a, 0x02, 0x08, 0x00,
            0x80, 0x00, 0x17, 0x08, 10, 0, 0, 0, 255, 0, 0, 0,
            0, 0,
        ];
        assert_eq!(w.buf, want);
        assert_eq!(match_wire_len(&m), want.len());
        let mut r = Reader::new(&w.buf);
        assert_eq!(decode_match(&mut r).unwrap(), m);
        assert!(r.is_empty());
        // Empty match: 4 bytes + 4 padding.
        let mut w = Writer::new();
        encode_match(&Match::any(), &mut w);
        assert_eq!(w.buf, [0, 1, 0, 4, 0, 0, 0, 0]);
    }

    #[test]
    fn error_codes() {
        // type 0 and type 7
        let e = decode_match(&mut Reader::new(&[0, 0, 0, 88, 0, 0, 0, 0])).unwrap_err();
        assert_eq!((code(&e), e.offset), (BadMatchCode::BadType, Some(0)));
        let e = decode_match(&mut Reader::new(&[0, 7, 0, 4, 0, 0, 0, 0])).unwrap_err();
        assert_eq!(code(&e), BadMatchCode::BadType);
        // length below 4, length past the end, padding missing
        assert_eq!(
            code(&decode_match(&mut Reader::new(&[0, 1, 0, 3, 0, 0, 0, 0])).unwrap_err()),
            BadMatchCode::BadLen
        );
        assert_eq!(
            code(&decode_match(&mut Reader::new(&[0, 1, 0, 12, 0, 0, 0, 0])).unwrap_err()),
            BadMatchCode::BadLen
        );
        assert_eq!(
            code(&decode_match(&mut Reader::new(&[0, 1, 0, 4])).unwrap_err()),
            BadMatchCode::BadLen
        );
        // unknown basic field, non-basic class
        assert_eq!(
            code(&decode_hex_tlvs(&[0x80, 0x00, 0x60, 0x01, 0]).unwrap_err()),
            BadMatchCode::BadField
        );
        assert_eq!(
            code(&decode_hex_tlvs(&[0x00, 0x01, 0x00, 0x04, 0, 0, 0, 1]).unwrap_err()),
            BadMatchCode::BadField
        );
        // wrong length for tcp_dst (3 bytes)
        let e = decode_hex_tlvs(&[0x80, 0x00, 0x1c, 0x03, 0, 80, 0]).unwrap_err();
        assert_eq!((code(&e), e.offset), (BadMatchCode::BadLen, Some(4)));
        // TLV payload past the end of the match
        assert_eq!(
            code(&decode_hex_tlvs(&[0x80, 0x00, 0x1c, 0x02, 0]).unwrap_err()),
            BadMatchCode::BadLen
        );
        // duplicate eth_type
        let e = decode_hex_tlvs(&[
            0x80, 0x00, 0x0a, 0x02, 0x08, 0x00, 0x80, 0x00, 0x0a, 0x02, 0x08, 0x00,
        ])
        .unwrap_err();
        assert_eq!((code(&e), e.offset), (BadMatchCode::DupField, Some(10)));
        // masked eth_type (not maskable)
        assert_eq!(
            code(&decode_hex_tlvs(&[0x80, 0x00, 0x0b, 0x04, 0x08, 0x00, 0xff, 0xff]).unwrap_err()),
            BadMatchCode::BadMask
        );
        // value bit outside mask
        assert_eq!(
            code(
                &decode_hex_tlvs(&[0x80, 0x00, 0x17, 0x08, 10, 0, 0, 1, 255, 0, 0, 0]).unwrap_err()
            ),
            BadMatchCode::BadWildcards
        );
        // vlan_pcp 8, ip_dscp 64, vlan_vid 0x2000
        assert_eq!(
            code(&decode_hex_tlvs(&[0x80, 0x00, 0x0e, 0x01, 8]).unwrap_err()),
            BadMatchCode::BadValue
        );
        assert_eq!(
            code(&decode_hex_tlvs(&[0x80, 0x00, 0x10, 0x01, 64]).unwrap_err()),
            BadMatchCode::BadValue
        );
        assert_eq!(
            code(&decode_hex_tlvs(&[0x80, 0x00, 0x0c, 0x02, 0x20, 0x00]).unwrap_err()),
            BadMatchCode::BadValue
        );
    }

    #[test]
    fn extra_mask_bits_are_dropped() {
        // vlan_vid 0x1005/0xffff decodes as exact 0x1005, re-encoded without a mask.
        let m = decode_hex_tlvs(&[0x80, 0x00, 0x0d, 0x04, 0x10, 0x05, 0xff, 0xff]).unwrap();
        assert!(m.is_exact(Field::VlanVid, 0x1005));
        let mut w = Writer::new();
        encode_oxm_fields(&m, &mut w);
        assert_eq!(w.buf, [0x80, 0x00, 0x0c, 0x02, 0x10, 0x05]);
    }
}
