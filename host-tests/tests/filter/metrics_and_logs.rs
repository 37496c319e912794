//! Per-rule metrics are process-wide stats that every VM increments, and shadow denials are
//! logged with the rule and a key that never shows a secret.

use serde_json::json;

use crate::support::{Host, get, send, start, status};

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
    let metrics = proxy.metrics();
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
    assert_eq!(proxy.metrics().counter("sluice.keys.allowed"), Some(1));
    assert_eq!(
        proxy.metrics().counter("sluice.keys.shadow_denied"),
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
