//! A request with global rules, from the filter's side: local rules are decided (and
//! committed) in shared data first; if they allow, the global checks go to the service in one
//! call; the reply (or the failure of the call) decides, and a denial takes back the local
//! commits, so the request spends nothing anywhere unless every rule allows it.
//!
//! [`GlobalCall`] owns everything it needs (no borrow of the policy), so a filter can keep it
//! in its HTTP context while the request waits for the service.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use sluice_core::limiter::FAILURE_RETRY_AFTER;
use sluice_core::{
    Check, Decision, FailureMode, Limiter, Mode, Nanos, RuleOutcome, SlotStore, Status, Verdict,
};

use super::config::Scope;
use super::wire::{DecideReply, DecideRequest, ReplyError};
use crate::policy::{AppliedRules, Evaluation, Handled, Policy, RequestBuffers};
use crate::request::Request;
use crate::response::Response;

/// Why the service gave no usable answer; each global rule's failure mode then decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The proxy refused to make the call (e.g. an unknown cluster), with this ABI status.
    Dispatch(u32),
    /// No response: timeout, connection refused, reset.
    NoResponse,
    /// A response with a status other than 200.
    Status(u16),
    /// A 200 whose body is not a decide reply to the request.
    BadReply(ReplyError),
}

impl CallFailure {
    /// How many kinds [`CallFailure::kind`] tells apart.
    pub const KINDS: usize = 4;

    /// The failure's kind, `0..KINDS`: what [`FailureLog`](super::FailureLog) rate-limits by.
    pub fn kind(&self) -> usize {
        match self {
            CallFailure::Dispatch(_) => 0,
            CallFailure::NoResponse => 1,
            CallFailure::Status(_) => 2,
            CallFailure::BadReply(_) => 3,
        }
    }
}

impl fmt::Display for CallFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallFailure::Dispatch(status) => write!(
                f,
                "the proxy refused the call (status {status}; is the cluster defined?)"
            ),
            CallFailure::NoResponse => {
                f.write_str("no response (timeout, connection refused or reset)")
            }
            CallFailure::Status(status) => write!(f, "it answered status {status}"),
            CallFailure::BadReply(error) => write!(f, "a bad reply: {error}"),
        }
    }
}

/// What [`Policy::start`] made of a request.
#[derive(Debug)]
pub enum Started<'p> {
    /// Decided without the service: exempt, no global rule applies, or a local rule denied.
    Done(Handled<'p>),
    /// The local rules allowed (and committed); the global rules need the service.
    Call(GlobalCall),
}

/// A request waiting for the service: the body to send, and what [`Policy::finish`] needs.
#[derive(Debug, Clone)]
pub struct GlobalCall {
    now: Nanos,
    /// Every applying rule in rule order: its index in the policy, the name of the limit it
    /// applied (a tier's or an override's, or the rule's own), key and cost.
    rules: Vec<usize>,
    /// Which of each rule's limits applied (see [`Policy::limit_index`]).
    limits: Vec<usize>,
    names: Vec<String>,
    keys: Vec<Vec<u8>>,
    costs: Vec<u64>,
    scopes: Vec<Scope>,
    /// The outcome of each local check, in order (committed where allowed).
    local: Vec<RuleOutcome>,
    globals: usize,
    body: Vec<u8>,
}

impl GlobalCall {
    /// The decide request's JSON body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// How many global checks it asks for.
    pub fn global_checks(&self) -> usize {
        self.globals
    }

    /// When the request was checked (the local commits' time).
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Each local check as decided before the call: its rule's index, which of the rule's
    /// limits applied, its key and its outcome (committed where allowed).
    pub fn local_checks(&self) -> impl Iterator<Item = (usize, usize, &[u8], &RuleOutcome)> {
        self.rules
            .iter()
            .zip(&self.limits)
            .zip(&self.keys)
            .zip(&self.scopes)
            .filter(|(_, scope)| **scope == Scope::Local)
            .zip(&self.local)
            .map(|((((&rule, &limit), key), _), outcome)| (rule, limit, key.as_slice(), outcome))
    }
}

/// The end of a request with global rules.
#[derive(Debug)]
pub struct Finished<'p> {
    /// Every rule's outcome and the response, as an all-local request with the same
    /// decisions would have them.
    pub handled: Handled<'p>,
    /// Why the service's answer could not be used, if it could not.
    pub failure: Option<CallFailure>,
}

impl Policy {
    /// Starts a request that may need the rate-limit service: evaluates it and decides its
    /// local rules at `now` over `store`. Returns [`Started::Call`] when global rules apply
    /// and the local ones allowed; send [`GlobalCall::body`] to the service and hand its
    /// answer to [`Policy::finish`]. A policy without global rules always answers
    /// [`Started::Done`], exactly as [`Policy::handle`].
    pub fn start<R: Request + ?Sized, S: SlotStore>(
        &self,
        request: &R,
        now: Nanos,
        limiter: &mut Limiter,
        store: &mut S,
    ) -> Started<'_> {
        let evaluation = self.evaluate(request);
        let applied = match &evaluation {
            Evaluation::Rules(applied) if applied.has_global() => applied,
            _ => return Started::Done(self.decide_locally(evaluation, now, limiter, store)),
        };
        let checks = applied.checks();
        let local_checks: Vec<Check<'_>> = checks
            .iter()
            .enumerate()
            .filter(|(i, _)| applied.scope(*i) == Scope::Local)
            .map(|(_, check)| check.clone())
            .collect();
        let local = if local_checks.is_empty() {
            Verdict {
                allowed: true,
                outcomes: Vec::new(),
            }
        } else {
            limiter.check(&local_checks, now, store)
        };
        if !local.allowed {
            // No call: the global rules are not asked and fill their place as "allowed",
            // which a denial's response leaves out, as it does allowing rules.
            let mut unasked = Vec::new();
            let mut local_outcomes = local.outcomes.iter();
            let outcomes = checks
                .iter()
                .enumerate()
                .map(|(i, check)| match applied.scope(i) {
                    Scope::Local => local_outcomes.next().copied().unwrap_or_else(|| {
                        unasked.push(i);
                        unasked_outcome(check)
                    }),
                    Scope::Global => {
                        unasked.push(i);
                        unasked_outcome(check)
                    }
                })
                .collect();
            let verdict = Verdict {
                allowed: false,
                outcomes,
            };
            let response = self.respond(checks, &verdict);
            return Started::Done(Handled {
                evaluation,
                verdict: Some(verdict),
                response,
                policy: self,
                unasked,
                global_failure: false,
            });
        }
        let globals = checks
            .iter()
            .enumerate()
            .filter(|(i, _)| applied.scope(*i) == Scope::Global)
            .map(|(_, check)| check);
        let request = DecideRequest::new(self.domain(), globals);
        Started::Call(GlobalCall {
            now,
            rules: applied.rule_indices().to_vec(),
            limits: applied
                .rule_indices()
                .iter()
                .zip(checks)
                .map(|(&rule, check)| self.limit_index(rule, check.rule))
                .collect(),
            names: checks.iter().map(|c| String::from(c.rule)).collect(),
            keys: checks.iter().map(|c| c.key.clone()).collect(),
            costs: checks.iter().map(|c| c.cost).collect(),
            scopes: applied.scopes.clone(),
            local: local.outcomes,
            globals: request.checks.len(),
            body: request.to_json(),
        })
    }

    /// Ends a request [`Policy::start`] sent to the service, with the service's `answer`: the
    /// body of its 200 response, or why there is none. A reply that does not parse as an
    /// answer to the call is a failure too. Every global rule takes its outcome from the
    /// reply, or on failure its failure mode; if the request is denied, the local commits are
    /// refunded with `limiter` over `store`.
    pub fn finish<S: SlotStore>(
        &self,
        call: GlobalCall,
        answer: Result<&[u8], CallFailure>,
        limiter: &mut Limiter,
        store: &mut S,
    ) -> Finished<'_> {
        let checks: Vec<Check<'_>> = call
            .rules
            .iter()
            .zip(&call.names)
            .zip(call.keys)
            .zip(&call.costs)
            .filter_map(|(((&index, name), key), &cost)| {
                self.rules.get(index)?.check_named(name, key, cost)
            })
            .collect();
        let answer = answer
            .and_then(|body| DecideReply::parse(body, call.globals).map_err(CallFailure::BadReply));
        let (global, failure) = match answer {
            Ok(reply) => (reply.rule_outcomes(), None),
            Err(failure) => {
                let outcomes = checks
                    .iter()
                    .zip(&call.scopes)
                    .filter(|(_, scope)| **scope == Scope::Global)
                    .map(|(check, _)| failed(check))
                    .collect();
                (outcomes, Some(failure))
            }
        };
        let mut local_outcomes = call.local.iter();
        let mut global_outcomes = global.into_iter();
        let outcomes: Vec<RuleOutcome> = checks
            .iter()
            .zip(&call.scopes)
            .map(|(check, scope)| {
                let next = match scope {
                    Scope::Local => local_outcomes.next().copied(),
                    Scope::Global => global_outcomes.next(),
                };
                next.unwrap_or_else(|| failed(check))
            })
            .collect();
        let allowed = !outcomes
            .iter()
            .any(|o| matches!(o.status, Status::Denied | Status::FailedClosed));
        if !allowed {
            let local_checks: Vec<Check<'_>> = checks
                .iter()
                .zip(&call.scopes)
                .filter(|(_, scope)| **scope == Scope::Local)
                .map(|(check, _)| check.clone())
                .collect();
            limiter.refund(&local_checks, &call.local, call.now, store);
        }
        let verdict = Verdict { allowed, outcomes };
        let response: Response<'_> = self.respond(&checks, &verdict);
        let evaluation = Evaluation::Rules(AppliedRules {
            checks,
            rule_indices: call.rules,
            scopes: call.scopes,
        });
        Finished {
            handled: Handled {
                evaluation,
                verdict: Some(verdict),
                response,
                policy: self,
                unasked: Vec::new(),
                global_failure: failure.is_some(),
            },
            failure,
        }
    }

    /// [`Policy::handle`] for an evaluation already made.
    pub(crate) fn decide_locally<'p, S: SlotStore>(
        &'p self,
        evaluation: Evaluation<'p>,
        now: Nanos,
        limiter: &mut Limiter,
        store: &mut S,
    ) -> Handled<'p> {
        self.decide_into(
            evaluation,
            now,
            limiter,
            store,
            &mut RequestBuffers::default(),
        )
    }
}

/// The place-holder outcome of a global rule that was not asked (allowed, nothing known of
/// its state); also what a held request's refund is given for each of its commits.
pub(crate) fn unasked_outcome(check: &Check<'_>) -> RuleOutcome {
    RuleOutcome {
        status: Status::Allowed,
        decision: Decision {
            allowed: true,
            limit: check.limit.quota.limit(),
            remaining: 0,
            reset_after: 0,
            retry_after: 0,
            delay: 0,
        },
        cas_retries: 0,
        store_error: None,
    }
}

/// A global rule's outcome when the service gave no answer: its failure mode decides, as the
/// core decides a rule whose store failed (open: passes uncounted, state unknown; closed:
/// denied, retry after [`FAILURE_RETRY_AFTER`]; a shadow rule never denies).
pub(crate) fn failed(check: &Check<'_>) -> RuleOutcome {
    let limit = check.limit.quota.limit();
    let (status, decision) = match check.failure_mode {
        FailureMode::Open => (
            Status::FailedOpen,
            Decision {
                allowed: true,
                limit,
                remaining: 0,
                reset_after: 0,
                retry_after: 0,
                delay: 0,
            },
        ),
        FailureMode::Closed => (
            match check.mode {
                Mode::Enforce => Status::FailedClosed,
                Mode::Shadow | Mode::Soft => Status::ShadowDenied,
            },
            Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_after: FAILURE_RETRY_AFTER,
                retry_after: FAILURE_RETRY_AFTER,
                delay: 0,
            },
        ),
    };
    RuleOutcome {
        status,
        decision,
        cas_retries: 0,
        store_error: None,
    }
}
