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
//!
//! # Delay
//!
//! With a delay allowance `max` (a rule's `delay.max`), a request whose new debt
//! `d = new_tat − now` is over `τ` but at most `τ + max` is admitted and committed now (as
//! NGINX's `limit_req burst= delay=` accounts it) and held for exactly `d − τ`: the instant at
//! which it would have passed without delay. So the first `burst` units of a burst pass at
//! once and the rest leave one `T` apart. Beyond `τ + max` the request is denied, with the same
//! `retry_after` as without delay (`d − τ`: it could be admitted with a hold of `max` from
//! `d − τ − max` on, but a client told to retry then would be held anyway). Admitted units
//! still pass at most `burst + ⌊w / T⌋` per interval `w`, counted at their release times.

use super::{allowed, denied};
use crate::decision::Decision;
use crate::quota::Quota;
use crate::time::Nanos;

/// Decides `cost` units at `now` against the stored `tat` (`None`: a full bucket), holding a
/// request up to `max_delay` rather than denying it (0: never hold); returns the decision and
/// the arrival time to store if the request is committed.
pub(super) fn decide(
    quota: &Quota,
    tat: Option<Nanos>,
    now: Nanos,
    cost: u64,
    max_delay: Nanos,
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
    } else if new_debt - tolerance <= max_delay {
        let mut decision = allowed(quota, 0, new_debt);
        decision.delay = new_debt - tolerance;
        (decision, new_tat)
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
            let (d, t) = decide(&q, tat, 0, 1, 0);
            assert!(d.allowed);
            tat = Some(t);
        }
        let (d, _) = decide(&q, tat, 0, 1, 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 333_333_333);
        assert!(!decide(&q, tat, d.retry_after - 1, 1, 0).0.allowed);
        assert!(decide(&q, tat, d.retry_after, 1, 0).0.allowed);
    }

    #[test]
    fn refund_restores_the_arrival_time() {
        let q = Quota::new(10, S, 5).unwrap();
        let (_, after) = decide(&q, Some(50), 100, 3, 0);
        assert_eq!(refund(&q, after, 3), 100);
    }

    #[test]
    fn a_burst_beyond_the_tolerance_is_held_one_interval_apart() {
        // 10 per second, burst 2: T = 100 ms, τ = 200 ms; delay up to 350 ms.
        let q = Quota::new(10, S, 2).unwrap();
        let max = 350_000_000;
        let mut tat = None;
        let mut holds = alloc::vec::Vec::new();
        for _ in 0..6 {
            let (d, t) = decide(&q, tat, 0, 1, max);
            if d.allowed {
                tat = Some(t);
                holds.push(Some(d.delay));
            } else {
                holds.push(None);
            }
        }
        // Debts 100, 200 (≤ τ: at once), 300, 400, 500 (held debt − τ = 100, 200, 300 ms),
        // 600 (hold 400 ms > 350: denied).
        assert_eq!(
            holds,
            [
                Some(0),
                Some(0),
                Some(100_000_000),
                Some(200_000_000),
                Some(300_000_000),
                None
            ]
        );
        // The denial's retry_after is as without delay: new debt 600 ms − τ = 400 ms.
        let (denied, _) = decide(&q, tat, 0, 1, max);
        assert_eq!(denied.retry_after, 400_000_000);
        assert_eq!(denied.delay, 0);
    }

    #[test]
    fn a_held_request_is_released_exactly_when_it_would_have_passed() {
        // 3 per second, burst 1: T = τ = 333_333_333 ns.
        let q = Quota::new(3, S, 1).unwrap();
        let (_, tat) = decide(&q, None, 0, 1, 0);
        let (held, _) = decide(&q, Some(tat), 10, 1, S);
        assert!(held.allowed);
        assert_eq!(held.remaining, 0);
        assert_eq!(held.reset_after, 2 * 333_333_333 - 10);
        // Without delay the same request is denied with retry_after = the hold.
        let (denied, _) = decide(&q, Some(tat), 10, 1, 0);
        assert_eq!(denied.retry_after, held.delay);
        assert_eq!(held.delay, 333_333_333 - 10);
        assert!(decide(&q, Some(tat), 10 + held.delay, 1, 0).0.allowed);
    }

    #[test]
    fn a_hold_of_exactly_max_is_admitted_and_one_nanosecond_more_is_not() {
        let q = Quota::new(1, S, 1).unwrap();
        let (_, tat) = decide(&q, None, 0, 1, 0);
        // New debt 2 s, τ = 1 s: a hold of 1 s.
        assert_eq!(decide(&q, Some(tat), 0, 1, S).0.delay, S);
        assert!(!decide(&q, Some(tat), 0, 1, S - 1).0.allowed);
    }

    #[test]
    fn refunding_a_held_request_gives_its_slot_to_the_next() {
        let q = Quota::new(10, S, 1).unwrap();
        let (_, t1) = decide(&q, None, 0, 1, S);
        let (held, t2) = decide(&q, Some(t1), 0, 1, S);
        assert_eq!(held.delay, 100_000_000);
        // The held request is given up: the next one is held exactly as long.
        let back = refund(&q, t2, 1);
        let (next, _) = decide(&q, Some(back), 0, 1, S);
        assert_eq!(next.delay, held.delay);
    }
}
