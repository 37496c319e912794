//! One hot key, many VMs on many threads: lost compare-and-swap races must not let requests
//! through uncounted.
//!
//! - With the default `store.cas_retries`, a key every request commits to (the most contended
//!   case: every request writes) counts every request and fails none open.
//! - With no retries at all, a key raced for its last unit lets exactly one request through:
//!   a request that loses the race reads the key again, finds it spent and is denied, rather
//!   than passing uncounted by its failure mode.
//!
//! How many races the threads really run into depends on scheduling (each test prints them);
//! the core's property test (`filters/core/tests/cas_contention.rs`) drives arbitrary
//! interleavings of the same steps, with a schedule deciding who writes first.

use std::sync::{Arc, Barrier};

use serde_json::json;
use sluice_host::Proxy;

use crate::support::{HOSTS, Host, get, send, start, status};

const THREADS: usize = 8;

/// `per_thread` requests for key `key` from each of `THREADS` threads, started together, one
/// VM per thread. Returns how many passed.
fn race(proxy: &Arc<Proxy>, key: &str, per_thread: usize) -> u64 {
    let start_line = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|worker| {
            let (proxy, start_line, key) =
                (Arc::clone(proxy), Arc::clone(&start_line), key.to_owned());
            std::thread::spawn(move || {
                start_line.wait();
                (0..per_thread)
                    .filter(|_| {
                        let request = get("/", "198.51.100.9:1").header("x-key", &key);
                        status(&send(&proxy, worker, request)) == 200
                    })
                    .count() as u64
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("thread")).sum()
}

fn metric(proxy: &Proxy, name: &str) -> u64 {
    crate::support::flushed_metrics(proxy)
        .counter(&format!("sluice.hot.{name}"))
        .unwrap_or(0)
}

fn config(algorithm: &str, limit: u64, store: serde_json::Value) -> serde_json::Value {
    json!({"store": store,
           "rules": [{"name": "hot", "key": [{"header": "x-key"}], "algorithm": algorithm,
                      "limit": {"requests": limit, "period": "1h"}}]})
}

#[test]
fn default_retries_count_every_request_of_a_hot_key() {
    const PER_THREAD: usize = 60;
    let requests = (THREADS * PER_THREAD) as u64;
    for host in HOSTS {
        for algorithm in ["gcra", "sliding_window"] {
            // Room for every request: each one writes the key, so each races all the others.
            let proxy = Arc::new(start(host, &config(algorithm, 10_000, json!({})), THREADS));
            let passed = race(&proxy, "hot", PER_THREAD);
            let (counted, lost_races) = (metric(&proxy, "allowed"), metric(&proxy, "cas_retries"));
            let leaked = metric(&proxy, "failed_open");
            eprintln!(
                "{algorithm} on {host:?}: {passed} of {requests} passed, {counted} counted, \
                 {lost_races} lost races, {leaked} failed open"
            );
            assert_eq!(passed, requests, "{algorithm} on {host:?}");
            assert_eq!(
                leaked, 0,
                "{algorithm} on {host:?}: {lost_races} lost races"
            );
            assert_eq!(counted, requests, "{algorithm} on {host:?}");
        }
    }
}

fn last_unit_race(host: Host, algorithm: &str) {
    const LIMIT: u64 = 5;
    const ROUNDS: usize = 24;
    let proxy = Arc::new(start(
        host,
        &config(algorithm, LIMIT, json!({"cas_retries": 0})),
        THREADS,
    ));
    let what = format!("{algorithm} on {host:?}");
    for round in 0..ROUNDS {
        let key = format!("round-{round}");
        // All but the last unit, one at a time.
        for _ in 1..LIMIT {
            let request = get("/", "198.51.100.9:1").header("x-key", &key);
            assert_eq!(status(&send(&proxy, 0, request)), 200, "{what}");
        }
        let passed = race(&proxy, &key, 4);
        assert_eq!(
            passed, 1,
            "{what}, round {round}: the last unit went to {passed}"
        );
    }
    let (lost_races, leaked) = (metric(&proxy, "cas_retries"), metric(&proxy, "failed_open"));
    eprintln!("{what}: {lost_races} lost races over {ROUNDS} rounds, {leaked} failed open");
    assert_eq!(leaked, 0, "{what}");
    assert_eq!(metric(&proxy, "store_errors"), 0, "{what}");
}

#[test]
fn a_race_for_the_last_unit_lets_one_request_through_even_without_retries() {
    for host in HOSTS {
        for algorithm in ["gcra", "fixed_window", "sliding_window", "sliding_log"] {
            last_unit_race(host, algorithm);
        }
    }
}
