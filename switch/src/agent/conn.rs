//! One OpenFlow connection over any byte stream (TCP or TLS): framing in, queue out.
//!
//! The reader splits the stream into messages with `frame_len` (a length field below 8 breaks
//! the stream: the connection is closed), hands every complete message to `Ofproto::handle`
//! under one lock per read, let go between two messages whenever the datapath thread waits
//! for it (a stream of flow_mods never holds frames up for more than one message), and
//! carries out the effects. The writer task drains the bounded
//! queue into the socket, so a slow peer never blocks the core. The connection ends when the
//! peer closes, a read or write fails, the core asks to close it, its queue overflows, or the
//! agent shuts down; then `Ofproto::disconnect` forgets it.

use super::{lock, shutdown_signalled, ConnHandle, Inner, Out};
use crate::ofproto::{ConnKind, Ofproto};
use shg_flows::wire::message::{frame_len, HEADER_LEN};
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

/// How long a closing connection may take to flush its queue.
const FLUSH_GRACE: Duration = Duration::from_secs(2);
/// Bytes read per call.
const READ_CHUNK: usize = 64 * 1024;
/// After handling messages, how long the reader keeps polling the socket without sleeping
/// before it waits in epoll. A tool that sends one request and waits for its reply (ovs-ofctl
/// add-flows: a FLOW_MOD and a BARRIER per line) sends the next one within this window, so
/// the switch answers it without a sleep and wake-up per round trip; at rest nothing spins.
pub const SPIN: Duration = Duration::from_micros(60);
/// Within that window a plain TCP connection's reader polls its socket itself (non-blocking
/// `recv`, ≈ 0.3 µs a try), and lets the runtime's other tasks run once per slice of this
/// length. A TLS connection polls through the runtime, whose turn (≈ 1.4 µs) notices a
/// request later.
const SPIN_SLICE: Duration = Duration::from_micros(15);
/// Longest wait for the datapath thread to take the `Ofproto` lock once the reader let it go.
const HANDOVER_WAIT: Duration = Duration::from_millis(1);

/// Why a connection ended (for the log).
#[derive(Debug)]
enum End {
    PeerClosed,
    ReadError(std::io::Error),
    BadFrame(usize),
    Closed,
    Shutdown,
}

/// Runs one connection to its end. `peer` names it in logs.
/// `raw` is the socket of a plain TCP stream (`None` for TLS), which the reader may poll itself.
pub(super) async fn run<S>(
    inner: Arc<Inner>,
    stream: S,
    raw: Option<RawFd>,
    kind: ConnKind,
    peer: String,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    inner.counters.connections.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(inner.queue_bound);
    let kill = Arc::new(Notify::new());
    lock(&inner.conns).insert(
        id,
        ConnHandle {
            tx,
            kill: kill.clone(),
            dead: std::sync::atomic::AtomicBool::new(false),
            peer: peer.clone(),
        },
    );
    info!(conn = id, %peer, ?kind, "OpenFlow connection up");
    let (rd, wr) = tokio::io::split(stream);
    let mut writer = tokio::spawn(write_loop(wr, rx, kill.clone(), id));

    let effects = lock(&inner.of).connect(id, kind, inner.now());
    inner.perform(effects);
    inner.timer_kick.notify_one();

    let end = read_loop(&inner, id, rd, raw, &kill).await;

    // Forget the connection: dropping its sender lets the writer flush and finish.
    lock(&inner.conns).remove(&id);
    lock(&inner.of).disconnect(id);
    inner.timer_kick.notify_one();
    if tokio::time::timeout(FLUSH_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    match end {
        End::PeerClosed | End::Closed | End::Shutdown => {
            info!(conn = id, %peer, "OpenFlow connection closed ({end:?})")
        }
        End::ReadError(ref e) => info!(conn = id, %peer, "OpenFlow connection lost: {e}"),
        End::BadFrame(len) => {
            inner
                .counters
                .closed_bad_frame
                .fetch_add(1, Ordering::Relaxed);
            warn!(conn = id, %peer, len, "message length below 8: closing the connection")
        }
    }
}

async fn read_loop<S: AsyncRead + Send>(
    inner: &Inner,
    id: u64,
    mut rd: ReadHalf<S>,
    raw: Option<RawFd>,
    kill: &Notify,
) -> End {
    let mut sd = inner.shutdown.subscribe();
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut spin_until = None;
    // End of the current stretch of polling the socket without a turn of the runtime.
    let mut slice_end = Instant::now();
    loop {
        let mut deadline = None;
        let (start, effects) = handle_buffered(
            &inner.of,
            &buf,
            |of, msg| {
                let fx = of.handle(id, msg, inner.now());
                deadline = of.next_deadline();
                fx
            },
            |of| of.resume_flow_dump(id, inner.now()),
            || inner.transmit.waiting_for_lock(),
            || wait_for_handover(|| inner.transmit.waiting_for_lock()),
        );
        buf.drain(..start);
        if start > 0 {
            spin_until = Some(Instant::now() + SPIN);
            let replies = !effects.is_empty();
            inner.perform(effects);
            // A message may move a deadline earlier (HELLO makes the connection ready; a flow
            // with a timeout), and may produce no effect at all.
            inner.kick_timer_if_earlier(deadline);
            if replies {
                // The writer sends the replies before this reader polls again.
                tokio::task::yield_now().await;
                slice_end = Instant::now() + SPIN_SLICE;
            }
        }
        if buf.len() >= HEADER_LEN && frame_len(&buf).is_none() {
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            return End::BadFrame(len);
        }
        buf.reserve(READ_CHUNK);
        let spinning = spin_until.is_some_and(|t| Instant::now() < t);
        if let (Some(fd), Some(until), true) = (raw, spin_until, spinning) {
            if Instant::now() >= slice_end {
                // One turn of the runtime per slice, even while requests keep coming.
                tokio::task::yield_now().await;
                slice_end = Instant::now() + SPIN_SLICE;
            }
            match poll_socket(fd, &mut buf, until.min(slice_end)) {
                Ok(Some(0)) => return End::PeerClosed,
                Ok(Some(n)) => {
                    debug!(conn = id, n, "read");
                    continue;
                }
                Ok(None) => {}
                Err(e) => return End::ReadError(e),
            }
        }
        tokio::select! {
            biased;
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => return End::PeerClosed,
                Ok(n) => debug!(conn = id, n, "read"),
                Err(e) => return End::ReadError(e),
            },
            () = kill.notified() => return End::Closed,
            () = shutdown_signalled(&mut sd) => return End::Shutdown,
            () = tokio::task::yield_now(), if spinning => {}
        }
        slice_end = Instant::now() + SPIN_SLICE;
        if !spinning {
            spin_until = None;
        }
    }
}

/// Polls the TCP socket `fd` with non-blocking reads until `until`: `Some(n)` once a read
/// appended `n` bytes to `buf` (0: the peer closed), `None` if nothing came. Reads only into
/// `buf`'s spare capacity, which must not be empty (else an `InvalidInput` error: a read of
/// nothing would look like the peer closing).
pub fn poll_socket(fd: RawFd, buf: &mut Vec<u8>, until: Instant) -> std::io::Result<Option<usize>> {
    if buf.capacity() == buf.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "poll_socket: no room in the buffer",
        ));
    }
    loop {
        let spare = buf.spare_capacity_mut();
        // SAFETY: `recv` writes at most `spare.len()` bytes, into `spare`, memory `buf` owns
        // and leaves uninitialised. Whatever `fd` is, nothing else is touched: a descriptor
        // that is not a socket (or not open) makes `recv` fail.
        #[allow(unsafe_code)]
        let n = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if let Ok(n) = usize::try_from(n) {
            // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
            #[allow(unsafe_code)]
            unsafe {
                buf.set_len(buf.len() + n);
            }
            return Ok(Some(n));
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => {}
            _ => return Err(e),
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        std::hint::spin_loop();
    }
}

/// Handles every complete message at the front of `buf` with `handle`, and after each one
/// the pages of a flow dump it started with `resume` (until it says `None`), under the
/// `Ofproto` lock, taken once and kept from step to step, except that whenever `dp_waiting`
/// says the datapath thread waits for it, the lock is let go before the next step (message or
/// page) and `hand_over` is called (without it). Returns the bytes consumed and the effects,
/// in order.
fn handle_buffered<E>(
    of: &Mutex<Ofproto>,
    buf: &[u8],
    mut handle: impl FnMut(&mut Ofproto, &[u8]) -> Vec<E>,
    mut resume: impl FnMut(&mut Ofproto) -> Option<Vec<E>>,
    dp_waiting: impl Fn() -> bool,
    mut hand_over: impl FnMut(),
) -> (usize, Vec<E>) {
    let mut start = 0;
    let mut effects = Vec::new();
    let mut guard: Option<MutexGuard<'_, Ofproto>> = None;
    while let Some(len) = frame_len(&buf[start..]) {
        if buf.len() - start < len {
            break;
        }
        let core = relock(of, &mut guard, &dp_waiting, &mut hand_over);
        effects.extend(handle(core, &buf[start..start + len]));
        start += len;
        loop {
            let core = relock(of, &mut guard, &dp_waiting, &mut hand_over);
            match resume(core) {
                Some(page) => effects.extend(page),
                None => break,
            }
        }
    }
    (start, effects)
}

/// The `Ofproto` behind `guard`, locked if it is not; first let go (and `hand_over` called)
/// when held while `dp_waiting`.
fn relock<'g, 'm>(
    of: &'m Mutex<Ofproto>,
    guard: &'g mut Option<MutexGuard<'m, Ofproto>>,
    dp_waiting: &impl Fn() -> bool,
    hand_over: &mut impl FnMut(),
) -> &'g mut Ofproto {
    if guard.is_some() && dp_waiting() {
        *guard = None;
        hand_over();
    }
    guard.get_or_insert_with(|| lock(of))
}

/// After letting the `Ofproto` lock go for the datapath thread: waits (yielding the CPU) until
/// it has taken the lock, at most [`HANDOVER_WAIT`], so the agent does not take it back first.
pub(crate) fn wait_for_handover(dp_waiting: impl Fn() -> bool) {
    let until = Instant::now() + HANDOVER_WAIT;
    while dp_waiting() && Instant::now() < until {
        std::thread::yield_now();
    }
}

async fn write_loop<S: AsyncWrite + Send>(
    mut wr: WriteHalf<S>,
    mut rx: mpsc::Receiver<Out>,
    kill: Arc<Notify>,
    id: u64,
) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Msg(bytes) => {
                if let Err(e) = wr.write_all(&bytes).await {
                    debug!(conn = id, "write failed: {e}");
                    break;
                }
            }
            Out::Close => break,
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
    // Whatever ended the writer ends the reader too.
    kill.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofproto::OfprotoConfig;
    use std::cell::Cell;

    /// OpenFlow 1.3 messages of type `t`, xid `i`, 8 + `extra` bytes long.
    fn msg(t: u8, i: u32, extra: usize) -> Vec<u8> {
        let len = u16::try_from(8 + extra).unwrap();
        let mut m = vec![4, t];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&i.to_be_bytes());
        m.resize(8 + extra, 0);
        m
    }

    fn xid(m: &[u8]) -> u32 {
        u32::from_be_bytes([m[4], m[5], m[6], m[7]])
    }

    #[test]
    fn complete_messages_in_order_and_a_partial_one_left() {
        let of = Mutex::new(Ofproto::new(OfprotoConfig::default()));
        let mut buf: Vec<u8> = (0..5).flat_map(|i| msg(14, i, 40)).collect();
        let whole = buf.len();
        buf.extend_from_slice(&msg(14, 9, 40)[..20]);
        let (used, seen) =
            handle_buffered(&of, &buf, |_, m| vec![xid(m)], |_| None, || false, || {});
        assert_eq!(used, whole);
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_lock_is_let_go_between_messages_while_the_datapath_waits() {
        let of = Mutex::new(Ofproto::new(OfprotoConfig::default()));
        let buf: Vec<u8> = (0..6).flat_map(|i| msg(14, i, 8)).collect();
        // The datapath starts waiting after messages 1 and 3, until it gets the lock.
        let waiting = Cell::new(false);
        let handovers = Cell::new(0u32);
        let (used, seen) = handle_buffered(
            &of,
            &buf,
            |of, m| {
                // Handled under the lock, with the Ofproto it guards.
                let _ = of.tables.len();
                waiting.set(matches!(xid(m), 1 | 3));
                vec![xid(m)]
            },
            |_| None,
            || waiting.get(),
            || {
                // Called with the lock free: the datapath takes it now.
                assert!(of.try_lock().is_ok(), "lock still held at the handover");
                waiting.set(false);
                handovers.set(handovers.get() + 1);
            },
        );
        assert_eq!(used, buf.len());
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(handovers.get(), 2);
        // Nothing held once done.
        assert!(of.try_lock().is_ok());
    }

    #[test]
    fn a_flow_dump_goes_on_page_by_page_before_the_next_message() {
        let of = Mutex::new(Ofproto::new(OfprotoConfig::default()));
        let buf: Vec<u8> = (0..3).flat_map(|i| msg(18, i, 8)).collect();
        // Message 1 starts a dump of three more pages (100, 101, 102); the datapath waits
        // while page 101 is being made.
        let pages = Cell::new(0u32);
        let waiting = Cell::new(false);
        let handovers = Cell::new(0u32);
        let (used, seen) = handle_buffered(
            &of,
            &buf,
            |_, m| {
                if xid(m) == 1 {
                    pages.set(3);
                }
                vec![xid(m)]
            },
            |_| {
                let left = pages.get();
                (left > 0).then(|| {
                    pages.set(left - 1);
                    let page = 100 + (3 - left);
                    waiting.set(page == 101);
                    vec![page]
                })
            },
            || waiting.get(),
            || {
                assert!(of.try_lock().is_ok(), "lock still held at the handover");
                waiting.set(false);
                handovers.set(handovers.get() + 1);
            },
        );
        assert_eq!(used, buf.len());
        assert_eq!(seen, vec![0, 1, 100, 101, 102, 2]);
        assert_eq!(handovers.get(), 1);
    }

    #[test]
    fn polling_a_socket_appends_what_came_and_sees_the_peer_close() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (mut peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = ours.as_raw_fd();
        let mut buf = b"ab".to_vec();
        buf.reserve(64);
        // Nothing sent: polls until the deadline, reads nothing.
        let t0 = Instant::now();
        let until = t0 + Duration::from_micros(200);
        assert_eq!(poll_socket(fd, &mut buf, until).unwrap(), None);
        assert!(Instant::now() >= until);
        assert_eq!(buf, b"ab");
        peer.write_all(b"cdef").unwrap();
        assert_eq!(poll_socket(fd, &mut buf, Instant::now()).unwrap(), Some(4));
        assert_eq!(buf, b"abcdef");
        // At most the spare capacity is read; the rest waits for the next call.
        let mut small = Vec::with_capacity(2);
        let room = small.capacity().min(3);
        peer.write_all(b"xyz").unwrap();
        assert_eq!(
            poll_socket(fd, &mut small, Instant::now()).unwrap(),
            Some(room)
        );
        assert_eq!(small, b"xyz"[..room]);
        if room == small.capacity() {
            // A full buffer is refused rather than read as the peer closing.
            let e = poll_socket(fd, &mut small, Instant::now()).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        }
        small.reserve(8);
        let rest = poll_socket(fd, &mut small, Instant::now()).unwrap();
        if room < 3 {
            assert_eq!(rest, Some(3 - room));
        }
        assert_eq!(small, b"xyz");
        drop(peer);
        assert_eq!(poll_socket(fd, &mut buf, Instant::now()).unwrap(), Some(0));
    }

    #[test]
    fn the_handover_wait_is_bounded() {
        let t0 = Instant::now();
        wait_for_handover(|| true);
        let waited = t0.elapsed();
        assert!(
            waited >= HANDOVER_WAIT && waited < Duration::from_secs(1),
            "{waited:?}"
        );
        let t0 = Instant::now();
        wait_for_handover(|| false);
        assert!(t0.elapsed() < HANDOVER_WAIT);
    }
}
