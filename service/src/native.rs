//! sluice's decide API (`POST /v1/decide`), the filter's way to the global tier, and its lease
//! API (`POST /v1/lease`), for rules with a `lease`. The protocol
//! types and their checks against the configuration are `sluice_policy::global`'s, shared with
//! the filter so the two sides cannot drift apart; this module only serves them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use sluice_policy::global::{
    DecideOutcome, DecideReply, DecideRequest, LeaseGrant, LeaseReply, LeaseRequest, LeaseReturned,
};

use crate::clock::Clock;
use crate::decider::Decider;
use crate::http_api::{decide_error_status, error_response};
use crate::metrics::Api;
use crate::store::DecisionStore;

/// Answers one decide request body: 200 with a `DecideReply`, or an error status with
/// `{"error": "..."}` naming the field at fault.
pub async fn handle<S: DecisionStore, C: Clock>(
    decider: &Decider<S, C>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let request = match DecideRequest::from_json(body) {
        Ok(request) => request,
        Err(error) => return refused(error.http_status(), error.to_string()),
    };
    let domain = match decider.domain(&request.domain) {
        Ok(domain) => domain,
        Err(error) => return error_response(decide_error_status(&error), &error.to_string()),
    };
    let checks = match request.checks(domain.policy()) {
        Ok(checks) => checks,
        Err(error) => return refused(error.http_status(), error.to_string()),
    };
    match decider.decide_built(Api::Decide, domain, &checks).await {
        Ok(answer) => {
            let reply = DecideReply {
                allowed: answer.allowed,
                outcomes: answer
                    .rules
                    .iter()
                    .map(|rule| DecideOutcome::from_outcome(&rule.outcome))
                    .collect(),
            };
            json_response(reply.to_json())
        }
        Err(error) => error_response(decide_error_status(&error), &error.to_string()),
    }
}

/// Answers one lease request body: 200 with a `LeaseReply` (one grant per acquisition, one
/// entry per return), or an error status with `{"error": "..."}` naming the field at fault
/// (the same codes as the decide API; 409 also for a rule without a `lease` here).
pub async fn handle_lease<S: DecisionStore, C: Clock>(
    decider: &Decider<S, C>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let request = match LeaseRequest::from_json(body) {
        Ok(request) => request,
        Err(error) => return refused(error.http_status(), error.to_string()),
    };
    let domain = match decider.domain(&request.domain) {
        Ok(domain) => domain,
        Err(error) => return error_response(decide_error_status(&error), &error.to_string()),
    };
    let items = match request.resolve(domain.policy()) {
        Ok(items) => items,
        Err(error) => return refused(error.http_status(), error.to_string()),
    };
    match decider.lease(domain, &items).await {
        Ok(answer) => {
            let reply = LeaseReply {
                acquired: answer
                    .acquired
                    .iter()
                    .map(|a| LeaseGrant::new(a.granted, a.granted_at, &a.outcome))
                    .collect(),
                returned: answer
                    .returned
                    .iter()
                    .map(|&units| LeaseReturned { units })
                    .collect(),
            };
            json_response(reply.to_json())
        }
        Err(error) => error_response(decide_error_status(&error), &error.to_string()),
    }
}

/// A request the protocol refuses, with the status its error names.
fn refused(status: u16, message: String) -> Response<Full<Bytes>> {
    error_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        &message,
    )
}

fn json_response(body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
