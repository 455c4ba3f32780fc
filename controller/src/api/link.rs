//! The [`ControlPlane`] of the real daemon: snapshots the daemon keeps up to date, and a channel on which it receives policy pushes.
//!
//! The daemon owns the switch connection and the store, so a push cannot be done from an API
//! task: [`Link::push`] sends a [`PushRequest`] to the daemon and waits for its reply. The
//! daemon handles it between OpenFlow messages: [`decide`] (pure: version check, admission,
//! plan against what it last read) gives the dry-run answer or the plan; for a real push the
//! daemon stores the text, applies the plan as it applies a reload, and on failure restores
//! the stored record and replies [`PushError::Failed`]. Reads never wait for the daemon: it
//! publishes its state with [`Link::set_policy`], [`Link::set_observed`],
//! [`Link::set_connected`], and events with [`Link::publish`]. Counters come from shg-switch's
//! control socket (`dump-queues`, `dump-ports`), read off the async threads; devices from a
//! closure over the discovery handle ([`Link::set_inventory`]).

use super::control::{
    ApiEvent, BoxFuture, ControlPlane, DeviceView, PlanView, PolicyState, PortCounters, Proposal,
    PushError, PushOutcome, Sample, Verdict,
};
use super::stats::parse_queue_counters;
use crate::planner::{plan, Observed, Plan};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// A push for the daemon to carry out.
#[derive(Debug)]
pub struct PushRequest {
    pub proposal: Proposal,
    pub reply: oneshot::Sender<Result<PushOutcome, PushError>>,
}

type Inventory = Box<dyn Fn() -> (Vec<DeviceView>, Vec<(String, u64)>) + Send + Sync>;

struct Shared {
    state: PolicyState,
    observed: Option<Observed>,
    connected: bool,
    inventory: Option<Inventory>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("version", &self.state.version)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

/// The daemon's side and the API's side of the link (cheap to clone).
#[derive(Debug, Clone)]
pub struct Link {
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<ApiEvent>,
    requests: mpsc::Sender<PushRequest>,
    ctl: Option<PathBuf>,
    started: Instant,
}

impl Link {
    /// A link for the policy in force; `ctl` is shg-switch's control socket (counters).
    /// The receiver is the daemon's: every push arrives there.
    pub fn new(state: PolicyState, ctl: Option<PathBuf>) -> (Link, mpsc::Receiver<PushRequest>) {
        let (requests, rx) = mpsc::channel(16);
        let (events, _) = broadcast::channel(256);
        (
            Link {
                shared: Arc::new(Mutex::new(Shared {
                    state,
                    observed: None,
                    connected: false,
                    inventory: None,
                })),
                events,
                requests,
                ctl,
                started: Instant::now(),
            },
            rx,
        )
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The daemon accepted a policy (a push, a reload): new state, and a `policy` event.
    pub fn set_policy(&self, state: PolicyState, origin: &str, plan: Option<&Plan>) {
        let ev = ApiEvent::Policy {
            version: state.version,
            origin: origin.to_string(),
            services: plan.map(|p| p.services.clone()).unwrap_or_default(),
            summary: plan.map(Plan::summary).unwrap_or_default(),
        };
        self.lock().state = state;
        let _ = self.events.send(ev);
    }

    /// What the daemon last read back from the switch (after each sync).
    pub fn set_observed(&self, o: Observed) {
        self.lock().observed = Some(o);
    }

    /// The switch connected or went away.
    pub fn set_connected(&self, up: bool, detail: &str) {
        let changed = {
            let mut g = self.lock();
            std::mem::replace(&mut g.connected, up) != up
        };
        if changed {
            let _ = self.events.send(ApiEvent::Switch {
                connected: up,
                detail: detail.to_string(),
            });
        }
    }

    /// Where devices and discovery counters come from, e.g. a closure over
    /// `discovery::Discovery` mapping `devices()` through [`DeviceView::of`].
    pub fn set_inventory(
        &self,
        f: impl Fn() -> (Vec<DeviceView>, Vec<(String, u64)>) + Send + Sync + 'static,
    ) {
        self.lock().inventory = Some(Box::new(f));
    }

    /// Sends an event to the API's event streams (device changes, ...).
    pub fn publish(&self, e: ApiEvent) {
        let _ = self.events.send(e);
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The daemon's decision on a push, pure: the version check, admission and the plan against
/// what the switch holds (`observed`). `Ok((plan, changed))`.
pub fn decide(
    current: &PolicyState,
    observed: &Observed,
    p: &Proposal,
    now: u64,
) -> Result<(Plan, bool), PushError> {
    if p.if_match.is_some_and(|v| v != current.version) {
        return Err(PushError::Conflict {
            current: current.version,
        });
    }
    let planned = plan(Some(&current.policy), &p.policy, observed, now)
        .map_err(|r| PushError::Rejected(r.reasons))?;
    Ok((planned, p.policy != current.policy))
}

/// The answer to a push: `version` is the version now in force.
pub fn outcome(
    plan: &Plan,
    version: u64,
    changed: bool,
    dry_run: bool,
    applied: bool,
) -> PushOutcome {
    PushOutcome {
        version,
        changed,
        dry_run,
        applied,
        admission: Verdict {
            admitted: true,
            reasons: Vec::new(),
        },
        plan: PlanView::of(plan),
    }
}

/// Parses shg-switch's `dump-ports` (`port N: rx pkts=.., bytes=.., drop=.., errs=..` and
/// the `tx ...` line after it).
pub fn parse_dump_ports(text: &str) -> Vec<PortCounters> {
    let mut out: Vec<PortCounters> = Vec::new();
    let num = |line: &str, key: &str| -> u64 {
        line.split([',', ' '])
            .find_map(|w| w.trim().strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("port ") {
            let Some((no, stats)) = rest.split_once(':') else {
                continue;
            };
            let port = match no.trim() {
                "LOCAL" => shg_flows::action::port::LOCAL,
                n => match n.parse() {
                    Ok(n) => n,
                    Err(_) => continue,
                },
            };
            out.push(PortCounters {
                port,
                rx_packets: num(stats, "pkts="),
                rx_bytes: num(stats, "bytes="),
                rx_dropped: num(stats, "drop="),
                ..PortCounters::default()
            });
        } else if let (Some(rest), Some(p)) = (t.strip_prefix("tx "), out.last_mut()) {
            p.tx_packets = num(rest, "pkts=");
            p.tx_bytes = num(rest, "bytes=");
            p.tx_dropped = num(rest, "drop=");
        }
    }
    out
}

async fn ctl(path: PathBuf, line: &'static str) -> Result<String, String> {
    match tokio::task::spawn_blocking(move || crate::switch_ctl::request(&path, line)).await {
        Ok(Ok((true, text))) => Ok(text),
        Ok(Ok((false, text))) => Err(format!("`{line}`: {}", text.trim())),
        Ok(Err(e)) => Err(format!("`{line}`: {e}")),
        Err(e) => Err(format!("`{line}`: {e}")),
    }
}

impl ControlPlane for Link {
    fn policy(&self) -> PolicyState {
        self.lock().state.clone()
    }

    fn push(&self, p: Proposal) -> BoxFuture<'_, Result<PushOutcome, PushError>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.requests
                .send(PushRequest { proposal: p, reply })
                .await
                .map_err(|_| PushError::Unavailable("the controller is stopping".into()))?;
            rx.await
                .map_err(|_| PushError::Unavailable("the controller dropped the request".into()))?
        })
    }

    fn observed(&self) -> Option<Observed> {
        self.lock().observed.clone()
    }

    fn connected(&self) -> bool {
        self.lock().connected
    }

    fn sample(&self) -> BoxFuture<'_, Result<Sample, String>> {
        Box::pin(async move {
            let Some(path) = self.ctl.clone() else {
                return Err("no switch control socket: no counters".into());
            };
            let at_ns = self.now_ns();
            let wall_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            let queues = parse_queue_counters(&ctl(path.clone(), "dump-queues").await?)?;
            let mut ports = parse_dump_ports(&ctl(path, "dump-ports").await?);
            if let Some(o) = self.observed() {
                for p in &mut ports {
                    if let Some((n, _)) = o.ports.iter().find(|(_, no)| **no == p.port) {
                        p.name = n.clone();
                    }
                }
            }
            Ok(Sample {
                at_ns,
                wall_ms,
                queues,
                ports,
                meters: Vec::new(),
            })
        })
    }

    fn devices(&self) -> Vec<DeviceView> {
        self.lock()
            .inventory
            .as_ref()
            .map(|f| f().0)
            .unwrap_or_default()
    }

    fn discovery_counters(&self) -> Vec<(String, u64)> {
        self.lock()
            .inventory
            .as_ref()
            .map(|f| f().1)
            .unwrap_or_default()
    }

    fn subscribe(&self) -> broadcast::Receiver<ApiEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::control::Role;
    use crate::fake_switch::FakeSwitch;

    const GATEWAY: &str = include_str!("../../../tests/fixtures/controller/gateway.toml");

    #[test]
    fn dump_ports_is_read() {
        let text = "2 ports\n  port  1: rx pkts=10, bytes=1000, drop=1, errs=0\n           tx pkts=20, bytes=2000, drop=2, errs=0\n           duration=1.000s\n  port LOCAL: rx pkts=0, bytes=0, drop=0, errs=0\n           tx pkts=3, bytes=300, drop=0, errs=0\n";
        let p = parse_dump_ports(text);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].port, p[0].rx_bytes, p[0].tx_packets, p[0].tx_dropped),
            (1, 1000, 20, 2)
        );
        assert_eq!(
            (p[1].port, p[1].tx_bytes),
            (shg_flows::action::port::LOCAL, 300)
        );
    }

    #[tokio::test]
    async fn a_push_goes_to_the_daemon_and_back() {
        let policy = crate::config::parse(GATEWAY).unwrap();
        let state = PolicyState {
            policy: policy.clone(),
            text: GATEWAY.into(),
            version: 7,
        };
        let (link, mut rx) = Link::new(state.clone(), None);
        let daemon = tokio::spawn(async move {
            let req = rx.recv().await.unwrap();
            let observed = FakeSwitch::new(3, Default::default()).observe(0);
            let r = decide(&state, &observed, &req.proposal, 1).map(|(p, changed)| {
                outcome(&p, state.version, changed, req.proposal.dry_run, false)
            });
            let _ = req.reply.send(r);
        });
        let mut events = link.subscribe();
        let out = link
            .push(Proposal {
                policy,
                text: GATEWAY.into(),
                if_match: Some(7),
                dry_run: true,
                origin: Role::Isp,
                what: "test".into(),
            })
            .await
            .unwrap();
        daemon.await.unwrap();
        assert_eq!((out.version, out.changed, out.dry_run), (7, false, true));
        assert!(
            !out.plan.changes.is_empty(),
            "an empty switch needs everything"
        );
        link.set_connected(true, "test");
        assert!(matches!(
            events.recv().await.unwrap(),
            ApiEvent::Switch {
                connected: true,
                ..
            }
        ));
        assert!(
            link.sample().await.is_err(),
            "no control socket, no counters"
        );
    }

    #[test]
    fn a_stale_version_is_a_conflict() {
        let policy = crate::config::parse(GATEWAY).unwrap();
        let state = PolicyState {
            policy: policy.clone(),
            text: String::new(),
            version: 2,
        };
        let p = Proposal {
            policy,
            text: String::new(),
            if_match: Some(1),
            dry_run: false,
            origin: Role::Isp,
            what: String::new(),
        };
        assert_eq!(
            decide(&state, &Observed::default(), &p, 0).unwrap_err(),
            PushError::Conflict { current: 2 }
        );
    }
}
