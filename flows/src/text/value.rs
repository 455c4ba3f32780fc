//! Value syntaxes shared by the flow, group and meter text: integers, MAC, IPv4 and IPv6
//! addresses with masks, port and group numbers, and the way ovs-ofctl prints each.

use crate::action::{group, port};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Parses an unsigned integer: decimal, or hexadecimal with a `0x` prefix.
pub fn parse_uint(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() || !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(h, 16).ok()
    } else {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

/// Parses an integer that must fit in `max`.
pub fn parse_uint_max(s: &str, max: u64) -> Option<u64> {
    parse_uint(s).filter(|v| *v <= max)
}

/// Splits `value/mask` at the first `/`.
pub fn split_mask(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    }
}

/// Parses `xx:xx:xx:xx:xx:xx`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut n = 0;
    for part in s.split(':') {
        if n >= 6 || part.is_empty() || part.len() > 2 {
            return None;
        }
        out[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(out)
}

/// Formats a MAC address as ovs does (`%02x:` lower case).
pub fn format_mac(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Formats `mac[/mask]` (the mask only when not all ones).
pub fn format_mac_masked(v: &[u8], m: &[u8]) -> String {
    if m.iter().all(|&b| b == 0xff) {
        format_mac(v)
    } else {
        format!("{}/{}", format_mac(v), format_mac(m))
    }
}

/// Parses an IPv4 address with an optional `/len` or `/a.b.c.d` mask.
pub fn parse_ipv4_masked(s: &str) -> Option<([u8; 4], [u8; 4])> {
    let (v, m) = split_mask(s);
    let addr: Ipv4Addr = v.parse().ok()?;
    let mask = match m {
        None => [0xff; 4],
        Some(m) => {
            if let Ok(a) = m.parse::<Ipv4Addr>() {
                a.octets()
            } else {
                let len: u32 = parse_uint_max(m, 32)?.try_into().ok()?;
                let bits = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                bits.to_be_bytes()
            }
        }
    };
    Some((addr.octets(), mask))
}

/// Prefix length of a CIDR mask, or `None` when the mask is not contiguous.
fn cidr_len(m: &[u8]) -> Option<u32> {
    let mut lead = 0;
    for &b in m {
        lead += b.leading_ones();
        if b != 0xff {
            break;
        }
    }
    let total: u32 = m.iter().map(|b| b.count_ones()).sum();
    (lead == total).then_some(lead)
}

/// Formats `a.b.c.d[/len|/mask]` as ovs `ip_format_masked` does.
pub fn format_ipv4_masked(v: &[u8], m: &[u8]) -> String {
    let a = |b: &[u8]| {
        let mut o = [0u8; 4];
        if b.len() == 4 {
            o.copy_from_slice(b);
        }
        Ipv4Addr::from(o)
    };
    if m.iter().all(|&b| b == 0xff) {
        a(v).to_string()
    } else if let Some(len) = cidr_len(m) {
        format!("{}/{len}", a(v))
    } else {
        format!("{}/{}", a(v), a(m))
    }
}

/// Parses an IPv6 address with an optional `/len` or `/addr` mask.
pub fn parse_ipv6_masked(s: &str) -> Option<([u8; 16], [u8; 16])> {
    let (v, m) = split_mask(s);
    let addr: Ipv6Addr = v.parse().ok()?;
    let mask = match m {
        None => [0xff; 16],
        Some(m) => {
            if let Ok(a) = m.parse::<Ipv6Addr>() {
                a.octets()
            } else {
                let len: u32 = parse_uint_max(m, 128)?.try_into().ok()?;
                let bits = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                bits.to_be_bytes()
            }
        }
    };
    Some((addr.octets(), mask))
}

/// Formats an IPv6 address the way glibc `inet_ntop` does (RFC 5952, with the
/// IPv4-mapped and IPv4-compatible forms in dotted quad).
pub fn format_ipv6(b: &[u8]) -> String {
    let mut o = [0u8; 16];
    if b.len() == 16 {
        o.copy_from_slice(b);
    }
    let a = Ipv6Addr::from(o);
    let seg = a.segments();
    // glibc prints ::a.b.c.d for IPv4-compatible addresses (first 96 bits zero, last 32
    // bits not 0 or 1 ... in practice: the high 16 of the last 32 bits non-zero).
    if seg[..6].iter().all(|&x| x == 0) && seg[6] != 0 {
        return format!("::{}", Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    a.to_string()
}

/// Formats `addr[/len|/mask]` as ovs `ipv6_format_masked` does.
pub fn format_ipv6_masked(v: &[u8], m: &[u8]) -> String {
    if m.iter().all(|&b| b == 0xff) {
        format_ipv6(v)
    } else if let Some(len) = cidr_len(m) {
        format!("{}/{len}", format_ipv6(v))
    } else {
        format!("{}/{}", format_ipv6(v), format_ipv6(m))
    }
}

const PORT_NAMES: [(&str, u32); 9] = [
    ("IN_PORT", port::IN_PORT),
    ("TABLE", port::TABLE),
    ("NORMAL", port::NORMAL),
    ("FLOOD", port::FLOOD),
    ("ALL", port::ALL),
    ("CONTROLLER", port::CONTROLLER),
    ("LOCAL", port::LOCAL),
    ("ANY", port::ANY),
    ("NONE", port::ANY),
];

/// Parses an OpenFlow 1.3 port: a reserved name (case-insensitive), a number below
/// 0xff00, an OF1.0-style reserved number 0xfff8..=0xffff, or 0xffffff00..=0xffffffff.
pub fn parse_port(s: &str) -> Option<u32> {
    if let Some((_, p)) = PORT_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        return Some(*p);
    }
    let n = parse_uint(s)?;
    let n = u32::try_from(n).ok()?;
    if n < 0xff00 {
        Some(n)
    } else if (0xfff8..=0xffff).contains(&n) {
        Some(n | 0xffff_0000)
    } else if n >= port::MAX {
        Some(n)
    } else {
        None
    }
}

/// Formats a port: reserved numbers by name, others in decimal.
pub fn format_port(p: u32) -> String {
    match PORT_NAMES.iter().find(|(_, v)| *v == p) {
        Some((n, _)) => (*n).to_string(),
        None => p.to_string(),
    }
}

/// Parses a group number or `ANY`/`ALL`.
pub fn parse_group_id(s: &str) -> Option<u32> {
    if s.eq_ignore_ascii_case("any") {
        Some(group::ANY)
    } else if s.eq_ignore_ascii_case("all") {
        Some(group::ALL)
    } else {
        u32::try_from(parse_uint(s)?).ok()
    }
}

/// Formats a group number (`ANY`/`ALL` by name).
pub fn format_group_id(g: u32) -> String {
    match g {
        group::ANY => "ANY".into(),
        group::ALL => "ALL".into(),
        _ => g.to_string(),
    }
}

/// Bytes as one big-endian integer (up to 8 bytes).
pub fn be_u64(b: &[u8]) -> u64 {
    b.iter().take(8).fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses() {
        assert_eq!(parse_uint("0x1F"), Some(31));
        assert_eq!(parse_uint("12"), Some(12));
        assert_eq!(parse_uint("-1"), None);
        assert_eq!(parse_uint("0x"), None);
        assert_eq!(parse_uint("99999999999999999999999"), None);
        assert_eq!(
            parse_mac("00:11:22:33:44:5f"),
            Some([0, 0x11, 0x22, 0x33, 0x44, 0x5f])
        );
        assert_eq!(parse_mac("00:11:22:33:44"), None);
        assert_eq!(parse_mac("00:11:22:33:44:55:66"), None);
        assert_eq!(
            parse_ipv4_masked("10.1.2.3/16"),
            Some(([10, 1, 2, 3], [255, 255, 0, 0]))
        );
        assert_eq!(parse_ipv4_masked("10.1.2.3/33"), None);
        assert_eq!(
            format_ipv4_masked(&[10, 0, 0, 0], &[255, 0, 0, 0]),
            "10.0.0.0/8"
        );
        assert_eq!(
            format_ipv4_masked(&[10, 0, 0, 0], &[255, 0, 255, 0]),
            "10.0.0.0/255.0.255.0"
        );
        assert_eq!(
            format_ipv4_masked(&[0, 0, 0, 0], &[0, 0, 0, 0]),
            "0.0.0.0/0"
        );
        let (v, m) = parse_ipv6_masked("2001:db8::/32").unwrap();
        assert_eq!(format_ipv6_masked(&v, &m), "2001:db8::/32");
        assert_eq!(parse_port("local"), Some(port::LOCAL));
        assert_eq!(parse_port("65534"), Some(port::LOCAL));
        assert_eq!(parse_port("65280"), None);
        assert_eq!(format_port(port::CONTROLLER), "CONTROLLER");
        assert_eq!(format_port(7), "7");
    }
}
