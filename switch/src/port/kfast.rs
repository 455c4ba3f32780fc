//! The in-kernel fast path's mechanism: a tcx ingress program and a packet-socket filter that
//! share one BPF hash map of (input interface, destination MAC, source MAC, EtherType) →
//! output interface.
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
//! An entry inserted between the two lookups of one
//! frame would forward that frame twice; callers insert an entry after they have forwarded the
//! frame that taught it, so the window is that one frame's.
//!
//! The programs are a few dozen BPF instructions assembled here (no compiler, no object
//! file, no BTF): the kernel's verifier checks them at load, and its log is returned in the
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
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_LOAD: libc::c_long = 5;
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

/// Bytes of a key: input ifindex (native endian), destination MAC, source MAC, EtherType (as in
/// the frame), two zero bytes.
pub const KEY_LEN: usize = 20;
/// Bytes of a value: output ifindex, padding, packets, bytes.
const VALUE_LEN: usize = 24;

/// A fast-path entry's key: frames received on `in_ifindex` from `src` to `dst` with
/// EtherType `ethertype` (untagged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FastKey {
    pub in_ifindex: u32,
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: u16,
}

impl FastKey {
    /// The key of an Ethernet frame received on `in_ifindex` (None: shorter than an Ethernet
    /// header).
    pub fn of_frame(in_ifindex: u32, frame: &[u8]) -> Option<FastKey> {
        let dst = frame.get(0..6)?.try_into().ok()?;
        let src = frame.get(6..12)?.try_into().ok()?;
        let t = frame.get(12..14)?;
        Some(FastKey {
            in_ifindex,
            dst,
            src,
            ethertype: u16::from_be_bytes([t[0], t[1]]),
        })
    }

    /// The map's byte layout: what the programs build from the frame's first 12 bytes.
    fn bytes(&self) -> [u8; KEY_LEN] {
        let mut k = [0u8; KEY_LEN];
        k[0..4].copy_from_slice(&self.in_ifindex.to_ne_bytes());
        k[4..10].copy_from_slice(&self.dst);
        k[10..16].copy_from_slice(&self.src);
        k[16..18].copy_from_slice(&self.ethertype.to_be_bytes());
        k
    }

    fn from_bytes(k: &[u8; KEY_LEN]) -> FastKey {
        let mut i = [0u8; 4];
        i.copy_from_slice(&k[0..4]);
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&k[4..10]);
        let mut src = [0u8; 6];
        src.copy_from_slice(&k[10..16]);
        FastKey {
            in_ifindex: u32::from_ne_bytes(i),
            dst,
            src,
            ethertype: u16::from_be_bytes([k[16], k[17]]),
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
        let prog: libc::c_int = self.sock_prog.as_raw_fd();
        // SAFETY: passes a live c_int and its exact size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_ATTACH_BPF,
                std::ptr::addr_of!(prog).cast::<libc::c_void>(),
                socklen::<libc::c_int>(),
            )
        };
        if r < 0 {
            return Err(ctx("SO_ATTACH_BPF", io::Error::last_os_error()));
        }
        Ok(())
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
        let c = self.counters(key)?;
        if c.is_some() {
            match self.elem(BPF_MAP_DELETE_ELEM, &key.bytes(), std::ptr::null_mut()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(ctx("BPF_MAP_DELETE_ELEM", e)),
            }
        }
        Ok(c)
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

fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(0)
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

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R10: u8 = 10;

const fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}
/// dst = src (64-bit).
const fn mov(dst: u8, src: u8) -> Insn {
    ins(0xbf, dst, src, 0, 0)
}
/// dst = imm (64-bit, sign-extended).
const fn mov_imm(dst: u8, imm: i32) -> Insn {
    ins(0xb7, dst, 0, 0, imm)
}
/// dst += imm (64-bit).
const fn add_imm(dst: u8, imm: i32) -> Insn {
    ins(0x07, dst, 0, 0, imm)
}
/// dst = *(u32 *)(src + off).
const fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    ins(0x61, dst, src, off, 0)
}
/// dst = *(u16 *)(src + off).
const fn ldx_h(dst: u8, src: u8, off: i16) -> Insn {
    ins(0x69, dst, src, off, 0)
}
/// *(u32 *)(dst + off) = src.
const fn stx_w(dst: u8, src: u8, off: i16) -> Insn {
    ins(0x63, dst, src, off, 0)
}
/// *(u16 *)(dst + off) = imm.
const fn st_h(dst: u8, off: i16, imm: i32) -> Insn {
    ins(0x6a, dst, 0, off, imm)
}
/// Atomic *(u64 *)(dst + off) += src.
const fn atomic_add_dw(dst: u8, src: u8, off: i16) -> Insn {
    ins(0xdb, dst, src, off, 0)
}
/// if dst > src (unsigned) goto +off.
const fn jgt(dst: u8, src: u8, off: i16) -> Insn {
    ins(0x2d, dst, src, off, 0)
}
/// if dst == imm goto +off.
const fn jeq_imm(dst: u8, imm: i32, off: i16) -> Insn {
    ins(0x15, dst, 0, off, imm)
}
/// if dst != imm goto +off.
const fn jne_imm(dst: u8, imm: i32, off: i16) -> Insn {
    ins(0x55, dst, 0, off, imm)
}
const fn call(helper: i32) -> Insn {
    ins(0x85, 0, 0, 0, helper)
}
const fn exit() -> Insn {
    ins(0x95, 0, 0, 0, 0)
}
/// dst = the map of fd `fd` (two instructions).
fn ld_map(dst: u8, fd: RawFd) -> [Insn; 2] {
    [ins(0x18, dst, 1, 0, fd), ins(0, 0, 0, 0, 0)]
}

/// The tcx ingress program: key from the input ifindex and the frame's Ethernet header; a hit
/// is counted and redirected to the entry's output interface; anything else (a tagged or
/// short frame, a miss) goes on (`TCX_NEXT`). Stack: the key at fp-20.
fn tc_program(map_fd: RawFd) -> Vec<Insn> {
    let mut p = vec![
        mov(R6, R1),
        ldx_w(R5, R6, SKB_VLAN_PRESENT),
        jne_imm(R5, 0, 29), // tag in the metadata -> pass
        ldx_w(R2, R6, SKB_DATA),
        ldx_w(R3, R6, SKB_DATA_END),
        mov(R4, R2),
        add_imm(R4, 14),
        jgt(R4, R3, 24), // shorter than an Ethernet header -> pass
        ldx_w(R5, R6, SKB_IFINDEX),
        stx_w(R10, R5, -20),
        ldx_w(R5, R2, 0),
        stx_w(R10, R5, -16),
        ldx_w(R5, R2, 4),
        stx_w(R10, R5, -12),
        ldx_w(R5, R2, 8),
        stx_w(R10, R5, -8),
        ldx_h(R5, R2, 12),
        stx_w(R10, R5, -4), // EtherType, then two zero bytes
    ];
    p.extend(ld_map(R1, map_fd));
    p.extend([
        mov(R2, R10),
        add_imm(R2, -20),
        call(FN_MAP_LOOKUP_ELEM),
        jeq_imm(R0, 0, 8), // miss -> pass
        mov_imm(R1, 1),
        atomic_add_dw(R0, R1, 8),
        ldx_w(R1, R6, SKB_LEN),
        atomic_add_dw(R0, R1, 16),
        ldx_w(R1, R0, 0),
        mov_imm(R2, 0),
        call(FN_REDIRECT),
        exit(),
        // pass:
        mov_imm(R0, TCX_NEXT),
        exit(),
    ]);
    p
}

/// The packet-socket filter: 0 (skip the frame) when the tcx program will forward it, else
/// the whole frame. Stack: the key at fp-20.
fn socket_filter(map_fd: RawFd) -> Vec<Insn> {
    let mut p = vec![
        mov(R6, R1),
        ldx_w(R5, R6, SKB_VLAN_PRESENT),
        jne_imm(R5, 0, 18), // tag in the metadata -> accept
        ldx_w(R5, R6, SKB_IFINDEX),
        stx_w(R10, R5, -20),
        st_h(R10, -2, 0),
        mov(R1, R6),
        mov_imm(R2, 0),
        mov(R3, R10),
        add_imm(R3, -16),
        mov_imm(R4, 14),
        call(FN_SKB_LOAD_BYTES),
        jne_imm(R0, 0, 8), // shorter than an Ethernet header -> accept
    ];
    p.extend(ld_map(R1, map_fd));
    p.extend([
        mov(R2, R10),
        add_imm(R2, -20),
        call(FN_MAP_LOOKUP_ELEM),
        jeq_imm(R0, 0, 2), // miss -> accept
        mov_imm(R0, 0),
        exit(),
        // accept:
        mov_imm(R0, -1),
        exit(),
    ]);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_ifindex_then_the_ethernet_header() {
        let frame = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x06, 0xff];
        let k = FastKey::of_frame(7, &frame).unwrap();
        assert_eq!(k.dst, [1, 2, 3, 4, 5, 6]);
        assert_eq!(k.src, [7, 8, 9, 10, 11, 12]);
        assert_eq!(k.ethertype, 0x0806);
        let b = k.bytes();
        assert_eq!(&b[4..18], &frame[..14]);
        assert_eq!(&b[18..], &[0, 0]);
        assert_eq!(FastKey::from_bytes(&b), k);
        assert!(FastKey::of_frame(7, &frame[..13]).is_none());
    }

    #[test]
    fn jumps_land_on_the_pass_and_accept_blocks() {
        // Every conditional jump in both programs targets an instruction inside the program
        // that sets r0 and exits (the verifier would refuse a jump out of range; this checks
        // it lands where intended).
        for (prog, targets) in [
            (tc_program(3), vec![(2usize, 32usize), (7, 32), (23, 32)]),
            (socket_filter(3), vec![(2, 21), (12, 21), (18, 21)]),
        ] {
            for (at, want) in targets {
                let i = prog[at];
                let to =
                    usize::try_from(i64::try_from(at).unwrap() + 1 + i64::from(i.off)).unwrap();
                assert_eq!(to, want, "jump at {at}");
                assert_eq!(prog[to].code, 0xb7, "target {to} sets r0");
                assert_eq!(prog[to + 1].code, 0x95);
            }
        }
    }
}
