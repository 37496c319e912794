//! Hash flooding: where a key lands depends on the deployment's random seed, so knowing the
//! code does not tell an attacker which keys share a bucket. Two deployments place the same
//! keys in different buckets (keys crowded into one bucket in one deployment are spread out in
//! the other), and every VM of one deployment places each key in the same bucket.

use std::collections::HashMap;

use serde_json::json;
use sluice_host::Proxy;

use crate::support::{Host, bucket_key, get, send, start, status};

/// 256 keys: 64 buckets, `sluice/<namespace>/r/<tag>/0` to `.../63`.
const BUCKETS: usize = 64;

fn deployment(workers: usize) -> Proxy {
    start(
        Host::Envoy,
        &json!({"store": {"max_keys": 4 * BUCKETS},
                "rules": [{"name": "r", "key": ["client_ip"], "algorithm": "fixed_window",
                           "limit": {"requests": 1000, "period": "1h"}}]}),
        workers,
    )
}

fn snapshot(proxy: &Proxy) -> Vec<Vec<u8>> {
    (0..BUCKETS)
        .map(|b| {
            proxy
                .shared_data()
                .get(bucket_key(proxy, "r", b))
                .expect("every bucket exists from configure time")
                .value
        })
        .collect()
}

/// The bucket that one request from `ip` on `worker` writes.
fn bucket_of(proxy: &Proxy, worker: usize, ip: &str) -> usize {
    let before = snapshot(proxy);
    assert_eq!(
        status(&send(proxy, worker, get("/", &format!("{ip}:1000")))),
        200
    );
    let after = snapshot(proxy);
    let changed: Vec<usize> = (0..BUCKETS).filter(|&b| before[b] != after[b]).collect();
    assert_eq!(changed.len(), 1, "{ip}: one request writes one bucket");
    changed[0]
}

fn ips(n: u32) -> Vec<String> {
    (0..n)
        .map(|i| std::net::Ipv4Addr::from(0xc633_6400 + i).to_string())
        .collect()
}

#[test]
fn two_deployments_place_the_same_keys_differently() {
    let (a, b) = (deployment(1), deployment(1));
    let keys = ips(200);
    let in_a: Vec<usize> = keys.iter().map(|ip| bucket_of(&a, 0, ip)).collect();
    let in_b: Vec<usize> = keys.iter().map(|ip| bucket_of(&b, 0, ip)).collect();
    // With independent seeds a key lands in the same bucket by chance, 1 in 64.
    let same = in_a.iter().zip(&in_b).filter(|(x, y)| x == y).count();
    assert!(
        same < 20,
        "{same} of 200 keys share their bucket in both deployments"
    );
    // The keys crowded into deployment A's fullest bucket are spread over B's buckets.
    let mut crowds: HashMap<usize, Vec<usize>> = HashMap::new();
    for (key, bucket) in in_a.iter().enumerate() {
        crowds.entry(*bucket).or_default().push(key);
    }
    let crowd = crowds
        .values()
        .max_by_key(|keys| keys.len())
        .expect("a bucket");
    assert!(
        crowd.len() >= 4,
        "200 keys in 64 buckets crowd at least one"
    );
    let mut spread: Vec<usize> = crowd.iter().map(|&key| in_b[key]).collect();
    spread.sort_unstable();
    spread.dedup();
    assert!(
        spread.len() * 2 > crowd.len(),
        "{} keys sharing a bucket in A share only {} buckets in B",
        crowd.len(),
        spread.len()
    );
}

#[test]
fn every_vm_of_a_deployment_places_a_key_alike() {
    let proxy = deployment(8);
    for ip in ips(24) {
        let buckets: Vec<usize> = (0..8)
            .map(|worker| bucket_of(&proxy, worker, &ip))
            .collect();
        assert!(
            buckets.iter().all(|&b| b == buckets[0]),
            "{ip} lands in {buckets:?} depending on the VM"
        );
    }
}
