//! The kernel fast path of the datapath: which decisions the kernel may repeat ([`candidate`],
//! pure) and the BPF fast path they are handed to ([`KernelOffload`], over [`crate::port::kfast`]).
//!
//! A decision may be repeated by the kernel for every later frame with the same input port
//! and headers as far as the kernel's key reads them (Ethernet addresses and type, untagged;
//! for plain IPv4, and IPv6 without extension headers, the protocol and addresses, and TCP/UDP
//! ports: [`FastKey`]) when all of these hold:
//! - it depends on nothing else: the pipeline walk is in the megaflow cache and each field of
//!   its mask is in that key or the same for every frame of the key (`mask_is_repeatable`:
//!   VLAN, absent on every frame the kernel takes; metadata and tunnel_id, zero on arrival;
//!   fields the EtherType or IP protocol rules out); or
//!   fail-mode standalone decides alone (NORMAL for every frame while its
//!   controllers are away, or for a table miss when it has none);
//! - it is one output of the frame unchanged: every table hit, no meter, the actions are a
//!   single `output:P` or `NORMAL`, and executing it produced exactly one port output, without
//!   set_queue, to a port other than the input;
//! - both ports are kernel interfaces the fast path is attached to, and the output port is not
//!   shaped (its scheduler must see every frame).
//!
//! The handed-over copy is counted as the frame that taught it ([`FastRecord`]) and taken back
//! by the switch core before anything changes (`ofproto/fastpath.rs`); the datapath also
//! takes every copy back when NORMAL's MAC table changes. [`KernelOffload`] hands a copy over
//! only if no take-back happened since the decision was made (its `epoch`), and only after the
//! frame that taught it was sent, so later frames never overtake it.

use super::Output;
use crate::ofproto::{FailOpen, FastPath, FastRecord, Ofproto};
use crate::port::kfast::{FastCounters, FastKey, FastPath as KernelMap};
use shg_flows::action::{port, Action};
use shg_flows::field::{Field, FlowKey};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::RawFd;

/// Whether a decision whose pipeline walk looked at the key bits `mask` is the same for every
/// frame that has the kernel key of the frame with flow key `key`: each field in the mask is
/// either in the kernel's key (in_port, Ethernet addresses and type; for IPv4 and IPv6 the
/// protocol, addresses and TCP/UDP ports), or the same for all those frames: VLAN (the kernel
/// takes untagged frames only), metadata and tunnel_id (zero on arrival), or a field the key's
/// EtherType or IP protocol rules out (IPv6 fields of an IPv4 frame, ARP fields of an IP
/// frame, SCTP ports of a TCP packet...: zero in every such key).
///
/// An IPv6 frame has a kernel key only when its next header is TCP, UDP or ICMPv6 (no
/// extension header), so its protocol is the pipeline's too.
fn mask_is_repeatable(mask: &FlowKey, key: &FlowKey) -> bool {
    use Field as F;
    let et = key.get_u64(F::EthType);
    let proto = key.get_u64(F::IpProto);
    let ipv4 = et == 0x0800;
    let ipv6 = et == 0x86dd;
    let ip = ipv4 || ipv6;
    Field::all().filter(|f| !mask.is_zero(*f)).all(|f| match f {
        F::InPort
        | F::InPhyPort
        | F::Metadata
        | F::TunnelId
        | F::EthDst
        | F::EthSrc
        | F::EthType
        | F::VlanVid
        | F::VlanPcp => true,
        // In the kernel key for IP frames (ports zero unless TCP/UDP, as in the flow key);
        // zero in every other frame's flow key.
        F::IpProto
        | F::Ipv4Src
        | F::Ipv4Dst
        | F::Ipv6Src
        | F::Ipv6Dst
        | F::TcpSrc
        | F::TcpDst
        | F::UdpSrc
        | F::UdpDst => true,
        F::IpDscp | F::IpEcn => !ip,
        F::SctpSrc | F::SctpDst => !ip || proto != 132,
        F::Icmpv4Type | F::Icmpv4Code => !ipv4 || proto != 1,
        F::Icmpv6Type | F::Icmpv6Code | F::Ipv6NdTarget | F::Ipv6NdSll | F::Ipv6NdTll => {
            !ipv6 || proto != 58
        }
        F::Ipv6Flabel | F::Ipv6Exthdr => !ipv6,
        F::ArpOp | F::ArpSpa | F::ArpTpa | F::ArpSha | F::ArpTha => et != 0x0806,
        F::MplsLabel | F::MplsTc | F::MplsBos => !matches!(et, 0x8847 | 0x8848),
        F::PbbIsid => et != 0x88e7,
        _ => false,
    })
}

/// Entries the kernel map holds at most.
pub const MAX_ENTRIES: u32 = 16_384;
/// Headers remembered as not repeatable before the set is emptied.
const MAX_REFUSED: usize = 65_536;

/// Who would repeat a decision, which sets what its key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeater {
    /// The kernel, for frames with the same [`FastKey`]: each field of the walk's mask must be
    /// in that key or the same for all its frames (`mask_is_repeatable`).
    Kernel,
    /// The datapath thread ([`super::copies`]), for frames with the same whole flow key: every
    /// field the walk looked at is in it. NORMAL's copies need an untagged frame (their
    /// counts refresh learning on VLAN 0).
    Thread,
}

/// Whether the decision just made for a frame of `key` received on `in_port` (its outputs are
/// `outputs`) may be repeated by `by`; the record to count its copies on.
pub fn candidate(
    of: &Ofproto,
    in_port: u32,
    key: &FlowKey,
    outputs: &[Output],
    by: Repeater,
) -> Option<FastRecord> {
    let [Output::Port {
        port: out_port,
        queue: None,
        ..
    }] = outputs
    else {
        return None;
    };
    let out_port = *out_port;
    if out_port == in_port || of.qos.contains_key(&out_port) {
        return None;
    }
    let normal = |src: &[u8], dst: &[u8]| -> Option<([u8; 6], [u8; 6])> {
        Some((src.try_into().ok()?, dst.try_into().ok()?))
    };
    let (visits, normal) = if of.fail_open() == FailOpen::Override {
        (
            Vec::new(),
            normal(key.get(Field::EthSrc), key.get(Field::EthDst)),
        )
    } else {
        let (result, visits) = of.tables.cached(key)?;
        if result.resume.is_some() || !result.meters.is_empty() {
            return None;
        }
        // Standalone without controllers: a miss is NORMAL.
        let miss_normal =
            of.fail_open() == FailOpen::MissNormal && result.missed && result.actions.is_empty();
        if result.trace.iter().any(|s| s.hit.is_none()) && !miss_normal {
            return None;
        }
        if by == Repeater::Kernel && !mask_is_repeatable(&result.mask, key) {
            return None;
        }
        match result.actions.as_slice() {
            [] if miss_normal => (
                visits.to_vec(),
                normal(key.get(Field::EthSrc), key.get(Field::EthDst)),
            ),
            [Action::Output { port: p, .. }] if *p == out_port => (visits.to_vec(), None),
            [Action::Output {
                port: port::NORMAL, ..
            }] => (
                visits.to_vec(),
                normal(key.get(Field::EthSrc), key.get(Field::EthDst)),
            ),
            _ => return None,
        }
    };
    let untagged = key.is_zero(Field::VlanVid);
    let normal = match normal {
        Some((src, dst)) if src[0] & 1 == 0 && dst[0] & 1 == 0 && untagged => Some((src, dst)),
        Some(_) => return None,
        None => None,
    };
    Some(FastRecord {
        visits,
        in_port,
        out_port,
        normal,
    })
}

/// A decision waiting to be handed over (after its frame was sent).
#[derive(Debug)]
pub struct Pending {
    key: FastKey,
    record: FastRecord,
    epoch: u64,
}

/// One handed-over decision.
#[derive(Debug)]
struct Entry {
    record: FastRecord,
    /// Counts already credited.
    credited: FastCounters,
    /// Forwarded nothing since the last sync before this one (taken back at the next).
    idle: bool,
}

/// The BPF fast path of the datapath's kernel ports.
#[derive(Debug)]
pub struct KernelOffload {
    map: KernelMap,
    /// OpenFlow port → ifindex of the ports it is attached to.
    ifindex: HashMap<u32, u32>,
    entries: HashMap<FastKey, Entry>,
    /// Headers found not repeatable since the last take-back.
    refused: HashSet<FastKey>,
    /// Take-backs so far.
    epoch: u64,
    /// Errors talking to the kernel (logged at powers of two).
    errors: u64,
}

impl KernelOffload {
    /// Creates the map and loads the programs (see [`crate::port::kfast`]).
    pub fn new() -> io::Result<KernelOffload> {
        Ok(KernelOffload {
            map: KernelMap::new(MAX_ENTRIES)?,
            ifindex: HashMap::new(),
            entries: HashMap::new(),
            refused: HashSet::new(),
            epoch: 0,
            errors: 0,
        })
    }

    /// Attaches the fast path to port `port_no`: its interface's ingress and its packet
    /// socket `fd`.
    pub fn attach(&mut self, port_no: u32, ifindex: u32, fd: RawFd) -> io::Result<()> {
        self.map.filter_socket(fd)?;
        self.map.attach_ingress(ifindex)?;
        self.ifindex.insert(port_no, ifindex);
        Ok(())
    }

    /// Detaches it from `port_no` (the port is going away; its copies were taken back).
    pub fn detach(&mut self, port_no: u32) {
        if let Some(i) = self.ifindex.remove(&port_no) {
            self.map.detach(i);
        }
    }

    /// The fast-path key of a frame received on `port_no`, when the frame is one the kernel
    /// could forward and its header is neither handed over nor refused yet.
    pub fn probe(&self, port_no: u32, frame: &[u8]) -> Option<FastKey> {
        let ifindex = *self.ifindex.get(&port_no)?;
        let key = FastKey::of_frame(ifindex, frame)?;
        if matches!(key.ethertype, 0x8100 | 0x88a8 | 0x9100)
            || self.entries.contains_key(&key)
            || self.refused.contains(&key)
        {
            return None;
        }
        Some(key)
    }

    /// The outcome of the pipeline for a probed frame: a decision to hand over once the
    /// frame is sent, or a refusal remembered until the next take-back.
    pub fn decided(&mut self, key: FastKey, record: Option<FastRecord>) -> Option<Pending> {
        match record {
            Some(r) if self.ifindex.contains_key(&r.out_port) => Some(Pending {
                key,
                record: r,
                epoch: self.epoch,
            }),
            _ => {
                if self.refused.len() >= MAX_REFUSED {
                    self.refused.clear();
                }
                self.refused.insert(key);
                None
            }
        }
    }

    /// Hands `p` to the kernel unless a take-back happened since it was decided.
    pub fn hand_over(&mut self, p: Pending) {
        if p.epoch != self.epoch || self.entries.contains_key(&p.key) {
            return;
        }
        let Some(&out) = self.ifindex.get(&p.record.out_port) else {
            return;
        };
        match self.map.insert(&p.key, out) {
            Ok(()) => {
                self.entries.insert(
                    p.key,
                    Entry {
                        record: p.record,
                        credited: FastCounters::default(),
                        idle: false,
                    },
                );
            }
            Err(e) => self.error(&e),
        }
    }

    fn error(&mut self, e: &io::Error) {
        self.errors += 1;
        if self.errors.is_power_of_two() {
            tracing::warn!(error = %e, total = self.errors, "kernel fast path");
        }
    }

    /// Reads `key`'s counters (removing the entry when `remove`); the increase since the last
    /// credit.
    fn take(&mut self, key: &FastKey, e: &mut Entry, remove: bool) -> (u64, u64) {
        let now = if remove {
            self.map.remove(key)
        } else {
            self.map.counters(key)
        };
        match now {
            Ok(Some(c)) => {
                let d = (
                    c.packets.saturating_sub(e.credited.packets),
                    c.bytes.saturating_sub(e.credited.bytes),
                );
                e.credited = c;
                d
            }
            Ok(None) => (0, 0),
            Err(err) => {
                self.error(&err);
                (0, 0)
            }
        }
    }
}

impl FastPath for KernelOffload {
    fn drain(&mut self, credit: &mut dyn FnMut(&FastRecord, u64, u64) -> bool) {
        self.epoch += 1;
        self.refused.clear();
        for (k, mut e) in std::mem::take(&mut self.entries) {
            let (p, b) = self.take(&k, &mut e, true);
            credit(&e.record, p, b);
        }
    }

    fn sync(&mut self, credit: &mut dyn FnMut(&FastRecord, u64, u64) -> bool) {
        let mut entries = std::mem::take(&mut self.entries);
        let mut taken_back = false;
        entries.retain(|k, e| {
            let (p, b) = self.take(k, e, false);
            let right = credit(&e.record, p, b);
            if !right || (p == 0 && e.idle) {
                // Frames forwarded between the read and the removal are counted too.
                let (p, b) = self.take(k, e, true);
                credit(&e.record, p, b);
                taken_back = true;
                return false;
            }
            e.idle = p == 0;
            true
        });
        self.entries = entries;
        if taken_back {
            // A decision refused while this one was out may be repeatable now.
            self.refused.clear();
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ethertype: u16, proto: u8) -> FlowKey {
        let mut k = FlowKey::default();
        k.set_u64(Field::EthType, u64::from(ethertype));
        k.set_u64(Field::IpProto, u64::from(proto));
        k
    }

    fn mask(fields: &[Field]) -> FlowKey {
        let mut m = FlowKey::default();
        for &f in fields {
            m.set(f, &shg_flows::field::field_full_mask(f));
        }
        m
    }

    #[test]
    fn a_mask_field_counts_when_the_kernel_key_holds_it_or_rules_it_out() {
        let tcp4 = key(0x0800, 6);
        for (fields, ok) in [
            (&[Field::InPort, Field::EthDst, Field::VlanVid][..], true),
            (&[Field::Ipv4Dst, Field::TcpDst, Field::IpProto], true),
            (
                &[
                    Field::Ipv6Dst,
                    Field::ArpTpa,
                    Field::SctpDst,
                    Field::Icmpv4Type,
                ],
                true,
            ),
            (&[Field::IpDscp], false),
            (&[Field::IpEcn], false),
        ] {
            assert_eq!(
                mask_is_repeatable(&mask(fields), &tcp4),
                ok,
                "tcp4 {fields:?}"
            );
        }
        let icmp4 = key(0x0800, 1);
        assert!(!mask_is_repeatable(&mask(&[Field::Icmpv4Type]), &icmp4));
        let tcp6 = key(0x86dd, 6);
        for (fields, ok) in [
            (&[Field::Ipv4Dst, Field::ArpOp][..], true),
            (
                &[
                    Field::TcpDst,
                    Field::IpProto,
                    Field::Ipv6Dst,
                    Field::Ipv6Src,
                ],
                true,
            ),
            (
                &[Field::Icmpv6Type, Field::Ipv6NdTarget, Field::SctpDst],
                true,
            ),
            (&[Field::Ipv6Flabel], false),
            (&[Field::IpDscp], false),
            (&[Field::Ipv6Exthdr], false),
        ] {
            assert_eq!(
                mask_is_repeatable(&mask(fields), &tcp6),
                ok,
                "tcp6 {fields:?}"
            );
        }
        let icmp6 = key(0x86dd, 58);
        for f in [Field::Icmpv6Type, Field::Icmpv6Code, Field::Ipv6NdTarget] {
            assert!(!mask_is_repeatable(&mask(&[f]), &icmp6), "icmp6 {f:?}");
        }
        assert!(mask_is_repeatable(
            &mask(&[Field::Ipv6Dst, Field::TcpDst]),
            &icmp6
        ));
        let arp = key(0x0806, 0);
        assert!(mask_is_repeatable(
            &mask(&[
                Field::IpProto,
                Field::Ipv4Dst,
                Field::TcpDst,
                Field::Ipv6Src
            ]),
            &arp
        ));
        assert!(!mask_is_repeatable(&mask(&[Field::ArpTpa]), &arp));
    }
}
