//! Group and meter table semantics: every group_mod/meter_mod error, bucket selection and
//! liveness, token-bucket metering on a virtual clock, and the counters behind the stats
//! replies.

use shg_flows::action::{group, meter, port, Action};
use shg_flows::group::{GroupTable, GroupTableConfig, Selection};
use shg_flows::meter::{MeterTable, MeterTableConfig, MeterVerdict};
use shg_flows::mods::{
    meter_flags, Bucket, GroupMod, GroupModCommand, GroupType, MeterBand, MeterMod, MeterModCommand,
};
use shg_flows::Error;

const SEC: u64 = 1_000_000_000;

// ---------------------------------------------------------------- groups

fn out(p: u32) -> Action {
    Action::Output {
        port: p,
        max_len: 0,
    }
}

fn bucket(actions: Vec<Action>) -> Bucket {
    Bucket {
        actions,
        ..Bucket::default()
    }
}

fn weighted(weight: u16, p: u32) -> Bucket {
    Bucket {
        weight,
        actions: vec![out(p)],
        ..Bucket::default()
    }
}

fn watching_port(p: u32) -> Bucket {
    Bucket {
        watch_port: p,
        actions: vec![out(p)],
        ..Bucket::default()
    }
}

fn gmod(command: GroupModCommand, t: GroupType, id: u32, buckets: Vec<Bucket>) -> GroupMod {
    GroupMod {
        command,
        group_type: t,
        group_id: id,
        buckets,
    }
}

fn add(t: GroupType, id: u32, buckets: Vec<Bucket>) -> GroupMod {
    gmod(GroupModCommand::Add, t, id, buckets)
}

fn modify(t: GroupType, id: u32, buckets: Vec<Bucket>) -> GroupMod {
    gmod(GroupModCommand::Modify, t, id, buckets)
}

fn delete(id: u32) -> GroupMod {
    gmod(GroupModCommand::Delete, GroupType::All, id, vec![])
}

fn err_name(r: Result<impl std::fmt::Debug, Error>) -> String {
    r.expect_err("expected an error").code.name()
}

/// Applies `gm` to `t`, expects error `code`, and checks the table did not change.
fn expect_group_err(t: &mut GroupTable, gm: &GroupMod, code: &str) {
    let before = t.group_desc();
    assert_eq!(err_name(t.apply_group_mod(gm, 0)), code, "for {gm:?}");
    assert_eq!(
        t.group_desc(),
        before,
        "a failed group_mod changed the table"
    );
}

fn all_up(_: u32) -> bool {
    true
}

#[test]
fn group_add_modify_delete_errors() {
    let mut t = GroupTable::new();
    t.apply_group_mod(&add(GroupType::All, 1, vec![bucket(vec![out(1)])]), 0)
        .unwrap();

    expect_group_err(
        &mut t,
        &add(GroupType::All, 1, vec![]),
        "OFPGMFC_GROUP_EXISTS",
    );
    expect_group_err(
        &mut t,
        &modify(GroupType::All, 2, vec![]),
        "OFPGMFC_UNKNOWN_GROUP",
    );
    // DELETE of an unknown id is not an error and deletes nothing.
    assert_eq!(
        t.apply_group_mod(&delete(2), 0).unwrap().deleted,
        Vec::<u32>::new()
    );
    assert!(t.contains(1));

    // Reserved ids.
    expect_group_err(
        &mut t,
        &add(GroupType::All, group::MAX + 1, vec![]),
        "OFPGMFC_INVALID_GROUP",
    );
    expect_group_err(
        &mut t,
        &add(GroupType::All, group::ALL, vec![]),
        "OFPGMFC_INVALID_GROUP",
    );
    expect_group_err(
        &mut t,
        &modify(GroupType::All, group::ANY, vec![]),
        "OFPGMFC_INVALID_GROUP",
    );
    expect_group_err(&mut t, &delete(group::ANY), "OFPGMFC_INVALID_GROUP");
    // group::MAX itself is a valid id.
    t.apply_group_mod(&add(GroupType::All, group::MAX, vec![]), 0)
        .unwrap();

    // A DELETE carrying buckets (1.3.5).
    let mut d = delete(1);
    d.buckets.push(bucket(vec![]));
    expect_group_err(&mut t, &d, "OFPGMFC_INVALID_GROUP");

    // Unknown type and command.
    expect_group_err(
        &mut t,
        &add(GroupType::Unknown(9), 3, vec![]),
        "OFPGMFC_BAD_TYPE",
    );
    expect_group_err(
        &mut t,
        &gmod(GroupModCommand::Unknown(7), GroupType::All, 3, vec![]),
        "OFPGMFC_BAD_COMMAND",
    );
    assert!(!t.contains(3));
}

#[test]
fn group_bucket_rule_errors() {
    let mut t = GroupTable::new();
    // Weight outside a select group: OFPGMFC_INVALID_GROUP (spec and OVS).
    for ty in [GroupType::All, GroupType::Indirect] {
        expect_group_err(
            &mut t,
            &add(ty, 1, vec![weighted(1, 1)]),
            "OFPGMFC_INVALID_GROUP",
        );
    }
    let ff_weighted = Bucket {
        weight: 2,
        watch_port: 1,
        ..Bucket::default()
    };
    expect_group_err(
        &mut t,
        &add(GroupType::FastFailover, 1, vec![ff_weighted]),
        "OFPGMFC_INVALID_GROUP",
    );
    // Indirect needs exactly one bucket.
    expect_group_err(
        &mut t,
        &add(GroupType::Indirect, 1, vec![]),
        "OFPGMFC_INVALID_GROUP",
    );
    expect_group_err(
        &mut t,
        &add(
            GroupType::Indirect,
            1,
            vec![bucket(vec![out(1)]), bucket(vec![out(2)])],
        ),
        "OFPGMFC_INVALID_GROUP",
    );
    // Fast failover without any watch.
    expect_group_err(
        &mut t,
        &add(
            GroupType::FastFailover,
            1,
            vec![watching_port(1), bucket(vec![out(2)])],
        ),
        "OFPGMFC_INVALID_GROUP",
    );
    // Watching in all/indirect groups.
    expect_group_err(
        &mut t,
        &add(GroupType::All, 1, vec![watching_port(1)]),
        "OFPGMFC_WATCH_UNSUPPORTED",
    );
    expect_group_err(
        &mut t,
        &add(GroupType::Indirect, 1, vec![watching_port(1)]),
        "OFPGMFC_WATCH_UNSUPPORTED",
    );
    // Watch ports that are not ports.
    for p in [
        0,
        port::IN_PORT,
        port::FLOOD,
        port::ALL,
        port::CONTROLLER,
        port::MAX + 1,
    ] {
        expect_group_err(
            &mut t,
            &add(GroupType::FastFailover, 1, vec![watching_port(p)]),
            "OFPGMFC_BAD_WATCH",
        );
    }
    // Watching a group that does not exist.
    let wg = |g: u32| Bucket {
        watch_group: g,
        actions: vec![out(1)],
        ..Bucket::default()
    };
    expect_group_err(
        &mut t,
        &add(GroupType::FastFailover, 1, vec![wg(5)]),
        "OFPGMFC_BAD_WATCH",
    );
    expect_group_err(
        &mut t,
        &add(GroupType::FastFailover, 1, vec![wg(group::ALL)]),
        "OFPGMFC_BAD_WATCH",
    );
    // Forwarding to a group that does not exist: the flow_mod rule (spec 6.4/6.5).
    expect_group_err(
        &mut t,
        &add(GroupType::All, 1, vec![bucket(vec![Action::Group(9)])]),
        "OFPBAC_BAD_OUT_GROUP",
    );
    expect_group_err(
        &mut t,
        &add(
            GroupType::All,
            1,
            vec![bucket(vec![Action::Group(group::ANY)])],
        ),
        "OFPBAC_BAD_OUT_GROUP",
    );
    assert!(t.is_empty());

    // Valid variants of the same shapes are accepted.
    t.apply_group_mod(
        &add(
            GroupType::FastFailover,
            1,
            vec![watching_port(1), watching_port(port::LOCAL)],
        ),
        0,
    )
    .unwrap();
    t.apply_group_mod(&add(GroupType::FastFailover, 2, vec![wg(1)]), 0)
        .unwrap();
    t.apply_group_mod(
        &add(GroupType::Indirect, 3, vec![bucket(vec![Action::Group(2)])]),
        0,
    )
    .unwrap();
    t.apply_group_mod(
        &add(GroupType::Select, 4, vec![weighted(0, 1), watching_port(2)]),
        0,
    )
    .unwrap();
}

#[test]
fn group_loops_and_chained_deletes() {
    let mut t = GroupTable::new();
    // Forwarding to itself.
    expect_group_err(
        &mut t,
        &add(GroupType::All, 1, vec![bucket(vec![Action::Group(1)])]),
        "OFPGMFC_LOOP",
    );
    let self_watch = Bucket {
        watch_group: 1,
        ..Bucket::default()
    };
    expect_group_err(
        &mut t,
        &add(GroupType::FastFailover, 1, vec![self_watch]),
        "OFPGMFC_LOOP",
    );

    // 1 -> 2 -> 3, then 3 -> 1 would close a loop.
    t.apply_group_mod(&add(GroupType::All, 3, vec![bucket(vec![out(3)])]), 0)
        .unwrap();
    t.apply_group_mod(
        &add(GroupType::Indirect, 2, vec![bucket(vec![Action::Group(3)])]),
        0,
    )
    .unwrap();
    t.apply_group_mod(
        &add(
            GroupType::All,
            1,
            vec![bucket(vec![out(1)]), bucket(vec![Action::Group(2)])],
        ),
        0,
    )
    .unwrap();
    expect_group_err(
        &mut t,
        &modify(GroupType::All, 3, vec![bucket(vec![Action::Group(1)])]),
        "OFPGMFC_LOOP",
    );
    // A diamond is not a loop: 4 -> {2, 3}.
    t.apply_group_mod(
        &add(
            GroupType::All,
            4,
            vec![
                bucket(vec![Action::Group(2)]),
                bucket(vec![Action::Group(3)]),
            ],
        ),
        0,
    )
    .unwrap();

    // Deleting a group another group forwards to is refused; the table is unchanged.
    expect_group_err(&mut t, &delete(3), "OFPGMFC_CHAINED_GROUP");
    expect_group_err(&mut t, &delete(2), "OFPGMFC_CHAINED_GROUP");
    // ... so is deleting a watched group.
    t.apply_group_mod(&add(GroupType::FastFailover, 5, vec![watching_port(1)]), 0)
        .unwrap();
    let w5 = Bucket {
        watch_group: 5,
        actions: vec![out(2)],
        ..Bucket::default()
    };
    t.apply_group_mod(&add(GroupType::FastFailover, 6, vec![w5]), 0)
        .unwrap();
    expect_group_err(&mut t, &delete(5), "OFPGMFC_CHAINED_GROUP");

    // From the top down it works, and every effect lists what went.
    assert_eq!(t.apply_group_mod(&delete(4), 0).unwrap().deleted, vec![4]);
    assert_eq!(t.apply_group_mod(&delete(1), 0).unwrap().deleted, vec![1]);
    assert_eq!(t.apply_group_mod(&delete(2), 0).unwrap().deleted, vec![2]);
    assert_eq!(t.apply_group_mod(&delete(3), 0).unwrap().deleted, vec![3]);
    // DELETE ALL takes everything, chains included.
    assert_eq!(
        t.apply_group_mod(&delete(group::ALL), 0).unwrap().deleted,
        vec![5, 6]
    );
    assert!(t.is_empty());
}

#[test]
fn group_limits() {
    let mut t = GroupTable::with_config(GroupTableConfig {
        max_groups: [2, 1, 1, 1],
        max_buckets: 3,
        ..GroupTableConfig::default()
    });
    let four = vec![bucket(vec![out(1)]); 4];
    expect_group_err(
        &mut t,
        &add(GroupType::All, 1, four),
        "OFPGMFC_OUT_OF_BUCKETS",
    );
    t.apply_group_mod(&add(GroupType::All, 1, vec![]), 0)
        .unwrap();
    t.apply_group_mod(&add(GroupType::All, 2, vec![]), 0)
        .unwrap();
    expect_group_err(
        &mut t,
        &add(GroupType::All, 3, vec![]),
        "OFPGMFC_OUT_OF_GROUPS",
    );
    t.apply_group_mod(&add(GroupType::Select, 3, vec![]), 0)
        .unwrap();
    // Changing a group's type counts against the new type.
    expect_group_err(
        &mut t,
        &modify(GroupType::Select, 1, vec![]),
        "OFPGMFC_OUT_OF_GROUPS",
    );
    // Modifying in place within the same type is fine even at the limit.
    t.apply_group_mod(&modify(GroupType::All, 1, vec![bucket(vec![out(2)])]), 0)
        .unwrap();
    let f = t.features();
    assert_eq!(f.max_groups, [2, 1, 1, 1]);
    assert_eq!(f.types, 0b1111);
    assert_eq!(
        f.capabilities, 0b1111,
        "select weight, select liveness, chaining, chaining checks"
    );
}

#[test]
fn all_and_indirect_selection() {
    let mut t = GroupTable::new();
    t.apply_group_mod(
        &add(
            GroupType::All,
            1,
            vec![bucket(vec![out(1)]), bucket(vec![out(2)])],
        ),
        0,
    )
    .unwrap();
    t.apply_group_mod(&add(GroupType::Indirect, 2, vec![bucket(vec![out(3)])]), 0)
        .unwrap();
    t.apply_group_mod(&add(GroupType::All, 3, vec![]), 0)
        .unwrap();
    assert_eq!(t.select_bucket(1, 42, &all_up), Some(Selection::All(2)));
    assert_eq!(t.select_bucket(1, 42, &|_| false), Some(Selection::All(2)));
    assert_eq!(t.select_bucket(2, 42, &|_| false), Some(Selection::One(0)));
    assert_eq!(t.select_bucket(3, 42, &all_up), Some(Selection::All(0)));
    assert_eq!(t.select_bucket(9, 42, &all_up), None);
    assert_eq!(t.get(2).unwrap().buckets()[0].actions, vec![out(3)]);
}

#[test]
fn select_distribution_follows_weights() {
    let mut t = GroupTable::new();
    let buckets = vec![
        weighted(1, 1),
        weighted(2, 2),
        weighted(0, 3),
        weighted(3, 4),
    ];
    t.apply_group_mod(&add(GroupType::Select, 1, buckets), 0)
        .unwrap();
    let n = 300_000u64;
    let mut counts = [0u64; 4];
    for h in 0..n {
        match t.select_bucket(1, h, &all_up) {
            Some(Selection::One(i)) => counts[i] += 1,
            other => panic!("select gave {other:?}"),
        }
    }
    assert_eq!(counts[2], 0, "weight 0 buckets are never chosen");
    for (i, w) in [(0, 1u64), (1, 2), (3, 3)] {
        let expect = n * w / 6;
        let diff = counts[i].abs_diff(expect);
        assert!(
            diff * 100 < expect * 2,
            "bucket {i}: {} vs {expect} expected (counts {counts:?})",
            counts[i]
        );
    }
}

#[test]
fn select_is_stable_and_moves_only_dead_flows() {
    let mut t = GroupTable::new();
    let b = |p| Bucket {
        weight: 1,
        watch_port: p,
        actions: vec![out(p)],
        ..Bucket::default()
    };
    t.apply_group_mod(&add(GroupType::Select, 1, vec![b(1), b(2), b(3)]), 0)
        .unwrap();
    let pick =
        |t: &GroupTable, h: u64, live: &dyn Fn(u32) -> bool| match t.select_bucket(1, h, live) {
            Some(Selection::One(i)) => Some(i),
            Some(Selection::None) => None,
            other => panic!("select gave {other:?}"),
        };
    let before: Vec<_> = (0..3000u64).map(|h| pick(&t, h, &all_up)).collect();
    // Same hash, same membership: same bucket, every time.
    for (h, b) in before.iter().enumerate() {
        assert_eq!(pick(&t, h as u64, &all_up), *b);
    }
    // Port 2 goes down: only flows that were on bucket 1 move, and never onto it.
    let down2 = |p: u32| p != 2;
    let mut moved = 0;
    for (h, b) in before.iter().enumerate() {
        let now = pick(&t, h as u64, &down2);
        assert_ne!(now, Some(1));
        if *b == Some(1) {
            moved += 1;
        } else {
            assert_eq!(now, *b, "hash {h} moved although its bucket stayed live");
        }
    }
    assert!(
        moved > 800 && moved < 1200,
        "{moved} flows were on bucket 1"
    );
    // Back up: everything returns where it was.
    for (h, b) in before.iter().enumerate() {
        assert_eq!(pick(&t, h as u64, &all_up), *b);
    }
    // Nothing live: no bucket.
    assert_eq!(pick(&t, 7, &|_| false), None);
}

#[test]
fn fast_failover_follows_port_liveness() {
    let mut t = GroupTable::new();
    t.apply_group_mod(
        &add(
            GroupType::FastFailover,
            1,
            vec![watching_port(1), watching_port(2), watching_port(3)],
        ),
        0,
    )
    .unwrap();
    let sel = |t: &GroupTable, down: &[u32]| {
        let down = down.to_vec();
        t.select_bucket(1, 0, &move |p| !down.contains(&p)).unwrap()
    };
    assert_eq!(sel(&t, &[]), Selection::One(0));
    assert_eq!(sel(&t, &[1]), Selection::One(1));
    assert_eq!(sel(&t, &[1, 2]), Selection::One(2));
    assert_eq!(sel(&t, &[2]), Selection::One(0));
    assert_eq!(sel(&t, &[1, 2, 3]), Selection::None);
    // Port 1 back: primary again.
    assert_eq!(sel(&t, &[2, 3]), Selection::One(0));
    assert!(!t.group_live(1, &|_| false));
    assert!(t.group_live(1, &|p| p == 3));
}

#[test]
fn fast_failover_follows_group_liveness() {
    let mut t = GroupTable::new();
    // Group 10 is live while port 5 or 6 is.
    t.apply_group_mod(
        &add(
            GroupType::FastFailover,
            10,
            vec![watching_port(5), watching_port(6)],
        ),
        0,
    )
    .unwrap();
    let via10 = Bucket {
        watch_group: 10,
        actions: vec![Action::Group(10)],
        ..Bucket::default()
    };
    t.apply_group_mod(
        &add(GroupType::FastFailover, 1, vec![via10, watching_port(1)]),
        0,
    )
    .unwrap();
    assert_eq!(t.select_bucket(1, 0, &all_up), Some(Selection::One(0)));
    assert_eq!(
        t.select_bucket(1, 0, &|p| p == 6 || p == 1),
        Some(Selection::One(0))
    );
    assert_eq!(t.select_bucket(1, 0, &|p| p == 1), Some(Selection::One(1)));
    assert_eq!(t.select_bucket(1, 0, &|_| false), Some(Selection::None));
    // A bucket watching both a port and a group is live if either is.
    let both = Bucket {
        watch_port: 2,
        watch_group: 10,
        ..Bucket::default()
    };
    t.apply_group_mod(&modify(GroupType::FastFailover, 1, vec![both]), 0)
        .unwrap();
    assert_eq!(t.select_bucket(1, 0, &|p| p == 2), Some(Selection::One(0)));
    assert_eq!(t.select_bucket(1, 0, &|p| p == 5), Some(Selection::One(0)));
    assert_eq!(t.select_bucket(1, 0, &|p| p == 1), Some(Selection::None));
}

#[test]
fn group_counters_stats_and_desc() {
    let mut t = GroupTable::new();
    t.apply_group_mod(
        &add(
            GroupType::All,
            2,
            vec![bucket(vec![out(1)]), bucket(vec![out(2)])],
        ),
        SEC,
    )
    .unwrap();
    t.apply_group_mod(
        &add(GroupType::Indirect, 1, vec![bucket(vec![Action::Group(2)])]),
        2 * SEC,
    )
    .unwrap();
    t.add_flow_ref(2).unwrap();
    t.add_flow_ref(2).unwrap();
    t.add_flow_ref(1).unwrap();
    t.remove_flow_ref(1);
    t.remove_flow_ref(1); // saturates
    assert_eq!(err_name(t.add_flow_ref(7)), "OFPBAC_BAD_OUT_GROUP");

    for bytes in [100, 200, 300] {
        let sel = t.select_bucket(2, 0, &all_up).unwrap();
        t.record(2, sel, bytes);
    }
    let sel = t.select_bucket(1, 0, &all_up).unwrap();
    t.record(1, sel, 60);

    let now = 4 * SEC + 250;
    let stats = t.group_stats(group::ALL, now);
    assert_eq!(stats.len(), 2);
    assert_eq!((stats[0].group_id, stats[1].group_id), (1, 2));
    assert_eq!(stats[0].ref_count, 0);
    assert_eq!((stats[0].packet_count, stats[0].byte_count), (1, 60));
    assert_eq!((stats[0].duration_sec, stats[0].duration_nsec), (2, 250));
    // Two flows plus group 1 forward to group 2.
    assert_eq!(stats[1].ref_count, 3);
    assert_eq!((stats[1].packet_count, stats[1].byte_count), (3, 600));
    assert_eq!((stats[1].duration_sec, stats[1].duration_nsec), (3, 250));
    assert_eq!(stats[1].bucket_stats.len(), 2);
    assert_eq!(
        (
            stats[1].bucket_stats[1].packet_count,
            stats[1].bucket_stats[1].byte_count
        ),
        (3, 600)
    );
    assert_eq!(t.group_stats(2, now), vec![stats[1].clone()]);
    assert!(t.group_stats(99, now).is_empty());

    // MODIFY keeps flow refs, group counters and age; bucket counters restart.
    t.apply_group_mod(
        &modify(GroupType::All, 2, vec![bucket(vec![out(3)])]),
        5 * SEC,
    )
    .unwrap();
    let s = &t.group_stats(2, 6 * SEC)[0];
    assert_eq!((s.ref_count, s.packet_count, s.duration_sec), (3, 3, 5));
    assert_eq!(s.bucket_stats.len(), 1);
    assert_eq!(s.bucket_stats[0].packet_count, 0);

    let desc = t.group_desc();
    assert_eq!(desc.len(), 2);
    assert_eq!(desc[1].group_id, 2);
    assert_eq!(desc[1].group_type, GroupType::All);
    assert_eq!(desc[1].buckets, vec![bucket(vec![out(3)])]);
}

// ---------------------------------------------------------------- meters

fn mmod(command: MeterModCommand, flags: u16, id: u32, bands: Vec<MeterBand>) -> MeterMod {
    MeterMod {
        command,
        flags,
        meter_id: id,
        bands,
    }
}

fn drop_band(rate: u32, burst_size: u32) -> MeterBand {
    MeterBand::Drop { rate, burst_size }
}

fn remark(rate: u32, burst_size: u32, prec_level: u8) -> MeterBand {
    MeterBand::DscpRemark {
        rate,
        burst_size,
        prec_level,
    }
}

const KBPS: u16 = meter_flags::KBPS;
const PKTPS: u16 = meter_flags::PKTPS;
const BURST: u16 = meter_flags::BURST;

fn madd(flags: u16, id: u32, bands: Vec<MeterBand>) -> MeterMod {
    mmod(MeterModCommand::Add, flags, id, bands)
}

fn mdel(id: u32) -> MeterMod {
    mmod(MeterModCommand::Delete, 0, id, vec![])
}

fn expect_meter_err(t: &mut MeterTable, mm: &MeterMod, code: &str) {
    let before = t.meter_config(meter::ALL).unwrap();
    assert_eq!(err_name(t.apply_meter_mod(mm, 0)), code, "for {mm:?}");
    assert_eq!(
        t.meter_config(meter::ALL).unwrap(),
        before,
        "a failed meter_mod changed the table"
    );
}

#[test]
fn meter_mod_errors() {
    let mut t = MeterTable::new();
    let ok = vec![drop_band(1000, 0)];
    t.apply_meter_mod(&madd(KBPS, 1, ok.clone()), 0).unwrap();

    expect_meter_err(&mut t, &madd(KBPS, 1, ok.clone()), "OFPMMFC_METER_EXISTS");
    expect_meter_err(
        &mut t,
        &mmod(MeterModCommand::Modify, KBPS, 2, ok.clone()),
        "OFPMMFC_UNKNOWN_METER",
    );
    // DELETE of an unknown meter: no error, nothing deleted.
    assert!(t.apply_meter_mod(&mdel(2), 0).unwrap().deleted.is_empty());

    for id in [0, meter::MAX + 1, meter::ALL, 0xffff_fff0] {
        expect_meter_err(&mut t, &madd(KBPS, id, ok.clone()), "OFPMMFC_INVALID_METER");
    }
    expect_meter_err(&mut t, &mdel(0), "OFPMMFC_INVALID_METER");
    expect_meter_err(&mut t, &mdel(meter::MAX + 1), "OFPMMFC_INVALID_METER");

    for flags in [0, KBPS | PKTPS, BURST, KBPS | 0x10, PKTPS | 0x8000] {
        expect_meter_err(&mut t, &madd(flags, 3, ok.clone()), "OFPMMFC_BAD_FLAGS");
    }
    expect_meter_err(
        &mut t,
        &madd(KBPS, 3, vec![drop_band(0, 0)]),
        "OFPMMFC_BAD_RATE",
    );
    expect_meter_err(
        &mut t,
        &madd(PKTPS, 3, vec![drop_band(10, 0), remark(0, 0, 1)]),
        "OFPMMFC_BAD_RATE",
    );
    expect_meter_err(
        &mut t,
        &madd(KBPS, 3, vec![drop_band(1000, 10)]),
        "OFPMMFC_BAD_BURST",
    );
    expect_meter_err(
        &mut t,
        &madd(KBPS | BURST, 3, vec![drop_band(1000, 0)]),
        "OFPMMFC_BAD_BURST",
    );
    let exp = MeterBand::Experimenter {
        rate: 10,
        burst_size: 0,
        experimenter: 0x2320,
        data: vec![],
    };
    expect_meter_err(&mut t, &madd(KBPS, 3, vec![exp]), "OFPMMFC_BAD_BAND");
    let unk = MeterBand::Unknown {
        typ: 7,
        rate: 10,
        burst_size: 0,
        body: vec![0; 4],
    };
    expect_meter_err(&mut t, &madd(KBPS, 3, vec![unk]), "OFPMMFC_BAD_BAND");
    for prec in [0, 3, 255] {
        expect_meter_err(
            &mut t,
            &madd(KBPS, 3, vec![remark(10, 0, prec)]),
            "OFPMMFC_BAD_BAND_VALUE",
        );
    }
    expect_meter_err(
        &mut t,
        &madd(KBPS, 3, vec![drop_band(10, 0); 9]),
        "OFPMMFC_OUT_OF_BANDS",
    );
    expect_meter_err(
        &mut t,
        &mmod(MeterModCommand::Unknown(3), KBPS, 3, ok.clone()),
        "OFPMMFC_BAD_COMMAND",
    );
    // The same rules apply to MODIFY.
    expect_meter_err(
        &mut t,
        &mmod(MeterModCommand::Modify, KBPS, 1, vec![drop_band(0, 0)]),
        "OFPMMFC_BAD_RATE",
    );

    // Valid edge cases: no bands, meter::MAX, virtual meters, 8 bands, prec 2.
    t.apply_meter_mod(&madd(PKTPS, 3, vec![]), 0).unwrap();
    t.apply_meter_mod(
        &madd(KBPS | meter_flags::STATS, meter::MAX, vec![remark(5, 0, 2)]),
        0,
    )
    .unwrap();
    t.apply_meter_mod(&madd(PKTPS, meter::CONTROLLER, vec![drop_band(100, 0)]), 0)
        .unwrap();
    t.apply_meter_mod(
        &madd(PKTPS | BURST, meter::SLOWPATH, vec![drop_band(100, 10); 8]),
        0,
    )
    .unwrap();
    assert_eq!(t.len(), 5);
}

#[test]
fn meter_limits_and_deletes() {
    let mut t = MeterTable::with_config(MeterTableConfig {
        max_meters: 2,
        max_bands: 1,
    });
    t.apply_meter_mod(&madd(KBPS, 1, vec![drop_band(1, 0)]), 0)
        .unwrap();
    t.apply_meter_mod(&madd(KBPS, 2, vec![drop_band(1, 0)]), 0)
        .unwrap();
    expect_meter_err(
        &mut t,
        &madd(KBPS, 3, vec![drop_band(1, 0)]),
        "OFPMMFC_OUT_OF_METERS",
    );
    expect_meter_err(
        &mut t,
        &madd(KBPS, 3, vec![drop_band(1, 0); 2]),
        "OFPMMFC_OUT_OF_BANDS",
    );
    // Virtual meters do not count against max_meters...
    t.apply_meter_mod(&madd(PKTPS, meter::CONTROLLER, vec![drop_band(1, 0)]), 0)
        .unwrap();
    // ... and survive DELETE ALL.
    assert_eq!(
        t.apply_meter_mod(&mdel(meter::ALL), 0).unwrap().deleted,
        vec![1, 2]
    );
    assert!(t.contains(meter::CONTROLLER));
    assert_eq!(
        t.apply_meter_mod(&mdel(meter::CONTROLLER), 0)
            .unwrap()
            .deleted,
        vec![meter::CONTROLLER]
    );
    assert!(t.is_empty());
    let f = t.features();
    assert_eq!((f.max_meter, f.max_bands, f.max_color), (2, 1, 0));
    assert_eq!(f.band_types, (1 << 1) | (1 << 2), "drop and dscp_remark");
    assert_eq!(f.capabilities, 0b1111, "kbps, pktps, burst, stats");
}

/// Offers `count` packets of `bytes` bytes every `gap_ns`, starting at `start`; returns
/// (passed, dropped, remarked) and the time after the last packet.
fn offer(
    t: &mut MeterTable,
    id: u32,
    bytes: u32,
    gap_ns: u64,
    count: u64,
    start: u64,
) -> ([u64; 3], u64) {
    let mut r = [0u64; 3];
    let mut now = start;
    for _ in 0..count {
        match t.meter_packet(id, bytes, now) {
            MeterVerdict::Pass => r[0] += 1,
            MeterVerdict::Drop => r[1] += 1,
            MeterVerdict::DscpRemark { .. } => r[2] += 1,
        }
        now += gap_ns;
    }
    (r, now)
}

fn within(actual: u64, expect: u64, percent: u64) -> bool {
    actual.abs_diff(expect) * 100 <= expect * percent
}

#[test]
fn kbps_meter_passes_its_rate_under_twice_the_load() {
    let mut t = MeterTable::new();
    // 1000 kb/s, burst 10 kilobits. 125-byte frames are 1000 bits: the rate is 1000 frames/s.
    t.apply_meter_mod(&madd(KBPS | BURST, 1, vec![drop_band(1000, 10)]), 0)
        .unwrap();
    // Offer 2000 kb/s (one frame every 500 us) for 10 s.
    let ([pass, dropped, _], _) = offer(&mut t, 1, 125, 500_000, 20_000, 0);
    assert!(within(pass, 10_000, 2), "passed {pass}");
    assert_eq!(pass + dropped, 20_000);
    // Exactly: the full bucket (10 frames) plus one frame per ms after t=0.
    assert!(pass.abs_diff(10_010) <= 1, "passed {pass}");
}

#[test]
fn kbps_counts_bytes_pktps_counts_packets() {
    // The same 100 kb/s limit lets through 8x more 125-byte frames than 1000-byte frames.
    let mut t = MeterTable::new();
    t.apply_meter_mod(&madd(KBPS | BURST, 1, vec![drop_band(100, 1)]), 0)
        .unwrap();
    t.apply_meter_mod(&madd(KBPS | BURST, 2, vec![drop_band(100, 8)]), 0)
        .unwrap();
    let ([small, ..], _) = offer(&mut t, 1, 125, 1_000_000, 10_000, 0); // 1000 kb/s offered
    let ([big, ..], _) = offer(&mut t, 2, 1000, 1_000_000, 10_000, 0); // 8000 kb/s offered
    assert!(within(small, 1000, 2), "small {small}");
    assert!(within(big, 125, 7), "big {big}");

    // A pktps meter does not care about size: 100 packets/s of 1500-byte or 64-byte frames.
    let mut p = MeterTable::new();
    p.apply_meter_mod(&madd(PKTPS | BURST, 1, vec![drop_band(100, 5)]), 0)
        .unwrap();
    let mut now = 0;
    let mut passed = 0u64;
    for i in 0..2000u64 {
        let bytes = if i % 2 == 0 { 1500 } else { 64 };
        if p.meter_packet(1, bytes, now) == MeterVerdict::Pass {
            passed += 1;
        }
        now += 5_000_000; // 200 packets/s for 10 s
    }
    assert!(passed.abs_diff(1005) <= 1, "passed {passed}");
}

#[test]
fn burst_behaviour() {
    let mut t = MeterTable::new();
    // 1000 kb/s, 20 kilobit burst, 1000-bit frames.
    t.apply_meter_mod(&madd(KBPS | BURST, 1, vec![drop_band(1000, 20)]), 0)
        .unwrap();
    // Back to back at one instant: the bucket holds exactly 20 frames.
    let ([pass, dropped, _], _) = offer(&mut t, 1, 125, 0, 30, 0);
    assert_eq!((pass, dropped), (20, 10));
    // 10 ms idle refills 10 kilobits: 10 more frames.
    let ([pass, dropped, _], _) = offer(&mut t, 1, 125, 0, 15, 10_000_000);
    assert_eq!((pass, dropped), (10, 5));
    // A long idle period refills to the depth, not beyond.
    let ([pass, _, _], _) = offer(&mut t, 1, 125, 0, 100, 1000 * SEC);
    assert_eq!(pass, 20);
    // Sub-bit refills are not lost: 1 us gaps refill 1 bit each, 1000 gaps pay one frame.
    let ([pass, _, _], _) = offer(&mut t, 1, 125, 1_000, 1001, 2000 * SEC);
    assert_eq!(
        pass,
        20 + 1,
        "the full bucket plus one frame refilled over 1 ms"
    );

    // Without OFPMF_BURST the bucket holds one second at the rate: 1000 frames.
    let mut d = MeterTable::new();
    d.apply_meter_mod(&madd(KBPS, 1, vec![drop_band(1000, 0)]), 0)
        .unwrap();
    let ([pass, dropped, _], _) = offer(&mut d, 1, 125, 0, 1500, 0);
    assert_eq!((pass, dropped), (1000, 500));
    // pktps likewise: 50 packets/s -> 50 back to back.
    d.apply_meter_mod(&madd(PKTPS, 2, vec![drop_band(50, 0)]), 0)
        .unwrap();
    let ([pass, ..], _) = offer(&mut d, 2, 9000, 0, 60, 0);
    assert_eq!(pass, 50);
}

#[test]
fn highest_applicable_band_acts() {
    // Buckets of one 1000-bit frame each. First frame: nothing applies. Second, at the same
    // instant: both bands apply and the higher rate acts.
    let mut t = MeterTable::new();
    t.apply_meter_mod(
        &madd(
            KBPS | BURST,
            1,
            vec![remark(1000, 1, 1), drop_band(2000, 1)],
        ),
        0,
    )
    .unwrap();
    assert_eq!(t.meter_packet(1, 125, 0), MeterVerdict::Pass);
    assert_eq!(t.meter_packet(1, 125, 0), MeterVerdict::Drop);
    t.apply_meter_mod(
        &madd(
            KBPS | BURST,
            2,
            vec![drop_band(1000, 1), remark(2000, 1, 2)],
        ),
        0,
    )
    .unwrap();
    assert_eq!(t.meter_packet(2, 125, 0), MeterVerdict::Pass);
    assert_eq!(
        t.meter_packet(2, 125, 0),
        MeterVerdict::DscpRemark { prec_level: 2 }
    );
    // Only the lower band applies: it acts.
    t.apply_meter_mod(
        &madd(
            KBPS | BURST,
            3,
            vec![remark(1000, 1, 1), drop_band(2000, 2)],
        ),
        0,
    )
    .unwrap();
    assert_eq!(t.meter_packet(3, 125, 0), MeterVerdict::Pass);
    assert_eq!(
        t.meter_packet(3, 125, 0),
        MeterVerdict::DscpRemark { prec_level: 1 }
    );
    assert_eq!(t.meter_packet(3, 125, 0), MeterVerdict::Drop);
    // A meter with no band only counts; an unknown meter passes.
    t.apply_meter_mod(&madd(PKTPS, 4, vec![]), 0).unwrap();
    assert_eq!(t.meter_packet(4, 60, 0), MeterVerdict::Pass);
    assert_eq!(t.meter_packet(77, 60, 0), MeterVerdict::Pass);
}

#[test]
fn two_bands_under_load() {
    // Remark above 1000 kb/s, drop above 2000 kb/s; offer 3000 kb/s for 10 s.
    let mut t = MeterTable::new();
    t.apply_meter_mod(
        &madd(
            KBPS | BURST,
            1,
            vec![drop_band(2000, 10), remark(1000, 10, 1)],
        ),
        0,
    )
    .unwrap();
    let (r, _) = offer(&mut t, 1, 125, 333_333, 30_000, 0);
    let [pass, dropped, remarked] = r;
    assert!(within(dropped, 10_000, 3), "{r:?}");
    assert!(within(pass + remarked, 20_000, 2), "{r:?}");
    assert!(pass > 0 && remarked > 0, "{r:?}");
    assert!(
        pass <= 10_050,
        "at most the remark rate passes unmarked: {r:?}"
    );
    // Band counters count what each band acted on.
    let s = &t.meter_stats(1, 10 * SEC).unwrap()[0];
    assert_eq!(s.band_stats[0].packet_band_count, dropped);
    assert_eq!(s.band_stats[0].byte_band_count, dropped * 125);
    assert_eq!(s.band_stats[1].packet_band_count, remarked);
    assert_eq!((s.packet_in_count, s.byte_in_count), (30_000, 30_000 * 125));
}

#[test]
fn meter_counters_stats_and_config() {
    let mut t = MeterTable::new();
    t.apply_meter_mod(&madd(PKTPS | BURST, 5, vec![drop_band(10, 2)]), SEC)
        .unwrap();
    t.add_flow_ref(5).unwrap();
    t.add_flow_ref(5).unwrap();
    t.add_flow_ref(5).unwrap();
    t.remove_flow_ref(5);
    assert_eq!(err_name(t.add_flow_ref(6)), "OFPMMFC_INVALID_METER");
    for bytes in [100, 200, 300] {
        t.meter_packet(5, bytes, SEC);
    }
    let s = t.meter_stats(5, 3 * SEC + 7).unwrap();
    assert_eq!(s.len(), 1);
    let s = &s[0];
    assert_eq!((s.meter_id, s.flow_count), (5, 2));
    assert_eq!((s.packet_in_count, s.byte_in_count), (3, 600));
    assert_eq!((s.duration_sec, s.duration_nsec), (2, 7));
    assert_eq!(
        (
            s.band_stats[0].packet_band_count,
            s.band_stats[0].byte_band_count
        ),
        (1, 300)
    );
    assert_eq!(err_name(t.meter_stats(6, 0)), "OFPMMFC_UNKNOWN_METER");
    assert_eq!(err_name(t.meter_config(6)), "OFPMMFC_UNKNOWN_METER");

    // MODIFY: new bands with full buckets and fresh band counters; flow_count, in-counters
    // and age stay.
    let new_bands = vec![drop_band(10, 1), remark(5, 1, 1)];
    t.apply_meter_mod(
        &mmod(MeterModCommand::Modify, PKTPS | BURST, 5, new_bands.clone()),
        2 * SEC,
    )
    .unwrap();
    let s = &t.meter_stats(meter::ALL, 3 * SEC).unwrap()[0];
    assert_eq!((s.flow_count, s.packet_in_count, s.duration_sec), (2, 3, 2));
    assert_eq!(s.band_stats.len(), 2);
    assert_eq!(s.band_stats[0].packet_band_count, 0);
    assert_eq!(t.meter_packet(5, 64, 2 * SEC), MeterVerdict::Pass);
    let cfg = t.meter_config(meter::ALL).unwrap();
    assert_eq!(cfg.len(), 1);
    assert_eq!((cfg[0].meter_id, cfg[0].flags), (5, PKTPS | BURST));
    assert_eq!(cfg[0].bands, new_bands);

    assert_eq!(
        t.apply_meter_mod(&mdel(5), 4 * SEC).unwrap().deleted,
        vec![5]
    );
    assert!(t.meter_stats(meter::ALL, 0).unwrap().is_empty());
}

// ------------------------------------------- meters: rates, bytes, bands, DSCP, tester

/// Offers `pps` evenly spaced frames per second of `bytes` bytes from `start` for `secs`
/// seconds; returns [passed, dropped, remarked at prec 1, remarked at prec 2] and the end time.
fn offer_load(
    t: &mut MeterTable,
    id: u32,
    bytes: u32,
    pps: u64,
    secs: u64,
    start: u64,
) -> ([u64; 4], u64) {
    let mut r = [0u64; 4];
    let gap = SEC / pps;
    let mut now = start;
    for _ in 0..pps * secs {
        match t.meter_packet(id, bytes, now) {
            MeterVerdict::Pass => r[0] += 1,
            MeterVerdict::Drop => r[1] += 1,
            MeterVerdict::DscpRemark { prec_level: 1 } => r[2] += 1,
            MeterVerdict::DscpRemark { .. } => r[3] += 1,
        }
        now += gap;
    }
    (r, now)
}

/// Runs `load` pps for 6 s (spending the initial one-second buckets: a bucket of one
/// second at rate R drains in R / (load - R) seconds), then measures 10 s; returns
/// per-second rates [passed, dropped, prec 1, prec 2].
fn steady_rates(t: &mut MeterTable, id: u32, bytes: u32, load: u64) -> [u64; 4] {
    let (_, now) = offer_load(t, id, bytes, load, 6, SEC);
    let (r, _) = offer_load(t, id, bytes, load, 10, now);
    r.map(|x| (x + 5) / 10)
}

#[test]
fn single_band_rates_at_three_offered_loads() {
    // kbps: 8000 kb/s with 1000-byte frames is 1000 frames/s. pktps: 1000 packets/s.
    // Drop and dscp_remark bands, loads of 0.5x, 1.5x and 3x the rate: the band passes
    // min(load, rate) and acts on the rest.
    for (flags, rate, bytes) in [(KBPS, 8000, 1000), (PKTPS, 1000, 64), (PKTPS, 1000, 1500)] {
        for remark_band in [false, true] {
            for load in [500u64, 1500, 3000] {
                let mut t = MeterTable::new();
                let band = if remark_band {
                    remark(rate, 0, 1)
                } else {
                    drop_band(rate, 0)
                };
                t.apply_meter_mod(&madd(flags, 1, vec![band]), 0).unwrap();
                let [pass, dropped, prec1, prec2] = steady_rates(&mut t, 1, bytes, load);
                let over = load.saturating_sub(1000);
                let acted = if remark_band { prec1 } else { dropped };
                let what = format!("flags {flags} remark {remark_band} load {load}");
                assert!(within(pass, load.min(1000), 1), "{what}: passed {pass}/s");
                assert!(
                    acted.abs_diff(over) <= 10,
                    "{what}: acted on {acted}/s, want {over}"
                );
                assert_eq!(pass + dropped + prec1 + prec2, load, "{what}");
                assert_eq!(prec2, 0);
                assert!(remark_band || prec1 == 0);
                assert!(!remark_band || dropped == 0);
            }
        }
    }
}

#[test]
fn kbps_counts_frame_bytes_as_given() {
    // 12 112 kb/s is exactly 1000 untagged full-size frames (1514 bytes) per second; the
    // same meter passes 4 bytes x 8 less per tagged frame (1518 bytes): 997.4 frames/s.
    for (bytes, want_per_10s) in [(1514u32, 10_000u64), (1518, 9_974)] {
        let mut t = MeterTable::new();
        t.apply_meter_mod(&madd(KBPS | BURST, 1, vec![drop_band(12_112, 100)]), 0)
            .unwrap();
        // Offer 2000 frames/s for 10 s after the 100-kilobit bucket (8 frames) is spent (a
        // bucket of barely one frame would lose refills to its cap between arrivals).
        let (_, now) = offer_load(&mut t, 1, bytes, 2000, 1, 0);
        let ([pass, ..], _) = offer_load(&mut t, 1, bytes, 2000, 10, now);
        assert!(
            pass.abs_diff(want_per_10s) <= 2,
            "{bytes}-byte frames: {pass} passed in 10 s"
        );
        // The in-counters hold the same bytes.
        let (p, b) = t.get(1).unwrap().in_counts();
        assert_eq!(b, p * u64::from(bytes));
    }
}

#[test]
fn burst_sizes_are_honoured() {
    // After a long idle time a meter lets exactly its burst through back to back, then
    // exactly its rate: kbps burst 100 kilobits of 1000-bit frames, pktps burst 7 packets.
    for (flags, burst, bytes, want_burst) in [(KBPS, 100, 125, 100), (PKTPS, 7, 1500, 7)] {
        let mut t = MeterTable::new();
        t.apply_meter_mod(&madd(flags | BURST, 1, vec![drop_band(1000, burst)]), 0)
            .unwrap();
        let ([pass, dropped, ..], _) = offer(&mut t, 1, bytes, 0, 1000, 3600 * SEC);
        assert_eq!(
            (pass, dropped),
            (want_burst, 1000 - want_burst),
            "flags {flags}"
        );
        // Then 1000 more back to back after 50 ms: the 50 ms refill (50 frames), but never
        // more than the burst.
        let ([pass, ..], _) = offer(&mut t, 1, bytes, 0, 1000, 3600 * SEC + 50_000_000);
        assert_eq!(pass, want_burst.min(50), "flags {flags}");
        // A burst larger than what 1 s at the rate holds is kept (no cap at the rate).
        let mut big = MeterTable::new();
        big.apply_meter_mod(&madd(flags | BURST, 1, vec![drop_band(10, burst * 10)]), 0)
            .unwrap();
        let ([pass, ..], _) = offer(&mut big, 1, bytes, 0, 10_000, 5 * SEC);
        assert_eq!(pass, want_burst * 10, "flags {flags}");
    }
}

#[test]
fn band_selection_is_the_highest_exceeded_rate() {
    // remark prec 1 above 1000 frames/s, remark prec 2 above 2000, drop above 3000 (kbps,
    // 1000-bit frames). At each load, every band gets exactly the traffic between its rate
    // and the next band's: a packet over a higher band is not charged to the lower ones.
    let bands = vec![remark(2000, 0, 2), drop_band(3000, 0), remark(1000, 0, 1)];
    for (load, want) in [
        (800u64, [800u64, 0, 0, 0]),
        (1500, [1000, 0, 500, 0]),
        (2500, [1000, 0, 1000, 500]),
        (4000, [1000, 1000, 1000, 1000]),
    ] {
        let mut t = MeterTable::new();
        t.apply_meter_mod(&madd(KBPS, 1, bands.clone()), 0).unwrap();
        let got = steady_rates(&mut t, 1, 125, load);
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.abs_diff(w) <= 10,
                "load {load}: got {got:?}, want {want:?}"
            );
        }
    }
    // Band counters count what each band acted on, in the meter's band order.
    let mut t = MeterTable::new();
    t.apply_meter_mod(&madd(KBPS, 1, bands), 0).unwrap();
    let ([pass, dropped, p1, p2], end) = offer_load(&mut t, 1, 125, 4000, 5, 0);
    let s = &t.meter_stats(1, end).unwrap()[0];
    let counts: Vec<u64> = s.band_stats.iter().map(|b| b.packet_band_count).collect();
    assert_eq!(counts, vec![p2, dropped, p1]);
    let bytes: Vec<u64> = s.band_stats.iter().map(|b| b.byte_band_count).collect();
    assert_eq!(bytes, vec![p2 * 125, dropped * 125, p1 * 125]);
    assert_eq!(s.packet_in_count, pass + dropped + p1 + p2);
}

#[test]
fn dscp_remark_raises_af_drop_precedence() {
    use shg_flows::meter::remark_dscp;
    // AFxy = 8x + 2y. prec_level adds to y, saturating at 3.
    for class in 1..=4u8 {
        for dp in 1..=3u8 {
            let dscp = 8 * class + 2 * dp;
            for prec in 1..=2u8 {
                let want = 8 * class + 2 * (dp + prec).min(3);
                assert_eq!(remark_dscp(dscp, prec), want, "AF{class}{dp} + {prec}");
            }
        }
    }
    // The tester's case: AF21 (18) + 1 = AF22 (20).
    assert_eq!(remark_dscp(18, 1), 20);
    // No drop precedence: best effort, class selectors, EF, odd and unassigned values.
    for dscp in [0u8, 8, 16, 24, 32, 40, 46, 48, 56, 11, 2, 4, 6, 63, 42, 50] {
        assert_eq!(remark_dscp(dscp, 1), dscp, "DSCP {dscp}");
        assert_eq!(remark_dscp(dscp, 2), dscp, "DSCP {dscp}");
    }
    // Only the 6 DSCP bits are looked at.
    assert_eq!(remark_dscp(0xc0 | 18, 1), 20);
}

/// The os-ken switch tester's dscp_remark check, as tester.py computes it: bytes (kbps) or
/// packets (pktps) counted per DSCP over the measured time `elapsed`, compared with the
/// expected rate (kbps in units of 1024 bits) with a 10 % margin each way.
fn tester_accepts(measured: u64, expect_rate: u64, kbps: bool, elapsed_s: f64) -> bool {
    let conv = if kbps { 1024.0 / 8.0 } else { 1.0 };
    let expected = expect_rate as f64 * elapsed_s * conv;
    (measured as f64 - expected).abs() <= expected * 0.10
}

#[test]
fn osken_dscp_remark_cases_pass_at_the_nominal_load_and_explain_the_failures() {
    // 02_DSCP_REMARK_00_KBPS_00_1M: meter 1000 kbps dscp_remark prec 1; 175 frames/s of
    // 1500 bytes (2100 kb/s) for 30 s; the tester expects 1000 "kbps" remarked (DSCP 20)
    // and 1000 unremarked (DSCP 18), each within 10 %. The tester's sender sends in 10 ms
    // ticks (1.75 frames per tick).
    let run = |pps_scaled_by_1000: u64, elapsed_s: f64| {
        let mut t = MeterTable::new();
        t.apply_meter_mod(&madd(KBPS, 1, vec![remark(1000, 0, 1)]), 0)
            .unwrap();
        let gap = SEC * 1000 / pps_scaled_by_1000;
        let count = pps_scaled_by_1000 * 30 / 1000;
        let ([pass, _, prec1, _], _) = {
            let mut r = [0u64; 4];
            let mut now = 0;
            for _ in 0..count {
                match t.meter_packet(1, 1500, now) {
                    MeterVerdict::Pass => r[0] += 1,
                    MeterVerdict::DscpRemark { .. } => r[2] += 1,
                    MeterVerdict::Drop => r[1] += 1,
                }
                now += gap;
            }
            (r, now)
        };
        (
            tester_accepts(pass * 1500, 1000, true, elapsed_s),
            tester_accepts(prec1 * 1500, 1000, true, elapsed_s),
            prec1 as f64 * 1500.0 / 128.0 / elapsed_s,
        )
    };
    // At the nominal 175 frames/s, both shares pass (unmarked 1009, remarked 1042 "kbps").
    let (a, b, _) = run(175_000, 30.0);
    assert!(a && b, "nominal load must pass");
    // What the tester measured from shg-switch: remarked 892 "kbps". With the meter's exact
    // semantics that is what an offered load of about 163 frames/s (93 % of nominal) over
    // a ~31 s measured window gives; the unmarked share stays within its margin.
    let (a, b, remarked) = run(163_000, 31.0);
    assert!(a, "the unmarked share passes");
    assert!(
        !b && (870.0..910.0).contains(&remarked),
        "remarked {remarked:.0}"
    );

    // pktps, 02_DSCP_REMARK_01_PKTPS_00_100: meter 100 pktps; 200 pps offered; expected 100
    // remarked +- 10. Observed on the tester switch: 190 pps offered -> 86.7 pps remarked
    // over the 30 s of sending (79.8 measured over the tester's longer window): a 5 %
    // shortfall in offered load is a 10 % shortfall in the remarked share.
    let mut t = MeterTable::new();
    t.apply_meter_mod(&madd(PKTPS, 1, vec![remark(100, 0, 1)]), 0)
        .unwrap();
    let ([pass, _, prec1, _], _) = offer_load(&mut t, 1, 1500, 190, 30, 0);
    assert!(
        pass.abs_diff(3000 + 100) <= 2,
        "the rate for 30 s plus the one-second bucket: {pass}"
    );
    assert_eq!(prec1, 190 * 30 - pass);
    assert!(!tester_accepts(prec1, 100, false, 30.0));
    let mut t = MeterTable::new();
    t.apply_meter_mod(&madd(PKTPS, 1, vec![remark(100, 0, 1)]), 0)
        .unwrap();
    let ([pass, _, prec1, _], _) = offer_load(&mut t, 1, 1500, 200, 30, 0);
    assert!(tester_accepts(pass, 100, false, 30.0) && tester_accepts(prec1, 100, false, 30.0));
}

// ---------------------------------------------------------------- properties

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// (command, type, id, buckets as (weight, watch_port, watch_group, forward_to)).
    type RawMod = (u16, u8, u32, Vec<(u16, u32, u32, Option<u32>)>);

    fn raw_mod() -> impl Strategy<Value = RawMod> {
        let id = prop_oneof![8 => 1u32..6, 1 => Just(group::ALL), 1 => Just(group::ANY)];
        let watch_group = prop_oneof![3 => Just(group::ANY), 1 => 1u32..6];
        let watch_port = prop_oneof![3 => Just(port::ANY), 1 => 0u32..4];
        let weight = prop_oneof![3 => Just(0u16), 1 => 1u16..3];
        let bucket = (
            weight,
            watch_port,
            watch_group,
            proptest::option::of(1u32..6),
        );
        let kind = prop_oneof![4 => 0u8..4, 1 => 4u8..6];
        let change = (
            0u16..2,
            kind,
            id.clone(),
            proptest::collection::vec(bucket, 0..3),
        );
        let delete = (Just(2u16), Just(0u8), id, Just(vec![]));
        let odd = (3u16..5, 0u8..4, 1u32..6, Just(vec![]));
        prop_oneof![6 => change, 3 => delete, 1 => odd]
    }

    fn to_mod((command, t, id, buckets): RawMod) -> GroupMod {
        GroupMod {
            command: command.into(),
            group_type: t.into(),
            group_id: id,
            buckets: buckets
                .into_iter()
                .map(|(weight, watch_port, watch_group, fwd)| Bucket {
                    weight,
                    watch_port,
                    watch_group,
                    actions: fwd.map(Action::Group).into_iter().chain([out(1)]).collect(),
                })
                .collect(),
        }
    }

    proptest! {
        /// Any sequence of group_mods keeps the table consistent: every group action and
        /// watch_group names an existing group, no group reaches itself, and selection and
        /// liveness always answer.
        #[test]
        fn group_mod_sequences_keep_references_sound(
            mods in proptest::collection::vec(raw_mod(), 1..60),
            hash in any::<u64>(),
            up in 0u32..16,
        ) {
            let mut t = GroupTable::new();
            let live = move |p: u32| p < 32 && up & (1 << (p % 4)) != 0;
            for m in mods {
                let gm = to_mod(m);
                let before = t.group_desc();
                if t.apply_group_mod(&gm, 0).is_err() {
                    prop_assert_eq!(t.group_desc(), before);
                }
                let desc = t.group_desc();
                for g in &desc {
                    for b in &g.buckets {
                        if b.watch_group != group::ANY {
                            prop_assert!(t.contains(b.watch_group));
                        }
                        for a in &b.actions {
                            if let Action::Group(x) = a {
                                prop_assert!(t.contains(*x));
                                prop_assert_ne!(*x, g.group_id);
                            }
                        }
                    }
                    let sel = t.select_bucket(g.group_id, hash, &live).unwrap();
                    for i in sel.indices() {
                        prop_assert!(i < g.buckets.len());
                    }
                    let _ = t.group_live(g.group_id, &live);
                }
                // No forwarding loop: following group actions always ends.
                for g in &desc {
                    let mut frontier = vec![g.group_id];
                    for _ in 0..=desc.len() {
                        frontier = frontier
                            .iter()
                            .flat_map(|id| t.get(*id).unwrap().buckets().iter())
                            .flat_map(|b| b.actions.iter())
                            .filter_map(|a| if let Action::Group(x) = a { Some(*x) } else { None })
                            .collect();
                    }
                    prop_assert!(frontier.is_empty(), "group {} is on a loop", g.group_id);
                }
            }
        }

        /// Whatever the packet sizes and arrival times, a drop band never lets through more
        /// than its depth plus its rate times the elapsed time.
        #[test]
        fn meter_never_exceeds_rate_plus_burst(
            rate in 1u32..100_000,
            burst in 1u32..1000,
            pktps in any::<bool>(),
            packets in proptest::collection::vec((0u32..10_000, 0u64..10_000_000), 1..300),
        ) {
            let mut t = MeterTable::new();
            let unit = if pktps { PKTPS } else { KBPS };
            t.apply_meter_mod(&madd(unit | BURST, 1, vec![drop_band(rate, burst)]), 0).unwrap();
            let mut now = 0u64;
            let mut passed: u128 = 0; // in bits (kbps) or packets (pktps)
            for (bytes, gap) in packets {
                now += gap;
                if t.meter_packet(1, bytes, now) == MeterVerdict::Pass {
                    passed += if pktps { 1 } else { u128::from(bytes) * 8 };
                }
            }
            // Budget in the same units, scaled by 10^9 to stay exact.
            let budget = if pktps {
                u128::from(burst) * 1_000_000_000 + u128::from(rate) * u128::from(now)
            } else {
                u128::from(burst) * 1_000_000_000_000 + u128::from(rate) * u128::from(now) * 1000
            };
            prop_assert!(passed * 1_000_000_000 <= budget, "passed {} budget {}", passed, budget);
        }
    }
}
