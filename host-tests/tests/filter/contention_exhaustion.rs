//! Eight VMs on eight threads racing for one key with no CAS retries allowed: every lost race
//! is counted in `cas_retries` and decided by the rule's failure mode (open: let through
//! uncounted; closed: 429 with `Retry-After: 1`), and nothing is lost or counted twice: the
//! key's remaining quota afterwards is exactly the limit minus the requests counted. Besides
//! the real races between the threads (how many depends on scheduling), the host makes the
//! first `FORCED` writes lose theirs, so every configuration runs out of retries.

use std::sync::Arc;

use serde_json::json;
use sluice_host::{FaultTimes, Proxy};

use crate::support::{HOSTS, Host, get, send, start, status};

const LIMIT: u64 = 400;
const THREADS: usize = 8;
const PER_THREAD: u64 = 40;
/// Writes the host answers with a CAS mismatch, as if another VM had written first.
const FORCED: u32 = 16;

struct Outcome {
    passed: u64,
    denied_with_retry_after_1: u64,
}

fn race(proxy: &Arc<Proxy>) -> Outcome {
    let threads: Vec<_> = (0..THREADS)
        .map(|worker| {
            let proxy = Arc::clone(proxy);
            std::thread::spawn(move || {
                let mut outcome = Outcome {
                    passed: 0,
                    denied_with_retry_after_1: 0,
                };
                for _ in 0..PER_THREAD {
                    let exchange = send(&proxy, worker, get("/", "198.51.100.7:1"));
                    match status(&exchange) {
                        200 => outcome.passed += 1,
                        429 => {
                            assert_eq!(exchange.client.header("retry-after"), Some("1"));
                            outcome.denied_with_retry_after_1 += 1;
                        }
                        other => panic!("status {other}"),
                    }
                }
                outcome
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("thread")).fold(
        Outcome {
            passed: 0,
            denied_with_retry_after_1: 0,
        },
        |a, b| Outcome {
            passed: a.passed + b.passed,
            denied_with_retry_after_1: a.denied_with_retry_after_1 + b.denied_with_retry_after_1,
        },
    )
}

/// Requests that still pass one at a time (no contention) before the first denial.
fn remaining(proxy: &Proxy) -> u64 {
    let mut n = 0;
    while status(&send(proxy, 0, get("/", "198.51.100.7:1"))) == 200 {
        n += 1;
        assert!(n <= LIMIT, "more than the limit passed");
    }
    n
}

fn run(host: Host, algorithm: &str, failure_mode: &str) {
    let config = json!({
        "store": {"max_keys": 64, "cas_retries": 0},
        "rules": [{"name": "hot", "key": [{"const": "all"}], "algorithm": algorithm,
                   "failure_mode": failure_mode,
                   "limit": {"requests": LIMIT, "period": "1h"}}]});
    let proxy = Arc::new(start(host, &config, THREADS));
    proxy
        .shared_data_store()
        .force_cas_mismatches(FaultTimes::Next(FORCED));
    let outcome = race(&proxy);
    let metric = |name: &str| {
        crate::support::flushed_metrics(&proxy)
            .counter(&format!("sluice.hot.{name}"))
            .unwrap_or(0)
    };
    let (allowed, retries) = (metric("allowed"), metric("cas_retries"));
    let (failed_open, failed_closed) = (metric("failed_open"), metric("failed_closed"));
    let what = format!("{algorithm} failing {failure_mode} on {host:?}");
    eprintln!(
        "{what}: {allowed} counted, {retries} lost races, {failed_open} failed open, \
         {failed_closed} failed closed"
    );
    assert_eq!(
        outcome.passed + outcome.denied_with_retry_after_1,
        THREADS as u64 * PER_THREAD
    );
    // Each lost race, with no retry left, is one request decided by the failure mode.
    assert_eq!(failed_open + failed_closed, retries, "{what}");
    assert!(retries >= u64::from(FORCED), "{what}: {retries} lost races");
    assert_eq!(
        metric("store_errors"),
        retries,
        "{what}: running out counts as a store error"
    );
    match failure_mode {
        "open" => {
            assert_eq!(failed_closed, 0, "{what}");
            assert_eq!(outcome.passed, allowed + failed_open, "{what}");
            assert_eq!(outcome.denied_with_retry_after_1, 0, "{what}");
        }
        _ => {
            assert_eq!(failed_open, 0, "{what}");
            assert_eq!(outcome.passed, allowed, "{what}");
            assert_eq!(outcome.denied_with_retry_after_1, failed_closed, "{what}");
        }
    }
    // Nothing lost, nothing counted twice: what is left is the limit minus what was counted.
    assert_eq!(remaining(&proxy), LIMIT - allowed, "{what}");
}

#[test]
fn lost_races_without_retries_follow_the_failure_mode_and_count_exactly() {
    for host in HOSTS {
        for algorithm in ["gcra", "fixed_window", "sliding_window", "sliding_log"] {
            for failure_mode in ["open", "closed"] {
                run(host, algorithm, failure_mode);
            }
        }
    }
}
