//! gRPC calls and streams (`proxy_grpc_call`, `proxy_grpc_stream`, send,
//! close, cancel) against real gRPC servers on loopback: tonic serving
//! `probe.Echo` (`grpc/echo_server.rs`), and `sluice-service`'s Envoy
//! rate-limit service over a real Redis. The probe opens the call from its
//! request headers, pauses the request, and reports every callback it was
//! given when the call ends (the SDK routes each callback, made on the root
//! context, to the HTTP context that made the call and makes it the
//! effective context, so the probe writes its results into that request).
//! Envoy's semantics; ngx_wasm_module, which has no gRPC calls, traps.

mod common;
#[path = "grpc/echo_server.rs"]
mod echo_server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{options, probe_request, start};
use echo_server::EchoServer;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use prost::Message;
use sluice_host::{CallLimits, ForwardedRequest, HostFlavor, Proxy, ProxyOptions, RequestOutcome};

const LONG: Duration = Duration::from_secs(10);

/// A loopback address nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address")
}

fn envoy(cluster: SocketAddr) -> ProxyOptions {
    options().cluster("echo", cluster)
}

/// Begins a probe request, expects it paused on its call, and waits for the
/// call to end and the filter to resume the request.
fn call(proxy: &Proxy, instructions: &[(&str, &str)]) -> (ForwardedRequest, Duration) {
    let started = Instant::now();
    let (mut stream, outcome) = proxy
        .begin(0, probe_request(instructions))
        .expect("the stream begins");
    assert_eq!(
        outcome,
        RequestOutcome::Paused,
        "the call pauses the request: {instructions:?}"
    );
    let outcome = stream.wait_request(LONG).expect("an outcome");
    let elapsed = started.elapsed();
    (forwarded(outcome), elapsed)
}

/// A probe request that does not wait (its call was refused or cancelled).
fn at_once(proxy: &Proxy, instructions: &[(&str, &str)]) -> ForwardedRequest {
    let (_stream, outcome) = proxy
        .begin(0, probe_request(instructions))
        .expect("the stream begins");
    forwarded(outcome)
}

fn forwarded(outcome: RequestOutcome) -> ForwardedRequest {
    match outcome {
        RequestOutcome::Forward(request) => request,
        other => panic!("the request was forwarded: {other:?}"),
    }
}

fn result<'a>(request: &'a ForwardedRequest, name: &str) -> Option<&'a str> {
    request.header(&format!("x-probe-r-{name}"))
}

/// Waits until `condition` holds (within [`LONG`]).
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + LONG;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The gRPC deliveries the host logged.
fn deliveries(proxy: &Proxy) -> Vec<String> {
    proxy
        .logs()
        .records()
        .iter()
        .filter(|record| {
            record.message.starts_with("gRPC ") && record.message.contains("delivered")
        })
        .map(|record| record.message.clone())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Bytes the probe reported (`hex:` when not printable).
fn reported_bytes(value: &str) -> Vec<u8> {
    match value.strip_prefix("hex:") {
        Some(digits) => (0..digits.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&digits[at..at + 2], 16).expect("hex digits"))
            .collect(),
        None => value.as_bytes().to_vec(),
    }
}

/// A serialized `GrpcService { envoy_grpc { cluster_name, authority } }`
/// with one `initial_metadata` entry.
fn grpc_service(cluster: &str, authority: &str, metadata: (&str, &str)) -> Vec<u8> {
    fn field(number: u8, value: &[u8]) -> Vec<u8> {
        let mut bytes = vec![(number << 3) | 2, value.len() as u8];
        bytes.extend_from_slice(value);
        bytes
    }
    let mut envoy_grpc = field(1, cluster.as_bytes());
    if !authority.is_empty() {
        envoy_grpc.extend(field(2, authority.as_bytes()));
    }
    let mut header = field(1, metadata.0.as_bytes());
    header.extend(field(2, metadata.1.as_bytes()));
    let mut service = field(1, &envoy_grpc);
    service.extend(field(5, &header));
    service
}

#[test]
fn a_unary_call_delivers_its_reply_to_the_stream_that_made_it() {
    let server = EchoServer::start();
    let proxy = start(envoy(server.address));
    let (request, _) = call(
        &proxy,
        &[
            ("x-probe-grpc-call", "echo"),
            ("x-probe-grpc-message", "hello"),
            ("x-probe-grpc-metadata", "x-tenant=blue"),
            ("x-probe-grpc-timeout-ms", "1500"),
        ],
    );
    assert_eq!(result(&request, "grpc-call"), Some("0"));
    assert_eq!(result(&request, "grpc-status"), Some("0"));
    assert_eq!(result(&request, "grpc-reply"), Some("echo: hello"));
    assert_eq!(
        result(&request, "grpc-events"),
        Some("response"),
        "as in Envoy, a unary call gets one callback: no metadata callbacks"
    );
    assert_eq!(result(&request, "grpc-get-status"), Some("0:"));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/probe.Echo/Unary");
    assert_eq!(
        seen[0].authority.as_deref(),
        Some("echo"),
        ":authority is the cluster name"
    );
    assert_eq!(
        seen[0].header("x-tenant"),
        Some("blue"),
        "the filter's metadata"
    );
    assert_eq!(seen[0].header("grpc-timeout"), Some("1500m"));
    assert_eq!(seen[0].header("te"), Some("trailers"));
    assert_eq!(seen[0].header("content-type"), Some("application/grpc"));
    assert_eq!(seen[0].messages, [b"hello".to_vec()]);
    assert!(
        deliveries(&proxy)
            .iter()
            .any(|line| line.starts_with("gRPC 5: message (11 bytes)")),
        "the first call token is Envoy's first (5): {:?}",
        deliveries(&proxy)
    );
}

#[test]
fn a_server_error_reaches_proxy_on_grpc_close_with_its_code_and_message() {
    let server = EchoServer::start();
    let proxy = start(envoy(server.address));
    let (request, _) = call(
        &proxy,
        &[
            ("x-probe-grpc-call", "echo"),
            ("x-probe-grpc-method", "Fail"),
        ],
    );
    assert_eq!(result(&request, "grpc-status"), Some("5"), "NOT_FOUND");
    assert_eq!(
        result(&request, "grpc-get-status"),
        Some("5:no%20such%20key"),
        "the message as the server sent it (Envoy does not percent-decode it)"
    );
    assert_eq!(result(&request, "grpc-reply"), None);
    assert_eq!(result(&request, "grpc-events"), Some("response"));
}

#[test]
fn a_call_that_times_out_is_closed_with_deadline_exceeded_and_gets_no_reply() {
    let server = EchoServer::start();
    let proxy = start(envoy(server.address));
    let (request, elapsed) = call(
        &proxy,
        &[
            ("x-probe-grpc-call", "echo"),
            ("x-probe-grpc-method", "Slow"),
            ("x-probe-grpc-message", "600"),
            ("x-probe-grpc-timeout-ms", "200"),
        ],
    );
    assert_eq!(
        result(&request, "grpc-status"),
        Some("4"),
        "DEADLINE_EXCEEDED"
    );
    assert_eq!(
        result(&request, "grpc-get-status"),
        Some("4:upstream request timeout")
    );
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(600),
        "closed after {elapsed:?}, before the server's reply"
    );
    // The server answers at 600 ms: nothing more reaches the filter.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        deliveries(&proxy),
        [
            "gRPC 5: close (status 4, message `upstream request timeout`) delivered to the root context"
        ]
    );
    assert_eq!(server.seen()[0].header("grpc-timeout"), Some("200m"));
}

#[test]
fn a_cancelled_call_gets_no_callback_at_all() {
    let server = EchoServer::start();
    let proxy = start(envoy(server.address).plugin_config("tick_ms=60000"));
    // Cancelled from the root context (the call is the root's, as in Envoy)
    // once the server has it.
    let (stream, outcome) = proxy
        .begin(
            0,
            probe_request(&[
                ("x-probe-grpc-call", "echo"),
                ("x-probe-grpc-method", "Slow"),
                ("x-probe-grpc-message", "800"),
                ("x-probe-grpc-timeout-ms", "5000"),
                ("x-probe-grpc-end", "cancel-on-tick"),
            ]),
        )
        .expect("the stream begins");
    assert_eq!(outcome, RequestOutcome::Paused);
    eventually("the call reached the server", || !server.seen().is_empty());
    assert!(proxy.tick(0).expect("the worker ticks"));
    assert!(proxy.logs().contains("probe grpc cancelled 5 on tick: 0"));
    // Past the server's answer.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(deliveries(&proxy).is_empty(), "{:?}", deliveries(&proxy));
    drop(stream);

    // Cancelled at once, call and stream alike.
    let request = at_once(
        &proxy,
        &[
            ("x-probe-grpc-call", "echo"),
            ("x-probe-grpc-method", "Slow"),
            ("x-probe-grpc-message", "100"),
            ("x-probe-grpc-end", "cancel"),
        ],
    );
    assert_eq!(result(&request, "grpc-call"), Some("0"));
    assert_eq!(result(&request, "grpc-end"), Some("0"), "cancel answers OK");
    let request = at_once(
        &proxy,
        &[
            ("x-probe-grpc-stream", "echo"),
            ("x-probe-grpc-send", "one"),
            ("x-probe-grpc-end", "cancel"),
        ],
    );
    assert_eq!(result(&request, "grpc-end"), Some("0"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(deliveries(&proxy).is_empty(), "{:?}", deliveries(&proxy));
    assert!(!proxy.logs().contains("probe grpc response"));
}

#[test]
fn an_unknown_cluster_gets_envoys_answers() {
    let server = EchoServer::start();
    let proxy = start(envoy(server.address));
    let request = at_once(&proxy, &[("x-probe-grpc-call", "nowhere")]);
    assert_eq!(
        result(&request, "grpc-call"),
        Some("4"),
        "a name that is not a cluster: PARSE_FAILURE"
    );
    let request = at_once(&proxy, &[("x-probe-grpc-stream", "nowhere")]);
    assert_eq!(result(&request, "grpc-stream"), Some("4"));

    // A serialized GrpcService naming an unknown cluster: Envoy's gRPC client
    // refuses the call (INTERNAL_FAILURE) and closes the token it never gave
    // out (the SDK drops that close).
    let service = hex(&grpc_service("nowhere", "", ("x-tenant", "blue")));
    let request = at_once(
        &proxy,
        &[
            ("x-probe-grpc-call", "placeholder"),
            ("x-probe-grpc-upstream-hex", &service),
        ],
    );
    assert_eq!(
        result(&request, "grpc-call"),
        Some("10"),
        "INTERNAL_FAILURE"
    );
    eventually("the close of the refused call", || {
        deliveries(&proxy).iter().any(|line| {
            line == "gRPC 5: close (status 14, message `Cluster not available`) delivered to the root context"
        })
    });
    assert!(server.seen().is_empty(), "nothing was sent");
    let next = common::exchange(&proxy, sluice_host::HttpRequest::get("/"));
    assert_eq!(next.status(), Some(200), "the VM did not trap");
}

#[test]
fn a_serialized_grpc_service_sets_the_authority_and_the_initial_metadata() {
    let server = EchoServer::start();
    let proxy = start(envoy(server.address));
    let service = hex(&grpc_service(
        "echo",
        "rls.internal",
        ("x-service-tag", "gold"),
    ));
    let (request, _) = call(
        &proxy,
        &[
            ("x-probe-grpc-call", "placeholder"),
            ("x-probe-grpc-upstream-hex", &service),
            ("x-probe-grpc-message", "hi"),
        ],
    );
    assert_eq!(result(&request, "grpc-reply"), Some("echo: hi"));
    let seen = server.seen();
    assert_eq!(seen[0].authority.as_deref(), Some("rls.internal"));
    assert_eq!(seen[0].header("x-service-tag"), Some("gold"));
}

#[test]
fn a_refused_connection_is_closed_with_unavailable() {
    let proxy = start(envoy(closed_port()));
    let (request, elapsed) = call(&proxy, &[("x-probe-grpc-call", "echo")]);
    assert_eq!(result(&request, "grpc-status"), Some("14"), "UNAVAILABLE");
    let status = result(&request, "grpc-get-status").unwrap_or_default();
    assert!(
        status.starts_with(
            "14:upstream connect error or disconnect/reset before headers. reset reason: remote \
             connection failure, transport failure reason: delayed connect error: "
        ),
        "{status}"
    );
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");

    // A stream sees the router's trailers-only local reply.
    let (request, _) = call(&proxy, &[("x-probe-grpc-stream", "echo")]);
    assert_eq!(
        result(&request, "grpc-events"),
        Some("initial,trailing,close")
    );
    assert_eq!(result(&request, "grpc-initial-metadata"), Some("0"));
    assert_eq!(
        result(&request, "grpc-trailing-metadata"),
        Some("4"),
        ":status, content-type, grpc-status, grpc-message"
    );
    assert_eq!(result(&request, "grpc-status"), Some("14"));
}

#[test]
fn a_stream_sends_several_messages_and_receives_every_reply_in_order() {
    let server = EchoServer::start();
    let proxy = start(envoy(server.address));
    let (request, _) = call(
        &proxy,
        &[
            ("x-probe-grpc-stream", "echo"),
            ("x-probe-grpc-metadata", "x-tenant=green"),
            ("x-probe-grpc-send", "one"),
            ("x-probe-grpc-send", "two"),
            ("x-probe-grpc-send", "three"),
            ("x-probe-grpc-echo-metadata", "x-stream"),
            ("x-probe-grpc-echo-metadata", "grpc-status"),
        ],
    );
    assert_eq!(result(&request, "grpc-stream"), Some("0"));
    assert_eq!(result(&request, "grpc-send"), Some("0,0,0"));
    assert_eq!(result(&request, "grpc-end"), Some("0"), "close half-closes");
    assert_eq!(
        result(&request, "grpc-events"),
        Some("initial,message,message,message,trailing,close")
    );
    assert_eq!(
        result(&request, "grpc-messages"),
        Some("echo: one|echo: two|echo: three")
    );
    assert_eq!(result(&request, "grpc-initial-x-stream"), Some("open"));
    assert_eq!(result(&request, "grpc-trailing-grpc-status"), Some("0"));
    assert_eq!(result(&request, "grpc-status"), Some("0"));
    assert_eq!(result(&request, "grpc-get-status"), Some("0:"));
    let seen = server.seen();
    assert_eq!(seen[0].path, "/probe.Echo/Stream");
    assert_eq!(seen[0].header("x-tenant"), Some("green"));
    assert_eq!(
        seen[0].header("grpc-timeout"),
        None,
        "streams have no timeout"
    );
    assert_eq!(
        seen[0].messages,
        [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
    assert!(
        deliveries(&proxy)
            .iter()
            .all(|line| line.starts_with("gRPC 6: ")),
        "the first stream token is Envoy's first (6)"
    );

    // Ending the sending half with the last message works the same.
    let (request, _) = call(
        &proxy,
        &[
            ("x-probe-grpc-stream", "echo"),
            ("x-probe-grpc-send", "only"),
            ("x-probe-grpc-end", "end-stream"),
        ],
    );
    assert_eq!(result(&request, "grpc-messages"), Some("echo: only"));
    assert_eq!(result(&request, "grpc-status"), Some("0"));
}

#[test]
fn a_stream_the_server_ends_with_an_error_reports_it_in_its_close() {
    let server = EchoServer::start();
    let proxy = start(envoy(server.address));
    let (request, _) = call(
        &proxy,
        &[
            ("x-probe-grpc-stream", "echo"),
            ("x-probe-grpc-method", "StreamFail"),
            ("x-probe-grpc-send", "one"),
            ("x-probe-grpc-send", "two"),
            ("x-probe-grpc-end", "open"),
            ("x-probe-grpc-echo-metadata", "grpc-message"),
        ],
    );
    assert_eq!(
        result(&request, "grpc-events"),
        Some("initial,message,trailing,close")
    );
    assert_eq!(result(&request, "grpc-messages"), Some("echo: one"));
    assert_eq!(result(&request, "grpc-status"), Some("10"), "ABORTED");
    assert_eq!(result(&request, "grpc-get-status"), Some("10:stop"));
    assert_eq!(result(&request, "grpc-trailing-grpc-message"), Some("stop"));
}

#[test]
fn concurrent_calls_each_reach_the_stream_that_made_them() {
    let server = EchoServer::start();
    let proxy = start(envoy(server.address).workers(2));
    let mut streams = Vec::new();
    for index in 0..24 {
        let message = format!("{index}");
        let (stream, outcome) = proxy
            .begin(
                index % 2,
                probe_request(&[
                    ("x-probe-grpc-call", "echo"),
                    ("x-probe-grpc-message", &message),
                ]),
            )
            .expect("the stream begins");
        assert_eq!(outcome, RequestOutcome::Paused);
        streams.push(stream);
    }
    for (index, mut stream) in streams.into_iter().enumerate() {
        let request = forwarded(stream.wait_request(LONG).expect("an outcome"));
        let expected = format!("echo: {index}");
        assert_eq!(result(&request, "grpc-reply"), Some(expected.as_str()));
    }
    assert_eq!(server.seen().len(), 24);
}

#[test]
fn calls_and_streams_in_flight_are_bounded_per_vm() {
    let server = EchoServer::start();
    let limits = CallLimits {
        max_in_flight_per_vm: 2,
        ..CallLimits::default()
    };
    let proxy = start(envoy(server.address).call_limits(limits));
    let slow = [
        ("x-probe-grpc-call", "echo"),
        ("x-probe-grpc-method", "Slow"),
        ("x-probe-grpc-message", "2000"),
        ("x-probe-grpc-timeout-ms", "3000"),
    ];
    let (_first, first) = proxy.begin(0, probe_request(&slow)).expect("begins");
    let (_second, second) = proxy
        .begin(
            0,
            probe_request(&[
                ("x-probe-grpc-stream", "echo"),
                ("x-probe-grpc-end", "open"),
            ]),
        )
        .expect("begins");
    assert_eq!(
        (first, second),
        (RequestOutcome::Paused, RequestOutcome::Paused)
    );
    let third = at_once(&proxy, &slow);
    assert_eq!(
        result(&third, "grpc-call"),
        Some("10"),
        "INTERNAL_FAILURE beyond the limit"
    );
    assert!(
        proxy
            .logs()
            .contains("2 calls already in flight on this VM")
    );
    let http = at_once(&proxy, &[("x-probe-http-call", "echo")]);
    assert_eq!(
        result(&http, "http-call"),
        Some("10"),
        "HTTP calls share the bound"
    );
}

#[test]
fn a_reply_over_the_message_limit_is_closed_with_resource_exhausted() {
    let server = EchoServer::start();
    let limits = CallLimits {
        max_response_body: 64,
        ..CallLimits::default()
    };
    let proxy = start(envoy(server.address).call_limits(limits));
    let (request, _) = call(
        &proxy,
        &[
            ("x-probe-grpc-call", "echo"),
            ("x-probe-grpc-method", "Big"),
            ("x-probe-grpc-message", "65"),
        ],
    );
    assert_eq!(
        result(&request, "grpc-status"),
        Some("8"),
        "RESOURCE_EXHAUSTED"
    );
    let (request, _) = call(
        &proxy,
        &[
            ("x-probe-grpc-call", "echo"),
            ("x-probe-grpc-method", "Big"),
            ("x-probe-grpc-message", "64"),
        ],
    );
    assert_eq!(result(&request, "grpc-status"), Some("0"), "at the limit");
}

#[test]
fn a_stream_with_more_unsent_bytes_than_the_limit_is_reset() {
    let server = EchoServer::start();
    let limits = CallLimits {
        max_response_body: 64,
        ..CallLimits::default()
    };
    let proxy = start(envoy(server.address).call_limits(limits));
    let big = "x".repeat(70);
    let (request, _) = call(
        &proxy,
        &[
            ("x-probe-grpc-stream", "echo"),
            ("x-probe-grpc-send", &big),
            ("x-probe-grpc-send", "after"),
        ],
    );
    assert_eq!(
        result(&request, "grpc-send"),
        Some("0,0"),
        "the sends answer OK; the second goes nowhere"
    );
    assert_eq!(result(&request, "grpc-events"), Some("trailing,close"));
    assert_eq!(
        result(&request, "grpc-status"),
        Some("8"),
        "RESOURCE_EXHAUSTED"
    );
    assert_eq!(
        result(&request, "grpc-get-status"),
        Some("8:more than 64 bytes wait to be sent on the stream")
    );
    assert!(server.seen().iter().all(|seen| seen.messages.is_empty()));
}

#[test]
fn send_close_and_cancel_answer_as_envoy_for_tokens_it_does_not_have() {
    let proxy = start(options());
    let done = common::exchange(
        &proxy,
        probe_request(&[
            ("x-probe-raw", "grpc-send"),
            ("x-probe-raw", "grpc-cancel"),
            ("x-probe-raw", "grpc-close"),
            ("x-probe-raw", "grpc-call"),
            ("x-probe-raw", "grpc-stream"),
        ]),
    );
    let raw = |name: &str| common::result(&done, &format!("raw-{name}"));
    assert_eq!(
        raw("grpc-send").as_deref(),
        Some("2"),
        "token 1 is a call's"
    );
    assert_eq!(raw("grpc-cancel").as_deref(), Some("1"), "NOT_FOUND");
    assert_eq!(raw("grpc-close").as_deref(), Some("1"), "NOT_FOUND");
    assert_eq!(
        raw("grpc-call").as_deref(),
        Some("4"),
        "no cluster `upstream`"
    );
    assert_eq!(raw("grpc-stream").as_deref(), Some("4"));
}

// The sluice service's Envoy rate-limit API, over a real Redis.

const RLS_CONFIG: &str = r#"{
    "global": {"cluster": "limits", "domain": "edge"},
    "rules": [
        {"name": "per-client", "scope": "global", "key": ["client_ip"],
         "limit": {"requests": 2, "period": "1m"}, "algorithm": "fixed_window"}
    ]
}"#;

fn should_rate_limit(domain: &str) -> String {
    let request = RateLimitRequest {
        domain: domain.to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "rule".to_owned(),
                    value: "per-client".to_owned(),
                },
                Entry {
                    key: "remote_address".to_owned(),
                    value: "203.0.113.7".to_owned(),
                },
            ],
            ..Default::default()
        }],
        hits_addend: 0,
    };
    hex(&request.encode_to_vec())
}

#[test]
fn the_sluice_service_answers_should_rate_limit_through_the_host() {
    let redis = sluice_redis_server::RedisServer::start().expect("a test Redis");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the service");
    let running = runtime.block_on(async {
        let store = sluice_redis::RedisStore::connect(sluice_redis::RedisConfig::new(redis.url()))
            .await
            .expect("the store connects to the test Redis");
        let policy =
            sluice_policy::Policy::from_json(RLS_CONFIG.as_bytes()).expect("a valid config");
        let mut domains = sluice_service::domains::Domains::default();
        domains
            .insert(sluice_service::domains::Domain::new(
                policy,
                "rls.json".into(),
            ))
            .expect("one domain");
        let decider = Arc::new(sluice_service::decider::Decider::new(
            domains,
            Arc::new(store),
            sluice_service::clock::ManualClock::new(common::START_NS),
            sluice_service::metrics::Metrics::new(),
            1024,
            Duration::from_secs(2),
        ));
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        sluice_service::server::start(
            decider,
            Some(loopback),
            None,
            sluice_service::server::Limits::default(),
        )
        .await
        .expect("the service starts")
    });
    let address = running.grpc_addr().expect("a gRPC listener");
    let proxy = start(options().cluster("limits", address));
    let ask = |domain: &str| {
        let message = should_rate_limit(domain);
        let (request, _) = call(
            &proxy,
            &[
                ("x-probe-grpc-call", "limits"),
                (
                    "x-probe-grpc-service",
                    "envoy.service.ratelimit.v3.RateLimitService",
                ),
                ("x-probe-grpc-method", "ShouldRateLimit"),
                ("x-probe-grpc-message-hex", &message),
            ],
        );
        request
    };
    for expected in [Code::Ok, Code::Ok, Code::OverLimit] {
        let request = ask("edge");
        assert_eq!(result(&request, "grpc-status"), Some("0"));
        let reply = reported_bytes(result(&request, "grpc-reply").expect("a reply"));
        let response = RateLimitResponse::decode(reply.as_slice()).expect("a RateLimitResponse");
        assert_eq!(response.overall_code, expected as i32, "{response:?}");
    }
    let request = ask("no-such-domain");
    assert_eq!(result(&request, "grpc-status"), Some("5"), "NOT_FOUND");
    let status = result(&request, "grpc-get-status").unwrap_or_default();
    assert!(status.starts_with("5:") && status.len() > 2, "{status}");
}

// ngx_wasm_module.

#[test]
fn under_ngx_grpc_calls_and_streams_trap_as_they_are_not_implemented_there() {
    let proxy = start(
        options()
            .flavor(HostFlavor::NgxWasmModule)
            .cluster("echo", closed_port()),
    );
    for (instruction, function) in [
        ("x-probe-grpc-call", "proxy_grpc_call"),
        ("x-probe-grpc-stream", "proxy_grpc_stream"),
    ] {
        let (_stream, outcome) = proxy
            .begin(0, probe_request(&[(instruction, "echo")]))
            .expect("the stream begins");
        let failure = outcome
            .failure()
            .unwrap_or_else(|| panic!("the filter trapped: {outcome:?}"));
        assert_eq!(failure.status, 500);
        assert!(
            failure.trap.contains(&format!(
                "host trap (function not yet implemented): {function}"
            )),
            "{}",
            failure.trap
        );
    }
}
