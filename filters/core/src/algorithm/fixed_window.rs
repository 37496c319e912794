//! Fixed window: a count per window of `period`, windows aligned to the Unix epoch
//! (`⌊now / period⌋ × period`) so every VM, every process and the Worker agree on the edges
//! without talking to each other.
//!
//! A request of `n` units is allowed iff `count + n ≤ limit`. `reset_after` is the time until
//! the window ends (0 when nothing is counted), and so is `retry_after` when denied: the next
//! window starts empty. At most `limit` units pass in any aligned window, but up to
//! `2 × limit` can pass in a `period` that straddles an edge (the end of one window and the
//! start of the next).
//!
//! A `now` before the stored window (the clock went backwards) is counted in the stored
//! window; a `now` in a later window starts a new count.

use super::{allowed, denied, window_start};
use crate::decision::Decision;
use crate::quota::Quota;
use crate::time::Nanos;

/// The stored count and the start of the window it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) start: Nanos,
    pub(super) count: u64,
}

/// The window that `now` counts in, given what is stored.
fn current(period: Nanos, stored: Option<Window>, now: Nanos) -> Window {
    let start = window_start(now, period);
    match stored {
        // Same window, or a later one the clock has gone back from.
        Some(w) if w.start >= start => w,
        _ => Window { start, count: 0 },
    }
}

pub(super) fn decide(
    quota: &Quota,
    stored: Option<Window>,
    now: Nanos,
    cost: u64,
) -> (Decision, Window) {
    let limit = quota.limit();
    let window = current(quota.period(), stored, now);
    let until_end = window
        .start
        .saturating_add(quota.period())
        .saturating_sub(now);
    let reset_after = |count: u64| if count == 0 { 0 } else { until_end };

    if cost > limit {
        return (
            denied(quota, reset_after(window.count), quota.period()),
            window,
        );
    }
    match window.count.checked_add(cost) {
        Some(count) if count <= limit => (
            allowed(quota, limit - count, reset_after(count)),
            Window { count, ..window },
        ),
        _ => (denied(quota, until_end, until_end), window),
    }
}

/// Takes `cost` back from the window the spend went into, if that is still the stored one.
pub(super) fn refund(quota: &Quota, stored: Window, cost: u64, committed_at: Nanos) -> Window {
    if stored.start == window_start(committed_at, quota.period()) {
        Window {
            count: stored.count.saturating_sub(cost),
            ..stored
        }
    } else {
        stored
    }
}

pub(super) fn idle_at(period: Nanos, start: Nanos, count: u64) -> Nanos {
    if count == 0 {
        start
    } else {
        start.saturating_add(period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backwards_clock_keeps_counting_in_the_stored_window() {
        let q = Quota::new(2, 100, 2).unwrap();
        let stored = Some(Window {
            start: 200,
            count: 2,
        });
        let (d, w) = decide(&q, stored, 150, 1);
        assert!(!d.allowed);
        assert_eq!(w.start, 200);
        // The stored window ends at 300: 150 ns from the (earlier) now.
        assert_eq!(d.retry_after, 150);
    }

    #[test]
    fn refund_ignores_a_window_that_has_rolled_past() {
        let q = Quota::new(5, 100, 5).unwrap();
        let w = Window {
            start: 100,
            count: 3,
        };
        assert_eq!(refund(&q, w, 1, 150).count, 2);
        assert_eq!(refund(&q, w, 1, 50).count, 3);
    }
}
