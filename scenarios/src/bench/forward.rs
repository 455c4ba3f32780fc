//! The I/O reference of `bench datapath`: two AF_PACKET ports forwarding to each other with
//! shg-switch's own port backend and the datapath loop's batching and spin, and nothing else.
//!
//! It runs as `shg-scenario bench forward IF_A IF_B` in the switch namespace, started and
//! stopped (by PID) by [`super::datapath`]. Every frame received on one port is sent out of
//! the other, in batches, exactly as the datapath thread receives and sends them
//! ([`AfPacketPort`]: recvmmsg/sendmmsg, virtio-net headers, pooled buffers; after traffic
//! the loop polls without blocking for [`SPIN`] before it sleeps in `ppoll`). There is no
//! flow key, no table, no lock, no agent. Its row in the benchmark is therefore what this
//! I/O method can forward on this machine: the distance between it and the Linux bridge is
//! the cost of a userspace switch built on AF_PACKET (copies, wake-ups, scheduling), and the
//! distance between it and shg-switch is the cost of OpenFlow (key, cache, actions,
//! counters, the `Ofproto` lock).

use shg_switch::datapath::SPIN;
use shg_switch::port::afpacket::AfPacketPort;
use shg_switch::port::dummy::ppoll;
use shg_switch::port::kfast::{FastKey, FastPath};
use shg_switch::port::{Packet, PortBackend};
use std::collections::HashSet;
use std::convert::Infallible;
use std::io;
use std::time::Instant;

/// Fast-path entries at most (headers: per direction and, for IPv4, per TCP/UDP flow).
const FAST_ENTRIES: u32 = 4096;
/// Frames taken from one port per turn (as the datapath's `RX_BATCH`).
const BATCH: usize = shg_switch::datapath::RX_BATCH;

/// Forwards between `a` and `b` until the process is killed (signals keep their default
/// action: nothing to tear down). Returns only with an error: a port that cannot be opened,
/// or `ppoll` failing.
///
/// With `kernel`, the forwarder also runs the in-kernel fast path ([`FastPath`]): after it
/// has forwarded a frame, frames with the same input port and headers (as far as the kernel's
/// key reads them) are forwarded by the kernel at the input's ingress and no longer reach it.
pub fn forward(a: &str, b: &str, kernel: bool) -> io::Result<Infallible> {
    let mut ports = [AfPacketPort::open(a)?, AfPacketPort::open(b)?];
    let ifindex = [ports[0].ifindex(), ports[1].ifindex()];
    let fast = if kernel {
        let mut f = FastPath::new(FAST_ENTRIES)?;
        for (port, &i) in ports.iter().zip(&ifindex) {
            f.attach_ingress(i)?;
            if let Some(fd) = port.fd() {
                f.filter_socket(fd)?;
            }
        }
        Some(f)
    } else {
        None
    };
    let mut taught: HashSet<FastKey> = HashSet::new();
    let fds = [ports[0].fd(), ports[1].fd()];
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut rx: Vec<Packet> = Vec::with_capacity(BATCH);
    let mut last_rx: Option<Instant> = None;
    eprintln!(
        "forwarding {a} <-> {b}{}",
        if fast.is_some() {
            " (kernel fast path)"
        } else {
            ""
        }
    );
    loop {
        // Spin (zero timeout) while frames arrived within SPIN, else sleep.
        let spinning = last_rx.is_some_and(|t| t.elapsed() < SPIN);
        let timeout = spinning.then_some(std::time::Duration::ZERO);
        if ppoll(&mut pollfds, timeout)? == 0 {
            continue;
        }
        for from in 0..2 {
            if pollfds[from].revents == 0 {
                continue;
            }
            let n = ports[from].recv_batch(&mut rx, BATCH).unwrap_or(0);
            if n == 0 {
                continue;
            }
            last_rx = Some(Instant::now());
            let to = 1 - from;
            // Refusals (full queue, link down) are dropped, as the datapath drops them.
            let _ = ports[to].send_batch(&rx);
            if let Some(f) = &fast {
                for p in &rx {
                    let Some(k) = FastKey::of_frame(ifindex[from], &p.data) else {
                        continue;
                    };
                    if taught.len() < FAST_ENTRIES as usize && taught.insert(k) {
                        f.insert(&k, ifindex[to])?;
                    }
                }
            }
            for p in rx.drain(..) {
                p.recycle();
            }
        }
    }
}
