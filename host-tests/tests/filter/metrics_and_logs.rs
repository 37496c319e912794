//! Per-rule metrics are process-wide stats that every VM increments, and shadow denials are
//! logged with the rule and a key that never shows a secret. A VM counts in its own memory and
//! hands its counts to the proxy on its timer and when it shuts down: no metric host call per
//! request.

use serde_json::json;

use crate::support::{Host, at_ms, get, send, start, status};

#[test]
fn per_rule_counters_add_up_across_vms() {
    let config = json!({
        "exempt": {"paths": ["/healthz"]},
        "rules": [{"name": "per-client", "key": ["client_ip"],
                   "limit": {"requests": 3, "period": "1m"}, "algorithm": "fixed_window"}]});
    let proxy = start(Host::Envoy, &config, 2);
    let statuses: Vec<u16> = (0..5)
        .map(|i| status(&send(&proxy, i % 2, get("/", "203.0.113.5:1000"))))
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    send(&proxy, 0, get("/healthz", "203.0.113.5:1000"));
    let metrics = crate::support::flushed_metrics(&proxy);
    assert_eq!(metrics.counter("sluice.per-client.allowed"), Some(3));
    assert_eq!(metrics.counter("sluice.per-client.denied"), Some(2));
    assert_eq!(metrics.counter("sluice.per-client.shadow_denied"), Some(0));
    assert_eq!(metrics.counter("sluice.per-client.store_errors"), Some(0));
    assert_eq!(metrics.counter("sluice.exempt"), Some(1));
}

#[test]
fn shadow_denials_pass_are_counted_and_logged_without_the_secret() {
    let config = json!({
        "rules": [{"name": "keys", "key": [{"header": "x-api-key", "secret": true}],
                   "limit": {"requests": 1, "period": "1m"}, "mode": "shadow"}]});
    let proxy = start(Host::Envoy, &config, 1);
    for _ in 0..3 {
        let exchange = send(
            &proxy,
            0,
            get("/", "203.0.113.5:1000").header("x-api-key", "sk-live-SECRET"),
        );
        assert_eq!(status(&exchange), 200, "shadow mode never denies");
        assert_eq!(exchange.client.header("retry-after"), None);
    }
    assert_eq!(
        crate::support::flushed_metrics(&proxy).counter("sluice.keys.allowed"),
        Some(1)
    );
    assert_eq!(
        crate::support::flushed_metrics(&proxy).counter("sluice.keys.shadow_denied"),
        Some(2)
    );
    let lines: Vec<String> = proxy
        .logs()
        .messages()
        .into_iter()
        .filter(|line| line.contains("would deny"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("\"keys\"") && !l.contains("SECRET")),
        "{lines:?}"
    );
}

#[test]
fn a_configured_vm_says_so_once() {
    let config = json!({"rules": [{"name": "r", "key": ["client_ip"],
                                   "limit": {"requests": 1, "period": "1s"}}]});
    let proxy = start(Host::Envoy, &config, 2);
    let configured = proxy
        .logs()
        .messages()
        .into_iter()
        .filter(|line| line.contains("sluice: configured 1 rules"))
        .count();
    assert_eq!(configured, 2, "one line per VM");
}

#[test]
fn counts_reach_the_proxy_on_the_vms_timer_and_at_shutdown_not_per_request() {
    let config = json!({
        "rules": [{"name": "per-client", "key": ["client_ip"],
                   "limit": {"requests": 100, "period": "1m"}}]});
    let proxy = start(Host::Envoy, &config, 1);
    let metrics = proxy.metrics().clone();
    let allowed = || metrics.counter("sluice.per-client.allowed");
    for _ in 0..3 {
        send(&proxy, 0, get("/", "203.0.113.5:1000"));
    }
    assert_eq!(allowed(), Some(0), "nothing is flushed per request");
    // The timer fires once a second; the request after it is counted in the VM only.
    at_ms(&proxy, 1_000);
    send(&proxy, 0, get("/", "203.0.113.5:1000"));
    assert_eq!(allowed(), Some(3), "the timer flushed the first three");
    // At VM shutdown (the root context is done) the rest reaches the proxy.
    drop(proxy);
    assert_eq!(allowed(), Some(4));
}
