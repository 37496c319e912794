//! Sliding window counter with a fake clock: the weighted estimate, exact retry times, and the
//! documented worst case.

mod common;

use common::*;
use sluice_core::Algorithm::SlidingWindow;

#[test]
fn the_previous_window_weighs_in_proportion_to_its_overlap() {
    for period in PERIODS {
        let tenth = period / 10;
        let mut key = Key::new(limit(SlidingWindow, 10, period, 10));
        key.allow(BASE, 10, 0, 2 * period);
        // Current window full: the next window at 1.1 P is the first time 1 unit fits
        // (previous 10 weighted 0.9 = 9, plus 1).
        key.deny(BASE, 1, period + tenth, 2 * period);
        key.deny(BASE + period + tenth - 1, 1, 1, period - tenth + 1);
        key.allow(BASE + period + tenth, 1, 0, 2 * period - tenth);
        // Half way: 10 × 0.5 + 1 = 6 used, 4 left; 4 more fit, the fifth waits.
        key.allow(BASE + period + 5 * tenth, 4, 0, 2 * period - 5 * tenth);
        // 10 × (1 − e) + 5 + 1 ≤ 10 needs e ≥ 0.6: one tenth later.
        key.deny(BASE + period + 5 * tenth, 1, tenth, 2 * period - 5 * tenth);
        key.allow(BASE + period + 6 * tenth, 1, 0, 2 * period - 6 * tenth);
    }
}

#[test]
fn remaining_rounds_the_estimate_down() {
    let period = 30 * SECOND;
    let mut key = Key::new(limit(SlidingWindow, 10, period, 10));
    key.allow(BASE, 3, 7, 2 * period);
    // Previous 3 at a third of the way: 3 × 2/3 = 2 used, plus 1 spent: 7 left.
    key.allow(BASE + period + 10 * SECOND, 1, 7, 2 * period - 10 * SECOND);
    // At 0.4 P previous weighs 1.8: 1.8 + 1 + 1 = 3.8 used, 6.2 left, reported as 6.
    key.allow(BASE + period + 12 * SECOND, 1, 6, 2 * period - 12 * SECOND);
}

#[test]
fn reset_is_when_the_estimate_is_back_to_zero() {
    let period = HOUR;
    let mut key = Key::new(limit(SlidingWindow, 5, period, 5));
    key.allow(BASE + 10 * MINUTE, 1, 4, 2 * period - 10 * MINUTE);
    // Nothing in the new window yet: only the previous window weighs, until its end.
    key.allow(BASE + period + 30 * MINUTE, 0, 4, 30 * MINUTE);
    key.allow(BASE + 2 * period, 0, 5, 0);
}

#[test]
fn bunching_at_a_window_end_lets_at_most_twice_the_limit_minus_one_through_in_a_period() {
    // The documented worst case: all of window k's units in its last instant.
    let period = 100;
    let l = 10;
    let mut key = Key::new(limit(SlidingWindow, l, period, l));
    let mut admitted = Vec::new();
    let end = BASE + period;
    if key.send(end - 1, l).allowed {
        admitted.push((end - 1, l));
    }
    for t in end..end + period {
        if key.send(t, 1).allowed {
            admitted.push((t, 1));
        }
    }
    let in_period: u64 = admitted
        .iter()
        .filter(|(t, _)| *t >= end - 1 && *t < end - 1 + period)
        .map(|(_, c)| c)
        .sum();
    // 10 at the end of window 0, then 10·e/P fit by elapsed e: 9 by e = 98.
    assert_eq!(in_period, 2 * l - 1);
}

#[test]
fn cost_above_the_limit_never_passes_and_is_told_to_wait_a_period() {
    for period in PERIODS {
        let mut key = Key::new(limit(SlidingWindow, 3, period, 3));
        key.deny(BASE, 4, period, 0);
        key.allow(BASE, 3, 0, 2 * period);
        key.deny(BASE + 1, 4, period, 2 * period - 1);
    }
}

#[test]
fn cost_zero_always_passes_and_spends_nothing() {
    let period = 5 * MINUTE;
    let mut key = Key::new(limit(SlidingWindow, 2, period, 2));
    key.allow(BASE, 0, 2, 0);
    assert!(key.state.is_none());
    key.allow(BASE, 2, 0, 2 * period);
    key.allow(BASE + 1, 0, 0, 2 * period - 1);
}

#[test]
fn a_clock_that_goes_backwards_counts_at_the_start_of_the_stored_window() {
    let period = DAY;
    let mut key = Key::new(limit(SlidingWindow, 4, period, 4));
    key.allow(BASE + period + HOUR, 4, 0, 2 * period - HOUR);
    // Back into the previous day: the stored day's count still applies, and nothing has
    // decayed, so the retry is measured from the earlier clock.
    key.deny(
        BASE + HOUR,
        1,
        2 * period - HOUR + period / 4,
        3 * period - HOUR,
    );
    key.deny(0, 1, BASE + 2 * period + period / 4, BASE + 3 * period);
}

#[test]
fn clocks_at_the_ends_of_the_range_saturate_without_panicking() {
    let mut key = Key::new(limit(SlidingWindow, 3, DAY, 3));
    key.send(u64::MAX, 3);
    key.send(u64::MAX, 1);
    key.send(0, 1);
    key.send(u64::MAX - DAY, u64::MAX);
}

#[test]
fn a_sub_second_period_works_in_nanoseconds() {
    let period = 500 * 1_000_000;
    let mut key = Key::new(limit(SlidingWindow, 2, period, 2));
    key.allow(BASE, 2, 0, 2 * period);
    // Next window: 2 × (1 − e) + 1 ≤ 2 at e = 0.5.
    key.deny(BASE, 1, period + period / 2, 2 * period);
    key.allow(BASE + period + period / 2, 1, 0, 2 * period - period / 2);
}
