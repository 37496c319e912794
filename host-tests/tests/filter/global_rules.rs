//! Global rules through the real filter: the request is paused while the filter asks the
//! rate-limit service (a fake one in this test, deciding with the core over memory) and
//! resumed or answered on the reply, with the same status, headers and body as the same rules
//! decided locally; a global denial refunds the local rules; a service that times out,
//! refuses connections, answers 500 or garbage gets each rule's failure mode, counted in
//! metrics and logged a bounded number of times. On Envoy's and ngx_wasm_module's flavours.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_host::{ClientResponse, Clock, Exchange, LogLevel, Proxy};

use crate::support::{HOSTS, Host, T0_NS, get, options, send, start, status};
use sluice_host::fake_service::{Behaviour, FakeService, refusing_addr};

const CLUSTER: &str = "limits";

/// A proxy whose cluster `limits` is at `addr`, on the shared `clock`.
pub fn start_with_service(
    host: Host,
    config: &Value,
    workers: usize,
    addr: std::net::SocketAddr,
    clock: &Clock,
) -> Proxy {
    let options = options(host, config, workers)
        .clock(clock.clone())
        .cluster(CLUSTER, addr);
    match Proxy::start(options) {
        Ok(proxy) => proxy,
        Err(error) => panic!("the proxy did not start: {error}"),
    }
}

fn config(local_scope: &str, global_scope: &str, failure_mode: &str) -> Value {
    json!({
        "global": {"cluster": CLUSTER, "timeout": "200ms"},
        "response": {"headers": "both"},
        "rules": [
            {"name": "burst", "scope": local_scope, "key": ["client_ip"],
             "algorithm": "fixed_window", "limit": {"requests": 3, "period": "10s"}},
            {"name": "per-client", "scope": global_scope, "key": ["client_ip"],
             "failure_mode": failure_mode, "algorithm": "sliding_window",
             "limit": {"requests": 5, "period": "1m"}}]})
}

/// Status, sorted headers and body: what the client sees.
fn seen(exchange: &Exchange) -> (u16, Vec<(String, String)>, Vec<u8>) {
    match &exchange.client {
        ClientResponse::Response {
            status,
            headers,
            body,
            ..
        } => {
            let mut headers = headers.clone();
            headers.sort();
            (*status, headers, body.clone())
        }
        ClientResponse::Reset => panic!("the stream was reset"),
    }
}

#[test]
fn global_rules_answer_exactly_as_the_same_rules_decided_locally() {
    for host in HOSTS {
        let local = start(host, &config("local", "local", "open"), 2);
        let clock = Clock::fake(T0_NS);
        let global_config = config("local", "global", "open");
        let service = FakeService::start(&global_config, clock.clone());
        let global = start_with_service(host, &global_config, 2, service.addr(), &clock);
        let mut denied = 0;
        for (i, at_s) in [
            0, 0, 0, 0, 5, 10, 10, 10, 11, 20, 21, 30, 59, 60, 61, 62, 70,
        ]
        .into_iter()
        .enumerate()
        {
            let now = T0_NS + at_s * 1_000_000_000;
            local.clock().as_fake().expect("fake").set_ns(now);
            clock.as_fake().expect("fake").set_ns(now);
            let expected = seen(&send(&local, i % 2, get("/", "203.0.113.7:1000")));
            let got = seen(&send(&global, i % 2, get("/", "203.0.113.7:1000")));
            assert_eq!(got, expected, "request {i} at {at_s}s on {host:?}");
            denied += usize::from(got.0 == 429);
        }
        assert!(denied >= 4, "both rules denied some requests: {denied}");
        let calls = service.received();
        assert!(!calls.is_empty());
        let first = &calls[0];
        assert_eq!(
            (first.method.as_str(), first.path.as_str()),
            ("POST", "/v1/decide")
        );
        assert_eq!(first.content_type.as_deref(), Some("application/json"));
        assert_eq!(first.authority.as_deref(), Some(CLUSTER));
        assert_eq!(
            crate::support::flushed_metrics(&global).counter("sluice.global.calls"),
            Some(calls.len() as u64),
            "{host:?}"
        );
        assert_eq!(
            crate::support::flushed_metrics(&global).counter("sluice.global.call_errors"),
            Some(0)
        );
    }
}

#[test]
fn a_global_denial_refunds_the_local_rule() {
    let config = |failure_mode: &str| {
        json!({"global": {"cluster": CLUSTER},
               "rules": [
                   {"name": "local", "key": ["client_ip"], "algorithm": "fixed_window",
                    "limit": {"requests": 2, "period": "1h"}},
                   {"name": "global", "scope": "global", "key": ["client_ip"],
                    "failure_mode": failure_mode, "limit": {"requests": 1, "period": "1m"}}]})
    };
    for host in HOSTS {
        let clock = Clock::fake(T0_NS);
        let service = FakeService::start(&config("open"), clock.clone());
        let proxy = start_with_service(host, &config("open"), 2, service.addr(), &clock);
        let first = send(&proxy, 0, get("/", "203.0.113.7:1000"));
        assert_eq!(
            first.client.header("ratelimit"),
            Some("\"local\";r=1;t=3600, \"global\";r=0;t=60")
        );
        for i in 0..5 {
            let denied = send(&proxy, i % 2, get("/", "203.0.113.7:1000"));
            assert_eq!(status(&denied), 429, "{host:?}");
            assert_eq!(
                denied.client.header("ratelimit"),
                Some("\"global\";r=0;t=60")
            );
        }
        // Once the global denial's retry time has passed (the negative cache answered the
        // last four until then), with the service failing open, the local rule alone
        // decides: it has spent only the first request's unit, the five global denials were
        // refunded.
        clock
            .as_fake()
            .expect("fake")
            .set_ns(T0_NS + 60_000_000_000);
        service.behave(Behaviour::Status(503));
        let passed = send(&proxy, 1, get("/", "203.0.113.7:1000"));
        assert_eq!(status(&passed), 200);
        assert_eq!(
            passed.client.header("ratelimit"),
            Some("\"local\";r=0;t=3540"),
            "{host:?}"
        );
        assert_eq!(
            crate::support::flushed_metrics(&proxy).counter("sluice.global.negative_cache"),
            Some(4)
        );
        assert_eq!(
            crate::support::flushed_metrics(&proxy).counter("sluice.local.allowed"),
            Some(7)
        );
        assert_eq!(
            crate::support::flushed_metrics(&proxy).counter("sluice.global.denied"),
            Some(5)
        );
        assert_eq!(
            crate::support::flushed_metrics(&proxy).counter("sluice.global.failed_open"),
            Some(1)
        );
    }
}

/// Every way the service can fail, and how to make it fail so.
fn failures() -> Vec<(&'static str, Behaviour, bool)> {
    vec![
        (
            "timeout",
            Behaviour::Late(Duration::from_millis(600)),
            false,
        ),
        ("connection refused", Behaviour::Decide, true),
        ("500", Behaviour::Status(500), false),
        ("garbage", Behaviour::Garbage, false),
    ]
}

#[test]
fn a_failing_service_gets_each_rule_its_failure_mode() {
    for host in HOSTS {
        for (failure, behaviour, refused) in failures() {
            for (mode, expected) in [("open", 200), ("closed", 429)] {
                let config = config("local", "global", mode);
                let clock = Clock::fake(T0_NS);
                let service = FakeService::start(&config, clock.clone());
                service.behave(behaviour);
                let addr = if refused {
                    refusing_addr()
                } else {
                    service.addr()
                };
                let proxy = start_with_service(host, &config, 1, addr, &clock);
                let started = std::time::Instant::now();
                let exchange = send(&proxy, 0, get("/", "203.0.113.7:1000"));
                let what = format!("{failure}, failing {mode} on {host:?}");
                assert_eq!(status(&exchange), expected, "{what}");
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "{what}: no request hangs"
                );
                if mode == "closed" {
                    assert_eq!(exchange.client.header("retry-after"), Some("1"), "{what}");
                } else {
                    // Failing open: the global rule is left out of RateLimit.
                    assert_eq!(
                        exchange.client.header("ratelimit"),
                        Some("\"burst\";r=2;t=10"),
                        "{what}"
                    );
                }
                let metrics = crate::support::flushed_metrics(&proxy);
                assert_eq!(
                    metrics.counter(&format!("sluice.per-client.failed_{mode}")),
                    Some(1),
                    "{what}"
                );
                assert_eq!(metrics.counter("sluice.global.calls"), Some(1), "{what}");
                assert_eq!(
                    metrics.counter("sluice.global.call_errors"),
                    Some(1),
                    "{what}"
                );
                assert!(
                    proxy
                        .logs()
                        .contains("rate-limit service (cluster \"limits\")"),
                    "{what}: logged"
                );
                // Failing closed refunds the local rule's unit: with the service back,
                // the burst rule still has all 3. (A call that timed out may still be
                // decided by the service, so only the failures that decide nothing.)
                if mode == "closed"
                    && matches!(behaviour, Behaviour::Status(_) | Behaviour::Garbage)
                {
                    service.behave(Behaviour::Decide);
                    let again = send(&proxy, 0, get("/", "203.0.113.7:1000"));
                    assert_eq!(
                        again.client.header("ratelimit"),
                        Some("\"burst\";r=2;t=10, \"per-client\";r=4;t=120"),
                        "{what}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_storm_of_failing_calls_logs_a_few_lines() {
    let config = config("local", "global", "open");
    // The local rule is generous here so that every request reaches the service.
    let mut config = config;
    config["rules"][0]["limit"] = json!({"requests": 100000, "period": "1h"});
    for host in HOSTS {
        let clock = Clock::fake(T0_NS);
        let proxy = start_with_service(host, &config, 2, refusing_addr(), &clock);
        for i in 0..1000u64 {
            // 1,000 requests over 20 s of the proxy's clock.
            clock
                .as_fake()
                .expect("fake")
                .set_ns(T0_NS + i * 20_000_000);
            let exchange = send(&proxy, (i % 2) as usize, get("/", "203.0.113.7:1000"));
            assert_eq!(status(&exchange), 200);
        }
        let lines: Vec<String> = proxy
            .logs()
            .records()
            .into_iter()
            .filter(|r| r.level >= LogLevel::Warn && r.message.contains("rate-limit service"))
            .map(|r| r.message)
            .collect();
        // One line per VM per 10 s: 2 VMs × (0 s, 10 s) = 4 at most (20 s = the edge).
        assert!(
            (2..=6).contains(&lines.len()),
            "{host:?}: {} lines: {lines:#?}",
            lines.len()
        );
        assert!(
            lines.iter().any(|l| l.contains("were not logged")),
            "{host:?}: the suppressed count is reported: {lines:#?}"
        );
        assert_eq!(
            crate::support::flushed_metrics(&proxy).counter("sluice.global.call_errors"),
            Some(1000)
        );
        assert_eq!(
            crate::support::flushed_metrics(&proxy).counter("sluice.per-client.failed_open"),
            Some(1000)
        );
    }
}
