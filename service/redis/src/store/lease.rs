//! Leases over Redis: a grant of a slice of a key's quota, and the return of a slice's unspent
//! units. Each is one atomic read-compute-write of one key's state with the same
//! compare-and-set script as decisions (one round trip for a warm key): the core computes the
//! new state from the value expected in Redis, and the script writes it only if Redis still
//! holds that value; otherwise it sends back the current value and the step is computed again
//! from it, up to `max_cas_retries` times. A grant that finds nothing to give is confirmed the
//! same way (compare only, no write), so a denial too is decided from the current state.
//!
//! Since a grant commits exactly what a request of its size would, the argument of the crate
//! docs carries over: no grant is ever committed from a stale state, so the units granted on
//! a key never exceed what its limit admits.

use std::time::Duration;

use sluice_core::{Grant, Limit, Nanos, State};

use super::{MAX_PAUSE, MIN_PAUSE, RedisStore, write_for, written_value};
use crate::error::RedisError;
use crate::keys;
use crate::script::{KeyOp, Reply, Write};
use crate::value;

/// The key a lease step works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseKey<'a> {
    /// The configuration's domain.
    pub domain: &'a str,
    /// The rule's name.
    pub rule: &'a str,
    /// The rule's limit (the service's own).
    pub limit: Limit,
    /// The key's bytes.
    pub key: &'a [u8],
}

/// The result of one lease step, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased<T> {
    /// What the step did, or why the store could not do it (then nothing was written, unless
    /// a call timed out after Redis applied it).
    pub result: Result<T, RedisError>,
    /// Redis calls made: 1 for a warm key, more after a lost race or for a key not remembered
    /// that exists in Redis.
    pub round_trips: u32,
}

impl RedisStore {
    /// Grants the largest slice in `min..=want` units that `key`'s state admits at `now`
    /// ([`Limit::grant`]) and commits it atomically. A grant of 0 commits nothing.
    pub async fn grant(&self, key: LeaseKey<'_>, min: u64, want: u64, now: Nanos) -> Leased<Grant> {
        let limit = key.limit;
        self.update(key, now, |prior| {
            let grant = limit.grant(prior, now, min, want);
            let next = grant.state.clone();
            (grant, next)
        })
        .await
    }

    /// Gives back `units` unspent units of a slice granted at `granted_at`
    /// ([`Limit::refund`]) and commits the result atomically. Answers how many units the key
    /// got back ([`Limit::restored`]): none when it holds no state (nothing counts any more)
    /// or the window the units were granted in has ended.
    pub async fn give_back(
        &self,
        key: LeaseKey<'_>,
        units: u64,
        granted_at: Nanos,
        now: Nanos,
    ) -> Leased<u64> {
        let limit = key.limit;
        self.update(key, now, |prior| match prior {
            Some(before) => {
                let after = limit.refund(before, units, granted_at);
                let restored = limit.restored(before, &after, now);
                let changed = after != *before;
                (restored, changed.then_some(after))
            }
            None => (0, None),
        })
        .await
    }

    /// One atomic step on one key: `step` computes, from the state expected in Redis, a
    /// result and the state to write (`None`: write nothing, only confirm the state).
    async fn update<T>(
        &self,
        key: LeaseKey<'_>,
        now: Nanos,
        mut step: impl FnMut(Option<&State>) -> (T, Option<State>),
    ) -> Leased<T> {
        let inner = &*self.inner;
        let limit = key.limit;
        let redis_key = keys::state_key(key.domain, key.rule, key.key);
        // Steps on one key in this process take turns: they would only race each other.
        let _turn = inner.locks.lock_all(std::slice::from_ref(&redis_key)).await;
        let token = inner.token();
        let mut expected = inner.cache.expected(&redis_key, now);
        let mut retries_left = inner.max_cas_retries;
        let mut round_trips = 0u32;
        let mut waited = Duration::ZERO;
        let mut pause = MIN_PAUSE;
        loop {
            let prior = expected
                .as_deref()
                .and_then(|bytes| value::decode(&limit, bytes).ok());
            let (result, next) = step(prior.as_ref());
            let op = KeyOp {
                key: redis_key.clone(),
                expected: expected.clone(),
                write: match &next {
                    Some(state) => write_for(&limit, state, now),
                    None => Write::Keep,
                },
            };
            let (reply, trips) = inner.cas(token, std::slice::from_ref(&op)).await;
            round_trips = round_trips.saturating_add(trips);
            let current = match reply {
                Ok(Reply::Applied) => {
                    if let Some(state) = &next {
                        let written = written_value(&op);
                        inner.cache.remember(
                            &redis_key,
                            written.as_deref(),
                            Some(limit.idle_at(state)),
                        );
                    }
                    return Leased {
                        result: Ok(result),
                        round_trips,
                    };
                }
                Ok(Reply::Blocked(current)) if waited < Duration::from_millis(inner.turn_ms) => {
                    // Same value, another decision's turn: wait for it; no lost race.
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(MAX_PAUSE);
                    current
                }
                Ok(Reply::Mismatch(current) | Reply::Blocked(current)) => {
                    if retries_left == 0 {
                        return Leased {
                            result: Err(RedisError::Contention(inner.max_cas_retries)),
                            round_trips,
                        };
                    }
                    retries_left -= 1;
                    current
                }
                Err(error) => {
                    inner.cache.forget(&redis_key);
                    return Leased {
                        result: Err(error),
                        round_trips,
                    };
                }
            };
            expected = current.into_iter().next().flatten();
            inner.cache.remember(&redis_key, expected.as_deref(), None);
        }
    }
}
