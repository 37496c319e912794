//! Envoy's rate-limit service API v3 (`envoy.service.ratelimit.v3.RateLimitService`), mapped
//! onto sluice rules. Protocol types stay here: a request becomes [`Requested`] checks once,
//! and an [`Answer`] becomes the response.
//!
//! # Descriptors
//! - `domain` selects the configuration whose `global.domain` it equals.
//! - A descriptor names its rule with an entry whose key is `rule` (Envoy: a `generic_key`
//!   action with `descriptor_key: rule`). Its other entries, in order, are the key: the same
//!   entries give the same counter. A descriptor without a `rule` entry, or naming no rule of
//!   the domain, is not limited (code `OK`, no `current_limit`), as envoyproxy/ratelimit treats
//!   descriptors it has no limit for.
//! - The cost is the descriptor's `hits_addend` if set, else the request's, where 0 means 1.
//!   Negative hits (`is_negative_hits`) are refused; a descriptor's `limit` override is ignored
//!   (limits come from the sluice configuration).
//!
//! # The response
//! `overall_code` is `OVER_LIMIT` when an enforcing rule denies (or fails closed). Each status
//! carries the rule's `current_limit` (`requests_per_unit` with the period's unit when the
//! period is exactly a second, minute, hour or day, else `UNKNOWN`; `name` is the rule's),
//! `limit_remaining`, and `duration_until_reset`: when denied, the time until the request would
//! be allowed; when allowed, until the quota is whole again. `response_headers_to_add` holds
//! the rate-limit headers sluice renders (`RateLimit-Policy`, `RateLimit`, `X-RateLimit-*` per
//! the configuration's style, and `Retry-After` on a denial), which Envoy adds to the response.
//! A request a soft limit marked (`"mode": "soft"`, `warn_at`) also carries the warning header
//! there and in `request_headers_to_add`, which Envoy adds to the request to the upstream.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit, rate_limit::Unit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use sluice_core::time::NANOS_PER_SEC;
use sluice_core::{Limit, Nanos};

use crate::clock::Clock;
use crate::decider::{DecideError, Decider, Requested, passes};
use crate::metrics::Api;
use crate::store::DecisionStore;

/// The entry key that names a descriptor's rule.
pub const RULE_ENTRY: &str = "rule";

/// A rate-limit request, whatever protocol it came by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RlsRequest {
    /// The configuration's domain.
    pub domain: String,
    /// The descriptors, in order.
    pub descriptors: Vec<RlsDescriptor>,
    /// The request's cost (0 means 1).
    pub hits_addend: u64,
}

/// One descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RlsDescriptor {
    /// Its entries as (key, value), in order.
    pub entries: Vec<(String, String)>,
    /// Its own cost, overriding the request's.
    pub hits_addend: Option<u64>,
    /// Whether the hits were meant to be given back (refused).
    pub negative_hits: bool,
}

/// Why an RLS request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RlsError {
    /// Negative hits are not supported.
    #[error("descriptor {0}: is_negative_hits is not supported by sluice")]
    NegativeHits(usize),
    /// The decision was refused.
    #[error(transparent)]
    Decide(#[from] DecideError),
}

/// What a descriptor was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsStatus {
    /// OK or over the limit.
    pub over_limit: bool,
    /// The limit, when a rule applied: (rule name, requests per unit, unit).
    pub current_limit: Option<(String, u32, Unit)>,
    /// Units left.
    pub remaining: u32,
    /// See the module docs.
    pub until_reset: Duration,
}

/// The answer to an RLS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlsAnswer {
    /// Some enforcing rule denied.
    pub over_limit: bool,
    /// One status per descriptor, in order.
    pub statuses: Vec<RlsStatus>,
    /// Rate-limit headers for the response (with the warning header of a marked request).
    pub headers: Vec<(String, String)>,
    /// Headers for the request to the upstream: the warning header of a marked request.
    pub request_headers: Vec<(String, String)>,
}

/// The key bytes of a descriptor: every entry but the rule's, each as
/// `<len(key)>:<key><len(value)>:<value>`, so no two entry lists give the same bytes.
fn descriptor_key(entries: &[(String, String)]) -> Vec<u8> {
    let mut key = Vec::new();
    for (name, value) in entries.iter().filter(|(name, _)| name != RULE_ENTRY) {
        for part in [name, value] {
            key.extend_from_slice(part.len().to_string().as_bytes());
            key.push(b':');
            key.extend_from_slice(part.as_bytes());
        }
    }
    key
}

/// Decides an RLS request.
pub async fn decide<S: DecisionStore, C: Clock>(
    decider: &Decider<S, C>,
    api: Api,
    request: &RlsRequest,
) -> Result<RlsAnswer, RlsError> {
    let domain = decider.domain(&request.domain)?;
    let request_cost = request.hits_addend.max(1);
    // Which descriptor each check came from; descriptors naming no rule are not limited.
    let mut requested = Vec::new();
    let mut from = Vec::new();
    for (index, descriptor) in request.descriptors.iter().enumerate() {
        if descriptor.negative_hits {
            return Err(RlsError::NegativeHits(index));
        }
        let Some((_, rule)) = descriptor
            .entries
            .iter()
            .find(|(name, _)| name == RULE_ENTRY)
        else {
            continue;
        };
        // A rule's own limit, or one of its tiers or overrides (`<rule>:<name>`).
        let known = domain
            .rule(rule)
            .is_some_and(|(_, r)| r.limits().iter().any(|l| l.name() == rule));
        if !known {
            continue;
        }
        requested.push(Requested {
            rule: rule.clone(),
            key: descriptor_key(&descriptor.entries),
            cost: descriptor.hits_addend.unwrap_or(request_cost),
        });
        from.push(index);
    }
    let unlimited = RlsStatus {
        over_limit: false,
        current_limit: None,
        remaining: 0,
        until_reset: Duration::ZERO,
    };
    let mut statuses = vec![unlimited; request.descriptors.len()];
    if requested.is_empty() {
        return Ok(RlsAnswer {
            over_limit: false,
            statuses,
            headers: Vec::new(),
            request_headers: Vec::new(),
        });
    }
    let answer = decider.decide(api, &request.domain, &requested).await?;
    for (rule, index) in answer.rules.iter().zip(from) {
        let outcome = &rule.outcome;
        let decision = &outcome.decision;
        let over_limit = !passes(outcome.status);
        let until_reset = if over_limit {
            decision.retry_after
        } else {
            decision.reset_after
        };
        if let Some(status) = statuses.get_mut(index) {
            *status = RlsStatus {
                over_limit,
                current_limit: Some(current_limit(&rule.rule, &rule.limit)),
                remaining: u32::try_from(decision.remaining).unwrap_or(u32::MAX),
                until_reset: Duration::from_nanos(until_reset),
            };
        }
    }
    let mut headers: Vec<(String, String)> = answer
        .headers
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    let request_headers: Vec<(String, String)> = answer.warning.into_iter().collect();
    headers.extend(request_headers.iter().cloned());
    Ok(RlsAnswer {
        over_limit: !answer.allowed,
        statuses,
        headers,
        request_headers,
    })
}

/// A rule's limit as RLS can say it.
fn current_limit(rule: &str, limit: &Limit) -> (String, u32, Unit) {
    let period: Nanos = limit.quota.period();
    let unit = match period {
        p if p == NANOS_PER_SEC => Unit::Second,
        p if p == 60 * NANOS_PER_SEC => Unit::Minute,
        p if p == 3_600 * NANOS_PER_SEC => Unit::Hour,
        p if p == 86_400 * NANOS_PER_SEC => Unit::Day,
        _ => Unit::Unknown,
    };
    let requests = u32::try_from(limit.quota.limit()).unwrap_or(u32::MAX);
    (rule.to_owned(), requests, unit)
}

impl RlsRequest {
    /// Converts the protobuf request.
    pub fn from_proto(request: RateLimitRequest) -> RlsRequest {
        RlsRequest {
            domain: request.domain,
            hits_addend: u64::from(request.hits_addend),
            descriptors: request
                .descriptors
                .into_iter()
                .map(|d| RlsDescriptor {
                    entries: d.entries.into_iter().map(|e| (e.key, e.value)).collect(),
                    hits_addend: d.hits_addend.map(|h| h.value),
                    negative_hits: d.is_negative_hits,
                })
                .collect(),
        }
    }
}

impl RlsAnswer {
    /// Converts to the protobuf response.
    pub fn into_proto(self) -> RateLimitResponse {
        let code = |over: bool| {
            if over {
                Code::OverLimit as i32
            } else {
                Code::Ok as i32
            }
        };
        RateLimitResponse {
            overall_code: code(self.over_limit),
            statuses: self
                .statuses
                .into_iter()
                .map(|s| DescriptorStatus {
                    code: code(s.over_limit),
                    current_limit: s.current_limit.map(|(name, requests_per_unit, unit)| {
                        RateLimit {
                            name,
                            requests_per_unit,
                            unit: unit as i32,
                        }
                    }),
                    limit_remaining: s.remaining,
                    duration_until_reset: Some(proto_duration(s.until_reset)),
                    ..Default::default()
                })
                .collect(),
            response_headers_to_add: header_values(self.headers),
            request_headers_to_add: header_values(self.request_headers),
            ..Default::default()
        }
    }
}

fn header_values(headers: Vec<(String, String)>) -> Vec<HeaderValue> {
    headers
        .into_iter()
        .map(|(key, value)| HeaderValue {
            key,
            value,
            ..Default::default()
        })
        .collect()
}

fn proto_duration(d: Duration) -> envoy_types::pb::google::protobuf::Duration {
    envoy_types::pb::google::protobuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// The gRPC service.
#[derive(Debug)]
pub struct GrpcService<S, C> {
    decider: Arc<Decider<S, C>>,
}

impl<S, C> GrpcService<S, C> {
    /// Serves `decider`.
    pub fn new(decider: Arc<Decider<S, C>>) -> GrpcService<S, C> {
        GrpcService { decider }
    }
}

#[tonic::async_trait]
impl<S: DecisionStore, C: Clock> RateLimitService for GrpcService<S, C> {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let request = RlsRequest::from_proto(request.into_inner());
        match decide(&self.decider, Api::Grpc, &request).await {
            Ok(answer) => Ok(tonic::Response::new(answer.into_proto())),
            Err(error) => Err(grpc_status(&error)),
        }
    }
}

/// The gRPC status for a refused request.
pub fn grpc_status(error: &RlsError) -> tonic::Status {
    match error {
        RlsError::Decide(DecideError::Overloaded) => tonic::Status::unavailable(error.to_string()),
        RlsError::Decide(DecideError::UnknownDomain(_)) => {
            tonic::Status::not_found(error.to_string())
        }
        _ => tonic::Status::invalid_argument(error.to_string()),
    }
}
