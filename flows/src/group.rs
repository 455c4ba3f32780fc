//! Group table: group_mod semantics, bucket selection, liveness, counters.
//!
//! [`GroupTable`] owns every group of one switch: it applies OFPT_GROUP_MOD with the
//! OpenFlow 1.3 errors, picks the buckets a packet executes ([`GroupTable::select_bucket`]),
//! keeps the per-group and per-bucket counters, and answers the group stats, group desc and
//! group features replies as their [`crate::wire::multipart`] structs. It never reads the clock
//! (time is `now`, nanoseconds) and never touches ports: port liveness is a callback from the
//! caller.
//!
//! # Decisions (sources: OpenFlow 1.3.5, "Group Table Modification Messages" and
//! `ofp_group_mod_failed_code`; Open vSwitch `ofp-group.c`, `ofproto.c`, `ofproto-dpif-xlate.c`)
//!
//! Checks run in this order; the first failure is answered:
//! 1. unknown command → `OFPGMFC_BAD_COMMAND`; unknown type → `OFPGMFC_BAD_TYPE` (for every
//!    command, as OVS does).
//! 2. DELETE: `group::ALL` deletes every group. Any other id above `group::MAX` →
//!    `OFPGMFC_INVALID_GROUP`; buckets in a DELETE → `OFPGMFC_INVALID_GROUP` (1.3.5, OVS).
//!    An unknown id is not an error (1.3 spec: "no error is recorded"). Deleting a group that
//!    another remaining group forwards to (group action) or watches (`watch_group`) →
//!    `OFPGMFC_CHAINED_GROUP` (the 1.3 code's meaning; OVS instead deletes and leaves a
//!    dangling reference). So every reference between groups always names a live entry.
//! 3. ADD/MODIFY: id above `group::MAX` → `OFPGMFC_INVALID_GROUP`; more buckets than the
//!    configured maximum → `OFPGMFC_OUT_OF_BUCKETS`; an indirect group without exactly one
//!    bucket → `OFPGMFC_INVALID_GROUP` (OVS); a non-zero weight outside a select group →
//!    `OFPGMFC_INVALID_GROUP` (spec: "fields such as weight that are undefined for the
//!    specified group type"; OVS answers the same; `OFPGMFC_WEIGHT_UNSUPPORTED` is never
//!    answered because weights are supported); a watch in an all/indirect group →
//!    `OFPGMFC_WATCH_UNSUPPORTED` (OVS); a fast-failover bucket with neither watch →
//!    `OFPGMFC_INVALID_GROUP` (what OVS answers; the spec names no code); a `watch_port`
//!    that is not a physical port, LOCAL or ANY → `OFPGMFC_BAD_WATCH`.
//! 4. ADD of an existing id → `OFPGMFC_GROUP_EXISTS`; MODIFY of an unknown id →
//!    `OFPGMFC_UNKNOWN_GROUP`.
//! 5. References: a `watch_group` naming a reserved or unknown group → `OFPGMFC_BAD_WATCH`;
//!    a group action naming a reserved or unknown group → `OFPBAC_BAD_OUT_GROUP` (spec: bucket
//!    actions are validated with the flow_mod rules, and those answer a group action
//!    to a missing group with `OFPBAC_BAD_OUT_GROUP`; OVS gives the same code for flows).
//!    A group that would reach itself through group actions, or through `watch_group`
//!    links, → `OFPGMFC_LOOP` (this includes a group naming itself).
//! 6. More groups of a type than the configured maximum → `OFPGMFC_OUT_OF_GROUPS`.
//!
//! Other action checks (types, ports, set-field prerequisites) belong to `validate`; the
//! caller runs them on every bucket before calling [`GroupTable::apply_group_mod`].
//!
//! MODIFY replaces type and buckets; it keeps the group's flow references and creation time
//! (as OVS does) and its packet/byte counters (OVS drops them), and starts fresh per-bucket
//! counters.
//!
//! # Selection
//! - all: every bucket; indirect: its one bucket (no liveness, as in OVS).
//! - fast failover: the first live bucket, or none.
//! - select: one live bucket with a non-zero weight, by weighted rendezvous hashing of the
//!   caller's flow hash: each bucket draws an exponential "arrival time" from
//!   `(flow_hash, bucket index)` divided by its weight, and the earliest wins. The chance of a
//!   bucket is exactly `weight / sum(live weights)`, the same hash always picks the same
//!   bucket while the live set is unchanged, and when a bucket dies only the flows that were on
//!   it move.
//!
//! A bucket is live when it watches nothing, or its `watch_port` is live, or its
//! `watch_group` is live; a group is live when at least one of its buckets is live (for select
//! groups, a live bucket with a non-zero weight), as in OVS.

use crate::action::{group, port, Action};
use crate::error::{BadActionCode, Error, GroupModFailedCode as G, Result};
use crate::mods::{Bucket, GroupMod, GroupModCommand, GroupType};
use crate::wire::multipart::{BucketCounter, GroupDesc, GroupFeatures, GroupStats};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `ofp_group_capabilities`: select groups honour weights.
pub const OFPGFC_SELECT_WEIGHT: u32 = 1 << 0;
/// `ofp_group_capabilities`: select groups honour liveness.
pub const OFPGFC_SELECT_LIVENESS: u32 = 1 << 1;
/// `ofp_group_capabilities`: groups may forward to groups.
pub const OFPGFC_CHAINING: u32 = 1 << 2;
/// `ofp_group_capabilities`: chaining is checked for loops and dangling deletes.
pub const OFPGFC_CHAINING_CHECKS: u32 = 1 << 3;

/// Liveness recursion bound through `watch_group` links (loops are refused, this is a guard).
const MAX_LIVENESS_DEPTH: u32 = 64;

/// Limits a switch advertises in its group features and enforces on group_mod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTableConfig {
    /// Maximum groups of each type, indexed by `ofp_group_type` (all, select, indirect, ff).
    pub max_groups: [u32; 4],
    /// Maximum buckets in one group (`OFPGMFC_OUT_OF_BUCKETS` beyond).
    pub max_buckets: usize,
    /// Supported actions per group type: bitmaps of `1 << ofp_action_type`.
    pub actions: [u32; 4],
}

/// Every OpenFlow 1.3 action type below 32: output, copy TTL out/in, MPLS TTL set/dec, push/pop
/// VLAN and MPLS, set queue, group, IP TTL set/dec, set field, push/pop PBB.
pub const ALL_OF13_ACTIONS: u32 = (1 << 0)
    | (1 << 11)
    | (1 << 12)
    | (1 << 15)
    | (1 << 16)
    | (1 << 17)
    | (1 << 18)
    | (1 << 19)
    | (1 << 20)
    | (1 << 21)
    | (1 << 22)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 26)
    | (1 << 27);

impl Default for GroupTableConfig {
    /// 4096 groups of each type, 256 buckets per group, every OF1.3 action in every type.
    fn default() -> Self {
        GroupTableConfig {
            max_groups: [4096; 4],
            max_buckets: 256,
            actions: [ALL_OF13_ACTIONS; 4],
        }
    }
}

/// What a successful group_mod changed, for the caller to finish the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupModEffect {
    /// Groups removed, ascending: the caller deletes every flow whose actions use them
    /// (flow-removed reason OFPRR_GROUP_DELETE).
    pub deleted: Vec<u32>,
}

/// The buckets a packet executes in one group. Indices point into [`GroupEntry::buckets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// No bucket (fast failover or select without a live bucket, or a group with no buckets):
    /// the group does not change the packet's action set.
    None,
    /// Exactly this bucket.
    One(usize),
    /// Every bucket `0..n` (all groups).
    All(usize),
}

impl Selection {
    /// The selected bucket indices, in execution order.
    pub fn indices(&self) -> std::ops::Range<usize> {
        match *self {
            Selection::None => 0..0,
            Selection::One(i) => i..i.saturating_add(1),
            Selection::All(n) => 0..n,
        }
    }
}

/// Counts one packet of `bytes` bytes.
fn count(c: &mut BucketCounter, bytes: u64) {
    c.packet_count = c.packet_count.saturating_add(1);
    c.byte_count = c.byte_count.saturating_add(bytes);
}

/// One group: its definition and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    group_type: GroupType,
    /// Shared, so the datapath can run the buckets while it updates the group's counters.
    buckets: Arc<[Bucket]>,
    created: u64,
    flow_refs: u32,
    counters: BucketCounter,
    bucket_counters: Vec<BucketCounter>,
}

impl GroupEntry {
    /// The group type (always a known one).
    pub fn group_type(&self) -> GroupType {
        self.group_type
    }
    /// The buckets, in the order they were given.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }
    /// The buckets, shared (a reference count, no copy).
    pub fn shared_buckets(&self) -> Arc<[Bucket]> {
        Arc::clone(&self.buckets)
    }
    /// Flows whose actions use this group.
    pub fn flow_refs(&self) -> u32 {
        self.flow_refs
    }
    /// Packets and bytes processed by the group.
    pub fn counters(&self) -> BucketCounter {
        self.counters
    }
    /// Packets and bytes per bucket, index-aligned with [`GroupEntry::buckets`].
    pub fn bucket_counters(&self) -> &[BucketCounter] {
        &self.bucket_counters
    }
}

/// Splits a nanosecond duration into (seconds, nanoseconds), seconds saturating at `u32::MAX`.
pub(crate) fn split_duration(created: u64, now: u64) -> (u32, u32) {
    let d = now.saturating_sub(created);
    let sec = u32::try_from(d / 1_000_000_000).unwrap_or(u32::MAX);
    let nsec = u32::try_from(d % 1_000_000_000).unwrap_or(0);
    (sec, nsec)
}

fn type_index(t: GroupType) -> Option<usize> {
    match t {
        GroupType::All => Some(0),
        GroupType::Select => Some(1),
        GroupType::Indirect => Some(2),
        GroupType::FastFailover => Some(3),
        GroupType::Unknown(_) => None,
    }
}

fn has_watch(b: &Bucket) -> bool {
    b.watch_port != port::ANY || b.watch_group != group::ANY
}

/// Groups that the bucket list forwards to (group actions).
fn forward_targets(buckets: &[Bucket]) -> impl Iterator<Item = u32> + '_ {
    buckets.iter().flat_map(|b| {
        b.actions.iter().filter_map(|a| match a {
            Action::Group(g) => Some(*g),
            _ => None,
        })
    })
}

/// Groups that the bucket list watches.
fn watch_targets(buckets: &[Bucket]) -> impl Iterator<Item = u32> + '_ {
    buckets
        .iter()
        .map(|b| b.watch_group)
        .filter(|g| *g != group::ANY)
}

/// SplitMix64 finalizer: spreads any caller hash over all 64 bits.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The OpenFlow group table of one switch.
#[derive(Debug, Clone, Default)]
pub struct GroupTable {
    config: GroupTableConfig,
    groups: BTreeMap<u32, GroupEntry>,
}

impl GroupTable {
    /// An empty table with the default limits.
    pub fn new() -> GroupTable {
        GroupTable::default()
    }

    /// An empty table with these limits.
    pub fn with_config(config: GroupTableConfig) -> GroupTable {
        GroupTable {
            config,
            groups: BTreeMap::new(),
        }
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when there is no group.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// True when `group_id` exists.
    pub fn contains(&self, group_id: u32) -> bool {
        self.groups.contains_key(&group_id)
    }

    /// One group.
    pub fn get(&self, group_id: u32) -> Option<&GroupEntry> {
        self.groups.get(&group_id)
    }

    /// Applies an OFPT_GROUP_MOD at time `now`. On error nothing changed.
    pub fn apply_group_mod(&mut self, gm: &GroupMod, now: u64) -> Result<GroupModEffect> {
        let (GroupModCommand::Add | GroupModCommand::Modify | GroupModCommand::Delete) = gm.command
        else {
            return Err(Error::group_mod(
                G::BadCommand,
                format!("unknown group_mod command {}", gm.command.raw()),
            ));
        };
        let Some(tix) = type_index(gm.group_type) else {
            return Err(Error::group_mod(
                G::BadType,
                format!("unknown group type {}", gm.group_type.raw()),
            ));
        };
        if gm.command == GroupModCommand::Delete {
            return self.delete(gm);
        }
        let id = gm.group_id;
        if id > group::MAX {
            return Err(Error::group_mod(
                G::InvalidGroup,
                format!("group id {id:#x} is reserved (above OFPG_MAX)"),
            ));
        }
        self.check_bucket_shapes(gm)?;
        let existing = self.groups.get(&id);
        match (gm.command, existing) {
            (GroupModCommand::Add, Some(_)) => {
                return Err(Error::group_mod(
                    G::GroupExists,
                    format!("group {id} already exists"),
                ))
            }
            (GroupModCommand::Modify, None) => {
                return Err(Error::group_mod(
                    G::UnknownGroup,
                    format!("group {id} does not exist"),
                ))
            }
            _ => {}
        }
        self.check_references(id, &gm.buckets)?;
        let old_type = existing.map(|g| g.group_type);
        if old_type != Some(gm.group_type) {
            let of_type = self
                .groups
                .values()
                .filter(|g| g.group_type == gm.group_type)
                .count();
            let max = usize::try_from(self.config.max_groups[tix]).unwrap_or(usize::MAX);
            if of_type >= max {
                return Err(Error::group_mod(
                    G::OutOfGroups,
                    format!(
                        "already {of_type} groups of type {:?} (maximum {max})",
                        gm.group_type
                    ),
                ));
            }
        }
        let bucket_counters = vec![BucketCounter::default(); gm.buckets.len()];
        match self.groups.get_mut(&id) {
            Some(g) => {
                g.group_type = gm.group_type;
                g.buckets = gm.buckets.as_slice().into();
                g.bucket_counters = bucket_counters;
            }
            None => {
                self.groups.insert(
                    id,
                    GroupEntry {
                        group_type: gm.group_type,
                        buckets: gm.buckets.as_slice().into(),
                        created: now,
                        flow_refs: 0,
                        counters: BucketCounter::default(),
                        bucket_counters,
                    },
                );
            }
        }
        Ok(GroupModEffect::default())
    }

    fn delete(&mut self, gm: &GroupMod) -> Result<GroupModEffect> {
        let id = gm.group_id;
        if id > group::MAX && id != group::ALL {
            return Err(Error::group_mod(
                G::InvalidGroup,
                format!("cannot delete reserved group id {id:#x}"),
            ));
        }
        if !gm.buckets.is_empty() {
            return Err(Error::group_mod(
                G::InvalidGroup,
                "a group DELETE must carry no buckets",
            ));
        }
        if id == group::ALL {
            let deleted = self.groups.keys().copied().collect();
            self.groups.clear();
            return Ok(GroupModEffect { deleted });
        }
        if !self.groups.contains_key(&id) {
            return Ok(GroupModEffect::default());
        }
        if let Some((&user, _)) = self.groups.iter().find(|(&other, g)| {
            other != id
                && (forward_targets(&g.buckets).any(|t| t == id)
                    || watch_targets(&g.buckets).any(|t| t == id))
        }) {
            return Err(Error::group_mod(
                G::ChainedGroup,
                format!("group {id} is used by group {user}; delete or modify that first"),
            ));
        }
        self.groups.remove(&id);
        Ok(GroupModEffect { deleted: vec![id] })
    }

    /// Checks that need only the message: bucket count and per-type bucket rules.
    fn check_bucket_shapes(&self, gm: &GroupMod) -> Result<()> {
        let n = gm.buckets.len();
        if n > self.config.max_buckets {
            return Err(Error::group_mod(
                G::OutOfBuckets,
                format!("{n} buckets (maximum {})", self.config.max_buckets),
            ));
        }
        if gm.group_type == GroupType::Indirect && n != 1 {
            return Err(Error::group_mod(
                G::InvalidGroup,
                format!("an indirect group needs exactly one bucket, not {n}"),
            ));
        }
        for (i, b) in gm.buckets.iter().enumerate() {
            if b.weight != 0 && gm.group_type != GroupType::Select {
                return Err(Error::group_mod(
                    G::InvalidGroup,
                    format!("bucket {i}: weight {} in a non-select group", b.weight),
                ));
            }
            match gm.group_type {
                GroupType::All | GroupType::Indirect if has_watch(b) => {
                    return Err(Error::group_mod(
                        G::WatchUnsupported,
                        format!(
                            "bucket {i}: {:?} groups cannot watch ports or groups",
                            gm.group_type
                        ),
                    ));
                }
                GroupType::FastFailover if !has_watch(b) => {
                    return Err(Error::group_mod(
                        G::InvalidGroup,
                        format!("bucket {i}: a fast-failover bucket must watch a port or a group"),
                    ));
                }
                _ => {}
            }
            let p = b.watch_port;
            if p != port::ANY && p != port::LOCAL && !(1..=port::MAX).contains(&p) {
                return Err(Error::group_mod(
                    G::BadWatch,
                    format!("bucket {i}: cannot watch port {p:#x}"),
                ));
            }
        }
        Ok(())
    }

    /// Checks that need the table: watched and forwarded-to groups exist, and no loop forms.
    fn check_references(&self, id: u32, buckets: &[Bucket]) -> Result<()> {
        for (i, b) in buckets.iter().enumerate() {
            let w = b.watch_group;
            if w == id {
                return Err(Error::group_mod(
                    G::Loop,
                    format!("bucket {i}: group {id} watches itself"),
                ));
            }
            if w != group::ANY && (w > group::MAX || !self.groups.contains_key(&w)) {
                return Err(Error::group_mod(
                    G::BadWatch,
                    format!("bucket {i}: watched group {w} does not exist"),
                ));
            }
            for a in &b.actions {
                if let Action::Group(t) = *a {
                    if t == id {
                        return Err(Error::group_mod(
                            G::Loop,
                            format!("bucket {i}: group {id} forwards to itself"),
                        ));
                    }
                    if t > group::MAX || !self.groups.contains_key(&t) {
                        return Err(Error::bad_action(
                            BadActionCode::BadOutGroup,
                            format!("bucket {i}: group action to missing group {t}"),
                        ));
                    }
                }
            }
        }
        // The table is loop-free, so a new loop must pass through `id`: look for `id` among
        // the groups reachable from the new buckets, once per kind of link.
        if let Some(via) = self.reaches(forward_targets(buckets).collect(), id, |g| {
            forward_targets(&g.buckets).collect()
        }) {
            return Err(Error::group_mod(
                G::Loop,
                format!("group {id} would forward to itself through group {via}"),
            ));
        }
        if let Some(via) = self.reaches(watch_targets(buckets).collect(), id, |g| {
            watch_targets(&g.buckets).collect()
        }) {
            return Err(Error::group_mod(
                G::Loop,
                format!("group {id} would watch itself through group {via}"),
            ));
        }
        Ok(())
    }

    /// Depth-first search from `start` along `next`; returns the first start group from which
    /// `target` is reachable.
    fn reaches(
        &self,
        start: Vec<u32>,
        target: u32,
        next: impl Fn(&GroupEntry) -> Vec<u32>,
    ) -> Option<u32> {
        for first in start {
            let mut seen = std::collections::BTreeSet::new();
            let mut stack = vec![first];
            while let Some(g) = stack.pop() {
                if g == target {
                    return Some(first);
                }
                if !seen.insert(g) {
                    continue;
                }
                if let Some(e) = self.groups.get(&g) {
                    stack.extend(next(e));
                }
            }
        }
        None
    }

    /// Whether `group_id` has a live bucket (see the module docs). Unknown groups are dead.
    pub fn group_live(&self, group_id: u32, live: &dyn Fn(u32) -> bool) -> bool {
        self.group_live_at(group_id, live, 0)
    }

    fn group_live_at(&self, group_id: u32, live: &dyn Fn(u32) -> bool, depth: u32) -> bool {
        let Some(g) = self.groups.get(&group_id) else {
            return false;
        };
        g.buckets.iter().any(|b| {
            (g.group_type != GroupType::Select || b.weight != 0) && self.bucket_live(b, live, depth)
        })
    }

    fn bucket_live(&self, b: &Bucket, live: &dyn Fn(u32) -> bool, depth: u32) -> bool {
        if depth >= MAX_LIVENESS_DEPTH {
            return false;
        }
        !has_watch(b)
            || (b.watch_port != port::ANY && live(b.watch_port))
            || (b.watch_group != group::ANY && self.group_live_at(b.watch_group, live, depth + 1))
    }

    /// The buckets a packet with `flow_hash` executes in `group_id`, given port liveness;
    /// `None` when the group does not exist.
    pub fn select_bucket(
        &self,
        group_id: u32,
        flow_hash: u64,
        live: &dyn Fn(u32) -> bool,
    ) -> Option<Selection> {
        let g = self.groups.get(&group_id)?;
        let sel = match g.group_type {
            GroupType::All => Selection::All(g.buckets.len()),
            GroupType::Indirect => {
                if g.buckets.is_empty() {
                    Selection::None
                } else {
                    Selection::One(0)
                }
            }
            GroupType::FastFailover => g
                .buckets
                .iter()
                .position(|b| self.bucket_live(b, live, 0))
                .map_or(Selection::None, Selection::One),
            GroupType::Select => {
                let h = mix64(flow_hash);
                let mut best: Option<(f64, usize)> = None;
                for (i, b) in g.buckets.iter().enumerate() {
                    if b.weight == 0 || !self.bucket_live(b, live, 0) {
                        continue;
                    }
                    let idx = u64::try_from(i).unwrap_or(u64::MAX);
                    let r = mix64(h ^ mix64(idx.wrapping_add(0x5bd1_e995)));
                    // Uniform in (0, 1): 53 random bits plus one half.
                    let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                    let arrival = -u.ln() / f64::from(b.weight);
                    if best.is_none_or(|(t, _)| arrival < t) {
                        best = Some((arrival, i));
                    }
                }
                best.map_or(Selection::None, |(_, i)| Selection::One(i))
            }
            GroupType::Unknown(_) => Selection::None,
        };
        Some(sel)
    }

    /// Counts one packet of `bytes` bytes through `group_id` and the buckets of `sel`.
    /// Unknown groups and out-of-range buckets are ignored.
    pub fn record(&mut self, group_id: u32, sel: Selection, bytes: u64) {
        if let Some(g) = self.groups.get_mut(&group_id) {
            count(&mut g.counters, bytes);
            for i in sel.indices() {
                if let Some(c) = g.bucket_counters.get_mut(i) {
                    count(c, bytes);
                }
            }
        }
    }

    /// A flow that uses `group_id` was added. A missing group is the flow_mod error
    /// `OFPBAC_BAD_OUT_GROUP` (flow_mod rules).
    pub fn add_flow_ref(&mut self, group_id: u32) -> Result<()> {
        match self.groups.get_mut(&group_id) {
            Some(g) => {
                g.flow_refs = g.flow_refs.saturating_add(1);
                Ok(())
            }
            None => Err(Error::bad_action(
                BadActionCode::BadOutGroup,
                format!("group {group_id} does not exist"),
            )),
        }
    }

    /// A flow that used `group_id` was removed. Unknown groups are ignored.
    pub fn remove_flow_ref(&mut self, group_id: u32) {
        if let Some(g) = self.groups.get_mut(&group_id) {
            g.flow_refs = g.flow_refs.saturating_sub(1);
        }
    }

    /// Group stats for `group_id`, or for every group with `group::ALL`, ascending by id.
    /// An unknown id gives an empty list (as OVS answers).
    pub fn group_stats(&self, group_id: u32, now: u64) -> Vec<GroupStats> {
        let one = |(&id, g): (&u32, &GroupEntry)| {
            let group_refs = self
                .groups
                .values()
                .filter(|o| forward_targets(&o.buckets).any(|t| t == id))
                .count();
            let (duration_sec, duration_nsec) = split_duration(g.created, now);
            GroupStats {
                group_id: id,
                ref_count: g
                    .flow_refs
                    .saturating_add(u32::try_from(group_refs).unwrap_or(u32::MAX)),
                packet_count: g.counters.packet_count,
                byte_count: g.counters.byte_count,
                duration_sec,
                duration_nsec,
                bucket_stats: g.bucket_counters.clone(),
            }
        };
        if group_id == group::ALL {
            self.groups.iter().map(one).collect()
        } else {
            self.groups
                .get_key_value(&group_id)
                .map(one)
                .into_iter()
                .collect()
        }
    }

    /// Group descriptions of every group, ascending by id.
    pub fn group_desc(&self) -> Vec<GroupDesc> {
        self.groups
            .iter()
            .map(|(&group_id, g)| GroupDesc {
                group_id,
                group_type: g.group_type,
                buckets: g.buckets.to_vec(),
            })
            .collect()
    }

    /// Group features of this table.
    pub fn features(&self) -> GroupFeatures {
        GroupFeatures {
            types: (1 << 0) | (1 << 1) | (1 << 2) | (1 << 3),
            capabilities: OFPGFC_SELECT_WEIGHT
                | OFPGFC_SELECT_LIVENESS
                | OFPGFC_CHAINING
                | OFPGFC_CHAINING_CHECKS,
            max_groups: self.config.max_groups,
            actions: self.config.actions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: u32) -> Action {
        Action::Output {
            port: p,
            max_len: 0,
        }
    }

    fn gm(command: GroupModCommand, t: GroupType, id: u32, buckets: Vec<Bucket>) -> GroupMod {
        GroupMod {
            command,
            group_type: t,
            group_id: id,
            buckets,
        }
    }

    #[test]
    fn selection_indices() {
        assert_eq!(Selection::None.indices(), 0..0);
        assert_eq!(Selection::One(3).indices(), 3..4);
        assert_eq!(Selection::All(2).indices(), 0..2);
    }

    #[test]
    fn mix_spreads_sequential_hashes() {
        let a = mix64(1);
        let c = mix64(2);
        assert_ne!(a, c);
        assert!((a ^ c).count_ones() > 10);
    }

    #[test]
    fn duration_split() {
        assert_eq!(split_duration(1_000, 3_500_000_999), (3, 499_999_999));
        assert_eq!(split_duration(10, 5), (0, 0));
        assert_eq!(split_duration(0, u64::MAX), (u32::MAX, 709_551_615));
    }

    #[test]
    fn watch_loop_detected() {
        let mut t = GroupTable::new();
        let ff = |w: u32| Bucket {
            watch_group: w,
            actions: vec![out(1)],
            ..Bucket::default()
        };
        let ffp = Bucket {
            watch_port: 1,
            actions: vec![out(1)],
            ..Bucket::default()
        };
        t.apply_group_mod(
            &gm(GroupModCommand::Add, GroupType::FastFailover, 1, vec![ffp]),
            0,
        )
        .unwrap();
        t.apply_group_mod(
            &gm(
                GroupModCommand::Add,
                GroupType::FastFailover,
                2,
                vec![ff(1)],
            ),
            0,
        )
        .unwrap();
        let e = t
            .apply_group_mod(
                &gm(
                    GroupModCommand::Modify,
                    GroupType::FastFailover,
                    1,
                    vec![ff(2)],
                ),
                0,
            )
            .unwrap_err();
        assert_eq!(e.code.name(), "OFPGMFC_LOOP");
        // Liveness follows the watch chain: 2 is live iff port 1 is.
        assert!(t.group_live(2, &|p| p == 1));
        assert!(!t.group_live(2, &|_| false));
    }
}
