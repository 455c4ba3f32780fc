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
//!   bucket chain keyed by a 64-bit hash of `value & mask`. Empty subtables and empty buckets
//!   are removed at once.
//! - Storage is compact: a rule keeps only the words of its value that its subtable's mask
//!   covers (the mask is stored once per subtable); [`MatchRef::get`] rebuilds the [`Match`].
//! - A chain lists its rules by decreasing priority and, within a priority, by increasing
//!   insertion sequence number. Equal masked values always share a chain; a hash collision may
//!   add other values, so a probe takes the first rule whose stored words equal the key's
//!   masked words: the winner among the rules with that value.
//! - `order` lists the subtables by decreasing maximum priority.
//! - `by_rank` lists every rule by [`Rank`] (decreasing priority, then insertion sequence):
//!   [`Classifier::ranked_after`] walks the rules in the order they win from any position,
//!   which is what a paged flow dump needs (O(page), not a scan per page).
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

use crate::field::{FlowKey, KEY_LEN, KEY_WORDS};
use crate::matches::Match;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Names one rule of a [`Classifier`]. Stale ids (of removed rules) name nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId {
    index: u32,
    gen: u32,
}

/// Where a rule ranks among the rules of its classifier: by decreasing priority, then by
/// insertion (older first), the order in which rules win ties. Unique per rule and never
/// reused, so a position survives insertions and removals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rank {
    priority: std::cmp::Reverse<u16>,
    seq: u64,
}

/// One rule as seen by [`Classifier::iter`].
#[derive(Debug)]
pub struct Entry<'a, T> {
    pub id: RuleId,
    /// The rule's match, stored compactly; [`MatchRef::get`] rebuilds it.
    pub r#match: MatchRef<'a>,
    pub priority: u16,
    pub value: &'a T,
}

/// A rule's match as the classifier stores it: the rule's values of the words its subtable's
/// mask covers, plus that shared mask.
#[derive(Debug, Clone, Copy)]
pub struct MatchRef<'a> {
    shape: &'a Shape,
    vals: &'a [u64],
}

impl MatchRef<'_> {
    /// The full match (value already masked).
    pub fn get(&self) -> Match {
        let mut value = FlowKey([0; KEY_LEN]);
        for (&(i, _), &v) in self.shape.words.iter().zip(self.vals) {
            set_word(&mut value, i, v);
        }
        Match {
            value,
            mask: self.shape.mask,
        }
    }
}

/// End of a bucket chain.
const NIL: u32 = u32::MAX;

/// Word `i` (< [`KEY_WORDS`]) of a key, in native byte order (as [`FlowKey::words`]).
#[inline]
fn word(key: &FlowKey, i: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = key.0.get(i * 8..i * 8 + 8) {
        a.copy_from_slice(s);
    }
    u64::from_ne_bytes(a)
}

fn set_word(key: &mut FlowKey, i: usize, w: u64) {
    if let Some(s) = key.0.get_mut(i * 8..i * 8 + 8) {
        s.copy_from_slice(&w.to_ne_bytes());
    }
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hash of a masked key restricted to a subtable's words (word-at-a-time multiply-rotate,
/// then a final avalanche so the high bits the hash map uses are well mixed). Rule values
/// are chosen by the controller, not by packets, so a packet cannot grow a bucket chain.
#[inline]
fn hash_words(words: impl Iterator<Item = u64>) -> u64 {
    #[cfg(test)]
    if tests::COLLIDE.with(std::cell::Cell::get) {
        // Unit tests force every value into one chain to exercise collision handling.
        return words.count() as u64;
    }
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for w in words {
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
}

/// A non-cryptographic hasher for byte keys (the mask -> subtable map).
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
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

/// Passes an already mixed `u64` hash through (the bucket maps are keyed by [`hash_words`]).
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type KeyMap<V> = HashMap<FlowKey, V, BuildHasherDefault<KeyHasher>>;
type HashBuckets = HashMap<u64, u32, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Clone)]
struct Rule<T> {
    /// Index of the subtable in `Classifier::subtables`.
    sub: u32,
    /// Chunk of the subtable's `vals` holding this rule's masked value words.
    vi: u32,
    /// Next rule of the same bucket chain, or [`NIL`].
    next: u32,
    priority: u16,
    seq: u64,
    value: T,
}

impl<T> Rule<T> {
    fn rank(&self) -> Rank {
        Rank {
            priority: std::cmp::Reverse(self.priority),
            seq: self.seq,
        }
    }
}

#[derive(Debug, Clone)]
struct Slot<T> {
    gen: u32,
    rule: Option<Rule<T>>,
}

/// What every rule of a subtable shares: its mask, and the mask's non-zero words.
#[derive(Debug, Clone)]
struct Shape {
    mask: FlowKey,
    /// `(word index, mask word)` of every non-zero word of `mask`, by index.
    words: Box<[(usize, u64)]>,
}

impl Shape {
    fn new(mask: FlowKey) -> Shape {
        let words = (0..KEY_WORDS)
            .map(|i| (i, word(&mask, i)))
            .filter(|&(_, m)| m != 0)
            .collect();
        Shape { mask, words }
    }

    /// Hash of `key & mask`.
    #[inline]
    fn hash_key(&self, key: &FlowKey) -> u64 {
        hash_words(self.words.iter().map(|&(i, m)| word(key, i) & m))
    }

    /// True when `key & mask` equals the stored value words `vals`.
    #[inline]
    fn key_equals(&self, key: &FlowKey, vals: &[u64]) -> bool {
        self.words
            .iter()
            .zip(vals)
            .all(|(&(i, m), &v)| word(key, i) & m == v)
    }
}

#[derive(Debug, Clone)]
struct Subtable {
    shape: Shape,
    /// `hash(value & mask)` -> first slot of a chain of rules (linked by `Rule::next`), best
    /// first. Rules with equal masked values always share a chain; a hash collision may put
    /// different values in one chain, so a probe compares the values.
    buckets: HashBuckets,
    /// Masked value words of the rules, `shape.words.len()` per rule.
    vals: Vec<u64>,
    /// Free chunks of `vals`.
    free_vals: Vec<u32>,
    /// priority -> number of rules, to keep `max_priority` exact on removal.
    priorities: BTreeMap<u16, usize>,
    max_priority: u16,
    n_rules: usize,
}

impl Subtable {
    fn stride(&self) -> usize {
        self.shape.words.len()
    }

    fn vals(&self, vi: u32) -> &[u64] {
        let n = self.stride();
        let start = usize::try_from(vi).unwrap_or(usize::MAX).saturating_mul(n);
        self.vals.get(start..start.saturating_add(n)).unwrap_or(&[])
    }

    /// Stores a rule's value words; returns its chunk index.
    fn alloc_vals(&mut self, v: &[u64]) -> u32 {
        let n = self.stride();
        if let Some(vi) = self.free_vals.pop() {
            let start = usize::try_from(vi).unwrap_or(usize::MAX).saturating_mul(n);
            if let Some(dst) = self.vals.get_mut(start..start.saturating_add(n)) {
                dst.copy_from_slice(v);
            }
            return vi;
        }
        if n == 0 {
            return 0;
        }
        let vi = u32::try_from(self.vals.len() / n).expect("more than 2^32 rules");
        self.vals.extend_from_slice(v);
        vi
    }

    fn free_vals(&mut self, vi: u32) {
        if self.stride() != 0 {
            self.free_vals.push(vi);
        }
    }

    fn match_ref(&self, vi: u32) -> MatchRef<'_> {
        MatchRef {
            shape: &self.shape,
            vals: self.vals(vi),
        }
    }
}

/// Tuple-space search classifier over [`Match`] rules with values of type `T`.
///
/// A clone is an independent copy with the same rules, tie-break order and [`RuleId`]s.
#[derive(Debug, Clone)]
pub struct Classifier<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    /// Subtables by index; `None` entries are free (indices stay stable while rules name them).
    subtables: Vec<Option<Subtable>>,
    free_subtables: Vec<u32>,
    n_subtables: usize,
    by_mask: KeyMap<u32>,
    /// Live subtable indices by decreasing `max_priority`.
    order: Vec<u32>,
    /// Every rule's slot by [`Rank`], for walks in rank order from any position.
    by_rank: BTreeMap<Rank, u32>,
    next_seq: u64,
    len: usize,
}

impl<T> Default for Classifier<T> {
    fn default() -> Self {
        Classifier {
            slots: Vec::new(),
            free: Vec::new(),
            subtables: Vec::new(),
            free_subtables: Vec::new(),
            n_subtables: 0,
            by_mask: KeyMap::default(),
            order: Vec::new(),
            by_rank: BTreeMap::new(),
            next_seq: 0,
            len: 0,
        }
    }
}

fn ix(i: u32) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
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
        self.n_subtables
    }

    fn rule(&self, index: u32) -> Option<&Rule<T>> {
        self.slots.get(ix(index))?.rule.as_ref()
    }

    fn rule_mut(&mut self, index: u32) -> Option<&mut Rule<T>> {
        self.slots.get_mut(ix(index))?.rule.as_mut()
    }

    fn sub(&self, si: u32) -> Option<&Subtable> {
        self.subtables.get(ix(si))?.as_ref()
    }

    fn slot_of(&self, id: RuleId) -> Option<&Rule<T>> {
        let s = self.slots.get(ix(id.index))?;
        if s.gen == id.gen {
            s.rule.as_ref()
        } else {
            None
        }
    }

    fn slot_of_mut(&mut self, id: RuleId) -> Option<&mut Rule<T>> {
        let s = self.slots.get_mut(ix(id.index))?;
        if s.gen == id.gen {
            s.rule.as_mut()
        } else {
            None
        }
    }

    /// The sort key of a rule inside a bucket: higher priority first, then older first.
    fn rank(&self, index: u32) -> Rank {
        self.rule(index).map_or(
            Rank {
                priority: std::cmp::Reverse(0),
                seq: u64::MAX,
            },
            Rule::rank,
        )
    }

    fn resort(&mut self) {
        let subs = &self.subtables;
        let maxp = |i: u32| {
            subs.get(ix(i))
                .and_then(Option::as_ref)
                .map_or(0, |s| s.max_priority)
        };
        self.order.sort_by_key(|&i| (std::cmp::Reverse(maxp(i)), i));
    }

    /// The subtable for `mask`, created when missing; `(index, created)`.
    fn subtable_for(&mut self, mask: &FlowKey, priority: u16) -> (u32, bool) {
        if let Some(&si) = self.by_mask.get(mask) {
            return (si, false);
        }
        let st = Subtable {
            shape: Shape::new(*mask),
            buckets: HashBuckets::default(),
            vals: Vec::new(),
            free_vals: Vec::new(),
            priorities: BTreeMap::new(),
            max_priority: priority,
            n_rules: 0,
        };
        let si = match self.free_subtables.pop() {
            Some(si) => {
                if let Some(s) = self.subtables.get_mut(ix(si)) {
                    *s = Some(st);
                }
                si
            }
            None => {
                self.subtables.push(Some(st));
                u32::try_from(self.subtables.len() - 1).expect("more than 2^32 subtables")
            }
        };
        self.by_mask.insert(*mask, si);
        self.order.push(si);
        self.n_subtables += 1;
        (si, true)
    }

    /// Adds a rule. Duplicates (same match and priority) are allowed; the older one wins.
    pub fn insert(&mut self, m: Match, priority: u16, value: T) -> RuleId {
        let seq = self.next_seq;
        self.next_seq += 1;
        let (si, created) = self.subtable_for(&m.mask, priority);
        let Some(st) = self.subtables.get_mut(ix(si)).and_then(Option::as_mut) else {
            unreachable!("subtable_for returns a live subtable");
        };
        let mut vals = [0u64; KEY_WORDS];
        let n = st.stride();
        for (o, &(i, mw)) in vals.iter_mut().zip(st.shape.words.iter()) {
            *o = word(&m.value, i) & mw;
        }
        let vals = &vals[..n];
        let h = hash_words(vals.iter().copied());
        let vi = st.alloc_vals(vals);
        let head = st.buckets.get(&h).copied().unwrap_or(NIL);

        let rule = Rule {
            sub: si,
            vi,
            next: NIL,
            priority,
            seq,
            value,
        };
        let index = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.slots.get_mut(ix(i)) {
                    slot.rule = Some(rule);
                }
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
        let gen = self.slots.get(ix(index)).map_or(0, |s| s.gen);

        // Position in the chain: after every rule that ranks before the new one.
        let new_rank = Rank {
            priority: std::cmp::Reverse(priority),
            seq,
        };
        self.by_rank.insert(new_rank, index);
        let (mut prev, mut cur) = (NIL, head);
        while cur != NIL && self.rank(cur) < new_rank {
            prev = cur;
            cur = self.rule(cur).map_or(NIL, |r| r.next);
        }
        if let Some(r) = self.rule_mut(index) {
            r.next = cur;
        }
        if prev == NIL {
            if let Some(st) = self.subtables.get_mut(ix(si)).and_then(Option::as_mut) {
                st.buckets.insert(h, index);
            }
        } else if let Some(r) = self.rule_mut(prev) {
            r.next = index;
        }

        let Some(st) = self.subtables.get_mut(ix(si)).and_then(Option::as_mut) else {
            unreachable!("the subtable is live");
        };
        *st.priorities.entry(priority).or_insert(0) += 1;
        st.n_rules += 1;
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
        let (si, vi, priority, next) = (r.sub, r.vi, r.priority, r.next);
        let st = self.sub(si)?;
        let h = hash_words(st.vals(vi).iter().copied());
        // Unlink from the bucket chain.
        let head = st.buckets.get(&h).copied().unwrap_or(NIL);
        if head == id.index {
            let st = self.subtables.get_mut(ix(si))?.as_mut()?;
            if next == NIL {
                st.buckets.remove(&h);
            } else {
                st.buckets.insert(h, next);
            }
        } else {
            let mut cur = head;
            while cur != NIL {
                let n = self.rule(cur).map_or(NIL, |r| r.next);
                if n == id.index {
                    if let Some(r) = self.rule_mut(cur) {
                        r.next = next;
                    }
                    break;
                }
                cur = n;
            }
        }
        let st = self.subtables.get_mut(ix(si))?.as_mut()?;
        st.free_vals(vi);
        st.n_rules -= 1;
        if let Some(c) = st.priorities.get_mut(&priority) {
            *c -= 1;
            if *c == 0 {
                st.priorities.remove(&priority);
            }
        }
        let old_max = st.max_priority;
        st.max_priority = st.priorities.keys().next_back().copied().unwrap_or(0);
        if st.n_rules == 0 {
            let mask = st.shape.mask;
            self.by_mask.remove(&mask);
            if let Some(s) = self.subtables.get_mut(ix(si)) {
                *s = None;
            }
            self.free_subtables.push(si);
            self.n_subtables -= 1;
            self.order.retain(|&i| i != si);
        } else if old_max != st.max_priority {
            self.resort();
        }
        let slot = self.slots.get_mut(ix(id.index))?;
        let rule = slot.rule.take()?;
        slot.gen = slot.gen.wrapping_add(1);
        self.by_rank.remove(&rule.rank());
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
    pub fn rule_match(&self, id: RuleId) -> Option<(Match, u16)> {
        let r = self.slot_of(id)?;
        Some((self.sub(r.sub)?.match_ref(r.vi).get(), r.priority))
    }

    /// The (oldest) rule with exactly this match and priority.
    pub fn find_exact(&self, m: &Match, priority: u16) -> Option<RuleId> {
        let si = *self.by_mask.get(&m.mask)?;
        let st = self.sub(si)?;
        let mut cur = *st.buckets.get(&st.shape.hash_key(&m.value))?;
        while cur != NIL {
            let r = self.rule(cur)?;
            if r.priority == priority && st.shape.key_equals(&m.value, st.vals(r.vi)) {
                let gen = self.slots.get(ix(cur))?.gen;
                return Some(RuleId { index: cur, gen });
            }
            cur = r.next;
        }
        None
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
            let Some(st) = self.sub(si) else { continue };
            if let Some((p, _, _)) = best {
                if st.max_priority < p {
                    break;
                }
            }
            if let Some(m) = mask.as_deref_mut() {
                for &(i, w) in st.shape.words.iter() {
                    set_word(m, i, word(m, i) | w);
                }
            }
            let Some(&head) = st.buckets.get(&st.shape.hash_key(key)) else {
                continue;
            };
            // The chain is best first: its first rule whose value equals the key's wins here.
            let mut cur = head;
            while cur != NIL {
                let Some(r) = self.rule(cur) else { break };
                if st.shape.key_equals(key, st.vals(r.vi)) {
                    let better = match best {
                        None => true,
                        Some((p, s, _)) => r.priority > p || (r.priority == p && r.seq < s),
                    };
                    if better {
                        best = Some((r.priority, r.seq, cur));
                    }
                    break;
                }
                cur = r.next;
            }
        }
        let (_, _, index) = best?;
        let slot = self.slots.get(ix(index))?;
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
        (0..self.slots.len()).filter_map(|i| self.entry(u32::try_from(i).ok()?))
    }

    /// The rules ranked after `after` (from the first when `None`), in [`Rank`] order.
    pub fn ranked_after(&self, after: Option<Rank>) -> impl Iterator<Item = (Rank, Entry<'_, T>)> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.by_rank
            .range((from, Bound::Unbounded))
            .filter_map(|(&rank, &index)| Some((rank, self.entry(index)?)))
    }

    /// The rule in slot `index`, if the slot holds one.
    fn entry(&self, index: u32) -> Option<Entry<'_, T>> {
        let s = self.slots.get(ix(index))?;
        let r = s.rule.as_ref()?;
        Some(Entry {
            id: RuleId { index, gen: s.gen },
            r#match: self.sub(r.sub)?.match_ref(r.vi),
            priority: r.priority,
            value: &r.value,
        })
    }

    /// Every rule with a mutable value: `(id, match, priority, value)`.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (RuleId, MatchRef<'_>, u16, &mut T)> {
        let subtables = &self.subtables;
        self.slots.iter_mut().enumerate().filter_map(move |(i, s)| {
            let gen = s.gen;
            let r = s.rule.as_mut()?;
            let index = u32::try_from(i).ok()?;
            let st = subtables.get(ix(r.sub))?.as_ref()?;
            Some((
                RuleId { index, gen },
                st.match_ref(r.vi),
                r.priority,
                &mut r.value,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Field;

    thread_local! {
        pub(super) static COLLIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// With every masked value hashing alike, each subtable is one chain: lookups, exact
    /// finds and removals must still compare values and agree with a linear scan.
    #[test]
    fn hash_collisions_are_resolved_by_value() {
        COLLIDE.with(|c| c.set(true));
        let mut c = Classifier::new();
        let mut live: Vec<(RuleId, Match, u16, u64)> = Vec::new();
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for seq in 0..400u64 {
            if next(4) == 0 && !live.is_empty() {
                let i = usize::try_from(next(live.len() as u64)).unwrap();
                let (id, ..) = live.remove(i);
                assert_eq!(c.remove(id), Some(id));
                continue;
            }
            let mut m = Match::any();
            if next(2) == 0 {
                m.set_u64(Field::TcpDst, next(4));
            }
            if next(2) == 0 {
                m.set_u64(Field::EthType, 0x0800 + next(3));
            }
            let p = u16::try_from(next(3)).unwrap();
            let slot = c.insert(m, p, RuleId { index: 0, gen: 0 });
            *c.get_mut(slot).unwrap() = slot;
            live.push((slot, m, p, seq));
            let want = live.iter().find(|r| r.1 == m && r.2 == p).map(|r| r.0);
            assert_eq!(c.find_exact(&m, p), want);
            assert_eq!(c.rule_match(slot), Some((m, p)));
            for _ in 0..8 {
                let mut k = FlowKey::default();
                k.set_u64(Field::TcpDst, next(5));
                k.set_u64(Field::EthType, 0x0800 + next(4));
                let want = live
                    .iter()
                    .filter(|r| r.1.matches(&k))
                    .min_by_key(|r| (std::cmp::Reverse(r.2), r.3))
                    .map(|r| r.0);
                assert_eq!(c.lookup(&k).map(|h| *h.1), want, "key {k:?}");
            }
        }
        assert_eq!(c.len(), live.len());
        COLLIDE.with(|c| c.set(false));
    }

    #[test]
    fn compact_sizes() {
        // Per-rule overhead besides the value: slot bookkeeping, no stored Match.
        assert!(
            std::mem::size_of::<Slot<()>>() <= 40,
            "{}",
            std::mem::size_of::<Slot<()>>()
        );
        eprintln!(
            "Slot<FlowEntry> = {} B, FlowEntry = {} B, Match = {} B",
            std::mem::size_of::<Slot<crate::table::FlowEntry>>(),
            std::mem::size_of::<crate::table::FlowEntry>(),
            std::mem::size_of::<Match>()
        );
    }

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
