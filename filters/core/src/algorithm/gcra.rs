//! GCRA, the generic cell rate algorithm: a token bucket stored as one timestamp.
//!
//! With emission interval `T = period / limit` (one unit's worth of time, rounded down to a
//! whole nanosecond) and tolerance `τ = burst × T`, the state is the theoretical arrival time
//! `tat`: the instant at which the key's bucket will be full again. A request of `n` units at
//! `now` would move it to `new_tat = max(tat, now) + n × T`; it is allowed iff
//! `new_tat − now ≤ τ`, i.e. iff the debt it leaves does not exceed `burst` units.
//!
//! - `remaining` = `⌊(τ − (new_tat − now)) / T⌋`, the units that could still be spent now;
//! - `reset_after` = `new_tat − now`, the time until the bucket is full again;
//! - `retry_after` (denied) = `new_tat − now − τ`, exact: the same request passes at exactly
//!   `now + retry_after` and not a nanosecond earlier (as long as nothing else is spent).
//!
//! This is a token bucket of capacity `burst` refilled with one token every `T`, so over any
//! interval of length `w` at most `burst + ⌊w / T⌋` units pass. A clock that goes backwards
//! only makes `tat − now` larger, so it can delay a client but never refill its bucket.

use super::{allowed, denied};
use crate::decision::Decision;
use crate::quota::Quota;
use crate::time::Nanos;

/// Decides `cost` units at `now` against the stored `tat` (`None`: a full bucket); returns the
/// decision and the arrival time to store if the request is committed.
pub(super) fn decide(
    quota: &Quota,
    tat: Option<Nanos>,
    now: Nanos,
    cost: u64,
) -> (Decision, Nanos) {
    let interval = quota.emission_interval();
    let tolerance = quota.burst().saturating_mul(interval);
    let tat = tat.map_or(now, |tat| tat.max(now));
    let debt = tat - now;

    if cost == 0 {
        let remaining = tolerance.saturating_sub(debt) / interval;
        return (allowed(quota, remaining, debt), tat);
    }
    if cost > quota.burst() {
        return (denied(quota, debt, quota.period()), tat);
    }
    let new_tat = tat.saturating_add(cost.saturating_mul(interval));
    let new_debt = new_tat - now;
    if new_debt <= tolerance {
        let remaining = (tolerance - new_debt) / interval;
        (allowed(quota, remaining, new_debt), new_tat)
    } else {
        (denied(quota, debt, new_debt - tolerance), tat)
    }
}

/// Gives back `cost` units: GCRA is linear in what was spent, so this is exact even after
/// other requests were committed on top.
pub(super) fn refund(quota: &Quota, tat: Nanos, cost: u64) -> Nanos {
    tat.saturating_sub(cost.saturating_mul(quota.emission_interval()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::NANOS_PER_SEC as S;

    #[test]
    fn retry_after_is_exact_to_the_nanosecond() {
        // 3 per second: T = 333_333_333 ns.
        let q = Quota::new(3, S, 3).unwrap();
        let mut tat = None;
        for _ in 0..3 {
            let (d, t) = decide(&q, tat, 0, 1);
            assert!(d.allowed);
            tat = Some(t);
        }
        let (d, _) = decide(&q, tat, 0, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 333_333_333);
        assert!(!decide(&q, tat, d.retry_after - 1, 1).0.allowed);
        assert!(decide(&q, tat, d.retry_after, 1).0.allowed);
    }

    #[test]
    fn refund_restores_the_arrival_time() {
        let q = Quota::new(10, S, 5).unwrap();
        let (_, after) = decide(&q, Some(50), 100, 3);
        assert_eq!(refund(&q, after, 3), 100);
    }
}
