//! sluice as a Cloudflare Worker: the filter's configuration, policy and core, with each
//! key's counter in a Durable Object.
//!
//! A request flows through [`handle`]: the policy (same JSON as the filter) says whether it is
//! exempt and which rules apply with which keys; rules with a `lease` are decided from the
//! isolate's slices of their keys' quotas where they can be ([`lease`], [`leased`]); a
//! remembered denial ([`negative_cache`]) answers at once; otherwise the limiter objects that
//! own the keys decide, or grant slices ([`gateway`], [`placement`], [`limiter_object`]); a
//! denial is answered by the worker, an allowed request goes to the origin ([`origin`]) and
//! gets the rate-limit headers on its response. A request a delay rule admits with a hold
//! waits in the isolate before it goes on ([`holding`]).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod config;
pub mod gateway;
pub mod holding;
pub mod in_flight;
pub mod isolate_clock;
pub mod keep_alive;
pub mod lease;
pub mod leased;
pub mod limiter_object;
pub mod negative_cache;
pub mod object_clock;
pub mod origin;
pub mod placement;
pub mod request_view;
pub mod stats;
pub mod test_hooks;

/// The messages between the worker and its objects (a crate of its own, so the fuzz targets
/// and native tests decode them exactly as the objects do).
pub use sluice_edge_protocol as protocol;

use std::time::Duration;

use sluice_core::time::ceil_secs;
use sluice_core::{Check, FailureMode, Mode, Status, Verdict};
use sluice_policy::{Policy, Response as Decision};
use worker::{Context, Env, Headers, Request, Response, Result, console_error, console_log, event};

use crate::gateway::{Commits, ObjectError, Objects};
use crate::holding::HoldEnd;
use crate::isolate_clock::IsolateClock;
use crate::lease::LeaseTerms;
use crate::origin::UpstreamMark;
use crate::test_hooks::TestHooks;

/// The Durable Object namespace binding of the limiter objects.
pub const LIMITER_BINDING: &str = "LIMITER";
/// The variable setting the limiter object timeout, in milliseconds.
pub const TIMEOUT_VARIABLE: &str = "SLUICE_OBJECT_TIMEOUT_MS";
/// The default limiter object timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> Result<Response> {
    handle(request, env, &ctx).await
}

/// Forwards to the origin; an unreachable origin is a 502 that says so (and a log line).
async fn pass(
    env: &Env,
    request: Request,
    hooks: &TestHooks,
    headers: &[(&str, String)],
    mark: UpstreamMark<'_>,
) -> Result<Response> {
    match origin::forward(env, request, hooks, headers, mark).await {
        Ok(response) => Ok(response),
        Err(error) => {
            console_error!("sluice: the origin could not be reached: {error}");
            Response::error(
                format!("sluice: the origin could not be reached: {error}\n"),
                502,
            )
        }
    }
}

/// The whole per-request path (`ctx` runs the leases' background work).
pub async fn handle(request: Request, env: Env, ctx: &Context) -> Result<Response> {
    let hooks = TestHooks::read(&env, &request);
    let clock = IsolateClock::observe(hooks.now);
    if hooks.inspect_held {
        return Response::ok(test_hooks::held_report());
    }
    let policy = match config::policy(&env) {
        Ok(policy) => policy,
        Err(error) => {
            console_error!("sluice: {error}");
            return Response::error(format!("sluice: {error}\n"), 500);
        }
    };
    let view = request_view::read(&request, &hooks);
    let evaluation = policy.evaluate(&view);
    let checks = evaluation.checks();
    let unmarked = UpstreamMark {
        header: policy
            .marks_requests()
            .then(|| policy.response().warning_header()),
        value: None,
    };
    if checks.is_empty() {
        return pass(&env, request, &hooks, &[], unmarked).await;
    }
    let now = clock.now();
    let namespace = match env.durable_object(LIMITER_BINDING) {
        Ok(namespace) => namespace,
        Err(error) => {
            let message = format!(
                "sluice: no Durable Object binding {LIMITER_BINDING} (class SluiceLimiter, see \
                 wrangler.toml): {error}"
            );
            console_error!("{message}");
            return Response::error(format!("{message}\n"), 500);
        }
    };
    let objects = Objects {
        namespace,
        timeout: timeout(&env),
        test_now: hooks.now,
        fault: hooks.fault.clone(),
    };
    if hooks.inspect_rows {
        let rows: Vec<String> = gateway::rows(&objects, checks)
            .await
            .into_iter()
            .map(|r| match r {
                Ok(rows) => serde_json::to_string(&rows).unwrap_or_default(),
                Err(error) => serde_json::to_string(&error.to_string()).unwrap_or_default(),
            })
            .collect();
        return Response::ok(format!("[{}]", rows.join(",")));
    }

    let terms: Vec<Option<LeaseTerms>> = evaluation
        .rule_indices()
        .iter()
        .map(|&index| policy.rules().get(index).and_then(LeaseTerms::of))
        .collect();
    stats::count(&stats::REQUESTS, 1);
    let RequestDecision {
        mut verdict,
        mut object_calls,
        cache_hit,
        committed_at,
    } = decide(&objects, ctx, &policy, checks, &terms, now, clock).await;
    let hold = if verdict.delay() > 0 {
        let (hold, calls) =
            holding::hold_or_refuse(&policy, &objects, checks, &mut verdict, &committed_at, now)
                .await;
        object_calls = object_calls.saturating_add(calls);
        hold
    } else {
        None
    };
    log_shadow_denials(&policy, checks, &verdict, evaluation.rule_indices());
    let decision = policy.respond(checks, &verdict);
    if decision.warning().is_some() {
        // Counted before the debug headers read the counters.
        let marks = checks
            .iter()
            .zip(&verdict.outcomes)
            .zip(evaluation.rule_indices())
            .filter(|((check, outcome), index)| {
                let warn_at = policy.rules().get(**index).and_then(|rule| rule.warn_at());
                sluice_policy::warning::reason(check, outcome, warn_at).is_some()
            })
            .count();
        stats::count(&stats::MARKED, marks as u64);
    }

    let debug: Vec<(&str, String)> = if hooks.enabled {
        vec![
            (test_hooks::OBJECT_CALLS_HEADER, object_calls.to_string()),
            (
                test_hooks::CACHE_HEADER,
                if cache_hit { "hit" } else { "miss" }.to_owned(),
            ),
            (
                test_hooks::FAILURES_HEADER,
                stats::object_failures().to_string(),
            ),
            (test_hooks::STATS_HEADER, stats::summary()),
        ]
    } else {
        Vec::new()
    };

    match decision {
        Decision::Pass { headers, warning } => {
            let mut headers: Vec<(&str, String)> = headers;
            let mut mark = unmarked;
            if let Some(warning) = &warning {
                headers.push((warning.name, warning.value.clone()));
                mark.value = Some(&warning.value);
            }
            headers.extend(debug);
            if let Some(hold) = hold {
                let client = holding::client_signal(&request);
                if hold.wait(ctx, clock, client.as_ref()).await == HoldEnd::ClientGone {
                    hold.abandon(ctx, &objects, now);
                    return Response::error(
                        "sluice: the client left while its request was held\n",
                        499,
                    );
                }
            }
            // The slots the request took go back once its forward has ended, whatever the
            // origin did and even if the client left meanwhile.
            let forwarding = in_flight::forwarding(Commits::slots(checks, &committed_at));
            let alive = forwarding.is_some().then(|| keep_alive::start(ctx));
            let response = pass(&env, request, &hooks, &headers, mark).await;
            if let Some(forwarded) = forwarding {
                in_flight::release(ctx, &objects, forwarded, clock);
            }
            drop(alive);
            response
        }
        Decision::Deny {
            status,
            body,
            content_type,
            headers,
        } => {
            let out = Headers::new();
            out.set("content-type", content_type)?;
            for (name, value) in headers.iter().chain(&debug) {
                out.append(name, value)?;
            }
            Ok(Response::from_bytes(body.as_bytes().to_vec())?
                .with_status(status)
                .with_headers(out))
        }
    }
}

/// What deciding a request's checks gave.
struct RequestDecision {
    verdict: Verdict,
    /// Object calls the request waited for.
    object_calls: u32,
    /// Whether the negative cache answered.
    cache_hit: bool,
    /// Per check: when its object committed it (see `gateway::Decided::committed_at`).
    committed_at: Vec<Option<sluice_core::Nanos>>,
}

/// Decides `checks` at `now`: through slices and objects when a rule has a lease (`terms`),
/// else from the negative cache or the objects.
#[allow(
    clippy::too_many_arguments,
    reason = "the request's parts, passed once"
)]
async fn decide(
    objects: &Objects,
    ctx: &Context,
    policy: &Policy,
    checks: &[Check<'_>],
    terms: &[Option<LeaseTerms>],
    now: sluice_core::Nanos,
    clock: IsolateClock,
) -> RequestDecision {
    // An injected object failure stands for a store that fails on every read, as the shared
    // vectors' `store_fails` steps mean it; the remembered denials are such reads. (A real
    // outage leaves the cache answering: a remembered denial needs no object.)
    let objects_fail = objects.fault.as_ref().is_some_and(|fault| fault.fail);
    if terms.iter().any(Option::is_some) {
        // No delay rule beside leased rules at the edge (the configuration refuses it), so
        // nothing decided here is held; its concurrency slots are released as any.
        let decided = leased::decide(objects, ctx, checks, terms, now, clock, !objects_fail).await;
        log_failures(policy, checks, &decided.failures);
        return RequestDecision {
            verdict: decided.verdict,
            object_calls: decided.object_calls,
            cache_hit: decided.cache_hit,
            committed_at: decided.committed_at,
        };
    }
    let cached = if objects_fail {
        None
    } else {
        negative_cache::with(|cache| cache.lookup(checks, now))
    };
    if let Some(verdict) = cached {
        stats::count(&stats::NEGATIVE_CACHE, 1);
        return RequestDecision {
            verdict,
            object_calls: 0,
            cache_hit: true,
            committed_at: vec![None; checks.len()],
        };
    }
    let in_flight = negative_cache::with(|cache| cache.begin(checks));
    let decided = gateway::decide(objects, checks, now).await;
    log_failures(policy, checks, &decided.failures);
    negative_cache::with(|cache| {
        cache.finish(in_flight, checks, &decided.verdict, &decided.seen, now);
    });
    RequestDecision {
        verdict: decided.verdict,
        object_calls: decided.object_calls,
        cache_hit: false,
        committed_at: decided.committed_at,
    }
}

fn timeout(env: &Env) -> Duration {
    env.var(TIMEOUT_VARIABLE)
        .ok()
        .and_then(|v| v.to_string().trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
}

/// One line per rule whose object call failed: what failed and what the failure mode did.
fn log_failures(policy: &Policy, checks: &[Check<'_>], failures: &[(Vec<usize>, ObjectError)]) {
    for (indices, error) in failures {
        for &index in indices {
            let Some(check) = checks.get(index) else {
                continue;
            };
            let Some(rule) = policy.rule_of_check(check.rule) else {
                continue;
            };
            let what = match (check.failure_mode, check.mode) {
                (FailureMode::Open, _) => "failing open, the rule did not count the request",
                (FailureMode::Closed, Mode::Enforce) => "failing closed, the request was denied",
                (FailureMode::Closed, Mode::Shadow) => {
                    "failing closed in shadow mode, the request passed"
                }
                (FailureMode::Closed, Mode::Soft) => {
                    "failing closed in soft mode, the request passed"
                }
            };
            console_error!(
                "sluice: rule \"{}\": counter store failed for key {}: {error}; {what} ({} limiter object failures in this isolate)",
                check.rule,
                rule.key().display(&check.key),
                stats::object_failures()
            );
        }
    }
}

/// One line per shadow rule that would have denied and per soft rule over its limit, as the
/// filter logs them.
fn log_shadow_denials(policy: &Policy, checks: &[Check<'_>], verdict: &Verdict, indices: &[usize]) {
    for ((check, outcome), &index) in checks.iter().zip(&verdict.outcomes).zip(indices) {
        if outcome.status != Status::ShadowDenied || outcome.store_error.is_some() {
            continue;
        }
        let Some(rule) = policy.rules().get(index) else {
            continue;
        };
        if check.mode == Mode::Soft {
            console_log!(
                "sluice: rule \"{}\" (soft) is over its limit for key {}; retry after {}s; the request passed, marked",
                check.rule,
                rule.key().display(&check.key),
                ceil_secs(outcome.decision.retry_after).max(1)
            );
            continue;
        }
        console_log!(
            "sluice: rule \"{}\" (shadow) would deny key {}; retry after {}s; the request passed",
            check.rule,
            rule.key().display(&check.key),
            ceil_secs(outcome.decision.retry_after).max(1)
        );
    }
}
