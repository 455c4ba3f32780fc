//! Splits GSO frames into wire-size frames in software (for shaped ports).
//!
//! A veth or TAP hands the switch TCP (and UDP, with USO) "super-frames" of up to 64 KB whose
//! virtio-net header says how the kernel would cut them (`gso_type`, `gso_size`). Passed on as
//! they are, the next kernel segments them; but a port shaped to 20 Mbit/s would then hold its
//! link for 26 ms with one such frame, and its scheduler would see one huge packet instead of
//! forty-odd. [`split_gso`] does the kernel's job (`tcp_gso_segment`, `__udp_gso_segment`)
//! before the scheduler: one plain frame per `gso_size` bytes of payload, every header and
//! checksum complete.
//!
//! What each segment gets (the super-frame's headers copied, then):
//! - Ethernet and any number of 802.1Q / 802.1ad tags: unchanged.
//! - IPv4: total length of the segment, identification incremented per segment (the first one
//!   keeps the frame's id), header checksum recomputed. Options are copied.
//! - IPv6: payload length of the segment. Hop-by-hop, destination-options and routing headers
//!   (the latter only with `segments_left` 0, so the pseudo-header address is the header's
//!   destination) are walked and copied; fragment, AH, ESP and unknown headers are refused.
//! - TCP: sequence number advanced by the payload offset; FIN and PSH only on the last
//!   segment, CWR only on the first (as the kernel does; `gso_type`'s ECN bit 0x80 just says
//!   CWR may be set). The checksum is computed in software over the pseudo-header and the
//!   segment: whatever the input held (the kernel's partial pseudo-header sum) is ignored.
//! - UDP (USO): length of the segment and its checksum (0 is sent as 0xffff).
//! - The virtio-net header is [`VnetHdr::default`]: a plain frame.
//!
//! `hdr_len` is only checked (not beyond the frame): the kernel fills it with the length of
//! the socket buffer's linear part, which is not always the header length, so the headers are
//! measured by parsing. A frame that is not GSO (`gso_type` 0, ECN bit or not) passes
//! unchanged, a `NEEDS_CSUM` frame with its partial checksum (the receiving kernel completes
//! it).
//!
//! Invariants: never panics on any bytes or header values (every access is bounds-checked,
//! arithmetic checked); on error nothing is appended and the frame's buffer goes back to the
//! pool. Segments live in buffers of their own size; the super-frame's buffer is recycled.
//! At most [`MAX_SEGMENTS`] segments per frame (a guard against `gso_size` 1).

use crate::port::{Packet, VnetHdr};
use std::fmt;

/// VIRTIO_NET_HDR_GSO_TCPV4.
pub const GSO_TCPV4: u8 = 1;
/// VIRTIO_NET_HDR_GSO_UDP (UFO: IP fragmentation of one datagram; refused).
pub const GSO_UDP: u8 = 3;
/// VIRTIO_NET_HDR_GSO_TCPV6.
pub const GSO_TCPV6: u8 = 4;
/// VIRTIO_NET_HDR_GSO_UDP_L4 (USO: one UDP datagram per segment).
pub const GSO_UDP_L4: u8 = 5;
/// VIRTIO_NET_HDR_GSO_ECN flag.
pub const GSO_ECN: u8 = 0x80;
/// Most segments one frame may become. Linux's smallest TCP MSS is 48 bytes, so a 64 KB
/// frame makes at most 1366; USO allows 128 per datagram.
pub const MAX_SEGMENTS: usize = 2048;

const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard 802.1ad (still used by some switches).
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DSTOPTS: u8 = 60;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a frame could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError(pub String);

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot split GSO frame: {}", self.0)
    }
}

impl std::error::Error for SplitError {}

fn err<T>(msg: impl Into<String>) -> Result<T, SplitError> {
    Err(SplitError(msg.into()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4 {
    Tcp,
    Udp,
}

/// Where the headers of a GSO frame are, and how to cut it.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Start of the IP header.
    l3: usize,
    v6: bool,
    /// IPv4 header length (unused for IPv6).
    ip_hlen: usize,
    /// Start of the TCP/UDP header.
    l4: usize,
    l4_kind: L4,
    /// End of the headers = start of the payload.
    hdr: usize,
    gso_size: usize,
}

fn rd8(d: &[u8], at: usize) -> Option<u8> {
    d.get(at).copied()
}

fn rd16(d: &[u8], at: usize) -> Option<u16> {
    let s = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn rd32(d: &[u8], at: usize) -> Option<u32> {
    let s = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn wr16(d: &mut [u8], at: usize, v: u16) {
    if let Some(s) = at.checked_add(2).and_then(|e| d.get_mut(at..e)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn wr32(d: &mut [u8], at: usize, v: u32) {
    if let Some(s) = at.checked_add(4).and_then(|e| d.get_mut(at..e)) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// One's-complement sum of big-endian 16-bit words (an odd tail padded with zero).
fn ones_sum(data: &[u8], mut acc: u64) -> u64 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = it.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    u16::try_from(acc).unwrap_or(0xffff)
}

/// Finds the IP, L4 and payload offsets of a GSO frame and checks it can be split.
fn plan(d: &[u8], v: &VnetHdr) -> Result<Plan, SplitError> {
    let kind = v.gso_type & !GSO_ECN;
    let (want_v6, l4_kind) = match kind {
        GSO_TCPV4 => (Some(false), L4::Tcp),
        GSO_TCPV6 => (Some(true), L4::Tcp),
        GSO_UDP_L4 => (None, L4::Udp),
        GSO_UDP => return err("gso_type 3 (UFO: fragmenting UDP) is not supported"),
        k => return err(format!("unknown gso_type {k}")),
    };
    if v.gso_size == 0 {
        return err("gso_size is 0");
    }
    if usize::from(v.hdr_len) > d.len() {
        return err(format!(
            "hdr_len {} is beyond the {}-byte frame",
            v.hdr_len,
            d.len()
        ));
    }
    // Ethernet and VLAN tags.
    let mut at = ETH_HLEN - 2;
    let mut et = rd16(d, at).ok_or_else(|| SplitError("frame shorter than Ethernet".into()))?;
    while matches!(et, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) {
        at += 4;
        et = rd16(d, at).ok_or_else(|| SplitError("truncated VLAN tag".into()))?;
    }
    let l3 = at + 2;
    let v6 = match et {
        ETHERTYPE_IPV4 => false,
        ETHERTYPE_IPV6 => true,
        other => return err(format!("GSO frame with ethertype {other:#06x}, not IP")),
    };
    if let Some(w) = want_v6 {
        if w != v6 {
            return err(format!(
                "gso_type {kind} but the frame is IPv{}",
                if v6 { 6 } else { 4 }
            ));
        }
    }
    let (l4, proto, ip_hlen) = if v6 {
        let (l4, proto) = walk_ipv6(d, l3)?;
        (l4, proto, 40)
    } else {
        let b0 = rd8(d, l3).ok_or_else(|| SplitError("truncated IPv4 header".into()))?;
        if b0 >> 4 != 4 {
            return err(format!("IPv4 ethertype but IP version {}", b0 >> 4));
        }
        let ihl = usize::from(b0 & 0x0f) * 4;
        if ihl < 20 || l3 + ihl > d.len() {
            return err(format!("bad IPv4 header length {ihl}"));
        }
        let frag = rd16(d, l3 + 6).unwrap_or(0);
        if frag & 0x3fff != 0 {
            return err("IPv4 fragment");
        }
        (l3 + ihl, rd8(d, l3 + 9).unwrap_or(0), ihl)
    };
    let hdr = match (l4_kind, proto) {
        (L4::Tcp, PROTO_TCP) => {
            let off = rd8(d, l4 + 12).ok_or_else(|| SplitError("truncated TCP header".into()))?;
            let thl = usize::from(off >> 4) * 4;
            if thl < 20 || l4 + thl > d.len() {
                return err(format!("bad TCP header length {thl}"));
            }
            l4 + thl
        }
        (L4::Udp, PROTO_UDP) => {
            if l4 + 8 > d.len() {
                return err("truncated UDP header");
            }
            l4 + 8
        }
        (L4::Tcp, p) => return err(format!("gso_type {kind} (TCP) but IP protocol {p}")),
        (L4::Udp, p) => return err(format!("gso_type {kind} (UDP) but IP protocol {p}")),
    };
    let gso_size = usize::from(v.gso_size);
    let payload = d.len() - hdr;
    let segs = payload.div_ceil(gso_size).max(1);
    if segs > MAX_SEGMENTS {
        return err(format!(
            "{payload} payload bytes at gso_size {gso_size} make {segs} segments (max {MAX_SEGMENTS})"
        ));
    }
    // The largest segment's IP length must fit its 16-bit length field.
    let ip_len = hdr - l3 + gso_size.min(payload);
    let field = if v6 { ip_len - 40 } else { ip_len };
    if field > usize::from(u16::MAX) {
        return err(format!(
            "a {ip_len}-byte IP segment does not fit the length field"
        ));
    }
    Ok(Plan {
        l3,
        v6,
        ip_hlen,
        l4,
        l4_kind,
        hdr,
        gso_size,
    })
}

/// Walks IPv6 extension headers from the fixed header at `l3`: (L4 offset, L4 protocol).
fn walk_ipv6(d: &[u8], l3: usize) -> Result<(usize, u8), SplitError> {
    let b0 = rd8(d, l3).ok_or_else(|| SplitError("truncated IPv6 header".into()))?;
    if b0 >> 4 != 6 {
        return err(format!("IPv6 ethertype but IP version {}", b0 >> 4));
    }
    if l3 + 40 > d.len() {
        return err("truncated IPv6 header");
    }
    if rd16(d, l3 + 4) == Some(0) {
        return err("IPv6 payload length 0 (jumbogram) is not supported");
    }
    let mut next = rd8(d, l3 + 6).unwrap_or(0);
    let mut at = l3 + 40;
    // Each step advances by at least 8 bytes, so this ends; the bound is a second guard.
    for _ in 0..16 {
        match next {
            PROTO_TCP | PROTO_UDP => return Ok((at, next)),
            IPV6_HOPOPTS | IPV6_DSTOPTS | IPV6_ROUTING => {
                let nh = rd8(d, at).ok_or_else(|| SplitError("truncated IPv6 extension".into()))?;
                let len = rd8(d, at + 1)
                    .map(|l| (usize::from(l) + 1) * 8)
                    .ok_or_else(|| SplitError("truncated IPv6 extension".into()))?;
                if at + len > d.len() {
                    return err("truncated IPv6 extension header");
                }
                if next == IPV6_ROUTING && rd8(d, at + 3) != Some(0) {
                    return err("IPv6 routing header with segments left");
                }
                next = nh;
                at += len;
            }
            IPV6_FRAGMENT => return err("IPv6 fragment header"),
            other => return err(format!("IPv6 next header {other} cannot be walked")),
        }
    }
    err("too many IPv6 extension headers")
}

/// Appends wire-size frames for `pkt` to `out`: a GSO frame (`gso_type` TCPV4 / TCPV6, with
/// or without the ECN bit, or UDP_L4) becomes one plain frame per `gso_size` bytes of payload
/// with complete headers and checksums (see the module docs); any other frame is appended
/// unchanged. Returns the number of frames appended. On error nothing is appended and the
/// frame is dropped (its buffer recycled).
pub fn split_gso(pkt: Packet, out: &mut Vec<Packet>) -> Result<usize, SplitError> {
    if pkt.vnet.gso_type & !GSO_ECN == VnetHdr::GSO_NONE {
        out.push(pkt);
        return Ok(1);
    }
    let p = match plan(&pkt.data, &pkt.vnet) {
        Ok(p) => p,
        Err(e) => {
            pkt.recycle();
            return Err(e);
        }
    };
    let n = emit(&pkt.data, &p, out);
    pkt.recycle();
    Ok(n)
}

/// Builds the segments of a planned frame; cannot fail (every offset was checked by `plan`).
fn emit(d: &[u8], p: &Plan, out: &mut Vec<Packet>) -> usize {
    let (head, payload) = d.split_at(p.hdr.min(d.len()));
    let l3 = p.l3;
    let l4 = p.l4;
    let ip_id = rd16(d, l3 + 4).unwrap_or(0);
    let seq = rd32(d, l4 + 4).unwrap_or(0);
    let flags = rd8(d, l4 + 13).unwrap_or(0);
    // Pseudo-header addresses.
    let addrs = if p.v6 {
        d.get(l3 + 8..l3 + 40).unwrap_or(&[])
    } else {
        d.get(l3 + 12..l3 + 20).unwrap_or(&[])
    };
    let addr_sum = ones_sum(addrs, 0);
    let proto = match p.l4_kind {
        L4::Tcp => PROTO_TCP,
        L4::Udp => PROTO_UDP,
    };
    let mut chunks: Vec<&[u8]> = payload.chunks(p.gso_size).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    let mut offset: usize = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        // Sized to the segment (not a pooled 64 KB receive buffer): a shaped port may hold
        // thousands of them.
        let mut buf = Vec::with_capacity(head.len() + chunk.len());
        buf.extend_from_slice(head);
        buf.extend_from_slice(chunk);
        let len = buf.len();
        // IP header.
        if p.v6 {
            wr16(&mut buf, l3 + 4, len16(len - l3 - 40));
        } else {
            wr16(&mut buf, l3 + 2, len16(len - l3));
            wr16(&mut buf, l3 + 4, ip_id.wrapping_add(low16(i)));
            wr16(&mut buf, l3 + 10, 0);
            let c = !fold(ones_sum(buf.get(l3..l3 + p.ip_hlen).unwrap_or(&[]), 0));
            wr16(&mut buf, l3 + 10, c);
        }
        // L4 header and checksum.
        let l4_len = len - l4;
        let csum_at = match p.l4_kind {
            L4::Tcp => {
                wr32(&mut buf, l4 + 4, seq.wrapping_add(low32(offset)));
                let mut f = flags;
                if i != last {
                    f &= !(TCP_FIN | TCP_PSH);
                }
                if i != 0 {
                    f &= !TCP_CWR;
                }
                if let Some(b) = buf.get_mut(l4 + 13) {
                    *b = f;
                }
                l4 + 16
            }
            L4::Udp => {
                wr16(&mut buf, l4 + 4, len16(l4_len));
                l4 + 6
            }
        };
        wr16(&mut buf, csum_at, 0);
        let mut acc = addr_sum + u64::from(proto);
        acc += u64::try_from(l4_len).unwrap_or(0);
        acc = ones_sum(buf.get(l4..).unwrap_or(&[]), acc);
        let mut c = !fold(acc);
        if p.l4_kind == L4::Udp && c == 0 {
            c = 0xffff;
        }
        wr16(&mut buf, csum_at, c);
        out.push(Packet::plain(buf));
        offset += chunk.len();
    }
    chunks.len()
}

/// A length `plan` proved to fit 16 bits.
fn len16(v: usize) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

/// The low 16 bits (IPv4 ids wrap).
fn low16(v: usize) -> u16 {
    u16::try_from(v & 0xffff).unwrap_or(0)
}

/// The low 32 bits (TCP sequence numbers wrap).
fn low32(v: usize) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet/IPv4/TCP GSO frame with `payload` bytes of payload, checksums left zero.
    fn v4_tcp(payload: usize, flags: u8, mss: u16) -> Packet {
        let mut d = vec![0u8; 14 + 20 + 20 + payload];
        d[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        d[14] = 0x45;
        d[14 + 4..14 + 6].copy_from_slice(&0xfffeu16.to_be_bytes());
        d[14 + 8] = 64;
        d[14 + 9] = PROTO_TCP;
        d[14 + 12..14 + 20].copy_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2]);
        d[34 + 4..34 + 8].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        d[34 + 12] = 5 << 4;
        d[34 + 13] = flags;
        for (i, b) in d[54..].iter_mut().enumerate() {
            *b = u8::try_from(i % 251).unwrap();
        }
        Packet {
            data: d,
            vnet: VnetHdr {
                flags: VnetHdr::F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: 54,
                gso_size: mss,
                csum_start: 34,
                csum_offset: 16,
            },
        }
    }

    #[test]
    fn ids_and_sequence_numbers_wrap() {
        let mut out = Vec::new();
        let n = split_gso(v4_tcp(100, TCP_FIN | TCP_CWR | 0x10, 40), &mut out).unwrap();
        assert_eq!(n, 3);
        let ids: Vec<u16> = out.iter().map(|p| rd16(&p.data, 18).unwrap()).collect();
        assert_eq!(ids, [0xfffe, 0xffff, 0]);
        let seqs: Vec<u32> = out.iter().map(|p| rd32(&p.data, 38).unwrap()).collect();
        assert_eq!(seqs, [0xffff_fff0, 0x18, 0x40]);
        let flags: Vec<u8> = out.iter().map(|p| p.data[47]).collect();
        assert_eq!(flags, [0x90, 0x10, 0x11]);
        let lens: Vec<usize> = out.iter().map(|p| p.data.len()).collect();
        assert_eq!(lens, [94, 94, 74]);
        for p in &out {
            assert_eq!(p.vnet, VnetHdr::default());
            // A valid IPv4 header sums to 0xffff.
            assert_eq!(fold(ones_sum(&p.data[14..34], 0)), 0xffff);
        }
    }

    #[test]
    fn guards() {
        let mut out = Vec::new();
        let mut p = v4_tcp(100, 0, 0);
        assert!(split_gso(p.clone(), &mut out).is_err(), "gso_size 0");
        p.vnet.gso_size = 1;
        p.data.truncate(54);
        p.data.resize(54 + MAX_SEGMENTS + 1, 0);
        let e = split_gso(p, &mut out).unwrap_err();
        assert!(e.to_string().contains("segments"), "{e}");
        let mut p = v4_tcp(10, 0, 4);
        p.vnet.hdr_len = 65;
        assert!(split_gso(p, &mut out).unwrap_err().0.contains("hdr_len"));
        let mut p = v4_tcp(10, 0, 4);
        p.vnet.gso_type = GSO_UDP;
        assert!(split_gso(p, &mut out).unwrap_err().0.contains("UFO"));
        let mut p = v4_tcp(10, 0, 4);
        p.vnet.gso_type = GSO_TCPV6;
        assert!(split_gso(p, &mut out).unwrap_err().0.contains("IPv4"));
        let mut p = v4_tcp(10, 0, 4);
        p.data[14 + 6] = 0x20; // MF
        assert!(split_gso(p, &mut out).unwrap_err().0.contains("fragment"));
        assert!(out.is_empty());
        // Segments are buffers of their own size, not 64 KB receive buffers.
        let n = split_gso(v4_tcp(10, 0, 4), &mut out).unwrap();
        assert_eq!(n, 3);
        assert!(out.iter().all(|p| p.data.capacity() < 2048));
    }

    #[test]
    fn error_display_says_what() {
        let e = SplitError("gso_size is 0".into());
        assert_eq!(e.to_string(), "cannot split GSO frame: gso_size is 0");
    }
}
