//! Deciding a request some of whose rules have a `lease` (see [`crate::lease`]).
//!
//! 1. Grants expired by now are set aside for return.
//! 2. Each leased rule takes the request's cost from its slice if the slice holds it: that
//!    rule is decided here, allowed, with no object call.
//! 3. If every rule was decided so, the request is allowed: no object call at all.
//! 4. Otherwise the remaining rules (leased rules whose slice cannot serve the request, and
//!    rules without a lease) go through the negative cache, as every request does: a
//!    remembered denial answers with no object call, and the units taken in step 2 go back
//!    to their slices.
//! 5. Otherwise each object involved gets one call: it decides the rules without a lease and
//!    grants slices to the leased ones (at least the request's cost), and takes the returns
//!    of its keys along. A denial anywhere puts the units of step 2 back in their slices and
//!    refunds the objects as today (a lease of 1 returns its unit there too).
//! 6. Afterwards, in the background (`ctx.wait_until`, so the response does not wait):
//!    renewals of slices that have run low or near their expiry, returns no call carried, and
//!    (on the runtime's clock) a timer that returns units when the next grant expires.

use sluice_core::{Check, FailureMode, Limit, Mode, Nanos, RuleOutcome, Status, Verdict};
use std::time::Duration;

use worker::{Context, Delay};

use crate::gateway::{self, ObjectError, Objects, Plan};
use crate::isolate_clock::IsolateClock;
use crate::lease::{self, LeaseTerms, Returning, SliceKey, Taken};
use crate::{negative_cache, stats};

/// What deciding the request took.
#[derive(Debug)]
pub struct LeasedDecision {
    /// The verdict on every check, in order.
    pub verdict: Verdict,
    /// Object calls the request waited for.
    pub object_calls: u32,
    /// Whether the negative cache answered.
    pub cache_hit: bool,
    /// Failed object calls: the indices of their checks (in the request) and the error.
    pub failures: Vec<(Vec<usize>, ObjectError)>,
    /// Per check: when its object committed it directly, as [`gateway::Decided::committed_at`]
    /// (`None` for rules decided from slices).
    pub committed_at: Vec<Option<Nanos>>,
}

fn allowed_outcome(decision: sluice_core::Decision) -> RuleOutcome {
    RuleOutcome {
        status: Status::Allowed,
        decision,
        cas_retries: 0,
        store_error: None,
    }
}

/// Decides `checks` (with each one's lease terms in `terms`) at `now`.
pub async fn decide(
    objects: &Objects,
    ctx: &Context,
    checks: &[Check<'_>],
    terms: &[Option<LeaseTerms>],
    now: Nanos,
    clock: IsolateClock,
    cache_usable: bool,
) -> LeasedDecision {
    let expired = lease::with(|leases| leases.expire(now));
    stats::count(&stats::LEASE_EXPIRED, expired);
    await_renewals(objects, checks, terms, now).await;

    let mut outcomes: Vec<Option<RuleOutcome>> = vec![None; checks.len()];
    let mut taken: Vec<(usize, Taken)> = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    let mut plans: Vec<Plan> = Vec::new();
    lease::with(|leases| {
        for (index, check) in checks.iter().enumerate() {
            let Some(terms) = terms.get(index).copied().flatten() else {
                pending.push(index);
                plans.push(Plan::Direct);
                continue;
            };
            if let Some((units, decision)) = leases.take(check, &terms, now) {
                if let Some(slot) = outcomes.get_mut(index) {
                    *slot = Some(allowed_outcome(decision));
                }
                taken.push((index, units));
                continue;
            }
            pending.push(index);
            if check.cost > 0 && leases.has_room(check) {
                plans.push(Plan::Acquire {
                    want: leases.want(check, &terms, now),
                    hold: !terms.exact(),
                });
            } else {
                plans.push(Plan::Direct);
            }
        }
    });
    stats::count(
        &stats::LEASE_LOCAL,
        u64::try_from(taken.len()).unwrap_or(u64::MAX),
    );

    let put_back = |taken: Vec<(usize, Taken)>| {
        lease::with(|leases| {
            for (index, units) in taken {
                if let Some(check) = checks.get(index) {
                    leases.put_back(&SliceKey::of(check), units);
                }
            }
        });
    };

    if pending.is_empty() {
        let outcomes: Vec<RuleOutcome> = outcomes.into_iter().flatten().collect();
        background(objects, ctx, checks, terms, now, clock, Vec::new());
        return LeasedDecision {
            verdict: Verdict {
                allowed: true,
                outcomes,
            },
            object_calls: 0,
            cache_hit: false,
            failures: Vec::new(),
            committed_at: vec![None; checks.len()],
        };
    }

    let pending_checks: Vec<Check<'_>> = pending
        .iter()
        .filter_map(|&index| checks.get(index).cloned())
        .collect();
    let cached = if cache_usable {
        negative_cache::with(|cache| cache.lookup(&pending_checks, now))
    } else {
        None
    };
    if let Some(denied) = cached {
        for (&index, outcome) in pending.iter().zip(denied.outcomes) {
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = Some(outcome);
            }
        }
        put_back(taken);
        stats::count(&stats::NEGATIVE_CACHE, 1);
        background(objects, ctx, checks, terms, now, clock, Vec::new());
        return LeasedDecision {
            verdict: Verdict {
                allowed: false,
                outcomes: outcomes.into_iter().flatten().collect(),
            },
            object_calls: 0,
            cache_hit: true,
            failures: Vec::new(),
            committed_at: vec![None; checks.len()],
        };
    }

    let returns = lease::with(|leases| {
        for ((&index, check), plan) in pending.iter().zip(&pending_checks).zip(&plans) {
            if let (Plan::Acquire { .. }, Some(terms)) = (plan, terms.get(index).copied().flatten())
            {
                leases.begin_acquire(check, &terms, now);
            }
        }
        leases.take_returns()
    });
    let in_flight = negative_cache::with(|cache| cache.begin(&pending_checks));
    let decided = gateway::decide_planned(objects, &pending_checks, &plans, returns, now).await;
    lease::with(|leases| {
        for (check, plan) in pending_checks.iter().zip(&plans) {
            if matches!(plan, Plan::Acquire { .. }) {
                leases.renewed(&SliceKey::of(check));
            }
        }
    });
    negative_cache::with(|cache| {
        cache.finish(
            in_flight,
            &pending_checks,
            &decided.verdict,
            &decided.seen,
            now,
        );
        for (item, seen) in &decided.returned {
            cache.update(&item.rule, &item.key, item.limit, seen, now);
        }
    });
    stats::count(
        &stats::LEASE_RETURNED,
        decided.returned.iter().map(|(item, _)| item.units).sum(),
    );
    let allowed = decided.verdict.allowed;
    for (&index, outcome) in pending.iter().zip(&decided.verdict.outcomes) {
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = Some(*outcome);
        }
    }
    lease::with(|leases| {
        for (((&index, granted), check), plan) in pending
            .iter()
            .zip(&decided.grants)
            .zip(&pending_checks)
            .zip(&plans)
        {
            let (Some(granted), Some(terms)) = (granted, terms.get(index).copied().flatten())
            else {
                continue;
            };
            stats::count(&stats::LEASE_ACQUIRED, 1);
            // Denied, a slice that is not held gave the request's units back to the object
            // (or, if that call failed, lost them: never counted twice).
            let held = matches!(plan, Plan::Acquire { hold: true, .. });
            let keep = if allowed || !held {
                granted.units.saturating_sub(check.cost)
            } else {
                granted.units
            };
            if granted.returned {
                stats::count(&stats::LEASE_RETURNED, check.cost);
            }
            leases.add(
                check,
                &terms,
                keep,
                granted.granted_at,
                granted.decision,
                now,
            );
            if allowed {
                leases.spent(check, &terms, now);
                if let Some(Some(outcome)) = outcomes.get_mut(index) {
                    outcome.decision =
                        lease::granted_decision(granted.decision, granted.units, check.cost);
                }
            }
        }
    });
    if !allowed {
        put_back(taken);
    }
    let failures = decided
        .failures
        .iter()
        .map(|(indices, error)| {
            (
                indices
                    .iter()
                    .filter_map(|&i| pending.get(i).copied())
                    .collect(),
                error.clone(),
            )
        })
        .collect();
    background(
        objects,
        ctx,
        checks,
        terms,
        now,
        clock,
        decided.returns_left,
    );
    let mut committed_at = vec![None; checks.len()];
    for (&index, at) in pending.iter().zip(&decided.committed_at) {
        if let Some(slot) = committed_at.get_mut(index) {
            *slot = *at;
        }
    }
    LeasedDecision {
        verdict: Verdict {
            allowed,
            outcomes: outcomes.into_iter().flatten().collect(),
        },
        object_calls: decided.object_calls,
        cache_hit: false,
        failures,
        committed_at,
    }
}

/// How often a request whose slice is empty looks whether the renewal in flight has landed.
const RENEWAL_POLL: Duration = Duration::from_millis(2);

/// Waits (at most the object timeout) while a slice this request needs is empty and being
/// renewed or acquired by another request: that call brings its units, and a second
/// acquisition beside it would hold more than the lease size.
async fn await_renewals(
    objects: &Objects,
    checks: &[Check<'_>],
    terms: &[Option<LeaseTerms>],
    now: Nanos,
) {
    let polls = objects.timeout.as_millis() / RENEWAL_POLL.as_millis();
    for _ in 0..polls {
        let waiting = lease::with(|leases| {
            checks
                .iter()
                .zip(terms)
                .any(|(check, terms)| terms.is_some() && leases.awaits_renewal(check, now))
        });
        if !waiting {
            return;
        }
        Delay::from(RENEWAL_POLL).await;
    }
}

/// A leased rule's check, owned, for work that outlives the request.
#[derive(Debug, Clone)]
struct Renewing {
    rule: String,
    key: Vec<u8>,
    limit: Limit,
    mode: Mode,
    terms: LeaseTerms,
    want: u64,
}

impl Renewing {
    /// The acquisition's check: at least 1 unit.
    fn check(&self) -> Check<'_> {
        Check {
            rule: &self.rule,
            limit: self.limit,
            max_keys: 0,
            key: self.key.clone(),
            cost: 1,
            mode: self.mode,
            failure_mode: FailureMode::Open,
        }
    }
}

/// Starts, without waiting for them, the renewals the request's slices need, the returns
/// waiting to go back (with `left` from the request's calls), and the expiry timer.
fn background(
    objects: &Objects,
    ctx: &Context,
    checks: &[Check<'_>],
    terms: &[Option<LeaseTerms>],
    now: Nanos,
    clock: IsolateClock,
    left: Vec<Returning>,
) {
    let (renewals, returns, timer) = lease::with(|leases| {
        let mut renewals = Vec::new();
        for (check, terms) in checks.iter().zip(terms) {
            let Some(terms) = terms else { continue };
            if let Some(renewal) = leases.renewal(check, terms, now) {
                renewals.push(Renewing {
                    rule: renewal.key.rule,
                    key: renewal.key.key,
                    limit: check.limit,
                    mode: check.mode,
                    terms: *terms,
                    want: renewal.want,
                });
            }
        }
        let mut returns = left;
        returns.extend(leases.take_returns());
        let timer = match clock {
            IsolateClock::Runtime => leases.arm_timer(),
            IsolateClock::Test(_) => None,
        };
        (renewals, returns, timer)
    });
    if !renewals.is_empty() || !returns.is_empty() {
        let objects = objects.clone();
        ctx.wait_until(async move {
            exchange(&objects, renewals, returns, clock).await;
        });
    }
    if let Some(at) = timer {
        let objects = objects.clone();
        let wait_ms = at.saturating_sub(now) / sluice_core::time::NANOS_PER_MILLI + 1;
        ctx.wait_until(async move {
            Delay::from(Duration::from_millis(wait_ms)).await;
            let now = IsolateClock::Runtime.now();
            let returns = lease::with(|leases| {
                leases.timer_fired(at);
                stats::count(&stats::LEASE_EXPIRED, leases.expire(now));
                leases.take_returns()
            });
            if !returns.is_empty() {
                exchange(&objects, Vec::new(), returns, IsolateClock::Runtime).await;
            }
        });
    }
}

/// One round of background lease calls: the renewals' grants go into their slices, the
/// returns' answers into the negative cache.
async fn exchange(
    objects: &Objects,
    renewals: Vec<Renewing>,
    returns: Vec<Returning>,
    clock: IsolateClock,
) {
    let asked: Vec<(Check<'_>, u64)> = renewals.iter().map(|r| (r.check(), r.want)).collect();
    let (granted, returned) = gateway::renew(objects, asked, returns).await;
    let now = clock.now();
    lease::with(|leases| {
        for (renewal, granted) in renewals.iter().zip(granted) {
            let check = renewal.check();
            leases.renewed(&SliceKey::of(&check));
            if let Some(granted) = granted {
                stats::count(&stats::LEASE_RENEWED, 1);
                leases.add(
                    &check,
                    &renewal.terms,
                    granted.units,
                    granted.granted_at,
                    granted.decision,
                    now,
                );
            }
        }
    });
    stats::count(
        &stats::LEASE_RETURNED,
        returned.iter().map(|(item, _)| item.units).sum(),
    );
    negative_cache::with(|cache| {
        for (item, seen) in &returned {
            cache.update(&item.rule, &item.key, item.limit, seen, now);
        }
    });
}
