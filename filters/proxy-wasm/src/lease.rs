//! Leases and the negative cache: how a request with global rules is decided with as few
//! calls to the rate-limit service as the configuration allows.
//!
//! - A global rule with `lease` spends a slice of the key's global quota held in shared data
//!   (one per proxy, shared by every VM): a request the slice covers is allowed with no call.
//!   When the slice is out (or expired) the request is paused and one call to `/v1/lease`
//!   acquires a new one (`min` = the request's cost, `want` = the lease size). Before it runs
//!   out, the root context's tick renews it in the background, and returns the units of a
//!   slice that expired unspent.
//! - Every global rule, leased or not, has a negative cache in the same entries: a denial from
//!   the service is remembered until its retry time, for its cost and above, and answers
//!   later requests with no call.
//! - All or nothing across local, leased and global rules: local rules are decided first (and
//!   committed); then cached denials; then slices; then the service (leases first, then the
//!   other global rules). A request denied anywhere gives back what the others took: local
//!   commits refunded, units put back in their slice (or returned to the service if the slice
//!   was replaced meanwhile).

use std::cell::RefCell;
use std::collections::HashMap;

use sluice_core::{Check, Decision, Limiter, Mode, Nanos, RuleOutcome, Seed, SlotStore, Status};
use sluice_policy::global::{
    self, CallFailure, DecideReply, DecideRequest, LeaseAcquire, LeaseConfig, LeaseReply,
    LeaseRequest, LeaseReturn, LeaseSize, RuleKeys, hex, limit_text,
};
use sluice_policy::{AppliedRules, Evaluation, Handled, Policy, Request, RequestBuffers, Scope};

use crate::lease_store::{
    LeaseSlot, PendingReturn, cached_denial, forget_denial, remember_denial, slice_decision,
};
use crate::lease_table::{LeaseEntry, LeaseTable};
use crate::metrics::LeaseCounters;

/// The most keys a VM remembers holding a lease for (to return their units on expiry).
const MAX_HELD: usize = 4096;
/// The most renewals a VM queues between two ticks.
const MAX_WANTED: usize = 1024;
/// The most returns a VM queues (beyond, the oldest are lost: never counted twice).
const MAX_RETURNS: usize = 4096;
/// Items per `/v1/lease` call (the protocol's cap).
const MAX_ITEMS: usize = global::MAX_LEASE_ITEMS;

/// How a global rule's entries are used.
#[derive(Debug)]
struct RuleLease {
    table: LeaseTable,
    /// `None` for a global rule without `lease` (its entries hold the negative cache only).
    lease: Option<LeaseConfig>,
    limit: u64,
    mode: Mode,
    counters: LeaseCounters,
}

/// What a VM remembers between requests.
#[derive(Debug, Default)]
struct VmLeases {
    /// Keys whose slice a request found due for renewal, for the next tick.
    wanted: Vec<(usize, Vec<u8>)>,
    /// Keys this VM got a slice for, and when it expires as last seen, to return what is
    /// left when it does.
    held: Vec<(usize, Vec<u8>, Nanos)>,
    /// Units to give back to the service with the next call.
    returns: Vec<PendingReturn>,
    /// The tick's calls in flight: their acquisitions.
    in_flight: HashMap<u32, InFlight>,
}

/// A tick call in flight: the keys it renews (in its acquisitions' order) and what it sent.
type InFlight = (Vec<(usize, Vec<u8>)>, LeaseRequest);

/// A configured VM's leases and negative cache.
#[derive(Debug)]
pub struct Leases {
    /// By rule index; `Some` for global rules.
    rules: Vec<Option<RuleLease>>,
    seed: Seed,
    retries: u32,
    /// How long a claimed renewal keeps others from claiming (the call's timeout).
    claim: Nanos,
    vm: RefCell<VmLeases>,
    /// The tick period, if any rule has a lease.
    tick_ms: Option<u32>,
}

/// How the request stands after [`Leases::start`] or [`Leases::resume`].
pub enum Step<'p> {
    /// Decided: apply it.
    Done(Handled<'p>),
    /// Send this body to this path and hand the answer to [`Leases::resume`].
    Call(Waiting),
}

/// Which endpoint a [`Waiting`] request calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Lease,
    Decide,
}

/// A request paused for the service.
#[derive(Debug)]
pub struct Waiting {
    now: Nanos,
    rules: RuleKeys,
    /// Each rule's outcome so far (`None`: not decided yet).
    outcomes: Vec<Option<RuleOutcome>>,
    /// The local rules' positions and outcomes (committed where allowed), for a refund.
    local: Vec<usize>,
    local_outcomes: Vec<RuleOutcome>,
    /// Units taken from slices: position and the lease they came from.
    taken: Vec<(usize, Nanos)>,
    /// Positions to acquire a slice for, and whether this request claimed the key's renewal
    /// (it then asks for a whole slice; otherwise for its own cost).
    acquire: Vec<(usize, u64, bool)>,
    /// Positions of global rules without leases, for `/v1/decide`.
    decide: Vec<usize>,
    stage: Stage,
    body: Vec<u8>,
    /// The lease call sent, to check its reply against.
    sent: Option<LeaseRequest>,
    /// A call failed (its rules' failure modes decided): keeps them out of the notices.
    failed: bool,
}

impl Waiting {
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Each local check as decided before the call: its rule's index, which of the rule's
    /// limits applied, its key and its outcome (committed where allowed).
    pub fn local_checks(&self) -> impl Iterator<Item = (usize, usize, &[u8], &RuleOutcome)> {
        self.local
            .iter()
            .zip(&self.local_outcomes)
            .filter_map(|(&position, outcome)| {
                let rule = *self.rules.rules.get(position)?;
                let limit = *self.rules.limits.get(position)?;
                let key = self.rules.keys.get(position)?;
                Some((rule, limit, key.as_slice(), outcome))
            })
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Global rules the call decides (for the failure log line).
    pub fn global_checks(&self) -> usize {
        match self.stage {
            Stage::Lease => self.acquire.len(),
            Stage::Decide => self.decide.len(),
        }
    }
}

impl Leases {
    /// The lease tables of `policy`'s global rules, named in `names`.
    pub fn new(
        policy: &Policy,
        names: &sluice_core::table::TableNames,
        seed: Seed,
        timeout: Nanos,
    ) -> Leases {
        let rules: Vec<Option<RuleLease>> = policy
            .rules()
            .iter()
            .map(|rule| {
                (rule.scope() == Scope::Global).then(|| RuleLease {
                    table: LeaseTable::new(names, rule.name(), rule.limit(), rule.max_keys()),
                    lease: rule.lease().cloned(),
                    limit: rule.limit().quota.limit(),
                    mode: rule.mode(),
                    counters: LeaseCounters::define(rule.name()),
                })
            })
            .collect();
        // Often enough to renew well before `renew_at` runs out: a tenth of the shortest
        // lease's renewal margin, within 10 ms ..= 100 ms.
        let tick_ms = rules
            .iter()
            .flatten()
            .filter_map(|r| r.lease.as_ref())
            .map(|lease| {
                lease.lifetime() / 1_000_000 * u64::from(lease.renew_at_percent()) / 100 / 2
            })
            .min()
            .map(|ms| ms.clamp(10, 100) as u32);
        Leases {
            rules,
            seed,
            retries: policy.cas_retries(),
            claim: timeout,
            vm: RefCell::new(VmLeases::default()),
            tick_ms,
        }
    }

    /// Every lease table (for naming, creation and the footprint).
    pub fn tables(&self) -> impl Iterator<Item = &LeaseTable> {
        self.rules.iter().flatten().map(|r| &r.table)
    }

    /// Adds what this VM counted since the last flush to the proxy's counters.
    pub fn flush_metrics(&self) {
        for rule in self.rules.iter().flatten() {
            rule.counters.flush();
        }
    }

    /// The root context's tick period, if a rule has a lease.
    pub fn tick_period_ms(&self) -> Option<u32> {
        self.tick_ms
    }

    fn rule(&self, index: usize) -> Option<&RuleLease> {
        self.rules.get(index)?.as_ref()
    }

    fn slot<'a>(&'a self, rules: &'a RuleKeys, position: usize) -> Option<LeaseSlot<'a>> {
        let index = *rules.rules.get(position)?;
        let rule = self.rule(index)?;
        Some(LeaseSlot::new(
            &rule.table,
            index,
            rules.keys.get(position)?,
            &self.seed,
        ))
    }

    /// Decides `request` as far as shared data allows: [`Step::Done`] when no call is
    /// needed, else the call to make.
    ///
    /// The request is evaluated in `buffers`; a request no global rule applies to, and one
    /// whose only rule is leased and whose slice covers it (the common case), are decided
    /// and rendered in them too, so they allocate nothing. The others (a call to make, a
    /// denial, several rules) go on with owned values.
    pub fn start<'p, R: Request + ?Sized, S: SlotStore>(
        &self,
        policy: &'p Policy,
        request: &R,
        now: Nanos,
        limiter: &mut Limiter,
        store: &mut S,
        buffers: &mut RequestBuffers,
    ) -> Step<'p> {
        let evaluation = policy.evaluate_into(request, buffers);
        let applied = match &evaluation {
            Evaluation::Rules(applied) if applied.has_global() => applied,
            _ => return Step::Done(policy.decide_into(evaluation, now, limiter, store, buffers)),
        };
        let lone = self.take_lone_slice(applied, now, store);
        if let Some((Taken::Spent(..), Some(outcome))) = &lone {
            let mut verdict = buffers.verdict();
            verdict.outcomes.push(*outcome);
            return Step::Done(policy.respond_into(evaluation, Some(verdict), buffers));
        }
        let lone = lone.map(|(taken, _)| taken);
        let step = self.start_owned(policy, applied, lone, now, limiter, store);
        buffers.reclaim_evaluation(evaluation);
        step
    }

    /// For a request whose one rule is global and leased: what taking from its slice gave,
    /// and, when it was spent, the rule's outcome (the rule's counters and renewal as for
    /// any spent slice). `None` for any other request.
    fn take_lone_slice<S: SlotStore>(
        &self,
        applied: &AppliedRules<'_>,
        now: Nanos,
        store: &mut S,
    ) -> Option<(Taken, Option<RuleOutcome>)> {
        let ([check], [index]) = (applied.checks(), applied.rule_indices()) else {
            return None;
        };
        if applied.scope(0) != Scope::Global {
            return None;
        }
        let rule = self.rule(*index)?;
        let lease = rule.lease.as_ref()?;
        let slot = LeaseSlot::new(&rule.table, *index, &check.key, &self.seed);
        let taken = self.take(&slot, rule, lease, check.cost, now, store);
        let outcome = match &taken {
            Taken::Spent(entry, renew) => {
                rule.counters.local();
                if *renew {
                    self.want_renewal(*index, &check.key);
                }
                Some(outcome(
                    Status::Allowed,
                    slice_decision(entry, rule.limit, now),
                ))
            }
            _ => None,
        };
        Some((taken, outcome))
    }

    /// [`Leases::start`] with owned values, from the request's applied rules; `lone` is what
    /// taking from a lone leased rule's slice gave already (it is not taken again).
    fn start_owned<'p, S: SlotStore>(
        &self,
        policy: &'p Policy,
        applied: &AppliedRules<'_>,
        mut lone: Option<Taken>,
        now: Nanos,
        limiter: &mut Limiter,
        store: &mut S,
    ) -> Step<'p> {
        let rules = RuleKeys::of(policy, applied);
        let checks = applied.checks();
        let count = checks.len();
        let mut outcomes: Vec<Option<RuleOutcome>> = vec![None; count];
        let local: Vec<usize> = (0..count)
            .filter(|&i| applied.scope(i) == Scope::Local)
            .collect();
        let local_checks: Vec<Check<'_>> = local
            .iter()
            .filter_map(|&i| checks.get(i).cloned())
            .collect();
        let mut local_outcomes = Vec::new();
        if !local_checks.is_empty() {
            let verdict = limiter.check(&local_checks, now, store);
            for (&position, outcome) in local.iter().zip(&verdict.outcomes) {
                if let Some(slot) = outcomes.get_mut(position) {
                    *slot = Some(*outcome);
                }
            }
            if !verdict.allowed {
                return Step::Done(finish(policy, rules, outcomes, false));
            }
            local_outcomes = verdict.outcomes;
        }
        let mut waiting = Waiting {
            now,
            rules,
            outcomes,
            local,
            local_outcomes,
            taken: Vec::new(),
            acquire: Vec::new(),
            decide: Vec::new(),
            stage: Stage::Lease,
            body: Vec::new(),
            sent: None,
            failed: false,
        };
        // Cached denials first: any of them ends the request with nothing taken (every rule
        // with a denial in force is reported, as the service would report them all). A lone
        // leased rule needs no such pass: taking from its slice below reads the same entry and
        // answers its cached denial the same way, so its one read is saved.
        let mut globals = (0..count).filter(|&i| applied.scope(i) == Scope::Global);
        let lone_leased = match (globals.next(), globals.next()) {
            (Some(position), None) => waiting
                .rules
                .rules
                .get(position)
                .and_then(|&index| self.rule(index))
                .is_some_and(|rule| rule.lease.is_some()),
            _ => false,
        };
        let mut cached = false;
        for position in 0..count {
            if lone_leased || applied.scope(position) != Scope::Global {
                continue;
            }
            let (Some(slot), Some(&cost)) = (
                self.slot(&waiting.rules, position),
                waiting.rules.costs.get(position),
            ) else {
                continue;
            };
            let Some(rule) = self.rule(slot.rule) else {
                continue;
            };
            if let Ok(Some(entry)) = slot.read(store)
                && entry.denies(cost, now)
                && rule.mode == Mode::Enforce
            {
                rule.counters.negative_cache();
                set(
                    &mut waiting.outcomes,
                    position,
                    outcome(Status::Denied, cached_denial(&entry, rule.limit, now)),
                );
                cached = true;
            }
        }
        if cached {
            return Step::Done(self.deny(policy, waiting, limiter, store));
        }
        // Slices next.
        for position in 0..count {
            if applied.scope(position) != Scope::Global {
                continue;
            }
            let Some(slot) = self.slot(&waiting.rules, position) else {
                continue;
            };
            let Some(rule) = self.rule(slot.rule) else {
                continue;
            };
            let Some(lease) = rule.lease.as_ref() else {
                waiting.decide.push(position);
                continue;
            };
            let cost = waiting.rules.costs.get(position).copied().unwrap_or(1);
            let taken = match lone.take() {
                Some(taken) => taken,
                None => self.take(&slot, rule, lease, cost, now, store),
            };
            match taken {
                Taken::Spent(entry, renew) => {
                    rule.counters.local();
                    set(
                        &mut waiting.outcomes,
                        position,
                        outcome(Status::Allowed, slice_decision(&entry, rule.limit, now)),
                    );
                    waiting.taken.push((position, entry.granted_at));
                    if renew {
                        self.want_renewal(slot.rule, slot.key);
                    }
                }
                Taken::Denied(entry) => {
                    rule.counters.negative_cache();
                    set(
                        &mut waiting.outcomes,
                        position,
                        outcome(Status::Denied, cached_denial(&entry, rule.limit, now)),
                    );
                    return Step::Done(self.deny(policy, waiting, limiter, store));
                }
                Taken::Short { claimed } => waiting.acquire.push((position, cost, claimed)),
            }
        }
        self.next_call(policy, waiting, limiter, store)
    }

    /// Takes `cost` units from the key's slice, if it holds them and is live.
    fn take<S: SlotStore>(
        &self,
        slot: &LeaseSlot<'_>,
        rule: &RuleLease,
        lease: &LeaseConfig,
        cost: u64,
        now: Nanos,
        store: &mut S,
    ) -> Taken {
        let mut returns = Vec::new();
        let taken = slot.update(store, now, self.retries, |entry| {
            returns.clear();
            if entry.denies(cost, now) && rule.mode == Mode::Enforce {
                return (Taken::Denied(*entry), false);
            }
            if entry.live(now) && entry.unspent >= cost {
                entry.unspent -= cost;
                entry.spent = entry.spent.saturating_add(cost);
                // A slice of one unit is never fetched ahead: every unit is asked for when it
                // is needed, which keeps its decisions exact.
                let renew = lease.max_size() > 1 && renewal_due(lease, entry, now);
                return (Taken::Spent(*entry, renew), true);
            }
            let mut changed = false;
            if !entry.live(now) && entry.unspent > 0 {
                // An expired slice nobody returned yet: return it now.
                returns.extend(expired_units(slot, entry));
                entry.unspent = 0;
                changed = true;
            }
            let claimed = entry.renewing_until <= now;
            if claimed {
                entry.renewing_until = now.saturating_add(self.claim);
                changed = true;
            }
            (Taken::Short { claimed }, changed)
        });
        if !returns.is_empty() {
            rule.counters.expired();
            self.queue_returns(returns);
        }
        taken.unwrap_or(Taken::Short { claimed: false })
    }

    fn want_renewal(&self, rule: usize, key: &[u8]) {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        if vm.wanted.len() < MAX_WANTED && !vm.wanted.iter().any(|(r, k)| *r == rule && k == key) {
            vm.wanted.push((rule, key.to_vec()));
        }
    }

    fn hold(&self, rule: usize, key: &[u8], expires_at: Nanos) {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        if let Some(held) = vm.held.iter_mut().find(|(r, k, _)| *r == rule && k == key) {
            held.2 = expires_at;
            return;
        }
        if vm.held.len() >= MAX_HELD {
            vm.held.remove(0);
        }
        vm.held.push((rule, key.to_vec(), expires_at));
    }

    fn queue_returns(&self, returns: Vec<PendingReturn>) {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return;
        };
        for item in returns.into_iter().filter(|r| r.units > 0) {
            if vm.returns.len() >= MAX_RETURNS {
                vm.returns.remove(0);
            }
            vm.returns.push(item);
        }
    }

    fn take_returns(&self, room: usize) -> Vec<PendingReturn> {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            return Vec::new();
        };
        let n = vm.returns.len().min(room);
        let taken: Vec<PendingReturn> = vm.returns.drain(..n).collect();
        drop(vm);
        for item in &taken {
            if let Some(rule) = self.rule(item.rule) {
                rule.counters.returned();
            }
        }
        taken
    }

    /// The next call of a request, or its end if it needs none.
    fn next_call<'p, S: SlotStore>(
        &self,
        policy: &'p Policy,
        mut waiting: Waiting,
        limiter: &mut Limiter,
        store: &mut S,
    ) -> Step<'p> {
        if !waiting.acquire.is_empty() {
            let mut acquire = Vec::with_capacity(waiting.acquire.len());
            for &(position, cost, claimed) in &waiting.acquire {
                let (Some(slot), Some(rule)) = (
                    self.slot(&waiting.rules, position),
                    waiting
                        .rules
                        .rules
                        .get(position)
                        .and_then(|&i| self.rule(i)),
                ) else {
                    continue;
                };
                let want = match (&rule.lease, claimed) {
                    (Some(lease), true) => {
                        let entry = slot.read(store).ok().flatten().unwrap_or_default();
                        want(lease, &entry, cost, waiting.now)
                    }
                    _ => cost,
                };
                acquire.push(self.acquisition(policy, slot.rule, slot.key, cost, want));
            }
            let returns = self.take_returns(MAX_ITEMS.saturating_sub(acquire.len()));
            let request = LeaseRequest::new(
                policy.domain(),
                acquire,
                returns
                    .iter()
                    .filter_map(|r| self.return_item(policy, r))
                    .collect(),
            );
            waiting.stage = Stage::Lease;
            waiting.body = request.to_json();
            waiting.sent = Some(request);
            return Step::Call(waiting);
        }
        if !waiting.decide.is_empty() {
            let checks = policy.checks_of(&waiting.rules);
            let globals = waiting.decide.iter().filter_map(|&i| checks.get(i));
            waiting.stage = Stage::Decide;
            waiting.body = DecideRequest::new(policy.domain(), globals).to_json();
            return Step::Call(waiting);
        }
        let _ = (limiter, store);
        Step::Done(finish(
            policy,
            waiting.rules,
            waiting.outcomes,
            waiting.failed,
        ))
    }

    fn acquisition(
        &self,
        policy: &Policy,
        rule: usize,
        key: &[u8],
        min: u64,
        want: u64,
    ) -> LeaseAcquire {
        let (name, limit) = policy
            .rules()
            .get(rule)
            .map(|r| (r.name().to_string(), limit_text::format(&r.limit())))
            .unwrap_or_default();
        LeaseAcquire {
            rule: name,
            key: hex::encode(key),
            limit,
            min: min.max(1),
            want: want.max(min).max(1),
        }
    }

    fn return_item(&self, policy: &Policy, item: &PendingReturn) -> Option<LeaseReturn> {
        let rule = policy.rules().get(item.rule)?;
        Some(LeaseReturn {
            rule: rule.name().to_string(),
            key: hex::encode(&item.key),
            limit: limit_text::format(&rule.limit()),
            units: item.units,
            granted_at_ns: item.granted_at,
        })
    }

    /// Continues a request with the service's answer to its call (or why there is none).
    /// Answers the failure to count and log, if the call failed.
    pub fn resume<'p, S: SlotStore>(
        &self,
        policy: &'p Policy,
        mut waiting: Waiting,
        answer: Result<&[u8], CallFailure>,
        limiter: &mut Limiter,
        store: &mut S,
    ) -> (Step<'p>, Option<CallFailure>) {
        let now = waiting.now;
        let checks = policy.checks_of(&waiting.rules);
        match waiting.stage {
            Stage::Lease => {
                let acquire = std::mem::take(&mut waiting.acquire);
                let sent = waiting
                    .sent
                    .take()
                    .unwrap_or_else(|| LeaseRequest::new(policy.domain(), Vec::new(), Vec::new()));
                let reply = answer
                    .and_then(|body| LeaseReply::parse(body, &sent).map_err(CallFailure::BadReply));
                let (grants, failure) = match reply {
                    Ok(reply) => (Some(reply), None),
                    Err(failure) => (None, Some(failure)),
                };
                waiting.failed |= failure.is_some();
                let mut denied = false;
                for (n, &(position, cost, claimed)) in acquire.iter().enumerate() {
                    let Some(slot) = self.slot(&waiting.rules, position) else {
                        continue;
                    };
                    let Some(rule) = self.rule(slot.rule) else {
                        continue;
                    };
                    let grant = grants.as_ref().and_then(|r| r.acquired.get(n));
                    let result = match grant {
                        None => {
                            if claimed {
                                self.release_claim(&slot, now, store);
                            }
                            checks.get(position).map(global::failure_outcome)
                        }
                        Some(grant) => {
                            Some(self.settle(&slot, rule, grant, cost, claimed, now, store))
                        }
                    };
                    if let Some(result) = result {
                        denied |= matches!(result.status, Status::Denied | Status::FailedClosed);
                        if result.status == Status::Allowed && grant.is_some_and(|g| g.granted > 0)
                        {
                            waiting
                                .taken
                                .push((position, grant.map_or(0, |g| g.granted_at_ns)));
                        }
                        set(&mut waiting.outcomes, position, result);
                    }
                }
                if denied {
                    return (
                        Step::Done(self.deny(policy, waiting, limiter, store)),
                        failure,
                    );
                }
                (self.next_call(policy, waiting, limiter, store), failure)
            }
            Stage::Decide => {
                let decide = std::mem::take(&mut waiting.decide);
                let reply = answer.and_then(|body| {
                    DecideReply::parse(body, decide.len()).map_err(CallFailure::BadReply)
                });
                let (results, failure) = match reply {
                    Ok(reply) => (reply.rule_outcomes(), None),
                    Err(failure) => (
                        decide
                            .iter()
                            .filter_map(|&i| checks.get(i).map(global::failure_outcome))
                            .collect(),
                        Some(failure),
                    ),
                };
                waiting.failed |= failure.is_some();
                let mut denied = false;
                for (&position, result) in decide.iter().zip(results) {
                    if failure.is_none() {
                        self.remember(&waiting.rules, position, &result, now, store);
                    }
                    denied |= matches!(result.status, Status::Denied | Status::FailedClosed);
                    set(&mut waiting.outcomes, position, result);
                }
                let step = if denied {
                    self.deny(policy, waiting, limiter, store)
                } else {
                    finish(policy, waiting.rules, waiting.outcomes, waiting.failed)
                };
                (Step::Done(step), failure)
            }
        }
    }

    /// Applies one acquisition's answer to the key's entry; answers the rule's outcome.
    #[allow(clippy::too_many_arguments)]
    fn settle<S: SlotStore>(
        &self,
        slot: &LeaseSlot<'_>,
        rule: &RuleLease,
        grant: &global::LeaseGrant,
        cost: u64,
        claimed: bool,
        now: Nanos,
        store: &mut S,
    ) -> RuleOutcome {
        let decided = grant.outcome.rule_outcome();
        let Some(lease) = rule.lease.as_ref() else {
            return decided;
        };
        if grant.granted == 0 {
            let _ = slot.update(store, now, self.retries, |entry| {
                if claimed {
                    entry.renewing_until = 0;
                }
                if decided.status == Status::Denied {
                    remember_denial(entry, cost, &decided.decision, now);
                }
                ((), true)
            });
            return decided;
        }
        rule.counters.acquired();
        let mut returns = Vec::new();
        let entry = slot.update(store, now, self.retries, |entry| {
            returns.clear();
            returns.extend(apply_grant(
                slot,
                entry,
                lease,
                grant,
                &decided.decision,
                cost,
                now,
            ));
            if claimed {
                entry.renewing_until = 0;
            }
            (*entry, true)
        });
        self.queue_returns(returns);
        if let Ok(entry) = &entry {
            self.hold(slot.rule, slot.key, entry.expires_at);
        }
        match entry {
            Ok(entry) => outcome(decided.status, slice_decision(&entry, rule.limit, now)),
            // The slice could not be written: the request still has its units (granted for
            // it); what was meant for the slice is lost, never counted twice.
            Err(_) => decided,
        }
    }

    fn release_claim<S: SlotStore>(&self, slot: &LeaseSlot<'_>, now: Nanos, store: &mut S) {
        let _ = slot.update(store, now, self.retries, |entry| {
            let changed = entry.renewing_until != 0;
            entry.renewing_until = 0;
            ((), changed)
        });
    }

    /// Remembers a global rule's denial, or forgets one the service no longer gives.
    fn remember<S: SlotStore>(
        &self,
        rules: &RuleKeys,
        position: usize,
        result: &RuleOutcome,
        now: Nanos,
        store: &mut S,
    ) {
        let Some(slot) = self.slot(rules, position) else {
            return;
        };
        let cost = rules.costs.get(position).copied().unwrap_or(1);
        match result.status {
            Status::Denied => {
                let _ = slot.update(store, now, self.retries, |entry| {
                    remember_denial(entry, cost, &result.decision, now);
                    ((), true)
                });
            }
            Status::Allowed => {
                // Only a key with a denial on record is written.
                if let Ok(Some(entry)) = slot.read(store)
                    && entry.denied_cost != 0
                {
                    let _ =
                        slot.update(store, now, self.retries, |entry| ((), forget_denial(entry)));
                }
            }
            _ => {}
        }
    }

    /// Ends a denied request: gives back what other rules took.
    fn deny<'p, S: SlotStore>(
        &self,
        policy: &'p Policy,
        waiting: Waiting,
        limiter: &mut Limiter,
        store: &mut S,
    ) -> Handled<'p> {
        let checks = policy.checks_of(&waiting.rules);
        if !waiting.local.is_empty() {
            let local_checks: Vec<Check<'_>> = waiting
                .local
                .iter()
                .filter_map(|&i| checks.get(i).cloned())
                .collect();
            limiter.refund(&local_checks, &waiting.local_outcomes, waiting.now, store);
        }
        for &(position, lease_id) in &waiting.taken {
            let Some(slot) = self.slot(&waiting.rules, position) else {
                continue;
            };
            let cost = waiting.rules.costs.get(position).copied().unwrap_or(1);
            self.give_back(&slot, cost, lease_id, waiting.now, store);
        }
        finish(policy, waiting.rules, waiting.outcomes, waiting.failed)
    }

    /// Puts `cost` units back in the slice they came from, or returns them to the service if
    /// that slice is gone.
    fn give_back<S: SlotStore>(
        &self,
        slot: &LeaseSlot<'_>,
        cost: u64,
        lease_id: Nanos,
        now: Nanos,
        store: &mut S,
    ) {
        let kept = slot.update(store, now, self.retries, |entry| {
            let same = entry.live(now)
                && (entry.granted_at == lease_id || entry.prev_granted_at == lease_id);
            if same {
                entry.unspent = entry.unspent.saturating_add(cost);
                entry.spent = entry.spent.saturating_sub(cost);
            }
            (same, same)
        });
        if kept != Ok(true) {
            self.queue_returns(vec![PendingReturn {
                rule: slot.rule,
                key: slot.key.to_vec(),
                units: cost,
                granted_at: lease_id,
            }]);
        }
    }

    /// The root context's tick: renews the slices requests found running low, returns the
    /// units of slices that expired, and sends them in one call (or a few, 64 items each).
    /// Answers the bodies to send; [`Leases::dispatched`] records each call's token.
    pub fn tick<S: SlotStore>(&self, policy: &Policy, now: Nanos, store: &mut S) -> Vec<TickCall> {
        // Only the keys whose slice expired as this VM last saw it are read.
        let (wanted, held) = {
            let Ok(mut vm) = self.vm.try_borrow_mut() else {
                return Vec::new();
            };
            let wanted = std::mem::take(&mut vm.wanted);
            // In place: a tick with nothing due allocates nothing.
            let due: Vec<_> = vm
                .held
                .extract_if(.., |(_, _, expires)| *expires <= now)
                .collect();
            (wanted, due)
        };
        let mut acquisitions: Vec<(usize, Vec<u8>, LeaseAcquire)> = Vec::new();
        for (index, key) in wanted {
            let Some(rule) = self.rule(index) else {
                continue;
            };
            let Some(lease) = rule.lease.as_ref() else {
                continue;
            };
            let slot = LeaseSlot::new(&rule.table, index, &key, &self.seed);
            let claimed = slot.update(store, now, self.retries, |entry| {
                if !entry.live(now) || entry.renewing_until > now || !renewal_due(lease, entry, now)
                {
                    return (None, false);
                }
                entry.renewing_until = now.saturating_add(self.claim);
                (Some(want(lease, entry, 1, now)), true)
            });
            if let Ok(Some(want)) = claimed {
                let item = self.acquisition(policy, index, &key, 1, want);
                acquisitions.push((index, key, item));
            }
        }
        for (index, key, _) in held {
            let Some(rule) = self.rule(index) else {
                continue;
            };
            let slot = LeaseSlot::new(&rule.table, index, &key, &self.seed);
            let mut returns = Vec::new();
            // `Some(expiry)`: still live (renewed meanwhile, or a renewal in flight).
            let ended = slot.update(store, now, self.retries, |entry| {
                returns.clear();
                if entry.live(now) || entry.renewing_until > now {
                    return (Some(entry.expires_at.max(entry.renewing_until)), false);
                }
                if entry.unspent == 0 {
                    return (None, false);
                }
                returns.extend(expired_units(&slot, entry));
                entry.unspent = 0;
                (None, true)
            });
            match ended {
                Ok(None) => {
                    if !returns.is_empty() {
                        rule.counters.expired();
                        self.queue_returns(returns);
                    }
                }
                Ok(Some(expires_at)) => self.hold(index, &key, expires_at),
                // Shared data failed: try again at the next tick.
                Err(_) => self.hold(index, &key, now),
            }
        }
        let mut calls = Vec::new();
        let mut acquisitions = acquisitions.into_iter().peekable();
        loop {
            let batch: Vec<(usize, Vec<u8>, LeaseAcquire)> =
                acquisitions.by_ref().take(MAX_ITEMS).collect();
            let returns = self.take_returns(MAX_ITEMS - batch.len());
            if batch.is_empty() && returns.is_empty() {
                break;
            }
            let request = LeaseRequest::new(
                policy.domain(),
                batch.iter().map(|(_, _, item)| item.clone()).collect(),
                returns
                    .iter()
                    .filter_map(|r| self.return_item(policy, r))
                    .collect(),
            );
            calls.push(TickCall {
                body: request.to_json(),
                keys: batch
                    .into_iter()
                    .map(|(rule, key, _)| (rule, key))
                    .collect(),
                sent: request,
            });
            let more_returns = self.vm.try_borrow().is_ok_and(|vm| !vm.returns.is_empty());
            if acquisitions.peek().is_none() && !more_returns {
                break;
            }
        }
        calls
    }

    /// Records a tick call sent with `token`.
    pub fn dispatched(&self, token: u32, call: TickCall) {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.in_flight.insert(token, (call.keys, call.sent));
        }
    }

    /// Whether `token` is a tick call of this VM.
    pub fn owns(&self, token: u32) -> bool {
        self.vm
            .try_borrow()
            .is_ok_and(|vm| vm.in_flight.contains_key(&token))
    }

    /// How many renewals the tick call `token` carries.
    pub fn renewals(&self, token: u32) -> usize {
        self.vm
            .try_borrow()
            .ok()
            .and_then(|vm| vm.in_flight.get(&token).map(|(keys, _)| keys.len()))
            .unwrap_or(0)
    }

    /// A tick call's answer: adds the renewals to their slices (or releases their claims).
    pub fn renewed<S: SlotStore>(
        &self,
        token: u32,
        answer: Result<&[u8], CallFailure>,
        now: Nanos,
        store: &mut S,
    ) -> Option<CallFailure> {
        let (keys, sent) = self
            .vm
            .try_borrow_mut()
            .ok()
            .and_then(|mut vm| vm.in_flight.remove(&token))?;
        let reply =
            answer.and_then(|body| LeaseReply::parse(body, &sent).map_err(CallFailure::BadReply));
        let (reply, failure) = match reply {
            Ok(reply) => (Some(reply), None),
            Err(failure) => (None, Some(failure)),
        };
        for (n, (index, key)) in keys.iter().enumerate() {
            let Some(rule) = self.rule(*index) else {
                continue;
            };
            let slot = LeaseSlot::new(&rule.table, *index, key, &self.seed);
            let grant = reply.as_ref().and_then(|r| r.acquired.get(n));
            match (grant, rule.lease.as_ref()) {
                (Some(grant), Some(lease)) if grant.granted > 0 => {
                    rule.counters.renewed();
                    let decided = grant.outcome.rule_outcome();
                    let mut returns = Vec::new();
                    let _ = slot.update(store, now, self.retries, |entry| {
                        returns.clear();
                        returns.extend(apply_grant(
                            &slot,
                            entry,
                            lease,
                            grant,
                            &decided.decision,
                            0,
                            now,
                        ));
                        entry.renewing_until = 0;
                        ((), true)
                    });
                    self.queue_returns(returns);
                    self.hold(*index, key, now.saturating_add(lease.lifetime()));
                }
                (Some(grant), _) => {
                    let decided = grant.outcome.rule_outcome();
                    let _ = slot.update(store, now, self.retries, |entry| {
                        entry.renewing_until = 0;
                        if decided.status == Status::Denied {
                            remember_denial(entry, 1, &decided.decision, now);
                        }
                        ((), true)
                    });
                }
                (None, _) => self.release_claim(&slot, now, store),
            }
        }
        failure
    }
}

/// A call the tick makes.
#[derive(Debug)]
pub struct TickCall {
    pub body: Vec<u8>,
    keys: Vec<(usize, Vec<u8>)>,
    sent: LeaseRequest,
}

enum Taken {
    /// Taken from the slice; the entry after, and whether a renewal is due.
    Spent(LeaseEntry, bool),
    /// A cached denial covers the request.
    Denied(LeaseEntry),
    /// The slice does not cover the request; `claimed` if this request is to fill it.
    Short { claimed: bool },
}

fn set(outcomes: &mut [Option<RuleOutcome>], position: usize, outcome: RuleOutcome) {
    if let Some(slot) = outcomes.get_mut(position) {
        *slot = Some(outcome);
    }
}

fn outcome(status: Status, decision: Decision) -> RuleOutcome {
    RuleOutcome {
        status,
        decision,
        cas_retries: 0,
        store_error: None,
    }
}

/// The handled request from the outcomes gathered; rules not decided are unasked.
fn finish<'p>(
    policy: &'p Policy,
    rules: RuleKeys,
    outcomes: Vec<Option<RuleOutcome>>,
    global_failure: bool,
) -> Handled<'p> {
    let checks = policy.checks_of(&rules);
    let mut unasked = Vec::new();
    let outcomes = outcomes
        .into_iter()
        .enumerate()
        .map(|(position, outcome)| match outcome {
            Some(outcome) => outcome,
            None => {
                unasked.push(position);
                checks
                    .get(position)
                    .map(global::unasked)
                    .unwrap_or_else(outcome_placeholder)
            }
        })
        .collect();
    policy.assemble(rules, outcomes, unasked, global_failure)
}

fn outcome_placeholder() -> RuleOutcome {
    outcome(
        Status::Allowed,
        Decision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset_after: 0,
            retry_after: 0,
            delay: 0,
        },
    )
}

/// Whether a slice should be renewed: its units fell to `renew_at`% of the slice, or it is
/// within `renew_at`% of its lifetime from expiry.
fn renewal_due(lease: &LeaseConfig, entry: &LeaseEntry, now: Nanos) -> bool {
    let percent = u64::from(lease.renew_at_percent());
    let low = entry.unspent.saturating_mul(100) <= entry.slice.saturating_mul(percent);
    let margin = lease.lifetime() / 100 * percent;
    let late = entry.expires_at.saturating_sub(now) <= margin;
    low || late
}

/// Units to ask for: enough to fill the slice to its size (for `auto`, 1.5 × the units spent
/// per lifetime lately, at least 1, at most `max`), and at least `cost`.
fn want(lease: &LeaseConfig, entry: &LeaseEntry, cost: u64, now: Nanos) -> u64 {
    let target = match lease.size() {
        LeaseSize::Fixed(size) => size,
        LeaseSize::Auto { .. } => {
            // The units spent since the last grant, scaled to one lifetime (a window shorter
            // than a tenth of a lifetime counts as a tenth, so one burst does not max it out).
            let lifetime = lease.lifetime().max(1);
            let window = now
                .saturating_sub(entry.spent_since)
                .max(lifetime / 10)
                .max(1);
            let per_lifetime =
                (u128::from(entry.spent) * u128::from(lifetime)).div_ceil(u128::from(window));
            lease.auto_size(u64::try_from(per_lifetime).unwrap_or(u64::MAX))
        }
    };
    target.saturating_sub(entry.unspent).max(cost).max(1)
}

/// The unspent units of an expired entry, to return.
fn expired_units(slot: &LeaseSlot<'_>, entry: &LeaseEntry) -> Vec<PendingReturn> {
    entry
        .unspent_by_grant()
        .into_iter()
        .filter(|(units, _)| *units > 0)
        .map(|(units, granted_at)| PendingReturn {
            rule: slot.rule,
            key: slot.key.to_vec(),
            units,
            granted_at,
        })
        .collect()
}

/// Adds a grant to the entry, `cost` of it spent by the request that asked; answers the
/// units to return: those of the grant before last (the slice keeps two grants apart, so
/// each returned unit is refunded in the window it was counted in), or all of an expired
/// slice.
fn apply_grant(
    slot: &LeaseSlot<'_>,
    entry: &mut LeaseEntry,
    lease: &LeaseConfig,
    grant: &global::LeaseGrant,
    decision: &Decision,
    cost: u64,
    now: Nanos,
) -> Vec<PendingReturn> {
    let mut returns = Vec::new();
    if entry.live(now) {
        let [(last, _), (older, older_at)] = entry.unspent_by_grant();
        if older > 0 {
            returns.push(PendingReturn {
                rule: slot.rule,
                key: slot.key.to_vec(),
                units: older,
                granted_at: older_at,
            });
        }
        entry.unspent = last;
    } else {
        returns.extend(expired_units(slot, entry));
        entry.unspent = 0;
    }
    entry.prev_granted_at = entry.granted_at;
    entry.granted_at = grant.granted_at_ns;
    entry.last_units = grant.granted;
    entry.unspent = entry
        .unspent
        .saturating_add(grant.granted.saturating_sub(cost));
    entry.slice = entry.unspent.saturating_add(cost);
    entry.expires_at = now.saturating_add(lease.lifetime());
    entry.grant_remaining = decision.remaining;
    entry.reset_until = now.saturating_add(decision.reset_after);
    entry.spent = cost;
    entry.spent_since = now;
    forget_denial(entry);
    returns
}

/// The names of the lease tables of `policy`'s global rules (`<rule>/lease`), in rule order.
pub fn table_names(policy: &Policy) -> Vec<(usize, String)> {
    policy
        .rules()
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.scope() == Scope::Global)
        .map(|(index, rule)| (index, LeaseTable::table_name(rule.name())))
        .collect()
}

/// The lease tables as [`sluice_core::table::TableNames::separate_crc32`] takes them.
pub fn table_specs<'a>(
    policy: &'a Policy,
    names: &'a [(usize, String)],
) -> impl Iterator<Item = sluice_core::table::TableSpec<'a>> {
    names.iter().filter_map(|(index, name)| {
        let rule = policy.rules().get(*index)?;
        Some(sluice_core::table::TableSpec {
            rule: name,
            limit: rule.limit(),
            max_keys: rule.max_keys(),
        })
    })
}

impl Leases {
    /// Creates every lease table's buckets that do not exist yet, empty and at full size.
    pub fn prepare<S: SlotStore>(&self, store: &mut S) -> Result<(), String> {
        let mut key = String::new();
        let mut value = Vec::new();
        let mut empty = Vec::new();
        for rule in self.rules.iter().flatten() {
            crate::lease_table::LeaseBucket::default()
                .encode_into(rule.table.signature(), &mut empty);
            for bucket in 0..rule.table.bucket_count() {
                rule.table.write_bucket_key(bucket, &mut key);
                let exists = store.get(&key, &mut value).map_err(|e| {
                    format!("cannot create the lease table of a global rule in shared data: {e}")
                })?;
                if exists.is_some() {
                    continue;
                }
                match store.set(&key, &empty, 0) {
                    Ok(()) | Err(sluice_core::SetError::CasMismatch) => {}
                    Err(sluice_core::SetError::Store(e)) => {
                        return Err(format!(
                            "cannot create the lease table of a global rule in shared data: {e}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
