//! Instruction lists <-> `ofp_instruction_*` bytes.
//!
//! Structural only: each instruction's length must be >= 8, a multiple of 8, fit in the list
//! and match its type's size (`OFPBIC_BAD_LEN` otherwise). Errors inside write/apply action
//! lists keep their `OFPBAC_*` codes, as Open vSwitch answers them. Unknown and experimenter
//! instructions are values; [`crate::validate::check_instructions`] answers them.

use crate::action::Instruction;
use crate::error::{BadInstructionCode, Error, ErrorCode, Result};
use crate::wire::action::{decode_actions, encode_actions};
use crate::wire::buf::{Reader, Writer};
use crate::wire::oxm::recode;

fn bic_len(e: Error) -> Error {
    recode(e, ErrorCode::BadInstruction(BadInstructionCode::BadLen))
}

/// Reads instructions filling exactly `len` bytes.
pub fn decode_instructions(r: &mut Reader<'_>, len: usize) -> Result<Vec<Instruction>> {
    let mut list = r.sub(len, "instruction list").map_err(bic_len)?;
    let mut out = Vec::new();
    while !list.is_empty() {
        out.push(decode_instruction(&mut list)?);
    }
    Ok(out)
}

/// Reads one instruction.
pub fn decode_instruction(r: &mut Reader<'_>) -> Result<Instruction> {
    let at = r.offset();
    let typ = r.u16("instruction type").map_err(bic_len)?;
    let ilen = r.u16("instruction length").map_err(bic_len)?;
    let bad = |detail: String| Error::bad_instruction(BadInstructionCode::BadLen, detail).at(at);
    if ilen < 8 || ilen % 8 != 0 {
        return Err(bad(format!(
            "instruction type {typ} has length {ilen}, not a multiple of 8 of at least 8"
        )));
    }
    let mut b = r
        .sub(usize::from(ilen) - 4, "instruction body")
        .map_err(bic_len)?;
    let fixed = |want: u16| -> Result<()> {
        if ilen == want {
            Ok(())
        } else {
            Err(bad(format!(
                "instruction type {typ} has length {ilen}, expected {want}"
            )))
        }
    };
    let i = match typ {
        1 => {
            fixed(8)?;
            Instruction::GotoTable(b.u8("table_id").map_err(bic_len)?)
        }
        2 => {
            fixed(24)?;
            b.skip(4, "pad").map_err(bic_len)?;
            let metadata = b.u64("metadata").map_err(bic_len)?;
            let mask = b.u64("metadata_mask").map_err(bic_len)?;
            Instruction::WriteMetadata { metadata, mask }
        }
        3 | 4 => {
            b.skip(4, "pad").map_err(bic_len)?;
            let n = b.remaining();
            let actions = decode_actions(&mut b, n)?;
            if typ == 3 {
                Instruction::WriteActions(actions)
            } else {
                Instruction::ApplyActions(actions)
            }
        }
        5 => {
            fixed(8)?;
            Instruction::ClearActions
        }
        6 => {
            fixed(8)?;
            Instruction::Meter(b.u32("meter_id").map_err(bic_len)?)
        }
        0xffff => {
            let experimenter = b.u32("experimenter id").map_err(bic_len)?;
            Instruction::Experimenter {
                experimenter,
                data: b.rest().to_vec(),
            }
        }
        _ => Instruction::Unknown {
            typ,
            body: b.rest().to_vec(),
        },
    };
    Ok(i)
}

/// Writes one instruction (padded to 8 bytes).
pub fn encode_instruction(i: &Instruction, w: &mut Writer) {
    let start = w.len();
    w.u16(i.type_code());
    w.u16(0);
    match i {
        Instruction::GotoTable(t) => {
            w.u8(*t);
            w.zeros(3);
        }
        Instruction::WriteMetadata { metadata, mask } => {
            w.zeros(4);
            w.u64(*metadata);
            w.u64(*mask);
        }
        Instruction::WriteActions(a) | Instruction::ApplyActions(a) => {
            w.zeros(4);
            encode_actions(a, w);
        }
        Instruction::ClearActions => w.zeros(4),
        Instruction::Meter(m) => w.u32(*m),
        Instruction::Experimenter { experimenter, data } => {
            w.u32(*experimenter);
            w.bytes(data);
        }
        Instruction::Unknown { body, .. } => w.bytes(body),
    }
    w.pad_to(start, 8);
    w.patch_len_since(start + 2, start);
}

/// Writes instructions.
pub fn encode_instructions(instructions: &[Instruction], w: &mut Writer) {
    for i in instructions {
        encode_instruction(i, w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::Action;
    use crate::error::BadActionCode;

    fn dec(b: &[u8]) -> Result<Vec<Instruction>> {
        decode_instructions(&mut Reader::new(b), b.len())
    }

    #[test]
    fn golden_bytes() {
        let ins = vec![
            Instruction::Meter(3),
            Instruction::ApplyActions(vec![Action::DecNwTtl]),
            Instruction::ClearActions,
            Instruction::WriteMetadata {
                metadata: 0x10,
                mask: 0xff,
            },
            Instruction::GotoTable(2),
        ];
        let mut w = Writer::new();
        encode_instructions(&ins, &mut w);
        #[rustfmt::skip]
        let want = [
            0, 6, 0, 8, 0, 0, 0, 3,
            0, 4, 0, 16, 0, 0, 0, 0, 0, 24, 0, 8, 0, 0, 0, 0,
            0, 5, 0, 8, 0, 0, 0, 0,
            0, 2, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0xff,
            0, 1, 0, 8, 2, 0, 0, 0,
        ];
        assert_eq!(w.buf, want);
        assert_eq!(dec(&w.buf).unwrap(), ins);
    }

    #[test]
    fn errors() {
        let len = ErrorCode::BadInstruction(BadInstructionCode::BadLen);
        assert_eq!(dec(&[0, 1, 0, 4, 0, 0, 0, 0]).unwrap_err().code, len);
        assert_eq!(dec(&[0, 1, 0, 16, 0, 0, 0, 0]).unwrap_err().code, len);
        assert_eq!(
            dec(&[0, 1, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .unwrap_err()
                .code,
            len
        );
        assert_eq!(dec(&[0, 2, 0, 8, 0, 0, 0, 0]).unwrap_err().code, len);
        assert_eq!(dec(&[0, 1, 0]).unwrap_err().code, len);
        // an action error inside apply_actions keeps its action code
        let e = dec(&[0, 4, 0, 16, 0, 0, 0, 0, 0, 24, 0, 4, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(
            (e.code, e.offset),
            (ErrorCode::BadAction(BadActionCode::BadLen), Some(8))
        );
        assert_eq!(
            dec(&[0, 9, 0, 8, 1, 2, 3, 4]).unwrap(),
            vec![Instruction::Unknown {
                typ: 9,
                body: vec![1, 2, 3, 4]
            }]
        );
        assert_eq!(
            dec(&[0xff, 0xff, 0, 8, 0, 0, 0x23, 0x20]).unwrap(),
            vec![Instruction::Experimenter {
                experimenter: 0x2320,
                data: vec![]
            }]
        );
    }
}
