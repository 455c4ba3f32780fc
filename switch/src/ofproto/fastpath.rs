//! The fast paths as the switch core sees them: decisions another forwarder repeats, when
//! they must be taken back, and how what it forwarded is counted here.
//!
//! The datapath may hand a decision the pipeline made for one frame to a faster forwarder
//! that repeats it for the following frames: the kernel (`datapath::offload`), for frames with
//! the same input port and headers as far as its key reads them, and the datapath thread's
//! own copies (`datapath::copies`), for frames with the same whole flow key, without the
//! pipeline or this core's lock. Such a copy is only right while nothing that decided it
//! changes, so the core takes every copy back ([`Ofproto::drain_fast_path`]) at each of its
//! entry points before it acts: every OpenFlow message that may change a decision (flow,
//! group, meter, port and table mods, role and config changes, PACKET_OUT, HELLO, anything
//! unknown), time-driven work (expiry), connections coming and going (fail mode),
//! control-socket commands, port changes and QoS changes. Statistics requests only credit
//! the copies' counts ([`Ofproto::sync_fast_path`]): their replies are exact and the copies
//! stay out. Echo, barrier, features, get-config, queue-config and get-async requests touch
//! nothing. The datapath also drains when NORMAL's MAC table changes. Taking copies back is
//! always correct: the next frame of that header goes through the pipeline again and may be
//! handed over again.
//!
//! Counting: each copy carries what the pipeline counted its first frame on ([`FastRecord`]:
//! table visits, input and output port, the source MAC NORMAL learned). What the forwarder
//! reports (packets, bytes) is credited to exactly those: flow entry and table counters and
//! `last_used`, the input port's rx and the output port's tx and queue-0 counters, and the
//! MAC table's age of the source. [`Ofproto::sync_fast_path`] credits without taking the
//! copies back (the datapath calls it about once a second while copies exist).

use super::{Ofproto, QueueCounters};
use shg_flows::table::Visit;
use shg_flows::wire::message::{MsgType, OFP_VERSION};
use shg_flows::wire::multipart::MultipartType;
use std::sync::{Arc, Mutex, PoisonError};

/// What a repeated decision is counted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastRecord {
    /// Tables visited and the entry matched in each (as the megaflow cache counts a hit).
    pub visits: Vec<Visit>,
    pub in_port: u32,
    pub out_port: u32,
    /// NORMAL's decision: (source, destination) MACs, untagged. Each frame refreshes the
    /// source's learning; the copy is right while the destination is learned on `out_port`.
    pub normal: Option<([u8; 6], [u8; 6])>,
}

/// A forwarder repeating decisions (the kernel, the datapath thread's copies; a fake in
/// tests). `credit` is called with each copy's packets and bytes forwarded since it was handed
/// over or last reported, and answers whether the copy is still right.
pub trait FastPath: Send + std::fmt::Debug {
    /// Takes every copy back, reporting what each forwarded.
    fn drain(&mut self, credit: &mut dyn FnMut(&FastRecord, u64, u64) -> bool);
    /// Reports what each copy forwarded; takes back the copies no longer right and those
    /// that forwarded nothing since the previous report, reporting them once more.
    fn sync(&mut self, credit: &mut dyn FnMut(&FastRecord, u64, u64) -> bool);
    /// Whether any copy is out.
    fn is_empty(&self) -> bool;
}

/// A fast path shared between the core (which drains it) and the datapath (which hands
/// decisions to it); whoever holds the `Ofproto` lock too took that one first.
pub type SharedFastPath = Arc<Mutex<dyn FastPath>>;

impl Ofproto {
    /// Adds a fast path the core drains from now on (the datapath thread's copies, the
    /// kernel's).
    pub fn add_fast_path(&mut self, fast: SharedFastPath) {
        self.fast_paths.push(fast);
    }

    /// Takes every handed-over decision back, crediting what it forwarded (see the module
    /// doc). A no-op without a fast path.
    pub fn drain_fast_path(&mut self, now: u64) {
        self.each_fast_path(|of, f| {
            f.drain(&mut |rec, packets, bytes| {
                of.credit_fast(rec, packets, bytes, now);
                false
            });
        });
    }

    /// Credits what the handed-over decisions forwarded, keeping them (idle ones are taken
    /// back). Returns whether any is still out.
    pub fn sync_fast_path(&mut self, now: u64) -> bool {
        let mut out = false;
        self.each_fast_path(|of, f| {
            f.sync(&mut |rec, packets, bytes| {
                of.credit_fast(rec, packets, bytes, now);
                // NORMAL's copy is right while its destination is still learned on its port.
                rec.normal
                    .is_none_or(|(_, dst)| of.mac_table.lookup(0, dst, now) == Some(rec.out_port))
            });
            out |= !f.is_empty();
        });
        out
    }

    /// Calls `visit` with each fast path that holds copies, locked.
    fn each_fast_path(&mut self, mut visit: impl FnMut(&mut Ofproto, &mut dyn FastPath)) {
        for fast in self.fast_paths.clone() {
            let mut f = fast.lock().unwrap_or_else(PoisonError::into_inner);
            if !f.is_empty() {
                visit(self, &mut *f);
            }
        }
    }

    /// The entry of an OpenFlow message: like `Ofproto::entered`, except for messages that
    /// change nothing a decision depends on. Statistics requests only credit the copies'
    /// counts (their replies are exact and the copies stay out); echo, features, config,
    /// queue-config and async-config requests and barriers neither take back nor credit.
    /// Everything else, and anything unreadable, takes every copy back.
    pub(super) fn entered_for(&mut self, frame: &[u8], now: u64) {
        self.last_now = self.last_now.max(now);
        match fast_path_need(frame) {
            FastPathNeed::TakeBack => self.drain_fast_path(self.last_now),
            FastPathNeed::Credit => {
                self.sync_fast_path(self.last_now);
            }
            FastPathNeed::Nothing => {}
        }
    }

    fn credit_fast(&mut self, rec: &FastRecord, packets: u64, bytes: u64, now: u64) {
        if packets == 0 {
            return;
        }
        self.tables.credit(&rec.visits, packets, bytes, now);
        if let Some(p) = self.ports.get_mut(&rec.in_port) {
            p.counters.rx_packets = p.counters.rx_packets.saturating_add(packets);
            p.counters.rx_bytes = p.counters.rx_bytes.saturating_add(bytes);
        }
        if let Some(p) = self.ports.get_mut(&rec.out_port) {
            p.counters.tx_packets = p.counters.tx_packets.saturating_add(packets);
            p.counters.tx_bytes = p.counters.tx_bytes.saturating_add(bytes);
            let q = p.queues.entry(0).or_insert(QueueCounters {
                created: now,
                ..Default::default()
            });
            q.tx_packets = q.tx_packets.saturating_add(packets);
            q.tx_bytes = q.tx_bytes.saturating_add(bytes);
        }
        if let Some((src, _)) = rec.normal {
            self.mac_table.learn(0, src, rec.in_port, now);
        }
    }
}

/// What an OpenFlow message needs of the fast paths before it is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FastPathNeed {
    /// It may change what decides (or who: a controller's HELLO ends fail-open mode).
    TakeBack,
    /// It reads counters.
    Credit,
    /// It reads or changes nothing a decision or a counter depends on.
    Nothing,
}

/// [`FastPathNeed`] of `frame`, by its OpenFlow 1.3 type (and multipart type).
fn fast_path_need(frame: &[u8]) -> FastPathNeed {
    if frame.first() != Some(&OFP_VERSION) {
        return FastPathNeed::TakeBack;
    }
    match frame.get(1).map(|&t| MsgType::from(t)) {
        Some(
            MsgType::EchoRequest
            | MsgType::EchoReply
            | MsgType::FeaturesRequest
            | MsgType::GetConfigRequest
            | MsgType::BarrierRequest
            | MsgType::QueueGetConfigRequest
            | MsgType::GetAsyncRequest,
        ) => FastPathNeed::Nothing,
        Some(MsgType::MultipartRequest) => {
            match frame
                .get(8..10)
                .map(|b| MultipartType::from(u16::from_be_bytes([b[0], b[1]])))
            {
                // A TABLE_FEATURES request with a body sets the tables' features.
                Some(MultipartType::TableFeatures) | None => FastPathNeed::TakeBack,
                Some(_) => FastPathNeed::Credit,
            }
        }
        _ => FastPathNeed::TakeBack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(typ: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![OFP_VERSION, typ, 0, 0, 0, 0, 0, 1];
        f.extend_from_slice(body);
        let len = u16::try_from(f.len()).unwrap().to_be_bytes();
        f[2..4].copy_from_slice(&len);
        f
    }

    #[test]
    fn reads_keep_the_copies_and_everything_else_takes_them_back() {
        use FastPathNeed::{Credit, Nothing, TakeBack};
        let flow_stats = [0, 1, 0, 0, 0, 0, 0, 0];
        let port_stats = [0, 4, 0, 0, 0, 0, 0, 0];
        let table_features = [0, 12, 0, 0, 0, 0, 0, 0];
        for (f, need) in [
            (frame(2, b"x"), Nothing), // ECHO_REQUEST
            (frame(20, &[]), Nothing), // BARRIER_REQUEST
            (frame(5, &[]), Nothing),  // FEATURES_REQUEST
            (frame(18, &flow_stats), Credit),
            (frame(18, &port_stats), Credit),
            (frame(18, &table_features), TakeBack),
            (frame(18, &[]), TakeBack),      // too short to say
            (frame(14, &[0; 40]), TakeBack), // FLOW_MOD
            (frame(0, &[]), TakeBack),       // HELLO: a controller may end fail-open
            (frame(13, &[0; 16]), TakeBack), // PACKET_OUT
            (frame(24, &[0; 16]), TakeBack), // ROLE_REQUEST
            (frame(9, &[0; 4]), TakeBack),   // SET_CONFIG
        ] {
            assert_eq!(fast_path_need(&f), need, "{f:?}");
        }
        let mut of10 = frame(2, &[]);
        of10[0] = 1;
        assert_eq!(fast_path_need(&of10), TakeBack, "another version");
    }
}
