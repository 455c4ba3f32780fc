//! Flow-key extraction: one pass over an Ethernet frame fills every OXM field of a [`FlowKey`].
//!
//! [`extract`] owns the mapping from packet bytes to match fields and the header offsets a
//! datapath needs to rewrite the packet afterwards ([`Layers`]). It never panics on any bytes,
//! never allocates and never fails: a frame it cannot fully parse still yields a key.
//!
//! Rules, in the order extraction walks the frame:
//! - Ethernet II: `eth_dst`, `eth_src`, `eth_type`. An 802.3 frame (type field < 0x0600) with an
//!   LLC/SNAP header whose OUI is zero takes the SNAP type; any other 802.3 frame gets
//!   `eth_type = 0x05ff` ([`ETH_TYPE_NONE`], the Open vSwitch convention) and nothing more.
//! - Up to two VLAN tags (TPID 0x8100 or 0x88a8): `vlan_vid = 0x1000 | vid` and `vlan_pcp`
//!   come from the OUTERMOST tag, `eth_type` is the type after the last tag parsed. A third tag
//!   is not parsed: `eth_type` is then its TPID.
//! - MPLS (0x8847/0x8848): the top shim gives `mpls_label`, `mpls_tc`, `mpls_bos`; nothing
//!   below the label stack is parsed.
//! - PBB (0x88e7): the I-TAG gives `pbb_isid`; the encapsulated frame is not parsed.
//! - ARP (0x0806) for Ethernet/IPv4 only (htype 1, ptype 0x0800, hlen 6, plen 4): `arp_op`,
//!   `arp_spa`, `arp_tpa`, `arp_sha`, `arp_tha`.
//! - IPv4: version 4 and `ihl >= 5` are required. `ip_dscp`, `ip_ecn`, `ip_proto`,
//!   `ipv4_src`, `ipv4_dst`. L4 fields only for unfragmented packets and first fragments
//!   (fragment offset 0). When `total_length` is sane it bounds the L4 bytes (Ethernet padding
//!   is ignored).
//! - IPv6: `ip_dscp`/`ip_ecn` from the traffic class, `ipv6_flabel`, `ipv6_src`, `ipv6_dst`,
//!   then the extension-header chain is walked: `ip_proto` is the final next-header value
//!   and `ipv6_exthdr` gets the `OFPIEH_*` bits (see [`ieh`]); both stay zero when the chain
//!   is cut short. L4 fields only when the chain
//!   ends in a known L4 protocol and the packet is not a non-first fragment.
//! - TCP/UDP/SCTP ports; ICMPv4 type/code; ICMPv6 type/code; for Neighbor Solicitation (135)
//!   and Advertisement (136) with code 0: `ipv6_nd_target` and the first source (NS) or target
//!   (NA) link-layer address option.
//!
//! Truncation: a header that is not completely present is not parsed at all, and extraction
//! stops there; the fields of that layer and all later ones stay zero (a frame cut inside a
//! VLAN tag or an LLC/SNAP header has `eth_type` 0). So the key of any prefix of a frame agrees
//! with the full frame's key on every field it sets. This holds for L4 too:
//! the ports of a TCP segment are only extracted when the whole 20-byte fixed TCP header is
//! present (UDP: 8, SCTP: 12 common header, ICMPv4: 8, ICMPv6: 4; ND target: 24 bytes of ICMPv6
//! message). [`Layers::truncated`] says that extraction stopped early because bytes were missing.

use crate::field::{Field, FlowKey, OFPVID_PRESENT};

/// `eth_type` of an 802.3 frame without a SNAP type (Open vSwitch's `FLOW_DL_TYPE_NONE`).
pub const ETH_TYPE_NONE: u16 = 0x05ff;

/// Ethernet types this module understands.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
    pub const MPLS: u16 = 0x8847;
    pub const MPLS_MCAST: u16 = 0x8848;
    pub const PBB: u16 = 0x88e7;
}

/// IP protocol numbers this module understands.
pub mod ipproto {
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const NONE: u8 = 59;
    pub const DSTOPTS: u8 = 60;
    pub const SCTP: u8 = 132;
}

/// `ofp_ipv6exthdr_flags`: the bits of the `ipv6_exthdr` field.
pub mod ieh {
    /// "No next header" (59) was encountered.
    pub const NONEXT: u16 = 1 << 0;
    /// An Encapsulating Security Payload header is present.
    pub const ESP: u16 = 1 << 1;
    /// An Authentication header is present.
    pub const AUTH: u16 = 1 << 2;
    /// One or two Destination Options headers are present.
    pub const DEST: u16 = 1 << 3;
    /// A Fragment header is present.
    pub const FRAG: u16 = 1 << 4;
    /// A Routing header is present.
    pub const ROUTER: u16 = 1 << 5;
    /// A Hop-by-Hop Options header is present.
    pub const HOP: u16 = 1 << 6;
    /// A header appeared more often than RFC 2460 allows (each once, Destination Options twice).
    pub const UNREP: u16 = 1 << 7;
    /// Headers were not in the order RFC 2460 recommends (Hop-by-Hop first, then Destination
    /// Options, Routing, Fragment, Authentication, ESP, final Destination Options).
    pub const UNSEQ: u16 = 1 << 8;
}

/// IP fragment state of a packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IpFrag {
    /// Not IP, or an unfragmented IP packet.
    #[default]
    NotFragment,
    /// The first fragment (offset 0, more fragments): L4 fields are extracted.
    First,
    /// A later fragment (offset > 0): no L4 header, L4 fields stay zero.
    Later,
}

/// Where the layers of a frame start, as found by [`extract`]. Offsets are from frame start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Layers {
    /// Offset of the first VLAN tag, MPLS shim or PBB I-TAG (byte 12 when any), i.e. where a
    /// push action inserts and a pop action removes.
    pub l2_5: Option<usize>,
    /// VLAN tags parsed (0..=2).
    pub vlan_tags: u8,
    /// Offset of the top MPLS shim.
    pub mpls: Option<usize>,
    /// Offset of the ARP, IPv4 or IPv6 header.
    pub l3: Option<usize>,
    /// Offset of the TCP/UDP/SCTP/ICMP/ICMPv6 header (only when its fields were extracted).
    pub l4: Option<usize>,
    /// End of the L3 packet as its length field says, clamped to the frame (IP only).
    pub l3_end: Option<usize>,
    /// IP fragment state.
    pub frag: IpFrag,
    /// True when extraction stopped because a header was cut short.
    pub truncated: bool,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn bytes<const N: usize>(b: &[u8], at: usize) -> Option<&[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Fills `key` from `frame` received on `in_port` and returns the layer offsets.
///
/// `key` is reset first; `in_port` and `in_phy_port` are both set to `in_port` (the caller
/// overwrites `in_phy_port` for logical ports), `metadata` and `tunnel_id` stay zero.
pub fn extract(frame: &[u8], in_port: u32, key: &mut FlowKey) -> Layers {
    *key = FlowKey::default();
    key.set(Field::InPort, &in_port.to_be_bytes());
    key.set(Field::InPhyPort, &in_port.to_be_bytes());
    let mut lay = Layers::default();
    let (Some(dst), Some(src)) = (bytes::<6>(frame, 0), bytes::<6>(frame, 6)) else {
        lay.truncated = true;
        return lay;
    };
    let Some(mut etype) = be16(frame, 12) else {
        lay.truncated = true;
        return lay;
    };
    key.set(Field::EthDst, dst);
    key.set(Field::EthSrc, src);
    let mut at = 14usize;

    // VLAN tags: the outermost one is what OF1.3 matches.
    while (etype == ethertype::VLAN || etype == ethertype::QINQ) && lay.vlan_tags < 2 {
        let (Some(tci), Some(inner)) = (be16(frame, at), be16(frame, at + 2)) else {
            // The type lives after the tag: unknown, so it stays zero.
            lay.truncated = true;
            return lay;
        };
        if lay.vlan_tags == 0 {
            lay.l2_5 = Some(12);
            key.set(
                Field::VlanVid,
                &(OFPVID_PRESENT | (tci & 0x0fff)).to_be_bytes(),
            );
            key.set(Field::VlanPcp, &[tci.to_be_bytes()[0] >> 5]);
        }
        lay.vlan_tags += 1;
        etype = inner;
        at += 4;
    }

    if etype < 0x0600 {
        // 802.3 length field: only LLC/SNAP with a zero OUI carries an Ethernet type.
        match (bytes::<6>(frame, at), be16(frame, at + 6)) {
            (Some([0xaa, 0xaa, 0x03, 0, 0, 0]), Some(t)) if t >= 0x0600 => {
                etype = t;
                at += 8;
            }
            _ => {
                // Plain LLC, or too short for a SNAP header (an unpadded 17-byte LLC frame
                // is a whole frame on a veth): no Ethernet type, as in Open vSwitch.
                key.set(Field::EthType, &ETH_TYPE_NONE.to_be_bytes());
                return lay;
            }
        }
    }
    key.set(Field::EthType, &etype.to_be_bytes());

    match etype {
        ethertype::MPLS | ethertype::MPLS_MCAST => {
            lay.l2_5.get_or_insert(12);
            match bytes::<4>(frame, at) {
                Some(s) => {
                    // label(20) tc(3) bos(1) ttl(8)
                    let label = u32::from_be_bytes(*s) >> 12;
                    lay.mpls = Some(at);
                    key.set(Field::MplsLabel, &label.to_be_bytes());
                    key.set(Field::MplsTc, &[(s[2] >> 1) & 0x07]);
                    key.set(Field::MplsBos, &[s[2] & 0x01]);
                }
                None => lay.truncated = true,
            }
        }
        ethertype::PBB => {
            lay.l2_5.get_or_insert(12);
            match bytes::<4>(frame, at) {
                Some(s) => key.set(Field::PbbIsid, &s[1..]),
                None => lay.truncated = true,
            }
        }
        ethertype::ARP => extract_arp(frame, at, key, &mut lay),
        ethertype::IPV4 => extract_ipv4(frame, at, key, &mut lay),
        ethertype::IPV6 => extract_ipv6(frame, at, key, &mut lay),
        _ => {}
    }
    lay
}

fn extract_arp(frame: &[u8], at: usize, key: &mut FlowKey, lay: &mut Layers) {
    let Some(h) = bytes::<28>(frame, at) else {
        lay.truncated = true;
        return;
    };
    // Ethernet hardware, IPv4 protocol, 6-byte and 4-byte addresses.
    if h[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
        return;
    }
    lay.l3 = Some(at);
    key.set(Field::ArpOp, &h[6..8]);
    key.set(Field::ArpSha, &h[8..14]);
    key.set(Field::ArpSpa, &h[14..18]);
    key.set(Field::ArpTha, &h[18..24]);
    key.set(Field::ArpTpa, &h[24..28]);
}

fn set_tos(key: &mut FlowKey, tos: u8) {
    key.set(Field::IpDscp, &[tos >> 2]);
    key.set(Field::IpEcn, &[tos & 0x03]);
}

fn extract_ipv4(frame: &[u8], at: usize, key: &mut FlowKey, lay: &mut Layers) {
    let Some(h) = bytes::<20>(frame, at) else {
        lay.truncated = true;
        return;
    };
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < 20 {
        return;
    }
    let Some(end_of_header) = at.checked_add(ihl).filter(|&e| e <= frame.len()) else {
        lay.truncated = true;
        return;
    };
    lay.l3 = Some(at);
    set_tos(key, h[1]);
    key.set(Field::IpProto, &[h[9]]);
    key.set(Field::Ipv4Src, &h[12..16]);
    key.set(Field::Ipv4Dst, &h[16..20]);
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let end = match at.checked_add(total) {
        Some(e) if total >= ihl && e <= frame.len() => e,
        _ => frame.len(),
    };
    lay.l3_end = Some(end);
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let (more, offset) = (frag & 0x2000 != 0, frag & 0x1fff);
    lay.frag = match (more, offset) {
        (false, 0) => IpFrag::NotFragment,
        (true, 0) => IpFrag::First,
        _ => IpFrag::Later,
    };
    if lay.frag != IpFrag::Later {
        extract_l4(frame, end_of_header, end, h[9], false, key, lay);
    }
}

fn extract_ipv6(frame: &[u8], at: usize, key: &mut FlowKey, lay: &mut Layers) {
    let Some(h) = bytes::<40>(frame, at) else {
        lay.truncated = true;
        return;
    };
    if h[0] >> 4 != 6 {
        return;
    }
    lay.l3 = Some(at);
    let vtf = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    #[allow(clippy::cast_possible_truncation)] // masked to 8 bits: the traffic class
    let tclass = ((vtf >> 20) & 0xff) as u8;
    set_tos(key, tclass);
    key.set(Field::Ipv6Flabel, &(vtf & 0x000f_ffff).to_be_bytes());
    key.set(Field::Ipv6Src, &h[8..24]);
    key.set(Field::Ipv6Dst, &h[24..40]);
    let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
    let mut pos = at + 40;
    // Payload length 0 is a jumbogram (or a lie): then the frame bounds the packet.
    let end = match pos.checked_add(payload) {
        Some(e) if payload > 0 && e <= frame.len() => e,
        _ => frame.len(),
    };
    lay.l3_end = Some(end);

    let mut next = h[6];
    let mut flags = 0u16;
    // Rank of the last header in RFC 2460's recommended order, to detect UNSEQ.
    let mut rank = 0u8;
    let mut dest_seen = 0u8;
    let mut first = true;
    let mut later_fragment = false;
    let mut proto_known = true;
    loop {
        let (bit, this_rank) = match next {
            ipproto::HOPOPTS => (ieh::HOP, 1),
            ipproto::DSTOPTS => {
                // Before a Routing header (or as the first one) Destination Options rank 2,
                // otherwise they are the final Destination Options header (rank 7).
                let r = if flags & (ieh::ROUTER | ieh::FRAG | ieh::AUTH | ieh::ESP) == 0
                    && dest_seen == 0
                {
                    2
                } else {
                    7
                };
                (ieh::DEST, r)
            }
            ipproto::ROUTING => (ieh::ROUTER, 3),
            ipproto::FRAGMENT => (ieh::FRAG, 4),
            ipproto::AH => (ieh::AUTH, 5),
            ipproto::ESP => (ieh::ESP, 6),
            ipproto::NONE => {
                flags |= ieh::NONEXT;
                break;
            }
            _ => break,
        };
        // Repeats: each header once, Destination Options at most twice.
        let repeated = if next == ipproto::DSTOPTS {
            dest_seen >= 2
        } else {
            flags & bit != 0
        };
        if repeated {
            flags |= ieh::UNREP;
        }
        if (next == ipproto::HOPOPTS && !first) || this_rank < rank {
            flags |= ieh::UNSEQ;
        }
        if next == ipproto::DSTOPTS {
            dest_seen = dest_seen.saturating_add(1);
        }
        flags |= bit;
        rank = rank.max(this_rank);
        first = false;
        if next == ipproto::ESP {
            // Everything after the SPI and sequence number is encrypted.
            proto_known = false;
            break;
        }
        let Some(hdr) = bytes::<8>(frame, pos).filter(|_| pos + 8 <= end) else {
            lay.truncated = true;
            proto_known = false;
            break;
        };
        let len = match next {
            ipproto::FRAGMENT => {
                let off = u16::from_be_bytes([hdr[2], hdr[3]]);
                lay.frag = if off & 0xfff8 != 0 {
                    IpFrag::Later
                } else if off & 1 != 0 {
                    IpFrag::First
                } else {
                    // An "atomic" fragment (offset 0, no more fragments) is a whole packet.
                    lay.frag
                };
                if lay.frag == IpFrag::Later {
                    later_fragment = true;
                }
                8
            }
            ipproto::AH => (usize::from(hdr[1]) + 2) * 4,
            _ => (usize::from(hdr[1]) + 1) * 8,
        };
        next = hdr[0];
        match pos.checked_add(len).filter(|&e| e <= end) {
            Some(e) => pos = e,
            None => {
                lay.truncated = true;
                proto_known = false;
                break;
            }
        }
        if later_fragment {
            // The rest of the chain lives in the first fragment; we only know the next type.
            break;
        }
    }
    if lay.truncated {
        // The chain was cut: neither the final protocol nor the full set of headers is known.
        return;
    }
    key.set(Field::IpProto, &[next]);
    key.set(Field::Ipv6Exthdr, &flags.to_be_bytes());
    if proto_known && !later_fragment {
        extract_l4(frame, pos, end, next, true, key, lay);
    }
}

fn extract_l4(
    frame: &[u8],
    at: usize,
    end: usize,
    proto: u8,
    v6: bool,
    key: &mut FlowKey,
    lay: &mut Layers,
) {
    // L4 bytes end at the L3 packet's end, not at the frame's (padding is not L4).
    let l4 = frame.get(at..end.max(at)).unwrap_or(&[]);
    let need = match proto {
        ipproto::TCP => 20,
        ipproto::UDP => 8,
        ipproto::SCTP => 12,
        ipproto::ICMP if !v6 => 8,
        ipproto::ICMPV6 if v6 => 4,
        _ => return,
    };
    if l4.len() < need {
        lay.truncated = true;
        return;
    }
    lay.l4 = Some(at);
    let (a, b) = (&l4[0..2], &l4[2..4]);
    match proto {
        ipproto::TCP => {
            key.set(Field::TcpSrc, a);
            key.set(Field::TcpDst, b);
        }
        ipproto::UDP => {
            key.set(Field::UdpSrc, a);
            key.set(Field::UdpDst, b);
        }
        ipproto::SCTP => {
            key.set(Field::SctpSrc, a);
            key.set(Field::SctpDst, b);
        }
        ipproto::ICMP => {
            key.set(Field::Icmpv4Type, &l4[0..1]);
            key.set(Field::Icmpv4Code, &l4[1..2]);
        }
        _ => {
            key.set(Field::Icmpv6Type, &l4[0..1]);
            key.set(Field::Icmpv6Code, &l4[1..2]);
            extract_nd(l4, key, lay);
        }
    }
}

/// Neighbor Solicitation / Advertisement: target address and the link-layer option.
fn extract_nd(icmp: &[u8], key: &mut FlowKey, lay: &mut Layers) {
    let (ty, code) = (icmp[0], icmp[1]);
    if code != 0 || (ty != 135 && ty != 136) {
        return;
    }
    let Some(target) = bytes::<16>(icmp, 8) else {
        lay.truncated = true;
        return;
    };
    key.set(Field::Ipv6NdTarget, target);
    // NS carries the source link-layer address (option 1), NA the target's (option 2).
    let (want, field) = if ty == 135 {
        (1u8, Field::Ipv6NdSll)
    } else {
        (2u8, Field::Ipv6NdTll)
    };
    let mut pos = 24usize;
    while let Some(&[opt, len8]) = bytes::<2>(icmp, pos) {
        let len = usize::from(len8) * 8;
        if len == 0 {
            // A zero-length option is invalid and would loop forever; stop.
            return;
        }
        let Some(body) = icmp.get(pos..pos + len) else {
            lay.truncated = true;
            return;
        };
        if opt == want && len == 8 {
            key.set(field, &body[2..8]);
            return;
        }
        pos += len;
    }
}
