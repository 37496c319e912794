//! Where the service keeps its counters: the [`DecisionStore`] trait, implemented over Redis
//! (`sluice-redis`). Tests implement it too, to inject faults (a failing or a stuck store).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sluice_core::{Check, Nanos, Verdict};

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
