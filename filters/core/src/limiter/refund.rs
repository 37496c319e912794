//! Taking back a request's committed spend after [`Limiter::check`] allowed it, when a later
//! decision elsewhere (the global rate-limit service) denies the request: all or nothing
//! across stores.

use super::{Check, Limiter, RuleOutcome, RuleSlot, Status};
use crate::store::SlotStore;
use crate::time::Nanos;

impl Limiter {
    /// Refunds what [`Limiter::check`] committed for `checks` at `committed_at`, given the
    /// `outcomes` of its verdict: every check that was allowed and spent something. Other
    /// requests may have been checked in between; each rule's bucket is located again.
    ///
    /// Best effort, like the refunds inside `check`: each rule gets its own CAS loop of up to
    /// `cas_retries + 1` tries, and if the bucket is gone, no longer holds the key or the store
    /// fails, the units stay spent, which errs on the side of limiting.
    ///
    /// ```
    /// use sluice_core::memory_store::{MemoryStore, Semantics};
    /// use sluice_core::{Algorithm, Check, FailureMode, Limit, Limiter, Mode, Quota, Seed};
    ///
    /// let limit = Limit::new(Algorithm::FixedWindow, Quota::new(1, 60_000_000_000, 1).unwrap());
    /// let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 8);
    /// let mut store = MemoryStore::new(Semantics::Envoy);
    /// let checks = [Check { rule: "r", limit, max_keys: 64, key: b"k".to_vec(), cost: 1,
    ///                       mode: Mode::Enforce, failure_mode: FailureMode::Open }];
    /// let verdict = limiter.check(&checks, 0, &mut store);
    /// assert!(verdict.allowed);
    /// limiter.refund(&checks, &verdict.outcomes, 0, &mut store);
    /// // The unit is back: the next request passes too.
    /// assert!(limiter.check(&checks, 1, &mut store).allowed);
    /// ```
    pub fn refund<S: SlotStore>(
        &mut self,
        checks: &[Check<'_>],
        outcomes: &[RuleOutcome],
        committed_at: Nanos,
        store: &mut S,
    ) {
        let Limiter {
            seed,
            cas_retries,
            scratch,
        } = self;
        if scratch.rules.len() < checks.len() {
            scratch.rules.resize_with(checks.len(), RuleSlot::default);
        }
        for ((check, outcome), slot) in checks.iter().zip(outcomes).zip(scratch.rules.iter_mut()) {
            if outcome.status != Status::Allowed || check.cost == 0 {
                continue;
            }
            slot.locate(check, seed);
            super::refund(
                check,
                slot,
                committed_at,
                store,
                &mut scratch.encoded,
                *cas_retries,
            );
        }
    }
}
