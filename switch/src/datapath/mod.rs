//! The datapath: ports → key → tables → actions → ports, in batches, on its own thread.
//!
//! [`execute`] is the pure part (one packet in, outputs out); [`normal`] is the L2 learning
//! used by NORMAL and by fail-mode standalone; [`trace`] explains a decision like OVS's
//! ofproto/trace. This module's loop ([`spawn`]) is the thin I/O around it: it polls the port
//! backends and sleeps when idle. It never decides where a frame goes.
//!
//! # The loop
//!
//! One thread blocks in `ppoll(2)` on every port's fd, a wake eventfd (commands from the
//! agent: PACKET_OUT frames, port changes, shutdown; QoS changes from the control socket) and
//! the netlink link watcher, with a timeout only while a shaped port holds frames (see
//! "Shaped ports"). Nothing else wakes it: at rest it uses no CPU. After a wake-up that received frames it keeps
//! polling with a zero timeout for up to [`SPIN`] more (the window restarts whenever more
//! frames arrive) before it blocks again: under load the next batch, and for a
//! request/response the reply, usually arrive within that window, which saves the sleep and
//! wake-up (scheduler) cost of each batch and a wake-up's latency; once traffic stops the
//! thread blocks within [`SPIN`], so idle CPU stays zero. On readiness, for each ready port it receives one
//! batch (up to [`RX_BATCH`] frames: ports take turns, so one busy port cannot starve the
//! others), locks the [`Ofproto`] once for the whole batch (while it waits for the lock a flag
//! says so, and the agent hands the lock over between two messages or dump pages:
//! [`DatapathHandle::waiting_for_lock`], docs/decisions.md D16), runs
//! [`execute::process_packet`] on each frame in arrival order, unlocks, then sends the
//! resulting frames grouped per output port with one `send_batch` per port (order within a
//! port is the order of processing, so frames of one flow are never reordered), and forwards
//! controller-bound frames to the agent as [`DpEvent::PacketIn`].
//!
//! Counters: `execute` counts tx_packets/tx_bytes when it emits a frame (to a shaped port:
//! `dequeue_shaped`, when the frame leaves the scheduler); frames a backend
//! then fails to send are moved from tx_packets/tx_bytes to tx_dropped the next time the loop
//! holds the lock (or, when idle, right after the send if the lock is free). Outputs to a port
//! the datapath does not have are counted in [`DatapathStats::no_such_port`].
//!
//! # Shaped ports
//!
//! Outputs to a port with an egress scheduler (`Ofproto::qos`) are not sent directly: while
//! the loop still holds the lock after a batch (or a PACKET_OUT), `Ofproto::enqueue_shaped`
//! splits them into wire-size frames and enqueues them at `now`, then
//! `Ofproto::dequeue_shaped` takes what every shaped port has due (at most [`QOS_BATCH`] per
//! port) and those frames are sent like any other. The loop then sleeps until the earliest
//! `next_wakeup` of any scheduler, with nanosecond resolution (`ppoll`, timer slack
//! [`TIMER_SLACK_NS`]); with every scheduler empty it sleeps without a timeout. A timer
//! expiry takes the due frames under the lock ([`DatapathStats::qos_timer_wakeups`]).
//! Tx counters of a shaped port count frames when they leave the scheduler; refusals count
//! in the port's tx_dropped ([`DatapathStats::qos_drops`], [`DatapathStats::gso_split_errors`]).
//!
//! Link state: kernel ports (with an ifindex) follow netlink RTM_NEWLINK/DELLINK events (after
//! a netlink overrun, every kernel port is re-read with `link_up()`); ports without an ifindex
//! (dummy) are re-read with `link_up()` after every wake-up — the dummy handle wakes the loop
//! when it flips the link. Each change, and each port's state when it joins, is reported as
//! [`DpEvent::PortLink`] (the agent's `set_port_link` ignores non-changes).

pub mod copies;
pub mod execute;
pub mod normal;
pub mod offload;
pub mod segment;
pub mod trace;

use crate::ofproto::FastPath as _;
use crate::ofproto::Ofproto;
use crate::port::dummy::{ppoll, set_realtime, set_timer_slack, EventFd};
use crate::port::link::LinkWatcher;
use crate::port::{Packet, PortBackend};
use offload::Repeater;
use shg_flows::field::FlowKey;
use shg_flows::key::extract;
use shg_flows::matches::Match;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Where one processed frame goes.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::large_enum_variant,
    reason = "PACKET_INs are rare next to port outputs; boxing would change the API shared with execute/agent"
)]
pub enum Output {
    /// Out of a switch port (physical or LOCAL), on the egress queue a set_queue chose
    /// (`None`: no set_queue — an unshaped port counts it on queue 0, a shaped port puts it
    /// in its default queue). Frames leaving a scheduler carry `None`.
    Port {
        port: u32,
        queue: Option<u32>,
        pkt: Packet,
    },
    /// To the controller(s) as PACKET_IN (the agent applies roles and async masks).
    Controller(PacketInEvent),
}

/// A packet bound for the controller, before per-connection filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketInEvent {
    /// OFPR_NO_MATCH (0), OFPR_ACTION (1), OFPR_INVALID_TTL (2).
    pub reason: u8,
    pub table_id: u8,
    pub cookie: u64,
    /// in_port (+ metadata, tunnel_id when non-zero), as OF1.3 PACKET_IN carries.
    pub r#match: Match,
    /// Frame bytes, already cut to `max_len` (the output action's, or miss_send_len).
    pub data: Vec<u8>,
    /// Length of the whole frame.
    pub total_len: u16,
}

/// What the datapath thread reports to the agent.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant, reason = "PortLink events are rare")]
pub enum DpEvent {
    /// A frame for the controller(s): the agent turns it into PACKET_INs with
    /// `Ofproto::packet_in`.
    PacketIn(PacketInEvent),
    /// A port's carrier changed: the agent calls `Ofproto::set_port_link` (PORT_STATUS).
    PortLink { port: u32, up: bool },
}

/// The OpenFlow LOCAL port number (the TAP port, when configured, is registered under it).
pub const LOCAL_PORT: u32 = 0xffff_fffe;
/// Frames received from one port per turn.
pub const RX_BATCH: usize = 64;
/// How long the loop keeps polling without blocking after it last received frames.
pub const SPIN: Duration = Duration::from_micros(50);
/// Consecutive "ready but nothing received, with an error condition" turns after which a
/// port's fd is taken out of the poll set (it would otherwise make the loop spin).
const MAX_FUTILE_WAKEUPS: u32 = 1000;
/// Frames taken from one shaped port's scheduler per pass (more due: the next pass follows
/// at once).
pub const QOS_BATCH: usize = 64;
/// The datapath thread's timer slack: how late the kernel may end a shaper's timed sleep.
pub const TIMER_SLACK_NS: u64 = 1_000;

/// Datapath-wide counters (monotonic), readable from any thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatapathStats {
    /// Times `poll` returned with something ready.
    pub wakeups: u64,
    /// Zero-timeout polls (spinning after traffic) that found nothing ready.
    pub spin_polls: u64,
    /// Receive batches processed and the frames in them.
    pub rx_batches: u64,
    pub rx_packets: u64,
    /// Backend receive errors.
    pub rx_errors: u64,
    /// Frames the backends accepted for sending.
    pub tx_packets: u64,
    /// Frames the backends refused (queue full, interface down, rejected).
    pub tx_dropped: u64,
    /// Frames output to a port number the datapath has no backend for (dropped).
    pub no_such_port: u64,
    /// Frames forwarded to the agent as PACKET_IN events.
    pub packet_ins: u64,
    /// Events lost because the agent's receiver was gone.
    pub events_lost: u64,
    /// Ports taken out of the poll set because their fd kept reporting errors.
    pub ports_disabled: u64,
    /// Times the loop woke because a shaped port had a frame due (timer expiry).
    pub qos_timer_wakeups: u64,
    /// Wire-size frames enqueued on shaped ports' schedulers.
    pub qos_enqueued: u64,
    /// Frames a scheduler refused (queue full) or its AQM dropped.
    pub qos_drops: u64,
    /// GSO frames to a shaped port that could not be split into wire-size frames (dropped).
    pub gso_split_errors: u64,
    /// Frames forwarded by the thread's copies of decisions ([`copies`]): no pipeline, no
    /// `Ofproto` lock.
    pub copied: u64,
}

#[derive(Debug, Default)]
struct AtomicStats {
    wakeups: AtomicU64,
    spin_polls: AtomicU64,
    rx_batches: AtomicU64,
    rx_packets: AtomicU64,
    rx_errors: AtomicU64,
    tx_packets: AtomicU64,
    tx_dropped: AtomicU64,
    no_such_port: AtomicU64,
    packet_ins: AtomicU64,
    events_lost: AtomicU64,
    ports_disabled: AtomicU64,
    qos_timer_wakeups: AtomicU64,
    qos_enqueued: AtomicU64,
    qos_drops: AtomicU64,
    gso_split_errors: AtomicU64,
    copied: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl AtomicStats {
    fn snapshot(&self) -> DatapathStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DatapathStats {
            wakeups: g(&self.wakeups),
            spin_polls: g(&self.spin_polls),
            rx_batches: g(&self.rx_batches),
            rx_packets: g(&self.rx_packets),
            rx_errors: g(&self.rx_errors),
            tx_packets: g(&self.tx_packets),
            tx_dropped: g(&self.tx_dropped),
            no_such_port: g(&self.no_such_port),
            packet_ins: g(&self.packet_ins),
            events_lost: g(&self.events_lost),
            ports_disabled: g(&self.ports_disabled),
            qos_timer_wakeups: g(&self.qos_timer_wakeups),
            qos_enqueued: g(&self.qos_enqueued),
            qos_drops: g(&self.qos_drops),
            gso_split_errors: g(&self.gso_split_errors),
            copied: g(&self.copied),
        }
    }
}

/// A request from another thread, carried out by the datapath thread after a wake.
enum Cmd {
    Transmit(Vec<Output>),
    AddPort(u32, Box<dyn PortBackend>),
    RemovePort(u32),
    /// Switch the datapath thread to SCHED_FIFO at this priority.
    Realtime(i32),
    /// Start the thread's copies of decisions ([`copies`]).
    ThreadCopies,
    /// Start the kernel fast path ([`offload`]).
    KernelFastPath,
}

struct Shared {
    cmds: Mutex<VecDeque<Cmd>>,
    wake: EventFd,
    stop: AtomicBool,
    stats: AtomicStats,
    /// Set while the datapath thread waits for the `Ofproto` lock (see [`lock_of`]).
    waiting_for_lock: AtomicBool,
}

impl Shared {
    fn push(&self, cmd: Cmd) {
        self.cmds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(cmd);
        self.wake.notify();
    }
}

/// The running datapath thread. Dropping it stops and joins the thread.
pub struct DatapathHandle {
    shared: Arc<Shared>,
    name: String,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for DatapathHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatapathHandle")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl DatapathHandle {
    /// Sends frames (PACKET_OUT, floods computed by the agent) out of their ports, in order,
    /// from the datapath thread; `Output::Controller` entries become PACKET_IN events. Never
    /// blocks on I/O.
    pub fn transmit(&self, outputs: Vec<Output>) {
        if !outputs.is_empty() {
            self.shared.push(Cmd::Transmit(outputs));
        }
    }

    /// Adds a port (replacing any backend already registered under `port_no`). The agent
    /// registers it with `Ofproto::add_port` itself; the datapath reports its link state.
    pub fn add_port(&self, port_no: u32, backend: Box<dyn PortBackend>) {
        self.shared.push(Cmd::AddPort(port_no, backend));
    }

    /// Makes the datapath thread a real-time (SCHED_FIFO) thread at `priority`, so shaped
    /// ports' timer wake-ups are not delayed by busy neighbours; logs a warning if the
    /// system refuses (no CAP_SYS_NICE).
    pub fn set_realtime(&self, priority: i32) {
        self.shared.push(Cmd::Realtime(priority));
    }

    /// Starts the kernel fast path ([`offload`]): decisions the kernel can repeat are handed
    /// to BPF programs at the ports' ingress. Logs a warning and goes on without it when the
    /// kernel refuses (no tcx, no CAP_BPF).
    pub fn enable_kernel_fast_path(&self) {
        self.shared.push(Cmd::KernelFastPath);
    }

    /// Starts the thread's copies of decisions ([`copies`]): later frames of a flow key whose
    /// decision is repeatable go out without the pipeline or the `Ofproto` lock.
    pub fn enable_thread_copies(&self) {
        self.shared.push(Cmd::ThreadCopies);
    }

    /// Removes a port; its backend is closed by the datapath thread.
    pub fn remove_port(&self, port_no: u32) {
        self.shared.push(Cmd::RemovePort(port_no));
    }

    /// Wakes the thread to re-read the shaped ports' schedulers (after a QoS change made
    /// under the `Ofproto` lock, e.g. by the control socket), so a changed next departure
    /// takes effect at once.
    pub fn wake(&self) {
        self.shared.wake.notify();
    }

    /// The datapath thread's name (`shg-dp<N>`, unique in the process; also its `comm` in
    /// `/proc/self/task/*/stat`).
    pub fn thread_name(&self) -> &str {
        &self.name
    }

    /// Whether the datapath thread is waiting for the `Ofproto` lock. A thread holding it
    /// for a series of short steps (the agent's message loop) lets it go between two steps
    /// while this is true.
    pub fn waiting_for_lock(&self) -> bool {
        self.shared.waiting_for_lock.load(Ordering::SeqCst)
    }

    /// A snapshot of the datapath counters.
    pub fn stats(&self) -> DatapathStats {
        self.shared.stats.snapshot()
    }

    /// Stops the thread and waits for it (idempotent). Frames queued by `transmit` before the
    /// call are sent first.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.notify();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            if h.join().is_err() {
                tracing::error!("datapath thread panicked");
            }
        }
    }
}

impl Drop for DatapathHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the datapath thread (named `shg-dp<N>`) over `ports` (OpenFlow port number,
/// backend); the TAP port, if any, is given under [`LOCAL_PORT`]. The thread (and the netlink
/// watcher, opened here) belong to the calling thread's network namespace. `clock` returns
/// monotonic nanoseconds, the `now` given to the pipeline.
pub fn spawn(
    ports: Vec<(u32, Box<dyn PortBackend>)>,
    of: Arc<Mutex<Ofproto>>,
    events: UnboundedSender<DpEvent>,
    clock: fn() -> u64,
) -> io::Result<DatapathHandle> {
    let watcher = match LinkWatcher::open() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "no netlink link watcher: link changes of kernel ports are polled on wake-ups only");
            None
        }
    };
    let shared = Arc::new(Shared {
        cmds: Mutex::new(VecDeque::new()),
        wake: EventFd::new()?,
        stop: AtomicBool::new(false),
        stats: AtomicStats::default(),
        waiting_for_lock: AtomicBool::new(false),
    });
    let mut dp = Loop {
        slots: Vec::new(),
        by_no: HashMap::new(),
        watcher,
        of,
        events,
        clock,
        shared: shared.clone(),
        pollfds: Vec::new(),
        poll_slots: Vec::new(),
        layout_dirty: true,
        rx: Vec::with_capacity(RX_BATCH),
        outputs: Vec::new(),
        to_flush: Vec::new(),
        pending: BTreeMap::new(),
        qos_deadline: None,
        offload: None,
        copies: None,
        to_hand: Vec::new(),
        mac_changes: 0,
        sync_deadline: None,
    };
    for (no, backend) in ports {
        dp.add_port(no, backend);
    }
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    let name = format!("shg-dp{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || dp.run())?;
    Ok(DatapathHandle {
        shared,
        name,
        thread: Mutex::new(Some(thread)),
    })
}

struct Slot {
    port_no: u32,
    backend: Box<dyn PortBackend>,
    fd: Option<RawFd>,
    ifindex: Option<u32>,
    link_up: bool,
    /// Frames waiting for this port's next `send_batch`.
    tx: Vec<Packet>,
    /// Consecutive wake-ups with an error condition and nothing received.
    futile: u32,
    /// Taken out of the poll set (its fd kept failing).
    disabled: bool,
}

/// Send failures not yet moved into the Ofproto port counters.
#[derive(Debug, Default, Clone, Copy)]
struct PendingDrops {
    packets: u64,
    bytes: u64,
}

struct Loop {
    slots: Vec<Slot>,
    by_no: HashMap<u32, usize>,
    watcher: Option<LinkWatcher>,
    of: Arc<Mutex<Ofproto>>,
    events: UnboundedSender<DpEvent>,
    clock: fn() -> u64,
    shared: Arc<Shared>,
    /// [wake, watcher?, ports...]
    pollfds: Vec<libc::pollfd>,
    /// For each pollfd after the fixed ones, the slot index.
    poll_slots: Vec<usize>,
    layout_dirty: bool,
    rx: Vec<Packet>,
    outputs: Vec<Output>,
    to_flush: Vec<usize>,
    pending: BTreeMap<u32, PendingDrops>,
    /// When a shaped port next has a frame due (None: every scheduler is empty), as last
    /// read under the lock.
    qos_deadline: Option<u64>,
    /// The kernel fast path, once started (also installed in the `Ofproto`, which takes its
    /// copies back before every change; locked after the `Ofproto` lock).
    offload: Option<Arc<Mutex<offload::KernelOffload>>>,
    /// The thread's copies of decisions, once started (also installed in the `Ofproto`;
    /// locked alone for lookups, after the `Ofproto` lock otherwise).
    copies: Option<Arc<Mutex<copies::ThreadCopies>>>,
    /// Decisions to hand to the kernel once their frames are sent.
    to_hand: Vec<offload::Pending>,
    /// `MacTable::changes` when last looked at (a change takes every copy back).
    mac_changes: u64,
    /// When the fast path's counters are next credited (None: nothing handed over).
    sync_deadline: Option<u64>,
}

/// A frame's length as the pipeline counts it.
fn frame_bytes(pkt: &Packet) -> u64 {
    u64::try_from(pkt.data.len()).unwrap_or(u64::MAX)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How often the counts of decisions handed to the kernel are credited (and idle ones taken
/// back) while some are out.
pub const FAST_SYNC: Duration = Duration::from_secs(1);

fn lock_offload(o: &Mutex<offload::KernelOffload>) -> MutexGuard<'_, offload::KernelOffload> {
    o.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock_copies(c: &Mutex<copies::ThreadCopies>) -> MutexGuard<'_, copies::ThreadCopies> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock(of: &Mutex<Ofproto>) -> MutexGuard<'_, Ofproto> {
    // A panic elsewhere while holding the lock must not stop forwarding.
    of.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `Ofproto` lock for the datapath thread: when another thread holds it, `waiting` is set
/// until the lock is ours, so the OpenFlow agent, between two messages, hands it over
/// ([`DatapathHandle::waiting_for_lock`]) instead of keeping it for a whole stream of
/// flow_mods while frames wait.
fn lock_of<'a>(of: &'a Mutex<Ofproto>, waiting: &AtomicBool) -> MutexGuard<'a, Ofproto> {
    match of.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => {
            waiting.store(true, Ordering::SeqCst);
            let g = lock(of);
            waiting.store(false, Ordering::SeqCst);
            g
        }
    }
}

impl Loop {
    fn run(mut self) {
        if let Err(e) = set_timer_slack(TIMER_SLACK_NS) {
            tracing::debug!(error = %e, "datapath: cannot lower the timer slack");
        }
        let mut poll_failures: u64 = 0;
        // Until when to poll without blocking (set after receiving frames).
        let mut spin_until: Option<Instant> = None;
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                self.run_commands();
                break;
            }
            if self.layout_dirty {
                self.rebuild_pollfds();
            }
            let spinning = matches!(spin_until, Some(t) if Instant::now() < t);
            if !spinning {
                spin_until = None;
            }
            // Sleep until the next departure of a shaped port or the fast path's next count,
            // if any; spinning polls.
            let qos_in = [self.qos_deadline, self.sync_deadline]
                .into_iter()
                .flatten()
                .min()
                .map(|t| Duration::from_nanos(t.saturating_sub((self.clock)())));
            let timeout = if spinning {
                Some(Duration::ZERO)
            } else {
                qos_in
            };
            match ppoll(&mut self.pollfds, timeout) {
                Ok(0) => {
                    if self.sync_due() {
                        self.fast_sync();
                    }
                    if self.qos_due() {
                        bump(&self.shared.stats.qos_timer_wakeups, 1);
                        self.qos_pass();
                    } else if spinning {
                        bump(&self.shared.stats.spin_polls, 1);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    poll_failures += 1;
                    if crate::port::afpacket::should_log(poll_failures) {
                        tracing::error!(error = %e, "datapath poll failed");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            }
            bump(&self.shared.stats.wakeups, 1);
            let woken = self.pollfds[0].revents != 0;
            if woken {
                self.shared.wake.drain();
                self.run_commands();
            }
            let fixed = 1 + usize::from(self.watcher.is_some());
            if self.watcher.is_some() && self.pollfds[1].revents != 0 {
                self.read_link_events();
            }
            if !self.layout_dirty {
                let mut received = false;
                for k in fixed..self.pollfds.len() {
                    let revents = self.pollfds[k].revents;
                    if revents != 0 {
                        received |= self.service_port(self.poll_slots[k - fixed], revents);
                    }
                }
                if received {
                    spin_until = Some(Instant::now() + SPIN);
                }
            }
            self.poll_links_without_ifindex();
            // A wake-up may come from a QoS change (control socket): re-read the schedulers.
            if woken || self.qos_due() {
                self.qos_pass();
            }
            if !self.pending.is_empty() {
                if let Ok(mut of) = self.of.try_lock() {
                    Self::apply_pending(&mut self.pending, &mut of);
                }
            }
            if self.sync_due() {
                self.fast_sync();
            }
        }
        if !self.pending.is_empty() {
            let mut of = lock_of(&self.of, &self.shared.waiting_for_lock);
            Self::apply_pending(&mut self.pending, &mut of);
        }
    }

    /// Whether a shaped port has a frame due now.
    fn qos_due(&self) -> bool {
        self.qos_deadline.is_some_and(|t| t <= (self.clock)())
    }

    /// Whether the fast path's counts are due.
    fn sync_due(&self) -> bool {
        self.sync_deadline.is_some_and(|t| t <= (self.clock)())
    }

    /// Credits what the kernel forwarded for the handed-over decisions (taking idle or
    /// outdated ones back); the next count is due in [`FAST_SYNC`] while any is out.
    fn fast_sync(&mut self) {
        let now = (self.clock)();
        let out = {
            let mut of = lock_of(&self.of, &self.shared.waiting_for_lock);
            of.sync_fast_path(now)
        };
        self.sync_deadline = out.then(|| now.saturating_add(nanos(FAST_SYNC)));
    }

    /// Starts the thread's copies (see [`copies`]).
    fn start_thread_copies(&mut self) {
        if self.copies.is_some() {
            return;
        }
        let c = Arc::new(Mutex::new(copies::ThreadCopies::new()));
        self.install_fast_path(c.clone());
        tracing::info!("thread copies of decisions started");
        self.copies = Some(c);
    }

    /// Hands `fast` to the core, which takes its copies back from now on; NORMAL's table
    /// changes are counted from here.
    fn install_fast_path(&mut self, fast: crate::ofproto::SharedFastPath) {
        let mut of = lock_of(&self.of, &self.shared.waiting_for_lock);
        of.add_fast_path(fast);
        self.mac_changes = of.mac_table.changes();
    }

    /// Starts the kernel fast path on every kernel port (see [`offload`]).
    fn start_fast_path(&mut self) {
        if self.offload.is_some() {
            return;
        }
        let mut o = match offload::KernelOffload::new() {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "kernel fast path unavailable: every frame is forwarded by the datapath thread");
                return;
            }
        };
        for s in &self.slots {
            if let (Some(i), Some(fd)) = (s.ifindex, s.backend.packet_socket()) {
                if let Err(e) = o.attach(s.port_no, i, fd) {
                    tracing::warn!(port = s.port_no, error = %e, "kernel fast path not attached to this port");
                }
            }
        }
        let o = Arc::new(Mutex::new(o));
        self.install_fast_path(o.clone());
        tracing::info!("kernel fast path started");
        self.offload = Some(o);
    }

    /// Takes the frames due from every shaped port and sends them; notes the next deadline.
    fn qos_pass(&mut self) {
        let now = (self.clock)();
        {
            let mut of = lock_of(&self.of, &self.shared.waiting_for_lock);
            Self::apply_pending(&mut self.pending, &mut of);
            Self::shape(
                &mut of,
                &mut self.outputs,
                &self.shared.stats,
                &mut self.qos_deadline,
                now,
            );
        }
        self.dispatch();
    }

    /// Under the lock: moves the `outputs` bound for shaped ports into their schedulers,
    /// appends what is due from every shaped port, and notes the next deadline.
    fn shape(
        of: &mut Ofproto,
        outputs: &mut Vec<Output>,
        stats: &AtomicStats,
        deadline: &mut Option<u64>,
        now: u64,
    ) {
        if of.qos.is_empty() {
            *deadline = None;
            return;
        }
        let r = of.enqueue_shaped(outputs, now);
        bump(&stats.qos_enqueued, r.enqueued);
        bump(&stats.qos_drops, r.dropped);
        if r.split_errors > 0 {
            let before = stats
                .gso_split_errors
                .fetch_add(r.split_errors, Ordering::Relaxed);
            if (before + 1..=before + r.split_errors).any(crate::port::afpacket::should_log) {
                tracing::warn!(
                    total = before + r.split_errors,
                    "datapath: GSO frames to a shaped port could not be split (dropped)"
                );
            }
        }
        let d = of.dequeue_shaped(now, QOS_BATCH, outputs);
        bump(&stats.qos_drops, d.aqm_dropped);
        *deadline = of.next_qos_wakeup();
    }

    fn rebuild_pollfds(&mut self) {
        self.pollfds.clear();
        self.poll_slots.clear();
        let pfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        self.pollfds.push(pfd(self.shared.wake.raw_fd()));
        if let Some(w) = &self.watcher {
            self.pollfds.push(pfd(w.fd()));
        }
        for (i, s) in self.slots.iter().enumerate() {
            if let (Some(fd), false) = (s.fd, s.disabled) {
                self.pollfds.push(pfd(fd));
                self.poll_slots.push(i);
            }
        }
        self.layout_dirty = false;
    }

    fn run_commands(&mut self) {
        loop {
            let cmd = self
                .shared
                .cmds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(cmd) = cmd else { break };
            match cmd {
                Cmd::Transmit(outputs) => {
                    self.outputs.extend(outputs);
                    if self
                        .outputs
                        .iter()
                        .any(|o| matches!(o, Output::Port { .. }))
                    {
                        let now = (self.clock)();
                        let mut of = lock_of(&self.of, &self.shared.waiting_for_lock);
                        Self::shape(
                            &mut of,
                            &mut self.outputs,
                            &self.shared.stats,
                            &mut self.qos_deadline,
                            now,
                        );
                    }
                    self.dispatch();
                }
                Cmd::AddPort(no, backend) => self.add_port(no, backend),
                Cmd::RemovePort(no) => self.remove_port(no),
                Cmd::ThreadCopies => self.start_thread_copies(),
                Cmd::KernelFastPath => self.start_fast_path(),
                Cmd::Realtime(prio) => match set_realtime(prio) {
                    Ok(()) => tracing::info!(priority = prio, "datapath thread runs SCHED_FIFO"),
                    Err(e) => {
                        tracing::warn!(error = %e, "datapath thread stays SCHED_OTHER: cannot set SCHED_FIFO")
                    }
                },
            }
        }
    }

    fn add_port(&mut self, port_no: u32, backend: Box<dyn PortBackend>) {
        self.remove_port(port_no);
        let info = backend.info();
        let link_up = backend.link_up();
        self.slots.push(Slot {
            port_no,
            fd: backend.fd(),
            ifindex: info.ifindex,
            link_up,
            backend,
            tx: Vec::new(),
            futile: 0,
            disabled: false,
        });
        self.by_no.insert(port_no, self.slots.len() - 1);
        self.layout_dirty = true;
        if let (Some(o), Some(i), Some(fd)) = (
            &self.offload,
            info.ifindex,
            self.slots.last().and_then(|s| s.backend.packet_socket()),
        ) {
            if let Err(e) = lock_offload(o).attach(port_no, i, fd) {
                tracing::warn!(port = port_no, error = %e, "kernel fast path not attached to this port");
            }
        }
        tracing::debug!(port = port_no, name = %info.name, link_up, "datapath port added");
        self.send_event(DpEvent::PortLink {
            port: port_no,
            up: link_up,
        });
    }

    fn remove_port(&mut self, port_no: u32) {
        let Some(i) = self.by_no.remove(&port_no) else {
            return;
        };
        if self.offload.is_some() || self.copies.is_some() {
            // Its decisions are taken back first: the core does so when the port goes.
            let now = (self.clock)();
            lock_of(&self.of, &self.shared.waiting_for_lock).drain_fast_path(now);
        }
        if let Some(o) = &self.offload {
            lock_offload(o).detach(port_no);
        }
        self.slots.remove(i);
        self.by_no = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.port_no, i))
            .collect();
        self.to_flush.clear(); // indices shifted; to_flush is empty between dispatches anyway
        self.layout_dirty = true;
    }

    fn send_event(&self, ev: DpEvent) {
        if matches!(ev, DpEvent::PacketIn(_)) {
            bump(&self.shared.stats.packet_ins, 1);
        }
        if self.events.send(ev).is_err() {
            bump(&self.shared.stats.events_lost, 1);
        }
    }

    fn set_link(&mut self, i: usize, up: bool) {
        let s = &mut self.slots[i];
        if s.link_up != up {
            s.link_up = up;
            let port = s.port_no;
            tracing::debug!(port, up, "datapath: link changed");
            self.send_event(DpEvent::PortLink { port, up });
        }
    }

    fn read_link_events(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let events = w.read_events();
        let overrun = w.take_overrun();
        for (ifindex, up) in events {
            for i in 0..self.slots.len() {
                if self.slots[i].ifindex == Some(ifindex) {
                    self.set_link(i, up);
                }
            }
        }
        if overrun {
            tracing::warn!("netlink overrun: re-reading the link state of every port");
            for i in 0..self.slots.len() {
                if self.slots[i].ifindex.is_some() {
                    let up = self.slots[i].backend.link_up();
                    self.set_link(i, up);
                }
            }
        }
    }

    fn poll_links_without_ifindex(&mut self) {
        let all = self.watcher.is_none();
        for i in 0..self.slots.len() {
            if all || self.slots[i].ifindex.is_none() {
                let up = self.slots[i].backend.link_up();
                self.set_link(i, up);
            }
        }
    }

    /// Receives and processes one batch from slot `i`; true when frames were received.
    fn service_port(&mut self, i: usize, revents: libc::c_short) -> bool {
        let port_no = self.slots[i].port_no;
        if revents & libc::POLLNVAL != 0 {
            self.disable(i, "fd is not open");
            return false;
        }
        self.rx.clear();
        let res = self.slots[i].backend.recv_batch(&mut self.rx, RX_BATCH);
        if res.is_err() {
            // The backend counted and logged it; note it for port stats.
            bump(&self.shared.stats.rx_errors, 1);
            let mut of = lock_of(&self.of, &self.shared.waiting_for_lock);
            if let Some(p) = of.ports.get_mut(&port_no) {
                p.counters.rx_errors = p.counters.rx_errors.saturating_add(1);
            }
        }
        if self.rx.is_empty() {
            if revents & (libc::POLLERR | libc::POLLHUP) != 0 || res.is_err() {
                self.slots[i].futile += 1;
                if self.slots[i].futile >= MAX_FUTILE_WAKEUPS {
                    self.disable(i, "fd keeps reporting errors");
                }
            }
            return false;
        }
        self.slots[i].futile = 0;
        let n = u64::try_from(self.rx.len()).unwrap_or(u64::MAX);
        bump(&self.shared.stats.rx_batches, 1);
        bump(&self.shared.stats.rx_packets, n);
        let now = (self.clock)();
        self.process_batch(port_no, now);
        self.dispatch();
        if let Some(o) = &self.offload {
            if !self.to_hand.is_empty() {
                let mut o = lock_offload(o);
                for p in self.to_hand.drain(..) {
                    o.hand_over(p);
                }
                if self.sync_deadline.is_none() && !o.is_empty() {
                    self.sync_deadline = Some(now.saturating_add(nanos(FAST_SYNC)));
                }
            }
        }
        true
    }

    /// Runs the frames of `rx` in order: through the thread's copy of their decision where
    /// there is one, without the `Ofproto` lock until the first frame without a copy; that
    /// frame and every later one under the lock (through a copy or the pipeline, offering
    /// each new decision to the thread's copies and the kernel fast path), so a flow's frames
    /// are never reordered.
    fn process_batch(&mut self, port_no: u32, now: u64) {
        let of_lock = self.of.clone();
        let copies_lock = self.copies.clone();
        let kernel_lock = self.offload.clone();
        let mut copies = copies_lock.as_deref().map(lock_copies);
        let mut kernel = None;
        let mut of: Option<MutexGuard<'_, Ofproto>> = None;
        let mut key = FlowKey::default();
        let mut copied = 0;
        let fast = copies.is_some() || kernel_lock.is_some();
        for pkt in self.rx.drain(..) {
            if fast {
                extract(&pkt.data, port_no, &mut key);
            }
            if let Some(port) = copies
                .as_mut()
                .and_then(|c| c.forward(&key, frame_bytes(&pkt)))
            {
                copied += 1;
                self.outputs.push(Output::Port {
                    port,
                    queue: None,
                    pkt,
                });
                continue;
            }
            if of.is_none() {
                // The core locks the copies after its own lock: let them go while waiting.
                drop(copies.take());
                let mut g = lock_of(&of_lock, &self.shared.waiting_for_lock);
                Self::apply_pending(&mut self.pending, &mut g);
                of = Some(g);
                copies = copies_lock.as_deref().map(lock_copies);
                kernel = kernel_lock.as_deref().map(lock_offload);
            }
            let Some(g) = of.as_deref_mut() else {
                continue;
            };
            let copy = copies.as_ref().is_some_and(|c| c.wants(&key));
            let fk = kernel.as_ref().and_then(|o| o.probe(port_no, &pkt.data));
            let start = self.outputs.len();
            execute::process_packet(g, port_no, pkt, now, &mut self.outputs);
            if !copy && fk.is_none() {
                continue;
            }
            let outs = self.outputs.get(start..).unwrap_or(&[]);
            if let (true, Some(c)) = (copy, copies.as_mut()) {
                let rec = offload::candidate(g, port_no, &key, outs, Repeater::Thread);
                if c.decided(key, rec) && self.sync_deadline.is_none() {
                    // Counted from now on: credited (and taken back when idle) every second.
                    self.sync_deadline = Some(now.saturating_add(nanos(FAST_SYNC)));
                }
            }
            if let (Some(fk), Some(o)) = (fk, kernel.as_mut()) {
                let rec = offload::candidate(g, port_no, &key, outs, Repeater::Kernel);
                self.to_hand.extend(o.decided(fk, rec));
            }
        }
        drop(copies);
        drop(kernel);
        bump(&self.shared.stats.copied, copied);
        let Some(mut g) = of else {
            return;
        };
        if fast {
            // NORMAL's table changed: its copies may be wrong now.
            let changes = g.mac_table.changes();
            if changes != self.mac_changes {
                self.mac_changes = changes;
                g.drain_fast_path(now);
            }
        }
        Self::shape(
            &mut g,
            &mut self.outputs,
            &self.shared.stats,
            &mut self.qos_deadline,
            now,
        );
    }

    fn disable(&mut self, i: usize, why: &str) {
        let s = &mut self.slots[i];
        if !s.disabled {
            s.disabled = true;
            self.layout_dirty = true;
            bump(&self.shared.stats.ports_disabled, 1);
            tracing::error!(
                port = s.port_no,
                why,
                "datapath: port taken out of the poll set"
            );
        }
    }

    /// Sends `self.outputs` (in order) and forwards controller-bound frames.
    fn dispatch(&mut self) {
        let mut outputs = std::mem::take(&mut self.outputs);
        for out in outputs.drain(..) {
            match out {
                Output::Port { port, pkt, .. } => match self.by_no.get(&port) {
                    Some(&i) => {
                        if self.slots[i].tx.is_empty() {
                            self.to_flush.push(i);
                        }
                        self.slots[i].tx.push(pkt);
                    }
                    None => {
                        bump(&self.shared.stats.no_such_port, 1);
                        pkt.recycle();
                    }
                },
                Output::Controller(ev) => self.send_event(DpEvent::PacketIn(ev)),
            }
        }
        self.outputs = outputs; // keep the capacity
        let to_flush = std::mem::take(&mut self.to_flush);
        for &i in &to_flush {
            self.flush(i);
        }
        self.to_flush = to_flush;
        self.to_flush.clear();
    }

    fn flush(&mut self, i: usize) {
        let s = &mut self.slots[i];
        let n = s.tx.len();
        let accepted = match s.backend.send_batch(&s.tx) {
            Ok(a) => a.min(n),
            Err(e) => {
                tracing::debug!(port = s.port_no, error = %e, frames = n, "datapath: send failed");
                0
            }
        };
        if accepted < n {
            let bytes: usize = s.tx[accepted..].iter().map(|p| p.data.len()).sum();
            let d = self.pending.entry(s.port_no).or_default();
            let dropped = u64::try_from(n - accepted).unwrap_or(u64::MAX);
            d.packets = d.packets.saturating_add(dropped);
            d.bytes = d
                .bytes
                .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
            bump(&self.shared.stats.tx_dropped, dropped);
        }
        bump(
            &self.shared.stats.tx_packets,
            u64::try_from(accepted).unwrap_or(u64::MAX),
        );
        // The buffers go back to the pool for the next receive.
        for p in s.tx.drain(..) {
            p.recycle();
        }
    }

    fn apply_pending(pending: &mut BTreeMap<u32, PendingDrops>, of: &mut Ofproto) {
        for (port, d) in std::mem::take(pending) {
            if let Some(p) = of.ports.get_mut(&port) {
                let c = &mut p.counters;
                c.tx_packets = c.tx_packets.saturating_sub(d.packets);
                c.tx_bytes = c.tx_bytes.saturating_sub(d.bytes);
                c.tx_dropped = c.tx_dropped.saturating_add(d.packets);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofproto::OfprotoConfig;

    #[test]
    fn waiting_for_the_lock_is_visible_until_it_is_taken() {
        let of = Arc::new(Mutex::new(Ofproto::new(OfprotoConfig::default())));
        let waiting = Arc::new(AtomicBool::new(false));
        // Free lock: taken at once, the flag never set.
        drop(lock_of(&of, &waiting));
        assert!(!waiting.load(Ordering::SeqCst));
        let held = lock(&of);
        let t = {
            let (of, waiting) = (of.clone(), waiting.clone());
            std::thread::spawn(move || {
                let g = lock_of(&of, &waiting);
                // Ours now: no longer waiting.
                assert!(!waiting.load(Ordering::SeqCst));
                g.tables.len()
            })
        };
        let until = Instant::now() + Duration::from_secs(10);
        while !waiting.load(Ordering::SeqCst) {
            assert!(Instant::now() < until, "the flag was never set");
            std::thread::yield_now();
        }
        drop(held);
        assert_eq!(t.join().unwrap(), 0);
        assert!(!waiting.load(Ordering::SeqCst));
    }
}
