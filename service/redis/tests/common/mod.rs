//! Helpers shared by the store's tests.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use sluice_core::{Algorithm, Check, FailureMode, Limit, Mode, Nanos, Quota, Status, Verdict};
use sluice_redis::{RedisConfig, RedisStore};

pub const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Gcra,
    Algorithm::FixedWindow,
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
];

pub const SECOND: Nanos = 1_000_000_000;
pub const HOUR: Nanos = 3600 * SECOND;

/// The wall clock, as the service reads it.
pub fn now() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as Nanos)
}

/// `limit` per `period`, burst = limit.
pub fn limit(algorithm: Algorithm, limit: u64, period: Nanos) -> Limit {
    Limit::new(algorithm, Quota::new(limit, period, limit).unwrap())
}

/// An enforcing check of cost 1.
pub fn check<'a>(rule: &'a str, limit: Limit, key: &[u8], failure_mode: FailureMode) -> Check<'a> {
    Check {
        rule,
        limit,
        max_keys: 0,
        key: key.to_vec(),
        cost: 1,
        mode: Mode::Enforce,
        failure_mode,
    }
}

/// A store with a call timeout generous enough for a loaded test machine: the tests that
/// are about timeouts set their own.
pub async fn store(url: &str) -> RedisStore {
    RedisStore::connect(patient(RedisConfig::new(url)))
        .await
        .unwrap()
}

pub fn patient(mut config: RedisConfig) -> RedisConfig {
    config.call_timeout = std::time::Duration::from_secs(2);
    config.connect_timeout = std::time::Duration::from_secs(5);
    config
}

/// Whether any rule of the verdict met a store failure.
pub fn failed(verdict: &Verdict) -> bool {
    verdict.outcomes.iter().any(|o| {
        o.store_error.is_some() || matches!(o.status, Status::FailedOpen | Status::FailedClosed)
    })
}

/// A fresh domain per test, so tests sharing nothing never share keys.
pub fn domain(test: &str) -> String {
    format!("{test}-{}", now())
}
