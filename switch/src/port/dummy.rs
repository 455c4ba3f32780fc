//! The in-memory port backend for tests without root, and the readiness primitives (an eventfd,
//! `poll(2)`/`ppoll(2)` wrappers, the thread's timer slack) that it shares with the datapath
//! loop.
//!
//! A [`DummyPort`] is a queue in each direction: the test injects frames through its
//! [`DummyHandle`], the datapath receives them with `recv_batch`; frames the datapath sends are
//! collected for the test to [`DummyHandle::take_sent`]. Readiness is an eventfd, so the
//! datapath polls a dummy port exactly like a kernel socket. The handle can also flip the link
//! (the datapath notices at its next wake-up, which `set_link` triggers) and make the port drop
//! everything it is asked to send (to exercise tx_dropped accounting).
//!
//! This module never touches the network; its only system calls are eventfd read/write,
//! poll/ppoll and prctl(PR_SET_TIMERSLACK).
//! (The eventfd/poll wrappers live here because `unsafe` is confined to `port/`; they are
//! generic and could move to a `port/sys.rs`.)

#![allow(unsafe_code)]

use super::{Packet, PortBackend, PortInfo};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Frames a dummy port holds before it drops injected ones (a test that injects more without
/// running the datapath has a bug; the bound keeps memory finite).
pub const DUMMY_RX_CAPACITY: usize = 65_536;

/// A non-blocking eventfd used as a level-triggered "something to do" flag: readable while
/// notified and not yet drained.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// Creates an eventfd (non-blocking, close-on-exec).
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; the returned fd is checked before use and owned
        // by the OwnedFd from then on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Makes the fd readable. Never blocks: a saturated counter (EAGAIN) is still readable.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local u64 to an fd we own.
        let _ = unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                std::ptr::addr_of!(one).cast::<libc::c_void>(),
                8,
            )
        };
    }

    /// Resets the fd to not readable (reads and discards the counter). Never blocks.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local u64 from an fd we own.
        let _ = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::addr_of_mut!(v).cast::<libc::c_void>(),
                8,
            )
        };
    }

    /// The descriptor to poll for POLLIN.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// `poll(2)` over `fds`; `timeout_ms < 0` waits forever. EINTR is reported as zero ready fds.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds to poll"))?;
    // SAFETY: `fds` is a valid, exclusively borrowed slice of `n` pollfd structs; poll only
    // writes their `revents` fields. Invalid descriptors are reported as POLLNVAL, not UB.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(usize::try_from(r).unwrap_or(0))
}

/// `ppoll(2)` over `fds` with a nanosecond timeout (`None` waits forever; `poll(2)` has only
/// millisecond resolution, too coarse for a shaper's next departure). EINTR is reported as
/// zero ready fds.
#[allow(
    clippy::unnecessary_fallible_conversions,
    reason = "c_long is i32 on 32-bit targets, where u32 -> c_long can fail"
)]
pub fn ppoll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds to poll"))?;
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::try_from(d.subsec_nanos()).unwrap_or(0),
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid, exclusively borrowed slice of `n` pollfd structs (ppoll only
    // writes their `revents`); `ts_ptr` is null or points to a timespec that lives on this
    // stack frame for the whole call; a null sigmask leaves the signal mask unchanged.
    let r = unsafe { libc::ppoll(fds.as_mut_ptr(), n, ts_ptr, std::ptr::null()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(usize::try_from(r).unwrap_or(0))
}

/// Sets the calling thread's timer slack (`PR_SET_TIMERSLACK`, default 50 µs): how late the
/// kernel may end a timed sleep to batch wake-ups. A shaper's thread wants it small.
pub fn set_timer_slack(ns: u64) -> io::Result<()> {
    let v = libc::c_ulong::try_from(ns.max(1)).unwrap_or(libc::c_ulong::MAX);
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and no pointers; it only changes
    // a property of the calling thread.
    let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, v, 0, 0, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the calling thread a SCHED_FIFO (real-time) thread at `priority` (1..=99). Needs
/// CAP_SYS_NICE (or an RLIMIT_RTPRIO allowance); the kernel's RT throttling still leaves 5 %
/// of each core to other threads if this one never sleeps.
pub fn set_realtime(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling
    // thread; the call only changes this thread's scheduling class.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[derive(Debug)]
struct DummyState {
    rx: VecDeque<Packet>,
    sent: Vec<Packet>,
    link_up: bool,
    drop_tx: bool,
    rx_overflow: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<DummyState>,
    ready: EventFd,
    name: String,
    mac: [u8; 6],
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, DummyState> {
        // A panicking test thread must not take the datapath down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The datapath side of an in-memory port.
#[derive(Debug)]
pub struct DummyPort {
    shared: Arc<Shared>,
}

/// The test side of an in-memory port: injects received frames, collects sent ones.
#[derive(Debug, Clone)]
pub struct DummyHandle {
    shared: Arc<Shared>,
}

impl DummyPort {
    /// A dummy port named `name` with MAC `mac`, link up.
    ///
    /// # Panics
    /// If the process cannot create an eventfd (out of file descriptors). The dummy backend is
    /// for tests; code that must not panic uses [`DummyPort::try_new`].
    pub fn new(name: &str, mac: [u8; 6]) -> (DummyPort, DummyHandle) {
        match DummyPort::try_new(name, mac) {
            Ok(pair) => pair,
            Err(e) => panic!("dummy port {name}: cannot create eventfd: {e}"),
        }
    }

    /// [`DummyPort::new`], failing instead of panicking when no eventfd can be made.
    pub fn try_new(name: &str, mac: [u8; 6]) -> io::Result<(DummyPort, DummyHandle)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(DummyState {
                rx: VecDeque::new(),
                sent: Vec::new(),
                link_up: true,
                drop_tx: false,
                rx_overflow: 0,
            }),
            ready: EventFd::new()?,
            name: name.to_owned(),
            mac,
        });
        Ok((
            DummyPort {
                shared: shared.clone(),
            },
            DummyHandle { shared },
        ))
    }
}

impl DummyHandle {
    /// Queues a frame as if it arrived on the wire, and wakes the poller. Frames beyond
    /// [`DUMMY_RX_CAPACITY`] are dropped (counted in [`DummyHandle::rx_overflow`]).
    pub fn inject(&self, pkt: Packet) {
        let mut st = self.shared.lock();
        if st.rx.len() >= DUMMY_RX_CAPACITY {
            st.rx_overflow += 1;
            return;
        }
        st.rx.push_back(pkt);
        self.shared.ready.notify();
    }

    /// Frames sent out of this port since the last call, in order.
    pub fn take_sent(&self) -> Vec<Packet> {
        std::mem::take(&mut self.shared.lock().sent)
    }

    /// Frames injected but not yet received by the datapath.
    pub fn pending_rx(&self) -> usize {
        self.shared.lock().rx.len()
    }

    /// Injected frames dropped because the receive queue was full.
    pub fn rx_overflow(&self) -> u64 {
        self.shared.lock().rx_overflow
    }

    /// Sets the carrier; wakes the poller so the datapath notices.
    pub fn set_link(&self, up: bool) {
        self.shared.lock().link_up = up;
        self.shared.ready.notify();
    }

    /// When true, `send_batch` accepts nothing (every frame counts as dropped).
    pub fn set_drop_tx(&self, drop: bool) {
        self.shared.lock().drop_tx = drop;
    }
}

impl PortBackend for DummyPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.shared.name.clone(),
            hw_addr: self.shared.mac,
            curr_speed_kbps: 10_000_000,
            max_speed_kbps: 10_000_000,
            ifindex: None,
        }
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.shared.ready.raw_fd())
    }

    fn recv_batch(&mut self, out: &mut Vec<Packet>, max: usize) -> io::Result<usize> {
        let mut st = self.shared.lock();
        let n = max.min(st.rx.len());
        out.extend(st.rx.drain(..n));
        if st.rx.is_empty() {
            // Under the lock, so an inject racing with us re-arms after this drain.
            self.shared.ready.drain();
        }
        Ok(n)
    }

    fn send_batch(&mut self, pkts: &[Packet]) -> io::Result<usize> {
        let mut st = self.shared.lock();
        if st.drop_tx || !st.link_up {
            return Ok(0);
        }
        st.sent.extend(pkts.iter().cloned());
        Ok(pkts.len())
    }

    fn link_up(&self) -> bool {
        self.shared.lock().link_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut p = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        poll(&mut p, 0).unwrap() == 1 && p[0].revents & libc::POLLIN != 0
    }

    #[test]
    fn inject_recv_send_and_readiness() {
        let (mut port, h) = DummyPort::new("d1", [2, 0, 0, 0, 0, 1]);
        let fd = port.fd().unwrap();
        assert!(!readable(fd));
        h.inject(Packet::plain(vec![1; 60]));
        h.inject(Packet::plain(vec![2; 60]));
        h.inject(Packet::plain(vec![3; 60]));
        assert!(readable(fd));
        let mut out = Vec::new();
        assert_eq!(port.recv_batch(&mut out, 2).unwrap(), 2);
        assert!(readable(fd), "one frame still queued");
        assert_eq!(port.recv_batch(&mut out, 2).unwrap(), 1);
        assert!(!readable(fd), "drained");
        assert_eq!(
            out.iter().map(|p| p.data[0]).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(port.recv_batch(&mut out, 2).unwrap(), 0);

        assert_eq!(port.send_batch(&out).unwrap(), 3);
        assert_eq!(h.take_sent(), out);
        assert!(h.take_sent().is_empty());

        h.set_drop_tx(true);
        assert_eq!(port.send_batch(&out).unwrap(), 0);
        h.set_drop_tx(false);

        h.set_link(false);
        assert!(!port.link_up());
        assert!(readable(fd), "link change wakes the poller");
        assert_eq!(
            port.send_batch(&out).unwrap(),
            0,
            "no carrier, nothing sent"
        );
        assert_eq!(port.info().name, "d1");
        assert_eq!(port.info().ifindex, None);
    }

    #[test]
    fn ppoll_times_out_below_a_millisecond_and_sees_readiness() {
        let e = EventFd::new().unwrap();
        let mut p = [libc::pollfd {
            fd: e.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        set_timer_slack(1_000).unwrap();
        // 200 µs timeouts: never early, and (the fastest of 20, robust to a busy machine)
        // well under poll(2)'s 1 ms granularity.
        let mut fastest = Duration::MAX;
        for _ in 0..20 {
            let t = std::time::Instant::now();
            assert_eq!(ppoll(&mut p, Some(Duration::from_micros(200))).unwrap(), 0);
            let took = t.elapsed();
            assert!(took >= Duration::from_micros(200), "{took:?}");
            fastest = fastest.min(took);
        }
        assert!(fastest < Duration::from_micros(900), "{fastest:?}");
        e.notify();
        assert_eq!(ppoll(&mut p, None).unwrap(), 1);
        assert_eq!(ppoll(&mut p, Some(Duration::ZERO)).unwrap(), 1);
    }

    #[test]
    fn eventfd_notify_drain() {
        let e = EventFd::new().unwrap();
        assert!(!readable(e.raw_fd()));
        e.notify();
        e.notify();
        assert!(readable(e.raw_fd()));
        e.drain();
        assert!(!readable(e.raw_fd()));
        e.drain(); // draining an empty eventfd must not block or fail loudly
    }
}
