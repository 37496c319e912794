//! Time as the core sees it: plain numbers handed in by the caller.

/// Absolute time in nanoseconds since the Unix epoch, or a duration in nanoseconds.
pub type Nanos = u64;

/// Nanoseconds in a millisecond.
pub const NANOS_PER_MILLI: Nanos = 1_000_000;
/// Nanoseconds in a second.
pub const NANOS_PER_SEC: Nanos = 1_000_000_000;

/// Whole seconds, rounded up: a client told to wait `ceil` seconds is never early.
pub const fn ceil_secs(d: Nanos) -> u64 {
    d.div_ceil(NANOS_PER_SEC)
}
