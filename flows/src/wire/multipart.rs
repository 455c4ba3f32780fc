//! OFPT_MULTIPART_REQUEST/REPLY bodies: every `ofp_multipart_type`, typed, and the stats,
//! description and feature structs they carry (table features in [`super::table_features`]).
//!
//! Every length inside a body is checked (`OFPBRC_BAD_LEN`); an unknown multipart type is
//! kept raw so the switch can answer `OFPBRC_BAD_MULTIPART`. No I/O here.

use crate::action::Instruction;
use crate::error::{Error, Result};
use crate::macros::wire_enum;
use crate::matches::Match;
use crate::mods::{Bucket, GroupType, MeterBand};
use crate::wire::buf::{Reader, Writer};
use crate::wire::instruction::{decode_instructions, encode_instructions};
use crate::wire::message::{
    decode_bands, decode_buckets, encode_bands, encode_buckets, expect_end, take_tlv,
};
use crate::wire::oxm::{decode_match, encode_match};
use crate::wire::port::Port;
use crate::wire::table_features::TableFeatures;

wire_enum! {
    /// `ofp_multipart_type`.
    pub enum MultipartType: u16 {
        Desc = 0, Flow = 1, Aggregate = 2, Table = 3, PortStats = 4, Queue = 5, Group = 6,
        GroupDesc = 7, GroupFeatures = 8, Meter = 9, MeterConfig = 10, MeterFeatures = 11,
        TableFeatures = 12, PortDesc = 13, Experimenter = 0xffff,
    }
}

/// Bytes of the `ofp_desc` string fields.
pub const DESC_STR_LEN: usize = 256;
/// Bytes of `ofp_desc.serial_num`.
pub const SERIAL_NUM_LEN: usize = 32;

/// `ofp_flow_stats_request` / `ofp_aggregate_stats_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatsRequest {
    pub table_id: u8,
    pub out_port: u32,
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    pub r#match: Match,
}

impl Default for FlowStatsRequest {
    /// All tables, any port and group, any cookie, any match.
    fn default() -> Self {
        FlowStatsRequest {
            table_id: crate::action::OFPTT_ALL,
            out_port: crate::action::port::ANY,
            out_group: crate::action::group::ANY,
            cookie: 0,
            cookie_mask: 0,
            r#match: Match::any(),
        }
    }
}

/// A multipart request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartRequest {
    Desc,
    Flow(FlowStatsRequest),
    Aggregate(FlowStatsRequest),
    Table,
    PortStats {
        port_no: u32,
    },
    Queue {
        port_no: u32,
        queue_id: u32,
    },
    Group {
        group_id: u32,
    },
    GroupDesc,
    GroupFeatures,
    Meter {
        meter_id: u32,
    },
    MeterConfig {
        meter_id: u32,
    },
    MeterFeatures,
    /// Empty to ask; non-empty to set the tables' features.
    TableFeatures(Vec<TableFeatures>),
    PortDesc,
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
    /// A multipart type this implementation does not know: its raw body.
    Unknown {
        typ: u16,
        body: Vec<u8>,
    },
}

/// `ofp_desc`. Strings are NUL-padded on the wire (at most 255 / 31 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SwitchDesc {
    pub mfr_desc: String,
    pub hw_desc: String,
    pub sw_desc: String,
    pub serial_num: String,
    pub dp_desc: String,
}

/// `ofp_flow_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    pub table_id: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub r#match: Match,
    pub instructions: Vec<Instruction>,
}

/// `ofp_aggregate_stats_reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AggregateStats {
    pub packet_count: u64,
    pub byte_count: u64,
    pub flow_count: u32,
}

/// `ofp_table_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    pub table_id: u8,
    pub active_count: u32,
    pub lookup_count: u64,
    pub matched_count: u64,
}

/// `ofp_port_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortStats {
    pub port_no: u32,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_frame_err: u64,
    pub rx_over_err: u64,
    pub rx_crc_err: u64,
    pub collisions: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

/// `ofp_queue_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub port_no: u32,
    pub queue_id: u32,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
}

/// `ofp_bucket_counter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketCounter {
    pub packet_count: u64,
    pub byte_count: u64,
}

/// `ofp_group_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupStats {
    pub group_id: u32,
    pub ref_count: u32,
    pub packet_count: u64,
    pub byte_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub bucket_stats: Vec<BucketCounter>,
}

/// `ofp_group_desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDesc {
    pub group_type: GroupType,
    pub group_id: u32,
    pub buckets: Vec<Bucket>,
}

/// `ofp_group_features`. Arrays are indexed by group type (all, select, indirect, ff).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupFeatures {
    /// Bitmap of supported group types.
    pub types: u32,
    /// `ofp_group_capabilities` bits.
    pub capabilities: u32,
    pub max_groups: [u32; 4],
    /// Bitmaps of supported action types per group type.
    pub actions: [u32; 4],
}

/// `ofp_meter_band_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeterBandStats {
    pub packet_band_count: u64,
    pub byte_band_count: u64,
}

/// `ofp_meter_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeterStats {
    pub meter_id: u32,
    pub flow_count: u32,
    pub packet_in_count: u64,
    pub byte_in_count: u64,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub band_stats: Vec<MeterBandStats>,
}

/// `ofp_meter_config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterConfig {
    pub flags: u16,
    pub meter_id: u32,
    pub bands: Vec<MeterBand>,
}

/// `ofp_meter_features`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MeterFeatures {
    pub max_meter: u32,
    /// Bitmap of `1 << OFPMBT_*`.
    pub band_types: u32,
    /// `ofp_meter_flags` bits.
    pub capabilities: u32,
    pub max_bands: u8,
    pub max_color: u8,
}

/// A multipart reply body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartReply {
    Desc(SwitchDesc),
    Flow(Vec<FlowStats>),
    Aggregate(AggregateStats),
    Table(Vec<TableStats>),
    PortStats(Vec<PortStats>),
    Queue(Vec<QueueStats>),
    Group(Vec<GroupStats>),
    GroupDesc(Vec<GroupDesc>),
    GroupFeatures(GroupFeatures),
    Meter(Vec<MeterStats>),
    MeterConfig(Vec<MeterConfig>),
    MeterFeatures(MeterFeatures),
    TableFeatures(Vec<TableFeatures>),
    PortDesc(Vec<Port>),
    Experimenter {
        experimenter: u32,
        exp_type: u32,
        data: Vec<u8>,
    },
    /// A multipart type this implementation does not know: its raw body.
    Unknown {
        typ: u16,
        body: Vec<u8>,
    },
}

fn decode_flow_stats_request(r: &mut Reader<'_>) -> Result<FlowStatsRequest> {
    let table_id = r.u8("ofp_flow_stats_request.table_id")?;
    r.skip(3, "ofp_flow_stats_request pad")?;
    let out_port = r.u32("ofp_flow_stats_request.out_port")?;
    let out_group = r.u32("ofp_flow_stats_request.out_group")?;
    r.skip(4, "ofp_flow_stats_request pad")?;
    let cookie = r.u64("ofp_flow_stats_request.cookie")?;
    let cookie_mask = r.u64("ofp_flow_stats_request.cookie_mask")?;
    let r#match = decode_match(r)?;
    Ok(FlowStatsRequest {
        table_id,
        out_port,
        out_group,
        cookie,
        cookie_mask,
        r#match,
    })
}

fn encode_flow_stats_request(f: &FlowStatsRequest, w: &mut Writer) {
    w.u8(f.table_id);
    w.zeros(3);
    w.u32(f.out_port);
    w.u32(f.out_group);
    w.zeros(4);
    w.u64(f.cookie);
    w.u64(f.cookie_mask);
    encode_match(&f.r#match, w);
}

/// Reads a `u32` id followed by 4 bytes of padding.
fn id_pad(r: &mut Reader<'_>, what: &str) -> Result<u32> {
    let id = r.u32(what)?;
    r.skip(4, what)?;
    Ok(id)
}

fn experimenter(r: &mut Reader<'_>) -> Result<(u32, u32, Vec<u8>)> {
    let experimenter = r.u32("ofp_experimenter_multipart_header.experimenter")?;
    let exp_type = r.u32("ofp_experimenter_multipart_header.exp_type")?;
    Ok((experimenter, exp_type, r.rest().to_vec()))
}

/// Reads entries of a fixed `size` until `r` is empty.
fn fixed_array<'a, T>(
    r: &mut Reader<'a>,
    size: usize,
    what: &str,
    mut one: impl FnMut(&mut Reader<'a>) -> Result<T>,
) -> Result<Vec<T>> {
    if r.remaining() % size != 0 {
        return Err(Error::bad_len(format!(
            "{what}: {} bytes is not a multiple of {size}",
            r.remaining()
        ))
        .at(r.offset()));
    }
    let mut out = Vec::with_capacity(r.remaining() / size);
    while !r.is_empty() {
        out.push(one(r)?);
    }
    Ok(out)
}

impl MultipartRequest {
    /// The `ofp_multipart_type` number.
    pub fn multipart_type(&self) -> u16 {
        use MultipartRequest as Q;
        let t = match self {
            Q::Desc => MultipartType::Desc,
            Q::Flow(_) => MultipartType::Flow,
            Q::Aggregate(_) => MultipartType::Aggregate,
            Q::Table => MultipartType::Table,
            Q::PortStats { .. } => MultipartType::PortStats,
            Q::Queue { .. } => MultipartType::Queue,
            Q::Group { .. } => MultipartType::Group,
            Q::GroupDesc => MultipartType::GroupDesc,
            Q::GroupFeatures => MultipartType::GroupFeatures,
            Q::Meter { .. } => MultipartType::Meter,
            Q::MeterConfig { .. } => MultipartType::MeterConfig,
            Q::MeterFeatures => MultipartType::MeterFeatures,
            Q::TableFeatures(_) => MultipartType::TableFeatures,
            Q::PortDesc => MultipartType::PortDesc,
            Q::Experimenter { .. } => MultipartType::Experimenter,
            Q::Unknown { typ, .. } => return *typ,
        };
        t.into()
    }

    /// Reads the body (everything left in `r`) of a request of type `typ`.
    pub fn decode(typ: u16, r: &mut Reader<'_>) -> Result<MultipartRequest> {
        use MultipartRequest as Q;
        let q = match MultipartType::from(typ) {
            MultipartType::Desc => Q::Desc,
            MultipartType::Flow => Q::Flow(decode_flow_stats_request(r)?),
            MultipartType::Aggregate => Q::Aggregate(decode_flow_stats_request(r)?),
            MultipartType::Table => Q::Table,
            MultipartType::PortStats => Q::PortStats {
                port_no: id_pad(r, "ofp_port_stats_request")?,
            },
            MultipartType::Queue => Q::Queue {
                port_no: r.u32("ofp_queue_stats_request.port_no")?,
                queue_id: r.u32("ofp_queue_stats_request.queue_id")?,
            },
            MultipartType::Group => Q::Group {
                group_id: id_pad(r, "ofp_group_stats_request")?,
            },
            MultipartType::GroupDesc => Q::GroupDesc,
            MultipartType::GroupFeatures => Q::GroupFeatures,
            MultipartType::Meter => Q::Meter {
                meter_id: id_pad(r, "ofp_meter_multipart_request")?,
            },
            MultipartType::MeterConfig => Q::MeterConfig {
                meter_id: id_pad(r, "ofp_meter_multipart_request")?,
            },
            MultipartType::MeterFeatures => Q::MeterFeatures,
            MultipartType::TableFeatures => Q::TableFeatures(TableFeatures::decode_all(r)?),
            MultipartType::PortDesc => Q::PortDesc,
            MultipartType::Experimenter => {
                let (experimenter, exp_type, data) = experimenter(r)?;
                Q::Experimenter {
                    experimenter,
                    exp_type,
                    data,
                }
            }
            MultipartType::Unknown(typ) => Q::Unknown {
                typ,
                body: r.rest().to_vec(),
            },
        };
        expect_end(r, "multipart request body")?;
        Ok(q)
    }

    /// Writes the body (after the multipart header).
    pub fn encode(&self, w: &mut Writer) {
        use MultipartRequest as Q;
        match self {
            Q::Desc
            | Q::Table
            | Q::GroupDesc
            | Q::GroupFeatures
            | Q::MeterFeatures
            | Q::PortDesc => {}
            Q::Flow(f) | Q::Aggregate(f) => encode_flow_stats_request(f, w),
            Q::PortStats { port_no: id }
            | Q::Group { group_id: id }
            | Q::Meter { meter_id: id }
            | Q::MeterConfig { meter_id: id } => {
                w.u32(*id);
                w.zeros(4);
            }
            Q::Queue { port_no, queue_id } => {
                w.u32(*port_no);
                w.u32(*queue_id);
            }
            Q::TableFeatures(tf) => {
                for t in tf {
                    t.encode(w);
                }
            }
            Q::Experimenter {
                experimenter,
                exp_type,
                data,
            } => {
                w.u32(*experimenter);
                w.u32(*exp_type);
                w.bytes(data);
            }
            Q::Unknown { body, .. } => w.bytes(body),
        }
    }
}

fn decode_desc(r: &mut Reader<'_>) -> Result<SwitchDesc> {
    Ok(SwitchDesc {
        mfr_desc: r.fixed_str(DESC_STR_LEN, "ofp_desc.mfr_desc")?,
        hw_desc: r.fixed_str(DESC_STR_LEN, "ofp_desc.hw_desc")?,
        sw_desc: r.fixed_str(DESC_STR_LEN, "ofp_desc.sw_desc")?,
        serial_num: r.fixed_str(SERIAL_NUM_LEN, "ofp_desc.serial_num")?,
        dp_desc: r.fixed_str(DESC_STR_LEN, "ofp_desc.dp_desc")?,
    })
}

fn decode_flow_stats(r: &mut Reader<'_>) -> Result<FlowStats> {
    let mut s = take_tlv(r, 0, 56, "ofp_flow_stats")?;
    s.skip(2, "ofp_flow_stats.length")?;
    let table_id = s.u8("ofp_flow_stats.table_id")?;
    s.skip(1, "ofp_flow_stats pad")?;
    let duration_sec = s.u32("ofp_flow_stats.duration_sec")?;
    let duration_nsec = s.u32("ofp_flow_stats.duration_nsec")?;
    let priority = s.u16("ofp_flow_stats.priority")?;
    let idle_timeout = s.u16("ofp_flow_stats.idle_timeout")?;
    let hard_timeout = s.u16("ofp_flow_stats.hard_timeout")?;
    let flags = s.u16("ofp_flow_stats.flags")?;
    s.skip(4, "ofp_flow_stats pad")?;
    let cookie = s.u64("ofp_flow_stats.cookie")?;
    let packet_count = s.u64("ofp_flow_stats.packet_count")?;
    let byte_count = s.u64("ofp_flow_stats.byte_count")?;
    let r#match = decode_match(&mut s)?;
    let n = s.remaining();
    let instructions = decode_instructions(&mut s, n)?;
    expect_end(&s, "ofp_flow_stats")?;
    Ok(FlowStats {
        table_id,
        duration_sec,
        duration_nsec,
        priority,
        idle_timeout,
        hard_timeout,
        flags,
        cookie,
        packet_count,
        byte_count,
        r#match,
        instructions,
    })
}

fn encode_flow_stats(f: &FlowStats, w: &mut Writer) {
    let start = w.len();
    w.u16(0);
    w.u8(f.table_id);
    w.zeros(1);
    w.u32(f.duration_sec);
    w.u32(f.duration_nsec);
    w.u16(f.priority);
    w.u16(f.idle_timeout);
    w.u16(f.hard_timeout);
    w.u16(f.flags);
    w.zeros(4);
    w.u64(f.cookie);
    w.u64(f.packet_count);
    w.u64(f.byte_count);
    encode_match(&f.r#match, w);
    encode_instructions(&f.instructions, w);
    w.patch_len_since(start, start);
}

fn decode_port_stats(r: &mut Reader<'_>) -> Result<PortStats> {
    let port_no = id_pad(r, "ofp_port_stats.port_no")?;
    let mut c = [0u64; 12];
    for v in c.iter_mut() {
        *v = r.u64("ofp_port_stats counter")?;
    }
    let [rx_packets, tx_packets, rx_bytes, tx_bytes, rx_dropped, tx_dropped, rx_errors, tx_errors, rx_frame_err, rx_over_err, rx_crc_err, collisions] =
        c;
    Ok(PortStats {
        port_no,
        rx_packets,
        tx_packets,
        rx_bytes,
        tx_bytes,
        rx_dropped,
        tx_dropped,
        rx_errors,
        tx_errors,
        rx_frame_err,
        rx_over_err,
        rx_crc_err,
        collisions,
        duration_sec: r.u32("ofp_port_stats.duration_sec")?,
        duration_nsec: r.u32("ofp_port_stats.duration_nsec")?,
    })
}

fn encode_port_stats(p: &PortStats, w: &mut Writer) {
    w.u32(p.port_no);
    w.zeros(4);
    for v in [
        p.rx_packets,
        p.tx_packets,
        p.rx_bytes,
        p.tx_bytes,
        p.rx_dropped,
        p.tx_dropped,
        p.rx_errors,
        p.tx_errors,
        p.rx_frame_err,
        p.rx_over_err,
        p.rx_crc_err,
        p.collisions,
    ] {
        w.u64(v);
    }
    w.u32(p.duration_sec);
    w.u32(p.duration_nsec);
}

fn decode_group_stats(r: &mut Reader<'_>) -> Result<GroupStats> {
    let mut s = take_tlv(r, 0, 40, "ofp_group_stats")?;
    s.skip(4, "ofp_group_stats length/pad")?;
    let group_id = s.u32("ofp_group_stats.group_id")?;
    let ref_count = s.u32("ofp_group_stats.ref_count")?;
    s.skip(4, "ofp_group_stats pad")?;
    let packet_count = s.u64("ofp_group_stats.packet_count")?;
    let byte_count = s.u64("ofp_group_stats.byte_count")?;
    let duration_sec = s.u32("ofp_group_stats.duration_sec")?;
    let duration_nsec = s.u32("ofp_group_stats.duration_nsec")?;
    let bucket_stats = fixed_array(&mut s, 16, "ofp_group_stats.bucket_stats", |s| {
        Ok(BucketCounter {
            packet_count: s.u64("ofp_bucket_counter.packet_count")?,
            byte_count: s.u64("ofp_bucket_counter.byte_count")?,
        })
    })?;
    Ok(GroupStats {
        group_id,
        ref_count,
        packet_count,
        byte_count,
        duration_sec,
        duration_nsec,
        bucket_stats,
    })
}

fn decode_group_desc(r: &mut Reader<'_>) -> Result<GroupDesc> {
    let mut s = take_tlv(r, 0, 8, "ofp_group_desc")?;
    s.skip(2, "ofp_group_desc.length")?;
    let group_type = GroupType::from(s.u8("ofp_group_desc.type")?);
    s.skip(1, "ofp_group_desc pad")?;
    let group_id = s.u32("ofp_group_desc.group_id")?;
    Ok(GroupDesc {
        group_type,
        group_id,
        buckets: decode_buckets(&mut s)?,
    })
}

fn decode_meter_stats(r: &mut Reader<'_>) -> Result<MeterStats> {
    let mut s = take_tlv(r, 4, 40, "ofp_meter_stats")?;
    let meter_id = s.u32("ofp_meter_stats.meter_id")?;
    s.skip(8, "ofp_meter_stats len/pad")?;
    let flow_count = s.u32("ofp_meter_stats.flow_count")?;
    let packet_in_count = s.u64("ofp_meter_stats.packet_in_count")?;
    let byte_in_count = s.u64("ofp_meter_stats.byte_in_count")?;
    let duration_sec = s.u32("ofp_meter_stats.duration_sec")?;
    let duration_nsec = s.u32("ofp_meter_stats.duration_nsec")?;
    let band_stats = fixed_array(&mut s, 16, "ofp_meter_stats.band_stats", |s| {
        Ok(MeterBandStats {
            packet_band_count: s.u64("ofp_meter_band_stats.packet_band_count")?,
            byte_band_count: s.u64("ofp_meter_band_stats.byte_band_count")?,
        })
    })?;
    Ok(MeterStats {
        meter_id,
        flow_count,
        packet_in_count,
        byte_in_count,
        duration_sec,
        duration_nsec,
        band_stats,
    })
}

fn decode_meter_config(r: &mut Reader<'_>) -> Result<MeterConfig> {
    let mut s = take_tlv(r, 0, 8, "ofp_meter_config")?;
    s.skip(2, "ofp_meter_config.length")?;
    let flags = s.u16("ofp_meter_config.flags")?;
    let meter_id = s.u32("ofp_meter_config.meter_id")?;
    Ok(MeterConfig {
        flags,
        meter_id,
        bands: decode_bands(&mut s)?,
    })
}

impl MultipartReply {
    /// The `ofp_multipart_type` number.
    pub fn multipart_type(&self) -> u16 {
        use MultipartReply as P;
        let t = match self {
            P::Desc(_) => MultipartType::Desc,
            P::Flow(_) => MultipartType::Flow,
            P::Aggregate(_) => MultipartType::Aggregate,
            P::Table(_) => MultipartType::Table,
            P::PortStats(_) => MultipartType::PortStats,
            P::Queue(_) => MultipartType::Queue,
            P::Group(_) => MultipartType::Group,
            P::GroupDesc(_) => MultipartType::GroupDesc,
            P::GroupFeatures(_) => MultipartType::GroupFeatures,
            P::Meter(_) => MultipartType::Meter,
            P::MeterConfig(_) => MultipartType::MeterConfig,
            P::MeterFeatures(_) => MultipartType::MeterFeatures,
            P::TableFeatures(_) => MultipartType::TableFeatures,
            P::PortDesc(_) => MultipartType::PortDesc,
            P::Experimenter { .. } => MultipartType::Experimenter,
            P::Unknown { typ, .. } => return *typ,
        };
        t.into()
    }

    /// Reads the body (everything left in `r`) of a reply of type `typ`.
    pub fn decode(typ: u16, r: &mut Reader<'_>) -> Result<MultipartReply> {
        use MultipartReply as P;
        let p = match MultipartType::from(typ) {
            MultipartType::Desc => P::Desc(decode_desc(r)?),
            MultipartType::Flow => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(decode_flow_stats(r)?);
                }
                P::Flow(v)
            }
            MultipartType::Aggregate => {
                let packet_count = r.u64("ofp_aggregate_stats_reply.packet_count")?;
                let byte_count = r.u64("ofp_aggregate_stats_reply.byte_count")?;
                let flow_count = r.u32("ofp_aggregate_stats_reply.flow_count")?;
                r.skip(4, "ofp_aggregate_stats_reply pad")?;
                P::Aggregate(AggregateStats {
                    packet_count,
                    byte_count,
                    flow_count,
                })
            }
            MultipartType::Table => P::Table(fixed_array(r, 24, "ofp_table_stats", |r| {
                let table_id = r.u8("ofp_table_stats.table_id")?;
                r.skip(3, "ofp_table_stats pad")?;
                Ok(TableStats {
                    table_id,
                    active_count: r.u32("ofp_table_stats.active_count")?,
                    lookup_count: r.u64("ofp_table_stats.lookup_count")?,
                    matched_count: r.u64("ofp_table_stats.matched_count")?,
                })
            })?),
            MultipartType::PortStats => {
                P::PortStats(fixed_array(r, 112, "ofp_port_stats", decode_port_stats)?)
            }
            MultipartType::Queue => P::Queue(fixed_array(r, 40, "ofp_queue_stats", |r| {
                Ok(QueueStats {
                    port_no: r.u32("ofp_queue_stats.port_no")?,
                    queue_id: r.u32("ofp_queue_stats.queue_id")?,
                    tx_bytes: r.u64("ofp_queue_stats.tx_bytes")?,
                    tx_packets: r.u64("ofp_queue_stats.tx_packets")?,
                    tx_errors: r.u64("ofp_queue_stats.tx_errors")?,
                    duration_sec: r.u32("ofp_queue_stats.duration_sec")?,
                    duration_nsec: r.u32("ofp_queue_stats.duration_nsec")?,
                })
            })?),
            MultipartType::Group => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(decode_group_stats(r)?);
                }
                P::Group(v)
            }
            MultipartType::GroupDesc => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(decode_group_desc(r)?);
                }
                P::GroupDesc(v)
            }
            MultipartType::GroupFeatures => {
                let types = r.u32("ofp_group_features.types")?;
                let capabilities = r.u32("ofp_group_features.capabilities")?;
                let mut max_groups = [0u32; 4];
                for v in max_groups.iter_mut() {
                    *v = r.u32("ofp_group_features.max_groups")?;
                }
                let mut actions = [0u32; 4];
                for v in actions.iter_mut() {
                    *v = r.u32("ofp_group_features.actions")?;
                }
                P::GroupFeatures(GroupFeatures {
                    types,
                    capabilities,
                    max_groups,
                    actions,
                })
            }
            MultipartType::Meter => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(decode_meter_stats(r)?);
                }
                P::Meter(v)
            }
            MultipartType::MeterConfig => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    v.push(decode_meter_config(r)?);
                }
                P::MeterConfig(v)
            }
            MultipartType::MeterFeatures => {
                let max_meter = r.u32("ofp_meter_features.max_meter")?;
                let band_types = r.u32("ofp_meter_features.band_types")?;
                let capabilities = r.u32("ofp_meter_features.capabilities")?;
                let max_bands = r.u8("ofp_meter_features.max_bands")?;
                let max_color = r.u8("ofp_meter_features.max_color")?;
                r.skip(2, "ofp_meter_features pad")?;
                P::MeterFeatures(MeterFeatures {
                    max_meter,
                    band_types,
                    capabilities,
                    max_bands,
                    max_color,
                })
            }
            MultipartType::TableFeatures => P::TableFeatures(TableFeatures::decode_all(r)?),
            MultipartType::PortDesc => P::PortDesc(fixed_array(
                r,
                crate::wire::port::PORT_LEN,
                "ofp_port",
                Port::decode,
            )?),
            MultipartType::Experimenter => {
                let (experimenter, exp_type, data) = experimenter(r)?;
                P::Experimenter {
                    experimenter,
                    exp_type,
                    data,
                }
            }
            MultipartType::Unknown(typ) => P::Unknown {
                typ,
                body: r.rest().to_vec(),
            },
        };
        expect_end(r, "multipart reply body")?;
        Ok(p)
    }

    /// Writes the body (after the multipart header).
    pub fn encode(&self, w: &mut Writer) {
        use MultipartReply as P;
        match self {
            P::Desc(d) => {
                w.fixed_str(&d.mfr_desc, DESC_STR_LEN);
                w.fixed_str(&d.hw_desc, DESC_STR_LEN);
                w.fixed_str(&d.sw_desc, DESC_STR_LEN);
                w.fixed_str(&d.serial_num, SERIAL_NUM_LEN);
                w.fixed_str(&d.dp_desc, DESC_STR_LEN);
            }
            P::Flow(v) => v.iter().for_each(|f| encode_flow_stats(f, w)),
            P::Aggregate(a) => {
                w.u64(a.packet_count);
                w.u64(a.byte_count);
                w.u32(a.flow_count);
                w.zeros(4);
            }
            P::Table(v) => {
                for t in v {
                    w.u8(t.table_id);
                    w.zeros(3);
                    w.u32(t.active_count);
                    w.u64(t.lookup_count);
                    w.u64(t.matched_count);
                }
            }
            P::PortStats(v) => v.iter().for_each(|p| encode_port_stats(p, w)),
            P::Queue(v) => {
                for q in v {
                    w.u32(q.port_no);
                    w.u32(q.queue_id);
                    w.u64(q.tx_bytes);
                    w.u64(q.tx_packets);
                    w.u64(q.tx_errors);
                    w.u32(q.duration_sec);
                    w.u32(q.duration_nsec);
                }
            }
            P::Group(v) => {
                for g in v {
                    let start = w.len();
                    w.u16(0);
                    w.zeros(2);
                    w.u32(g.group_id);
                    w.u32(g.ref_count);
                    w.zeros(4);
                    w.u64(g.packet_count);
                    w.u64(g.byte_count);
                    w.u32(g.duration_sec);
                    w.u32(g.duration_nsec);
                    for b in &g.bucket_stats {
                        w.u64(b.packet_count);
                        w.u64(b.byte_count);
                    }
                    w.patch_len_since(start, start);
                }
            }
            P::GroupDesc(v) => {
                for g in v {
                    let start = w.len();
                    w.u16(0);
                    w.u8(g.group_type.into());
                    w.zeros(1);
                    w.u32(g.group_id);
                    encode_buckets(&g.buckets, w);
                    w.patch_len_since(start, start);
                }
            }
            P::GroupFeatures(g) => {
                w.u32(g.types);
                w.u32(g.capabilities);
                g.max_groups.iter().for_each(|v| w.u32(*v));
                g.actions.iter().for_each(|v| w.u32(*v));
            }
            P::Meter(v) => {
                for m in v {
                    let start = w.len();
                    w.u32(m.meter_id);
                    w.u16(0);
                    w.zeros(6);
                    w.u32(m.flow_count);
                    w.u64(m.packet_in_count);
                    w.u64(m.byte_in_count);
                    w.u32(m.duration_sec);
                    w.u32(m.duration_nsec);
                    for b in &m.band_stats {
                        w.u64(b.packet_band_count);
                        w.u64(b.byte_band_count);
                    }
                    w.patch_len_since(start + 4, start);
                }
            }
            P::MeterConfig(v) => {
                for m in v {
                    let start = w.len();
                    w.u16(0);
                    w.u16(m.flags);
                    w.u32(m.meter_id);
                    encode_bands(&m.bands, w);
                    w.patch_len_since(start, start);
                }
            }
            P::MeterFeatures(m) => {
                w.u32(m.max_meter);
                w.u32(m.band_types);
                w.u32(m.capabilities);
                w.u8(m.max_bands);
                w.u8(m.max_color);
                w.zeros(2);
            }
            P::TableFeatures(v) => v.iter().for_each(|t| t.encode(w)),
            P::PortDesc(v) => v.iter().for_each(|p| p.encode(w)),
            P::Experimenter {
                experimenter,
                exp_type,
                data,
            } => {
                w.u32(*experimenter);
                w.u32(*exp_type);
                w.bytes(data);
            }
            P::Unknown { body, .. } => w.bytes(body),
        }
    }
}
