//! Where the service keeps its counters: the [`DecisionStore`] trait, implemented over Redis
//! (`sluice-redis`). Tests implement it too, to inject faults (a failing or a stuck store).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_core::{Check, Grant, Nanos, StoreError, Verdict};
pub use sluice_redis::LeaseKey;

/// What a store answers for one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// One outcome per check, with the core's all-or-nothing semantics.
    pub verdict: Verdict,
    /// Round trips to the backing store this decision took.
    pub round_trips: u32,
}

/// Decides a request's checks against shared counters, atomically as far as the core's
/// all-or-nothing rule is concerned: nothing is consumed when an enforcing check denies. A
/// store failure shows up as the affected checks' failure modes in the verdict, not as an
/// error.
pub trait DecisionStore: Send + Sync + 'static {
    /// Decides `checks` of `domain` at `now`.
    fn decide(
        &self,
        domain: &str,
        checks: &[Check<'_>],
        now: Nanos,
    ) -> impl Future<Output = Decided> + Send;

    /// Whether the store can serve decisions now (the readiness probe).
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// Grants a slice of `min..=want` units of `key` at `now` ([`sluice_core::Limit::grant`])
    /// and commits it atomically. A store that keeps no leases fails every grant (the rule's
    /// failure mode applies).
    fn grant(
        &self,
        key: LeaseKey<'_>,
        min: u64,
        want: u64,
        now: Nanos,
    ) -> impl Future<Output = LeaseStep<Grant>> + Send {
        let _ = (key, min, want, now);
        async {
            LeaseStep {
                result: Err(StoreError::Unavailable),
                round_trips: 0,
            }
        }
    }

    /// Gives back `units` of a slice granted at `granted_at`, atomically; answers the units
    /// the key got back ([`sluice_core::Limit::restored`]). A store that keeps no leases
    /// restores nothing.
    fn give_back(
        &self,
        key: LeaseKey<'_>,
        units: u64,
        granted_at: Nanos,
        now: Nanos,
    ) -> impl Future<Output = LeaseStep<u64>> + Send {
        let _ = (key, units, granted_at, now);
        async {
            LeaseStep {
                result: Err(StoreError::Unavailable),
                round_trips: 0,
            }
        }
    }
}

/// What a store answers for one lease step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStep<T> {
    /// What it did, or why it could not (nothing was granted or restored as far as the
    /// caller knows).
    pub result: Result<T, StoreError>,
    /// Round trips to the backing store.
    pub round_trips: u32,
}

impl DecisionStore for sluice_redis::RedisStore {
    async fn decide(&self, domain: &str, checks: &[Check<'_>], now: Nanos) -> Decided {
        let decided = sluice_redis::RedisStore::decide(self, domain, checks, now).await;
        if let Some(error) = &decided.error {
            log_store_error(error);
        }
        Decided {
            verdict: decided.verdict,
            round_trips: decided.round_trips,
        }
    }

    async fn ready(&self) -> Result<(), String> {
        self.ping().await.map_err(|e| e.to_string())
    }

    async fn grant(&self, key: LeaseKey<'_>, min: u64, want: u64, now: Nanos) -> LeaseStep<Grant> {
        lease_step(sluice_redis::RedisStore::grant(self, key, min, want, now).await)
    }

    async fn give_back(
        &self,
        key: LeaseKey<'_>,
        units: u64,
        granted_at: Nanos,
        now: Nanos,
    ) -> LeaseStep<u64> {
        lease_step(sluice_redis::RedisStore::give_back(self, key, units, granted_at, now).await)
    }
}

fn lease_step<T>(leased: sluice_redis::Leased<T>) -> LeaseStep<T> {
    LeaseStep {
        result: leased.result.map_err(|error| {
            log_store_error(&error);
            match error {
                sluice_redis::RedisError::Contention(_) => StoreError::Contention,
                _ => StoreError::Unavailable,
            }
        }),
        round_trips: leased.round_trips,
    }
}

/// Logs a Redis failure, at most once a second per process: in an outage every decision fails,
/// and one line per decision would bury everything else. The metrics count every one.
fn log_store_error(error: &sluice_redis::RedisError) {
    static LAST_LOGGED_SECOND: AtomicU64 = AtomicU64::new(0);
    let second = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST_LOGGED_SECOND.swap(second, Ordering::Relaxed) != second {
        tracing::warn!(%error, "Redis failed: the rules' failure modes apply");
    }
}
