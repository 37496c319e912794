//! The sluice core against governor: keyed GCRA decisions per second, with the same quota,
//! the same keys, the same clock and the same key distributions.
//!
//! - [`keys`]: the keys (client addresses) and the order they arrive in: one hot key, or
//!   100,000 keys drawn uniformly.
//! - [`contenders`]: the limiters compared, each deciding one request for one key:
//!   governor's `DefaultKeyedRateLimiter`; sluice's `Limiter::check` over a shared CAS store
//!   (the path a request takes in the filter, with the store in memory); sluice's
//!   `Limit::decide` over a sharded map of states (the algorithm alone, laid out like
//!   governor's map).
//! - [`sharded`]: the two sharded stores sluice uses above, safe to share between threads.
//! - [`measure`]: interleaved rounds on 1 or more threads, and ratios taken within a round.

pub mod contenders;
pub mod keys;
pub mod measure;
pub mod sharded;
