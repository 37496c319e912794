//! The limiters compared. Each decides one request of cost 1 for one key at the time its
//! clock reads; all use the same quota ([`QUOTA_PER_SECOND`] requests per second, a burst of
//! [`BURST`]) and read the same clock (governor's default, quanta), once per decision.

use std::num::NonZeroU32;
use std::slice;

use governor::clock::{Clock, FakeRelativeClock, QuantaClock, QuantaInstant, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota as GovernorQuota, RateLimiter};
use sluice_core::time::NANOS_PER_SEC;
use sluice_core::{Algorithm, Check, FailureMode, Limit, Limiter, Mode, Quota, Seed, State};

use crate::keys::KeySet;
use crate::sharded::{ShardedCasStore, ShardedStates};

/// Requests per second, for every contender.
pub const QUOTA_PER_SECOND: u32 = 100;
/// Requests at once, for every contender.
pub const BURST: u32 = 100;
/// The sluice rule's table size: room for every key of the uniform distribution (100,000)
/// at under half the table's capacity, so that few keys share a full bucket.
pub const MAX_KEYS: u32 = 262_144;
/// The filter's default (`store.cas_retries`).
pub const CAS_RETRIES: u32 = 32;
const RULE: &str = "per-client";

/// 2026-01-01T00:00:00Z: sluice takes absolute time; the clock's readings are added to it.
const T0_NS: u64 = 1_767_225_600_000_000_000;

/// A limiter under test. `decide` is called from several threads at once, each with its own
/// `Worker` (sluice's `Limiter` holds per-thread buffers, as the filter has one per VM).
pub trait Contender: Sync {
    type Worker: Send;
    fn name(&self) -> &'static str;
    fn worker(&self) -> Self::Worker;
    /// Decides one request for key `key` (an index into the contender's `KeySet`).
    fn decide(&self, worker: &mut Self::Worker, key: usize) -> bool;
}

/// The time source of a benchmark: governor's default clock, or a fake one for tests. Both
/// contenders of a comparison share one.
pub trait BenchClock: Clock + Clone + Sync + Send {
    /// Nanoseconds since the clock's start.
    fn elapsed_ns(&self, start: Self::Instant) -> u64;
}

impl BenchClock for QuantaClock {
    fn elapsed_ns(&self, start: QuantaInstant) -> u64 {
        u64::from(self.now().duration_since(start))
    }
}

impl BenchClock for FakeRelativeClock {
    fn elapsed_ns(&self, start: governor::nanos::Nanos) -> u64 {
        u64::from(self.now().duration_since(start))
    }
}

/// The same clock, as sluice reads it: absolute nanoseconds.
#[derive(Debug, Clone)]
struct SluiceTime<C: BenchClock> {
    clock: C,
    start: C::Instant,
}

impl<C: BenchClock> SluiceTime<C> {
    fn new(clock: C) -> SluiceTime<C> {
        let start = clock.now();
        SluiceTime { clock, start }
    }

    fn now(&self) -> u64 {
        T0_NS + self.clock.elapsed_ns(self.start)
    }
}

fn sluice_limit() -> Limit {
    let quota = Quota::new(u64::from(QUOTA_PER_SECOND), NANOS_PER_SEC, u64::from(BURST))
        .unwrap_or_else(|error| panic!("the benchmark quota is valid: {error:?}"));
    Limit::new(Algorithm::Gcra, quota)
}

fn governor_quota() -> GovernorQuota {
    let per_second = NonZeroU32::new(QUOTA_PER_SECOND).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(BURST).unwrap_or(NonZeroU32::MIN);
    GovernorQuota::per_second(per_second).allow_burst(burst)
}

/// governor's keyed limiter over `DashMap`, with clock `C`.
type KeyedLimiter<C> =
    RateLimiter<Vec<u8>, DashMapStateStore<Vec<u8>>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// governor's keyed limiter (a `DashMap` of GCRA states updated with atomics), keyed by the
/// key's bytes. With [`QuantaClock`] this is exactly `DefaultKeyedRateLimiter<Vec<u8>>`
/// (`RateLimiter::keyed`).
#[allow(missing_debug_implementations)] // governor's limiter has no Debug
pub struct Governor<C: BenchClock> {
    limiter: KeyedLimiter<C>,
    keys: KeySet,
}

impl Governor<QuantaClock> {
    pub fn keyed(keys: KeySet) -> Governor<QuantaClock> {
        Governor {
            limiter: RateLimiter::keyed(governor_quota()),
            keys,
        }
    }
}

impl<C: BenchClock> Governor<C> {
    pub fn with_clock(keys: KeySet, clock: C) -> Governor<C> {
        Governor {
            limiter: RateLimiter::dashmap_with_clock(governor_quota(), clock),
            keys,
        }
    }
}

impl<C: BenchClock> Contender for Governor<C>
where
    C::Instant: Sync + Send,
{
    type Worker = ();

    fn name(&self) -> &'static str {
        "governor"
    }

    fn worker(&self) {}

    fn decide(&self, _worker: &mut (), key: usize) -> bool {
        self.limiter.check_key(self.keys.get_owned(key)).is_ok()
    }
}

/// sluice as the filter runs it: `Limiter::check` (placement by keyed hash into the rule's
/// bounded table, bucket decode, GCRA, bucket encode, compare-and-swap) over a store shared
/// by every thread, as proxy shared data is shared by every VM. Each key's `Check` is built
/// before timing starts, as the policy builds it per request.
#[allow(missing_debug_implementations)] // nor has governor's clock
pub struct SluiceLimiter<C: BenchClock> {
    store: ShardedCasStore,
    checks: Vec<Check<'static>>,
    prototype: Limiter,
    time: SluiceTime<C>,
}

impl<C: BenchClock> SluiceLimiter<C> {
    pub fn new(keys: &KeySet, clock: C) -> SluiceLimiter<C> {
        let limit = sluice_limit();
        let store = ShardedCasStore::default();
        let prototype = Limiter::new(
            Seed {
                k0: 0x0123_4567_89ab_cdef,
                k1: 0xfedc_ba98_7654_3210,
            },
            CAS_RETRIES,
        );
        // As the filter does at configure time: every bucket of the table created up front.
        if let Err(error) = prototype.prepare(RULE, &limit, MAX_KEYS, &mut store.handle()) {
            panic!("preparing the table in memory cannot fail: {error}");
        }
        let checks = keys
            .iter()
            .map(|key| Check {
                rule: RULE,
                limit,
                max_keys: MAX_KEYS,
                key: key.to_vec(),
                cost: 1,
                mode: Mode::Enforce,
                failure_mode: FailureMode::Open,
            })
            .collect();
        SluiceLimiter {
            store,
            checks,
            prototype,
            time: SluiceTime::new(clock),
        }
    }

    /// Store keys in use (the table's buckets).
    pub fn buckets(&self) -> usize {
        self.store.len()
    }
}

impl<C: BenchClock> Contender for SluiceLimiter<C>
where
    C::Instant: Sync + Send,
{
    type Worker = Limiter;

    fn name(&self) -> &'static str {
        "sluice Limiter::check"
    }

    fn worker(&self) -> Limiter {
        self.prototype.clone()
    }

    fn decide(&self, limiter: &mut Limiter, key: usize) -> bool {
        let check = &self.checks[key % self.checks.len()];
        let mut store = self.store.handle();
        let verdict = limiter.check(slice::from_ref(check), self.time.now(), &mut store);
        verdict.allowed
    }
}

/// sluice's algorithm alone: `Limit::decide` on the key's state in a sharded map, the layout
/// governor uses (no bounded table, no byte encoding, no CAS: the shard lock serialises).
#[allow(missing_debug_implementations)]
pub struct SluiceDecide<C: BenchClock> {
    states: ShardedStates,
    limit: Limit,
    keys: KeySet,
    time: SluiceTime<C>,
}

impl<C: BenchClock> SluiceDecide<C> {
    pub fn new(keys: KeySet, clock: C) -> SluiceDecide<C> {
        SluiceDecide {
            states: ShardedStates::default(),
            limit: sluice_limit(),
            keys,
            time: SluiceTime::new(clock),
        }
    }
}

impl<C: BenchClock> Contender for SluiceDecide<C>
where
    C::Instant: Sync + Send,
{
    type Worker = ();

    fn name(&self) -> &'static str {
        "sluice Limit::decide"
    }

    fn worker(&self) {}

    fn decide(&self, _worker: &mut (), key: usize) -> bool {
        let now = self.time.now();
        let limit = &self.limit;
        self.states
            .update(self.keys.get(key), |prev: Option<&State>| {
                let (decision, next) = limit.decide(prev, now, 1);
                (decision.allowed, decision.allowed.then_some(next))
            })
    }
}
