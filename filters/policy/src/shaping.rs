//! Delay (throttle) mode: a rule's `delay` (how long a request that does not fit may be held
//! instead of denied) and the top-level `shaping` section (how many requests one proxy VM may
//! hold at once).
//!
//! A rule with `"delay": {"max": "500ms"}` and GCRA admits a request whose new debt is over
//! the tolerance by at most `max`, commits it at once and holds it for exactly that excess
//! (see `sluice_core::algorithm` for the arithmetic), like NGINX's `limit_req burst= delay=`.
//! The proxy-wasm filter holds requests per VM, the edge worker per isolate; both bound them
//! with `shaping.max_held`.

use alloc::vec::Vec;
use serde_json::Value;
use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC};
use sluice_core::{
    Algorithm, Check, Limiter, Mode, Nanos, RuleOutcome, SlotStore, Status, Verdict,
};

use crate::duration::{DurationError, parse_period};
use crate::error::{ConfigError, Problem};
use crate::global::Scope;
use crate::global::exchange::unasked_outcome;
use crate::json::{self, Fields};
use crate::policy::{Evaluation, Handled, MAX_SPARE, Policy, RequestBuffers};

/// The shortest `delay.max`.
pub const MIN_DELAY: Nanos = NANOS_PER_MILLI;
/// The longest `delay.max`: a request held longer is better told to come back.
pub const MAX_DELAY: Nanos = 60 * NANOS_PER_SEC;
/// `shaping.max_held` when not given.
pub const DEFAULT_MAX_HELD: u32 = 1024;
/// The largest `shaping.max_held`.
pub const MAX_MAX_HELD: u32 = 1_000_000;

const DELAY_FIELDS: &[&str] = &["max"];
const SHAPING_FIELDS: &[&str] = &["max_held"];

/// The `shaping` section: limits on the requests held by delay rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shaping {
    max_held: u32,
}

impl Default for Shaping {
    fn default() -> Shaping {
        Shaping {
            max_held: DEFAULT_MAX_HELD,
        }
    }
}

impl Shaping {
    /// The most requests one VM (proxy worker), or one edge worker isolate, holds at once; a
    /// request that would be held beyond it is denied as its rule's denial, and its commit
    /// refunded.
    pub fn max_held(&self) -> u32 {
        self.max_held
    }

    pub(crate) fn parse(value: &Value, path: &str) -> Result<Shaping, ConfigError> {
        let fields = Fields::open(value, path, SHAPING_FIELDS)?;
        let max_held = match fields.get("max_held") {
            Some(v) => {
                let held = json::integer(
                    v,
                    &fields.path("max_held"),
                    1,
                    u64::from(MAX_MAX_HELD),
                    "each held request is a paused stream the proxy keeps open",
                )?;
                u32::try_from(held).unwrap_or(DEFAULT_MAX_HELD)
            }
            None => DEFAULT_MAX_HELD,
        };
        Ok(Shaping { max_held })
    }
}

/// What a rule's `delay` may be combined with.
pub(crate) struct DelayContext {
    pub(crate) algorithm: Algorithm,
    pub(crate) mode: Mode,
    pub(crate) scope: Scope,
    pub(crate) leased: bool,
}

/// A rule's `delay` section: its `max`, checked against the rest of the rule.
pub(crate) fn parse_delay(
    value: &Value,
    path: &str,
    rule: &DelayContext,
) -> Result<Nanos, ConfigError> {
    if rule.algorithm != Algorithm::Gcra {
        return Err(ConfigError::new(
            path,
            Problem::DelayNeedsGcra {
                algorithm: rule.algorithm.name(),
            },
        ));
    }
    if rule.mode != Mode::Enforce {
        return Err(ConfigError::new(path, Problem::DelayNeedsEnforce));
    }
    if rule.scope == Scope::Global {
        return Err(ConfigError::new(path, Problem::DelayWithGlobalScope));
    }
    if rule.leased {
        return Err(ConfigError::new(path, Problem::DelayWithLease));
    }
    let fields = Fields::open(value, path, DELAY_FIELDS)?;
    let max_path = fields.path("max");
    let text = json::string(fields.require("max", "\"max\": \"500ms\"")?, &max_path)?;
    match parse_period(text) {
        Ok(nanos) if (MIN_DELAY..=MAX_DELAY).contains(&nanos) => Ok(nanos),
        Ok(_) | Err(DurationError::Zero | DurationError::TooLong) => Err(ConfigError::new(
            max_path,
            Problem::DelayOutOfRange { text: text.into() },
        )),
        Err(DurationError::Malformed) => Err(ConfigError::new(
            max_path,
            Problem::InvalidDuration { text: text.into() },
        )),
    }
}

/// What a held request needs to give its units back if it never goes on (its client left,
/// or the VM has no room to hold it): the rules that committed it, their keys and costs, and
/// when. Built from the request's [`Handled`] by [`HeldRequest::of`]: the keys are moved out
/// of its checks and the list comes from the VM's [`RequestBuffers`], and both go back to them
/// when the request is done ([`RequestBuffers::reclaim_held`], [`Policy::give_back`]), so
/// holding allocates nothing once warmed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRequest {
    committed_at: Nanos,
    delay: Nanos,
    commits: Vec<HeldCommit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldCommit {
    rule: usize,
    limit: usize,
    key: Vec<u8>,
    cost: u64,
}

impl HeldRequest {
    /// The record of a request [`Policy::handle`] allowed with a hold (its verdict's
    /// [`Verdict::delay`](sluice_core::Verdict::delay) > 0) at `committed_at`; `None` if it is not held.
    pub fn of(
        handled: &mut Handled<'_>,
        committed_at: Nanos,
        buffers: &mut RequestBuffers,
    ) -> Option<HeldRequest> {
        let verdict = handled.verdict.as_ref()?;
        let delay = verdict.delay();
        if delay == 0 {
            return None;
        }
        let policy = handled.policy;
        let Evaluation::Rules(applied) = &mut handled.evaluation else {
            return None;
        };
        let mut commits = buffers.held_list();
        for ((check, &rule_index), outcome) in applied
            .checks
            .iter_mut()
            .zip(&applied.rule_indices)
            .zip(&verdict.outcomes)
        {
            // A concurrency slot is given back when the stream ends, held or not
            // (`Handled::take_slots`).
            if outcome.status != Status::Allowed
                || check.cost == 0
                || check.limit.algorithm == Algorithm::Concurrency
            {
                continue;
            }
            let Some(rule) = policy.rules.get(rule_index) else {
                continue;
            };
            let Some(limit) = rule.limits.iter().position(|l| l.name == check.rule) else {
                continue;
            };
            commits.push(HeldCommit {
                rule: rule_index,
                limit,
                key: core::mem::take(&mut check.key),
                cost: check.cost,
            });
        }
        Some(HeldRequest {
            committed_at,
            delay,
            commits,
        })
    }

    /// How long the request is held from [`HeldRequest::committed_at`].
    pub fn delay(&self) -> Nanos {
        self.delay
    }

    /// When it was admitted and counted.
    pub fn committed_at(&self) -> Nanos {
        self.committed_at
    }

    /// When it goes on.
    pub fn release_at(&self) -> Nanos {
        self.committed_at.saturating_add(self.delay)
    }
}

impl Policy {
    /// Gives back what a held request counted, for a request that will never go on (its
    /// client left while it was held), and its keys and list to `buffers`. Best effort like
    /// every refund (see [`Limiter::refund`]).
    pub fn give_back<S: SlotStore>(
        &self,
        mut held: HeldRequest,
        limiter: &mut Limiter,
        store: &mut S,
        buffers: &mut RequestBuffers,
    ) {
        let mut checks = Vec::with_capacity(held.commits.len());
        for commit in held.commits.drain(..) {
            let named = self
                .rules
                .get(commit.rule)
                .and_then(|rule| Some((rule, rule.limits.get(commit.limit)?)));
            let Some((rule, named)) = named else {
                buffers.give_back_key(commit.key);
                continue;
            };
            checks.push(Check {
                rule: &named.name,
                limit: named.limit,
                max_keys: named.max_keys,
                key: commit.key,
                cost: commit.cost,
                mode: rule.mode,
                failure_mode: rule.failure_mode,
            });
        }
        // Each refunded check as allowed and committed: what `refund` takes back.
        let outcomes: Vec<RuleOutcome> = checks.iter().map(unasked_outcome).collect();
        limiter.refund(&checks, &outcomes, held.committed_at, store);
        for check in checks {
            buffers.give_back_key(check.key);
        }
        buffers.reclaim_held(held);
    }

    /// A request that should be held but cannot be (the VM already holds
    /// `shaping.max_held` requests): what it counted is given back, and it is denied as its
    /// holding rules would deny it, told to retry when its slot would have come. Returns the
    /// same request with that verdict and the denial rendered.
    pub fn refuse_hold<'p, S: SlotStore>(
        &'p self,
        mut handled: Handled<'p>,
        committed_at: Nanos,
        limiter: &mut Limiter,
        store: &mut S,
    ) -> Handled<'p> {
        let Some(mut verdict) = handled.verdict.take() else {
            return handled;
        };
        let checks = handled.evaluation.checks();
        if verdict.delay() > 0 {
            limiter.refund(checks, &verdict.outcomes, committed_at, store);
            deny_instead_of_holding(checks, &mut verdict);
            handled.response = self.respond(checks, &verdict);
        }
        handled.verdict = Some(verdict);
        handled
    }
}

/// Turns the verdict of a request allowed with a hold into the denial its holding rules give
/// when it cannot be held (its commits given back by the caller): each holding rule denies as
/// it would without delay, telling the client to retry when its slot would have come. A
/// verdict without a hold is left as it is.
pub fn deny_instead_of_holding(checks: &[Check<'_>], verdict: &mut Verdict) {
    if verdict.delay() == 0 {
        return;
    }
    for (outcome, check) in verdict.outcomes.iter_mut().zip(checks) {
        if outcome.status == Status::Allowed && outcome.decision.delay > 0 {
            // As the rule denies without delay: wait until the slot comes, the reset time
            // without this request's units.
            let spent = check
                .cost
                .saturating_mul(check.limit.quota.emission_interval());
            outcome.status = Status::Denied;
            outcome.decision.allowed = false;
            outcome.decision.remaining = 0;
            outcome.decision.reset_after = outcome.decision.reset_after.saturating_sub(spent);
            outcome.decision.retry_after = outcome.decision.delay;
            outcome.decision.delay = 0;
        }
    }
    verdict.allowed = false;
}

impl RequestBuffers {
    fn held_list(&mut self) -> Vec<HeldCommit> {
        self.held_lists.pop().unwrap_or_default()
    }

    /// Takes back a held request's keys and list once it is done with (released and sent
    /// upstream; one given back goes through [`Policy::give_back`]).
    pub fn reclaim_held(&mut self, held: HeldRequest) {
        let mut list = held.commits;
        for commit in list.drain(..) {
            self.give_back_key(commit.key);
        }
        if list.capacity() > 0 && self.held_lists.len() < MAX_SPARE {
            self.held_lists.push(list);
        }
    }
}

/// Spare lists of a held request's commits, kept in [`RequestBuffers`].
pub(crate) type HeldLists = Vec<Vec<HeldCommit>>;
