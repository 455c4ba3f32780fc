//! The planner, pure: (old policy, new policy, observed switch state, now) → the minimal ordered list of changes.
//!
//! [`plan`] admits the new policy ([`crate::admission`]; a rejected policy gets no plan),
//! compiles it into the desired state ([`pipeline::compile`]) and diffs that against
//! [`Observed`], what the switch reported. Nothing already correct is touched, so planning
//! again against the result gives an empty plan.
//!
//! Identity: a flow is the triple (table, priority, match), as OpenFlow's strict commands see
//! it. A desired flow that exists with the same cookie but other instructions is changed with
//! MODIFY_STRICT (its counters survive); one that exists with another cookie is replaced by an
//! ADD (which takes the new cookie); a missing one is added. Observed flows with a planner
//! cookie ([`pipeline::cookie`]) that the policy no longer wants are removed with
//! DELETE_STRICT filtered by their exact cookie. Flows with any other cookie are not the
//! planner's: with `gateway.foreign_flows = "report"` (default) they stay and are listed in
//! [`Plan::foreign`]; with `"delete"` they are deleted. Meters with ids in
//! [`pipeline::METER_IDS`] are the planner's; others, and every group (the pipeline uses
//! none), are foreign in the same sense. Queues are only managed on ports the policy shapes
//! (the uplink): every queue there is the planner's.
//!
//! Order of [`Plan::changes`], chosen so that no packet sees a half-applied policy that is
//! more permissive than either the old or the new one, and no flow ever names a missing meter
//! or queue: port rate and queue settings; meter adds and modifies; flow deletes (table 0
//! first, low priority first); flow adds and modifies (table 2 first, high priority first, so
//! a drop or deny always lands before the wider rule below it); meter deletes; group deletes;
//! queue deletes. The southbound may group them into barrier-bounded transactions freely as
//! long as it keeps this order.
//!
//! `now` is not used to decide anything (no flow has a timeout); it is stamped on the plan.

pub mod pipeline;

use crate::admission::{admit, Admitted, Rejection};
use crate::model::{ForeignPolicy, Policy};
use pipeline::{cookie, DesiredMeter, PortQueues, QueueSetting};
use shg_flows::action::{group, port, Instruction};
use shg_flows::matches::Match;
use shg_flows::mods::{
    FlowMod, FlowModCommand, GroupMod, GroupModCommand, MeterMod, MeterModCommand,
};
use shg_flows::rate::format_rate;
use shg_flows::text::{format_flow_mod, format_group_mod, format_match, format_meter_mod};
use shg_flows::wire::multipart::{FlowStats, GroupDesc, MeterConfig};
use std::collections::BTreeMap;
use std::fmt;

/// What the switch reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Port name → OpenFlow port number (from OFPMP_PORT_DESC).
    pub ports: BTreeMap<String, u32>,
    /// Every flow of every table (OFPMP_FLOW with table OFPTT_ALL).
    pub flows: Vec<FlowStats>,
    /// OFPMP_GROUP_DESC.
    pub groups: Vec<GroupDesc>,
    /// OFPMP_METER_CONFIG.
    pub meters: Vec<MeterConfig>,
    /// Queues by port (switch control socket or QUEUE_GET_CONFIG).
    pub queues: BTreeMap<u32, PortQueues>,
    /// Home devices discovery currently knows (SSDP/UPnP), for `device:` reach: a device
    /// appearing, moving or leaving changes only the flows of the services that select it
    /// (cookies owned by [`pipeline::cookie::device_owner`] of its UDN).
    pub devices: Vec<KnownDevice>,
}

/// A discovered home device, as policy refers to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KnownDevice {
    /// `uuid:...` of the root device.
    pub udn: String,
    /// The full device type URN (`urn:schemas-upnp-org:device:MediaRenderer:1`), and those
    /// of its embedded devices.
    pub device_types: Vec<String>,
    /// The address it announced from (its LAN address).
    pub ipv4: std::net::Ipv4Addr,
}

/// One change to the switch.
// A plan is built once and walked once; boxing the flow mods would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Shape `port` to `rate` bits/s (`None`: unshaped).
    PortRate {
        port: u32,
        rate: Option<u64>,
    },
    /// Create or reconfigure one queue.
    SetQueue {
        port: u32,
        queue: QueueSetting,
    },
    /// Remove one queue.
    DeleteQueue {
        port: u32,
        queue_id: u32,
    },
    Meter(MeterMod),
    Group(GroupMod),
    Flow(FlowMod),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::PortRate { port, rate } => match rate {
                Some(r) => write!(f, "PORT {port} rate={}", format_rate(*r)),
                None => write!(f, "PORT {port} rate=none"),
            },
            Change::SetQueue { port, queue: q } => write!(
                f,
                "QUEUE port={port} id={} min_rate={} max_rate={} priority={}",
                q.queue_id,
                format_rate(q.min_rate),
                q.max_rate.map_or_else(|| "port".into(), format_rate),
                q.priority
            ),
            Change::DeleteQueue { port, queue_id } => {
                write!(f, "DEL_QUEUE port={port} id={queue_id}")
            }
            Change::Meter(m) => f.write_str(&format_meter_mod(m)),
            Change::Group(g) => f.write_str(&format_group_mod(g)),
            Change::Flow(m) => f.write_str(&format_flow_mod(m)),
        }
    }
}

/// The ordered changes that turn the observed state into the desired one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// When it was planned (the caller's clock).
    pub now: u64,
    /// In the order they must be applied.
    pub changes: Vec<Change>,
    /// Flows, meters and groups that are not the planner's and were left in place (or, with
    /// `foreign_flows = "delete"`, are deleted by `changes`), one line each.
    pub foreign: Vec<String>,
    /// Parts of the policy left out (unresolved port names) and other remarks.
    pub notes: Vec<String>,
    /// What changed in the policy relative to the old one (`+name`, `-name`, `~name`).
    pub services: Vec<String>,
}

impl Plan {
    /// True when the switch already matches the policy.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The flow mods, in order.
    pub fn flow_mods(&self) -> impl Iterator<Item = &FlowMod> {
        self.changes.iter().filter_map(|c| match c {
            Change::Flow(f) => Some(f),
            _ => None,
        })
    }

    /// The meter mods, in order.
    pub fn meter_mods(&self) -> impl Iterator<Item = &MeterMod> {
        self.changes.iter().filter_map(|c| match c {
            Change::Meter(m) => Some(m),
            _ => None,
        })
    }

    /// The group mods, in order.
    pub fn group_mods(&self) -> impl Iterator<Item = &GroupMod> {
        self.changes.iter().filter_map(|c| match c {
            Change::Group(g) => Some(g),
            _ => None,
        })
    }

    /// Counts for a one-line summary.
    pub fn summary(&self) -> String {
        let mut flows = [0usize; 3]; // add, modify, delete
        for f in self.flow_mods() {
            match f.command {
                FlowModCommand::Add => flows[0] += 1,
                FlowModCommand::Modify | FlowModCommand::ModifyStrict => flows[1] += 1,
                _ => flows[2] += 1,
            }
        }
        let meters = self.meter_mods().count();
        let queues = self
            .changes
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Change::PortRate { .. } | Change::SetQueue { .. } | Change::DeleteQueue { .. }
                )
            })
            .count();
        format!(
            "{} change(s): flows +{} ~{} -{}, {} meter mod(s), {} group mod(s), {} queue change(s); {} foreign item(s)",
            self.changes.len(),
            flows[0],
            flows[1],
            flows[2],
            meters,
            self.group_mods().count(),
            queues,
            self.foreign.len()
        )
    }
}

/// Admits `new` and plans it; a rejected policy gets no plan.
pub fn plan(
    old: Option<&Policy>,
    new: &Policy,
    observed: &Observed,
    now: u64,
) -> Result<Plan, Rejection> {
    let admitted = admit(new)?;
    Ok(plan_admitted(old, admitted, observed, now))
}

type FlowId = (u8, u16, Match);

/// Plans an already admitted policy.
pub fn plan_admitted(
    old: Option<&Policy>,
    new: Admitted<'_>,
    observed: &Observed,
    now: u64,
) -> Plan {
    let policy = new.policy();
    let desired = pipeline::compile(policy, &observed.ports, &observed.devices);
    let delete_foreign = policy.gateway.foreign == ForeignPolicy::Delete;
    let mut plan = Plan {
        now,
        notes: desired.notes.clone(),
        services: service_changes(old, policy),
        ..Plan::default()
    };

    // Queues.
    let mut queue_deletes = Vec::new();
    for (&port, want) in &desired.queues {
        let have = observed.queues.get(&port);
        if have.map(|h| h.rate) != Some(want.rate) {
            plan.changes.push(Change::PortRate {
                port,
                rate: want.rate,
            });
        }
        for q in &want.queues {
            let cur = have.and_then(|h| h.queues.iter().find(|x| x.queue_id == q.queue_id));
            if cur != Some(q) {
                plan.changes.push(Change::SetQueue { port, queue: *q });
            }
        }
        for q in have.map(|h| h.queues.as_slice()).unwrap_or(&[]) {
            if !want.queues.iter().any(|w| w.queue_id == q.queue_id) {
                queue_deletes.push(Change::DeleteQueue {
                    port,
                    queue_id: q.queue_id,
                });
            }
        }
    }

    // Meters.
    let mut meter_deletes = Vec::new();
    for m in &desired.meters {
        match observed.meters.iter().find(|o| o.meter_id == m.meter_id) {
            Some(o) if o.flags == m.flags && o.bands == m.bands => {}
            Some(_) => plan
                .changes
                .push(Change::Meter(meter_mod(MeterModCommand::Modify, m))),
            None => plan
                .changes
                .push(Change::Meter(meter_mod(MeterModCommand::Add, m))),
        }
    }
    for o in &observed.meters {
        if desired.meters.iter().any(|m| m.meter_id == o.meter_id) {
            continue;
        }
        let ours = pipeline::METER_IDS.contains(&o.meter_id);
        if !ours {
            plan.foreign.push(format!("meter={}", o.meter_id));
        }
        if ours || delete_foreign {
            meter_deletes.push(Change::Meter(MeterMod {
                command: MeterModCommand::Delete,
                flags: 0,
                meter_id: o.meter_id,
                bands: Vec::new(),
            }));
        }
    }

    // Flows.
    let want: BTreeMap<FlowId, &pipeline::DesiredFlow> = desired
        .flows
        .iter()
        .map(|f| ((f.table_id, f.priority, f.r#match), f))
        .collect();
    let have: BTreeMap<FlowId, &FlowStats> = observed
        .flows
        .iter()
        .map(|f| ((f.table_id, f.priority, f.r#match), f))
        .collect();
    let mut deletes: Vec<(FlowId, u64)> = Vec::new();
    for (id, f) in &have {
        if want.contains_key(id) {
            continue;
        }
        let ours = cookie::is_ours(f.cookie);
        if !ours {
            plan.foreign.push(foreign_flow(f));
        }
        if ours || delete_foreign {
            deletes.push((*id, f.cookie));
        }
    }
    deletes.sort_by_key(|((t, p, m), _)| (*t, *p, *m));
    for ((table_id, priority, r#match), c) in deletes {
        plan.changes.push(Change::Flow(FlowMod {
            cookie: c,
            cookie_mask: u64::MAX,
            table_id,
            command: FlowModCommand::DeleteStrict,
            priority,
            r#match,
            out_port: port::ANY,
            out_group: group::ANY,
            ..FlowMod::default()
        }));
    }
    let mut upserts: Vec<(&FlowId, &pipeline::DesiredFlow)> =
        want.iter().map(|(k, v)| (k, *v)).collect();
    upserts.sort_by(|(a, _), (b, _)| {
        (std::cmp::Reverse(a.0), std::cmp::Reverse(a.1), a.2).cmp(&(
            std::cmp::Reverse(b.0),
            std::cmp::Reverse(b.1),
            b.2,
        ))
    });
    for (id, f) in upserts {
        let fm = |command, cookie_mask, instructions: &[Instruction]| FlowMod {
            cookie: f.cookie,
            cookie_mask,
            table_id: f.table_id,
            command,
            priority: f.priority,
            r#match: f.r#match,
            instructions: instructions.to_vec(),
            ..FlowMod::default()
        };
        match have.get(id) {
            Some(h) if h.cookie == f.cookie && h.instructions == f.instructions => {}
            Some(h) if h.cookie == f.cookie => plan.changes.push(Change::Flow(fm(
                FlowModCommand::ModifyStrict,
                u64::MAX,
                &f.instructions,
            ))),
            Some(h) => {
                if !cookie::is_ours(h.cookie) {
                    plan.foreign.push(format!(
                        "{} (replaced by the planner's flow)",
                        foreign_flow(h)
                    ));
                }
                plan.changes
                    .push(Change::Flow(fm(FlowModCommand::Add, 0, &f.instructions)));
            }
            None => plan
                .changes
                .push(Change::Flow(fm(FlowModCommand::Add, 0, &f.instructions))),
        }
    }

    plan.changes.extend(meter_deletes);
    for g in &observed.groups {
        plan.foreign.push(format!("group_id={}", g.group_id));
        if delete_foreign {
            plan.changes.push(Change::Group(GroupMod {
                command: GroupModCommand::Delete,
                group_type: g.group_type,
                group_id: g.group_id,
                buckets: Vec::new(),
            }));
        }
    }
    plan.changes.extend(queue_deletes);
    plan
}

fn meter_mod(command: MeterModCommand, m: &DesiredMeter) -> MeterMod {
    MeterMod {
        command,
        flags: m.flags,
        meter_id: m.meter_id,
        bands: m.bands.clone(),
    }
}

fn foreign_flow(f: &FlowStats) -> String {
    let m = format_match(&f.r#match);
    let sep = if m.is_empty() { "" } else { "," };
    format!(
        "cookie=0x{:x}, table={}, priority={}{sep}{m}",
        f.cookie, f.table_id, f.priority
    )
}

fn service_changes(old: Option<&Policy>, new: &Policy) -> Vec<String> {
    let Some(old) = old else {
        return new.services.keys().map(|n| format!("+{n}")).collect();
    };
    let mut out = Vec::new();
    for (n, s) in &new.services {
        match old.services.get(n) {
            None => out.push(format!("+{n}")),
            Some(o) if o != s => out.push(format!("~{n}")),
            Some(_) => {}
        }
    }
    for n in old.services.keys() {
        if !new.services.contains_key(n) {
            out.push(format!("-{n}"));
        }
    }
    out.sort_by(|a, b| a[1..].cmp(&b[1..]));
    out
}
