//! Eight VMs on eight threads send requests for one key at once: shared data's CAS makes
//! them admit exactly the limit, on both hosts' semantics and for every exact algorithm.

use std::sync::Arc;

use serde_json::json;

use crate::support::{HOSTS, get, send, start, status};

fn admitted(algorithm: &str, limit: u64, host: crate::support::Host) -> (u64, u64) {
    let config = json!({
        "store": {"max_keys": 1024, "cas_retries": 100},
        "rules": [{"name": "one-key", "key": [{"const": "all"}], "algorithm": algorithm,
                   "limit": {"requests": limit, "period": "1h"}}]});
    let proxy = Arc::new(start(host, &config, 8));
    let per_thread = 40;
    let threads: Vec<_> = (0..8)
        .map(|worker| {
            let proxy = Arc::clone(&proxy);
            std::thread::spawn(move || {
                (0..per_thread)
                    .filter(|_| status(&send(&proxy, worker, get("/", "198.51.100.1:1000"))) == 200)
                    .count() as u64
            })
        })
        .collect();
    let admitted = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let retries = crate::support::flushed_metrics(&proxy)
        .counter("sluice.one-key.cas_retries")
        .unwrap_or(0);
    (admitted, retries)
}

#[test]
fn eight_vms_admit_exactly_the_limit_for_one_key() {
    for host in HOSTS {
        for algorithm in ["gcra", "fixed_window", "sliding_log", "sliding_window"] {
            let (admitted, retries) = admitted(algorithm, 100, host);
            eprintln!("{algorithm} on {host:?}: {admitted} of 320 admitted, {retries} CAS retries");
            assert_eq!(
                admitted, 100,
                "{algorithm} on {host:?} ({retries} CAS retries)"
            );
        }
    }
}
