//! A quota: how many units a key may spend per period, and how many at once.

use crate::time::Nanos;

/// `limit` units per `period`; `burst` is the most that may be spent at once (GCRA only; the
/// window algorithms always have `burst == limit`). Cannot be built with a zero in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    limit: u64,
    period: Nanos,
    burst: u64,
}

/// Why a quota could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    /// `limit` is 0.
    ZeroLimit,
    /// `period` is 0.
    ZeroPeriod,
    /// `burst` is 0.
    ZeroBurst,
    /// `period / limit` would be below one nanosecond.
    TooFine,
}

impl core::fmt::Display for QuotaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            QuotaError::ZeroLimit => "must be at least 1",
            QuotaError::ZeroPeriod => "must be longer than zero",
            QuotaError::ZeroBurst => "must be at least 1",
            QuotaError::TooFine => "allows more than one request per nanosecond",
        })
    }
}

impl Quota {
    /// `limit` units per `period` nanoseconds, up to `burst` at once.
    ///
    /// ```
    /// use sluice_core::{Quota, QuotaError};
    ///
    /// let per_minute = Quota::new(100, 60_000_000_000, 20).unwrap();
    /// assert_eq!(per_minute.emission_interval(), 600_000_000);
    /// assert_eq!(Quota::new(2, 1, 2), Err(QuotaError::TooFine));
    /// ```
    pub fn new(limit: u64, period: Nanos, burst: u64) -> Result<Quota, QuotaError> {
        if limit == 0 {
            return Err(QuotaError::ZeroLimit);
        }
        if period == 0 {
            return Err(QuotaError::ZeroPeriod);
        }
        if burst == 0 {
            return Err(QuotaError::ZeroBurst);
        }
        if period / limit == 0 {
            return Err(QuotaError::TooFine);
        }
        Ok(Quota {
            limit,
            period,
            burst,
        })
    }

    /// Units per period.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The period in nanoseconds.
    pub fn period(&self) -> Nanos {
        self.period
    }

    /// Units that may be spent at once.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Time for one unit to be replenished (GCRA's emission interval).
    pub fn emission_interval(&self) -> Nanos {
        self.period / self.limit
    }
}
