//! The egress scheduler of one port: which queued frame leaves next, and when.
//!
//! Owns the queues of one port (frames waiting, counters, sojourn histograms, CoDel state)
//! and decides, as a pure function of its state and the caller's `now`, which frames may
//! leave. It never reads a clock, never sleeps and never does I/O: the datapath enqueues
//! frames, calls [`PortScheduler::dequeue`] and sleeps until [`PortScheduler::next_wakeup`].
//! Times are nanoseconds on the caller's monotonic clock; rates are bits per second; a
//! frame costs its frame bytes (`pkt.data.len()`, no preamble/FCS/IFG: shape the port a
//! little below the line rate).
//!
//! # Semantics (HTB-like)
//!
//! **Token buckets.** The port has a bucket at its `rate` (none when the port is unshaped).
//! Each queue has a *guarantee* bucket at its `min_rate` (none when 0) and a *ceiling*
//! bucket at its `max_rate` (none when unset: the port bucket is the ceiling). A bucket holds
//! at most its burst, the larger of 1 ms at its rate and 2 × 1514 bytes. A frame may go when
//! the buckets it needs hold a positive amount, and is charged after it went, so tokens can go
//! negative by one frame and no look-ahead at frame sizes is needed. Every sent frame is
//! charged to the port, the queue's ceiling and the queue's guarantee bucket (as HTB charges
//! a class's own rate even when it borrowed); a bucket's debt is floored at the larger of its
//! burst and the frame, so a queue that borrowed a lot regains its guarantee quickly.
//!
//! **Choosing the next frame**, when the port bucket is positive:
//! 1. *green*: among backlogged queues whose guarantee and ceiling buckets are both
//!    positive, the lowest priority number first;
//! 2. *borrowing*: otherwise among backlogged queues whose ceiling is positive, the lowest
//!    priority number first. So a latency class a little above its guarantee is still lent
//!    idle bandwidth before the bulk classes, and its own queue does not grow.
//!
//! Within one priority level (in each of the two steps) queues take turns by deficit round
//! robin, with quanta proportional to `min_rate` (queues without a guarantee weigh 1 % of the
//! port rate; the smallest weight of a level gets a quantum of 1514 bytes), so
//! equal-priority borrowers share leftover bandwidth in proportion to their guarantees.
//! Guarantees hold: a queue that got less than its `min_rate` has a positive guarantee
//! bucket, and green queues come before all borrowing. The scheduler is work-conserving:
//! when the port has tokens and some backlogged queue is under its ceiling, a frame goes.
//!
//! **Limits.** A queue holds at most the larger of 64 KiB and 200 ms at its ceiling
//! (`max_rate`, else the port rate; 16 MiB when neither exists, and at most 16 MiB), and at
//! most 10 240 frames; a frame beyond is refused (`DropReason::Overflow`, counted). A frame
//! that has waited more than 100 ms when its turn comes is dropped (counted as an AQM drop)
//! ([`QUEUE_MAX_SOJOURN_NS`]: a queue drained at its guarantee, below its ceiling, would
//! otherwise hold an unresponsive flood for half a second). An empty queue accepts any frame,
//! so a frame bigger than the limit is not starved.
//!
//! **AQM.** Every queue runs CoDel ([`super::codel`]) on the frames it sends: a queue served
//! within its guarantee never builds a standing 5 ms queue, so CoDel only acts on queues
//! loaded beyond what they get. In CoDel's dropping state an ECN-capable frame is CE-marked
//! ([`super::ecn::mark_ce`]) and sent; any other frame is dropped (`drops_aqm`), its buffer
//! recycled, and the next frame considered. The sojourn time (dequeue time minus enqueue
//! time) of every sent frame goes into the queue's histogram.
//!
//! **Unclassified traffic.** Frames without `set_queue`, or naming a queue the port lacks,
//! go to the default queue: the lowest priority (highest number), among equals the highest
//! id. Unknown ids are counted in that queue's `unknown_queue`.
//!
//! **Reconfiguration** keeps queues whose id survives (backlog, counters, CoDel state,
//! tokens up to the new burst); frames of removed queues move to the new default queue,
//! merged by enqueue time.

use std::collections::{BTreeSet, VecDeque};

use shg_flows::rate::format_rate;

use super::codel::{Codel, Verdict};
use super::ecn;
use super::hist::Histogram;
use super::{PortQosConfig, QueueConfig};
use crate::port::Packet;

/// Rates (bits/s) below which GSO frames are split before queueing ([`PortScheduler::splits_gso`]).
pub const SPLIT_GSO_BELOW: u64 = 1_000_000_000;

/// The frame size the burst and quantum rules are written for (Ethernet MTU frame).
pub const MTU_FRAME: usize = 1514;
/// Frames one queue holds at most.
pub const QUEUE_MAX_PACKETS: usize = 10_240;
/// Bytes one queue may always hold (when 200 ms at its ceiling is less).
pub const QUEUE_MIN_BYTES: usize = 64 * 1024;
/// A queue holds up to this long at its ceiling rate (200 ms).
pub const QUEUE_LIMIT_NS: u64 = 200_000_000;
/// A frame that has waited this long (100 ms) when its turn comes is dropped instead of sent
/// (head drop, counted with the AQM drops): the byte limit is sized at the ceiling, but a queue
/// drained at its guarantee would hold an unresponsive flood for several times longer, and
/// everything else of that service (its DNS, ACKs, ARP) would wait behind it. Responsive
/// traffic never gets here: CoDel keeps its sojourn near the 5 ms target.
pub const QUEUE_MAX_SOJOURN_NS: u64 = 100_000_000;
/// Bytes one queue holds at most (also the limit of a queue without any rate).
pub const QUEUE_MAX_BYTES: usize = 16 << 20;
/// A bucket holds at least this long at its rate (1 ms).
pub const BURST_NS: u64 = 1_000_000;
/// A bucket holds at least this many bytes (two MTU frames).
pub const MIN_BURST_BYTES: usize = 2 * MTU_FRAME;
/// Priorities are 0 (served first) ..= 7.
pub const MAX_PRIORITY: u8 = 7;
const LEVELS: usize = MAX_PRIORITY as usize + 1;
/// The reserved OFPQ_ALL id.
const OFPQ_ALL: u32 = 0xffff_ffff;

/// Token units per bit: a bucket at `rate` bits/s gains `rate` units per nanosecond.
const UNITS_PER_BIT: i128 = 1_000_000_000;

/// Why the scheduler refused or dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full (frame or byte limit).
    Overflow,
    /// CoDel dropped it (a Not-ECT frame in the dropping state).
    Aqm,
}

/// Counters and state of one queue, as `dump-queues` and queue statistics show them.
#[derive(Debug, Clone)]
pub struct QueueStats {
    pub id: u32,
    pub priority: u8,
    /// Guaranteed rate, bits/s.
    pub min_rate: u64,
    /// Ceiling, bits/s (`None`: the port's rate).
    pub max_rate: Option<u64>,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames refused because the queue was full.
    pub drops_overflow: u64,
    /// Frames dropped by CoDel.
    pub drops_aqm: u64,
    /// ECT frames CoDel marked CE instead of dropping.
    pub ecn_marked: u64,
    /// Frames that named a queue id this port lacks and landed here (the default queue).
    pub unknown_queue: u64,
    pub backlog_packets: usize,
    pub backlog_bytes: usize,
    /// Sojourn times of sent frames.
    pub sojourn: Histogram,
    /// When the queue was created (caller's clock, ns), for OpenFlow's duration.
    pub created: u64,
}

/// A token bucket; see the module docs. Tokens are in units of 1e-9 bit so that a rate in
/// bits/s adds exactly `rate` units per nanosecond.
#[derive(Debug, Clone)]
struct Bucket {
    rate: u64,
    burst: i128,
    tokens: i128,
    last: u64,
}

impl Bucket {
    fn burst_of(rate: u64) -> i128 {
        let time = i128::from(rate) * i128::from(BURST_NS);
        let bytes = MIN_BURST_BYTES as i128 * 8 * UNITS_PER_BIT;
        time.max(bytes)
    }

    /// A full bucket.
    fn new(rate: u64, now: u64) -> Bucket {
        let burst = Bucket::burst_of(rate);
        Bucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn fill(&mut self, now: u64) {
        if now > self.last {
            let add = u128::from(self.rate) * u128::from(now - self.last);
            let add = i128::try_from(add).unwrap_or(i128::MAX);
            self.tokens = self.tokens.saturating_add(add).min(self.burst);
            self.last = now;
        }
    }

    fn ready(&self) -> bool {
        self.tokens > 0
    }

    /// When the bucket will be positive (`last` if it is now).
    fn ready_at(&self) -> u64 {
        if self.tokens > 0 {
            return self.last;
        }
        let rate = i128::from(self.rate.max(1));
        let wait = (1 - self.tokens + rate - 1) / rate;
        self.last
            .saturating_add(u64::try_from(wait).unwrap_or(u64::MAX))
    }

    fn charge(&mut self, bytes: usize) {
        let cost = i128::try_from(bytes).unwrap_or(i128::MAX / 16) * 8 * UNITS_PER_BIT;
        self.tokens = (self.tokens - cost).max(-self.burst.max(cost));
    }

    /// A new rate, keeping the tokens (up to the new burst).
    fn set_rate(&mut self, rate: u64, now: u64) {
        self.fill(now);
        self.rate = rate;
        self.burst = Bucket::burst_of(rate);
        self.tokens = self.tokens.min(self.burst);
    }
}

/// Updates (or creates, or removes) a bucket for a new rate.
fn rebucket(b: Option<Bucket>, rate: Option<u64>, now: u64) -> Option<Bucket> {
    match (b, rate) {
        (_, None) => None,
        (Some(mut b), Some(r)) => {
            b.set_rate(r, now);
            Some(b)
        }
        (None, Some(r)) => Some(Bucket::new(r, now)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Green = 0,
    Borrow = 1,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    tx_packets: u64,
    tx_bytes: u64,
    drops_overflow: u64,
    drops_aqm: u64,
    ecn_marked: u64,
    unknown_queue: u64,
}

#[derive(Debug)]
struct Queue {
    cfg: QueueConfig,
    /// Frames and their enqueue times.
    fifo: VecDeque<(Packet, u64)>,
    bytes: usize,
    limit_bytes: usize,
    guarantee: Option<Bucket>,
    ceiling: Option<Bucket>,
    codel: Codel,
    /// DRR quantum (bytes) and deficits (green, borrowing).
    quantum: i64,
    deficit: [i64; 2],
    counters: Counters,
    sojourn: Histogram,
    created: u64,
}

impl Queue {
    fn new(cfg: QueueConfig, port: &PortQosConfig, now: u64) -> Queue {
        let mut q = Queue {
            cfg,
            fifo: VecDeque::new(),
            bytes: 0,
            limit_bytes: 0,
            guarantee: None,
            ceiling: None,
            codel: Codel::default(),
            quantum: 0,
            deficit: [0; 2],
            counters: Counters::default(),
            sojourn: Histogram::default(),
            created: now,
        };
        q.apply(cfg, port, now);
        q
    }

    /// Takes a (new) configuration: buckets, limit.
    fn apply(&mut self, cfg: QueueConfig, port: &PortQosConfig, now: u64) {
        self.cfg = cfg;
        let min = (cfg.min_rate > 0 && port.rate.is_some()).then_some(cfg.min_rate);
        self.guarantee = rebucket(self.guarantee.take(), min, now);
        self.ceiling = rebucket(self.ceiling.take(), cfg.max_rate, now);
        self.limit_bytes = match cfg.max_rate.or(port.rate) {
            Some(rate) => {
                let bytes = u128::from(rate) * u128::from(QUEUE_LIMIT_NS) / 8_000_000_000;
                usize::try_from(bytes)
                    .unwrap_or(usize::MAX)
                    .clamp(QUEUE_MIN_BYTES, QUEUE_MAX_BYTES)
            }
            None => QUEUE_MAX_BYTES,
        };
        self.deficit = [0; 2];
    }

    /// Whether the queue may send in `mode` now (buckets already filled).
    fn eligible(&self, mode: Mode) -> bool {
        !self.fifo.is_empty()
            && self.ceiling.as_ref().is_none_or(Bucket::ready)
            && (mode == Mode::Borrow || self.guarantee.as_ref().is_some_and(Bucket::ready))
    }

    fn fill(&mut self, now: u64) {
        if let Some(b) = &mut self.guarantee {
            b.fill(now);
        }
        if let Some(b) = &mut self.ceiling {
            b.fill(now);
        }
    }

    fn stats(&self) -> QueueStats {
        let c = self.counters;
        QueueStats {
            id: self.cfg.id,
            priority: self.cfg.priority,
            min_rate: self.cfg.min_rate,
            max_rate: self.cfg.max_rate,
            tx_packets: c.tx_packets,
            tx_bytes: c.tx_bytes,
            drops_overflow: c.drops_overflow,
            drops_aqm: c.drops_aqm,
            ecn_marked: c.ecn_marked,
            unknown_queue: c.unknown_queue,
            backlog_packets: self.fifo.len(),
            backlog_bytes: self.bytes,
            sojourn: self.sojourn.clone(),
            created: self.created,
        }
    }
}

/// Checks a port's QoS configuration; every problem is reported, joined by "; ", each
/// naming its queue (e.g. "queue 2: min_rate 30mbit exceeds max_rate 20mbit").
pub fn validate(cfg: &PortQosConfig) -> Result<(), String> {
    let mut errs: Vec<String> = Vec::new();
    if cfg.rate == Some(0) {
        errs.push("port rate 0bit: a shaped port needs a rate above 0".to_string());
    }
    if cfg.queues.is_empty() {
        errs.push("no queues: a port with QoS needs at least one queue".to_string());
    }
    let mut seen = BTreeSet::new();
    let mut dup = BTreeSet::new();
    for q in &cfg.queues {
        let id = q.id;
        if !seen.insert(id) && dup.insert(id) {
            errs.push(format!("queue {id}: duplicate queue id"));
        }
        if id == OFPQ_ALL {
            errs.push(format!("queue {id}: id 0xffffffff is reserved (OFPQ_ALL)"));
        }
        if q.priority > MAX_PRIORITY {
            errs.push(format!(
                "queue {id}: priority {} is out of range 0..={MAX_PRIORITY} (0 is served first)",
                q.priority
            ));
        }
        if let Some(max) = q.max_rate {
            if max == 0 {
                errs.push(format!("queue {id}: max_rate 0bit would never send"));
            }
            if q.min_rate > max {
                errs.push(format!(
                    "queue {id}: min_rate {} exceeds max_rate {}",
                    format_rate(q.min_rate),
                    format_rate(max)
                ));
            }
            if let Some(rate) = cfg.rate {
                if max > rate {
                    errs.push(format!(
                        "queue {id}: max_rate {} exceeds the port rate {}",
                        format_rate(max),
                        format_rate(rate)
                    ));
                }
            }
        }
        if q.min_rate > 0 && cfg.rate.is_none() {
            errs.push(format!(
                "queue {id}: min_rate {} needs a shaped port (set the port's rate)",
                format_rate(q.min_rate)
            ));
        }
    }
    if let Some(rate) = cfg.rate {
        let sum: u128 = cfg.queues.iter().map(|q| u128::from(q.min_rate)).sum();
        if sum > u128::from(rate) {
            let parts: Vec<String> = cfg
                .queues
                .iter()
                .filter(|q| q.min_rate > 0)
                .map(|q| format!("queue {} {}", q.id, format_rate(q.min_rate)))
                .collect();
            errs.push(format!(
                "guarantees sum to {} ({}), more than the port rate {}",
                format_rate(u64::try_from(sum).unwrap_or(u64::MAX)),
                parts.join(" + "),
                format_rate(rate)
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

/// The egress scheduler of one port; see the module docs.
#[derive(Debug)]
pub struct PortScheduler {
    cfg: PortQosConfig,
    port: Option<Bucket>,
    /// Sorted by id.
    queues: Vec<Queue>,
    /// Per priority: indices into `queues`, in id order.
    levels: [Vec<usize>; LEVELS],
    /// DRR position per mode and level (an index into `levels[p]`).
    rr: [[usize; LEVELS]; 2],
    default: usize,
    backlog_packets: usize,
    backlog_bytes: usize,
}

impl PortScheduler {
    /// A scheduler for `cfg` (validated, see [`validate`]); buckets start full.
    pub fn new(cfg: PortQosConfig, now: u64) -> Result<PortScheduler, String> {
        validate(&cfg)?;
        let mut s = PortScheduler {
            port: cfg.rate.map(|r| Bucket::new(r, now)),
            queues: Vec::new(),
            levels: Default::default(),
            rr: [[0; LEVELS]; 2],
            default: 0,
            backlog_packets: 0,
            backlog_bytes: 0,
            cfg,
        };
        let mut qs: Vec<QueueConfig> = s.cfg.queues.clone();
        qs.sort_by_key(|q| q.id);
        s.queues = qs.into_iter().map(|q| Queue::new(q, &s.cfg, now)).collect();
        s.rebuild();
        Ok(s)
    }

    /// Levels, quanta, default queue, DRR positions: derived from `queues` and `cfg`.
    fn rebuild(&mut self) {
        self.levels = Default::default();
        for (i, q) in self.queues.iter().enumerate() {
            self.levels[usize::from(q.cfg.priority)].push(i);
        }
        self.rr = [[0; LEVELS]; 2];
        // Quanta: proportional to max(min_rate, 1 % of the port rate) within a level.
        let floor = self.cfg.rate.map_or(1, |r| (r / 100).max(1));
        for level in &self.levels {
            let weight = |i: &usize| self.queues[*i].cfg.min_rate.max(floor);
            let Some(smallest) = level.iter().map(weight).min() else {
                continue;
            };
            let quanta: Vec<i64> = level
                .iter()
                .map(|i| {
                    let q = MTU_FRAME as u128 * u128::from(weight(i)) / u128::from(smallest);
                    i64::try_from(q.min(MTU_FRAME as u128 * 1000)).unwrap_or(i64::MAX)
                })
                .collect();
            for (i, quantum) in level.iter().zip(quanta) {
                self.queues[*i].quantum = quantum;
            }
        }
        // The default: highest priority number, then highest id (queues are in id order).
        self.default = self
            .queues
            .iter()
            .enumerate()
            .max_by_key(|(_, q)| (q.cfg.priority, q.cfg.id))
            .map_or(0, |(i, _)| i);
    }

    /// New configuration at runtime; see the module docs. An invalid one changes nothing.
    pub fn reconfigure(&mut self, cfg: PortQosConfig, now: u64) -> Result<(), String> {
        validate(&cfg)?;
        self.fill(now);
        self.port = rebucket(self.port.take(), cfg.rate, now);
        let mut old = std::mem::take(&mut self.queues);
        let mut qs: Vec<QueueConfig> = cfg.queues.clone();
        qs.sort_by_key(|q| q.id);
        let mut queues = Vec::with_capacity(qs.len());
        for qc in qs {
            match old.iter().position(|q| q.cfg.id == qc.id) {
                Some(pos) => {
                    let mut q = old.swap_remove(pos);
                    q.apply(qc, &cfg, now);
                    queues.push(q);
                }
                None => queues.push(Queue::new(qc, &cfg, now)),
            }
        }
        self.queues = queues;
        self.cfg = cfg;
        self.rebuild();
        // Frames of removed queues join the default queue, in enqueue-time order.
        let orphans: Vec<(Packet, u64)> = old.into_iter().flat_map(|q| q.fifo).collect();
        if !orphans.is_empty() {
            let d = &mut self.queues[self.default];
            let mut all: Vec<(Packet, u64)> = d.fifo.drain(..).chain(orphans).collect();
            all.sort_by_key(|(_, t)| *t);
            d.bytes = all.iter().map(|(p, _)| p.data.len()).sum();
            d.fifo = all.into();
        }
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> &PortQosConfig {
        &self.cfg
    }

    /// Whether GSO frames must be split into wire-size frames before they are queued here:
    /// when any rate of the port (its shaping rate, a queue's guarantee or ceiling) is below
    /// [`SPLIT_GSO_BELOW`]. There a 64 KB frame would hold the line, and the queues behind it,
    /// for over 0.5 ms and make a class's traffic burst. At higher rates whole GSO frames are
    /// queued (as CAKE does by default; splitting costs more CPU than the shaping), charged
    /// their frame bytes, which is ~3 % less than the segments' bytes on the wire.
    pub fn splits_gso(&self) -> bool {
        let low = |r: u64| r > 0 && r < SPLIT_GSO_BELOW;
        self.cfg.rate.is_some_and(low)
            || self
                .cfg
                .queues
                .iter()
                .any(|q| low(q.min_rate) || q.max_rate.is_some_and(low))
    }

    /// The queue frames without set_queue go to.
    pub fn default_queue(&self) -> u32 {
        self.queues[self.default].cfg.id
    }

    fn index_of(&self, id: u32) -> Option<usize> {
        self.queues.binary_search_by_key(&id, |q| q.cfg.id).ok()
    }

    /// Queues a frame; see the module docs for the default queue and the limits. On
    /// overflow the frame comes back for the caller to recycle.
    pub fn enqueue(
        &mut self,
        pkt: Packet,
        queue: Option<u32>,
        now: u64,
    ) -> Result<(), (Packet, DropReason)> {
        let qi = match queue.map(|id| self.index_of(id)) {
            None => self.default,
            Some(Some(i)) => i,
            Some(None) => {
                self.queues[self.default].counters.unknown_queue += 1;
                self.default
            }
        };
        let q = &mut self.queues[qi];
        let len = pkt.data.len();
        if !q.fifo.is_empty()
            && (q.fifo.len() >= QUEUE_MAX_PACKETS || q.bytes + len > q.limit_bytes)
        {
            q.counters.drops_overflow += 1;
            return Err((pkt, DropReason::Overflow));
        }
        q.fifo.push_back((pkt, now));
        q.bytes += len;
        self.backlog_packets += 1;
        self.backlog_bytes += len;
        Ok(())
    }

    fn fill(&mut self, now: u64) {
        if let Some(p) = &mut self.port {
            p.fill(now);
        }
        for q in &mut self.queues {
            q.fill(now);
        }
    }

    /// The next queue to serve and how (green or borrowing); DRR within a level.
    fn pick(&mut self) -> Option<(usize, Mode)> {
        for mode in [Mode::Green, Mode::Borrow] {
            let m = mode as usize;
            for p in 0..LEVELS {
                let level = &self.levels[p];
                if !level.iter().any(|&i| self.queues[i].eligible(mode)) {
                    continue;
                }
                let n = level.len();
                // Terminates: some queue is eligible and gains a quantum (>= 1514) per turn.
                loop {
                    let pos = self.rr[m][p] % n;
                    let q = &mut self.queues[level[pos]];
                    if q.eligible(mode) {
                        let head = q.fifo.front().map_or(0, |(pkt, _)| pkt.data.len());
                        if q.deficit[m] >= i64::try_from(head).unwrap_or(i64::MAX) {
                            return Some((level[pos], mode));
                        }
                        q.deficit[m] = q.deficit[m].saturating_add(q.quantum);
                    }
                    self.rr[m][p] = (pos + 1) % n;
                }
            }
        }
        None
    }

    /// A queue went empty: its deficits lapse and the DRR turn moves on (classic DRR).
    fn emptied(&mut self, qi: usize) {
        let q = &mut self.queues[qi];
        q.deficit = [0; 2];
        let p = usize::from(q.cfg.priority);
        let level = &self.levels[p];
        for rr in &mut self.rr {
            if level.get(rr[p]) == Some(&qi) {
                rr[p] = (rr[p] + 1) % level.len();
            }
        }
    }

    /// Appends to `out` up to `max` frames whose time has come, in scheduling order;
    /// returns how many. CoDel drops (counted, recycled) or CE-marks as it goes.
    pub fn dequeue(&mut self, now: u64, out: &mut Vec<Packet>, max: usize) -> usize {
        if self.backlog_packets == 0 || max == 0 {
            return 0;
        }
        self.fill(now);
        let mut sent = 0;
        while sent < max && self.backlog_packets > 0 {
            if self.port.as_ref().is_some_and(|p| !p.ready()) {
                break;
            }
            let Some((qi, mode)) = self.pick() else {
                break;
            };
            let q = &mut self.queues[qi];
            let Some((mut pkt, enqueued)) = q.fifo.pop_front() else {
                break; // pick only returns backlogged queues
            };
            let len = pkt.data.len();
            q.bytes -= len;
            self.backlog_packets -= 1;
            self.backlog_bytes -= len;
            let sojourn = now.saturating_sub(enqueued);
            if sojourn > QUEUE_MAX_SOJOURN_NS {
                // Too old to be worth sending (head drop): an AQM decision, like CoDel's.
                q.counters.drops_aqm += 1;
                pkt.recycle();
                if q.fifo.is_empty() {
                    self.emptied(qi);
                }
                continue;
            }
            if q.codel.on_dequeue(sojourn, now, q.bytes) == Verdict::Drop {
                if ecn::mark_ce(&mut pkt) {
                    q.counters.ecn_marked += 1;
                } else {
                    q.counters.drops_aqm += 1;
                    pkt.recycle();
                    if q.fifo.is_empty() {
                        self.emptied(qi);
                    }
                    continue;
                }
            }
            if let Some(b) = &mut q.guarantee {
                b.charge(len);
            }
            if let Some(b) = &mut q.ceiling {
                b.charge(len);
            }
            q.deficit[mode as usize] -= i64::try_from(len).unwrap_or(i64::MAX);
            q.counters.tx_packets += 1;
            q.counters.tx_bytes += len as u64;
            q.sojourn.record(sojourn);
            let empty = q.fifo.is_empty();
            if let Some(p) = &mut self.port {
                p.charge(len);
            }
            out.push(pkt);
            sent += 1;
            if empty {
                self.emptied(qi);
            }
        }
        sent
    }

    /// The earliest `now` at which [`dequeue`](Self::dequeue) could return a frame (at or
    /// before the last `now` seen if it could already); `None` when nothing is queued.
    pub fn next_wakeup(&self) -> Option<u64> {
        let queue_at = self
            .queues
            .iter()
            .filter(|q| !q.fifo.is_empty())
            .map(|q| q.ceiling.as_ref().map_or(0, Bucket::ready_at))
            .min()?;
        let port_at = self.port.as_ref().map_or(0, Bucket::ready_at);
        Some(queue_at.max(port_at))
    }

    /// (packets, bytes) queued over all queues.
    pub fn backlog(&self) -> (usize, usize) {
        (self.backlog_packets, self.backlog_bytes)
    }

    /// Forgets every queue's sojourn-time samples (the counters stay), so the next p50/p99
    /// describe what happens from now on (e.g. one phase of a measurement).
    pub fn clear_sojourn(&mut self) {
        for q in &mut self.queues {
            q.sojourn.clear();
        }
    }

    /// (packets, bytes) queued in one queue; `None` if the port has no such queue.
    pub fn queue_backlog(&self, id: u32) -> Option<(usize, usize)> {
        self.index_of(id)
            .map(|i| (self.queues[i].fifo.len(), self.queues[i].bytes))
    }

    /// (packets, bytes) one queue may hold; `None` if the port has no such queue.
    pub fn queue_limit(&self, id: u32) -> Option<(usize, usize)> {
        self.index_of(id)
            .map(|i| (QUEUE_MAX_PACKETS, self.queues[i].limit_bytes))
    }

    /// Counters of every queue, in queue-id order.
    pub fn stats(&self) -> Vec<QueueStats> {
        self.queues.iter().map(Queue::stats).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const MBIT: u64 = 1_000_000;

    fn q(id: u32, min: u64, max: Option<u64>, priority: u8) -> QueueConfig {
        QueueConfig {
            id,
            min_rate: min,
            max_rate: max,
            priority,
        }
    }

    fn port(rate: Option<u64>, queues: Vec<QueueConfig>) -> PortQosConfig {
        PortQosConfig { rate, queues }
    }

    fn frame(len: usize, tag: u8) -> Packet {
        let mut d = vec![tag; len];
        d[12] = 0x88; // not IP
        d[13] = 0xb5;
        Packet::plain(d)
    }

    /// An IPv4 frame with the given ECN bits (header checksum not needed here).
    fn ip_frame(len: usize, ecn: u8) -> Packet {
        let mut d = vec![0u8; len];
        d[12] = 0x08;
        d[13] = 0x00;
        d[14] = 0x45;
        d[15] = ecn;
        Packet::plain(d)
    }

    fn err(cfg: PortQosConfig) -> String {
        PortScheduler::new(cfg, 0).expect_err("must be refused")
    }

    #[test]
    fn rule_at_least_one_queue() {
        assert!(err(port(Some(MBIT), vec![])).contains("no queues"));
    }

    #[test]
    fn rule_unique_ids() {
        let e = err(port(Some(MBIT), vec![q(1, 0, None, 0), q(1, 0, None, 1)]));
        assert_eq!(e, "queue 1: duplicate queue id");
    }

    #[test]
    fn rule_priority_range() {
        let e = err(port(Some(MBIT), vec![q(3, 0, None, 8)]));
        assert!(
            e.starts_with("queue 3: priority 8 is out of range 0..=7"),
            "{e}"
        );
    }

    #[test]
    fn rule_min_not_above_max() {
        let e = err(port(
            Some(100 * MBIT),
            vec![q(2, 30 * MBIT, Some(20 * MBIT), 0)],
        ));
        assert_eq!(e, "queue 2: min_rate 30mbit exceeds max_rate 20mbit");
    }

    #[test]
    fn rule_max_not_above_port_rate() {
        let e = err(port(Some(20 * MBIT), vec![q(2, 0, Some(30 * MBIT), 0)]));
        assert_eq!(e, "queue 2: max_rate 30mbit exceeds the port rate 20mbit");
    }

    #[test]
    fn rule_guarantees_fit_the_port() {
        let e = err(port(
            Some(20 * MBIT),
            vec![q(1, 12 * MBIT, None, 0), q(2, 10 * MBIT, None, 1)],
        ));
        assert_eq!(
            e,
            "guarantees sum to 22mbit (queue 1 12mbit + queue 2 10mbit), more than the port rate 20mbit"
        );
    }

    #[test]
    fn rule_guarantee_needs_shaped_port() {
        let e = err(port(None, vec![q(4, 5 * MBIT, None, 0)]));
        assert_eq!(
            e,
            "queue 4: min_rate 5mbit needs a shaped port (set the port's rate)"
        );
    }

    #[test]
    fn rule_rates_above_zero() {
        assert!(err(port(Some(0), vec![q(1, 0, None, 0)])).contains("port rate 0bit"));
        assert!(err(port(None, vec![q(1, 0, Some(0), 0)])).contains("max_rate 0bit"));
    }

    #[test]
    fn rule_ofpq_all_reserved() {
        assert!(err(port(None, vec![q(u32::MAX, 0, None, 0)])).contains("reserved"));
    }

    #[test]
    fn all_errors_are_reported() {
        let e = err(port(
            Some(10 * MBIT),
            vec![q(1, 0, Some(20 * MBIT), 9), q(1, 11 * MBIT, None, 0)],
        ));
        assert_eq!(e.split("; ").count(), 4, "{e}");
    }

    #[test]
    fn default_queue_is_lowest_priority_then_highest_id() {
        let s = PortScheduler::new(
            port(
                None,
                vec![q(5, 0, None, 1), q(2, 0, None, 3), q(9, 0, None, 3)],
            ),
            0,
        )
        .unwrap();
        assert_eq!(s.default_queue(), 9);
    }

    #[test]
    fn unclassified_and_unknown_go_to_default_and_are_counted() {
        let mut s =
            PortScheduler::new(port(None, vec![q(1, 0, None, 0), q(2, 0, None, 1)]), 0).unwrap();
        s.enqueue(frame(100, 1), None, 0).unwrap();
        s.enqueue(frame(100, 2), Some(77), 0).unwrap();
        s.enqueue(frame(100, 3), Some(1), 0).unwrap();
        let st = s.stats();
        assert_eq!((st[0].id, st[0].backlog_packets), (1, 1));
        assert_eq!(
            (st[1].id, st[1].backlog_packets, st[1].unknown_queue),
            (2, 2, 1)
        );
        assert_eq!(s.backlog(), (3, 300));
        // Unshaped, no ceilings: everything goes at once, priority 0 first.
        assert_eq!(s.next_wakeup(), Some(0));
        let mut out = Vec::new();
        assert_eq!(s.dequeue(0, &mut out, 10), 3);
        assert_eq!(out[0].data[0], 3);
        assert_eq!(s.next_wakeup(), None);
        assert_eq!(s.stats()[1].tx_bytes, 200);
    }

    #[test]
    fn overflow_by_bytes_and_empty_queue_takes_a_big_frame() {
        let mut s = PortScheduler::new(port(Some(MBIT), vec![q(1, 0, Some(MBIT), 0)]), 0).unwrap();
        // 200 ms at 1 Mbit is 25 KB < 64 KiB: the limit is 64 KiB.
        assert_eq!(s.queue_limit(1), Some((QUEUE_MAX_PACKETS, QUEUE_MIN_BYTES)));
        s.enqueue(frame(70_000, 0), Some(1), 0).unwrap();
        let (p, why) = s.enqueue(frame(64, 0), Some(1), 0).unwrap_err();
        assert_eq!((p.data.len(), why), (64, DropReason::Overflow));
        assert_eq!(s.stats()[0].drops_overflow, 1);
    }

    #[test]
    fn overflow_by_frame_count() {
        let mut s = PortScheduler::new(port(None, vec![q(1, 0, None, 0)]), 0).unwrap();
        for _ in 0..QUEUE_MAX_PACKETS {
            s.enqueue(frame(60, 0), None, 0).unwrap();
        }
        assert!(s.enqueue(frame(60, 0), None, 0).is_err());
    }

    #[test]
    fn shaper_paces_frames_and_wakeup_is_exact() {
        // 1 Mbit/s, 1000-byte frames: 8 ms each after the 3028-byte burst.
        let mut s = PortScheduler::new(port(Some(MBIT), vec![q(1, 0, None, 0)]), 0).unwrap();
        for _ in 0..16 {
            s.enqueue(frame(1000, 0), None, 0).unwrap();
        }
        let mut out = Vec::new();
        // Burst: tokens 3028 B > 0 → 1000, 2028 → 1000, 1028 → 1000, 28 → 1000, then -972.
        assert_eq!(s.dequeue(0, &mut out, 100), 4);
        let wake = s.next_wakeup().unwrap();
        // 972 bytes + 1 unit at 1 Mbit: just over 7.776 ms.
        assert_eq!(wake, 7_776_001);
        assert_eq!(s.dequeue(wake - 1, &mut out, 100), 0);
        assert_eq!(s.dequeue(wake, &mut out, 100), 1);
        // Then one frame every 8 ms exactly (1000 bytes at 1 Mbit).
        let mut last = wake;
        let mut sent = 5;
        while let Some(w) = s.next_wakeup() {
            assert_eq!(w - last, 8 * MS);
            last = w;
            assert_eq!(s.dequeue(w, &mut out, 100), 1);
            sent += 1;
        }
        // 16 frames: the last waits about 4 + 12 * 8 = 100 ms, at the sojourn limit; every
        // frame is sent or dropped (CoDel or the limit), none sent after waiting > 100 ms.
        let st = &s.stats()[0];
        assert_eq!(st.drops_aqm + st.tx_packets, 16);
        assert_eq!(sent, st.tx_packets);
        assert!(st.sojourn.max().unwrap_or(0) <= QUEUE_MAX_SOJOURN_NS);
        assert_eq!(out.len() as u64, st.tx_packets);
    }

    #[test]
    fn strict_priority_between_green_queues() {
        let mut s = PortScheduler::new(
            port(
                Some(10 * MBIT),
                vec![q(1, 2 * MBIT, None, 1), q(2, 2 * MBIT, None, 0)],
            ),
            0,
        )
        .unwrap();
        s.enqueue(frame(100, 1), Some(1), 0).unwrap();
        s.enqueue(frame(100, 2), Some(2), 0).unwrap();
        let mut out = Vec::new();
        s.dequeue(0, &mut out, 10);
        assert_eq!(
            out.iter().map(|p| p.data[0]).collect::<Vec<_>>(),
            vec![2, 1]
        );
    }

    #[test]
    fn codel_marks_ect_and_drops_not_ect_in_a_standing_queue() {
        // 1 Mbit port; a queue fed 1000-byte frames faster than it drains builds a standing
        // queue; after 100 ms above 5 ms CoDel acts.
        for (ecn, marks) in [(0b10, true), (0b00, false)] {
            let mut s = PortScheduler::new(port(Some(MBIT), vec![q(1, 0, None, 0)]), 0).unwrap();
            let mut out = Vec::new();
            let mut now = 0;
            while now < 2_000 * MS {
                // 2 Mbit/s offered.
                let _ = s.enqueue(ip_frame(1000, ecn), None, now);
                s.dequeue(now, &mut out, 10);
                now += 4 * MS;
            }
            let st = &s.stats()[0];
            if marks {
                // Marked while CoDel acts; dropped only once a frame is past the 100 ms
                // sojourn limit (this load is unresponsive).
                assert!(st.ecn_marked > 0, "{st:?}");
                assert!(out.iter().any(|p| ecn::ecn_of(&p.data) == Some(3)));
            } else {
                assert!(st.drops_aqm > 0 && st.ecn_marked == 0, "{st:?}");
            }
            assert!(st.sojourn.count() > 0);
        }
    }

    #[test]
    fn reconfigure_keeps_surviving_queues_and_moves_orphans_to_default() {
        let mut s = PortScheduler::new(
            port(
                Some(10 * MBIT),
                vec![q(1, MBIT, None, 0), q(2, 0, None, 1), q(3, 0, None, 2)],
            ),
            0,
        )
        .unwrap();
        s.enqueue(frame(100, 1), Some(1), 0).unwrap();
        s.enqueue(frame(100, 3), Some(3), 1).unwrap();
        s.enqueue(frame(100, 2), Some(2), 2).unwrap();
        s.enqueue(frame(100, 3), Some(3), 3).unwrap();
        // Invalid: nothing changes.
        assert!(s
            .reconfigure(port(Some(MBIT), vec![q(1, 2 * MBIT, None, 0)]), 5)
            .is_err());
        assert_eq!(s.stats().len(), 3);
        // Queue 3 removed; queue 2 is the new default.
        s.reconfigure(
            port(
                Some(10 * MBIT),
                vec![q(1, 2 * MBIT, None, 0), q(2, 0, None, 5)],
            ),
            5,
        )
        .unwrap();
        assert_eq!(s.default_queue(), 2);
        let st = s.stats();
        assert_eq!(st.len(), 2);
        assert_eq!((st[0].min_rate, st[0].backlog_packets), (2 * MBIT, 1));
        assert_eq!(
            (st[1].priority, st[1].backlog_packets, st[1].backlog_bytes),
            (5, 3, 300)
        );
        assert_eq!(s.backlog(), (4, 400));
        let mut out = Vec::new();
        assert_eq!(s.dequeue(10, &mut out, 10), 4);
        // Queue 1 first, then queue 2's merged frames by enqueue time: 3 (t=1), 2 (t=2), 3.
        assert_eq!(
            out.iter().map(|p| p.data[0]).collect::<Vec<_>>(),
            vec![1, 3, 2, 3]
        );
    }

    #[test]
    fn ceiling_on_unshaped_port_paces_and_others_pass() {
        let mut s = PortScheduler::new(
            port(None, vec![q(1, 0, Some(MBIT), 0), q(2, 0, None, 1)]),
            0,
        )
        .unwrap();
        for _ in 0..10 {
            s.enqueue(frame(1000, 1), Some(1), 0).unwrap();
            s.enqueue(frame(1000, 2), Some(2), 0).unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(
            s.dequeue(0, &mut out, 100),
            14,
            "4 within the ceiling's burst + 10"
        );
        assert!(s.next_wakeup().unwrap() > 0);
    }

    /// Operations on a scheduler, for property tests of call sequences.
    #[derive(Debug, Clone)]
    enum Op {
        Enqueue {
            len: usize,
            queue: Option<u32>,
            ecn: u8,
        },
        Advance(u64),
        Dequeue(usize),
        DequeueAtWakeup,
        Reconfigure(usize),
    }

    fn configs() -> Vec<PortQosConfig> {
        vec![
            port(
                Some(10 * MBIT),
                vec![
                    q(1, 2 * MBIT, Some(4 * MBIT), 0),
                    q(2, MBIT, None, 1),
                    q(3, 0, Some(MBIT), 1),
                ],
            ),
            port(Some(MBIT), vec![q(2, 500_000, None, 3), q(4, 0, None, 0)]),
            port(None, vec![q(1, 0, Some(3 * MBIT), 2), q(3, 0, None, 2)]),
        ]
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (40usize..1600, proptest::option::of(0u32..6), 0u8..4)
                .prop_map(|(len, queue, ecn)| Op::Enqueue { len, queue, ecn }),
            3 => (0u64..5 * MS).prop_map(Op::Advance),
            3 => (1usize..8).prop_map(Op::Dequeue),
            2 => Just(Op::DequeueAtWakeup),
            1 => (0usize..3).prop_map(Op::Reconfigure),
        ]
    }

    /// Tags a frame with the queue it was sent to and the configuration generation (bytes
    /// 0..8, the MAC addresses).
    fn tagged(len: usize, queue: u32, generation: u32, ecn: u8) -> Packet {
        let mut p = ip_frame(len, ecn);
        p.data[..4].copy_from_slice(&queue.to_be_bytes());
        p.data[4..8].copy_from_slice(&generation.to_be_bytes());
        p
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 200,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Any call sequence: no panic; backlog totals match the queues; frames are never
        /// invented; `next_wakeup` is honest (at that time a frame goes or CoDel drops);
        /// between reconfigurations, frames are conserved and no queue beats its ceiling.
        #[test]
        fn call_sequences_keep_invariants(
            start in 0usize..3,
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let cfgs = configs();
            let mut s = PortScheduler::new(cfgs[start].clone(), 0).unwrap();
            let mut now = 0u64;
            let mut out = Vec::new();
            // Since the last reconfiguration: frames accepted, and per queue bytes sent.
            let mut since = 0u64;
            let mut accepted = 0u64;
            let mut sent_total = 0u64;
            let base_tx = |s: &PortScheduler| -> u64 {
                s.stats().iter().map(|q| q.tx_packets + q.drops_aqm).sum()
            };
            let mut tx0 = 0u64;
            let mut backlog0 = 0u64;
            let mut sent_bytes: std::collections::BTreeMap<u32, u64> = Default::default();
            let mut generation = 0u32;
            for op in ops {
                match op {
                    Op::Enqueue { len, queue, ecn } => {
                        let target = queue
                            .filter(|id| s.queue_backlog(*id).is_some())
                            .unwrap_or(s.default_queue());
                        if s.enqueue(tagged(len, target, generation, ecn), queue, now).is_ok() {
                            accepted += 1;
                        }
                    }
                    Op::Advance(dt) => now += dt,
                    Op::Dequeue(max) => {
                        out.clear();
                        let n = s.dequeue(now, &mut out, max);
                        proptest::prop_assert!(n <= max && n == out.len());
                    }
                    Op::DequeueAtWakeup => {
                        if let Some(w) = s.next_wakeup() {
                            now = now.max(w);
                            let before = s.backlog().0;
                            out.clear();
                            let n = s.dequeue(now, &mut out, 1);
                            proptest::prop_assert!(n == 1 || s.backlog().0 < before,
                                "woke at {now} but nothing happened");
                        }
                    }
                    Op::Reconfigure(i) => {
                        s.reconfigure(cfgs[i].clone(), now).unwrap();
                        since = now;
                        generation += 1;
                        sent_bytes.clear();
                        tx0 = base_tx(&s);
                        accepted = 0;
                        sent_total = 0;
                        backlog0 = s.backlog().0 as u64;
                        out.clear();
                    }
                }
                if !matches!(op, Op::Reconfigure(_)) {
                    for p in &out {
                        let id = u32::from_be_bytes([p.data[0], p.data[1], p.data[2], p.data[3]]);
                        let gen = u32::from_be_bytes([p.data[4], p.data[5], p.data[6], p.data[7]]);
                        if gen != generation {
                            continue; // queued under an older configuration
                        }
                        *sent_bytes.entry(id).or_default() += p.data.len() as u64;
                    }
                    sent_total += out.len() as u64;
                    out.clear();
                }
                let st = s.stats();
                let (bp, bb) = s.backlog();
                proptest::prop_assert_eq!(bp, st.iter().map(|q| q.backlog_packets).sum::<usize>());
                proptest::prop_assert_eq!(bb, st.iter().map(|q| q.backlog_bytes).sum::<usize>());
                proptest::prop_assert_eq!(bp == 0, s.next_wakeup().is_none());
                // Conservation since the last reconfiguration.
                let tx = base_tx(&s) - tx0;
                proptest::prop_assert_eq!(backlog0 + accepted, bp as u64 + tx);
                proptest::prop_assert!(sent_total <= tx);
                // Ceilings, over the frames queued since the last reconfiguration (a
                // queue's bucket may also have sent older frames: only an upper bound).
                for q in &st {
                    if let (Some(max), Some(&bytes)) = (q.max_rate, sent_bytes.get(&q.id)) {
                        let burst_bits = (max / 1000).max(MIN_BURST_BYTES as u64 * 8);
                        let allowed = u128::from(max) * u128::from(now - since) / 1_000_000_000
                            + u128::from(burst_bits)
                            + 1600 * 8;
                        proptest::prop_assert!(u128::from(bytes) * 8 <= allowed,
                            "queue {} sent {} bytes in {} ns at ceiling {}", q.id, bytes, now - since, max);
                    }
                }
            }
        }
    }
}
