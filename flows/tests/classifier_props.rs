//! The classifier against a naive linear scan, megaflow-mask soundness, no allocation on lookup,
//! and the flow tables' megaflow cache against uncached walks.

use proptest::prelude::*;
use shg_flows::classifier::{Classifier, RuleId};
use shg_flows::field::{Field, FlowKey};
use shg_flows::matches::Match;

#[path = "../../tests/common/alloc_count.rs"]
mod alloc_count;
use alloc_count::allocs;

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

// --- the megaflow cache: a cached pipeline against the same pipeline without a cache ---

/// One step of a cache scenario.
#[derive(Debug, Clone)]
enum Step {
    /// ADD into table 0 or 1; in table 0 an odd priority rewrites ipv4_dst and goes to table 1.
    Flow(Spec, u16, bool),
    /// DELETE_STRICT of the n-th flow added (modulo).
    Delete(usize),
    /// A packet, looked up `repeat` times.
    Packet(KeySpec, u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (spec(), 0u16..6, any::<bool>()).prop_map(|(s, p, t1)| Step::Flow(s, p, t1)),
        1 => any::<usize>().prop_map(Step::Delete),
        5 => (key_spec(), 1u8..4).prop_map(|(k, n)| Step::Packet(k, n)),
    ]
}

fn flow_mod(s: &Spec, priority: u16, table1: bool) -> shg_flows::mods::FlowMod {
    use shg_flows::action::{Action, Instruction};
    let out = |port| Action::Output { port, max_len: 0 };
    let instructions = if !table1 && priority % 2 == 1 {
        vec![
            Instruction::ApplyActions(vec![Action::SetField {
                field: Field::Ipv4Dst,
                value: addr(priority.to_be_bytes()[1]).to_vec(),
            }]),
            Instruction::GotoTable(1),
        ]
    } else {
        vec![Instruction::ApplyActions(vec![
            out(u32::from(priority) + 1),
        ])]
    };
    let mut m = s.to_match();
    if !table1 && priority % 2 == 1 {
        // set_field ipv4_dst needs the IPv4 prerequisite.
        m.set_u64(Field::EthType, 0x0800);
    }
    shg_flows::mods::FlowMod {
        table_id: u8::from(table1),
        priority,
        r#match: m,
        instructions,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Every lookup through the cache gives what a walk gives, and counts the same packets
    /// on the same entries and tables, while flows come and go between packets.
    #[test]
    fn cached_lookups_equal_uncached_walks(steps in prop::collection::vec(step(), 1..60)) {
        use shg_flows::table::{FlowFilter, FlowTables};
        let mut cached = FlowTables::new(2);
        let mut plain = FlowTables::new(2);
        plain.set_cache_capacity(0);
        let mut added = Vec::new();
        for (i, st) in steps.iter().enumerate() {
            let now = u64::try_from(i).unwrap() * 1000;
            match st {
                Step::Flow(s, p, t1) => {
                    let fm = flow_mod(s, *p, *t1);
                    let a = cached.apply_flow_mod(&fm, now).map(|_| ());
                    let b = plain.apply_flow_mod(&fm, now).map(|_| ());
                    prop_assert_eq!(a.is_ok(), b.is_ok());
                    if a.is_ok() {
                        added.push(fm);
                    }
                }
                Step::Delete(n) if !added.is_empty() => {
                    let mut fm = added[n % added.len()].clone();
                    fm.command = shg_flows::mods::FlowModCommand::DeleteStrict;
                    let a = cached.apply_flow_mod(&fm, now).map(|_| ());
                    let b = plain.apply_flow_mod(&fm, now).map(|_| ());
                    prop_assert_eq!(a.is_ok(), b.is_ok());
                }
                Step::Delete(_) => {}
                Step::Packet(k, repeat) => {
                    for _ in 0..*repeat {
                        let key = k.key();
                        let a = cached.lookup(&key, 60, now);
                        let b = plain.lookup(&key, 60, now);
                        prop_assert_eq!(&a.actions, &b.actions);
                        prop_assert_eq!(&a.meters, &b.meters);
                        prop_assert_eq!(a.missed, b.missed);
                        prop_assert_eq!(a.mask, b.mask);
                    }
                }
            }
        }
        let counts = |t: &FlowTables| {
            t.flow_stats(&FlowFilter::default())
                .iter()
                .map(|(tid, e)| (*tid, e.priority, e.r#match, e.packet_count, e.byte_count, e.last_used))
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(counts(&cached), counts(&plain));
        prop_assert_eq!(cached.table_stats(), plain.table_stats());
        prop_assert_eq!(plain.cache_stats().hits, 0);
    }
}

#[test]
fn the_cache_serves_repeats_and_forgets_on_every_change() {
    use shg_flows::table::FlowTables;
    let mut t = FlowTables::new(2);
    let s = Spec {
        in_port: None,
        eth_type: Some(0x0800),
        ipv4_src: None,
        ipv4_dst: Some((3, 24)),
        tcp_dst: None,
        vlan: None,
    };
    t.apply_flow_mod(&flow_mod(&s, 4, false), 0).unwrap();
    let k = KeySpec {
        in_port: 1,
        eth_type: 0x0800,
        src: 1,
        dst: 3,
        tcp_dst: 80,
        vid: 0,
        other: 0,
    };
    for _ in 0..10 {
        t.lookup(&k.key(), 100, 5);
    }
    let st = t.cache_stats();
    assert_eq!((st.misses, st.hits, st.entries), (1, 9, 1));
    // A higher-priority flow for the same packets: the next lookup must see it.
    t.apply_flow_mod(&flow_mod(&s, 6, false), 6).unwrap();
    let r = t.lookup(&k.key(), 100, 7);
    assert_eq!(
        r.actions,
        vec![shg_flows::action::Action::Output {
            port: 7,
            max_len: 0
        }]
    );
    assert_eq!(t.cache_stats().invalidations, 1);
    // Removal by group/meter deletion and by expiry also forget: a hard timeout here.
    let mut fm = flow_mod(&s, 8, false);
    fm.hard_timeout = 1;
    t.apply_flow_mod(&fm, 10).unwrap();
    assert_eq!(
        t.lookup(&k.key(), 100, 11).actions[0],
        shg_flows::action::Action::Output {
            port: 9,
            max_len: 0
        }
    );
    assert_eq!(t.expire(2_000_000_000).len(), 1);
    assert_eq!(
        t.lookup(&k.key(), 100, 2_000_000_001).actions[0],
        shg_flows::action::Action::Output {
            port: 7,
            max_len: 0
        }
    );
    let flows = t.flow_stats(&shg_flows::table::FlowFilter::default());
    let by_prio: Vec<(u16, u64)> = flows
        .iter()
        .map(|(_, e)| (e.priority, e.packet_count))
        .collect();
    assert_eq!(by_prio, vec![(6, 2), (4, 10)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A flow dump read page by page gives the whole dump, in order, when nothing changes; and
    /// while flows are added and deleted between pages, it stays in strict dump order and
    /// holds every entry present from its first page to its last exactly once.
    #[test]
    fn paged_flow_dumps_are_ordered_and_complete(
        before in prop::collection::vec((spec(), 0u16..6, any::<bool>()), 0..40),
        during in prop::collection::vec(step(), 0..30),
        page in 1usize..7,
    ) {
        use shg_flows::table::{DumpPosition, FlowFilter, FlowTables};
        use std::collections::BTreeSet;
        let all = FlowFilter::default();
        let positions = |t: &FlowTables| -> Vec<DumpPosition> {
            t.flow_stats_page(&all, None, usize::MAX).entries.iter().map(|(p, _)| *p).collect()
        };
        let mut t = FlowTables::new(2);
        let mut added = Vec::new();
        for (s, p, t1) in &before {
            let fm = flow_mod(s, *p, *t1);
            if t.apply_flow_mod(&fm, 0).is_ok() {
                added.push(fm);
            }
        }
        let whole = positions(&t);
        prop_assert_eq!(whole.len(), t.len());
        prop_assert!(whole.windows(2).all(|w| w[0] < w[1]), "dump not in strict order");
        // Dump order is precedence order: by table, then the entry that would win first.
        let listed = t.flow_stats(&all);
        prop_assert!(listed.windows(2).all(|w| (w[0].0, std::cmp::Reverse(w[0].1.priority))
            <= (w[1].0, std::cmp::Reverse(w[1].1.priority))), "not by table and priority");
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let pg = t.flow_stats_page(&all, after, page);
            prop_assert!(pg.entries.len() <= page);
            paged.extend(pg.entries.iter().map(|(p, _)| *p));
            match pg.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        prop_assert_eq!(&paged, &whole);

        // A filter selecting few entries: pages look at a bounded number of entries, may be
        // short or empty, and together list exactly what the filter selects.
        let odd = FlowFilter { out_port: 2, ..FlowFilter::default() };
        let selected: Vec<DumpPosition> =
            t.flow_stats_page(&odd, None, usize::MAX).entries.iter().map(|(p, _)| *p).collect();
        let scan = page * shg_flows::table::DUMP_SCAN_PER_ENTRY;
        let (mut filtered, mut after) = (Vec::new(), None);
        loop {
            let pg = t.flow_stats_page(&odd, after, page);
            filtered.extend(pg.entries.iter().map(|(p, _)| *p));
            let Some(n) = pg.next else { break };
            // The page looked at the entries after `after` up to `n`, no more than `scan`.
            let looked = whole.iter().filter(|&&p| Some(p) > after && p <= n).count();
            prop_assert!((1..=scan).contains(&looked), "a page looked at {} entries", looked);
            after = Some(n);
        }
        prop_assert_eq!(&filtered, &selected);

        // Again, with one step of changes after every page.
        let mut throughout: BTreeSet<DumpPosition> = whole.iter().copied().collect();
        let mut seen: Vec<DumpPosition> = Vec::new();
        let mut after = None;
        let mut steps = during.iter();
        loop {
            let pg = t.flow_stats_page(&all, after, page);
            seen.extend(pg.entries.iter().map(|(p, _)| *p));
            match pg.next {
                Some(n) => after = Some(n),
                None => break,
            }
            match steps.next() {
                Some(Step::Flow(s, p, t1)) => {
                    let fm = flow_mod(s, *p, *t1);
                    if t.apply_flow_mod(&fm, 0).is_ok() {
                        added.push(fm);
                    }
                }
                Some(Step::Delete(n)) if !added.is_empty() => {
                    let mut fm = added[n % added.len()].clone();
                    fm.command = shg_flows::mods::FlowModCommand::DeleteStrict;
                    let _ = t.apply_flow_mod(&fm, 0);
                }
                _ => {}
            }
            let now: BTreeSet<DumpPosition> = positions(&t).into_iter().collect();
            throughout.retain(|p| now.contains(p));
        }
        prop_assert!(seen.windows(2).all(|w| w[0] < w[1]), "not in strict dump order");
        for p in &throughout {
            prop_assert_eq!(seen.iter().filter(|s| *s == p).count(), 1);
        }
    }
}
