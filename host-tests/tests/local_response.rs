//! Local responses: the filter answers the client itself. The response is
//! applied once the callback returns (whatever the callback returned) and
//! goes through the filter's own response callbacks, as in Envoy. So does
//! the proxy's own reply when the upstream resets a stream.

mod common;

use std::cell::Cell;

use common::{START_NS, exchange, options, probe, probe_request, start};
use sluice_host::{Clock, HttpResponse, LogLevel, ProxyOptions, RequestOutcome, ResponseOutcome};

#[test]
fn a_local_response_answers_the_client_instead_of_the_upstream() {
    let proxy = start(options());
    let request = probe_request(&[
        ("x-probe-respond", "429"),
        ("x-probe-respond-body", "slow down"),
        ("x-probe-respond-details", "rate limited"),
        ("x-probe-respond-header", "retry-after=5"),
    ]);
    let upstream_called = Cell::new(false);
    let done = proxy
        .exchange(0, request, |_| {
            upstream_called.set(true);
            HttpResponse::new(200)
        })
        .expect("the exchange completes");
    assert!(
        !upstream_called.get(),
        "the filter returned Continue, and the request still did not go upstream"
    );
    let RequestOutcome::LocalResponse(local) = &done.request else {
        panic!("a local response, got {:?}", done.request);
    };
    assert_eq!(local.status, 429);
    assert_eq!(local.body, b"slow down");
    assert_eq!(local.details, "rate_limited", "Envoy replaces whitespace");
    assert_eq!(local.grpc_status, None);
    assert_eq!(local.header("retry-after"), Some("5"));
    assert_eq!(local.header("content-length"), Some("9"));
    assert_eq!(local.header("content-type"), Some("text/plain"));
    assert_eq!(done.response, None);
    assert_eq!(done.status(), Some(429));
    assert_eq!(done.client.body(), b"slow down");
}

#[test]
fn the_filter_sees_its_own_local_response_in_its_response_callbacks() {
    let proxy = start(options());
    let request = probe_request(&[
        ("x-probe-respond", "403"),
        ("x-probe-add-response-header", "x-seen-by-filter=1"),
    ]);
    let done = exchange(&proxy, request);
    assert_eq!(done.status(), Some(403));
    assert_eq!(done.header("x-seen-by-filter"), Some("1"));
    assert!(proxy.logs().contains("probe response headers 2"));
}

#[test]
fn a_grpc_status_is_carried() {
    let proxy = start(options());
    let done = exchange(
        &proxy,
        probe_request(&[("x-probe-respond", "200"), ("x-probe-respond-grpc", "8")]),
    );
    let local = done.request.local_response().expect("a local response");
    assert_eq!(local.grpc_status, Some(8));
}

#[test]
fn a_local_response_from_the_response_phase_replaces_the_upstream_response() {
    let proxy = start(options());
    let request = probe_request(&[
        ("x-probe-respond", "502"),
        ("x-probe-respond-body", "bad upstream"),
        ("x-probe-respond-in", "response"),
    ]);
    let done = exchange(&proxy, request);
    assert!(done.forwarded().is_some(), "the request went upstream");
    let Some(ResponseOutcome::LocalResponse(local)) = &done.response else {
        panic!("a local response, got {:?}", done.response);
    };
    assert_eq!(local.status, 502);
    assert_eq!(done.status(), Some(502));
    assert_eq!(done.client.body(), b"bad upstream");
}

#[test]
fn ngx_wasm_module_ends_a_local_body_with_a_newline() {
    let proxy = start(
        ProxyOptions::ngx_wasm_module(probe())
            .clock(Clock::fake(START_NS))
            .log_level(LogLevel::Trace),
    );
    let done = exchange(
        &proxy,
        probe_request(&[
            ("x-probe-respond", "429"),
            ("x-probe-respond-body", "limited"),
        ]),
    );
    assert_eq!(done.client.body(), b"limited\n");
    assert_eq!(done.header("content-length"), Some("8"));
}

#[test]
fn an_impossible_status_is_refused_and_the_request_goes_on() {
    let proxy = start(options());
    let done = exchange(&proxy, probe_request(&[("x-probe-respond", "42")]));
    assert!(done.forwarded().is_some());
    assert!(
        proxy.logs().contains("probe local response 42: 2"),
        "BAD_ARGUMENT"
    );
}

#[test]
fn an_upstream_reset_answers_with_the_proxy_s_reply_through_the_response_callbacks() {
    for (flavor, status, content_type) in [
        (options(), 503, "text/plain"),
        (
            ProxyOptions::ngx_wasm_module(probe()).clock(Clock::fake(START_NS)),
            502,
            "text/html",
        ),
    ] {
        let proxy = start(flavor);
        let request = probe_request(&[("x-probe-add-response-header", "x-seen-by-filter=1")]);
        let (mut stream, outcome) = proxy.begin(0, request).expect("the stream begins");
        assert!(outcome.forwarded().is_some(), "{outcome:?}");
        let ResponseOutcome::LocalResponse(reply) =
            stream.upstream_reset().expect("the reset passes")
        else {
            panic!("the proxy answers an upstream reset itself");
        };
        assert_eq!(reply.status, status);
        assert_eq!(reply.header("content-type"), Some(content_type));
        assert_eq!(reply.header("x-seen-by-filter"), Some("1"));
        stream.finish().expect("the stream ends");
        // Only once the upstream has the request.
        let (mut paused, _) = proxy
            .begin(0, probe_request(&[("x-probe-pause", "request")]))
            .expect("the stream begins");
        assert!(paused.upstream_reset().is_err());
    }
}
