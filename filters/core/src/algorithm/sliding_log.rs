//! Sliding log: exact. The state remembers every admission (time and units) still inside the
//! last `period`; a unit spent at `at` counts at every time `t` with `t < at + period`.
//!
//! A request of `n` units is allowed iff the units in the log plus `n` do not exceed `limit`,
//! so in every interval of length `period` at most `limit` units pass. `retry_after` (denied)
//! is the time until enough of the oldest entries have expired for the request to fit;
//! `reset_after` is the time until the newest entry expires (the log is then empty).
//!
//! Admissions at the same instant share one entry, and every entry holds at least one unit, so
//! the log never has more than `limit` entries; its size is what
//! [`super::Limit::max_state_bytes`] bounds. Its cost is that memory: prefer the sliding window
//! counter for large limits.
//!
//! A `now` older than the newest entry (the clock went backwards) is counted at the newest
//! entry's time, so the log stays ordered and nothing expires early.

use super::{allowed, denied};
use crate::decision::Decision;
use crate::quota::Quota;
use crate::state::Log;
use crate::time::Nanos;

pub(super) fn decide(
    quota: &Quota,
    stored: Option<&Log>,
    now: Nanos,
    cost: u64,
) -> (Decision, Log) {
    let limit = quota.limit();
    let period = quota.period();
    let mut log = stored.cloned().unwrap_or_default();
    let at = log.last_at().map_or(now, |last| last.max(now));
    if let Some(cutoff) = at.checked_sub(period) {
        log.expire_through(cutoff);
    }
    let used = log.units();
    let until_empty = |log: &Log| {
        log.last_at()
            .map_or(0, |last| last.saturating_add(period).saturating_sub(now))
    };

    if cost == 0 {
        let decision = allowed(quota, limit.saturating_sub(used), until_empty(&log));
        return (decision, log);
    }
    if cost > limit {
        return (denied(quota, until_empty(&log), period), log);
    }
    match used.checked_add(cost) {
        Some(total) if total <= limit => {
            log.record(at, cost);
            let decision = allowed(quota, limit - total, until_empty(&log));
            (decision, log)
        }
        _ => {
            let retry_at = earliest_fit(&log, limit, period, used, cost);
            let decision = denied(quota, until_empty(&log), retry_at.saturating_sub(now));
            (decision, log)
        }
    }
}

/// The time at which enough of the oldest entries have expired for `cost` more units to fit
/// (`cost ≤ limit`, and they do not fit now).
fn earliest_fit(log: &Log, limit: u64, period: Nanos, used: u64, cost: u64) -> Nanos {
    let allowed_in_log = limit - cost;
    let mut left = used;
    for entry in log.entries() {
        left = left.saturating_sub(entry.units);
        if left <= allowed_in_log {
            return entry.at.saturating_add(period);
        }
    }
    // Unreachable with cost ≤ limit (an empty log fits); the newest entry's expiry is safe.
    log.last_at().map_or(0, |last| last.saturating_add(period))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LogEntry;

    #[test]
    fn retry_waits_for_just_enough_entries_to_expire() {
        let q = Quota::new(5, 100, 5).unwrap();
        let log = Log::from_entries(alloc::vec![
            LogEntry { at: 10, units: 2 },
            LogEntry { at: 20, units: 1 },
            LogEntry { at: 30, units: 2 },
        ])
        .unwrap();
        // 5 used; 3 more need the first two entries gone: at 20 + 100.
        let (d, _) = decide(&q, Some(&log), 50, 3);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 70);
        assert_eq!(d.reset_after, 80);
        assert!(!decide(&q, Some(&log), 119, 3).0.allowed);
        assert!(decide(&q, Some(&log), 120, 3).0.allowed);
    }

    #[test]
    fn a_backwards_clock_records_at_the_newest_entry() {
        let q = Quota::new(5, 100, 5).unwrap();
        let log = Log::from_entries(alloc::vec![LogEntry { at: 500, units: 1 }]).unwrap();
        let (d, log) = decide(&q, Some(&log), 400, 1);
        assert!(d.allowed);
        assert_eq!(log.entries(), &[LogEntry { at: 500, units: 2 }]);
        assert_eq!(d.reset_after, 200);
    }
}
