//! ovs-ofctl compatible text syntax for flows, groups and meters (parse and print).
//!
//! The syntax is the one `ovs-ofctl -O OpenFlow13 add-flow`/`add-group`/`add-meter` accept,
//! and the printers produce exactly what `ovs-ofctl ofp-print` prints for the OF1.3 message
//! (after its header line). Parsers never panic on any input; every failure is a
//! [`crate::Error`] carrying the byte offset of the offending token and the OpenFlow error of
//! the matching kind (`OFPBMC_*` for match fields, `OFPBAC_*` for actions, ...).
//!
//! Where Open vSwitch and OpenFlow 1.3 disagree, the OF1.3 meaning wins and the difference is
//! documented on the function (for example a match field whose prerequisite is missing is an
//! `OFPBMC_BAD_PREREQ` error here, where ovs-ofctl silently drops it).
//!
//! Layout: [`value`] (numbers, addresses, ports and field names), [`flow`] (flow mods,
//! matches, dump-flows lines), [`action`] (actions and instructions), [`group`], [`meter`].

pub mod action;
pub mod flow;
pub mod group;
pub mod message;
pub mod meter;
pub mod value;

pub use action::{
    format_action, format_actions, format_instructions, parse_actions, parse_instructions,
};
pub use flow::{
    format_flow_mod, format_flow_stats_line, format_match, parse_flow, parse_flow_mod, parse_match,
    FlowStatsLine,
};
pub use group::{format_group, format_group_mod, parse_group};
pub use message::format_message;
pub use meter::{format_meter, format_meter_mod, parse_meter};

/// One `key[=:]value` or `key(value)` item of an ovs-ofctl string, with byte offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kv<'a> {
    pub(crate) key: &'a str,
    pub(crate) key_off: usize,
    pub(crate) value: &'a str,
    pub(crate) val_off: usize,
    /// The character that ended the key: `=`, `:`, `(` or none.
    pub(crate) delim: Option<char>,
}

/// Length of a value starting at `s`, stopping at any of `delims` outside parentheses
/// (the ovs-ofctl rule, so `write_actions(output:1,output:2)` stays one value).
fn value_len(s: &str, delims: &[u8]) -> usize {
    let b = s.as_bytes();
    let mut n = 0;
    while n < b.len() {
        let c = b[n];
        if delims.contains(&c) {
            return n;
        }
        if c == b'(' {
            let mut level = 0usize;
            while n < b.len() {
                match b[n] {
                    b'(' => level += 1,
                    b')' => level = level.saturating_sub(1),
                    _ => {}
                }
                n += 1;
                if level == 0 {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

/// Splits `s` into key/value items the way `ofputil_parse_key_value` does: items are
/// separated by commas or white space; a key ends at `:`, `=`, `(` or a separator.
/// Offsets are relative to `s` plus `base`.
pub(crate) fn split_kv(s: &str, base: usize) -> Vec<Kv<'_>> {
    const SEP: &[u8] = b", \t\r\n";
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0usize;
    loop {
        while pos < b.len() && SEP.contains(&b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            return out;
        }
        let key_start = pos;
        while pos < b.len() && !b":=(, \t\r\n".contains(&b[pos]) {
            pos += 1;
        }
        let key = &s[key_start..pos];
        let delim = b.get(pos).copied();
        let (value, val_off, delim_ch) = match delim {
            Some(c @ (b':' | b'=')) => {
                pos += 1;
                let n = value_len(&s[pos..], SEP);
                let v = (&s[pos..pos + n], pos);
                pos += n;
                (v.0, v.1, Some(char::from(c)))
            }
            Some(b'(') => {
                pos += 1;
                let n = value_len(&s[pos..], b")");
                let v = (&s[pos..pos + n], pos);
                pos += n;
                if pos < b.len() {
                    pos += 1; // the ')'
                }
                (v.0, v.1, Some('('))
            }
            _ => ("", pos, None),
        };
        out.push(Kv {
            key,
            key_off: base + key_start,
            value,
            val_off: base + val_off,
            delim: delim_ch,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_ovs() {
        let kv = split_kv("a=1, b:2 c(x,(y)),d", 10);
        let keys: Vec<_> = kv
            .iter()
            .map(|k| (k.key, k.value, k.key_off, k.val_off))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("a", "1", 10, 12),
                ("b", "2", 15, 17),
                ("c", "x,(y)", 19, 21),
                ("d", "", 28, 29)
            ]
        );
        assert!(split_kv(" ,\t", 0).is_empty());
        // Unbalanced parentheses never panic.
        let kv = split_kv("write_actions(output:1", 0);
        assert_eq!(kv[0].value, "output:1");
        let kv = split_kv("x=((", 0);
        assert_eq!(kv[0].value, "((");
    }
}
