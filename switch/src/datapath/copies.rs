//! The datapath thread's own copies of repeatable decisions: a frame whose whole flow key was
//! decided before is forwarded again without the pipeline and without the `Ofproto` lock, and
//! counted here, by this thread, until the switch core credits the counts.
//!
//! This is the fast path for what the kernel cannot repeat (tagged frames, IPv4 with options,
//! IPv6 with extension headers, fragments, ports without a kernel interface) and for the frames
//! that reach the thread before the kernel has a decision. Which decisions: those
//! [`super::offload::candidate`] accepts for [`Repeater::Thread`](super::offload::Repeater):
//! one output of the frame unchanged, to an unshaped port, made by a cached pipeline walk
//! (or by fail-mode standalone) with no meter. A copy is keyed by the whole flow key, input
//! port included, so every field the walk looked at is in its key; the decision can change
//! only with the switch state, and the core takes every copy back before it changes that state
//! (`ofproto/fastpath.rs`), crediting the counts to the flow entries, tables, ports and queue 0
//! the frame that taught the copy was counted on. Lookups take this table's own lock, which
//! the core holds only while it takes copies back or credits them: never for the length of a
//! FLOW_MOD or of a flow-dump page.

use crate::ofproto::{FastPath, FastRecord};
use shg_flows::cache::FlowKeyMap;
use shg_flows::field::FlowKey;

/// Copies held at most; a decision made while the table is full is not copied (the next sync
/// takes idle copies back).
pub const MAX_COPIES: usize = 16_384;
/// Keys remembered as not repeatable before the set is emptied.
const MAX_REFUSED: usize = 65_536;

/// One decision the thread repeats.
#[derive(Debug)]
struct Copy {
    record: FastRecord,
    /// Frames and bytes forwarded since the last credit.
    packets: u64,
    bytes: u64,
    /// Forwarded nothing since the sync before the last one (taken back at the next).
    idle: bool,
}

/// The thread's copies (see the module doc).
#[derive(Debug, Default)]
pub struct ThreadCopies {
    copies: FlowKeyMap<Copy>,
    /// Keys found not repeatable since the last take-back.
    refused: FlowKeyMap<()>,
}

impl ThreadCopies {
    /// An empty table.
    pub fn new() -> ThreadCopies {
        ThreadCopies::default()
    }

    /// The output port of `key`'s copy, counting a frame of `bytes` on it; `None` when there
    /// is no copy.
    pub fn forward(&mut self, key: &FlowKey, bytes: u64) -> Option<u32> {
        let c = self.copies.get_mut(key)?;
        c.packets = c.packets.saturating_add(1);
        c.bytes = c.bytes.saturating_add(bytes);
        Some(c.record.out_port)
    }

    /// Whether the decision for `key` is worth offering: neither copied nor refused yet.
    pub fn wants(&self, key: &FlowKey) -> bool {
        !self.copies.contains_key(key) && !self.refused.contains_key(key)
    }

    /// Notes the outcome of the pipeline for `key`: `record` is the repeatable decision (kept,
    /// unless the table is full), or `None` (the key is remembered as refused until the next
    /// take-back). Call it under the `Ofproto` lock the decision was made under: the core
    /// cannot take copies back in between. Returns whether a copy was added.
    pub fn decided(&mut self, key: FlowKey, record: Option<FastRecord>) -> bool {
        match record {
            Some(record) if self.copies.len() < MAX_COPIES => {
                self.copies.entry(key).or_insert(Copy {
                    record,
                    packets: 0,
                    bytes: 0,
                    idle: false,
                });
                true
            }
            Some(_) => false,
            None => {
                if self.refused.len() >= MAX_REFUSED {
                    self.refused.clear();
                }
                self.refused.insert(key, ());
                false
            }
        }
    }
}

impl FastPath for ThreadCopies {
    fn drain(&mut self, credit: &mut dyn FnMut(&FastRecord, u64, u64) -> bool) {
        self.refused.clear();
        for (_, c) in self.copies.drain() {
            credit(&c.record, c.packets, c.bytes);
        }
    }

    fn sync(&mut self, credit: &mut dyn FnMut(&FastRecord, u64, u64) -> bool) {
        let mut taken_back = false;
        self.copies.retain(|_, c| {
            let (p, b) = (std::mem::take(&mut c.packets), std::mem::take(&mut c.bytes));
            let right = credit(&c.record, p, b);
            if !right || (p == 0 && c.idle) {
                taken_back = true;
                return false;
            }
            c.idle = p == 0;
            true
        });
        if taken_back {
            // A decision refused while a copy was out may be repeatable now.
            self.refused.clear();
        }
    }

    fn is_empty(&self) -> bool {
        self.copies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shg_flows::field::Field;

    fn key(port: u32) -> FlowKey {
        let mut k = FlowKey::default();
        k.set(Field::InPort, &port.to_be_bytes());
        k
    }

    fn record(in_port: u32, out_port: u32) -> FastRecord {
        FastRecord {
            visits: Vec::new(),
            in_port,
            out_port,
            normal: None,
        }
    }

    type Credits = Vec<(u32, u64, u64)>;

    fn drain(t: &mut ThreadCopies) -> Credits {
        let mut v = Vec::new();
        t.drain(&mut |r, p, b| {
            v.push((r.in_port, p, b));
            true
        });
        v.sort_unstable();
        v
    }

    fn sync(t: &mut ThreadCopies, right: bool) -> Credits {
        let mut v = Vec::new();
        t.sync(&mut |r, p, b| {
            v.push((r.in_port, p, b));
            right
        });
        v.sort_unstable();
        v
    }

    #[test]
    fn a_kept_decision_forwards_and_counts_until_taken_back() {
        let mut t = ThreadCopies::new();
        assert!(t.wants(&key(1)));
        assert_eq!(t.forward(&key(1), 60), None);
        assert!(t.decided(key(1), Some(record(1, 2))));
        assert!(!t.wants(&key(1)));
        assert_eq!(t.forward(&key(1), 60), Some(2));
        assert_eq!(t.forward(&key(1), 40), Some(2));
        assert_eq!(t.forward(&key(3), 40), None, "another key");
        assert_eq!(drain(&mut t), vec![(1, 2, 100)]);
        assert!(t.is_empty());
        assert_eq!(t.forward(&key(1), 60), None, "taken back");
    }

    #[test]
    fn a_refusal_lasts_until_the_next_take_back() {
        let mut t = ThreadCopies::new();
        assert!(!t.decided(key(1), None));
        assert!(!t.wants(&key(1)));
        drain(&mut t);
        assert!(t.wants(&key(1)));
    }

    #[test]
    fn sync_credits_what_came_since_and_takes_back_idle_and_wrong_copies() {
        let mut t = ThreadCopies::new();
        for k in [1, 3] {
            t.decided(key(k), Some(record(k, 2)));
        }
        t.forward(&key(1), 10);
        t.forward(&key(3), 30);
        assert_eq!(sync(&mut t, true), vec![(1, 1, 10), (3, 1, 30)]);
        t.forward(&key(1), 10);
        // Port 3's copy forwarded nothing since: idle once, kept.
        assert_eq!(sync(&mut t, true), vec![(1, 1, 10), (3, 0, 0)]);
        assert_eq!(t.copies.len(), 2);
        t.forward(&key(1), 10);
        // Idle twice: taken back.
        assert_eq!(sync(&mut t, true), vec![(1, 1, 10), (3, 0, 0)]);
        assert_eq!(t.copies.len(), 1);
        // No longer right: taken back after its counts are credited.
        t.forward(&key(1), 10);
        assert_eq!(sync(&mut t, false), vec![(1, 1, 10)]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_copies_nothing_more() {
        let mut t = ThreadCopies::new();
        for k in 0..MAX_COPIES {
            assert!(t.decided(key(u32::try_from(k).unwrap()), Some(record(1, 2))));
        }
        assert!(!t.decided(key(u32::MAX), Some(record(1, 2))));
        assert_eq!(t.copies.len(), MAX_COPIES);
    }
}
