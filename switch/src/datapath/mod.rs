//! The datapath: ports → key → tables → actions → ports, in batches, on its own thread.
//!
//! [`execute`] is the pure part (one packet in, outputs out); [`normal`] is the L2 learning
//! used by NORMAL and by fail-mode standalone; [`trace`] explains a decision like OVS's
//! ofproto/trace. This module's loop polls the port backends and sleeps when idle.

pub mod execute;
pub mod normal;
pub mod trace;

use crate::port::Packet;
use shg_flows::matches::Match;

/// Where one processed frame goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Out of a switch port (physical or LOCAL), on an egress queue.
    Port { port: u32, queue: u32, pkt: Packet },
    /// To the controller(s) as PACKET_IN (the agent applies roles and async masks).
    Controller(PacketInEvent),
}

/// A packet bound for the controller, before per-connection filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketInEvent {
    /// OFPR_NO_MATCH (0), OFPR_ACTION (1), OFPR_INVALID_TTL (2).
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    /// in_port (+ metadata, tunnel_id when non-zero), as OF1.3 PACKET_IN carries.
    pub r#match: Match,
    /// Frame bytes, already cut to `max_len` (the output action's, or miss_send_len).
    pub data: Vec<u8>,
    /// Length of the whole frame.
    pub total_len: u16,
}

/// What the datapath thread reports to the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum DpEvent {
    /// A frame for the controller(s): the agent turns it into PACKET_INs with
    /// `Ofproto::packet_in`.
    PacketIn(PacketInEvent),
    /// A port's carrier changed: the agent calls `Ofproto::set_port_link` (PORT_STATUS).
    PortLink { port: u32, up: bool },
}
