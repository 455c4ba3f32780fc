//! The sans-IO OpenFlow 1.3 switch core: every switch-side decision about OpenFlow messages.
//!
//! `Ofproto` holds the flow tables, groups, meters, ports, switch config, MAC learning table and
//! the per-connection controller state (negotiated version, role, async config, echo liveness).
//! Inputs are OpenFlow frames from a connection, port events, and `now`; outputs are
//! [`Effect`]s the agent carries out (send a message, transmit a frame, close a connection).
//! It never does I/O and never reads the clock, so every behaviour is tested with a fake
//! controller in-process. The datapath shares it (behind a mutex) for lookups and counters.

use crate::datapath::Output;
use crate::port::PortInfo;
use shg_flows::group::GroupTable;
use shg_flows::meter::MeterTable;
use shg_flows::table::FlowTables;
use shg_flows::wire::message::Message;
use std::collections::BTreeMap;

/// Identifies one OpenFlow connection (controller or tool) for the life of the process.
pub type ConnId = u64;

/// What the switch does when no controller is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Flows stay; table misses drop (or follow the table-miss flow) — never learn.
    #[default]
    Secure,
    /// Act as an L2 learning switch while no controller is connected.
    Standalone,
}

/// Whether a connection was made by us to a controller, or accepted from a tool/controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// `--controller tcp:/tls:` — counts as "a controller is connected" for fail mode.
    Active,
    /// Accepted on `--listen ptcp:/pssl:` (ovs-ofctl and the like); also a full OpenFlow peer.
    Passive,
}

/// Something the agent must do on behalf of the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send `msg` with `xid` on connection `conn`.
    Send { conn: ConnId, xid: u32, msg: Message },
    /// Transmit a frame (from PACKET_OUT or from the datapath).
    Transmit(Output),
    /// Close the connection (after sending anything queued before this effect).
    Close(ConnId),
}

/// Switch-wide settings fixed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfprotoConfig {
    pub datapath_id: u64,
    pub n_tables: u8,
    pub fail_mode: FailMode,
    /// Echo request interval and dead-peer timeout, in ns.
    pub echo_interval_ns: u64,
    pub echo_timeout_ns: u64,
    /// DESC strings.
    pub mfr_desc: String,
    pub hw_desc: String,
    pub sw_desc: String,
    pub serial_num: String,
    pub dp_desc: String,
}

impl Default for OfprotoConfig {
    fn default() -> Self {
        OfprotoConfig {
            datapath_id: 1,
            n_tables: 64,
            fail_mode: FailMode::Secure,
            echo_interval_ns: 5_000_000_000,
            echo_timeout_ns: 15_000_000_000,
            mfr_desc: "shg".into(),
            hw_desc: "shg-switch userspace datapath".into(),
            sw_desc: env!("CARGO_PKG_VERSION").into(),
            serial_num: "none".into(),
            dp_desc: "shg home gateway switch".into(),
        }
    }
}

/// Packet/byte/error counters of a port (OFPMP_PORT_STATS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

/// Counters of one egress queue (OFPMP_QUEUE): frames sent to it by set_queue or by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
    /// When the queue was created (ns), for duration.
    pub created: u64,
}

/// One switch port as OpenFlow sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortState {
    pub port_no: u32,
    pub info: PortInfo,
    /// OFPPC_* bits (PORT_DOWN, NO_RECV, NO_FWD, NO_PACKET_IN) set by PORT_MOD.
    pub config: u32,
    /// Link up (carrier) as last reported by the backend.
    pub link_up: bool,
    pub counters: PortCounters,
    /// Egress queues by queue id (queue 0 always exists).
    pub queues: BTreeMap<u32, QueueCounters>,
    /// When the port was added (ns), for duration in port stats.
    pub created: u64,
}

/// The switch core. Fields are public to the crate's datapath, which reads the tables and
/// updates counters under the same lock.
#[derive(Debug)]
pub struct Ofproto {
    pub config: OfprotoConfig,
    pub tables: FlowTables,
    pub groups: GroupTable,
    pub meters: MeterTable,
    /// Ports by OpenFlow port number (including LOCAL = 0xfffffffe when configured).
    pub ports: BTreeMap<u32, PortState>,
    /// OFPC_FRAG_* flags from SET_CONFIG.
    pub frag_flags: u16,
    /// miss_send_len from SET_CONFIG (default 128).
    pub miss_send_len: u16,
    /// L2 learning table used by the NORMAL action and by fail-mode standalone.
    pub mac_table: crate::datapath::normal::MacTable,
}
