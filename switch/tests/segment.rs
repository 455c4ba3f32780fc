//! Software GSO segmentation (`datapath::segment::split_gso`), checked with etherparse as an
//! independent parser and checksum calculator.
//!
//! Frames are built the way the kernel hands them to a PACKET_VNET_HDR socket: one TCP (or
//! UDP, for USO) super-frame with a virtio-net header (`gso_type`, `gso_size`, `hdr_len`,
//! NEEDS_CSUM with `csum_start`/`csum_offset`) and the L4 checksum field holding the folded
//! pseudo-header sum. Every segment is parsed by etherparse and checked: lengths, IPv4 ids,
//! sequence numbers, flags, IPv4 header and TCP/UDP checksums (recomputed by etherparse), and
//! the concatenated payloads equal the original. A proptest feeds random bytes and random
//! virtio-net headers (and mutated valid frames). The last test captures real kernel GSO
//! frames from a veth in namespaces this test creates (root only; skips otherwise).

use etherparse::{
    LinkExtSlice, NetSlice, PacketBuilder, SlicedPacket, TcpHeader, TransportSlice, VlanId,
};
use proptest::prelude::*;
use shg_switch::datapath::segment::{split_gso, SplitError, GSO_ECN, GSO_TCPV4, GSO_TCPV6};
use shg_switch::port::{Packet, VnetHdr};

const GSO_UDP_L4: u8 = 5;
const SRC4: [u8; 4] = [198, 18, 0, 1];
const DST4: [u8; 4] = [198, 18, 0, 2];
const SRC6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

#[derive(Debug, Clone, Copy)]
struct Spec {
    v6: bool,
    udp: bool,
    vlans: usize,
    payload: usize,
    mss: u16,
    fin: bool,
    psh: bool,
    cwr: bool,
    seq: u32,
    ip_id: u16,
}

impl Spec {
    fn tcp4(payload: usize, mss: u16) -> Spec {
        Spec {
            v6: false,
            udp: false,
            vlans: 0,
            payload,
            mss,
            fin: false,
            psh: false,
            cwr: false,
            seq: 1000,
            ip_id: 7,
        }
    }
}

fn payload_bytes(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| u8::try_from((i * 7 + i / 251) % 256).unwrap())
        .collect()
}

/// Folded one's-complement sum of 16-bit words.
fn fold_sum(words: &[u8], mut acc: u64) -> u16 {
    for w in words.chunks(2) {
        let hi = u64::from(w[0]) << 8;
        let lo = w.get(1).map(|&b| u64::from(b)).unwrap_or(0);
        acc += hi | lo;
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap()
}

/// A GSO super-frame as the kernel gives it (partial checksum, virtio-net header).
fn gso_frame(s: &Spec) -> Packet {
    let payload = payload_bytes(s.payload);
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let mut tcp = TcpHeader::new(40000, 5201, s.seq, 1024);
    tcp.ack = true;
    tcp.acknowledgment_number = 77;
    tcp.fin = s.fin;
    tcp.psh = s.psh;
    tcp.cwr = s.cwr;
    tcp.ece = s.cwr;
    let mut data = Vec::new();
    macro_rules! finish {
        ($ip:expr) => {
            if s.udp {
                $ip.udp(5000, 6000).write(&mut data, &payload).unwrap()
            } else {
                $ip.tcp_header(tcp.clone())
                    .write(&mut data, &payload)
                    .unwrap()
            }
        };
    }
    macro_rules! ip {
        ($l2:expr) => {
            if s.v6 {
                finish!($l2.ipv6(SRC6, DST6, 64))
            } else {
                finish!($l2.ipv4(SRC4, DST4, 64))
            }
        };
    }
    match s.vlans {
        0 => ip!(eth),
        1 => ip!(eth.single_vlan(VlanId::try_new(100).unwrap())),
        _ => ip!(eth.double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())),
    }
    let l3 = 14 + 4 * s.vlans;
    if !s.v6 {
        // Set the IPv4 id and fix the header checksum (as a sender would have it).
        data[l3 + 4..l3 + 6].copy_from_slice(&s.ip_id.to_be_bytes());
        data[l3 + 10..l3 + 12].fill(0);
        let c = !fold_sum(&data[l3..l3 + 20], 0);
        data[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = l3 + if s.v6 { 40 } else { 20 };
    let (hl, csum_off) = if s.udp { (8, 6) } else { (20, 16) };
    // The kernel's partial checksum: the folded pseudo-header sum, not complemented.
    let l4_len = u64::try_from(data.len() - l4).unwrap();
    let proto = if s.udp { 17 } else { 6 };
    let addrs = if s.v6 {
        data[l3 + 8..l3 + 40].to_vec()
    } else {
        data[l3 + 12..l3 + 20].to_vec()
    };
    let partial = fold_sum(&addrs, proto + l4_len);
    data[l4 + csum_off..l4 + csum_off + 2].copy_from_slice(&partial.to_be_bytes());
    let gso_type = match (s.v6, s.udp) {
        (_, true) => GSO_UDP_L4,
        (false, false) => GSO_TCPV4,
        (true, false) => GSO_TCPV6,
    };
    Packet {
        data,
        vnet: VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type,
            hdr_len: u16::try_from(l4 + hl).unwrap(),
            gso_size: s.mss,
            csum_start: u16::try_from(l4).unwrap(),
            csum_offset: u16::try_from(csum_off).unwrap(),
        },
    }
}

/// What one verified segment carried.
#[derive(Debug)]
struct Seg {
    payload: Vec<u8>,
    header_len: usize,
    ip_id: Option<u16>,
    seq: Option<u32>,
    flags: (bool, bool, bool), // fin, psh, cwr
    vlans: Vec<u16>,
}

/// Parses a segment with etherparse and checks every length and checksum in it.
fn verify(seg: &Packet) -> Result<Seg, String> {
    if seg.vnet != VnetHdr::default() {
        return Err(format!("segment vnet not plain: {:?}", seg.vnet));
    }
    let d = &seg.data;
    let p = SlicedPacket::from_ethernet(d).map_err(|e| format!("etherparse: {e:?}"))?;
    let vlans: Vec<u16> = p
        .link_exts
        .iter()
        .filter_map(|x| match x {
            LinkExtSlice::Vlan(v) => Some(v.vlan_identifier().value()),
            _ => None,
        })
        .collect();
    let (ip_id, src, dst, v6) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            let hdr = h.to_header();
            // Summed over the header's own bytes: etherparse's `Ipv4Header` has no field for
            // the reserved flag bit, so its recomputed checksum would leave that bit out.
            let sum = h.slice().chunks(2).fold(0u32, |acc, w| {
                acc + u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))
            });
            let folded = (sum & 0xffff) + (sum >> 16);
            if (folded & 0xffff) + (folded >> 16) != 0xffff {
                return Err("bad IPv4 header checksum".into());
            }
            let l3 = d.len() - usize::from(hdr.total_len);
            if l3 != 14 + 4 * vlans.len() {
                return Err(format!("IPv4 total_len {} wrong", hdr.total_len));
            }
            let mut s = [0u8; 16];
            let mut t = [0u8; 16];
            s[..4].copy_from_slice(&hdr.source);
            t[..4].copy_from_slice(&hdr.destination);
            (Some(hdr.identification), s, t, false)
        }
        Some(NetSlice::Ipv6(ip)) => {
            let hdr = ip.header().to_header();
            let l3 = 14 + 4 * vlans.len();
            if usize::from(hdr.payload_length) != d.len() - l3 - 40 {
                return Err(format!("IPv6 payload_length {} wrong", hdr.payload_length));
            }
            (None, hdr.source, hdr.destination, true)
        }
        other => return Err(format!("not IP: {other:?}")),
    };
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let want = if v6 {
                t.calc_checksum_ipv6(src, dst)
            } else {
                t.calc_checksum_ipv4(src[..4].try_into().unwrap(), dst[..4].try_into().unwrap())
            }
            .map_err(|e| format!("{e:?}"))?;
            if want != t.checksum() {
                return Err(format!(
                    "TCP checksum {:#06x}, want {want:#06x}",
                    t.checksum()
                ));
            }
            Ok(Seg {
                payload: t.payload().to_vec(),
                header_len: d.len() - t.payload().len(),
                ip_id,
                seq: Some(t.sequence_number()),
                flags: (t.fin(), t.psh(), t.cwr()),
                vlans,
            })
        }
        Some(TransportSlice::Udp(u)) => {
            let h = u.to_header();
            let want = if v6 {
                h.calc_checksum_ipv6_raw(src, dst, u.payload())
            } else {
                h.calc_checksum_ipv4_raw(
                    src[..4].try_into().unwrap(),
                    dst[..4].try_into().unwrap(),
                    u.payload(),
                )
            }
            .map_err(|e| format!("{e:?}"))?;
            if want != h.checksum {
                return Err(format!(
                    "UDP checksum {:#06x}, want {want:#06x}",
                    h.checksum
                ));
            }
            if usize::from(h.length) != u.payload().len() + 8 {
                return Err("UDP length wrong".into());
            }
            Ok(Seg {
                payload: u.payload().to_vec(),
                header_len: d.len() - u.payload().len(),
                ip_id,
                seq: None,
                flags: (false, false, false),
                vlans,
            })
        }
        other => Err(format!("no TCP/UDP: {other:?}")),
    }
}

/// Splits `s`'s frame and checks every segment against the spec.
fn check_split(s: &Spec) {
    let pkt = gso_frame(s);
    let orig_payload = payload_bytes(s.payload);
    let mut out = vec![Packet::plain(vec![1, 2, 3])]; // appended to, not replaced
    let n = split_gso(pkt, &mut out).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let expect_n = s.payload.div_ceil(usize::from(s.mss)).max(1);
    assert_eq!(n, expect_n, "{s:?}");
    assert_eq!(out.len(), 1 + n);
    assert_eq!(out[0].data, [1, 2, 3]);
    let segs: Vec<Seg> = out[1..]
        .iter()
        .enumerate()
        .map(|(i, p)| verify(p).unwrap_or_else(|e| panic!("{s:?} segment {i}: {e}")))
        .collect();
    let mut joined = Vec::new();
    let mut offset = 0u32;
    for (i, g) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        assert!(g.payload.len() <= usize::from(s.mss), "{s:?} {i}");
        if !last {
            assert_eq!(
                g.payload.len(),
                usize::from(s.mss),
                "{s:?} {i}: full segment"
            );
        }
        assert_eq!(g.vlans.len(), s.vlans, "{s:?} {i}: VLAN tags kept");
        if !s.v6 {
            assert_eq!(
                g.ip_id,
                Some(s.ip_id.wrapping_add(u16::try_from(i).unwrap()))
            );
        }
        if !s.udp {
            assert_eq!(g.seq, Some(s.seq.wrapping_add(offset)), "{s:?} {i}: seq");
            assert_eq!(g.flags.0, s.fin && last, "{s:?} {i}: FIN only on the last");
            assert_eq!(g.flags.1, s.psh && last, "{s:?} {i}: PSH only on the last");
            assert_eq!(
                g.flags.2,
                s.cwr && i == 0,
                "{s:?} {i}: CWR only on the first"
            );
        }
        offset = offset.wrapping_add(u32::try_from(g.payload.len()).unwrap());
        joined.extend_from_slice(&g.payload);
    }
    assert_eq!(
        joined, orig_payload,
        "{s:?}: payloads concatenate to the original"
    );
}

#[test]
fn tcp_v4_v6_vlan_flags_and_remainders() {
    let mut cases = Vec::new();
    for v6 in [false, true] {
        for vlans in 0..=2 {
            for (payload, mss) in [(14_480, 1448), (10_000, 1448), (65_000, 1400), (100, 1448)] {
                let mut s = Spec::tcp4(payload, mss);
                s.v6 = v6;
                s.vlans = vlans;
                s.fin = payload == 10_000;
                s.psh = payload != 14_480;
                s.cwr = vlans == 1;
                cases.push(s);
            }
        }
    }
    // Sequence number and IPv4 id wrap.
    let mut s = Spec::tcp4(5000, 1000);
    s.seq = u32::MAX - 1500;
    s.ip_id = u16::MAX - 1;
    cases.push(s);
    for s in &cases {
        check_split(s);
    }
}

#[test]
fn ecn_bit_in_gso_type_is_accepted() {
    let mut s = Spec::tcp4(4000, 1000);
    s.cwr = true;
    let mut pkt = gso_frame(&s);
    pkt.vnet.gso_type |= GSO_ECN;
    let mut out = Vec::new();
    assert_eq!(split_gso(pkt, &mut out).unwrap(), 4);
    let cwr: Vec<bool> = out.iter().map(|p| verify(p).unwrap().flags.2).collect();
    assert_eq!(cwr, [true, false, false, false]);
}

#[test]
fn udp_l4_segmentation() {
    for v6 in [false, true] {
        for vlans in [0, 1] {
            let mut s = Spec::tcp4(3000, 1200);
            s.udp = true;
            s.v6 = v6;
            s.vlans = vlans;
            check_split(&s);
        }
    }
}

#[test]
fn segments_are_wire_size() {
    // A 64 KB frame at MSS 1460 becomes 1514-byte frames (1518 with a tag).
    for vlans in [0, 1] {
        let mut s = Spec::tcp4(65_000, 1460);
        s.vlans = vlans;
        let mut out = Vec::new();
        split_gso(gso_frame(&s), &mut out).unwrap();
        assert_eq!(out.len(), 45);
        let max = out.iter().map(|p| p.data.len()).max().unwrap();
        assert_eq!(max, 1514 + 4 * vlans);
        for p in &out {
            assert_eq!(verify(p).unwrap().header_len, 54 + 4 * vlans);
        }
    }
}

#[test]
fn non_gso_frames_pass_unchanged() {
    // A plain frame, and a NEEDS_CSUM frame that keeps its partial checksum.
    let plain = Packet::plain(vec![0xaa; 60]);
    let mut partial = gso_frame(&Spec::tcp4(500, 1448));
    partial.vnet.gso_type = VnetHdr::GSO_NONE;
    partial.vnet.gso_size = 0;
    // GSO_NONE with the ECN bit is still not GSO.
    let mut ecn_none = plain.clone();
    ecn_none.vnet.gso_type = GSO_ECN;
    for p in [plain, partial, ecn_none, Packet::default()] {
        let mut out = Vec::new();
        assert_eq!(split_gso(p.clone(), &mut out).unwrap(), 1);
        assert_eq!(out, vec![p]);
    }
}

fn expect_err(p: Packet, what: &str) {
    let mut out = vec![Packet::plain(vec![9])];
    let e: SplitError = split_gso(p, &mut out).unwrap_err();
    assert!(e.0.contains(what), "error {e:?} should mention {what:?}");
    assert!(!e.to_string().is_empty());
    assert_eq!(
        out,
        vec![Packet::plain(vec![9])],
        "nothing appended on error"
    );
}

#[test]
fn malformed_frames_are_refused() {
    let good = || gso_frame(&Spec::tcp4(3000, 1000));
    // TCP GSO type on a UDP datagram.
    let mut udp = Spec::tcp4(3000, 1000);
    udp.udp = true;
    let mut p = gso_frame(&udp);
    p.vnet.gso_type = GSO_TCPV4;
    expect_err(p, "protocol 17");
    // No TCP header at all.
    let mut p = good();
    p.data.truncate(40);
    p.vnet.hdr_len = 34;
    expect_err(p, "TCP header");
    // hdr_len beyond the frame.
    let mut p = good();
    p.vnet.hdr_len = u16::try_from(p.data.len() + 1).unwrap();
    expect_err(p, "hdr_len");
    // gso_size 0.
    let mut p = good();
    p.vnet.gso_size = 0;
    expect_err(p, "gso_size");
    // UFO.
    let mut p = good();
    p.vnet.gso_type = 3;
    expect_err(p, "UFO");
    // Unknown GSO type.
    let mut p = good();
    p.vnet.gso_type = 9;
    expect_err(p, "gso_type 9");
    // TCPV6 on an IPv4 frame, TCPV4 on an IPv6 frame.
    let mut p = good();
    p.vnet.gso_type = GSO_TCPV6;
    expect_err(p, "IPv4");
    let mut v6 = Spec::tcp4(3000, 1000);
    v6.v6 = true;
    let mut p = gso_frame(&v6);
    p.vnet.gso_type = GSO_TCPV4;
    expect_err(p, "IPv6");
    // Not IP.
    let mut p = good();
    p.data[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    expect_err(p, "not IP");
    // IPv6 fragment header, and an unknown extension header.
    for (nh, what) in [(44u8, "fragment"), (135, "next header 135")] {
        let mut p = gso_frame(&v6);
        p.data[14 + 6] = nh;
        expect_err(p, what);
    }
    // IPv6 routing header with segments left.
    let mut p = gso_frame(&v6);
    p.data[14 + 6] = 43;
    p.data.splice(54..54, [6u8, 0, 0, 1, 0, 0, 0, 0]);
    expect_err(p, "segments left");
    // Bad TCP data offset; bad IPv4 IHL.
    let mut p = good();
    p.data[34 + 12] = 4 << 4;
    expect_err(p, "TCP header length");
    let mut p = good();
    p.data[14] = 0x44;
    expect_err(p, "IPv4 header length");
    // A frame too short for Ethernet.
    let mut p = good();
    p.data.truncate(10);
    p.vnet.hdr_len = 0;
    expect_err(p, "Ethernet");
}

#[test]
fn ipv6_extension_headers_are_walked() {
    // Hop-by-hop (PadN) then destination options, then TCP: copied into every segment.
    let mut v6 = Spec::tcp4(5000, 1000);
    v6.v6 = true;
    let mut p = gso_frame(&v6);
    p.data[14 + 6] = 0; // next header: hop-by-hop
    let ext = [60u8, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0];
    p.data.splice(54..54, ext);
    let plen = u16::from_be_bytes([p.data[18], p.data[19]]) + 16;
    p.data[18..20].copy_from_slice(&plen.to_be_bytes());
    let mut out = Vec::new();
    assert_eq!(split_gso(p, &mut out).unwrap(), 5);
    let mut joined = Vec::new();
    for s in &out {
        let g = verify(s).unwrap();
        assert_eq!(g.header_len, 14 + 40 + 16 + 20);
        assert_eq!(&s.data[54..70], &ext);
        joined.extend(g.payload);
    }
    assert_eq!(joined, payload_bytes(5000));
}

#[test]
fn partial_checksum_in_input_is_irrelevant() {
    // Whatever the checksum field held, segments carry the right checksums.
    for garbage in [0u16, 0xffff, 0x1234] {
        let mut p = gso_frame(&Spec::tcp4(3000, 1000));
        p.data[50..52].copy_from_slice(&garbage.to_be_bytes());
        p.vnet.flags = 0;
        let mut out = Vec::new();
        split_gso(p, &mut out).unwrap();
        for s in &out {
            verify(s).unwrap();
        }
    }
}

fn arb_vnet() -> impl Strategy<Value = VnetHdr> {
    (
        any::<u8>(),
        prop_oneof![
            Just(0u8),
            Just(1),
            Just(3),
            Just(4),
            Just(5),
            Just(0x81),
            any::<u8>()
        ],
        any::<u16>(),
        prop_oneof![Just(0u16), 1u16..64, 500u16..2000, any::<u16>()],
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(
            |(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)| VnetHdr {
                flags,
                gso_type,
                hdr_len,
                gso_size,
                csum_start,
                csum_offset,
            },
        )
}

/// Checks the output of `split_gso` on an arbitrary input.
fn check_any(pkt: Packet) -> Result<(), TestCaseError> {
    let before = pkt.clone();
    let gso = pkt.vnet.gso_type & !GSO_ECN != 0;
    let mut out = Vec::new();
    match split_gso(pkt, &mut out) {
        Err(_) => prop_assert!(out.is_empty(), "nothing appended on error"),
        Ok(n) => {
            prop_assert_eq!(n, out.len());
            if !gso {
                prop_assert_eq!(&out, &vec![before]);
                return Ok(());
            }
            let bound = usize::from(before.vnet.gso_size);
            let first = verify(&out[0]).map_err(TestCaseError::fail)?;
            let mut total_payload = 0;
            for s in &out {
                let g = verify(s).map_err(TestCaseError::fail)?;
                prop_assert_eq!(
                    g.header_len,
                    first.header_len,
                    "same headers in every segment"
                );
                let headers = g.header_len.max(usize::from(before.vnet.hdr_len));
                prop_assert!(
                    s.data.len() <= headers + bound,
                    "segment of {} > headers {} + gso_size {}",
                    s.data.len(),
                    headers,
                    bound
                );
                total_payload += g.payload.len();
            }
            prop_assert_eq!(first.header_len + total_payload, before.data.len());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes with random virtio-net headers: never a panic; Err appends nothing; Ok
    /// gives valid segments no longer than the headers + gso_size.
    #[test]
    fn random_frames_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        vnet in arb_vnet(),
    ) {
        check_any(Packet { data, vnet })?;
    }

    /// Valid frames with a few bytes of their headers overwritten and random vnet fields.
    #[test]
    fn mutated_frames_never_panic(
        v6 in any::<bool>(),
        udp in any::<bool>(),
        vlans in 0usize..3,
        payload in 0usize..5000,
        mss in 1u16..3000,
        muts in proptest::collection::vec((0usize..120, any::<u8>()), 0..4),
        vnet in proptest::option::of(arb_vnet()),
        cut in proptest::option::of(0usize..200),
    ) {
        let mut s = Spec::tcp4(payload, mss);
        s.v6 = v6;
        s.udp = udp;
        s.vlans = vlans;
        let mut p = gso_frame(&s);
        for (at, b) in muts {
            if let Some(x) = p.data.get_mut(at) {
                *x = b;
            }
        }
        if let Some(v) = vnet {
            p.vnet = v;
        }
        if let Some(c) = cut {
            p.data.truncate(c);
        }
        check_any(p)?;
    }
}

// ------------------------------------------------------------------------------------------
// Real kernel GSO frames.

mod kernel {
    use super::*;
    use shg_switch::port::afpacket::AfPacketPort;
    use shg_switch::port::link::enter_netns;
    use shg_switch::port::PortBackend;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
            })
            .unwrap_or(false)
    }

    fn run(args: &[&str]) -> Result<(), String> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("{args:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{args:?}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Namespaces of this run, deleted on drop (also on panic).
    struct Netns(Vec<String>);

    impl Drop for Netns {
        fn drop(&mut self) {
            for n in self.0.drain(..).rev() {
                if let Err(e) = run(&["ip", "netns", "del", &n]) {
                    eprintln!("teardown: {e}");
                }
            }
        }
    }

    fn in_ns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = std::path::PathBuf::from("/var/run/netns").join(ns);
        std::thread::spawn(move || {
            enter_netns(&path).unwrap_or_else(|e| panic!("{e}"));
            f()
        })
    }

    /// Receives 200 KB over TCP on a veth with default offloads while an AF_PACKET socket on
    /// that veth captures the arriving frames; returns the captured frames.
    fn capture(ns_rx: &str, ns_tx: &str, ifname: &str, dst: SocketAddr) -> Vec<Packet> {
        const BYTES: usize = 200 * 1024;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ifn = ifname.to_owned();
        let stop2 = stop.clone();
        let capturer = in_ns(ns_rx, move || {
            let mut port = AfPacketPort::open(&ifn).expect("open AF_PACKET");
            let listener = TcpListener::bind(dst).expect("bind");
            ready_tx.send(()).unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().expect("accept");
                let mut buf = Vec::new();
                s.read_to_end(&mut buf).expect("read");
                buf.len()
            });
            let mut frames = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                if port.recv_batch(&mut frames, 32).unwrap_or(0) == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            // Drain what is left.
            while port.recv_batch(&mut frames, 32).unwrap_or(0) > 0 {}
            (frames, server.join().expect("server"))
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("capturer ready");
        let sender = in_ns(ns_tx, move || {
            let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect");
            // Write in large chunks so the stack builds GSO frames.
            let data = payload_bytes(BYTES);
            s.write_all(&data).expect("write");
        });
        sender.join().expect("sender");
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let (frames, got) = capturer.join().expect("capturer");
        assert_eq!(got, BYTES, "the TCP stream arrived whole");
        frames
    }

    #[test]
    fn kernel_gso_frames_split_into_valid_segments() {
        if !is_root() {
            eprintln!("skipping kernel_gso_frames_split_into_valid_segments: needs root (namespaces, AF_PACKET)");
            return;
        }
        let p = format!("shg{}g", std::process::id());
        let (na, nb) = (format!("{p}a"), format!("{p}b"));
        let (va, vb) = (format!("{p}va"), format!("{p}vb"));
        let mut ns = Netns(Vec::new());
        for n in [&na, &nb] {
            run(&["ip", "netns", "add", n]).unwrap();
            ns.0.push(n.clone());
        }
        run(&[
            "ip", "link", "add", &va, "netns", &na, "type", "veth", "peer", "name", &vb, "netns",
            &nb,
        ])
        .unwrap();
        for (n, v, a4, a6) in [
            (&na, &va, "198.18.77.1/24", "2001:db8:77::1/64"),
            (&nb, &vb, "198.18.77.2/24", "2001:db8:77::2/64"),
        ] {
            run(&["ip", "-n", n, "addr", "add", a4, "dev", v]).unwrap();
            run(&["ip", "-n", n, "addr", "add", a6, "dev", v, "nodad"]).unwrap();
            run(&["ip", "-n", n, "link", "set", v, "up"]).unwrap();
            run(&["ip", "-n", n, "link", "set", "lo", "up"]).unwrap();
        }
        for (dst, want_type) in [
            ("198.18.77.1:5201".parse::<SocketAddr>().unwrap(), GSO_TCPV4),
            (
                "[2001:db8:77::1]:5202".parse::<SocketAddr>().unwrap(),
                GSO_TCPV6,
            ),
        ] {
            let frames = capture(&na, &nb, &va, dst);
            let mut gso = 0;
            let mut segments = 0;
            let mut largest = 0;
            for f in frames {
                if f.vnet.gso_type & !GSO_ECN == 0 {
                    continue;
                }
                assert_eq!(f.vnet.gso_type & !GSO_ECN, want_type, "{:?}", f.vnet);
                gso += 1;
                largest = largest.max(f.data.len());
                let mss = usize::from(f.vnet.gso_size);
                let sp = SlicedPacket::from_ethernet(&f.data).expect("kernel frame parses");
                let orig_payload = match &sp.transport {
                    Some(TransportSlice::Tcp(t)) => t.payload().to_vec(),
                    other => panic!("GSO frame without TCP: {other:?}"),
                };
                drop(sp);
                let mut out = Vec::new();
                let n = split_gso(f, &mut out).expect("kernel GSO frame splits");
                assert_eq!(n, orig_payload.len().div_ceil(mss));
                let mut joined = Vec::new();
                for s in &out {
                    let g = verify(s).unwrap_or_else(|e| panic!("kernel segment: {e}"));
                    assert!(g.payload.len() <= mss);
                    joined.extend(g.payload);
                }
                assert_eq!(joined, orig_payload);
                segments += n;
            }
            eprintln!(
                "{dst}: {gso} kernel GSO frames (largest {largest} bytes) split into {segments} valid segments"
            );
            assert!(
                gso > 0,
                "no GSO frame captured from the veth (offloads off?)"
            );
        }
    }
}
