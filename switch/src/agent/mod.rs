//! The OpenFlow agent: controller connections and listeners (TCP/TLS) on tokio, driving `Ofproto`.
//!
//! The agent owns every socket of the OpenFlow side and nothing else: bytes in → frames
//! (`conn`) → `Ofproto::handle` under the mutex → [`Effect`]s, which it carries out (queue a
//! message on a connection, hand frames to the datapath, close). It decides nothing about
//! OpenFlow itself. One timer task calls `Ofproto::tick` at `Ofproto::next_deadline` (echo
//! keepalive, dead peers, flow expiry); one task turns datapath events into PACKET_IN and
//! PORT_STATUS. Writes never block the core: each connection has a bounded outgoing queue and
//! a writer task; a connection whose queue overflows is closed (PACKET_INs are dropped and
//! counted instead, as a busy controller should not lose its session to a packet flood).
//!
//! Servers take an already-bound listener and a shutdown future ([`Agent::run`]), so tests
//! bind port 0 and stop cleanly.

mod conn;
pub(crate) use conn::wait_for_handover;
pub use conn::{poll_socket, SPIN};
pub mod tls;

use crate::config::{Config, ControllerTarget, ListenTarget, Transport};
use crate::datapath::{DpEvent, Output};
use crate::ofproto::{ConnId, Effect, Ofproto};
use rustls::{ClientConfig, ServerConfig};
use shg_flows::wire::message::{encode, Message};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Messages a connection may have queued before it counts as unable to keep up.
pub const DEFAULT_QUEUE_BOUND: usize = 4096;
/// First and longest wait between attempts to reach a controller.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Longest wait for a TCP connect or a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for tasks to finish flushing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Locks a mutex, taking the data even if a panicking thread poisoned it (the state machine
/// stays usable; a panic elsewhere is reported by that thread).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The process's monotonic time in nanoseconds, the `now` every sans-IO core is given.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// The process-wide clock, shared with [`process_now`] (and so with the datapath).
    pub fn process() -> Clock {
        Clock {
            origin: *PROCESS_ORIGIN.get_or_init(Instant::now),
        }
    }

    /// A clock whose zero is `origin`.
    pub fn with_origin(origin: Instant) -> Clock {
        Clock { origin }
    }

    /// Nanoseconds since the origin.
    pub fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` nanoseconds after the origin.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.origin
            .checked_add(Duration::from_nanos(ns))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400))
    }
}

static PROCESS_ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Monotonic nanoseconds since the process's first call: the datapath's clock (a plain
/// `fn`), on the same time base as [`Clock::process`].
pub fn process_now() -> u64 {
    Clock::process().now()
}

/// The datapath as the agent sees it: where it hands frames to transmit (PACKET_OUT,
/// flooding), and whether it waits for the `Ofproto` lock.
pub trait Transmitter: Send + Sync {
    /// Sends the frames out of their ports. Must not block for long.
    fn transmit(&self, outputs: Vec<Output>);

    /// Whether the datapath thread waits for the `Ofproto` lock: the agent then lets it go
    /// between two messages, so forwarding is not held up by a stream of flow_mods.
    fn waiting_for_lock(&self) -> bool {
        false
    }
}

/// A transmitter that drops everything, for an agent with no datapath (tests, tools).
#[derive(Debug, Default)]
pub struct NoTransmit;

impl Transmitter for NoTransmit {
    fn transmit(&self, _outputs: Vec<Output>) {}
}

impl Transmitter for crate::datapath::DatapathHandle {
    fn transmit(&self, outputs: Vec<Output>) {
        crate::datapath::DatapathHandle::transmit(self, outputs);
    }

    fn waiting_for_lock(&self) -> bool {
        crate::datapath::DatapathHandle::waiting_for_lock(self)
    }
}

/// Exponential backoff between connection attempts: `min`, 2·`min`, … up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait before the next attempt; doubles the one after, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a successful session: start again from `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Counters of the agent (for logs and the control socket).
#[derive(Debug, Default)]
pub struct AgentCounters {
    /// Connections accepted or established.
    pub connections: AtomicU64,
    /// Connections closed because their outgoing queue overflowed.
    pub closed_slow: AtomicU64,
    /// Connections closed because a frame's length field was below 8.
    pub closed_bad_frame: AtomicU64,
    /// PACKET_INs dropped because the connection's queue was full.
    pub packet_in_dropped: AtomicU64,
    /// Failed attempts to reach a controller.
    pub connect_failures: AtomicU64,
}

/// What the writer task of a connection is asked to do.
#[derive(Debug)]
enum Out {
    Msg(Vec<u8>),
    /// Flush what came before, then close.
    Close,
}

#[derive(Debug)]
struct ConnHandle {
    tx: mpsc::Sender<Out>,
    /// Ends the connection now (queue overflow, writer failure).
    kill: Arc<Notify>,
    /// Set once the connection is being killed: later messages are dropped silently.
    dead: std::sync::atomic::AtomicBool,
    peer: String,
}

struct Inner {
    of: Arc<Mutex<Ofproto>>,
    clock: Clock,
    transmit: Arc<dyn Transmitter>,
    conns: Mutex<HashMap<ConnId, ConnHandle>>,
    next_id: AtomicU64,
    /// Wakes the timer task: the next deadline may have moved earlier.
    timer_kick: Notify,
    /// The core's deadline (clock ns) the timer task last planned to wake up at, `u64::MAX`
    /// for none; set under the `Ofproto` lock.
    timer_at: AtomicU64,
    shutdown: watch::Sender<bool>,
    queue_bound: usize,
    counters: AgentCounters,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("clock", &self.clock)
            .field("queue_bound", &self.queue_bound)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Wakes the timer task if the core's next deadline (`Ofproto::next_deadline`, read under
    /// the same lock as the change) is earlier than the one it sleeps until. A deadline that
    /// moved later needs no wake-up: the timer wakes at the old one, finds nothing due and
    /// plans again. So a request/reply exchange, which moves the peer's echo deadline later,
    /// costs the timer nothing.
    fn kick_timer_if_earlier(&self, next: Option<u64>) {
        if next.is_some_and(|d| d < self.timer_at.load(Ordering::Relaxed)) {
            self.timer_kick.notify_one();
        }
    }

    /// Carries out effects, in order. Never blocks: messages are queued with `try_send`.
    fn perform(&self, effects: Vec<Effect>) {
        if effects.is_empty() {
            return;
        }
        let mut outputs = Vec::new();
        let mut packet_ins = Vec::new();
        {
            let conns = lock(&self.conns);
            for e in effects {
                match e {
                    Effect::Send { conn, xid, msg } => {
                        let Some(h) = conns.get(&conn) else {
                            debug!(conn, "message for a closed connection dropped");
                            continue;
                        };
                        if h.dead.load(Ordering::Relaxed) {
                            continue;
                        }
                        let is_packet_in = matches!(msg, Message::PacketIn(_));
                        match h.tx.try_send(Out::Msg(encode(xid, &msg))) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) if is_packet_in => {
                                let n = self
                                    .counters
                                    .packet_in_dropped
                                    .fetch_add(1, Ordering::Relaxed);
                                if n.is_power_of_two() {
                                    warn!(conn, peer = %h.peer, dropped = n + 1,
                                        "controller is not keeping up: PACKET_IN dropped");
                                }
                            }
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                if !h.dead.swap(true, Ordering::Relaxed) {
                                    self.counters.closed_slow.fetch_add(1, Ordering::Relaxed);
                                    warn!(conn, peer = %h.peer, bound = self.queue_bound,
                                        "peer is not reading its messages: closing the connection");
                                    h.kill.notify_one();
                                }
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => {}
                        }
                    }
                    Effect::Transmit(Output::Controller(ev)) => packet_ins.push(ev),
                    Effect::Transmit(o) => outputs.push(o),
                    Effect::Close(conn) => {
                        if let Some(h) = conns.get(&conn) {
                            if h.tx.try_send(Out::Close).is_err() {
                                h.kill.notify_one();
                            }
                        }
                    }
                }
            }
        }
        if !outputs.is_empty() {
            self.transmit.transmit(outputs);
        }
        for ev in packet_ins {
            let effects = lock(&self.of).packet_in(ev, self.now());
            // A PACKET_IN produces messages only; anything else would be a loop: drop it.
            let msgs = effects
                .into_iter()
                .filter(|e| !matches!(e, Effect::Transmit(Output::Controller(_))))
                .collect();
            self.perform(msgs);
        }
    }
}

/// Resolves when the shutdown flag becomes true (or its sender is gone).
async fn shutdown_signalled(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A bound listener and, for `pssl:`, its TLS settings.
#[derive(Debug)]
pub struct Listener {
    pub listener: TcpListener,
    pub tls: Option<Arc<ServerConfig>>,
}

/// A controller to keep a connection to and, for `tls:`, the TLS client settings.
#[derive(Debug, Clone)]
pub struct Controller {
    pub addr: SocketAddr,
    pub tls: Option<Arc<ClientConfig>>,
}

/// Everything the agent runs: listeners, controllers, and the datapath's event stream.
#[derive(Debug, Default)]
pub struct Plan {
    pub listeners: Vec<Listener>,
    pub controllers: Vec<Controller>,
    pub dp_events: Option<mpsc::UnboundedReceiver<DpEvent>>,
}

impl Plan {
    /// Builds TLS settings and binds every `--listen` of `config`. Errors name the setting.
    pub async fn from_config(config: &Config) -> io::Result<Plan> {
        let needs_client = config
            .controllers
            .iter()
            .any(|c| c.transport == Transport::Tls);
        let needs_server = config.listen.iter().any(|l| l.transport == Transport::Tls);
        let client_tls = if needs_client {
            Some(tls::client_config(&config.tls)?)
        } else {
            None
        };
        let server_tls = if needs_server {
            Some(tls::server_config(&config.tls)?)
        } else {
            None
        };
        let mut plan = Plan::default();
        for l in &config.listen {
            plan.listeners
                .push(bind_listen(l, server_tls.clone()).await?);
        }
        for c in &config.controllers {
            plan.controllers.push(controller(c, client_tls.clone()));
        }
        Ok(plan)
    }
}

/// Binds one `--listen` target.
pub async fn bind_listen(
    target: &ListenTarget,
    tls: Option<Arc<ServerConfig>>,
) -> io::Result<Listener> {
    let listener = TcpListener::bind(target.addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("listen {target}: {e}")))?;
    let tls = match target.transport {
        Transport::Tcp => None,
        Transport::Tls => Some(tls.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listen {target}: no TLS settings"),
            )
        })?),
    };
    Ok(Listener { listener, tls })
}

fn controller(target: &ControllerTarget, tls: Option<Arc<ClientConfig>>) -> Controller {
    Controller {
        addr: target.addr,
        tls: match target.transport {
            Transport::Tcp => None,
            Transport::Tls => tls,
        },
    }
}

/// The OpenFlow agent. Cheap to clone; all clones drive the same connections.
#[derive(Debug, Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl Agent {
    /// An agent driving `of`, with time from `clock`, sending frames through `transmit`.
    pub fn new(of: Arc<Mutex<Ofproto>>, clock: Clock, transmit: Arc<dyn Transmitter>) -> Agent {
        Agent::with_queue_bound(of, clock, transmit, DEFAULT_QUEUE_BOUND)
    }

    /// As [`Agent::new`], with `bound` messages per connection queue (at least 1).
    pub fn with_queue_bound(
        of: Arc<Mutex<Ofproto>>,
        clock: Clock,
        transmit: Arc<dyn Transmitter>,
        bound: usize,
    ) -> Agent {
        let (shutdown, _) = watch::channel(false);
        Agent {
            inner: Arc::new(Inner {
                of,
                clock,
                transmit,
                conns: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                timer_kick: Notify::new(),
                timer_at: AtomicU64::new(u64::MAX),
                shutdown,
                queue_bound: bound.max(1),
                counters: AgentCounters::default(),
            }),
        }
    }

    /// The agent's counters.
    pub fn counters(&self) -> &AgentCounters {
        &self.inner.counters
    }

    /// Number of open OpenFlow connections.
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.conns).len()
    }

    /// Runs every part of `plan` and the timer until `shutdown` resolves, then closes all
    /// connections and waits (briefly) for their queues to flush.
    pub async fn run(&self, plan: Plan, shutdown: impl Future<Output = ()>) {
        let mut tasks = JoinSet::new();
        for l in plan.listeners {
            tasks.spawn(serve(self.inner.clone(), l));
        }
        for c in plan.controllers {
            tasks.spawn(keep_connected(self.inner.clone(), c));
        }
        if let Some(rx) = plan.dp_events {
            tasks.spawn(dp_events(self.inner.clone(), rx));
        }
        tasks.spawn(timer(self.inner.clone()));
        shutdown.await;
        info!("shutting down the OpenFlow agent");
        self.inner.shutdown.send_replace(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("agent tasks did not stop in time; aborting them");
            tasks.abort_all();
        }
    }
}

/// Accepts connections until shutdown; each runs as a passive OpenFlow connection.
async fn serve(inner: Arc<Inner>, l: Listener) {
    let mut sd = inner.shutdown.subscribe();
    let local = l
        .listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    info!(%local, tls = l.tls.is_some(), "listening for OpenFlow connections");
    let acceptor = l.tls.map(tokio_rustls::TlsAcceptor::from);
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = l.listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let inner = inner.clone();
                    let acceptor = acceptor.clone();
                    conns.spawn(async move {
                        let peer = peer.to_string();
                        match acceptor {
                            None => {
                                let raw = stream.as_raw_fd();
                                conn::run(inner, stream, Some(raw), crate::ofproto::ConnKind::Passive, peer).await
                            }
                            Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(stream)).await {
                                Ok(Ok(s)) => conn::run(inner, s, None, crate::ofproto::ConnKind::Passive, peer).await,
                                Ok(Err(e)) => warn!(%peer, "TLS handshake failed: {e}"),
                                Err(_) => warn!(%peer, "TLS handshake timed out"),
                            },
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    warn!(%local, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = shutdown_signalled(&mut sd) => break,
        }
    }
    while conns.join_next().await.is_some() {}
}

/// Keeps one connection to a controller: connect, run the session, wait, retry.
async fn keep_connected(inner: Arc<Inner>, c: Controller) {
    let mut sd = inner.shutdown.subscribe();
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let scheme = if c.tls.is_some() { "tls" } else { "tcp" };
    let target = format!("{scheme}:{}", c.addr);
    let connector = c.tls.map(tokio_rustls::TlsConnector::from);
    loop {
        let attempt = async {
            let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(c.addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            let _ = tcp.set_nodelay(true);
            Ok::<_, io::Error>(tcp)
        };
        let tcp = tokio::select! {
            r = attempt => r,
            () = shutdown_signalled(&mut sd) => return,
        };
        let session = match (tcp, &connector) {
            (Err(e), _) => Err(e),
            (Ok(tcp), None) => {
                backoff.reset();
                let raw = tcp.as_raw_fd();
                conn::run(
                    inner.clone(),
                    tcp,
                    Some(raw),
                    crate::ofproto::ConnKind::Active,
                    target.clone(),
                )
                .await;
                Ok(())
            }
            (Ok(tcp), Some(connector)) => {
                let name = rustls_pki_types::ServerName::IpAddress(c.addr.ip().into());
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
                    Ok(Ok(tls)) => {
                        backoff.reset();
                        conn::run(
                            inner.clone(),
                            tls,
                            None,
                            crate::ofproto::ConnKind::Active,
                            target.clone(),
                        )
                        .await;
                        Ok(())
                    }
                    Ok(Err(e)) => Err(io::Error::new(e.kind(), format!("TLS handshake: {e}"))),
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    )),
                }
            }
        };
        let delay = backoff.next_delay();
        match session {
            Ok(()) => info!(%target, "controller connection closed; reconnecting in {delay:?}"),
            Err(e) => {
                inner
                    .counters
                    .connect_failures
                    .fetch_add(1, Ordering::Relaxed);
                warn!(%target, "cannot reach controller: {e}; retrying in {delay:?}");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown_signalled(&mut sd) => return,
        }
    }
}

/// Calls `Ofproto::tick` at every `next_deadline`.
async fn timer(inner: Arc<Inner>) {
    let mut sd = inner.shutdown.subscribe();
    // Never tick twice within this, even if the core keeps reporting a past deadline.
    const MIN_GAP: Duration = Duration::from_millis(1);
    let mut last_tick = Instant::now();
    loop {
        let deadline = {
            let of = lock(&inner.of);
            let d = of.next_deadline();
            inner
                .timer_at
                .store(d.unwrap_or(u64::MAX), Ordering::Relaxed);
            d
        };
        let at = match deadline {
            Some(ns) => inner.clock.instant_at(ns).max(last_tick + MIN_GAP),
            None => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => {
                last_tick = Instant::now();
                let now = inner.now();
                let effects = lock(&inner.of).tick(now);
                inner.perform(effects);
            }
            () = inner.timer_kick.notified() => {}
            () = shutdown_signalled(&mut sd) => return,
        }
    }
}

/// Datapath events → PACKET_IN / PORT_STATUS, a batch per lock.
async fn dp_events(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<DpEvent>) {
    let mut sd = inner.shutdown.subscribe();
    const BATCH: usize = 64;
    loop {
        let first = tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => ev,
                None => return,
            },
            () = shutdown_signalled(&mut sd) => return,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        let now = inner.now();
        let mut effects = Vec::new();
        let deadline;
        {
            let mut of = lock(&inner.of);
            for ev in batch {
                match ev {
                    DpEvent::PacketIn(ev) => effects.extend(of.packet_in(ev, now)),
                    DpEvent::PortLink { port, up } => {
                        info!(port, up, "port link changed");
                        effects.extend(of.set_port_link(port, up, now));
                    }
                }
            }
            deadline = of.next_deadline();
        }
        inner.perform(effects);
        inner.kick_timer_if_earlier(deadline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let mut b = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        let secs: Vec<u64> = (0..6).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 8, 8]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }

    #[test]
    fn clock_maps_ns_to_instants() {
        let origin = Instant::now();
        let c = Clock::with_origin(origin);
        assert_eq!(
            c.instant_at(1_500_000_000),
            origin + Duration::from_millis(1500)
        );
        assert!(c.now() < 60_000_000_000);
    }
}
