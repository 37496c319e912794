//! Shared data holding what this version did not write: garbage, a bucket or state of another
//! encoding version, a bucket of another rule configuration, a damaged hash seed. The filter
//! reads each as empty (or draws a new seed), counts from scratch, overwrites it with a valid
//! value, and never traps or fails the request.

use serde_json::json;
use sluice_host::{Proxy, SharedData, SharedDataSemantics, StrictLimits};

use crate::support::{HOSTS, Host, bucket_key, get, options, send, start, status};

const LIMIT: usize = 3;

fn config() -> serde_json::Value {
    // 16 keys: 4 buckets, `sluice/damaged/r/<tag>/0` to `.../3`.
    json!({"namespace": "damaged", "store": {"max_keys": 16},
           "rules": [{"name": "r", "key": ["client_ip"], "algorithm": "fixed_window",
                      "limit": {"requests": LIMIT, "period": "1h"}}]})
}

fn bucket(version: u8, signature: u64, entries: &[(u64, &[u8])]) -> Vec<u8> {
    let mut out = vec![version];
    out.extend_from_slice(&signature.to_le_bytes());
    out.push(entries.len() as u8);
    for (fingerprint, state) in entries {
        out.extend_from_slice(&fingerprint.to_le_bytes());
        out.extend_from_slice(&(state.len() as u32).to_le_bytes());
        out.extend_from_slice(state);
    }
    out
}

/// A fixed-window state (encoding version `version`) holding `count` in a window at 0.
fn window_state(version: u8, count: u64) -> Vec<u8> {
    let mut out = vec![version, 2];
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out
}

/// Each kind of damage, named.
fn damages() -> Vec<(&'static str, Vec<u8>)> {
    let full_count = window_state(1, u64::MAX);
    vec![
        (
            "a bucket of encoding version 1 (unpadded)",
            bucket(1, 0, &[(7, &window_state(1, 1))]),
        ),
        (
            "random bytes",
            (0..97u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("an empty value", Vec::new()),
        ("a bucket of encoding version 3", bucket(3, 0, &[])),
        (
            "a bucket of another rule configuration, full",
            bucket(
                2,
                0x0123_4567_89ab_cdef,
                &[(1, &full_count), (2, &full_count)],
            ),
        ),
        (
            "a bucket whose state has encoding version 9",
            bucket(2, 0, &[(7, &window_state(9, 1))]),
        ),
        (
            "a bucket cut short",
            bucket(2, 5, &[(7, &full_count)])[..20].to_vec(),
        ),
        (
            "a bucket claiming 200 entries",
            bucket(2, 5, &[]).into_iter().take(9).chain([200]).collect(),
        ),
    ]
}

fn buckets(proxy: &Proxy) -> Vec<Vec<u8>> {
    (0..4)
        .map(|b| {
            proxy
                .shared_data()
                .get(bucket_key(proxy, "r", b))
                .expect("the table was created at configure time")
                .value
        })
        .collect()
}

#[test]
fn damaged_buckets_count_as_empty_and_are_rewritten() {
    for host in HOSTS {
        for (what, damage) in damages() {
            let proxy = start(host, &config(), 2);
            for b in 0..4 {
                let key = bucket_key(&proxy, "r", b);
                proxy.shared_data().insert(key, &damage);
            }
            let admitted = (0..LIMIT + 2)
                .filter(|i| status(&send(&proxy, i % 2, get("/", "203.0.113.70:1"))) == 200)
                .count();
            assert_eq!(
                admitted, LIMIT,
                "{what} on {host:?}: counted afresh, then limited"
            );
            let rewritten = buckets(&proxy).into_iter().filter(|v| *v != damage).count();
            assert_eq!(
                rewritten, 1,
                "{what} on {host:?}: the client's bucket is rewritten"
            );
            assert!(
                buckets(&proxy)
                    .iter()
                    .any(|v| v.first() == Some(&2) && v.len() == 10 + 4 * (12 + 18)),
                "{what} on {host:?}: rewritten as a version 2 bucket, at full size"
            );
            assert_eq!(
                crate::support::flushed_metrics(&proxy).counter("sluice.r.store_errors"),
                Some(0),
                "{what}"
            );
            assert!(!proxy.logs().contains("panic"), "{what} on {host:?}");
        }
    }
}

#[test]
fn a_damaged_or_foreign_seed_is_replaced_and_every_vm_agrees() {
    let mut version_two = vec![2u8];
    version_two.extend_from_slice(&[0xab; 16]);
    for host in HOSTS {
        for (what, seed) in [
            ("garbage", b"xyz".to_vec()),
            ("empty", Vec::new()),
            ("of encoding version 2", version_two.clone()),
            ("one byte too long", [&[1u8][..], &[7; 17]].concat()),
        ] {
            let semantics = match host {
                Host::Envoy => SharedDataSemantics::Envoy,
                Host::Ngx => SharedDataSemantics::Strict(StrictLimits::default()),
            };
            let store = SharedData::new(semantics);
            store
                .namespace("sluice-damaged")
                .insert("sluice/damaged/seed", &seed);
            let proxy = Proxy::start(
                options(host, &config(), 4)
                    .vm_id("sluice-damaged")
                    .shared_data(store),
            )
            .unwrap_or_else(|e| panic!("{host:?}, a seed {what}: {e}"));
            let stored = proxy
                .shared_data()
                .get("sluice/damaged/seed")
                .expect("a seed")
                .value;
            assert_eq!(stored.len(), 17, "{host:?}, a seed {what}: replaced");
            assert_eq!(stored[0], 1, "{host:?}, a seed {what}: version 1");
            // Every VM places the client in the same counter.
            let admitted = (0..4 * LIMIT)
                .filter(|i| status(&send(&proxy, i % 4, get("/", "203.0.113.71:1"))) == 200)
                .count();
            assert_eq!(
                admitted, LIMIT,
                "{host:?}, a seed {what}: one counter for all VMs"
            );
        }
    }
}
