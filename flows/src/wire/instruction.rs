//! Instruction lists <-> `ofp_instruction_*` bytes.
// OWNER: helper "wire-match" fills this file.

use crate::action::Instruction;
use crate::error::Result;
use crate::wire::buf::{Reader, Writer};

/// Reads instructions filling exactly `len` bytes.
pub fn decode_instructions(r: &mut Reader<'_>, len: usize) -> Result<Vec<Instruction>> {
    r.skip(len, "instructions")?;
    Ok(Vec::new())
}

/// Writes instructions.
pub fn encode_instructions(instructions: &[Instruction], w: &mut Writer) {
    let _ = (instructions, w);
}
