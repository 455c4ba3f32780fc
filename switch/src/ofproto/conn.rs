//! Per-connection OpenFlow state: HELLO negotiation, echo liveness, role and async masks.
//!
//! Pure: everything takes the connection's state and returns effects; the switch-wide part of
//! roles (the master election generation id, demoting the old master) lives on `Ofproto`.

use super::{ConnId, ConnKind, Effect, Ofproto};
use shg_flows::error::{Error, ErrorCode, HelloFailedCode, RoleRequestFailedCode};
use shg_flows::table::{DumpPosition, FlowFilter};
use shg_flows::wire::message::{
    self, AsyncConfig, ControllerRole, HelloElement, Message, MsgType, Role, OFP_VERSION,
};
use std::collections::BTreeMap;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Our HELLO is sent; waiting for the peer's.
    AwaitHello,
    /// Version 0x04 agreed: every message is handled.
    Ready,
}

/// The three kinds of asynchronous message an async mask filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AsyncKind {
    PacketIn,
    PortStatus,
    FlowRemoved,
}

/// A multipart request whose parts are still arriving (OFPMPF_REQ_MORE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingMultipart {
    pub mp_type: u16,
    pub parts: u32,
}

/// One OpenFlow connection as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnState {
    pub kind: ConnKind,
    pub phase: Phase,
    pub role: ControllerRole,
    pub async_config: AsyncConfig,
    /// Whether asynchronous messages go to this connection at all: always for Active
    /// connections; for Passive ones (tools) only after SET_CONFIG or SET_ASYNC, as OVS
    /// treats its service connections.
    pub async_enabled: bool,
    /// When the last frame arrived (ns).
    pub last_rx: u64,
    /// When we sent an ECHO_REQUEST during the current silence, if we did.
    pub echo_sent: Option<u64>,
    /// Multipart requests waiting for their last part, by xid.
    pub pending_multipart: BTreeMap<u32, PendingMultipart>,
    /// A flow dump sent page by page, not finished ([`crate::ofproto::Ofproto::resume_flow_dump`]).
    pub flow_dump: Option<FlowDump>,
}

/// A flow dump (OFPMP_FLOW reply) sent page by page: the request's xid and selection, and the
/// last entry sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDump {
    pub xid: u32,
    pub filter: FlowFilter,
    pub after: DumpPosition,
}

/// packet-in reasons NO_MATCH and ACTION (not INVALID_TTL), as the 1.3 spec's defaults.
const DEFAULT_PACKET_IN: u32 = (1 << 0) | (1 << 1);
/// port-status ADD, DELETE, MODIFY.
const ALL_PORT_STATUS: u32 = (1 << 0) | (1 << 1) | (1 << 2);
/// flow-removed IDLE_TIMEOUT, HARD_TIMEOUT, DELETE, GROUP_DELETE.
const ALL_FLOW_REMOVED: u32 = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3);

/// The async configuration a new connection starts with: `[master/equal, slave]` halves.
pub fn default_async_config() -> AsyncConfig {
    AsyncConfig {
        packet_in_mask: [DEFAULT_PACKET_IN, 0],
        port_status_mask: [ALL_PORT_STATUS, ALL_PORT_STATUS],
        flow_removed_mask: [ALL_FLOW_REMOVED, 0],
    }
}

impl ConnState {
    pub(crate) fn new(kind: ConnKind, now: u64) -> ConnState {
        ConnState {
            kind,
            phase: Phase::AwaitHello,
            role: ControllerRole::Equal,
            async_config: default_async_config(),
            async_enabled: kind == ConnKind::Active,
            last_rx: now,
            echo_sent: None,
            pending_multipart: BTreeMap::new(),
            flow_dump: None,
        }
    }

    /// The mask (bit per reason) that applies to this connection now, by its role.
    pub(crate) fn async_mask(&self, kind: AsyncKind) -> u32 {
        let half = usize::from(self.role == ControllerRole::Slave);
        let pair = match kind {
            AsyncKind::PacketIn => self.async_config.packet_in_mask,
            AsyncKind::PortStatus => self.async_config.port_status_mask,
            AsyncKind::FlowRemoved => self.async_config.flow_removed_mask,
        };
        pair[half]
    }

    /// When `tick` has something to do for this connection: an echo request after
    /// `interval` of silence (once HELLO is done), or the close after `timeout`.
    pub(crate) fn deadline(&self, interval: u64, timeout: u64) -> u64 {
        let close = self.last_rx.saturating_add(timeout);
        if self.echo_sent.is_none() && self.phase == Phase::Ready {
            self.last_rx.saturating_add(interval).min(close)
        } else {
            close
        }
    }
}

/// Our HELLO: version 0x04 with a version bitmap holding only 0x04.
pub(crate) fn our_hello() -> Message {
    Message::Hello {
        version: OFP_VERSION,
        elements: vec![HelloElement::versions(&[OFP_VERSION])],
    }
}

/// Whether the peer's HELLO lets us speak 0x04: its bitmap decides when it sent one
/// (highest common version), else its header version (we speak min(ours, theirs)).
fn version_ok(version: u8, elements: &[HelloElement]) -> bool {
    let bitmap = elements.iter().find_map(|e| match e {
        HelloElement::VersionBitmap(words) => Some(words),
        HelloElement::Unknown { .. } => None,
    });
    match bitmap {
        Some(words) => {
            let w = usize::from(OFP_VERSION / 32);
            words
                .get(w)
                .is_some_and(|word| word & (1 << (OFP_VERSION % 32)) != 0)
        }
        None => version >= OFP_VERSION,
    }
}

/// Handles the first frame of a connection. Returns no effect on success, or the error and
/// Close on failure (the caller forgets the connection then).
pub(crate) fn negotiate(conn: ConnId, c: &mut ConnState, frame: &[u8]) -> Vec<Effect> {
    let header = match message::HeaderView::new_checked(frame) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(conn, error = %e, "broken first message: closing");
            return vec![Effect::Close(conn)];
        }
    };
    if header.typ() != MsgType::Hello {
        tracing::warn!(
            conn,
            typ = ?header.typ(),
            "received message while expecting HELLO: closing"
        );
        return vec![Effect::Close(conn)];
    }
    // A HELLO whose elements do not parse is taken at its header version (as OVS).
    let elements = match message::decode(frame) {
        Ok((_, Message::Hello { elements, .. })) => elements,
        _ => Vec::new(),
    };
    if version_ok(header.version(), &elements) {
        c.phase = Phase::Ready;
        return Vec::new();
    }
    let text = format!(
        "We support version 0x{OFP_VERSION:02x} only; peer's HELLO has version 0x{:02x}{}",
        header.version(),
        if elements.is_empty() {
            ""
        } else {
            " and a version bitmap without it"
        }
    );
    tracing::warn!(conn, "{text}: closing");
    vec![
        Effect::Send {
            conn,
            xid: header.xid(),
            msg: Message::Error {
                code: ErrorCode::HelloFailed(HelloFailedCode::Incompatible),
                data: text.into_bytes(),
            },
        },
        Effect::Close(conn),
    ]
}

impl Ofproto {
    /// OFPT_ROLE_REQUEST (1.3.5 §6.3.5): MASTER and SLAVE carry a generation id that must
    /// not be older than the last one seen (OFPRRFC_STALE, compared as a wrapping signed
    /// distance); a new MASTER turns the previous master into a SLAVE; NOCHANGE only reads.
    /// The reply carries the role and the current generation id (0 before any).
    pub(crate) fn role_request(&mut self, conn: ConnId, r: Role) -> Result<Role, Error> {
        let role = match r.role {
            ControllerRole::NoChange => self.role_of(conn),
            ControllerRole::Equal => ControllerRole::Equal,
            ControllerRole::Master | ControllerRole::Slave => {
                if let Some(cur) = self.generation_id {
                    // Wrapping signed distance, as the spec defines it.
                    let distance =
                        i64::from_ne_bytes(r.generation_id.wrapping_sub(cur).to_ne_bytes());
                    if distance < 0 {
                        return Err(Error::new(
                            ErrorCode::RoleRequestFailed(RoleRequestFailedCode::Stale),
                            format!(
                                "generation_id {} is older than the current {cur}",
                                r.generation_id
                            ),
                        ));
                    }
                }
                self.generation_id = Some(r.generation_id);
                r.role
            }
            ControllerRole::Unknown(v) => {
                return Err(Error::new(
                    ErrorCode::RoleRequestFailed(RoleRequestFailedCode::BadRole),
                    format!("unknown role {v}"),
                ))
            }
        };
        if role == ControllerRole::Master {
            for (&id, c) in &mut self.conns {
                if id != conn && c.role == ControllerRole::Master {
                    tracing::info!(conn = id, "demoted to slave: another controller is master");
                    c.role = ControllerRole::Slave;
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.role = role;
        }
        Ok(Role {
            role,
            generation_id: self.generation_id.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rules() {
        assert!(version_ok(4, &[]));
        assert!(version_ok(6, &[]));
        assert!(!version_ok(1, &[]));
        assert!(version_ok(6, &[HelloElement::versions(&[1, 4, 6])]));
        assert!(!version_ok(6, &[HelloElement::versions(&[5, 6])]));
        assert!(!version_ok(4, &[HelloElement::VersionBitmap(vec![])]));
        // An unknown element alone does not count as a bitmap.
        assert!(version_ok(
            4,
            &[HelloElement::Unknown {
                typ: 9,
                body: vec![]
            }]
        ));
    }

    #[test]
    fn deadlines() {
        let mut c = ConnState::new(ConnKind::Active, 100);
        // Before HELLO: only the close deadline.
        assert_eq!(c.deadline(10, 30), 130);
        c.phase = Phase::Ready;
        assert_eq!(c.deadline(10, 30), 110);
        c.echo_sent = Some(110);
        assert_eq!(c.deadline(10, 30), 130);
    }
}
