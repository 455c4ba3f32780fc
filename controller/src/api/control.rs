//! The boundary between the API and whatever runs the switch: the [`ControlPlane`] trait and the values crossing it.
//!
//! The API needs little from the daemon: the accepted policy with its version, a
//! compare-and-swap [`ControlPlane::push`] (admit, plan against the switch, apply, store), the
//! switch state last read back ([`Observed`], for `trace`), counter samples (for status,
//! congestion and metrics), the device inventory, and a stream of events. Everything the API
//! derives from them — service edits, the user's priorities within the ISP's bounds, rates,
//! grades, congestion, traces — is computed on the API side by pure functions, so every
//! implementation (the real runtime, [`super::fake::FakeControlPlane`]) gets the same answers.

use crate::model::Policy;
use crate::planner::{Observed, Plan};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use tokio::sync::broadcast;

/// A boxed, sendable future (the trait is used as `dyn ControlPlane`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who asked for something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The operator: a client certificate signed by the ISP CA.
    Isp,
    /// The home user: a bearer token of role user.
    User,
    /// Read-only: a bearer token of role monitor.
    Monitor,
}

impl Role {
    /// The spelling in tokens, documents and logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Isp => "isp",
            Role::User => "user",
            Role::Monitor => "monitor",
        }
    }

    /// Parses [`Role::name`].
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Isp, Role::User, Role::Monitor]
            .into_iter()
            .find(|r| r.name() == s)
    }
}

/// The accepted policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    pub policy: Policy,
    /// Its TOML text, as stored.
    pub text: String,
    /// Increases with every accepted change (the ETag is `"v<version>"`).
    pub version: u64,
}

/// A new policy proposed through the API.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Already valid (parsed by [`crate::config::parse`]); admission is the control plane's
    /// (through [`crate::planner::plan`]).
    pub policy: Policy,
    /// Its TOML text, to store.
    pub text: String,
    /// Refuse unless the current version is this one (compare-and-swap).
    pub if_match: Option<u64>,
    /// Plan only: nothing changes, nothing is stored.
    pub dry_run: bool,
    /// Who proposed it, and through which request (for logs and events).
    pub origin: Role,
    pub what: String,
}

/// The admission verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub admitted: bool,
    /// One line per short resource or broken bound (empty when admitted).
    pub reasons: Vec<String>,
}

/// A plan, as text.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PlanView {
    /// `N change(s): flows +a ~m -d, ...`
    pub summary: String,
    /// Each change in the order it is applied, in ovs-ofctl syntax (`QUEUE ...`/`PORT ...`
    /// for queue changes).
    pub changes: Vec<String>,
    /// Services added, changed or removed (`+name`, `~name`, `-name`).
    pub services: Vec<String>,
    pub notes: Vec<String>,
    /// Items on the switch that are not the planner's.
    pub foreign: Vec<String>,
}

impl PlanView {
    /// The text form of a plan.
    pub fn of(p: &Plan) -> PlanView {
        PlanView {
            summary: p.summary(),
            changes: p.changes.iter().map(ToString::to_string).collect(),
            services: p.services.clone(),
            notes: p.notes.clone(),
            foreign: p.foreign.clone(),
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushOutcome {
    /// The version now in force (unchanged for a dry run or an identical policy).
    pub version: u64,
    /// Whether the policy differs from the one in force.
    pub changed: bool,
    pub dry_run: bool,
    /// Whether the plan was applied to the switch now (false for a dry run, or when the
    /// switch is not connected: it is applied when the switch comes).
    pub applied: bool,
    pub admission: Verdict,
    pub plan: PlanView,
}

/// Why a push was refused; in every case nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushError {
    /// `if_match` is not the current version.
    Conflict { current: u64 },
    /// Admission refused the policy.
    Rejected(Vec<String>),
    /// The switch refused a change; what was applied before it was rolled back.
    Failed(String),
    /// The control plane cannot take changes now.
    Unavailable(String),
}

/// Counters of one egress queue (shg-switch's `dump-queues`).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct QueueCounters {
    pub port: u32,
    pub queue: u32,
    /// The port's shaped rate, bits/s.
    pub port_rate: Option<u64>,
    pub priority: Option<u8>,
    pub min_rate: Option<u64>,
    pub max_rate: Option<u64>,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops_overflow: u64,
    pub drops_aqm: u64,
    pub ecn_marked: u64,
    pub backlog_packets: u64,
    pub backlog_bytes: u64,
    pub sojourn_p50_ms: Option<f64>,
    pub sojourn_p99_ms: Option<f64>,
}

/// Counters of one port (OFPMP_PORT_STATS).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PortCounters {
    pub port: u32,
    pub name: String,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// Counters of one meter (OFPMP_METER).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct MeterCounters {
    pub meter_id: u32,
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Packets the meter's bands acted on (dropped or remarked).
    pub band_packets: u64,
}

/// One reading of the switch's counters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    /// When it was taken, nanoseconds on the control plane's monotonic clock.
    pub at_ns: u64,
    /// The same instant as wall-clock milliseconds since 1970 (for "since when").
    pub wall_ms: u64,
    pub queues: Vec<QueueCounters>,
    pub ports: Vec<PortCounters>,
    pub meters: Vec<MeterCounters>,
}

/// A discovered device, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceView {
    pub udn: String,
    pub friendly_name: String,
    pub device_type: String,
    pub address: String,
    pub interface: String,
    pub manufacturer: String,
    pub model_name: String,
    /// Seconds since it was last announced.
    pub last_seen_s: u64,
    /// Seconds until it is dropped unless announced again.
    pub expires_in_s: u64,
}

impl DeviceView {
    /// The view of a discovery inventory entry at `now`.
    pub fn of(d: &crate::discovery::Device, now: std::time::Instant) -> DeviceView {
        let desc = d.description.as_ref();
        DeviceView {
            udn: d.udn.clone(),
            friendly_name: d.friendly_name().to_string(),
            device_type: d.device_type().to_string(),
            address: d.address.to_string(),
            interface: d.interface.clone(),
            manufacturer: desc.map(|x| x.manufacturer.clone()).unwrap_or_default(),
            model_name: desc.map(|x| x.model_name.clone()).unwrap_or_default(),
            last_seen_s: now.saturating_duration_since(d.last_seen).as_secs(),
            expires_in_s: d.expires_at.saturating_duration_since(now).as_secs(),
        }
    }
}

/// Something that changed, for the event stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApiEvent {
    /// A new policy was accepted (through the API, or a reload).
    Policy {
        version: u64,
        origin: String,
        services: Vec<String>,
        summary: String,
    },
    /// The inventory changed.
    Device {
        change: String,
        udn: String,
        friendly_name: String,
        device_type: String,
        address: String,
    },
    /// A resource became congested or stopped being congested.
    Congestion {
        resource: String,
        congested: bool,
        by: Vec<String>,
    },
    /// The switch connected or went away.
    Switch { connected: bool, detail: String },
}

impl ApiEvent {
    /// The SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiEvent::Policy { .. } => "policy",
            ApiEvent::Device { .. } => "device",
            ApiEvent::Congestion { .. } => "congestion",
            ApiEvent::Switch { .. } => "switch",
        }
    }
}

/// What the API needs from the daemon. Reads are cheap snapshots (no I/O under them);
/// [`ControlPlane::push`] and [`ControlPlane::sample`] may talk to the switch.
pub trait ControlPlane: Send + Sync + 'static {
    /// The accepted policy and its version.
    fn policy(&self) -> PolicyState;

    /// Admits, plans against the switch, stores and applies a new policy, atomically with
    /// respect to other pushes: `if_match` is compared with the version under the same lock
    /// that makes the change. A dry run only admits and plans. On any error nothing changed
    /// (nothing stored, nothing left half-applied). An identical policy is accepted without a
    /// new version (idempotent PUT).
    fn push(&self, p: Proposal) -> BoxFuture<'_, Result<PushOutcome, PushError>>;

    /// The switch state last read back (flows, meters, ports, queues), or `None` when the
    /// switch was never met.
    fn observed(&self) -> Option<Observed>;

    /// Whether the switch is connected now.
    fn connected(&self) -> bool;

    /// Reads the counters now (queues, ports, meters).
    fn sample(&self) -> BoxFuture<'_, Result<Sample, String>>;

    /// The discovered devices.
    fn devices(&self) -> Vec<DeviceView>;

    /// Discovery's counters as (name, value).
    fn discovery_counters(&self) -> Vec<(String, u64)>;

    /// Events the control plane produces (policy accepted, device changes, switch up/down).
    fn subscribe(&self) -> broadcast::Receiver<ApiEvent>;
}
