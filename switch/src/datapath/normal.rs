//! L2 MAC learning: the NORMAL action and fail-mode standalone forwarding.
//!
//! A pure table of (VLAN, MAC) → (port, last seen). Learning and lookup take `now`; entries
//! age out after `max_age_ns`; the table is bounded (the oldest entry is evicted when full),
//! so a flood of random source MACs cannot grow it without limit.

use shg_flows::field::{Field, FlowKey};
use std::collections::HashMap;

/// Default aging time (as Open vSwitch and Linux bridges: 300 s).
pub const DEFAULT_MAX_AGE_NS: u64 = 300_000_000_000;
/// Default capacity.
pub const DEFAULT_MAX_ENTRIES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Learned {
    port: u32,
    seen: u64,
}

/// The learning table.
#[derive(Debug, Clone)]
pub struct MacTable {
    entries: HashMap<(u16, [u8; 6]), Learned>,
    max_age_ns: u64,
    max_entries: usize,
    /// Entries added, moved or removed so far (the kernel fast path's copies of NORMAL
    /// decisions are taken back when it changes).
    changes: u64,
}

impl Default for MacTable {
    fn default() -> Self {
        MacTable::new(DEFAULT_MAX_AGE_NS, DEFAULT_MAX_ENTRIES)
    }
}

impl MacTable {
    pub fn new(max_age_ns: u64, max_entries: usize) -> MacTable {
        MacTable {
            entries: HashMap::new(),
            max_age_ns,
            max_entries: max_entries.max(1),
            changes: 0,
        }
    }

    /// Records that `mac` on `vlan` (0 = untagged) was seen on `port`. Multicast and broadcast
    /// sources are never learned. Returns true if the entry is new or moved.
    pub fn learn(&mut self, vlan: u16, mac: [u8; 6], port: u32, now: u64) -> bool {
        if mac[0] & 1 != 0 {
            return false;
        }
        let key = (vlan, mac);
        if let Some(e) = self.entries.get_mut(&key) {
            let moved = e.port != port;
            *e = Learned { port, seen: now };
            self.changes += u64::from(moved);
            return moved;
        }
        if self.entries.len() >= self.max_entries {
            self.expire(now);
        }
        if self.entries.len() >= self.max_entries {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.seen)
                .map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, Learned { port, seen: now });
        self.changes += 1;
        true
    }

    /// The port `mac` on `vlan` was last seen on, if fresh.
    pub fn lookup(&self, vlan: u16, mac: [u8; 6], now: u64) -> Option<u32> {
        let e = self.entries.get(&(vlan, mac))?;
        (now.saturating_sub(e.seen) <= self.max_age_ns).then_some(e.port)
    }

    /// Forgets everything learned on `port` (port deleted or down).
    pub fn flush_port(&mut self, port: u32) {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.port != port);
        self.changes += u64::from(self.entries.len() != before);
    }

    /// Drops entries older than the aging time.
    pub fn expire(&mut self, now: u64) {
        let max = self.max_age_ns;
        let before = self.entries.len();
        self.entries
            .retain(|_, e| now.saturating_sub(e.seen) <= max);
        self.changes += u64::from(self.entries.len() != before);
    }

    /// How many times an entry was added, moved or removed (a change counter).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where NORMAL sends one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormalDecision {
    /// Out of this port only (the destination was learned there).
    Forward(u32),
    /// Out of every port but the input port (unknown, broadcast or multicast destination).
    Flood,
    /// Nowhere: the destination was learned on the input port itself.
    Drop,
}

/// The NORMAL action on a frame with key `key` that arrived on `in_port`: learns the source
/// (VLAN, MAC) on `in_port`, then forwards by the destination.
pub fn decide(table: &mut MacTable, key: &FlowKey, in_port: u32, now: u64) -> NormalDecision {
    let vlan = u16::try_from(key.get_u64(Field::VlanVid) & 0x0fff).unwrap_or(0);
    let mac = |f: Field| {
        let mut m = [0u8; 6];
        m.copy_from_slice(key.get(f));
        m
    };
    let (src, dst) = (mac(Field::EthSrc), mac(Field::EthDst));
    table.learn(vlan, src, in_port, now);
    if dst[0] & 1 != 0 {
        return NormalDecision::Flood;
    }
    match table.lookup(vlan, dst, now) {
        Some(p) if p == in_port => NormalDecision::Drop,
        Some(p) => NormalDecision::Forward(p),
        None => NormalDecision::Flood,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_lookup_age_evict() {
        let mut t = MacTable::new(10, 2);
        let a = [2, 0, 0, 0, 0, 1];
        let b = [2, 0, 0, 0, 0, 2];
        let c = [2, 0, 0, 0, 0, 3];
        assert!(t.learn(0, a, 1, 0));
        assert!(!t.learn(0, a, 1, 1));
        assert!(t.learn(0, a, 2, 2));
        assert_eq!(t.lookup(0, a, 5), Some(2));
        assert_eq!(t.lookup(7, a, 5), None);
        assert_eq!(t.lookup(0, a, 13), None);
        assert!(!t.learn(0, [0xff; 6], 1, 0));
        t.learn(0, b, 3, 3);
        t.learn(0, c, 4, 4);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(0, a, 4), None, "oldest entry evicted");
        t.flush_port(4);
        assert_eq!(t.lookup(0, c, 4), None);
    }

    #[test]
    fn decide_learns_then_forwards() {
        let key = |src: [u8; 6], dst: [u8; 6], vlan: u16| {
            let mut k = FlowKey::default();
            k.set(Field::EthSrc, &src);
            k.set(Field::EthDst, &dst);
            k.set_u64(Field::VlanVid, u64::from(vlan));
            k
        };
        let a = [2, 0, 0, 0, 0, 1];
        let b = [2, 0, 0, 0, 0, 2];
        let mut t = MacTable::default();
        assert_eq!(decide(&mut t, &key(a, b, 0), 1, 0), NormalDecision::Flood);
        assert_eq!(
            decide(&mut t, &key(b, a, 0), 2, 1),
            NormalDecision::Forward(1)
        );
        assert_eq!(
            decide(&mut t, &key(a, b, 0), 1, 2),
            NormalDecision::Forward(2)
        );
        assert_eq!(
            decide(&mut t, &key(a, b, 0x1005), 1, 3),
            NormalDecision::Flood,
            "per VLAN"
        );
        assert_eq!(
            decide(&mut t, &key(b, [0xff; 6], 0), 2, 4),
            NormalDecision::Flood
        );
        assert_eq!(
            decide(&mut t, &key([2, 0, 0, 0, 0, 3], a, 0), 1, 5),
            NormalDecision::Drop
        );
    }
}
