//! The lease protocol between a lease holder (the filter, through shared data) and the
//! rate-limit service: JSON both ways, `POST /v1/lease`. One call carries several
//! acquisitions and returns (at most [`MAX_LEASE_ITEMS`] in all); the service handles the
//! returns first, then the acquisitions, each on its own as one atomic read-modify-write of
//! its key's state (a batch is not all or nothing: each item is answered on its own).
//!
//! ```
//! use sluice_core::{Algorithm, Limit, Quota, Status};
//! use sluice_policy::global::{LeaseAcquire, LeaseReply, LeaseRequest, LeaseReturn};
//!
//! let limit = Limit::new(Algorithm::Gcra, Quota::new(1000, 60_000_000_000, 1000).unwrap());
//! let request = LeaseRequest::new(
//!     "sluice",
//!     vec![LeaseAcquire::new("per-client", &limit, b"203.0.113.7", 1, 50)],
//!     vec![LeaseReturn::new("per-client", &limit, b"203.0.113.7", 7, 1_767_225_600_000_000_000)],
//! );
//! assert_eq!(
//!     String::from_utf8(request.to_json()).unwrap(),
//!     r#"{"domain":"sluice","acquire":[{"rule":"per-client","key":"3230332e302e3131332e37","limit":"gcra:1000/60000000000/1000","min":1,"want":50}],"return":[{"rule":"per-client","key":"3230332e302e3131332e37","limit":"gcra:1000/60000000000/1000","units":7,"granted_at_ns":1767225600000000000}]}"#
//! );
//! assert_eq!(LeaseRequest::from_json(&request.to_json()).unwrap(), request);
//!
//! // The service's answer: 50 units granted, 7 returned.
//! let body = br#"{"acquired": [{"granted": 50, "granted_at_ns": 1767225600000000000,
//!     "outcome": {"status": "allowed", "limit": 1000, "remaining": 950,
//!                 "reset_after_ns": 3000000000, "retry_after_ns": 0}}],
//!     "returned": [{"units": 7}]}"#;
//! let reply = LeaseReply::parse(body, &request).unwrap();
//! assert_eq!(reply.acquired[0].granted, 50);
//! assert_eq!(reply.acquired[0].outcome.status, Status::Allowed);
//! assert_eq!(reply.returned[0].units, 7);
//! ```

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};
use sluice_core::{Check, Grant, Limit, Mode, Nanos, RuleOutcome, Status};

use super::wire::{DecideOutcome, MAX_BODY_BYTES, ReplyError, RequestError};
use super::{hex, limit_text};
use crate::policy::{Policy, Rule};

/// The most acquisitions and returns, together, in one lease request.
pub const MAX_LEASE_ITEMS: usize = 64;

/// A lease request: slices to acquire and unspent units to give back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRequest {
    /// The configuration's domain (`global.domain`).
    pub domain: String,
    /// Slices to acquire.
    #[serde(default)]
    pub acquire: Vec<LeaseAcquire>,
    /// Unspent units to give back (handled before the acquisitions).
    #[serde(default, rename = "return")]
    pub returns: Vec<LeaseReturn>,
}

/// One slice to acquire: as many units in `min..=want` as the key has room for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseAcquire {
    /// The rule's name.
    pub rule: String,
    /// Lowercase hex of the rule's key bytes.
    pub key: String,
    /// The rule's limit as the holder has it ([`limit_text`]).
    pub limit: String,
    /// The fewest units worth having (at least 1): below it nothing is granted.
    pub min: u64,
    /// The most units wanted (at least `min`).
    pub want: u64,
}

/// Unspent units of a slice, given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReturn {
    /// The rule's name.
    pub rule: String,
    /// Lowercase hex of the rule's key bytes.
    pub key: String,
    /// The rule's limit as the holder has it ([`limit_text`]).
    pub limit: String,
    /// Units not spent (at least 1).
    pub units: u64,
    /// The slice's `granted_at_ns`, as the service said it (the service's clock).
    pub granted_at_ns: u64,
}

/// The service's answer: one grant per acquisition and one entry per return, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReply {
    /// One per acquisition of the request, in its order.
    #[serde(default)]
    pub acquired: Vec<LeaseGrant>,
    /// One per return of the request, in its order.
    #[serde(default)]
    pub returned: Vec<LeaseReturned>,
}

/// What one acquisition got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGrant {
    /// Units granted: in `min..=want` when the outcome is `allowed`, else 0.
    pub granted: u64,
    /// The service's clock when it granted them; sent back with a return of these units.
    pub granted_at_ns: u64,
    /// The key's outcome: for a grant, `remaining` is what the key has left after it; when
    /// not even `min` fits, `denied` (or `shadow_denied`) with the `retry_after` of `min`
    /// units; when the store failed, the rule's failure mode.
    pub outcome: DecideOutcome,
}

/// What one return did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseReturned {
    /// Units the key got back: the units returned, or fewer (0 when the period they were
    /// granted in has ended, since they no longer count; GCRA: what the bucket still owed).
    pub units: u64,
}

impl LeaseAcquire {
    /// An acquisition of `min..=want` units of `rule`'s `key`.
    pub fn new(rule: &str, limit: &Limit, key: &[u8], min: u64, want: u64) -> LeaseAcquire {
        LeaseAcquire {
            rule: String::from(rule),
            key: hex::encode(key),
            limit: limit_text::format(limit),
            min,
            want,
        }
    }

    /// An acquisition for a request's check: `min` = its cost, `want` = at least that.
    pub fn for_check(check: &Check<'_>, want: u64) -> LeaseAcquire {
        LeaseAcquire::new(
            check.rule,
            &check.limit,
            &check.key,
            check.cost,
            want.max(check.cost),
        )
    }
}

impl LeaseReturn {
    /// A return of `units` of a slice of `rule`'s `key` granted at `granted_at` (service
    /// clock).
    pub fn new(
        rule: &str,
        limit: &Limit,
        key: &[u8],
        units: u64,
        granted_at: Nanos,
    ) -> LeaseReturn {
        LeaseReturn {
            rule: String::from(rule),
            key: hex::encode(key),
            limit: limit_text::format(limit),
            units,
            granted_at_ns: granted_at,
        }
    }
}

/// An acquisition checked against the service's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseAcquisition<'p> {
    /// The rule, from the service's configuration.
    pub rule: &'p Rule,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The fewest units worth having (at least 1).
    pub min: u64,
    /// The most units wanted (at least `min`).
    pub want: u64,
}

/// A return checked against the service's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRefund<'p> {
    /// The rule, from the service's configuration.
    pub rule: &'p Rule,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// Units given back (at least 1).
    pub units: u64,
    /// When they were granted (service clock).
    pub granted_at: Nanos,
}

/// A lease request checked against the service's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseItems<'p> {
    /// The acquisitions, in order.
    pub acquire: Vec<LeaseAcquisition<'p>>,
    /// The returns, in order.
    pub returns: Vec<LeaseRefund<'p>>,
}

impl LeaseAcquisition<'_> {
    /// The rule's outcome for `grant` (made by [`Limit::grant`] for this acquisition):
    /// allowed with something granted; otherwise denied, or shadow-denied for a shadow or soft rule.
    pub fn outcome(&self, grant: &Grant) -> RuleOutcome {
        let status = if grant.granted > 0 {
            Status::Allowed
        } else {
            match self.rule.mode() {
                Mode::Enforce => Status::Denied,
                Mode::Shadow | Mode::Soft => Status::ShadowDenied,
            }
        };
        RuleOutcome {
            status,
            decision: grant.decision,
            cas_retries: 0,
            store_error: None,
        }
    }

    /// The rule's outcome when its state could not be read or written: its failure mode,
    /// as the core decides a rule whose store failed (nothing is granted either way).
    pub fn failed_outcome(&self) -> RuleOutcome {
        failure_outcome(self.rule)
    }
}

impl LeaseGrant {
    /// The wire form of an acquisition's outcome, `granted` units at `granted_at`.
    pub fn new(granted: u64, granted_at: Nanos, outcome: &RuleOutcome) -> LeaseGrant {
        LeaseGrant {
            granted,
            granted_at_ns: granted_at,
            outcome: DecideOutcome::from_outcome(outcome),
        }
    }
}

impl LeaseRequest {
    /// A request in `domain`.
    pub fn new(domain: &str, acquire: Vec<LeaseAcquire>, returns: Vec<LeaseReturn>) -> Self {
        LeaseRequest {
            domain: String::from(domain),
            acquire,
            returns,
        }
    }

    /// How many acquisitions and returns it carries.
    pub fn items(&self) -> usize {
        self.acquire.len().saturating_add(self.returns.len())
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and numbers: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a request body (the service's side), checking its size, its number of items
    /// and every amount.
    pub fn from_json(body: &[u8]) -> Result<LeaseRequest, RequestError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(RequestError::TooLarge { bytes: body.len() });
        }
        let request: LeaseRequest =
            serde_json::from_slice(body).map_err(|e| RequestError::LeaseJson {
                message: e.to_string(),
            })?;
        request.check_amounts()?;
        Ok(request)
    }

    fn check_amounts(&self) -> Result<(), RequestError> {
        if self.items() > MAX_LEASE_ITEMS {
            return Err(RequestError::TooManyLeaseItems {
                count: self.items(),
            });
        }
        for (index, item) in self.acquire.iter().enumerate() {
            if item.min == 0 {
                return Err(RequestError::BadAmount {
                    list: "acquire",
                    index,
                    field: "min",
                    problem: "must be at least 1",
                });
            }
            if item.want < item.min {
                return Err(RequestError::BadAmount {
                    list: "acquire",
                    index,
                    field: "want",
                    problem: "must be at least min",
                });
            }
        }
        for (index, item) in self.returns.iter().enumerate() {
            if item.units == 0 {
                return Err(RequestError::BadAmount {
                    list: "return",
                    index,
                    field: "units",
                    problem: "must be at least 1",
                });
            }
        }
        Ok(())
    }

    /// The items under `policy`'s rules (the service's side): the domain must be the
    /// policy's; every rule must exist with the limit the request says; a rule acquired
    /// must have a `lease` in the service's configuration (a return needs only the same
    /// limit: it gives back units granted under it).
    pub fn resolve<'p>(&self, policy: &'p Policy) -> Result<LeaseItems<'p>, RequestError> {
        if self.domain != policy.domain() {
            return Err(RequestError::UnknownDomain {
                domain: self.domain.clone(),
            });
        }
        self.check_amounts()?;
        let acquire = self
            .acquire
            .iter()
            .enumerate()
            .map(|(index, wire)| {
                let (rule, key) = resolve_item(policy, "acquire", index, wire.into())?;
                if rule.lease().is_none() {
                    return Err(RequestError::NoLease {
                        index,
                        rule: wire.rule.clone(),
                    });
                }
                Ok(LeaseAcquisition {
                    rule,
                    key,
                    min: wire.min,
                    want: wire.want,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let returns = self
            .returns
            .iter()
            .enumerate()
            .map(|(index, wire)| {
                let (rule, key) = resolve_item(policy, "return", index, wire.into())?;
                Ok(LeaseRefund {
                    rule,
                    key,
                    units: wire.units,
                    granted_at: wire.granted_at_ns,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LeaseItems { acquire, returns })
    }
}

/// The parts an acquisition and a return share.
struct ItemRef<'w> {
    rule: &'w str,
    key: &'w str,
    limit: &'w str,
}

impl<'w> From<&'w LeaseAcquire> for ItemRef<'w> {
    fn from(item: &'w LeaseAcquire) -> Self {
        ItemRef {
            rule: &item.rule,
            key: &item.key,
            limit: &item.limit,
        }
    }
}

impl<'w> From<&'w LeaseReturn> for ItemRef<'w> {
    fn from(item: &'w LeaseReturn) -> Self {
        ItemRef {
            rule: &item.rule,
            key: &item.key,
            limit: &item.limit,
        }
    }
}

fn resolve_item<'p>(
    policy: &'p Policy,
    list: &'static str,
    index: usize,
    item: ItemRef<'_>,
) -> Result<(&'p Rule, Vec<u8>), RequestError> {
    let Some(rule) = policy.rule(item.rule) else {
        return Err(RequestError::UnknownRule {
            list,
            index,
            rule: String::from(item.rule),
        });
    };
    let Some(limit) = limit_text::parse(item.limit) else {
        return Err(RequestError::BadLimit {
            list,
            index,
            text: String::from(item.limit),
        });
    };
    if limit != rule.limit() {
        return Err(RequestError::LimitMismatch {
            list,
            index,
            rule: String::from(item.rule),
            sent: String::from(item.limit),
            configured: limit_text::format(&rule.limit()),
        });
    }
    let key = hex::decode(item.key).map_err(|error| RequestError::BadKey { list, index, error })?;
    Ok((rule, key))
}

impl LeaseReply {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a reply to `request` (the holder's side): one grant per
    /// acquisition and one entry per return; a grant is in `min..=want` exactly when its
    /// outcome is `allowed`, and nothing else is granted; a return gives back at most what
    /// was sent. Any body that is not a consistent answer is an error, never a panic.
    pub fn parse(body: &[u8], request: &LeaseRequest) -> Result<LeaseReply, ReplyError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(ReplyError::TooLarge { bytes: body.len() });
        }
        let reply: LeaseReply =
            serde_json::from_slice(body).map_err(|e| ReplyError::LeaseJson {
                message: e.to_string(),
            })?;
        if reply.acquired.len() != request.acquire.len() {
            return Err(ReplyError::GrantCount {
                expected: request.acquire.len(),
                found: reply.acquired.len(),
            });
        }
        if reply.returned.len() != request.returns.len() {
            return Err(ReplyError::ReturnCount {
                expected: request.returns.len(),
                found: reply.returned.len(),
            });
        }
        for (index, (grant, asked)) in reply.acquired.iter().zip(&request.acquire).enumerate() {
            let consistent = match grant.outcome.status {
                Status::Allowed => (asked.min..=asked.want).contains(&grant.granted),
                _ => grant.granted == 0,
            };
            if !consistent {
                return Err(ReplyError::BadGrant { index });
            }
        }
        for (index, (returned, sent)) in reply.returned.iter().zip(&request.returns).enumerate() {
            if returned.units > sent.units {
                return Err(ReplyError::BadReturn { index });
            }
        }
        Ok(reply)
    }
}

/// A rule's outcome when its state could not be read or written: its failure mode, as for a
/// decision (the key plays no part in it).
fn failure_outcome(rule: &Rule) -> RuleOutcome {
    super::exchange::failed(&rule.check(Vec::new(), 0))
}
