//! Fixed window with a fake clock: epoch-aligned windows and the numbers clients see.

mod common;

use common::*;
use sluice_core::Algorithm::FixedWindow;

#[test]
fn counts_per_aligned_window_and_resets_at_the_edge() {
    for period in PERIODS {
        let mut key = Key::new(limit(FixedWindow, 3, period, 3));
        let mid = BASE + period / 2;
        key.allow(mid, 1, 2, period / 2);
        key.allow(mid, 1, 1, period / 2);
        key.allow(mid + 1, 1, 0, period / 2 - 1);
        key.deny(mid + 1, 1, period / 2 - 1, period / 2 - 1);
        key.deny(BASE + period - 1, 1, 1, 1);
        key.allow(BASE + period, 1, 2, period);
        // Skipping windows starts from zero.
        key.allow(BASE + 7 * period + 5, 3, 0, period - 5);
    }
}

#[test]
fn windows_are_aligned_to_the_epoch_not_to_the_first_request() {
    let period = 5 * MINUTE;
    let mut key = Key::new(limit(FixedWindow, 2, period, 2));
    // First request 4m59s into the window: it resets in one second.
    key.allow(BASE + period - SECOND, 2, 0, SECOND);
    key.deny(BASE + period - SECOND, 1, SECOND, SECOND);
    key.allow(BASE + period, 2, 0, period);
}

#[test]
fn up_to_twice_the_limit_passes_across_an_edge() {
    let period = 30 * SECOND;
    let mut key = Key::new(limit(FixedWindow, 10, period, 10));
    key.allow(BASE + period - 1, 10, 0, 1);
    key.allow(BASE + period, 10, 0, period);
    key.deny(BASE + period, 1, period, period);
}

#[test]
fn cost_above_the_limit_never_passes_and_is_told_to_wait_a_period() {
    for period in PERIODS {
        let mut key = Key::new(limit(FixedWindow, 3, period, 3));
        key.deny(BASE + 1, 4, period, 0);
        key.allow(BASE + 1, 2, 1, period - 1);
        key.deny(BASE + 1, 2, period - 1, period - 1);
        key.deny(BASE + 1, 4, period, period - 1);
    }
}

#[test]
fn cost_zero_always_passes_and_spends_nothing() {
    let period = HOUR;
    let mut key = Key::new(limit(FixedWindow, 2, period, 2));
    key.allow(BASE, 0, 2, 0);
    key.allow(BASE, 2, 0, period);
    key.allow(BASE + 1, 0, 0, period - 1);
    key.deny(BASE + 1, 1, period - 1, period - 1);
}

#[test]
fn a_clock_that_goes_backwards_counts_in_the_stored_window() {
    let period = DAY;
    let mut key = Key::new(limit(FixedWindow, 2, period, 2));
    key.allow(BASE + HOUR, 2, 0, period - HOUR);
    // Back into the previous day: still the stored day's count, whose end is further away.
    key.deny(BASE - HOUR, 1, period + HOUR, period + HOUR);
    key.deny(0, 1, BASE + period, BASE + period);
    key.allow(BASE + period, 1, 1, period);
}

#[test]
fn clocks_at_the_ends_of_the_range_saturate_without_panicking() {
    let mut key = Key::new(limit(FixedWindow, 3, DAY, 3));
    key.send(u64::MAX, 3);
    key.send(u64::MAX, 1);
    key.send(0, 1);
    key.send(u64::MAX - 1, u64::MAX);
}

#[test]
fn a_sub_second_period_works_in_nanoseconds() {
    let period = 500 * 1_000_000;
    let mut key = Key::new(limit(FixedWindow, 2, period, 2));
    key.allow(BASE + 100, 2, 0, period - 100);
    key.deny(BASE + 100, 1, period - 100, period - 100);
    key.allow(BASE + period, 1, 1, period);
}
