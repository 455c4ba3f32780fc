//! The controller daemon: meets the switch, keeps it in line with the policy, reloads on SIGHUP, stops on SIGTERM/SIGINT leaving the flows in place.
//!
//! Start: the config file is read, validated and admitted (a refusal is printed, exit 1).
//! The store (`--store DIR`, [`crate::store`]) supplies what was applied last (the planner's
//! `old`) and the master election generation id, which is increased and saved before the
//! switch is met; the accepted policy is saved before anything is applied. Without a store
//! nothing persists and the generation id comes from the wall clock (seconds since 1970).
//!
//! Every (re)connection, listening (`gateway.listen`, the switch connects) or connecting
//! (`gateway.connect`, retried every 100 ms to 1 s): HELLO and FEATURES (a switch with
//! another datapath id is refused), ROLE_REQUEST MASTER with the generation id (if the switch
//! calls it stale, the id after the switch's current one is taken and saved), then one
//! [`apply::sync`]: snapshot, plan against what is actually there, apply as barrier-bounded
//! transactions, roll back on refusal, verify. Never a flush: a switch that already has the
//! right flows gets no change (no forwarding gap). Then it stays: answers echo requests, sends
//! its own every 5 s of silence (and drops a switch silent for 15 s), re-syncs when a port the
//! policy names appears (PORT_STATUS), and on SIGHUP reloads the config (a refused reload
//! changes nothing and says why; an accepted one is stored, then applied). A new connection
//! from the switch replaces the current one (a restarted switch whose old connection has not
//! died yet).

pub mod apply;
pub mod queues;

use crate::cli::check_text;
use crate::model::{Policy, PortRef, SwitchLink};
use crate::southbound::conn::{OfConn, OfError};
use crate::store::{Record, Store};
use shg_flows::error::{ErrorCode, RoleRequestFailedCode};
use shg_flows::wire::message::{ControllerRole, Message, PortReason, Role};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
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

/// `shg-controller --config FILE [--store DIR] [--switch-ctl PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub config: PathBuf,
    pub store: Option<PathBuf>,
    /// shg-switch's control socket, for queues and port rates (none: queue changes skipped).
    pub switch_ctl: Option<PathBuf>,
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
}

impl State {
    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
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
        if let Err(e) = self.persist.accept(&text) {
            error!("reload refused, nothing changed: {e}");
            return false;
        }
        info!(
            "reload: policy version {} accepted and stored",
            self.persist.record.version
        );
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

/// How a session ended.
enum End {
    /// The connection is gone (or unusable); meet the switch again.
    Closed(String),
    /// SIGTERM or SIGINT.
    Shutdown,
    /// A new connection arrived (listen mode) and replaces this one.
    Replaced(TcpStream),
}

async fn daemon(opts: &Options) -> Result<(), String> {
    let (text, policy) = match load_policy(&opts.config) {
        Ok(x) => x,
        Err(reasons) => return Err(format!("policy refused:\n{}", reasons.join("\n"))),
    };
    let mut signals = Signals::new()?;
    let (persist, old) = Persist::start(opts.store.as_deref(), &text)?;
    let mut st = State {
        opts: opts.clone(),
        policy,
        old,
        persist,
        started: Instant::now(),
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
                        _ = signals.hup.recv() => { st.reload(); continue; }
                        _ = signals.term.recv() => break,
                        _ = signals.int.recv() => break,
                    },
                };
                match session(stream, &mut st, &mut signals, Some(&listener)).await {
                    End::Closed(why) => info!("switch connection closed: {why}"),
                    End::Shutdown => break,
                    End::Replaced(s) => {
                        info!("a new connection from the switch replaces the current one");
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
                    _ = signals.hup.recv() => { st.reload(); continue; }
                    _ = signals.term.recv() => break,
                    _ = signals.int.recv() => break,
                };
                let Some(stream) = stream else {
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = signals.hup.recv() => { st.reload(); }
                        _ = signals.term.recv() => break,
                        _ = signals.int.recv() => break,
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                    continue;
                };
                delay = RETRY_MIN;
                match session(stream, &mut st, &mut signals, None).await {
                    End::Closed(why) => info!("switch connection closed: {why}"),
                    End::Shutdown => break,
                    End::Replaced(_) => {}
                }
            }
        }
    }
    info!("exiting; the switch keeps its flows");
    Ok(())
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

/// Runs one sync and logs its outcome: Ok(true) when the switch now matches the policy,
/// Ok(false) when a change was refused (rolled back) or verification failed, Err when the
/// connection is unusable.
async fn sync_logged(
    conn: &mut OfConn<TcpStream>,
    st: &State,
    why: &str,
    ports: &mut BTreeMap<String, u32>,
) -> Result<bool, String> {
    let t0 = Instant::now();
    match apply::sync(
        conn,
        st.opts.switch_ctl.as_deref(),
        st.old.as_ref(),
        &st.policy,
        st.now(),
    )
    .await
    {
        Ok(r) => {
            info!(
                "sync ({why}) done in {} ms: {} change(s)",
                t0.elapsed().as_millis(),
                r.applied
            );
            *ports = r.ports;
            Ok(true)
        }
        Err(apply::SyncError::Conn(e)) => Err(e.to_string()),
        Err(e) => {
            error!("sync ({why}) failed: {e}");
            Ok(false)
        }
    }
}

async fn session(
    stream: TcpStream,
    st: &mut State,
    sig: &mut Signals,
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
    let mut ports: BTreeMap<String, u32> = BTreeMap::new();
    match sync_logged(&mut conn, st, "connect", &mut ports).await {
        // From here on, what was applied is the current policy.
        Ok(true) => st.old = Some(st.policy.clone()),
        Ok(false) => {}
        Err(e) => return End::Closed(e),
    }
    let mut last_rx = Instant::now();
    let mut echo_sent = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        enum Ev {
            Msg(Box<Result<(u32, Message), OfError>>),
            Hup,
            Stop,
            New(std::io::Result<TcpStream>),
            Tick,
        }
        let ev = tokio::select! {
            r = conn.recv() => Ev::Msg(Box::new(r)),
            _ = sig.hup.recv() => Ev::Hup,
            _ = sig.term.recv() => Ev::Stop,
            _ = sig.int.recv() => Ev::Stop,
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
                            match sync_logged(&mut conn, st, "port", &mut ports).await {
                                Ok(true) => st.old = Some(st.policy.clone()),
                                Ok(false) => {}
                                Err(e) => return End::Closed(e),
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
            Ev::Hup => {
                if st.reload() {
                    match sync_logged(&mut conn, st, "reload", &mut ports).await {
                        Ok(true) => st.old = Some(st.policy.clone()),
                        Ok(false) => {}
                        Err(e) => return End::Closed(e),
                    }
                }
            }
            Ev::Stop => return End::Shutdown,
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
