//! One OpenFlow connection over any byte stream (TCP or TLS): framing in, queue out.
//!
//! The reader splits the stream into messages with `frame_len` (a length field below 8 breaks
//! the stream: the connection is closed), hands every complete message to `Ofproto::handle`
//! under one lock per read, and carries out the effects. The writer task drains the bounded
//! queue into the socket, so a slow peer never blocks the core. The connection ends when the
//! peer closes, a read or write fails, the core asks to close it, its queue overflows, or the
//! agent shuts down; then `Ofproto::disconnect` forgets it.

use super::{lock, shutdown_signalled, ConnHandle, Inner, Out};
use crate::ofproto::ConnKind;
use shg_flows::wire::message::{frame_len, HEADER_LEN};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

/// How long a closing connection may take to flush its queue.
const FLUSH_GRACE: Duration = Duration::from_secs(2);
/// Bytes read per call.
const READ_CHUNK: usize = 64 * 1024;
/// After handling messages, how long the reader keeps polling the socket without sleeping
/// (it yields to the runtime, which polls its sockets with a zero timeout) before it waits in
/// epoll. A tool that sends one request and waits for its reply (ovs-ofctl add-flows: a
/// FLOW_MOD and a BARRIER per line) sends the next one within this window, so the switch
/// answers it without a sleep and wake-up per round trip; at rest nothing spins.
const SPIN: Duration = Duration::from_micros(60);

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
pub(super) async fn run<S>(inner: Arc<Inner>, stream: S, kind: ConnKind, peer: String)
where
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

    let end = read_loop(&inner, id, rd, &kill).await;

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
    kill: &Notify,
) -> End {
    let mut sd = inner.shutdown.subscribe();
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut spin_until = None;
    loop {
        // Every complete message in `buf`, under one lock.
        let mut start = 0;
        let mut effects = Vec::new();
        {
            let mut of = None;
            while let Some(len) = frame_len(&buf[start..]) {
                if buf.len() - start < len {
                    break;
                }
                let now = inner.now();
                let of = of.get_or_insert_with(|| lock(&inner.of));
                effects.extend(of.handle(id, &buf[start..start + len], now));
                start += len;
            }
        }
        buf.drain(..start);
        if start > 0 {
            spin_until = Some(std::time::Instant::now() + SPIN);
            inner.perform(effects);
            // Any message moves the peer's echo and dead-peer deadlines (HELLO makes the
            // connection ready, and may produce no effect at all).
            inner.timer_kick.notify_one();
        }
        if buf.len() >= HEADER_LEN && frame_len(&buf).is_none() {
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            return End::BadFrame(len);
        }
        buf.reserve(READ_CHUNK);
        let spinning = spin_until.is_some_and(|t| std::time::Instant::now() < t);
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
        if !spinning {
            spin_until = None;
        }
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
