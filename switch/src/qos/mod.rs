//! Egress QoS of one port: queues with guarantees, ceilings and strict priorities, a shaper
//! at the port's line rate, and CoDel on each queue. Pure: every decision is a function of
//! (state, packet, now); the datapath loop does the I/O and the timing.
//!
//! [`sched`] owns the scheduler ([`sched::PortScheduler`]); [`codel`] the sojourn-time AQM;
//! [`ecn`] marks CE on ECT packets; [`hist`] the sojourn-time histograms behind p50/p99.
//! Rates are bits per second (parsed by `shg_flows::rate`).

pub mod codel;
pub mod ecn;
pub mod hist;
pub mod sched;

/// One egress queue as configured (`[[port.queue]]`, or `shgctl switch set-queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// OpenFlow queue id (what `set_queue` names).
    pub id: u32,
    /// Guaranteed rate, bits/s (0: no guarantee, borrows only).
    pub min_rate: u64,
    /// Ceiling, bits/s (`None`: the port's rate).
    pub max_rate: Option<u64>,
    /// Strict priority between classes: 0 is served first (as tc HTB's prio).
    pub priority: u8,
}

/// The QoS of one port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortQosConfig {
    /// Shaped line rate, bits/s (`None`: not shaped; then queues may only have ceilings).
    pub rate: Option<u64>,
    /// The queues; frames without set_queue go to the lowest-priority one (highest
    /// `priority` number; among equals the highest id).
    pub queues: Vec<QueueConfig>,
}
