//! Every shared vector in `vectors/` through the global path: the policy evaluates the request
//! as the filter does, the checks go to the service's decide API over HTTP, the service decides
//! them over a real Redis, and the reply is rendered as the filter renders it. Decisions and
//! headers must be exactly those of the local path (`filters/policy/tests/vectors.rs`).
//!
//! Every rule of a vector is decided by the service here, whatever its scope: a vector's
//! results must not depend on where its counters live.

mod common;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sluice_core::{Check, Limiter, Nanos, Verdict};
use sluice_policy::global::{DecideReply, DecideRequest};
use sluice_policy::{Evaluation, Policy, Response};
use sluice_redis::{RedisConfig, RedisStore};
use sluice_redis_server::RedisServer;
use sluice_service::clock::ManualClock;
use sluice_service::store::{Decided, DecisionStore};
use sluice_vectors::{Vector, compare, load};

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
            Ok(vector) => run(&vector, &redis).await,
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

async fn run(vector: &Vector, redis: &RedisServer) -> Result<(), String> {
    let config = std::str::from_utf8(&vector.config).map_err(|e| e.to_string())?;
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
            let differences = compare(&response, &step.expect);
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
