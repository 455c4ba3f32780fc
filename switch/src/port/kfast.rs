//! The in-kernel fast path's mechanism: a tcx ingress program and a packet-socket filter that
//! share one BPF hash map of (input interface, frame headers up to the TCP/UDP ports of IPv4
//! and IPv6: [`FastKey`]) → output interface.
//!
//! Why: a frame forwarded through user space is copied twice and waits for a thread to wake
//! (docs/benchmarks.md); one the kernel redirects at the input interface's ingress is neither.
//! Measured on veths here: a tc redirect forwards at the Linux bridge's rate with its latency,
//! also while a packet socket with a dropping filter is bound to the same interfaces
//! (docs/decisions.md D18).
//!
//! How the two programs agree: an AF_PACKET socket bound with ETH_P_ALL sees every received
//! frame *before* tc ingress runs. So the socket gets [`FastPath::filter_socket`]: a socket
//! filter that looks the frame up in the same map and drops it from the socket when it is
//! there (the frame is not copied; the kernel's reference is dropped). The tcx program then
//! finds the same entry, counts the frame (packets, bytes) and redirects it to the output
//! interface's egress. A frame not in the map goes to the socket as before and on through the
//! stack's ingress unchanged (`TCX_NEXT`). Frames carrying an 802.1Q tag (in the frame or, as
//! veths deliver it, in the skb's metadata) never take the fast path: the key has no VLAN.
//! An entry inserted between the two lookups of one frame would forward that frame twice;
//! callers insert an entry after they have forwarded the frame that taught it, so the window
//! is that one frame's. Taking an entry back reads its counters and deletes it in one step.
//!
//! The programs are about 100 BPF instructions each, assembled here with labels (no
//! compiler, no object file, no BTF): the kernel's verifier checks them at load, and its log is returned in the
//! error when it refuses. The tcx links detach when [`FastPath`] is dropped (their fds
//! close); so do the map and programs. Needs CAP_BPF and CAP_NET_ADMIN, a kernel with tcx
//! (6.6+) and the BPF syscall.
//!
//! What decides which frames may take the fast path is the caller's: this module only keeps
//! the table and the counters.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// bpf(2) commands, map and program types, attach types, helpers (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_REDIRECT: i32 = 23;
const FN_SKB_LOAD_BYTES: i32 = 26;
/// tcx verdict: continue with the next program / the normal path.
const TCX_NEXT: i32 = -1;
const SO_ATTACH_BPF: libc::c_int = 50;
/// Size of `union bpf_attr` passed (the kernel checks that unknown tail bytes are zero).
const ATTR_LEN: usize = 144;

// Offsets in `struct __sk_buff`.
const SKB_LEN: i16 = 0;
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_IFINDEX: i16 = 40;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

/// Bytes of a key (see [`FastKey`]).
pub const KEY_LEN: usize = 56;
/// Bytes of a value: output ifindex, padding, packets, bytes.
const VALUE_LEN: usize = 24;

/// A fast-path entry's key: the input interface and the frame's headers up to the transport
/// ports, as both programs read them from an untagged frame.
///
/// Map layout (56 bytes): input ifindex (native endian), destination MAC, source MAC,
/// EtherType; then for an IP packet its protocol, a zero byte, source and destination
/// addresses (16 bytes each; an IPv4 address in the first 4), and for TCP and UDP the two
/// ports. These last 38 bytes are zero for other EtherTypes. IPv4: a header without options,
/// not a fragment. IPv6: a packet whose next header is TCP, UDP or ICMPv6 (no extension
/// header, so no fragment). Any other IPv4 or IPv6 packet has no key: it never takes the fast
/// path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FastKey {
    pub in_ifindex: u32,
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: u16,
    /// IP protocol (IPv6: next header); 0 when not IP.
    pub ip_proto: u8,
    /// Source and destination addresses (IPv4: the first 4 bytes, the rest zero).
    pub ip_src: [u8; 16],
    pub ip_dst: [u8; 16],
    /// TCP/UDP source and destination ports as in the packet (zero otherwise).
    pub ports: [u8; 4],
}

impl FastKey {
    /// An IPv4 address in a key's 16-byte address field.
    pub fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&a);
        x
    }

    /// The key of an Ethernet frame received on `in_ifindex`. None: shorter than its headers,
    /// an IPv4 packet with options or a fragment, or an IPv6 packet whose next header is not
    /// TCP, UDP or ICMPv6.
    pub fn of_frame(in_ifindex: u32, frame: &[u8]) -> Option<FastKey> {
        let dst = frame.get(0..6)?.try_into().ok()?;
        let src = frame.get(6..12)?.try_into().ok()?;
        let t = frame.get(12..14)?;
        let ethertype = u16::from_be_bytes([t[0], t[1]]);
        let mut k = FastKey {
            in_ifindex,
            dst,
            src,
            ethertype,
            ip_proto: 0,
            ip_src: [0; 16],
            ip_dst: [0; 16],
            ports: [0; 4],
        };
        let l4 = match ethertype {
            0x0800 => {
                let ip = frame.get(14..34)?;
                let fragment = (ip[6] & 0x3f) != 0 || ip[7] != 0;
                if ip[0] != 0x45 || fragment {
                    return None;
                }
                k.ip_proto = ip[9];
                k.ip_src[..4].copy_from_slice(&ip[12..16]);
                k.ip_dst[..4].copy_from_slice(&ip[16..20]);
                34
            }
            0x86dd => {
                let ip = frame.get(14..54)?;
                if ip[0] >> 4 != 6 || !matches!(ip[6], 6 | 17 | 58) {
                    return None;
                }
                k.ip_proto = ip[6];
                k.ip_src.copy_from_slice(&ip[8..24]);
                k.ip_dst.copy_from_slice(&ip[24..40]);
                54
            }
            _ => return Some(k),
        };
        if matches!(k.ip_proto, 6 | 17) {
            k.ports.copy_from_slice(frame.get(l4..l4 + 4)?);
        }
        Some(k)
    }

    /// The map's byte layout.
    fn bytes(&self) -> [u8; KEY_LEN] {
        let mut k = [0u8; KEY_LEN];
        k[0..4].copy_from_slice(&self.in_ifindex.to_ne_bytes());
        k[4..10].copy_from_slice(&self.dst);
        k[10..16].copy_from_slice(&self.src);
        k[16..18].copy_from_slice(&self.ethertype.to_be_bytes());
        k[18] = self.ip_proto;
        k[20..36].copy_from_slice(&self.ip_src);
        k[36..52].copy_from_slice(&self.ip_dst);
        k[52..56].copy_from_slice(&self.ports);
        k
    }

    fn from_bytes(k: &[u8; KEY_LEN]) -> FastKey {
        let arr4 = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&k[r]);
            a
        };
        let arr6 = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 6];
            a.copy_from_slice(&k[r]);
            a
        };
        let arr16 = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&k[r]);
            a
        };
        FastKey {
            in_ifindex: u32::from_ne_bytes(arr4(0..4)),
            dst: arr6(4..10),
            src: arr6(10..16),
            ethertype: u16::from_be_bytes([k[16], k[17]]),
            ip_proto: k[18],
            ip_src: arr16(20..36),
            ip_dst: arr16(36..52),
            ports: arr4(52..56),
        }
    }
}

/// Frames and bytes the kernel forwarded for one entry since it was inserted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// The map, the two programs and the tcx links.
#[derive(Debug)]
pub struct FastPath {
    map: OwnedFd,
    tc_prog: OwnedFd,
    sock_prog: OwnedFd,
    /// (ifindex, link fd): closing the fd detaches the program.
    links: Vec<(u32, OwnedFd)>,
}

impl FastPath {
    /// Creates the map (at most `max_entries`) and loads both programs.
    pub fn new(max_entries: u32) -> io::Result<FastPath> {
        let mut attr = Attr::new();
        attr.u32(0, BPF_MAP_TYPE_HASH)
            .u32(4, u32::try_from(KEY_LEN).unwrap_or(0))
            .u32(8, u32::try_from(VALUE_LEN).unwrap_or(0))
            .u32(12, max_entries.max(1));
        let map = bpf_fd(BPF_MAP_CREATE, &mut attr).map_err(|e| ctx("BPF_MAP_CREATE", e))?;
        let map_fd = map.as_raw_fd();
        let tc_prog = load(BPF_PROG_TYPE_SCHED_CLS, &tc_program(map_fd), "tcx ingress")?;
        let sock_prog = load(
            BPF_PROG_TYPE_SOCKET_FILTER,
            &socket_filter(map_fd),
            "socket filter",
        )?;
        Ok(FastPath {
            map,
            tc_prog,
            sock_prog,
            links: Vec::new(),
        })
    }

    /// Runs the redirecting program at `ifindex`'s ingress (in the calling thread's network
    /// namespace), until [`Self::detach`] or drop.
    pub fn attach_ingress(&mut self, ifindex: u32) -> io::Result<()> {
        let mut attr = Attr::new();
        attr.u32(0, fd_u32(self.tc_prog.as_raw_fd()))
            .u32(4, ifindex)
            .u32(8, BPF_TCX_INGRESS);
        let link = bpf_fd(BPF_LINK_CREATE, &mut attr)
            .map_err(|e| ctx(&format!("tcx attach to ifindex {ifindex}"), e))?;
        self.links.push((ifindex, link));
        Ok(())
    }

    /// Detaches the program from `ifindex` (no-op if it is not attached there).
    pub fn detach(&mut self, ifindex: u32) {
        self.links.retain(|(i, _)| *i != ifindex);
    }

    /// Makes the packet socket `fd` skip the frames the fast path forwards.
    pub fn filter_socket(&self, fd: RawFd) -> io::Result<()> {
        super::afpacket::setsockopt_int(
            fd,
            libc::SOL_SOCKET,
            SO_ATTACH_BPF,
            self.sock_prog.as_raw_fd(),
        )
        .map_err(|e| ctx("SO_ATTACH_BPF", e))
    }

    /// Forwards frames of `key` to `out_ifindex`'s egress in the kernel from now on (counters
    /// restart from zero when the entry is replaced).
    pub fn insert(&self, key: &FastKey, out_ifindex: u32) -> io::Result<()> {
        let k = key.bytes();
        let mut v = [0u8; VALUE_LEN];
        v[0..4].copy_from_slice(&out_ifindex.to_ne_bytes());
        self.elem(BPF_MAP_UPDATE_ELEM, &k, v.as_mut_ptr())
            .map_err(|e| ctx("BPF_MAP_UPDATE_ELEM", e))
    }

    /// Removes `key`; returns its final counters (None: it was not there).
    pub fn remove(&self, key: &FastKey) -> io::Result<Option<FastCounters>> {
        // One step (hash maps, kernel 5.14+): no frame is counted between the read and the
        // removal without being read.
        let mut v = [0u8; VALUE_LEN];
        match self.elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, &key.bytes(), v.as_mut_ptr()) {
            Ok(()) => Ok(Some(FastCounters {
                packets: u64_at(&v, 8),
                bytes: u64_at(&v, 16),
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(ctx("BPF_MAP_LOOKUP_AND_DELETE_ELEM", e)),
        }
    }

    /// The counters of `key` (None: not in the map).
    pub fn counters(&self, key: &FastKey) -> io::Result<Option<FastCounters>> {
        let mut v = [0u8; VALUE_LEN];
        match self.elem(BPF_MAP_LOOKUP_ELEM, &key.bytes(), v.as_mut_ptr()) {
            Ok(()) => Ok(Some(FastCounters {
                packets: u64_at(&v, 8),
                bytes: u64_at(&v, 16),
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(ctx("BPF_MAP_LOOKUP_ELEM", e)),
        }
    }

    /// Every key in the map.
    pub fn keys(&self) -> io::Result<Vec<FastKey>> {
        let mut out = Vec::new();
        let mut next = [0u8; KEY_LEN];
        let mut cur: Option<[u8; KEY_LEN]> = None;
        loop {
            let mut attr = Attr::new();
            attr.u32(0, fd_u32(self.map.as_raw_fd()))
                .ptr(8, cur.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
                .ptr(16, next.as_mut_ptr());
            match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
                Ok(_) => {
                    out.push(FastKey::from_bytes(&next));
                    cur = Some(next);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
                Err(e) => return Err(ctx("BPF_MAP_GET_NEXT_KEY", e)),
            }
        }
    }

    fn elem(&self, cmd: libc::c_long, key: &[u8; KEY_LEN], value: *mut u8) -> io::Result<()> {
        let mut attr = Attr::new();
        attr.u32(0, fd_u32(self.map.as_raw_fd()))
            .ptr(8, key.as_ptr())
            .ptr(16, value);
        bpf(cmd, &mut attr).map(|_| ())
    }
}

fn u64_at(v: &[u8; VALUE_LEN], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&v[at..at + 8]);
    u64::from_ne_bytes(b)
}

fn ctx(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("kernel fast path: {what}: {e}"))
}

fn fd_u32(fd: RawFd) -> u32 {
    u32::try_from(fd).unwrap_or(u32::MAX)
}

/// A `union bpf_attr`, filled field by field at the kernel's offsets.
struct Attr([u8; ATTR_LEN]);

impl Attr {
    fn new() -> Attr {
        Attr([0; ATTR_LEN])
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn ptr<T>(&mut self, at: usize, p: *const T) -> &mut Attr {
        self.u64(at, p as usize as u64)
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable buffer of ATTR_LEN bytes; every pointer stored in it
    // by the callers points to a buffer that outlives this call and has the size the kernel
    // reads or writes for `cmd` (key: KEY_LEN, value: VALUE_LEN, log: its length).
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), ATTR_LEN) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn bpf_fd(cmd: libc::c_long, attr: &mut Attr) -> io::Result<OwnedFd> {
    let r = bpf(cmd, attr)?;
    let fd = RawFd::try_from(r).map_err(|_| io::Error::other("bpf returned no fd"))?;
    // SAFETY: the kernel returned a fresh fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads `insns`; a refusal carries the verifier's log.
fn load(prog_type: u32, insns: &[Insn], what: &str) -> io::Result<OwnedFd> {
    let code: Vec<u8> = insns.iter().flat_map(Insn::encode).collect();
    let license = b"GPL\0";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = Attr::new();
    attr.u32(0, prog_type)
        .u32(4, u32::try_from(insns.len()).unwrap_or(u32::MAX))
        .ptr(8, code.as_ptr())
        .ptr(16, license.as_ptr())
        .u32(24, 1)
        .u32(28, u32::try_from(log.len()).unwrap_or(0))
        .ptr(32, log.as_mut_ptr());
    bpf_fd(BPF_PROG_LOAD, &mut attr).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        ctx(
            &format!("loading the {what} program"),
            io::Error::new(e.kind(), format!("{e}; verifier: {}", text.trim())),
        )
    })
}

/// One BPF instruction.
#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A program as written: instructions, jumps to labels, labels.
#[derive(Debug, Clone, Copy)]
enum Asm {
    I(Insn),
    /// A conditional or unconditional jump whose offset is the label's.
    J(Insn, &'static str),
    L(&'static str),
}

/// Resolves the labels (a jump's offset counts from the instruction after it).
fn assemble(prog: &[Asm]) -> Vec<Insn> {
    let mut at = std::collections::HashMap::new();
    let mut pc = 0usize;
    for a in prog {
        match a {
            Asm::L(l) => {
                at.insert(*l, pc);
            }
            Asm::I(_) | Asm::J(..) => pc += 1,
        }
    }
    let mut out = Vec::with_capacity(pc);
    for a in prog {
        match a {
            Asm::L(_) => {}
            Asm::I(i) => out.push(*i),
            Asm::J(i, l) => {
                let to = at.get(l).copied().unwrap_or(out.len() + 1);
                let off =
                    i64::try_from(to).unwrap_or(0) - i64::try_from(out.len() + 1).unwrap_or(0);
                out.push(Insn {
                    off: i16::try_from(off).unwrap_or(0),
                    ..*i
                });
            }
        }
    }
    out
}

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R10: u8 = 10;

const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Asm {
    Asm::I(Insn {
        code,
        dst,
        src,
        off,
        imm,
    })
}
const fn jmp(code: u8, dst: u8, src: u8, imm: i32, to: &'static str) -> Asm {
    Asm::J(
        Insn {
            code,
            dst,
            src,
            off: 0,
            imm,
        },
        to,
    )
}
/// dst = src (64-bit).
const fn mov(dst: u8, src: u8) -> Asm {
    ins(0xbf, dst, src, 0, 0)
}
/// dst = imm (64-bit, sign-extended).
const fn mov_imm(dst: u8, imm: i32) -> Asm {
    ins(0xb7, dst, 0, 0, imm)
}
/// dst += imm (64-bit).
const fn add_imm(dst: u8, imm: i32) -> Asm {
    ins(0x07, dst, 0, 0, imm)
}
/// dst &= imm (64-bit).
const fn and_imm(dst: u8, imm: i32) -> Asm {
    ins(0x57, dst, 0, 0, imm)
}
/// dst = *(u32 *)(src + off).
const fn ldx_w(dst: u8, src: u8, off: i16) -> Asm {
    ins(0x61, dst, src, off, 0)
}
/// dst = *(u16 *)(src + off).
const fn ldx_h(dst: u8, src: u8, off: i16) -> Asm {
    ins(0x69, dst, src, off, 0)
}
/// dst = *(u8 *)(src + off).
const fn ldx_b(dst: u8, src: u8, off: i16) -> Asm {
    ins(0x71, dst, src, off, 0)
}
/// *(u32 *)(dst + off) = src.
const fn stx_w(dst: u8, src: u8, off: i16) -> Asm {
    ins(0x63, dst, src, off, 0)
}
/// *(u16 *)(dst + off) = src.
const fn stx_h(dst: u8, src: u8, off: i16) -> Asm {
    ins(0x6b, dst, src, off, 0)
}
/// *(u8 *)(dst + off) = src.
const fn stx_b(dst: u8, src: u8, off: i16) -> Asm {
    ins(0x73, dst, src, off, 0)
}
/// *(u64 *)(dst + off) = imm.
const fn st_dw(dst: u8, off: i16, imm: i32) -> Asm {
    ins(0x7a, dst, 0, off, imm)
}
/// Atomic *(u64 *)(dst + off) += src.
const fn atomic_add_dw(dst: u8, src: u8, off: i16) -> Asm {
    ins(0xdb, dst, src, off, 0)
}
/// if dst > src (unsigned) goto `to`.
const fn jgt(dst: u8, src: u8, to: &'static str) -> Asm {
    jmp(0x2d, dst, src, 0, to)
}
/// if dst == imm goto `to`.
const fn jeq_imm(dst: u8, imm: i32, to: &'static str) -> Asm {
    jmp(0x15, dst, 0, imm, to)
}
/// if dst != imm goto `to`.
const fn jne_imm(dst: u8, imm: i32, to: &'static str) -> Asm {
    jmp(0x55, dst, 0, imm, to)
}
/// goto `to`.
const fn ja(to: &'static str) -> Asm {
    jmp(0x05, 0, 0, 0, to)
}
const fn call(helper: i32) -> Asm {
    ins(0x85, 0, 0, 0, helper)
}
const fn exit() -> Asm {
    ins(0x95, 0, 0, 0, 0)
}
/// dst = the map of fd `fd` (two instruction slots).
fn ld_map(dst: u8, fd: RawFd) -> [Asm; 2] {
    [ins(0x18, dst, 1, 0, fd), ins(0, 0, 0, 0, 0)]
}

// The key on the stack: fp-56 .. fp-1 (see `FastKey`); the socket filter's copy of the IP
// header (IPv4: 20 bytes, IPv6: 40): fp-96 .. fp-57.
const K_IFINDEX: i16 = -56;
const K_MACS: i16 = -52;
const K_ETHERTYPE: i16 = -40;
const K_PROTO: i16 = -38;
const K_IP_SRC: i16 = -36;
const K_IP_DST: i16 = -20;
const K_PORTS: i16 = -4;
const IP_COPY: i16 = -96;
/// EtherTypes IPv4 (0x0800) and IPv6 (0x86dd) as a 16-bit load of their two bytes reads on
/// this little-endian machine; the IPv4 flags/offset halfword's fragment bits likewise (MF and
/// the offset).
const LE_ETH_IPV4: i32 = 0x0008;
const LE_ETH_IPV6: i32 = 0xdd86;
const LE_FRAG_BITS: i32 = 0xff3f;

/// Zeroes the key on the stack.
fn zero_key() -> Vec<Asm> {
    (0..7).map(|i| st_dw(R10, K_IFINDEX + 8 * i, 0)).collect()
}

/// Copies the 16 bytes at `src + from` to the key's field at `to` (4 words through R1).
fn copy16(src: u8, from: i16, to: i16) -> Vec<Asm> {
    (0..4)
        .flat_map(|i| [ldx_w(R1, src, from + 4 * i), stx_w(R10, R1, to + 4 * i)])
        .collect()
}

/// The tcx ingress program: the key from the input ifindex and the frame's headers; a hit is
/// counted and redirected to the entry's output interface; anything else (a tagged, short or
/// keyless frame, a miss) goes on (`TCX_NEXT`).
fn tc_program(map_fd: RawFd) -> Vec<Insn> {
    let mut p = vec![
        mov(R6, R1),
        ldx_w(R5, R6, SKB_VLAN_PRESENT),
        jne_imm(R5, 0, "pass"),
        ldx_w(R2, R6, SKB_DATA),
        ldx_w(R3, R6, SKB_DATA_END),
        mov(R4, R2),
        add_imm(R4, 14),
        jgt(R4, R3, "pass"),
    ];
    p.extend(zero_key());
    p.extend([
        ldx_w(R5, R6, SKB_IFINDEX),
        stx_w(R10, R5, K_IFINDEX),
        ldx_w(R5, R2, 0),
        stx_w(R10, R5, K_MACS),
        ldx_w(R5, R2, 4),
        stx_w(R10, R5, K_MACS + 4),
        ldx_w(R5, R2, 8),
        stx_w(R10, R5, K_MACS + 8),
        ldx_h(R5, R2, 12),
        stx_h(R10, R5, K_ETHERTYPE),
        jeq_imm(R5, LE_ETH_IPV6, "ipv6"),
        jne_imm(R5, LE_ETH_IPV4, "lookup"),
        // IPv4: a 20-byte header, not a fragment.
        mov(R4, R2),
        add_imm(R4, 34),
        jgt(R4, R3, "pass"),
        ldx_b(R5, R2, 14),
        jne_imm(R5, 0x45, "pass"),
        ldx_h(R5, R2, 20),
        and_imm(R5, LE_FRAG_BITS),
        jne_imm(R5, 0, "pass"),
        ldx_b(R5, R2, 23),
        stx_b(R10, R5, K_PROTO),
        ldx_w(R1, R2, 26),
        stx_w(R10, R1, K_IP_SRC),
        ldx_w(R1, R2, 30),
        stx_w(R10, R1, K_IP_DST),
        jeq_imm(R5, 6, "ports4"),
        jeq_imm(R5, 17, "ports4"),
        ja("lookup"),
        Asm::L("ports4"),
        mov(R4, R2),
        add_imm(R4, 38),
        jgt(R4, R3, "pass"),
        ldx_w(R1, R2, 34),
        stx_w(R10, R1, K_PORTS),
        ja("lookup"),
        // IPv6: next header TCP, UDP or ICMPv6.
        Asm::L("ipv6"),
        mov(R4, R2),
        add_imm(R4, 54),
        jgt(R4, R3, "pass"),
        ldx_b(R5, R2, 14),
        and_imm(R5, 0xf0),
        jne_imm(R5, 0x60, "pass"),
        ldx_b(R5, R2, 20),
        jeq_imm(R5, 6, "v6"),
        jeq_imm(R5, 17, "v6"),
        jne_imm(R5, 58, "pass"),
        Asm::L("v6"),
        stx_b(R10, R5, K_PROTO),
    ]);
    p.extend(copy16(R2, 22, K_IP_SRC));
    p.extend(copy16(R2, 38, K_IP_DST));
    p.extend([
        jeq_imm(R5, 58, "lookup"),
        mov(R4, R2),
        add_imm(R4, 58),
        jgt(R4, R3, "pass"),
        ldx_w(R1, R2, 54),
        stx_w(R10, R1, K_PORTS),
        Asm::L("lookup"),
    ]);
    p.extend(ld_map(R1, map_fd));
    p.extend([
        mov(R2, R10),
        add_imm(R2, K_IFINDEX.into()),
        call(FN_MAP_LOOKUP_ELEM),
        jeq_imm(R0, 0, "pass"),
        mov_imm(R1, 1),
        atomic_add_dw(R0, R1, 8),
        ldx_w(R1, R6, SKB_LEN),
        atomic_add_dw(R0, R1, 16),
        ldx_w(R1, R0, 0),
        mov_imm(R2, 0),
        call(FN_REDIRECT),
        exit(),
        Asm::L("pass"),
        mov_imm(R0, TCX_NEXT),
        exit(),
    ]);
    assemble(&p)
}

/// The packet-socket filter: 0 (skip the frame) when the tcx program will forward it, else
/// the whole frame. The same key, read with `bpf_skb_load_bytes`.
fn socket_filter(map_fd: RawFd) -> Vec<Insn> {
    let load = |off: i32, to: i16, len: i32| {
        [
            mov(R1, R6),
            mov_imm(R2, off),
            mov(R3, R10),
            add_imm(R3, to.into()),
            mov_imm(R4, len),
            call(FN_SKB_LOAD_BYTES),
            jne_imm(R0, 0, "accept"),
        ]
    };
    let mut p = vec![
        mov(R6, R1),
        ldx_w(R5, R6, SKB_VLAN_PRESENT),
        jne_imm(R5, 0, "accept"),
    ];
    p.extend(zero_key());
    p.extend([ldx_w(R5, R6, SKB_IFINDEX), stx_w(R10, R5, K_IFINDEX)]);
    p.extend(load(0, K_MACS, 14));
    p.extend([
        ldx_h(R5, R10, K_ETHERTYPE),
        jeq_imm(R5, LE_ETH_IPV6, "ipv6"),
        jne_imm(R5, LE_ETH_IPV4, "lookup"),
    ]);
    // IPv4: a 20-byte header, not a fragment.
    p.extend(load(14, IP_COPY, 20));
    p.extend([
        ldx_b(R5, R10, IP_COPY),
        jne_imm(R5, 0x45, "accept"),
        ldx_h(R5, R10, IP_COPY + 6),
        and_imm(R5, LE_FRAG_BITS),
        jne_imm(R5, 0, "accept"),
        ldx_b(R5, R10, IP_COPY + 9),
        stx_b(R10, R5, K_PROTO),
        ldx_w(R1, R10, IP_COPY + 12),
        stx_w(R10, R1, K_IP_SRC),
        ldx_w(R1, R10, IP_COPY + 16),
        stx_w(R10, R1, K_IP_DST),
        jeq_imm(R5, 6, "ports4"),
        jeq_imm(R5, 17, "ports4"),
        ja("lookup"),
        Asm::L("ports4"),
    ]);
    p.extend(load(34, K_PORTS, 4));
    p.extend([ja("lookup"), Asm::L("ipv6")]);
    // IPv6: next header TCP, UDP or ICMPv6.
    p.extend(load(14, IP_COPY, 40));
    p.extend([
        ldx_b(R5, R10, IP_COPY),
        and_imm(R5, 0xf0),
        jne_imm(R5, 0x60, "accept"),
        ldx_b(R5, R10, IP_COPY + 6),
        jeq_imm(R5, 6, "v6"),
        jeq_imm(R5, 17, "v6"),
        jne_imm(R5, 58, "accept"),
        Asm::L("v6"),
        stx_b(R10, R5, K_PROTO),
    ]);
    p.extend(copy16(R10, IP_COPY + 8, K_IP_SRC));
    p.extend(copy16(R10, IP_COPY + 24, K_IP_DST));
    p.push(jeq_imm(R5, 58, "lookup"));
    p.extend(load(54, K_PORTS, 4));
    p.push(Asm::L("lookup"));
    p.extend(ld_map(R1, map_fd));
    p.extend([
        mov(R2, R10),
        add_imm(R2, K_IFINDEX.into()),
        call(FN_MAP_LOOKUP_ELEM),
        jeq_imm(R0, 0, "accept"),
        mov_imm(R0, 0),
        exit(),
        Asm::L("accept"),
        mov_imm(R0, -1),
        exit(),
    ]);
    assemble(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_headers_up_to_the_ports() {
        let mut f = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x06];
        f.resize(60, 0xee);
        let k = FastKey::of_frame(7, &f).unwrap();
        assert_eq!(
            (k.dst, k.src, k.ethertype),
            ([1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], 0x0806)
        );
        assert_eq!((k.ip_proto, k.ports), (0, [0; 4]), "not IP: no L3/L4 part");
        let b = k.bytes();
        assert_eq!(&b[4..18], &f[..14]);
        assert!(b[18..].iter().all(|&x| x == 0));
        assert_eq!(b.len(), KEY_LEN);
        assert_eq!(FastKey::from_bytes(&b), k);
        assert!(FastKey::of_frame(7, &f[..13]).is_none());

        // IPv4 UDP: protocol, addresses and ports as in the packet.
        let mut ip = f[..12].to_vec();
        ip.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&[198, 18, 0, 1, 198, 18, 0, 2, 0x13, 0x88, 0, 53, 0, 8, 0, 0]);
        let k = FastKey::of_frame(7, &ip).unwrap();
        assert_eq!(k.ip_proto, 17);
        assert_eq!(
            (k.ip_src, k.ip_dst),
            (FastKey::v4([198, 18, 0, 1]), FastKey::v4([198, 18, 0, 2]))
        );
        assert_eq!(k.ports, [0x13, 0x88, 0, 53]);
        let b = k.bytes();
        assert_eq!(
            (b[18], &b[20..24], &b[36..40], &b[52..56]),
            (17, &ip[26..30], &ip[30..34], &ip[34..38])
        );
        assert!(b[24..36].iter().chain(&b[40..52]).all(|&x| x == 0));
        assert_eq!(FastKey::from_bytes(&b), k);
        // ICMP: no ports.
        let mut icmp = ip.clone();
        icmp[23] = 1;
        assert_eq!(FastKey::of_frame(7, &icmp).unwrap().ports, [0; 4]);
        // Options, a fragment (MF set or an offset), a short header: no key.
        let mut opt = ip.clone();
        opt[14] = 0x46;
        assert!(FastKey::of_frame(7, &opt).is_none());
        let mut mf = ip.clone();
        mf[20] = 0x20;
        assert!(FastKey::of_frame(7, &mf).is_none());
        let mut off = ip.clone();
        off[21] = 1;
        assert!(FastKey::of_frame(7, &off).is_none());
        assert!(FastKey::of_frame(7, &ip[..30]).is_none());

        // IPv6 TCP: next header, addresses and ports as in the packet.
        let mut v6 = f[..12].to_vec();
        v6.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, 6, 64]);
        let src: Vec<u8> = (0..16).map(|i| 0x20 + i).collect();
        let dst: Vec<u8> = (0..16).map(|i| 0x40 + i).collect();
        v6.extend_from_slice(&src);
        v6.extend_from_slice(&dst);
        v6.extend_from_slice(&[0x9c, 0x40, 0, 80]);
        v6.resize(74, 0);
        let k = FastKey::of_frame(7, &v6).unwrap();
        assert_eq!(
            (k.ethertype, k.ip_proto, k.ports),
            (0x86dd, 6, [0x9c, 0x40, 0, 80])
        );
        assert_eq!((&k.ip_src[..], &k.ip_dst[..]), (&src[..], &dst[..]));
        let b = k.bytes();
        assert_eq!(
            (b[18], &b[20..36], &b[36..52], &b[52..56]),
            (6, &v6[22..38], &v6[38..54], &v6[54..58])
        );
        assert_eq!(FastKey::from_bytes(&b), k);
        // ICMPv6: no ports.
        let mut icmp6 = v6.clone();
        icmp6[20] = 58;
        assert_eq!(FastKey::of_frame(7, &icmp6).unwrap().ports, [0; 4]);
        // An extension header (hop-by-hop, fragment), another version, a short header or
        // missing ports: no key.
        for nh in [0, 44, 59] {
            let mut x = v6.clone();
            x[20] = nh;
            assert!(FastKey::of_frame(7, &x).is_none(), "next header {nh}");
        }
        let mut v4in6 = v6.clone();
        v4in6[14] = 0x40;
        assert!(FastKey::of_frame(7, &v4in6).is_none());
        assert!(FastKey::of_frame(7, &v6[..50]).is_none());
        assert!(FastKey::of_frame(7, &v6[..56]).is_none());
    }

    #[test]
    fn labels_resolve_to_the_instruction_after_them() {
        let p = assemble(&[
            jeq_imm(R0, 0, "b"),
            mov_imm(R0, 1),
            Asm::L("b"),
            ja("end"),
            mov_imm(R0, 2),
            Asm::L("end"),
            exit(),
        ]);
        assert_eq!(p.len(), 5);
        assert_eq!((p[0].off, p[2].off), (1, 1));
        // Every jump of both programs lands inside the program.
        for prog in [tc_program(3), socket_filter(3)] {
            for (pc, i) in prog.iter().enumerate() {
                if i.code & 0x07 == 0x05 && i.code != 0x85 && i.code != 0x95 {
                    let to = i64::try_from(pc).unwrap() + 1 + i64::from(i.off);
                    assert!(
                        to > i64::try_from(pc).unwrap() && to < i64::try_from(prog.len()).unwrap()
                    );
                }
            }
        }
    }
}
