//! Deciding a request's checks with the limiter objects that own them.
//!
//! Checks are grouped by object (`placement`); each object gets one decide call, all in
//! parallel, and decides its share all or nothing. If every share is allowed the request is,
//! and nothing more happens: one round trip (to each object involved, concurrently). If a share
//! is denied (or fails closed) while other objects committed theirs, those objects get a refund
//! call, as the core refunds rules already written when a later one fails: the request spends
//! nothing anywhere unless it passes everywhere. Refunds are best-effort, like the core's.
//!
//! A call that errors, answers something other than a decide answer, or does not answer within
//! the timeout gives each of that object's checks its rule's failure mode (via
//! `Limiter::decide_all` with no state, as a failing store does in the core), is counted, and
//! is logged once per rule.
//!
//! Every answer carries the states the object holds after it, with their version; what the
//! request saw last of each key (after its refund, if it sent one) is returned in
//! [`Decided::seen`] for the negative cache. A key whose object call failed, or whose refund
//! failed, is unknown: the object may or may not have applied the call.

use std::fmt;
use std::time::Duration;

use futures_util::future::{Either, join_all, select};
use sluice_core::{Check, Limiter, Nanos, RuleOutcome, State, Status, Verdict};
use worker::wasm_bindgen::JsValue;
use worker::{Delay, Method, ObjectNamespace, Request, RequestInit, Response};

use crate::protocol::{
    DECIDE_PATH, DecideRequest, DecideResponse, ObjectVersion, REFUND_PATH, ROWS_PATH,
    RefundRequest, RefundResponse, RowsRequest, RowsResponse, WireCheck, WireFault,
    state_from_wire,
};
use crate::{placement, stats};

/// Why a call to a limiter object gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectError {
    /// The runtime could not reach the object (or the call threw).
    Call(String),
    /// The object answered with an error status.
    Status(u16, String),
    /// No answer within the timeout.
    Timeout(Duration),
    /// The answer is not a decide answer for these checks.
    BadAnswer(String),
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectError::Call(error) => write!(f, "the limiter object call failed: {error}"),
            ObjectError::Status(status, body) => {
                write!(f, "the limiter object answered {status}: {}", body.trim())
            }
            ObjectError::Timeout(timeout) => write!(
                f,
                "the limiter object did not answer within {} ms (SLUICE_OBJECT_TIMEOUT_MS)",
                timeout.as_millis()
            ),
            ObjectError::BadAnswer(error) => {
                write!(f, "the limiter object's answer is unusable: {error}")
            }
        }
    }
}

/// How the worker calls its objects.
#[derive(Debug)]
pub struct Objects<'a> {
    /// The `LIMITER` namespace.
    pub namespace: &'a ObjectNamespace,
    /// How long a decide call may take before the failure modes apply.
    pub timeout: Duration,
    /// The test clock, passed on to the objects (honoured only with the hooks enabled).
    pub test_now: Option<u64>,
    /// Injected faults (tests only).
    pub fault: Option<WireFault>,
}

/// What deciding a request took.
#[derive(Debug)]
pub struct Decided {
    /// The verdict on the checks, in their order.
    pub verdict: Verdict,
    /// Object calls made (decides and refunds).
    pub object_calls: u32,
    /// Each failed object call: the indices of its checks and what went wrong.
    pub failures: Vec<(Vec<usize>, ObjectError)>,
    /// Per check: the key's state as its object last reported it to this request (`None`:
    /// unknown).
    pub seen: Vec<Option<Seen>>,
}

/// A key's state as its object reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The state (`None`: the object holds no state for the key).
    pub state: Option<State>,
    /// The version of the object's states it belongs to.
    pub version: ObjectVersion,
}

/// The states of an answer as [`Seen`]s; `None` for a state that does not decode.
fn seen_states(states: &[Option<String>], version: ObjectVersion) -> Vec<Option<Seen>> {
    states
        .iter()
        .map(|wire| {
            let state = match wire {
                Some(wire) => Some(state_from_wire(wire)?),
                None => None,
            };
            Some(Seen { state, version })
        })
        .collect()
}

async fn call<T: serde::de::DeserializeOwned>(
    namespace: &ObjectNamespace,
    object: &str,
    path: &str,
    body: String,
    timeout: Duration,
) -> Result<T, ObjectError> {
    let attempt = async {
        let stub = namespace
            .get_by_name(object)
            .map_err(|e| ObjectError::Call(e.to_string()))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body)));
        let request = Request::new_with_init(&format!("https://limiter{path}"), &init)
            .map_err(|e| ObjectError::Call(e.to_string()))?;
        let mut response: Response = stub
            .fetch_with_request(request)
            .await
            .map_err(|e| ObjectError::Call(e.to_string()))?;
        let status = response.status_code();
        if status != 200 {
            let text = response.text().await.unwrap_or_default();
            return Err(ObjectError::Status(status, text));
        }
        let text = response
            .text()
            .await
            .map_err(|e| ObjectError::BadAnswer(e.to_string()))?;
        serde_json::from_str::<T>(&text).map_err(|e| ObjectError::BadAnswer(e.to_string()))
    };
    match select(Box::pin(attempt), Box::pin(Delay::from(timeout))).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(ObjectError::Timeout(timeout)),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ObjectError> {
    serde_json::to_string(value).map_err(|e| ObjectError::Call(e.to_string()))
}

async fn decide_share(
    objects: &Objects<'_>,
    object: &str,
    checks: &[&Check<'_>],
) -> Result<DecideResponse, ObjectError> {
    let body = to_json(&DecideRequest {
        checks: checks.iter().map(|c| WireCheck::from_check(c)).collect(),
        now: objects.test_now,
        fault: objects.fault.clone(),
    })?;
    let answer: DecideResponse = call(
        objects.namespace,
        object,
        DECIDE_PATH,
        body,
        objects.timeout,
    )
    .await?;
    if answer.outcomes.len() != checks.len()
        || answer.committed.len() != checks.len()
        || answer.states.len() != checks.len()
    {
        return Err(ObjectError::BadAnswer(format!(
            "{} outcomes and {} states for {} checks",
            answer.outcomes.len(),
            answer.states.len(),
            checks.len()
        )));
    }
    Ok(answer)
}

/// Decides `checks` at `now` with their objects.
pub async fn decide(objects: &Objects<'_>, checks: &[Check<'_>], now: Nanos) -> Decided {
    let groups = placement::group(checks);
    let shares: Vec<Vec<&Check<'_>>> = groups
        .iter()
        .map(|(_, indices)| indices.iter().filter_map(|&i| checks.get(i)).collect())
        .collect();
    let answers = join_all(
        groups
            .iter()
            .zip(&shares)
            .map(|((object, _), share)| decide_share(objects, object, share)),
    )
    .await;
    let mut object_calls = u32::try_from(groups.len()).unwrap_or(u32::MAX);

    let mut outcomes: Vec<Option<RuleOutcome>> = vec![None; checks.len()];
    let mut seen: Vec<Option<Seen>> = vec![None; checks.len()];
    let mut failures = Vec::new();
    for (((_, indices), share), answer) in groups.iter().zip(&shares).zip(&answers) {
        match answer {
            Ok(answer) => {
                let states = seen_states(&answer.states, answer.version);
                for (&index, state) in indices.iter().zip(states) {
                    if let Some(slot) = seen.get_mut(index) {
                        *slot = state;
                    }
                }
                for (&index, wire) in indices.iter().zip(&answer.outcomes) {
                    if let Some(slot) = outcomes.get_mut(index) {
                        *slot = Some(RuleOutcome {
                            status: wire.status(),
                            decision: wire.decision(),
                            cas_retries: 0,
                            store_error: None,
                        });
                    }
                }
            }
            Err(error) => {
                let owned: Vec<Check<'_>> = share.iter().map(|c| (*c).clone()).collect();
                let failed = Limiter::decide_all(&owned, &mut [], now);
                for (&index, outcome) in indices.iter().zip(failed.outcomes) {
                    if let Some(slot) = outcomes.get_mut(index) {
                        *slot = Some(outcome);
                    }
                }
                stats::object_failed();
                failures.push((indices.clone(), error.clone()));
            }
        }
    }
    let outcomes: Vec<RuleOutcome> = outcomes.into_iter().flatten().collect();
    let allowed = !outcomes
        .iter()
        .any(|o| matches!(o.status, Status::Denied | Status::FailedClosed));

    if !allowed {
        let refunds = groups
            .iter()
            .zip(&shares)
            .zip(&answers)
            .filter_map(|(((object, indices), share), answer)| {
                let answer = answer.as_ref().ok()?;
                let (refunded, committed): (Vec<usize>, Vec<WireCheck>) = indices
                    .iter()
                    .zip(share)
                    .zip(&answer.committed)
                    .filter(|(_, committed)| **committed)
                    .map(|((&index, check), _)| (index, WireCheck::from_check(check)))
                    .unzip();
                if committed.is_empty() {
                    return None;
                }
                let body = to_json(&RefundRequest {
                    checks: committed,
                    committed_at: answer.now,
                });
                Some(async move {
                    let result: Result<RefundResponse, ObjectError> = match body {
                        Ok(body) => {
                            call(objects.namespace, object, REFUND_PATH, body, objects.timeout)
                                .await
                        }
                        Err(error) => Err(error),
                    };
                    let result = result.and_then(|answer| {
                        if answer.states.len() == refunded.len() {
                            Ok(answer)
                        } else {
                            Err(ObjectError::BadAnswer(format!(
                                "{} states for {} refunded checks",
                                answer.states.len(),
                                refunded.len()
                            )))
                        }
                    });
                    if let Err(error) = &result {
                        worker::console_error!(
                            "sluice: refund to limiter object {object} failed, its units stay spent: {error}"
                        );
                    }
                    (refunded, result)
                })
            })
            .collect::<Vec<_>>();
        object_calls = object_calls.saturating_add(u32::try_from(refunds.len()).unwrap_or(0));
        for (refunded, result) in join_all(refunds).await {
            let states = match result {
                Ok(answer) => seen_states(&answer.states, answer.version),
                // The refund may or may not have been applied.
                Err(_) => vec![None; refunded.len()],
            };
            for (index, state) in refunded.into_iter().zip(states) {
                if let Some(slot) = seen.get_mut(index) {
                    *slot = state;
                }
            }
        }
    }
    Decided {
        verdict: Verdict { allowed, outcomes },
        object_calls,
        failures,
        seen,
    }
}

/// Test-only: the stored key counts of the objects owning `checks`.
pub async fn rows(
    objects: &Objects<'_>,
    checks: &[Check<'_>],
) -> Vec<Result<RowsResponse, ObjectError>> {
    let groups = placement::group(checks);
    let body = to_json(&RowsRequest {
        now: objects.test_now,
    });
    join_all(groups.iter().map(|(object, _)| {
        let body = body.clone();
        async move {
            call::<RowsResponse>(objects.namespace, object, ROWS_PATH, body?, objects.timeout).await
        }
    }))
    .await
}
