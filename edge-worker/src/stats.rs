//! Counters of one isolate, logged with failures and shown to tests in debug headers.

use std::cell::Cell;

thread_local! {
    static OBJECT_FAILURES: Cell<u64> = const { Cell::new(0) };
}

/// Counts a failed limiter object call.
pub fn object_failed() {
    OBJECT_FAILURES.with(|count| count.set(count.get().saturating_add(1)));
}

/// Failed limiter object calls in this isolate so far.
pub fn object_failures() -> u64 {
    OBJECT_FAILURES.with(Cell::get)
}
