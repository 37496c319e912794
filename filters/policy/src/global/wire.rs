//! The native decide protocol between the filter and the rate-limit service: JSON both ways,
//! `POST /v1/decide`. The types are the protocol; both sides convert them to and from the
//! core's types here, so they cannot drift apart.
//!
//! ```
//! use sluice_core::{Algorithm, Check, FailureMode, Limit, Limiter, Mode, Quota, Status};
//! use sluice_policy::global::{DecideReply, DecideRequest};
//!
//! let limit = Limit::new(Algorithm::Gcra, Quota::new(100, 60_000_000_000, 100).unwrap());
//! let check = Check { rule: "per-client", limit, max_keys: 1024, key: b"203.0.113.7".to_vec(),
//!                     cost: 1, mode: Mode::Enforce, failure_mode: FailureMode::Open };
//! let request = DecideRequest::new("sluice", [&check]);
//! assert_eq!(
//!     String::from_utf8(request.to_json()).unwrap(),
//!     r#"{"domain":"sluice","checks":[{"rule":"per-client","key":"3230332e302e3131332e37","cost":1,"limit":"gcra:100/60000000000/100"}]}"#
//! );
//!
//! // The service decides (here in memory) and answers.
//! let verdict = Limiter::decide_all(&[check], &mut [None], 1_767_225_600_000_000_000);
//! let body = DecideReply::from_verdict(&verdict).to_json();
//! let reply = DecideReply::parse(&body, 1).unwrap();
//! assert_eq!(reply.outcomes[0].status, Status::Allowed);
//! assert_eq!(reply.rule_outcomes(), verdict.outcomes);
//! ```

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};
use sluice_core::{Check, Decision, RuleOutcome, Status, Verdict};

use super::{hex, limit_text};
use crate::policy::Policy;

/// The most checks in one decide request (each rule at most once).
pub const MAX_CHECKS: usize = 64;
/// The largest request or reply body either side accepts: 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A decide request: the global checks of one request to the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecideRequest {
    /// The configuration's domain (`global.domain`).
    pub domain: String,
    /// One per global rule that applies, in rule order.
    pub checks: Vec<DecideCheck>,
}

/// One rule to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecideCheck {
    /// The rule's name.
    pub rule: String,
    /// Lowercase hex of the rule's key bytes for the request.
    pub key: String,
    /// Units the request spends.
    pub cost: u64,
    /// The rule's limit as the proxy has it ([`limit_text`]).
    pub limit: String,
}

/// The service's answer: one outcome per check, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecideReply {
    /// No enforcing rule denied or failed closed (so the service committed every check).
    pub allowed: bool,
    /// One per check of the request, in its order.
    pub outcomes: Vec<DecideOutcome>,
}

/// One rule's outcome: the core's [`RuleOutcome`] status and [`Decision`] numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecideOutcome {
    /// `allowed`, `denied`, `shadow_denied`, `failed_open` or `failed_closed`.
    #[serde(with = "status_name")]
    pub status: Status,
    /// The quota's limit.
    pub limit: u64,
    /// Units left after this request.
    pub remaining: u64,
    /// Nanoseconds until the key is back to its full quota.
    pub reset_after_ns: u64,
    /// Nanoseconds until a request of the same cost would be allowed (0 when allowed).
    pub retry_after_ns: u64,
}

impl DecideCheck {
    /// The wire form of a check.
    pub fn from_check(check: &Check<'_>) -> DecideCheck {
        DecideCheck {
            rule: String::from(check.rule),
            key: hex::encode(&check.key),
            cost: check.cost,
            limit: limit_text::format(&check.limit),
        }
    }
}

impl DecideRequest {
    /// The request for `checks` in `domain`.
    pub fn new<'c, 'a: 'c>(
        domain: &str,
        checks: impl IntoIterator<Item = &'c Check<'a>>,
    ) -> DecideRequest {
        DecideRequest {
            domain: String::from(domain),
            checks: checks.into_iter().map(DecideCheck::from_check).collect(),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and numbers: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a request body (the service's side).
    pub fn from_json(body: &[u8]) -> Result<DecideRequest, RequestError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(RequestError::TooLarge { bytes: body.len() });
        }
        let request: DecideRequest =
            serde_json::from_slice(body).map_err(|e| RequestError::Json {
                message: e.to_string(),
            })?;
        if request.checks.len() > MAX_CHECKS {
            return Err(RequestError::TooManyChecks {
                count: request.checks.len(),
            });
        }
        Ok(request)
    }

    /// The core checks this request asks for, under `policy`'s rules (the service's side):
    /// the domain must be the policy's, every rule must exist once and have the limit the
    /// request says (mode and failure mode come from `policy`).
    pub fn checks<'p>(&self, policy: &'p Policy) -> Result<Vec<Check<'p>>, RequestError> {
        if self.domain != policy.domain() {
            return Err(RequestError::UnknownDomain {
                domain: self.domain.clone(),
            });
        }
        if self.checks.len() > MAX_CHECKS {
            return Err(RequestError::TooManyChecks {
                count: self.checks.len(),
            });
        }
        let mut checks: Vec<Check<'p>> = Vec::with_capacity(self.checks.len());
        for (index, wire) in self.checks.iter().enumerate() {
            let Some(rule) = policy.rule_of_check(&wire.rule) else {
                return Err(RequestError::UnknownRule {
                    list: "checks",
                    index,
                    rule: wire.rule.clone(),
                });
            };
            let Some(named) = rule.limits().iter().find(|l| l.name() == wire.rule) else {
                return Err(RequestError::UnknownRule {
                    list: "checks",
                    index,
                    rule: wire.rule.clone(),
                });
            };
            if checks.iter().any(|c| c.rule == named.name()) {
                return Err(RequestError::DuplicateRule {
                    list: "checks",
                    index,
                    rule: wire.rule.clone(),
                });
            }
            let Some(limit) = limit_text::parse(&wire.limit) else {
                return Err(RequestError::BadLimit {
                    list: "checks",
                    index,
                    text: wire.limit.clone(),
                });
            };
            if limit != named.limit() {
                return Err(RequestError::LimitMismatch {
                    list: "checks",
                    index,
                    rule: wire.rule.clone(),
                    sent: wire.limit.clone(),
                    configured: limit_text::format(&named.limit()),
                });
            }
            let key = hex::decode(&wire.key).map_err(|error| RequestError::BadKey {
                list: "checks",
                index,
                error,
            })?;
            let Some(check) = rule.check_named(&wire.rule, key, wire.cost) else {
                return Err(RequestError::UnknownRule {
                    list: "checks",
                    index,
                    rule: wire.rule.clone(),
                });
            };
            checks.push(check);
        }
        Ok(checks)
    }
}

impl DecideOutcome {
    /// The wire form of a rule's outcome.
    pub fn from_outcome(outcome: &RuleOutcome) -> DecideOutcome {
        let d = &outcome.decision;
        DecideOutcome {
            status: outcome.status,
            limit: d.limit,
            remaining: d.remaining,
            reset_after_ns: d.reset_after,
            retry_after_ns: d.retry_after,
        }
    }

    /// The core's outcome. A rule lets the request through when it allowed it or failed
    /// open; `cas_retries` and `store_error` are the service's business and come back empty.
    pub fn rule_outcome(&self) -> RuleOutcome {
        RuleOutcome {
            status: self.status,
            decision: Decision {
                allowed: matches!(self.status, Status::Allowed | Status::FailedOpen),
                limit: self.limit,
                remaining: self.remaining,
                reset_after: self.reset_after_ns,
                retry_after: self.retry_after_ns,
                delay: 0,
            },
            cas_retries: 0,
            store_error: None,
        }
    }
}

impl DecideReply {
    /// The reply for the core's verdict on a request's checks.
    pub fn from_verdict(verdict: &Verdict) -> DecideReply {
        DecideReply {
            allowed: verdict.allowed,
            outcomes: verdict
                .outcomes
                .iter()
                .map(DecideOutcome::from_outcome)
                .collect(),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a reply to a request of `checks` checks (the filter's side). Any
    /// body that is not a consistent answer to that request is an error, never a panic.
    pub fn parse(body: &[u8], checks: usize) -> Result<DecideReply, ReplyError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(ReplyError::TooLarge { bytes: body.len() });
        }
        let reply: DecideReply = serde_json::from_slice(body).map_err(|e| ReplyError::Json {
            message: e.to_string(),
        })?;
        if reply.outcomes.len() != checks {
            return Err(ReplyError::OutcomeCount {
                expected: checks,
                found: reply.outcomes.len(),
            });
        }
        let denied = reply
            .outcomes
            .iter()
            .any(|o| matches!(o.status, Status::Denied | Status::FailedClosed));
        if reply.allowed == denied {
            return Err(ReplyError::Inconsistent);
        }
        Ok(reply)
    }

    /// The outcomes as the core's.
    pub fn rule_outcomes(&self) -> Vec<RuleOutcome> {
        self.outcomes
            .iter()
            .map(DecideOutcome::rule_outcome)
            .collect()
    }
}

/// Why the service cannot decide a request; [`RequestError::http_status`] is its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The body is over [`MAX_BODY_BYTES`].
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// Not JSON, or not a decide request.
    Json {
        /// The parser's message (names the field).
        message: String,
    },
    /// Not JSON, or not a lease request.
    LeaseJson {
        /// The parser's message (names the field).
        message: String,
    },
    /// More than [`MAX_CHECKS`] checks.
    TooManyChecks {
        /// How many there were.
        count: usize,
    },
    /// A domain the service has no configuration for.
    UnknownDomain {
        /// The domain asked for.
        domain: String,
    },
    /// A rule the domain's configuration does not have.
    UnknownRule {
        /// The list the item is in (`checks`, `acquire`, `return`).
        list: &'static str,
        /// The item's index in it.
        index: usize,
        /// The rule asked for.
        rule: String,
    },
    /// The same rule twice.
    DuplicateRule {
        /// The list the item is in (`checks`).
        list: &'static str,
        /// The second item's index.
        index: usize,
        /// The rule.
        rule: String,
    },
    /// A `limit` that is not a limit's text.
    BadLimit {
        /// The list the item is in (`checks`, `acquire`, `return`).
        list: &'static str,
        /// The item's index in it.
        index: usize,
        /// What was sent.
        text: String,
    },
    /// The proxy's limit for the rule is not the service's.
    LimitMismatch {
        /// The list the item is in (`checks`, `acquire`, `return`).
        list: &'static str,
        /// The item's index in it.
        index: usize,
        /// The rule.
        rule: String,
        /// The proxy's limit.
        sent: String,
        /// The service's.
        configured: String,
    },
    /// A `key` that is not hex.
    BadKey {
        /// The list the item is in (`checks`, `acquire`, `return`).
        list: &'static str,
        /// The item's index in it.
        index: usize,
        /// What is wrong with it.
        error: hex::HexError,
    },
    /// More than [`MAX_LEASE_ITEMS`](super::MAX_LEASE_ITEMS) acquisitions and returns.
    TooManyLeaseItems {
        /// How many there were.
        count: usize,
    },
    /// An amount out of its range.
    BadAmount {
        /// The list the item is in (`acquire`, `return`).
        list: &'static str,
        /// The item's index in it.
        index: usize,
        /// The field.
        field: &'static str,
        /// What it must be.
        problem: &'static str,
    },
    /// An acquisition for a rule without a `lease` in the service's configuration.
    NoLease {
        /// The acquisition's index.
        index: usize,
        /// The rule.
        rule: String,
    },
}

impl RequestError {
    /// The HTTP status the service answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            RequestError::TooLarge { .. } => 413,
            RequestError::UnknownDomain { .. } | RequestError::UnknownRule { .. } => 404,
            RequestError::LimitMismatch { .. } | RequestError::NoLease { .. } => 409,
            RequestError::Json { .. }
            | RequestError::LeaseJson { .. }
            | RequestError::TooManyLeaseItems { .. }
            | RequestError::BadAmount { .. }
            | RequestError::TooManyChecks { .. }
            | RequestError::DuplicateRule { .. }
            | RequestError::BadLimit { .. }
            | RequestError::BadKey { .. } => 400,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLarge { bytes } => write!(
                f,
                "the body is {bytes} bytes, more than the {MAX_BODY_BYTES} allowed"
            ),
            RequestError::Json { message } => write!(f, "not a decide request: {message}"),
            RequestError::LeaseJson { message } => write!(f, "not a lease request: {message}"),
            RequestError::TooManyChecks { count } => {
                write!(
                    f,
                    "checks: {count} checks, more than the {MAX_CHECKS} allowed"
                )
            }
            RequestError::UnknownDomain { domain } => {
                write!(f, "domain: no configuration has the domain {domain:?}")
            }
            RequestError::UnknownRule { list, index, rule } => write!(
                f,
                "{list}[{index}].rule: the domain's configuration has no rule {rule:?}"
            ),
            RequestError::DuplicateRule { list, index, rule } => write!(
                f,
                "{list}[{index}].rule: rule {rule:?} is asked for twice; each rule at most once"
            ),
            RequestError::BadLimit { list, index, text } => write!(
                f,
                "{list}[{index}].limit: {text:?} is not <algorithm>:<requests>/<period ns>/<burst>"
            ),
            RequestError::LimitMismatch {
                list,
                index,
                rule,
                sent,
                configured,
            } => write!(
                f,
                "{list}[{index}].limit: the proxy has {sent} for rule {rule:?}, this service \
                 {configured}; give both the same configuration"
            ),
            RequestError::BadKey { list, index, error } => {
                write!(f, "{list}[{index}].key: {error}")
            }
            RequestError::TooManyLeaseItems { count } => write!(
                f,
                "acquire and return: {count} items, more than the {} allowed",
                super::MAX_LEASE_ITEMS
            ),
            RequestError::BadAmount {
                list,
                index,
                field,
                problem,
            } => write!(f, "{list}[{index}].{field}: {problem}"),
            RequestError::NoLease { index, rule } => write!(
                f,
                "acquire[{index}].rule: rule {rule:?} has no lease in this service's \
                 configuration; give the proxy and the service the same configuration"
            ),
        }
    }
}

/// Why a reply from the service is not an answer the filter can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// The body is over [`MAX_BODY_BYTES`].
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// Not JSON, or not a decide reply.
    Json {
        /// The parser's message.
        message: String,
    },
    /// Not JSON, or not a lease reply.
    LeaseJson {
        /// The parser's message.
        message: String,
    },
    /// Not one outcome per check.
    OutcomeCount {
        /// Checks sent.
        expected: usize,
        /// Outcomes received.
        found: usize,
    },
    /// `allowed` contradicts the outcomes.
    Inconsistent,
    /// Not one grant per acquisition of a lease request.
    GrantCount {
        /// Acquisitions sent.
        expected: usize,
        /// Grants received.
        found: usize,
    },
    /// Not one entry per return of a lease request.
    ReturnCount {
        /// Returns sent.
        expected: usize,
        /// Entries received.
        found: usize,
    },
    /// A grant outside `min..=want` with an `allowed` outcome, or units with another one.
    BadGrant {
        /// The acquisition's index.
        index: usize,
    },
    /// More units given back than were returned.
    BadReturn {
        /// The return's index.
        index: usize,
    },
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::TooLarge { bytes } => write!(
                f,
                "a reply of {bytes} bytes, more than the {MAX_BODY_BYTES} allowed"
            ),
            ReplyError::Json { message } => write!(f, "not a decide reply: {message}"),
            ReplyError::LeaseJson { message } => write!(f, "not a lease reply: {message}"),
            ReplyError::OutcomeCount { expected, found } => write!(
                f,
                "{found} outcomes for {expected} checks; expected one per check"
            ),
            ReplyError::Inconsistent => {
                f.write_str("\"allowed\" contradicts the outcomes' statuses")
            }
            ReplyError::GrantCount { expected, found } => write!(
                f,
                "{found} entries in acquired for {expected} acquisitions; expected one per \
                 acquisition"
            ),
            ReplyError::ReturnCount { expected, found } => write!(
                f,
                "{found} entries in returned for {expected} returns; expected one per return"
            ),
            ReplyError::BadGrant { index } => write!(
                f,
                "acquired[{index}]: the units granted contradict the outcome or the amounts \
                 asked for"
            ),
            ReplyError::BadReturn { index } => write!(
                f,
                "returned[{index}]: more units given back than were returned"
            ),
        }
    }
}

/// [`Status`] as its snake_case name.
mod status_name {
    use alloc::string::String;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use sluice_core::Status;

    const NAMES: [(&str, Status); 5] = [
        ("allowed", Status::Allowed),
        ("denied", Status::Denied),
        ("shadow_denied", Status::ShadowDenied),
        ("failed_open", Status::FailedOpen),
        ("failed_closed", Status::FailedClosed),
    ];

    pub fn serialize<S: Serializer>(status: &Status, serializer: S) -> Result<S::Ok, S::Error> {
        let name = NAMES
            .iter()
            .find(|(_, s)| s == status)
            .map_or("allowed", |(name, _)| name);
        serializer.serialize_str(name)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Status, D::Error> {
        let text = String::deserialize(deserializer)?;
        NAMES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, status)| *status)
            .ok_or_else(|| {
                D::Error::unknown_variant(
                    &text,
                    &[
                        "allowed",
                        "denied",
                        "shadow_denied",
                        "failed_open",
                        "failed_closed",
                    ],
                )
            })
    }
}
