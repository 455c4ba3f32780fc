//! The discovery task: per-interface SSDP sockets, M-SEARCH, the NOTIFY listener, description
//! fetches, expiry timers and the gateway's own advertisement, around the pure
//! [`Inventory`].
//!
//! Owns: sockets and timers only. Per interface it opens
//! - a listener on 0.0.0.0:1900 bound to the device (SO_BINDTODEVICE) and joined to
//!   239.255.255.250 on that interface's address: NOTIFYs and other hosts' M-SEARCHes;
//! - a search socket on IF_ADDR:ephemeral, bound to the device, with IP_MULTICAST_IF set:
//!   M-SEARCH goes out there and the unicast answers (from any source port) come back;
//! - when advertising, a description server on IF_ADDR (TCP).
//!
//! It never relies on a multicast route (IP_MULTICAST_IF and the device binding choose the
//! interface), never fetches from an address the inventory did not approve, and never panics
//! on what it receives: refusals are counted and logged rate-limited.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::advertise::{Advertiser, DESCRIPTION_PATH};
use super::counters::{Counters, Refusal, WarnLimiter};
use super::description::{self, MAX_DESCRIPTION_LEN};
use super::http;
use super::inventory::{Announcement, Device, Event, Fetch, Inventory, Kind, Output};
use super::ssdp::{self, Message, Nts, MAX_SSDP_LEN, SSDP_GROUP_V4, SSDP_PORT};

/// What the discovery task does.
#[derive(Debug, Clone)]
pub struct Config {
    /// LAN interfaces to discover on (each needs an IPv4 address).
    pub interfaces: Vec<String>,
    /// Search targets sent at start (`ssdp:all` by default). Empty: listen only.
    pub search_targets: Vec<String>,
    /// MX of our searches (1..=5).
    pub mx: u32,
    /// Each search is sent this many times, 200 ms apart (UDP may drop one).
    pub search_repeat: u32,
    /// Repeat the searches this often (None: only at start and on request).
    pub search_interval: Option<Duration>,
    /// Whole-fetch timeout for a description (connect, request, response).
    pub fetch_timeout: Duration,
    /// Descriptions fetched at once.
    pub max_concurrent_fetches: usize,
    /// Advertise the gateway as this UPnP device.
    pub advertise: Option<Advertiser>,
    /// TCP port of the description server when advertising (0: any free port).
    pub http_port: u16,
    /// Events buffered for slow subscribers.
    pub event_capacity: usize,
    /// USER-AGENT of our searches and fetches.
    pub user_agent: String,
}

impl Config {
    /// Discovery on `interfaces` with the defaults.
    pub fn new(interfaces: Vec<String>) -> Config {
        Config {
            interfaces,
            search_targets: vec!["ssdp:all".to_string()],
            mx: 2,
            search_repeat: 2,
            search_interval: None,
            fetch_timeout: Duration::from_secs(5),
            max_concurrent_fetches: 8,
            advertise: None,
            http_port: 0,
            event_capacity: 256,
            user_agent: format!("Linux UPnP/1.1 shg-discover/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Why discovery could not start.
#[derive(Debug)]
pub enum DiscoveryError {
    /// interface {0}: {1}
    Interface(String, std::io::Error),
    /// no interface configured
    NoInterface,
    /// must be started inside a tokio runtime
    NoRuntime,
    /// the discovery task has stopped
    Stopped,
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::Interface(i, e) => write!(f, "interface {i}: {e}"),
            DiscoveryError::NoInterface => f.write_str("no interface configured"),
            DiscoveryError::NoRuntime => f.write_str("must be started inside a tokio runtime"),
            DiscoveryError::Stopped => f.write_str("the discovery task has stopped"),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// An interface discovery runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Its name.
    pub name: String,
    /// Its IPv4 address (the source of our searches and NOTIFYs).
    pub addr: Ipv4Addr,
    /// The gateway's LOCATION on it, when advertising.
    pub location: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    inventory: Inventory,
    counters: Counters,
}

enum Command {
    Search(String),
    Shutdown(oneshot::Sender<()>),
}

/// A running discovery task. Dropping it stops the task (without byebye: call
/// [`Discovery::shutdown`] for a clean goodbye).
#[derive(Debug)]
pub struct Discovery {
    shared: Arc<Mutex<Shared>>,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
    interfaces: Vec<InterfaceInfo>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Search(st) => write!(f, "Search({st})"),
            Command::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Discovery {
    /// Opens the sockets on every interface and starts the task (inside the current tokio
    /// runtime). Returns the handle and a receiver of inventory events.
    pub fn spawn(
        config: Config,
    ) -> Result<(Discovery, broadcast::Receiver<Event>), DiscoveryError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
        if config.interfaces.is_empty() {
            return Err(DiscoveryError::NoInterface);
        }
        let _guard = rt.enter();
        let mut ifaces = Vec::new();
        for name in &config.interfaces {
            let open = open_interface(name, config.advertise.is_some(), config.http_port)
                .map_err(|e| DiscoveryError::Interface(name.clone(), e))?;
            ifaces.push(open);
        }
        let (events, rx) = broadcast::channel(config.event_capacity.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (dgram_tx, dgram_rx) = mpsc::channel(1024);
        let shared = Arc::new(Mutex::new(Shared::default()));
        if let Some(a) = &config.advertise {
            lock(&shared).inventory.ignore_udn(&a.udn);
        }
        let mut tasks = Vec::new();
        let mut infos = Vec::new();
        let mut sockets = Vec::new();
        for (i, iface) in ifaces.into_iter().enumerate() {
            let location = match (&config.advertise, &iface.http) {
                (Some(a), Some(l)) => l.local_addr().ok().map(|addr| a.location(addr)),
                _ => None,
            };
            infos.push(InterfaceInfo {
                name: iface.name.clone(),
                addr: iface.addr,
                location: location.clone(),
            });
            let listener = Arc::new(iface.listener);
            let search = Arc::new(iface.search);
            tasks.push(tokio::spawn(recv_loop(
                i,
                true,
                listener.clone(),
                dgram_tx.clone(),
            )));
            tasks.push(tokio::spawn(recv_loop(
                i,
                false,
                search.clone(),
                dgram_tx.clone(),
            )));
            if let (Some(a), Some(l)) = (&config.advertise, iface.http) {
                tasks.push(tokio::spawn(serve_description(
                    l,
                    Arc::new(a.description_xml().into_bytes()),
                )));
            }
            sockets.push(IfaceSockets {
                name: iface.name,
                listener,
                search,
                location,
            });
        }
        let task = Task {
            config,
            shared: shared.clone(),
            events: events.clone(),
            sockets,
            limiter: WarnLimiter::new(Duration::from_secs(10)),
            fetch_queue: VecDeque::new(),
            in_flight: 0,
            searches: VecDeque::new(),
        };
        tasks.push(tokio::spawn(task.run(cmd_rx, dgram_rx)));
        Ok((
            Discovery {
                shared,
                commands: cmd_tx,
                events,
                interfaces: infos,
                tasks,
            },
            rx,
        ))
    }

    /// Another receiver of inventory events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The interfaces in use.
    pub fn interfaces(&self) -> &[InterfaceInfo] {
        &self.interfaces
    }

    /// A copy of every root device.
    pub fn devices(&self) -> Vec<Device> {
        lock(&self.shared).inventory.devices().cloned().collect()
    }

    /// Runs `f` on the inventory (keep it short: the task waits meanwhile).
    pub fn with_inventory<R>(&self, f: impl FnOnce(&Inventory) -> R) -> R {
        f(&lock(&self.shared).inventory)
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        lock(&self.shared).counters.clone()
    }

    /// Sends an M-SEARCH for `st` on every interface now.
    pub async fn search(&self, st: &str) -> Result<(), DiscoveryError> {
        self.commands
            .send(Command::Search(st.to_string()))
            .await
            .map_err(|_| DiscoveryError::Stopped)
    }

    /// Says byebye (when advertising) and stops every task.
    pub async fn shutdown(mut self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

struct OpenInterface {
    name: String,
    addr: Ipv4Addr,
    listener: UdpSocket,
    search: UdpSocket,
    http: Option<TcpListener>,
}

/// The interface's primary IPv4 address, found without a route or an ioctl: a UDP socket
/// bound to the device and "connected" to the SSDP group gets the address the kernel would
/// send from on that device.
pub fn interface_ipv4(name: &str) -> std::io::Result<Ipv4Addr> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind_device(Some(name.as_bytes()))?;
    s.connect(&SocketAddr::from((SSDP_GROUP_V4, SSDP_PORT)).into())?;
    let local = s
        .local_addr()?
        .as_socket_ipv4()
        .map(|a| *a.ip())
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    if local.is_unspecified() {
        return Err(std::io::Error::other("has no IPv4 address"));
    }
    Ok(local)
}

fn udp_socket(name: &str, addr: Ipv4Addr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind_device(Some(name.as_bytes()))?;
    s.set_multicast_if_v4(&addr)?;
    s.set_multicast_ttl_v4(2)?;
    s.set_multicast_loop_v4(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn open_interface(name: &str, advertise: bool, http_port: u16) -> std::io::Result<OpenInterface> {
    let addr = interface_ipv4(name)?;
    let listener = udp_socket(name, addr)?;
    listener.set_reuse_address(true)?;
    listener.set_multicast_all_v4(false)?;
    listener.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, SSDP_PORT)).into())?;
    listener.join_multicast_v4(&SSDP_GROUP_V4, &addr)?;
    let search = udp_socket(name, addr)?;
    search.bind(&SocketAddr::from((addr, 0)).into())?;
    let http = if advertise {
        let l = std::net::TcpListener::bind(SocketAddrV4::new(addr, http_port))?;
        l.set_nonblocking(true)?;
        Some(TcpListener::from_std(l)?)
    } else {
        None
    };
    Ok(OpenInterface {
        name: name.to_string(),
        addr,
        listener: UdpSocket::from_std(std::net::UdpSocket::from(listener))?,
        search: UdpSocket::from_std(std::net::UdpSocket::from(search))?,
        http,
    })
}

struct Datagram {
    iface: usize,
    on_listener: bool,
    source: SocketAddr,
    data: Vec<u8>,
}

async fn recv_loop(
    iface: usize,
    on_listener: bool,
    sock: Arc<UdpSocket>,
    tx: mpsc::Sender<Datagram>,
) {
    // One byte more than the limit, so an oversize datagram is seen as oversize.
    let mut buf = vec![0u8; MAX_SSDP_LEN + 1];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, source)) => {
                let d = Datagram {
                    iface,
                    on_listener,
                    source,
                    data: buf[..n].to_vec(),
                };
                if tx.send(d).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("ssdp recv: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves the gateway's description: GET/HEAD of [`DESCRIPTION_PATH`], 404 otherwise; one
/// request per connection, 16 connections at most, 5 s per connection.
async fn serve_description(listener: TcpListener, body: Arc<Vec<u8>>) {
    let slots = Arc::new(Semaphore::new(16));
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let body = body.clone();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _permit = permit;
            let exchange = async {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                let (method, path) = loop {
                    let n = stream.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    match http::parse_request_head(&buf) {
                        Ok(Some(r)) => break r,
                        Ok(None) => {}
                        Err(_) => return None,
                    }
                };
                let head_only = method == "HEAD";
                let resp = if (method == "GET" || head_only) && path == DESCRIPTION_PATH {
                    http::format_response(
                        200,
                        "OK",
                        "text/xml; charset=\"utf-8\"",
                        &body,
                        head_only,
                    )
                } else {
                    http::format_response(404, "Not Found", "text/plain", b"not found\n", head_only)
                };
                stream.write_all(&resp).await.ok()?;
                stream.shutdown().await.ok()
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), exchange).await;
        });
    }
}

struct IfaceSockets {
    name: String,
    listener: Arc<UdpSocket>,
    search: Arc<UdpSocket>,
    location: Option<String>,
}

struct FetchDone {
    location: String,
    result: Result<description::Description, (Refusal, String)>,
}

struct Task {
    config: Config,
    shared: Arc<Mutex<Shared>>,
    events: broadcast::Sender<Event>,
    sockets: Vec<IfaceSockets>,
    limiter: WarnLimiter,
    fetch_queue: VecDeque<Fetch>,
    in_flight: usize,
    /// (when, search target)
    searches: VecDeque<(Instant, String)>,
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut dgrams: mpsc::Receiver<Datagram>,
    ) {
        let (fetch_tx, mut fetch_rx) = mpsc::channel::<FetchDone>(64);
        let start = Instant::now();
        let mut next_notify = self.config.advertise.as_ref().map(|_| start);
        let mut next_periodic = self.config.search_interval.map(|i| start + i);
        for st in self.config.search_targets.clone() {
            self.schedule_search(start, &st);
        }
        loop {
            let now = Instant::now();
            let next_expiry = lock(&self.shared).inventory.next_expiry();
            let deadline = [
                next_expiry,
                self.searches.front().map(|(t, _)| *t),
                next_notify,
                next_periodic,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_secs(3600));
            tokio::select! {
                d = dgrams.recv() => match d {
                    Some(d) => self.datagram(d, &fetch_tx).await,
                    None => return,
                },
                f = fetch_rx.recv() => if let Some(f) = f {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    let now = Instant::now();
                    if let Err((r, detail)) = &f.result {
                        self.warn(*r, &format!("description {}: {detail}", f.location), now);
                    }
                    let out = {
                        let mut s = lock(&self.shared);
                        let Shared { inventory, counters } = &mut *s;
                        inventory.described(&f.location, f.result, now, counters)
                    };
                    self.emit(out, &fetch_tx);
                },
                c = commands.recv() => match c {
                    Some(Command::Search(st)) => self.schedule_search(Instant::now(), &st),
                    Some(Command::Shutdown(done)) => {
                        self.say_byebye().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Instant::now();
                    let events = {
                        let mut s = lock(&self.shared);
                        let Shared { inventory, counters } = &mut *s;
                        inventory.expire(now, counters)
                    };
                    self.emit(Output { events, fetches: Vec::new() }, &fetch_tx);
                    while self.searches.front().is_some_and(|(t, _)| *t <= now) {
                        if let Some((_, st)) = self.searches.pop_front() {
                            self.send_search(&st).await;
                        }
                    }
                    if next_notify.is_some_and(|t| t <= now) {
                        self.send_alive().await;
                        let iv = self.config.advertise.as_ref().map(Advertiser::notify_interval);
                        next_notify = iv.map(|iv| now + iv);
                    }
                    if let (Some(t), Some(iv)) = (next_periodic, self.config.search_interval) {
                        if t <= now {
                            for st in self.config.search_targets.clone() {
                                self.schedule_search(now, &st);
                            }
                            next_periodic = Some(now + iv);
                        }
                    }
                }
            }
        }
    }

    fn schedule_search(&mut self, now: Instant, st: &str) {
        for i in 0..self.config.search_repeat.max(1) {
            let at = now + Duration::from_millis(200 * u64::from(i));
            let pos = self.searches.partition_point(|(t, _)| *t <= at);
            self.searches.insert(pos, (at, st.to_string()));
        }
    }

    async fn send_search(&mut self, st: &str) {
        let msg = ssdp::format_search(st, self.config.mx, &self.config.user_agent);
        let to = SocketAddr::from((SSDP_GROUP_V4, SSDP_PORT));
        for s in &self.sockets {
            match s.search.send_to(msg.as_bytes(), to).await {
                Ok(_) => lock(&self.shared).counters.searches_sent += 1,
                Err(e) => tracing::warn!("M-SEARCH on {}: {e}", s.name),
            }
        }
    }

    async fn send_alive(&mut self) {
        let Some(adv) = self.config.advertise.clone() else {
            return;
        };
        let to = SocketAddr::from((SSDP_GROUP_V4, SSDP_PORT));
        for s in &self.sockets {
            let Some(loc) = &s.location else { continue };
            for m in adv.notifies(Nts::Alive, loc) {
                match s.listener.send_to(m.as_bytes(), to).await {
                    Ok(_) => lock(&self.shared).counters.notifies_sent += 1,
                    Err(e) => tracing::warn!("NOTIFY on {}: {e}", s.name),
                }
            }
        }
    }

    async fn say_byebye(&mut self) {
        let Some(adv) = self.config.advertise.clone() else {
            return;
        };
        let to = SocketAddr::from((SSDP_GROUP_V4, SSDP_PORT));
        for s in &self.sockets {
            let Some(loc) = &s.location else { continue };
            for m in adv.notifies(Nts::ByeBye, loc) {
                if s.listener.send_to(m.as_bytes(), to).await.is_ok() {
                    lock(&self.shared).counters.notifies_sent += 1;
                }
            }
        }
    }

    fn warn(&mut self, r: Refusal, what: &str, now: Instant) {
        match self.limiter.allow(r, now) {
            Some(0) => tracing::warn!("discovery refused ({}): {what}", r.name()),
            Some(n) => tracing::warn!(
                "discovery refused ({}): {what} (and {n} more since the last warning)",
                r.name()
            ),
            None => tracing::debug!("discovery refused ({}): {what}", r.name()),
        }
    }

    async fn datagram(&mut self, d: Datagram, fetch_tx: &mpsc::Sender<FetchDone>) {
        let now = Instant::now();
        lock(&self.shared).counters.datagrams_received += 1;
        let msg = match ssdp::parse(&d.data) {
            Ok(m) => m,
            Err(e) => {
                lock(&self.shared).counters.refuse(e.refusal());
                self.warn(e.refusal(), &format!("from {}: {e}", d.source), now);
                return;
            }
        };
        let Some(sock) = self.sockets.get(d.iface) else {
            return;
        };
        let iface = sock.name.clone();
        let (kind, advert) = match msg {
            Message::Search(search) => {
                if !d.on_listener {
                    return;
                }
                let (Some(adv), Some(loc)) = (&self.config.advertise, &sock.location) else {
                    return;
                };
                let replies = adv.answer(&search, loc);
                for r in replies {
                    match sock.listener.send_to(r.as_bytes(), d.source).await {
                        Ok(_) => lock(&self.shared).counters.responses_sent += 1,
                        Err(e) => tracing::debug!("search response to {}: {e}", d.source),
                    }
                }
                return;
            }
            Message::Notify(n) => (
                match n.nts {
                    Nts::Alive => Kind::Alive,
                    Nts::ByeBye => Kind::ByeBye,
                    Nts::Update => Kind::Update,
                },
                n.advert,
            ),
            Message::Response(r) => (Kind::Response, r.advert),
        };
        let ann = Announcement {
            interface: iface,
            source: d.source,
            kind,
            advert,
        };
        let location = ann.advert.location.clone().unwrap_or_default();
        let (out, refused) = {
            let mut s = lock(&self.shared);
            let before = s.counters.clone();
            let Shared {
                inventory,
                counters,
            } = &mut *s;
            let out = inventory.announce(ann, now, counters);
            let refused = Refusal::ALL
                .into_iter()
                .find(|r| counters.refused(*r) > before.refused(*r));
            (out, refused)
        };
        if let Some(r) = refused {
            if r != Refusal::OwnAdvertisement {
                self.warn(r, &format!("from {}: LOCATION {location:?}", d.source), now);
            }
        }
        self.emit(out, fetch_tx);
    }

    fn emit(&mut self, out: Output, fetch_tx: &mpsc::Sender<FetchDone>) {
        for e in out.events {
            match &e {
                Event::Appeared(d) => tracing::info!(
                    "device appeared: {} {} at {}",
                    d.udn,
                    d.device_type(),
                    d.address
                ),
                Event::Updated(d, r) => tracing::debug!("device updated ({r:?}): {}", d.udn),
                Event::Gone(d, r) => tracing::info!("device gone ({r:?}): {}", d.udn),
            }
            // No receiver is not an error: events are also in the inventory.
            let _ = self.events.send(e);
        }
        self.fetch_queue.extend(out.fetches);
        while self.in_flight < self.config.max_concurrent_fetches.max(1) {
            let Some(f) = self.fetch_queue.pop_front() else {
                break;
            };
            self.in_flight += 1;
            let tx = fetch_tx.clone();
            let timeout = self.config.fetch_timeout;
            let ua = self.config.user_agent.clone();
            tokio::spawn(async move {
                let result = match http::get(&f.url, MAX_DESCRIPTION_LEN, timeout, &ua).await {
                    Ok(body) => description::parse(&body).map_err(|e| (e.refusal(), e.to_string())),
                    Err(e) => Err((e.refusal(), e.to_string())),
                };
                let _ = tx
                    .send(FetchDone {
                        location: f.location,
                        result,
                    })
                    .await;
            });
        }
    }
}
