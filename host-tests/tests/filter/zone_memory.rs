//! ngx_wasm_module keeps shared data in an `shm_kv` zone of a fixed size, allocated by NGINX's
//! slab allocator, and evicts (or fails) when it is full. The host models that zone
//! (`sluice_host::shm_zone`); these tests hold the filter to it:
//!
//! - every bucket is written at its full size when the VM is configured, so the zone's use
//!   after start is its use forever: a flood of distinct keys allocates nothing, evicts
//!   nothing, and a client that spent its limit keeps its count;
//! - a zone too small fails at configure time with a line that says the size to declare;
//! - the size the filter states is enough.
//!
//! `SLUICE_ZONE_FLOOD_KEYS` sets the flood (default 20,000 distinct clients; the run
//! was 200,000).

use serde_json::{Value, json};
use sluice_host::{Eviction, HostError, Proxy};

use crate::support::{Host, at_ms, get, options, send, status};

/// README's zone size for one sliding-window rule over 65,536 keys.
const SLIDING_WINDOW_ZONE: usize = 8_450_048;

fn flood_keys() -> u32 {
    std::env::var("SLUICE_ZONE_FLOOD_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// One sliding-window rule of 100 requests per 10 s over the default 65,536 keys (16,384
/// buckets): the rule of the NGINX run.
fn sliding_window_rule() -> Value {
    json!({"rules": [{"name": "per-client", "key": ["client_ip"], "algorithm": "sliding_window",
        "limit": {"requests": 100, "period": "10s"}}]})
}

/// The zone size the filter states for `config` in its start-up log line.
fn stated_zone_bytes(config: &Value) -> usize {
    let proxy = Proxy::start(options(Host::Ngx, config, 1)).expect("starts without a limit");
    let line = proxy
        .logs()
        .messages()
        .into_iter()
        .find(|line| line.contains("creating the tables"))
        .expect("the footprint line");
    let needs = line.split("needs ").nth(1).expect("needs N bytes");
    needs
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number of bytes")
}

fn start_in_zone(config: &Value, zone: usize, eviction: Eviction) -> Result<Proxy, HostError> {
    Proxy::start(options(Host::Ngx, config, 2).shm_zone(zone, eviction))
}

/// Sends `n` requests from `peer` and answers how many were admitted.
fn admitted(proxy: &Proxy, peer: &str, n: usize) -> usize {
    (0..n)
        .filter(|i| status(&send(proxy, i % 2, get("/", peer))) == 200)
        .count()
}

#[test]
fn a_flood_after_start_allocates_nothing_and_erases_no_count() {
    let config = sliding_window_rule();
    // README's zone for this rule (checked against the filter's own figure below).
    let zone = SLIDING_WINDOW_ZONE;
    let proxy = start_in_zone(&config, zone, Eviction::Lru).expect("the stated zone is enough");
    let shared = proxy.shared_data();
    let (pages_at_start, total_pages) = shared.zone_pages().expect("a sized zone");
    let keys_at_start = shared.len();
    assert_eq!(keys_at_start, 16_384 + 1, "every bucket and the seed");

    // Two heavy clients spend 100 of 100.
    for heavy in ["198.51.100.1:4000", "198.51.100.2:4000"] {
        assert_eq!(admitted(&proxy, heavy, 100), 100);
        assert_eq!(admitted(&proxy, heavy, 1), 0);
    }
    // The flood: distinct clients, one request each, over 2 simulated seconds (well inside
    // the heavy clients' window).
    let keys = flood_keys();
    for i in 0..keys {
        at_ms(&proxy, u64::from(i) * 2_000 / u64::from(keys.max(1)));
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + i);
        let exchange = send(&proxy, (i % 2) as usize, get("/", &format!("{ip}:5000")));
        assert_eq!(status(&exchange), 200);
    }
    assert_eq!(
        shared.zone_pages(),
        Some((pages_at_start, total_pages)),
        "not one page more after {keys} distinct clients"
    );
    assert_eq!(shared.len(), keys_at_start, "no entry evicted or added");
    for heavy in ["198.51.100.1:4000", "198.51.100.2:4000"] {
        assert_eq!(admitted(&proxy, heavy, 20), 0, "{heavy} keeps its count");
    }
}

#[test]
fn a_zone_too_small_fails_at_configure_time_with_the_size_to_declare() {
    let config = sliding_window_rule();
    let zone = stated_zone_bytes(&config);
    for eviction in [Eviction::Lru, Eviction::Slru] {
        let error = start_in_zone(&config, zone * 3 / 4, eviction)
            .map(|_| ())
            .expect_err("a zone three quarters of the size");
        let text = error.to_string();
        assert!(
            matches!(error, HostError::ConfigurationRejected { .. }),
            "{eviction:?}: {text}"
        );
        assert!(
            text.contains(&format!("declare the zone with at least {zone} bytes")),
            "{eviction:?}: {text}"
        );
        assert!(text.contains("rule \"per-client\""), "{text}");
    }
    // Without eviction the write fails and ngx_wasm_module traps the VM; the line logged
    // before the tables are created already says what the zone needs.
    let error = start_in_zone(&config, zone * 3 / 4, Eviction::None)
        .map(|_| ())
        .expect_err("a zone three quarters of the size");
    let text = error.to_string();
    assert!(matches!(error, HostError::StartTrapped { .. }), "{text}");
    assert!(text.contains("could not write to slab"), "{text}");
    assert!(
        text.contains(&format!("zone \"sluice\" needs {zone} bytes")),
        "{text}"
    );
}

/// The zone sizes README's "Limits of the design" gives for one rule of each algorithm over
/// the default 65,536 keys (rule `per-client`, no namespace; `sliding_log` with 100
/// requests), and each is enough in the modelled zone with every eviction policy.
#[test]
fn the_stated_zone_sizes_are_the_readmes_and_are_enough() {
    let expected = [
        ("gcra", 4_231_168),
        ("fixed_window", 8_450_048),
        ("sliding_window", SLIDING_WINDOW_ZONE),
        ("sliding_log", 67_514_368),
    ];
    for (algorithm, readme) in expected {
        let config = json!({"rules": [{"name": "per-client", "key": ["client_ip"],
            "algorithm": algorithm, "limit": {"requests": 100, "period": "10s"}}]});
        let zone = stated_zone_bytes(&config);
        assert_eq!(zone, readme, "{algorithm}");
        let proxy = start_in_zone(&config, zone, Eviction::None)
            .unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        let (used, total) = proxy.shared_data().zone_pages().unwrap();
        assert!(used <= total, "{algorithm}");
        assert_eq!(proxy.shared_data().len(), 16_384 + 1, "{algorithm}");
    }
}
