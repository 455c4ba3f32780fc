//! ECN marking: sets Congestion Experienced (CE, `11`) on an ECN-capable (ECT(0) `10` or
//! ECT(1) `01`) IPv4 or IPv6 packet inside an Ethernet frame, the AQM's alternative to a drop
//! (RFC 3168). Reads only the bytes it needs, never panics on a short or odd frame: anything
//! it does not understand is left unchanged and reported as not marked.
//!
//! Frames: Ethernet II, then any number of 802.1Q / 802.1ad (/ old QinQ 0x9100) tags, then
//! IPv4 (the header checksum is updated incrementally, RFC 1624) or IPv6 (no header checksum;
//! the ECN bits are not in any transport pseudo-header, so L4 checksums stay valid).

use crate::port::Packet;

const ETH_HDR: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const TAG_TYPES: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// The ECN codepoint of a frame's IP header: `Some(0..=3)` for IP frames, `None` otherwise.
pub fn ecn_of(data: &[u8]) -> Option<u8> {
    match ip_offset(data)? {
        Ip::V4(off) => Some(data[off + 1] & 0x03),
        Ip::V6(off) => Some((data[off + 1] >> 4) & 0x03),
    }
}

/// Marks CE on an ECT frame; returns whether it did. Not-ECT, already-CE, non-IP and
/// truncated frames are left unchanged (false).
pub fn mark_ce(pkt: &mut Packet) -> bool {
    let data = &mut pkt.data;
    match ip_offset(data) {
        Some(Ip::V4(off)) => {
            let tos = data[off + 1];
            if !matches!(tos & 0x03, 0b01 | 0b10) {
                return false;
            }
            let old = u16::from_be_bytes([data[off], tos]);
            let new_tos = tos | 0x03;
            let new = u16::from_be_bytes([data[off], new_tos]);
            let hc = u16::from_be_bytes([data[off + 10], data[off + 11]]);
            let hc = checksum_update(hc, old, new);
            data[off + 1] = new_tos;
            data[off + 10..off + 12].copy_from_slice(&hc.to_be_bytes());
            true
        }
        Some(Ip::V6(off)) => {
            let b = data[off + 1];
            if !matches!((b >> 4) & 0x03, 0b01 | 0b10) {
                return false;
            }
            data[off + 1] = b | 0x30;
            true
        }
        None => false,
    }
}

enum Ip {
    V4(usize),
    V6(usize),
}

/// Where the IP header starts, if the frame carries a complete-enough IPv4 (20-byte header,
/// valid IHL, fully present) or IPv6 (40-byte header) packet.
fn ip_offset(data: &[u8]) -> Option<Ip> {
    let mut off = ETH_HDR - 2;
    loop {
        let ty = u16::from_be_bytes([*data.get(off)?, *data.get(off + 1)?]);
        off += 2;
        if TAG_TYPES.contains(&ty) {
            off += 2; // the TCI; the next ethertype follows
            continue;
        }
        return match ty {
            ETHERTYPE_IPV4 => {
                let vihl = *data.get(off)?;
                let ihl = usize::from(vihl & 0x0f) * 4;
                (vihl >> 4 == 4 && ihl >= 20 && data.len() >= off + ihl).then_some(Ip::V4(off))
            }
            ETHERTYPE_IPV6 => {
                (data.len() >= off + 40 && data[off] >> 4 == 6).then_some(Ip::V6(off))
            }
            _ => None,
        };
    }
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), one's complement arithmetic.
fn checksum_update(hc: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    #[allow(clippy::cast_possible_truncation, reason = "folded to 16 bits above")]
    let folded = sum as u16;
    !folded
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4Header, PacketBuilder, VlanId};

    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const DST: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// An Ethernet/IPv4/UDP frame with `vlans` tags and the given ECN bits (checksum valid).
    fn v4(vlans: usize, ecn: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let payload = [0xabu8; 30];
        match vlans {
            0 => PacketBuilder::ethernet2(SRC, DST)
                .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
                .udp(1000, 2000)
                .write(&mut out, &payload)
                .unwrap(),
            1 => PacketBuilder::ethernet2(SRC, DST)
                .single_vlan(VlanId::try_new(10).unwrap())
                .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
                .udp(1000, 2000)
                .write(&mut out, &payload)
                .unwrap(),
            _ => PacketBuilder::ethernet2(SRC, DST)
                .double_vlan(VlanId::try_new(10).unwrap(), VlanId::try_new(20).unwrap())
                .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
                .udp(1000, 2000)
                .write(&mut out, &payload)
                .unwrap(),
        }
        let off = 14 + 4 * vlans;
        out[off + 1] = (0x2e << 2) | ecn; // DSCP EF, to check it survives
        let (mut hdr, _) = Ipv4Header::from_slice(&out[off..]).unwrap();
        hdr.header_checksum = hdr.calc_header_checksum();
        out[off..off + 20].copy_from_slice(&hdr.to_bytes());
        out
    }

    fn v6(ecn: u8) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(SRC, DST)
            .ipv6(
                [0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                {
                    let mut d = [0u8; 16];
                    d[..4].copy_from_slice(&[0x20, 1, 0x0d, 0xb8]);
                    d[15] = 2;
                    d
                },
                64,
            )
            .udp(1000, 2000)
            .write(&mut out, &[1u8; 20])
            .unwrap();
        // Traffic class 0xb8 | ecn (DSCP EF), flow label 0x12345.
        let tc = 0xb8 | ecn;
        out[14] = 0x60 | (tc >> 4);
        out[15] = ((tc & 0x0f) << 4) | 0x1;
        out[16] = 0x23;
        out[17] = 0x45;
        out
    }

    fn checksum_ok(frame: &[u8], off: usize) -> bool {
        let (hdr, _) = Ipv4Header::from_slice(&frame[off..]).unwrap();
        hdr.calc_header_checksum() == hdr.header_checksum
    }

    #[test]
    fn ipv4_ect_is_marked_and_checksum_stays_valid() {
        for vlans in 0..3 {
            for ecn in [0b01, 0b10] {
                let mut p = Packet::plain(v4(vlans, ecn));
                let before = p.data.clone();
                let off = 14 + 4 * vlans;
                assert!(checksum_ok(&p.data, off));
                assert!(mark_ce(&mut p), "vlans {vlans} ecn {ecn}");
                assert_eq!(ecn_of(&p.data), Some(3));
                assert_eq!(p.data[off + 1] >> 2, 0x2e, "DSCP kept");
                assert!(checksum_ok(&p.data, off), "vlans {vlans} ecn {ecn}");
                let changed: Vec<usize> = (0..before.len())
                    .filter(|&i| before[i] != p.data[i])
                    .collect();
                assert!(changed
                    .iter()
                    .all(|&i| i == off + 1 || i == off + 10 || i == off + 11));
                // Already CE: unchanged.
                let again = p.data.clone();
                assert!(!mark_ce(&mut p));
                assert_eq!(p.data, again);
            }
        }
    }

    #[test]
    fn checksum_update_matches_recomputation_for_many_headers() {
        for ttl in 0..=255u8 {
            let mut f = v4(0, 0b10);
            f[14 + 8] = ttl;
            let (mut hdr, _) = Ipv4Header::from_slice(&f[14..]).unwrap();
            hdr.header_checksum = hdr.calc_header_checksum();
            f[14..34].copy_from_slice(&hdr.to_bytes());
            let mut p = Packet::plain(f);
            assert!(mark_ce(&mut p));
            assert!(checksum_ok(&p.data, 14), "ttl {ttl}");
        }
    }

    #[test]
    fn not_ect_and_ce_are_untouched() {
        for ecn in [0b00, 0b11] {
            let mut p = Packet::plain(v4(1, ecn));
            let before = p.data.clone();
            assert!(!mark_ce(&mut p));
            assert_eq!(p.data, before);
            let mut p = Packet::plain(v6(ecn));
            let before = p.data.clone();
            assert!(!mark_ce(&mut p));
            assert_eq!(p.data, before);
        }
    }

    #[test]
    fn ipv6_ect_is_marked_keeping_dscp_and_flow_label() {
        for ecn in [0b01, 0b10] {
            let mut p = Packet::plain(v6(ecn));
            assert!(mark_ce(&mut p));
            assert_eq!(ecn_of(&p.data), Some(3));
            let tc = (p.data[14] << 4) | (p.data[15] >> 4);
            assert_eq!(tc, 0xbb);
            assert_eq!(p.data[14] >> 4, 6);
            assert_eq!(
                (u32::from(p.data[15] & 0x0f) << 16)
                    | u32::from(p.data[16]) << 8
                    | u32::from(p.data[17]),
                0x12345
            );
        }
    }

    #[test]
    fn non_ip_and_truncated_frames_are_left_alone() {
        // ARP.
        let mut arp = vec![0u8; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        let mut p = Packet::plain(arp.clone());
        assert!(!mark_ce(&mut p));
        assert_eq!(p.data, arp);
        // Every truncation of tagged IPv4 and of IPv6 frames: no panic, no change.
        for full in [v4(2, 0b10), v6(0b10)] {
            let ip_start = if full[12] == 0x86 { 14 } else { 22 };
            let ip_len = if full[12] == 0x86 { 40 } else { 20 };
            for len in 0..full.len() {
                let mut p = Packet::plain(full[..len].to_vec());
                let marked = mark_ce(&mut p);
                assert_eq!(marked, len >= ip_start + ip_len, "len {len}");
            }
        }
        // A bad IHL and a wrong version.
        let mut f = v4(0, 0b10);
        f[14] = 0x44;
        assert!(!mark_ce(&mut Packet::plain(f)));
        let mut f = v4(0, 0b10);
        f[14] = 0x65;
        assert!(!mark_ce(&mut Packet::plain(f)));
    }
}
