//! The store: decisions over states in Redis. See the crate docs for the protocol and why it
//! is correct.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use redis::cluster_routing::Slot;
use sluice_core::limiter::{decide_rule, failure_outcome, request_allowed};
use sluice_core::{Check, Nanos, RuleOutcome, State, Status, StoreError, Verdict};

use crate::cache::ValueCache;
use crate::config::RedisConfig;
use crate::connection::Connection;
use crate::error::RedisError;
use crate::keys;
use crate::locks::KeyLocks;
use crate::script::{self, KeyOp, Reply, Write};
use crate::value;

mod lease;

pub use lease::{LeaseKey, Leased};

/// The longest expiry the store sets (about 31 years): a state idle further in the future
/// than that (a clock far ahead) still expires some day.
const MAX_TTL_MS: u64 = 1_000_000_000_000;

/// The first and the longest wait before calling again while another decision holds the turn.
const MIN_PAUSE: Duration = Duration::from_micros(100);
const MAX_PAUSE: Duration = Duration::from_millis(2);

/// A decision, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The outcome of every check, as [`sluice_core::Limiter::decide_all`] gives it.
    pub verdict: Verdict,
    /// Redis calls made: 1 in the common case (a warm key), more after a lost race, for a key
    /// not remembered that exists in Redis, for several hash slots or for refunds; 0 when no
    /// rule needed Redis (no checks, only cost 0).
    pub round_trips: u32,
    /// The first Redis failure met, if any; the rules it touched have their failure mode.
    pub error: Option<RedisError>,
}

/// Decides requests over states in Redis (standalone or Redis Cluster), one script call per
/// decision in the common case. Cheap to clone: clones share the connection, the cache of
/// last seen values and the per-key locks, so one store serves every task of a process.
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Connection,
    cluster: bool,
    sha1: String,
    /// Random per store; with `next_token`, a token per decision for turns.
    token_base: u64,
    next_token: AtomicU64,
    turn_ms: u64,
    call_timeout: Duration,
    max_cas_retries: u32,
    cache: ValueCache,
    locks: KeyLocks,
}

/// One compare-and-set call of an attempt: the keys of one hash slot.
struct Call {
    /// Indices of the checks whose keys the call covers, in the order of `ops`.
    checks: Vec<usize>,
    ops: Vec<KeyOp>,
}

impl RedisStore {
    /// Connects to Redis (asking a single URL's server whether it is a cluster, unless the
    /// config says) and checks that it answers.
    ///
    /// Fails if no node answers within the connect timeout, or on a bad URL or a wrong
    /// password. Once connected the store reconnects by itself: while Redis is away decisions
    /// fail (each rule by its failure mode) within the call timeout.
    pub async fn connect(config: RedisConfig) -> Result<RedisStore, RedisError> {
        let connection = Connection::open(&config).await?;
        let cluster = matches!(connection, Connection::Cluster(_));
        let store = RedisStore {
            inner: Arc::new(Inner {
                connection,
                cluster,
                sha1: script::sha1(),
                token_base: random_u64(),
                next_token: AtomicU64::new(0),
                turn_ms: turn_ms(config.call_timeout),
                call_timeout: config.call_timeout,
                max_cas_retries: config.max_cas_retries,
                cache: ValueCache::new(config.cache_capacity),
                locks: KeyLocks::new(),
            }),
        };
        store.ping_within(config.connect_timeout).await?;
        // Load the script now so that the first decision takes one round trip (to every
        // master of a cluster). Best effort: a decision falls back to EVAL on NOSCRIPT.
        let _ = store
            .inner
            .connection
            .call(
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(script::COMPARE_AND_SET),
                config.connect_timeout,
            )
            .await;
        Ok(store)
    }

    /// Whether Redis answers a `PING` within the call timeout (for readiness).
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.ping_within(self.inner.call_timeout).await
    }

    async fn ping_within(&self, timeout: Duration) -> Result<(), RedisError> {
        let reply = self
            .inner
            .connection
            .call(&redis::cmd("PING"), timeout)
            .await?;
        match reply {
            redis::Value::SimpleString(s) if s == "PONG" => Ok(()),
            redis::Value::BulkString(s) if s == b"PONG" => Ok(()),
            other => Err(RedisError::Reply(format!(
                "PING answered {other:?} instead of PONG"
            ))),
        }
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// The Redis key of `rule`'s state for `key` in `domain` (see [`keys::state_key`]).
    pub fn state_key(domain: &str, rule: &str, key: &[u8]) -> String {
        keys::state_key(domain, rule, key)
    }

    /// Decides a request against `checks` at `now` (nanoseconds since the Unix epoch, the
    /// service's clock), with the semantics of [`sluice_core::Limiter::decide_all`]: nothing
    /// is consumed unless every enforcing rule allows; shadow rules report and never deny;
    /// cost 0 consumes nothing. When Redis fails, times out, or the key keeps changing past
    /// the retries, the affected rules get their failure mode. `verdict.outcomes[i]` is the
    /// outcome of `checks[i]`; each check must be for a different rule (a rule checked twice
    /// fails the second time, by its failure mode).
    pub async fn decide(&self, domain: &str, checks: &[Check<'_>], now: Nanos) -> Decided {
        let inner = &*self.inner;
        let keys: Vec<String> = checks
            .iter()
            .map(|c| keys::state_key(domain, c.rule, &c.key))
            .collect();
        let duplicate: Vec<bool> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| keys.iter().take(i).any(|k| k == key))
            .collect();
        let mut error = duplicate.iter().position(|d| *d).map(|i| {
            RedisError::Config(format!(
                "the rule {:?} is checked twice in one decision",
                checks.get(i).map_or("", |c| c.rule)
            ))
        });
        // Decisions on one key in this process take turns: they would only race each other.
        let _turn = inner.locks.lock_all(&keys).await;
        let token = inner.token();
        let groups = self.slot_groups(&keys, &duplicate);
        let mut expected: Vec<Option<Vec<u8>>> =
            keys.iter().map(|k| inner.cache.expected(k, now)).collect();
        let mut conflicts = vec![0u32; checks.len()];
        let mut retries_left = inner.max_cas_retries;
        let mut round_trips = 0u32;
        let mut waited = Duration::ZERO;
        let mut pause = MIN_PAUSE;
        loop {
            let mut outcomes = Vec::with_capacity(checks.len());
            let mut next = Vec::with_capacity(checks.len());
            for (i, check) in checks.iter().enumerate() {
                if duplicate.get(i).copied().unwrap_or(false) {
                    outcomes.push(failure_outcome(check, None, StoreError::Unavailable, 0));
                    next.push(None);
                    continue;
                }
                let prior = expected
                    .get(i)
                    .and_then(Option::as_deref)
                    .and_then(|bytes| value::decode(&check.limit, bytes).ok());
                let (outcome, state) = decide_rule(check, Ok(prior.as_ref()), now);
                outcomes.push(outcome);
                next.push(state);
            }
            let allowed = request_allowed(&outcomes);
            let calls = if allowed {
                commit_calls(&groups, checks, &keys, &expected, &next, now)
            } else {
                confirm_calls(&groups, &keys, &expected, &outcomes)
            };
            let results = join_all(calls.iter().map(|call| inner.cas(token, &call.ops))).await;
            let mut applied = Vec::new();
            let mut lost = Vec::new();
            let mut failed = Vec::new();
            let mut blocked = Vec::new();
            for (call, (result, trips)) in calls.iter().zip(results) {
                round_trips = round_trips.saturating_add(trips);
                match result {
                    Ok(Reply::Applied) => {
                        if allowed {
                            for (&i, op) in call.checks.iter().zip(&call.ops) {
                                let written = written_value(op);
                                let idle_at = next
                                    .get(i)
                                    .and_then(Option::as_ref)
                                    .zip(checks.get(i))
                                    .map(|(state, check)| check.limit.idle_at(state));
                                inner.cache.remember(&op.key, written.as_deref(), idle_at);
                                if let Some(slot) = expected.get_mut(i) {
                                    *slot = written;
                                }
                            }
                            applied.push(call);
                        }
                    }
                    Ok(Reply::Mismatch(current)) => {
                        learn(inner, call, current, &mut expected);
                        for &i in &call.checks {
                            if let Some(c) = conflicts.get_mut(i) {
                                *c = c.saturating_add(1);
                            }
                        }
                        lost.push(call);
                    }
                    Ok(Reply::Blocked(current)) => {
                        learn(inner, call, current, &mut expected);
                        blocked.push(call);
                    }
                    Err(e) => {
                        for op in &call.ops {
                            inner.cache.forget(&op.key);
                        }
                        error.get_or_insert(e);
                        failed.push(call);
                    }
                }
            }
            if failed.is_empty() && lost.is_empty() && blocked.is_empty() {
                return Decided {
                    verdict: finish(outcomes, &conflicts),
                    round_trips,
                    error,
                };
            }
            // Only waiting for another decision's turn: wait a moment (up to about a turn in
            // all) and call again; that is no lost race.
            let waiting = failed.is_empty()
                && lost.is_empty()
                && waited < Duration::from_millis(inner.turn_ms);
            if waiting || (failed.is_empty() && retries_left > 0) {
                // Lost a race: take back what this attempt committed, decide again from the
                // values Redis sent back.
                if waiting {
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(MAX_PAUSE);
                } else {
                    retries_left -= 1;
                }
                for call in applied {
                    round_trips = round_trips.saturating_add(
                        self.refund(token, call, checks, &next, &mut expected, now)
                            .await,
                    );
                }
                continue;
            }
            // Out of retries, or Redis failed: those rules get their failure mode.
            lost.append(&mut blocked);
            for (calls, store_error) in [
                (&lost, StoreError::Contention),
                (&failed, StoreError::Unavailable),
            ] {
                for call in calls.iter() {
                    for &i in &call.checks {
                        if let (Some(outcome), Some(check)) = (outcomes.get_mut(i), checks.get(i)) {
                            *outcome = failure_outcome(
                                check,
                                Some(outcome.decision),
                                store_error,
                                conflicts.get(i).copied().unwrap_or(0),
                            );
                        }
                    }
                }
            }
            if !lost.is_empty() {
                error.get_or_insert(RedisError::Contention(inner.max_cas_retries));
            }
            if allowed && !request_allowed(&outcomes) {
                for call in applied {
                    round_trips = round_trips.saturating_add(
                        self.refund(token, call, checks, &next, &mut expected, now)
                            .await,
                    );
                }
            }
            return Decided {
                verdict: finish(outcomes, &conflicts),
                round_trips,
                error,
            };
        }
    }

    /// The checks grouped by hash slot (one group on standalone Redis), duplicates left out.
    fn slot_groups(&self, keys: &[String], duplicate: &[bool]) -> Vec<Vec<usize>> {
        let live = (0..keys.len()).filter(|&i| !duplicate.get(i).copied().unwrap_or(false));
        if !self.inner.cluster {
            let all: Vec<usize> = live.collect();
            return if all.is_empty() {
                Vec::new()
            } else {
                vec![all]
            };
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut by_slot: HashMap<Slot, usize> = HashMap::new();
        for i in live {
            let Some(key) = keys.get(i) else { continue };
            let slot = Slot::for_key(key.as_bytes());
            match by_slot.get(&slot) {
                Some(&g) => {
                    if let Some(group) = groups.get_mut(g) {
                        group.push(i);
                    }
                }
                None => {
                    by_slot.insert(slot, groups.len());
                    groups.push(vec![i]);
                }
            }
        }
        groups
    }

    /// Takes back a committed call's spend: one compare-and-set per try, up to the retries.
    /// Gives up (the units stay spent) when Redis fails or a key is gone. Returns the round
    /// trips made.
    async fn refund(
        &self,
        token: u64,
        call: &Call,
        checks: &[Check<'_>],
        committed: &[Option<State>],
        expected: &mut [Option<Vec<u8>>],
        committed_at: Nanos,
    ) -> u32 {
        let inner = &*self.inner;
        // The state each key holds now, as far as we know: what we wrote.
        let mut current: Vec<(usize, State)> = call
            .checks
            .iter()
            .filter_map(|&i| committed.get(i).cloned().flatten().map(|s| (i, s)))
            .collect();
        let mut round_trips = 0;
        let mut tries = 0;
        let mut waited = Duration::ZERO;
        let mut pause = MIN_PAUSE;
        while tries <= inner.max_cas_retries {
            let mut ops = Vec::with_capacity(current.len());
            for (i, state) in &current {
                let (Some(check), Some(key)) = (checks.get(*i), call_key(call, *i)) else {
                    continue;
                };
                let refunded = check.limit.refund(state, check.cost, committed_at);
                ops.push(KeyOp {
                    key: key.to_owned(),
                    expected: Some(value::encode(&check.limit, state)),
                    write: write_for(&check.limit, &refunded, committed_at),
                });
            }
            if ops.is_empty() {
                return round_trips;
            }
            let (result, trips) = inner.cas(token, &ops).await;
            round_trips += trips;
            match result {
                Ok(Reply::Applied) => {
                    for ((i, _), op) in current.iter().zip(&ops) {
                        let written = written_value(op);
                        inner.cache.remember(&op.key, written.as_deref(), None);
                        if let Some(slot) = expected.get_mut(*i) {
                            *slot = written;
                        }
                    }
                    return round_trips;
                }
                Ok(Reply::Blocked(values)) if waited < Duration::from_millis(inner.turn_ms) => {
                    // Same values, another decision's turn: wait for it, no lost race.
                    drop(values);
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Ok(Reply::Mismatch(values) | Reply::Blocked(values)) => {
                    tries += 1;
                    let mut still = Vec::with_capacity(current.len());
                    for ((i, _), (op, value)) in current.iter().zip(ops.iter().zip(values)) {
                        inner.cache.remember(&op.key, value.as_deref(), None);
                        if let Some(slot) = expected.get_mut(*i) {
                            slot.clone_from(&value);
                        }
                        let state = checks
                            .get(*i)
                            .zip(value.as_deref())
                            .and_then(|(check, bytes)| value::decode(&check.limit, bytes).ok());
                        if let Some(state) = state {
                            still.push((*i, state));
                        }
                    }
                    current = still;
                }
                Err(_) => {
                    for op in &ops {
                        inner.cache.forget(&op.key);
                    }
                    return round_trips;
                }
            }
        }
        round_trips
    }

    /// How many keys' last values the store remembers (bounded by the cache capacity).
    pub fn cached_keys(&self) -> usize {
        self.inner.cache.len()
    }
}

impl Inner {
    fn token(&self) -> u64 {
        self.token_base
            .wrapping_add(self.next_token.fetch_add(1, Ordering::Relaxed))
    }

    async fn cas(&self, token: u64, ops: &[KeyOp]) -> (Result<Reply, RedisError>, u32) {
        self.connection
            .compare_and_set(&self.sha1, token, self.turn_ms, ops, self.call_timeout)
            .await
    }
}

/// How long a turn lasts: long enough for the claimer's next call to arrive, short enough
/// that a claimer that went away holds nobody up for long.
fn turn_ms(call_timeout: Duration) -> u64 {
    (call_timeout.as_millis() as u64 / 2).clamp(5, 50)
}

/// 64 random bits from the standard library's per-process hash keys and the clock.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// Takes the current values a call sent back as the expected ones.
fn learn(
    inner: &Inner,
    call: &Call,
    current: Vec<Option<Vec<u8>>>,
    expected: &mut [Option<Vec<u8>>],
) {
    for ((&i, op), value) in call.checks.iter().zip(&call.ops).zip(current) {
        inner.cache.remember(&op.key, value.as_deref(), None);
        if let Some(slot) = expected.get_mut(i) {
            *slot = value;
        }
    }
}

fn call_key(call: &Call, check: usize) -> Option<&str> {
    call.checks
        .iter()
        .position(|&i| i == check)
        .and_then(|p| call.ops.get(p))
        .map(|op| op.key.as_str())
}

/// Calls writing every allowing rule's new state, one per slot group that has any.
fn commit_calls(
    groups: &[Vec<usize>],
    checks: &[Check<'_>],
    keys: &[String],
    expected: &[Option<Vec<u8>>],
    next: &[Option<State>],
    now: Nanos,
) -> Vec<Call> {
    let mut calls = Vec::new();
    for group in groups {
        let mut call = Call {
            checks: Vec::new(),
            ops: Vec::new(),
        };
        for &i in group {
            let (Some(Some(state)), Some(check), Some(key)) =
                (next.get(i), checks.get(i), keys.get(i))
            else {
                continue;
            };
            call.checks.push(i);
            call.ops.push(KeyOp {
                key: key.clone(),
                expected: expected.get(i).cloned().flatten(),
                write: write_for(&check.limit, state, now),
            });
        }
        if !call.ops.is_empty() {
            calls.push(call);
        }
    }
    calls
}

/// Calls confirming every denying rule's state (compare only), one per slot group that has
/// any: a denial stands only if it was decided from the current value.
fn confirm_calls(
    groups: &[Vec<usize>],
    keys: &[String],
    expected: &[Option<Vec<u8>>],
    outcomes: &[RuleOutcome],
) -> Vec<Call> {
    let mut calls = Vec::new();
    for group in groups {
        let mut call = Call {
            checks: Vec::new(),
            ops: Vec::new(),
        };
        for &i in group {
            let denied = outcomes.get(i).is_some_and(|o| o.status == Status::Denied);
            let Some(key) = keys.get(i).filter(|_| denied) else {
                continue;
            };
            call.checks.push(i);
            call.ops.push(KeyOp {
                key: key.clone(),
                expected: expected.get(i).cloned().flatten(),
                write: Write::Keep,
            });
        }
        if !call.ops.is_empty() {
            calls.push(call);
        }
    }
    calls
}

/// Set `state` to expire when it has fully recovered, or delete the key if it already has.
fn write_for(limit: &sluice_core::Limit, state: &State, now: Nanos) -> Write {
    let idle_at = limit.idle_at(state);
    if idle_at <= now {
        return Write::Delete;
    }
    let ttl_ms = (idle_at - now).div_ceil(1_000_000).clamp(1, MAX_TTL_MS);
    Write::Set {
        value: value::encode(limit, state),
        ttl_ms,
    }
}

/// What a key holds after `op` was applied (`None`: absent).
fn written_value(op: &KeyOp) -> Option<Vec<u8>> {
    match &op.write {
        Write::Set { value, .. } => Some(value.clone()),
        Write::Delete => None,
        Write::Keep => op.expected.clone(),
    }
}

fn finish(mut outcomes: Vec<RuleOutcome>, conflicts: &[u32]) -> Verdict {
    for (outcome, &c) in outcomes.iter_mut().zip(conflicts) {
        outcome.cas_retries = outcome.cas_retries.max(c);
    }
    Verdict {
        allowed: request_allowed(&outcomes),
        outcomes,
    }
}
