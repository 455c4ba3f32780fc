//! OFPT_MULTIPART_REQUEST: every statistic and description this switch answers, the
//! table features it advertises, REQ_MORE handling and splitting of big replies.
//!
//! A reply whose body would not fit one message (at most [`MAX_REPLY_BODY`] bytes after the
//! 16-byte multipart header) is cut between entries into several replies; all but the last
//! carry OFPMPF_REPLY_MORE. Entries are never split.
//!
//! A flow dump (OFPMP_FLOW) is built a page of entries at a time (`DUMP_PAGE_LEN`, each page
//! found in O(page) by `FlowTables::flow_stats_page`): the first page answers the request, and the connection keeps where the dump is (`ConnState::flow_dump`)
//! until [`Ofproto::resume_flow_dump`] has sent the rest, so the caller can let the lock go
//! between pages (the datapath forwards meanwhile). Entries present from the first page to
//! the last are sent once each, in dump order; one added or removed meanwhile may or may not be.

use super::{split_ns, Ofproto, PortState};
use shg_flows::action::{port, OFPQ_ALL, OFPTT_ALL};
use shg_flows::error::{
    BadRequestCode, Error, ErrorCode, QueueOpFailedCode, TableFeaturesFailedCode,
};
use shg_flows::field::Field;
use shg_flows::group::ALL_OF13_ACTIONS;
use shg_flows::table::FlowFilter;
use shg_flows::wire::buf::Writer;
use shg_flows::wire::message::{multipart_flags, Message, HEADER_LEN};
use shg_flows::wire::multipart::{
    FlowStats, MultipartReply, MultipartRequest, MultipartType, PortStats, QueueStats, SwitchDesc,
};
use shg_flows::wire::oxm::OxmHeader;
use shg_flows::wire::table_features::{FeatureId, TableFeatureProp, TableFeatures};

use super::conn::{FlowDump, PendingMultipart};
use super::{ConnId, Effect};
use shg_flows::table::{DumpPosition, DUMP_PAGE_LEN};
use shg_flows::wire::multipart::FlowStatsRequest;

/// Largest multipart reply body in one message: 65535 minus the 8-byte header and the
/// 8-byte multipart header.
pub const MAX_REPLY_BODY: usize = u16::MAX as usize - HEADER_LEN - 8;
/// Most multipart requests one connection may have waiting for their last part.
pub const MAX_PENDING_MULTIPART: usize = 64;
/// `max_entries` advertised per table (the classifier has no fixed limit; as OVS).
const MAX_ENTRIES: u32 = 1_000_000;

fn body_len(body: &MultipartReply) -> usize {
    let mut w = Writer::new();
    body.encode(&mut w);
    w.len()
}

/// Cuts `items` into bodies of at most [`MAX_REPLY_BODY`] bytes (always at least one body,
/// possibly empty).
fn split<T: Clone>(items: Vec<T>, wrap: impl Fn(Vec<T>) -> MultipartReply) -> Vec<MultipartReply> {
    split_at(items, MAX_REPLY_BODY, wrap)
}

fn split_at<T: Clone>(
    items: Vec<T>,
    limit: usize,
    wrap: impl Fn(Vec<T>) -> MultipartReply,
) -> Vec<MultipartReply> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut cur_len = 0;
    for item in items {
        let len = body_len(&wrap(vec![item.clone()]));
        if !cur.is_empty() && cur_len + len > limit {
            out.push(wrap(std::mem::take(&mut cur)));
            cur_len = 0;
        }
        cur.push(item);
        cur_len += len;
    }
    out.push(wrap(cur));
    out
}

/// Builds an OFPMP_FLOW reply already encoded, part by part: each entry is encoded as it
/// comes, into the current body (at most `limit` bytes; a new body starts where the next
/// entry would not fit, as [`split_at`] cuts). A finished body is kept as raw bytes
/// (`MultipartReply::Unknown` with the FLOW type, which encodes to exactly the bytes of
/// `MultipartReply::Flow` with the same entries), so a dump of many flows never holds more
/// than one decoded entry.
struct FlowReplyParts {
    limit: usize,
    bodies: Vec<MultipartReply>,
    cur: Writer,
    /// Reused one-entry list for encoding.
    one: Vec<FlowStats>,
    entry: Writer,
}

impl FlowReplyParts {
    fn new(limit: usize) -> FlowReplyParts {
        FlowReplyParts {
            limit,
            bodies: Vec::new(),
            cur: Writer::new(),
            one: Vec::with_capacity(1),
            entry: Writer::new(),
        }
    }

    fn push(&mut self, fs: FlowStats) {
        self.one.clear();
        self.one.push(fs);
        let body = MultipartReply::Flow(std::mem::take(&mut self.one));
        self.entry.buf.clear();
        body.encode(&mut self.entry);
        if let MultipartReply::Flow(v) = body {
            self.one = v;
        }
        if !self.cur.is_empty() && self.cur.len() + self.entry.len() > self.limit {
            self.flush();
        }
        self.cur.bytes(&self.entry.buf);
    }

    fn flush(&mut self) {
        let body = std::mem::take(&mut self.cur.buf);
        self.bodies.push(MultipartReply::Unknown {
            typ: MultipartType::Flow.into(),
            body,
        });
    }

    /// The bodies (always at least one, possibly empty).
    fn finish(mut self) -> Vec<MultipartReply> {
        self.flush();
        self.bodies
    }
}

/// What a multipart request is answered with.
enum Reply {
    /// The whole reply.
    Bodies(Vec<MultipartReply>),
    /// A flow dump of the entries this selects, sent page by page.
    FlowDump(Box<FlowFilter>),
}

/// The messages of one reply: REPLY_MORE on all but the last.
fn messages(bodies: Vec<MultipartReply>) -> Vec<Message> {
    messages_of_part(bodies, false)
}

/// The messages of part of a reply: REPLY_MORE on all but the last, and on the last too when
/// `more_follows`.
fn messages_of_part(bodies: Vec<MultipartReply>, more_follows: bool) -> Vec<Message> {
    let n = bodies.len();
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Message::MultipartReply {
            flags: if more_follows || i + 1 < n {
                multipart_flags::REPLY_MORE
            } else {
                0
            },
            body,
        })
        .collect()
}

fn oxm(field: Field, hasmask: bool) -> u32 {
    OxmHeader::basic(field, hasmask).raw()
}

/// Fields a set_field may write (validate refuses pipeline fields and read-only ones).
fn settable(f: Field) -> bool {
    !matches!(
        f,
        Field::InPort
            | Field::InPhyPort
            | Field::Metadata
            | Field::Ipv6Exthdr
            | Field::EthType
            | Field::IpProto
            | Field::MplsBos
    )
}

/// The TABLE_FEATURES reply describing our pipeline of `n_tables` tables: every instruction
/// (no goto_table in the last table), every OF1.3 action in write and apply lists, every
/// basic OXM field for match (masked where maskable) and wildcards, the settable ones for
/// set_field, and the next tables.
pub fn table_features(n_tables: u8) -> Vec<TableFeatures> {
    let actions: Vec<FeatureId> = (0u16..32)
        .filter(|t| ALL_OF13_ACTIONS & (1 << t) != 0)
        .map(FeatureId::new)
        .collect();
    let fields: Vec<Field> = Field::all().collect();
    let matchable: Vec<u32> = fields
        .iter()
        .map(|f| oxm(*f, f.info().is_some_and(|i| i.maskable)))
        .collect();
    let wildcards: Vec<u32> = fields.iter().map(|f| oxm(*f, false)).collect();
    let setfields: Vec<u32> = fields
        .iter()
        .filter(|f| settable(**f))
        .map(|f| oxm(*f, false))
        .collect();
    (0..n_tables)
        .map(|t| {
            let last = t + 1 >= n_tables;
            let instructions: Vec<FeatureId> = (1u16..=6)
                .filter(|i| !(last && *i == 1))
                .map(FeatureId::new)
                .collect();
            let next: Vec<u8> = (t.saturating_add(1)..n_tables).collect();
            let mut properties = Vec::new();
            for miss in [false, true] {
                properties.push(TableFeatureProp::Instructions {
                    miss,
                    ids: instructions.clone(),
                });
                properties.push(TableFeatureProp::NextTables {
                    miss,
                    tables: next.clone(),
                });
                properties.push(TableFeatureProp::WriteActions {
                    miss,
                    ids: actions.clone(),
                });
                properties.push(TableFeatureProp::ApplyActions {
                    miss,
                    ids: actions.clone(),
                });
            }
            properties.push(TableFeatureProp::Match(matchable.clone()));
            properties.push(TableFeatureProp::Wildcards(wildcards.clone()));
            for miss in [false, true] {
                properties.push(TableFeatureProp::WriteSetfield {
                    miss,
                    oxm_ids: setfields.clone(),
                });
                properties.push(TableFeatureProp::ApplySetfield {
                    miss,
                    oxm_ids: setfields.clone(),
                });
            }
            TableFeatures {
                table_id: t,
                name: format!("table{t}"),
                metadata_match: u64::MAX,
                metadata_write: u64::MAX,
                config: 0,
                max_entries: MAX_ENTRIES,
                properties,
            }
        })
        .collect()
}

fn port_stats(p: &PortState, now: u64) -> PortStats {
    let (duration_sec, duration_nsec) = split_ns(now.saturating_sub(p.created));
    let c = &p.counters;
    PortStats {
        port_no: p.port_no,
        rx_packets: c.rx_packets,
        tx_packets: c.tx_packets,
        rx_bytes: c.rx_bytes,
        tx_bytes: c.tx_bytes,
        rx_dropped: c.rx_dropped,
        tx_dropped: c.tx_dropped,
        rx_errors: c.rx_errors,
        tx_errors: c.tx_errors,
        // Software ports see no framing, overrun or CRC errors and no collisions.
        rx_frame_err: 0,
        rx_over_err: 0,
        rx_crc_err: 0,
        collisions: 0,
        duration_sec,
        duration_nsec,
    }
}

fn queue_op(code: QueueOpFailedCode, detail: String) -> Error {
    Error::new(ErrorCode::QueueOpFailed(code), detail)
}

impl Ofproto {
    /// Answers one multipart request part; no message while a REQ_MORE request is open.
    pub(crate) fn multipart(
        &mut self,
        conn: ConnId,
        xid: u32,
        flags: u16,
        body: MultipartRequest,
        now: u64,
    ) -> Result<Vec<Message>, Error> {
        let more = flags & multipart_flags::REQ_MORE != 0;
        if let MultipartRequest::TableFeatures(tf) = &body {
            if !tf.is_empty() || more {
                self.reject_slave(conn, "TABLE_FEATURES set")?;
                return Err(Error::new(
                    ErrorCode::TableFeaturesFailed(TableFeaturesFailedCode::Eperm),
                    "table features are fixed on this switch",
                ));
            }
        }
        let mp_type = body.multipart_type();
        if let Some(c) = self.conns.get_mut(&conn) {
            let pending = if more {
                let n = c.pending_multipart.len();
                let entry = c.pending_multipart.get(&xid).copied();
                if entry.is_none() && n >= MAX_PENDING_MULTIPART {
                    return Err(Error::bad_request(
                        BadRequestCode::MultipartBufferOverflow,
                        format!("{n} multipart requests already wait for their last part"),
                    ));
                }
                let e = entry.unwrap_or(PendingMultipart { mp_type, parts: 0 });
                c.pending_multipart.insert(
                    xid,
                    PendingMultipart {
                        mp_type: e.mp_type,
                        parts: e.parts.saturating_add(1),
                    },
                );
                Some(e)
            } else {
                c.pending_multipart.remove(&xid)
            };
            if let Some(p) = pending {
                if p.mp_type != mp_type {
                    c.pending_multipart.remove(&xid);
                    return Err(Error::bad_request(
                        BadRequestCode::BadMultipart,
                        format!(
                            "multipart request {xid} changed type from {} to {mp_type}",
                            p.mp_type
                        ),
                    ));
                }
            }
            if more {
                return Ok(Vec::new());
            }
        }
        Ok(match self.multipart_reply(body, now)? {
            Reply::Bodies(bodies) => messages(bodies),
            Reply::FlowDump(filter) => self.flow_dump_page(conn, xid, *filter, None, now),
        })
    }

    /// The selection of a flow or aggregate stats request.
    fn flow_filter(&self, req: &FlowStatsRequest) -> Result<FlowFilter, Error> {
        if req.table_id != OFPTT_ALL && req.table_id >= self.tables.n_tables() {
            return Err(Error::bad_request(
                BadRequestCode::BadTableId,
                format!("table {} does not exist", req.table_id),
            ));
        }
        Ok(FlowFilter {
            table_id: req.table_id,
            out_port: req.out_port,
            out_group: req.out_group,
            cookie: req.cookie,
            cookie_mask: req.cookie_mask,
            r#match: req.r#match,
        })
    }

    /// The next page of a flow dump (the first when `after` is `None`) as reply messages;
    /// when more entries may follow, the connection keeps the dump for
    /// [`Ofproto::resume_flow_dump`] and every message carries REPLY_MORE.
    fn flow_dump_page(
        &mut self,
        conn: ConnId,
        xid: u32,
        filter: FlowFilter,
        after: Option<DumpPosition>,
        now: u64,
    ) -> Vec<Message> {
        let mut parts = FlowReplyParts::new(MAX_REPLY_BODY);
        let page = self.tables.flow_stats_page(&filter, after, DUMP_PAGE_LEN);
        for (pos, e) in page.entries {
            parts.push(e.to_stats(pos.table_id, now));
        }
        let next = page.next.map(|after| FlowDump { xid, filter, after });
        let more = next.is_some();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.flow_dump = next;
        }
        messages_of_part(parts.finish(), more)
    }

    /// Sends the next page of the flow dump `conn` has under way, if any (`None`: nothing
    /// under way). Call until it returns `None`, before the connection's next message.
    pub fn resume_flow_dump(&mut self, conn: ConnId, now: u64) -> Option<Vec<Effect>> {
        let dump = self.conns.get_mut(&conn)?.flow_dump.take()?;
        let xid = dump.xid;
        let msgs = self.flow_dump_page(conn, xid, dump.filter, Some(dump.after), now);
        Some(
            msgs.into_iter()
                .map(|msg| Effect::Send { conn, xid, msg })
                .collect(),
        )
    }

    fn multipart_reply(&mut self, body: MultipartRequest, now: u64) -> Result<Reply, Error> {
        use MultipartRequest as Q;
        Ok(Reply::Bodies(match body {
            Q::Desc => vec![MultipartReply::Desc(SwitchDesc {
                mfr_desc: self.config.mfr_desc.clone(),
                hw_desc: self.config.hw_desc.clone(),
                sw_desc: self.config.sw_desc.clone(),
                serial_num: self.config.serial_num.clone(),
                dp_desc: self.config.dp_desc.clone(),
            })],
            Q::Flow(req) => return Ok(Reply::FlowDump(Box::new(self.flow_filter(&req)?))),
            Q::Aggregate(req) => {
                let filter = self.flow_filter(&req)?;
                vec![MultipartReply::Aggregate(
                    self.tables.aggregate_stats(&filter),
                )]
            }
            Q::Table => split(self.tables.table_stats(), MultipartReply::Table),
            Q::PortStats { port_no } => {
                // As OVS: an unknown port gives an empty reply.
                let stats: Vec<PortStats> = self
                    .ports
                    .values()
                    .filter(|p| port_no == port::ANY || p.port_no == port_no)
                    .map(|p| port_stats(p, now))
                    .collect();
                split(stats, MultipartReply::PortStats)
            }
            Q::Queue { port_no, queue_id } => split(
                self.queue_stats(port_no, queue_id, now)?,
                MultipartReply::Queue,
            ),
            Q::Group { group_id } => {
                self.sync_refs();
                split(
                    self.groups.group_stats(group_id, now),
                    MultipartReply::Group,
                )
            }
            Q::GroupDesc => split(self.groups.group_desc(), MultipartReply::GroupDesc),
            Q::GroupFeatures => vec![MultipartReply::GroupFeatures(self.groups.features())],
            Q::Meter { meter_id } => {
                self.sync_refs();
                split(
                    self.meters.meter_stats(meter_id, now)?,
                    MultipartReply::Meter,
                )
            }
            Q::MeterConfig { meter_id } => split(
                self.meters.meter_config(meter_id)?,
                MultipartReply::MeterConfig,
            ),
            Q::MeterFeatures => vec![MultipartReply::MeterFeatures(self.meters.features())],
            Q::TableFeatures(_) => split(
                table_features(self.tables.n_tables()),
                MultipartReply::TableFeatures,
            ),
            Q::PortDesc => {
                let descs = self.ports.values().map(PortState::desc).collect();
                split(descs, MultipartReply::PortDesc)
            }
            Q::Experimenter { experimenter, .. } => {
                return Err(Error::bad_request(
                    BadRequestCode::BadExperimenter,
                    format!("experimenter multipart 0x{experimenter:08x} is not supported"),
                ));
            }
            Q::Unknown { typ, .. } => {
                return Err(Error::bad_request(
                    BadRequestCode::BadMultipart,
                    format!("unknown multipart type {typ}"),
                ));
            }
        }))
    }

    /// OFPMP_QUEUE: `port_no` may be ANY and `queue_id` ALL. An unknown port is
    /// OFPQOFC_BAD_PORT; a queue that no selected port has is OFPQOFC_BAD_QUEUE (as OVS).
    /// A shaped port's queues are its scheduler's: packets and bytes sent, tx_errors = drops
    /// (overflow and AQM), duration since the queue was created.
    fn queue_stats(&self, port_no: u32, queue_id: u32, now: u64) -> Result<Vec<QueueStats>, Error> {
        if port_no != port::ANY && !self.ports.contains_key(&port_no) {
            return Err(queue_op(
                QueueOpFailedCode::BadPort,
                format!("port {port_no} does not exist"),
            ));
        }
        let mut out = Vec::new();
        for p in self
            .ports
            .values()
            .filter(|p| port_no == port::ANY || p.port_no == port_no)
        {
            if let Some(sched) = self.qos.get(&p.port_no) {
                let mut stats = sched.stats();
                stats.sort_by_key(|q| q.id);
                for q in stats {
                    if queue_id != OFPQ_ALL && q.id != queue_id {
                        continue;
                    }
                    let (duration_sec, duration_nsec) = split_ns(now.saturating_sub(q.created));
                    out.push(QueueStats {
                        port_no: p.port_no,
                        queue_id: q.id,
                        tx_bytes: q.tx_bytes,
                        tx_packets: q.tx_packets,
                        tx_errors: q.drops_overflow.saturating_add(q.drops_aqm),
                        duration_sec,
                        duration_nsec,
                    });
                }
                continue;
            }
            for (&q, c) in &p.queues {
                if queue_id != OFPQ_ALL && q != queue_id {
                    continue;
                }
                let (duration_sec, duration_nsec) = split_ns(now.saturating_sub(c.created));
                out.push(QueueStats {
                    port_no: p.port_no,
                    queue_id: q,
                    tx_bytes: c.tx_bytes,
                    tx_packets: c.tx_packets,
                    tx_errors: c.tx_errors,
                    duration_sec,
                    duration_nsec,
                });
            }
        }
        if queue_id != OFPQ_ALL && out.is_empty() {
            return Err(queue_op(
                QueueOpFailedCode::BadQueue,
                format!("queue {queue_id} does not exist"),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shg_flows::wire::multipart::TableStats;

    #[test]
    fn split_respects_the_limit_and_keeps_order() {
        let items: Vec<TableStats> = (0..10u8)
            .map(|t| TableStats {
                table_id: t,
                ..TableStats::default()
            })
            .collect();
        // Each entry is 24 bytes: 3 per body of at most 80.
        let bodies = split_at(items, 80, MultipartReply::Table);
        assert_eq!(bodies.len(), 4);
        let ids: Vec<u8> = bodies
            .iter()
            .flat_map(|b| match b {
                MultipartReply::Table(v) => v.iter().map(|t| t.table_id).collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(ids, (0..10).collect::<Vec<u8>>());
        assert!(bodies.iter().all(|b| body_len(b) <= 80));
        let msgs = messages(bodies);
        let flags: Vec<u16> = msgs
            .iter()
            .map(|m| match m {
                Message::MultipartReply { flags, .. } => *flags,
                _ => 99,
            })
            .collect();
        assert_eq!(flags, vec![1, 1, 1, 0]);
    }

    fn flow_stats(i: u16) -> FlowStats {
        use shg_flows::action::{Action, Instruction};
        use shg_flows::matches::Match;
        let mut m = Match::any();
        m.set_u64(Field::InPort, u64::from(i % 7));
        if i % 3 == 0 {
            m.set_u64(Field::EthType, 0x0800);
            let [hi, lo] = i.to_be_bytes();
            m.set(Field::Ipv4Dst, &[198, 18, hi, lo]);
        }
        // Entries of different sizes, so cuts fall at varied places.
        let actions = (0..i % 5)
            .map(|p| Action::Output {
                port: u32::from(p),
                max_len: 0,
            })
            .collect();
        FlowStats {
            table_id: u8::try_from(i % 3).unwrap_or(0),
            duration_sec: u32::from(i),
            duration_nsec: 7,
            priority: i,
            idle_timeout: 1,
            hard_timeout: 2,
            flags: 0,
            cookie: u64::from(i) << 32,
            packet_count: 3,
            byte_count: 4,
            r#match: m,
            instructions: vec![Instruction::ApplyActions(actions)],
        }
    }

    /// The part-by-part encoded FLOW reply is byte for byte the reply built from every entry
    /// first and split afterwards, for the real limit and for small limits that cut often.
    #[test]
    fn streamed_flow_reply_bytes_equal_split_reply() {
        use shg_flows::wire::message::encode;
        for (n, limit) in [
            (0u16, MAX_REPLY_BODY),
            (1, MAX_REPLY_BODY),
            (3000, MAX_REPLY_BODY),
            (50, 300),
            (50, 1),
        ] {
            let items: Vec<FlowStats> = (0..n).map(flow_stats).collect();
            let want = messages(split_at(items.clone(), limit, MultipartReply::Flow));
            let mut parts = FlowReplyParts::new(limit);
            for fs in items {
                parts.push(fs);
            }
            let got = messages(parts.finish());
            assert_eq!(got.len(), want.len(), "n={n} limit={limit}");
            if n == 3000 {
                assert!(got.len() > 1, "3000 entries need several parts");
            }
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(encode(9, g), encode(9, w), "n={n} limit={limit}");
            }
        }
    }

    #[test]
    fn empty_reply_is_one_empty_body() {
        let bodies = split(Vec::<PortStats>::new(), MultipartReply::PortStats);
        assert_eq!(bodies, vec![MultipartReply::PortStats(Vec::new())]);
    }

    #[test]
    fn table_features_shape() {
        let tf = table_features(3);
        assert_eq!(tf.len(), 3);
        let next = |t: &TableFeatures| {
            t.properties.iter().find_map(|p| match p {
                TableFeatureProp::NextTables {
                    miss: false,
                    tables,
                } => Some(tables.clone()),
                _ => None,
            })
        };
        assert_eq!(next(&tf[0]), Some(vec![1, 2]));
        assert_eq!(next(&tf[2]), Some(vec![]));
        let has_goto = |t: &TableFeatures| {
            t.properties.iter().any(|p| {
                matches!(p, TableFeatureProp::Instructions { ids, .. } if ids.iter().any(|i| i.typ == 1))
            })
        };
        assert!(has_goto(&tf[0]));
        assert!(!has_goto(&tf[2]));
        let set = tf[0].properties.iter().find_map(|p| match p {
            TableFeatureProp::ApplySetfield {
                miss: false,
                oxm_ids,
            } => Some(oxm_ids.clone()),
            _ => None,
        });
        let set = set.unwrap_or_default();
        assert!(set.contains(&oxm(Field::Ipv4Src, false)));
        assert!(!set.contains(&oxm(Field::InPort, false)));
    }
}
