//! Flow files for scale benchmarks: `n` distinct flows of mixed masks in ovs-ofctl syntax
//! (one per line, for `ovs-ofctl -O OpenFlow13 add-flows`), none of which matches the
//! benchmark traffic (IPv4 between hosts in 198.18.0.0/16, untagged, ARP).
//!
//! Six shapes rotate, each a different mask (so a tuple-space classifier has several tuples
//! to probe): IPv4 destination /32; TCP destination /24 + destination port; UDP source /32 +
//! source port; VLAN + Ethernet destination; in_port + Ethernet source; IPv6 destination /64.
//! Addresses are in 198.19.0.0/16 and 2001:db8::/32, MACs in the IANA 00:00:5e OUI. Deterministic:
//! the same `n` gives the same file.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// Number of distinct flows per shape is 65 536; more than this many flows would repeat.
pub const MAX_FLOWS: usize = 6 * 65_536;

/// The catch-all that the benchmark traffic hits (lowest priority).
pub const CATCH_ALL: &str = "priority=0,actions=NORMAL";

/// Flow number `i` (0-based), without a trailing newline.
pub fn flow_line(i: usize) -> String {
    let j = i / 6;
    let x = (j >> 8) & 0xff;
    let y = j & 0xff;
    // Priorities spread over 100..30099; the catch-all (0) is always the lowest.
    let prio = 100 + (i * 7919) % 30_000;
    match i % 6 {
        0 => format!("priority={prio},ip,nw_dst=198.19.{x}.{y},actions=output:2"),
        1 => format!(
            "priority={prio},tcp,nw_dst=198.19.{x}.0/24,tp_dst={},actions=drop",
            1024 + y
        ),
        2 => format!("priority={prio},udp,nw_src=198.19.{x}.{y},tp_src=53,actions=output:1"),
        3 => format!(
            "priority={prio},dl_vlan={},dl_dst=00:00:5e:01:{x:02x}:{y:02x},actions=drop",
            1 + j % 4094
        ),
        4 => {
            format!("priority={prio},in_port=1,dl_src=00:00:5e:02:{x:02x}:{y:02x},actions=output:2")
        }
        _ => format!("priority={prio},ipv6,ipv6_dst=2001:db8:{x:x}:{y:x}::/64,actions=drop"),
    }
}

/// The text of a flow file with `n` flows, plus [`CATCH_ALL`] as the last line if asked.
pub fn flow_file(n: usize, catch_all: bool) -> io::Result<String> {
    if n > MAX_FLOWS {
        return Err(io::Error::other(format!(
            "{n} flows: at most {MAX_FLOWS} distinct flows can be generated"
        )));
    }
    let mut s = String::with_capacity(n * 72);
    for i in 0..n {
        let _ = writeln!(s, "{}", flow_line(i));
    }
    if catch_all {
        let _ = writeln!(s, "{CATCH_ALL}");
    }
    Ok(s)
}

/// Writes [`flow_file`] to `path`.
pub fn write_flow_file(path: &Path, n: usize, catch_all: bool) -> io::Result<()> {
    std::fs::write(path, flow_file(n, catch_all)?)
        .map_err(|e| io::Error::other(format!("write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shg_flows::field::FlowKey;
    use shg_flows::key::extract;
    use shg_flows::mods::FlowModCommand;
    use shg_flows::table::FlowTables;
    use shg_flows::text::parse_flow;
    use std::collections::HashSet;

    fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + l4.len()).unwrap();
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        p
    }

    #[test]
    fn lines_are_distinct_and_parse() {
        let text = flow_file(6 * 300, true).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1801);
        assert_eq!(lines[1800], CATCH_ALL);
        let matches: HashSet<&str> = lines[..1800]
            .iter()
            .map(|l| {
                l.split_once(",actions=")
                    .unwrap()
                    .0
                    .split_once(',')
                    .unwrap()
                    .1
            })
            .collect();
        assert_eq!(matches.len(), 1800, "a match repeats");
        for l in &lines {
            parse_flow(l, FlowModCommand::Add).unwrap_or_else(|e| panic!("{l}: {e:?}"));
        }
        assert!(flow_file(MAX_FLOWS + 1, false).is_err());
        assert_eq!(flow_file(3, false).unwrap(), flow_file(3, false).unwrap());
    }

    #[test]
    fn benchmark_traffic_hits_only_the_catch_all() {
        let mut tables = FlowTables::new(1);
        let text = flow_file(10_000, true).unwrap();
        for l in text.lines() {
            let fm = parse_flow(l, FlowModCommand::Add).unwrap();
            tables.apply_flow_mod(&fm, 0).unwrap();
        }
        assert_eq!(tables.len(), 10_001);
        let (m1, m2) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let tcp = [
            0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x10, 0, 0, 0, 0, 0, 0,
        ];
        let udp = [0xc3, 0x50, 0x14, 0x51, 0, 26, 0, 0];
        let icmp = [8, 0, 0, 0, 0, 1, 0, 1];
        let arp = [
            0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 18, 4, 1, 0, 0, 0, 0, 0, 0, 198, 18, 4,
            2,
        ];
        let frames = [
            eth(
                m2,
                m1,
                0x0800,
                &ipv4(6, [198, 18, 4, 1], [198, 18, 4, 2], &tcp),
            ),
            eth(
                m1,
                m2,
                0x0800,
                &ipv4(6, [198, 18, 4, 2], [198, 18, 4, 1], &tcp),
            ),
            eth(
                m2,
                m1,
                0x0800,
                &ipv4(17, [198, 18, 4, 1], [198, 18, 4, 2], &udp),
            ),
            eth(
                m2,
                m1,
                0x0800,
                &ipv4(1, [198, 18, 4, 1], [198, 18, 4, 2], &icmp),
            ),
            eth([0xff; 6], m1, 0x0806, &arp),
        ];
        for (n, f) in frames.iter().enumerate() {
            for in_port in [1, 2] {
                let mut key = FlowKey::default();
                extract(f, in_port, &mut key);
                let r = tables.lookup(&key, 64, 0);
                let hit = r.trace[0].hit.as_ref().expect("catch-all hit");
                assert_eq!(hit.priority, 0, "frame {n} in_port {in_port} hit {hit:?}");
            }
        }
        // And a flow of the file does match its own kind of packet (the file is not inert).
        let mut key = FlowKey::default();
        extract(
            &eth(
                m2,
                m1,
                0x0800,
                &ipv4(6, [198, 18, 4, 1], [198, 19, 0, 0], &tcp),
            ),
            1,
            &mut key,
        );
        let r = tables.lookup(&key, 64, 0);
        assert_ne!(r.trace[0].hit.as_ref().unwrap().priority, 0);
    }
}
