//! The rate-limiting algorithms. Each is a pure function from (previous state, now, cost, quota)
//! to (decision, new state); [`Limit`] dispatches to the rule's algorithm.
//!
//! Rules shared by every algorithm:
//! - **Cost 0** always passes and consumes nothing.
//! - **A cost above capacity** (`burst` for GCRA, `limit` for the window algorithms) can never
//!   pass, however long the client waits: it is denied with `retry_after` = the period, so a
//!   client that retries blindly does so at the quota's own pace rather than in a tight loop.
//! - **Every denial has `retry_after` > 0** and `remaining` = 0.
//! - **The clock may jump or go backwards.** Arithmetic saturates (times near `u64::MAX`, the
//!   year 2554, clamp rather than wrap) and a counter is never reset because time went
//!   backwards: a `now` earlier than the stored state is counted as if it happened at the
//!   stored state's time (in the stored window, after the newest log entry, against the
//!   stored GCRA arrival time).
//! - **Concurrency** counts slots in flight rather than units per period: a unit is a
//!   slot, taken when a request is admitted and given back with [`Limit::release`] when it
//!   ends (see [`concurrency`] for how slots expire when a release is lost).
//! - **A state of another algorithm** (which the table's rule signature normally rules out) is
//!   treated as no state.

pub mod concurrency;
mod fixed_window;
mod gcra;
mod sliding_log;
mod sliding_window;

use crate::decision::Decision;
use crate::encoding::varint_len;
use crate::quota::Quota;
use crate::state::State;
use crate::time::Nanos;

/// Which algorithm a rule uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Generic cell rate algorithm: a token bucket of `burst` tokens refilled at
    /// `limit / period`. Exact `Retry-After`.
    Gcra,
    /// Counts per aligned window of `period`; up to 2×limit may pass around a window edge.
    FixedWindow,
    /// Current window plus the previous one weighted by how much of it still overlaps.
    SlidingWindow,
    /// Exact: remembers the time of every admitted unit within the last `period`.
    SlidingLog,
    /// Requests in flight: at most `limit` slots held at once, each given back when its
    /// request ends ([`Limit::release`]) or after `period` (the slot's time to live) at the
    /// latest.
    Concurrency,
}

impl Algorithm {
    /// The name used in configuration files and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Gcra => "gcra",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindow => "sliding_window",
            Algorithm::SlidingLog => "sliding_log",
            Algorithm::Concurrency => "concurrency",
        }
    }
}

/// An algorithm with its quota: everything needed to decide for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// How units are counted.
    pub algorithm: Algorithm,
    /// How many units per period, and how many at once.
    pub quota: Quota,
    /// The longest a request that does not fit may be held instead of denied (GCRA only; 0:
    /// never held). See [`Limit::with_max_delay`].
    pub max_delay: Nanos,
}

impl Limit {
    /// A limit from its parts, which never holds a request.
    pub fn new(algorithm: Algorithm, quota: Quota) -> Limit {
        Limit {
            algorithm,
            quota,
            max_delay: 0,
        }
    }

    /// The same limit holding, rather than denying, a request that can be admitted within
    /// `max_delay`: its [`Decision::delay`] says for how long. Only GCRA knows when a unit
    /// comes back, so the window algorithms ignore it (the configuration refuses the
    /// combination). The table signature does not include it: changing a rule's delay keeps
    /// its counts.
    ///
    /// ```
    /// use sluice_core::{Algorithm, Limit, Quota, time::NANOS_PER_SEC};
    ///
    /// // 2 per second, burst 1, held up to a second.
    /// let limit = Limit::new(Algorithm::Gcra, Quota::new(2, NANOS_PER_SEC, 1).unwrap())
    ///     .with_max_delay(NANOS_PER_SEC);
    /// let (first, state) = limit.decide(None, 0, 1);
    /// assert_eq!(first.delay, 0);
    /// let (second, state) = limit.decide(Some(&state), 0, 1);
    /// assert!(second.allowed);
    /// assert_eq!(second.delay, NANOS_PER_SEC / 2);
    /// let (third, _) = limit.decide(Some(&state), 0, 1);
    /// assert_eq!(third.delay, NANOS_PER_SEC);
    /// ```
    pub fn with_max_delay(mut self, max_delay: Nanos) -> Limit {
        self.max_delay = max_delay;
        self
    }

    /// The largest cost a single request can ever have admitted: `burst` for GCRA, `limit`
    /// for the window algorithms (and concurrency's slots).
    pub fn capacity(&self) -> u64 {
        match self.algorithm {
            Algorithm::Gcra => self.quota.burst(),
            _ => self.quota.limit(),
        }
    }

    /// Decides a request of `cost` units at `now` for a key whose stored state is `prev`
    /// (`None`: the key has spent nothing).
    ///
    /// Returns the decision and the state to store if the request is committed. When the
    /// request is denied, the returned state is `prev` brought up to `now` (old windows and
    /// expired log entries dropped): storing it or keeping `prev` is equivalent.
    ///
    /// ```
    /// use sluice_core::{Algorithm, Limit, Quota, time::NANOS_PER_SEC};
    ///
    /// let limit = Limit::new(Algorithm::Gcra, Quota::new(2, NANOS_PER_SEC, 2).unwrap());
    /// let (first, state) = limit.decide(None, 0, 1);
    /// assert!(first.allowed);
    /// assert_eq!(first.remaining, 1);
    /// let (second, state) = limit.decide(Some(&state), 0, 1);
    /// assert!(second.allowed);
    /// let (third, _) = limit.decide(Some(&state), 0, 1);
    /// assert!(!third.allowed);
    /// // One token comes back every half second.
    /// assert_eq!(third.retry_after, NANOS_PER_SEC / 2);
    /// ```
    pub fn decide(&self, prev: Option<&State>, now: Nanos, cost: u64) -> (Decision, State) {
        let q = &self.quota;
        match self.algorithm {
            Algorithm::Gcra => {
                let tat = match prev {
                    Some(State::Gcra { tat }) => Some(*tat),
                    _ => None,
                };
                let (decision, tat) = gcra::decide(q, tat, now, cost, self.max_delay);
                (decision, State::Gcra { tat })
            }
            Algorithm::FixedWindow => {
                let window = match prev {
                    Some(State::FixedWindow {
                        window_start,
                        count,
                    }) => Some(fixed_window::Window {
                        start: *window_start,
                        count: *count,
                    }),
                    _ => None,
                };
                let (decision, w) = fixed_window::decide(q, window, now, cost);
                (
                    decision,
                    State::FixedWindow {
                        window_start: w.start,
                        count: w.count,
                    },
                )
            }
            Algorithm::SlidingWindow => {
                let windows = match prev {
                    Some(State::SlidingWindow {
                        window_start,
                        previous,
                        current,
                    }) => Some(sliding_window::Windows {
                        start: *window_start,
                        previous: *previous,
                        current: *current,
                    }),
                    _ => None,
                };
                let (decision, w) = sliding_window::decide(q, windows, now, cost);
                (
                    decision,
                    State::SlidingWindow {
                        window_start: w.start,
                        previous: w.previous,
                        current: w.current,
                    },
                )
            }
            Algorithm::SlidingLog => {
                let log = match prev {
                    Some(State::SlidingLog { log }) => Some(log),
                    _ => None,
                };
                let (decision, log) = sliding_log::decide(q, log, now, cost);
                (decision, State::SlidingLog { log })
            }
            Algorithm::Concurrency => {
                let slots = match prev {
                    Some(State::Concurrency { epoch, taken }) => Some(concurrency::Slots {
                        epoch: *epoch,
                        taken: *taken,
                    }),
                    _ => None,
                };
                let (decision, slots) = concurrency::decide(q, slots, now, cost);
                (decision, slots.into())
            }
        }
    }

    /// Gives back one concurrency slot taken at `taken_at` (the `now` of the
    /// [`Limit::decide`] that admitted it), at `now`, from `state` as it is stored now.
    /// Returns the state to store, or `None` when there is nothing to give back: the slot has
    /// expired already (so it came back on its own), or the state is not a concurrency state.
    ///
    /// ```
    /// use sluice_core::{Algorithm, Limit, Quota, time::NANOS_PER_SEC};
    ///
    /// // One request in flight at a time; a slot lives 60 s if never released.
    /// let limit = Limit::new(Algorithm::Concurrency, Quota::new(1, 60 * NANOS_PER_SEC, 1).unwrap());
    /// let (first, held) = limit.decide(None, 0, 1);
    /// assert!(first.allowed);
    /// assert!(!limit.decide(Some(&held), 1, 1).0.allowed);
    /// let released = limit.release(&held, 0, 2).unwrap();
    /// assert!(limit.decide(Some(&released), 3, 1).0.allowed);
    /// // A slot never released comes back by itself after 60 s (at most 67.5 s).
    /// assert!(limit.decide(Some(&held), 68 * NANOS_PER_SEC, 1).0.allowed);
    /// ```
    pub fn release(&self, state: &State, taken_at: Nanos, now: Nanos) -> Option<State> {
        match state {
            State::Concurrency { epoch, taken } => {
                let slots = concurrency::Slots {
                    epoch: *epoch,
                    taken: *taken,
                };
                concurrency::release(&self.quota, slots, taken_at, now).map(State::from)
            }
            _ => None,
        }
    }

    /// Undoes a committed spend of `cost` units, made by a [`Limit::decide`] at
    /// `committed_at` (the `now` it was given), in `state` as it is stored now, possibly after
    /// other requests have been committed on top of it.
    ///
    /// Used when a later rule of the same request loses a CAS race, so that a request consumes
    /// nothing unless all its rules commit. GCRA's undo is exact in every case. The window
    /// algorithms take the units back from the window (or log entry) the spend went into; when
    /// that can no longer be identified (the window has rolled past, or the clock had gone
    /// backwards so the spend was counted at a later stored time) the units stay counted: a
    /// refund never gives back more than was spent.
    pub fn refund(&self, state: &State, cost: u64, committed_at: Nanos) -> State {
        let q = &self.quota;
        match state {
            State::Gcra { tat } => State::Gcra {
                tat: gcra::refund(q, *tat, cost),
            },
            State::FixedWindow {
                window_start,
                count,
            } => {
                let w = fixed_window::refund(
                    q,
                    fixed_window::Window {
                        start: *window_start,
                        count: *count,
                    },
                    cost,
                    committed_at,
                );
                State::FixedWindow {
                    window_start: w.start,
                    count: w.count,
                }
            }
            State::SlidingWindow {
                window_start,
                previous,
                current,
            } => {
                let w = sliding_window::refund(
                    q,
                    sliding_window::Windows {
                        start: *window_start,
                        previous: *previous,
                        current: *current,
                    },
                    cost,
                    committed_at,
                );
                State::SlidingWindow {
                    window_start: w.start,
                    previous: w.previous,
                    current: w.current,
                }
            }
            State::SlidingLog { log } => {
                let mut log = log.clone();
                log.take_back(committed_at, cost);
                State::SlidingLog { log }
            }
            State::Concurrency { epoch, taken } => {
                let slots = concurrency::Slots {
                    epoch: *epoch,
                    taken: *taken,
                };
                concurrency::refund(q, slots, cost, committed_at).into()
            }
        }
    }

    /// The absolute time from which `state` decides exactly like no state at all (the key
    /// has fully recovered). A table entry idle at `now` may be reused for another key; a
    /// Durable Object may delete the state then.
    pub fn idle_at(&self, state: &State) -> Nanos {
        let period = self.quota.period();
        match state {
            State::Gcra { tat } => *tat,
            State::FixedWindow {
                window_start,
                count,
            } => fixed_window::idle_at(period, *window_start, *count),
            State::SlidingWindow {
                window_start,
                previous,
                current,
            } => sliding_window::idle_at(period, *window_start, *previous, *current),
            State::SlidingLog { log } => {
                log.last_at().map_or(0, |last| last.saturating_add(period))
            }
            State::Concurrency { epoch, taken } => concurrency::idle_at(
                period,
                &concurrency::Slots {
                    epoch: *epoch,
                    taken: *taken,
                },
            ),
        }
    }

    /// The largest encoding (in bytes, see [`crate::state`]) a state of this limit can have
    /// once stored by [`Limit::decide`]. Constant for GCRA and the window algorithms; for the
    /// sliding log it grows with `limit`, since the log holds up to `limit` entries; for
    /// concurrency with the digits of `limit` (each bucket's count is at most `limit`).
    pub fn max_state_bytes(&self) -> u64 {
        // version + algorithm tag
        let header = 2u64;
        match self.algorithm {
            Algorithm::Gcra => header + 8,
            Algorithm::FixedWindow => header + 16,
            Algorithm::SlidingWindow => header + 24,
            Algorithm::SlidingLog => {
                let limit = self.quota.limit();
                let units = varint_len(limit) as u64;
                // Entries lie within one period of each other, so every gap but the first
                // (an absolute time) is below the period.
                let gap = varint_len(self.quota.period()) as u64;
                let first = 10 + units;
                let others = limit.saturating_sub(1).saturating_mul(gap + units);
                header
                    .saturating_add(units) // entry count
                    .saturating_add(first)
                    .saturating_add(others)
            }
            Algorithm::Concurrency => {
                let most = self.quota.limit().min(u64::from(u32::MAX));
                let count = varint_len(most) as u64;
                header + 8 + concurrency::SLOT_BUCKETS as u64 * count
            }
        }
    }
}

impl From<concurrency::Slots> for State {
    fn from(slots: concurrency::Slots) -> State {
        State::Concurrency {
            epoch: slots.epoch,
            taken: slots.taken,
        }
    }
}

/// Start of the epoch-aligned window of `period` that contains `now`.
fn window_start(now: Nanos, period: Nanos) -> Nanos {
    match now.checked_rem(period) {
        Some(offset) => now - offset,
        None => now,
    }
}

/// A denial; `retry_after` is kept above zero so a client is never told to retry at once.
fn denied(quota: &Quota, reset_after: Nanos, retry_after: Nanos) -> Decision {
    Decision {
        allowed: false,
        limit: quota.limit(),
        remaining: 0,
        reset_after,
        retry_after: retry_after.max(1),
        delay: 0,
    }
}

fn allowed(quota: &Quota, remaining: u64, reset_after: Nanos) -> Decision {
    Decision {
        allowed: true,
        limit: quota.limit(),
        remaining,
        reset_after,
        retry_after: 0,
        delay: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::NANOS_PER_SEC;

    #[test]
    fn windows_align_to_the_epoch() {
        assert_eq!(window_start(0, 10), 0);
        assert_eq!(window_start(19, 10), 10);
        assert_eq!(window_start(u64::MAX, 10), u64::MAX - 5);
        // 2026-01-01T00:00:30Z with a one-minute period starts at the minute.
        let t = 1_767_225_630 * NANOS_PER_SEC;
        assert_eq!(
            window_start(t, 60 * NANOS_PER_SEC),
            1_767_225_600 * NANOS_PER_SEC
        );
    }

    #[test]
    fn max_state_bytes_bounds_a_full_sliding_log() {
        use crate::state::{Log, LogEntry};
        let quota = Quota::new(1000, 86_400 * NANOS_PER_SEC, 1000).unwrap();
        let limit = Limit::new(Algorithm::SlidingLog, quota);
        // 1000 one-unit entries spread over (almost) a day, starting late in the epoch.
        let start = u64::MAX / 2;
        let step = (quota.period() - 1) / 999;
        let entries = (0..1000)
            .map(|i| LogEntry {
                at: start + i * step,
                units: 1,
            })
            .collect();
        let state = State::SlidingLog {
            log: Log::from_entries(entries).unwrap(),
        };
        assert!(state.encoded_len() as u64 <= limit.max_state_bytes());
        for (algorithm, state) in [
            (Algorithm::Gcra, State::Gcra { tat: u64::MAX }),
            (
                Algorithm::FixedWindow,
                State::FixedWindow {
                    window_start: 1,
                    count: 2,
                },
            ),
            (
                Algorithm::SlidingWindow,
                State::SlidingWindow {
                    window_start: 1,
                    previous: 2,
                    current: 3,
                },
            ),
        ] {
            let limit = Limit::new(algorithm, quota);
            assert_eq!(state.encoded_len() as u64, limit.max_state_bytes());
        }
    }
}
