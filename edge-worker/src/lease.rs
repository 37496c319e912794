//! The isolate's leases: slices of keys' quotas granted by their limiter objects, spent here
//! one request at a time with no object call.
//!
//! # What a slice is
//!
//! For a rule with `lease`, the isolate asks the key's object for a slice: the object commits
//! `k` units at once with `Limit::grant` (as a request of cost `k` would) and answers with
//! `k`, its clock's `granted_at` and the grant's decision. The isolate keeps the units per
//! (rule, key) and admits requests from them locally until they run out or the slice expires
//! (`lifetime` after it arrived, on the isolate's clock). Units are spent globally when
//! granted, so the objects never count more than the limit; what a slice changes is *when* a
//! unit is spent. Hence the bound, in any window of the rule's period: admitted <= limit +
//! the units granted but unspent at the window's start <= limit + isolates x lease size.
//!
//! A slice is a short list of grants, spent oldest first; the isolate never holds more than
//! the lease size (a renewal asks for the difference), so the bound holds at every instant.
//!
//! # Renewal, expiry and returns
//!
//! When a slice's unspent units fall to `renew_at`% of its size, or its newest grant is within
//! `renew_at`% of its lifetime from expiry, one background call (`ctx.wait_until`, so the
//! request that noticed it does not wait) asks for the difference. A slice of size 1 is never
//! renewed ahead: it is exact, every unit is asked for by the request that spends it.
//!
//! Units of an expired grant are returned to the object (refunded at their `granted_at`, so a
//! window that has ended gets nothing back: those units were spent in their window). Returns
//! ride on the next call to the object, or go in a background call of their own. An isolate
//! that dies holding units loses them: they stay spent, never doubled.
//!
//! # All or nothing
//!
//! Units taken for a request that another rule denies go back to the grant they came from if
//! it is still held, else they are returned to the object. For a lease of size 1 nothing is
//! held between requests: they are returned to the object in the request's refund round, so
//! the answers are exactly those of the objects without leases.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use sluice_core::{Check, Decision, Limit, Mode, Nanos};
use sluice_policy::Rule;
use sluice_policy::global::{LeaseConfig, LeaseSize};

use crate::protocol::{WireCheck, hex};

/// The most (rule, key) slices one isolate holds; beyond, a leased rule is decided by its
/// object as if it had no lease.
pub const MAX_SLICES: usize = 10_000;

/// A rule's lease terms (its `lease` object), as the isolate applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTerms {
    config: LeaseConfig,
}

impl LeaseTerms {
    /// The rule's lease terms, if it has a lease.
    pub fn of(rule: &Rule) -> Option<LeaseTerms> {
        rule.lease().map(|config| LeaseTerms { config: *config })
    }

    /// How long a grant may be spent, from its arrival (isolate clock).
    pub fn lifetime(&self) -> Nanos {
        self.config.lifetime()
    }

    /// Whether nothing is held between requests (a lease of 1: exact).
    pub fn exact(&self) -> bool {
        self.config.size() == LeaseSize::Fixed(1)
    }

    /// The slice to hold, given the units spent in the last lifetime (the configuration's
    /// own sizing, so every holder sizes alike).
    fn size(&self, spent_last_lifetime: u64) -> u64 {
        self.config.auto_size(spent_last_lifetime)
    }
}

/// Which slice: a rule and a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SliceKey {
    /// The rule's name.
    pub rule: String,
    /// The key bytes.
    pub key: Vec<u8>,
}

impl SliceKey {
    /// The slice of `check`'s rule and key.
    pub fn of(check: &Check<'_>) -> SliceKey {
        SliceKey {
            rule: check.rule.to_owned(),
            key: check.key.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct Grant {
    id: u64,
    unspent: u64,
    /// On the object's clock: what a return quotes.
    granted_at: Nanos,
    /// On the isolate's clock.
    expires_at: Nanos,
}

#[derive(Debug)]
struct Slice {
    limit: Limit,
    mode: Mode,
    lifetime: Nanos,
    /// Oldest first.
    grants: VecDeque<Grant>,
    /// The newest grant's decision and when (isolate clock) it arrived, for headers.
    decision: Decision,
    decided_at: Nanos,
    /// A renewal is in flight.
    renewing: bool,
    /// Units spent since `window_start`, and in the lifetime before it (auto size).
    window_start: Nanos,
    spent_now: u64,
    spent_before: u64,
}

impl Slice {
    fn unspent(&self) -> u64 {
        self.grants.iter().map(|g| g.unspent).sum()
    }

    fn roll(&mut self, lifetime: Nanos, now: Nanos) {
        if now >= self.window_start.saturating_add(lifetime) {
            self.spent_before = if now < self.window_start.saturating_add(lifetime * 2) {
                self.spent_now
            } else {
                0
            };
            self.spent_now = 0;
            self.window_start = now;
        }
    }

    fn size(&self, terms: &LeaseTerms) -> u64 {
        terms.size(self.spent_before.max(self.spent_now))
    }
}

/// Units on their way back to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Returning {
    /// The rule's name.
    pub rule: String,
    /// The key bytes.
    pub key: Vec<u8>,
    /// The rule's limit they were granted under.
    pub limit: Limit,
    /// Whether the rule is a shadow rule.
    pub mode: Mode,
    /// How many.
    pub units: u64,
    /// The object's `now` when it granted them.
    pub granted_at: Nanos,
}

impl Returning {
    /// The return's check (`cost`: the units).
    pub fn wire_check(&self) -> WireCheck {
        WireCheck {
            rule: self.rule.clone(),
            algorithm: self.limit.algorithm.name().to_owned(),
            limit: self.limit.quota.limit(),
            period: self.limit.quota.period(),
            burst: self.limit.quota.burst(),
            key: hex(&self.key),
            cost: self.units,
            shadow: !self.mode.enforces(),
            max_delay: self.limit.max_delay,
        }
    }
}

/// Units taken from a slice for one request: which grants (id, units, `granted_at`), and the
/// limit they were granted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    parts: Vec<(u64, u64, Nanos)>,
    limit: Limit,
    mode: Mode,
}

/// A renewal to ask for: `want` units of `key`'s rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// The slice.
    pub key: SliceKey,
    /// Units asked for (the difference to the slice's size).
    pub want: u64,
}

/// The slices of one isolate, and units waiting to go back.
#[derive(Debug, Default)]
pub struct Leases {
    slices: HashMap<SliceKey, Slice>,
    returning: Vec<Returning>,
    next_id: u64,
    /// The expiry a background return is already waiting for (runtime clock only).
    timer_at: Option<Nanos>,
    /// Nothing expires, and no empty slice is dropped, before this time (isolate clock).
    next_sweep: Nanos,
}

thread_local! {
    static LEASES: RefCell<Leases> = RefCell::new(Leases::default());
}

/// Runs `f` with the isolate's leases.
pub fn with<T>(f: impl FnOnce(&mut Leases) -> T) -> T {
    LEASES.with(|leases| f(&mut leases.borrow_mut()))
}

impl Leases {
    /// Moves every grant expired at `now` to the returns (its unspent units, if any); drops
    /// slices with nothing left that are not renewing. Returns the grants that expired with
    /// units.
    pub fn expire(&mut self, now: Nanos) -> u64 {
        if now < self.next_sweep {
            return 0;
        }
        let mut expired = 0;
        let returning = &mut self.returning;
        self.slices.retain(|key, slice| {
            while let Some(grant) = slice.grants.front() {
                if grant.expires_at > now {
                    break;
                }
                if grant.unspent > 0 {
                    expired += 1;
                    returning.push(Returning {
                        rule: key.rule.clone(),
                        key: key.key.clone(),
                        limit: slice.limit,
                        mode: slice.mode,
                        units: grant.unspent,
                        granted_at: grant.granted_at,
                    });
                }
                slice.grants.pop_front();
            }
            // An empty slice is kept two lifetimes for the auto size's memory of the rate.
            !slice.grants.is_empty()
                || slice.renewing
                || now
                    < slice
                        .window_start
                        .saturating_add(slice.lifetime.saturating_mul(2))
        });
        self.next_sweep = self
            .slices
            .values()
            .map(|slice| {
                slice.grants.front().map_or(
                    slice
                        .window_start
                        .saturating_add(slice.lifetime.saturating_mul(2)),
                    |grant| grant.expires_at,
                )
            })
            .min()
            .unwrap_or(Nanos::MAX)
            .max(now.saturating_add(1));
        expired
    }

    /// Takes `cost` units for a request at `now` from the slice of `check` if it holds them
    /// (oldest grants first); `None` if it does not (nothing is taken then). A slice of
    /// another limit (the rule changed) is given back whole first.
    pub fn take(
        &mut self,
        check: &Check<'_>,
        terms: &LeaseTerms,
        now: Nanos,
    ) -> Option<(Taken, Decision)> {
        let key = SliceKey::of(check);
        let slice = self.slices.get_mut(&key)?;
        if slice.limit != check.limit {
            let stale = self.slices.remove(&key)?;
            self.give_back_all(&key, stale);
            return None;
        }
        let live: u64 = slice
            .grants
            .iter()
            .filter(|g| g.expires_at > now)
            .map(|g| g.unspent)
            .sum();
        if live < check.cost || slice.grants.iter().all(|g| g.expires_at <= now) {
            return None;
        }
        let mut taken = Taken {
            parts: Vec::new(),
            limit: slice.limit,
            mode: slice.mode,
        };
        let mut due = check.cost;
        for grant in slice.grants.iter_mut().filter(|g| g.expires_at > now) {
            let part = grant.unspent.min(due);
            if part > 0 {
                grant.unspent -= part;
                due -= part;
                taken.parts.push((grant.id, part, grant.granted_at));
            }
        }
        slice.roll(terms.lifetime(), now);
        slice.spent_now = slice.spent_now.saturating_add(check.cost);
        Some((taken, local_decision(slice, now)))
    }

    /// Puts units taken for a request that was denied back into their grants, or on the way
    /// back to the object where a grant is no longer held.
    pub fn put_back(&mut self, key: &SliceKey, taken: Taken) {
        for (id, units, granted_at) in taken.parts {
            let held = self
                .slices
                .get_mut(key)
                .and_then(|slice| slice.grants.iter_mut().find(|g| g.id == id));
            match held {
                Some(grant) => grant.unspent = grant.unspent.saturating_add(units),
                None => self.returning.push(Returning {
                    rule: key.rule.clone(),
                    key: key.key.clone(),
                    limit: taken.limit,
                    mode: taken.mode,
                    units,
                    granted_at,
                }),
            }
        }
    }

    fn give_back_all(&mut self, key: &SliceKey, slice: Slice) {
        for grant in slice.grants.into_iter().filter(|g| g.unspent > 0) {
            self.returning.push(Returning {
                rule: key.rule.clone(),
                key: key.key.clone(),
                limit: slice.limit,
                mode: slice.mode,
                units: grant.unspent,
                granted_at: grant.granted_at,
            });
        }
    }

    /// Whether a new slice could be held for `check` (the table is not full, or it has one).
    pub fn has_room(&self, check: &Check<'_>) -> bool {
        self.slices.len() < MAX_SLICES || self.slices.contains_key(&SliceKey::of(check))
    }

    /// The unspent units of `check`'s slice that are still usable at `now`.
    pub fn unspent(&self, check: &Check<'_>, now: Nanos) -> u64 {
        self.slices
            .get(&SliceKey::of(check))
            .filter(|slice| slice.limit == check.limit)
            .map_or(0, |slice| {
                slice
                    .grants
                    .iter()
                    .filter(|g| g.expires_at > now)
                    .map(|g| g.unspent)
                    .sum()
            })
    }

    /// The units to ask for when `check`'s slice cannot serve it: enough for the request,
    /// and up to the slice's size.
    pub fn want(&mut self, check: &Check<'_>, terms: &LeaseTerms, now: Nanos) -> u64 {
        let unspent = self.unspent(check, now);
        let size = self
            .slices
            .get_mut(&SliceKey::of(check))
            .filter(|slice| slice.limit == check.limit)
            .map_or(terms.size(0), |slice| {
                slice.roll(terms.lifetime(), now);
                slice.size(terms)
            });
        size.saturating_sub(unspent)
            .max(check.cost)
            .min(check.limit.capacity().max(check.cost))
    }

    /// Adds a grant of `units` (granted at `granted_at` on the object's clock, arrived at
    /// `now` on the isolate's) with its `decision` to `check`'s slice; the grant's id.
    pub fn add(
        &mut self,
        check: &Check<'_>,
        terms: &LeaseTerms,
        units: u64,
        granted_at: Nanos,
        decision: Decision,
        now: Nanos,
    ) -> u64 {
        let key = SliceKey::of(check);
        if self
            .slices
            .get(&key)
            .is_some_and(|slice| slice.limit != check.limit)
            && let Some(stale) = self.slices.remove(&key)
        {
            self.give_back_all(&key, stale);
        }
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let slice = self.slices.entry(key).or_insert_with(|| Slice {
            limit: check.limit,
            mode: check.mode,
            lifetime: terms.lifetime(),
            grants: VecDeque::new(),
            decision,
            decided_at: now,
            renewing: false,
            window_start: now,
            spent_now: 0,
            spent_before: 0,
        });
        slice.decision = decision;
        slice.decided_at = now;
        let expires_at = now.saturating_add(terms.lifetime());
        if units > 0 {
            slice.grants.push_back(Grant {
                id,
                unspent: units,
                granted_at,
                expires_at,
            });
        }
        self.next_sweep = self.next_sweep.min(expires_at);
        id
    }

    /// Counts units spent from a fresh grant by the request that asked for it (auto size).
    pub fn spent(&mut self, check: &Check<'_>, terms: &LeaseTerms, now: Nanos) {
        if let Some(slice) = self.slices.get_mut(&SliceKey::of(check)) {
            slice.roll(terms.lifetime(), now);
            slice.spent_now = slice.spent_now.saturating_add(check.cost);
        }
    }

    /// The renewal `check`'s slice needs at `now`, if any and none is in flight; marks it
    /// in flight.
    pub fn renewal(
        &mut self,
        check: &Check<'_>,
        terms: &LeaseTerms,
        now: Nanos,
    ) -> Option<Renewal> {
        if terms.exact() {
            return None;
        }
        let key = SliceKey::of(check);
        let slice = self.slices.get_mut(&key)?;
        if slice.renewing || slice.limit != check.limit {
            return None;
        }
        slice.roll(terms.lifetime(), now);
        let size = slice.size(terms);
        let live: Vec<&Grant> = slice.grants.iter().filter(|g| g.expires_at > now).collect();
        let unspent: u64 = live.iter().map(|g| g.unspent).sum();
        let arrived = live.last().map_or(0, |newest| {
            newest.expires_at.saturating_sub(terms.lifetime())
        });
        let due = terms.config.should_renew(size, unspent, arrived, now);
        let want = size.saturating_sub(unspent).min(check.limit.capacity());
        if !due || want == 0 {
            return None;
        }
        slice.renewing = true;
        Some(Renewal { key, want })
    }

    /// Notes that a request is acquiring a slice for `check` (so that others for the same
    /// key wait for it rather than ask beside it), creating the slice if needed.
    pub fn begin_acquire(&mut self, check: &Check<'_>, terms: &LeaseTerms, now: Nanos) {
        let slice = self
            .slices
            .entry(SliceKey::of(check))
            .or_insert_with(|| Slice {
                limit: check.limit,
                mode: check.mode,
                lifetime: terms.lifetime(),
                grants: VecDeque::new(),
                decision: Decision {
                    allowed: true,
                    limit: check.limit.quota.limit(),
                    remaining: 0,
                    reset_after: 0,
                    retry_after: 0,
                    delay: 0,
                },
                decided_at: now,
                renewing: false,
                window_start: now,
                spent_now: 0,
                spent_before: 0,
            });
        slice.renewing = true;
    }

    /// Whether `check`'s slice cannot serve it at `now` while a renewal for it is in flight
    /// (the request had better wait for that renewal than ask for a second slice).
    pub fn awaits_renewal(&self, check: &Check<'_>, now: Nanos) -> bool {
        self.slices
            .get(&SliceKey::of(check))
            .is_some_and(|slice| slice.renewing)
            && self.unspent(check, now) < check.cost
    }

    /// A renewal or acquisition of `key` has ended (granted or not).
    pub fn renewed(&mut self, key: &SliceKey) {
        if let Some(slice) = self.slices.get_mut(key) {
            slice.renewing = false;
        }
    }

    /// The units waiting to go back, all of them.
    pub fn take_returns(&mut self) -> Vec<Returning> {
        std::mem::take(&mut self.returning)
    }

    /// Puts returns that could not be sent back in line (their call failed before reaching
    /// the object).
    pub fn requeue(&mut self, returns: Vec<Returning>) {
        self.returning.extend(returns);
    }

    /// The earliest expiry of a held grant with units, if no timer is waiting already; notes
    /// it as waited for. (One timer at a time: when it fires it returns every expired grant,
    /// and requests return what expires in between.)
    pub fn arm_timer(&mut self) -> Option<Nanos> {
        if self.timer_at.is_some() {
            return None;
        }
        let next = self
            .slices
            .values()
            .flat_map(|slice| slice.grants.iter())
            .filter(|g| g.unspent > 0)
            .map(|g| g.expires_at)
            .min()?;
        self.timer_at = Some(next);
        Some(next)
    }

    /// The timer waiting for `at` has fired.
    pub fn timer_fired(&mut self, at: Nanos) {
        if self.timer_at == Some(at) {
            self.timer_at = None;
        }
    }

    /// Slices held.
    pub fn len(&self) -> usize {
        self.slices.len()
    }

    /// Whether no slice is held.
    pub fn is_empty(&self) -> bool {
        self.slices.is_empty()
    }
}

/// The decision reported for a request admitted from `slice` at `now`: the newest grant's,
/// with `remaining` = its remaining + the units this isolate still holds (capped at the
/// limit) and `reset_after` shifted by the time since it arrived.
fn local_decision(slice: &Slice, now: Nanos) -> Decision {
    let held = slice.unspent();
    let d = slice.decision;
    Decision {
        allowed: true,
        limit: d.limit,
        remaining: d.remaining.saturating_add(held).min(d.limit),
        reset_after: d
            .reset_after
            .saturating_sub(now.saturating_sub(slice.decided_at)),
        retry_after: 0,
        delay: 0,
    }
}

/// The decision reported for a request admitted from a fresh grant of `granted` units of
/// which it spent `cost`: the grant's, with the rest of the grant counted as remaining.
pub fn granted_decision(decision: Decision, granted: u64, cost: u64) -> Decision {
    Decision {
        remaining: decision
            .remaining
            .saturating_add(granted.saturating_sub(cost))
            .min(decision.limit),
        ..decision
    }
}
