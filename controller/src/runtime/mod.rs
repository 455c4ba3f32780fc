//! The controller daemon: meets the switch, keeps it in line with the policy, serves the northbound API, follows discovery, reloads on SIGHUP, stops on SIGTERM/SIGINT leaving the flows in place.
//!
//! Start: the config file is read, validated and admitted (a refusal is printed, exit 1).
//! The store (`--store DIR`, [`crate::store`]) supplies what was applied last (the planner's
//! `old`) and the master election generation id, which is increased and saved before the
//! switch is met; the accepted policy is saved before anything is applied. Without a store
//! nothing persists and the generation id comes from the wall clock (seconds since 1970).
//! With `[api]` (or the `--api-*` flags) the HTTPS API is served ([`northbound`]) over an
//! [`api::link::Link`](crate::api::link::Link); with `[discovery]` SSDP/UPnP discovery runs on
//! the named interfaces and its inventory is the planner's `Observed::devices`
//! ([`devices`]).
//!
//! Every (re)connection, listening (`gateway.listen`, the switch connects) or connecting
//! (`gateway.connect`, retried every 100 ms to 1 s): HELLO and FEATURES (a switch with
//! another datapath id is refused), ROLE_REQUEST MASTER with the generation id (if the switch
//! calls it stale, the id after the switch's current one is taken and saved), then one
//! [`apply::sync`]: snapshot, plan against what is actually there, apply as barrier-bounded
//! transactions, roll back on refusal, verify. Never a flush: a switch that already has the
//! right flows gets no change (no forwarding gap). Then it stays: answers echo requests, sends
//! its own every 5 s of silence (and drops a switch silent for 15 s), re-syncs when a port the
//! policy names appears (PORT_STATUS) and when the discovered devices change (debounced), and
//! on SIGHUP reloads the config (a refused reload changes nothing and says why; an accepted one
//! is stored, then applied). A new connection from the switch replaces the current one (a
//! restarted switch whose old connection has not died yet).
//!
//! API pushes arrive between those events, connected or not (`push`): a dry run is answered
//! with [`decide`]'s plan; a real one is stored, written back to the `--config` file
//! ([`writeback`]: the file stays the source of truth, so a later SIGHUP re-reads what the API
//! set), and applied at once when the switch is connected — on failure the stored record, the
//! file and the policy are put back and the API gets [`PushError::Failed`]; without a switch it
//! is applied when the switch comes.

pub mod apply;
pub mod devices;
pub mod northbound;
pub mod queues;
pub mod writeback;

use crate::api::control::{ApiEvent, ControlPlane, PolicyState, PushError};
use crate::api::link::{decide, outcome, Link, PushRequest};
use crate::cli::check_text;
use crate::discovery::advertise::{uuid_from_seed, Advertiser};
use crate::discovery::{self, Discovery};
use crate::model::{DaemonSettings, DiscoverySettings, Policy, PortRef, SwitchLink};
use crate::planner::KnownDevice;
use crate::southbound::conn::{OfConn, OfError};
use crate::store::{Record, Store};
use devices::{api_event, known_devices, Debounce};
pub use northbound::ApiFlags;
use northbound::{api_settings, Northbound};
use shg_flows::error::{ErrorCode, RoleRequestFailedCode};
use shg_flows::wire::message::{ControllerRole, Message, PortReason, Role};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, error, info, warn};

/// How long the handshake and every request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence after which the controller sends an ECHO_REQUEST.
const ECHO_IDLE: Duration = Duration::from_secs(5);
/// Silence after which the switch is considered gone.
const DEAD_AFTER: Duration = Duration::from_secs(15);
/// Delays between connection attempts in `connect` mode.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// `shg-controller --config FILE [--store DIR] [--switch-ctl PATH] [--api-* ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub config: PathBuf,
    pub store: Option<PathBuf>,
    /// shg-switch's control socket, for queues and port rates (none: queue changes skipped).
    pub switch_ctl: Option<PathBuf>,
    /// `[api]` keys from the command line.
    pub api: ApiFlags,
}

/// Runs the daemon until SIGTERM/SIGINT; returns the exit code.
pub fn run(opts: &Options) -> i32 {
    init_tracing();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shg-controller: tokio runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(daemon(opts)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shg-controller: {e}");
            1
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .try_init();
}

/// Reads and admits a config file: (text, policy) or every reason it is refused.
pub fn load_policy(path: &Path) -> Result<(String, Policy), Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
    let policy = check_text(&text)?;
    Ok((text, policy))
}

/// The persistent part: the store (if any) and the record last saved.
#[derive(Debug)]
struct Persist {
    store: Option<Store>,
    record: Record,
}

fn clock_generation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

impl Persist {
    /// Opens the store, takes `old` from it, increases the generation id and saves `text` as
    /// the accepted policy. Errors are fatal (nothing has been applied yet).
    fn start(dir: Option<&Path>, text: &str) -> Result<(Persist, Option<Policy>), String> {
        let Some(dir) = dir else {
            warn!("no --store: the accepted policy is not persisted; generation id from the clock");
            return Ok((
                Persist {
                    store: None,
                    record: Record {
                        version: 1,
                        generation_id: clock_generation(),
                        policy: text.to_string(),
                    },
                },
                None,
            ));
        };
        let store = Store::open(dir).map_err(|e| format!("store: {e}"))?;
        let (record, old) = match store.load() {
            Ok(Some(r)) => {
                let old = match crate::config::parse(&r.policy) {
                    Ok(p) => Some(p),
                    Err(es) => {
                        warn!(
                            "store: the saved policy no longer parses ({}); planning without it",
                            es.first().map(ToString::to_string).unwrap_or_default()
                        );
                        None
                    }
                };
                let version = r.version + u64::from(r.policy != text);
                (
                    Record {
                        version,
                        generation_id: r.generation_id.wrapping_add(1).max(1),
                        policy: text.to_string(),
                    },
                    old,
                )
            }
            Ok(None) => (
                Record {
                    version: 1,
                    generation_id: 1,
                    policy: text.to_string(),
                },
                None,
            ),
            Err(e) => {
                error!("store: {e}; starting afresh (generation id from the clock)");
                (
                    Record {
                        version: 1,
                        generation_id: clock_generation(),
                        policy: text.to_string(),
                    },
                    None,
                )
            }
        };
        store
            .save(&record)
            .map_err(|e| format!("store: cannot save: {e}"))?;
        info!(
            "store {}: policy version {}, generation id {}",
            dir.display(),
            record.version,
            record.generation_id
        );
        Ok((
            Persist {
                store: Some(store),
                record,
            },
            old,
        ))
    }

    fn save(&mut self, rec: Record) -> Result<(), String> {
        if let Some(s) = &self.store {
            s.save(&rec)
                .map_err(|e| format!("store: cannot save: {e}"))?;
        }
        self.record = rec;
        Ok(())
    }

    /// Saves a newly accepted policy text (before it is applied).
    fn accept(&mut self, text: &str) -> Result<(), String> {
        let mut rec = self.record.clone();
        if rec.policy != text {
            rec.version += 1;
            rec.policy = text.to_string();
        }
        self.save(rec)
    }

    fn set_generation(&mut self, g: u64) -> Result<(), String> {
        let mut rec = self.record.clone();
        rec.generation_id = g;
        self.save(rec)
    }
}

/// Everything the daemon knows.
#[derive(Debug)]
struct State {
    opts: Options,
    policy: Policy,
    /// What was applied last (from the store at start; the previous policy after a reload).
    old: Option<Policy>,
    persist: Persist,
    started: Instant,
    /// The API's view of the daemon (kept current whether or not the API is served).
    link: Link,
    /// The devices discovery knows, as the planner sees them.
    devices: Vec<KnownDevice>,
    /// The daemon's own tables as last read from the file (kept by write-backs).
    tables: toml::Table,
    /// The daemon settings in force (a reload that changes them only warns).
    settings: DaemonSettings,
}

impl State {
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The accepted policy as the API sees it.
    fn policy_state(&self) -> PolicyState {
        PolicyState {
            policy: self.policy.clone(),
            text: self.persist.record.policy.clone(),
            version: self.persist.record.version,
        }
    }

    /// SIGHUP: re-reads the config. True when a new policy was accepted (and stored).
    fn reload(&mut self) -> bool {
        let (text, policy) = match load_policy(&self.opts.config) {
            Ok(x) => x,
            Err(reasons) => {
                error!(
                    "reload of {} refused, nothing changed:\n{}",
                    self.opts.config.display(),
                    reasons.join("\n")
                );
                return false;
            }
        };
        if policy.gateway.switch != self.policy.gateway.switch
            || policy.gateway.datapath_id != self.policy.gateway.datapath_id
        {
            warn!("reload: the switch's address or datapath id changed; restart the controller for that to take effect");
        }
        if crate::config::daemon_settings(&text).is_ok_and(|s| s != self.settings) {
            warn!("reload: [api] or [discovery] changed; restart the controller for that to take effect");
        }
        if let Err(e) = self.persist.accept(&text) {
            error!("reload refused, nothing changed: {e}");
            return false;
        }
        info!(
            "reload: policy version {} accepted and stored",
            self.persist.record.version
        );
        self.tables = writeback::daemon_tables(&text);
        self.old = Some(std::mem::replace(&mut self.policy, policy));
        true
    }

    /// Interface names the policy refers to.
    fn named_ports(&self) -> Vec<&str> {
        let g = &self.policy.gateway;
        std::iter::once(&g.uplink.port)
            .chain(g.lan.iter())
            .chain(self.policy.services.values().map(|s| &s.port))
            .filter_map(|p| match p {
                PortRef::Name(n) => Some(n.as_str()),
                PortRef::Number(_) => None,
            })
            .collect()
    }
}

struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> Result<Signals, String> {
        let s = |k: SignalKind, n: &str| signal(k).map_err(|e| format!("{n} handler: {e}"));
        Ok(Signals {
            hup: s(SignalKind::hangup(), "SIGHUP")?,
            term: s(SignalKind::terminate(), "SIGTERM")?,
            int: s(SignalKind::interrupt(), "SIGINT")?,
        })
    }
}

/// What the daemon waits for besides the switch.
enum Input {
    Hup,
    Stop,
    Push(PushRequest),
    /// The discovered devices changed (as the planner sees them).
    Devices(Vec<KnownDevice>),
}

/// The sources of [`Input`]: signals, API pushes, discovery events (published to the API at
/// once, turned into [`Input::Devices`] after the debounce).
struct Inputs {
    sig: Signals,
    pushes: mpsc::Receiver<PushRequest>,
    disc: Option<Arc<Discovery>>,
    disc_events: Option<broadcast::Receiver<discovery::Event>>,
    debounce: Debounce,
    link: Link,
    /// The device list last handed out.
    devices: Vec<KnownDevice>,
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

async fn recv_event(
    rx: &mut Option<broadcast::Receiver<discovery::Event>>,
) -> Result<discovery::Event, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Inputs {
    /// The next input. Cancel-safe (every source is), so it can sit in a `select!`.
    async fn next(&mut self) -> Input {
        loop {
            let due = self.debounce.due();
            tokio::select! {
                _ = self.sig.hup.recv() => return Input::Hup,
                _ = self.sig.term.recv() => return Input::Stop,
                _ = self.sig.int.recv() => return Input::Stop,
                Some(r) = self.pushes.recv() => return Input::Push(r),
                e = recv_event(&mut self.disc_events) => match e {
                    Ok(e) => {
                        debug!("discovery: {:?} {}", api_event(&e).kind(), e.device().udn);
                        self.link.publish(api_event(&e));
                        self.debounce.event(Instant::now());
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!("discovery: {n} inventory event(s) missed; re-reading the inventory");
                        self.debounce.event(Instant::now());
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        warn!("discovery stopped: the device list stays as it is");
                        self.disc_events = None;
                    }
                },
                () = sleep_until(due) => {
                    self.debounce.clear();
                    let list = self
                        .disc
                        .as_ref()
                        .map(|d| known_devices(&d.devices()))
                        .unwrap_or_default();
                    if list != self.devices {
                        self.devices = list.clone();
                        return Input::Devices(list);
                    }
                }
            }
        }
    }
}

/// How a session ended.
enum End {
    /// The connection is gone (or unusable); meet the switch again.
    Closed(String),
    /// SIGTERM or SIGINT.
    Shutdown,
    /// A new connection arrived (listen mode) and replaces this one.
    Replaced(TcpStream),
}

/// Starts discovery on the configured interfaces and hands its inventory to the API. A
/// failure is logged and the daemon goes on without devices (forwarding does not need them).
fn start_discovery(
    d: &DiscoverySettings,
    link: &Link,
) -> Option<(Arc<Discovery>, broadcast::Receiver<discovery::Event>)> {
    let mut c = discovery::Config::new(d.interfaces.clone());
    if d.advertise {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let udn = uuid_from_seed(&format!("shg-gateway:{}:{}", host.trim(), d.friendly_name));
        // BOOTID must grow on every start: seconds since 1970 (fits u32 until 2106).
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX));
        c.advertise = Some(Advertiser::new(&udn, &d.friendly_name, boot));
    }
    match Discovery::spawn(c) {
        Ok((disc, rx)) => {
            let disc = Arc::new(disc);
            let names: Vec<String> = disc
                .interfaces()
                .iter()
                .map(|i| format!("{} ({})", i.name, i.addr))
                .collect();
            info!(
                "discovery on {}{}",
                names.join(", "),
                if d.advertise {
                    format!("; advertising as {:?}", d.friendly_name)
                } else {
                    String::new()
                }
            );
            let inv = disc.clone();
            link.set_inventory(move || {
                let now = Instant::now();
                (
                    inv.devices()
                        .iter()
                        .map(|x| crate::api::control::DeviceView::of(x, now))
                        .collect(),
                    inv.counters().entries(),
                )
            });
            Some((disc, rx))
        }
        Err(e) => {
            error!("discovery could not start: {e}; going on without discovered devices");
            None
        }
    }
}

async fn daemon(opts: &Options) -> Result<(), String> {
    let (text, policy) = match load_policy(&opts.config) {
        Ok(x) => x,
        Err(reasons) => return Err(format!("policy refused:\n{}", reasons.join("\n"))),
    };
    let settings = crate::config::daemon_settings(&text).map_err(|es| {
        es.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let base = opts
        .config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let api = api_settings(settings.api.as_ref(), &opts.api, base)?;
    let sig = Signals::new()?;
    let (persist, old) = Persist::start(opts.store.as_deref(), &text)?;
    let (link, pushes) = Link::new(
        PolicyState {
            policy: policy.clone(),
            text: persist.record.policy.clone(),
            version: persist.record.version,
        },
        opts.switch_ctl.clone(),
    );
    let northbound = match &api {
        Some(a) => Some(Northbound::start(a, &link).await?),
        None => {
            info!("no [api]: the northbound API is not served");
            None
        }
    };
    let (disc, disc_events) = match settings
        .discovery
        .as_ref()
        .and_then(|d| start_discovery(d, &link))
    {
        Some((d, rx)) => (Some(d), Some(rx)),
        None => (None, None),
    };
    let mut inputs = Inputs {
        sig,
        pushes,
        disc: disc.clone(),
        disc_events,
        debounce: Debounce::default(),
        link: link.clone(),
        devices: Vec::new(),
    };
    let mut st = State {
        opts: opts.clone(),
        policy,
        old,
        persist,
        started: Instant::now(),
        link,
        devices: Vec::new(),
        tables: writeback::daemon_tables(&text),
        settings,
    };
    info!(
        "policy {} accepted: {} service(s); switch {:016x} via {}",
        opts.config.display(),
        st.policy.services.len(),
        st.policy.gateway.datapath_id,
        st.policy.gateway.switch
    );
    match st.policy.gateway.switch {
        SwitchLink::Listen(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| format!("listen on {addr}: {e}"))?;
            info!("waiting for the switch on {addr}");
            let mut pending: Option<TcpStream> = None;
            loop {
                let stream = match pending.take() {
                    Some(s) => s,
                    None => tokio::select! {
                        r = listener.accept() => match r {
                            Ok((s, _)) => s,
                            Err(e) => {
                                warn!("accept: {e}");
                                tokio::time::sleep(RETRY_MIN).await;
                                continue;
                            }
                        },
                        i = inputs.next() => {
                            if offline(i, &mut st).await { break; }
                            continue;
                        }
                    },
                };
                let end = session(stream, &mut st, &mut inputs, Some(&listener)).await;
                match end {
                    End::Closed(why) => {
                        info!("switch connection closed: {why}");
                        st.link.set_connected(false, &why);
                    }
                    End::Shutdown => break,
                    End::Replaced(s) => {
                        info!("a new connection from the switch replaces the current one");
                        st.link.set_connected(false, "replaced by a new connection");
                        pending = Some(s);
                    }
                }
            }
        }
        SwitchLink::Connect(addr) => {
            let mut delay = RETRY_MIN;
            loop {
                let stream = tokio::select! {
                    r = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr)) => match r {
                        Ok(Ok(s)) => Some(s),
                        Ok(Err(e)) => { debug!("connect to {addr}: {e}"); None }
                        Err(_) => { debug!("connect to {addr}: timed out"); None }
                    },
                    i = inputs.next() => {
                        if offline(i, &mut st).await { break; }
                        continue;
                    }
                };
                let Some(stream) = stream else {
                    let stop = tokio::select! {
                        () = tokio::time::sleep(delay) => false,
                        i = inputs.next() => offline(i, &mut st).await,
                    };
                    if stop {
                        break;
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                    continue;
                };
                delay = RETRY_MIN;
                match session(stream, &mut st, &mut inputs, None).await {
                    End::Closed(why) => {
                        info!("switch connection closed: {why}");
                        st.link.set_connected(false, &why);
                    }
                    End::Shutdown => break,
                    End::Replaced(_) => {}
                }
            }
        }
    }
    info!("exiting; the switch keeps its flows");
    st.link.set_connected(false, "the controller is stopping");
    if let Some(n) = northbound {
        n.stop().await;
    }
    // The API's inventory closure and the inputs hold the discovery handle; drop them so
    // discovery can say byebye.
    st.link.set_inventory(|| (Vec::new(), Vec::new()));
    drop(inputs);
    if let Some(d) = disc.and_then(|d| Arc::try_unwrap(d).ok()) {
        d.shutdown().await;
    }
    Ok(())
}

/// Handles an input while no switch is connected; true to stop.
async fn offline(i: Input, st: &mut State) -> bool {
    match i {
        Input::Hup => {
            if st.reload() {
                st.link.set_policy(st.policy_state(), "reload", None);
            }
        }
        Input::Stop => return true,
        Input::Push(r) => {
            // Without a connection nothing can fail on the switch side.
            let _ = push(r, st, None).await;
        }
        Input::Devices(list) => {
            info!(
                "discovery: {} device(s) known; applied when the switch connects",
                list.len()
            );
            st.devices = list;
        }
    }
    false
}

/// Waits for a connection on `l`, or forever without one.
async fn accept(l: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    match l {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// Claims the MASTER role with the stored generation id; a stale id is replaced by the one
/// after the switch's current id (saved first).
async fn claim_master(conn: &mut OfConn<TcpStream>, st: &mut State) -> Result<(), String> {
    let gen = st.persist.record.generation_id;
    let master = |generation_id| Role {
        role: ControllerRole::Master,
        generation_id,
    };
    match conn.set_role(master(gen)).await {
        Ok(r) => {
            info!("role: master (generation id {})", r.generation_id);
            Ok(())
        }
        Err(OfError::Refused {
            code: ErrorCode::RoleRequestFailed(RoleRequestFailedCode::Stale),
            ..
        }) => {
            let cur = conn
                .set_role(Role {
                    role: ControllerRole::NoChange,
                    generation_id: 0,
                })
                .await
                .map_err(|e| format!("role query: {e}"))?
                .generation_id;
            let next = cur.wrapping_add(1);
            warn!("role: generation id {gen} is stale for the switch (its current is {cur}: was the store lost?); taking {next}");
            st.persist.set_generation(next)?;
            conn.set_role(master(next))
                .await
                .map(|r| info!("role: master (generation id {})", r.generation_id))
                .map_err(|e| format!("role request: {e}"))
        }
        Err(e) => Err(format!("role request: {e}")),
    }
}

/// Runs one sync for `why` and logs its outcome. `Ok(Ok(report))`: the switch now matches
/// the policy (`old` becomes the policy; the API gets the verified state and an event);
/// `Ok(Err(reason))`: a change was refused (and rolled back) or verification failed;
/// `Err`: the connection is unusable.
async fn sync_now(
    conn: &mut OfConn<TcpStream>,
    st: &mut State,
    why: &str,
    ports: &mut BTreeMap<String, u32>,
) -> Result<Result<apply::SyncReport, String>, String> {
    let t0 = Instant::now();
    let r = apply::sync_with(
        conn,
        st.opts.switch_ctl.as_deref(),
        st.old.as_ref(),
        &st.policy,
        &st.devices,
        st.now(),
    )
    .await;
    match r {
        Ok(r) => {
            info!(
                "sync ({why}) done in {} ms: {} change(s)",
                t0.elapsed().as_millis(),
                r.applied
            );
            ports.clone_from(&r.ports);
            st.old = Some(st.policy.clone());
            st.link.set_observed(r.observed.clone());
            st.link.publish(ApiEvent::Switch {
                connected: true,
                detail: format!("sync ({why}): {} change(s) applied and verified", r.applied),
            });
            Ok(Ok(r))
        }
        Err(apply::SyncError::Conn(e)) => Err(e.to_string()),
        Err(e) => {
            error!("sync ({why}) failed: {e}");
            st.link.publish(ApiEvent::Switch {
                connected: true,
                detail: format!("sync ({why}) failed: {e}"),
            });
            Ok(Err(e.to_string()))
        }
    }
}

/// What a push replaced, to put back when applying it fails.
struct Saved {
    record: Record,
    policy: Policy,
    old: Option<Policy>,
    /// The config file's text before the write-back.
    file: Option<String>,
}

impl Saved {
    fn restore(self, st: &mut State) {
        if let Err(e) = st.persist.save(self.record) {
            error!("push: restoring the stored policy failed: {e}");
        }
        if let Some(text) = self.file {
            if let Err(e) = writeback::write_atomic(&st.opts.config, &text) {
                error!("push: restoring {} failed: {e}", st.opts.config.display());
            }
        }
        st.policy = self.policy;
        st.old = self.old;
    }
}

/// Accepts a pushed policy: the text to keep (the push with the file's daemon tables), in
/// the store and in the `--config` file. Nothing changed on error.
fn accept_push(st: &mut State, text: &str, origin: &str) -> Result<Saved, String> {
    let saved = Saved {
        record: st.persist.record.clone(),
        policy: st.policy.clone(),
        old: st.old.clone(),
        file: std::fs::read_to_string(&st.opts.config).ok(),
    };
    let note = format!(
        "policy version {} accepted from {origin}",
        st.persist.record.version + 1
    );
    let file_text = writeback::file_text(text, &st.tables, &note)?;
    // The text must stand for the same policy (the daemon tables are not the policy's).
    let same = crate::config::parse(&file_text)
        .ok()
        .zip(crate::config::parse(text).ok())
        .is_some_and(|(a, b)| a == b);
    if !same {
        return Err(
            "the policy does not read back the same once written with the daemon's tables".into(),
        );
    }
    st.persist.accept(&file_text)?;
    if let Err(e) = writeback::write_atomic(&st.opts.config, &file_text) {
        let msg = format!("cannot write {}: {e}", st.opts.config.display());
        let record = saved.record.clone();
        if let Err(e2) = st.persist.save(record) {
            error!("push: restoring the stored policy failed: {e2}");
        }
        return Err(msg);
    }
    Ok(saved)
}

/// Carries out an API push (see the module's documentation). `Err` only when the switch
/// connection broke while applying it (the push was answered and undone).
async fn push(
    req: PushRequest,
    st: &mut State,
    conn: Option<(&mut OfConn<TcpStream>, &mut BTreeMap<String, u32>)>,
) -> Result<(), String> {
    let PushRequest { proposal: p, reply } = req;
    let origin = format!("{} {}", p.origin.name(), p.what);
    let current = st.policy_state();
    let mut observed = st.link.observed().unwrap_or_default();
    observed.devices.clone_from(&st.devices);
    let (plan, changed) = match decide(&current, &observed, &p, st.now()) {
        Ok(x) => x,
        Err(e) => {
            info!("push from {origin} refused, nothing changed: {e:?}");
            let _ = reply.send(Err(e));
            return Ok(());
        }
    };
    if p.dry_run {
        info!("push from {origin}: dry run, {}", plan.summary());
        let _ = reply.send(Ok(outcome(&plan, current.version, changed, true, false)));
        return Ok(());
    }
    let saved = if changed {
        match accept_push(st, &p.text, &origin) {
            Ok(s) => {
                st.old = Some(std::mem::replace(&mut st.policy, p.policy));
                info!(
                    "push from {origin}: policy version {} stored and written to {}",
                    st.persist.record.version,
                    st.opts.config.display()
                );
                Some(s)
            }
            Err(e) => {
                error!("push from {origin} refused, nothing changed: {e}");
                let _ = reply.send(Err(PushError::Unavailable(e)));
                return Ok(());
            }
        }
    } else {
        None
    };
    let version = st.persist.record.version;
    let Some((conn, ports)) = conn else {
        if changed {
            info!("push from {origin}: no switch connected; applied when it connects");
            st.link.set_policy(st.policy_state(), &origin, Some(&plan));
        }
        let _ = reply.send(Ok(outcome(&plan, version, changed, false, false)));
        return Ok(());
    };
    match sync_now(conn, st, "api", ports).await {
        Ok(Ok(r)) => {
            if changed {
                st.link
                    .set_policy(st.policy_state(), &origin, Some(&r.plan));
            }
            let _ = reply.send(Ok(outcome(&r.plan, version, changed, false, true)));
            Ok(())
        }
        Ok(Err(why)) => {
            if let Some(s) = saved {
                s.restore(st);
                warn!(
                    "push from {origin}: not applied; policy version {} restored",
                    st.persist.record.version
                );
            }
            let _ = reply.send(Err(PushError::Failed(why)));
            Ok(())
        }
        Err(e) => {
            if let Some(s) = saved {
                s.restore(st);
            }
            let _ = reply.send(Err(PushError::Failed(format!(
                "the switch connection broke while applying ({e}); the previous policy is kept and re-applied when the switch is back"
            ))));
            Err(e)
        }
    }
}

async fn session(
    stream: TcpStream,
    st: &mut State,
    inputs: &mut Inputs,
    listener: Option<&TcpListener>,
) -> End {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    let mut conn = match OfConn::handshake(stream, REQUEST_TIMEOUT).await {
        Ok(c) => c,
        Err(e) => return End::Closed(format!("handshake with {peer}: {e}")),
    };
    let dpid = conn.features.datapath_id;
    if dpid != st.policy.gateway.datapath_id {
        error!(
            "switch {peer} has datapath id {dpid:016x}, the config says {:016x}: not controlling it",
            st.policy.gateway.datapath_id
        );
        return End::Closed("wrong datapath id".into());
    }
    info!("switch {dpid:016x} connected from {peer}");
    if let Err(e) = claim_master(&mut conn, st).await {
        return End::Closed(e);
    }
    st.link
        .set_connected(true, &format!("switch {dpid:016x} from {peer}"));
    let mut ports: BTreeMap<String, u32> = BTreeMap::new();
    if let Err(e) = sync_now(&mut conn, st, "connect", &mut ports).await {
        return End::Closed(e);
    }
    let mut last_rx = Instant::now();
    let mut echo_sent = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        enum Ev {
            Msg(Box<Result<(u32, Message), OfError>>),
            In(Input),
            New(std::io::Result<TcpStream>),
            Tick,
        }
        let ev = tokio::select! {
            r = conn.recv() => Ev::Msg(Box::new(r)),
            i = inputs.next() => Ev::In(i),
            r = accept(listener) => Ev::New(r),
            _ = tick.tick() => Ev::Tick,
        };
        match ev {
            Ev::Msg(r) => {
                let (xid, m) = match *r {
                    Ok(x) => x,
                    Err(e) => return End::Closed(e.to_string()),
                };
                last_rx = Instant::now();
                echo_sent = false;
                match m {
                    Message::EchoRequest(data) => {
                        if let Err(e) = conn.reply_echo(xid, data).await {
                            return End::Closed(e.to_string());
                        }
                    }
                    Message::PortStatus { reason, port } => {
                        debug!("PORT_STATUS {reason:?} {} = {}", port.name, port.port_no);
                        let named = st.named_ports().contains(&port.name.as_str());
                        let known = ports.get(&port.name) == Some(&port.port_no);
                        if reason == PortReason::Delete {
                            ports.remove(&port.name);
                        } else if named && !known {
                            info!(
                                "port {} appeared as {}: re-planning",
                                port.name, port.port_no
                            );
                            if let Err(e) = sync_now(&mut conn, st, "port", &mut ports).await {
                                return End::Closed(e);
                            }
                        } else {
                            ports.insert(port.name.clone(), port.port_no);
                        }
                    }
                    Message::EchoReply(_) => {}
                    Message::Error { code, .. } => warn!("switch sent an error: {code:?}"),
                    other => debug!(
                        "ignored {} from the switch",
                        crate::southbound::conn::name(&other)
                    ),
                }
            }
            Ev::In(Input::Hup) => {
                if st.reload() {
                    match sync_now(&mut conn, st, "reload", &mut ports).await {
                        Ok(r) => st.link.set_policy(
                            st.policy_state(),
                            "reload",
                            r.as_ref().ok().map(|r| &r.plan),
                        ),
                        Err(e) => {
                            st.link.set_policy(st.policy_state(), "reload", None);
                            return End::Closed(e);
                        }
                    }
                }
            }
            Ev::In(Input::Stop) => return End::Shutdown,
            Ev::In(Input::Push(r)) => {
                if let Err(e) = push(r, st, Some((&mut conn, &mut ports))).await {
                    return End::Closed(e);
                }
            }
            Ev::In(Input::Devices(list)) => {
                info!("discovery: {} device(s) known: re-planning", list.len());
                st.devices = list;
                if let Err(e) = sync_now(&mut conn, st, "devices", &mut ports).await {
                    return End::Closed(e);
                }
            }
            Ev::New(Ok(s)) => return End::Replaced(s),
            Ev::New(Err(e)) => warn!("accept: {e}"),
            Ev::Tick => {
                let idle = last_rx.elapsed();
                if idle >= DEAD_AFTER {
                    return End::Closed(format!("no message from the switch for {idle:?}"));
                }
                if idle >= ECHO_IDLE && !echo_sent {
                    if let Err(e) = conn.post(&Message::EchoRequest(Vec::new())).await {
                        return End::Closed(e.to_string());
                    }
                    echo_sent = true;
                }
            }
        }
    }
}
