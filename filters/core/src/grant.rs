//! Leases: granting a slice of a key's quota at once, to be spent later by its holder without
//! asking again.
//!
//! A grant of `k` units commits exactly what one request of cost `k` would
//! ([`Limit::decide`]), so the key's count never exceeds its limit whatever the holders do
//! with their slices. Admission is monotone in cost for every algorithm (if `k` units fit,
//! any fewer fit too), so the largest admissible `k` is found by a binary search over
//! `decide`, `O(log want)` decisions on copies of the state.
//!
//! Unspent units are given back with [`Limit::refund`] and the grant's time;
//! [`Limit::restored`] says how many units such a refund actually gave back (none once the
//! window they were granted in has ended: they were spent there as far as the key is
//! concerned).

use crate::algorithm::{Algorithm, Limit};
use crate::decision::Decision;
use crate::state::State;
use crate::time::Nanos;

/// What [`Limit::grant`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Units granted: the largest cost in `min..=want` the key admits, or 0 when not even
    /// `min` fits.
    pub granted: u64,
    /// [`Limit::decide`]'s decision for `granted` units when something was granted (its
    /// `remaining` is what is left on the key after the grant), else for `min` (denied, with
    /// the `retry_after` of `min` units).
    pub decision: Decision,
    /// The state to commit, when `granted > 0`; `None`: nothing to write.
    pub state: Option<State>,
}

impl Algorithm {
    /// Whether a slice of this algorithm's quota can be granted at one time and spent later
    /// within the lease bound. False for the sliding log: it keeps one timestamp per
    /// admission, so units granted at `t` and spent later would expire from the log a period
    /// after `t`, earlier than the requests that spend them, and admit more than the bound.
    /// False for concurrency: a slot is given back when its request ends, which a slice
    /// spent elsewhere cannot carry.
    pub fn supports_leases(&self) -> bool {
        match self {
            Algorithm::Gcra | Algorithm::FixedWindow | Algorithm::SlidingWindow => true,
            Algorithm::SlidingLog | Algorithm::Concurrency => false,
        }
    }
}

impl Limit {
    /// Grants the largest number of units in `min..=want` that [`Limit::decide`] admits at
    /// `now` for a key whose stored state is `prev`, as one spend (a `want` below `min` is
    /// taken as `min`). Nothing is granted (and nothing is to be committed) when `min` units
    /// do not fit; the decision is then `decide`'s denial for `min`.
    ///
    /// ```
    /// use sluice_core::{Algorithm, Limit, Quota};
    ///
    /// let limit = Limit::new(Algorithm::FixedWindow, Quota::new(10, 1_000, 10).unwrap());
    /// let grant = limit.grant(None, 0, 1, 4);
    /// assert_eq!(grant.granted, 4);
    /// assert_eq!(grant.decision.remaining, 6);
    /// // Only 6 are left: a grant of up to 8 gets them all.
    /// let grant = limit.grant(grant.state.as_ref(), 10, 1, 8);
    /// assert_eq!(grant.granted, 6);
    /// // Nothing is left until the window ends.
    /// let denied = limit.grant(grant.state.as_ref(), 20, 1, 8);
    /// assert_eq!(denied.granted, 0);
    /// assert!(denied.state.is_none());
    /// assert_eq!(denied.decision.retry_after, 980);
    /// ```
    pub fn grant(&self, prev: Option<&State>, now: Nanos, min: u64, want: u64) -> Grant {
        let want = want.max(min);
        let (first, first_state) = self.decide(prev, now, min);
        if !first.allowed {
            return Grant {
                granted: 0,
                decision: first,
                state: None,
            };
        }
        // Above capacity nothing is ever admitted: no need to search there.
        let top = want.min(self.capacity().max(min));
        let (best, best_decision, best_state) = if top == min {
            (min, first, first_state)
        } else {
            let (decision, state) = self.decide(prev, now, top);
            if decision.allowed {
                (top, decision, state)
            } else {
                // Invariant: `low` is admitted, `high` is not.
                let (mut low, mut high) = (min, top);
                let (mut decision, mut state) = (first, first_state);
                while high - low > 1 {
                    let mid = low + (high - low) / 2;
                    let (d, s) = self.decide(prev, now, mid);
                    if d.allowed {
                        low = mid;
                        decision = d;
                        state = s;
                    } else {
                        high = mid;
                    }
                }
                (low, decision, state)
            }
        };
        if best == 0 {
            // `min` 0 with nothing more admitted: a grant of nothing commits nothing.
            return Grant {
                granted: 0,
                decision: best_decision,
                state: None,
            };
        }
        Grant {
            granted: best,
            decision: best_decision,
            state: Some(best_state),
        }
    }

    /// How many units the key got back between `before` and `after` (a state and the same
    /// state after [`Limit::refund`]), as seen at `now`: what a return of unspent lease units
    /// actually restored. 0 when the refund found nothing to take back (the window the units
    /// were granted in has ended, or the GCRA bucket had refilled past them); states of
    /// different algorithms restore nothing.
    pub fn restored(&self, before: &State, after: &State, now: Nanos) -> u64 {
        // Both states as they count at `now` (ended windows rolled away, expired log entries
        // dropped, GCRA debt in the past forgiven): what a refund took back from a window
        // that no longer counts restores nothing.
        let (_, before) = self.decide(Some(before), now, 0);
        let (_, after) = self.decide(Some(after), now, 0);
        match (&before, &after) {
            (State::Gcra { tat: before }, State::Gcra { tat: after }) => {
                // A unit partly refilled by itself still counts as given back.
                let interval = self.quota.emission_interval().max(1);
                before.saturating_sub(*after).div_ceil(interval)
            }
            (State::FixedWindow { count: before, .. }, State::FixedWindow { count: after, .. }) => {
                before.saturating_sub(*after)
            }
            (
                State::SlidingWindow {
                    previous: bp,
                    current: bc,
                    ..
                },
                State::SlidingWindow {
                    previous: ap,
                    current: ac,
                    ..
                },
            ) => bp
                .saturating_sub(*ap)
                .saturating_add(bc.saturating_sub(*ac)),
            (State::SlidingLog { log: before }, State::SlidingLog { log: after }) => {
                before.units().saturating_sub(after.units())
            }
            _ => 0,
        }
    }
}
