//! Target `filter`: the real sluice `.wasm` in the wasmtime host, driven with arbitrary
//! requests (method, target, authority, any headers, header values that are not UTF-8, any peer
//! address text), on two VMs, with the clock moving forwards and backwards between requests.
//!
//! The filter never traps (a trap would fail the stream with 503 and replace the VM): every
//! request is either forwarded (200 from the upstream) or denied with the configured 429 and a
//! `Retry-After`, and no panic reaches the log.

use std::sync::OnceLock;
use std::time::Duration;

use sluice_host::test_filters::SLUICE_FILTER_WASM;
use sluice_host::{
    Clock, FilterModule, HttpRequest, HttpResponse, LogLevel, Proxy, ProxyOptions, RequestOutcome,
};

use crate::fuzzed_request::{self, NAMES};
use crate::input::Input;

/// 2026-01-01T00:00:00Z in nanoseconds.
const T0: u64 = 1_767_225_600_000_000_000;

/// Every kind of key part, each algorithm, a header cost, exemptions, and the client address
/// from `X-Forwarded-For` behind two proxies. Small tables, so buckets fill and evict.
const CONFIG: &str = r#"{
    "client_ip": {"source": "x_forwarded_for", "trusted_hops": 2},
    "exempt": {"paths": ["/healthz"], "path_prefixes": ["/metrics"], "cors_preflight": true},
    "response": {"headers": "both"},
    "store": {"max_keys": 16, "cas_retries": 2},
    "rules": [
        {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 5, "period": "10s"}},
        {"name": "per-prefix", "key": [{"client_ip": {"ipv4_prefix": 24, "ipv6_prefix": 48}}],
         "algorithm": "fixed_window", "limit": {"requests": 20, "period": "1m"}},
        {"name": "by-credentials", "match": {"path_prefixes": ["/api/"]},
         "key": [{"header": "x-api-key", "secret": true}, {"cookie": "session"},
                 {"query": "user"}, "path", "method", "host"],
         "when_key_missing": "skip", "algorithm": "sliding_log",
         "limit": {"requests": 3, "period": "1s"},
         "cost": {"header": "x-cost", "default": 1, "max": 3}, "failure_mode": "closed"},
        {"name": "by-host", "match": {"hosts": ["*.example.com", "example.org"]},
         "key": ["host"], "algorithm": "sliding_window",
         "limit": {"requests": 4, "period": "500ms"}}
    ]
}"#;

const WORKERS: usize = 2;

/// One proxy for the whole run: the module is compiled once, and state carries over from one
/// input to the next, as in a proxy that has been up for a while.
pub fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        let module = FilterModule::from_file(SLUICE_FILTER_WASM).expect("the filter compiles");
        Proxy::start(
            ProxyOptions::new(module)
                .plugin_config(CONFIG)
                .workers(WORKERS)
                .clock(Clock::fake(T0))
                // Errors only: a panic's message is one; the log does not grow with the run.
                .log_level(LogLevel::Error)
                .pause_timeout(Duration::from_secs(5)),
        )
        .expect("the filter accepts its configuration")
    })
}

pub fn run(data: &[u8]) {
    let proxy = proxy();
    let mut input = Input::new(data);
    let worker = usize::from(input.byte()) % WORKERS;
    // Up to ~65 s forwards, or up to ~16 s backwards (a clock stepped back by NTP).
    let step = input.u16();
    let clock = proxy.clock().as_fake().expect("a fake clock");
    let now = clock.now_ns();
    let next = if step & 1 == 0 {
        now + u64::from(step) * 1_000_000
    } else {
        now.saturating_sub(u64::from(step >> 2) * 1_000_000).max(T0)
    };
    clock.set_ns(next);

    let fuzzed = fuzzed_request::read(&mut input);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut request = HttpRequest::new(
        &text(&fuzzed.method),
        &text(&fuzzed.path),
        &text(&fuzzed.authority),
    );
    for (name, value) in &fuzzed.headers {
        request = request.header_bytes(name, value.clone());
    }
    // Values as raw bytes, as a client may send them (obs-text) and Envoy passes them on.
    for _ in 0..input.byte() % 3 {
        let name = input.pick(NAMES);
        request = request.header_bytes(name, input.chunk());
    }
    request = match &fuzzed.peer {
        Some(text) => request.source_address(text),
        None => request.without_source_address(),
    };

    let exchange = proxy
        .exchange(worker, request, |_| HttpResponse::new(200))
        .expect("the exchange completes");
    let status = exchange.client.status();
    match &exchange.request {
        RequestOutcome::Forward(_) => assert_eq!(status, Some(200)),
        RequestOutcome::LocalResponse(_) => {
            assert_eq!(status, Some(429));
            assert!(exchange.client.header("retry-after").is_some());
        }
        other => panic!(
            "the filter failed the stream: {other:?}; logs: {:?}",
            proxy.logs().messages()
        ),
    }
    assert!(
        !proxy.logs().contains("panic"),
        "the filter panicked: {:?}",
        proxy.logs().messages()
    );
}
