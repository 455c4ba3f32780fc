//! OpenFlow 1.3 messages: header, the `Message` enum, decode and encode of every type.
//!
//! Bytes enter through [`decode`] (exactly one message) or [`HeaderView::new_checked`] and
//! [`frame_len`] (splitting a TCP stream); every length field is checked, so a malformed or
//! truncated message is an [`Error`] with its wire code, never a panic. Unknown message types
//! decode to [`Message::Unknown`] (the switch answers `OFPBRC_BAD_TYPE`), unknown values
//! inside messages to `Unknown(..)` values. Multipart bodies live in [`super::multipart`],
//! `ofp_port` in [`super::port`]. This module never does I/O.

use crate::error::{BadRequestCode, Error, ErrorCode, Result};
use crate::macros::wire_enum;
use crate::mods::{
    Bucket, FlowMod, FlowModCommand, GroupMod, GroupModCommand, GroupType, MeterBand, MeterMod,
    MeterModCommand,
};
use crate::wire::action::{decode_actions, encode_actions};
use crate::wire::buf::{Reader, Writer};
use crate::wire::instruction::{decode_instructions, encode_instructions};
use crate::wire::multipart::{MultipartReply, MultipartRequest};
use crate::wire::oxm::{decode_match, encode_match};
use crate::wire::port::Port;

use crate::matches::Match;

/// The protocol version this crate speaks (OpenFlow 1.3).
pub const OFP_VERSION: u8 = 0x04;
/// Bytes in `ofp_header`.
pub const HEADER_LEN: usize = 8;
/// Bytes of an offending message echoed back in an OFPT_ERROR.
pub const ERROR_DATA_LEN: usize = 64;

wire_enum! {
    /// `ofp_type`.
    pub enum MsgType: u8 {
        Hello = 0, Error = 1, EchoRequest = 2, EchoReply = 3, Experimenter = 4,
        FeaturesRequest = 5, FeaturesReply = 6, GetConfigRequest = 7, GetConfigReply = 8,
        SetConfig = 9, PacketIn = 10, FlowRemoved = 11, PortStatus = 12, PacketOut = 13,
        FlowMod = 14, GroupMod = 15, PortMod = 16, TableMod = 17, MultipartRequest = 18,
        MultipartReply = 19, BarrierRequest = 20, BarrierReply = 21,
        QueueGetConfigRequest = 22, QueueGetConfigReply = 23, RoleRequest = 24,
        RoleReply = 25, GetAsyncRequest = 26, GetAsyncReply = 27, SetAsync = 28,
        MeterMod = 29,
    }
}

/// `ofp_header`, as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub typ: MsgType,
    /// Length of the whole message, header included.
    pub length: u16,
    pub xid: u32,
}

impl Header {
    /// Writes the 8 header bytes.
    pub fn encode(&self, w: &mut Writer) {
        w.u8(self.version);
        w.u8(self.typ.into());
        w.u16(self.length);
        w.u32(self.xid);
    }
}

/// A zero-copy view of an `ofp_header` at the start of a buffer. [`HeaderView::new_checked`]
/// checks the 8 bytes and the length field (>= 8); the accessors read only those 8 bytes.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<'a> {
    bytes: &'a [u8; HEADER_LEN],
}

impl<'a> HeaderView<'a> {
    /// A view over `buf`, which may hold more than one message (a TCP stream) or only the
    /// header. Fails with `OFPBRC_BAD_LEN` when fewer than 8 bytes are given or the length
    /// field is below 8.
    pub fn new_checked(buf: &'a [u8]) -> Result<HeaderView<'a>> {
        let bytes: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                Error::bad_len(format!("ofp_header needs 8 bytes, got {}", buf.len())).at(0)
            })?;
        let view = HeaderView { bytes };
        if usize::from(view.length()) < HEADER_LEN {
            return Err(
                Error::bad_len(format!("ofp_header length {} is below 8", view.length())).at(2),
            );
        }
        Ok(view)
    }
    pub fn version(&self) -> u8 {
        self.bytes[0]
    }
    pub fn typ(&self) -> MsgType {
        MsgType::from(self.bytes[1])
    }
    pub fn length(&self) -> u16 {
        u16::from_be_bytes([self.bytes[2], self.bytes[3]])
    }
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes([self.bytes[4], self.bytes[5], self.bytes[6], self.bytes[7]])
    }
    /// The header as a value.
    pub fn header(&self) -> Header {
        Header {
            version: self.version(),
            typ: self.typ(),
            length: self.length(),
            xid: self.xid(),
        }
    }
}

/// For splitting a TCP stream: the length of the message at the start of `buf`, or `None`
/// until its 8 header bytes are there, or when its length field is below 8 (a broken stream:
/// the caller should drop the connection; [`HeaderView::new_checked`] says why).
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    // Called on every read, mostly with a partial header: no error (and its message) is built.
    let len = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
    (buf.len() >= HEADER_LEN && len >= HEADER_LEN).then_some(len)
}

/// One element of an OFPT_HELLO (`ofp_hello_elem_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloElement {
    /// OFPHET_VERSIONBITMAP: bit `v` of word `v / 32` set when version `v` is supported.
    VersionBitmap(Vec<u32>),
    /// Any other element type: its body (after the 4-byte header, without padding).
    Unknown { typ: u16, body: Vec<u8> },
}

impl HelloElement {
    /// A version bitmap with exactly these versions set.
    pub fn versions(versions: &[u8]) -> HelloElement {
        let words = versions
            .iter()
            .map(|v| usize::from(*v / 32))
            .max()
            .map_or(0, |m| m + 1);
        let mut bitmap = vec![0u32; words];
        for v in versions {
            bitmap[usize::from(*v / 32)] |= 1 << (v % 32);
        }
        HelloElement::VersionBitmap(bitmap)
    }
}

/// OFPT_FEATURES_REPLY (`ofp_switch_features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchFeatures {
    pub datapath_id: u64,
    pub n_buffers: u32,
    pub n_tables: u8,
    pub auxiliary_id: u8,
    /// `ofp_capabilities` bits.
    pub capabilities: u32,
    pub reserved: u32,
}

/// `ofp_capabilities` bits.
pub mod capabilities {
    pub const FLOW_STATS: u32 = 1 << 0;
    pub const TABLE_STATS: u32 = 1 << 1;
    pub const PORT_STATS: u32 = 1 << 2;
    pub const GROUP_STATS: u32 = 1 << 3;
    pub const IP_REASM: u32 = 1 << 5;
    pub const QUEUE_STATS: u32 = 1 << 6;
    pub const PORT_BLOCKED: u32 = 1 << 8;
}

/// OFPT_GET_CONFIG_REPLY and OFPT_SET_CONFIG (`ofp_switch_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwitchConfig {
    /// `ofp_config_flags` (fragment handling).
    pub flags: u16,
    /// Bytes of a table-miss packet sent to the controller.
    pub miss_send_len: u16,
}

wire_enum! {
    /// `ofp_packet_in_reason`.
    pub enum PacketInReason: u8 { NoMatch = 0, Action = 1, InvalidTtl = 2 }
}

/// OFPT_PACKET_IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    pub buffer_id: u32,
    /// Full length of the frame (`data` may be shorter).
    pub total_len: u16,
    pub reason: PacketInReason,
    pub table_id: u8,
    pub cookie: u64,
    pub r#match: Match,
    pub data: Vec<u8>,
}

wire_enum! {
    /// `ofp_flow_removed_reason`.
    pub enum FlowRemovedReason: u8 { IdleTimeout = 0, HardTimeout = 1, Delete = 2, GroupDelete = 3 }
}

/// OFPT_FLOW_REMOVED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRemoved {
    pub cookie: u64,
    pub priority: u16,
    pub reason: FlowRemovedReason,
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub packet_count: u64,
    pub byte_count: u64,
    pub r#match: Match,
}

wire_enum! {
    /// `ofp_port_reason`.
    pub enum PortReason: u8 { Add = 0, Delete = 1, Modify = 2 }
}

/// OFPT_PACKET_OUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    pub buffer_id: u32,
    pub in_port: u32,
    pub actions: Vec<crate::action::Action>,
    /// The frame (empty when `buffer_id` names a buffered packet).
    pub data: Vec<u8>,
}

/// OFPT_PORT_MOD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortMod {
    pub port_no: u32,
    pub hw_addr: [u8; 6],
    /// New `ofp_port_config` bits, applied where `mask` is set.
    pub config: u32,
    pub mask: u32,
    /// `ofp_port_features` to advertise, or 0 to leave unchanged.
    pub advertise: u32,
}

/// One queue property (`ofp_queue_prop_*`). Rates are in 1/10 of a percent; above 1000
/// means disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueProp {
    MinRate(u16),
    MaxRate(u16),
    Experimenter {
        experimenter: u32,
        data: Vec<u8>,
    },
    /// Unknown property type: the body after the 8-byte property header.
    Unknown {
        typ: u16,
        body: Vec<u8>,
    },
}

/// One `ofp_packet_queue` in a QUEUE_GET_CONFIG reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketQueue {
    pub queue_id: u32,
    pub port: u32,
    pub properties: Vec<QueueProp>,
}

wire_enum! {
    /// `ofp_controller_role`.
    pub enum ControllerRole: u32 { NoChange = 0, Equal = 1, Master = 2, Slave = 3 }
}

/// OFPT_ROLE_REQUEST / OFPT_ROLE_REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub role: ControllerRole,
    pub generation_id: u64,
}

/// OFPT_GET_ASYNC_REPLY / OFPT_SET_ASYNC: `[master/equal, slave]` masks per event kind
/// (bit `n` set = send messages with reason `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AsyncConfig {
    pub packet_in_mask: [u32; 2],
    pub port_status_mask: [u32; 2],
    pub flow_removed_mask: [u32; 2],
}

/// `ofp_multipart_request_flags` / `ofp_multipart_reply_flags`.
pub mod multipart_flags {
    /// More requests follow (OFPMPF_REQ_MORE).
    pub const REQ_MORE: u16 = 1;
    /// More replies follow (OFPMPF_REPLY_MORE).
    pub const REPLY_MORE: u16 = 1;
}

/// One OpenFlow 1.3 message, without its xid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OFPT_HELLO at any version (the version is what negotiation looks at).
    Hello {
        version: u8,
        elements: Vec<HelloElement>,
    },
    /// OFPT_ERROR of a standard type. `data` is (the start of) the offending message.
    /// An `ErrorCode::Other` with type 0xffff encodes as an experimenter error with no
    /// experimenter id; use [`Message::ErrorExperimenter`] for those.
    Error {
        code: ErrorCode,
        data: Vec<u8>,
    },
    /// OFPT_ERROR with type OFPET_EXPERIMENTER.
    ErrorExperimenter {
        exp_type: u16,
        experimenter: u32,
        data: Vec<u8>,
    },
    EchoRequest(Vec<u8>),
    EchoReply(Vec<u8>),
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
    FeaturesRequest,
    FeaturesReply(SwitchFeatures),
    GetConfigRequest,
    GetConfigReply(SwitchConfig),
    SetConfig(SwitchConfig),
    PacketIn(PacketIn),
    FlowRemoved(FlowRemoved),
    PortStatus {
        reason: PortReason,
        port: Port,
    },
    PacketOut(PacketOut),
    FlowMod(FlowMod),
    GroupMod(GroupMod),
    PortMod(PortMod),
    /// OFPT_TABLE_MOD (`config` is reserved in 1.3: 0 or the deprecated 3).
    TableMod {
        table_id: u8,
        config: u32,
    },
    /// OFPT_MULTIPART_REQUEST; `flags` may carry [`multipart_flags::REQ_MORE`].
    MultipartRequest {
        flags: u16,
        body: MultipartRequest,
    },
    /// OFPT_MULTIPART_REPLY; `flags` may carry [`multipart_flags::REPLY_MORE`].
    MultipartReply {
        flags: u16,
        body: MultipartReply,
    },
    BarrierRequest,
    BarrierReply,
    QueueGetConfigRequest {
        port: u32,
    },
    QueueGetConfigReply {
        port: u32,
        queues: Vec<PacketQueue>,
    },
    RoleRequest(Role),
    RoleReply(Role),
    GetAsyncRequest,
    GetAsyncReply(AsyncConfig),
    SetAsync(AsyncConfig),
    MeterMod(MeterMod),
    /// A message type this implementation does not know (answer: OFPBRC_BAD_TYPE).
    /// `typ` should not be a known type number, or it will decode as that type.
    Unknown {
        typ: u8,
        body: Vec<u8>,
    },
}

impl Message {
    /// The `ofp_type` this message is sent as.
    pub fn msg_type(&self) -> MsgType {
        use Message as M;
        match self {
            M::Hello { .. } => MsgType::Hello,
            M::Error { .. } | M::ErrorExperimenter { .. } => MsgType::Error,
            M::EchoRequest(_) => MsgType::EchoRequest,
            M::EchoReply(_) => MsgType::EchoReply,
            M::Experimenter { .. } => MsgType::Experimenter,
            M::FeaturesRequest => MsgType::FeaturesRequest,
            M::FeaturesReply(_) => MsgType::FeaturesReply,
            M::GetConfigRequest => MsgType::GetConfigRequest,
            M::GetConfigReply(_) => MsgType::GetConfigReply,
            M::SetConfig(_) => MsgType::SetConfig,
            M::PacketIn(_) => MsgType::PacketIn,
            M::FlowRemoved(_) => MsgType::FlowRemoved,
            M::PortStatus { .. } => MsgType::PortStatus,
            M::PacketOut(_) => MsgType::PacketOut,
            M::FlowMod(_) => MsgType::FlowMod,
            M::GroupMod(_) => MsgType::GroupMod,
            M::PortMod(_) => MsgType::PortMod,
            M::TableMod { .. } => MsgType::TableMod,
            M::MultipartRequest { .. } => MsgType::MultipartRequest,
            M::MultipartReply { .. } => MsgType::MultipartReply,
            M::BarrierRequest => MsgType::BarrierRequest,
            M::BarrierReply => MsgType::BarrierReply,
            M::QueueGetConfigRequest { .. } => MsgType::QueueGetConfigRequest,
            M::QueueGetConfigReply { .. } => MsgType::QueueGetConfigReply,
            M::RoleRequest(_) => MsgType::RoleRequest,
            M::RoleReply(_) => MsgType::RoleReply,
            M::GetAsyncRequest => MsgType::GetAsyncRequest,
            M::GetAsyncReply(_) => MsgType::GetAsyncReply,
            M::SetAsync(_) => MsgType::SetAsync,
            M::MeterMod(_) => MsgType::MeterMod,
            M::Unknown { typ, .. } => MsgType::from(*typ),
        }
    }
}

/// Fails with `OFPBRC_BAD_LEN` unless everything in `r` was read.
pub(crate) fn expect_end(r: &Reader<'_>, what: &str) -> Result<()> {
    if r.is_empty() {
        Ok(())
    } else {
        Err(Error::bad_len(format!(
            "{what}: {} unexpected trailing bytes",
            r.remaining()
        ))
        .at(r.offset()))
    }
}

/// Reads a TLV length at the reader's position (`len_at` bytes in), checks it is at least
/// `min` and fits, and splits off a reader over the whole TLV.
pub(crate) fn take_tlv<'a>(
    r: &mut Reader<'a>,
    len_at: usize,
    min: usize,
    what: &str,
) -> Result<Reader<'a>> {
    let at = r.offset();
    let mut peek = r.clone();
    peek.skip(len_at, what)?;
    let len = usize::from(peek.u16(what)?);
    if len < min {
        return Err(Error::bad_len(format!("{what}: length {len} is below {min}")).at(at + len_at));
    }
    if len > r.remaining() {
        return Err(Error::bad_len(format!(
            "{what}: length {len} runs past the {} bytes left",
            r.remaining()
        ))
        .at(at + len_at));
    }
    r.sub(len, what)
}

/// Bytes of padding after `len` bytes to reach a multiple of 8.
pub(crate) fn pad8(len: usize) -> usize {
    (8 - len % 8) % 8
}

/// Reads a whole reader of `ofp_bucket`s.
pub fn decode_buckets(r: &mut Reader<'_>) -> Result<Vec<Bucket>> {
    let mut buckets = Vec::new();
    while !r.is_empty() {
        let mut b = take_tlv(r, 0, 16, "ofp_bucket")?;
        b.skip(2, "ofp_bucket.len")?;
        let weight = b.u16("ofp_bucket.weight")?;
        let watch_port = b.u32("ofp_bucket.watch_port")?;
        let watch_group = b.u32("ofp_bucket.watch_group")?;
        b.skip(4, "ofp_bucket pad")?;
        let n = b.remaining();
        let actions = decode_actions(&mut b, n)?;
        expect_end(&b, "ofp_bucket actions")?;
        buckets.push(Bucket {
            weight,
            watch_port,
            watch_group,
            actions,
        });
    }
    Ok(buckets)
}

/// Writes `ofp_bucket`s.
pub fn encode_buckets(buckets: &[Bucket], w: &mut Writer) {
    for b in buckets {
        let start = w.len();
        w.u16(0);
        w.u16(b.weight);
        w.u32(b.watch_port);
        w.u32(b.watch_group);
        w.zeros(4);
        encode_actions(&b.actions, w);
        w.patch_len_since(start, start);
    }
}

/// Reads a whole reader of `ofp_meter_band_*`.
pub fn decode_bands(r: &mut Reader<'_>) -> Result<Vec<MeterBand>> {
    let mut bands = Vec::new();
    while !r.is_empty() {
        let mut b = take_tlv(r, 2, 12, "ofp_meter_band")?;
        let typ = b.u16("ofp_meter_band.type")?;
        b.skip(2, "ofp_meter_band.len")?;
        let rate = b.u32("ofp_meter_band.rate")?;
        let burst_size = b.u32("ofp_meter_band.burst_size")?;
        let band = match typ {
            1 => {
                b.skip(4, "ofp_meter_band_drop pad")?;
                MeterBand::Drop { rate, burst_size }
            }
            2 => {
                let prec_level = b.u8("ofp_meter_band_dscp_remark.prec_level")?;
                b.skip(3, "ofp_meter_band_dscp_remark pad")?;
                MeterBand::DscpRemark {
                    rate,
                    burst_size,
                    prec_level,
                }
            }
            0xffff => {
                let experimenter = b.u32("ofp_meter_band_experimenter.experimenter")?;
                MeterBand::Experimenter {
                    rate,
                    burst_size,
                    experimenter,
                    data: b.rest().to_vec(),
                }
            }
            _ => MeterBand::Unknown {
                typ,
                rate,
                burst_size,
                body: b.rest().to_vec(),
            },
        };
        expect_end(&b, "ofp_meter_band")?;
        bands.push(band);
    }
    Ok(bands)
}

/// Writes `ofp_meter_band_*`.
pub fn encode_bands(bands: &[MeterBand], w: &mut Writer) {
    for band in bands {
        let start = w.len();
        let typ = match band {
            MeterBand::Drop { .. } => 1,
            MeterBand::DscpRemark { .. } => 2,
            MeterBand::Experimenter { .. } => 0xffff,
            MeterBand::Unknown { typ, .. } => *typ,
        };
        w.u16(typ);
        w.u16(0);
        w.u32(band.rate());
        w.u32(band.burst_size());
        match band {
            MeterBand::Drop { .. } => w.zeros(4),
            MeterBand::DscpRemark { prec_level, .. } => {
                w.u8(*prec_level);
                w.zeros(3);
            }
            MeterBand::Experimenter {
                experimenter, data, ..
            } => {
                w.u32(*experimenter);
                w.bytes(data);
            }
            MeterBand::Unknown { body, .. } => w.bytes(body),
        }
        w.patch_len_since(start + 2, start);
    }
}

fn decode_hello_elements(r: &mut Reader<'_>) -> Result<Vec<HelloElement>> {
    let mut elements = Vec::new();
    while !r.is_empty() {
        let mut e = take_tlv(r, 2, 4, "ofp_hello_elem")?;
        let len = e.remaining();
        let typ = e.u16("ofp_hello_elem.type")?;
        e.skip(2, "ofp_hello_elem.length")?;
        let element = if typ == 1 {
            if e.remaining() % 4 != 0 {
                return Err(
                    Error::bad_len("version bitmap length is not a multiple of 4").at(e.offset()),
                );
            }
            let mut words = Vec::with_capacity(e.remaining() / 4);
            while !e.is_empty() {
                words.push(e.u32("ofp_hello_elem_versionbitmap.bitmaps")?);
            }
            HelloElement::VersionBitmap(words)
        } else {
            HelloElement::Unknown {
                typ,
                body: e.rest().to_vec(),
            }
        };
        r.skip(pad8(len), "ofp_hello_elem padding")?;
        elements.push(element);
    }
    Ok(elements)
}

fn encode_hello_elements(elements: &[HelloElement], w: &mut Writer) {
    for e in elements {
        let start = w.len();
        match e {
            HelloElement::VersionBitmap(words) => {
                w.u16(1);
                w.u16(0);
                for v in words {
                    w.u32(*v);
                }
            }
            HelloElement::Unknown { typ, body } => {
                w.u16(*typ);
                w.u16(0);
                w.bytes(body);
            }
        }
        w.patch_len_since(start + 2, start);
        w.pad_to(start, 8);
    }
}

fn decode_queue_props(r: &mut Reader<'_>) -> Result<Vec<QueueProp>> {
    let mut props = Vec::new();
    while !r.is_empty() {
        let mut p = take_tlv(r, 2, 8, "ofp_queue_prop")?;
        let typ = p.u16("ofp_queue_prop.property")?;
        p.skip(6, "ofp_queue_prop header")?;
        let prop = match typ {
            1 | 2 => {
                let rate = p.u16("ofp_queue_prop rate")?;
                p.skip(6, "ofp_queue_prop rate pad")?;
                if typ == 1 {
                    QueueProp::MinRate(rate)
                } else {
                    QueueProp::MaxRate(rate)
                }
            }
            0xffff => {
                let experimenter = p.u32("ofp_queue_prop_experimenter.experimenter")?;
                p.skip(4, "ofp_queue_prop_experimenter pad")?;
                QueueProp::Experimenter {
                    experimenter,
                    data: p.rest().to_vec(),
                }
            }
            _ => QueueProp::Unknown {
                typ,
                body: p.rest().to_vec(),
            },
        };
        expect_end(&p, "ofp_queue_prop")?;
        props.push(prop);
    }
    Ok(props)
}

fn encode_queue_props(props: &[QueueProp], w: &mut Writer) {
    for p in props {
        let start = w.len();
        let typ = match p {
            QueueProp::MinRate(_) => 1,
            QueueProp::MaxRate(_) => 2,
            QueueProp::Experimenter { .. } => 0xffff,
            QueueProp::Unknown { typ, .. } => *typ,
        };
        w.u16(typ);
        w.u16(0);
        w.zeros(4);
        match p {
            QueueProp::MinRate(rate) | QueueProp::MaxRate(rate) => {
                w.u16(*rate);
                w.zeros(6);
            }
            QueueProp::Experimenter { experimenter, data } => {
                w.u32(*experimenter);
                w.zeros(4);
                w.bytes(data);
            }
            QueueProp::Unknown { body, .. } => w.bytes(body),
        }
        w.patch_len_since(start + 2, start);
    }
}

fn decode_async(r: &mut Reader<'_>) -> Result<AsyncConfig> {
    let mut a = AsyncConfig::default();
    for pair in [
        &mut a.packet_in_mask,
        &mut a.port_status_mask,
        &mut a.flow_removed_mask,
    ] {
        pair[0] = r.u32("ofp_async_config mask")?;
        pair[1] = r.u32("ofp_async_config mask")?;
    }
    Ok(a)
}

fn encode_async(a: &AsyncConfig, w: &mut Writer) {
    for pair in [a.packet_in_mask, a.port_status_mask, a.flow_removed_mask] {
        w.u32(pair[0]);
        w.u32(pair[1]);
    }
}

fn decode_role(r: &mut Reader<'_>) -> Result<Role> {
    let role = ControllerRole::from(r.u32("ofp_role_request.role")?);
    r.skip(4, "ofp_role_request pad")?;
    Ok(Role {
        role,
        generation_id: r.u64("ofp_role_request.generation_id")?,
    })
}

fn decode_config(r: &mut Reader<'_>) -> Result<SwitchConfig> {
    Ok(SwitchConfig {
        flags: r.u16("ofp_switch_config.flags")?,
        miss_send_len: r.u16("ofp_switch_config.miss_send_len")?,
    })
}

/// Decodes exactly one message. `bytes` must hold the whole message and nothing else (its
/// header length must equal `bytes.len()`, else `OFPBRC_BAD_LEN`). HELLO decodes at any
/// version; any other message not at version 0x04 is `OFPBRC_BAD_VERSION`. Unknown types
/// become [`Message::Unknown`].
pub fn decode(bytes: &[u8]) -> Result<(u32, Message)> {
    let h = HeaderView::new_checked(bytes)?;
    if usize::from(h.length()) != bytes.len() {
        return Err(Error::bad_len(format!(
            "header length {} but the message has {} bytes",
            h.length(),
            bytes.len()
        ))
        .at(2));
    }
    if h.typ() != MsgType::Hello && h.version() != OFP_VERSION {
        return Err(Error::bad_request(
            BadRequestCode::BadVersion,
            format!("version 0x{:02x}, expected 0x04", h.version()),
        )
        .at(0));
    }
    let mut r = Reader::new(bytes);
    r.skip(HEADER_LEN, "ofp_header")?;
    let msg = decode_body(h.version(), h.typ(), &mut r)?;
    expect_end(&r, "message")?;
    Ok((h.xid(), msg))
}

fn decode_body(version: u8, typ: MsgType, r: &mut Reader<'_>) -> Result<Message> {
    use Message as M;
    Ok(match typ {
        MsgType::Hello => M::Hello {
            version,
            elements: decode_hello_elements(r)?,
        },
        MsgType::Error => {
            let etype = r.u16("ofp_error_msg.type")?;
            if etype == 0xffff {
                let exp_type = r.u16("ofp_error_experimenter_msg.exp_type")?;
                let experimenter = r.u32("ofp_error_experimenter_msg.experimenter")?;
                M::ErrorExperimenter {
                    exp_type,
                    experimenter,
                    data: r.rest().to_vec(),
                }
            } else {
                let code = r.u16("ofp_error_msg.code")?;
                M::Error {
                    code: ErrorCode::from_wire(etype, code),
                    data: r.rest().to_vec(),
                }
            }
        }
        MsgType::EchoRequest => M::EchoRequest(r.rest().to_vec()),
        MsgType::EchoReply => M::EchoReply(r.rest().to_vec()),
        MsgType::Experimenter => M::Experimenter {
            experimenter: r.u32("ofp_experimenter_header.experimenter")?,
            exp_type: r.u32("ofp_experimenter_header.exp_type")?,
            data: r.rest().to_vec(),
        },
        MsgType::FeaturesRequest => M::FeaturesRequest,
        MsgType::FeaturesReply => {
            let datapath_id = r.u64("ofp_switch_features.datapath_id")?;
            let n_buffers = r.u32("ofp_switch_features.n_buffers")?;
            let n_tables = r.u8("ofp_switch_features.n_tables")?;
            let auxiliary_id = r.u8("ofp_switch_features.auxiliary_id")?;
            r.skip(2, "ofp_switch_features pad")?;
            M::FeaturesReply(SwitchFeatures {
                datapath_id,
                n_buffers,
                n_tables,
                auxiliary_id,
                capabilities: r.u32("ofp_switch_features.capabilities")?,
                reserved: r.u32("ofp_switch_features.reserved")?,
            })
        }
        MsgType::GetConfigRequest => M::GetConfigRequest,
        MsgType::GetConfigReply => M::GetConfigReply(decode_config(r)?),
        MsgType::SetConfig => M::SetConfig(decode_config(r)?),
        MsgType::PacketIn => {
            let buffer_id = r.u32("ofp_packet_in.buffer_id")?;
            let total_len = r.u16("ofp_packet_in.total_len")?;
            let reason = PacketInReason::from(r.u8("ofp_packet_in.reason")?);
            let table_id = r.u8("ofp_packet_in.table_id")?;
            let cookie = r.u64("ofp_packet_in.cookie")?;
            let r#match = decode_match(r)?;
            r.skip(2, "ofp_packet_in pad")?;
            M::PacketIn(PacketIn {
                buffer_id,
                total_len,
                reason,
                table_id,
                cookie,
                r#match,
                data: r.rest().to_vec(),
            })
        }
        MsgType::FlowRemoved => {
            let cookie = r.u64("ofp_flow_removed.cookie")?;
            let priority = r.u16("ofp_flow_removed.priority")?;
            let reason = FlowRemovedReason::from(r.u8("ofp_flow_removed.reason")?);
            let table_id = r.u8("ofp_flow_removed.table_id")?;
            M::FlowRemoved(FlowRemoved {
                cookie,
                priority,
                reason,
                table_id,
                duration_sec: r.u32("ofp_flow_removed.duration_sec")?,
                duration_nsec: r.u32("ofp_flow_removed.duration_nsec")?,
                idle_timeout: r.u16("ofp_flow_removed.idle_timeout")?,
                hard_timeout: r.u16("ofp_flow_removed.hard_timeout")?,
                packet_count: r.u64("ofp_flow_removed.packet_count")?,
                byte_count: r.u64("ofp_flow_removed.byte_count")?,
                r#match: decode_match(r)?,
            })
        }
        MsgType::PortStatus => {
            let reason = PortReason::from(r.u8("ofp_port_status.reason")?);
            r.skip(7, "ofp_port_status pad")?;
            M::PortStatus {
                reason,
                port: Port::decode(r)?,
            }
        }
        MsgType::PacketOut => {
            let buffer_id = r.u32("ofp_packet_out.buffer_id")?;
            let in_port = r.u32("ofp_packet_out.in_port")?;
            let actions_len = usize::from(r.u16("ofp_packet_out.actions_len")?);
            r.skip(6, "ofp_packet_out pad")?;
            let mut a = r.sub(actions_len, "ofp_packet_out.actions")?;
            let actions = decode_actions(&mut a, actions_len)?;
            expect_end(&a, "ofp_packet_out.actions")?;
            M::PacketOut(PacketOut {
                buffer_id,
                in_port,
                actions,
                data: r.rest().to_vec(),
            })
        }
        MsgType::FlowMod => {
            let cookie = r.u64("ofp_flow_mod.cookie")?;
            let cookie_mask = r.u64("ofp_flow_mod.cookie_mask")?;
            let table_id = r.u8("ofp_flow_mod.table_id")?;
            let command = FlowModCommand::from(r.u8("ofp_flow_mod.command")?);
            let idle_timeout = r.u16("ofp_flow_mod.idle_timeout")?;
            let hard_timeout = r.u16("ofp_flow_mod.hard_timeout")?;
            let priority = r.u16("ofp_flow_mod.priority")?;
            let buffer_id = r.u32("ofp_flow_mod.buffer_id")?;
            let out_port = r.u32("ofp_flow_mod.out_port")?;
            let out_group = r.u32("ofp_flow_mod.out_group")?;
            let flags = r.u16("ofp_flow_mod.flags")?;
            r.skip(2, "ofp_flow_mod pad")?;
            let r#match = decode_match(r)?;
            let n = r.remaining();
            let instructions = decode_instructions(r, n)?;
            M::FlowMod(FlowMod {
                cookie,
                cookie_mask,
                table_id,
                command,
                idle_timeout,
                hard_timeout,
                priority,
                buffer_id,
                out_port,
                out_group,
                flags,
                r#match,
                instructions,
            })
        }
        MsgType::GroupMod => {
            let command = GroupModCommand::from(r.u16("ofp_group_mod.command")?);
            let group_type = GroupType::from(r.u8("ofp_group_mod.type")?);
            r.skip(1, "ofp_group_mod pad")?;
            let group_id = r.u32("ofp_group_mod.group_id")?;
            M::GroupMod(GroupMod {
                command,
                group_type,
                group_id,
                buckets: decode_buckets(r)?,
            })
        }
        MsgType::PortMod => {
            let port_no = r.u32("ofp_port_mod.port_no")?;
            r.skip(4, "ofp_port_mod pad")?;
            let hw_addr = r.array::<6>("ofp_port_mod.hw_addr")?;
            r.skip(2, "ofp_port_mod pad")?;
            let config = r.u32("ofp_port_mod.config")?;
            let mask = r.u32("ofp_port_mod.mask")?;
            let advertise = r.u32("ofp_port_mod.advertise")?;
            r.skip(4, "ofp_port_mod pad")?;
            M::PortMod(PortMod {
                port_no,
                hw_addr,
                config,
                mask,
                advertise,
            })
        }
        MsgType::TableMod => {
            let table_id = r.u8("ofp_table_mod.table_id")?;
            r.skip(3, "ofp_table_mod pad")?;
            M::TableMod {
                table_id,
                config: r.u32("ofp_table_mod.config")?,
            }
        }
        MsgType::MultipartRequest => {
            let (mtype, flags) = multipart_header(r)?;
            M::MultipartRequest {
                flags,
                body: MultipartRequest::decode(mtype, r)?,
            }
        }
        MsgType::MultipartReply => {
            let (mtype, flags) = multipart_header(r)?;
            M::MultipartReply {
                flags,
                body: MultipartReply::decode(mtype, r)?,
            }
        }
        MsgType::BarrierRequest => M::BarrierRequest,
        MsgType::BarrierReply => M::BarrierReply,
        MsgType::QueueGetConfigRequest => {
            let port = r.u32("ofp_queue_get_config_request.port")?;
            r.skip(4, "ofp_queue_get_config_request pad")?;
            M::QueueGetConfigRequest { port }
        }
        MsgType::QueueGetConfigReply => {
            let port = r.u32("ofp_queue_get_config_reply.port")?;
            r.skip(4, "ofp_queue_get_config_reply pad")?;
            let mut queues = Vec::new();
            while !r.is_empty() {
                let mut q = take_tlv(r, 8, 16, "ofp_packet_queue")?;
                let queue_id = q.u32("ofp_packet_queue.queue_id")?;
                let port = q.u32("ofp_packet_queue.port")?;
                q.skip(8, "ofp_packet_queue len/pad")?;
                queues.push(PacketQueue {
                    queue_id,
                    port,
                    properties: decode_queue_props(&mut q)?,
                });
            }
            M::QueueGetConfigReply { port, queues }
        }
        MsgType::RoleRequest => M::RoleRequest(decode_role(r)?),
        MsgType::RoleReply => M::RoleReply(decode_role(r)?),
        MsgType::GetAsyncRequest => M::GetAsyncRequest,
        MsgType::GetAsyncReply => M::GetAsyncReply(decode_async(r)?),
        MsgType::SetAsync => M::SetAsync(decode_async(r)?),
        MsgType::MeterMod => {
            let command = MeterModCommand::from(r.u16("ofp_meter_mod.command")?);
            let flags = r.u16("ofp_meter_mod.flags")?;
            let meter_id = r.u32("ofp_meter_mod.meter_id")?;
            M::MeterMod(MeterMod {
                command,
                flags,
                meter_id,
                bands: decode_bands(r)?,
            })
        }
        MsgType::Unknown(typ) => M::Unknown {
            typ,
            body: r.rest().to_vec(),
        },
    })
}

fn multipart_header(r: &mut Reader<'_>) -> Result<(u16, u16)> {
    let mtype = r.u16("ofp_multipart.type")?;
    let flags = r.u16("ofp_multipart.flags")?;
    r.skip(4, "ofp_multipart pad")?;
    Ok((mtype, flags))
}

/// Encodes one message with this xid. HELLO goes out at its own `version`, everything else
/// at 0x04. A message over 65535 bytes is a caller bug: its length field saturates.
pub fn encode(xid: u32, m: &Message) -> Vec<u8> {
    let version = match m {
        Message::Hello { version, .. } => *version,
        _ => OFP_VERSION,
    };
    let mut w = Writer::new();
    Header {
        version,
        typ: m.msg_type(),
        length: 0,
        xid,
    }
    .encode(&mut w);
    encode_body(m, &mut w);
    w.patch_len_since(2, 0);
    w.buf
}

fn encode_body(m: &Message, w: &mut Writer) {
    use Message as M;
    match m {
        M::Hello { elements, .. } => encode_hello_elements(elements, w),
        M::Error { code, data } => {
            let (t, c) = code.wire();
            w.u16(t);
            w.u16(c);
            w.bytes(data);
        }
        M::ErrorExperimenter {
            exp_type,
            experimenter,
            data,
        } => {
            w.u16(0xffff);
            w.u16(*exp_type);
            w.u32(*experimenter);
            w.bytes(data);
        }
        M::EchoRequest(data) | M::EchoReply(data) => w.bytes(data),
        M::Experimenter {
            experimenter,
            exp_type,
            data,
        } => {
            w.u32(*experimenter);
            w.u32(*exp_type);
            w.bytes(data);
        }
        M::FeaturesRequest
        | M::GetConfigRequest
        | M::BarrierRequest
        | M::BarrierReply
        | M::GetAsyncRequest => {}
        M::FeaturesReply(f) => {
            w.u64(f.datapath_id);
            w.u32(f.n_buffers);
            w.u8(f.n_tables);
            w.u8(f.auxiliary_id);
            w.zeros(2);
            w.u32(f.capabilities);
            w.u32(f.reserved);
        }
        M::GetConfigReply(c) | M::SetConfig(c) => {
            w.u16(c.flags);
            w.u16(c.miss_send_len);
        }
        M::PacketIn(p) => {
            w.u32(p.buffer_id);
            w.u16(p.total_len);
            w.u8(p.reason.into());
            w.u8(p.table_id);
            w.u64(p.cookie);
            encode_match(&p.r#match, w);
            w.zeros(2);
            w.bytes(&p.data);
        }
        M::FlowRemoved(f) => {
            w.u64(f.cookie);
            w.u16(f.priority);
            w.u8(f.reason.into());
            w.u8(f.table_id);
            w.u32(f.duration_sec);
            w.u32(f.duration_nsec);
            w.u16(f.idle_timeout);
            w.u16(f.hard_timeout);
            w.u64(f.packet_count);
            w.u64(f.byte_count);
            encode_match(&f.r#match, w);
        }
        M::PortStatus { reason, port } => {
            w.u8((*reason).into());
            w.zeros(7);
            port.encode(w);
        }
        M::PacketOut(p) => {
            w.u32(p.buffer_id);
            w.u32(p.in_port);
            let len_at = w.len();
            w.u16(0);
            w.zeros(6);
            let start = w.len();
            encode_actions(&p.actions, w);
            w.patch_len_since(len_at, start);
            w.bytes(&p.data);
        }
        M::FlowMod(f) => {
            w.u64(f.cookie);
            w.u64(f.cookie_mask);
            w.u8(f.table_id);
            w.u8(f.command.into());
            w.u16(f.idle_timeout);
            w.u16(f.hard_timeout);
            w.u16(f.priority);
            w.u32(f.buffer_id);
            w.u32(f.out_port);
            w.u32(f.out_group);
            w.u16(f.flags);
            w.zeros(2);
            encode_match(&f.r#match, w);
            encode_instructions(&f.instructions, w);
        }
        M::GroupMod(g) => {
            w.u16(g.command.into());
            w.u8(g.group_type.into());
            w.zeros(1);
            w.u32(g.group_id);
            encode_buckets(&g.buckets, w);
        }
        M::PortMod(p) => {
            w.u32(p.port_no);
            w.zeros(4);
            w.bytes(&p.hw_addr);
            w.zeros(2);
            w.u32(p.config);
            w.u32(p.mask);
            w.u32(p.advertise);
            w.zeros(4);
        }
        M::TableMod { table_id, config } => {
            w.u8(*table_id);
            w.zeros(3);
            w.u32(*config);
        }
        M::MultipartRequest { flags, body } => {
            w.u16(body.multipart_type());
            w.u16(*flags);
            w.zeros(4);
            body.encode(w);
        }
        M::MultipartReply { flags, body } => {
            w.u16(body.multipart_type());
            w.u16(*flags);
            w.zeros(4);
            body.encode(w);
        }
        M::QueueGetConfigRequest { port } => {
            w.u32(*port);
            w.zeros(4);
        }
        M::QueueGetConfigReply { port, queues } => {
            w.u32(*port);
            w.zeros(4);
            for q in queues {
                let start = w.len();
                w.u32(q.queue_id);
                w.u32(q.port);
                w.u16(0);
                w.zeros(6);
                encode_queue_props(&q.properties, w);
                w.patch_len_since(start + 8, start);
            }
        }
        M::RoleRequest(role) | M::RoleReply(role) => {
            w.u32(role.role.into());
            w.zeros(4);
            w.u64(role.generation_id);
        }
        M::GetAsyncReply(a) | M::SetAsync(a) => encode_async(a, w),
        M::MeterMod(mm) => {
            w.u16(mm.command.into());
            w.u16(mm.flags);
            w.u32(mm.meter_id);
            encode_bands(&mm.bands, w);
        }
        M::Unknown { body, .. } => w.bytes(body),
    }
}

/// The OFPT_ERROR answering a bad message: the error's (type, code) and, as the spec asks,
/// the first 64 bytes of the offending message (all of it when shorter).
pub fn error_reply(err: &Error, offending: &[u8]) -> Message {
    let n = offending.len().min(ERROR_DATA_LEN);
    let data = offending.get(..n).unwrap_or(offending).to_vec();
    match err.code {
        ErrorCode::Experimenter {
            exp_type,
            experimenter,
        } => Message::ErrorExperimenter {
            exp_type,
            experimenter,
            data,
        },
        code => Message::Error { code, data },
    }
}
