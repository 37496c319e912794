//! The HTTP side of the service (HTTP/1.1, hyper):
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/decide` | sluice's decide API, used by the filter (`sluice_policy::global`) |
//! | `POST /v1/lease` | sluice's lease API: slices of leased rules' quotas, and their returns |
//! | `POST /json` | Envoy's RLS v3 in its JSON mapping (as envoyproxy/ratelimit serves it) |
//! | `GET /healthz` | the process is up (200) |
//! | `GET /readyz` | Redis answers (200), else 503 |
//! | `GET /metrics` | Prometheus text exposition |
//!
//! Request bodies above [`MAX_BODY_BYTES`] are refused with 413, and a request whose body does
//! not arrive within the read timeout is dropped: no client can hold a connection's memory.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use crate::clock::Clock;
use crate::decider::{DecideError, Decider};
use crate::metrics::Api;
use crate::native;
use crate::rls::{self, RlsError};
use crate::rls_json;
use crate::store::DecisionStore;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long a client may take to send its body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(5);

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// A JSON error body: `{"error": "..."}`.
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    respond(status, "application/json", body)
}

/// The status for a refused decision.
pub fn decide_error_status(error: &DecideError) -> StatusCode {
    match error {
        DecideError::UnknownDomain(_) | DecideError::UnknownRule { .. } => StatusCode::NOT_FOUND,
        DecideError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        DecideError::DuplicateRule(_) | DecideError::TooManyChecks(_) => StatusCode::BAD_REQUEST,
    }
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let limited = Limited::new(request.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        )),
        Ok(Err(error)) => {
            if error.is::<http_body_util::LengthLimitError>() {
                Err(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
                ))
            } else {
                Err(error_response(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ))
            }
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Answers one HTTP request.
pub async fn handle<S: DecisionStore, C: Clock>(
    decider: Arc<Decider<S, C>>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let route = (request.method().clone(), request.uri().path().to_owned());
    let response = match (&route.0, route.1.as_str()) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => match decider.store().ready().await {
            Ok(()) => respond(StatusCode::OK, "text/plain", "ready\n"),
            Err(error) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {error}\n"),
            ),
        },
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            decider.metrics().render(),
        ),
        (&Method::POST, "/v1/decide") => match read_body(request).await {
            Err(response) => response,
            Ok(body) => native::handle(&decider, &body).await,
        },
        (&Method::POST, "/v1/lease") => match read_body(request).await {
            Err(response) => response,
            Ok(body) => native::handle_lease(&decider, &body).await,
        },
        (&Method::POST, "/json") => match read_body(request).await {
            Err(response) => response,
            Ok(body) => json_rls(&decider, &body).await,
        },
        (_, "/healthz" | "/readyz" | "/metrics" | "/v1/decide" | "/v1/lease" | "/json") => {
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        }
        _ => error_response(StatusCode::NOT_FOUND, "no such route"),
    };
    Ok(response)
}

async fn json_rls<S: DecisionStore, C: Clock>(
    decider: &Decider<S, C>,
    body: &[u8],
) -> Response<Body> {
    let request = match rls_json::parse_request(body) {
        Ok(request) => request,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    match rls::decide(decider, Api::Json, &request).await {
        Ok(answer) => {
            let status = if answer.over_limit {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::OK
            };
            respond(status, "application/json", rls_json::render_answer(answer))
        }
        Err(RlsError::Decide(error)) => {
            error_response(decide_error_status(&error), &error.to_string())
        }
        Err(error) => error_response(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}
