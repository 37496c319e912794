//! Giving back a concurrency slot when the request that holds it ends.

use super::{Check, Limiter};
use crate::store::{SetError, SlotStore};
use crate::time::Nanos;

/// What a [`Limiter::release`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The slot was given back: the key holds one slot fewer.
    Given,
    /// Nothing to give back: the slot had expired already (it came back on its own), or the
    /// key's entry is gone (evicted, or its table rewritten).
    Expired,
    /// The store failed, or its compare-and-swap races outlasted the retries: the slot stays
    /// held until it expires.
    Failed,
}

impl Limiter {
    /// Gives back the slot that `check` (a concurrency check admitted by
    /// [`Limiter::check`] at `taken_at`) holds, at `now`, with the same bounded
    /// compare-and-swap retries as a check. Call it once per admitted request, when the
    /// request ends, however it ends.
    ///
    /// ```
    /// use sluice_core::memory_store::{MemoryStore, Semantics};
    /// use sluice_core::limiter::Released;
    /// use sluice_core::{Algorithm, Check, FailureMode, Limit, Limiter, Mode, Quota, Seed};
    ///
    /// let limit = Limit::new(Algorithm::Concurrency, Quota::new(1, 60_000_000_000, 1).unwrap());
    /// let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 8);
    /// let mut store = MemoryStore::new(Semantics::Envoy);
    /// let checks = [Check { rule: "in-flight", limit, max_keys: 64, key: b"k".to_vec(), cost: 1,
    ///                       mode: Mode::Enforce, failure_mode: FailureMode::Open }];
    /// assert!(limiter.check(&checks, 0, &mut store).allowed);
    /// assert!(!limiter.check(&checks, 1, &mut store).allowed);
    /// assert_eq!(limiter.release(&checks[0], 0, 2, &mut store), Released::Given);
    /// assert!(limiter.check(&checks, 3, &mut store).allowed);
    /// ```
    pub fn release<S: SlotStore>(
        &mut self,
        check: &Check<'_>,
        taken_at: Nanos,
        now: Nanos,
        store: &mut S,
    ) -> Released {
        let Limiter {
            seed,
            cas_retries,
            names,
            scratch,
        } = self;
        let slot = &mut scratch.release;
        slot.locate(check, seed, names);
        for _ in 0..=*cas_retries {
            let cas = match store.get(&slot.key, &mut slot.raw) {
                Ok(Some(cas)) => cas,
                Ok(None) => return Released::Expired,
                Err(_) => return Released::Failed,
            };
            if slot.bucket.decode_from(&slot.raw).is_err()
                || slot.bucket.signature() != slot.signature
            {
                return Released::Expired;
            }
            let Some(state) = slot.bucket.find_mut(slot.fingerprint) else {
                return Released::Expired;
            };
            let Some(released) = check.limit.release(state, taken_at, now) else {
                return Released::Expired;
            };
            *state = released;
            scratch.encoded.clear();
            slot.bucket.encode_into(&mut scratch.encoded);
            match store.set(&slot.key, &scratch.encoded, cas) {
                Ok(()) => return Released::Given,
                Err(SetError::CasMismatch) => slot.conflicts = slot.conflicts.saturating_add(1),
                Err(SetError::Store(_)) => return Released::Failed,
            }
        }
        Released::Failed
    }
}
