//! Where the service keeps its counters: the [`DecisionStore`] trait, implemented over Redis
//! (`sluice-redis`, the only store a deployment uses) and in memory ([`MemoryStore`], the
//! reference the tests compare the Redis store and the protocols against).

use std::collections::HashMap;
use std::future::Future;

use sluice_core::{Check, Limit, Limiter, Nanos, State, Verdict};
use tokio::sync::Mutex;

/// What a store answers for one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// One outcome per check, with the core's all-or-nothing semantics.
    pub verdict: Verdict,
    /// Round trips to the backing store this decision took (0 for memory).
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
        Decided {
            verdict: decided.verdict,
            round_trips: decided.round_trips,
        }
    }

    async fn ready(&self) -> Result<(), String> {
        self.ping().await.map_err(|e| e.to_string())
    }
}

/// Counters in this process's memory, decided with the core's `Limiter::decide_all`. One
/// replica only; states are kept until they have fully recovered.
#[derive(Debug, Default)]
pub struct MemoryStore {
    states: Mutex<HashMap<StateKey, (Limit, State)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StateKey {
    domain: String,
    rule: String,
    key: Vec<u8>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// How many keys hold a state that has not fully recovered at `now`.
    pub async fn active_keys(&self, now: Nanos) -> usize {
        let mut states = self.states.lock().await;
        states.retain(|_, (limit, state)| now < limit.idle_at(state));
        states.len()
    }
}

impl DecisionStore for MemoryStore {
    async fn decide(&self, domain: &str, checks: &[Check<'_>], now: Nanos) -> Decided {
        let mut states = self.states.lock().await;
        let keys: Vec<StateKey> = checks
            .iter()
            .map(|check| StateKey {
                domain: domain.to_owned(),
                rule: check.rule.to_owned(),
                key: check.key.clone(),
            })
            .collect();
        let mut current: Vec<Option<State>> = keys
            .iter()
            .map(|k| states.get(k).map(|(_, state)| state.clone()))
            .collect();
        let verdict = Limiter::decide_all(checks, &mut current, now);
        if verdict.allowed {
            for ((key, state), check) in keys.into_iter().zip(current).zip(checks) {
                if let Some(state) = state {
                    states.insert(key, (check.limit, state));
                }
            }
        }
        Decided {
            verdict,
            round_trips: 0,
        }
    }

    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}
