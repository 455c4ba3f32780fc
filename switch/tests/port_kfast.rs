//! The in-kernel fast path (`port::kfast`) on a real kernel (root; SKIP otherwise).
//!
//! ```text
//!   h1: a 198.18.62.1/24 ──veth── sw: s1        s2 ──veth── h2: b 198.18.62.2/24
//! ```
//!
//! No forwarder runs in user space: h1 reaches h2 only if the tcx programs at s1 and s2 redirect
//! the frames of the two entries (h1's MAC to h2's and back). Checks: ping works with the entries
//! and fails once they are removed; every ping was counted on its entry; a packet socket on s1
//! with the filter never sees a frame of an entry, and still sees a frame of no entry and a
//! VLAN-tagged frame of the same MAC pair (which the kernel does not redirect).

#[path = "../../tests/common/netns.rs"]
mod netns;

use netns::{prefix, skip_unless_root, Netns, Veth};
use shg_switch::port::afpacket::AfPacketPort;
use shg_switch::port::kfast::{FastKey, FastPath};
use shg_switch::port::link::enter_netns;
use shg_switch::port::{Packet, PortBackend};
use std::path::Path;

fn mac(ns: &Netns, ifname: &str) -> [u8; 6] {
    let text = ns.mac(ifname).unwrap();
    shg_flows::text::value::parse_mac(text.trim()).unwrap_or_else(|| panic!("{text:?}"))
}

fn received_keys(port: &mut AfPacketPort, ifindex: u32) -> Vec<FastKey> {
    let mut out: Vec<Packet> = Vec::new();
    while port.recv_batch(&mut out, 32).unwrap() > 0 {}
    out.iter()
        .filter_map(|p| FastKey::of_frame(ifindex, &p.data))
        .collect()
}

fn hex(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A permanent neighbour entry (IPv4 or IPv6) in `ns`: no resolution through the switch.
fn neigh(ns: &Netns, ip: &str, lladdr: &str, dev: &str) {
    ns.exec_ok(&[
        "ip",
        "neigh",
        "replace",
        ip,
        "lladdr",
        lladdr,
        "dev",
        dev,
        "nud",
        "permanent",
    ])
    .unwrap();
}

/// `h1: a ──veth── sw: s1`, `sw: s2 ──veth── h2: b`, named with this run's prefix.
struct Topo {
    _veths: [Veth; 2],
    sw: Netns,
    h1: Netns,
    h2: Netns,
    a: String,
    b: String,
    s1: String,
    s2: String,
}

impl Topo {
    /// With `ipv6`, IPv6 stays on in the hosts (addresses are then added without DAD; no
    /// router to solicit).
    fn new(ipv6: bool) -> Topo {
        let p = prefix();
        let host = |n: &str| {
            if ipv6 {
                Netns::new_with_ipv6(n)
            } else {
                Netns::new(n)
            }
            .unwrap()
        };
        let sw = Netns::new(&format!("{p}sw")).unwrap();
        let (h1, h2) = (host(&format!("{p}h1")), host(&format!("{p}h2")));
        let (a, b, s1, s2) = (
            format!("{p}a"),
            format!("{p}b"),
            format!("{p}s1"),
            format!("{p}s2"),
        );
        let _veths = [
            Veth::new(&a, &h1, &s1, &sw).unwrap(),
            Veth::new(&b, &h2, &s2, &sw).unwrap(),
        ];
        Topo {
            _veths,
            sw,
            h1,
            h2,
            a,
            b,
            s1,
            s2,
        }
    }

    /// The MACs of h1's `a` and h2's `b`.
    fn macs(&self) -> ([u8; 6], [u8; 6]) {
        (mac(&self.h1, &self.a), mac(&self.h2, &self.b))
    }
}

/// In the switch namespace (the calling thread is in it): the packet sockets of `s1` and `s2`,
/// and the fast path attached at both ingresses with `s1`'s socket filtered.
fn open_fast_path(s1: &str, s2: &str) -> (AfPacketPort, AfPacketPort, FastPath) {
    let port1 = AfPacketPort::open(s1).unwrap();
    let port2 = AfPacketPort::open(s2).unwrap();
    let mut fast = FastPath::new(64).unwrap();
    fast.attach_ingress(port1.ifindex()).unwrap();
    fast.attach_ingress(port2.ifindex()).unwrap();
    fast.filter_socket(port1.fd().unwrap()).unwrap();
    (port1, port2, fast)
}

/// Sends `frame` three times out of `ifname` in the namespace named `ns` by a packet socket,
/// from a thread of its own (it enters the namespace).
fn send_three(ns: &str, ifname: &str, frame: Vec<u8>) {
    let path = Path::new("/run/netns").join(ns);
    let ifname = ifname.to_string();
    std::thread::spawn(move || {
        enter_netns(&path).unwrap();
        let mut port = AfPacketPort::open(&ifname).unwrap();
        for _ in 0..3 {
            assert_eq!(port.send_batch(&[Packet::plain(frame.clone())]).unwrap(), 1);
        }
    })
    .join()
    .unwrap();
}

/// Three pings from namespace `ns` (with `extra` options) to `dst`: all answered?
fn pings(ns: &str, extra: &[&str], dst: &str) -> bool {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ping"])
        .args(extra)
        .args(["-n", "-c", "3", "-i", "0.2", "-W", "1", dst])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn kernel_redirects_entries_and_the_socket_skips_them() {
    if skip_unless_root("kernel_redirects_entries_and_the_socket_skips_them") {
        return;
    }
    let t = Topo::new(false);
    let (sw, h1, h2, a, b, s1, s2) = (&t.sw, &t.h1, &t.h2, &t.a, &t.b, &t.s1, &t.s2);
    h1.add_addr(a, "198.18.62.1/24").unwrap();
    h2.add_addr(b, "198.18.62.2/24").unwrap();
    let (mac1, mac2) = t.macs();
    // Static neighbours: no ARP broadcast (it has no entry), and a host with no entry at all.
    neigh(h1, "198.18.62.2", &hex(mac2), a);
    neigh(h2, "198.18.62.1", &hex(mac1), b);
    neigh(h1, "198.18.62.9", "02:00:00:00:00:99", a);
    // A frame from h1 to h2's MAC with an 802.1Q tag (VLAN 10), sent by a packet socket in h1
    // (this kernel may have no VLAN devices).
    let mut tagged = Vec::new();
    tagged.extend_from_slice(&mac2);
    tagged.extend_from_slice(&mac1);
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
    tagged.resize(64, 0);
    let (h1n, an) = (h1.name().to_string(), a.to_string());
    let send_tagged = move || send_three(&h1n, &an, tagged.clone());

    let sw_path = Path::new("/run/netns").join(sw.name());
    let (s1c, s2c) = (s1.clone(), s2.clone());
    let h1n = h1.name().to_string();
    std::thread::spawn(move || {
        enter_netns(&sw_path).unwrap();
        let (mut port1, port2, fast) = open_fast_path(&s1c, &s2c);
        let (i1, i2) = (port1.ifindex(), port2.ifindex());
        let ping = |dst: &str| pings(&h1n, &[], dst);
        // ICMP between the two hosts (no ports in the key).
        let there = FastKey {
            in_ifindex: i1,
            dst: mac2,
            src: mac1,
            ethertype: 0x0800,
            ip_proto: 1,
            ip_src: FastKey::v4([198, 18, 62, 1]),
            ip_dst: FastKey::v4([198, 18, 62, 2]),
            ports: [0; 4],
        };
        let back = FastKey {
            in_ifindex: i2,
            dst: mac1,
            src: mac2,
            ip_src: FastKey::v4([198, 18, 62, 2]),
            ip_dst: FastKey::v4([198, 18, 62, 1]),
            ..there
        };
        assert!(!ping("198.18.62.2"), "h1 reached h2 with no entry");
        let _ = received_keys(&mut port1, i1);

        fast.insert(&there, i2).unwrap();
        fast.insert(&back, i1).unwrap();
        let mut keys = fast.keys().unwrap();
        keys.sort_by_key(|k| k.in_ifindex);
        let mut want = vec![there, back];
        want.sort_by_key(|k| k.in_ifindex);
        assert_eq!(keys, want);
        assert!(ping("198.18.62.2"), "no ping through the kernel fast path");
        let c = fast.counters(&there).unwrap().unwrap();
        assert!(c.packets >= 3 && c.bytes >= 3 * 98, "{c:?}");
        assert!(fast.counters(&back).unwrap().unwrap().packets >= 3);
        // The filtered socket saw none of the redirected frames.
        let seen = received_keys(&mut port1, i1);
        assert!(!seen.contains(&there), "the socket got an offloaded frame");

        // A frame of no entry still reaches the socket.
        assert!(!ping("198.18.62.9"));
        let seen = received_keys(&mut port1, i1);
        assert!(
            seen.iter().any(|k| k.dst == [2, 0, 0, 0, 0, 0x99]),
            "the socket missed a frame of no entry: {seen:?}"
        );
        // The same MAC pair with an 802.1Q tag is not the entry's: not redirected, not counted,
        // and the socket gets it (with its tag put back by the port).
        let before = fast.counters(&there).unwrap().unwrap();
        send_tagged();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let seen = received_keys(&mut port1, i1);
        assert!(
            seen.iter()
                .any(|k| k.dst == mac2 && k.ethertype == 0x8100 && k.ip_proto == 0),
            "the socket missed the tagged frames: {seen:?}"
        );
        assert_eq!(fast.counters(&there).unwrap().unwrap(), before);

        let last = fast.remove(&there).unwrap().unwrap();
        assert!(last.packets >= c.packets);
        assert_eq!(fast.remove(&there).unwrap(), None);
        assert!(
            !ping("198.18.62.2"),
            "forwarded after the entry was removed"
        );
        // Removed from the map, so the socket sees that flow's frames again.
        let seen = received_keys(&mut port1, i1);
        assert!(seen.contains(&there), "{seen:?}");
    })
    .join()
    .unwrap();
}

/// IPv6: an ICMPv6 entry each way carries ping -6 between the hosts with no forwarder, and a
/// UDP entry (next header, addresses and ports in the key) takes a UDP frame the socket then
/// never sees, while a UDP frame to another port (no entry) still reaches it.
#[test]
fn kernel_redirects_ipv6_entries_by_addresses_and_ports() {
    if skip_unless_root("kernel_redirects_ipv6_entries_by_addresses_and_ports") {
        return;
    }
    let t = Topo::new(true);
    let (sw, h1, h2, a, b, s1, s2) = (&t.sw, &t.h1, &t.h2, &t.a, &t.b, &t.s1, &t.s2);
    let (ip1, ip2) = ("2001:db8:62::1", "2001:db8:62::2");
    for (ns, dev, ip) in [(h1, a, ip1), (h2, b, ip2)] {
        ns.exec_ok(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{ip}/64"),
            "dev",
            dev,
            "nodad",
        ])
        .unwrap();
    }
    let (mac1, mac2) = t.macs();
    neigh(h1, ip2, &hex(mac2), a);
    neigh(h2, ip1, &hex(mac1), b);
    let addr = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    // A UDP frame from h1 to h2 (source port 4000), sent by a packet socket in h1.
    let udp_frame = move |dport: u16| {
        let mut f = Vec::new();
        f.extend_from_slice(&mac2);
        f.extend_from_slice(&mac1);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 12, 17, 64]);
        f.extend_from_slice(&addr(ip1));
        f.extend_from_slice(&addr(ip2));
        f.extend_from_slice(&4000u16.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
        f
    };
    let (h1n, an) = (h1.name().to_string(), a.to_string());
    let send_udp = move |dport: u16| send_three(&h1n, &an, udp_frame(dport));

    let sw_path = Path::new("/run/netns").join(sw.name());
    let (s1c, s2c) = (s1.clone(), s2.clone());
    let h1n = h1.name().to_string();
    std::thread::spawn(move || {
        enter_netns(&sw_path).unwrap();
        let (mut port1, port2, fast) = open_fast_path(&s1c, &s2c);
        let (i1, i2) = (port1.ifindex(), port2.ifindex());
        let ping6 = || pings(&h1n, &["-6"], ip2);
        let there = FastKey {
            in_ifindex: i1,
            dst: mac2,
            src: mac1,
            ethertype: 0x86dd,
            ip_proto: 58,
            ip_src: addr(ip1),
            ip_dst: addr(ip2),
            ports: [0; 4],
        };
        let back = FastKey {
            in_ifindex: i2,
            dst: mac1,
            src: mac2,
            ip_src: addr(ip2),
            ip_dst: addr(ip1),
            ..there
        };
        assert!(!ping6(), "h1 reached h2 with no entry");
        let _ = received_keys(&mut port1, i1);
        fast.insert(&there, i2).unwrap();
        fast.insert(&back, i1).unwrap();
        assert!(ping6(), "no ping -6 through the kernel fast path");
        let c = fast.counters(&there).unwrap().unwrap();
        assert!(c.packets >= 3 && c.bytes >= 3 * 118, "{c:?}");
        assert!(fast.counters(&back).unwrap().unwrap().packets >= 3);
        let seen = received_keys(&mut port1, i1);
        assert!(!seen.contains(&there), "the socket got an offloaded frame");

        // UDP to port 5000 has an entry; to port 5001 it has none.
        let udp = FastKey {
            ip_proto: 17,
            ports: [0x0f, 0xa0, 0x13, 0x88],
            ..there
        };
        fast.insert(&udp, i2).unwrap();
        send_udp(5000);
        send_udp(5001);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(fast.counters(&udp).unwrap().unwrap().packets, 3);
        let seen = received_keys(&mut port1, i1);
        assert!(
            !seen.contains(&udp),
            "the socket got an offloaded UDP frame"
        );
        let other = FastKey {
            ports: [0x0f, 0xa0, 0x13, 0x89],
            ..udp
        };
        assert_eq!(
            seen.iter().filter(|k| **k == other).count(),
            3,
            "the socket missed UDP frames of no entry: {seen:?}"
        );
    })
    .join()
    .unwrap();
}
