//! HTTP calls (`proxy_http_call`) against a real HTTP/1.1 server on
//! loopback: the probe dispatches a call from its request headers, pauses the
//! request, and in `proxy_on_http_call_response` reports what it was given and
//! resumes (or answers) the stream. Envoy's semantics by default, ngx_wasm_module's
//! where they differ.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{options, probe_request, start};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sluice_host::{
    CallLimits, ForwardedRequest, HostFlavor, LogLevel, Proxy, ProxyOptions, RequestOutcome,
};

const LONG: Duration = Duration::from_secs(10);

/// A request as the test upstream saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate == name)
            .map(|(_, value)| value.as_str())
    }
}

type Reply = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;
type Handler = Arc<dyn Fn(Seen) -> Reply + Send + Sync>;

/// A tiny HTTP/1.1 server on a free loopback port, answering with `handler`.
struct Upstream {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(body.into()))
        .expect("a valid test response")
}

impl Upstream {
    fn start(handler: impl Fn(Seen) -> Reply + Send + Sync + 'static) -> Upstream {
        let handler: Handler = Arc::new(handler);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the test upstream");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a free loopback port");
        let address = listener.local_addr().expect("a bound address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&seen);
        runtime.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let handler = Arc::clone(&handler);
                        let recorded = Arc::clone(&recorded);
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|collected| collected.to_bytes().to_vec())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.to_string(),
                                host: parts
                                    .headers
                                    .get("host")
                                    .and_then(|value| value.to_str().ok())
                                    .map(str::to_string),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(name, value)| {
                                        (
                                            name.to_string(),
                                            value.to_str().unwrap_or_default().to_string(),
                                        )
                                    })
                                    .collect(),
                                body,
                            };
                            if let Ok(mut all) = recorded.lock() {
                                all.push(seen.clone());
                            }
                            Ok::<_, Infallible>(handler(seen).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Upstream {
            address,
            seen,
            _runtime: runtime,
        }
    }

    /// Answers every request with `status` and `body` at once.
    fn answering(status: u16, body: &'static str) -> Upstream {
        Upstream::start(move |_| Box::pin(async move { reply(status, &[], body) }))
    }

    /// Never answers.
    fn silent() -> Upstream {
        Upstream::start(|_| {
            Box::pin(async {
                std::future::pending::<()>().await;
                reply(500, &[], "unreachable")
            })
        })
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|all| all.clone()).unwrap_or_default()
    }
}

/// A loopback address nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address")
}

fn envoy(cluster: SocketAddr) -> ProxyOptions {
    options().cluster("limits", cluster)
}

fn header<'a>(forwarded: &'a ForwardedRequest, name: &str) -> Option<&'a str> {
    forwarded.header(name)
}

/// Begins a probe request, expects it paused on its call, and waits for the
/// filter to resume or answer it.
fn call(proxy: &Proxy, instructions: &[(&str, &str)]) -> (RequestOutcome, Duration) {
    let started = Instant::now();
    let (mut stream, outcome) = proxy
        .begin(0, probe_request(instructions))
        .expect("the stream begins");
    assert_eq!(
        outcome,
        RequestOutcome::Paused,
        "the call pauses the request"
    );
    let outcome = stream.wait_request(LONG).expect("an outcome");
    (outcome, started.elapsed())
}

fn forwarded(outcome: &RequestOutcome) -> &ForwardedRequest {
    outcome
        .forwarded()
        .unwrap_or_else(|| panic!("the request was forwarded: {outcome:?}"))
}

#[test]
fn a_call_delivers_status_headers_and_body_to_the_stream_that_made_it() {
    let upstream = Upstream::start(|seen| {
        Box::pin(async move {
            let body = format!("decided {}", seen.path);
            reply(201, &[("x-reply", "yes")], body)
        })
    });
    let proxy = start(envoy(upstream.address));
    let (outcome, _) = call(
        &proxy,
        &[
            ("x-probe-http-call", "limits"),
            ("x-probe-call-method", "POST"),
            ("x-probe-call-path", "/v1/decide"),
            ("x-probe-call-authority", "sluice-service"),
            ("x-probe-call-header", "content-type=application/json"),
            ("x-probe-call-body", "{\"checks\":[]}"),
            ("x-probe-call-echo-header", "x-reply"),
        ],
    );
    let request = forwarded(&outcome);
    assert_eq!(header(request, "x-probe-r-http-call"), Some("0"));
    assert_eq!(header(request, "x-probe-r-call-status"), Some("201"));
    assert_eq!(
        header(request, "x-probe-r-call-body"),
        Some("decided /v1/decide")
    );
    assert_eq!(
        header(request, "x-probe-r-call-header-x-reply"),
        Some("yes")
    );
    assert_eq!(header(request, "x-probe-r-call-get-status"), Some("0:"));
    let counted: usize = header(request, "x-probe-r-call-headers")
        .and_then(|count| count.parse().ok())
        .expect("a header count");
    assert!(counted >= 3, ":status, x-reply, content-length: {counted}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/decide");
    assert_eq!(seen[0].host.as_deref(), Some("sluice-service"));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].body, b"{\"checks\":[]}");
}

#[test]
fn a_call_to_an_unknown_cluster_is_a_bad_argument_and_nothing_is_sent() {
    let upstream = Upstream::answering(200, "ok");
    let proxy = start(envoy(upstream.address));
    let (_stream, outcome) = proxy
        .begin(0, probe_request(&[("x-probe-http-call", "nowhere")]))
        .expect("the stream begins");
    assert_eq!(
        header(forwarded(&outcome), "x-probe-r-http-call"),
        Some("2"),
        "BAD_ARGUMENT, and the probe lets the request go on"
    );
    assert!(upstream.seen().is_empty());
}

#[test]
fn a_call_without_method_path_or_authority_is_a_bad_argument() {
    let upstream = Upstream::answering(200, "ok");
    let proxy = start(envoy(upstream.address));
    for pseudo in [":method", ":path", ":authority"] {
        let (_stream, outcome) = proxy
            .begin(
                0,
                probe_request(&[
                    ("x-probe-http-call", "limits"),
                    ("x-probe-call-omit", pseudo),
                ]),
            )
            .expect("the stream begins");
        assert_eq!(
            header(forwarded(&outcome), "x-probe-r-http-call"),
            Some("2"),
            "without {pseudo}"
        );
    }
    assert!(upstream.seen().is_empty());
}

#[test]
fn a_call_that_times_out_gets_envoys_504_within_its_timeout() {
    let upstream = Upstream::silent();
    let proxy = start(envoy(upstream.address));
    let (outcome, elapsed) = call(
        &proxy,
        &[
            ("x-probe-http-call", "limits"),
            ("x-probe-call-timeout-ms", "200"),
        ],
    );
    let request = forwarded(&outcome);
    assert_eq!(header(request, "x-probe-r-call-status"), Some("504"));
    assert_eq!(
        header(request, "x-probe-r-call-body"),
        Some("upstream request timeout")
    );
    assert_eq!(header(request, "x-probe-r-call-headers"), Some("3"));
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(1200),
        "answered after {elapsed:?}"
    );
    assert_eq!(upstream.seen().len(), 1, "the request reached the upstream");
}

#[test]
fn a_refused_connection_gets_envoys_503() {
    let proxy = start(envoy(closed_port()));
    let (outcome, elapsed) = call(&proxy, &[("x-probe-http-call", "limits")]);
    let request = forwarded(&outcome);
    assert_eq!(header(request, "x-probe-r-call-status"), Some("503"));
    let body = header(request, "x-probe-r-call-body").unwrap_or_default();
    assert!(
        body.starts_with("upstream connect error or disconnect/reset before headers"),
        "{body}"
    );
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
}

#[test]
fn a_response_body_over_the_limit_fails_the_call_with_no_headers() {
    let upstream = Upstream::answering(200, "a body longer than sixteen bytes");
    let limits = CallLimits {
        max_response_body: 16,
        ..CallLimits::default()
    };
    let proxy = start(envoy(upstream.address).call_limits(limits));
    let (outcome, _) = call(&proxy, &[("x-probe-http-call", "limits")]);
    let request = forwarded(&outcome);
    assert_eq!(header(request, "x-probe-r-call-headers"), Some("0"));
    assert_eq!(header(request, "x-probe-r-call-status"), Some("none"));
    assert_eq!(header(request, "x-probe-r-call-body"), Some(""));
    assert_eq!(
        header(request, "x-probe-r-call-get-status"),
        Some("11:reset"),
        "Envoy's BrokenConnection"
    );
}

#[test]
fn the_callback_can_answer_the_stream_with_a_local_response() {
    let upstream = Upstream::answering(429, "slow down");
    let proxy = start(envoy(upstream.address));
    let (outcome, _) = call(
        &proxy,
        &[
            ("x-probe-http-call", "limits"),
            ("x-probe-call-then", "respond"),
        ],
    );
    let local = outcome
        .local_response()
        .unwrap_or_else(|| panic!("a local response: {outcome:?}"));
    assert_eq!(local.status, 429);
    assert_eq!(local.body, b"slow down");
}

#[test]
fn under_envoy_a_stream_stays_paused_until_the_callback_resumes_it() {
    let upstream = Upstream::answering(200, "ok");
    let proxy = start(envoy(upstream.address));
    let (mut stream, outcome) = proxy
        .begin(
            0,
            probe_request(&[
                ("x-probe-http-call", "limits"),
                ("x-probe-call-then", "nothing"),
            ]),
        )
        .expect("the stream begins");
    assert_eq!(outcome, RequestOutcome::Paused);
    assert_eq!(
        stream
            .wait_request(Duration::from_millis(500))
            .expect("no error"),
        RequestOutcome::Paused
    );
    assert_eq!(upstream.seen().len(), 1, "the call was answered meanwhile");
}

#[test]
fn a_stream_whose_client_went_away_ends_and_its_late_reply_is_dropped() {
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let upstream = Upstream::start(move |_| {
        let released = Arc::clone(&released);
        Box::pin(async move {
            // Answers only once the test lets it.
            let _ = tokio::task::spawn_blocking(move || {
                released.lock().map(|receiver| receiver.recv()).ok()
            })
            .await;
            reply(200, &[], "late")
        })
    });
    let proxy = start(envoy(upstream.address));
    let (stream, outcome) = proxy
        .begin(0, probe_request(&[("x-probe-http-call", "limits")]))
        .expect("the stream begins");
    assert_eq!(outcome, RequestOutcome::Paused);
    let report = stream.finish().expect("the stream ends");
    assert_eq!(report.trap, None);
    assert!(proxy.logs().contains("probe on_done 2"));
    release.send(()).expect("the upstream waits");
    let deadline = Instant::now() + LONG;
    while !proxy.logs().contains("delivered to the root context") {
        assert!(Instant::now() < deadline, "the late reply arrives");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !proxy
            .logs()
            .records()
            .iter()
            .any(|record| record.level == LogLevel::Critical),
        "the SDK dropped the reply of a context it no longer has, without a trap"
    );
    let next = common::exchange(&proxy, sluice_host::HttpRequest::get("/"));
    assert_eq!(
        next.status(),
        Some(200),
        "the VM is still the same, and well"
    );
}

#[test]
fn many_paused_streams_each_resume_with_their_own_reply() {
    let upstream = Upstream::start(|seen| {
        Box::pin(async move {
            // Later requests answer sooner: replies arrive out of order.
            let index: u64 = seen
                .path
                .rsplit('/')
                .next()
                .and_then(|index| index.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(64u64.saturating_sub(index))).await;
            reply(200, &[], format!("reply {index}"))
        })
    });
    let proxy = start(envoy(upstream.address).workers(2));
    let paths: Vec<String> = (0..48).map(|index| format!("/id/{index}")).collect();
    let mut streams = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let (stream, outcome) = proxy
            .begin(
                index % 2,
                probe_request(&[("x-probe-http-call", "limits"), ("x-probe-call-path", path)]),
            )
            .expect("the stream begins");
        assert_eq!(outcome, RequestOutcome::Paused);
        streams.push(stream);
    }
    for (index, mut stream) in streams.into_iter().enumerate() {
        let outcome = stream.wait_request(LONG).expect("an outcome");
        let expected = format!("reply {index}");
        assert_eq!(
            header(forwarded(&outcome), "x-probe-r-call-body"),
            Some(expected.as_str())
        );
    }
    assert_eq!(upstream.seen().len(), 48);
}

#[test]
fn calls_in_flight_are_bounded_per_vm() {
    let upstream = Upstream::silent();
    let limits = CallLimits {
        max_in_flight_per_vm: 2,
        ..CallLimits::default()
    };
    let proxy = start(envoy(upstream.address).call_limits(limits));
    let request = || probe_request(&[("x-probe-http-call", "limits")]);
    let (_first, first) = proxy.begin(0, request()).expect("the stream begins");
    let (_second, second) = proxy.begin(0, request()).expect("the stream begins");
    assert_eq!(
        (first, second),
        (RequestOutcome::Paused, RequestOutcome::Paused)
    );
    let (_third, third) = proxy.begin(0, request()).expect("the stream begins");
    assert_eq!(
        header(forwarded(&third), "x-probe-r-http-call"),
        Some("10"),
        "INTERNAL_FAILURE"
    );
}

#[test]
fn a_call_with_timeout_zero_gets_the_unset_timeout() {
    let upstream = Upstream::silent();
    let limits = CallLimits {
        unset_timeout: Duration::from_millis(150),
        ..CallLimits::default()
    };
    let proxy = start(envoy(upstream.address).call_limits(limits));
    let (outcome, _) = call(
        &proxy,
        &[
            ("x-probe-http-call", "limits"),
            ("x-probe-call-timeout-ms", "0"),
        ],
    );
    assert_eq!(
        header(forwarded(&outcome), "x-probe-r-call-status"),
        Some("504")
    );
}

// ngx_wasm_module.

fn ngx() -> ProxyOptions {
    options().flavor(HostFlavor::NgxWasmModule)
}

#[test]
fn under_ngx_the_upstream_is_an_address() {
    let upstream = Upstream::answering(200, "from the address");
    let proxy = start(ngx());
    let address = upstream.address.to_string();
    let (outcome, _) = call(
        &proxy,
        &[
            ("x-probe-http-call", &address),
            ("x-probe-call-omit", ":authority"),
        ],
    );
    let request = forwarded(&outcome);
    assert_eq!(header(request, "x-probe-r-call-status"), Some("200"));
    assert_eq!(
        header(request, "x-probe-r-call-body"),
        Some("from the address")
    );
    assert_eq!(
        upstream.seen()[0].host.as_deref(),
        Some(address.as_str()),
        ":authority defaults to the upstream"
    );
}

#[test]
fn under_ngx_a_failed_call_is_delivered_with_no_headers() {
    let upstream = Upstream::silent();
    let proxy = start(ngx().cluster("limits", upstream.address));
    let (outcome, elapsed) = call(
        &proxy,
        &[
            ("x-probe-http-call", "limits"),
            ("x-probe-call-timeout-ms", "200"),
        ],
    );
    let request = forwarded(&outcome);
    assert_eq!(header(request, "x-probe-r-call-headers"), Some("0"));
    assert_eq!(header(request, "x-probe-r-call-status"), Some("none"));
    assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
    assert!(
        proxy
            .logs()
            .contains("dispatch failed: tcp socket - timed out")
    );

    let refused = start(ngx().cluster("limits", closed_port()));
    let (outcome, _) = call(&refused, &[("x-probe-http-call", "limits")]);
    assert_eq!(
        header(forwarded(&outcome), "x-probe-r-call-headers"),
        Some("0")
    );
}

#[test]
fn under_ngx_the_stream_resumes_once_its_last_call_is_answered() {
    let upstream = Upstream::answering(200, "ok");
    let proxy = start(ngx().cluster("limits", upstream.address));
    let (outcome, _) = call(
        &proxy,
        &[
            ("x-probe-http-call", "limits"),
            ("x-probe-call-then", "nothing"),
        ],
    );
    assert_eq!(
        header(forwarded(&outcome), "x-probe-r-call-status"),
        Some("200")
    );
}

#[test]
fn under_ngx_a_call_without_method_or_path_traps() {
    let upstream = Upstream::answering(200, "ok");
    let proxy = start(ngx().cluster("limits", upstream.address));
    for pseudo in [":method", ":path"] {
        let (_stream, outcome) = proxy
            .begin(
                0,
                probe_request(&[
                    ("x-probe-http-call", "limits"),
                    ("x-probe-call-omit", pseudo),
                ]),
            )
            .expect("the stream begins");
        let failure = outcome
            .failure()
            .unwrap_or_else(|| panic!("the filter trapped: {outcome:?}"));
        assert_eq!(failure.status, 500);
        assert!(
            failure
                .trap
                .contains(&format!("dispatch failed: no {pseudo}")),
            "{}",
            failure.trap
        );
    }
    assert!(upstream.seen().is_empty());
}

#[test]
fn under_ngx_a_stream_that_ends_cancels_its_calls() {
    let upstream = Upstream::silent();
    let proxy = start(ngx().cluster("limits", upstream.address));
    let (stream, outcome) = proxy
        .begin(
            0,
            probe_request(&[
                ("x-probe-http-call", "limits"),
                ("x-probe-call-timeout-ms", "150"),
            ]),
        )
        .expect("the stream begins");
    assert_eq!(outcome, RequestOutcome::Paused);
    stream.finish().expect("the stream ends");
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        !proxy.logs().contains("dispatch failed"),
        "the call ended with its stream and never timed out"
    );
    assert!(!proxy.logs().contains("delivered to the root context"));
}

#[test]
fn under_ngx_a_grpc_call_traps_as_it_is_not_implemented_there() {
    let proxy = start(ngx());
    let (_stream, outcome) = proxy
        .begin(0, probe_request(&[("x-probe-raw", "grpc-call")]))
        .expect("the stream begins");
    let failure = outcome
        .failure()
        .unwrap_or_else(|| panic!("the filter trapped: {outcome:?}"));
    assert_eq!(failure.status, 500);
    assert!(
        failure
            .trap
            .contains("host trap (function not yet implemented): proxy_grpc_call"),
        "{}",
        failure.trap
    );
}
