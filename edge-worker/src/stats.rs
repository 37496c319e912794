//! Counters of one isolate, logged with failures and shown to tests in debug headers.

use std::cell::Cell;
use std::thread::LocalKey;

/// A counter of this isolate.
pub type Counter = LocalKey<Cell<u64>>;

thread_local! {
    static OBJECT_FAILURES: Cell<u64> = const { Cell::new(0) };
    /// Calls made to limiter objects (decide, refund and lease calls, in requests and in the
    /// background).
    pub static OBJECT_CALLS: Cell<u64> = const { Cell::new(0) };
    /// Slices granted to a request waiting for one.
    pub static LEASE_ACQUIRED: Cell<u64> = const { Cell::new(0) };
    /// Slices granted to a background renewal.
    pub static LEASE_RENEWED: Cell<u64> = const { Cell::new(0) };
    /// Grants that expired with units unspent.
    pub static LEASE_EXPIRED: Cell<u64> = const { Cell::new(0) };
    /// Units returned to objects (expired, or taken for a denied request and no longer held).
    pub static LEASE_RETURNED: Cell<u64> = const { Cell::new(0) };
    /// Rule decisions made from a slice, with no object call.
    pub static LEASE_LOCAL: Cell<u64> = const { Cell::new(0) };
    /// Requests denied from the negative cache.
    pub static NEGATIVE_CACHE: Cell<u64> = const { Cell::new(0) };
    /// Requests decided.
    pub static REQUESTS: Cell<u64> = const { Cell::new(0) };
    /// Passed requests a soft limit marked (one per marking rule).
    pub static MARKED: Cell<u64> = const { Cell::new(0) };
    /// Requests held by a delay rule (counted when the hold starts).
    pub static HELD: Cell<u64> = const { Cell::new(0) };
    /// Requests a delay rule would have held, denied because `shaping.max_held` were held.
    pub static HELD_REFUSED: Cell<u64> = const { Cell::new(0) };
    /// Held requests whose client left before their release (their units given back).
    pub static HELD_ABANDONED: Cell<u64> = const { Cell::new(0) };
    /// Concurrency slots given back to their objects (release calls sent, answered or not).
    pub static RELEASED: Cell<u64> = const { Cell::new(0) };
}

/// Adds `n` to `counter`.
pub fn count(counter: &'static Counter, n: u64) {
    counter.with(|c| c.set(c.get().saturating_add(n)));
}

/// Counts a failed limiter object call.
pub fn object_failed() {
    count(&OBJECT_FAILURES, 1);
}

/// Failed limiter object calls in this isolate so far.
pub fn object_failures() -> u64 {
    OBJECT_FAILURES.with(Cell::get)
}

/// Every counter, as `name=value` pairs separated by `,` (a debug header).
pub fn summary() -> String {
    let counters: [(&str, &'static Counter); 14] = [
        ("requests", &REQUESTS),
        ("object_calls", &OBJECT_CALLS),
        ("object_failures", &OBJECT_FAILURES),
        ("lease_acquired", &LEASE_ACQUIRED),
        ("lease_renewed", &LEASE_RENEWED),
        ("lease_returned", &LEASE_RETURNED),
        ("lease_expired", &LEASE_EXPIRED),
        ("lease_local", &LEASE_LOCAL),
        ("negative_cache", &NEGATIVE_CACHE),
        ("marked", &MARKED),
        ("held", &HELD),
        ("held_refused", &HELD_REFUSED),
        ("held_abandoned", &HELD_ABANDONED),
        ("released", &RELEASED),
    ];
    counters
        .iter()
        .map(|(name, counter)| format!("{name}={}", counter.with(Cell::get)))
        .collect::<Vec<_>>()
        .join(",")
}
