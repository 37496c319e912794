//! Shared data cannot delete keys, so a flood of distinct clients must not grow it: the
//! tables are fixed at configure time. A million distinct IPs through the filter leave shared
//! data at the size it had before the first request, while a steady client stays limited.

use serde_json::json;

use crate::support::{Host, at_ms, bucket_key, get, send, start, status};

/// The flood size; `SLUICE_FLOOD_KEYS` shrinks it for a quick local run (at least 20,000,
/// two simulated seconds, so the steady client's excess shows).
fn flood_keys() -> u32 {
    std::env::var("SLUICE_FLOOD_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000u32)
        .max(20_000)
}

#[test]
fn a_million_distinct_clients_do_not_grow_shared_data() {
    let config = json!({
        "store": {"max_keys": 4096},
        "rules": [{"name": "per-client", "key": ["client_ip"], "algorithm": "gcra",
                   "limit": {"requests": 10, "period": "1s"}}]});
    let proxy = start(Host::Envoy, &config, 2);
    let shared = proxy.shared_data();
    // 4096 keys / 4 ways = 1024 buckets, plus the hash seed.
    assert_eq!(
        shared.len(),
        1024 + 1,
        "the table is created whole at configure time"
    );
    let ceiling = 1024 * 98 + 1024 * bucket_key(&proxy, "per-client", 1023).len() + 64;

    let keys = flood_keys();
    let mut steady_admitted = 0;
    let mut steady_sent = 0;
    for i in 0..keys {
        // 1 ms per 10 flood requests: 10,000 flood requests a second, all from new clients.
        let now_ms = u64::from(i / 10);
        at_ms(&proxy, now_ms);
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + i);
        let exchange = send(&proxy, (i % 2) as usize, get("/", &format!("{ip}:5000")));
        assert_eq!(
            status(&exchange),
            200,
            "each flood client sends one request"
        );
        // The steady client sends 50 a second against its 10 a second.
        if i % 200 == 0 {
            steady_sent += 1;
            let exchange = send(&proxy, 0, get("/", "192.0.2.77:6000"));
            if status(&exchange) == 200 {
                steady_admitted += 1;
            }
        }
        if i % 100_000 == 0 {
            assert_eq!(shared.len(), 1025, "no key is ever added");
            assert!(
                shared.total_bytes() <= ceiling,
                "{} > {ceiling}",
                shared.total_bytes()
            );
        }
    }
    eprintln!(
        "flood of {keys}: shared data {} keys, {} bytes (ceiling {ceiling}); steady client \
         admitted {steady_admitted} of {steady_sent}, limit {}",
        shared.len(),
        shared.total_bytes(),
        10 * u64::from(keys / 10).div_ceil(1000) + 10
    );
    assert_eq!(shared.len(), 1025);
    assert!(
        shared.total_bytes() <= ceiling,
        "{} > {ceiling}",
        shared.total_bytes()
    );
    // The steady client may pass 10 a second (plus its first burst of 10); being the key
    // furthest from idle in its bucket, the flood never evicts it.
    let seconds = u64::from(keys / 10).div_ceil(1000);
    let allowed = 10 * seconds + 10;
    assert!(
        steady_sent > allowed,
        "the steady client must exceed its limit for the test to mean anything"
    );
    assert!(
        steady_admitted <= allowed,
        "steady client admitted {steady_admitted} of {steady_sent}, limit {allowed}"
    );
}
