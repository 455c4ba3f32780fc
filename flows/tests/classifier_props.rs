//! The classifier against a naive linear scan, megaflow-mask soundness, and no allocation on lookup.

use proptest::prelude::*;
use shg_flows::classifier::{Classifier, RuleId};
use shg_flows::field::{Field, FlowKey};
use shg_flows::matches::Match;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

// --- allocation counting (per thread, so parallel tests do not interfere) ---

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

#[allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only forwards to System.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(|c| c.get())
}

// --- random rules over a handful of fields, from small domains so rules collide and hit ---

/// How a generated rule constrains one field.
#[derive(Debug, Clone)]
struct Spec {
    in_port: Option<u32>,
    eth_type: Option<u16>,
    /// (address last byte, prefix length in {8, 16, 24, 32})
    ipv4_src: Option<(u8, u8)>,
    ipv4_dst: Option<(u8, u8)>,
    tcp_dst: Option<u16>,
    /// (vid, mask is only the present bit)
    vlan: Option<(u16, bool)>,
}

fn addr(last: u8) -> [u8; 4] {
    // 10.(last&1).(last&3).last so that prefixes of different lengths overlap in interesting ways.
    [10, last & 1, last & 3, last]
}

fn prefix(len: u8) -> [u8; 4] {
    let m: u32 = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    m.to_be_bytes()
}

impl Spec {
    fn to_match(&self) -> Match {
        let mut m = Match::any();
        if let Some(p) = self.in_port {
            m.set_u64(Field::InPort, u64::from(p));
        }
        if let Some(t) = self.eth_type {
            m.set_u64(Field::EthType, u64::from(t));
        }
        if let Some((a, l)) = self.ipv4_src {
            m.set_masked(Field::Ipv4Src, &addr(a), &prefix(l));
        }
        if let Some((a, l)) = self.ipv4_dst {
            m.set_masked(Field::Ipv4Dst, &addr(a), &prefix(l));
        }
        if let Some(p) = self.tcp_dst {
            m.set_u64(Field::TcpDst, u64::from(p));
        }
        if let Some((vid, present_only)) = self.vlan {
            if present_only {
                m.set_masked(
                    Field::VlanVid,
                    &0x1000u16.to_be_bytes(),
                    &0x1000u16.to_be_bytes(),
                );
            } else {
                m.set_u64(Field::VlanVid, u64::from(0x1000 | vid));
            }
        }
        m
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::weighted(0.3, 1u32..4),
        prop::option::weighted(0.6, prop::sample::select(vec![0x0800u16, 0x86dd])),
        prop::option::weighted(0.4, (0u8..8, prop::sample::select(vec![8u8, 16, 24, 32]))),
        prop::option::weighted(0.4, (0u8..8, prop::sample::select(vec![8u8, 16, 24, 32]))),
        prop::option::weighted(0.3, prop::sample::select(vec![22u16, 80, 443])),
        prop::option::weighted(0.2, (1u16..4, any::<bool>())),
    )
        .prop_map(
            |(in_port, eth_type, ipv4_src, ipv4_dst, tcp_dst, vlan)| Spec {
                in_port,
                eth_type,
                ipv4_src,
                ipv4_dst,
                tcp_dst,
                vlan,
            },
        )
}

/// A random packet key over the same small domains.
#[derive(Debug, Clone)]
struct KeySpec {
    in_port: u32,
    eth_type: u16,
    src: u8,
    dst: u8,
    tcp_dst: u16,
    vid: u16,
    other: u8,
}

fn key_spec() -> impl Strategy<Value = KeySpec> {
    (
        1u32..4,
        prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806]),
        0u8..8,
        0u8..8,
        prop::sample::select(vec![22u16, 80, 443, 8080]),
        0u16..4,
        any::<u8>(),
    )
        .prop_map(
            |(in_port, eth_type, src, dst, tcp_dst, vid, other)| KeySpec {
                in_port,
                eth_type,
                src,
                dst,
                tcp_dst,
                vid,
                other,
            },
        )
}

impl KeySpec {
    fn key(&self) -> FlowKey {
        let mut k = FlowKey::default();
        k.set_u64(Field::InPort, u64::from(self.in_port));
        k.set_u64(Field::EthType, u64::from(self.eth_type));
        k.set(Field::Ipv4Src, &addr(self.src));
        k.set(Field::Ipv4Dst, &addr(self.dst));
        k.set_u64(Field::TcpDst, u64::from(self.tcp_dst));
        if self.vid != 0 {
            k.set_u64(Field::VlanVid, u64::from(0x1000 | self.vid));
        }
        // A field no rule looks at.
        k.set_u64(Field::IpDscp, u64::from(self.other & 0x3f));
        k
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Spec, u16),
    /// Remove the live rule at this index (modulo the number of live rules).
    Remove(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (spec(), 0u16..5).prop_map(|(s, p)| Op::Insert(s, p)),
        1 => any::<usize>().prop_map(Op::Remove),
    ]
}

/// The oracle: rules in insertion order; the winner is the highest priority, earliest inserted.
fn naive(rules: &[(RuleId, Match, u16)], key: &FlowKey) -> Option<RuleId> {
    let mut best: Option<(RuleId, u16)> = None;
    for (id, m, p) in rules {
        if m.matches(key) && best.is_none_or(|(_, bp)| *p > bp) {
            best = Some((*id, *p));
        }
    }
    best.map(|b| b.0)
}

/// A key derived from a rule: the rule's value on its mask, `noise` elsewhere, so it hits.
fn key_from_rule(m: &Match, noise: &FlowKey) -> FlowKey {
    let mut k = *noise;
    for (kb, (vb, mb)) in k.0.iter_mut().zip(m.value.0.iter().zip(m.mask.0.iter())) {
        *kb = (*kb & !*mb) | (*vb & *mb);
    }
    k
}

fn merge(key: &FlowKey, mask: &FlowKey, other: &FlowKey) -> FlowKey {
    let mut k = *key;
    for (kb, (mb, ob)) in k.0.iter_mut().zip(mask.0.iter().zip(other.0.iter())) {
        *kb = (*kb & *mb) | (*ob & !*mb);
    }
    k
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn matches_linear_scan_and_masks_are_sound(
        ops in prop::collection::vec(op(), 1..60),
        probes in prop::collection::vec((key_spec(), key_spec(), any::<usize>(), any::<bool>()), 1..40),
    ) {
        let mut c: Classifier<usize> = Classifier::new();
        let mut live: Vec<(RuleId, Match, u16)> = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            match op {
                Op::Insert(s, p) => {
                    let m = s.to_match();
                    let id = c.insert(m, *p, n);
                    prop_assert_eq!(c.get(id), Some(&n));
                    live.push((id, m, *p));
                }
                Op::Remove(i) => {
                    if !live.is_empty() {
                        let (id, m, p) = live.remove(i % live.len());
                        prop_assert!(c.remove(id).is_some());
                        prop_assert_eq!(c.remove(id), None);
                        prop_assert!(c.get(id).is_none());
                        // A duplicate (same match and priority) may remain.
                        let dup = live.iter().find(|(_, m2, p2)| *m2 == m && *p2 == p).map(|r| r.0);
                        prop_assert_eq!(c.find_exact(&m, p), dup);
                    }
                }
            }
            prop_assert_eq!(c.len(), live.len());
        }
        for (id, m, p) in &live {
            let first = live.iter().find(|(_, m2, p2)| m2 == m && p2 == p).map(|r| r.0);
            prop_assert_eq!(c.find_exact(m, *p), first);
            prop_assert_eq!(c.rule_match(*id), Some((*m, *p)));
        }
        prop_assert_eq!(c.iter().count(), live.len());

        for (ks, noise, pick, from_rule) in &probes {
            let key = if *from_rule && !live.is_empty() {
                key_from_rule(&live[pick % live.len()].1, &ks.key())
            } else {
                ks.key()
            };
            let want = naive(&live, &key);
            prop_assert_eq!(c.lookup(&key).map(|h| h.0), want);
            let (hit, mask) = c.lookup_with_mask(&key);
            prop_assert_eq!(hit.map(|h| h.0), want);
            if *from_rule && !live.is_empty() {
                prop_assert!(want.is_some(), "a key built from a rule must hit");
            }
            // Megaflow soundness: change everything outside the mask, same answer.
            let other = merge(&key, &mask, &noise.key());
            prop_assert_eq!(c.lookup(&other).map(|h| h.0), want, "mask {:?}", mask);
            let mut flipped = key;
            for (b, m) in flipped.0.iter_mut().zip(mask.0.iter()) {
                *b ^= !*m;
            }
            prop_assert_eq!(c.lookup(&flipped).map(|h| h.0), want);
        }
    }
}

#[test]
fn equal_priority_earliest_wins_and_survives_removal_of_others() {
    let mut c = Classifier::new();
    let mut wide = Match::any();
    wide.set_u64(Field::EthType, 0x0800);
    let mut narrow = wide;
    narrow.set(Field::Ipv4Dst, &[10, 0, 0, 1]);
    let a = c.insert(narrow, 7, 'a');
    let b = c.insert(wide, 7, 'b');
    let mut k = FlowKey::default();
    k.set_u64(Field::EthType, 0x0800);
    k.set(Field::Ipv4Dst, &[10, 0, 0, 1]);
    assert_eq!(c.lookup(&k).map(|h| h.0), Some(a));
    c.remove(a);
    assert_eq!(c.lookup(&k).map(|h| h.0), Some(b));
    let a2 = c.insert(narrow, 7, 'c');
    // Re-inserted later: now b is older and wins the tie.
    assert_eq!(c.lookup(&k).map(|h| h.0), Some(b));
    c.remove(b);
    assert_eq!(c.lookup(&k).map(|h| h.0), Some(a2));
    assert_eq!(c.n_subtables(), 1);
}

#[test]
fn lookup_and_extract_do_not_allocate() {
    let mut c = Classifier::new();
    for i in 0..50u8 {
        let mut m = Match::any();
        m.set_u64(Field::EthType, 0x0800);
        m.set_masked(
            Field::Ipv4Dst,
            &[10, i, 0, 0],
            &[255, 255, u8::from(i % 2 == 0) * 255, 0],
        );
        c.insert(m, u16::from(i), i);
    }
    c.insert(Match::any(), 0, 255);
    let mut frame = vec![0u8; 64];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&50u16.to_be_bytes());
    frame[23] = 6;
    frame[30..34].copy_from_slice(&[10, 3, 0, 9]);
    let mut key = FlowKey::default();
    let before = allocs();
    let layers = shg_flows::key::extract(&frame, 1, &mut key);
    let hit = c.lookup(&key).map(|h| *h.1);
    let (hit2, _mask) = c.lookup_with_mask(&key);
    let after = allocs();
    assert_eq!(after - before, 0, "lookup or extract allocated");
    assert_eq!(layers.l4, Some(34));
    assert_eq!(hit, Some(3));
    assert_eq!(hit2.map(|h| *h.1), Some(3));
}
