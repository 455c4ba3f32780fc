//! Explains a forwarding decision table by table, ending with the final actions (like
//! OVS's `ofproto/trace`).
//!
//! [`trace`] takes a packet described in ovs-ofctl flow syntax
//! (`in_port=1,tcp,nw_src=198.18.0.1,nw_dst=198.18.0.2,tp_dst=80`), builds a real frame with
//! those header values ([`frame_from_key`]) and runs it through the same executor as the
//! datapath, over copies of the tables, groups, meters, ports and MAC table: flow, group,
//! meter, port and queue counters of the switch are never touched. The report names, per
//! table, the rule that matched (or the miss), what each action did, and ends with
//! `Final flow:` and `Datapath actions:`.

use super::execute::{crc32c, inet_checksum, Env, Frame};
use super::Output;
use crate::ofproto::Ofproto;
use crate::port::Packet;
use shg_flows::field::{Field, FlowKey, OFPVID_PRESENT};
use shg_flows::key::{ethertype, ipproto, ETH_TYPE_NONE};
use shg_flows::matches::Match;
use shg_flows::text;

/// Traces a packet described in ovs-ofctl match syntax through the pipeline at `now`.
/// Fields not given are zero (`in_port` too). `metadata` and `tunnel_id` start the pipeline
/// with those values. Errors are the match syntax errors of [`text::parse_match`].
pub fn trace(of: &Ofproto, flow: &str, now: u64) -> Result<String, shg_flows::Error> {
    let m = text::parse_match(flow)?;
    let key = m.value.masked(&m.mask);
    let in_port = u32::try_from(key.get_u64(Field::InPort)).unwrap_or(0);
    let frame = frame_from_key(&key);

    let mut lines = Vec::new();
    let mut outs: Vec<Output> = Vec::new();
    let mut tables = of.tables.clone();
    let mut groups = of.groups.clone();
    let mut meters = of.meters.clone();
    let mut ports = of.ports.clone();
    let mut mac_table = of.mac_table.clone();
    let fail_open = of.fail_open();

    let mut start = Frame::new(Packet::plain(frame));
    start.metadata = key.get_u64(Field::Metadata);
    start.tunnel_id = key.get_u64(Field::TunnelId);
    let first_key = start.key(in_port);

    lines.push(format!(
        "Flow: {}",
        text::format_match(&key_match(&first_key, &m))
    ));
    lines.push(String::new());
    let final_frame = {
        let mut env = Env {
            tables: &mut tables,
            groups: &mut groups,
            meters: &mut meters,
            ports: &mut ports,
            shaped: &of.qos,
            mac_table: &mut mac_table,
            miss_send_len: of.miss_send_len,
            fail_open,
            now,
            out: &mut outs,
            trace: Some(&mut lines),
        };
        env.receive_frame(in_port, start)
    };
    lines.push(String::new());
    match final_frame {
        Some(f) => {
            let k = f.key(in_port);
            if k == first_key {
                lines.push("Final flow: unchanged".into());
            } else {
                lines.push(format!(
                    "Final flow: {}",
                    text::format_match(&key_match(&k, &m))
                ));
            }
        }
        None => lines.push("Final flow: dropped at input".into()),
    }
    lines.push(format!("Datapath actions: {}", datapath_actions(&outs)));
    let mut s = lines.join("\n");
    s.push('\n');
    Ok(s)
}

/// `output:2,output:3(queue 1),controller(reason=action,...)`, or `drop` (`(queue N)` when
/// a set_queue chose one, `set_queue:0` included).
fn datapath_actions(outs: &[Output]) -> String {
    if outs.is_empty() {
        return "drop".into();
    }
    outs.iter()
        .map(|o| match o {
            Output::Port {
                port, queue: None, ..
            } => {
                format!("output:{}", text::value::format_port(*port))
            }
            Output::Port {
                port,
                queue: Some(queue),
                ..
            } => {
                format!("output:{}(queue {queue})", text::value::format_port(*port))
            }
            Output::Controller(ev) => {
                let reason = match ev.reason {
                    0 => "no_match",
                    1 => "action",
                    _ => "invalid_ttl",
                };
                format!(
                    "controller(reason={reason},table={},cookie={:#x},len={}/{})",
                    ev.table_id,
                    ev.cookie,
                    ev.data.len(),
                    ev.total_len
                )
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The fields of `key` worth printing: those the user gave, and every non-zero one.
fn key_match(key: &FlowKey, given: &Match) -> Match {
    let mut m = Match::any();
    for f in Field::all() {
        if f == Field::InPhyPort {
            continue;
        }
        let v = key.get(f);
        if given.get(f).is_some() || v.iter().any(|&b| b != 0) {
            m.set(f, v);
        }
    }
    m
}

fn be16(v: u64) -> [u8; 2] {
    u16::try_from(v & 0xffff).unwrap_or(0).to_be_bytes()
}

fn byte(v: u64) -> u8 {
    u8::try_from(v & 0xff).unwrap_or(0)
}

/// Builds an Ethernet frame whose extracted key agrees with `key` on every header field
/// (addresses, VLAN, MPLS, PBB, ARP, IPv4/IPv6 with TCP/UDP/SCTP/ICMP/ICMPv6 and ND),
/// with valid checksums and TTL 64. An `eth_type` of 0 gives an 802.3 frame.
pub fn frame_from_key(key: &FlowKey) -> Vec<u8> {
    let g = |f: Field| key.get_u64(f);
    let mut d = Vec::with_capacity(128);
    d.extend_from_slice(key.get(Field::EthDst));
    d.extend_from_slice(key.get(Field::EthSrc));
    let vid = g(Field::VlanVid);
    if vid & u64::from(OFPVID_PRESENT) != 0 {
        d.extend_from_slice(&ethertype::VLAN.to_be_bytes());
        d.extend_from_slice(&be16(((g(Field::VlanPcp) & 7) << 13) | (vid & 0x0fff)));
    }
    let etype = u16::try_from(g(Field::EthType)).unwrap_or(0);
    match etype {
        0 | ETH_TYPE_NONE => {
            // 802.3 length + LLC (not SNAP).
            d.extend_from_slice(&[0x00, 0x2e, 0x42, 0x42, 0x03]);
        }
        ethertype::MPLS | ethertype::MPLS_MCAST => {
            d.extend_from_slice(&etype.to_be_bytes());
            let bos = g(Field::MplsBos) & 1;
            let lse = ((g(Field::MplsLabel) & 0x000f_ffff) << 12)
                | ((g(Field::MplsTc) & 7) << 9)
                | (bos << 8)
                | 64;
            d.extend_from_slice(&u32::try_from(lse).unwrap_or(0).to_be_bytes());
            if bos == 0 {
                d.extend_from_slice(&[0, 0, 0x01, 64]);
            }
        }
        ethertype::PBB => {
            d.extend_from_slice(&etype.to_be_bytes());
            d.push(0);
            d.extend_from_slice(key.get(Field::PbbIsid));
            d.extend_from_slice(&[0u8; 12]);
            d.extend_from_slice(&[0x08, 0x00]);
        }
        ethertype::ARP => {
            d.extend_from_slice(&etype.to_be_bytes());
            d.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
            d.extend_from_slice(&be16(g(Field::ArpOp)));
            d.extend_from_slice(key.get(Field::ArpSha));
            d.extend_from_slice(key.get(Field::ArpSpa));
            d.extend_from_slice(key.get(Field::ArpTha));
            d.extend_from_slice(key.get(Field::ArpTpa));
        }
        ethertype::IPV4 => {
            d.extend_from_slice(&etype.to_be_bytes());
            let proto = byte(g(Field::IpProto));
            let l4 = l4_bytes(key, proto, false);
            let l3 = d.len();
            let total = 20 + l4.len();
            let tos = (byte(g(Field::IpDscp)) << 2) | (byte(g(Field::IpEcn)) & 3);
            d.extend_from_slice(&[0x45, tos]);
            d.extend_from_slice(&be16(u64::try_from(total).unwrap_or(0)));
            d.extend_from_slice(&[0, 0, 0, 0, 64, proto, 0, 0]);
            d.extend_from_slice(key.get(Field::Ipv4Src));
            d.extend_from_slice(key.get(Field::Ipv4Dst));
            let c = inet_checksum(&d[l3..l3 + 20]);
            d[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(key.get(Field::Ipv4Src));
            pseudo.extend_from_slice(key.get(Field::Ipv4Dst));
            pseudo.extend_from_slice(&[0, proto]);
            pseudo.extend_from_slice(&be16(u64::try_from(l4.len()).unwrap_or(0)));
            d.extend_from_slice(&finish_l4(l4, proto, &pseudo));
        }
        ethertype::IPV6 => {
            d.extend_from_slice(&etype.to_be_bytes());
            let proto = byte(g(Field::IpProto));
            let l4 = l4_bytes(key, proto, true);
            let tclass = (g(Field::IpDscp) << 2) | (g(Field::IpEcn) & 3);
            let vtf = (6u64 << 28) | ((tclass & 0xff) << 20) | (g(Field::Ipv6Flabel) & 0x000f_ffff);
            d.extend_from_slice(&u32::try_from(vtf).unwrap_or(0).to_be_bytes());
            d.extend_from_slice(&be16(u64::try_from(l4.len()).unwrap_or(0)));
            d.extend_from_slice(&[proto, 64]);
            d.extend_from_slice(key.get(Field::Ipv6Src));
            d.extend_from_slice(key.get(Field::Ipv6Dst));
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(key.get(Field::Ipv6Src));
            pseudo.extend_from_slice(key.get(Field::Ipv6Dst));
            pseudo.extend_from_slice(&u32::try_from(l4.len()).unwrap_or(0).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, proto]);
            d.extend_from_slice(&finish_l4(l4, proto, &pseudo));
        }
        other => d.extend_from_slice(&other.to_be_bytes()),
    }
    if d.len() < 60 {
        d.resize(60, 0);
    }
    d
}

/// The L4 header (checksum zero) for `proto`, from the key's L4 fields.
fn l4_bytes(key: &FlowKey, proto: u8, v6: bool) -> Vec<u8> {
    let ports = |s: Field, t: Field| {
        let mut v = key.get(s).to_vec();
        v.extend_from_slice(key.get(t));
        v
    };
    match proto {
        ipproto::TCP => {
            let mut v = ports(Field::TcpSrc, Field::TcpDst);
            v.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
            v
        }
        ipproto::UDP => {
            let mut v = ports(Field::UdpSrc, Field::UdpDst);
            v.extend_from_slice(&[0, 12, 0, 0, b's', b'h', b'g', 0]);
            v
        }
        ipproto::SCTP => {
            let mut v = ports(Field::SctpSrc, Field::SctpDst);
            v.extend_from_slice(&[0; 8]);
            v
        }
        ipproto::ICMP if !v6 => {
            let mut v = vec![
                byte(key.get_u64(Field::Icmpv4Type)),
                byte(key.get_u64(Field::Icmpv4Code)),
            ];
            v.extend_from_slice(&[0, 0, 0, 1, 0, 1]);
            v
        }
        ipproto::ICMPV6 if v6 => {
            let t = byte(key.get_u64(Field::Icmpv6Type));
            let c = byte(key.get_u64(Field::Icmpv6Code));
            let mut v = vec![t, c, 0, 0, 0, 0, 0, 0];
            if matches!(t, 135 | 136) && c == 0 {
                v.extend_from_slice(key.get(Field::Ipv6NdTarget));
                let (opt, f) = if t == 135 {
                    (1, Field::Ipv6NdSll)
                } else {
                    (2, Field::Ipv6NdTll)
                };
                if !key.is_zero(f) {
                    v.extend_from_slice(&[opt, 1]);
                    v.extend_from_slice(key.get(f));
                }
            }
            v
        }
        _ => Vec::new(),
    }
}

/// Fills the L4 checksum (Internet checksum over pseudo-header and segment, or CRC32c).
fn finish_l4(mut l4: Vec<u8>, proto: u8, pseudo: &[u8]) -> Vec<u8> {
    let pos = match proto {
        ipproto::TCP => 16,
        ipproto::UDP => 6,
        ipproto::ICMP => 2,
        ipproto::ICMPV6 => 2,
        ipproto::SCTP => {
            if l4.len() >= 12 {
                let c = crc32c(&l4);
                l4[8..12].copy_from_slice(&c.to_le_bytes());
            }
            return l4;
        }
        _ => return l4,
    };
    if l4.len() < pos + 2 {
        return l4;
    }
    let mut buf = if proto == ipproto::ICMP {
        Vec::new()
    } else {
        pseudo.to_vec()
    };
    buf.extend_from_slice(&l4);
    let mut c = inet_checksum(&buf);
    if proto == ipproto::UDP && c == 0 {
        c = 0xffff;
    }
    l4[pos..pos + 2].copy_from_slice(&c.to_be_bytes());
    l4
}

#[cfg(test)]
mod tests {
    use super::*;
    use shg_flows::key::extract;

    #[test]
    fn synthesized_frames_give_back_their_key() {
        for s in [
            "in_port=1,tcp,nw_src=198.18.0.1,nw_dst=198.18.0.2,tp_src=1234,tp_dst=80,nw_tos=8",
            "in_port=2,udp6,ipv6_src=2001:db8::1,ipv6_dst=2001:db8::2,udp_dst=53",
            "in_port=3,dl_vlan=5,dl_vlan_pcp=3,arp,arp_op=1,arp_spa=198.18.0.1,arp_tpa=198.18.0.2",
            "in_port=1,icmp6,icmp_type=135,icmp_code=0,nd_target=2001:db8::9,nd_sll=02:00:00:00:00:09",
            "in_port=1,mpls,mpls_label=77,mpls_tc=2,mpls_bos=1",
            "in_port=1,sctp,tp_src=5,tp_dst=6",
            "in_port=1,icmp,icmp_type=8,icmp_code=0",
        ] {
            let m = text::parse_match(s).unwrap();
            let want = m.value.masked(&m.mask);
            let frame = frame_from_key(&want);
            let mut got = FlowKey::default();
            let in_port = u32::try_from(want.get_u64(Field::InPort)).unwrap();
            extract(&frame, in_port, &mut got);
            assert_eq!(got.masked(&m.mask), want, "{s}");
        }
    }
}
