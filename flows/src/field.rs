//! The OpenFlow 1.3 OXM basic fields (`OFPXMC_OPENFLOW_BASIC`) and the fixed-layout flow key.
//!
//! Every field has a fixed offset and its wire width inside [`FlowKey`], so a packet's key, a
//! rule's value and a rule's mask are the same shape of bytes: matching is `key & mask == value`,
//! word by word, and a classifier can hash masked keys without knowing about fields. Multi-byte
//! fields are stored in network byte order, exactly as on the wire.
//!
//! Special encodings (as on the wire):
//! - `vlan_vid`: `0x1000 | vid` (OFPVID_PRESENT) for a tagged frame, `0` for an untagged one.
//! - `pbb_isid`: 3 bytes; `ipv6_flabel`: 4 bytes (low 20 bits used); `mpls_label`: 4 bytes (low 20 bits).

use crate::macros::wire_enum;

wire_enum! {
    /// `oxm_ofb_match_fields`: the field number inside OXM class 0x8000.
    pub enum Field: u8 {
        InPort = 0, InPhyPort = 1, Metadata = 2, EthDst = 3, EthSrc = 4, EthType = 5,
        VlanVid = 6, VlanPcp = 7, IpDscp = 8, IpEcn = 9, IpProto = 10, Ipv4Src = 11,
        Ipv4Dst = 12, TcpSrc = 13, TcpDst = 14, UdpSrc = 15, UdpDst = 16, SctpSrc = 17,
        SctpDst = 18, Icmpv4Type = 19, Icmpv4Code = 20, ArpOp = 21, ArpSpa = 22, ArpTpa = 23,
        ArpSha = 24, ArpTha = 25, Ipv6Src = 26, Ipv6Dst = 27, Ipv6Flabel = 28,
        Icmpv6Type = 29, Icmpv6Code = 30, Ipv6NdTarget = 31, Ipv6NdSll = 32, Ipv6NdTll = 33,
        MplsLabel = 34, MplsTc = 35, MplsBos = 36, PbbIsid = 37, TunnelId = 38, Ipv6Exthdr = 39,
    }
}

/// OXM class of the basic fields.
pub const OFPXMC_OPENFLOW_BASIC: u16 = 0x8000;
/// OXM class of experimenter fields.
pub const OFPXMC_EXPERIMENTER: u16 = 0xffff;

/// The VLAN "present" bit of `vlan_vid`.
pub const OFPVID_PRESENT: u16 = 0x1000;
/// `vlan_vid` of an untagged frame.
pub const OFPVID_NONE: u16 = 0x0000;

/// Static facts about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    pub field: Field,
    /// OXM field number.
    pub id: u8,
    /// Wire width of the value in bytes.
    pub len: usize,
    /// Whether OF1.3 (as Open vSwitch accepts it) allows a mask.
    pub maskable: bool,
    /// Bits of the value that can be non-zero (e.g. 0x3f for ip_dscp), as a big-endian mask
    /// over the low bytes; `None` means all bits of `len` bytes.
    pub valid_bits: Option<u64>,
    /// Offset of the field inside [`FlowKey`].
    pub offset: usize,
    /// The OpenFlow spec name without prefix, e.g. `tcp_dst`.
    pub name: &'static str,
}

const N_FIELDS: usize = 40;

// (len, maskable, valid_bits, name) in field-number order.
const RAW: [(usize, bool, Option<u64>, &str); N_FIELDS] = [
    (4, false, None, "in_port"),
    (4, false, None, "in_phy_port"),
    (8, true, None, "metadata"),
    (6, true, None, "eth_dst"),
    (6, true, None, "eth_src"),
    (2, false, None, "eth_type"),
    (2, true, Some(0x1fff), "vlan_vid"),
    (1, false, Some(0x07), "vlan_pcp"),
    (1, false, Some(0x3f), "ip_dscp"),
    (1, false, Some(0x03), "ip_ecn"),
    (1, false, None, "ip_proto"),
    (4, true, None, "ipv4_src"),
    (4, true, None, "ipv4_dst"),
    (2, true, None, "tcp_src"),
    (2, true, None, "tcp_dst"),
    (2, true, None, "udp_src"),
    (2, true, None, "udp_dst"),
    (2, true, None, "sctp_src"),
    (2, true, None, "sctp_dst"),
    (1, false, None, "icmpv4_type"),
    (1, false, None, "icmpv4_code"),
    (2, false, None, "arp_op"),
    (4, true, None, "arp_spa"),
    (4, true, None, "arp_tpa"),
    (6, true, None, "arp_sha"),
    (6, true, None, "arp_tha"),
    (16, true, None, "ipv6_src"),
    (16, true, None, "ipv6_dst"),
    (4, true, Some(0x000f_ffff), "ipv6_flabel"),
    (1, false, None, "icmpv6_type"),
    (1, false, None, "icmpv6_code"),
    (16, false, None, "ipv6_nd_target"),
    (6, false, None, "ipv6_nd_sll"),
    (6, false, None, "ipv6_nd_tll"),
    (4, false, Some(0x000f_ffff), "mpls_label"),
    (1, false, Some(0x07), "mpls_tc"),
    (1, false, Some(0x01), "mpls_bos"),
    (3, true, None, "pbb_isid"),
    (8, true, None, "tunnel_id"),
    (2, true, Some(0x01ff), "ipv6_exthdr"),
];

const fn offsets() -> [usize; N_FIELDS] {
    let mut out = [0usize; N_FIELDS];
    let mut i = 0;
    let mut at = 0;
    while i < N_FIELDS {
        out[i] = at;
        at += RAW[i].0;
        i += 1;
    }
    out
}
const OFFSETS: [usize; N_FIELDS] = offsets();

/// Bytes in a [`FlowKey`]: all fields, rounded up to whole 64-bit words.
pub const KEY_LEN: usize = (OFFSETS[N_FIELDS - 1] + RAW[N_FIELDS - 1].0).div_ceil(8) * 8;
/// 64-bit words in a [`FlowKey`].
pub const KEY_WORDS: usize = KEY_LEN / 8;

impl Field {
    /// All known fields in field-number order.
    pub fn all() -> impl Iterator<Item = Field> {
        Field::KNOWN.iter().copied()
    }

    /// Static facts, or `None` for an unknown field number.
    pub fn info(self) -> Option<FieldInfo> {
        let id = u8::from(self);
        let i = usize::from(id);
        if i >= N_FIELDS {
            return None;
        }
        let (len, maskable, valid_bits, name) = RAW[i];
        Some(FieldInfo {
            field: self,
            id,
            len,
            maskable,
            valid_bits,
            offset: OFFSETS[i],
            name,
        })
    }

    /// Wire width in bytes (0 for unknown fields).
    #[allow(clippy::len_without_is_empty)] // a field's width, not a container's length
    pub fn len(self) -> usize {
        self.info().map_or(0, |i| i.len)
    }

    /// Looks a field up by its spec name (`tcp_dst`).
    pub fn from_name(name: &str) -> Option<Field> {
        Field::all().find(|f| f.info().is_some_and(|i| i.name == name))
    }
}

/// A packet's (or a rule's value or mask's) fields in one fixed-size byte array.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey(pub [u8; KEY_LEN]);

impl Default for FlowKey {
    fn default() -> Self {
        FlowKey([0; KEY_LEN])
    }
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_map();
        for field in Field::all() {
            let v = self.get(field);
            if v.iter().any(|&b| b != 0) {
                d.entry(&field.info().map_or("?", |i| i.name), &hex(v));
            }
        }
        d.finish()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl FlowKey {
    /// All bits set in every known field's valid bits (the mask of an exact match on everything).
    pub fn exact() -> FlowKey {
        let mut k = FlowKey::default();
        for f in Field::all() {
            k.set(f, &field_full_mask(f));
        }
        k
    }

    /// The bytes of one field (empty for unknown fields).
    pub fn get(&self, field: Field) -> &[u8] {
        match field.info() {
            Some(i) => &self.0[i.offset..i.offset + i.len],
            None => &[],
        }
    }

    /// Overwrites one field. `value` must be the field's width; shorter values are
    /// right-aligned (big-endian), longer ones keep their low bytes.
    pub fn set(&mut self, field: Field, value: &[u8]) {
        if let Some(i) = field.info() {
            let dst = &mut self.0[i.offset..i.offset + i.len];
            dst.fill(0);
            if value.len() >= i.len {
                dst.copy_from_slice(&value[value.len() - i.len..]);
            } else {
                dst[i.len - value.len()..].copy_from_slice(value);
            }
        }
    }

    /// A field as an integer (fields up to 8 bytes).
    pub fn get_u64(&self, field: Field) -> u64 {
        self.get(field)
            .iter()
            .take(8)
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }

    /// Sets a field from an integer (fields up to 8 bytes; wider fields get the low 8 bytes).
    pub fn set_u64(&mut self, field: Field, v: u64) {
        self.set(field, &v.to_be_bytes());
    }

    /// The key as 64-bit words (for hashing and masking).
    pub fn words(&self) -> [u64; KEY_WORDS] {
        let mut w = [0u64; KEY_WORDS];
        for (i, c) in self.0.chunks_exact(8).enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            w[i] = u64::from_ne_bytes(a);
        }
        w
    }

    /// `self & mask`, byte by byte.
    pub fn masked(&self, mask: &FlowKey) -> FlowKey {
        let mut out = *self;
        for (o, m) in out.0.iter_mut().zip(mask.0.iter()) {
            *o &= *m;
        }
        out
    }

    /// True when every byte of `field` is zero.
    pub fn is_zero(&self, field: Field) -> bool {
        self.get(field).iter().all(|&b| b == 0)
    }
}

/// The all-ones mask of a field, limited to its valid bits.
pub fn field_full_mask(field: Field) -> Vec<u8> {
    let Some(i) = field.info() else {
        return Vec::new();
    };
    let mut m = vec![0xffu8; i.len];
    if let Some(bits) = i.valid_bits {
        let b = bits.to_be_bytes();
        m.copy_from_slice(&b[8 - i.len..]);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(Field::Ipv6Exthdr.info().unwrap().id, 39);
        assert_eq!(KEY_LEN % 8, 0);
        let last = Field::Ipv6Exthdr.info().unwrap();
        assert!(last.offset + last.len <= KEY_LEN);
        assert_eq!(Field::from_name("tcp_dst"), Some(Field::TcpDst));
        assert_eq!(Field::from(200), Field::Unknown(200));
        assert!(Field::Unknown(200).info().is_none());
        let mut k = FlowKey::default();
        k.set_u64(Field::TcpDst, 80);
        assert_eq!(k.get(Field::TcpDst), &[0, 80]);
        assert_eq!(k.get_u64(Field::TcpDst), 80);
        assert_eq!(field_full_mask(Field::VlanVid), vec![0x1f, 0xff]);
        assert_eq!(
            field_full_mask(Field::Ipv6Flabel),
            vec![0, 0x0f, 0xff, 0xff]
        );
    }
}
