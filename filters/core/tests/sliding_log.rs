//! Sliding log with a fake clock: exact counts over the last period.

mod common;

use common::*;
use sluice_core::Algorithm::SlidingLog;

#[test]
fn admits_exactly_the_limit_in_any_period() {
    for period in PERIODS {
        let third = period / 3;
        let mut key = Key::new(limit(SlidingLog, 3, period, 3));
        key.allow(BASE, 1, 2, period);
        key.allow(BASE + third, 1, 1, period);
        key.allow(BASE + 2 * third, 1, 0, period);
        // The first unit leaves the log one period after it was spent.
        key.deny(BASE + 2 * third, 1, period - 2 * third, period);
        key.deny(BASE + period - 1, 1, 1, 2 * third + 1);
        key.allow(BASE + period, 1, 0, period);
        // Two units need the two oldest entries gone.
        key.deny(BASE + period, 2, 2 * third, period);
        key.allow(BASE + period + 2 * third, 2, 0, period);
    }
}

#[test]
fn requests_at_one_instant_share_an_entry() {
    let period = 5 * MINUTE;
    let mut key = Key::new(limit(SlidingLog, 5, period, 5));
    key.allow(BASE, 2, 3, period);
    key.allow(BASE, 3, 0, period);
    let sluice_core::State::SlidingLog { log } = key.state.clone().unwrap() else {
        panic!("sliding log state expected");
    };
    assert_eq!(log.entries().len(), 1);
    assert_eq!(log.units(), 5);
    key.deny(BASE + 1, 1, period - 1, period - 1);
    key.allow(BASE + period, 5, 0, period);
}

#[test]
fn the_log_never_holds_more_entries_than_the_limit() {
    let period = HOUR;
    let mut key = Key::new(limit(SlidingLog, 10, period, 10));
    for i in 0..1_000 {
        key.send(BASE + i * (period / 25), 1);
        let Some(sluice_core::State::SlidingLog { log }) = &key.state else {
            panic!("sliding log state expected");
        };
        assert!(log.entries().len() <= 10);
        assert!(log.units() <= 10);
    }
}

#[test]
fn cost_above_the_limit_never_passes_and_is_told_to_wait_a_period() {
    for period in PERIODS {
        let mut key = Key::new(limit(SlidingLog, 3, period, 3));
        key.deny(BASE, 4, period, 0);
        key.allow(BASE, 3, 0, period);
        key.deny(BASE + 1, 4, period, period - 1);
    }
}

#[test]
fn cost_zero_always_passes_and_spends_nothing() {
    let period = DAY;
    let mut key = Key::new(limit(SlidingLog, 1, period, 1));
    key.allow(BASE, 0, 1, 0);
    assert!(key.state.is_none());
    key.allow(BASE, 1, 0, period);
    key.allow(BASE + HOUR, 0, 0, period - HOUR);
}

#[test]
fn a_clock_that_goes_backwards_counts_at_the_newest_entry() {
    let period = 30 * SECOND;
    let mut key = Key::new(limit(SlidingLog, 2, period, 2));
    key.allow(BASE + 10 * SECOND, 1, 1, period);
    // Ten seconds back: recorded at +10 s, so it expires with that entry, not earlier.
    key.allow(BASE, 1, 0, period + 10 * SECOND);
    key.deny(BASE, 1, period + 10 * SECOND, period + 10 * SECOND);
    key.deny(BASE + 40 * SECOND - 1, 1, 1, 1);
    key.allow(BASE + 40 * SECOND, 2, 0, period);
}

#[test]
fn clocks_at_the_ends_of_the_range_saturate_without_panicking() {
    let mut key = Key::new(limit(SlidingLog, 3, DAY, 3));
    key.send(u64::MAX, 2);
    key.send(u64::MAX, 1);
    key.send(0, 1);
    key.send(1, u64::MAX);
}

#[test]
fn a_sub_second_period_works_in_nanoseconds() {
    let period = 500 * 1_000_000;
    let mut key = Key::new(limit(SlidingLog, 2, period, 2));
    key.allow(BASE, 1, 1, period);
    key.allow(BASE + 250_000_000, 1, 0, period);
    key.deny(BASE + 250_000_000, 1, 250_000_000, period);
    key.allow(BASE + period, 1, 0, period);
}
