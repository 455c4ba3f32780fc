//! An in-memory [`ControlPlane`] for tests and demos: the real admission and planner against [`FakeSwitch`], counters fed by the test.
//!
//! Pushes are planned against what the fake switch holds and applied to it, so verdicts,
//! plans and traces are the real ones; a refused change restores the switch as it was.
//! Counter samples and devices are whatever the test feeds in ([`FakeControlPlane::feed`],
//! [`FakeControlPlane::set_devices`]).

use super::control::{
    ApiEvent, BoxFuture, ControlPlane, DeviceView, PlanView, PolicyState, Proposal, PushError,
    PushOutcome, Sample, Verdict,
};
use crate::fake_switch::FakeSwitch;
use crate::planner::{plan, Observed};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

#[derive(Debug)]
struct Inner {
    state: PolicyState,
    switch: FakeSwitch,
    now: u64,
    samples: VecDeque<Sample>,
    last: Option<Sample>,
    devices: Vec<DeviceView>,
    discovery: Vec<(String, u64)>,
    connected: bool,
}

/// The fake control plane.
#[derive(Debug, Clone)]
pub struct FakeControlPlane {
    inner: Arc<Mutex<Inner>>,
    events: broadcast::Sender<ApiEvent>,
}

impl FakeControlPlane {
    /// Admits `text`, applies it to an empty fake switch with these named ports; version 1.
    pub fn new(text: &str, ports: BTreeMap<String, u32>) -> Result<FakeControlPlane, Vec<String>> {
        let policy = crate::cli::check_text(text)?;
        let mut switch = FakeSwitch::new(3, ports);
        let p = plan(None, &policy, &switch.observe(0), 0).map_err(|r| r.reasons)?;
        switch
            .apply(&p, 0)
            .map_err(|(i, e)| vec![format!("change {i}: {e}")])?;
        let (events, _) = broadcast::channel(256);
        Ok(FakeControlPlane {
            inner: Arc::new(Mutex::new(Inner {
                state: PolicyState {
                    policy,
                    text: text.to_string(),
                    version: 1,
                },
                switch,
                now: 1,
                samples: VecDeque::new(),
                last: None,
                devices: Vec::new(),
                discovery: Vec::new(),
                connected: true,
            })),
            events,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the fake switch (to check what a request did or did not change).
    pub fn switch(&self) -> FakeSwitch {
        self.lock().switch.clone()
    }

    /// Queues a counter sample; [`ControlPlane::sample`] returns queued samples in order, then
    /// repeats the last.
    pub fn feed(&self, s: Sample) {
        self.lock().samples.push_back(s);
    }

    /// Sets the inventory (and sends a device event for each entry).
    pub fn set_devices(&self, d: Vec<DeviceView>) {
        for x in &d {
            let _ = self.events.send(ApiEvent::Device {
                change: "appeared".into(),
                udn: x.udn.clone(),
                friendly_name: x.friendly_name.clone(),
                device_type: x.device_type.clone(),
                address: x.address.clone(),
            });
        }
        self.lock().devices = d;
    }

    /// Sets discovery's counters.
    pub fn set_discovery_counters(&self, c: Vec<(String, u64)>) {
        self.lock().discovery = c;
    }

    /// Marks the switch connected or not (a disconnected switch still takes pushes: they are
    /// stored and applied "later", here immediately to the fake).
    pub fn set_connected(&self, up: bool) {
        self.lock().connected = up;
        let _ = self.events.send(ApiEvent::Switch {
            connected: up,
            detail: String::new(),
        });
    }

    /// Sends an event as the daemon would.
    pub fn emit(&self, e: ApiEvent) {
        let _ = self.events.send(e);
    }
}

impl ControlPlane for FakeControlPlane {
    fn policy(&self) -> PolicyState {
        self.lock().state.clone()
    }

    fn push(&self, p: Proposal) -> BoxFuture<'_, Result<PushOutcome, PushError>> {
        Box::pin(async move {
            let mut g = self.lock();
            if let Some(v) = p.if_match {
                if v != g.state.version {
                    return Err(PushError::Conflict {
                        current: g.state.version,
                    });
                }
            }
            g.now += 1;
            let now = g.now;
            let observed = g.switch.observe(now);
            let planned = plan(Some(&g.state.policy), &p.policy, &observed, now)
                .map_err(|r| PushError::Rejected(r.reasons))?;
            let changed = p.policy != g.state.policy;
            let admission = Verdict {
                admitted: true,
                reasons: Vec::new(),
            };
            if p.dry_run {
                return Ok(PushOutcome {
                    version: g.state.version,
                    changed,
                    dry_run: true,
                    applied: false,
                    admission,
                    plan: PlanView::of(&planned),
                });
            }
            let before = g.switch.clone();
            if let Err((i, e)) = g.switch.apply(&planned, now) {
                g.switch = before;
                return Err(PushError::Failed(format!(
                    "the switch refused change {i} ({}): {e}; nothing changed",
                    planned
                        .changes
                        .get(i)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )));
            }
            if changed {
                g.state = PolicyState {
                    policy: p.policy,
                    text: p.text,
                    version: g.state.version + 1,
                };
                let _ = self.events.send(ApiEvent::Policy {
                    version: g.state.version,
                    origin: format!("{} {}", p.origin.name(), p.what),
                    services: planned.services.clone(),
                    summary: planned.summary(),
                });
            }
            Ok(PushOutcome {
                version: g.state.version,
                changed,
                dry_run: false,
                applied: true,
                admission,
                plan: PlanView::of(&planned),
            })
        })
    }

    fn observed(&self) -> Option<Observed> {
        let g = self.lock();
        Some(g.switch.observe(g.now))
    }

    fn connected(&self) -> bool {
        self.lock().connected
    }

    fn sample(&self) -> BoxFuture<'_, Result<Sample, String>> {
        Box::pin(async move {
            let mut g = self.lock();
            if let Some(s) = g.samples.pop_front() {
                g.last = Some(s);
            }
            g.last.clone().ok_or_else(|| "no counters yet".to_string())
        })
    }

    fn devices(&self) -> Vec<DeviceView> {
        self.lock().devices.clone()
    }

    fn discovery_counters(&self) -> Vec<(String, u64)> {
        self.lock().discovery.clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<ApiEvent> {
        self.events.subscribe()
    }
}
