//! Every shared vector in `vectors/` through the global path: the policy evaluates the request
//! as the filter does, the checks go to the service's decide API over HTTP, the service decides
//! them over a real Redis, and the reply is rendered as the filter renders it. Decisions and
//! headers must be exactly those of the local path (`filters/policy/tests/vectors.rs`).
//!
//! Every rule of a vector is decided by the service here, whatever its scope: a vector's
//! results must not depend on where its counters live.
//!
//! The vectors also go through the lease API (`/v1/lease`) with a lease of size 1 on every
//! rule, the exact configuration: a step of cost `c` is an acquisition with `min = want = c`
//! per rule; when the request is denied, the units granted to the other rules go back in a
//! second call (all or nothing, as the decide path). Rules of cost 0 take the decide path
//! (a grant is at least one unit). Vectors with a sliding log or a tiered rule, which cannot be leased,
//! are left out of that run. Vectors that hold requests ([`sluice_vectors::holds_requests`]:
//! rules with a `delay`, which are local only since the service cannot hold a request) and
//! vectors with concurrency rules ([`sluice_vectors::has_concurrency_rules`]: local only, since
//! the service never hears that a request ended) are left out of both.

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_core::limiter::request_allowed;
use sluice_core::{Check, Grant, Limiter, Nanos, RuleOutcome, StoreError, Verdict};
use sluice_policy::global::{
    DecideReply, DecideRequest, LeaseAcquire, LeaseReply, LeaseRequest, LeaseReturn,
};
use sluice_policy::{Evaluation, Policy, Response};
use sluice_redis::{RedisConfig, RedisStore};
use sluice_redis_server::RedisServer;
use sluice_service::clock::ManualClock;
use sluice_service::store::{Decided, DecisionStore, LeaseKey, LeaseStep};
use sluice_vectors::{Vector, compare, compare_upstream, load, upstream_headers};

/// The Redis store, with every call failing while `failing` is set (a vector's
/// `store_fails`).
struct Faulty {
    inner: RedisStore,
    failing: AtomicBool,
}

impl DecisionStore for Faulty {
    async fn decide(&self, domain: &str, checks: &[Check<'_>], now: Nanos) -> Decided {
        if self.failing.load(Ordering::SeqCst) {
            // No state could be read: each rule's failure mode.
            return Decided {
                verdict: Limiter::decide_all(checks, &mut [], now),
                round_trips: 0,
            };
        }
        DecisionStore::decide(&self.inner, domain, checks, now).await
    }

    async fn ready(&self) -> Result<(), String> {
        DecisionStore::ready(&self.inner).await
    }

    async fn grant(&self, key: LeaseKey<'_>, min: u64, want: u64, now: Nanos) -> LeaseStep<Grant> {
        if self.failing.load(Ordering::SeqCst) {
            return LeaseStep {
                result: Err(StoreError::Unavailable),
                round_trips: 0,
            };
        }
        DecisionStore::grant(&self.inner, key, min, want, now).await
    }

    async fn give_back(
        &self,
        key: LeaseKey<'_>,
        units: u64,
        granted_at: Nanos,
        now: Nanos,
    ) -> LeaseStep<u64> {
        if self.failing.load(Ordering::SeqCst) {
            return LeaseStep {
                result: Err(StoreError::Unavailable),
                round_trips: 0,
            };
        }
        DecisionStore::give_back(&self.inner, key, units, granted_at, now).await
    }
}

/// Which API of the service the vectors go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Decide,
    Lease,
}

#[tokio::test]
async fn every_vector_gives_the_same_decisions_and_headers_through_the_service() {
    let redis = RedisServer::start().expect("a test Redis");
    let files = sluice_vectors::files();
    assert!(
        files.len() >= 15,
        "expected the vector set, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = sluice_vectors::name(file);
        let result = match load(file) {
            // Delay and concurrency rules are local only: the service cannot hold a
            // request, and never hears that one ended.
            Ok(vector)
                if sluice_vectors::holds_requests(&vector)
                    || sluice_vectors::has_concurrency_rules(&vector) =>
            {
                continue;
            }
            Ok(vector) => run(&vector, &redis, Path::Decide).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed through the service:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_leasable_vector_gives_the_same_decisions_and_headers_through_leases_of_one() {
    let redis = RedisServer::start().expect("a test Redis");
    let files = sluice_vectors::files();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in &files {
        let name = sluice_vectors::name(file);
        let vector = match load(file) {
            Ok(vector) => vector,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        if sluice_vectors::holds_requests(&vector) || sluice_vectors::has_concurrency_rules(&vector)
        {
            continue;
        }
        let policy = Policy::from_json(&vector.config).expect("a vector's config is valid");
        if policy.rules().iter().any(|rule| {
            !rule.limit().algorithm.supports_leases()
                || rule.tiers().is_some()
                || rule.overrides().is_some()
        }) {
            continue;
        }
        ran += 1;
        if let Err(e) = run(&vector, &redis, Path::Lease).await {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(ran >= 15, "expected most vectors to be leasable, ran {ran}");
    assert!(
        failures.is_empty(),
        "{} of {ran} vectors failed through leases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The vector's configuration with a lease of size 1 on every rule (made global, with a
/// `global` object if it had none): what the service loads for the lease run.
fn leased_config(config: &[u8]) -> Result<String, String> {
    let mut value: serde_json::Value = serde_json::from_slice(config).map_err(|e| e.to_string())?;
    let top = value.as_object_mut().ok_or("the config is not an object")?;
    top.entry("global")
        .or_insert_with(|| serde_json::json!({"cluster": "sluice_service"}));
    let rules = top
        .get_mut("rules")
        .and_then(|r| r.as_array_mut())
        .ok_or("the config has no rules")?;
    for rule in rules {
        let rule = rule.as_object_mut().ok_or("a rule is not an object")?;
        rule.insert("scope".into(), "global".into());
        rule.insert("lease".into(), serde_json::json!({"size": 1}));
    }
    Ok(value.to_string())
}

async fn run(vector: &Vector, redis: &RedisServer, path: Path) -> Result<(), String> {
    let config = match path {
        Path::Decide => std::str::from_utf8(&vector.config)
            .map_err(|e| e.to_string())?
            .to_owned(),
        Path::Lease => leased_config(&vector.config)?,
    };
    let config = config.as_str();
    let policy = Policy::from_json(&vector.config).map_err(|e| format!("config rejected: {e}"))?;
    // A fresh count for every vector.
    let mut connection = redis::Client::open(redis.url())
        .map_err(|e| e.to_string())?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
    let store = Arc::new(Faulty {
        inner: RedisStore::connect(RedisConfig::new(redis.url()))
            .await
            .map_err(|e| e.to_string())?,
        failing: AtomicBool::new(false),
    });
    let clock = ManualClock::new(0);
    let service = common::start(
        Arc::clone(&store),
        clock.clone(),
        &[config],
        Duration::from_secs(5),
    )
    .await;
    let client = common::client();
    let url = format!("{}/v1/decide", service.http());
    let mut outcome = Ok(());
    'steps: for (index, step) in vector.steps.iter().enumerate() {
        clock.set(step.now().map_err(|e| format!("steps[{index}]: {e}"))?);
        for round in 1..=step.repeat {
            store.failing.store(step.store_fails, Ordering::SeqCst);
            let evaluation = policy.evaluate(&step.request);
            let response = match &evaluation {
                Evaluation::Exempt => Response::pass(),
                Evaluation::Rules(rules) if rules.is_empty() => Response::pass(),
                Evaluation::Rules(rules) if path == Path::Lease => {
                    let base = service.http();
                    let verdict = lease_verdict(&client, &base, policy.domain(), rules.checks())
                        .await
                        .map_err(|e| format!("steps[{index}]: {e}"))?;
                    policy.respond(rules.checks(), &verdict)
                }
                Evaluation::Rules(rules) => {
                    let body = DecideRequest::new(policy.domain(), rules.checks()).to_json();
                    let (status, raw) = common::send(&client, "POST", &url, body).await;
                    if status != 200 {
                        outcome = Err(format!(
                            "steps[{index}]: the service answered {status}: {}",
                            String::from_utf8_lossy(&raw)
                        ));
                        break 'steps;
                    }
                    let reply = DecideReply::parse(&raw, rules.checks().len())
                        .map_err(|e| format!("steps[{index}]: {e}"))?;
                    let verdict = Verdict {
                        allowed: reply.allowed,
                        outcomes: reply.rule_outcomes(),
                    };
                    policy.respond(rules.checks(), &verdict)
                }
            };
            store.failing.store(false, Ordering::SeqCst);
            let mut differences = compare(&response, &step.expect);
            if !response.is_deny() {
                let upstream = upstream_headers(&policy, &step.request, &response);
                differences.extend(compare_upstream(&upstream, &step.expect));
            }
            if !differences.is_empty() {
                let mut message = format!("steps[{index}] (at_ms {}", step.at_ms);
                if step.repeat > 1 {
                    let _ = write!(message, ", repeat {round} of {}", step.repeat);
                }
                let _ = write!(message, "): {}", differences.join("; "));
                outcome = Err(message);
                break 'steps;
            }
        }
    }
    service.running.shutdown().await;
    outcome
}

/// A request's verdict through the lease API: one acquisition of exactly the cost per rule
/// (cost 0 through the decide API, in the same order), and the granted units returned when
/// the request is denied.
async fn lease_verdict(
    client: &common::HttpClient,
    base: &str,
    domain: &str,
    checks: &[Check<'_>],
) -> Result<Verdict, String> {
    let leased: Vec<&Check<'_>> = checks.iter().filter(|c| c.cost > 0).collect();
    let free: Vec<&Check<'_>> = checks.iter().filter(|c| c.cost == 0).collect();
    let request = LeaseRequest::new(
        domain,
        leased
            .iter()
            .map(|c| LeaseAcquire::for_check(c, c.cost))
            .collect(),
        vec![],
    );
    let reply = lease_call(client, base, &request).await?;
    let mut free_outcomes = Vec::new();
    if !free.is_empty() {
        let body = DecideRequest::new(domain, free.iter().copied()).to_json();
        let (status, raw) = common::send(client, "POST", &format!("{base}/v1/decide"), body).await;
        if status != 200 {
            return Err(format!(
                "the decide API answered {status}: {}",
                String::from_utf8_lossy(&raw)
            ));
        }
        free_outcomes = DecideReply::parse(&raw, free.len())
            .map_err(|e| e.to_string())?
            .rule_outcomes();
    }
    let mut granted = reply.acquired.iter();
    let mut free_outcomes = free_outcomes.into_iter();
    let outcomes: Vec<RuleOutcome> = checks
        .iter()
        .map(|check| {
            let outcome = if check.cost > 0 {
                granted.next().map(|g| g.outcome.rule_outcome())
            } else {
                free_outcomes.next()
            };
            outcome.ok_or_else(|| "an outcome is missing".to_owned())
        })
        .collect::<Result<_, _>>()?;
    let allowed = request_allowed(&outcomes);
    if !allowed {
        // All or nothing: what the other rules granted goes back.
        let returns: Vec<LeaseReturn> = leased
            .iter()
            .zip(&reply.acquired)
            .filter(|(_, grant)| grant.granted > 0)
            .map(|(check, grant)| {
                LeaseReturn::new(
                    check.rule,
                    &check.limit,
                    &check.key,
                    grant.granted,
                    grant.granted_at_ns,
                )
            })
            .collect();
        if !returns.is_empty() {
            let units: Vec<u64> = returns.iter().map(|r| r.units).collect();
            let request = LeaseRequest::new(domain, vec![], returns);
            let reply = lease_call(client, base, &request).await?;
            let restored: Vec<u64> = reply.returned.iter().map(|r| r.units).collect();
            if restored != units {
                return Err(format!("returned {units:?} but {restored:?} were restored"));
            }
        }
    }
    Ok(Verdict { allowed, outcomes })
}

async fn lease_call(
    client: &common::HttpClient,
    base: &str,
    request: &LeaseRequest,
) -> Result<LeaseReply, String> {
    let (status, raw) = common::send(
        client,
        "POST",
        &format!("{base}/v1/lease"),
        request.to_json(),
    )
    .await;
    if status != 200 {
        return Err(format!(
            "the lease API answered {status}: {}",
            String::from_utf8_lossy(&raw)
        ));
    }
    LeaseReply::parse(&raw, request).map_err(|e| e.to_string())
}
