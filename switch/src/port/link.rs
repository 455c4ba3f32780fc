//! Kernel link-state watcher: a NETLINK_ROUTE socket subscribed to RTMGRP_LINK, turning
//! RTM_NEWLINK / RTM_DELLINK notifications into `(ifindex, up)` pairs for the datapath (which
//! maps ifindexes to OpenFlow ports and reports PORT_STATUS).
//!
//! The parser ([`parse_link_messages`]) is a pure function over untrusted bytes: every length is
//! checked before use, truncated or malformed messages are skipped, and it never panics (unit
//! tests feed it crafted and truncated messages). The socket lives in the network namespace of
//! the thread that opens it. It never sends requests and never changes link state.
//!
//! "Up" means: administratively up (IFF_UP), carrier present (IFF_LOWER_UP or IFF_RUNNING), and,
//! when the message carries IFLA_OPERSTATE, an operstate of UP or UNKNOWN (drivers that do not
//! manage operstate report UNKNOWN). RTM_DELLINK is always "down".
//!
//! Also here: [`enter_netns`], which puts the calling thread into a named network namespace
//! (the namespace decides which links a watcher or a port backend sees).

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const NLMSG_HDR_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const RTA_HDR_LEN: usize = 4;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFLA_OPERSTATE: u16 = 16;
const IF_OPER_UNKNOWN: u8 = 0;
const IF_OPER_UP: u8 = 6;
const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;
const IFF_LOWER_UP: u32 = 0x1_0000;
/// RTMGRP_LINK multicast group bit.
const RTMGRP_LINK: u32 = 1;
/// Receive buffer: a NEWLINK message is 1-2 KB; the kernel never splits one across reads.
const RECV_BUF_LEN: usize = 64 * 1024;

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// Whether an interface with these `ifi_flags` and optional IFLA_OPERSTATE is usable.
pub fn link_is_up(flags: u32, operstate: Option<u8>) -> bool {
    let admin = flags & IFF_UP != 0;
    let carrier = flags & (IFF_LOWER_UP | IFF_RUNNING) != 0;
    let oper = operstate.is_none_or(|s| s == IF_OPER_UP || s == IF_OPER_UNKNOWN);
    admin && carrier && oper
}

/// Parses one RTM_NEWLINK/RTM_DELLINK payload (the ifinfomsg and its attributes).
fn parse_ifinfo(msg_type: u16, payload: &[u8]) -> Option<(u32, bool)> {
    if payload.len() < IFINFOMSG_LEN {
        return None;
    }
    // struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change; }
    let index = u32_at(payload, 4)?;
    let flags = u32_at(payload, 8)?;
    if index == 0 || i32::try_from(index).is_err() {
        return None;
    }
    if msg_type == RTM_DELLINK {
        return Some((index, false));
    }
    let mut operstate = None;
    let mut off = IFINFOMSG_LEN;
    while off
        .checked_add(RTA_HDR_LEN)
        .is_some_and(|end| end <= payload.len())
    {
        let rta_len = usize::from(u16_at(payload, off)?);
        let rta_type = u16_at(payload, off + 2)? & 0x3fff; // strip NLA_F_NESTED / NET_BYTEORDER
        if rta_len < RTA_HDR_LEN || off + rta_len > payload.len() {
            break; // malformed attribute: keep what we have
        }
        if rta_type == IFLA_OPERSTATE && rta_len > RTA_HDR_LEN {
            operstate = payload.get(off + RTA_HDR_LEN).copied();
        }
        off += align4(rta_len);
    }
    Some((index, link_is_up(flags, operstate)))
}

/// Parses a buffer of netlink messages into `(ifindex, up)` events, in order. Messages other
/// than RTM_NEWLINK/RTM_DELLINK are ignored; a malformed message ends the parse of this buffer
/// (netlink messages cannot be resynchronised after a bad length). Never panics.
pub fn parse_link_messages(buf: &[u8]) -> Vec<(u32, bool)> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off
        .checked_add(NLMSG_HDR_LEN)
        .is_some_and(|end| end <= buf.len())
    {
        let Some(len) = u32_at(buf, off).and_then(|l| usize::try_from(l).ok()) else {
            break;
        };
        let Some(msg_type) = u16_at(buf, off + 4) else {
            break;
        };
        if len < NLMSG_HDR_LEN || len > buf.len() - off {
            break;
        }
        if msg_type == RTM_NEWLINK || msg_type == RTM_DELLINK {
            if let Some(ev) = parse_ifinfo(msg_type, &buf[off + NLMSG_HDR_LEN..off + len]) {
                out.push(ev);
            }
        }
        off = match off.checked_add(align4(len)) {
            Some(next) => next,
            None => break,
        };
    }
    out
}

/// A netlink socket receiving link notifications (non-blocking).
#[derive(Debug)]
pub struct LinkWatcher {
    fd: OwnedFd,
    buf: Vec<u8>,
    overrun: bool,
}

impl LinkWatcher {
    /// Opens a NETLINK_ROUTE socket bound to the RTMGRP_LINK group, in the calling thread's
    /// network namespace.
    pub fn open() -> io::Result<LinkWatcher> {
        // SAFETY: socket takes no pointers; the fd is checked and then owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh valid fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or(16);
        addr.nl_groups = RTMGRP_LINK;
        let addr_len =
            libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_nl>()).unwrap_or(12);
        // SAFETY: `addr` is a live sockaddr_nl of `addr_len` bytes.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
                addr_len,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LinkWatcher {
            fd,
            buf: vec![0; RECV_BUF_LEN],
            overrun: false,
        })
    }

    /// The descriptor to poll for POLLIN.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every pending notification (never blocks) and returns the link events in order.
    /// If the kernel dropped notifications (socket overrun), [`LinkWatcher::take_overrun`]
    /// turns true: the caller must re-read the state of every port it cares about.
    pub fn read_events(&mut self) -> Vec<(u32, bool)> {
        let mut events = Vec::new();
        // Bounded: a flood of notifications cannot keep the datapath here forever.
        for _ in 0..64 {
            // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast::<libc::c_void>(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => {
                        self.overrun = true;
                        continue;
                    }
                    Some(libc::EAGAIN) => break,
                    _ => {
                        tracing::warn!(error = %e, "netlink link watcher: recv failed");
                        break;
                    }
                }
            }
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            events.extend(parse_link_messages(&self.buf[..n.min(self.buf.len())]));
        }
        events
    }

    /// True (once) if notifications were lost since the last call.
    pub fn take_overrun(&mut self) -> bool {
        std::mem::take(&mut self.overrun)
    }
}

/// Moves the calling thread into the network namespace whose handle is the file at `path`
/// (e.g. `/var/run/netns/NAME`, made by `ip netns add`). Only this thread moves; threads it
/// spawns afterwards (such as the datapath thread) start in the same namespace, and sockets
/// keep the namespace they were opened in. Used by tests and tools that run a switch inside a
/// namespace from a multi-threaded process.
pub fn enter_netns(path: &std::path::Path) -> io::Result<()> {
    let f = std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // SAFETY: setns takes an fd we keep open for the duration of the call and a flag; it
    // changes only the calling thread's namespace membership.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("setns {}: {e}", path.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rta(ty: u16, data: &[u8]) -> Vec<u8> {
        let len = u16::try_from(RTA_HDR_LEN + data.len()).unwrap();
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn link_msg(ty: u16, index: i32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut payload = vec![0u8, 0, 1, 0]; // family, pad, type = ARPHRD_ETHER
        payload.extend_from_slice(&index.to_ne_bytes());
        payload.extend_from_slice(&flags.to_ne_bytes());
        payload.extend_from_slice(&0xffff_ffffu32.to_ne_bytes());
        for a in attrs {
            payload.extend_from_slice(a);
        }
        let len = u32::try_from(NLMSG_HDR_LEN + payload.len()).unwrap();
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&payload);
        v
    }

    #[test]
    fn new_and_del_link() {
        let name = rta(3, b"veth0\0");
        let up = link_msg(
            RTM_NEWLINK,
            7,
            IFF_UP | IFF_RUNNING | IFF_LOWER_UP,
            &[name.clone(), rta(IFLA_OPERSTATE, &[IF_OPER_UP])],
        );
        let down = link_msg(RTM_NEWLINK, 8, IFF_UP, &[rta(IFLA_OPERSTATE, &[2])]);
        let admin_down = link_msg(RTM_NEWLINK, 9, IFF_RUNNING | IFF_LOWER_UP, &[]);
        let lowerdown = link_msg(
            RTM_NEWLINK,
            10,
            IFF_UP | IFF_LOWER_UP,
            &[rta(
                IFLA_OPERSTATE,
                &[5], // LOWERLAYERDOWN
            )],
        );
        let unknown_oper = link_msg(
            RTM_NEWLINK,
            11,
            IFF_UP | IFF_RUNNING,
            &[rta(IFLA_OPERSTATE, &[IF_OPER_UNKNOWN])],
        );
        let del = link_msg(RTM_DELLINK, 7, IFF_UP | IFF_RUNNING, &[name]);
        let other = {
            let mut m = link_msg(20, 1, IFF_UP | IFF_RUNNING, &[]); // RTM_NEWADDR: ignored
            m[4] = 20;
            m
        };
        let buf = [up, down, admin_down, other, lowerdown, unknown_oper, del].concat();
        assert_eq!(
            parse_link_messages(&buf),
            vec![
                (7, true),
                (8, false),
                (9, false),
                (10, false),
                (11, true),
                (7, false)
            ]
        );
    }

    #[test]
    fn truncations_and_garbage_never_panic() {
        let msg = link_msg(
            RTM_NEWLINK,
            3,
            IFF_UP | IFF_RUNNING,
            &[rta(3, b"eth0\0"), rta(IFLA_OPERSTATE, &[IF_OPER_UP])],
        );
        let two = [msg.clone(), msg.clone()].concat();
        for cut in 0..=two.len() {
            let ev = parse_link_messages(&two[..cut]);
            assert!(ev.len() <= 2);
            assert!(ev.iter().all(|&e| e == (3, true)), "cut {cut}: {ev:?}");
        }
        assert_eq!(parse_link_messages(&two).len(), 2);
        // Corrupt every byte of one message in turn (several values): never panics.
        for i in 0..msg.len() {
            for v in [0u8, 1, 3, 4, 0x7f, 0xff] {
                let mut m = msg.clone();
                m[i] = v;
                let _ = parse_link_messages(&m);
            }
        }
        // A zero-length attribute must not loop forever.
        let mut m = msg.clone();
        m[NLMSG_HDR_LEN + IFINFOMSG_LEN] = 0;
        m[NLMSG_HDR_LEN + IFINFOMSG_LEN + 1] = 0;
        assert_eq!(parse_link_messages(&m), vec![(3, true)]);
        // Pseudo-random garbage.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let len = usize::try_from(x % 200).unwrap();
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x.to_ne_bytes()[0]
                })
                .collect();
            let _ = parse_link_messages(&bytes);
        }
    }

    #[test]
    fn watcher_opens_and_reads_nothing_when_idle() {
        let mut w = LinkWatcher::open().expect("netlink route socket");
        assert!(w.fd() >= 0);
        let _ = w.read_events(); // non-blocking
        assert!(!w.take_overrun());
    }
}
