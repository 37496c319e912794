//! Where the service keeps its counters: the [`DecisionStore`] trait, implemented over Redis
//! (`sluice-redis`) by [`RedisBackend`]. Tests implement it too, to inject faults (a failing
//! or a stuck store).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::{Check, Grant, Limiter, Nanos, StoreError, Verdict};
pub use sluice_redis::LeaseKey;
use sluice_redis::{RedisConfig, RedisError, RedisStore};

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

/// The service's Redis. It connects at start; when Redis cannot be reached then (down, a
/// wrong password, a certificate that does not verify), the service still starts: it keeps
/// trying in the background, answers every decision with the rules' failure modes and is not
/// ready (`/readyz` says why) until a connection succeeds. Only a configuration that cannot
/// work (a URL that does not parse, mixed schemes) is refused at start.
#[derive(Debug)]
pub struct RedisBackend {
    store: OnceLock<RedisStore>,
    /// Why the last connection attempt failed (no password in it).
    last_error: Mutex<String>,
}

/// The longest pause between two connection attempts.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

impl RedisBackend {
    /// Tries to connect once; if that fails for any reason but the configuration, keeps trying
    /// in the background (pauses from 100 ms up to 5 s). Must be called within a tokio
    /// runtime.
    pub async fn start(config: RedisConfig) -> Result<Arc<RedisBackend>, RedisError> {
        config.validate().map_err(RedisError::Config)?;
        let backend = Arc::new(RedisBackend {
            store: OnceLock::new(),
            last_error: Mutex::new("not connected yet".to_owned()),
        });
        match RedisStore::connect(config.clone()).await {
            Ok(store) => {
                tracing::info!(cluster = store.is_cluster(), "connected to Redis");
                let _ = backend.store.set(store);
            }
            Err(error @ RedisError::Config(_)) => return Err(error),
            Err(error) => {
                backend.failed(&error, Duration::from_millis(100));
                let retrying = Arc::clone(&backend);
                tokio::spawn(async move { retrying.keep_connecting(config).await });
            }
        }
        Ok(backend)
    }

    /// Whether a connection has been made (it heals by itself after that).
    pub fn is_connected(&self) -> bool {
        self.store.get().is_some()
    }

    /// The store, once connected.
    pub fn store(&self) -> Option<&RedisStore> {
        self.store.get()
    }

    async fn keep_connecting(&self, config: RedisConfig) {
        let mut pause = Duration::from_millis(100);
        loop {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
            match RedisStore::connect(config.clone()).await {
                Ok(store) => {
                    tracing::info!(cluster = store.is_cluster(), "connected to Redis");
                    let _ = self.store.set(store);
                    return;
                }
                Err(error) => self.failed(&error, pause),
            }
        }
    }

    fn failed(&self, error: &RedisError, retry_in: Duration) {
        let message = error.to_string();
        tracing::warn!(
            error = %message,
            retry_in = ?retry_in,
            "cannot connect to Redis: the rules' failure modes apply until it answers"
        );
        if let Ok(mut last) = self.last_error.lock() {
            *last = message;
        }
    }
}

impl DecisionStore for RedisBackend {
    async fn decide(&self, domain: &str, checks: &[Check<'_>], now: Nanos) -> Decided {
        match self.store.get() {
            Some(store) => DecisionStore::decide(store, domain, checks, now).await,
            // No state can be read: every rule's failure mode.
            None => Decided {
                verdict: Limiter::decide_all(checks, &mut [], now),
                round_trips: 0,
            },
        }
    }

    async fn grant(&self, key: LeaseKey<'_>, min: u64, want: u64, now: Nanos) -> LeaseStep<Grant> {
        match self.store.get() {
            Some(store) => DecisionStore::grant(store, key, min, want, now).await,
            None => LeaseStep {
                result: Err(StoreError::Unavailable),
                round_trips: 0,
            },
        }
    }

    async fn give_back(
        &self,
        key: LeaseKey<'_>,
        units: u64,
        granted_at: Nanos,
        now: Nanos,
    ) -> LeaseStep<u64> {
        match self.store.get() {
            Some(store) => DecisionStore::give_back(store, key, units, granted_at, now).await,
            None => LeaseStep {
                result: Err(StoreError::Unavailable),
                round_trips: 0,
            },
        }
    }

    async fn ready(&self) -> Result<(), String> {
        match self.store.get() {
            Some(store) => DecisionStore::ready(store).await,
            None => Err(format!(
                "not connected to Redis: {}",
                self.last_error
                    .lock()
                    .map(|last| last.clone())
                    .unwrap_or_default()
            )),
        }
    }
}
