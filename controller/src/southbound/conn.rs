//! One OpenFlow 1.3 connection seen from the controller: HELLO and FEATURES, requests matched
//! to replies by xid, multipart replies collected, changes applied as barrier-bounded
//! transactions. Echo requests are answered on the way; asynchronous messages (PACKET_IN,
//! PORT_STATUS, FLOW_REMOVED) are kept in [`OfConn::events`] for the caller.
//!
//! Generic over the byte stream, so TCP, TLS and in-memory pipes (tests) all work.

use shg_flows::wire::message::{self, frame_len, multipart_flags, Message, Role, SwitchFeatures};
use shg_flows::wire::multipart::{
    FlowStats, FlowStatsRequest, GroupDesc, MeterConfig, MultipartReply, MultipartRequest,
};
use shg_flows::wire::port::Port;
use shg_flows::ErrorCode;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// OpenFlow 1.3's wire version.
pub const OFP13: u8 = 4;
/// Largest message accepted from a switch (the 16-bit length field's limit).
const MAX_MSG: usize = 65_535;

/// What went wrong on a connection.
#[derive(Debug)]
pub enum OfError {
    /// The stream failed or closed.
    Io(std::io::Error),
    /// No answer in time; says what was awaited.
    Timeout(String),
    /// The peer said something that makes no sense here (wrong version, undecodable bytes).
    Protocol(String),
    /// The switch refused a request with an OFPT_ERROR. `index` is the position of the
    /// refused message in a transaction (None outside one).
    Refused {
        xid: u32,
        index: Option<usize>,
        code: ErrorCode,
        detail: String,
    },
}

impl fmt::Display for OfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OfError::Io(e) => write!(f, "connection: {e}"),
            OfError::Timeout(what) => write!(f, "timed out waiting for {what}"),
            OfError::Protocol(what) => write!(f, "protocol error: {what}"),
            OfError::Refused {
                index,
                code,
                detail,
                ..
            } => {
                if let Some(i) = index {
                    write!(f, "change #{i} refused by the switch: {code:?}")?;
                } else {
                    write!(f, "refused by the switch: {code:?}")?;
                }
                if !detail.is_empty() {
                    write!(f, " ({detail})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for OfError {}

impl From<std::io::Error> for OfError {
    fn from(e: std::io::Error) -> Self {
        OfError::Io(e)
    }
}

/// Everything the controller reads back from a switch to plan against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub features: SwitchFeatures,
    pub ports: Vec<Port>,
    pub flows: Vec<FlowStats>,
    pub groups: Vec<GroupDesc>,
    pub meters: Vec<MeterConfig>,
}

/// A connection past HELLO and FEATURES.
#[derive(Debug)]
pub struct OfConn<S> {
    io: S,
    rbuf: Vec<u8>,
    next_xid: u32,
    timeout: Duration,
    /// The switch's FEATURES_REPLY.
    pub features: SwitchFeatures,
    /// Asynchronous messages received while waiting for replies, oldest first.
    pub events: VecDeque<Message>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> OfConn<S> {
    /// Exchanges HELLO (OpenFlow 1.3 only) and FEATURES; `timeout` bounds every later wait.
    pub async fn handshake(io: S, timeout: Duration) -> Result<OfConn<S>, OfError> {
        let mut c = OfConn {
            io,
            rbuf: Vec::with_capacity(64 * 1024),
            next_xid: 1,
            timeout,
            features: SwitchFeatures::default(),
            events: VecDeque::new(),
        };
        c.send(&Message::Hello {
            version: OFP13,
            elements: vec![message::HelloElement::VersionBitmap(vec![1 << OFP13])],
        })
        .await?;
        let (_, hello) = c.read_msg("HELLO").await?;
        match hello {
            Message::Hello { version, elements } => {
                let bitmap_ok = elements.iter().any(|e| match e {
                    message::HelloElement::VersionBitmap(words) => {
                        words.first().is_some_and(|w| w & (1 << OFP13) != 0)
                    }
                    message::HelloElement::Unknown { .. } => false,
                });
                if version < OFP13 || (version > OFP13 && !bitmap_ok) {
                    return Err(OfError::Protocol(format!(
                        "the switch does not speak OpenFlow 1.3 (HELLO version {version})"
                    )));
                }
            }
            other => {
                return Err(OfError::Protocol(format!(
                    "expected HELLO, got {}",
                    name(&other)
                )))
            }
        }
        match c
            .request(&Message::FeaturesRequest, "FEATURES_REPLY")
            .await?
        {
            Message::FeaturesReply(f) => c.features = f,
            other => {
                return Err(OfError::Protocol(format!(
                    "expected FEATURES_REPLY, got {}",
                    name(&other)
                )))
            }
        }
        Ok(c)
    }

    /// Sends one message with a fresh xid; returns the xid.
    pub async fn send(&mut self, m: &Message) -> Result<u32, OfError> {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1).max(1);
        self.io.write_all(&message::encode(xid, m)).await?;
        Ok(xid)
    }

    /// Sends `m` and waits for the reply with the same xid (an OFPT_ERROR is `Refused`).
    pub async fn request(&mut self, m: &Message, what: &str) -> Result<Message, OfError> {
        let xid = self.send(m).await?;
        self.io.flush().await?;
        loop {
            let (rx, msg) = self.read_msg(what).await?;
            if rx != xid {
                self.stash(msg);
                continue;
            }
            return match msg {
                Message::Error { code, data } => Err(refused(xid, None, code, &data)),
                other => Ok(other),
            };
        }
    }

    /// A multipart request, with every part of the reply (REPLY_MORE followed).
    pub async fn multipart(
        &mut self,
        body: MultipartRequest,
    ) -> Result<Vec<MultipartReply>, OfError> {
        let xid = self
            .send(&Message::MultipartRequest { flags: 0, body })
            .await?;
        self.io.flush().await?;
        let mut parts = Vec::new();
        loop {
            let (rx, msg) = self.read_msg("a MULTIPART_REPLY").await?;
            if rx != xid {
                self.stash(msg);
                continue;
            }
            match msg {
                Message::MultipartReply { flags, body } => {
                    parts.push(body);
                    if flags & multipart_flags::REPLY_MORE == 0 {
                        return Ok(parts);
                    }
                }
                Message::Error { code, data } => return Err(refused(xid, None, code, &data)),
                other => {
                    return Err(OfError::Protocol(format!(
                        "expected MULTIPART_REPLY, got {}",
                        name(&other)
                    )))
                }
            }
        }
    }

    /// Asks for a role (MASTER, SLAVE, EQUAL) with a generation id.
    pub async fn set_role(&mut self, role: Role) -> Result<Role, OfError> {
        match self
            .request(&Message::RoleRequest(role), "ROLE_REPLY")
            .await?
        {
            Message::RoleReply(r) => Ok(r),
            other => Err(OfError::Protocol(format!(
                "expected ROLE_REPLY, got {}",
                name(&other)
            ))),
        }
    }

    /// Reads ports, every flow of every table, groups and meters.
    pub async fn snapshot(&mut self) -> Result<Snapshot, OfError> {
        let mut s = Snapshot {
            features: self.features,
            ..Snapshot::default()
        };
        for part in self.multipart(MultipartRequest::PortDesc).await? {
            if let MultipartReply::PortDesc(p) = part {
                s.ports.extend(p);
            }
        }
        for part in self
            .multipart(MultipartRequest::Flow(FlowStatsRequest::default()))
            .await?
        {
            if let MultipartReply::Flow(f) = part {
                s.flows.extend(f);
            }
        }
        for part in self.multipart(MultipartRequest::GroupDesc).await? {
            if let MultipartReply::GroupDesc(g) = part {
                s.groups.extend(g);
            }
        }
        for part in self
            .multipart(MultipartRequest::MeterConfig {
                meter_id: shg_flows::action::meter::ALL,
            })
            .await?
        {
            if let MultipartReply::MeterConfig(m) = part {
                s.meters.extend(m);
            }
        }
        Ok(s)
    }

    /// Sends `changes` back to back, then a BARRIER_REQUEST, and waits for the barrier reply.
    /// Every message before the barrier has been processed when it arrives, so any
    /// OFPT_ERROR for them has arrived too: the first refused change is returned (the others
    /// were applied; the caller rolls back).
    pub async fn transaction(&mut self, changes: &[Message]) -> Result<(), OfError> {
        let mut xids = Vec::with_capacity(changes.len());
        let mut buf = Vec::new();
        for m in changes {
            let xid = self.next_xid;
            self.next_xid = self.next_xid.wrapping_add(1).max(1);
            buf.extend_from_slice(&message::encode(xid, m));
            xids.push(xid);
            if buf.len() > 256 * 1024 {
                self.io.write_all(&buf).await?;
                buf.clear();
            }
        }
        self.io.write_all(&buf).await?;
        let barrier = self.send(&Message::BarrierRequest).await?;
        self.io.flush().await?;
        let pending: BTreeSet<u32> = xids.iter().copied().collect();
        let mut first_error: Option<OfError> = None;
        loop {
            let (rx, msg) = self.read_msg("the transaction's BARRIER_REPLY").await?;
            match msg {
                Message::BarrierReply if rx == barrier => break,
                Message::Error { code, data } if pending.contains(&rx) => {
                    let index = xids.iter().position(|&x| x == rx);
                    let e = refused(rx, index, code, &data);
                    let earlier = match (&first_error, index) {
                        (Some(OfError::Refused { index: Some(j), .. }), Some(i)) => i < *j,
                        (None, _) => true,
                        _ => false,
                    };
                    if earlier {
                        first_error = Some(e);
                    }
                }
                other => self.stash(other),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for the next asynchronous message (or returns the oldest one kept).
    pub async fn next_event(&mut self) -> Result<Message, OfError> {
        if let Some(m) = self.events.pop_front() {
            return Ok(m);
        }
        loop {
            // No deadline: an idle switch sends echo requests, answered in read_frame.
            let (_, msg) = self.read_frame().await?;
            if let Some(m) = self.answer_or_keep(msg).await? {
                return Ok(m);
            }
        }
    }

    /// Reads the next message of any kind (echo requests included, unanswered), without a
    /// deadline. Cancel-safe on a TCP stream: bytes read are kept in the connection's buffer,
    /// so a `select!` that drops this future loses nothing. The caller answers echo requests
    /// with [`OfConn::reply_echo`]. Messages stashed during earlier requests come first.
    pub async fn recv(&mut self) -> Result<(u32, Message), OfError> {
        if let Some(m) = self.events.pop_front() {
            return Ok((0, m));
        }
        self.read_frame().await
    }

    /// Answers an ECHO_REQUEST with the same xid and payload.
    pub async fn reply_echo(&mut self, xid: u32, data: Vec<u8>) -> Result<(), OfError> {
        self.io
            .write_all(&message::encode(xid, &Message::EchoReply(data)))
            .await?;
        self.io.flush().await?;
        Ok(())
    }

    /// Sends one message without waiting for anything (e.g. an ECHO_REQUEST keepalive).
    pub async fn post(&mut self, m: &Message) -> Result<u32, OfError> {
        let xid = self.send(m).await?;
        self.io.flush().await?;
        Ok(xid)
    }

    fn stash(&mut self, msg: Message) {
        match msg {
            Message::PacketIn(_) | Message::PortStatus { .. } | Message::FlowRemoved(_) => {
                if self.events.len() >= 4096 {
                    self.events.pop_front();
                }
                self.events.push_back(msg)
            }
            other => tracing::debug!(message = name(&other), "unexpected message ignored"),
        }
    }

    /// Reads the next message that is not an echo request, within the timeout.
    async fn read_msg(&mut self, what: &str) -> Result<(u32, Message), OfError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let (xid, msg) = tokio::time::timeout_at(deadline, self.read_frame())
                .await
                .map_err(|_| OfError::Timeout(what.to_string()))??;
            if let Message::EchoRequest(data) = msg {
                self.io
                    .write_all(&message::encode(xid, &Message::EchoReply(data)))
                    .await?;
                continue;
            }
            return Ok((xid, msg));
        }
    }

    async fn answer_or_keep(&mut self, msg: Message) -> Result<Option<Message>, OfError> {
        match msg {
            Message::EchoRequest(data) => {
                // The xid of an echo reply should match, but the switch does not check it.
                self.send(&Message::EchoReply(data)).await?;
                Ok(None)
            }
            other => Ok(Some(other)),
        }
    }

    async fn read_frame(&mut self) -> Result<(u32, Message), OfError> {
        loop {
            if let Some(len) = frame_len(&self.rbuf) {
                if !(8..=MAX_MSG).contains(&len) {
                    return Err(OfError::Protocol(format!("message length {len}")));
                }
                if self.rbuf.len() >= len {
                    let frame: Vec<u8> = self.rbuf.drain(..len).collect();
                    return message::decode(&frame).map_err(|e| {
                        OfError::Protocol(format!("undecodable message from the switch: {e}"))
                    });
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                return Err(OfError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the switch closed the connection",
                )));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn refused(xid: u32, index: Option<usize>, code: ErrorCode, data: &[u8]) -> OfError {
    let detail = match message::decode(data) {
        Ok((_, m)) => format!("offending message: {}", name(&m)),
        Err(_) => String::new(),
    };
    OfError::Refused {
        xid,
        index,
        code,
        detail,
    }
}

/// A short name for a message, for errors and logs.
pub fn name(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "HELLO",
        Message::Error { .. } | Message::ErrorExperimenter { .. } => "ERROR",
        Message::EchoRequest(_) => "ECHO_REQUEST",
        Message::EchoReply(_) => "ECHO_REPLY",
        Message::Experimenter { .. } => "EXPERIMENTER",
        Message::FeaturesRequest => "FEATURES_REQUEST",
        Message::FeaturesReply(_) => "FEATURES_REPLY",
        Message::GetConfigRequest => "GET_CONFIG_REQUEST",
        Message::GetConfigReply(_) => "GET_CONFIG_REPLY",
        Message::SetConfig(_) => "SET_CONFIG",
        Message::PacketIn(_) => "PACKET_IN",
        Message::FlowRemoved(_) => "FLOW_REMOVED",
        Message::PortStatus { .. } => "PORT_STATUS",
        Message::PacketOut(_) => "PACKET_OUT",
        Message::FlowMod(_) => "FLOW_MOD",
        Message::GroupMod(_) => "GROUP_MOD",
        Message::PortMod(_) => "PORT_MOD",
        Message::TableMod { .. } => "TABLE_MOD",
        Message::MultipartRequest { .. } => "MULTIPART_REQUEST",
        Message::MultipartReply { .. } => "MULTIPART_REPLY",
        Message::BarrierRequest => "BARRIER_REQUEST",
        Message::BarrierReply => "BARRIER_REPLY",
        Message::QueueGetConfigRequest { .. } => "QUEUE_GET_CONFIG_REQUEST",
        Message::QueueGetConfigReply { .. } => "QUEUE_GET_CONFIG_REPLY",
        Message::RoleRequest(_) => "ROLE_REQUEST",
        Message::RoleReply(_) => "ROLE_REPLY",
        Message::GetAsyncRequest => "GET_ASYNC_REQUEST",
        Message::GetAsyncReply(_) => "GET_ASYNC_REPLY",
        Message::SetAsync(_) => "SET_ASYNC",
        Message::MeterMod(_) => "METER_MOD",
        Message::Unknown { .. } => "unknown message",
    }
}
