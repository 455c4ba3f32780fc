//! AF_PACKET port backend for veths and NICs: a raw packet socket bound to one interface,
//! receiving and sending batches with recvmmsg/sendmmsg.
//!
//! Why it works with default offloads: the socket sets PACKET_VNET_HDR, so every frame carries
//! its 10-byte virtio-net header ([`VnetHdr`]). A 64 KB TCP GSO super-frame or a frame whose
//! checksum is still "partial" (CHECKSUM_PARTIAL on veths) arrives with that metadata and leaves
//! with it, and the kernel of the receiving side segments / finishes the checksum. Nobody has
//! to run `ethtool -K ... off`.
//!
//! Other socket settings: PACKET_IGNORE_OUTGOING (we never see our own transmissions, so no
//! loops through the tap), PACKET_AUXDATA (the kernel strips 802.1Q tags into metadata on
//! receive; we put the tag back into the frame so VLAN matches see it), promiscuous membership
//! (frames for any MAC), large SO_RCVBUF/SO_SNDBUF (forced when root), non-blocking. The socket
//! is opened with protocol 0 and only then bound to the interface with ETH_P_ALL, so no frame
//! from another interface is ever queued on it.
//!
//! Memory: no copy and no allocation per frame. Each of the [`RX_BATCH`] receive slots holds a
//! buffer from the thread's [`pool`]; recvmmsg scatters each message into the
//! slot's 10-byte virtio-net header array and straight into that buffer, which then becomes
//! the [`Packet`]'s `data` (the slot is refilled from the pool on the next call; the datapath
//! gives buffers back to the pool after sending). A VLAN tag from PACKET_AUXDATA is put back in
//! place (the buffer has room for the 4 bytes: no reallocation; the frame after the MAC
//! addresses moves by 4 bytes, which only tagged frames pay). Frames larger than
//! [`MAX_FRAME_LEN`] (BIG TCP beyond 64 KB) are truncated by the kernel and dropped (counted as
//! `rx_truncated`). The send path allocates nothing: headers and iovecs live on the stack.
//!
//! Errors: EAGAIN/ENOBUFS on send drop the rest of the batch (counted, never retried in a
//! loop); a frame the kernel rejects (EMSGSIZE/EINVAL) is skipped and counted. Warnings are
//! logged at the 1st, 2nd, 4th, 8th... occurrence of each counter.
//!
//! Facts for PORT_DESC come from ioctls on the socket itself (so they are read in the socket's
//! network namespace): SIOCGIFINDEX, SIOCGIFHWADDR, SIOCGIFMTU, SIOCETHTOOL/ETHTOOL_GSET for
//! the speed (sysfs is not used: `/sys/class/net` shows the namespace sysfs was mounted in, not
//! necessarily ours), and SIOCGIFFLAGS (IFF_UP and IFF_RUNNING) for the link.

#![allow(unsafe_code)]

use super::{pool, Packet, PortBackend, PortInfo, VnetHdr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Frames received per recvmmsg call.
pub const RX_BATCH: usize = 32;
/// Frames sent per sendmmsg call (longer batches are split).
pub const TX_BATCH: usize = 64;
/// Largest frame accepted on receive (a 64 KB GSO frame + Ethernet/VLAN headers, with slack).
pub const MAX_FRAME_LEN: usize = 65_536 + 256;
/// Bytes of one received message: the virtio-net header followed by the frame.
pub const RX_SLOT_LEN: usize = VnetHdr::LEN + MAX_FRAME_LEN;
// A pooled buffer takes the largest frame plus a re-inserted VLAN tag without reallocating.
const _: () = assert!(pool::BUF_CAPACITY >= MAX_FRAME_LEN + 4);
/// Requested socket buffer sizes.
const SOCK_BUF_BYTES: libc::c_int = 8 << 20;

const ETH_P_ALL: u16 = 0x0003;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: u16 = 1;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;
const SIOCGIFFLAGS: libc::Ioctl = 0x8913;
const SIOCGIFMTU: libc::Ioctl = 0x8921;
const SIOCGIFHWADDR: libc::Ioctl = 0x8927;
const SIOCGIFINDEX: libc::Ioctl = 0x8933;
const SIOCETHTOOL: libc::Ioctl = 0x8946;
const ETHTOOL_GSET: u32 = 0x1;
/// Control buffer per received message, in u64 words (cmsg alignment): room for one
/// tpacket_auxdata cmsg (16 + 20 bytes) with slack.
const CTL_WORDS: usize = 8;

/// `struct packet_mreq` (linux/if_packet.h).
#[repr(C)]
struct PacketMreq {
    mr_ifindex: libc::c_int,
    mr_type: u16,
    mr_alen: u16,
    mr_address: [u8; 8],
}

/// `struct tpacket_auxdata` (linux/if_packet.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// `struct ethtool_cmd` (linux/ethtool.h), for ETHTOOL_GSET.
#[repr(C)]
#[derive(Default)]
struct EthtoolCmd {
    cmd: u32,
    supported: u32,
    advertising: u32,
    speed: u16,
    duplex: u8,
    port: u8,
    phy_address: u8,
    transceiver: u8,
    autoneg: u8,
    mdio_support: u8,
    maxtxpkt: u32,
    maxrxpkt: u32,
    speed_hi: u16,
    eth_tp_mdix: u8,
    eth_tp_mdix_ctrl: u8,
    lp_advertising: u32,
    reserved: [u32; 2],
}

/// Drop and error counters of one AF_PACKET port (all monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Frames larger than a receive slot (dropped).
    pub rx_truncated: u64,
    /// Messages shorter than the virtio-net header + an Ethernet header (dropped).
    pub rx_short: u64,
    /// recvmmsg failures other than "nothing to read".
    pub rx_errors: u64,
    /// Frames dropped because the socket/device queue was full (EAGAIN/ENOBUFS).
    pub tx_full: u64,
    /// Frames the kernel refused individually (EMSGSIZE/EINVAL: too big, bad vnet header).
    pub tx_rejected: u64,
    /// Frames dropped by other send errors (interface down or gone).
    pub tx_errors: u64,
}

/// Logs at the 1st, 2nd, 4th, 8th... occurrence: rate limiting without reading a clock.
pub(crate) fn should_log(count: u64) -> bool {
    count.is_power_of_two()
}

/// An AF_PACKET socket bound to one interface.
pub struct AfPacketPort {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
    hw_addr: [u8; 6],
    mtu: u32,
    speed_kbps: u32,
    /// Receive slot buffers (pooled; an empty `Vec` after its frame was handed out).
    rx_bufs: Vec<Vec<u8>>,
    /// Receive slot virtio-net headers.
    rx_hdrs: Vec<[u8; VnetHdr::LEN]>,
    rx_ctl: Vec<u64>,
    stats: AfPacketStats,
}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("fd", &self.fd)
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("hw_addr", &self.hw_addr)
            .field("mtu", &self.mtu)
            .field("speed_kbps", &self.speed_kbps)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn ctx(ifname: &str, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{ifname}: {what}: {e}"))
}

/// A zeroed `ifreq` naming `ifname` (which the caller validated: 1..=15 bytes, no NUL).
pub(crate) fn ifreq_for(ifname: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data (a name array and a union of plain data); all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    ifr
}

/// Checks an interface name as the kernel will: 1..=15 bytes, no NUL, '/' or whitespace.
pub(crate) fn check_ifname(ifname: &str) -> io::Result<()> {
    let ok = !ifname.is_empty()
        && ifname.len() < libc::IFNAMSIZ
        && !ifname
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{ifname:?}: not a valid interface name (1 to 15 bytes, no '/', NUL or space)"),
        ))
    }
}

/// `ioctl(fd, req, &mut ifr)`.
pub(crate) fn ioctl_ifreq(fd: RawFd, req: libc::Ioctl, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request passed here (SIOCGIF*, TUNSETIFF, SIOCETHTOOL with ifru_data
    // pointing at a live struct of the right type) reads/writes at most one `ifreq` (plus
    // that struct), which `ifr` is, exclusively borrowed.
    let r = unsafe { libc::ioctl(fd, req, std::ptr::from_mut(ifr)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Link state from SIOCGIFFLAGS: administratively up and running (carrier / operstate up).
pub(crate) fn ioctl_link_up(fd: RawFd, ifname: &str) -> bool {
    let mut ifr = ifreq_for(ifname);
    if ioctl_ifreq(fd, SIOCGIFFLAGS, &mut ifr).is_err() {
        return false;
    }
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    let flags = i32::from(unsafe { ifr.ifr_ifru.ifru_flags });
    flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0
}

/// MAC address from SIOCGIFHWADDR (zeros if unavailable).
pub(crate) fn ioctl_hw_addr(fd: RawFd, ifname: &str) -> [u8; 6] {
    let mut ifr = ifreq_for(ifname);
    let mut mac = [0u8; 6];
    if ioctl_ifreq(fd, SIOCGIFHWADDR, &mut ifr).is_ok() {
        // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
        let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr };
        for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
            *m = b.to_ne_bytes()[0];
        }
    }
    mac
}

/// Interface index from SIOCGIFINDEX.
pub(crate) fn ioctl_ifindex(fd: RawFd, ifname: &str) -> io::Result<u32> {
    let mut ifr = ifreq_for(ifname);
    ioctl_ifreq(fd, SIOCGIFINDEX, &mut ifr)?;
    // SAFETY: SIOCGIFINDEX filled the `ifru_ifindex` member of the union.
    let idx = unsafe { ifr.ifr_ifru.ifru_ifindex };
    u32::try_from(idx)
        .ok()
        .filter(|&i| i != 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "kernel returned ifindex <= 0"))
}

fn ioctl_mtu(fd: RawFd, ifname: &str) -> u32 {
    let mut ifr = ifreq_for(ifname);
    if ioctl_ifreq(fd, SIOCGIFMTU, &mut ifr).is_err() {
        return 0;
    }
    // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member of the union.
    u32::try_from(unsafe { ifr.ifr_ifru.ifru_mtu }).unwrap_or(0)
}

/// Speed in kbit/s from ETHTOOL_GSET (0 if unknown or unsupported).
fn ioctl_speed_kbps(fd: RawFd, ifname: &str) -> u32 {
    let mut cmd = EthtoolCmd {
        cmd: ETHTOOL_GSET,
        ..EthtoolCmd::default()
    };
    let mut ifr = ifreq_for(ifname);
    ifr.ifr_ifru.ifru_data = std::ptr::addr_of_mut!(cmd).cast::<libc::c_char>();
    if ioctl_ifreq(fd, SIOCETHTOOL, &mut ifr).is_err() {
        return 0;
    }
    let mbps = (u32::from(cmd.speed_hi) << 16) | u32::from(cmd.speed);
    if mbps == 0 || mbps == u32::from(u16::MAX) || mbps == u32::MAX {
        return 0;
    }
    mbps.saturating_mul(1000)
}

/// Sets an integer socket option (also used by [`super::kfast`] to attach its filter).
pub(super) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            std::ptr::addr_of!(v).cast::<libc::c_void>(),
            socklen_of::<libc::c_int>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn socklen_of<T>() -> libc::socklen_t {
    // Socket option and address structs are a few bytes long; never truncates.
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// Sets a socket buffer size, forcing past the sysctl limit when allowed (CAP_NET_ADMIN).
fn set_buf(fd: RawFd, force: libc::c_int, plain: libc::c_int) {
    if setsockopt_int(fd, libc::SOL_SOCKET, force, SOCK_BUF_BYTES).is_err() {
        let _ = setsockopt_int(fd, libc::SOL_SOCKET, plain, SOCK_BUF_BYTES);
    }
}

/// Reads a virtio-net header (host byte order fields) from the first 10 bytes of `b`.
pub(crate) fn vnet_from_bytes(b: &[u8; VnetHdr::LEN]) -> VnetHdr {
    VnetHdr {
        flags: b[0],
        gso_type: b[1],
        hdr_len: u16::from_ne_bytes([b[2], b[3]]),
        gso_size: u16::from_ne_bytes([b[4], b[5]]),
        csum_start: u16::from_ne_bytes([b[6], b[7]]),
        csum_offset: u16::from_ne_bytes([b[8], b[9]]),
    }
}

/// Writes a virtio-net header in the kernel's layout.
pub(crate) fn vnet_to_bytes(h: &VnetHdr) -> [u8; VnetHdr::LEN] {
    let mut b = [0u8; VnetHdr::LEN];
    b[0] = h.flags;
    b[1] = h.gso_type;
    b[2..4].copy_from_slice(&h.hdr_len.to_ne_bytes());
    b[4..6].copy_from_slice(&h.gso_size.to_ne_bytes());
    b[6..8].copy_from_slice(&h.csum_start.to_ne_bytes());
    b[8..10].copy_from_slice(&h.csum_offset.to_ne_bytes());
    b
}

/// Re-inserts an 802.1Q/802.1ad tag the kernel moved into metadata into the received
/// frame `data` (in place: no reallocation when the capacity has 4 spare bytes, as pooled
/// buffers do), and shifts the vnet header's offsets (relative to the untagged frame) to
/// match. A runt shorter than the two MAC addresses is left alone.
fn insert_tag(data: &mut Vec<u8>, vnet: &mut VnetHdr, tag: Option<(u16, u16)>) {
    let Some((tpid, tci)) = tag else { return };
    let len = data.len();
    if len < 12 {
        return;
    }
    data.resize(len + 4, 0);
    data.copy_within(12..len, 16);
    data[12..14].copy_from_slice(&tpid.to_be_bytes());
    data[14..16].copy_from_slice(&tci.to_be_bytes());
    if vnet.flags & VnetHdr::F_NEEDS_CSUM != 0 {
        vnet.csum_start = vnet.csum_start.saturating_add(4);
    }
    if vnet.hdr_len != 0 {
        vnet.hdr_len = vnet.hdr_len.saturating_add(4);
    }
}

/// The VLAN tag carried in a received message's PACKET_AUXDATA control message, if any.
fn vlan_from_cmsgs(hdr: &libc::msghdr) -> Option<(u16, u16)> {
    let mut tag = None;
    // SAFETY: `hdr` is a msghdr whose msg_control/msg_controllen the kernel just filled (it
    // never sets msg_controllen beyond the buffer we gave it); the CMSG_* helpers only walk
    // within [msg_control, msg_control + msg_controllen).
    let mut c = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !c.is_null() {
        // SAFETY: CMSG_FIRSTHDR/NXTHDR returned a non-null header inside the buffer.
        let cm = unsafe { &*c };
        let need = usize::try_from(
            // SAFETY: CMSG_LEN is pure arithmetic.
            unsafe {
                libc::CMSG_LEN(u32::try_from(std::mem::size_of::<TpacketAuxdata>()).unwrap_or(20))
            },
        )
        .unwrap_or(usize::MAX);
        if cm.cmsg_level == libc::SOL_PACKET
            && cm.cmsg_type == PACKET_AUXDATA
            && cm.cmsg_len >= need
        {
            // SAFETY: the cmsg holds at least a whole tpacket_auxdata (checked above);
            // read_unaligned copes with any alignment.
            let aux =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<TpacketAuxdata>()) };
            if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    0x8100
                };
                tag = Some((tpid, aux.tp_vlan_tci));
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR; NXTHDR returns null past the end.
        c = unsafe { libc::CMSG_NXTHDR(hdr, c) };
    }
    tag
}

impl AfPacketPort {
    /// Opens a packet socket on `ifname` (in the calling thread's network namespace).
    pub fn open(ifname: &str) -> io::Result<AfPacketPort> {
        check_ifname(ifname)?;
        // Protocol 0: receives nothing until bound to the interface below.
        // SAFETY: socket takes no pointers; the fd is checked and then owned.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(ctx(ifname, "socket(AF_PACKET)", io::Error::last_os_error()));
        }
        // SAFETY: fresh valid fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        let ifindex = ioctl_ifindex(s, ifname).map_err(|e| ctx(ifname, "SIOCGIFINDEX", e))?;
        let ifindex_c = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "ifindex out of range"))?;
        setsockopt_int(s, libc::SOL_PACKET, PACKET_VNET_HDR, 1)
            .map_err(|e| ctx(ifname, "PACKET_VNET_HDR", e))?;
        setsockopt_int(s, libc::SOL_PACKET, PACKET_AUXDATA, 1)
            .map_err(|e| ctx(ifname, "PACKET_AUXDATA", e))?;
        setsockopt_int(s, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            .map_err(|e| ctx(ifname, "PACKET_IGNORE_OUTGOING (kernel >= 4.20 needed)", e))?;
        set_buf(s, SO_RCVBUFFORCE, libc::SO_RCVBUF);
        set_buf(s, SO_SNDBUFFORCE, libc::SO_SNDBUF);

        // SAFETY: sockaddr_ll is plain data; all-zero is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = 17; // AF_PACKET
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex_c;
        // SAFETY: `sll` is a live sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                s,
                std::ptr::addr_of!(sll).cast::<libc::sockaddr>(),
                socklen_of::<libc::sockaddr_ll>(),
            )
        };
        if r < 0 {
            return Err(ctx(ifname, "bind", io::Error::last_os_error()));
        }
        let mreq = PacketMreq {
            mr_ifindex: ifindex_c,
            mr_type: PACKET_MR_PROMISC,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        // SAFETY: passes a live packet_mreq and its exact size.
        let r = unsafe {
            libc::setsockopt(
                s,
                libc::SOL_PACKET,
                PACKET_ADD_MEMBERSHIP,
                std::ptr::addr_of!(mreq).cast::<libc::c_void>(),
                socklen_of::<PacketMreq>(),
            )
        };
        if r < 0 {
            return Err(ctx(
                ifname,
                "PACKET_ADD_MEMBERSHIP promisc",
                io::Error::last_os_error(),
            ));
        }
        let hw_addr = ioctl_hw_addr(s, ifname);
        let mtu = ioctl_mtu(s, ifname);
        let speed_kbps = ioctl_speed_kbps(s, ifname);
        Ok(AfPacketPort {
            fd,
            name: ifname.to_owned(),
            ifindex,
            hw_addr,
            mtu,
            speed_kbps,
            rx_bufs: (0..RX_BATCH).map(|_| Vec::new()).collect(),
            rx_hdrs: vec![[0; VnetHdr::LEN]; RX_BATCH],
            rx_ctl: vec![0; RX_BATCH * CTL_WORDS],
            stats: AfPacketStats::default(),
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// MTU at open time (0 if unknown).
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Drop and error counters.
    pub fn stats(&self) -> AfPacketStats {
        self.stats
    }

    fn count_tx(&mut self, field: fn(&mut AfPacketStats) -> &mut u64, n: u64, e: &io::Error) {
        let c = field(&mut self.stats);
        let before = *c;
        *c = c.saturating_add(n);
        if (before + 1..=*c).any(should_log) {
            tracing::warn!(port = %self.name, error = %e, dropped = n, total = *c, "af_packet send dropped frames");
        }
    }
}

impl PortBackend for AfPacketPort {
    fn packet_socket(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn info(&self) -> PortInfo {
        PortInfo {
            name: self.name.clone(),
            hw_addr: self.hw_addr,
            curr_speed_kbps: self.speed_kbps,
            max_speed_kbps: self.speed_kbps,
            ifindex: Some(self.ifindex),
        }
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn recv_batch(&mut self, out: &mut Vec<Packet>, max: usize) -> io::Result<usize> {
        let want = max.min(RX_BATCH);
        if want == 0 {
            return Ok(0);
        }
        // SAFETY: iovec and mmsghdr are plain data; all-zero is valid (null pointers, 0 lens).
        let mut iovs: [[libc::iovec; 2]; RX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; RX_BATCH] = unsafe { std::mem::zeroed() };
        let ctl = self.rx_ctl.as_mut_ptr();
        for i in 0..want {
            if self.rx_bufs[i].capacity() < pool::BUF_CAPACITY {
                self.rx_bufs[i] = pool::take();
            }
            iovs[i][0].iov_base = self.rx_hdrs[i].as_mut_ptr().cast::<libc::c_void>();
            iovs[i][0].iov_len = VnetHdr::LEN;
            iovs[i][1].iov_base = self.rx_bufs[i].as_mut_ptr().cast::<libc::c_void>();
            iovs[i][1].iov_len = MAX_FRAME_LEN;
            let h = &mut msgs[i].msg_hdr;
            h.msg_iov = iovs[i].as_mut_ptr();
            h.msg_iovlen = 2;
            h.msg_control = ctl.wrapping_add(i * CTL_WORDS).cast::<libc::c_void>();
            h.msg_controllen = CTL_WORDS * 8;
        }
        let vlen = libc::c_uint::try_from(want).unwrap_or(1);
        // SAFETY: `msgs[..want]` point at iovecs in `iovs`, whose targets are
        // `self.rx_hdrs[i]` (VnetHdr::LEN bytes) and `self.rx_bufs[i]` (capacity
        // BUF_CAPACITY >= MAX_FRAME_LEN bytes, ensured just above), and at control buffers in
        // `self.rx_ctl` (CTL_WORDS*8 bytes per slot), all alive and not otherwise borrowed for
        // the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                vlen,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                // The socket reports the interface going down once (the link watcher turns
                // that into PORT_STATUS): not a receive error.
                Some(libc::ENETDOWN) => {
                    tracing::debug!(port = %self.name, "af_packet: interface went down");
                    Ok(0)
                }
                _ => {
                    self.stats.rx_errors += 1;
                    if should_log(self.stats.rx_errors) {
                        tracing::warn!(port = %self.name, error = %e, total = self.stats.rx_errors, "af_packet recv failed");
                    }
                    Err(e)
                }
            };
        }
        let n = usize::try_from(n).unwrap_or(0).min(want);
        let mut got = 0;
        for (slot_idx, msg) in msgs[..n].iter().enumerate() {
            let len = usize::try_from(msg.msg_len).unwrap_or(usize::MAX);
            if msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > RX_SLOT_LEN {
                self.stats.rx_truncated += 1;
                if should_log(self.stats.rx_truncated) {
                    tracing::warn!(port = %self.name, len, total = self.stats.rx_truncated, "af_packet: frame larger than the receive slot dropped");
                }
                continue;
            }
            if len < VnetHdr::LEN + 14 {
                self.stats.rx_short += 1;
                continue;
            }
            let frame_len = len - VnetHdr::LEN;
            let mut vnet = vnet_from_bytes(&self.rx_hdrs[slot_idx]);
            let tag = vlan_from_cmsgs(&msg.msg_hdr);
            let mut data = std::mem::take(&mut self.rx_bufs[slot_idx]);
            // SAFETY: the kernel wrote `len` bytes across the two iovecs in order: the header
            // array, then `frame_len` (<= MAX_FRAME_LEN, checked above: not truncated) bytes
            // into this buffer, whose capacity is at least MAX_FRAME_LEN; u8 has no invalid
            // values.
            unsafe { data.set_len(frame_len) };
            insert_tag(&mut data, &mut vnet, tag);
            out.push(Packet { data, vnet });
            got += 1;
        }
        Ok(got)
    }

    fn send_batch(&mut self, pkts: &[Packet]) -> io::Result<usize> {
        let mut sent = 0usize;
        let mut idx = 0usize;
        let mut interrupts = 0;
        while idx < pkts.len() {
            let chunk = &pkts[idx..pkts.len().min(idx + TX_BATCH)];
            let mut hdrs = [[0u8; VnetHdr::LEN]; TX_BATCH];
            // SAFETY: iovec and mmsghdr are plain data; all-zero is valid.
            let mut iovs: [[libc::iovec; 2]; TX_BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
            for (i, p) in chunk.iter().enumerate() {
                hdrs[i] = vnet_to_bytes(&p.vnet);
                iovs[i][0].iov_base = hdrs[i].as_mut_ptr().cast::<libc::c_void>();
                iovs[i][0].iov_len = VnetHdr::LEN;
                // The kernel only reads from send iovecs.
                iovs[i][1].iov_base = p.data.as_ptr().cast_mut().cast::<libc::c_void>();
                iovs[i][1].iov_len = p.data.len();
                msgs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
                msgs[i].msg_hdr.msg_iovlen = 2;
            }
            let vlen = libc::c_uint::try_from(chunk.len()).unwrap_or(1);
            // SAFETY: `msgs[..chunk.len()]` point at `iovs`/`hdrs` (locals) and at the packets'
            // data (borrowed for the call); sendmmsg only reads them.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    vlen,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                let r = usize::try_from(r).unwrap_or(0).min(chunk.len());
                sent += r;
                idx += r;
                continue;
            }
            let e = if r == 0 {
                io::Error::from_raw_os_error(libc::EAGAIN)
            } else {
                io::Error::last_os_error()
            };
            let remaining = u64::try_from(pkts.len() - idx).unwrap_or(u64::MAX);
            match e.raw_os_error() {
                Some(libc::EINTR) if interrupts < 3 => interrupts += 1,
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                    self.count_tx(|s| &mut s.tx_full, remaining, &e);
                    break;
                }
                Some(libc::EMSGSIZE) | Some(libc::EINVAL) | Some(libc::EFAULT) => {
                    self.count_tx(|s| &mut s.tx_rejected, 1, &e);
                    idx += 1;
                }
                _ => {
                    self.count_tx(|s| &mut s.tx_errors, remaining, &e);
                    if sent == 0 {
                        return Err(ctx(&self.name, "sendmmsg", e));
                    }
                    break;
                }
            }
        }
        Ok(sent)
    }

    fn link_up(&self) -> bool {
        ioctl_link_up(self.fd.as_raw_fd(), &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_header_round_trip() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 1,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(vnet_from_bytes(&vnet_to_bytes(&h)), h);
    }

    #[test]
    fn vlan_tag_reinsertion_shifts_offsets() {
        let frame: Vec<u8> = (0u8..60).collect();
        let vnet = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: 1,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut data = pool::take();
        data.extend_from_slice(&frame);
        let ptr = data.as_ptr();
        let mut v = vnet;
        insert_tag(&mut data, &mut v, Some((0x8100, 0x2064)));
        assert_eq!(data.as_ptr(), ptr, "the tag is inserted in place");
        assert_eq!(data.len(), 64);
        assert_eq!(&data[..12], &frame[..12]);
        assert_eq!(&data[12..16], &[0x81, 0x00, 0x20, 0x64]);
        assert_eq!(&data[16..], &frame[12..]);
        assert_eq!(v.csum_start, 38);
        assert_eq!(v.hdr_len, 58);
        assert_eq!(v.csum_offset, 16);
        let mut plain = frame.clone();
        let mut v = VnetHdr::default();
        insert_tag(&mut plain, &mut v, None);
        assert_eq!(plain, frame);
        assert_eq!(v, VnetHdr::default());
        // A runt cannot take a tag; no panic.
        let mut runt = frame[..5].to_vec();
        insert_tag(&mut runt, &mut v, Some((0x8100, 1)));
        assert_eq!(runt.len(), 5);
    }

    #[test]
    fn bad_names_are_refused() {
        for n in ["", "0123456789abcdef", "a/b", "a b", "a\0b"] {
            assert!(AfPacketPort::open(n).is_err(), "{n:?}");
        }
        assert!(AfPacketPort::open("shgnosuchif0").is_err());
    }
}
