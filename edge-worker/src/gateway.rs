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
use sluice_core::{
    Algorithm, Check, Decision, Limit, Limiter, Nanos, RuleOutcome, State, Status, Verdict,
};
use worker::wasm_bindgen::JsValue;
use worker::{Delay, Method, ObjectNamespace, Request, RequestInit, Response};

use crate::lease::Returning;
use crate::protocol::{
    DECIDE_PATH, DecideRequest, DecideResponse, LEASE_PATH, LeaseRequest, LeaseResponse,
    MAX_LEASE_ITEMS, ObjectVersion, REFUND_PATH, RELEASE_PATH, ROWS_PATH, RefundRequest,
    RefundResponse, ReleaseRequest, ReleaseResponse, RowsRequest, RowsResponse, WireAcquire,
    WireCheck, WireFault, WireOutcome, WireReturn, state_from_wire,
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
#[derive(Debug, Clone)]
pub struct Objects {
    /// The `LIMITER` namespace.
    pub namespace: ObjectNamespace,
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
    /// Per check: the slice granted for it, if it acquired one.
    pub grants: Vec<Option<Granted>>,
    /// Returns carried by the request's calls, with the key's state after them.
    pub returned: Vec<(Returning, Seen)>,
    /// Returns for objects the request did not call (send them in the background).
    pub returns_left: Vec<Returning>,
    /// Per check: the object's time when it committed the check's spend for this request (a
    /// direct decision that wrote a spend and was not refunded), which giving it back later
    /// must quote (see [`Commits`]). All `None` when the request was denied.
    pub committed_at: Vec<Option<Nanos>>,
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
    let text = call_text(namespace, object, path, body, timeout).await?;
    serde_json::from_str::<T>(&text).map_err(|e| ObjectError::BadAnswer(e.to_string()))
}

/// One call to an object: the text of its 200 answer. Every call counts in the isolate's
/// stats.
async fn call_text(
    namespace: &ObjectNamespace,
    object: &str,
    path: &str,
    body: String,
    timeout: Duration,
) -> Result<String, ObjectError> {
    stats::count(&stats::OBJECT_CALLS, 1);
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
        response
            .text()
            .await
            .map_err(|e| ObjectError::BadAnswer(e.to_string()))
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
    objects: &Objects,
    object: &str,
    checks: &[&Check<'_>],
) -> Result<DecideResponse, ObjectError> {
    let body = to_json(&DecideRequest {
        checks: checks.iter().map(|c| WireCheck::from_check(c)).collect(),
        now: objects.test_now,
        fault: objects.fault.clone(),
    })?;
    let answer: DecideResponse = call(
        &objects.namespace,
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

/// How a check sent to the objects is decided there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// As one rule of the request, as a decide call decides it.
    Direct,
    /// From a slice asked for in the same call: at least the check's cost, at most `want`
    /// units. `hold`: if the request ends up denied, the units the request would have spent
    /// stay with the isolate's slice; otherwise they go back to the object in the refund
    /// round, as a direct commit does.
    Acquire {
        /// The most units asked for.
        want: u64,
        /// Whether the isolate keeps the request's units when it is denied.
        hold: bool,
    },
}

/// A slice granted for a check of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Units granted (at least the check's cost).
    pub units: u64,
    /// The object's clock when it granted them.
    pub granted_at: Nanos,
    /// The grant's decision.
    pub decision: Decision,
    /// Whether the request's units went back to the object (denied, not held).
    pub returned: bool,
}

/// An object's answer about one share of a request, in the share's order, whichever call
/// it came from.
#[derive(Debug)]
struct ShareAnswer {
    now: u64,
    committed: Vec<bool>,
    outcomes: Vec<WireOutcome>,
    states: Vec<Option<String>>,
    granted: Vec<Option<u64>>,
    returned: Vec<Option<String>>,
    version: ObjectVersion,
}

/// One share: a decide call, or a lease call when it acquires or carries returns.
async fn ask_share(
    objects: &Objects,
    object: &str,
    checks: &[&Check<'_>],
    plans: &[Plan],
    returns: &[Returning],
) -> Result<ShareAnswer, ObjectError> {
    let leased = !returns.is_empty() || plans.iter().any(|p| matches!(p, Plan::Acquire { .. }));
    if !leased {
        let answer = decide_share(objects, object, checks).await?;
        return Ok(ShareAnswer {
            now: answer.now,
            granted: vec![None; answer.outcomes.len()],
            committed: answer.committed,
            outcomes: answer.outcomes,
            states: answer.states,
            returned: Vec::new(),
            version: answer.version,
        });
    }
    let mut request = LeaseRequest::new();
    request.now = objects.test_now;
    request.fault = objects.fault.clone();
    request.returns = returns
        .iter()
        .map(|r| WireReturn {
            check: r.wire_check(),
            granted_at: r.granted_at,
        })
        .collect();
    for (check, plan) in checks.iter().zip(plans) {
        match plan {
            Plan::Direct => request.checks.push(WireCheck::from_check(check)),
            Plan::Acquire { want, .. } => request.acquire.push(WireAcquire {
                check: WireCheck::from_check(check),
                want: *want,
            }),
        }
    }
    let answer = lease_call(objects, object, &request).await?;
    let mut direct = answer
        .outcomes
        .iter()
        .zip(answer.committed.iter().zip(&answer.states));
    let mut acquired = answer.acquired.iter();
    let mut share = ShareAnswer {
        now: answer.now,
        committed: Vec::with_capacity(checks.len()),
        outcomes: Vec::with_capacity(checks.len()),
        states: Vec::with_capacity(checks.len()),
        granted: Vec::with_capacity(checks.len()),
        returned: answer.returned.clone(),
        version: answer.version,
    };
    for plan in plans {
        match plan {
            Plan::Direct => {
                let (outcome, (committed, state)) = direct.next().ok_or_else(|| {
                    ObjectError::BadAnswer("fewer outcomes than checks".to_owned())
                })?;
                share.outcomes.push(*outcome);
                share.committed.push(*committed);
                share.states.push(state.clone());
                share.granted.push(None);
            }
            Plan::Acquire { .. } => {
                let grant = acquired.next().ok_or_else(|| {
                    ObjectError::BadAnswer("fewer grants than acquisitions".to_owned())
                })?;
                share.outcomes.push(grant.outcome);
                share.committed.push(false);
                share.states.push(grant.state.clone());
                share.granted.push(Some(grant.granted));
            }
        }
    }
    Ok(share)
}

/// A lease call to `object`, its answer checked against the call.
pub async fn lease_call(
    objects: &Objects,
    object: &str,
    request: &LeaseRequest,
) -> Result<LeaseResponse, ObjectError> {
    request
        .validate()
        .map_err(|e| ObjectError::Call(format!("the lease call is invalid: {e}")))?;
    let body = to_json(request)?;
    let text = call_text(
        &objects.namespace,
        object,
        LEASE_PATH,
        body,
        objects.timeout,
    )
    .await?;
    LeaseResponse::parse(text.as_bytes(), request)
        .map_err(|e| ObjectError::BadAnswer(e.to_string()))
}

/// Decides `checks` at `now` with their objects.
pub async fn decide(objects: &Objects, checks: &[Check<'_>], now: Nanos) -> Decided {
    decide_planned(
        objects,
        checks,
        &vec![Plan::Direct; checks.len()],
        Vec::new(),
        now,
    )
    .await
}

/// Decides `checks` at `now` with their objects, each as `plans` says (one call per object
/// either way), and hands the objects the `returns` that go to objects the request calls;
/// the others are given back in [`Decided::returns_left`].
pub async fn decide_planned(
    objects: &Objects,
    checks: &[Check<'_>],
    plans: &[Plan],
    returns: Vec<Returning>,
    now: Nanos,
) -> Decided {
    let groups = placement::group(checks);
    let shares: Vec<Vec<&Check<'_>>> = groups
        .iter()
        .map(|(_, indices)| indices.iter().filter_map(|&i| checks.get(i)).collect())
        .collect();
    let share_plans: Vec<Vec<Plan>> = groups
        .iter()
        .map(|(_, indices)| {
            indices
                .iter()
                .map(|&i| plans.get(i).copied().unwrap_or(Plan::Direct))
                .collect()
        })
        .collect();
    // Returns ride with the call to their object, as many as fit in it.
    let mut carried: Vec<Vec<Returning>> = vec![Vec::new(); groups.len()];
    let mut returns_left = Vec::new();
    for item in returns {
        let object = placement::object_for_key(&item.key);
        match groups.iter().position(|(name, _)| *name == object) {
            Some(at)
                if shares.get(at).map_or(0, Vec::len) + carried.get(at).map_or(0, Vec::len)
                    < MAX_LEASE_ITEMS =>
            {
                if let Some(list) = carried.get_mut(at) {
                    list.push(item);
                }
            }
            _ => returns_left.push(item),
        }
    }
    let answers = join_all(
        groups
            .iter()
            .zip(&shares)
            .zip(&share_plans)
            .zip(&carried)
            .map(|((((object, _), share), plans), returns)| {
                ask_share(objects, object, share, plans, returns)
            }),
    )
    .await;
    let mut object_calls = u32::try_from(groups.len()).unwrap_or(u32::MAX);

    let mut outcomes: Vec<Option<RuleOutcome>> = vec![None; checks.len()];
    let mut seen: Vec<Option<Seen>> = vec![None; checks.len()];
    let mut grants: Vec<Option<Granted>> = vec![None; checks.len()];
    let mut committed_at: Vec<Option<Nanos>> = vec![None; checks.len()];
    let mut returned = Vec::new();
    let mut failures = Vec::new();
    for (((((_, indices), share), plans), answer), returns) in groups
        .iter()
        .zip(&shares)
        .zip(&share_plans)
        .zip(&answers)
        .zip(carried)
    {
        match answer {
            Ok(answer) => {
                for ((&index, plan), committed) in indices.iter().zip(plans).zip(&answer.committed)
                {
                    if *plan == Plan::Direct
                        && *committed
                        && let Some(slot) = committed_at.get_mut(index)
                    {
                        *slot = Some(answer.now);
                    }
                }
                let states = seen_states(&answer.states, answer.version);
                for (&index, state) in indices.iter().zip(states) {
                    if let Some(slot) = seen.get_mut(index) {
                        *slot = state;
                    }
                }
                for (&index, (wire, granted)) in indices
                    .iter()
                    .zip(answer.outcomes.iter().zip(&answer.granted))
                {
                    if let Some(slot) = outcomes.get_mut(index) {
                        *slot = Some(RuleOutcome {
                            status: wire.status(),
                            decision: wire.decision(),
                            cas_retries: 0,
                            store_error: None,
                        });
                    }
                    if let (Some(units), Some(slot)) =
                        (granted.filter(|g| *g > 0), grants.get_mut(index))
                    {
                        *slot = Some(Granted {
                            units,
                            granted_at: answer.now,
                            decision: wire.decision(),
                            returned: false,
                        });
                    }
                }
                let states = seen_states(&answer.returned, answer.version);
                returned.extend(
                    returns
                        .into_iter()
                        .zip(states)
                        .filter_map(|(item, seen)| Some((item, seen?))),
                );
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
                // Returns the object may or may not have applied are not sent again: at
                // worst their units stay spent (never counted back twice).
            }
        }
    }
    let outcomes: Vec<RuleOutcome> = outcomes.into_iter().flatten().collect();
    let allowed = !outcomes
        .iter()
        .any(|o| matches!(o.status, Status::Denied | Status::FailedClosed));

    if !allowed {
        committed_at.fill(None);
        let refunds = groups
            .iter()
            .zip(&shares)
            .zip(&share_plans)
            .zip(&answers)
            .filter_map(|((((object, indices), share), plans), answer)| {
                let answer = answer.as_ref().ok()?;
                // What this object committed for the request: direct spends, and the
                // request's units of slices that are not held.
                let mut given: Vec<(usize, WireCheck, bool)> = Vec::new();
                for (((&index, check), plan), (committed, granted)) in indices
                    .iter()
                    .zip(share)
                    .zip(plans)
                    .zip(answer.committed.iter().zip(&answer.granted))
                {
                    match plan {
                        Plan::Direct if *committed => {
                            given.push((index, WireCheck::from_check(check), false));
                        }
                        Plan::Acquire { hold: false, .. }
                            if granted.is_some_and(|g| g > 0) && check.cost > 0 =>
                        {
                            given.push((index, WireCheck::from_check(check), true));
                        }
                        _ => {}
                    }
                }
                if given.is_empty() {
                    return None;
                }
                let committed_at = answer.now;
                Some(async move {
                    let (indices, result) = give_back(objects, object, given, committed_at).await;
                    if let Err(error) = &result {
                        worker::console_error!(
                            "sluice: refund to limiter object {object} failed, its units stay spent: {error}"
                        );
                    }
                    (indices, result)
                })
            })
            .collect::<Vec<_>>();
        object_calls = object_calls.saturating_add(u32::try_from(refunds.len()).unwrap_or(0));
        for (given, result) in join_all(refunds).await {
            let states = match result {
                Ok(states) => states,
                // The refund may or may not have been applied.
                Err(_) => vec![None; given.len()],
            };
            for ((index, slice), state) in given.into_iter().zip(states) {
                if let Some(slot) = seen.get_mut(index) {
                    *slot = state;
                }
                if slice && let Some(Some(granted)) = grants.get_mut(index) {
                    granted.returned = true;
                }
            }
        }
    }
    Decided {
        verdict: Verdict { allowed, outcomes },
        object_calls,
        failures,
        seen,
        grants,
        returned,
        returns_left,
        committed_at,
    }
}

/// What an allowed request committed in its objects, owned, so it can be given back after the
/// request's decision (a held request that cannot be held, or whose client left): per
/// object, the object's time of the commit and the checks it committed.
#[derive(Debug, Clone, Default)]
pub struct Commits {
    shares: Vec<CommittedShare>,
}

#[derive(Debug, Clone)]
struct CommittedShare {
    object: String,
    committed_at: Nanos,
    checks: Vec<CommittedCheck>,
}

/// One committed check, with what the negative cache needs to learn its state afterwards.
#[derive(Debug, Clone)]
pub struct CommittedCheck {
    /// The check as the object decided it.
    pub wire: WireCheck,
    /// The check's rule (limit) name.
    pub rule: String,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The limit it was decided with.
    pub limit: Limit,
}

impl Commits {
    /// The commits of `checks`, by [`Decided::committed_at`].
    pub fn of(checks: &[Check<'_>], committed_at: &[Option<Nanos>]) -> Commits {
        Commits::matching(checks, committed_at, |_| true)
    }

    /// The concurrency slots `checks` took, by [`Decided::committed_at`].
    pub fn slots(checks: &[Check<'_>], committed_at: &[Option<Nanos>]) -> Commits {
        Commits::matching(checks, committed_at, |check| {
            check.limit.algorithm == Algorithm::Concurrency
        })
    }

    fn matching(
        checks: &[Check<'_>],
        committed_at: &[Option<Nanos>],
        wanted: impl Fn(&Check<'_>) -> bool,
    ) -> Commits {
        let mut shares: Vec<CommittedShare> = Vec::new();
        for (check, at) in checks.iter().zip(committed_at) {
            let Some(at) = *at else { continue };
            if !wanted(check) {
                continue;
            }
            let object = placement::object_name(check);
            let committed = CommittedCheck {
                wire: WireCheck::from_check(check),
                rule: check.rule.to_owned(),
                key: check.key.clone(),
                limit: check.limit,
            };
            match shares
                .iter_mut()
                .find(|share| share.object == object && share.committed_at == at)
            {
                Some(share) => share.checks.push(committed),
                None => shares.push(CommittedShare {
                    object,
                    committed_at: at,
                    checks: vec![committed],
                }),
            }
        }
        Commits { shares }
    }

    /// Whether nothing was committed.
    pub fn is_empty(&self) -> bool {
        self.shares.is_empty()
    }
}

/// Gives back the concurrency slots in `slots` (see [`Commits::slots`]) of a request that has
/// ended, at `now` (a test clock; `None`: each object's own): one release call per object, in
/// parallel, best effort (a failed call is logged; its slots come back when they expire).
/// Returns each released check with its key's state after (`None`: unknown).
pub async fn release_slots(
    objects: &Objects,
    slots: Commits,
    now: Option<Nanos>,
) -> Vec<(CommittedCheck, Option<Seen>)> {
    let answers = join_all(slots.shares.iter().map(|share| async move {
        let body = to_json(&ReleaseRequest {
            checks: share
                .checks
                .iter()
                .map(|check| check.wire.clone())
                .collect(),
            taken_at: share.committed_at,
            now,
        })?;
        let answer: ReleaseResponse = call(
            &objects.namespace,
            &share.object,
            RELEASE_PATH,
            body,
            objects.timeout,
        )
        .await?;
        if answer.states.len() == share.checks.len() {
            Ok(seen_states(&answer.states, answer.version))
        } else {
            Err(ObjectError::BadAnswer(format!(
                "{} states for {} released checks",
                answer.states.len(),
                share.checks.len()
            )))
        }
    }))
    .await;
    let mut released = Vec::new();
    for (share, result) in slots.shares.into_iter().zip(answers) {
        let states = result.unwrap_or_else(|error: ObjectError| {
            stats::object_failed();
            worker::console_error!(
                "sluice: release to limiter object {} failed, its slots come back when they \
                 expire (concurrency.slot_ttl): {error}",
                share.object
            );
            vec![None; share.checks.len()]
        });
        released.extend(share.checks.into_iter().zip(states));
    }
    released
}

/// Gives `commits` back: one refund call per object, in parallel, best effort (a failed call
/// is logged and its units stay spent). Returns each refunded check with its key's state after
/// the refund (`None`: unknown, the call failed), and the calls made.
pub async fn refund_commits(
    objects: &Objects,
    commits: Commits,
) -> (Vec<(CommittedCheck, Option<Seen>)>, u32) {
    let calls = u32::try_from(commits.shares.len()).unwrap_or(u32::MAX);
    let answers = join_all(commits.shares.iter().map(|share| {
        let given = share
            .checks
            .iter()
            .enumerate()
            .map(|(index, check)| (index, check.wire.clone(), false))
            .collect();
        give_back(objects, &share.object, given, share.committed_at)
    }))
    .await;
    let mut refunded = Vec::new();
    for (share, (_, result)) in commits.shares.into_iter().zip(answers) {
        let states = match result {
            Ok(states) => states,
            Err(error) => {
                worker::console_error!(
                    "sluice: refund to limiter object {} failed, its units stay spent: {error}",
                    share.object
                );
                vec![None; share.checks.len()]
            }
        };
        refunded.extend(share.checks.into_iter().zip(states));
    }
    (refunded, calls)
}

/// The refund round's call to one object: `given` (index in the request, check, whether it
/// is a slice's units) back, committed at `committed_at`. A refund call, or a lease call of
/// returns when slice units are among them. Gives the indices (with the slice flag) and the
/// states after, per item.
async fn give_back(
    objects: &Objects,
    object: &str,
    given: Vec<(usize, WireCheck, bool)>,
    committed_at: u64,
) -> (Vec<(usize, bool)>, Result<Vec<Option<Seen>>, ObjectError>) {
    let indices: Vec<(usize, bool)> = given.iter().map(|(i, _, slice)| (*i, *slice)).collect();
    let checks: Vec<WireCheck> = given.into_iter().map(|(_, check, _)| check).collect();
    let count = checks.len();
    let result = if indices.iter().any(|(_, slice)| *slice) {
        let mut request = LeaseRequest::new();
        request.now = objects.test_now;
        request.returns = checks
            .into_iter()
            .map(|check| WireReturn {
                check,
                granted_at: committed_at,
            })
            .collect();
        lease_call(objects, object, &request)
            .await
            .map(|answer| seen_states(&answer.returned, answer.version))
    } else {
        match to_json(&RefundRequest {
            checks,
            committed_at,
        }) {
            Ok(body) => call::<RefundResponse>(
                &objects.namespace,
                object,
                REFUND_PATH,
                body,
                objects.timeout,
            )
            .await
            .and_then(|answer| {
                if answer.states.len() == count {
                    Ok(seen_states(&answer.states, answer.version))
                } else {
                    Err(ObjectError::BadAnswer(format!(
                        "{} states for {count} refunded checks",
                        answer.states.len(),
                    )))
                }
            }),
            Err(error) => Err(error),
        }
    };
    (indices, result)
}

/// Background lease calls: each object gets one call with its `renewals` (the check, with
/// the cost 1, and the units wanted) and `returns`. Gives, per renewal, the grant (`None`:
/// the call failed, or nothing was granted), and the returns whose answer is known.
pub async fn renew(
    objects: &Objects,
    renewals: Vec<(Check<'_>, u64)>,
    returns: Vec<Returning>,
) -> (Vec<Option<Granted>>, Vec<(Returning, Seen)>) {
    type Call = (String, LeaseRequest, Vec<usize>, Vec<Returning>);
    let mut calls: Vec<Call> = Vec::new();
    let slot = |calls: &mut Vec<Call>, object: String| -> usize {
        match calls.iter().position(|(name, ..)| *name == object) {
            Some(at) => at,
            None => {
                let mut request = LeaseRequest::new();
                request.now = objects.test_now;
                calls.push((object, request, Vec::new(), Vec::new()));
                calls.len() - 1
            }
        }
    };
    let mut granted = vec![None; renewals.len()];
    for (index, (check, want)) in renewals.iter().enumerate() {
        let at = slot(&mut calls, placement::object_name(check));
        if let Some((_, request, indices, _)) = calls.get_mut(at) {
            request.acquire.push(WireAcquire {
                check: WireCheck::from_check(check),
                want: *want,
            });
            indices.push(index);
        }
    }
    for item in returns {
        let at = slot(&mut calls, placement::object_for_key(&item.key));
        if let Some((_, request, _, carried)) = calls.get_mut(at) {
            request.returns.push(WireReturn {
                check: item.wire_check(),
                granted_at: item.granted_at,
            });
            carried.push(item);
        }
    }
    // A call holds at most MAX_LEASE_ITEMS items: split the larger ones.
    let mut split = Vec::with_capacity(calls.len());
    for (object, request, indices, carried) in calls {
        let mut acquire = request.acquire.into_iter().zip(indices).peekable();
        let mut give = request.returns.into_iter().zip(carried).peekable();
        while acquire.peek().is_some() || give.peek().is_some() {
            let mut part = LeaseRequest::new();
            part.now = request.now;
            let mut part_indices = Vec::new();
            let mut part_returns = Vec::new();
            while part.items() < MAX_LEASE_ITEMS {
                if let Some((item, index)) = acquire.next() {
                    part.acquire.push(item);
                    part_indices.push(index);
                } else if let Some((item, returning)) = give.next() {
                    part.returns.push(item);
                    part_returns.push(returning);
                } else {
                    break;
                }
            }
            split.push((object.clone(), part, part_indices, part_returns));
        }
    }
    let answers = join_all(
        split
            .iter()
            .map(|(object, request, ..)| lease_call(objects, object, request)),
    )
    .await;
    let mut returned = Vec::new();
    for ((object, _, indices, carried), answer) in split.into_iter().zip(answers) {
        match answer {
            Ok(answer) => {
                for (index, grant) in indices.into_iter().zip(&answer.acquired) {
                    if let Some(slot) = granted.get_mut(index)
                        && grant.granted > 0
                    {
                        *slot = Some(Granted {
                            units: grant.granted,
                            granted_at: answer.now,
                            decision: grant.outcome.decision(),
                            returned: false,
                        });
                    }
                }
                let states = seen_states(&answer.returned, answer.version);
                returned.extend(
                    carried
                        .into_iter()
                        .zip(states)
                        .filter_map(|(item, seen)| Some((item, seen?))),
                );
            }
            Err(error) => {
                stats::object_failed();
                worker::console_error!(
                    "sluice: lease call to limiter object {object} failed: {error}; renewals wait for the next request, returned units stay spent"
                );
            }
        }
    }
    (granted, returned)
}

/// Test-only: the stored key counts of the objects owning `checks`.
pub async fn rows(
    objects: &Objects,
    checks: &[Check<'_>],
) -> Vec<Result<RowsResponse, ObjectError>> {
    let groups = placement::group(checks);
    let body = to_json(&RowsRequest {
        now: objects.test_now,
    });
    join_all(groups.iter().map(|(object, _)| {
        let body = body.clone();
        async move {
            call::<RowsResponse>(
                &objects.namespace,
                object,
                ROWS_PATH,
                body?,
                objects.timeout,
            )
            .await
        }
    }))
    .await
}
