//! The rate-limiting algorithms. Each is a pure function from (previous state, now, cost, quota)
//! to (decision, new state).

use crate::quota::Quota;

/// Which algorithm a rule uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Generic cell rate algorithm: a token bucket of `burst` tokens refilled at
    /// `limit / period`. Exact `Retry-After`.
    Gcra,
    /// Counts per aligned window of `period`; up to 2×limit may pass around a window edge.
    FixedWindow,
    /// Current window plus the previous one weighted by how much of it still overlaps.
    SlidingWindow,
    /// Exact: remembers the time of every admitted unit within the last `period`.
    SlidingLog,
}

/// An algorithm with its quota: everything needed to decide for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub algorithm: Algorithm,
    pub quota: Quota,
}
