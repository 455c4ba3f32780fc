//! Allocation counting for tests that assert "no allocation here": a global allocator that
//! forwards to the system's and counts, per thread, every allocation and reallocation.
//!
//! Include it once per test crate (`#[path = ".../tests/common/alloc_count.rs"] mod
//! alloc_count;`): it installs itself as that crate's `#[global_allocator]`. Counts are
//! per thread, so tests running in parallel do not see each other's allocations.

#![allow(dead_code, unreachable_pub)] // shared by several test crates

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

#[allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only forwards to System.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and reallocations made by this thread so far.
pub fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}
