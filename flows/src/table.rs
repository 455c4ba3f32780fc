//! OpenFlow 1.3 flow tables: flow_mod semantics, timeouts, counters, statistics and the multi-table pipeline.
//!
//! [`FlowTables`] owns N tables of [`FlowEntry`]s (each a [`Classifier`]) and is the only place
//! that decides what an OFPT_FLOW_MOD does to them, which flows expire, and what a packet key
//! turns into after walking the pipeline. It never reads the clock (every call takes `now`,
//! nanoseconds on the caller's monotonic clock), never does I/O and never sends messages: it
//! returns what was removed, and the agent sends FLOW_REMOVED for entries with SEND_FLOW_REM.
//!
//! Semantics (OF1.3.5 §6.4, §5.4, §5.10), and the choices made where the spec leaves room:
//! - ADD: with CHECK_OVERLAP, any entry of the same priority whose match may match a packet in
//!   common (identical matches included) fails with OFPFMFC_OVERLAP. Otherwise an entry with an
//!   identical match and priority is replaced: new cookie, timeouts, flags and instructions,
//!   duration restarted, counters carried over unless RESET_COUNTS. No FLOW_REMOVED.
//! - MODIFY / MODIFY_STRICT: only the instructions change (cookie, timeouts, flags, duration
//!   and counters stay; counters are cleared with RESET_COUNTS). Entries are selected by the
//!   cookie/cookie_mask filter and the match (non-strict: the entry's match is a subset of the
//!   request's; strict: equal match and priority). `out_port`/`out_group` are ignored, as the
//!   spec says. Nothing selected = nothing happens (1.3 does not add).
//! - DELETE / DELETE_STRICT: same selection plus `out_port`/`out_group` (an entry passes when
//!   an output/group action in its apply- or write-actions names them); `OFPTT_ALL` selects
//!   every table. Removed entries come back with reason DELETE.
//! - Timeouts: idle expires `idle_timeout` seconds after the last packet (or creation), hard
//!   `hard_timeout` seconds after creation; when both are due, the earlier deadline names the
//!   reason (hard on a tie). NO_PKT_COUNTS/NO_BYT_COUNTS are accepted, but counters are kept
//!   anyway (the spec allows counting).
//! - Pipeline: see [`FlowTables::lookup`].

use crate::action::{group, meter, port, Action, Instruction, OFPTT_ALL};
use crate::cache::{CacheStats, Cached, MegaflowCache};
use crate::classifier::{Classifier, Rank, RuleId};
use crate::error::{Error, FlowModFailedCode, Result};
use crate::field::{Field, FlowKey, KEY_LEN, OFPVID_PRESENT};
use crate::macros::wire_enum;
use crate::matches::Match;
use crate::mods::{flow_flags, FlowMod, FlowModCommand};
use std::sync::Arc;

/// Most tables a pipeline can have (table ids 0..=253; 0xfe and 0xff are reserved).
pub const MAX_TABLES: u8 = 254;

const NS_PER_SEC: u64 = 1_000_000_000;

wire_enum! {
    /// `ofp_flow_removed_reason`.
    pub enum RemovedReason: u8 { IdleTimeout = 0, HardTimeout = 1, Delete = 2, GroupDelete = 3 }
}

/// One flow entry of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEntry {
    pub r#match: Match,
    pub priority: u16,
    pub cookie: u64,
    /// Seconds without a packet before removal; 0 = never.
    pub idle_timeout: u16,
    /// Seconds after creation before removal; 0 = never.
    pub hard_timeout: u16,
    /// `ofp_flow_mod_flags` as given at ADD.
    pub flags: u16,
    pub instructions: Vec<Instruction>,
    /// When the entry was added (ns).
    pub created: u64,
    /// When a packet last matched, or `created` (ns).
    pub last_used: u64,
    pub packet_count: u64,
    pub byte_count: u64,
}

fn all_actions(instrs: &[Instruction]) -> impl Iterator<Item = &Action> {
    instrs.iter().flat_map(|i| match i {
        Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a.as_slice(),
        _ => &[],
    })
}

impl FlowEntry {
    /// Nanoseconds since the entry was added.
    pub fn duration(&self, now: u64) -> u64 {
        now.saturating_sub(self.created)
    }

    /// The entry as OFPMP_FLOW reports it from `table_id` at `now`.
    pub fn to_stats(&self, table_id: u8, now: u64) -> crate::wire::multipart::FlowStats {
        let d = self.duration(now);
        crate::wire::multipart::FlowStats {
            table_id,
            duration_sec: u32::try_from(d / NS_PER_SEC).unwrap_or(u32::MAX),
            duration_nsec: u32::try_from(d % NS_PER_SEC).unwrap_or(0),
            priority: self.priority,
            idle_timeout: self.idle_timeout,
            hard_timeout: self.hard_timeout,
            flags: self.flags,
            cookie: self.cookie,
            packet_count: self.packet_count,
            byte_count: self.byte_count,
            r#match: self.r#match,
            instructions: self.instructions.clone(),
        }
    }

    /// True when an output action in the apply- or write-actions sends to `out_port`.
    pub fn outputs_to(&self, out_port: u32) -> bool {
        all_actions(&self.instructions)
            .any(|a| matches!(a, Action::Output { port, .. } if *port == out_port))
    }

    /// True when a group action names `group_id` (any group when `group_id` is `group::ALL`).
    pub fn uses_group(&self, group_id: u32) -> bool {
        all_actions(&self.instructions)
            .any(|a| matches!(a, Action::Group(g) if *g == group_id || group_id == group::ALL))
    }

    /// True when a meter instruction names `meter_id` (any meter when it is `meter::ALL`).
    pub fn uses_meter(&self, meter_id: u32) -> bool {
        self.instructions
            .iter()
            .any(|i| matches!(i, Instruction::Meter(m) if *m == meter_id || meter_id == meter::ALL))
    }

    /// When the entry times out and why, if it has a timeout.
    pub fn expiry(&self) -> Option<(u64, RemovedReason)> {
        let hard = (self.hard_timeout != 0).then(|| {
            self.created
                .saturating_add(u64::from(self.hard_timeout) * NS_PER_SEC)
        });
        let idle = (self.idle_timeout != 0).then(|| {
            self.last_used
                .saturating_add(u64::from(self.idle_timeout) * NS_PER_SEC)
        });
        match (hard, idle) {
            (Some(h), Some(i)) if i < h => Some((i, RemovedReason::IdleTimeout)),
            (Some(h), _) => Some((h, RemovedReason::HardTimeout)),
            (None, Some(i)) => Some((i, RemovedReason::IdleTimeout)),
            (None, None) => None,
        }
    }

    fn cookie_matches(&self, cookie: u64, mask: u64) -> bool {
        self.cookie & mask == cookie & mask
    }
}

/// An entry taken out of a table, with where it was and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub table_id: u8,
    pub entry: FlowEntry,
    pub reason: RemovedReason,
}

/// What a flow_mod did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowModEffect {
    /// ADD: the entry is in `table_id`; `replaced` when it took an identical entry's place.
    Added { table_id: u8, replaced: bool },
    /// MODIFY*: how many entries got the new instructions (0 is not an error).
    Modified { count: usize },
    /// DELETE*: the removed entries, reason DELETE.
    Deleted(Vec<Removed>),
}

/// Entries per page of a paged flow dump ([`FlowTables::flow_stats_page`]).
pub const DUMP_PAGE_LEN: usize = 1000;
/// Entries a page of a flow dump may look at, per entry it may hold.
pub const DUMP_SCAN_PER_ENTRY: usize = 4;

/// Whether flow stats request `f` (its match normalized: `m`) selects `v`.
fn selects(f: &FlowFilter, m: &Match, v: &FlowEntry) -> bool {
    v.r#match.is_subset_of(m)
        && v.cookie_matches(f.cookie, f.cookie_mask)
        && (f.out_port == port::ANY || v.outputs_to(f.out_port))
        && (f.out_group == group::ANY || v.uses_group(f.out_group))
}

/// Where a flow dump is, in dump order: by table, then within a table in [`Rank`] order
/// (decreasing priority, then older first: the order in which entries win). Unique per entry
/// and never reused, so a dump can resume from it after entries were added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DumpPosition {
    pub table_id: u8,
    pub rank: Rank,
}

/// One page of a flow dump ([`FlowTables::flow_stats_page`]).
#[derive(Debug)]
pub struct DumpPage<'a> {
    /// The selected entries of the page, in dump order, with their positions.
    pub entries: Vec<(DumpPosition, &'a FlowEntry)>,
    /// Where the next page starts; `None` when the dump is complete.
    pub next: Option<DumpPosition>,
}

/// The OF1.3 flow-stats / aggregate-stats request filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowFilter {
    /// A table id or `OFPTT_ALL`.
    pub table_id: u8,
    /// `port::ANY` or a port some output action must name.
    pub out_port: u32,
    /// `group::ANY` or a group some group action must name.
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    /// Non-strict: entries whose match is a subset of this one.
    pub r#match: Match,
}

impl Default for FlowFilter {
    /// Every flow of every table.
    fn default() -> Self {
        FlowFilter {
            table_id: OFPTT_ALL,
            out_port: port::ANY,
            out_group: group::ANY,
            cookie: 0,
            cookie_mask: 0,
            r#match: Match::any(),
        }
    }
}

/// The OFPMP_AGGREGATE and OFPMP_TABLE reply bodies are the wire structs themselves.
pub use crate::wire::multipart::{AggregateStats, TableStats};

/// The rule a table matched, for `trace`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHit {
    pub r#match: Match,
    pub priority: u16,
    pub cookie: u64,
    pub instructions: Vec<Instruction>,
}

impl TraceHit {
    /// True for the table-miss entry (priority 0, every field wildcarded).
    pub fn is_table_miss(&self) -> bool {
        self.priority == 0 && self.r#match == Match::any()
    }
}

/// One table's decision in a pipeline walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    pub table_id: u8,
    /// The key the table looked up (after earlier set-fields and write-metadata).
    pub key: FlowKey,
    /// The matched entry, or `None` for a miss without a table-miss entry (drop).
    pub hit: Option<TraceHit>,
    /// The bits of `key` this table's decision depended on.
    pub mask: FlowKey,
}

/// What the pipeline decided for one packet key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineResult {
    /// Actions to execute in order: every apply-actions list as met, then the action set
    /// in the spec's order (unless the walk ended in a miss, which drops the action set).
    pub actions: Vec<Action>,
    /// Meters named by meter instructions, in the order met. Each applies before the
    /// actions of its table.
    pub meters: Vec<u32>,
    /// One step per table visited.
    pub trace: Vec<TraceStep>,
    /// Union of the tables' masks: every key equal to the input on these bits walks the same
    /// pipeline (megaflow cache key).
    pub mask: FlowKey,
    /// The key as the last table saw it and as modified by its instructions.
    pub key: FlowKey,
    /// True when the walk ended in a table with no matching entry (packet dropped).
    pub missed: bool,
    /// Set when the walk stopped before a goto because the packet's headers must be parsed
    /// again (see [`FlowTables::lookup`]); the action set is then not in `actions` yet.
    pub resume: Option<Resume>,
}

/// Where a stopped walk continues: the next table, the action set so far, and the key as
/// the walk left it (for the pipeline fields the packet does not carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub table_id: u8,
    set: ActionSet,
    pub key: FlowKey,
}

#[derive(Debug, Clone, Default)]
struct Table {
    cls: Classifier<FlowEntry>,
    lookup_count: u64,
    matched_count: u64,
}

/// The pipeline's flow tables.
///
/// A clone is an independent copy: entries, their counters and the table counters (what
/// `trace` walks without touching the switch's counters), with an empty megaflow cache.
#[derive(Debug, Clone)]
pub struct FlowTables {
    tables: Vec<Table>,
    /// Walks remembered by [`FlowTables::lookup`]; emptied by every change to the tables.
    cache: MegaflowCache,
}

/// One table a walk visited and the entry it matched there (`None`: a miss).
pub type Visit = (u8, Option<RuleId>);

/// Counts `packets` packets of `bytes` bytes on the tables and entries of one walk.
fn count_visits(tables: &mut [Table], visits: &[Visit], packets: u64, bytes: u64, now: u64) {
    for &(t, id) in visits {
        let Some(table) = tables.get_mut(usize::from(t)) else {
            continue;
        };
        table.lookup_count = table.lookup_count.saturating_add(packets);
        if let Some(e) = id.and_then(|id| table.cls.get_mut(id)) {
            table.matched_count = table.matched_count.saturating_add(packets);
            e.packet_count = e.packet_count.saturating_add(packets);
            e.byte_count = e.byte_count.saturating_add(bytes);
            e.last_used = now;
        }
    }
}

/// How a flow_mod selects existing entries (MODIFY*/DELETE*).
struct Selector<'a> {
    fm: &'a FlowMod,
    m: Match,
    strict: bool,
    out_filters: bool,
}

impl Selector<'_> {
    fn selects(&self, m: &Match, priority: u16, e: &FlowEntry) -> bool {
        let fm = self.fm;
        let by_match = if self.strict {
            *m == self.m && priority == fm.priority
        } else {
            m.is_subset_of(&self.m)
        };
        by_match
            && e.cookie_matches(fm.cookie, fm.cookie_mask)
            && (!self.out_filters || fm.out_port == port::ANY || e.outputs_to(fm.out_port))
            && (!self.out_filters || fm.out_group == group::ANY || e.uses_group(fm.out_group))
    }
}

fn normalized(m: &Match) -> Match {
    Match {
        value: m.value.masked(&m.mask),
        mask: m.mask,
    }
}

impl FlowTables {
    /// A pipeline of `n_tables` empty tables (clamped to 1..=[`MAX_TABLES`]).
    pub fn new(n_tables: u8) -> FlowTables {
        let n = n_tables.clamp(1, MAX_TABLES);
        FlowTables {
            tables: (0..n).map(|_| Table::default()).collect(),
            cache: MegaflowCache::default(),
        }
    }

    /// Sets how many walks the megaflow cache may hold (0: no cache; every lookup walks the
    /// tables).
    pub fn set_cache_capacity(&mut self, capacity: usize) {
        self.cache = MegaflowCache::with_capacity(capacity);
    }

    /// The walk remembered in the megaflow cache for `key`, if any: its result and the tables
    /// and entries a packet of it is counted on (what a copy of the decision repeated elsewhere
    /// is credited to, with [`FlowTables::credit`]). Not counted as a cache hit or miss.
    pub fn cached(&self, key: &FlowKey) -> Option<(&PipelineResult, &[Visit])> {
        self.cache
            .peek(key)
            .map(|c| (c.result.as_ref(), c.visits.as_slice()))
    }

    /// Counts `packets` packets of `bytes` bytes in all on `visits` (from
    /// [`FlowTables::cached`]): table lookups and matches, entry counters, `last_used`
    /// = `now` (entries removed since are skipped). For packets forwarded outside this
    /// process by a copy of the decision (the kernel fast path).
    pub fn credit(&mut self, visits: &[Visit], packets: u64, bytes: u64, now: u64) {
        if packets > 0 {
            count_visits(&mut self.tables, visits, packets, bytes, now);
        }
    }

    /// The megaflow cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Number of tables.
    pub fn n_tables(&self) -> u8 {
        u8::try_from(self.tables.len()).unwrap_or(MAX_TABLES)
    }

    /// Total entries over all tables.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.cls.len()).sum()
    }

    /// True when no table has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table_ids(&self, table_id: u8) -> std::ops::Range<usize> {
        if table_id == OFPTT_ALL {
            0..self.tables.len()
        } else {
            let t = usize::from(table_id).min(self.tables.len());
            t..(t + 1).min(self.tables.len())
        }
    }

    /// Applies a flow_mod after validating it (`crate::validate::check_flow_mod`).
    pub fn apply_flow_mod(&mut self, fm: &FlowMod, now: u64) -> Result<FlowModEffect> {
        let checked = crate::validate::check_flow_mod(fm, self.n_tables())?;
        self.apply_checked_flow_mod(checked, now)
    }

    /// [`FlowTables::apply_flow_mod`] of a flow_mod the caller already validated (checked
    /// again only if that was against another number of tables).
    pub fn apply_checked_flow_mod(
        &mut self,
        checked: crate::validate::CheckedFlowMod<'_>,
        now: u64,
    ) -> Result<FlowModEffect> {
        self.cache.invalidate();
        let fm = checked.flow_mod;
        if checked.n_tables != self.n_tables() {
            crate::validate::check_flow_mod(fm, self.n_tables())?;
        }
        if fm.table_id != OFPTT_ALL && usize::from(fm.table_id) >= self.tables.len() {
            return Err(Error::flow_mod(
                FlowModFailedCode::BadTableId,
                format!("table {} does not exist", fm.table_id),
            ));
        }
        match fm.command {
            FlowModCommand::Add => self.add(fm, now),
            FlowModCommand::Modify => Ok(self.modify(fm, false)),
            FlowModCommand::ModifyStrict => Ok(self.modify(fm, true)),
            FlowModCommand::Delete => Ok(FlowModEffect::Deleted(self.delete(fm, false))),
            FlowModCommand::DeleteStrict => Ok(FlowModEffect::Deleted(self.delete(fm, true))),
            FlowModCommand::Unknown(c) => Err(Error::flow_mod(
                FlowModFailedCode::BadCommand,
                format!("unknown flow_mod command {c}"),
            )),
        }
    }

    fn add(&mut self, fm: &FlowMod, now: u64) -> Result<FlowModEffect> {
        let table_id = fm.table_id;
        let Some(table) = self.tables.get_mut(usize::from(table_id)) else {
            return Err(Error::flow_mod(
                FlowModFailedCode::BadTableId,
                "flow_mod ADD needs a single existing table",
            ));
        };
        let m = normalized(&fm.r#match);
        if fm.flags & flow_flags::CHECK_OVERLAP != 0 {
            let clash = table
                .cls
                .iter()
                .any(|e| e.priority == fm.priority && e.value.r#match.overlaps(&m));
            if clash {
                return Err(Error::flow_mod(
                    FlowModFailedCode::Overlap,
                    format!(
                        "an entry of priority {} in table {table_id} overlaps this one",
                        fm.priority
                    ),
                ));
            }
        }
        let mut entry = FlowEntry {
            r#match: m,
            priority: fm.priority,
            cookie: fm.cookie,
            idle_timeout: fm.idle_timeout,
            hard_timeout: fm.hard_timeout,
            flags: fm.flags,
            instructions: fm.instructions.clone(),
            created: now,
            last_used: now,
            packet_count: 0,
            byte_count: 0,
        };
        if let Some(id) = table.cls.find_exact(&m, fm.priority) {
            if let Some(old) = table.cls.get_mut(id) {
                if fm.flags & flow_flags::RESET_COUNTS == 0 {
                    entry.packet_count = old.packet_count;
                    entry.byte_count = old.byte_count;
                }
                *old = entry;
                return Ok(FlowModEffect::Added {
                    table_id,
                    replaced: true,
                });
            }
        }
        table.cls.insert(m, fm.priority, entry);
        Ok(FlowModEffect::Added {
            table_id,
            replaced: false,
        })
    }

    fn modify(&mut self, fm: &FlowMod, strict: bool) -> FlowModEffect {
        let sel = Selector {
            fm,
            m: normalized(&fm.r#match),
            strict,
            out_filters: false,
        };
        let mut count = 0;
        for t in self.table_ids(fm.table_id) {
            for (_, _, prio, e) in self.tables[t].cls.iter_mut() {
                if sel.selects(&e.r#match, prio, e) {
                    e.instructions = fm.instructions.clone();
                    if fm.flags & flow_flags::RESET_COUNTS != 0 {
                        e.packet_count = 0;
                        e.byte_count = 0;
                    }
                    count += 1;
                }
            }
        }
        FlowModEffect::Modified { count }
    }

    fn delete(&mut self, fm: &FlowMod, strict: bool) -> Vec<Removed> {
        let sel = Selector {
            fm,
            m: normalized(&fm.r#match),
            strict,
            out_filters: true,
        };
        let tables = self.table_ids(fm.table_id);
        self.remove_where(RemovedReason::Delete, |t, m, prio, e| {
            tables.contains(&usize::from(t)) && sel.selects(m, prio, e)
        })
    }

    /// Removes every entry for which `pred(table_id, match, priority, entry)` holds.
    fn remove_where(
        &mut self,
        reason: RemovedReason,
        pred: impl Fn(u8, &Match, u16, &FlowEntry) -> bool,
    ) -> Vec<Removed> {
        self.remove_with(|t, m, p, e| pred(t, m, p, e).then_some(reason))
    }

    /// Removes every entry for which `why(table_id, match, priority, entry)` gives a reason.
    fn remove_with(
        &mut self,
        why: impl Fn(u8, &Match, u16, &FlowEntry) -> Option<RemovedReason>,
    ) -> Vec<Removed> {
        let mut out = Vec::new();
        for (t, table) in self.tables.iter_mut().enumerate() {
            let table_id = u8::try_from(t).unwrap_or(u8::MAX);
            let due: Vec<(RuleId, RemovedReason)> = table
                .cls
                .iter()
                .filter_map(|e| {
                    why(table_id, &e.value.r#match, e.priority, e.value).map(|r| (e.id, r))
                })
                .collect();
            for (id, reason) in due {
                if let Some(entry) = table.cls.remove(id) {
                    out.push(Removed {
                        table_id,
                        entry,
                        reason,
                    });
                }
            }
        }
        if !out.is_empty() {
            self.cache.invalidate();
        }
        sort_removed(&mut out);
        out
    }

    /// Removes the entries whose timeout passed at `now`.
    pub fn expire(&mut self, now: u64) -> Vec<Removed> {
        self.remove_with(|_, _, _, e| match e.expiry() {
            Some((at, reason)) if at <= now => Some(reason),
            _ => None,
        })
    }

    /// The earliest time at which [`FlowTables::expire`] would remove something.
    /// (A scan over all entries: call it after changes, not per packet.)
    pub fn next_expiry(&self) -> Option<u64> {
        self.tables
            .iter()
            .flat_map(|t| t.cls.iter().filter_map(|e| e.value.expiry().map(|x| x.0)))
            .min()
    }

    /// Removes the entries whose actions use group `group_id` (every group action for
    /// `group::ALL`), reason GROUP_DELETE. Call when a group is deleted.
    pub fn remove_flows_using_group(&mut self, group_id: u32) -> Vec<Removed> {
        self.remove_where(RemovedReason::GroupDelete, |_, _, _, e| {
            e.uses_group(group_id)
        })
    }

    /// Removes the entries with a meter instruction for `meter_id` (any meter for
    /// `meter::ALL`), reason DELETE (OF1.3 has no METER_DELETE reason).
    pub fn remove_flows_using_meter(&mut self, meter_id: u32) -> Vec<Removed> {
        self.remove_where(RemovedReason::Delete, |_, _, _, e| e.uses_meter(meter_id))
    }

    /// The entries passing `f`, in no particular order (no copy, no allocation).
    fn filtered<'a>(&'a self, f: &'a FlowFilter) -> impl Iterator<Item = &'a FlowEntry> + 'a {
        let m = normalized(&f.r#match);
        self.table_ids(f.table_id)
            .flat_map(move |t| self.tables[t].cls.iter().map(|e| e.value))
            .filter(move |e| selects(f, &m, e))
    }

    /// OFPMP_FLOW: the entries passing `filter`, by table, then in the order they win
    /// (decreasing priority, then older first: the order of [`DumpPosition`]).
    pub fn flow_stats(&self, filter: &FlowFilter) -> Vec<(u8, &FlowEntry)> {
        self.flow_stats_page(filter, None, usize::MAX)
            .entries
            .into_iter()
            .map(|(p, e)| (p.table_id, e))
            .collect()
    }

    /// One page of [`FlowTables::flow_stats`]: at most `max` entries, the first ones after
    /// `after` (from the start when `None`), found by looking at no more than
    /// [`DUMP_SCAN_PER_ENTRY`] × `max` entries (a filter that selects few entries gets short or
    /// empty pages, and every page costs O(`max`) whatever the table's size). A dump read page
    /// by page, with the tables changing in between, returns every entry present throughout
    /// exactly once, in order.
    pub fn flow_stats_page(
        &self,
        filter: &FlowFilter,
        after: Option<DumpPosition>,
        max: usize,
    ) -> DumpPage<'_> {
        let m = normalized(&filter.r#match);
        let max = max.max(1);
        let mut budget = max.saturating_mul(DUMP_SCAN_PER_ENTRY);
        let mut entries = Vec::with_capacity(max.min(self.len()));
        let mut looked_at = None;
        let first = after.map_or(0, |a| usize::from(a.table_id));
        for t in self.table_ids(filter.table_id).filter(|&t| t >= first) {
            let table_id = u8::try_from(t).unwrap_or(u8::MAX);
            let from = after.filter(|a| a.table_id == table_id).map(|a| a.rank);
            for (rank, e) in self.tables[t].cls.ranked_after(from) {
                if entries.len() == max || budget == 0 {
                    // More may follow: the next page starts after the last entry looked at.
                    return DumpPage {
                        entries,
                        next: looked_at,
                    };
                }
                budget -= 1;
                let pos = DumpPosition { table_id, rank };
                looked_at = Some(pos);
                if selects(filter, &m, e.value) {
                    entries.push((pos, e.value));
                }
            }
        }
        DumpPage {
            entries,
            next: None,
        }
    }

    /// OFPMP_AGGREGATE over the entries passing `filter`.
    pub fn aggregate_stats(&self, filter: &FlowFilter) -> AggregateStats {
        self.filtered(filter)
            .fold(AggregateStats::default(), |mut a, e| {
                a.packet_count = a.packet_count.saturating_add(e.packet_count);
                a.byte_count = a.byte_count.saturating_add(e.byte_count);
                a.flow_count = a.flow_count.saturating_add(1);
                a
            })
    }

    /// OFPMP_TABLE: one entry per table.
    pub fn table_stats(&self) -> Vec<TableStats> {
        self.tables
            .iter()
            .enumerate()
            .map(|(t, table)| TableStats {
                table_id: u8::try_from(t).unwrap_or(u8::MAX),
                active_count: u32::try_from(table.cls.len()).unwrap_or(u32::MAX),
                lookup_count: table.lookup_count,
                matched_count: table.matched_count,
            })
            .collect()
    }

    /// Walks the pipeline for a packet of `pkt_len` bytes with key `key` at `now`.
    ///
    /// Starts at table 0. In each table the best entry's counters and `last_used` are
    /// updated and its instructions run in the spec's order: meter, apply-actions (their
    /// set-field, push/pop VLAN and MPLS effects change the key later tables see),
    /// clear-actions, write-actions (into the action set: one action per type, one set-field
    /// per field, a later write replacing an earlier one), write-metadata, goto-table. Without
    /// a goto the action set is appended to the actions in execution order: copy-TTL-in, pops
    /// (VLAN, MPLS, PBB), push-MPLS, push-PBB, push-VLAN, copy-TTL-out, decrement TTLs,
    /// set-fields (in write order) and set-TTLs, set-queue, then group if any, else output.
    /// A table with no matching entry (no table-miss entry) drops the packet: the walk ends,
    /// the action set is discarded, and apply-actions already met stay in `actions`.
    /// Effects of group buckets on the key are not modelled.
    ///
    /// Some apply-actions change what the packet's headers are in a way the key alone cannot
    /// follow: popping a VLAN tag, an MPLS label or a PBB header reveals headers the key never
    /// held. When a table applies one of those and then goes to another table, the walk stops
    /// there and `resume` is set: the caller applies `actions` to the packet, extracts its key
    /// again, and continues with [`FlowTables::lookup_resume`].
    ///
    /// The result is shared: a walk is remembered in the megaflow cache ([`crate::cache`])
    /// under the bits of `key` it depended on (`mask`), and the next key equal on those bits
    /// gets the same result, counted on the same entries, without walking again. Its `trace`
    /// steps then carry the first key's values outside the mask.
    pub fn lookup(&mut self, key: &FlowKey, pkt_len: u64, now: u64) -> Arc<PipelineResult> {
        if let Some(c) = self.cache.get(key) {
            // The same walk as the first packet of this megaflow: count this packet where
            // that one was counted.
            for &(t, id) in &c.visits {
                let Some(table) = self.tables.get_mut(usize::from(t)) else {
                    continue;
                };
                table.lookup_count = table.lookup_count.saturating_add(1);
                if let Some(e) = id.and_then(|id| table.cls.get_mut(id)) {
                    table.matched_count = table.matched_count.saturating_add(1);
                    e.packet_count = e.packet_count.saturating_add(1);
                    e.byte_count = e.byte_count.saturating_add(pkt_len);
                    e.last_used = now;
                }
            }
            return c.result.clone();
        }
        let res = PipelineResult {
            actions: Vec::new(),
            meters: Vec::new(),
            trace: Vec::new(),
            mask: FlowKey([0; KEY_LEN]),
            key: *key,
            missed: false,
            resume: None,
        };
        let mut visits = Vec::new();
        let res = Arc::new(self.walk(res, ActionSet::default(), 0, pkt_len, now, &mut visits));
        // A walk that stopped to re-parse the packet is not remembered: its continuation
        // depends on the packet's bytes, not only on the key.
        if res.resume.is_none() {
            let cached = Cached {
                result: res.clone(),
                visits,
            };
            self.cache.insert(key, &res.mask, cached);
        }
        res
    }

    /// Continues a walk that stopped with `resume`, with `key` extracted again from the packet
    /// after the earlier actions ran. Pipeline fields that are not in the packet (in_port,
    /// in_phy_port, metadata, tunnel_id) are taken from where the walk stopped.
    pub fn lookup_resume(
        &mut self,
        resume: Resume,
        key: &FlowKey,
        pkt_len: u64,
        now: u64,
    ) -> Arc<PipelineResult> {
        let mut k = *key;
        for f in [
            Field::InPort,
            Field::InPhyPort,
            Field::Metadata,
            Field::TunnelId,
        ] {
            k.set(f, resume.key.get(f));
        }
        let res = PipelineResult {
            actions: Vec::new(),
            meters: Vec::new(),
            trace: Vec::new(),
            mask: FlowKey([0; KEY_LEN]),
            key: k,
            missed: false,
            resume: None,
        };
        let mut visits = Vec::new();
        Arc::new(self.walk(
            res,
            resume.set,
            usize::from(resume.table_id),
            pkt_len,
            now,
            &mut visits,
        ))
    }

    fn walk(
        &mut self,
        mut res: PipelineResult,
        mut set: ActionSet,
        mut table_id: usize,
        pkt_len: u64,
        now: u64,
        visits: &mut Vec<(u8, Option<RuleId>)>,
    ) -> PipelineResult {
        let n = self.tables.len();
        while let Some(table) = self.tables.get_mut(table_id) {
            table.lookup_count = table.lookup_count.saturating_add(1);
            let (hit, mask) = table.cls.lookup_with_mask(&res.key);
            for (o, b) in res.mask.0.iter_mut().zip(mask.0.iter()) {
                *o |= *b;
            }
            let tid = u8::try_from(table_id).unwrap_or(u8::MAX);
            let hit = hit.map(|h| h.0);
            visits.push((tid, hit));
            let Some(id) = hit else {
                res.trace.push(TraceStep {
                    table_id: tid,
                    key: res.key,
                    hit: None,
                    mask,
                });
                res.missed = true;
                return res;
            };
            table.matched_count = table.matched_count.saturating_add(1);
            let Some(e) = table.cls.get_mut(id) else {
                break;
            };
            e.packet_count = e.packet_count.saturating_add(1);
            e.byte_count = e.byte_count.saturating_add(pkt_len);
            e.last_used = now;
            res.trace.push(TraceStep {
                table_id: tid,
                key: res.key,
                hit: Some(TraceHit {
                    r#match: e.r#match,
                    priority: e.priority,
                    cookie: e.cookie,
                    instructions: e.instructions.clone(),
                }),
                mask,
            });
            let mut goto = None;
            for i in &e.instructions {
                if let Instruction::Meter(m) = i {
                    res.meters.push(*m);
                }
            }
            let mut reparse = false;
            for i in &e.instructions {
                if let Instruction::ApplyActions(acts) = i {
                    for a in acts {
                        reparse |= reveals_headers(a);
                        apply_to_key(&mut res.key, a);
                        res.actions.push(a.clone());
                    }
                }
            }
            if e.instructions
                .iter()
                .any(|i| matches!(i, Instruction::ClearActions))
            {
                set = ActionSet::default();
            }
            for i in &e.instructions {
                match i {
                    Instruction::WriteActions(acts) => {
                        for a in acts {
                            set.write(a);
                        }
                    }
                    Instruction::GotoTable(t) => goto = Some(usize::from(*t)),
                    _ => {}
                }
            }
            for i in &e.instructions {
                if let Instruction::WriteMetadata { metadata, mask } = i {
                    let old = res.key.get_u64(Field::Metadata);
                    res.key
                        .set_u64(Field::Metadata, (old & !mask) | (metadata & mask));
                }
            }
            match goto {
                // Validation guarantees forward gotos; anything else ends the walk.
                Some(t) if t > table_id && t < n => {
                    if reparse {
                        res.resume = Some(Resume {
                            table_id: u8::try_from(t).unwrap_or(u8::MAX),
                            set,
                            key: res.key,
                        });
                        return res;
                    }
                    table_id = t;
                }
                _ => break,
            }
        }
        set.execute_into(&mut res.actions);
        res
    }
}

fn sort_removed(v: &mut [Removed]) {
    v.sort_by(|a, b| {
        (
            a.table_id,
            std::cmp::Reverse(a.entry.priority),
            &a.entry.r#match,
        )
            .cmp(&(
                b.table_id,
                std::cmp::Reverse(b.entry.priority),
                &b.entry.r#match,
            ))
    });
}

/// True for actions after which the key cannot be updated in place: they reveal headers
/// the key never held (an inner VLAN tag, the payload under an MPLS label, the customer frame
/// inside PBB) or add ones it cannot describe (PBB).
fn reveals_headers(a: &Action) -> bool {
    matches!(
        a,
        Action::PopVlan | Action::PopMpls(_) | Action::PopPbb | Action::PushPbb(_)
    )
}

/// What an apply-action does to the key later tables match on.
fn apply_to_key(key: &mut FlowKey, a: &Action) {
    match a {
        Action::SetField {
            field: Field::VlanVid,
            value,
        } => {
            let v = value.iter().fold(0u16, |acc, &b| (acc << 8) | u16::from(b));
            key.set_u64(Field::VlanVid, u64::from(OFPVID_PRESENT | (v & 0x0fff)));
        }
        Action::SetField { field, value } => key.set(*field, value),
        Action::PushVlan(_) => {
            // The new tag copies the old outer VID and PCP, or starts at 0.
            let vid = key.get_u64(Field::VlanVid);
            key.set_u64(Field::VlanVid, u64::from(OFPVID_PRESENT) | vid);
        }
        Action::PopVlan => {
            // An inner tag's VID is not in the key: the packet is seen as untagged.
            key.set_u64(Field::VlanVid, 0);
            key.set_u64(Field::VlanPcp, 0);
        }
        Action::PushMpls(et) => {
            let was_mpls = matches!(key.get_u64(Field::EthType), 0x8847 | 0x8848);
            key.set_u64(Field::EthType, u64::from(*et));
            if !was_mpls {
                key.set_u64(Field::MplsLabel, 0);
                key.set_u64(Field::MplsTc, 0);
                key.set_u64(Field::MplsBos, 1);
            } else {
                key.set_u64(Field::MplsBos, 0);
            }
        }
        Action::PopMpls(et) => {
            key.set_u64(Field::EthType, u64::from(*et));
            key.set_u64(Field::MplsLabel, 0);
            key.set_u64(Field::MplsTc, 0);
            key.set_u64(Field::MplsBos, 0);
        }
        _ => {}
    }
}

/// The OF1.3 action set: at most one action per type (one set-field per field).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ActionSet {
    actions: Vec<Action>,
}

/// Identity of an action inside the action set.
fn set_kind(a: &Action) -> (u16, Option<Field>) {
    match a {
        Action::SetField { field, .. } => (a.type_code(), Some(*field)),
        _ => (a.type_code(), None),
    }
}

/// Execution rank of an action-set member (OF1.3.5 §5.10).
fn set_rank(a: &Action) -> u8 {
    match a {
        Action::CopyTtlIn => 0,
        Action::PopVlan => 1,
        Action::PopMpls(_) => 2,
        Action::PopPbb => 3,
        Action::PushMpls(_) => 4,
        Action::PushPbb(_) => 5,
        Action::PushVlan(_) => 6,
        Action::CopyTtlOut => 7,
        Action::DecMplsTtl | Action::DecNwTtl => 8,
        Action::SetField { .. } | Action::SetMplsTtl(_) | Action::SetNwTtl(_) => 9,
        Action::Experimenter { .. } | Action::Unknown { .. } => 10,
        Action::SetQueue(_) => 11,
        Action::Group(_) => 12,
        Action::Output { .. } => 13,
    }
}

impl ActionSet {
    fn write(&mut self, a: &Action) {
        let k = set_kind(a);
        match self.actions.iter_mut().find(|x| set_kind(x) == k) {
            Some(slot) => *slot = a.clone(),
            None => self.actions.push(a.clone()),
        }
    }

    fn execute_into(mut self, out: &mut Vec<Action>) {
        // Stable: set-fields keep their write order.
        self.actions.sort_by_key(set_rank);
        let has_group = self.actions.iter().any(|a| matches!(a, Action::Group(_)));
        out.extend(
            self.actions
                .into_iter()
                .filter(|a| !(has_group && matches!(a, Action::Output { .. }))),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mods::flow_flags::*;

    const SEC: u64 = NS_PER_SEC;

    fn out(p: u32) -> Action {
        Action::Output {
            port: p,
            max_len: 0,
        }
    }

    fn ip_dst(last: u8) -> Match {
        let mut m = Match::any();
        m.set_u64(Field::EthType, 0x0800);
        m.set(Field::Ipv4Dst, &[10, 0, 0, last]);
        m
    }

    fn ip_net() -> Match {
        let mut m = Match::any();
        m.set_u64(Field::EthType, 0x0800);
        m.set_masked(Field::Ipv4Dst, &[10, 0, 0, 0], &[255, 255, 255, 0]);
        m
    }

    fn key(last: u8) -> FlowKey {
        let mut k = FlowKey::default();
        k.set_u64(Field::InPort, 1);
        k.set_u64(Field::EthType, 0x0800);
        k.set(Field::Ipv4Dst, &[10, 0, 0, last]);
        k
    }

    fn add(m: Match, priority: u16, instructions: Vec<Instruction>) -> FlowMod {
        FlowMod {
            r#match: m,
            priority,
            instructions,
            ..FlowMod::default()
        }
    }

    fn cmd(command: FlowModCommand, m: Match) -> FlowMod {
        FlowMod {
            command,
            r#match: m,
            ..FlowMod::default()
        }
    }

    fn apply(a: Vec<Action>) -> Instruction {
        Instruction::ApplyActions(a)
    }

    /// lookup, then (after a pop) lookup_resume with the key a re-parse of the untagged
    /// packet gives, joined into one result.
    fn walk(t: &mut FlowTables, k: &FlowKey) -> PipelineResult {
        let mut r = PipelineResult::clone(&t.lookup(k, 1, 0));
        if let Some(resume) = r.resume.take() {
            let mut inner = *k;
            inner.set_u64(Field::VlanVid, 0);
            inner.set_u64(Field::VlanPcp, 0);
            let r2 = t.lookup_resume(resume, &inner, 1, 0);
            r.actions.extend(r2.actions.iter().cloned());
            r.trace.extend(r2.trace.iter().cloned());
            r.meters.extend(r2.meters.iter().copied());
            for (o, b) in r.mask.0.iter_mut().zip(r2.mask.0.iter()) {
                *o |= *b;
            }
            r.missed = r2.missed;
            r.key = r2.key;
        }
        r
    }

    #[test]
    fn a_pop_before_goto_stops_the_walk_and_resume_continues_it() {
        let mut t = FlowTables::new(3);
        let mut mpls = Match::any();
        mpls.set_u64(Field::InPort, 1);
        mpls.set_u64(Field::EthType, 0x8847);
        let mut fm = add(
            mpls,
            10,
            vec![
                apply(vec![Action::PopMpls(0x0800)]),
                Instruction::WriteActions(vec![Action::SetQueue(3)]),
                Instruction::WriteMetadata {
                    metadata: 0xab,
                    mask: 0xff,
                },
                Instruction::GotoTable(2),
            ],
        );
        t.apply_flow_mod(&fm, 0).unwrap();
        fm = add(ip_dst(7), 10, vec![Instruction::WriteActions(vec![out(2)])]);
        fm.table_id = 2;
        t.apply_flow_mod(&fm, 0).unwrap();
        let mut k = FlowKey::default();
        k.set_u64(Field::InPort, 1);
        k.set_u64(Field::EthType, 0x8847);
        let first = t.lookup(&k, 100, 1);
        assert_eq!(first.actions, vec![Action::PopMpls(0x0800)]);
        let resume = first
            .resume
            .clone()
            .expect("stops to re-parse after pop_mpls");
        assert_eq!(resume.table_id, 2);
        // The caller re-extracts the key from the popped packet: IPv4 to 10.0.0.7, and no
        // in_port or metadata (they are not in the packet).
        let mut inner = key(7);
        inner.set_u64(Field::InPort, 0);
        let second = t.lookup_resume(resume, &inner, 100, 1);
        assert!(second.resume.is_none() && !second.missed);
        assert_eq!(second.actions, vec![Action::SetQueue(3), out(2)]);
        assert_eq!(second.key.get_u64(Field::Metadata), 0xab);
        assert_eq!(second.key.get_u64(Field::InPort), 1);
        // Without a goto after the pop there is nothing to resume.
        let mut last = Match::any();
        last.set_u64(Field::InPort, 5);
        last.set_u64(Field::EthType, 0x8847);
        t.apply_flow_mod(
            &add(last, 1, vec![apply(vec![Action::PopMpls(0x0800), out(1)])]),
            0,
        )
        .unwrap();
        let mut k5 = FlowKey::default();
        k5.set_u64(Field::InPort, 5);
        k5.set_u64(Field::EthType, 0x8847);
        let r = t.lookup(&k5, 60, 1);
        assert!(r.resume.is_none());
        assert_eq!(r.actions, vec![Action::PopMpls(0x0800), out(1)]);
    }

    #[test]
    fn add_replace_keeps_counters_unless_reset() {
        let mut t = FlowTables::new(2);
        let fm = FlowMod {
            cookie: 1,
            ..add(ip_dst(1), 10, vec![apply(vec![out(1)])])
        };
        assert_eq!(
            t.apply_flow_mod(&fm, 0).unwrap(),
            FlowModEffect::Added {
                table_id: 0,
                replaced: false
            }
        );
        t.lookup(&key(1), 100, 5);
        let fm2 = FlowMod {
            cookie: 2,
            ..add(ip_dst(1), 10, vec![apply(vec![out(2)])])
        };
        assert_eq!(
            t.apply_flow_mod(&fm2, 10).unwrap(),
            FlowModEffect::Added {
                table_id: 0,
                replaced: true
            }
        );
        let s = t.flow_stats(&FlowFilter::default());
        assert_eq!(s.len(), 1);
        let e = s[0].1;
        assert_eq!(
            (e.cookie, e.packet_count, e.byte_count, e.created),
            (2, 1, 100, 10)
        );
        assert!(e.outputs_to(2));
        let fm3 = FlowMod {
            flags: RESET_COUNTS,
            ..fm2.clone()
        };
        t.apply_flow_mod(&fm3, 20).unwrap();
        let e = t.flow_stats(&FlowFilter::default())[0].1.clone();
        assert_eq!((e.packet_count, e.byte_count), (0, 0));
        // Another priority is a different entry.
        t.apply_flow_mod(&add(ip_dst(1), 11, vec![]), 20).unwrap();
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn clone_is_an_independent_copy() {
        let mut t = FlowTables::new(2);
        // Equal priorities: the entry added first wins, in the clone too.
        t.apply_flow_mod(&add(ip_net(), 10, vec![apply(vec![out(1)])]), 0)
            .unwrap();
        t.apply_flow_mod(&add(ip_dst(1), 10, vec![apply(vec![out(2)])]), 0)
            .unwrap();
        t.lookup(&key(1), 100, 5);
        let mut c = t.clone();
        assert_eq!(
            c.flow_stats(&FlowFilter::default()),
            t.flow_stats(&FlowFilter::default())
        );
        assert_eq!(c.table_stats(), t.table_stats());
        assert_eq!(c.lookup(&key(1), 60, 6).actions, vec![out(1)]);
        c.apply_flow_mod(&cmd(FlowModCommand::Delete, ip_dst(1)), 7)
            .unwrap();
        assert_eq!(c.len(), 1);
        // The original saw neither the clone's lookup nor its delete.
        assert_eq!(t.len(), 2);
        assert_eq!(t.table_stats()[0].lookup_count, 1);
        let s = t.flow_stats(&FlowFilter::default());
        let net = s.iter().find(|(_, e)| e.r#match == ip_net()).unwrap().1;
        assert_eq!((net.packet_count, net.byte_count), (1, 100));
        assert_eq!(c.table_stats()[0].lookup_count, 2);
    }

    #[test]
    fn check_overlap() {
        let mut t = FlowTables::new(1);
        t.apply_flow_mod(&add(ip_net(), 10, vec![]), 0).unwrap();
        let over = FlowMod {
            flags: CHECK_OVERLAP,
            ..add(ip_dst(3), 10, vec![])
        };
        let err = t.apply_flow_mod(&over, 0).unwrap_err();
        assert_eq!(err.code.name(), "OFPFMFC_OVERLAP");
        // Different priority: no overlap.
        let ok = FlowMod {
            flags: CHECK_OVERLAP,
            ..add(ip_dst(3), 11, vec![])
        };
        t.apply_flow_mod(&ok, 0).unwrap();
        // Disjoint match at the same priority: fine.
        let mut other = ip_net();
        other.set_masked(Field::Ipv4Dst, &[10, 0, 1, 0], &[255, 255, 255, 0]);
        let ok = FlowMod {
            flags: CHECK_OVERLAP,
            ..add(other, 10, vec![])
        };
        t.apply_flow_mod(&ok, 0).unwrap();
        // Identical match and priority overlaps too.
        let same = FlowMod {
            flags: CHECK_OVERLAP,
            ..add(ip_net(), 10, vec![])
        };
        assert!(t.apply_flow_mod(&same, 0).is_err());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn bad_table_and_command() {
        let mut t = FlowTables::new(2);
        let fm = FlowMod {
            table_id: 2,
            ..add(Match::any(), 0, vec![])
        };
        assert_eq!(
            t.apply_flow_mod(&fm, 0).unwrap_err().code.name(),
            "OFPFMFC_BAD_TABLE_ID"
        );
        let fm = FlowMod {
            table_id: OFPTT_ALL,
            ..add(Match::any(), 0, vec![])
        };
        assert!(t.apply_flow_mod(&fm, 0).is_err());
        let fm = FlowMod {
            command: FlowModCommand::Unknown(9),
            ..FlowMod::default()
        };
        assert_eq!(
            t.apply_flow_mod(&fm, 0).unwrap_err().code.name(),
            "OFPFMFC_BAD_COMMAND"
        );
        assert_eq!(FlowTables::new(255).n_tables(), MAX_TABLES);
    }

    fn three_flows(t: &mut FlowTables) {
        let a = FlowMod {
            cookie: 0x11,
            ..add(ip_dst(1), 10, vec![apply(vec![out(1)])])
        };
        let b = FlowMod {
            cookie: 0x12,
            ..add(
                ip_dst(2),
                20,
                vec![Instruction::WriteActions(vec![Action::Group(7)])],
            )
        };
        let c = FlowMod {
            cookie: 0x21,
            ..add(ip_net(), 5, vec![apply(vec![out(3)])])
        };
        for fm in [a, b, c] {
            t.apply_flow_mod(&fm, 0).unwrap();
        }
    }

    #[test]
    fn modify_strict_and_not() {
        let mut t = FlowTables::new(1);
        three_flows(&mut t);
        t.lookup(&key(1), 60, 1);
        // Non-strict with the /24: all three are subsets; cookie filter keeps 0x1?.
        let fm = FlowMod {
            cookie: 0x10,
            cookie_mask: 0xf0,
            instructions: vec![apply(vec![out(9)])],
            ..cmd(FlowModCommand::Modify, ip_net())
        };
        assert_eq!(
            t.apply_flow_mod(&fm, 2).unwrap(),
            FlowModEffect::Modified { count: 2 }
        );
        let s = t.flow_stats(&FlowFilter {
            out_port: 9,
            ..FlowFilter::default()
        });
        assert_eq!(
            s.iter().map(|x| x.1.cookie).collect::<Vec<_>>(),
            vec![0x12, 0x11]
        );
        // Cookie, timeouts and counters are untouched by modify.
        assert_eq!(s[1].1.packet_count, 1);
        // Strict needs the exact priority.
        let fm = FlowMod {
            priority: 6,
            instructions: vec![],
            ..cmd(FlowModCommand::ModifyStrict, ip_net())
        };
        assert_eq!(
            t.apply_flow_mod(&fm, 2).unwrap(),
            FlowModEffect::Modified { count: 0 }
        );
        let fm = FlowMod {
            priority: 5,
            flags: RESET_COUNTS,
            ..fm
        };
        assert_eq!(
            t.apply_flow_mod(&fm, 2).unwrap(),
            FlowModEffect::Modified { count: 1 }
        );
        // A narrower match selects nothing non-strictly wider; modify never adds.
        let fm = FlowMod {
            instructions: vec![apply(vec![out(4)])],
            ..cmd(FlowModCommand::Modify, ip_dst(9))
        };
        assert_eq!(
            t.apply_flow_mod(&fm, 2).unwrap(),
            FlowModEffect::Modified { count: 0 }
        );
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn delete_filters() {
        let mut t = FlowTables::new(1);
        three_flows(&mut t);
        // out_port filter.
        let fm = FlowMod {
            out_port: 3,
            ..cmd(FlowModCommand::Delete, Match::any())
        };
        let FlowModEffect::Deleted(r) = t.apply_flow_mod(&fm, 1).unwrap() else {
            panic!()
        };
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].entry.cookie, r[0].reason),
            (0x21, RemovedReason::Delete)
        );
        // out_group filter (group in write-actions).
        let fm = FlowMod {
            out_group: 7,
            ..cmd(FlowModCommand::Delete, Match::any())
        };
        let FlowModEffect::Deleted(r) = t.apply_flow_mod(&fm, 1).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.iter().map(|x| x.entry.cookie).collect::<Vec<_>>(),
            vec![0x12]
        );
        // Strict: wrong priority deletes nothing, right one deletes.
        let fm = FlowMod {
            priority: 11,
            ..cmd(FlowModCommand::DeleteStrict, ip_dst(1))
        };
        let FlowModEffect::Deleted(r) = t.apply_flow_mod(&fm, 1).unwrap() else {
            panic!()
        };
        assert!(r.is_empty());
        let fm = FlowMod {
            priority: 10,
            cookie_mask: u64::MAX,
            cookie: 0x99,
            ..fm
        };
        let FlowModEffect::Deleted(r) = t.apply_flow_mod(&fm, 1).unwrap() else {
            panic!()
        };
        assert!(r.is_empty(), "cookie filter");
        let fm = FlowMod { cookie: 0x11, ..fm };
        let FlowModEffect::Deleted(r) = t.apply_flow_mod(&fm, 1).unwrap() else {
            panic!()
        };
        assert_eq!(r.len(), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn delete_all_tables_non_strict_subset() {
        let mut t = FlowTables::new(3);
        for table_id in 0..3 {
            t.apply_flow_mod(
                &FlowMod {
                    table_id,
                    ..add(ip_dst(1), 1, vec![])
                },
                0,
            )
            .unwrap();
            t.apply_flow_mod(
                &FlowMod {
                    table_id,
                    ..add(Match::any(), 0, vec![])
                },
                0,
            )
            .unwrap();
        }
        // The /24 selects the /32 entries, not the catch-alls.
        let fm = FlowMod {
            table_id: OFPTT_ALL,
            ..cmd(FlowModCommand::Delete, ip_net())
        };
        let FlowModEffect::Deleted(r) = t.apply_flow_mod(&fm, 0).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.iter().map(|x| x.table_id).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(t.len(), 3);
        // Table 1 only, match-all.
        let fm = FlowMod {
            table_id: 1,
            ..cmd(FlowModCommand::Delete, Match::any())
        };
        let FlowModEffect::Deleted(r) = t.apply_flow_mod(&fm, 0).unwrap() else {
            panic!()
        };
        assert_eq!(r.len(), 1);
        assert_eq!(
            t.table_stats()
                .iter()
                .map(|s| s.active_count)
                .collect::<Vec<_>>(),
            vec![1, 0, 1]
        );
    }

    #[test]
    fn timeouts_with_virtual_clock() {
        let mut t = FlowTables::new(1);
        let idle = FlowMod {
            idle_timeout: 10,
            flags: SEND_FLOW_REM,
            ..add(ip_dst(1), 1, vec![])
        };
        let hard = FlowMod {
            hard_timeout: 30,
            idle_timeout: 50,
            ..add(ip_dst(2), 1, vec![])
        };
        t.apply_flow_mod(&idle, 0).unwrap();
        t.apply_flow_mod(&hard, 0).unwrap();
        t.apply_flow_mod(&add(Match::any(), 0, vec![]), 0).unwrap();
        assert_eq!(t.next_expiry(), Some(10 * SEC));
        // Traffic at 8s pushes the idle deadline to 18s.
        t.lookup(&key(1), 64, 8 * SEC);
        assert_eq!(t.next_expiry(), Some(18 * SEC));
        assert!(t.expire(18 * SEC - 1).is_empty());
        let r = t.expire(18 * SEC);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reason, RemovedReason::IdleTimeout);
        assert_eq!(r[0].entry.packet_count, 1);
        assert_eq!(r[0].entry.flags & SEND_FLOW_REM, SEND_FLOW_REM);
        assert_eq!(t.next_expiry(), Some(30 * SEC));
        let r = t.expire(31 * SEC);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reason, RemovedReason::HardTimeout);
        assert_eq!(t.next_expiry(), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn group_and_meter_removal() {
        let mut t = FlowTables::new(2);
        three_flows(&mut t);
        let m = FlowMod {
            table_id: 1,
            ..add(ip_dst(5), 1, vec![Instruction::Meter(4)])
        };
        t.apply_flow_mod(&m, 0).unwrap();
        let r = t.remove_flows_using_group(8);
        assert!(r.is_empty());
        let r = t.remove_flows_using_group(7);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reason, RemovedReason::GroupDelete);
        let r = t.remove_flows_using_meter(meter::ALL);
        assert_eq!(
            (r.len(), r[0].table_id, r[0].reason),
            (1, 1, RemovedReason::Delete)
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn stats_filters_and_counters() {
        let mut t = FlowTables::new(2);
        three_flows(&mut t);
        let miss = FlowMod {
            table_id: 1,
            ..add(Match::any(), 0, vec![])
        };
        t.apply_flow_mod(&miss, 0).unwrap();
        t.lookup(&key(1), 100, 1);
        t.lookup(&key(1), 50, 2);
        t.lookup(&key(7), 10, 3); // the /24 entry
        let mut k = key(1);
        k.set_u64(Field::EthType, 0x86dd);
        t.lookup(&k, 1, 4); // miss in table 0
        let all = t.aggregate_stats(&FlowFilter::default());
        assert_eq!(
            all,
            AggregateStats {
                packet_count: 3,
                byte_count: 160,
                flow_count: 4
            }
        );
        let t0 = t.aggregate_stats(&FlowFilter {
            table_id: 0,
            ..FlowFilter::default()
        });
        assert_eq!(t0.flow_count, 3);
        let by_cookie = FlowFilter {
            cookie: 0x20,
            cookie_mask: 0xf0,
            ..FlowFilter::default()
        };
        assert_eq!(t.aggregate_stats(&by_cookie).byte_count, 10);
        let by_match = FlowFilter {
            r#match: ip_dst(1),
            ..FlowFilter::default()
        };
        let s = t.flow_stats(&by_match);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].1.packet_count, s[0].1.last_used), (2, 2));
        let by_group = FlowFilter {
            out_group: 7,
            ..FlowFilter::default()
        };
        assert_eq!(t.flow_stats(&by_group)[0].1.cookie, 0x12);
        let ts = t.table_stats();
        assert_eq!(
            (ts[0].lookup_count, ts[0].matched_count, ts[0].active_count),
            (4, 3, 3)
        );
        assert_eq!((ts[1].lookup_count, ts[1].matched_count), (0, 0));
        // Flow stats order: priority descending.
        let prios: Vec<u16> = t
            .flow_stats(&FlowFilter::default())
            .iter()
            .map(|x| x.1.priority)
            .collect();
        assert_eq!(prios, vec![20, 10, 5, 0]);
        assert_eq!(t.flow_stats(&FlowFilter::default())[0].1.duration(5), 5);
    }

    fn sf(field: Field, v: u64) -> Action {
        let len = field.len();
        let b = v.to_be_bytes();
        Action::SetField {
            field,
            value: b[8 - len..].to_vec(),
        }
    }

    #[test]
    fn pipeline_goto_metadata_set_field_and_action_set() {
        let mut t = FlowTables::new(3);
        // Table 0: meter, rewrite ipv4_dst (seen by table 1), write metadata, write actions.
        let t0 = add(
            ip_dst(1),
            10,
            vec![
                Instruction::GotoTable(1),
                Instruction::WriteMetadata {
                    metadata: 0xab,
                    mask: 0xff,
                },
                Instruction::WriteActions(vec![out(1), sf(Field::IpDscp, 3), Action::DecNwTtl]),
                apply(vec![sf(Field::Ipv4Dst, 0x0a00_0002)]),
                Instruction::Meter(5),
            ],
        );
        t.apply_flow_mod(&t0, 0).unwrap();
        let mut m1 = ip_dst(2);
        m1.set_masked(Field::Metadata, &[0xab], &[0xff]);
        let t1 = FlowMod {
            table_id: 1,
            ..add(
                m1,
                10,
                vec![
                    Instruction::WriteActions(vec![
                        out(2),
                        Action::PushVlan(0x8100),
                        sf(Field::VlanVid, 0x1005),
                        Action::SetQueue(1),
                    ]),
                    Instruction::GotoTable(2),
                ],
            )
        };
        t.apply_flow_mod(&t1, 0).unwrap();
        let t2 = FlowMod {
            table_id: 2,
            ..add(Match::any(), 0, vec![apply(vec![out(port::CONTROLLER)])])
        };
        t.apply_flow_mod(&t2, 0).unwrap();

        let r = t.lookup(&key(1), 99, 7);
        assert!(!r.missed);
        assert_eq!(r.meters, vec![5]);
        assert_eq!(
            r.actions,
            vec![
                sf(Field::Ipv4Dst, 0x0a00_0002),
                out(port::CONTROLLER),
                // Action set in spec order; output replaced by the later write.
                Action::PushVlan(0x8100),
                Action::DecNwTtl,
                sf(Field::IpDscp, 3),
                sf(Field::VlanVid, 0x1005),
                Action::SetQueue(1),
                out(2),
            ]
        );
        assert_eq!(r.trace.len(), 3);
        assert_eq!(r.trace[1].key.get(Field::Ipv4Dst), &[10, 0, 0, 2]);
        assert_eq!(r.trace[1].key.get_u64(Field::Metadata), 0xab);
        assert!(r.trace[2].hit.as_ref().unwrap().is_table_miss());
        assert_eq!(r.trace[0].hit.as_ref().unwrap().priority, 10);
        // The union mask covers what tables 0 and 1 examined.
        assert_eq!(r.mask.get(Field::Ipv4Dst), &[255; 4]);
        assert_eq!(r.mask.get_u64(Field::Metadata), 0xff);
        assert_eq!(r.mask.get_u64(Field::EthType), 0xffff);
        assert!(r.mask.is_zero(Field::TcpDst));
        assert!(r.mask.is_zero(Field::InPort));
        let ts = t.table_stats();
        assert_eq!(
            ts.iter().map(|s| s.matched_count).collect::<Vec<_>>(),
            vec![1, 1, 1]
        );
        // Megaflow: a key differing only outside the mask walks the same way.
        let mut other = key(1);
        other.set_u64(Field::InPort, 5);
        other.set_u64(Field::TcpDst, 99);
        let r2 = t.lookup(&other, 99, 8);
        assert_eq!(
            (&r2.actions, &r2.meters, r2.mask),
            (&r.actions, &r.meters, r.mask)
        );
        // ... and was served by the megaflow cache, counted on the same entries.
        assert!(t.cache_stats().hits >= 1, "{:?}", t.cache_stats());
        let ts = t.table_stats();
        assert_eq!(
            ts.iter().map(|s| s.matched_count).collect::<Vec<_>>(),
            vec![2, 2, 2]
        );
    }

    #[test]
    fn pipeline_clear_group_and_miss() {
        let mut t = FlowTables::new(2);
        let mut tagged = Match::any();
        tagged.set_masked(Field::VlanVid, &[0x10, 0], &[0x10, 0]);
        let t0 = add(
            tagged,
            1,
            vec![
                Instruction::WriteActions(vec![out(1), Action::Group(3)]),
                apply(vec![Action::PopVlan]),
                Instruction::GotoTable(1),
            ],
        );
        t.apply_flow_mod(&t0, 0).unwrap();
        // Table 1 matches only untagged packets (after the pop) on port 1.
        let mut m = Match::any();
        m.set_u64(Field::VlanVid, 0);
        m.set_u64(Field::InPort, 1);
        t.apply_flow_mod(
            &FlowMod {
                table_id: 1,
                ..add(m, 1, vec![])
            },
            0,
        )
        .unwrap();
        let mut k = key(1);
        k.set_u64(Field::VlanVid, 0x1064);
        let r = walk(&mut t, &k);
        // Group present: output dropped from the action set.
        assert_eq!(r.actions, vec![Action::PopVlan, Action::Group(3)]);
        // Clear-actions in table 1 empties the set.
        let fm = FlowMod {
            table_id: 1,
            instructions: vec![Instruction::ClearActions],
            ..cmd(FlowModCommand::ModifyStrict, m)
        };
        let fm = FlowMod { priority: 1, ..fm };
        assert_eq!(
            t.apply_flow_mod(&fm, 0).unwrap(),
            FlowModEffect::Modified { count: 1 }
        );
        let r = walk(&mut t, &k);
        assert_eq!(r.actions, vec![Action::PopVlan]);
        // Miss in table 1 (other port): drop, action set discarded, apply-actions kept.
        k.set_u64(Field::InPort, 2);
        let r = walk(&mut t, &k);
        assert!(r.missed);
        assert_eq!(r.actions, vec![Action::PopVlan]);
        assert_eq!(r.trace.len(), 2);
        assert!(r.trace[1].hit.is_none());
        assert_eq!(r.mask.get_u64(Field::InPort), 0xffff_ffff);
        // Empty pipeline: miss in table 0.
        let mut empty = FlowTables::new(1);
        let r = empty.lookup(&k, 1, 0);
        assert!(r.missed && r.actions.is_empty());
    }
}
