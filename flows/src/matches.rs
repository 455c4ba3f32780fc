//! [`Match`]: a rule's match as value + mask over the fixed-layout [`FlowKey`].
//!
//! A field is "present" when any bit of its mask is set. The wire order of OXM TLVs and a
//! TLV with an all-zero mask are not kept: `Match` is the normalized meaning, which is what
//! tables compare (strict flow_mod matching compares normalized matches, as Open vSwitch does).
//! Invariant kept by every constructor: `value & !mask == 0`.

use crate::field::{field_full_mask, Field, FlowKey};

/// Value and mask over every OXM basic field.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Match {
    pub value: FlowKey,
    pub mask: FlowKey,
}

impl std::fmt::Debug for Match {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_map();
        for (field, v, m) in self.fields() {
            let name = field.info().map_or("?", |i| i.name);
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            if m == field_full_mask(field).as_slice() {
                d.entry(&name, &hex(v));
            } else {
                d.entry(&name, &format!("{}/{}", hex(v), hex(m)));
            }
        }
        d.finish()
    }
}

impl Match {
    /// The match-everything rule (table-miss).
    pub fn any() -> Match {
        Match::default()
    }

    /// Sets an exact match on `field` (value right-aligned to the field's width).
    pub fn set(&mut self, field: Field, value: &[u8]) -> &mut Match {
        let full = field_full_mask(field);
        self.set_masked(field, value, &full)
    }

    /// Sets a masked match; value bits outside the mask are cleared.
    pub fn set_masked(&mut self, field: Field, value: &[u8], mask: &[u8]) -> &mut Match {
        self.mask.set(field, mask);
        // Never let mask bits go past the field's valid bits.
        let full = field_full_mask(field);
        let mut m = self.mask.get(field).to_vec();
        for (b, f) in m.iter_mut().zip(full.iter()) {
            *b &= *f;
        }
        self.mask.set(field, &m);
        self.value.set(field, value);
        let v: Vec<u8> = self
            .value
            .get(field)
            .iter()
            .zip(m.iter())
            .map(|(a, b)| a & b)
            .collect();
        self.value.set(field, &v);
        self
    }

    /// Exact match from an integer (fields up to 8 bytes).
    pub fn set_u64(&mut self, field: Field, v: u64) -> &mut Match {
        self.set(field, &v.to_be_bytes())
    }

    /// Removes `field` from the match.
    pub fn clear(&mut self, field: Field) -> &mut Match {
        self.mask.set(field, &[]);
        self.value.set(field, &[]);
        self
    }

    /// `(value, mask)` of a present field.
    pub fn get(&self, field: Field) -> Option<(&[u8], &[u8])> {
        if self.mask.is_zero(field) {
            None
        } else {
            Some((self.value.get(field), self.mask.get(field)))
        }
    }

    /// True when `field` is present with its full mask, and its value (as an integer) is `v`.
    pub fn is_exact(&self, field: Field, v: u64) -> bool {
        self.mask.get(field) == field_full_mask(field).as_slice() && self.value.get_u64(field) == v
    }

    /// True when `field` is present with its full mask.
    pub fn is_exact_field(&self, field: Field) -> bool {
        self.mask.get(field) == field_full_mask(field).as_slice()
    }

    /// Present fields in field-number order: `(field, value, mask)`.
    pub fn fields(&self) -> impl Iterator<Item = (Field, &[u8], &[u8])> {
        Field::all().filter_map(move |f| self.get(f).map(|(v, m)| (f, v, m)))
    }

    /// Whether a packet key matches.
    pub fn matches(&self, key: &FlowKey) -> bool {
        let k = key.words();
        let v = self.value.words();
        let m = self.mask.words();
        k.iter()
            .zip(m.iter())
            .zip(v.iter())
            .all(|((k, m), v)| k & m == *v)
    }

    /// True when every packet matched by `self` is also matched by `other`
    /// (`other` is at least as wide): the non-strict flow_mod selection rule.
    pub fn is_subset_of(&self, other: &Match) -> bool {
        let sv = self.value.words();
        let sm = self.mask.words();
        let ov = other.value.words();
        let om = other.mask.words();
        (0..sv.len()).all(|i| om[i] & !sm[i] == 0 && sv[i] & om[i] == ov[i])
    }

    /// True when some packet could match both (the OFPFF_CHECK_OVERLAP test).
    pub fn overlaps(&self, other: &Match) -> bool {
        let sv = self.value.words();
        let sm = self.mask.words();
        let ov = other.value.words();
        let om = other.mask.words();
        (0..sv.len()).all(|i| (sv[i] ^ ov[i]) & sm[i] & om[i] == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_and_overlap() {
        let mut wide = Match::any();
        wide.set_u64(Field::EthType, 0x0800);
        let mut narrow = wide;
        narrow.set_masked(Field::Ipv4Src, &[198, 18, 0, 7], &[255, 255, 0, 0]);
        assert_eq!(narrow.get(Field::Ipv4Src).unwrap().0, &[198, 18, 0, 0]);
        assert!(narrow.is_subset_of(&wide));
        assert!(!wide.is_subset_of(&narrow));
        assert!(narrow.overlaps(&wide));
        let mut other = wide;
        other.set(Field::Ipv4Src, &[10, 0, 0, 1]);
        assert!(!other.overlaps(&narrow));
        let mut key = FlowKey::default();
        key.set_u64(Field::EthType, 0x0800);
        key.set(Field::Ipv4Src, &[198, 18, 3, 4]);
        assert!(narrow.matches(&key));
        assert!(!other.matches(&key));
    }
}
