//! Fuzz target bodies: each takes arbitrary bytes and asserts this crate's invariants on them.
//!
//! Shared by the bounded-time fuzz runner in `flows/tests/fuzz.rs` (run by CI) and by the
//! coverage-guided targets in `flows/fuzz/` (cargo-fuzz, for longer runs by hand). A target
//! panics only when an invariant is broken; bad input itself must come back as an error.

use crate::classifier::Classifier;
use crate::field::{Field, FlowKey};
use crate::matches::Match;
use crate::wire::message;

/// The OpenFlow decoder: never panics; whatever decodes re-encodes to bytes that decode to the
/// same value (the codec is canonical on its own output).
pub fn decode_message(data: &[u8]) {
    let _ = message::frame_len(data);
    if let Ok((xid, m)) = message::decode(data) {
        let bytes = message::encode(xid, &m);
        match message::decode(&bytes) {
            Ok((xid2, m2)) => {
                assert_eq!(xid, xid2, "xid changed on re-encode");
                assert_eq!(m, m2, "value changed on re-encode of {}", hex(&bytes));
            }
            Err(e) => panic!("own encoding {} does not decode: {e}", hex(&bytes)),
        }
    }
}

/// The ovs-ofctl flow parser: never panics; whatever parses prints to text that parses back
/// and prints the same again (printing is a fixed point after one parse, even where ovs-ofctl's
/// format drops something, such as `out_group`).
pub fn parse_flow_text(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // Deletes only need to parse without panicking: ovs-ofctl's print of a delete in table 0
    // omits the table, which reads back as "all tables".
    let _ = crate::text::parse_flow(s, crate::mods::FlowModCommand::DeleteStrict);
    {
        if let Ok(fm) = crate::text::parse_flow(s, crate::mods::FlowModCommand::Add) {
            let printed = crate::text::format_flow_mod(&fm);
            match crate::text::parse_flow_mod(&printed) {
                Ok(again) => {
                    let reprinted = crate::text::format_flow_mod(&again);
                    assert_eq!(printed, reprinted, "{s:?} does not print stably");
                }
                Err(e) => panic!("{s:?} printed as {printed:?} which does not parse: {e}"),
            }
        }
    }
}

/// Classifier operation sequences: bytes drive inserts, removes and lookups on the classifier
/// and on a linear-scan reference; every lookup must agree, and the returned wildcard mask must
/// be sound (a key changed only outside it gets the same answer).
pub fn classifier_ops(data: &[u8]) {
    // A handful of fields with few values, so rules overlap and collide often.
    const FIELDS: [Field; 5] = [
        Field::InPort,
        Field::EthType,
        Field::IpProto,
        Field::Ipv4Dst,
        Field::TcpDst,
    ];
    let mut cls: Classifier<u32> = Classifier::new();
    let mut reference: Vec<(crate::classifier::RuleId, Match, u16, u64, u32)> = Vec::new();
    let mut seq = 0u64;
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    let key_from = |b: &mut dyn FnMut() -> Option<u8>| -> Option<FlowKey> {
        let mut k = FlowKey::default();
        for f in FIELDS {
            let v = b()?;
            k.set_u64(f, u64::from(v % 4));
        }
        Some(k)
    };
    while let Some(op) = next() {
        match op % 4 {
            0 | 1 => {
                let Some(sel) = next() else { return };
                let Some(prio) = next() else { return };
                let mut m = Match::any();
                for (i, f) in FIELDS.iter().enumerate() {
                    if sel & (1 << i) != 0 {
                        let Some(v) = next() else { return };
                        if v & 0x80 != 0 {
                            // masked: low bit only
                            m.set_masked(*f, &[v % 4], &[1]);
                        } else {
                            m.set_u64(*f, u64::from(v % 4));
                        }
                    }
                }
                let p = u16::from(prio % 8);
                let tag = u32::try_from(seq).unwrap_or(u32::MAX);
                let id = cls.insert(m, p, tag);
                reference.push((id, m, p, seq, tag));
                seq += 1;
            }
            2 => {
                let Some(which) = next() else { return };
                if !reference.is_empty() {
                    let i = usize::from(which) % reference.len();
                    let (id, _, _, _, tag) = reference.remove(i);
                    assert_eq!(cls.remove(id), Some(tag), "remove returned the wrong rule");
                }
            }
            _ => {
                let Some(key) = key_from(&mut next) else {
                    return;
                };
                check_lookup(&cls, &reference, &key);
                let (_, mask) = cls.lookup_with_mask(&key);
                // Flip every bit outside the mask on the fuzzed fields: same answer expected.
                let mut other = key;
                for f in FIELDS {
                    let flipped: Vec<u8> = key
                        .get(f)
                        .iter()
                        .zip(mask.get(f))
                        .map(|(k, m)| (k ^ !m) & 0x03 | (k & !0x03))
                        .collect();
                    other.set(f, &flipped);
                }
                let a = cls.lookup(&key).map(|(_, v)| *v);
                let b = cls.lookup(&other).map(|(_, v)| *v);
                assert_eq!(
                    a, b,
                    "wildcard mask unsound: {key:?} vs {other:?} under mask {mask:?}"
                );
            }
        }
    }
}

fn check_lookup(
    cls: &Classifier<u32>,
    reference: &[(crate::classifier::RuleId, Match, u16, u64, u32)],
    key: &FlowKey,
) {
    // Reference: highest priority, then earliest inserted.
    let want = reference
        .iter()
        .filter(|(_, m, ..)| m.matches(key))
        .min_by_key(|(_, _, p, seq, _)| (std::cmp::Reverse(*p), *seq))
        .map(|r| r.4);
    let got = cls.lookup(key).map(|(_, v)| *v);
    assert_eq!(
        got, want,
        "classifier disagrees with linear scan for {key:?}"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
