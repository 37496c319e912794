//! Concurrency: a cap on the requests a key has in flight, each holding a slot from its
//! admission until its stream ends (a release) or, if the release is lost (a VM trap, a
//! crash), until the slot expires on its own.
//!
//! The quota's `limit` is the most slots at once (`max`) and its `period` is the slot's time
//! to live (`slot_ttl`). Time is cut into epoch-aligned buckets of `w = ⌈slot_ttl / 8⌉`, so
//! every VM and process agrees on them without talking; a slot is counted in the bucket it
//! was taken in, and the state keeps the newest bucket's number (`epoch`) and the counts of
//! the [`SLOT_BUCKETS`] buckets up to it (`taken[0]` is bucket `epoch`, `taken[i]` bucket
//! `epoch − i`). A bucket is live while the current bucket is at most 8 after it, so a slot
//! expires between `8w` and `9w` after it was taken: after `slot_ttl` (never earlier) and at
//! most about `slot_ttl × 9/8`. No per-slot timestamp is stored, so the state has one fixed
//! shape whatever `max` is. Counts are 32-bit (a policy allows at most a million slots); a
//! `max` above `u32::MAX` counts as `u32::MAX`.
//!
//! - A request of `n` slots (a policy always asks for one) is admitted iff
//!   `live + n ≤ max`, `live` being the sum of the live buckets.
//! - `remaining` = `max − live − n`; `reset_after` = the time until every live slot has
//!   expired if none is released (an upper bound: releases come sooner).
//! - `retry_after` (denied): when a slot comes back is not known (it comes back when some
//!   request ends); the expiry of the oldest live bucket bounds it, and clients are told
//!   the smaller of that and one second.
//! - A clock that goes backwards counts the slot in the stored newest bucket (later, so the
//!   slot lives at least as long), and never revives expired buckets.
//! - A release takes a slot back from the bucket it was taken in, if that bucket is still
//!   live; an expired slot's release does nothing (it has already come back).

use super::{allowed, denied};
use crate::decision::Decision;
use crate::quota::Quota;
use crate::time::{NANOS_PER_SEC, Nanos};

/// How many bucket counts the state keeps: the current bucket and the 8 before it.
pub const SLOT_BUCKETS: usize = 9;
/// Buckets per `slot_ttl`.
const BUCKETS_PER_TTL: u64 = 8;
/// The longest `retry_after` of a denial.
const MAX_RETRY_AFTER: Nanos = NANOS_PER_SEC;

/// The slots a key holds: counts per bucket, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slots {
    /// The bucket number (`⌊t / w⌋`) of `taken[0]`.
    pub(super) epoch: u64,
    pub(super) taken: [u32; SLOT_BUCKETS],
}

/// The bucket width for a `slot_ttl` (at least one nanosecond).
pub(super) fn bucket_width(slot_ttl: Nanos) -> Nanos {
    slot_ttl.div_ceil(BUCKETS_PER_TTL).max(1)
}

impl Slots {
    /// The stored slots brought forward to bucket `bucket` (expired buckets dropped), each
    /// count capped at `max` (a state this code writes never holds more).
    fn at(stored: Option<Slots>, bucket: u64, max: u64) -> Slots {
        let mut slots = match stored {
            None => Slots {
                epoch: bucket,
                taken: [0; SLOT_BUCKETS],
            },
            // The same bucket, or a later one the clock has gone back from.
            Some(s) if s.epoch >= bucket => s,
            Some(s) => {
                let shift = bucket - s.epoch;
                let mut taken = [0; SLOT_BUCKETS];
                if let Ok(shift) = usize::try_from(shift)
                    && shift < SLOT_BUCKETS
                {
                    for (to, from) in taken.iter_mut().skip(shift).zip(s.taken.iter()) {
                        *to = *from;
                    }
                }
                Slots {
                    epoch: bucket,
                    taken,
                }
            }
        };
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        for count in &mut slots.taken {
            *count = (*count).min(max);
        }
        slots
    }

    /// Slots held in the live buckets.
    pub(super) fn live(&self) -> u64 {
        self.taken
            .iter()
            .fold(0u64, |sum, n| sum.saturating_add(u64::from(*n)))
    }

    /// When the bucket `age` buckets before `epoch` expires.
    fn expiry(&self, age: usize, width: Nanos) -> Nanos {
        let bucket = self
            .epoch
            .saturating_sub(age as u64)
            .saturating_add(SLOT_BUCKETS as u64);
        bucket.saturating_mul(width)
    }

    /// When every slot held has expired (0 when none is held).
    pub(super) fn idle_at(&self, width: Nanos) -> Nanos {
        match self.taken.iter().position(|n| *n > 0) {
            Some(newest) => self.expiry(newest, width),
            None => 0,
        }
    }

    /// When the oldest slot held expires (0 when none is held).
    fn first_expiry(&self, width: Nanos) -> Nanos {
        match self.taken.iter().rposition(|n| *n > 0) {
            Some(oldest) => self.expiry(oldest, width),
            None => 0,
        }
    }

    /// Takes up to `units` back from the bucket that holds time `at`, if it is one of the
    /// stored ones; returns whether anything was taken back.
    fn take_back(&mut self, at: Nanos, width: Nanos, units: u64) -> bool {
        let bucket = at / width;
        let Some(age) = self.epoch.checked_sub(bucket) else {
            return false;
        };
        let count = usize::try_from(age)
            .ok()
            .and_then(|age| self.taken.get_mut(age));
        match count {
            Some(count) if *count > 0 && units > 0 => {
                *count = count.saturating_sub(u32::try_from(units).unwrap_or(u32::MAX));
                true
            }
            _ => false,
        }
    }
}

/// Decides `cost` slots at `now` for a key holding `stored`.
pub(super) fn decide(
    quota: &Quota,
    stored: Option<Slots>,
    now: Nanos,
    cost: u64,
) -> (Decision, Slots) {
    let max = quota.limit();
    let width = bucket_width(quota.period());
    let mut slots = Slots::at(stored, now / width, max);
    let live = slots.live();
    let until = |t: Nanos| t.saturating_sub(now);
    if cost > max {
        return (
            denied(quota, until(slots.idle_at(width)), quota.period()),
            slots,
        );
    }
    match live.checked_add(cost) {
        Some(held) if held <= max => {
            if let Some(newest) = slots.taken.first_mut() {
                *newest = newest.saturating_add(u32::try_from(cost).unwrap_or(u32::MAX));
            }
            (
                allowed(quota, max - held, until(slots.idle_at(width))),
                slots,
            )
        }
        _ => {
            let retry_after = until(slots.first_expiry(width)).min(MAX_RETRY_AFTER);
            (
                denied(quota, until(slots.idle_at(width)), retry_after),
                slots,
            )
        }
    }
}

/// Gives back one slot taken at `taken_at`, at `now`: `None` if it has expired already (or
/// there is nothing to give back), else the slots without it.
pub(super) fn release(quota: &Quota, stored: Slots, taken_at: Nanos, now: Nanos) -> Option<Slots> {
    let width = bucket_width(quota.period());
    let mut slots = Slots::at(Some(stored), now / width, quota.limit());
    slots.take_back(taken_at, width, 1).then_some(slots)
}

/// Undoes a commit of `cost` slots made at `committed_at` (a lost race, a denial elsewhere),
/// in the slots as stored now.
pub(super) fn refund(quota: &Quota, stored: Slots, cost: u64, committed_at: Nanos) -> Slots {
    let mut slots = stored;
    slots.take_back(committed_at, bucket_width(quota.period()), cost);
    slots
}

pub(super) fn idle_at(period: Nanos, slots: &Slots) -> Nanos {
    slots.idle_at(bucket_width(period))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Nanos = 80 * NANOS_PER_SEC;
    const W: Nanos = 10 * NANOS_PER_SEC;

    fn quota(max: u64) -> Quota {
        Quota::new(max, TTL, max).unwrap()
    }

    #[test]
    fn buckets_are_an_eighth_of_the_ttl() {
        assert_eq!(bucket_width(TTL), W);
        assert_eq!(bucket_width(9), 2);
        assert_eq!(bucket_width(1), 1);
    }

    #[test]
    fn moving_forward_shifts_and_drops_expired_buckets() {
        let mut taken = [0; SLOT_BUCKETS];
        taken[0] = 1;
        taken[8] = 2;
        let slots = Slots { epoch: 100, taken };
        let moved = Slots::at(Some(slots), 101, 10);
        assert_eq!(moved.epoch, 101);
        assert_eq!(moved.taken[1], 1);
        assert_eq!(moved.live(), 1, "bucket 92 has expired at bucket 101");
        assert_eq!(Slots::at(Some(slots), 200, 10).live(), 0);
        // Backwards: the stored buckets stay as they are.
        assert_eq!(Slots::at(Some(slots), 50, 10), slots);
        // Counts above max (not written by this code) are capped.
        assert_eq!(Slots::at(Some(slots), 100, 1).live(), 2);
    }

    #[test]
    fn a_release_after_expiry_gives_nothing_back() {
        let (_, slots) = decide(&quota(2), None, 5 * W, 1);
        assert!(release(&quota(2), slots, 5 * W, 13 * W).is_some());
        assert_eq!(release(&quota(2), slots, 5 * W, 14 * W), None);
        // Nothing was taken at that time.
        assert_eq!(release(&quota(2), slots, 4 * W, 5 * W), None);
    }
}
