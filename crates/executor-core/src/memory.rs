//! Memory a script run allocates, counted per thread by a global allocator the binary
//! installs ([`CountingAllocator`]). Rhai's own size limits bound each value, but not
//! every way of keeping many of them (values stored into a map by index are measured
//! only when the map is next read), so the sandbox also checks the bytes its thread has
//! allocated since the run began, and ends a run that goes past
//! [`Limits::max_memory_bytes`](crate::Limits::max_memory_bytes).
//!
//! Without the allocator installed nothing is counted and only Rhai's limits apply.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Bytes allocated minus bytes freed on this thread (may go negative when this
    /// thread frees what another allocated). Const-initialised and without a destructor,
    /// so the allocator may touch it at any time.
    static NET_ALLOCATED: Cell<i64> = const { Cell::new(0) };
}

/// An allocator that counts each thread's net allocations and hands every call to `A`
/// (the binary picks the allocator; the counting is the same whichever it is).
pub struct CountingAllocator<A = System>(A);

impl<A> CountingAllocator<A> {
    /// Counts the allocations made through `inner`.
    pub const fn new(inner: A) -> Self {
        CountingAllocator(inner)
    }
}

fn count(bytes: i64) {
    let _ = NET_ALLOCATED.try_with(|net| net.set(net.get().wrapping_add(bytes)));
}

// SAFETY: every call is passed to the inner allocator unchanged; the counting has no
// effect on the memory handed out.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as i64);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as i64);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { self.0.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        new
    }
}

/// This thread's net allocated bytes so far (0 without [`CountingAllocator`]).
pub fn net_allocated() -> i64 {
    NET_ALLOCATED.try_with(Cell::get).unwrap_or(0)
}
