//! Soft limits through the filter, on Envoy's and ngx_wasm_module's flavours, beyond the shared
//! `soft_*.json` vectors: the warning reaches the upstream's request and the client's response
//! in one line each, on the local path and on the global one (the request paused for the
//! service, the mark added before it resumes); `sluice.<rule>.marked` counts marked requests
//! across VMs (defined only for rules that can mark); the soft rule's log line.

use serde_json::{Value, json};
use sluice_host::Clock;

use crate::global_rules::start_with_service;
use crate::support::{HOSTS, T0_NS, flushed_metrics, get, send, start, status};
use sluice_host::fake_service::FakeService;

fn config(scope: &str) -> Value {
    json!({
        "global": {"cluster": "limits", "timeout": "200ms"},
        "response": {"warning_header": "x-quota-warning"},
        "rules": [
            {"name": "hard", "scope": scope, "key": ["client_ip"], "algorithm": "fixed_window",
             "limit": {"requests": 10, "period": "1m"}, "warn_at": {"remaining": 7}},
            {"name": "soft", "scope": scope, "key": ["client_ip"], "algorithm": "fixed_window",
             "limit": {"requests": 1, "period": "1m"}, "mode": "soft"},
            {"name": "plain", "key": ["client_ip"], "algorithm": "fixed_window",
             "limit": {"requests": 100, "period": "1m"}}
        ]
    })
}

/// Sends three requests from one client, alternating VMs, and checks the marks: none, then
/// the soft rule's, then both rules' (each in exactly one header line upstream and to the
/// client; a forged value is replaced).
fn three_requests_are_marked_as_configured(proxy: &sluice_host::Proxy) {
    let peer = "203.0.113.7:41000";
    let expected = [
        None,
        Some("\"soft\";reason=exceeded;r=0"),
        Some("\"hard\";reason=low;r=7, \"soft\";reason=exceeded;r=0"),
    ];
    for (i, mark) in expected.into_iter().enumerate() {
        let exchange = send(
            proxy,
            i % 2,
            get("/", peer).header("x-quota-warning", "forged"),
        );
        assert_eq!(
            status(&exchange),
            200,
            "request {i}: a soft rule never denies"
        );
        let upstream: Vec<&str> = exchange
            .forwarded()
            .expect("forwarded")
            .headers
            .iter()
            .filter(|(name, _)| name == "x-quota-warning")
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(
            upstream,
            mark.into_iter().collect::<Vec<_>>(),
            "request {i}"
        );
        assert_eq!(exchange.header("x-quota-warning"), mark, "request {i}");
    }
}

#[test]
fn marks_reach_the_upstream_and_the_client_and_are_counted() {
    for host in HOSTS {
        let proxy = start(host, &config("local"), 2);
        three_requests_are_marked_as_configured(&proxy);
        let metrics = flushed_metrics(&proxy);
        assert_eq!(metrics.counter("sluice.hard.marked"), Some(1), "{host:?}");
        assert_eq!(metrics.counter("sluice.soft.marked"), Some(2), "{host:?}");
        assert_eq!(
            metrics.counter("sluice.plain.marked"),
            None,
            "{host:?}: a rule that cannot mark defines no counter"
        );
        assert_eq!(metrics.counter("sluice.soft.allowed"), Some(1), "{host:?}");
        assert_eq!(
            metrics.counter("sluice.soft.shadow_denied"),
            Some(2),
            "{host:?}"
        );
        let lines: Vec<String> = proxy
            .logs()
            .messages()
            .into_iter()
            .filter(|line| line.contains("(soft) is over its limit"))
            .collect();
        assert_eq!(lines.len(), 2, "{host:?}: {lines:?}");
        assert!(
            lines[0].contains(
                "rule \"soft\" (soft) is over its limit for key client_ip=203.0.113.7; retry \
                 after 60s; the request passed, marked"
            ),
            "{lines:?}"
        );
    }
}

#[test]
fn global_soft_rules_mark_the_paused_request_before_it_resumes() {
    for host in HOSTS {
        let clock = Clock::fake(T0_NS);
        let config = config("global");
        let service = FakeService::start(&config, clock.clone());
        let proxy = start_with_service(host, &config, 2, service.addr(), &clock);
        three_requests_are_marked_as_configured(&proxy);
        assert_eq!(service.calls_to("/v1/decide"), 3, "{host:?}");
        assert_eq!(
            flushed_metrics(&proxy).counter("sluice.soft.marked"),
            Some(2),
            "{host:?}"
        );
    }
}
