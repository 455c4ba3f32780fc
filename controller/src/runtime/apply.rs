//! One synchronisation of the switch with the policy: snapshot, plan against what is there, apply in the plan's order, roll back on refusal, verify.
//!
//! [`steps`] (pure) cuts a plan into runs of OpenFlow changes, each sent as one
//! barrier-bounded transaction, and runs of queue changes, each sent line by line to the
//! switch's control socket — keeping the plan's order. Without a control socket (Open
//! vSwitch) queue changes are skipped and reported; flows still carry `set_queue`.
//!
//! [`sync`] does the I/O: a refused change stops the walk, everything sent so far is undone
//! ([`crate::southbound::rollback::undo_all`] for OpenFlow, [`super::queues::undo_queue_changes`]
//! for queues) and the error names the change and the switch's reason. After a successful
//! walk the switch is read back and planned again: anything still to do (other than
//! skipped queue changes) is a verification failure. Nothing is ever flushed: a switch that
//! already matches gets no message at all besides the reads.

use super::queues::{ctl_line, is_queue_change, parse_dump_queues, undo_queue_changes};
use crate::model::Policy;
use crate::planner::pipeline::PortQueues;
use crate::planner::{plan, Change, KnownDevice, Observed, Plan};
use crate::southbound::conn::{OfConn, OfError, Snapshot};
use crate::southbound::rollback::undo_all;
use shg_flows::wire::message::Message;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, error, info, warn};

/// A run of consecutive changes of one kind (indices into [`Plan::changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Sent as one barrier-bounded OpenFlow transaction.
    OpenFlow(Vec<usize>),
    /// Sent to the control socket, one request each.
    Queue(Vec<usize>),
}

/// Cuts `plan` into steps in its order; with `queues` false, queue changes are left out
/// and counted (the second value).
pub fn steps(plan: &Plan, queues: bool) -> (Vec<Step>, usize) {
    let mut out: Vec<Step> = Vec::new();
    let mut skipped = 0;
    for (i, c) in plan.changes.iter().enumerate() {
        if is_queue_change(c) {
            if !queues {
                skipped += 1;
                continue;
            }
            match out.last_mut() {
                Some(Step::Queue(v)) => v.push(i),
                _ => out.push(Step::Queue(vec![i])),
            }
        } else {
            match out.last_mut() {
                Some(Step::OpenFlow(v)) => v.push(i),
                _ => out.push(Step::OpenFlow(vec![i])),
            }
        }
    }
    (out, skipped)
}

/// The OpenFlow message of a change (`None` for queue changes).
pub fn to_message(c: &Change) -> Option<Message> {
    match c {
        Change::Flow(f) => Some(Message::FlowMod(f.clone())),
        Change::Meter(m) => Some(Message::MeterMod(m.clone())),
        Change::Group(g) => Some(Message::GroupMod(g.clone())),
        _ => None,
    }
}

/// The planner's view of a snapshot (and of the queues read from the control socket).
pub fn observed(s: &Snapshot, queues: BTreeMap<u32, PortQueues>) -> Observed {
    Observed {
        ports: s
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.port_no))
            .collect(),
        flows: s.flows.clone(),
        groups: s.groups.clone(),
        meters: s.meters.clone(),
        queues,
        devices: Vec::new(),
    }
}

/// What went wrong in a synchronisation.
#[derive(Debug)]
pub enum SyncError {
    /// The OpenFlow connection failed (the session ends; the next one starts over).
    Conn(OfError),
    /// The policy was refused by admission (cannot happen for a loaded policy; kept honest).
    Rejected(String),
    /// The switch refused a change; what was applied before it has been undone.
    Refused {
        /// The change, as the planner prints it.
        change: String,
        /// The switch's answer.
        reason: String,
        /// Whether the undo itself went through.
        rolled_back: bool,
    },
    /// The control socket could not be read or did not answer.
    Ctl(String),
    /// The switch does not match the policy after applying the plan.
    Verify { remaining: usize, first: String },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Conn(e) => write!(f, "{e}"),
            SyncError::Rejected(r) => write!(f, "policy rejected: {r}"),
            SyncError::Refused {
                change,
                reason,
                rolled_back,
            } => write!(
                f,
                "the switch refused `{change}`: {reason}; {}",
                if *rolled_back {
                    "the changes applied before it were rolled back"
                } else {
                    "ROLLBACK FAILED: the switch may hold a partial policy"
                }
            ),
            SyncError::Ctl(e) => write!(f, "switch control socket: {e}"),
            SyncError::Verify { remaining, first } => write!(
                f,
                "verification failed: {remaining} change(s) still needed after applying, first: {first}"
            ),
        }
    }
}

impl From<OfError> for SyncError {
    fn from(e: OfError) -> Self {
        SyncError::Conn(e)
    }
}

/// What a successful synchronisation did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Changes applied (0: the switch already matched).
    pub applied: usize,
    /// Queue changes skipped for want of a control socket.
    pub skipped_queue: usize,
    /// The switch's ports by name, as last read.
    pub ports: BTreeMap<String, u32>,
    /// What the switch holds now, as read back (after applying: the verified state), with
    /// the devices the plan was made for.
    pub observed: Observed,
    /// The plan that was applied (empty when the switch already matched).
    pub plan: Plan,
}

/// One request to the control socket, off the async thread.
async fn ctl_request(path: &Path, line: String) -> Result<String, String> {
    let p: PathBuf = path.to_path_buf();
    let l = line.clone();
    match tokio::task::spawn_blocking(move || crate::switch_ctl::request(&p, &l)).await {
        Ok(Ok((true, text))) => Ok(text),
        Ok(Ok((false, text))) => Err(text.trim().to_string()),
        Ok(Err(e)) => Err(format!("`{line}`: {e}")),
        Err(e) => Err(format!("`{line}`: {e}")),
    }
}

async fn read_queues(ctl: Option<&Path>) -> Result<BTreeMap<u32, PortQueues>, SyncError> {
    let Some(path) = ctl else {
        return Ok(BTreeMap::new());
    };
    let text = ctl_request(path, "dump-queues".into())
        .await
        .map_err(SyncError::Ctl)?;
    parse_dump_queues(&text).map_err(SyncError::Ctl)
}

/// Reads the switch, plans `policy` against it, applies the plan and verifies it.
pub async fn sync<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut OfConn<S>,
    ctl: Option<&Path>,
    old: Option<&Policy>,
    policy: &Policy,
    now: u64,
) -> Result<SyncReport, SyncError> {
    sync_with(conn, ctl, old, policy, &[], now).await
}

/// [`sync`] with the home devices discovery knows (for `device:TYPE` reach).
pub async fn sync_with<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut OfConn<S>,
    ctl: Option<&Path>,
    old: Option<&Policy>,
    policy: &Policy,
    devices: &[KnownDevice],
    now: u64,
) -> Result<SyncReport, SyncError> {
    let seen = |s: &Snapshot, q: BTreeMap<u32, PortQueues>| Observed {
        devices: devices.to_vec(),
        ..observed(s, q)
    };
    let before = conn.snapshot().await?;
    // Flows matter more than queues: a control socket that cannot be read costs this sync
    // its queue changes, not its flows.
    let (ctl, qbefore) = match read_queues(ctl).await {
        Ok(q) => (ctl, q),
        Err(e) => {
            error!("{e}; queue changes skipped this time");
            (None, BTreeMap::new())
        }
    };
    let obs_before = seen(&before, qbefore.clone());
    let p = plan(old, policy, &obs_before, now).map_err(|r| SyncError::Rejected(r.to_string()))?;
    for n in &p.notes {
        warn!("plan: {n}");
    }
    if !p.foreign.is_empty() {
        info!(
            "plan: {} foreign item(s) on the switch ({:?} policy)",
            p.foreign.len(),
            policy.gateway.foreign
        );
        for f in &p.foreign {
            debug!("foreign: {f}");
        }
    }
    let (steps, skipped) = steps(&p, ctl.is_some());
    if skipped > 0 {
        info!(
            "no switch control socket configured (--switch-ctl): {skipped} queue/port-rate change(s) skipped; flows still use set_queue"
        );
    }
    let mut report = SyncReport {
        applied: 0,
        skipped_queue: skipped,
        ports: before
            .ports
            .iter()
            .map(|x| (x.name.clone(), x.port_no))
            .collect(),
        observed: obs_before,
        plan: Plan::default(),
    };
    let todo: usize = steps
        .iter()
        .map(|s| match s {
            Step::OpenFlow(v) | Step::Queue(v) => v.len(),
        })
        .sum();
    if todo == 0 {
        info!("sync: the switch already matches the policy (0 changes)");
        report.plan = p;
        return Ok(report);
    }
    info!("sync: plan {}", p.summary());
    if old.is_some() && !p.services.is_empty() {
        info!("sync: services changed: {}", p.services.join(" "));
    }
    for c in &p.changes {
        debug!("change: {c}");
    }

    let mut sent: Vec<Message> = Vec::new();
    let mut queued: Vec<Change> = Vec::new();
    for step in &steps {
        match step {
            Step::Queue(ix) => {
                let path = ctl.unwrap_or(Path::new(""));
                for &i in ix {
                    let Some(c) = p.changes.get(i) else { continue };
                    let Some(line) = ctl_line(c) else { continue };
                    match ctl_request(path, line).await {
                        Ok(_) => queued.push(c.clone()),
                        Err(reason) => {
                            let rolled_back =
                                roll_back(conn, ctl, &sent, &before, &queued, &qbefore).await;
                            return Err(SyncError::Refused {
                                change: c.to_string(),
                                reason,
                                rolled_back,
                            });
                        }
                    }
                }
            }
            Step::OpenFlow(ix) => {
                let msgs: Vec<Message> = ix
                    .iter()
                    .filter_map(|&i| p.changes.get(i).and_then(to_message))
                    .collect();
                match conn.transaction(&msgs).await {
                    Ok(()) => sent.extend(msgs),
                    Err(OfError::Refused {
                        index,
                        code,
                        detail,
                        ..
                    }) => {
                        sent.extend(msgs);
                        let change = index
                            .and_then(|k| ix.get(k))
                            .and_then(|&i| p.changes.get(i))
                            .map_or_else(|| "(unknown change)".to_string(), ToString::to_string);
                        let rolled_back =
                            roll_back(conn, ctl, &sent, &before, &queued, &qbefore).await;
                        let mut reason = format!("{code:?}");
                        if !detail.is_empty() {
                            reason.push_str(&format!(" ({detail})"));
                        }
                        return Err(SyncError::Refused {
                            change,
                            reason,
                            rolled_back,
                        });
                    }
                    Err(e) => return Err(SyncError::Conn(e)),
                }
            }
        }
    }
    report.applied = todo;

    // Verify: the next plan must be empty (queue changes aside when they cannot be made).
    let after = conn.snapshot().await?;
    let qafter = read_queues(ctl).await?;
    let obs_after = seen(&after, qafter);
    let again = plan(Some(policy), policy, &obs_after, now)
        .map_err(|r| SyncError::Rejected(r.to_string()))?;
    let left: Vec<&Change> = again
        .changes
        .iter()
        .filter(|c| ctl.is_some() || !is_queue_change(c))
        .collect();
    if let Some(first) = left.first() {
        for c in &left {
            warn!("verify: still needed: {c}");
        }
        return Err(SyncError::Verify {
            remaining: left.len(),
            first: first.to_string(),
        });
    }
    info!("sync: applied {todo} change(s) and verified");
    report.ports = obs_after.ports.clone();
    report.observed = obs_after;
    report.plan = p;
    Ok(report)
}

/// Undoes what was sent: OpenFlow changes in one transaction, then queue changes. Returns
/// whether everything went through.
async fn roll_back<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut OfConn<S>,
    ctl: Option<&Path>,
    sent: &[Message],
    before: &Snapshot,
    queued: &[Change],
    qbefore: &BTreeMap<u32, PortQueues>,
) -> bool {
    let mut ok = true;
    let undo = undo_all(sent, before);
    if !undo.is_empty() {
        warn!("rollback: {} OpenFlow message(s)", undo.len());
        if let Err(e) = conn.transaction(&undo).await {
            error!("rollback of OpenFlow changes failed: {e}");
            ok = false;
        }
    }
    if let Some(path) = ctl {
        for c in undo_queue_changes(queued, qbefore) {
            let Some(line) = ctl_line(&c) else { continue };
            if let Err(e) = ctl_request(path, line).await {
                error!("rollback of `{c}` failed: {e}");
                ok = false;
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::pipeline::QueueSetting;
    use shg_flows::mods::FlowMod;

    fn q(port: u32) -> Change {
        Change::SetQueue {
            port,
            queue: QueueSetting {
                queue_id: 1,
                min_rate: 0,
                max_rate: None,
                priority: 0,
            },
        }
    }

    #[test]
    fn steps_keep_the_plan_order_and_skip_queues_without_a_socket() {
        let f = Change::Flow(FlowMod::default());
        let plan = Plan {
            changes: vec![
                Change::PortRate {
                    port: 1,
                    rate: Some(1),
                },
                q(1),
                f.clone(),
                f.clone(),
                Change::DeleteQueue {
                    port: 1,
                    queue_id: 3,
                },
                f.clone(),
            ],
            ..Plan::default()
        };
        let (s, skipped) = steps(&plan, true);
        assert_eq!(skipped, 0);
        assert_eq!(
            s,
            vec![
                Step::Queue(vec![0, 1]),
                Step::OpenFlow(vec![2, 3]),
                Step::Queue(vec![4]),
                Step::OpenFlow(vec![5]),
            ]
        );
        let (s, skipped) = steps(&plan, false);
        assert_eq!(skipped, 3);
        assert_eq!(s, vec![Step::OpenFlow(vec![2, 3, 5])]);
        assert!(to_message(&f).is_some());
        assert!(to_message(&q(1)).is_none());
    }
}
