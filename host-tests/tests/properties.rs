//! Properties: what the filter learns about the request, the plugin and the
//! node, in Envoy's encoding or ngx_wasm_module's.

mod common;

use std::net::SocketAddr;

use common::{START_NS, exchange, options, probe, result, start};
use sluice_host::{Clock, HttpRequest, LogLevel, ProxyOptions};

fn address(text: &str) -> SocketAddr {
    text.parse().expect("a valid socket address")
}

fn with_properties(request: HttpRequest, paths: &[&str]) -> HttpRequest {
    paths.iter().fold(request, |request, path| {
        request.header("x-probe-property", path)
    })
}

#[test]
fn envoy_gives_the_client_address_with_its_port() {
    let proxy = start(options());
    let request = HttpRequest::get("/")
        .from(address("203.0.113.7:51234"))
        .header("x-probe-property", "source.address")
        .header("x-probe-property-i64", "source.port");
    let done = exchange(&proxy, request);
    assert_eq!(
        result(&done, "property-source.address").as_deref(),
        Some("0 value=203.0.113.7:51234")
    );
    assert_eq!(
        result(&done, "property-source.port").as_deref(),
        Some("0 value=51234"),
        "an integer is 8 bytes, little-endian"
    );
}

#[test]
fn envoy_writes_an_ipv6_client_address_in_brackets() {
    let proxy = start(options());
    let request = HttpRequest::get("/")
        .from(address("[2001:db8::1]:443"))
        .header("x-probe-property", "source.address");
    let done = exchange(&proxy, request);
    assert_eq!(
        result(&done, "property-source.address").as_deref(),
        Some("0 value=[2001:db8::1]:443")
    );
}

#[test]
fn ngx_wasm_module_gives_the_ip_alone_and_integers_as_text() {
    let options = ProxyOptions::ngx_wasm_module(probe())
        .clock(Clock::fake(START_NS))
        .log_level(LogLevel::Trace);
    let proxy = start(options);
    let request = with_properties(
        HttpRequest::get("/").from(address("[2001:db8::1]:443")),
        &["source.address", "source.port"],
    );
    let done = exchange(&proxy, request);
    assert_eq!(
        result(&done, "property-source.address").as_deref(),
        Some("0 value=2001:db8::1")
    );
    assert_eq!(
        result(&done, "property-source.port").as_deref(),
        Some("0 value=443")
    );
}

#[test]
fn request_properties_describe_the_request() {
    let proxy = start(options());
    let request = with_properties(
        HttpRequest::new("PUT", "/a/b?x=1&y=2", "api.example")
            .header("user-agent", "probe-test")
            .header("x-request-id", "req-1"),
        &[
            "request.path",
            "request.url_path",
            "request.query",
            "request.method",
            "request.host",
            "request.scheme",
            "request.protocol",
            "request.useragent",
            "request.id",
            "request.headers.user-agent",
        ],
    )
    .header("x-probe-property-i64", "request.time");
    let done = exchange(&proxy, request);
    let property = |path: &str| result(&done, &format!("property-{path}"));
    assert_eq!(
        property("request.path").as_deref(),
        Some("0 value=/a/b?x=1&y=2")
    );
    assert_eq!(
        property("request.url_path").as_deref(),
        Some("0 value=/a/b")
    );
    assert_eq!(
        property("request.query").as_deref(),
        Some("0 value=x=1&y=2")
    );
    assert_eq!(property("request.method").as_deref(), Some("0 value=PUT"));
    assert_eq!(
        property("request.host").as_deref(),
        Some("0 value=api.example")
    );
    assert_eq!(property("request.scheme").as_deref(), Some("0 value=http"));
    assert_eq!(
        property("request.protocol").as_deref(),
        Some("0 value=HTTP/1.1")
    );
    assert_eq!(
        property("request.useragent").as_deref(),
        Some("0 value=probe-test")
    );
    assert_eq!(property("request.id").as_deref(), Some("0 value=req-1"));
    assert_eq!(
        property("request.headers.user-agent").as_deref(),
        Some("0 value=probe-test")
    );
    assert_eq!(
        property("request.time"),
        Some(format!("0 value={START_NS}")),
        "the clock when the stream began"
    );
}

#[test]
fn plugin_and_node_properties_come_from_the_options() {
    let proxy = start(options().vm_id("limits"));
    let request = with_properties(
        HttpRequest::get("/"),
        &[
            "plugin_name",
            "plugin_root_id",
            "plugin_vm_id",
            "node.id",
            "node.cluster",
            "node",
        ],
    );
    let done = exchange(&proxy, request);
    let property = |path: &str| result(&done, &format!("property-{path}"));
    assert_eq!(property("plugin_name").as_deref(), Some("0 value=sluice"));
    assert_eq!(
        property("plugin_root_id").as_deref(),
        Some("0 value=sluice")
    );
    assert_eq!(property("plugin_vm_id").as_deref(), Some("0 value=limits"));
    assert_eq!(property("node.id").as_deref(), Some("0 value=sluice-host"));
    assert_eq!(property("node.cluster").as_deref(), Some("0 value=sluice"));
    assert_eq!(
        property("node").as_deref(),
        Some("0 value=hex:0a0b736c756963652d686f73741206736c75696365"),
        "a Node message with id (field 1) and cluster (field 2)"
    );
}

#[test]
fn missing_properties_are_not_found() {
    let proxy = start(options());
    let request = with_properties(
        HttpRequest::get("/"),
        &[
            "nothing",
            "request.nothing",
            "response.code",
            "destination.address",
            "request.referer",
        ],
    );
    let done = exchange(&proxy, request);
    for path in [
        "nothing",
        "request.nothing",
        "response.code",
        "destination.address",
        "request.referer",
    ] {
        assert_eq!(
            result(&done, &format!("property-{path}")).as_deref(),
            Some("1"),
            "{path} is NOT_FOUND"
        );
    }
}

#[test]
fn properties_set_by_the_filter_can_be_read_back_on_the_stream() {
    let proxy = start(options());
    let request = HttpRequest::get("/")
        .header("x-probe-set-property", "my.note=remember me")
        .header("x-probe-property", "my.note");
    let done = exchange(&proxy, request);
    assert_eq!(result(&done, "set-property-my.note").as_deref(), Some("0"));
    assert_eq!(
        result(&done, "property-my.note").as_deref(),
        Some("0 value=remember me")
    );
    let next = exchange(
        &proxy,
        HttpRequest::get("/").header("x-probe-property", "my.note"),
    );
    assert_eq!(
        result(&next, "property-my.note").as_deref(),
        Some("1"),
        "a property set on one stream is not seen by the next"
    );
}

#[test]
fn response_properties_describe_the_response_once_there_is_one() {
    let proxy = start(options());
    let request = HttpRequest::get("/")
        .header("x-probe-property", "response.code")
        .header("x-probe-property-later", "response.code")
        .header("x-probe-property-later", "response.code_details")
        .header("x-probe-property-later", "response.headers.server");
    let done = proxy
        .exchange(0, request, |_| {
            sluice_host::HttpResponse::new(201).header("server", "upstream")
        })
        .expect("the exchange completes");
    assert_eq!(
        result(&done, "property-response.code").as_deref(),
        Some("1"),
        "no response while the request is handled"
    );
    assert_eq!(
        result(&done, "later-property-response.code").as_deref(),
        Some("0 value=hex:c900000000000000"),
        "201 as an 8-byte little-endian integer"
    );
    assert_eq!(
        result(&done, "later-property-response.code_details").as_deref(),
        Some("0 value=via_upstream")
    );
    assert_eq!(
        result(&done, "later-property-response.headers.server").as_deref(),
        Some("0 value=upstream")
    );
}
