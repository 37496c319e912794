//! With the `count-allocations` feature only (benchmarks; the shipped build has no such
//! code): a global allocator that counts allocations, and a counter metric
//! `sluice_allocations` brought up to date at the start and end of each request's callbacks,
//! so a benchmark can read how many allocations a request causes in the guest (the SDK's and
//! the host's copies into guest memory included).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::host;

/// Allocations (and reallocations) so far.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// The part of `ALLOCATIONS` already added to the metric.
static REPORTED: AtomicU64 = AtomicU64::new(0);
/// The metric's id, `u32::MAX` until defined.
static METRIC: AtomicU32 = AtomicU32::new(u32::MAX);

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees are the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Defines the metric (at configure time).
pub fn define() {
    if let Some(id) = host::define_counter("sluice_allocations") {
        METRIC.store(id, Ordering::Relaxed);
    }
}

/// Adds the allocations made since the last flush to the metric.
pub fn flush() {
    let id = METRIC.load(Ordering::Relaxed);
    if id == u32::MAX {
        return;
    }
    let now = ALLOCATIONS.load(Ordering::Relaxed);
    let before = REPORTED.swap(now, Ordering::Relaxed);
    host::increment(id, now.saturating_sub(before));
}
