//! GCRA with a fake clock: exact admit/deny sequences and the numbers clients see.

mod common;

use common::*;
use sluice_core::Algorithm::Gcra;

#[test]
fn a_full_bucket_spends_its_burst_then_refills_one_unit_per_interval() {
    for period in PERIODS {
        let t = period / 10;
        let mut key = Key::new(limit(Gcra, 10, period, 10));
        for spent in 1..=10 {
            key.allow(BASE, 1, 10 - spent, spent * t);
        }
        key.deny(BASE, 1, t, period);
        key.deny(BASE + t - 1, 1, 1, period - t + 1);
        key.allow(BASE + t, 1, 0, period);
        // Half a period later five units are back.
        key.allow(BASE + t + period / 2, 5, 0, period);
        key.deny(BASE + t + period / 2, 1, t, period);
        // After a long silence the bucket is full again, not fuller.
        key.allow(BASE + 5 * period, 1, 9, t);
    }
}

#[test]
fn burst_below_limit_caps_what_passes_at_once() {
    let period = 5 * MINUTE;
    let t = period / 10;
    let mut key = Key::new(limit(Gcra, 10, period, 3));
    key.allow(BASE, 1, 2, t);
    key.allow(BASE, 2, 0, 3 * t);
    key.deny(BASE, 1, t, 3 * t);
    key.deny(BASE, 3, 3 * t, 3 * t);
    key.allow(BASE + 3 * t, 3, 0, 3 * t);
}

#[test]
fn burst_above_limit_allows_a_larger_first_spend() {
    let period = HOUR;
    let t = period / 100;
    let mut key = Key::new(limit(Gcra, 100, period, 150));
    key.allow(BASE, 150, 0, 150 * t);
    key.deny(BASE, 1, t, 150 * t);
}

#[test]
fn cost_above_burst_never_passes_and_is_told_to_wait_a_period() {
    for period in PERIODS {
        let mut key = Key::new(limit(Gcra, 10, period, 4));
        key.deny(BASE, 5, period, 0);
        // It spent nothing: the full burst is still there.
        key.allow(BASE, 4, 0, 4 * (period / 10));
        key.deny(BASE + 10 * period, 5, period, 0);
    }
}

#[test]
fn cost_zero_always_passes_and_spends_nothing() {
    let period = 30 * SECOND;
    let t = period / 10;
    let mut key = Key::new(limit(Gcra, 10, period, 10));
    key.allow(BASE, 0, 10, 0);
    key.allow(BASE, 10, 0, period);
    key.allow(BASE, 0, 0, period);
    key.allow(BASE + t, 0, 1, period - t);
    key.allow(BASE + t, 1, 0, period);
}

#[test]
fn a_clock_that_goes_backwards_never_refills_the_bucket() {
    let period = DAY;
    let t = period / 10;
    let mut key = Key::new(limit(Gcra, 10, period, 10));
    let now = BASE + 3 * HOUR;
    key.allow(now, 10, 0, period);
    // One hour back: the debt looks an hour larger, so the wait is an hour longer.
    key.deny(now - HOUR, 1, t + HOUR, period + HOUR);
    // Back to the unix epoch itself.
    key.deny(0, 1, now + t, now + period);
    key.allow(now + t, 1, 0, period);
}

#[test]
fn clocks_at_the_ends_of_the_range_saturate_without_panicking() {
    let mut key = Key::new(limit(Gcra, 10, DAY, 10));
    key.send(u64::MAX - 1, 3);
    key.send(u64::MAX, 10);
    key.send(0, 1);
    key.send(u64::MAX, u64::MAX);
    let mut fine = Key::new(limit(Gcra, 1_000_000_000, SECOND, u64::MAX));
    fine.send(u64::MAX, u64::MAX);
    fine.send(0, u64::MAX - 1);
}

#[test]
fn a_sub_second_period_works_in_nanoseconds() {
    let period = 500 * 1_000_000; // 500 ms
    let mut key = Key::new(limit(Gcra, 5, period, 5));
    for spent in 1..=5 {
        key.allow(BASE, 1, 5 - spent, spent * 100_000_000);
    }
    key.deny(BASE, 1, 100_000_000, period);
}
