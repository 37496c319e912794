//! Bodies and trailers: each reaches the filter in its callback, where the
//! filter can read and replace it; a body is not available before.

mod common;

use common::{exchange, options, result, start};
use sluice_host::{HttpRequest, HttpResponse};

#[test]
fn bodies_and_trailers_pass_through_their_callbacks() {
    let proxy = start(options());
    let request = HttpRequest::new("POST", "/upload", "example.com")
        .header("x-probe-echo-request-body", "1")
        .header("x-probe-echo-request-trailers", "1")
        .header("x-probe-replace-request-body", "rewritten")
        .header("x-probe-replace-response-body", "replaced")
        .body("original body")
        .trailer("x-checksum", "abc");
    let mut upstream_saw = None;
    let done = proxy
        .exchange(0, request, |forwarded| {
            upstream_saw = Some(forwarded.clone());
            HttpResponse::new(200).body("from upstream")
        })
        .expect("the exchange completes");
    let forwarded = upstream_saw.expect("the upstream was called");
    assert_eq!(forwarded.body, b"rewritten", "the whole body was replaced");
    assert_eq!(
        forwarded.trailers,
        Some(vec![("x-checksum".to_string(), "abc".to_string())])
    );
    assert_eq!(
        result(&done, "request-body").as_deref(),
        Some("original body")
    );
    assert_eq!(
        result(&done, "request-trailers").as_deref(),
        Some("x-checksum=abc")
    );
    assert_eq!(done.client.body(), b"replaced");
}

#[test]
fn trailers_can_be_added_at_the_end_of_a_body_without_trailers() {
    let proxy = start(options());
    let request = HttpRequest::new("POST", "/", "example.com")
        .header("x-probe-add-request-trailer", "x-added=1")
        .body("data");
    let (_stream, outcome) = proxy.begin(0, request).expect("the stream begins");
    let forwarded = outcome.forwarded().expect("the request is forwarded");
    assert_eq!(
        forwarded.trailers,
        Some(vec![("x-added".to_string(), "1".to_string())])
    );
}

#[test]
fn a_body_reads_as_empty_outside_its_callback() {
    let proxy = start(options());
    let request = HttpRequest::new("POST", "/", "example.com")
        .header("x-probe-raw", "request-body-status")
        .body("later");
    let done = exchange(&proxy, request);
    assert_eq!(
        result(&done, "raw-request-body-status").as_deref(),
        Some("0 value=0"),
        "in the request headers callback, as Envoy answers"
    );
}
