//! A generic packet classifier: the highest-priority rule matching a [`FlowKey`], by tuple-space search.
//!
//! # What
//!
//! [`Classifier<T>`] holds rules `(Match, priority, T)` and answers "which rule wins for this
//! packet key?" It knows nothing of OpenFlow tables, instructions or timeouts; `table` builds
//! flow-table semantics on top of it. It never allocates during a lookup and never reads the
//! clock.
//!
//! # Why tuple-space search
//!
//! A flow table holds few distinct *shapes* of match (which fields, which prefix lengths) and
//! many rules per shape: "eth_type + ipv4_dst/24", "in_port + eth_dst", ... Grouping rules by
//! mask turns each group into an exact-match problem: mask the key once and probe one hash
//! map. A lookup costs one hash probe per distinct mask (a *subtable*), independently of how
//! many rules share that mask, and insert/remove are O(1) plus a sort of the subtables.
//!
//! Subtables are visited in decreasing order of the highest priority they hold. Once a match
//! of priority `p` is found, any subtable whose maximum priority is below `p` cannot hold a
//! better rule, and the search stops. Tables with a few high-priority specific rules above a
//! low-priority catch-all therefore rarely visit every subtable.
//!
//! # Invariants
//!
//! - Every rule lives in exactly one subtable, the one whose mask equals the rule's mask, in the
//!   bucket keyed by `value & mask`. Empty subtables and empty buckets are removed at once.
//! - A bucket lists its rules by decreasing priority and, within a priority, by increasing
//!   insertion sequence number; so its first rule is the bucket's winner.
//! - `order` lists the subtables by decreasing maximum priority.
//! - Tie-break (determinism): among matching rules of equal priority the one inserted first
//!   wins. Replacing a rule's value in place through [`Classifier::get_mut`] keeps its place.
//! - [`RuleId`]s carry a generation: an id of a removed rule never names a later rule.
//!
//! # Megaflow soundness
//!
//! [`Classifier::lookup_with_mask`] also returns the union of the masks of every subtable it
//! probed. Any key equal to the probed key on those bits gets the same answer: it makes the
//! same probe in every visited subtable (same hits, same winners), and each subtable that was
//! skipped holds only rules whose priority is below the winner's, so it cannot change the
//! result. Subtables whose maximum priority *equals* the best found so far are still
//! visited, because an earlier-inserted rule of the same priority would win the tie.

use crate::field::{FlowKey, KEY_LEN};
use crate::matches::Match;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Names one rule of a [`Classifier`]. Stale ids (of removed rules) name nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId {
    index: u32,
    gen: u32,
}

/// One rule as seen by [`Classifier::iter`].
#[derive(Debug)]
pub struct Entry<'a, T> {
    pub id: RuleId,
    pub r#match: &'a Match,
    pub priority: u16,
    pub value: &'a T,
}

/// A fast non-cryptographic hasher for masked keys (word-at-a-time multiply-rotate).
/// Keys in the maps are rule values chosen by the controller, not by packets, so a packet
/// cannot grow a bucket chain.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

type KeyMap<V> = HashMap<FlowKey, V, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Clone)]
struct Rule<T> {
    m: Match,
    priority: u16,
    seq: u64,
    value: T,
}

#[derive(Debug, Clone)]
struct Slot<T> {
    gen: u32,
    rule: Option<Rule<T>>,
}

#[derive(Debug, Clone)]
struct Subtable {
    mask: FlowKey,
    /// masked value -> slot indices, best first.
    buckets: KeyMap<Vec<u32>>,
    /// priority -> number of rules, to keep `max_priority` exact on removal.
    priorities: BTreeMap<u16, usize>,
    max_priority: u16,
}

/// Tuple-space search classifier over [`Match`] rules with values of type `T`.
///
/// A clone is an independent copy with the same rules, tie-break order and [`RuleId`]s.
#[derive(Debug, Clone)]
pub struct Classifier<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    subtables: Vec<Subtable>,
    by_mask: KeyMap<usize>,
    /// Subtable indices by decreasing `max_priority`.
    order: Vec<usize>,
    next_seq: u64,
    len: usize,
}

impl<T> Default for Classifier<T> {
    fn default() -> Self {
        Classifier {
            slots: Vec::new(),
            free: Vec::new(),
            subtables: Vec::new(),
            by_mask: KeyMap::default(),
            order: Vec::new(),
            next_seq: 0,
            len: 0,
        }
    }
}

impl<T> Classifier<T> {
    /// An empty classifier.
    pub fn new() -> Classifier<T> {
        Classifier::default()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of distinct masks (subtables): the worst-case probes per lookup.
    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    fn rule(&self, index: u32) -> Option<&Rule<T>> {
        self.slots.get(usize::try_from(index).ok()?)?.rule.as_ref()
    }

    fn slot_of(&self, id: RuleId) -> Option<&Rule<T>> {
        let s = self.slots.get(usize::try_from(id.index).ok()?)?;
        if s.gen == id.gen {
            s.rule.as_ref()
        } else {
            None
        }
    }

    fn slot_of_mut(&mut self, id: RuleId) -> Option<&mut Rule<T>> {
        let s = self.slots.get_mut(usize::try_from(id.index).ok()?)?;
        if s.gen == id.gen {
            s.rule.as_mut()
        } else {
            None
        }
    }

    /// The sort key of a rule inside a bucket: higher priority first, then older first.
    fn rank(&self, index: u32) -> (std::cmp::Reverse<u16>, u64) {
        self.rule(index)
            .map_or((std::cmp::Reverse(0), u64::MAX), |r| {
                (std::cmp::Reverse(r.priority), r.seq)
            })
    }

    fn resort(&mut self) {
        let subs = &self.subtables;
        self.order
            .sort_by_key(|&i| (std::cmp::Reverse(subs[i].max_priority), i));
    }

    /// Adds a rule. Duplicates (same match and priority) are allowed; the older one wins.
    pub fn insert(&mut self, m: Match, priority: u16, value: T) -> RuleId {
        let mut m = m;
        m.value = m.value.masked(&m.mask);
        let seq = self.next_seq;
        self.next_seq += 1;
        let rule = Rule {
            m,
            priority,
            seq,
            value,
        };
        let index = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.slots[usize::try_from(i).unwrap_or(usize::MAX)];
                slot.rule = Some(rule);
                i
            }
            None => {
                let i = u32::try_from(self.slots.len()).expect("more than 2^32 rules");
                self.slots.push(Slot {
                    gen: 0,
                    rule: Some(rule),
                });
                i
            }
        };
        let gen = self.slots[usize::try_from(index).unwrap_or(usize::MAX)].gen;

        let mut created = false;
        let si = match self.by_mask.get(&m.mask) {
            Some(&si) => si,
            None => {
                created = true;
                self.subtables.push(Subtable {
                    mask: m.mask,
                    buckets: KeyMap::default(),
                    priorities: BTreeMap::new(),
                    max_priority: priority,
                });
                let si = self.subtables.len() - 1;
                self.by_mask.insert(m.mask, si);
                self.order.push(si);
                si
            }
        };
        // Position inside the bucket: after every rule that ranks before the new one.
        let new_rank = (std::cmp::Reverse(priority), seq);
        let pos = {
            let bucket = self.subtables[si].buckets.get(&m.value);
            bucket.map_or(0, |b| b.partition_point(|&i| self.rank(i) < new_rank))
        };
        let st = &mut self.subtables[si];
        st.buckets.entry(m.value).or_default().insert(pos, index);
        *st.priorities.entry(priority).or_insert(0) += 1;
        let old_max = st.max_priority;
        st.max_priority = st.priorities.keys().next_back().copied().unwrap_or(0);
        if created || old_max != st.max_priority {
            self.resort();
        }
        self.len += 1;
        RuleId { index, gen }
    }

    /// Removes a rule and returns its value; `None` for a stale or unknown id.
    pub fn remove(&mut self, id: RuleId) -> Option<T> {
        let r = self.slot_of(id)?;
        let (mask, value, priority) = (r.m.mask, r.m.value, r.priority);
        let si = *self.by_mask.get(&mask)?;
        let st = &mut self.subtables[si];
        if let Some(b) = st.buckets.get_mut(&value) {
            b.retain(|&i| i != id.index);
            if b.is_empty() {
                st.buckets.remove(&value);
            }
        }
        if let Some(c) = st.priorities.get_mut(&priority) {
            *c -= 1;
            if *c == 0 {
                st.priorities.remove(&priority);
            }
        }
        let old_max = st.max_priority;
        st.max_priority = st.priorities.keys().next_back().copied().unwrap_or(0);
        if st.buckets.is_empty() {
            // Drop the subtable; the last one moves into its index.
            self.by_mask.remove(&mask);
            self.subtables.swap_remove(si);
            let moved_from = self.subtables.len();
            if si < moved_from {
                let moved_mask = self.subtables[si].mask;
                self.by_mask.insert(moved_mask, si);
            }
            self.order.retain(|&i| i != si);
            for i in self.order.iter_mut() {
                if *i == moved_from {
                    *i = si;
                }
            }
            self.resort();
        } else if old_max != self.subtables[si].max_priority {
            self.resort();
        }
        let slot = &mut self.slots[usize::try_from(id.index).ok()?];
        let rule = slot.rule.take()?;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(id.index);
        self.len -= 1;
        Some(rule.value)
    }

    /// The value of a rule.
    pub fn get(&self, id: RuleId) -> Option<&T> {
        self.slot_of(id).map(|r| &r.value)
    }

    /// The value of a rule, mutable (the rule keeps its match, priority and tie-break rank).
    pub fn get_mut(&mut self, id: RuleId) -> Option<&mut T> {
        self.slot_of_mut(id).map(|r| &mut r.value)
    }

    /// The match and priority of a rule.
    pub fn rule_match(&self, id: RuleId) -> Option<(&Match, u16)> {
        self.slot_of(id).map(|r| (&r.m, r.priority))
    }

    /// The (oldest) rule with exactly this match and priority.
    pub fn find_exact(&self, m: &Match, priority: u16) -> Option<RuleId> {
        let si = *self.by_mask.get(&m.mask)?;
        let value = m.value.masked(&m.mask);
        let bucket = self.subtables[si].buckets.get(&value)?;
        let index = *bucket
            .iter()
            .find(|&&i| self.rule(i).is_some_and(|r| r.priority == priority))?;
        let gen = self.slots[usize::try_from(index).ok()?].gen;
        Some(RuleId { index, gen })
    }

    /// The winning rule for `key`: highest priority, then earliest inserted.
    pub fn lookup(&self, key: &FlowKey) -> Option<(RuleId, &T)> {
        self.search(key, None)
    }

    /// Like [`Classifier::lookup`], also returning the bits of `key` the answer depends on:
    /// every key equal to `key` under that mask gets the same answer.
    pub fn lookup_with_mask(&self, key: &FlowKey) -> (Option<(RuleId, &T)>, FlowKey) {
        let mut mask = FlowKey([0; KEY_LEN]);
        let hit = self.search(key, Some(&mut mask));
        (hit, mask)
    }

    fn search(&self, key: &FlowKey, mut mask: Option<&mut FlowKey>) -> Option<(RuleId, &T)> {
        // Best so far: (priority, seq, slot index).
        let mut best: Option<(u16, u64, u32)> = None;
        for &si in &self.order {
            let st = &self.subtables[si];
            if let Some((p, _, _)) = best {
                if st.max_priority < p {
                    break;
                }
            }
            if let Some(m) = mask.as_deref_mut() {
                for (o, b) in m.0.iter_mut().zip(st.mask.0.iter()) {
                    *o |= *b;
                }
            }
            let probe = key.masked(&st.mask);
            let Some(&top) = st.buckets.get(&probe).and_then(|b| b.first()) else {
                continue;
            };
            let Some(r) = self.rule(top) else { continue };
            let better = match best {
                None => true,
                Some((p, s, _)) => r.priority > p || (r.priority == p && r.seq < s),
            };
            if better {
                best = Some((r.priority, r.seq, top));
            }
        }
        let (_, _, index) = best?;
        let slot = self.slots.get(usize::try_from(index).ok()?)?;
        let r = slot.rule.as_ref()?;
        Some((
            RuleId {
                index,
                gen: slot.gen,
            },
            &r.value,
        ))
    }

    /// Every rule, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_, T>> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let r = s.rule.as_ref()?;
            let index = u32::try_from(i).ok()?;
            Some(Entry {
                id: RuleId { index, gen: s.gen },
                r#match: &r.m,
                priority: r.priority,
                value: &r.value,
            })
        })
    }

    /// Every rule with a mutable value: `(id, match, priority, value)`.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (RuleId, &Match, u16, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let gen = s.gen;
            let r = s.rule.as_mut()?;
            let index = u32::try_from(i).ok()?;
            Some((RuleId { index, gen }, &r.m, r.priority, &mut r.value))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Field;

    fn m(fields: &[(Field, u64)]) -> Match {
        let mut m = Match::any();
        for &(f, v) in fields {
            m.set_u64(f, v);
        }
        m
    }

    #[test]
    fn priority_tie_and_mask() {
        let mut c = Classifier::new();
        let any = c.insert(Match::any(), 0, "miss");
        let a = c.insert(m(&[(Field::EthType, 0x0800)]), 10, "ip");
        let b = c.insert(m(&[(Field::TcpDst, 80)]), 10, "http");
        let mut k = FlowKey::default();
        k.set_u64(Field::EthType, 0x0800);
        k.set_u64(Field::TcpDst, 80);
        // Equal priority: the earlier insert wins.
        assert_eq!(c.lookup(&k).map(|(id, v)| (id, *v)), Some((a, "ip")));
        let (hit, mask) = c.lookup_with_mask(&k);
        assert_eq!(hit.map(|h| h.0), Some(a));
        // Both priority-10 subtables probed, the priority-0 one skipped.
        assert_eq!(mask.get_u64(Field::EthType), 0xffff);
        assert_eq!(mask.get_u64(Field::TcpDst), 0xffff);
        assert_eq!(c.n_subtables(), 3);
        assert_eq!(c.remove(a), Some("ip"));
        assert_eq!(c.remove(a), None, "stale id");
        assert_eq!(c.lookup(&k).map(|h| h.0), Some(b));
        k.set_u64(Field::TcpDst, 81);
        assert_eq!(c.lookup(&k).map(|h| h.0), Some(any));
        assert_eq!(c.find_exact(&Match::any(), 0), Some(any));
        assert_eq!(c.find_exact(&Match::any(), 1), None);
        *c.get_mut(any).unwrap() = "miss2";
        assert_eq!(c.get(any), Some(&"miss2"));
        assert_eq!(c.len(), 2);
        assert_eq!(c.iter().count(), 2);
        // A reused slot gets a new generation.
        c.remove(b);
        let d = c.insert(Match::any(), 5, "d");
        assert_ne!(d, b);
        assert_eq!(c.get(b), None);
    }
}
