//! Port backends: where frames enter and leave the switch, behind one trait.
//!
//! Backends: [`afpacket`] (AF_PACKET with PACKET_VNET_HDR and recvmmsg/sendmmsg batches, for
//! veths and NICs), [`tap`] (the LOCAL port), [`dummy`] (in memory, for tests without root).
//! [`link`] watches kernel link state (netlink) so link up/down becomes PORT_STATUS.

pub mod afpacket;
pub mod dummy;
pub mod kfast;
pub mod link;
pub mod pool;
pub mod tap;

use std::io;
use std::os::fd::RawFd;

/// The virtio-net header that travels with each frame on a PACKET_VNET_HDR socket (and on TAP
/// with IFF_VNET_HDR): checksum offload and GSO metadata. A frame with `gso_type == NONE` and
/// no `NEEDS_CSUM` flag is a plain frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// VIRTIO_NET_HDR_F_NEEDS_CSUM (1) / DATA_VALID (2).
    pub flags: u8,
    /// VIRTIO_NET_HDR_GSO_NONE (0), TCPV4 (1), UDP (3), TCPV6 (4), | ECN (0x80).
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    /// Where the checksum computation starts, from the start of the frame.
    pub csum_start: u16,
    /// Where the checksum is stored, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    pub const F_NEEDS_CSUM: u8 = 1;
    pub const GSO_NONE: u8 = 0;
    /// Bytes of `struct virtio_net_hdr` on the wire (host byte order fields).
    pub const LEN: usize = 10;

    /// True when the frame is a plain, complete frame (no pending checksum, no GSO).
    pub fn is_plain(&self) -> bool {
        self.flags & Self::F_NEEDS_CSUM == 0 && self.gso_type == Self::GSO_NONE
    }
}

/// One frame and its offload metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packet {
    /// The Ethernet frame, without FCS.
    pub data: Vec<u8>,
    pub vnet: VnetHdr,
}

impl Packet {
    /// A plain frame.
    pub fn plain(data: Vec<u8>) -> Packet {
        Packet {
            data,
            vnet: VnetHdr::default(),
        }
    }

    /// A copy whose bytes live in a buffer from this thread's [`pool`] (no allocation in
    /// steady state), for frames output more than once.
    pub fn clone_pooled(&self) -> Packet {
        let mut data = pool::take();
        data.extend_from_slice(&self.data);
        Packet {
            data,
            vnet: self.vnet,
        }
    }

    /// Gives the frame's buffer back to this thread's [`pool`] (if it is a pool-sized one).
    pub fn recycle(self) {
        pool::give(self.data);
    }
}

/// Static facts about a port, for PORT_DESC / FEATURES.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    pub name: String,
    pub hw_addr: [u8; 6],
    /// Current speed in kbit/s (0 if unknown).
    pub curr_speed_kbps: u32,
    /// Maximum speed in kbit/s (0 if unknown).
    pub max_speed_kbps: u32,
    /// Kernel ifindex, if the port is a kernel interface.
    pub ifindex: Option<u32>,
}

/// A port backend. Receives and sends batches without blocking; the datapath polls `fd()`.
pub trait PortBackend: Send {
    /// Name, MAC, speeds.
    fn info(&self) -> PortInfo;
    /// A file descriptor that becomes readable when frames are waiting (None: the backend is
    /// polled by other means, e.g. the dummy backend's notifier).
    fn fd(&self) -> Option<RawFd>;
    /// Appends up to `max` received frames to `out`; returns how many (0 when none waiting).
    fn recv_batch(&mut self, out: &mut Vec<Packet>, max: usize) -> io::Result<usize>;
    /// Sends frames; returns how many were accepted (the rest were dropped by the kernel/queue).
    fn send_batch(&mut self, pkts: &[Packet]) -> io::Result<usize>;
    /// Whether the link is up (carrier), as last known.
    fn link_up(&self) -> bool;
    /// The packet socket the backend receives from, when it is one bound to a kernel
    /// interface (the kernel fast path filters it: [`kfast`]).
    fn packet_socket(&self) -> Option<RawFd> {
        None
    }
}
