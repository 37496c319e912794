//! A global rule's `lease`: its holder (a proxy, through shared data, or an edge worker
//! isolate) reserves a slice of a key's quota from the service at once and spends it locally,
//! so most requests cost no call to the service.
//!
//! A slice is committed on the key's global count when it is granted, so the global count
//! never exceeds the limit; what a lease changes is when a unit is spent. A unit granted in
//! one period and spent in the next is the only over-admission, so in any window of the
//! rule's period at most `limit + holders × slice size` units are admitted
//! ([`LeaseConfig::bound`]). A holder that dies loses its unspent units: they stay counted
//! (under-admission, never double).

use serde_json::Value;
use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC};
use sluice_core::{Limit, Nanos};

use crate::duration::{DurationError, parse_period};
use crate::error::{ConfigError, Problem};
use crate::json::{self, Fields};

/// `lease.lifetime` when not given: one second (or the rule's period if shorter).
pub const DEFAULT_LEASE_LIFETIME: Nanos = NANOS_PER_SEC;
/// The shortest `lease.lifetime`.
pub const MIN_LEASE_LIFETIME: Nanos = 10 * NANOS_PER_MILLI;
/// `lease.renew_at` when not given: renew when 20% of the slice or of its lifetime is left.
pub const DEFAULT_RENEW_AT_PERCENT: u8 = 20;
/// The largest `lease.renew_at`.
pub const MAX_RENEW_AT_PERCENT: u8 = 90;
/// An automatic slice is the units spent in the last lifetime times 3/2.
pub const AUTO_GROWTH_NUMERATOR: u64 = 3;
/// See [`AUTO_GROWTH_NUMERATOR`].
pub const AUTO_GROWTH_DENOMINATOR: u64 = 2;

const LEASE_FIELDS: &[&str] = &["size", "max", "lifetime", "renew_at"];

/// How many units a holder asks for at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseSize {
    /// Always this many (`1..=` the rule's capacity). A size of 1 is exact: every unit is
    /// asked for.
    Fixed(u64),
    /// Sized by the holder from its observed rate ([`LeaseConfig::auto_size`]), at most `max`.
    Auto {
        /// The largest slice (`1..=` the rule's capacity).
        max: u64,
    },
}

/// A rule's compiled `lease` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    size: LeaseSize,
    lifetime: Nanos,
    renew_at_percent: u8,
}

impl LeaseConfig {
    /// How many units a holder asks for at once.
    pub fn size(&self) -> LeaseSize {
        self.size
    }

    /// The largest slice one holder can hold: the fixed size, or `max` for `auto`.
    pub fn max_size(&self) -> u64 {
        match self.size {
            LeaseSize::Fixed(size) => size,
            LeaseSize::Auto { max } => max,
        }
    }

    /// How long a slice may be spent after it was granted; unspent units are returned then.
    pub fn lifetime(&self) -> Nanos {
        self.lifetime
    }

    /// A renewal starts when the unspent units fall to this percentage of the slice, or the
    /// slice is within this percentage of its lifetime from expiry.
    pub fn renew_at_percent(&self) -> u8 {
        self.renew_at_percent
    }

    /// The most units admitted beyond the rule's limit in any window of its period, with
    /// `holders` holding leases on the same key: each may spend a whole slice granted in the
    /// window before.
    pub fn bound(&self, holders: u64) -> u64 {
        holders.saturating_mul(self.max_size())
    }

    /// The slice to ask for under `auto`, given the units spent in the last lifetime: 3/2 of
    /// them, at least 1, at most `max`. A fixed size is returned as it is.
    pub fn auto_size(&self, spent_last_lifetime: u64) -> u64 {
        match self.size {
            LeaseSize::Fixed(size) => size,
            LeaseSize::Auto { max } => {
                let grown = u128::from(spent_last_lifetime) * u128::from(AUTO_GROWTH_NUMERATOR)
                    / u128::from(AUTO_GROWTH_DENOMINATOR);
                u64::try_from(grown).unwrap_or(u64::MAX).clamp(1, max)
            }
        }
    }

    /// Whether a slice of `size` units granted at `granted_at`, of which `unspent` are left,
    /// should be renewed at `now` (see [`LeaseConfig::renew_at_percent`]).
    pub fn should_renew(&self, size: u64, unspent: u64, granted_at: Nanos, now: Nanos) -> bool {
        let percent = u128::from(self.renew_at_percent);
        let low_units = u128::from(unspent) * 100 <= u128::from(size) * percent;
        let left = granted_at.saturating_add(self.lifetime).saturating_sub(now);
        let near_expiry = u128::from(left) * 100 <= u128::from(self.lifetime) * percent;
        low_units || near_expiry
    }
}

/// Parses a rule's `lease` (errors relative to the rule; the caller places them in it).
pub(crate) fn parse_lease(value: &Value, limit: &Limit) -> Result<LeaseConfig, ConfigError> {
    let fields = Fields::open(value, "lease", LEASE_FIELDS)?;
    if !limit.algorithm.supports_leases() {
        return Err(ConfigError::new(
            "lease",
            Problem::LeaseUnsupported {
                algorithm: limit.algorithm.name(),
            },
        ));
    }
    let capacity = limit.capacity();
    let size_path = fields.path("size");
    let size_value = fields.require("size", "\"size\": 50")?;
    let size = match size_value {
        Value::String(text) if text == "auto" => {
            let max = fields.require("max", "\"max\": 100")?;
            LeaseSize::Auto {
                max: json::integer(max, &fields.path("max"), 1, capacity, CAPACITY_WHY)?,
            }
        }
        Value::String(text) => {
            return Err(ConfigError::new(
                size_path,
                Problem::UnknownVariant {
                    value: text.clone(),
                    allowed: &["auto", "a whole number"],
                },
            ));
        }
        Value::Number(_) => {
            if fields.get("max").is_some() {
                return Err(ConfigError::new(
                    fields.path("max"),
                    Problem::LeaseMaxWithoutAuto,
                ));
            }
            LeaseSize::Fixed(json::integer(
                size_value,
                &size_path,
                1,
                capacity,
                CAPACITY_WHY,
            )?)
        }
        other => {
            return Err(ConfigError::new(
                size_path,
                Problem::WrongType {
                    expected: "a whole number or \"auto\"",
                    found: json::kind(other),
                },
            ));
        }
    };
    let period = limit.quota.period();
    let lifetime = match fields.get("lifetime") {
        Some(v) => lifetime(v, &fields.path("lifetime"), period)?,
        None if period < MIN_LEASE_LIFETIME => {
            return Err(ConfigError::new(
                "lease",
                Problem::LeasePeriodTooShort { period },
            ));
        }
        None => DEFAULT_LEASE_LIFETIME.min(period),
    };
    let renew_at_percent = match fields.get("renew_at") {
        Some(v) => {
            let percent = json::integer(
                v,
                &fields.path("renew_at"),
                0,
                u64::from(MAX_RENEW_AT_PERCENT),
                "the percentage of the slice (or of its lifetime) left when a renewal starts",
            )?;
            u8::try_from(percent).unwrap_or(DEFAULT_RENEW_AT_PERCENT)
        }
        None => DEFAULT_RENEW_AT_PERCENT,
    };
    Ok(LeaseConfig {
        size,
        lifetime,
        renew_at_percent,
    })
}

const CAPACITY_WHY: &str = "a slice is spent like one request of its size, so it is at most \
                            what the rule admits at once (limit.requests, or limit.burst for gcra)";

fn lifetime(value: &Value, path: &str, period: Nanos) -> Result<Nanos, ConfigError> {
    let text = json::string(value, path)?;
    match parse_period(text) {
        Ok(nanos) if (MIN_LEASE_LIFETIME..=period).contains(&nanos) => Ok(nanos),
        Ok(_) | Err(DurationError::Zero | DurationError::TooLong) => Err(ConfigError::new(
            path,
            Problem::LeaseLifetimeOutOfRange {
                text: text.into(),
                period,
            },
        )),
        Err(DurationError::Malformed) => Err(ConfigError::new(
            path,
            Problem::InvalidDuration { text: text.into() },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::{Algorithm, Quota};

    fn config(size: LeaseSize) -> LeaseConfig {
        LeaseConfig {
            size,
            lifetime: NANOS_PER_SEC,
            renew_at_percent: 20,
        }
    }

    #[test]
    fn auto_size_grows_by_half_within_one_and_max() {
        let auto = config(LeaseSize::Auto { max: 100 });
        assert_eq!(auto.auto_size(0), 1);
        assert_eq!(auto.auto_size(10), 15);
        assert_eq!(auto.auto_size(1000), 100);
        assert_eq!(auto.auto_size(u64::MAX), 100);
        assert_eq!(config(LeaseSize::Fixed(7)).auto_size(1000), 7);
    }

    #[test]
    fn the_bound_is_holders_times_the_largest_slice() {
        assert_eq!(config(LeaseSize::Fixed(50)).bound(4), 200);
        assert_eq!(config(LeaseSize::Auto { max: 30 }).bound(3), 90);
        assert_eq!(config(LeaseSize::Fixed(50)).bound(u64::MAX), u64::MAX);
    }

    #[test]
    fn renewal_starts_at_the_threshold_of_units_or_time() {
        let c = config(LeaseSize::Fixed(50));
        // 10 of 50 left is 20%: renew; 11 is not.
        assert!(c.should_renew(50, 10, 0, 0));
        assert!(!c.should_renew(50, 11, 0, 0));
        // 200 ms of 1 s left is 20%: renew; 201 ms is not.
        assert!(c.should_renew(50, 50, 0, 800 * NANOS_PER_MILLI));
        assert!(!c.should_renew(50, 50, 0, 799 * NANOS_PER_MILLI));
    }

    #[test]
    fn a_period_under_ten_milliseconds_leaves_no_lifetime() {
        let limit = Limit::new(
            Algorithm::Gcra,
            Quota::new(1, 5 * NANOS_PER_MILLI, 1).unwrap(),
        );
        let value: Value = serde_json::from_str(r#"{"size": 1}"#).unwrap();
        let err = parse_lease(&value, &limit).unwrap_err();
        assert_eq!(err.path(), "lease");
        assert!(matches!(err.problem(), Problem::LeasePeriodTooShort { .. }));
    }
}
