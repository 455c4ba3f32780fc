//! A fake OpenFlow controller driving the sans-IO switch core in-process.
//!
//! Every message goes over "the wire": the fake encodes what it sends with the flows codec,
//! feeds the bytes to `Ofproto::handle`, and encodes then decodes every message the switch
//! sends back (so a reply that would not survive the wire fails the test). Time is a virtual
//! clock in nanoseconds.

use shg_flows::action::{group, meter, port, Action, Instruction, OFPQ_ALL, OFPTT_ALL};
use shg_flows::error::{
    BadActionCode, BadRequestCode, ErrorCode, FlowModFailedCode, HelloFailedCode,
    MeterModFailedCode, PortModFailedCode, QueueOpFailedCode, RoleRequestFailedCode,
    SwitchConfigFailedCode, TableFeaturesFailedCode, TableModFailedCode,
};
use shg_flows::field::Field;
use shg_flows::matches::Match;
use shg_flows::mods::{flow_flags, FlowModCommand, GroupModCommand, MeterModCommand};
use shg_flows::text::{parse_flow, parse_group, parse_meter};
use shg_flows::wire::message::{
    decode, encode, multipart_flags, AsyncConfig, ControllerRole, FlowRemovedReason, HelloElement,
    Message, PacketOut, PortMod, PortReason, QueueProp, Role, SwitchConfig,
};
use shg_flows::wire::multipart::{FlowStatsRequest, MultipartReply, MultipartRequest};
use shg_flows::wire::port::{config as pcfg, state as pstate};
use shg_flows::wire::table_features::TableFeatures;
use shg_switch::datapath::{Output, PacketInEvent};
use shg_switch::ofproto::{
    ConnId, ConnKind, Effect, Ofproto, OfprotoConfig, MAX_PENDING_MULTIPART,
};
use shg_switch::port::PortInfo;

const SEC: u64 = 1_000_000_000;

/// What one call into the switch produced, after a trip over the wire.
#[derive(Debug, Default)]
struct Out {
    sent: Vec<(ConnId, u32, Message)>,
    transmits: Vec<Output>,
    closed: Vec<ConnId>,
}

impl Out {
    fn to(&self, conn: ConnId) -> Vec<(u32, Message)> {
        self.sent
            .iter()
            .filter(|(c, _, _)| *c == conn)
            .map(|(_, x, m)| (*x, m.clone()))
            .collect()
    }
    fn msgs(&self, conn: ConnId) -> Vec<Message> {
        self.to(conn).into_iter().map(|(_, m)| m).collect()
    }
    /// The only message to `conn`.
    fn one(&self, conn: ConnId) -> Message {
        let v = self.msgs(conn);
        assert_eq!(v.len(), 1, "expected one message to {conn}, got {v:?}");
        v.into_iter().next().unwrap_or(Message::BarrierReply)
    }
}

/// The fake controller side: owns the switch and the virtual clock.
struct Fake {
    of: Ofproto,
    now: u64,
    xid: u32,
}

fn wire_trip(xid: u32, msg: &Message) -> (u32, Message) {
    let bytes = encode(xid, msg);
    assert!(bytes.len() <= 65535, "message of {} bytes", bytes.len());
    match decode(&bytes) {
        Ok(v) => v,
        Err(e) => panic!("switch sent an undecodable message {msg:?}: {e}"),
    }
}

impl Fake {
    fn new() -> Fake {
        Fake::with(OfprotoConfig {
            datapath_id: 0x00aa_bbcc_ddee_ff01,
            ..OfprotoConfig::default()
        })
    }

    fn with(config: OfprotoConfig) -> Fake {
        Fake {
            of: Ofproto::new(config),
            now: 1_000 * SEC,
            xid: 100,
        }
    }

    fn collect(fx: Vec<Effect>) -> Out {
        let mut out = Out::default();
        for e in fx {
            match e {
                Effect::Send { conn, xid, msg } => {
                    let (x, m) = wire_trip(xid, &msg);
                    out.sent.push((conn, x, m));
                }
                Effect::Transmit(o) => out.transmits.push(o),
                Effect::Close(c) => out.closed.push(c),
            }
        }
        out
    }

    /// Opens a connection; returns the switch's HELLO.
    fn open(&mut self, conn: ConnId, kind: ConnKind) -> Message {
        let out = Fake::collect(self.of.connect(conn, kind, self.now));
        out.one(conn)
    }

    /// Opens a connection and completes HELLO with a bitmap for 1.3.
    fn connect(&mut self, conn: ConnId, kind: ConnKind) {
        self.open(conn, kind);
        let out = self.send(
            conn,
            &Message::Hello {
                version: 4,
                elements: vec![HelloElement::versions(&[1, 4])],
            },
        );
        assert!(out.sent.is_empty() && out.closed.is_empty(), "{out:?}");
    }

    /// Handles one message as the agent does: then the rest of a flow dump it started, page
    /// by page.
    fn send_raw(&mut self, conn: ConnId, bytes: &[u8]) -> Out {
        let mut fx = self.of.handle(conn, bytes, self.now);
        while let Some(page) = self.of.resume_flow_dump(conn, self.now) {
            fx.extend(page);
        }
        Fake::collect(fx)
    }

    fn send_xid(&mut self, conn: ConnId, xid: u32, msg: &Message) -> Out {
        let bytes = encode(xid, msg);
        self.send_raw(conn, &bytes)
    }

    fn send(&mut self, conn: ConnId, msg: &Message) -> Out {
        self.xid += 1;
        let xid = self.xid;
        self.send_xid(conn, xid, msg)
    }

    /// Sends `msg`, then a barrier; returns everything, checking the barrier reply is last.
    fn send_barrier(&mut self, conn: ConnId, msg: &Message) -> Vec<Message> {
        let mut v = self.send(conn, msg).msgs(conn);
        let b = self.send(conn, &Message::BarrierRequest).msgs(conn);
        assert_eq!(b, vec![Message::BarrierReply]);
        v.extend(b);
        v
    }

    fn flow(&mut self, conn: ConnId, s: &str, cmd: FlowModCommand) -> Vec<Message> {
        let fm = parse_flow(s, cmd).unwrap_or_else(|e| panic!("{s}: {e}"));
        self.send(conn, &Message::FlowMod(fm)).msgs(conn)
    }

    fn add_flow(&mut self, conn: ConnId, s: &str) {
        let r = self.flow(conn, s, FlowModCommand::Add);
        assert!(r.is_empty(), "add-flow {s}: {r:?}");
    }

    /// A whole multipart reply: every part's body, checking REPLY_MORE on all but the last.
    fn multipart(&mut self, conn: ConnId, req: MultipartRequest) -> Vec<MultipartReply> {
        let msgs = self
            .send(
                conn,
                &Message::MultipartRequest {
                    flags: 0,
                    body: req,
                },
            )
            .msgs(conn);
        assert!(!msgs.is_empty());
        let n = msgs.len();
        msgs.into_iter()
            .enumerate()
            .map(|(i, m)| match m {
                Message::MultipartReply { flags, body } => {
                    let more = flags & multipart_flags::REPLY_MORE != 0;
                    assert_eq!(more, i + 1 < n, "REPLY_MORE on part {i} of {n}");
                    body
                }
                other => panic!("expected a multipart reply, got {other:?}"),
            })
            .collect()
    }

    fn port(&mut self, port_no: u32, up: bool) -> Out {
        Fake::collect(self.of.add_port(port_no, port_info(port_no), up, self.now))
    }
}

fn port_info(n: u32) -> PortInfo {
    PortInfo {
        name: format!("veth{n}"),
        hw_addr: [0x02, 0, 0, 0, 0, u8::try_from(n & 0xff).unwrap_or(0)],
        curr_speed_kbps: 10_000_000,
        max_speed_kbps: 0,
        ifindex: None,
    }
}

/// The (type, code) of an OFPT_ERROR, and checks it echoes the start of `offending`.
fn error_code(m: &Message) -> ErrorCode {
    match m {
        Message::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn expect_error(out: &Out, conn: ConnId, xid: u32, code: ErrorCode) {
    let v = out.to(conn);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, xid, "error must carry the request's xid");
    assert_eq!(error_code(&v[0].1), code, "{:?}", v[0].1);
}

/// Sends `msg` with a fixed xid and checks the error, its xid and its data (the request's
/// first bytes).
fn check_error(f: &mut Fake, conn: ConnId, msg: &Message, code: ErrorCode) {
    let xid = 0x5eed;
    let bytes = encode(xid, msg);
    let out = f.send_raw(conn, &bytes);
    expect_error(&out, conn, xid, code);
    if let Message::Error { data, .. } = &out.to(conn)[0].1 {
        let n = bytes.len().min(64);
        assert_eq!(data.as_slice(), &bytes[..n]);
    }
    assert!(out.closed.is_empty(), "errors keep the connection up");
}

const C1: ConnId = 1;
const C2: ConnId = 2;
const TOOL: ConnId = 9;

// ---------------------------------------------------------------------------------------
// HELLO, FEATURES, ECHO

#[test]
fn hello_negotiation() {
    let mut f = Fake::new();
    let hello = f.open(C1, ConnKind::Active);
    assert_eq!(
        hello,
        Message::Hello {
            version: 4,
            elements: vec![HelloElement::versions(&[4])]
        }
    );
    assert!(!f.of.controller_connected());
    let out = f.send(
        C1,
        &Message::Hello {
            version: 6,
            elements: vec![HelloElement::versions(&[1, 4, 6])],
        },
    );
    assert!(out.sent.is_empty() && out.closed.is_empty());
    assert!(f.of.controller_connected());

    // A 1.5 peer without a bitmap: we speak min(4, 6) = 4.
    f.open(C2, ConnKind::Active);
    let out = f.send(
        C2,
        &Message::Hello {
            version: 6,
            elements: vec![],
        },
    );
    assert!(out.sent.is_empty() && out.closed.is_empty());
    assert!(matches!(
        f.send(C2, &Message::FeaturesRequest).one(C2),
        Message::FeaturesReply(_)
    ));
}

#[test]
fn hello_incompatible() {
    let mut f = Fake::new();
    // OpenFlow 1.0 only (header version, no bitmap).
    f.open(3, ConnKind::Active);
    let out = f.send_xid(
        3,
        77,
        &Message::Hello {
            version: 1,
            elements: vec![],
        },
    );
    expect_error(
        &out,
        3,
        77,
        ErrorCode::HelloFailed(HelloFailedCode::Incompatible),
    );
    if let Message::Error { data, .. } = out.one(3) {
        assert!(String::from_utf8_lossy(&data).contains("0x04"));
    }
    assert_eq!(out.closed, vec![3]);
    // Later frames on the closed connection are ignored.
    assert!(f.send(3, &Message::FeaturesRequest).sent.is_empty());

    // A bitmap without 1.3, even with a higher header version.
    f.open(4, ConnKind::Active);
    let out = f.send(
        4,
        &Message::Hello {
            version: 5,
            elements: vec![HelloElement::versions(&[1, 5])],
        },
    );
    assert_eq!(
        error_code(&out.one(4)),
        ErrorCode::HelloFailed(HelloFailedCode::Incompatible)
    );
    assert_eq!(out.closed, vec![4]);

    // A first message that is not HELLO: closed without a reply (as OVS).
    f.open(5, ConnKind::Active);
    let out = f.send(5, &Message::FeaturesRequest);
    assert!(out.sent.is_empty());
    assert_eq!(out.closed, vec![5]);
    assert!(!f.of.controller_connected());
    assert_eq!(f.of.counters.hello_failures, 3);
}

#[test]
fn features_and_config() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    match f.send(C1, &Message::FeaturesRequest).one(C1) {
        Message::FeaturesReply(fr) => {
            assert_eq!(fr.datapath_id, 0x00aa_bbcc_ddee_ff01);
            assert_eq!(fr.n_buffers, 0);
            assert_eq!(fr.n_tables, 64);
            assert_eq!(fr.auxiliary_id, 0);
            // FLOW, TABLE, PORT, GROUP, QUEUE stats.
            assert_eq!(fr.capabilities, 0b100_1111);
        }
        other => panic!("{other:?}"),
    }
    let cfg = |f: &mut Fake| match f.send(C1, &Message::GetConfigRequest).one(C1) {
        Message::GetConfigReply(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        cfg(&mut f),
        SwitchConfig {
            flags: 0,
            miss_send_len: 128
        }
    );
    let set = Message::SetConfig(SwitchConfig {
        flags: 1,
        miss_send_len: 0xffff,
    });
    assert!(f.send(C1, &set).sent.is_empty());
    assert_eq!(
        cfg(&mut f),
        SwitchConfig {
            flags: 1,
            miss_send_len: 0xffff
        }
    );
    assert_eq!(f.of.miss_send_len, 0xffff);
    check_error(
        &mut f,
        C1,
        &Message::SetConfig(SwitchConfig {
            flags: 2,
            miss_send_len: 128,
        }),
        ErrorCode::SwitchConfigFailed(SwitchConfigFailedCode::BadFlags),
    );
}

#[test]
fn echo_and_dead_peer_on_a_virtual_clock() {
    let mut f = Fake::with(OfprotoConfig {
        echo_interval_ns: 5 * SEC,
        echo_timeout_ns: 15 * SEC,
        ..OfprotoConfig::default()
    });
    f.connect(C1, ConnKind::Active);
    let out = f.send_xid(C1, 42, &Message::EchoRequest(b"ping".to_vec()));
    assert_eq!(out.to(C1), vec![(42, Message::EchoReply(b"ping".to_vec()))]);

    let t0 = f.now;
    assert_eq!(f.of.next_deadline(), Some(t0 + 5 * SEC));
    // Nothing before the interval.
    assert!(Fake::collect(f.of.tick(t0 + 4 * SEC)).sent.is_empty());
    // After 5 s of silence: one echo request, not repeated on the next tick.
    let out = Fake::collect(f.of.tick(t0 + 5 * SEC));
    let (echo_xid, m) = out.to(C1)[0].clone();
    assert_eq!(m, Message::EchoRequest(Vec::new()));
    assert!(Fake::collect(f.of.tick(t0 + 6 * SEC)).sent.is_empty());
    assert_eq!(f.of.next_deadline(), Some(t0 + 15 * SEC));

    // The peer answers: liveness restarts from the reply.
    f.now = t0 + 7 * SEC;
    let out = f.send_xid(C1, echo_xid, &Message::EchoReply(Vec::new()));
    assert!(out.sent.is_empty());
    assert_eq!(f.of.next_deadline(), Some(t0 + 12 * SEC));
    assert!(Fake::collect(f.of.tick(t0 + 11 * SEC)).sent.is_empty());

    // Then silence: echo at +5 s, close at +15 s (from the reply).
    let out = Fake::collect(f.of.tick(t0 + 12 * SEC));
    assert_eq!(out.msgs(C1).len(), 1);
    assert!(out.closed.is_empty());
    assert!(f.of.controller_connected());
    assert!(Fake::collect(f.of.tick(t0 + 21 * SEC)).closed.is_empty());
    let out = Fake::collect(f.of.tick(t0 + 22 * SEC));
    assert_eq!(out.closed, vec![C1]);
    assert!(!f.of.controller_connected());
    assert_eq!(f.of.counters.echo_timeouts, 1);
    assert_eq!(f.of.next_deadline(), None);
}

#[test]
fn silent_before_hello_is_closed() {
    let mut f = Fake::with(OfprotoConfig {
        echo_interval_ns: 5 * SEC,
        echo_timeout_ns: 15 * SEC,
        ..OfprotoConfig::default()
    });
    f.open(C1, ConnKind::Passive);
    let t0 = f.now;
    // No echo before HELLO completes; closed at the timeout.
    assert_eq!(f.of.next_deadline(), Some(t0 + 15 * SEC));
    assert!(Fake::collect(f.of.tick(t0 + 10 * SEC)).sent.is_empty());
    assert_eq!(Fake::collect(f.of.tick(t0 + 15 * SEC)).closed, vec![C1]);
}

// ---------------------------------------------------------------------------------------
// FLOW_MOD, BARRIER, FLOW_REMOVED

fn dump_flows(f: &mut Fake, conn: ConnId) -> Vec<shg_flows::wire::multipart::FlowStats> {
    f.multipart(conn, MultipartRequest::Flow(FlowStatsRequest::default()))
        .into_iter()
        .flat_map(|b| match b {
            MultipartReply::Flow(v) => v,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn flow_mod_add_modify_delete_with_barrier_and_flow_removed() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    f.port(1, true);
    f.port(2, true);
    let r = f.send_barrier(
        C1,
        &Message::FlowMod(
            parse_flow(
                "table=0,priority=10,in_port=1,cookie=0x7,send_flow_rem,actions=output:2",
                FlowModCommand::Add,
            )
            .unwrap(),
        ),
    );
    assert_eq!(r, vec![Message::BarrierReply]);
    f.add_flow(C1, "table=1,priority=5,ip,actions=drop");
    let flows = dump_flows(&mut f, C1);
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].table_id, 0);
    assert_eq!(flows[0].cookie, 7);
    assert_eq!(flows[0].flags, flow_flags::SEND_FLOW_REM);
    assert_eq!(
        flows[0].instructions,
        vec![Instruction::ApplyActions(vec![Action::Output {
            port: 2,
            max_len: 0
        }])]
    );

    // Modify (strict): new actions, same cookie.
    let r = f.flow(
        C1,
        "table=0,priority=10,in_port=1,actions=output:1",
        FlowModCommand::ModifyStrict,
    );
    assert!(r.is_empty());
    let flows = dump_flows(&mut f, C1);
    assert_eq!(
        flows[0].instructions,
        vec![Instruction::ApplyActions(vec![Action::Output {
            port: 1,
            max_len: 0
        }])]
    );
    assert_eq!(flows[0].cookie, 7);

    // Delete everything: FLOW_REMOVED (reason DELETE) only for the flow that asked, and it
    // comes before the barrier reply.
    f.now += 3 * SEC;
    let fm = parse_flow("", FlowModCommand::Delete).unwrap();
    let r = f.send_barrier(C1, &Message::FlowMod(fm));
    assert_eq!(r.len(), 2, "{r:?}");
    match &r[0] {
        Message::FlowRemoved(fr) => {
            assert_eq!(fr.reason, FlowRemovedReason::Delete);
            assert_eq!(fr.cookie, 7);
            assert_eq!(fr.priority, 10);
            assert_eq!(fr.table_id, 0);
            assert_eq!(fr.duration_sec, 3);
            assert!(fr.r#match.is_exact(Field::InPort, 1));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r[1], Message::BarrierReply);
    assert!(dump_flows(&mut f, C1).is_empty());
}

#[test]
fn flow_expiry_sends_flow_removed() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    f.add_flow(C1, "priority=1,hard_timeout=2,send_flow_rem,actions=drop");
    f.add_flow(C1, "priority=2,idle_timeout=5,actions=drop");
    let t0 = f.now;
    assert_eq!(f.of.next_deadline(), Some(t0 + 2 * SEC));
    assert!(Fake::collect(f.of.tick(t0 + SEC)).sent.is_empty());
    let out = Fake::collect(f.of.tick(t0 + 2 * SEC));
    match out.one(C1) {
        Message::FlowRemoved(fr) => {
            assert_eq!(fr.reason, FlowRemovedReason::HardTimeout);
            assert_eq!(fr.hard_timeout, 2);
            assert_eq!(fr.duration_sec, 2);
        }
        other => panic!("{other:?}"),
    }
    // The idle flow expires silently (no SEND_FLOW_REM); the deadline moved to it.
    assert_eq!(
        f.of.next_deadline().map(|d| d.min(t0 + 5 * SEC)),
        Some(t0 + 5 * SEC)
    );
    let out = Fake::collect(f.of.tick(t0 + 5 * SEC));
    assert!(
        !out.msgs(C1)
            .iter()
            .any(|m| matches!(m, Message::FlowRemoved(_))),
        "{out:?}"
    );
    assert!(f.of.tables.is_empty());
}

#[test]
fn flow_mod_errors() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    let fm = |s: &str| Message::FlowMod(parse_flow(s, FlowModCommand::Add).unwrap());
    check_error(
        &mut f,
        C1,
        &fm("actions=group:7"),
        ErrorCode::BadAction(BadActionCode::BadOutGroup),
    );
    check_error(
        &mut f,
        C1,
        &fm("actions=meter:3,output:1"),
        ErrorCode::MeterModFailed(MeterModFailedCode::InvalidMeter),
    );
    check_error(
        &mut f,
        C1,
        &fm("table=100,actions=drop"),
        ErrorCode::FlowModFailed(FlowModFailedCode::BadTableId),
    );
    let mut buffered = parse_flow("actions=output:1", FlowModCommand::Add).unwrap();
    buffered.buffer_id = 5;
    check_error(
        &mut f,
        C1,
        &Message::FlowMod(buffered),
        ErrorCode::BadRequest(BadRequestCode::BufferUnknown),
    );
    assert!(f.of.tables.is_empty(), "a refused flow_mod changes nothing");
    // Overlap check.
    f.add_flow(C1, "priority=5,ip,actions=drop");
    let mut over = parse_flow(
        "priority=5,ip,nw_src=198.18.0.1,actions=drop",
        FlowModCommand::Add,
    )
    .unwrap();
    over.flags |= flow_flags::CHECK_OVERLAP;
    check_error(
        &mut f,
        C1,
        &Message::FlowMod(over),
        ErrorCode::FlowModFailed(FlowModFailedCode::Overlap),
    );
    // A truncated flow_mod: a decode error, answered with its code; the connection stays.
    let mut bytes = encode(0x5eed, &fm("actions=drop"));
    bytes.truncate(20);
    bytes[2..4].copy_from_slice(&20u16.to_be_bytes());
    let out = f.send_raw(C1, &bytes);
    expect_error(
        &out,
        C1,
        0x5eed,
        ErrorCode::BadRequest(BadRequestCode::BadLen),
    );
    assert_eq!(f.of.counters.decode_errors, 1);
}

// ---------------------------------------------------------------------------------------
// Groups and meters

#[test]
fn groups_meters_and_their_stats() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    f.port(1, true);
    f.port(2, true);
    let gm = parse_group(
        "group_id=1,type=ff,bucket=watch_port:1,actions=output:1,bucket=watch_port:2,actions=output:2",
        GroupModCommand::Add,
    )
    .unwrap();
    assert!(f.send(C1, &Message::GroupMod(gm)).sent.is_empty());
    let mm = parse_meter(
        "meter=3,kbps,bands=type=drop,rate=1000",
        MeterModCommand::Add,
    )
    .unwrap();
    assert!(f.send(C1, &Message::MeterMod(mm)).sent.is_empty());
    f.add_flow(C1, "priority=1,send_flow_rem,actions=meter:3,group:1");
    f.add_flow(C1, "priority=2,ip,actions=group:1");

    match &f.multipart(
        C1,
        MultipartRequest::Group {
            group_id: group::ALL,
        },
    )[..]
    {
        [MultipartReply::Group(v)] => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].group_id, 1);
            assert_eq!(v[0].ref_count, 2);
            assert_eq!(v[0].bucket_stats.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    match &f.multipart(C1, MultipartRequest::GroupDesc)[..] {
        [MultipartReply::GroupDesc(v)] => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].buckets.len(), 2);
            assert_eq!(v[0].buckets[1].watch_port, 2);
        }
        other => panic!("{other:?}"),
    }
    match &f.multipart(C1, MultipartRequest::GroupFeatures)[..] {
        [MultipartReply::GroupFeatures(g)] => assert_eq!(g.types, 0b1111),
        other => panic!("{other:?}"),
    }
    match &f.multipart(
        C1,
        MultipartRequest::Meter {
            meter_id: meter::ALL,
        },
    )[..]
    {
        [MultipartReply::Meter(v)] => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].meter_id, 3);
            assert_eq!(v[0].flow_count, 1);
            assert_eq!(v[0].band_stats.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    match &f.multipart(C1, MultipartRequest::MeterConfig { meter_id: 3 })[..] {
        [MultipartReply::MeterConfig(v)] => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].bands.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    match &f.multipart(C1, MultipartRequest::MeterFeatures)[..] {
        [MultipartReply::MeterFeatures(m)] => {
            assert!(m.max_meter > 0);
            assert_eq!(m.band_types, 0b110);
        }
        other => panic!("{other:?}"),
    }
    check_error(
        &mut f,
        C1,
        &Message::MultipartRequest {
            flags: 0,
            body: MultipartRequest::Meter { meter_id: 99 },
        },
        ErrorCode::MeterModFailed(MeterModFailedCode::UnknownMeter),
    );

    // Fast-failover liveness follows the ports.
    assert!(f.of.port_live(1));
    f.send(
        C1,
        &Message::SetAsync(AsyncConfig {
            port_status_mask: [0, 0],
            ..shg_switch::ofproto::default_async_config()
        }),
    );
    assert!(Fake::collect(f.of.set_port_link(1, false, f.now))
        .sent
        .is_empty());
    assert!(!f.of.port_live(1));

    // Deleting the meter removes the flow using it (reason DELETE); deleting the group
    // removes the other (reason GROUP_DELETE, but it did not ask for FLOW_REMOVED).
    let del_m = parse_meter("meter=3", MeterModCommand::Delete).unwrap();
    let r = f.send_barrier(C1, &Message::MeterMod(del_m));
    assert!(
        matches!(&r[0], Message::FlowRemoved(fr) if fr.reason == FlowRemovedReason::Delete && fr.priority == 1),
        "{r:?}"
    );
    assert_eq!(f.of.tables.len(), 1);
    let del_g = parse_group("group_id=1", GroupModCommand::Delete).unwrap();
    let r = f.send_barrier(C1, &Message::GroupMod(del_g));
    assert_eq!(r, vec![Message::BarrierReply]);
    assert!(f.of.tables.is_empty());
}

#[test]
fn group_delete_sends_group_delete_reason() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    let gm = parse_group(
        "group_id=5,type=all,bucket=actions=output:1",
        GroupModCommand::Add,
    )
    .unwrap();
    f.send(C1, &Message::GroupMod(gm));
    f.add_flow(C1, "priority=9,send_flow_rem,actions=group:5");
    let del = parse_group("group_id=5", GroupModCommand::Delete).unwrap();
    let r = f.send_barrier(C1, &Message::GroupMod(del));
    assert!(
        matches!(&r[0], Message::FlowRemoved(fr) if fr.reason == FlowRemovedReason::GroupDelete),
        "{r:?}"
    );
}

#[test]
fn group_mod_bucket_actions_are_validated() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    let mut gm = parse_group(
        "group_id=5,type=all,bucket=actions=output:1",
        GroupModCommand::Add,
    )
    .unwrap();
    gm.buckets[0].actions = vec![Action::Output {
        port: 0,
        max_len: 0,
    }];
    check_error(
        &mut f,
        C1,
        &Message::GroupMod(gm),
        ErrorCode::BadAction(BadActionCode::BadOutPort),
    );
    assert!(f.of.groups.is_empty());
}

// ---------------------------------------------------------------------------------------
// Roles and async configuration

fn role(f: &mut Fake, conn: ConnId, r: ControllerRole, generation_id: u64) -> Message {
    f.send(
        conn,
        &Message::RoleRequest(Role {
            role: r,
            generation_id,
        }),
    )
    .one(conn)
}

#[test]
fn roles_master_election_and_staleness() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    f.connect(C2, ConnKind::Active);
    assert_eq!(
        role(&mut f, C1, ControllerRole::Master, 10),
        Message::RoleReply(Role {
            role: ControllerRole::Master,
            generation_id: 10
        })
    );
    // C2 becomes master with a newer generation: C1 is demoted to slave.
    assert_eq!(
        role(&mut f, C2, ControllerRole::Master, 11),
        Message::RoleReply(Role {
            role: ControllerRole::Master,
            generation_id: 11
        })
    );
    assert_eq!(
        role(&mut f, C1, ControllerRole::NoChange, 0),
        Message::RoleReply(Role {
            role: ControllerRole::Slave,
            generation_id: 11
        })
    );
    // A stale generation is refused and changes nothing.
    check_error(
        &mut f,
        C1,
        &Message::RoleRequest(Role {
            role: ControllerRole::Master,
            generation_id: 10,
        }),
        ErrorCode::RoleRequestFailed(RoleRequestFailedCode::Stale),
    );
    check_error(
        &mut f,
        C1,
        &Message::RoleRequest(Role {
            role: ControllerRole::Unknown(7),
            generation_id: 12,
        }),
        ErrorCode::RoleRequestFailed(RoleRequestFailedCode::BadRole),
    );
    // Equal needs no generation check.
    assert!(matches!(
        role(&mut f, C1, ControllerRole::Equal, 0),
        Message::RoleReply(Role {
            role: ControllerRole::Equal,
            ..
        })
    ));
    // Generation ids compare as wrapping signed distances.
    f.connect(3, ConnKind::Active);
    assert!(matches!(
        role(&mut f, 3, ControllerRole::Slave, 11 + (1 << 62)),
        Message::RoleReply(_)
    ));
    check_error(
        &mut f,
        3,
        &Message::RoleRequest(Role {
            role: ControllerRole::Slave,
            generation_id: 12 + (1 << 62) + (1 << 63),
        }),
        ErrorCode::RoleRequestFailed(RoleRequestFailedCode::Stale),
    );
}

#[test]
fn slaves_may_not_change_state() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    f.port(1, true);
    role(&mut f, C1, ControllerRole::Slave, 1);
    let is_slave = ErrorCode::BadRequest(BadRequestCode::IsSlave);
    let msgs = vec![
        Message::FlowMod(parse_flow("actions=drop", FlowModCommand::Add).unwrap()),
        Message::GroupMod(
            parse_group(
                "group_id=1,type=all,bucket=actions=output:1",
                GroupModCommand::Add,
            )
            .unwrap(),
        ),
        Message::MeterMod(
            parse_meter("meter=1,kbps,bands=type=drop,rate=10", MeterModCommand::Add).unwrap(),
        ),
        Message::PortMod(PortMod {
            port_no: 1,
            hw_addr: port_info(1).hw_addr,
            config: pcfg::PORT_DOWN,
            mask: pcfg::PORT_DOWN,
            advertise: 0,
        }),
        Message::TableMod {
            table_id: 0,
            config: 0,
        },
        Message::PacketOut(PacketOut {
            buffer_id: u32::MAX,
            in_port: port::CONTROLLER,
            actions: vec![Action::Output {
                port: 1,
                max_len: 0,
            }],
            data: vec![0; 60],
        }),
        Message::MultipartRequest {
            flags: 0,
            body: MultipartRequest::TableFeatures(vec![TableFeatures::default()]),
        },
    ];
    for m in &msgs {
        check_error(&mut f, C1, m, is_slave);
    }
    assert!(f.of.tables.is_empty() && f.of.groups.is_empty() && f.of.meters.is_empty());
    // Reads are fine for a slave; SET_CONFIG is ignored without an error.
    assert!(matches!(
        f.send(C1, &Message::FeaturesRequest).one(C1),
        Message::FeaturesReply(_)
    ));
    let out = f.send(
        C1,
        &Message::SetConfig(SwitchConfig {
            flags: 0,
            miss_send_len: 1,
        }),
    );
    assert!(out.sent.is_empty());
    assert_eq!(f.of.miss_send_len, 128);
}

fn packet_in_event(reason: u8, in_port: u32) -> PacketInEvent {
    let mut m = Match::any();
    m.set_u64(Field::InPort, u64::from(in_port));
    PacketInEvent {
        reason,
        table_id: 0,
        cookie: 0x55,
        r#match: m,
        data: vec![0xab; 60],
        total_len: 60,
    }
}

#[test]
fn async_filtering_by_role_and_mask() {
    let mut f = Fake::new();
    f.port(1, true);
    f.connect(C1, ConnKind::Active);
    f.connect(C2, ConnKind::Active);
    f.connect(TOOL, ConnKind::Passive);
    // Defaults per spec.
    match f.send(C1, &Message::GetAsyncRequest).one(C1) {
        Message::GetAsyncReply(a) => {
            assert_eq!(a.packet_in_mask, [0b011, 0]);
            assert_eq!(a.port_status_mask, [0b111, 0b111]);
            assert_eq!(a.flow_removed_mask, [0b1111, 0]);
        }
        other => panic!("{other:?}"),
    }
    role(&mut f, C1, ControllerRole::Master, 1);
    role(&mut f, C2, ControllerRole::Slave, 1);

    // Packet-in: the master gets it, the slave and the passive tool do not.
    let out = Fake::collect(f.of.packet_in(packet_in_event(0, 1), f.now));
    match out.one(C1) {
        Message::PacketIn(p) => {
            assert_eq!(p.buffer_id, u32::MAX);
            assert_eq!(p.total_len, 60);
            assert_eq!(p.cookie, 0x55);
            assert_eq!(p.data, vec![0xab; 60]);
            assert!(p.r#match.is_exact(Field::InPort, 1));
        }
        other => panic!("{other:?}"),
    }
    assert!(out.msgs(C2).is_empty() && out.msgs(TOOL).is_empty());
    // INVALID_TTL is off by default.
    assert!(Fake::collect(f.of.packet_in(packet_in_event(2, 1), f.now))
        .sent
        .is_empty());

    // Port status goes to master and slave, not to the tool.
    let out = f.port(2, true);
    assert_eq!(out.msgs(C1).len(), 1);
    assert_eq!(out.msgs(C2).len(), 1);
    assert!(out.msgs(TOOL).is_empty());

    // The slave asks for packet-ins with reason ACTION as a slave; the master turns off
    // NO_MATCH.
    f.send(
        C2,
        &Message::SetAsync(AsyncConfig {
            packet_in_mask: [0, 0b10],
            port_status_mask: [0, 0],
            flow_removed_mask: [0, 0],
        }),
    );
    f.send(
        C1,
        &Message::SetAsync(AsyncConfig {
            packet_in_mask: [0b10, 0],
            port_status_mask: [0b111, 0],
            flow_removed_mask: [0b111, 0],
        }),
    );
    let out = Fake::collect(f.of.packet_in(packet_in_event(0, 1), f.now));
    assert!(out.sent.is_empty());
    assert_eq!(f.of.counters.packet_ins_unwanted, 2);
    let out = Fake::collect(f.of.packet_in(packet_in_event(1, 1), f.now));
    assert_eq!(out.msgs(C1).len(), 1);
    assert_eq!(out.msgs(C2).len(), 1);
    let out = f.port(3, true);
    assert_eq!(out.msgs(C1).len(), 1);
    assert!(out.msgs(C2).is_empty());

    // The tool asks for async messages with SET_CONFIG (as ovs-ofctl monitor does).
    f.send(
        TOOL,
        &Message::SetConfig(SwitchConfig {
            flags: 0,
            miss_send_len: 128,
        }),
    );
    let out = Fake::collect(f.of.packet_in(packet_in_event(1, 1), f.now));
    assert_eq!(out.msgs(TOOL).len(), 1);

    // OFPPC_NO_PACKET_IN on the input port suppresses packet-ins from it.
    let pm = PortMod {
        port_no: 1,
        hw_addr: port_info(1).hw_addr,
        config: pcfg::NO_PACKET_IN,
        mask: pcfg::NO_PACKET_IN,
        advertise: 0,
    };
    f.send(C1, &Message::PortMod(pm));
    let out = Fake::collect(f.of.packet_in(packet_in_event(1, 1), f.now));
    assert!(out.sent.is_empty());
    assert_eq!(f.of.counters.packet_ins_suppressed, 1);
}

// ---------------------------------------------------------------------------------------
// Ports

#[test]
fn port_add_link_change_mod_and_remove() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    let out = f.port(1, true);
    match out.one(C1) {
        Message::PortStatus { reason, port } => {
            assert_eq!(reason, PortReason::Add);
            assert_eq!(port.port_no, 1);
            assert_eq!(port.name, "veth1");
            assert_eq!(port.state, pstate::LIVE);
            assert_eq!(port.curr_speed, 10_000_000);
        }
        other => panic!("{other:?}"),
    }
    assert!(f.of.port_live(1));
    let out = Fake::collect(f.of.set_port_link(1, false, f.now));
    match out.one(C1) {
        Message::PortStatus { reason, port } => {
            assert_eq!(reason, PortReason::Modify);
            assert_eq!(port.state, pstate::LINK_DOWN);
        }
        other => panic!("{other:?}"),
    }
    assert!(!f.of.port_live(1));
    // No change, no message.
    assert!(Fake::collect(f.of.set_port_link(1, false, f.now))
        .sent
        .is_empty());
    Fake::collect(f.of.set_port_link(1, true, f.now));
    assert!(f.of.port_live(1));

    // PORT_MOD: PORT_DOWN makes it not live; PORT_STATUS tells.
    let pm = |config, hw| PortMod {
        port_no: 1,
        hw_addr: hw,
        config,
        mask: pcfg::PORT_DOWN,
        advertise: 0,
    };
    let out = f.send(
        C1,
        &Message::PortMod(pm(pcfg::PORT_DOWN, port_info(1).hw_addr)),
    );
    match out.one(C1) {
        Message::PortStatus { reason, port } => {
            assert_eq!(reason, PortReason::Modify);
            assert_eq!(port.config, pcfg::PORT_DOWN);
            assert_eq!(port.state, 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(!f.of.port_live(1));
    check_error(
        &mut f,
        C1,
        &Message::PortMod(pm(0, [9; 6])),
        ErrorCode::PortModFailed(PortModFailedCode::BadHwAddr),
    );
    check_error(
        &mut f,
        C1,
        &Message::PortMod(PortMod {
            port_no: 77,
            ..pm(0, [0; 6])
        }),
        ErrorCode::PortModFailed(PortModFailedCode::BadPort),
    );

    let out = Fake::collect(f.of.remove_port(1, f.now));
    match out.one(C1) {
        Message::PortStatus { reason, port } => {
            assert_eq!(reason, PortReason::Delete);
            assert_eq!(port.port_no, 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(!f.of.port_live(1));
}

// ---------------------------------------------------------------------------------------
// PACKET_OUT

fn frame() -> Vec<u8> {
    let mut v = vec![0xff; 6];
    v.extend([0x02, 0, 0, 0, 0, 0x09]);
    v.extend([0x88, 0xb5]);
    v.resize(64, 0x11);
    v
}

#[test]
fn packet_out_transmits_and_reaches_the_controller() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    f.port(1, true);
    f.port(2, true);
    let po = |actions| {
        Message::PacketOut(PacketOut {
            buffer_id: u32::MAX,
            in_port: port::CONTROLLER,
            actions,
            data: frame(),
        })
    };
    let out = f.send(
        C1,
        &po(vec![Action::Output {
            port: 2,
            max_len: 0,
        }]),
    );
    assert!(out.sent.is_empty(), "{:?}", out.sent);
    assert_eq!(out.transmits.len(), 1);
    match &out.transmits[0] {
        Output::Port { port, pkt, .. } => {
            assert_eq!(*port, 2);
            assert_eq!(pkt.data, frame());
        }
        other => panic!("{other:?}"),
    }
    let out = f.send(
        C1,
        &po(vec![Action::Output {
            port: port::CONTROLLER,
            max_len: 0xffff,
        }]),
    );
    match out.one(C1) {
        Message::PacketIn(p) => {
            assert_eq!(p.reason, shg_flows::wire::message::PacketInReason::Action);
            assert_eq!(p.data, frame());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn packet_out_errors() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    f.port(1, true);
    let po = |buffer_id, in_port, actions| {
        Message::PacketOut(PacketOut {
            buffer_id,
            in_port,
            actions,
            data: frame(),
        })
    };
    let out1 = vec![Action::Output {
        port: 1,
        max_len: 0,
    }];
    check_error(
        &mut f,
        C1,
        &po(7, port::CONTROLLER, out1.clone()),
        ErrorCode::BadRequest(BadRequestCode::BufferUnknown),
    );
    check_error(
        &mut f,
        C1,
        &po(u32::MAX, port::FLOOD, out1),
        ErrorCode::BadRequest(BadRequestCode::BadPort),
    );
    check_error(
        &mut f,
        C1,
        &po(u32::MAX, port::CONTROLLER, vec![Action::Group(3)]),
        ErrorCode::BadAction(BadActionCode::BadOutGroup),
    );
    check_error(
        &mut f,
        C1,
        &po(
            u32::MAX,
            port::CONTROLLER,
            vec![Action::Unknown {
                typ: 99,
                body: vec![0; 4],
            }],
        ),
        ErrorCode::BadAction(BadActionCode::BadType),
    );
    // in_port 0 is what loxi-based controllers (OFTest) send by default: taken, as OVS does;
    // so is a packet_out with neither actions nor data. Neither transmits anything.
    let mut empty = po(u32::MAX, 0, vec![]);
    if let Message::PacketOut(p) = &mut empty {
        p.data.clear();
    }
    for m in [po(u32::MAX, 0, vec![]), empty] {
        let out = f.send(C1, &m);
        assert!(out.sent.is_empty() && out.transmits.is_empty(), "{out:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Multipart

#[test]
fn every_multipart_reply() {
    let mut f = Fake::with(OfprotoConfig {
        n_tables: 4,
        ..OfprotoConfig::default()
    });
    f.connect(C1, ConnKind::Active);
    f.port(1, true);
    f.port(2, false);
    if let Some(p) = f.of.ports.get_mut(&1) {
        p.counters.rx_packets = 5;
    }
    f.add_flow(C1, "table=0,priority=3,actions=goto_table:1");
    f.add_flow(C1, "table=1,priority=3,ip,actions=output:2");
    f.add_flow(C1, "table=1,priority=4,arp,actions=output:1");

    match &f.multipart(C1, MultipartRequest::Desc)[..] {
        [MultipartReply::Desc(d)] => {
            assert_eq!(d.mfr_desc, "shg");
            assert!(!d.dp_desc.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let flows = dump_flows(&mut f, C1);
    assert_eq!(flows.len(), 3);
    // Filtered by table.
    let t1 = f.multipart(
        C1,
        MultipartRequest::Flow(FlowStatsRequest {
            table_id: 1,
            ..FlowStatsRequest::default()
        }),
    );
    assert!(matches!(&t1[..], [MultipartReply::Flow(v)] if v.len() == 2 && v[0].priority == 4));
    match &f.multipart(C1, MultipartRequest::Aggregate(FlowStatsRequest::default()))[..] {
        [MultipartReply::Aggregate(a)] => assert_eq!(a.flow_count, 3),
        other => panic!("{other:?}"),
    }
    check_error(
        &mut f,
        C1,
        &Message::MultipartRequest {
            flags: 0,
            body: MultipartRequest::Flow(FlowStatsRequest {
                table_id: 9,
                ..FlowStatsRequest::default()
            }),
        },
        ErrorCode::BadRequest(BadRequestCode::BadTableId),
    );
    match &f.multipart(C1, MultipartRequest::Table)[..] {
        [MultipartReply::Table(v)] => {
            assert_eq!(v.len(), 4);
            assert_eq!(v[1].active_count, 2);
        }
        other => panic!("{other:?}"),
    }
    match &f.multipart(C1, MultipartRequest::PortStats { port_no: port::ANY })[..] {
        [MultipartReply::PortStats(v)] => {
            assert_eq!(v.len(), 2);
            assert_eq!(v[0].rx_packets, 5);
        }
        other => panic!("{other:?}"),
    }
    match &f.multipart(C1, MultipartRequest::PortStats { port_no: 2 })[..] {
        [MultipartReply::PortStats(v)] => assert_eq!(v.len(), 1),
        other => panic!("{other:?}"),
    }
    match &f.multipart(C1, MultipartRequest::PortStats { port_no: 42 })[..] {
        [MultipartReply::PortStats(v)] => assert!(v.is_empty()),
        other => panic!("{other:?}"),
    }

    // Queues: queue 0 on every port, plus a configured queue 3 on port 1 (its scheduler:
    // 10 Mbit/s, queue 3 guaranteed 2 and capped at 5, i.e. 200 and 500 tenths of a percent).
    f.of.set_port_qos(
        1,
        shg_switch::qos::PortQosConfig {
            rate: Some(10_000_000),
            queues: vec![
                shg_switch::qos::QueueConfig {
                    id: 0,
                    min_rate: 0,
                    max_rate: None,
                    priority: 7,
                },
                shg_switch::qos::QueueConfig {
                    id: 3,
                    min_rate: 2_000_000,
                    max_rate: Some(5_000_000),
                    priority: 0,
                },
            ],
        },
        f.now,
    )
    .expect("valid QoS");
    match &f.multipart(
        C1,
        MultipartRequest::Queue {
            port_no: port::ANY,
            queue_id: OFPQ_ALL,
        },
    )[..]
    {
        [MultipartReply::Queue(v)] => {
            let ids: Vec<(u32, u32)> = v.iter().map(|q| (q.port_no, q.queue_id)).collect();
            assert_eq!(ids, vec![(1, 0), (1, 3), (2, 0)]);
        }
        other => panic!("{other:?}"),
    }
    match &f.multipart(
        C1,
        MultipartRequest::Queue {
            port_no: 1,
            queue_id: 3,
        },
    )[..]
    {
        [MultipartReply::Queue(v)] => assert_eq!(v.len(), 1),
        other => panic!("{other:?}"),
    }
    let q = |port_no, queue_id| Message::MultipartRequest {
        flags: 0,
        body: MultipartRequest::Queue { port_no, queue_id },
    };
    check_error(
        &mut f,
        C1,
        &q(42, OFPQ_ALL),
        ErrorCode::QueueOpFailed(QueueOpFailedCode::BadPort),
    );
    check_error(
        &mut f,
        C1,
        &q(2, 3),
        ErrorCode::QueueOpFailed(QueueOpFailedCode::BadQueue),
    );
    // QUEUE_GET_CONFIG reports the rates.
    match f
        .send(C1, &Message::QueueGetConfigRequest { port: 1 })
        .one(C1)
    {
        Message::QueueGetConfigReply { port, queues } => {
            assert_eq!(port, 1);
            assert_eq!(queues.len(), 2);
            assert_eq!(queues[1].queue_id, 3);
            assert_eq!(
                queues[1].properties,
                vec![QueueProp::MinRate(200), QueueProp::MaxRate(500)]
            );
        }
        other => panic!("{other:?}"),
    }
    check_error(
        &mut f,
        C1,
        &Message::QueueGetConfigRequest { port: 42 },
        ErrorCode::QueueOpFailed(QueueOpFailedCode::BadPort),
    );

    match &f.multipart(
        C1,
        MultipartRequest::Group {
            group_id: group::ALL,
        },
    )[..]
    {
        [MultipartReply::Group(v)] => assert!(v.is_empty()),
        other => panic!("{other:?}"),
    }
    match &f.multipart(C1, MultipartRequest::PortDesc)[..] {
        [MultipartReply::PortDesc(v)] => {
            assert_eq!(v.len(), 2);
            assert_eq!(v[1].state, pstate::LINK_DOWN);
        }
        other => panic!("{other:?}"),
    }
    match &f.multipart(C1, MultipartRequest::TableFeatures(Vec::new()))[..] {
        [MultipartReply::TableFeatures(v)] => {
            assert_eq!(v.len(), 4);
            assert_eq!(v[3].table_id, 3);
        }
        other => panic!("{other:?}"),
    }
    // Errors for what we do not support.
    let mp = |body| Message::MultipartRequest { flags: 0, body };
    check_error(
        &mut f,
        C1,
        &mp(MultipartRequest::TableFeatures(vec![
            TableFeatures::default(),
        ])),
        ErrorCode::TableFeaturesFailed(TableFeaturesFailedCode::Eperm),
    );
    check_error(
        &mut f,
        C1,
        &mp(MultipartRequest::Experimenter {
            experimenter: 0x2320,
            exp_type: 1,
            data: vec![],
        }),
        ErrorCode::BadRequest(BadRequestCode::BadExperimenter),
    );
    check_error(
        &mut f,
        C1,
        &mp(MultipartRequest::Unknown {
            typ: 77,
            body: vec![],
        }),
        ErrorCode::BadRequest(BadRequestCode::BadMultipart),
    );
}

#[test]
fn table_features_reply_is_split_for_64_tables() {
    let mut f = Fake::new();
    f.connect(TOOL, ConnKind::Passive);
    let bodies = f.multipart(TOOL, MultipartRequest::TableFeatures(Vec::new()));
    assert!(bodies.len() >= 2, "64 tables do not fit one message");
    let ids: Vec<u8> = bodies
        .iter()
        .flat_map(|b| match b {
            MultipartReply::TableFeatures(v) => v.iter().map(|t| t.table_id).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, (0..64).collect::<Vec<u8>>());
}

#[test]
fn flow_stats_reply_is_split() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    for i in 0..1500u32 {
        f.add_flow(
            C1,
            &format!(
                "priority=100,ip,nw_dst=198.18.{}.{},actions=output:1",
                i / 256,
                i % 256
            ),
        );
    }
    // Two pages (1000 + 500 entries), each cut into bodies that fit a message; REPLY_MORE on
    // every message but the last (checked by `multipart`).
    let bodies = f.multipart(C1, MultipartRequest::Flow(FlowStatsRequest::default()));
    assert!(bodies.len() >= 2, "{} parts", bodies.len());
    let entries: Vec<_> = bodies
        .iter()
        .flat_map(|b| match b {
            MultipartReply::Flow(v) => v.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(entries.len(), 1500);
    // In dump order, each flow once (the match differs in nw_dst, same priority and table).
    let mut matches: Vec<_> = entries.iter().map(|e| e.r#match).collect();
    let sorted = {
        let mut m = matches.clone();
        m.sort();
        m
    };
    assert_eq!(matches, sorted);
    matches.dedup();
    assert_eq!(matches.len(), 1500);
    // The dump is over: the next request starts a new one.
    let again = f.multipart(C1, MultipartRequest::Flow(FlowStatsRequest::default()));
    assert_eq!(again.len(), bodies.len());
}

#[test]
fn multipart_request_in_parts() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    let part = |flags| Message::MultipartRequest {
        flags,
        body: MultipartRequest::Desc,
    };
    // First part: nothing yet; last part (same xid): the reply.
    assert!(f
        .send_xid(C1, 500, &part(multipart_flags::REQ_MORE))
        .sent
        .is_empty());
    let out = f.send_xid(C1, 500, &part(0));
    assert!(matches!(
        &out.to(C1)[..],
        [(
            500,
            Message::MultipartReply {
                body: MultipartReply::Desc(_),
                ..
            }
        )]
    ));
    // A type change between parts.
    f.send_xid(C1, 501, &part(multipart_flags::REQ_MORE));
    let out = f.send_xid(
        C1,
        501,
        &Message::MultipartRequest {
            flags: 0,
            body: MultipartRequest::PortDesc,
        },
    );
    expect_error(
        &out,
        C1,
        501,
        ErrorCode::BadRequest(BadRequestCode::BadMultipart),
    );
    // Too many open requests.
    for x in 0..MAX_PENDING_MULTIPART {
        let xid = 1000 + u32::try_from(x).unwrap_or(0);
        assert!(f
            .send_xid(C1, xid, &part(multipart_flags::REQ_MORE))
            .sent
            .is_empty());
    }
    let out = f.send_xid(C1, 9999, &part(multipart_flags::REQ_MORE));
    expect_error(
        &out,
        C1,
        9999,
        ErrorCode::BadRequest(BadRequestCode::MultipartBufferOverflow),
    );
    // TABLE_FEATURES in parts is a set: refused as OVS does.
    let out = f.send_xid(
        C1,
        600,
        &Message::MultipartRequest {
            flags: multipart_flags::REQ_MORE,
            body: MultipartRequest::TableFeatures(Vec::new()),
        },
    );
    expect_error(
        &out,
        C1,
        600,
        ErrorCode::TableFeaturesFailed(TableFeaturesFailedCode::Eperm),
    );
}

// ---------------------------------------------------------------------------------------
// Other errors

#[test]
fn errors_for_unsupported_messages() {
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    check_error(
        &mut f,
        C1,
        &Message::Experimenter {
            experimenter: 0x2320,
            exp_type: 1,
            data: vec![1, 2],
        },
        ErrorCode::BadRequest(BadRequestCode::BadExperimenter),
    );
    check_error(
        &mut f,
        C1,
        &Message::Unknown {
            typ: 99,
            body: vec![0; 8],
        },
        ErrorCode::BadRequest(BadRequestCode::BadType),
    );
    // A message only a switch sends.
    check_error(
        &mut f,
        C1,
        &Message::FeaturesReply(Default::default()),
        ErrorCode::BadRequest(BadRequestCode::BadType),
    );
    check_error(
        &mut f,
        C1,
        &Message::TableMod {
            table_id: 200,
            config: 0,
        },
        ErrorCode::TableModFailed(TableModFailedCode::BadTable),
    );
    check_error(
        &mut f,
        C1,
        &Message::TableMod {
            table_id: 1,
            config: 4,
        },
        ErrorCode::TableModFailed(TableModFailedCode::BadConfig),
    );
    for config in [0, 3] {
        assert!(f
            .send(
                C1,
                &Message::TableMod {
                    table_id: 1,
                    config
                }
            )
            .sent
            .is_empty());
    }
    assert!(f
        .send(
            C1,
            &Message::TableMod {
                table_id: OFPTT_ALL,
                config: 0
            }
        )
        .sent
        .is_empty());
    // A 1.0 message after negotiating 1.3: BAD_VERSION, connection stays.
    let mut bytes = encode(0x5eed, &Message::BarrierRequest);
    bytes[0] = 1;
    let out = f.send_raw(C1, &bytes);
    expect_error(
        &out,
        C1,
        0x5eed,
        ErrorCode::BadRequest(BadRequestCode::BadVersion),
    );
    // Errors from the peer are logged, never answered.
    let out = f.send(
        C1,
        &Message::Error {
            code: ErrorCode::BadRequest(BadRequestCode::BadType),
            data: vec![],
        },
    );
    assert!(out.sent.is_empty() && out.closed.is_empty());
    assert_eq!(f.of.counters.errors_sent, 6);
}

// ---------------------------------------------------------------------------------------
// Egress QoS: QUEUE_GET_CONFIG and queue statistics of a shaped port

#[test]
fn shaped_port_queue_config_and_stats_come_from_its_scheduler() {
    use shg_switch::port::Packet;
    use shg_switch::qos::{PortQosConfig, QueueConfig};
    let mut f = Fake::new();
    f.connect(C1, ConnKind::Active);
    f.port(1, true);
    f.port(2, true);
    let t0 = f.now;
    f.of.set_port_qos(
        1,
        PortQosConfig {
            rate: Some(20_000_000),
            queues: vec![
                QueueConfig {
                    id: 2,
                    min_rate: 500_000,
                    max_rate: Some(15_000_000),
                    priority: 5,
                },
                QueueConfig {
                    id: 1,
                    min_rate: 6_000_000,
                    max_rate: None,
                    priority: 0,
                },
            ],
        },
        t0,
    )
    .expect("valid QoS");

    // QUEUE_GET_CONFIG: tenths of a percent of the shaped 20 Mbit/s; no ceiling: omitted.
    match f
        .send(C1, &Message::QueueGetConfigRequest { port: 1 })
        .one(C1)
    {
        Message::QueueGetConfigReply { port, queues } => {
            assert_eq!(port, 1);
            let got: Vec<(u32, Vec<QueueProp>)> = queues
                .iter()
                .map(|q| (q.queue_id, q.properties.clone()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (1, vec![QueueProp::MinRate(300)]),
                    (2, vec![QueueProp::MinRate(25), QueueProp::MaxRate(750)]),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    // OFPP_ANY: the shaped port's queues, then the unshaped port's queue 0 (no properties).
    match f
        .send(C1, &Message::QueueGetConfigRequest { port: port::ANY })
        .one(C1)
    {
        Message::QueueGetConfigReply { queues, .. } => {
            let ids: Vec<(u32, u32)> = queues.iter().map(|q| (q.port, q.queue_id)).collect();
            assert_eq!(ids, vec![(1, 1), (1, 2), (2, 0)]);
            assert!(queues[2].properties.is_empty());
        }
        other => panic!("{other:?}"),
    }

    // Frames through the scheduler: queue 1 gets two, queue 2 (the default) one unknown id.
    let frame = |n: usize| Packet::plain(vec![0xab; n]);
    let mut outs = vec![
        Output::Port {
            port: 1,
            queue: Some(1),
            pkt: frame(100),
        },
        Output::Port {
            port: 1,
            queue: Some(1),
            pkt: frame(200),
        },
        Output::Port {
            port: 1,
            queue: Some(99),
            pkt: frame(300),
        },
        Output::Port {
            port: 2,
            queue: None,
            pkt: frame(60),
        },
    ];
    f.now += SEC;
    let r = f.of.enqueue_shaped(&mut outs, f.now);
    assert_eq!(r.enqueued, 3);
    assert_eq!(outs.len(), 1, "the unshaped port's output stays: {outs:?}");
    assert_eq!(
        f.of.ports[&1].counters.tx_packets, 0,
        "counted when it leaves"
    );
    let mut due = Vec::new();
    assert_eq!(f.of.dequeue_shaped(f.now, 64, &mut due).sent, 3);
    assert_eq!(f.of.ports[&1].counters.tx_packets, 3);
    assert_eq!(f.of.ports[&1].counters.tx_bytes, 600);
    assert_eq!(f.of.next_qos_wakeup(), None, "empty: nothing to wake for");

    f.now += SEC;
    match &f.multipart(
        C1,
        MultipartRequest::Queue {
            port_no: 1,
            queue_id: OFPQ_ALL,
        },
    )[..]
    {
        [MultipartReply::Queue(v)] => {
            let got: Vec<(u32, u64, u64, u64, u32)> = v
                .iter()
                .map(|q| {
                    (
                        q.queue_id,
                        q.tx_packets,
                        q.tx_bytes,
                        q.tx_errors,
                        q.duration_sec,
                    )
                })
                .collect();
            assert_eq!(got, vec![(1, 2, 300, 0, 2), (2, 1, 300, 0, 2)]);
        }
        other => panic!("{other:?}"),
    }
    // Queue 0 is not a queue of the shaped port.
    check_error(
        &mut f,
        C1,
        &Message::MultipartRequest {
            flags: 0,
            body: MultipartRequest::Queue {
                port_no: 1,
                queue_id: 0,
            },
        },
        ErrorCode::QueueOpFailed(QueueOpFailedCode::BadQueue),
    );
    // A flow with set_queue to an id the port lacks is accepted (as OVS).
    f.add_flow(C1, "in_port=2,actions=set_queue:77,output:1");

    // Reconfiguring (e.g. `shgctl switch set-queue`) changes what QUEUE_GET_CONFIG says.
    let mut cfg = f.of.port_qos(1).cloned().expect("shaped");
    cfg.rate = Some(10_000_000);
    // A ceiling above the port's rate is refused: lower it too.
    for q in cfg.queues.iter_mut().filter(|q| q.id == 2) {
        q.max_rate = Some(10_000_000);
    }
    f.of.set_port_qos(1, cfg, f.now).expect("still valid");
    match f
        .send(C1, &Message::QueueGetConfigRequest { port: 1 })
        .one(C1)
    {
        Message::QueueGetConfigReply { queues, .. } => {
            assert_eq!(queues[0].properties, vec![QueueProp::MinRate(600)]);
            assert_eq!(
                queues[1].properties,
                vec![QueueProp::MinRate(50), QueueProp::MaxRate(1000)]
            );
        }
        other => panic!("{other:?}"),
    }
    // An invalid change is refused with the scheduler's words, and nothing changes.
    let mut bad = f.of.port_qos(1).cloned().expect("shaped");
    bad.queues[0].min_rate = 50_000_000;
    assert!(f.of.set_port_qos(1, bad, f.now).is_err());
    assert_eq!(f.of.port_qos(1).map(|c| c.rate), Some(Some(10_000_000)));
    // Removing the port removes its scheduler.
    f.of.remove_port(1, f.now);
    assert!(f.of.qos.is_empty());
}
