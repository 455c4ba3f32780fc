//! The sans-IO OpenFlow 1.3 switch core: every switch-side decision about OpenFlow messages.
//!
//! `Ofproto` holds the flow tables, groups, meters, ports, switch config, MAC learning table and
//! the per-connection controller state (negotiated version, role, async config, echo liveness).
//! Inputs are OpenFlow frames from a connection, port events, and `now`; outputs are
//! [`Effect`]s the agent carries out (send a message, transmit a frame, close a connection).
//! It never does I/O and never reads the clock, so every behaviour is tested with a fake
//! controller in-process. The datapath shares it (behind a mutex) for lookups and counters.
//!
//! Layout: this file has the types and the message dispatch; `conn.rs` the per-connection
//! state (HELLO negotiation, echo liveness, roles, async masks); `ports.rs` port descriptions
//! and PORT_STATUS; `multipart.rs` every OFPMP reply, reply splitting and table features.
//!
//! # Decisions (OpenFlow 1.3.5 and Open vSwitch `ofproto.c`/`connmgr.c`/`vconn.c` where the
//! spec leaves room)
//! - HELLO: ours carries a version bitmap with only 0x04. The peer's bitmap, if any, decides;
//!   otherwise min(0x04, its header version). No common version: OFPET_HELLO_FAILED /
//!   OFPHFC_INCOMPATIBLE with an ASCII explanation, then Close. A first message that is not
//!   HELLO closes the connection without a reply (as OVS's `vconn`).
//! - Handling is synchronous and in order, so BARRIER_REPLY simply follows everything before.
//! - Errors answer with the offending message's xid and its first 64 bytes; the connection
//!   stays up (except HELLO failures).
//! - Slaves get OFPBRC_IS_SLAVE for FLOW_MOD, GROUP_MOD, METER_MOD, PORT_MOD, TABLE_MOD,
//!   PACKET_OUT and TABLE_FEATURES requests with a body (1.3.5 §6.3.5; METER_MOD as OVS).
//!   SET_CONFIG from a slave is ignored silently: the spec does not list it, but its
//!   settings are switch-wide here.
//! - FLOW_MOD / PACKET_OUT with a `buffer_id` other than NO_BUFFER: OFPBRC_BUFFER_UNKNOWN,
//!   and nothing changes (we advertise `n_buffers` 0, so no buffer id is ever valid).
//! - A flow naming a missing group is OFPBAC_BAD_OUT_GROUP, a missing meter
//!   OFPMMFC_INVALID_METER (what OVS answers). Group/meter reference counts (`ref_count`,
//!   `flow_count` in the stats) are recounted from the tables before a GROUP/METER stats reply.
//! - Async messages go to connections past HELLO whose async mask (master/equal or slave
//!   half) has the reason bit; passive connections (ovs-ofctl) get none until they send
//!   SET_CONFIG or SET_ASYNC (as OVS's service connections). Defaults: master/equal get
//!   packet-in NO_MATCH|ACTION, every port-status and flow-removed reason; slaves get only
//!   port-status.
//! - Multipart requests with OFPMPF_REQ_MORE are held per (connection, xid) and answered
//!   once the last part arrives (the fixed-size request types carry nothing to merge). A type
//!   change between parts is OFPBRC_BAD_MULTIPART; more than [`MAX_PENDING_MULTIPART`] open
//!   requests on one connection is OFPBRC_MULTIPART_BUFFER_OVERFLOW. TABLE_FEATURES with a
//!   body (or REQ_MORE) is OFPTFFC_EPERM, as OVS: table features are fixed here.
//! - Replies bigger than one message are split into several with OFPMPF_REPLY_MORE.
//! - `set_queue` to a queue id the output port lacks is accepted (OVS does not refuse
//!   unknown queue ids either: queues may be configured after the flows): on a shaped port
//!   the frame goes to the port's default queue and counts in that queue's
//!   `unknown_queue`; on an unshaped port the queue's counters appear in QUEUE stats.
//! - QUEUE_GET_CONFIG of a shaped port lists its scheduler's queues with OFPQT_MIN_RATE /
//!   OFPQT_MAX_RATE in tenths of a percent of the port's shaped rate (rounded, at most
//!   1000); a rate not configured (no guarantee, no ceiling) is omitted. Queue stats of a
//!   shaped port are the scheduler's: tx_errors counts its drops (overflow and AQM).

mod conn;
mod fastpath;
mod multipart;
mod ports;

pub use conn::{default_async_config, ConnState, PendingMultipart, Phase};
pub use fastpath::{FastPath, FastRecord, SharedFastPath};
pub use multipart::{table_features, MAX_PENDING_MULTIPART, MAX_REPLY_BODY};
pub use ports::{tenths_of_percent, QosDequeue, QosEnqueue};

use crate::datapath::{Output, PacketInEvent};
use crate::port::PortInfo;
use shg_flows::action::{meter, port, Action, Instruction, OFPTT_ALL, OFP_NO_BUFFER};
use shg_flows::error::{
    BadActionCode, BadRequestCode, Error, MeterModFailedCode, PortModFailedCode, QueueOpFailedCode,
    SwitchConfigFailedCode, TableModFailedCode,
};
use shg_flows::field::Field;
use shg_flows::group::GroupTable;
use shg_flows::meter::MeterTable;
use shg_flows::mods::{flow_flags, FlowMod, FlowModCommand, GroupMod, GroupModCommand, MeterMod};
use shg_flows::table::{FlowModEffect, FlowTables, Removed};
use shg_flows::validate;
use shg_flows::wire::message::{
    self, capabilities, AsyncConfig, ControllerRole, FlowRemoved, FlowRemovedReason, Message,
    PacketIn, PacketInReason, PacketOut, PacketQueue, PortMod, QueueProp, SwitchConfig,
    SwitchFeatures,
};
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

/// How fail mode shapes forwarding at this moment (Open vSwitch's semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOpen {
    /// The flow tables decide; a miss with no table-miss flow drops (secure, or a controller
    /// is connected).
    No,
    /// Standalone, controllers configured, none connected: L2 learning for every frame.
    Override,
    /// Standalone with no controller configured: the flow tables decide, and a miss with no
    /// table-miss flow goes to NORMAL (as if the table had a default NORMAL flow).
    MissNormal,
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
    Send {
        conn: ConnId,
        xid: u32,
        msg: Message,
    },
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
    /// Whether `--controller` targets are configured. Fail-mode standalone means "NORMAL for
    /// everything" only while configured controllers are all unreachable; with none configured
    /// the flow tables rule and a table miss falls back to NORMAL (see [`FailOpen`]).
    pub controllers_configured: bool,
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
            controllers_configured: false,
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

/// Named counters of what the core dropped or refused (never silently).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfprotoCounters {
    /// Frames that failed to decode (answered with their error).
    pub decode_errors: u64,
    /// Messages answered with an OFPT_ERROR (decode errors included).
    pub errors_sent: u64,
    /// PACKET_INs sent (one per connection).
    pub packet_ins_sent: u64,
    /// Packet-in events no connection wanted (no controller, role or async mask).
    pub packet_ins_unwanted: u64,
    /// Packet-in events suppressed by OFPPC_NO_PACKET_IN on the input port.
    pub packet_ins_suppressed: u64,
    /// Connections closed for silence (echo timeout).
    pub echo_timeouts: u64,
    /// Connections closed during HELLO (incompatible, or not a HELLO).
    pub hello_failures: u64,
    /// FLOW_REMOVED messages sent.
    pub flow_removed_sent: u64,
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
    /// Live OpenFlow connections.
    pub conns: BTreeMap<ConnId, ConnState>,
    /// The master election generation id of the last MASTER/SLAVE role request, once one came.
    pub generation_id: Option<u64>,
    /// Egress schedulers of the shaped ports, by port number (see `ports.rs`): set from the
    /// configuration at start and by `shgctl switch set-queue`; the datapath enqueues and
    /// dequeues under the same lock as its lookups.
    pub qos: BTreeMap<u32, crate::qos::sched::PortScheduler>,
    pub counters: OfprotoCounters,
    /// Earliest time a flow may expire (never later than the truth; `tick` recomputes it).
    expiry_hint: Option<u64>,
    /// Group/meter flow reference counts need recounting before stats.
    refs_dirty: bool,
    next_xid: u32,
    /// Decisions handed to a faster forwarder, taken back before every change
    /// (`fastpath.rs`).
    fast_paths: Vec<SharedFastPath>,
    /// The latest `now` an entry point was given (for the one without a `now`).
    last_now: u64,
}

/// Default `miss_send_len` (OFP_DEFAULT_MISS_SEND_LEN).
pub const DEFAULT_MISS_SEND_LEN: u16 = 128;
/// OFPC_FRAG_* values accepted by SET_CONFIG: NORMAL (0) and DROP (1); REASM (2) is not
/// supported (we do not advertise OFPC_IP_REASM).
pub const FRAG_DROP: u16 = 1;
const FRAG_MASK: u16 = 3;
const NS_PER_SEC: u64 = 1_000_000_000;

fn split_ns(d: u64) -> (u32, u32) {
    (
        u32::try_from(d / NS_PER_SEC).unwrap_or(u32::MAX),
        u32::try_from(d % NS_PER_SEC).unwrap_or(0),
    )
}

/// Actions of a flow's instructions (apply and write), for reference checks.
fn instr_actions(instrs: &[Instruction]) -> impl Iterator<Item = &Action> {
    instrs.iter().flat_map(|i| match i {
        Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a.as_slice(),
        _ => &[],
    })
}

/// The in_port a packet-in event's match carries, if any.
fn match_in_port(m: &shg_flows::matches::Match) -> Option<u32> {
    let (v, _) = m.get(Field::InPort)?;
    let b: [u8; 4] = v.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

impl Ofproto {
    /// A switch with empty tables, no ports and no connections.
    pub fn new(config: OfprotoConfig) -> Ofproto {
        Ofproto {
            tables: FlowTables::new(config.n_tables),
            groups: GroupTable::new(),
            meters: MeterTable::new(),
            ports: BTreeMap::new(),
            frag_flags: 0,
            miss_send_len: DEFAULT_MISS_SEND_LEN,
            mac_table: crate::datapath::normal::MacTable::default(),
            conns: BTreeMap::new(),
            generation_id: None,
            qos: BTreeMap::new(),
            counters: OfprotoCounters::default(),
            expiry_hint: None,
            refs_dirty: false,
            next_xid: 1,
            fast_paths: Vec::new(),
            last_now: 0,
            config,
        }
    }

    /// Every entry point that may change or read forwarding state starts here: decisions
    /// handed to the fast path are taken back, with their counts (`fastpath.rs`).
    pub(crate) fn entered(&mut self, now: u64) {
        self.last_now = self.last_now.max(now);
        self.drain_fast_path(self.last_now);
    }

    /// A fresh xid for a message we originate (HELLO, ECHO_REQUEST).
    fn xid(&mut self) -> u32 {
        let x = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        x
    }

    /// True when an Active (controller) connection has completed HELLO (fail mode uses it).
    pub fn fail_open(&self) -> FailOpen {
        if self.config.fail_mode != FailMode::Standalone || self.controller_connected() {
            FailOpen::No
        } else if self.config.controllers_configured {
            FailOpen::Override
        } else {
            FailOpen::MissNormal
        }
    }

    /// True when an active (`--controller`) connection has completed HELLO.
    pub fn controller_connected(&self) -> bool {
        self.conns
            .values()
            .any(|c| c.kind == ConnKind::Active && c.phase == Phase::Ready)
    }

    /// When the agent must call [`Ofproto::tick`] next: the earliest echo, dead-peer or flow
    /// expiry deadline; `None` when nothing is pending.
    pub fn next_deadline(&self) -> Option<u64> {
        let conns = self
            .conns
            .values()
            .map(|c| c.deadline(self.config.echo_interval_ns, self.config.echo_timeout_ns));
        conns.chain(self.expiry_hint).min()
    }

    /// Time-driven work: flow expiry (FLOW_REMOVED), echo requests after `echo_interval` of
    /// silence, and closing connections silent for `echo_timeout`.
    pub fn tick(&mut self, now: u64) -> Vec<Effect> {
        self.entered(now);
        let mut fx = Vec::new();
        if self.expiry_hint.is_some_and(|t| t <= now) {
            let removed = self.tables.expire(now);
            if !removed.is_empty() {
                self.refs_dirty = true;
            }
            self.flow_removed_effects(&removed, now, &mut fx);
            self.expiry_hint = self.tables.next_expiry();
        }
        let (interval, timeout) = (self.config.echo_interval_ns, self.config.echo_timeout_ns);
        let mut dead = Vec::new();
        let mut echo = Vec::new();
        for (&id, c) in &mut self.conns {
            let silent = now.saturating_sub(c.last_rx);
            if silent >= timeout {
                dead.push(id);
            } else if silent >= interval && c.echo_sent.is_none() && c.phase == Phase::Ready {
                c.echo_sent = Some(now);
                echo.push(id);
            }
        }
        for id in echo {
            let xid = self.xid();
            fx.push(Effect::Send {
                conn: id,
                xid,
                msg: Message::EchoRequest(Vec::new()),
            });
        }
        for id in dead {
            tracing::warn!(
                conn = id,
                "OpenFlow peer silent for the echo timeout: closing"
            );
            self.counters.echo_timeouts += 1;
            self.conns.remove(&id);
            fx.push(Effect::Close(id));
        }
        fx
    }

    /// A new connection: we speak first with our HELLO.
    pub fn connect(&mut self, conn: ConnId, kind: ConnKind, now: u64) -> Vec<Effect> {
        self.entered(now);
        self.conns.insert(conn, ConnState::new(kind, now));
        let xid = self.xid();
        vec![Effect::Send {
            conn,
            xid,
            msg: conn::our_hello(),
        }]
    }

    /// The connection is gone (closed by the peer, by I/O error, or after our Close).
    pub fn disconnect(&mut self, conn: ConnId) {
        self.entered(self.last_now);
        self.conns.remove(&conn);
    }

    /// One complete OpenFlow frame from `conn` (the agent splits the stream with
    /// `wire::message::frame_len`).
    pub fn handle(&mut self, conn: ConnId, frame: &[u8], now: u64) -> Vec<Effect> {
        self.entered_for(frame, now);
        let Some(c) = self.conns.get_mut(&conn) else {
            tracing::debug!(conn, "frame for an unknown or closed connection ignored");
            return Vec::new();
        };
        c.last_rx = now;
        c.echo_sent = None;
        if c.phase == Phase::AwaitHello {
            let fx = conn::negotiate(conn, c, frame);
            if matches!(fx.last(), Some(Effect::Close(_))) {
                self.counters.hello_failures += 1;
                self.conns.remove(&conn);
            }
            return fx;
        }
        let mut fx = Vec::new();
        match message::decode(frame) {
            Ok((xid, msg)) => {
                if let Err(e) = self.dispatch(conn, xid, msg, now, &mut fx) {
                    self.error(conn, xid, &e, frame, &mut fx);
                }
            }
            Err(e) => {
                self.counters.decode_errors += 1;
                let xid = message::HeaderView::new_checked(frame).map_or(0, |h| h.xid());
                tracing::debug!(conn, error = %e, "undecodable OpenFlow message");
                self.error(conn, xid, &e, frame, &mut fx);
            }
        }
        fx
    }

    fn error(&mut self, conn: ConnId, xid: u32, e: &Error, frame: &[u8], fx: &mut Vec<Effect>) {
        tracing::debug!(conn, xid, error = %e, "answering with OFPT_ERROR");
        self.counters.errors_sent += 1;
        fx.push(Effect::Send {
            conn,
            xid,
            msg: message::error_reply(e, frame),
        });
    }

    fn role_of(&self, conn: ConnId) -> ControllerRole {
        self.conns
            .get(&conn)
            .map_or(ControllerRole::Equal, |c| c.role)
    }

    fn reject_slave(&self, conn: ConnId, what: &str) -> Result<(), Error> {
        if self.role_of(conn) == ControllerRole::Slave {
            return Err(Error::bad_request(
                BadRequestCode::IsSlave,
                format!("{what} from a slave controller"),
            ));
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        conn: ConnId,
        xid: u32,
        msg: Message,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        let reply = |fx: &mut Vec<Effect>, msg: Message| fx.push(Effect::Send { conn, xid, msg });
        match msg {
            Message::Hello { .. } => {
                tracing::debug!(conn, "second HELLO ignored");
            }
            Message::EchoRequest(data) => reply(fx, Message::EchoReply(data)),
            Message::EchoReply(_) => {}
            Message::Error { code, .. } => {
                tracing::info!(conn, xid, error = %code.name(), "peer sent OFPT_ERROR");
            }
            Message::ErrorExperimenter { exp_type, .. } => {
                tracing::info!(conn, xid, exp_type, "peer sent an experimenter OFPT_ERROR");
            }
            Message::Experimenter { experimenter, .. } => {
                return Err(Error::bad_request(
                    BadRequestCode::BadExperimenter,
                    format!("experimenter 0x{experimenter:08x} is not supported"),
                ));
            }
            Message::FeaturesRequest => reply(fx, Message::FeaturesReply(self.features())),
            Message::GetConfigRequest => reply(
                fx,
                Message::GetConfigReply(SwitchConfig {
                    flags: self.frag_flags,
                    miss_send_len: self.miss_send_len,
                }),
            ),
            Message::SetConfig(cfg) => self.set_config(conn, cfg)?,
            Message::PacketOut(po) => self.packet_out(conn, po, now, fx)?,
            Message::FlowMod(fm) => self.flow_mod(conn, &fm, now, fx)?,
            Message::GroupMod(gm) => self.group_mod(conn, &gm, now, fx)?,
            Message::PortMod(pm) => self.port_mod(conn, &pm, now, fx)?,
            Message::TableMod { table_id, config } => self.table_mod(conn, table_id, config)?,
            Message::MeterMod(mm) => self.meter_mod(conn, &mm, now, fx)?,
            Message::MultipartRequest { flags, body } => {
                for msg in self.multipart(conn, xid, flags, body, now)? {
                    reply(fx, msg);
                }
            }
            Message::BarrierRequest => reply(fx, Message::BarrierReply),
            Message::QueueGetConfigRequest { port } => {
                let queues = self.queue_config(port)?;
                reply(fx, Message::QueueGetConfigReply { port, queues });
            }
            Message::RoleRequest(r) => {
                let role = self.role_request(conn, r)?;
                reply(fx, Message::RoleReply(role));
            }
            Message::GetAsyncRequest => {
                let a = self
                    .conns
                    .get(&conn)
                    .map_or_else(AsyncConfig::default, |c| c.async_config);
                reply(fx, Message::GetAsyncReply(a));
            }
            Message::SetAsync(a) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.async_config = a;
                    c.async_enabled = true;
                }
            }
            m @ (Message::FeaturesReply(_)
            | Message::GetConfigReply(_)
            | Message::PacketIn(_)
            | Message::FlowRemoved(_)
            | Message::PortStatus { .. }
            | Message::MultipartReply { .. }
            | Message::BarrierReply
            | Message::QueueGetConfigReply { .. }
            | Message::RoleReply(_)
            | Message::GetAsyncReply(_)) => {
                return Err(Error::bad_request(
                    BadRequestCode::BadType,
                    format!(
                        "{:?} is a message a switch sends, not one it takes",
                        m.msg_type()
                    ),
                ));
            }
            Message::Unknown { typ, .. } => {
                return Err(Error::bad_request(
                    BadRequestCode::BadType,
                    format!("unknown message type {typ}"),
                ));
            }
        }
        Ok(())
    }

    /// The FEATURES_REPLY body.
    pub fn features(&self) -> SwitchFeatures {
        SwitchFeatures {
            datapath_id: self.config.datapath_id,
            n_buffers: 0,
            n_tables: self.tables.n_tables(),
            auxiliary_id: 0,
            capabilities: capabilities::FLOW_STATS
                | capabilities::TABLE_STATS
                | capabilities::PORT_STATS
                | capabilities::GROUP_STATS
                | capabilities::QUEUE_STATS,
            reserved: 0,
        }
    }

    fn set_config(&mut self, conn: ConnId, cfg: SwitchConfig) -> Result<(), Error> {
        if cfg.flags & !FRAG_MASK != 0 || cfg.flags & FRAG_MASK > FRAG_DROP {
            return Err(Error::new(
                shg_flows::ErrorCode::SwitchConfigFailed(SwitchConfigFailedCode::BadFlags),
                format!(
                    "config flags 0x{:04x}: only FRAG_NORMAL and FRAG_DROP are supported",
                    cfg.flags
                ),
            ));
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        c.async_enabled = true;
        if c.role == ControllerRole::Slave {
            tracing::debug!(conn, "SET_CONFIG from a slave ignored");
            return Ok(());
        }
        self.frag_flags = cfg.flags;
        self.miss_send_len = cfg.miss_send_len;
        Ok(())
    }

    /// Refuses actions that name a group or meter that does not exist.
    fn check_refs(&self, instrs: &[Instruction]) -> Result<(), Error> {
        for a in instr_actions(instrs) {
            if let Action::Group(g) = a {
                if !self.groups.contains(*g) {
                    return Err(Error::bad_action(
                        BadActionCode::BadOutGroup,
                        format!("group {g} does not exist"),
                    ));
                }
            }
        }
        for i in instrs {
            if let Instruction::Meter(m) = i {
                if !self.meters.contains(*m) {
                    return Err(Error::meter_mod(
                        MeterModFailedCode::InvalidMeter,
                        format!("meter {m} does not exist"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn flow_mod(
        &mut self,
        conn: ConnId,
        fm: &FlowMod,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        self.reject_slave(conn, "FLOW_MOD")?;
        let is_delete = matches!(
            fm.command,
            FlowModCommand::Delete | FlowModCommand::DeleteStrict
        );
        let checked = validate::check_flow_mod(fm, self.tables.n_tables())?;
        if !is_delete {
            self.check_refs(&fm.instructions)?;
        }
        if fm.buffer_id != OFP_NO_BUFFER && !is_delete {
            return Err(Error::bad_request(
                BadRequestCode::BufferUnknown,
                format!(
                    "buffer {} does not exist (this switch buffers nothing)",
                    fm.buffer_id
                ),
            ));
        }
        match self.tables.apply_checked_flow_mod(checked, now)? {
            FlowModEffect::Added { .. } => {
                let timeouts = [fm.idle_timeout, fm.hard_timeout];
                if let Some(t) = timeouts.iter().filter(|t| **t > 0).min() {
                    let at = now.saturating_add(u64::from(*t) * NS_PER_SEC);
                    self.expiry_hint = Some(self.expiry_hint.map_or(at, |h| h.min(at)));
                }
                self.refs_dirty = true;
            }
            FlowModEffect::Modified { count } => {
                if count > 0 {
                    self.refs_dirty = true;
                }
            }
            FlowModEffect::Deleted(removed) => {
                if !removed.is_empty() {
                    self.refs_dirty = true;
                }
                self.flow_removed_effects(&removed, now, fx);
            }
        }
        Ok(())
    }

    fn group_mod(
        &mut self,
        conn: ConnId,
        gm: &GroupMod,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        self.reject_slave(conn, "GROUP_MOD")?;
        if gm.command != GroupModCommand::Delete {
            for b in &gm.buckets {
                validate::check_actions_no_match(&b.actions)?;
            }
        }
        let effect = self.groups.apply_group_mod(gm, now)?;
        for g in effect.deleted {
            let removed = self.tables.remove_flows_using_group(g);
            if !removed.is_empty() {
                self.refs_dirty = true;
            }
            self.flow_removed_effects(&removed, now, fx);
        }
        Ok(())
    }

    fn meter_mod(
        &mut self,
        conn: ConnId,
        mm: &MeterMod,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        self.reject_slave(conn, "METER_MOD")?;
        let effect = self.meters.apply_meter_mod(mm, now)?;
        for m in effect.deleted {
            let removed = self.tables.remove_flows_using_meter(m);
            if !removed.is_empty() {
                self.refs_dirty = true;
            }
            self.flow_removed_effects(&removed, now, fx);
        }
        Ok(())
    }

    fn port_mod(
        &mut self,
        conn: ConnId,
        pm: &PortMod,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        self.reject_slave(conn, "PORT_MOD")?;
        let Some(p) = self.ports.get_mut(&pm.port_no) else {
            return Err(Error::new(
                shg_flows::ErrorCode::PortModFailed(PortModFailedCode::BadPort),
                format!("port {} does not exist", pm.port_no),
            ));
        };
        if p.info.hw_addr != pm.hw_addr {
            return Err(Error::new(
                shg_flows::ErrorCode::PortModFailed(PortModFailedCode::BadHwAddr),
                format!("hw_addr does not match port {}", pm.port_no),
            ));
        }
        // As OVS: bits outside the four OF1.3 config bits are ignored; `advertise` is
        // accepted and ignored (software ports do not negotiate).
        let known = ports::CONFIG_BITS;
        let mask = pm.mask & known;
        let new = (p.config & !mask) | (pm.config & mask);
        if new != p.config {
            p.config = new;
            let port_no = pm.port_no;
            self.port_status(port_no, message::PortReason::Modify, now, fx);
        }
        Ok(())
    }

    fn table_mod(&mut self, conn: ConnId, table_id: u8, config: u32) -> Result<(), Error> {
        self.reject_slave(conn, "TABLE_MOD")?;
        if table_id != OFPTT_ALL && table_id >= self.tables.n_tables() {
            return Err(Error::new(
                shg_flows::ErrorCode::TableModFailed(TableModFailedCode::BadTable),
                format!("table {table_id} does not exist"),
            ));
        }
        // OF1.3 table config is only the deprecated miss bits (OFPTC_DEPRECATED_MASK = 3).
        if config & !3 != 0 {
            return Err(Error::new(
                shg_flows::ErrorCode::TableModFailed(TableModFailedCode::BadConfig),
                format!("table config 0x{config:08x} is not an OF1.3 value"),
            ));
        }
        Ok(())
    }

    fn packet_out(
        &mut self,
        conn: ConnId,
        po: PacketOut,
        now: u64,
        fx: &mut Vec<Effect>,
    ) -> Result<(), Error> {
        self.reject_slave(conn, "PACKET_OUT")?;
        // Port 0 is not a port, but controllers built on loxi (OFTest, Floodlight) send it as
        // the default in_port; Open vSwitch takes it, and so does this switch (the packet
        // then comes from no port, like OFPP_ANY).
        let in_port_ok = po.in_port <= port::MAX
            || matches!(po.in_port, port::LOCAL | port::CONTROLLER | port::ANY);
        if !in_port_ok {
            return Err(Error::bad_request(
                BadRequestCode::BadPort,
                format!("packet_out in_port 0x{:x} is not a port", po.in_port),
            ));
        }
        if po.buffer_id != OFP_NO_BUFFER {
            return Err(Error::bad_request(
                BadRequestCode::BufferUnknown,
                format!(
                    "buffer {} does not exist (this switch buffers nothing)",
                    po.buffer_id
                ),
            ));
        }
        validate::check_actions_no_match(&po.actions)?;
        for a in &po.actions {
            if let Action::Group(g) = a {
                if !self.groups.contains(*g) {
                    return Err(Error::bad_action(
                        BadActionCode::BadOutGroup,
                        format!("group {g} does not exist"),
                    ));
                }
            }
        }
        let mut outputs = Vec::new();
        let pkt = crate::port::Packet::plain(po.data);
        crate::datapath::execute::packet_out(self, po.in_port, &po.actions, pkt, now, &mut outputs);
        for o in outputs {
            match o {
                Output::Port { .. } => fx.push(Effect::Transmit(o)),
                Output::Controller(ev) => fx.extend(self.packet_in(ev, now)),
            }
        }
        Ok(())
    }

    fn queue_config(&self, port_no: u32) -> Result<Vec<PacketQueue>, Error> {
        let ports: Vec<&PortState> = if port_no == port::ANY {
            self.ports.values().collect()
        } else {
            match self.ports.get(&port_no) {
                Some(p) => vec![p],
                None => {
                    return Err(Error::new(
                        shg_flows::ErrorCode::QueueOpFailed(QueueOpFailedCode::BadPort),
                        format!("port {port_no} does not exist"),
                    ))
                }
            }
        };
        let mut out = Vec::new();
        for p in ports {
            if let Some(cfg) = self.port_qos(p.port_no) {
                let base = cfg.rate.unwrap_or(u64::from(p.info.curr_speed_kbps) * 1000);
                let mut queues = cfg.queues.clone();
                queues.sort_by_key(|q| q.id);
                for q in queues {
                    let mut properties = Vec::new();
                    if q.min_rate > 0 {
                        if let Some(r) = tenths_of_percent(q.min_rate, base) {
                            properties.push(QueueProp::MinRate(r));
                        }
                    }
                    if let Some(r) = q.max_rate.and_then(|m| tenths_of_percent(m, base)) {
                        properties.push(QueueProp::MaxRate(r));
                    }
                    out.push(PacketQueue {
                        queue_id: q.id,
                        port: p.port_no,
                        properties,
                    });
                }
                continue;
            }
            // An unshaped port's queues (those set_queue used) have no configured rates.
            for &queue_id in p.queues.keys() {
                out.push(PacketQueue {
                    queue_id,
                    port: p.port_no,
                    properties: Vec::new(),
                });
            }
        }
        Ok(out)
    }

    /// Sends `msg` to every connection past HELLO for which `wants(conn)` holds; returns how
    /// many got it.
    fn broadcast(
        &self,
        msg: &Message,
        wants: impl Fn(&ConnState) -> bool,
        fx: &mut Vec<Effect>,
    ) -> usize {
        let mut n = 0;
        for (&id, c) in &self.conns {
            if c.phase == Phase::Ready && c.async_enabled && wants(c) {
                fx.push(Effect::Send {
                    conn: id,
                    xid: 0,
                    msg: msg.clone(),
                });
                n += 1;
            }
        }
        n
    }

    /// FLOW_REMOVED for every removed entry that asked for it (SEND_FLOW_REM), to the
    /// connections whose role and async mask want that reason.
    pub fn flow_removed_effects(&mut self, removed: &[Removed], now: u64, fx: &mut Vec<Effect>) {
        for r in removed {
            let e = &r.entry;
            if e.flags & flow_flags::SEND_FLOW_REM == 0 {
                continue;
            }
            let (duration_sec, duration_nsec) = split_ns(e.duration(now));
            let reason = FlowRemovedReason::from(u8::from(r.reason));
            let bit = 1u32 << (u8::from(r.reason) & 31);
            let msg = Message::FlowRemoved(FlowRemoved {
                cookie: e.cookie,
                priority: e.priority,
                reason,
                table_id: r.table_id,
                duration_sec,
                duration_nsec,
                idle_timeout: e.idle_timeout,
                hard_timeout: e.hard_timeout,
                packet_count: e.packet_count,
                byte_count: e.byte_count,
                r#match: e.r#match,
            });
            let n = self.broadcast(
                &msg,
                |c| c.async_mask(conn::AsyncKind::FlowRemoved) & bit != 0,
                fx,
            );
            self.counters.flow_removed_sent += n as u64;
        }
    }

    /// A frame for the controller(s): a PACKET_IN (NO_BUFFER) to every connection whose role
    /// and async mask want the reason, unless the input port has OFPPC_NO_PACKET_IN.
    pub fn packet_in(&mut self, ev: PacketInEvent, _now: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let Some(p) = match_in_port(&ev.r#match).and_then(|p| self.ports.get(&p)) {
            if p.config & shg_flows::wire::port::config::NO_PACKET_IN != 0 {
                self.counters.packet_ins_suppressed += 1;
                return fx;
            }
        }
        let bit = 1u32 << (ev.reason & 31);
        let msg = Message::PacketIn(PacketIn {
            buffer_id: OFP_NO_BUFFER,
            total_len: ev.total_len,
            reason: PacketInReason::from(ev.reason),
            table_id: ev.table_id,
            cookie: ev.cookie,
            r#match: ev.r#match,
            data: ev.data,
        });
        let n = self.broadcast(
            &msg,
            |c| c.async_mask(conn::AsyncKind::PacketIn) & bit != 0,
            &mut fx,
        );
        if n == 0 {
            self.counters.packet_ins_unwanted += 1;
        }
        self.counters.packet_ins_sent += n as u64;
        fx
    }

    /// Recounts group and meter flow references from the tables (before stats replies).
    fn sync_refs(&mut self) {
        if !self.refs_dirty {
            return;
        }
        self.refs_dirty = false;
        let mut groups: BTreeMap<u32, u32> = BTreeMap::new();
        let mut meters: BTreeMap<u32, u32> = BTreeMap::new();
        let all = shg_flows::table::FlowFilter::default();
        for (_, e) in self.tables.flow_stats(&all) {
            let mut gs: Vec<u32> = instr_actions(&e.instructions)
                .filter_map(|a| match a {
                    Action::Group(g) => Some(*g),
                    _ => None,
                })
                .collect();
            gs.sort_unstable();
            gs.dedup();
            for g in gs {
                *groups.entry(g).or_default() += 1;
            }
            for i in &e.instructions {
                if let Instruction::Meter(m) = i {
                    *meters.entry(*m).or_default() += 1;
                }
            }
        }
        let group_ids: Vec<u32> = self
            .groups
            .group_desc()
            .iter()
            .map(|d| d.group_id)
            .collect();
        for g in group_ids {
            let have = self.groups.get(g).map_or(0, |e| e.flow_refs());
            let want = groups.get(&g).copied().unwrap_or(0);
            for _ in want..have {
                self.groups.remove_flow_ref(g);
            }
            for _ in have..want {
                // The group exists (we just listed it): cannot fail.
                let _ = self.groups.add_flow_ref(g);
            }
        }
        let meter_ids: Vec<u32> = self
            .meters
            .meter_config(meter::ALL)
            .map(|v| v.iter().map(|m| m.meter_id).collect())
            .unwrap_or_default();
        for m in meter_ids {
            let have = self.meters.get(m).map_or(0, |e| e.flow_count());
            let want = meters.get(&m).copied().unwrap_or(0);
            for _ in want..have {
                self.meters.remove_flow_ref(m);
            }
            for _ in have..want {
                let _ = self.meters.add_flow_ref(m);
            }
        }
    }
}

#[cfg(test)]
mod tests;
