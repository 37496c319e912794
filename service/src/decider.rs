//! The protocol-independent part of a decision: a domain, its rules by name, keys and costs in;
//! the core's verdict and the rendered rate-limit headers out. Every API (RLS gRPC, RLS JSON,
//! the decide API) converts its request into [`Requested`] checks once, at the edge, and its
//! answer out of an [`Answer`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use prometheus_client::metrics::gauge::Gauge;
use sluice_core::{Check, Limit, Limiter, Nanos, RuleOutcome, Status, Verdict};
use sluice_policy::global::LeaseItems;
use sluice_policy::warning;
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::domains::{Domain, Domains};
use crate::metrics::{Api, Metrics, RequestResult, RuleCounters, UnitsKind};
use crate::store::{DecisionStore, LeaseKey};

/// The most checks one request may carry.
pub const MAX_CHECKS: usize = 64;

/// One rule to decide for one request, as a client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The rule's name in the domain's configuration.
    pub rule: String,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// Units to spend.
    pub cost: u64,
}

/// Why a request was not decided. Each message says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// No configuration for the domain.
    #[error("unknown domain \"{0}\": the service has no configuration with this global.domain")]
    UnknownDomain(String),
    /// The domain has no such rule.
    #[error("domain \"{domain}\" has no rule \"{rule}\"")]
    UnknownRule {
        /// The domain.
        domain: String,
        /// The rule asked for.
        rule: String,
    },
    /// A rule was asked for twice with the same key in one request.
    #[error("rule \"{0}\" appears twice with the same key in one request")]
    DuplicateRule(String),
    /// More checks than [`MAX_CHECKS`].
    #[error("{0} checks in one request; at most {MAX_CHECKS}")]
    TooManyChecks(usize),
    /// Too many requests are being decided; retry later.
    #[error("the service is at its limit of requests in flight")]
    Overloaded,
}

/// One rule's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleAnswer {
    /// The rule's name.
    pub rule: String,
    /// The rule's limit in the service's configuration.
    pub limit: Limit,
    /// What the core decided.
    pub outcome: RuleOutcome,
}

/// The result of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Every enforcing rule allowed the request.
    pub allowed: bool,
    /// One result per requested check, in order.
    pub rules: Vec<RuleAnswer>,
    /// The rate-limit headers the policy renders for this verdict (`Retry-After` included on
    /// a denial), exactly as the filter would add them.
    pub headers: Vec<(&'static str, String)>,
    /// The warning header (name, value) of a request a soft limit marked: for the response
    /// and for the request to the upstream.
    pub warning: Option<(String, String)>,
}

/// What one acquisition of a lease request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// Units granted (0 unless the outcome is `Allowed`).
    pub granted: u64,
    /// The service's clock when they were granted.
    pub granted_at: Nanos,
    /// The rule's outcome: allowed with a grant, denied (or shadow-denied) when not even the
    /// minimum fits, or the rule's failure mode when the store failed.
    pub outcome: RuleOutcome,
}

/// The result of one lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAnswer {
    /// One per acquisition, in order.
    pub acquired: Vec<Acquired>,
    /// Units restored, one per return, in order.
    pub returned: Vec<u64>,
}

/// Decides requests for every domain over one store.
#[derive(Debug)]
pub struct Decider<S, C> {
    domains: Domains,
    store: Arc<S>,
    clock: C,
    metrics: Metrics,
    /// Per domain, each rule's decision counters in the order of the policy's rules.
    counters: HashMap<String, Vec<RuleCounters>>,
    in_flight: Semaphore,
    deadline: Duration,
}

impl<S: DecisionStore, C: Clock> Decider<S, C> {
    /// A decider allowing `max_in_flight` concurrent decisions, each given at most `deadline`
    /// in the store before its rules' failure modes apply.
    pub fn new(
        domains: Domains,
        store: Arc<S>,
        clock: C,
        metrics: Metrics,
        max_in_flight: usize,
        deadline: Duration,
    ) -> Decider<S, C> {
        let counters = domains
            .names()
            .filter_map(|name| domains.get(name))
            .map(|domain| {
                let rules = domain
                    .policy()
                    .rules()
                    .iter()
                    .map(|rule| metrics.rule_counters(domain.name(), rule.name()))
                    .collect();
                (domain.name().to_owned(), rules)
            })
            .collect();
        Decider {
            domains,
            store,
            clock,
            counters,
            metrics,
            in_flight: Semaphore::new(max_in_flight),
            deadline,
        }
    }

    /// The domains served.
    pub fn domains(&self) -> &Domains {
        &self.domains
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Looks a domain up.
    pub fn domain(&self, name: &str) -> Result<&Arc<Domain>, DecideError> {
        self.domains
            .get(name)
            .ok_or_else(|| DecideError::UnknownDomain(name.to_owned()))
    }

    /// Decides `requested` for the domain named `domain`, counting the request under `api`.
    pub async fn decide(
        &self,
        api: Api,
        domain: &str,
        requested: &[Requested],
    ) -> Result<Answer, DecideError> {
        let started = Instant::now();
        let result = match self.checks_of(domain, requested) {
            Ok((domain, checks)) => self.decide_checks(domain, &checks).await,
            Err(error) => Err(error),
        };
        self.count(api, &result, started);
        result
    }

    /// Decides checks already built from `domain`'s rules (the decide API builds them with
    /// `sluice_policy::global::DecideRequest::checks`), counting the request under `api`.
    pub async fn decide_built(
        &self,
        api: Api,
        domain: &Domain,
        checks: &[Check<'_>],
    ) -> Result<Answer, DecideError> {
        let started = Instant::now();
        let result = self.decide_checks(domain, checks).await;
        self.count(api, &result, started);
        result
    }

    /// Handles a lease request's items for `domain` (built with
    /// `sluice_policy::global::LeaseRequest::resolve`): the returns first, then the
    /// acquisitions, each one atomic step on its key in the store, all within the decision
    /// deadline (past it, returns restore nothing and acquisitions get their rule's failure
    /// mode). Counted under [`Api::Lease`].
    pub async fn lease(
        &self,
        domain: &Domain,
        items: &LeaseItems<'_>,
    ) -> Result<LeaseAnswer, DecideError> {
        let started = Instant::now();
        let result = self.lease_items(domain, items).await;
        let label = match &result {
            Ok(answer) if answer.acquired.iter().all(|a| passes(a.outcome.status)) => {
                RequestResult::Allowed
            }
            Ok(_) => RequestResult::Denied,
            Err(DecideError::Overloaded) => RequestResult::Overloaded,
            Err(_) => RequestResult::Rejected,
        };
        self.metrics.request(Api::Lease, label, started.elapsed());
        result
    }

    async fn lease_items(
        &self,
        domain: &Domain,
        items: &LeaseItems<'_>,
    ) -> Result<LeaseAnswer, DecideError> {
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| DecideError::Overloaded)?;
        let _gauge = InFlight::enter(self.metrics.in_flight());
        let now = self.clock.now();
        let deadline = tokio::time::Instant::now() + self.deadline;
        let store = &*self.store;
        let key = |rule: &'_ sluice_policy::Rule, bytes: &[u8]| -> (String, Limit, Vec<u8>) {
            (rule.name().to_owned(), rule.limit(), bytes.to_vec())
        };

        // Returns first: what comes back can be granted again in the same call.
        let returns: Vec<_> = items
            .returns
            .iter()
            .map(|item| (key(item.rule, &item.key), item.units, item.granted_at))
            .collect();
        let steps = join_all(returns.iter().map(|((rule, limit, bytes), units, at)| {
            let lease_key = LeaseKey {
                domain: domain.name(),
                rule,
                limit: *limit,
                key: bytes,
            };
            store.give_back(lease_key, *units, *at, now)
        }));
        let returned: Vec<u64> = match tokio::time::timeout_at(deadline, steps).await {
            Ok(steps) => steps
                .into_iter()
                .map(|step| {
                    self.metrics.round_trips(step.round_trips);
                    step.result.unwrap_or_else(|_| {
                        self.metrics.store_error();
                        0
                    })
                })
                .collect(),
            Err(_) => vec![0; returns.len()],
        };
        for (item, units) in items.returns.iter().zip(&returned) {
            self.metrics
                .lease_units(domain.name(), item.rule.name(), UnitsKind::Returned, *units);
        }

        let acquisitions: Vec<_> = items
            .acquire
            .iter()
            .map(|item| (key(item.rule, &item.key), item.min, item.want))
            .collect();
        let steps = join_all(
            acquisitions
                .iter()
                .map(|((rule, limit, bytes), min, want)| {
                    let lease_key = LeaseKey {
                        domain: domain.name(),
                        rule,
                        limit: *limit,
                        key: bytes,
                    };
                    store.grant(lease_key, *min, *want, now)
                }),
        );
        let steps = tokio::time::timeout_at(deadline, steps).await.ok();
        let mut acquired = Vec::with_capacity(items.acquire.len());
        for (index, item) in items.acquire.iter().enumerate() {
            let step = steps.as_ref().and_then(|steps| steps.get(index));
            let (granted, outcome) = match step {
                Some(step) => {
                    self.metrics.round_trips(step.round_trips);
                    match &step.result {
                        Ok(grant) => (grant.granted, item.outcome(grant)),
                        Err(error) => {
                            self.metrics.store_error();
                            let mut outcome = item.failed_outcome();
                            outcome.store_error = Some(*error);
                            (0, outcome)
                        }
                    }
                }
                // Past the deadline: the rule's failure mode, as for a decision.
                None => {
                    self.metrics.store_error();
                    (0, item.failed_outcome())
                }
            };
            self.metrics
                .lease(domain.name(), item.rule.name(), outcome.status, granted);
            acquired.push(Acquired {
                granted,
                granted_at: now,
                outcome,
            });
        }
        Ok(LeaseAnswer { acquired, returned })
    }

    fn count(&self, api: Api, result: &Result<Answer, DecideError>, started: Instant) {
        let label = match result {
            Ok(answer) if answer.allowed => RequestResult::Allowed,
            Ok(_) => RequestResult::Denied,
            Err(DecideError::Overloaded) => RequestResult::Overloaded,
            Err(_) => RequestResult::Rejected,
        };
        self.metrics.request(api, label, started.elapsed());
    }

    /// Counts the rules that marked a passed request (the response carries a warning).
    fn count_marks(&self, domain: &Domain, checks: &[Check<'_>], verdict: &Verdict) {
        let counters = self.counters.get(domain.name());
        for (check, outcome) in checks.iter().zip(&verdict.outcomes) {
            let Some((index, rule)) = domain.rule(check.rule) else {
                continue;
            };
            let Some(reason) = warning::reason(check, outcome, rule.warn_at()) else {
                continue;
            };
            match counters.and_then(|rules| rules.get(index)) {
                Some(registered) => self.metrics.count_mark(registered, reason),
                None => self.metrics.mark(domain.name(), check.rule, reason),
            }
        }
    }

    fn checks_of<'d>(
        &'d self,
        domain_name: &str,
        requested: &[Requested],
    ) -> Result<(&'d Domain, Vec<Check<'d>>), DecideError> {
        let domain = self.domain(domain_name)?;
        if requested.len() > MAX_CHECKS {
            return Err(DecideError::TooManyChecks(requested.len()));
        }
        let mut checks = Vec::with_capacity(requested.len());
        for (position, asked) in requested.iter().enumerate() {
            let (_, rule) = domain
                .rule(&asked.rule)
                .ok_or_else(|| DecideError::UnknownRule {
                    domain: domain_name.to_owned(),
                    rule: asked.rule.clone(),
                })?;
            // The same counter twice would be read once and written twice.
            if requested[..position]
                .iter()
                .any(|r| r.rule == asked.rule && r.key == asked.key)
            {
                return Err(DecideError::DuplicateRule(asked.rule.clone()));
            }
            let check = rule
                .check_named(&asked.rule, asked.key.clone(), asked.cost)
                .ok_or_else(|| DecideError::UnknownRule {
                    domain: domain_name.to_owned(),
                    rule: asked.rule.clone(),
                })?;
            checks.push(check);
        }
        Ok((domain, checks))
    }

    async fn decide_checks(
        &self,
        domain: &Domain,
        checks: &[Check<'_>],
    ) -> Result<Answer, DecideError> {
        let _permit = self
            .in_flight
            .try_acquire()
            .map_err(|_| DecideError::Overloaded)?;
        let verdict = {
            let _gauge = InFlight::enter(self.metrics.in_flight());
            let now = self.clock.now();
            match tokio::time::timeout(self.deadline, self.store.decide(domain.name(), checks, now))
                .await
            {
                Ok(decided) => {
                    self.metrics.round_trips(decided.round_trips);
                    decided.verdict
                }
                // The store took too long: every rule's failure mode, as if it had failed.
                Err(_) => Limiter::decide_all(checks, &mut [], now),
            }
        };
        let counters = self.counters.get(domain.name());
        for (check, outcome) in checks.iter().zip(&verdict.outcomes) {
            let store_failed = outcome.store_error.is_some();
            let registered = domain
                .rule(check.rule)
                .and_then(|(index, _)| counters.and_then(|rules| rules.get(index)));
            match registered {
                Some(rule) => self
                    .metrics
                    .count_decision(rule, outcome.status, store_failed),
                // A domain built outside the decider's domains: count by name.
                None => {
                    self.metrics
                        .decision(domain.name(), check.rule, outcome.status, store_failed)
                }
            }
        }
        let response = domain.policy().respond(checks, &verdict);
        if response.warning().is_some() {
            self.count_marks(domain, checks, &verdict);
        }
        let headers = response.headers().to_vec();
        let warning = response
            .warning()
            .map(|w| (w.name.to_owned(), w.value.clone()));
        let rules = checks
            .iter()
            .zip(&verdict.outcomes)
            .map(|(check, outcome)| RuleAnswer {
                rule: check.rule.to_owned(),
                limit: check.limit,
                outcome: *outcome,
            })
            .collect();
        Ok(Answer {
            allowed: verdict.allowed,
            rules,
            headers,
            warning,
        })
    }
}

/// Keeps the in-flight gauge right even when a request is dropped mid-decision (its client
/// went away).
struct InFlight<'g>(&'g Gauge);

impl<'g> InFlight<'g> {
    fn enter(gauge: &'g Gauge) -> InFlight<'g> {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Whether an outcome lets the request through.
pub fn passes(status: Status) -> bool {
    !matches!(status, Status::Denied | Status::FailedClosed)
}
