//! Flow-key extraction: every field from frames built with etherparse, plus random bytes and
//! random truncations (must never panic, truncation only ever clears fields).

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder, VlanId,
};
use proptest::prelude::*;
use shg_flows::field::{Field, FlowKey};
use shg_flows::key::{extract, ieh, IpFrag, Layers, ETH_TYPE_NONE};

const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const V6A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

fn run(frame: &[u8]) -> (FlowKey, Layers) {
    let mut k = FlowKey::default();
    // Dirty the key first: extract must reset it.
    k.0.fill(0xa5);
    let l = extract(frame, 7, &mut k);
    (k, l)
}

fn u(k: &FlowKey, f: Field) -> u64 {
    k.get_u64(f)
}

/// Fields that may be non-zero; everything else must be zero.
fn only(k: &FlowKey, allowed: &[Field]) {
    for f in Field::all() {
        if !allowed.contains(&f) && f != Field::InPort && f != Field::InPhyPort {
            assert!(k.is_zero(f), "{f:?} should be zero in {k:?}");
        }
    }
    assert_eq!(u(k, Field::InPort), 7);
    assert_eq!(u(k, Field::InPhyPort), 7);
}

fn tcp4() -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([192, 168, 1, 10], [198, 51, 100, 7], 64)
        .tcp(40000, 443, 1, 1000)
        .write(&mut v, b"hello")
        .unwrap();
    v
}

#[test]
fn ipv4_tcp_every_field() {
    let mut f = tcp4();
    f[15] = (46 << 2) | 2; // dscp EF, ecn ECT(0)
    let (k, l) = run(&f);
    assert_eq!(k.get(Field::EthSrc), &SRC);
    assert_eq!(k.get(Field::EthDst), &DST);
    assert_eq!(u(&k, Field::EthType), 0x0800);
    assert_eq!(u(&k, Field::IpDscp), 46);
    assert_eq!(u(&k, Field::IpEcn), 2);
    assert_eq!(u(&k, Field::IpProto), 6);
    assert_eq!(k.get(Field::Ipv4Src), &[192, 168, 1, 10]);
    assert_eq!(k.get(Field::Ipv4Dst), &[198, 51, 100, 7]);
    assert_eq!(u(&k, Field::TcpSrc), 40000);
    assert_eq!(u(&k, Field::TcpDst), 443);
    only(
        &k,
        &[
            Field::EthSrc,
            Field::EthDst,
            Field::EthType,
            Field::IpDscp,
            Field::IpEcn,
            Field::IpProto,
            Field::Ipv4Src,
            Field::Ipv4Dst,
            Field::TcpSrc,
            Field::TcpDst,
        ],
    );
    assert_eq!(l.l2_5, None);
    assert_eq!(l.l3, Some(14));
    assert_eq!(l.l4, Some(34));
    assert_eq!(l.l3_end, Some(f.len()));
    assert_eq!(l.frag, IpFrag::NotFragment);
    assert!(!l.truncated);
}

#[test]
fn ipv4_padding_and_options() {
    // IPv4 with 4 bytes of options (ihl 6) carrying UDP, plus Ethernet padding.
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(5353, 53)
        .write(&mut v, &[])
        .unwrap();
    // Insert options: ihl=6, total length +4.
    v.splice(34..34, [1, 1, 1, 0]);
    v[14] = 0x46;
    let tot = u16::from_be_bytes([v[16], v[17]]) + 4;
    v[16..18].copy_from_slice(&tot.to_be_bytes());
    v.extend_from_slice(&[0; 10]); // padding
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::UdpSrc), 5353);
    assert_eq!(u(&k, Field::UdpDst), 53);
    assert_eq!(l.l4, Some(38));
    assert_eq!(l.l3_end, Some(v.len() - 10));
    // ihl < 5 is not IPv4: eth_type only.
    v[14] = 0x44;
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::EthType), 0x0800);
    assert!(k.is_zero(Field::Ipv4Src) && k.is_zero(Field::IpProto));
    assert_eq!(l.l3, None);
}

#[test]
fn ipv4_fragments() {
    let mut f = tcp4();
    // First fragment: MF set, offset 0 -> L4 extracted.
    f[20] = 0x20;
    let (k, l) = run(&f);
    assert_eq!(l.frag, IpFrag::First);
    assert_eq!(u(&k, Field::TcpDst), 443);
    // Later fragment: offset 8 -> no L4, proto still known.
    f[20] = 0x00;
    f[21] = 0x01;
    let (k, l) = run(&f);
    assert_eq!(l.frag, IpFrag::Later);
    assert_eq!(u(&k, Field::IpProto), 6);
    assert!(k.is_zero(Field::TcpSrc) && k.is_zero(Field::TcpDst));
    assert_eq!(l.l4, None);
}

#[test]
fn vlan_single_and_double() {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .single_vlan(VlanId::try_new(100).unwrap())
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1, 2)
        .write(&mut v, &[])
        .unwrap();
    v[14] |= 0xa0; // pcp 5
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::VlanVid), 0x1000 | 100);
    assert_eq!(u(&k, Field::VlanPcp), 5);
    assert_eq!(u(&k, Field::EthType), 0x0800);
    assert_eq!(u(&k, Field::UdpDst), 2);
    assert_eq!((l.l2_5, l.vlan_tags, l.l3), (Some(12), 1, Some(18)));

    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
        .ipv6(V6A, V6B, 64)
        .udp(3, 4)
        .write(&mut v, &[])
        .unwrap();
    // Outer TPID 802.1ad, inner 802.1Q.
    v[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    v[16..18].copy_from_slice(&0x8100u16.to_be_bytes());
    v[18] |= 0x60; // inner pcp 3: must not show
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::VlanVid), 0x1000 | 10);
    assert_eq!(u(&k, Field::VlanPcp), 0);
    assert_eq!(u(&k, Field::EthType), 0x86dd);
    assert_eq!(u(&k, Field::UdpSrc), 3);
    assert_eq!((l.vlan_tags, l.l3), (2, Some(22)));

    // A third tag is not parsed: eth_type is its TPID.
    let mut w = v[..20].to_vec();
    w.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    w.extend_from_slice(&v[20..]);
    let (k, l) = run(&w);
    assert_eq!(u(&k, Field::EthType), 0x8100);
    assert!(k.is_zero(Field::Ipv6Src));
    assert_eq!(l.l3, None);
}

#[test]
fn arp_fields() {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REPLY,
        &SRC,
        &[10, 0, 0, 1],
        &DST,
        &[10, 0, 0, 2],
    )
    .unwrap();
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .arp(arp)
        .write(&mut v)
        .unwrap();
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::EthType), 0x0806);
    assert_eq!(u(&k, Field::ArpOp), 2);
    assert_eq!(k.get(Field::ArpSha), &SRC);
    assert_eq!(k.get(Field::ArpTha), &DST);
    assert_eq!(k.get(Field::ArpSpa), &[10, 0, 0, 1]);
    assert_eq!(k.get(Field::ArpTpa), &[10, 0, 0, 2]);
    assert_eq!(l.l3, Some(14));
    only(
        &k,
        &[
            Field::EthSrc,
            Field::EthDst,
            Field::EthType,
            Field::ArpOp,
            Field::ArpSha,
            Field::ArpTha,
            Field::ArpSpa,
            Field::ArpTpa,
        ],
    );
    // Non-Ethernet hardware type: ARP fields stay zero.
    let mut w = v.clone();
    w[15] = 6;
    let (k, _) = run(&w);
    assert!(k.is_zero(Field::ArpOp) && k.is_zero(Field::ArpSpa));
}

#[test]
fn mpls_and_pbb() {
    let mut v = DST.to_vec();
    v.extend_from_slice(&SRC);
    v.extend_from_slice(&0x8847u16.to_be_bytes());
    // label 0x12345, tc 5, bos 1, ttl 64
    let shim: u32 = (0x12345 << 12) | (5 << 9) | (1 << 8) | 64;
    v.extend_from_slice(&shim.to_be_bytes());
    v.extend_from_slice(&[0x45; 20]);
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::EthType), 0x8847);
    assert_eq!(u(&k, Field::MplsLabel), 0x12345);
    assert_eq!(u(&k, Field::MplsTc), 5);
    assert_eq!(u(&k, Field::MplsBos), 1);
    assert_eq!((l.l2_5, l.mpls, l.l3), (Some(12), Some(14), None));
    assert!(k.is_zero(Field::Ipv4Src));

    let mut v = DST.to_vec();
    v.extend_from_slice(&SRC);
    v.extend_from_slice(&0x88e7u16.to_be_bytes());
    v.extend_from_slice(&[0xe0, 0xab, 0xcd, 0xef]);
    v.extend_from_slice(&[0; 14]);
    let (k, _) = run(&v);
    assert_eq!(u(&k, Field::EthType), 0x88e7);
    assert_eq!(u(&k, Field::PbbIsid), 0xabcdef);
}

#[test]
fn llc_snap() {
    let mut v = DST.to_vec();
    v.extend_from_slice(&SRC);
    v.extend_from_slice(&46u16.to_be_bytes());
    v.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x06]);
    v.extend_from_slice(&[0; 38]);
    let (k, _) = run(&v);
    assert_eq!(u(&k, Field::EthType), 0x0806);
    v[14] = 0x42; // plain LLC (STP)
    let (k, _) = run(&v);
    assert_eq!(u(&k, Field::EthType), u64::from(ETH_TYPE_NONE));
    // An unpadded 802.3 frame with only an LLC header (17 bytes, as OFTest sends on a veth)
    // is too short for SNAP: no Ethernet type either, and not a truncated frame.
    v.truncate(17);
    v[12..14].copy_from_slice(&3u16.to_be_bytes());
    v[14..17].copy_from_slice(&[0xaa, 0xab, 0x03]);
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::EthType), u64::from(ETH_TYPE_NONE));
    assert!(!l.truncated);
}

fn v6_udp(tclass: u8, flabel: u32) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv6(V6A, V6B, 64)
        .udp(546, 547)
        .write(&mut v, b"x")
        .unwrap();
    let vtf = (6u32 << 28) | (u32::from(tclass) << 20) | flabel;
    v[14..18].copy_from_slice(&vtf.to_be_bytes());
    v
}

/// Inserts extension headers (type, raw bytes incl. next-header byte placeholder) after the
/// IPv6 header, fixing the chain and payload length.
fn with_exts(mut v: Vec<u8>, exts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let upper = v[20];
    let mut chain = Vec::new();
    for (i, (_, body)) in exts.iter().enumerate() {
        let mut b = body.clone();
        b[0] = exts.get(i + 1).map_or(upper, |e| e.0);
        chain.extend_from_slice(&b);
    }
    if let Some(first) = exts.first() {
        v[20] = first.0;
    }
    let plen = u16::from_be_bytes([v[18], v[19]]) + u16::try_from(chain.len()).unwrap();
    v[18..20].copy_from_slice(&plen.to_be_bytes());
    v.splice(54..54, chain);
    v
}

fn opts8() -> Vec<u8> {
    vec![0, 0, 1, 4, 0, 0, 0, 0] // hdr ext len 0, PadN
}

#[test]
fn ipv6_udp_every_field() {
    let v = v6_udp((10 << 2) | 1, 0xabcde);
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::EthType), 0x86dd);
    assert_eq!(u(&k, Field::IpDscp), 10);
    assert_eq!(u(&k, Field::IpEcn), 1);
    assert_eq!(u(&k, Field::Ipv6Flabel), 0xabcde);
    assert_eq!(k.get(Field::Ipv6Src), &V6A);
    assert_eq!(k.get(Field::Ipv6Dst), &V6B);
    assert_eq!(u(&k, Field::IpProto), 17);
    assert_eq!(u(&k, Field::UdpSrc), 546);
    assert_eq!(u(&k, Field::UdpDst), 547);
    assert_eq!(u(&k, Field::Ipv6Exthdr), 0);
    assert_eq!((l.l3, l.l4), (Some(14), Some(54)));
    only(
        &k,
        &[
            Field::EthSrc,
            Field::EthDst,
            Field::EthType,
            Field::IpDscp,
            Field::IpEcn,
            Field::Ipv6Flabel,
            Field::Ipv6Src,
            Field::Ipv6Dst,
            Field::IpProto,
            Field::UdpSrc,
            Field::UdpDst,
        ],
    );
}

#[test]
fn ipv6_extension_headers() {
    let frag0 = vec![0, 0, 0, 1, 0, 0, 0, 9]; // offset 0, M=1
    let auth = vec![0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0]; // payload len 1 -> 12 bytes? (1+2)*4
    let auth = auth[..12].to_vec();
    let routing = vec![0, 0, 0, 0, 0, 0, 0, 0];

    // Recommended order: hop, dest, routing, frag, auth -> UDP reached, no UNSEQ/UNREP.
    let v = with_exts(
        v6_udp(0, 0),
        &[
            (0, opts8()),
            (60, opts8()),
            (43, routing.clone()),
            (44, frag0.clone()),
            (51, auth),
        ],
    );
    let (k, l) = run(&v);
    assert_eq!(
        u(&k, Field::Ipv6Exthdr),
        u64::from(ieh::HOP | ieh::DEST | ieh::ROUTER | ieh::FRAG | ieh::AUTH)
    );
    assert_eq!(u(&k, Field::IpProto), 17);
    assert_eq!(u(&k, Field::UdpDst), 547);
    assert_eq!(l.frag, IpFrag::First);
    assert_eq!(l.l4, Some(54 + 8 + 8 + 8 + 8 + 12));

    // Hop-by-hop not first: UNSEQ.
    let v = with_exts(v6_udp(0, 0), &[(60, opts8()), (0, opts8())]);
    let (k, _) = run(&v);
    assert_eq!(
        u(&k, Field::Ipv6Exthdr),
        u64::from(ieh::HOP | ieh::DEST | ieh::UNSEQ)
    );
    assert_eq!(u(&k, Field::UdpSrc), 546);

    // Routing repeated: UNREP. Fragment before routing: UNSEQ.
    let v = with_exts(
        v6_udp(0, 0),
        &[(43, routing.clone()), (43, routing.clone())],
    );
    let (k, _) = run(&v);
    assert_eq!(
        u(&k, Field::Ipv6Exthdr),
        u64::from(ieh::ROUTER | ieh::UNREP)
    );
    let v = with_exts(v6_udp(0, 0), &[(44, frag0.clone()), (43, routing.clone())]);
    let (k, _) = run(&v);
    assert_eq!(
        u(&k, Field::Ipv6Exthdr),
        u64::from(ieh::ROUTER | ieh::FRAG | ieh::UNSEQ)
    );

    // Two destination options (before routing and final) are fine; three are UNREP.
    let v = with_exts(
        v6_udp(0, 0),
        &[(60, opts8()), (43, routing.clone()), (60, opts8())],
    );
    let (k, _) = run(&v);
    assert_eq!(u(&k, Field::Ipv6Exthdr), u64::from(ieh::DEST | ieh::ROUTER));
    let v = with_exts(
        v6_udp(0, 0),
        &[(60, opts8()), (43, routing), (60, opts8()), (60, opts8())],
    );
    let (k, _) = run(&v);
    assert_eq!(
        u(&k, Field::Ipv6Exthdr),
        u64::from(ieh::DEST | ieh::ROUTER | ieh::UNREP)
    );

    // Later fragment: proto from the fragment header, no L4.
    let frag_later = vec![0, 0, 0x01, 0x00, 0, 0, 0, 9]; // offset 32
    let v = with_exts(v6_udp(0, 0), &[(44, frag_later)]);
    let (k, l) = run(&v);
    assert_eq!(l.frag, IpFrag::Later);
    assert_eq!(u(&k, Field::IpProto), 17);
    assert!(k.is_zero(Field::UdpSrc));
    assert_eq!(u(&k, Field::Ipv6Exthdr), u64::from(ieh::FRAG));

    // No next header.
    let mut v = v6_udp(0, 0);
    v[20] = 59;
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::Ipv6Exthdr), u64::from(ieh::NONEXT));
    assert_eq!(u(&k, Field::IpProto), 59);
    assert_eq!(l.l4, None);

    // ESP stops the walk: proto 50, no ports.
    let mut v = v6_udp(0, 0);
    v[20] = 50;
    let (k, _) = run(&v);
    assert_eq!(u(&k, Field::Ipv6Exthdr), u64::from(ieh::ESP));
    assert_eq!(u(&k, Field::IpProto), 50);
    assert!(k.is_zero(Field::UdpSrc));

    // A chain cut short: proto, flags and ports unknown (zero), addresses kept.
    let v = with_exts(v6_udp(0, 0), &[(0, opts8()), (60, opts8())]);
    let (k, l) = run(&v[..54 + 12]);
    assert!(l.truncated);
    assert_eq!(k.get(Field::Ipv6Src), &V6A);
    assert!(k.is_zero(Field::Ipv6Exthdr) && k.is_zero(Field::IpProto));
    assert!(k.is_zero(Field::UdpSrc));
}

fn nd(ty: Icmpv6Type, opts: &[u8]) -> Vec<u8> {
    let mut payload = V6B.to_vec();
    payload.extend_from_slice(opts);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv6(V6A, V6B, 255)
        .icmpv6(ty)
        .write(&mut v, &payload)
        .unwrap();
    v
}

#[test]
fn icmpv6_nd() {
    let mac = [0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee];
    let mut opt_sll = vec![1, 1];
    opt_sll.extend_from_slice(&mac);
    let mut opt_tll = vec![2, 1];
    opt_tll.extend_from_slice(&mac);
    // NS with a nonce option (14) before the SLL option.
    let mut opts = vec![14, 1, 1, 2, 3, 4, 5, 6];
    opts.extend_from_slice(&opt_sll);
    let v = nd(Icmpv6Type::NeighborSolicitation, &opts);
    let (k, l) = run(&v);
    assert_eq!(u(&k, Field::IpProto), 58);
    assert_eq!(u(&k, Field::Icmpv6Type), 135);
    assert_eq!(u(&k, Field::Icmpv6Code), 0);
    assert_eq!(k.get(Field::Ipv6NdTarget), &V6B);
    assert_eq!(k.get(Field::Ipv6NdSll), &mac);
    assert!(k.is_zero(Field::Ipv6NdTll));
    assert_eq!(l.l4, Some(54));

    // NA takes the TLL option; an SLL option in an NA is ignored.
    let mut opts = opt_sll.clone();
    opts.extend_from_slice(&opt_tll);
    let v = nd(
        Icmpv6Type::NeighborAdvertisement(etherparse::icmpv6::NeighborAdvertisementHeader {
            router: false,
            solicited: true,
            r#override: true,
        }),
        &opts,
    );
    let (k, _) = run(&v);
    assert_eq!(u(&k, Field::Icmpv6Type), 136);
    assert_eq!(k.get(Field::Ipv6NdTll), &mac);
    assert!(k.is_zero(Field::Ipv6NdSll));

    // Zero-length option: stop, target kept.
    let v = nd(Icmpv6Type::NeighborSolicitation, &[1, 0, 0, 0, 0, 0, 0, 0]);
    let (k, _) = run(&v);
    assert_eq!(k.get(Field::Ipv6NdTarget), &V6B);
    assert!(k.is_zero(Field::Ipv6NdSll));

    // Echo request: type/code only.
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv6(V6A, V6B, 64)
        .icmpv6_echo_request(1, 2)
        .write(&mut v, &[])
        .unwrap();
    let (k, _) = run(&v);
    assert_eq!(u(&k, Field::Icmpv6Type), 128);
    assert!(k.is_zero(Field::Ipv6NdTarget));
}

#[test]
fn icmpv4_and_sctp() {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .icmpv4_echo_request(1, 2)
        .write(&mut v, &[])
        .unwrap();
    let (k, _) = run(&v);
    assert_eq!(u(&k, Field::IpProto), 1);
    assert_eq!(u(&k, Field::Icmpv4Type), 8);
    assert_eq!(u(&k, Field::Icmpv4Code), 0);

    // SCTP: IPv4 proto 132 with a 12-byte common header.
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(0x1111, 0x2222)
        .write(&mut v, &[0, 0, 0, 0])
        .unwrap();
    v[23] = 132;
    let (k, _) = run(&v);
    assert_eq!(u(&k, Field::SctpSrc), 0x1111);
    assert_eq!(u(&k, Field::SctpDst), 0x2222);
    assert!(k.is_zero(Field::UdpSrc));
}

#[test]
fn truncated_l4_leaves_ports_zero() {
    let f = tcp4();
    // 19 bytes of TCP header: no ports.
    let (k, l) = run(&f[..34 + 19]);
    assert!(l.truncated);
    assert_eq!(u(&k, Field::IpProto), 6);
    assert!(k.is_zero(Field::TcpSrc));
    // Exactly 20: ports (total_length is larger than the frame: the frame bounds L4).
    let (k, l) = run(&f[..34 + 20]);
    assert_eq!(u(&k, Field::TcpDst), 443);
    assert_eq!(l.l4, Some(34));
    // Truncated IPv4 header: L2 only.
    let (k, l) = run(&f[..30]);
    assert!(l.truncated);
    assert_eq!(u(&k, Field::EthType), 0x0800);
    assert!(k.is_zero(Field::IpProto));
    // Shorter than an Ethernet header: in_port only.
    let (k, _) = run(&f[..13]);
    only(&k, &[]);
}

fn valid_frames() -> Vec<Vec<u8>> {
    let mut out = vec![tcp4(), v6_udp(3, 5)];
    out.push(with_exts(v6_udp(0, 0), &[(0, opts8()), (60, opts8())]));
    let mut opts = vec![1, 1];
    opts.extend_from_slice(&SRC);
    out.push(nd(Icmpv6Type::NeighborSolicitation, &opts));
    let mut v = Vec::new();
    PacketBuilder::ethernet2(SRC, DST)
        .double_vlan(VlanId::try_new(1).unwrap(), VlanId::try_new(2).unwrap())
        .ipv4([1, 2, 3, 4], [5, 6, 7, 8], 1)
        .udp(9, 10)
        .write(&mut v, b"abc")
        .unwrap();
    out.push(v);
    out
}

/// Field values extracted from a prefix are either equal to the full frame's or zero.
fn prefix_consistent(full: &FlowKey, part: &FlowKey) -> bool {
    Field::all().all(|f| part.is_zero(f) || part.get(f) == full.get(f))
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut k = FlowKey::default();
        let l = extract(&bytes, 1, &mut k);
        for off in [l.l2_5, l.mpls, l.l3, l.l4, l.l3_end].into_iter().flatten() {
            prop_assert!(off <= bytes.len());
        }
    }

    #[test]
    fn random_frames_with_ethertype_never_panic(
        et in prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x8100, 0x88a8, 0x8847, 0x88e7, 0x0030]),
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut f = DST.to_vec();
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(&bytes);
        if et == 0x0800 && f.len() > 14 { f[14] = 0x40 | (f[14] & 0x0f); }
        if et == 0x86dd && f.len() > 14 { f[14] = 0x60 | (f[14] & 0x0f); }
        let mut k = FlowKey::default();
        extract(&f, 1, &mut k);
    }

    #[test]
    fn truncations_of_valid_frames(which in 0usize..5, cut in 0usize..200, flip in any::<(usize, u8)>()) {
        let frames = valid_frames();
        let full = &frames[which];
        let (fk, _) = run(full);
        let cut = cut.min(full.len());
        let (pk, pl) = run(&full[..cut]);
        prop_assert!(prefix_consistent(&fk, &pk), "{:?} vs {:?}", fk, pk);
        if cut < full.len() && cut >= 14 {
            // Either something was cut short or the missing bytes were beyond all parsed headers.
            prop_assert!(pl.truncated || pk == fk || pl.l4.is_some());
        }
        // A flipped byte anywhere never panics.
        let mut g = full.clone();
        let i = flip.0 % g.len();
        g[i] ^= flip.1;
        let mut k = FlowKey::default();
        extract(&g, 1, &mut k);
    }
}
