//! TAP port backend: the switch's LOCAL port, a TAP interface through which the gateway's own
//! network stack talks to the switch.
//!
//! Choice: raw `/dev/net/tun` ioctls rather than the tun-tap crate, because the crate cannot set
//! IFF_VNET_HDR. The device is created with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and
//! TUNSETOFFLOAD(CSUM | TSO4 | TSO6 | TSO_ECN), so frames carry the same 10-byte virtio-net
//! header as on the AF_PACKET ports: the host stack may hand us 64 KB TCP GSO frames with
//! partial checksums, and we may hand it the same, passed through untouched between LOCAL and
//! veths with default offloads.
//!
//! The interface exists while the port is open (not persistent) and lives in the network
//! namespace of the thread that opens it. Like Open vSwitch's bridge-local port, we do not
//! bring it administratively up or give it addresses: that is the gateway's configuration.
//! TAP has no batch I/O: `recv_batch` reads frame by frame until EAGAIN or `max`, `send_batch`
//! writes one `writev` per frame. One receive buffer (64 KB + header) is preallocated and reused.

#![allow(unsafe_code)]

use super::afpacket::{
    check_ifname, ioctl_hw_addr, ioctl_ifindex, ioctl_ifreq, ioctl_link_up, should_log,
    vnet_from_bytes, vnet_to_bytes, MAX_FRAME_LEN,
};
use super::{Packet, PortBackend, PortInfo, VnetHdr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUNSETIFF: libc::Ioctl = 0x4004_54ca;
const TUNSETOFFLOAD: libc::Ioctl = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::Ioctl = 0x4004_54d8;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
const TUN_F_TSO_ECN: libc::c_ulong = 0x08;

/// Drop and error counters of the TAP port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Reads shorter than a virtio-net header + Ethernet header (dropped).
    pub rx_short: u64,
    pub rx_errors: u64,
    /// Frames dropped because the device refused them (queue full, interface down).
    pub tx_dropped: u64,
    /// Frames refused individually (too big, bad vnet header).
    pub tx_rejected: u64,
}

/// A TAP interface opened with a virtio-net header.
pub struct TapPort {
    fd: OwnedFd,
    /// A datagram socket for interface ioctls (the tun fd answers only a few of them).
    ctl: OwnedFd,
    name: String,
    ifindex: u32,
    hw_addr: [u8; 6],
    rx_buf: Vec<u8>,
    stats: TapStats,
}

impl std::fmt::Debug for TapPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPort")
            .field("fd", &self.fd)
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("hw_addr", &self.hw_addr)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn ctx(name: &str, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("tap {name}: {what}: {e}"))
}

/// `ioctl(fd, req, value)` for requests that take an int by pointer (TUNSETVNETHDRSZ).
fn ioctl_int_ptr(fd: RawFd, req: libc::Ioctl, v: libc::c_int) -> io::Result<()> {
    // SAFETY: the request reads one c_int through the pointer, which points at a live local.
    let r = unsafe { libc::ioctl(fd, req, std::ptr::addr_of!(v)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl TapPort {
    /// Creates (or attaches to an existing persistent) TAP interface `name`.
    pub fn open(name: &str) -> io::Result<TapPort> {
        check_ifname(name)?;
        // SAFETY: the path is a NUL-terminated literal; open takes no other pointers.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(ctx(name, "open /dev/net/tun", io::Error::last_os_error()));
        }
        // SAFETY: fresh valid fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ifr = super::afpacket::ifreq_for(name);
        ifr.ifr_ifru.ifru_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        ioctl_ifreq(fd.as_raw_fd(), TUNSETIFF, &mut ifr).map_err(|e| ctx(name, "TUNSETIFF", e))?;
        // The kernel may have completed a pattern name; read back what it chose.
        let actual: String = ifr
            .ifr_name
            .iter()
            .map(|c| c.to_ne_bytes()[0])
            .take_while(|&b| b != 0)
            .map(char::from)
            .collect();
        let vnet_len = libc::c_int::try_from(VnetHdr::LEN).unwrap_or(10);
        ioctl_int_ptr(fd.as_raw_fd(), TUNSETVNETHDRSZ, vnet_len)
            .map_err(|e| ctx(&actual, "TUNSETVNETHDRSZ", e))?;
        let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), no pointer.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offloads) };
        if r < 0 {
            return Err(ctx(&actual, "TUNSETOFFLOAD", io::Error::last_os_error()));
        }
        // SAFETY: socket takes no pointers; the fd is checked and then owned.
        let c = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if c < 0 {
            return Err(ctx(&actual, "control socket", io::Error::last_os_error()));
        }
        // SAFETY: fresh valid fd owned by nobody else.
        let ctl = unsafe { OwnedFd::from_raw_fd(c) };
        let ifindex =
            ioctl_ifindex(ctl.as_raw_fd(), &actual).map_err(|e| ctx(&actual, "SIOCGIFINDEX", e))?;
        let hw_addr = ioctl_hw_addr(ctl.as_raw_fd(), &actual);
        Ok(TapPort {
            fd,
            ctl,
            name: actual,
            ifindex,
            hw_addr,
            rx_buf: vec![0; VnetHdr::LEN + MAX_FRAME_LEN],
            stats: TapStats::default(),
        })
    }

    /// The interface name (as the kernel named it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drop and error counters.
    pub fn stats(&self) -> TapStats {
        self.stats
    }
}

impl PortBackend for TapPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.name.clone(),
            hw_addr: self.hw_addr,
            curr_speed_kbps: 10_000_000,
            max_speed_kbps: 10_000_000,
            ifindex: Some(self.ifindex),
        }
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn recv_batch(&mut self, out: &mut Vec<Packet>, max: usize) -> io::Result<usize> {
        let mut got = 0;
        while got < max {
            // SAFETY: reads at most `rx_buf.len()` bytes into the live, exclusively borrowed
            // buffer.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    self.rx_buf.as_mut_ptr().cast::<libc::c_void>(),
                    self.rx_buf.len(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => break,
                    _ => {
                        self.stats.rx_errors += 1;
                        if should_log(self.stats.rx_errors) {
                            tracing::warn!(port = %self.name, error = %e, "tap read failed");
                        }
                        if got == 0 {
                            return Err(ctx(&self.name, "read", e));
                        }
                        break;
                    }
                }
            }
            let n = usize::try_from(n).unwrap_or(0).min(self.rx_buf.len());
            if n < VnetHdr::LEN + 14 {
                if n == 0 {
                    break;
                }
                self.stats.rx_short += 1;
                continue;
            }
            let mut hdr = [0u8; VnetHdr::LEN];
            hdr.copy_from_slice(&self.rx_buf[..VnetHdr::LEN]);
            out.push(Packet {
                data: self.rx_buf[VnetHdr::LEN..n].to_vec(),
                vnet: vnet_from_bytes(&hdr),
            });
            got += 1;
        }
        Ok(got)
    }

    fn send_batch(&mut self, pkts: &[Packet]) -> io::Result<usize> {
        let mut sent = 0;
        for (i, p) in pkts.iter().enumerate() {
            let hdr = vnet_to_bytes(&p.vnet);
            let iov = [
                libc::iovec {
                    iov_base: hdr.as_ptr().cast_mut().cast::<libc::c_void>(),
                    iov_len: hdr.len(),
                },
                libc::iovec {
                    iov_base: p.data.as_ptr().cast_mut().cast::<libc::c_void>(),
                    iov_len: p.data.len(),
                },
            ];
            // SAFETY: two iovecs pointing at a live local header and the packet's bytes; writev
            // only reads them.
            let r = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if r >= 0 {
                sent += 1;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINVAL) | Some(libc::EMSGSIZE) | Some(libc::EFAULT) => {
                    self.stats.tx_rejected += 1;
                    if should_log(self.stats.tx_rejected) {
                        tracing::warn!(port = %self.name, error = %e, "tap refused a frame");
                    }
                }
                _ => {
                    // Queue full (EAGAIN/ENOBUFS) or interface down (EIO): drop the rest.
                    let rest = u64::try_from(pkts.len() - i).unwrap_or(u64::MAX);
                    let before = self.stats.tx_dropped;
                    self.stats.tx_dropped = before.saturating_add(rest);
                    if (before + 1..=self.stats.tx_dropped).any(should_log) {
                        tracing::warn!(port = %self.name, error = %e, dropped = rest, "tap write dropped frames");
                    }
                    break;
                }
            }
        }
        Ok(sent)
    }

    fn link_up(&self) -> bool {
        ioctl_link_up(self.ctl.as_raw_fd(), &self.name)
    }
}
