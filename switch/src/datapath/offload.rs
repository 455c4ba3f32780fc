//! The kernel fast path of the datapath: which decisions the kernel may repeat ([`candidate`],
//! pure) and the BPF fast path they are handed to ([`KernelOffload`], over [`crate::port::kfast`]).
//!
//! A decision may be repeated by the kernel for every later frame with the same input port
//! and headers as far as the kernel's key reads them (Ethernet addresses and type, untagged;
//! for plain IPv4 the protocol and addresses, and TCP/UDP ports: [`FastKey`]) when all of
//! these hold:
//! - it depends on nothing else: the pipeline walk is in the megaflow cache and its mask
//!   covers no field beyond in_port, those headers, VLAN (absent: the kernel takes untagged
//!   frames only) and the pipeline fields that are zero on arrival (metadata, tunnel_id); or
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

/// Fields a repeatable decision may depend on (see the module doc): what the kernel's key
/// holds, plus VLAN (absent on every frame it takes) and the pipeline fields that are zero on
/// arrival.
const KEY_FIELDS: [Field; 16] = [
    Field::InPort,
    Field::InPhyPort,
    Field::Metadata,
    Field::TunnelId,
    Field::EthDst,
    Field::EthSrc,
    Field::EthType,
    Field::VlanVid,
    Field::VlanPcp,
    Field::IpProto,
    Field::Ipv4Src,
    Field::Ipv4Dst,
    Field::TcpSrc,
    Field::TcpDst,
    Field::UdpSrc,
    Field::UdpDst,
];

/// Entries the kernel map holds at most.
pub const MAX_ENTRIES: u32 = 16_384;
/// Headers remembered as not repeatable before the set is emptied.
const MAX_REFUSED: usize = 65_536;

/// Whether the decision just made for a frame of `key` received on `in_port` (its outputs are
/// `outputs`) may be repeated by the kernel; the record to count its copies on.
pub fn candidate(
    of: &Ofproto,
    in_port: u32,
    key: &FlowKey,
    outputs: &[Output],
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
        let only_key_fields = Field::all()
            .filter(|f| !KEY_FIELDS.contains(f))
            .all(|f| result.mask.is_zero(f));
        if !only_key_fields {
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
    let normal = match normal {
        Some((src, dst)) if src[0] & 1 == 0 && dst[0] & 1 == 0 => Some((src, dst)),
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
