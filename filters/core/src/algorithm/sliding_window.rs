//! Sliding window counter: the count of the current aligned window plus the previous window's
//! count weighted by how much of the previous window still overlaps the last `period`.
//!
//! At `elapsed` nanoseconds into the window starting at `start` (aligned to the epoch like the
//! fixed window), with `previous` and `current` units counted in the previous and current
//! windows and `P` the period,
//!
//! ```text
//! estimate = previous × (P − elapsed) / P + current
//! ```
//!
//! and a request of `n` units is allowed iff `estimate + n ≤ limit`. The comparison is done
//! exactly in `u128` (`previous × (P − elapsed) + (current + n) × P ≤ limit × P`), with no
//! rounding; `remaining` is `⌊limit − estimate⌋` after the request.
//!
//! - `retry_after` (denied) is the earliest instant the same request fits: later in this window
//!   once `previous`'s weight has decayed enough (if `current + n ≤ limit`), otherwise in the
//!   next window, where `current` becomes the decaying `previous`. Exact to the nanosecond.
//! - `reset_after` is the time until the estimate is back to 0: the end of the next window if
//!   the current window has units, the end of this one if only the previous window has.
//!
//! # Error bound
//!
//! The estimate assumes the previous window's units were spread evenly over it. Take any
//! interval of length `P` starting `e` nanoseconds into an aligned window `k` (so it covers the
//! last `P − e` of window `k` and the first `e` of window `k + 1`); let `c` be the units counted
//! in window `k` and `a` the units among them spent inside the interval. Then
//!
//! - **Over-admission.** The interval holds at most `limit + a − c × (P − e) / P` units: the
//!   excess over `limit` is exactly how far window `k`'s late units exceed their pro-rata share.
//!   Evenly spread units (`a = c (P−e)/P`) give no excess; all of window `k`'s units bunched at
//!   its end (`a = c`) give the worst case, `limit + c × e / P`, which is below `2 × limit`: at
//!   most `2 × limit − 1` units pass in any sliding period, against `2 × limit` for a fixed
//!   window. Within one aligned window never more than `limit` pass.
//! - **Under-admission.** A request is denied only if the units actually spent in the last
//!   `P`, plus the request, exceed `limit − (previous × (P − elapsed) / P − a)`, where `a` is the
//!   part of `previous` actually spent within the last `P`: the limiter can refuse at most
//!   `previous × (P − elapsed) / P` (less than `limit`) units that an exact sliding log would
//!   admit, when the previous window's units were bunched at its start.
//!
//! With traffic that saturates the limit the two cancel out: each window's units are then
//! spread the way the estimate assumes.
//!
//! A `now` before the stored window (the clock went backwards) is counted at the start of the
//! stored window.

use super::{allowed, denied, window_start};
use crate::decision::Decision;
use crate::quota::Quota;
use crate::time::Nanos;

/// The stored counts and the start of the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Windows {
    pub(super) start: Nanos,
    pub(super) previous: u64,
    pub(super) current: u64,
}

/// The stored counts as seen from `now`'s window.
fn roll(period: Nanos, stored: Option<Windows>, now: Nanos) -> Windows {
    let start = window_start(now, period);
    let empty = Windows {
        start,
        previous: 0,
        current: 0,
    };
    match stored {
        // Same window, or a later one the clock has gone back from.
        Some(w) if w.start >= start => w,
        Some(w) if w.start.checked_add(period) == Some(start) => Windows {
            start,
            previous: w.current,
            current: 0,
        },
        _ => empty,
    }
}

pub(super) fn decide(
    quota: &Quota,
    stored: Option<Windows>,
    now: Nanos,
    cost: u64,
) -> (Decision, Windows) {
    let limit = quota.limit();
    let period = quota.period();
    let w = roll(period, stored, now);
    // Before the stored window (clock went back): count at its start.
    let elapsed = now.saturating_sub(w.start).min(period);
    let p = u128::from(period);
    let weighted_previous = u128::from(w.previous) * (p - u128::from(elapsed));
    let reset_after = |current: u64| {
        let idle = idle_at(period, w.start, w.previous, current);
        idle.saturating_sub(now)
    };

    if cost > limit {
        return (denied(quota, reset_after(w.current), period), w);
    }
    let budget = u128::from(limit) * p;
    // Saturating: with a period near the top of the `u64` range and a stored count near its
    // top, `(current + cost) × P` exceeds even `u128` (and then is certainly over budget).
    let used_after = weighted_previous.saturating_add(
        u128::from(w.current)
            .saturating_add(u128::from(cost))
            .saturating_mul(p),
    );
    if used_after <= budget {
        let remaining = ((budget - used_after) / p) as u64;
        let current = w.current.saturating_add(cost);
        let decision = allowed(quota, remaining, reset_after(current));
        return (decision, Windows { current, ..w });
    }
    let retry_at = earliest_fit(limit, period, &w, cost);
    let decision = denied(quota, reset_after(w.current), retry_at.saturating_sub(now));
    (decision, w)
}

/// The earliest time at which `cost` units fit, for a request that does not fit now
/// (`cost ≤ limit`).
fn earliest_fit(limit: u64, period: Nanos, w: &Windows, cost: u64) -> Nanos {
    let p = u128::from(period);
    let end = u128::from(w.start) + p;
    // Later in this window: previous × (end − t) ≤ (limit − current − cost) × P.
    if let Some(room) = limit
        .checked_sub(cost)
        .and_then(|r| r.checked_sub(w.current))
        && w.previous > 0
    {
        let max_overlap = u128::from(room) * p / u128::from(w.previous);
        if max_overlap > 0 {
            // max_overlap < P: the request does not fit now, so the overlap must shrink.
            return saturate(end - max_overlap.min(p));
        }
    }
    // In the next window, where `current` decays: current × (end + P − t) ≤ (limit − cost) × P.
    if w.current == 0 {
        return saturate(end);
    }
    let room = u128::from(limit - cost) * p;
    let max_overlap = (room / u128::from(w.current)).min(p);
    saturate(end + p - max_overlap)
}

fn saturate(t: u128) -> Nanos {
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// Takes `cost` back from the window the spend went into: still the current window, or the
/// previous one if the stored windows have rolled once since.
pub(super) fn refund(quota: &Quota, stored: Windows, cost: u64, committed_at: Nanos) -> Windows {
    let spent_in = window_start(committed_at, quota.period());
    if stored.start == spent_in {
        Windows {
            current: stored.current.saturating_sub(cost),
            ..stored
        }
    } else if spent_in.checked_add(quota.period()) == Some(stored.start) {
        Windows {
            previous: stored.previous.saturating_sub(cost),
            ..stored
        }
    } else {
        stored
    }
}

pub(super) fn idle_at(period: Nanos, start: Nanos, previous: u64, current: u64) -> Nanos {
    if current > 0 {
        start.saturating_add(period).saturating_add(period)
    } else if previous > 0 {
        start.saturating_add(period)
    } else {
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_later_in_this_window_when_the_previous_weight_decays() {
        // limit 10 per 100 ns; previous window 10, current 0, 20 ns in: estimate 8.
        let q = Quota::new(10, 100, 10).unwrap();
        let stored = Some(Windows {
            start: 100,
            previous: 10,
            current: 0,
        });
        let (d, _) = decide(&q, stored, 120, 3);
        assert!(!d.allowed);
        // Fits when 10 × (200 − t) / 100 ≤ 7, i.e. t ≥ 130.
        assert_eq!(d.retry_after, 10);
        assert!(!decide(&q, stored, 129, 3).0.allowed);
        assert!(decide(&q, stored, 130, 3).0.allowed);
    }

    #[test]
    fn retry_in_the_next_window_when_the_current_window_is_full() {
        let q = Quota::new(10, 100, 10).unwrap();
        let stored = Some(Windows {
            start: 100,
            previous: 0,
            current: 10,
        });
        let (d, _) = decide(&q, stored, 150, 4);
        assert!(!d.allowed);
        // Next window: 10 × (300 − t) / 100 ≤ 6, i.e. t ≥ 240.
        assert_eq!(d.retry_after, 90);
        assert!(!decide(&q, stored, 239, 4).0.allowed);
        assert!(decide(&q, stored, 240, 4).0.allowed);
    }

    #[test]
    fn refund_follows_the_spend_into_the_previous_window() {
        let q = Quota::new(10, 100, 10).unwrap();
        let rolled = Windows {
            start: 200,
            previous: 4,
            current: 1,
        };
        assert_eq!(refund(&q, rolled, 3, 150).previous, 1);
        assert_eq!(refund(&q, rolled, 1, 250).current, 0);
        assert_eq!(refund(&q, rolled, 3, 50), rolled);
    }
}
