//! Header maps: what the filter reads is what the client sent, and what it
//! writes is what the upstream and the client receive, serialised as the
//! proxy-wasm SDK expects.

mod common;

use common::{exchange, options, probe_request, result, start};
use sluice_host::{HttpRequest, HttpResponse, RequestOutcome};

#[test]
fn the_filter_reads_every_request_header_including_pseudo_headers() {
    let proxy = start(options());
    let request = HttpRequest::new("POST", "/items?page=2", "api.example")
        .header("X-Mixed-Case", "value")
        .header("accept", "a")
        .header("accept", "b")
        .header("x-probe-echo-request-headers", "1");
    let done = exchange(&proxy, request);
    assert_eq!(
        result(&done, "request-headers").as_deref(),
        Some(
            ":method=POST,:path=/items?page=2,:authority=api.example,:scheme=http,x-mixed-case=value,accept=a,accept=b"
        ),
        "names arrive lower-cased, in order, with repeated names kept"
    );
}

#[test]
fn request_header_edits_reach_the_upstream() {
    let proxy = start(options());
    let request = HttpRequest::get("/")
        .header("x-keep", "1")
        .header("x-drop", "1")
        .header("x-drop", "2")
        .header("x-change", "old")
        .header("x-change", "older")
        .header("x-probe-add-request-header", "x-added=new")
        .header("x-probe-remove-request-header", "x-drop")
        .header("x-probe-replace-request-header", "x-change=new")
        .header("x-probe-replace-request-header", "x-created=yes")
        .header("x-probe-get-request-header", "x-keep")
        .header("x-probe-get-request-header", "x-absent");
    let (stream, outcome) = proxy.begin(0, request).expect("the stream begins");
    let RequestOutcome::Forward(forwarded) = outcome else {
        panic!("the request is forwarded, got {outcome:?}");
    };
    assert_eq!(forwarded.header("x-added"), Some("new"));
    assert_eq!(forwarded.header("x-drop"), None, "every value is removed");
    let changes: Vec<_> = forwarded
        .headers
        .iter()
        .filter(|(name, _)| name == "x-change")
        .collect();
    assert_eq!(changes.len(), 1, "replace keeps one value");
    assert_eq!(forwarded.header("x-change"), Some("new"));
    assert_eq!(
        forwarded.header("x-created"),
        Some("yes"),
        "replace adds a missing header"
    );
    assert_eq!(forwarded.header("x-probe-r-get-x-keep"), Some("0 value=1"));
    assert_eq!(
        forwarded.header("x-probe-r-get-x-absent"),
        Some("1"),
        "NOT_FOUND"
    );
    stream.finish().expect("the stream ends");
}

#[test]
fn setting_the_whole_request_map_replaces_it() {
    let proxy = start(options());
    let request = probe_request(&[(
        "x-probe-set-request-headers",
        ":method=GET,:path=/new,x-only=1",
    )]);
    let (_stream, outcome) = proxy.begin(0, request).expect("the stream begins");
    let forwarded = outcome.forwarded().expect("the request is forwarded");
    let names: Vec<&str> = forwarded
        .headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(names, [":method", ":path", "x-only"]);
    assert_eq!(forwarded.header(":path"), Some("/new"));
}

#[test]
fn response_header_edits_reach_the_client() {
    let proxy = start(options());
    let request = probe_request(&[
        ("x-probe-add-response-header", "x-added=1"),
        ("x-probe-replace-response-header", "server=probe"),
        ("x-probe-remove-response-header", "x-secret"),
    ]);
    let done = proxy
        .exchange(0, request, |_| {
            HttpResponse::new(201)
                .header("server", "upstream")
                .header("x-secret", "s")
                .body("created")
        })
        .expect("the exchange completes");
    assert_eq!(done.status(), Some(201));
    assert_eq!(done.header("x-added"), Some("1"));
    assert_eq!(done.header("server"), Some("probe"));
    assert_eq!(done.header("x-secret"), None);
    assert_eq!(done.client.body(), b"created");
}

#[test]
fn the_filter_can_change_the_status_through_the_status_pseudo_header() {
    let proxy = start(options());
    let request = probe_request(&[("x-probe-replace-response-header", ":status=418")]);
    let done = exchange(&proxy, request);
    assert_eq!(done.status(), Some(418));
    assert_eq!(
        done.header(":status"),
        None,
        "the status is not a header of the result"
    );
}

#[test]
fn request_headers_are_out_of_reach_once_their_callback_continued() {
    let proxy = start(options());
    let done = exchange(
        &proxy,
        probe_request(&[("x-probe-get-request-header-later", ":path")]),
    );
    assert_eq!(
        result(&done, "later-get-:path").as_deref(),
        Some("2"),
        "BAD_ARGUMENT in the response callback, as in Envoy"
    );
}

#[test]
fn header_maps_of_the_other_direction_are_empty_before_they_exist() {
    let proxy = start(options());
    let request = probe_request(&[
        ("x-probe-raw", "response-headers-in-request"),
        ("x-probe-raw", "header-map-size"),
        ("x-probe-raw", "map-bad-type"),
    ]);
    let done = exchange(&proxy, request);
    assert_eq!(
        result(&done, "raw-response-headers-in-request").as_deref(),
        Some("0 value=0"),
        "Envoy answers an empty map, not an error"
    );
    let size = result(&done, "raw-header-map-size").expect("a result");
    assert!(size.starts_with("0 value="), "{size}");
    assert_eq!(
        result(&done, "raw-map-bad-type").as_deref(),
        Some("2"),
        "BAD_ARGUMENT"
    );
}
