//! With the `count-allocations` feature only (benchmarks and the allocation test; the shipped
//! build has no such code): a global allocator that counts allocations, told apart by who
//! asked:
//!
//! - `sluice_host_copies`: allocations made while the filter is inside a host call that
//!   answers a buffer (the header map, the peer address, a shared-data value): the host
//!   copies its answer into guest memory it obtains from the guest's allocator, which the ABI
//!   requires;
//! - `sluice_context_allocations`: the box of each HTTP context, which the SDK's dispatcher
//!   requires (`RootContext::create_http_context` returns a `Box<dyn HttpContext>`);
//! - `sluice_allocations`: every other allocation: the filter's, the policy's and the core's.
//!
//! Both are counter metrics brought up to date at the start and end of each request's
//! callbacks, so a test can read how many allocations a request causes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::host;

/// Allocations (and reallocations) so far, outside and inside host calls.
static OWN: AtomicU64 = AtomicU64::new(0);
static HOST: AtomicU64 = AtomicU64::new(0);
static CONTEXT: AtomicU64 = AtomicU64::new(0);
/// Set while the filter is inside a host call that answers a buffer.
static IN_HOST_CALL: AtomicBool = AtomicBool::new(false);
/// Set while the filter boxes an HTTP context for the SDK.
static IN_CONTEXT: AtomicBool = AtomicBool::new(false);

struct Counting;

fn count() {
    if IN_HOST_CALL.load(Ordering::Relaxed) {
        HOST.fetch_add(1, Ordering::Relaxed);
    } else if IN_CONTEXT.load(Ordering::Relaxed) {
        CONTEXT.fetch_add(1, Ordering::Relaxed);
    } else {
        OWN.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's guarantees are the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
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

/// Runs a host call, counting the allocations made meanwhile as the host's copies.
pub fn in_host_call<T>(call: impl FnOnce() -> T) -> T {
    IN_HOST_CALL.store(true, Ordering::Relaxed);
    let result = call();
    IN_HOST_CALL.store(false, Ordering::Relaxed);
    result
}

/// Boxes an HTTP context for the SDK, counting the allocation as the context's.
pub fn context_box<T>(make: impl FnOnce() -> T) -> T {
    IN_CONTEXT.store(true, Ordering::Relaxed);
    let made = make();
    IN_CONTEXT.store(false, Ordering::Relaxed);
    made
}

/// A counter metric and the part of its count already reported.
struct Reported {
    metric: AtomicU32,
    reported: AtomicU64,
}

static OWN_METRIC: Reported = Reported {
    metric: AtomicU32::new(u32::MAX),
    reported: AtomicU64::new(0),
};
static HOST_METRIC: Reported = Reported {
    metric: AtomicU32::new(u32::MAX),
    reported: AtomicU64::new(0),
};
static CONTEXT_METRIC: Reported = Reported {
    metric: AtomicU32::new(u32::MAX),
    reported: AtomicU64::new(0),
};

/// Defines the metrics (at configure time).
pub fn define() {
    for (name, reported) in [
        ("sluice_allocations", &OWN_METRIC),
        ("sluice_host_copies", &HOST_METRIC),
        ("sluice_context_allocations", &CONTEXT_METRIC),
    ] {
        if let Some(id) = host::define_counter(name) {
            reported.metric.store(id, Ordering::Relaxed);
        }
    }
}

/// Adds the allocations made since the last flush to the metrics.
pub fn flush() {
    for (count, reported) in [
        (&OWN, &OWN_METRIC),
        (&HOST, &HOST_METRIC),
        (&CONTEXT, &CONTEXT_METRIC),
    ] {
        let id = reported.metric.load(Ordering::Relaxed);
        if id == u32::MAX {
            continue;
        }
        let now = count.load(Ordering::Relaxed);
        let before = reported.reported.swap(now, Ordering::Relaxed);
        host::increment(id, now.saturating_sub(before));
    }
}
