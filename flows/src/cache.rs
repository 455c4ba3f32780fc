//! The megaflow cache: pipeline results remembered under the bits of the key they depend on.
//!
//! A walk through the flow tables ([`crate::table::FlowTables::lookup`]) consults, in each
//! table, only some bits of the packet key: the fields of the subtables the classifier
//! probed. Their union is the walk's mask: every key equal to the walked one on those bits
//! walks the same tables, hits the same entries and gets the same actions. The cache stores
//! the result under (mask, key & mask), one hash map per distinct mask (a tuple space, like
//! Open vSwitch's datapath flows), so the next packet of the same megaflow costs one masked
//! hash probe per mask instead of a classifier search per table and the building of a new
//! result (its action list, trace and instruction copies).
//!
//! What a hit must still do is the caller's: count the packet on every entry and table the
//! walk visited (the entry list is kept for that, as [`RuleId`]s, which stop resolving once
//! their rule is removed) and run meters, groups and actions per packet.
//!
//! The cache never decides anything the tables would not: it is emptied whenever the tables
//! change (every flow_mod, expiry or removal), it holds at most [`MegaflowCache::capacity`]
//! entries (full: emptied, counted as a flush) and it is not part of the tables' state (a
//! clone of the tables starts with an empty cache).

use crate::classifier::RuleId;
use crate::field::{FlowKey, KEY_LEN};
use crate::table::PipelineResult;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Entries held before the cache is emptied and refilled. An entry of a one-table walk takes
/// about 1.7 KB (masked key, result with its trace step and instruction copy), ~2.5 KB for two
/// tables: at most ~14-20 MB when full, and emptying it stays well under a millisecond. (Open
/// vSwitch's exact-match cache has the same 8192 entries.)
pub const DEFAULT_CAPACITY: usize = 8192;

/// One remembered walk.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The walk's result, as computed for the first key of the megaflow. Its per-table `key`
    /// values are that key's: the fields a later packet does not share with it are outside
    /// the mask, so no table looked at them.
    pub result: Arc<PipelineResult>,
    /// Tables visited, in order, with the entry each one matched (`None`: the table missed).
    pub visits: Vec<(u8, Option<RuleId>)>,
}

/// Cache counters (monotonic, except `entries` and `masks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    /// Distinct masks (hash maps probed per lookup).
    pub masks: usize,
    pub hits: u64,
    pub misses: u64,
    /// Times the cache was emptied because the tables changed.
    pub invalidations: u64,
    /// Times the cache was emptied because it was full.
    pub overflows: u64,
}

/// FNV-style word hasher for flow keys (whole 8-byte words; keys are a multiple of 8). Not
/// seeded: frames crafted to collide make lookups slower, never wrong, and the maps that use
/// it are bounded.
#[derive(Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ 0xcbf2_9ce4_8422_2325;
        for c in bytes.chunks(8) {
            let mut a = [0u8; 8];
            if let Some(d) = a.get_mut(..c.len()) {
                d.copy_from_slice(c);
            }
            h = (h ^ u64::from_ne_bytes(a)).wrapping_mul(0x0000_0100_0000_01b3);
            h ^= h >> 29;
        }
        self.0 = h;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A hash map keyed by flow keys, with [`KeyHasher`].
pub type FlowKeyMap<V> = HashMap<FlowKey, V, BuildHasherDefault<KeyHasher>>;

type KeyMap = FlowKeyMap<Cached>;

#[derive(Debug)]
struct Subcache {
    mask: FlowKey,
    map: KeyMap,
}

/// See the module docs.
#[derive(Debug)]
pub struct MegaflowCache {
    subs: Vec<Subcache>,
    entries: usize,
    capacity: usize,
    stats: CacheStats,
}

impl Default for MegaflowCache {
    fn default() -> Self {
        MegaflowCache::with_capacity(DEFAULT_CAPACITY)
    }
}

/// A clone is an empty cache with the same capacity: the cache is derived state, rebuilt by
/// lookups.
impl Clone for MegaflowCache {
    fn clone(&self) -> Self {
        MegaflowCache::with_capacity(self.capacity)
    }
}

fn masked(key: &FlowKey, mask: &FlowKey) -> FlowKey {
    let mut out = FlowKey([0; KEY_LEN]);
    for ((o, k), m) in out.0.iter_mut().zip(key.0.iter()).zip(mask.0.iter()) {
        *o = k & m;
    }
    out
}

impl MegaflowCache {
    /// An empty cache holding at most `capacity` entries (0 disables it).
    pub fn with_capacity(capacity: usize) -> MegaflowCache {
        MegaflowCache {
            subs: Vec::new(),
            entries: 0,
            capacity,
            stats: CacheStats::default(),
        }
    }

    /// Most entries held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The walk remembered for `key`, if any (counted as a hit or a miss).
    pub fn get(&mut self, key: &FlowKey) -> Option<&Cached> {
        if self.capacity == 0 {
            return None;
        }
        let hit = self
            .subs
            .iter()
            .find_map(|s| s.map.get(&masked(key, &s.mask)));
        match hit {
            Some(_) => self.stats.hits = self.stats.hits.saturating_add(1),
            None => self.stats.misses = self.stats.misses.saturating_add(1),
        }
        hit
    }

    /// The walk remembered for `key`, if any, without counting a hit or a miss.
    pub fn peek(&self, key: &FlowKey) -> Option<&Cached> {
        self.subs
            .iter()
            .find_map(|s| s.map.get(&masked(key, &s.mask)))
    }

    /// Remembers `cached` for every key equal to `key` on the bits of `mask`.
    pub fn insert(&mut self, key: &FlowKey, mask: &FlowKey, cached: Cached) {
        if self.capacity == 0 {
            return;
        }
        if self.entries >= self.capacity {
            self.subs.clear();
            self.entries = 0;
            self.stats.overflows = self.stats.overflows.saturating_add(1);
        }
        let k = masked(key, mask);
        let sub = match self.subs.iter().position(|s| s.mask == *mask) {
            Some(i) => &mut self.subs[i],
            None => {
                self.subs.push(Subcache {
                    mask: *mask,
                    map: KeyMap::default(),
                });
                let last = self.subs.len() - 1;
                &mut self.subs[last]
            }
        };
        if sub.map.insert(k, cached).is_none() {
            self.entries += 1;
        }
    }

    /// Forgets everything (the tables changed).
    pub fn invalidate(&mut self) {
        if self.entries > 0 || !self.subs.is_empty() {
            self.subs.clear();
            self.entries = 0;
            self.stats.invalidations = self.stats.invalidations.saturating_add(1);
        }
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries,
            masks: self.subs.len(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Field;

    fn result() -> Cached {
        Cached {
            result: Arc::new(PipelineResult {
                actions: Vec::new(),
                meters: Vec::new(),
                trace: Vec::new(),
                mask: FlowKey([0; KEY_LEN]),
                key: FlowKey([0; KEY_LEN]),
                missed: true,
                resume: None,
            }),
            visits: vec![(0, None)],
        }
    }

    fn key(port: u32, eth_type: u16) -> FlowKey {
        let mut k = FlowKey([0; KEY_LEN]);
        k.set_u64(Field::InPort, u64::from(port));
        k.set_u64(Field::EthType, u64::from(eth_type));
        k
    }

    #[test]
    fn keys_equal_on_the_mask_share_an_entry_and_others_do_not() {
        let mut c = MegaflowCache::default();
        let mut mask = FlowKey([0; KEY_LEN]);
        mask.set_u64(Field::InPort, u64::from(u32::MAX));
        c.insert(&key(1, 0x0800), &mask, result());
        assert!(
            c.get(&key(1, 0x86dd)).is_some(),
            "eth_type is outside the mask"
        );
        assert!(c.get(&key(2, 0x0800)).is_none(), "in_port is inside it");
        let s = c.stats();
        assert_eq!((s.entries, s.masks, s.hits, s.misses), (1, 1, 1, 1));
    }

    #[test]
    fn invalidation_and_overflow_empty_the_cache() {
        let mut c = MegaflowCache::with_capacity(2);
        let mut mask = FlowKey([0; KEY_LEN]);
        mask.set_u64(Field::InPort, u64::from(u32::MAX));
        for p in 1..=3 {
            c.insert(&key(p, 0), &mask, result());
        }
        // The third insert found the cache full: only it remains.
        assert!(c.get(&key(1, 0)).is_none());
        assert!(c.get(&key(3, 0)).is_some());
        assert_eq!(c.stats().overflows, 1);
        c.invalidate();
        assert!(c.get(&key(3, 0)).is_none());
        assert_eq!(c.stats().invalidations, 1);
        assert_eq!(c.stats().entries, 0);
    }

    #[test]
    fn capacity_zero_disables_and_clones_start_empty() {
        let mut off = MegaflowCache::with_capacity(0);
        off.insert(&key(1, 0), &FlowKey([0; KEY_LEN]), result());
        assert!(off.get(&key(1, 0)).is_none());
        let mut c = MegaflowCache::default();
        c.insert(&key(1, 0), &FlowKey([0; KEY_LEN]), result());
        assert!(c.clone().get(&key(1, 0)).is_none());
        assert!(
            c.get(&key(9, 9)).is_some(),
            "an all-wildcard mask matches any key"
        );
    }
}
