//! Leases through the real filter, against the in-memory reference service on a fake clock:
//! a slice in shared data answers requests with no call and the same headers as the service
//! would give; it is renewed in the background before it runs out, and what is left of it is
//! returned when it expires; the negative cache answers a client hammering after a 429 with
//! no call; when the service is down the slice keeps deciding, then the failure mode; a
//! request another rule denies gives its units back to the slice.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_host::{Clock, Proxy};

use crate::global_rules::start_with_service;
use crate::support::{HOSTS, Host, T0_NS, get, send, status};
use sluice_host::fake_service::{Behaviour, FakeService};

const PEER: &str = "203.0.113.7:1000";

fn leased(algorithm: &str, limit: u64, lease: Value) -> Value {
    json!({
        "global": {"cluster": "limits", "timeout": "1s"},
        "response": {"headers": "both"},
        "rules": [{"name": "hot", "scope": "global", "key": ["client_ip"],
                   "algorithm": algorithm, "failure_mode": "closed", "max_keys": 64,
                   "limit": {"requests": limit, "period": "1m"}, "lease": lease}]})
}

/// Sets the shared fake clock to `ms` after T0 (ticks that are due fire).
fn at(clock: &Clock, ms: u64) {
    clock
        .as_fake()
        .expect("a fake clock")
        .set_ns(T0_NS + ms * 1_000_000);
}

/// A counter as the proxy has it once the VMs flushed what they counted (on their timer).
fn counter(proxy: &Proxy, name: &str) -> u64 {
    crate::support::flushed_metrics(proxy)
        .counter(name)
        .unwrap_or(0)
}

/// Waits (up to 5 s of real time) for the background calls to land.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_slice_answers_requests_with_no_call_and_the_services_headers() {
    for host in HOSTS {
        let config = leased("fixed_window", 100, json!({"size": 10}));
        let clock = Clock::fake(T0_NS);
        let service = FakeService::start(&config, clock.clone());
        let proxy = start_with_service(host, &config, 2, service.addr(), &clock);
        for i in 0..30u64 {
            let exchange = send(&proxy, (i % 2) as usize, get("/", PEER));
            assert_eq!(status(&exchange), 200, "{host:?} request {i}");
            // Exactly what one count in the service would say: the grant's remaining plus
            // what the slice holds.
            assert_eq!(
                exchange.client.header("x-ratelimit-remaining"),
                Some((99 - i).to_string().as_str()),
                "{host:?} request {i}"
            );
            assert_eq!(exchange.client.header("x-ratelimit-reset"), Some("60"));
        }
        // The clock did not move (no tick): each slice of 10 ran out and the request that
        // found it empty acquired the next one.
        assert_eq!(service.calls_to("/v1/lease"), 3, "{host:?}");
        assert_eq!(service.calls_to("/v1/decide"), 0, "{host:?}");
        // One flush (a tick, which may also start a renewal of a low slice), then the counts
        // as of that tick.
        let metrics = crate::support::flushed_metrics(&proxy);
        let count = |name: &str| metrics.counter(name).unwrap_or(0);
        assert_eq!(count("sluice.hot.lease_acquired"), 3);
        assert_eq!(count("sluice.hot.lease_local"), 27);
        assert_eq!(count("sluice.hot.allowed"), 30);
        assert_eq!(count("sluice.global.calls"), 3);
    }
}

#[test]
fn a_slice_is_renewed_in_the_background_before_it_runs_out() {
    for host in HOSTS {
        let config = leased(
            "gcra",
            1000,
            json!({"size": 10, "lifetime": "1s", "renew_at": 30}),
        );
        let clock = Clock::fake(T0_NS);
        let service = FakeService::start(&config, clock.clone());
        let proxy = start_with_service(host, &config, 2, service.addr(), &clock);
        let mut sent = 0u64;
        // 10 requests every 100 ms for 2 s: the tick (every 100 ms here) renews each slice
        // once it falls to 3 units, so requests never find it empty after the first.
        for step in 0..20u64 {
            at(&clock, step * 100);
            if step > 0 {
                let renewed = step;
                wait_for("the renewal", || {
                    counter(&proxy, "sluice.hot.lease_renewed") >= renewed
                        || service.calls_to("/v1/lease") as u64 > renewed
                });
                wait_for("the renewal's answer", || {
                    counter(&proxy, "sluice.hot.lease_renewed") >= renewed
                });
            }
            for _ in 0..7 {
                let exchange = send(&proxy, (sent % 2) as usize, get("/", PEER));
                assert_eq!(status(&exchange), 200, "{host:?} request {sent}");
                sent += 1;
            }
        }
        assert_eq!(
            counter(&proxy, "sluice.hot.lease_acquired"),
            1,
            "{host:?}: only the first request waited for a slice"
        );
        let calls = counter(&proxy, "sluice.global.calls");
        assert!(
            calls * 5 <= sent,
            "{host:?}: {calls} calls for {sent} requests"
        );
        assert_eq!(counter(&proxy, "sluice.hot.lease_local") + 1, sent);
    }
}

#[test]
fn an_expired_slice_is_returned_and_its_units_counted_again() {
    for host in HOSTS {
        let config = leased("fixed_window", 100, json!({"size": 10, "lifetime": "1s"}));
        let clock = Clock::fake(T0_NS);
        let service = FakeService::start(&config, clock.clone());
        let proxy = start_with_service(host, &config, 2, service.addr(), &clock);
        let first = send(&proxy, 0, get("/", PEER));
        assert_eq!(first.client.header("x-ratelimit-remaining"), Some("99"));
        // Past its lifetime, a tick returns the 9 units left.
        at(&clock, 1_100);
        wait_for("the return", || service.calls_to("/v1/lease") >= 2);
        assert_eq!(counter(&proxy, "sluice.hot.lease_expired"), 1, "{host:?}");
        assert!(counter(&proxy, "sluice.hot.lease_returned") >= 1);
        let body: Value = serde_json::from_slice(&service.received()[1].body).expect("JSON");
        assert_eq!(body["return"][0]["units"], 9, "{host:?}: {body}");
        // The service took them back: the next request sees one unit spent, not ten.
        let next = send(&proxy, 1, get("/", PEER));
        assert_eq!(
            next.client.header("x-ratelimit-remaining"),
            Some("98"),
            "{host:?}"
        );
    }
}

#[test]
fn the_negative_cache_answers_a_client_hammering_after_a_denial_with_no_call() {
    for lease in [Value::Null, json!({"size": 2})] {
        for host in HOSTS {
            let mut config = leased("gcra", 3, lease.clone());
            if lease.is_null() {
                config["rules"][0]
                    .as_object_mut()
                    .expect("a rule")
                    .remove("lease");
            }
            let clock = Clock::fake(T0_NS);
            let service = FakeService::start(&config, clock.clone());
            let proxy = start_with_service(host, &config, 2, service.addr(), &clock);
            for i in 0..3 {
                assert_eq!(status(&send(&proxy, i % 2, get("/", PEER))), 200);
            }
            let calls = service.received().len();
            let denied = send(&proxy, 0, get("/", PEER));
            assert_eq!(status(&denied), 429);
            assert_eq!(denied.client.header("retry-after"), Some("20"));
            assert_eq!(service.received().len(), calls + 1, "the denial asked once");
            for i in 0..10u64 {
                at(&clock, i * 1000);
                let again = send(&proxy, (i % 2) as usize, get("/", PEER));
                assert_eq!(status(&again), 429, "{host:?} {lease}");
                // The service's answer, its times moved on by the time elapsed.
                assert_eq!(
                    again.client.header("retry-after"),
                    Some((20 - i).to_string().as_str()),
                    "{host:?} {lease}"
                );
            }
            assert_eq!(
                service.received().len(),
                calls + 1,
                "{host:?} {lease}: no call while the denial holds"
            );
            assert_eq!(counter(&proxy, "sluice.hot.negative_cache"), 10);
            // Once the retry time has passed, the service is asked again.
            at(&clock, 20_000);
            assert_eq!(status(&send(&proxy, 0, get("/", PEER))), 200, "{host:?}");
            assert_eq!(service.received().len(), calls + 2);
        }
    }
}

#[test]
fn with_the_service_down_the_slice_keeps_deciding_then_the_failure_mode() {
    for host in HOSTS {
        for (mode, after) in [("closed", 429), ("open", 200)] {
            let mut config = leased("fixed_window", 100, json!({"size": 5, "lifetime": "10s"}));
            config["rules"][0]["failure_mode"] = json!(mode);
            let clock = Clock::fake(T0_NS);
            let service = FakeService::start(&config, clock.clone());
            let proxy = start_with_service(host, &config, 1, service.addr(), &clock);
            assert_eq!(status(&send(&proxy, 0, get("/", PEER))), 200);
            service.behave(Behaviour::Status(503));
            for i in 0..4 {
                assert_eq!(
                    status(&send(&proxy, 0, get("/", PEER))),
                    200,
                    "{host:?} {mode}: the slice's unit {i}"
                );
            }
            let out = send(&proxy, 0, get("/", PEER));
            assert_eq!(status(&out), after, "{host:?} {mode}: slice spent");
            // One flush for both counters: the tick that flushes also renews the spent slice
            // in the background, and that call's error would land in a second flush.
            let metrics = crate::support::flushed_metrics(&proxy);
            assert_eq!(
                metrics.counter(&format!("sluice.hot.failed_{mode}")),
                Some(1),
                "{host:?}"
            );
            assert_eq!(metrics.counter("sluice.global.call_errors"), Some(1));
        }
    }
}

#[test]
fn a_request_another_rule_denies_gives_its_units_back_to_the_slice() {
    for host in HOSTS {
        let config = json!({
            "global": {"cluster": "limits"},
            "response": {"headers": "legacy"},
            "rules": [
                {"name": "leased", "scope": "global", "key": ["client_ip"],
                 "algorithm": "fixed_window", "limit": {"requests": 100, "period": "1m"},
                 "lease": {"size": 10, "lifetime": "30s"}},
                {"name": "strict", "scope": "global", "key": ["client_ip"],
                 "algorithm": "fixed_window", "limit": {"requests": 2, "period": "1s"}}]});
        let clock = Clock::fake(T0_NS);
        let service = FakeService::start(&config, clock.clone());
        let proxy = start_with_service(host, &config, 2, service.addr(), &clock);
        assert_eq!(status(&send(&proxy, 0, get("/", PEER))), 200);
        assert_eq!(status(&send(&proxy, 1, get("/", PEER))), 200);
        for i in 0..5 {
            assert_eq!(
                status(&send(&proxy, i % 2, get("/", PEER))),
                429,
                "{host:?}"
            );
        }
        at(&clock, 1_000);
        let third = send(&proxy, 0, get("/", PEER));
        assert_eq!(status(&third), 200);
        // `strict` has 1 left; `leased` would show 97 if the denied requests had kept units.
        assert_eq!(
            third.client.header("x-ratelimit-remaining"),
            Some("1"),
            "{host:?}"
        );
        // The first denial took `leased`'s unit from the slice before the service denied
        // `strict` (and gave it back); the next four met `strict`'s cached denial first.
        assert_eq!(counter(&proxy, "sluice.leased.allowed"), 4);
        assert_eq!(counter(&proxy, "sluice.strict.negative_cache"), 4);
        let fourth = send(&proxy, 1, get("/", PEER));
        assert_eq!(status(&fourth), 200);
        let fifth = send(&proxy, 1, get("/", PEER));
        assert_eq!(status(&fifth), 429);
        // 4 admitted: the slice gave 4 units; the 5 denials (and this one) gave theirs back.
        assert_eq!(
            counter(&proxy, "sluice.leased.lease_acquired"),
            1,
            "{host:?}"
        );
    }
}

#[test]
fn sliding_log_refuses_a_lease() {
    let config = leased("sliding_log", 100, json!({"size": 10}));
    let options = crate::support::options(Host::Envoy, &config, 1);
    let error = Proxy::start(options).expect_err("a sliding log cannot lease");
    assert!(error.to_string().contains("lease"), "{error}");
}
