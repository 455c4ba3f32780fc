//! A per-thread free list of frame buffers, so the datapath allocates nothing per packet.
//!
//! Every buffer has capacity [`BUF_CAPACITY`]: a 64 KB GSO frame plus Ethernet/VLAN headers
//! plus room for the 4 bytes of a VLAN tag put back on receive. A backend takes buffers with
//! [`take`] and receives straight into them (the [`Packet`](super::Packet) then owns the
//! buffer: no copy); the datapath gives them back with [`give`] after `send_batch`, or when a
//! frame is dropped. Buffers of another capacity (a PACKET_OUT's frame, a test's `Vec`) are
//! simply freed by `give`.
//!
//! Why per thread: the datapath thread is the only one that receives and sends, so a
//! thread-local list needs no lock and keeps the `PortBackend` trait unchanged. A backend
//! used from another thread (tests) gets its own list there. The list holds at most
//! [`MAX_FREE`] buffers; more are freed, so memory stays bounded after a burst.
//!
//! Memory: a buffer's pages become resident only where a frame was written, so buffers that
//! only ever carried small frames cost a page or two each.

use std::cell::RefCell;

/// Capacity of every pooled buffer.
pub const BUF_CAPACITY: usize = 65_536 + 512;
/// Buffers kept on one thread's free list at most.
pub const MAX_FREE: usize = 256;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with capacity [`BUF_CAPACITY`] (recycled when one is free).
pub fn take() -> Vec<u8> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(BUF_CAPACITY))
}

/// Returns a buffer to this thread's free list (cleared); buffers of another capacity, and
/// any beyond [`MAX_FREE`], are freed.
pub fn give(mut buf: Vec<u8>) {
    if buf.capacity() != BUF_CAPACITY {
        return;
    }
    buf.clear();
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < MAX_FREE {
            f.push(buf);
        }
    });
}

/// Buffers on this thread's free list.
pub fn free_count() -> usize {
    FREE.with(|f| f.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_recycled_and_bounded() {
        let a = take();
        assert_eq!(a.capacity(), BUF_CAPACITY);
        assert!(a.is_empty());
        let ptr = a.as_ptr();
        let before = free_count();
        let mut a = a;
        a.extend_from_slice(b"frame");
        give(a);
        assert_eq!(free_count(), before + 1);
        let b = take();
        assert_eq!(b.as_ptr(), ptr, "the freed buffer is reused");
        assert!(b.is_empty(), "a recycled buffer is cleared");
        // Foreign buffers are not kept.
        give(vec![0u8; 10]);
        assert_eq!(free_count(), before);
        // The list is bounded.
        let many: Vec<Vec<u8>> = (0..MAX_FREE + 5).map(|_| take()).collect();
        for v in many {
            give(v);
        }
        assert_eq!(free_count(), MAX_FREE);
        give(b);
        assert_eq!(free_count(), MAX_FREE);
    }
}
