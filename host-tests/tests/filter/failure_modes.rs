//! When shared data fails, or CAS conflicts outlast the retries, each rule's failure mode
//! decides: open lets the request through, closed answers with the denial and `Retry-After: 1`.

use serde_json::json;
use sluice_host::{FaultTimes, Status};

use crate::support::{HOSTS, Host, get, send, start, status};

fn config(failure_mode: &str, cas_retries: u32) -> serde_json::Value {
    json!({
        "store": {"cas_retries": cas_retries},
        "rules": [{"name": "r", "key": ["client_ip"], "failure_mode": failure_mode,
                   "limit": {"requests": 10, "period": "1m"}}]})
}

#[test]
fn store_errors_follow_the_failure_mode() {
    for host in HOSTS {
        for (mode, expected) in [("open", 200), ("closed", 429)] {
            let proxy = start(host, &config(mode, 4), 1);
            proxy
                .shared_data_store()
                .fail_gets(Status::InternalFailure, FaultTimes::Always);
            let exchange = send(&proxy, 0, get("/", "203.0.113.9:1000"));
            assert_eq!(status(&exchange), expected, "{mode} on {host:?}");
            if mode == "closed" {
                assert_eq!(exchange.client.header("retry-after"), Some("1"));
            }
            proxy.shared_data_store().clear_faults();
            assert_eq!(
                status(&send(&proxy, 0, get("/", "203.0.113.9:1000"))),
                200,
                "recovers"
            );
            let failed = format!("sluice.r.failed_{mode}");
            assert_eq!(
                crate::support::flushed_metrics(&proxy).counter(&failed),
                Some(1),
                "{failed}"
            );
            assert_eq!(
                crate::support::flushed_metrics(&proxy).counter("sluice.r.store_errors"),
                Some(1)
            );
            assert!(
                proxy.logs().contains("\"r\""),
                "the failure is logged with the rule"
            );
        }
    }
}

#[test]
fn cas_conflicts_beyond_the_retries_follow_the_failure_mode() {
    for (mode, expected) in [("open", 200), ("closed", 429)] {
        let proxy = start(Host::Envoy, &config(mode, 3), 1);
        proxy
            .shared_data_store()
            .force_cas_mismatches(FaultTimes::Always);
        let exchange = send(&proxy, 0, get("/", "203.0.113.9:1000"));
        assert_eq!(status(&exchange), expected, "{mode}");
        proxy.shared_data_store().clear_faults();
        assert_eq!(
            crate::support::flushed_metrics(&proxy).counter("sluice.r.cas_retries"),
            Some(4),
            "{mode}: 3 retries + the last conflict"
        );
    }
}

#[test]
fn a_few_cas_conflicts_are_retried_and_counted() {
    let proxy = start(Host::Envoy, &config("closed", 8), 1);
    proxy
        .shared_data_store()
        .force_cas_mismatches(FaultTimes::Next(2));
    assert_eq!(status(&send(&proxy, 0, get("/", "203.0.113.9:1000"))), 200);
    assert_eq!(
        crate::support::flushed_metrics(&proxy).counter("sluice.r.cas_retries"),
        Some(2)
    );
    assert_eq!(
        crate::support::flushed_metrics(&proxy).counter("sluice.r.allowed"),
        Some(1)
    );
}
