//! Action lists <-> `ofp_action_*` bytes.
// OWNER: helper "wire-match" fills this file.

use crate::action::Action;
use crate::error::Result;
use crate::wire::buf::{Reader, Writer};

/// Reads actions filling exactly `len` bytes.
pub fn decode_actions(r: &mut Reader<'_>, len: usize) -> Result<Vec<Action>> {
    r.skip(len, "actions")?;
    Ok(Vec::new())
}

/// Writes actions (each padded to 8 bytes).
pub fn encode_actions(actions: &[Action], w: &mut Writer) {
    let _ = (actions, w);
}
