//! A host answering shared-data calls with errors. At start-up the plugin is rejected with the
//! reason (there is no seed or table to count with); while serving, every error status the ABI
//! has, on reads or on writes, is a store failure decided by the rule's failure mode, and a
//! request decided that way spends nothing: once the host recovers, the full limit is there.

use serde_json::json;
use sluice_host::{FaultTimes, Proxy, SharedData, SharedDataSemantics, Status, StrictLimits};

use crate::support::{HOSTS, Host, get, options, send, start, status};

const LIMIT: usize = 3;
const ERRORS: [Status; 6] = [
    Status::BadArgument,
    Status::SerializationFailure,
    Status::ParseFailure,
    Status::InvalidMemoryAccess,
    Status::InternalFailure,
    Status::Unimplemented,
];

fn config(failure_mode: &str) -> serde_json::Value {
    json!({"store": {"max_keys": 16},
           "rules": [{"name": "r", "key": ["client_ip"], "failure_mode": failure_mode,
                      "limit": {"requests": LIMIT, "period": "1h"}}]})
}

fn store(host: Host) -> SharedData {
    SharedData::new(match host {
        Host::Envoy => SharedDataSemantics::Envoy,
        Host::Ngx => SharedDataSemantics::Strict(StrictLimits::default()),
    })
}

#[test]
fn errors_at_start_up_reject_the_plugin_with_the_reason() {
    for host in HOSTS {
        for reads in [true, false] {
            let store = store(host);
            if reads {
                store.fail_gets(Status::InternalFailure, FaultTimes::Always);
            } else {
                store.fail_sets(Status::InternalFailure, FaultTimes::Always);
            }
            let started =
                Proxy::start(options(host, &config("open"), 2).shared_data(store.clone()));
            let error = match started {
                Ok(_) => panic!("{host:?}: started without shared data"),
                Err(error) => error.to_string(),
            };
            assert!(
                error.contains("shared data"),
                "{host:?}, reads {reads}: {error}"
            );
            store.clear_faults();
            let proxy = Proxy::start(options(host, &config("open"), 2).shared_data(store))
                .expect("starts once shared data answers");
            assert_eq!(status(&send(&proxy, 0, get("/", "203.0.113.99:1"))), 200);
        }
    }
}

#[test]
fn every_error_status_is_a_store_failure_that_spends_nothing() {
    for host in HOSTS {
        for failure_mode in ["open", "closed"] {
            let proxy = start(host, &config(failure_mode), 2);
            let shared = proxy.shared_data_store();
            let mut failures = 0;
            for error in ERRORS {
                for reads in [true, false] {
                    if reads {
                        shared.fail_gets(error, FaultTimes::Always);
                    } else {
                        shared.fail_sets(error, FaultTimes::Always);
                    }
                    for worker in 0..2 {
                        let exchange = send(&proxy, worker, get("/", "203.0.113.98:1"));
                        failures += 1;
                        let what = format!(
                            "{error:?} on {}, {failure_mode} on {host:?}",
                            if reads { "reads" } else { "writes" }
                        );
                        match failure_mode {
                            "open" => assert_eq!(status(&exchange), 200, "{what}"),
                            _ => {
                                assert_eq!(status(&exchange), 429, "{what}");
                                assert_eq!(exchange.client.header("retry-after"), Some("1"));
                            }
                        }
                    }
                    shared.clear_faults();
                }
            }
            let failed = crate::support::flushed_metrics(&proxy)
                .counter(&format!("sluice.r.failed_{failure_mode}"));
            assert_eq!(failed, Some(failures), "{failure_mode} on {host:?}");
            assert_eq!(
                crate::support::flushed_metrics(&proxy).counter("sluice.r.store_errors"),
                Some(failures)
            );
            // None of those requests was counted.
            let admitted = (0..LIMIT + 2)
                .filter(|i| status(&send(&proxy, i % 2, get("/", "203.0.113.98:1"))) == 200)
                .count();
            assert_eq!(
                admitted, LIMIT,
                "{failure_mode} on {host:?}: the limit is whole"
            );
        }
    }
}
