//! Shared data under the strict rules of Kong's ngx_wasm_module: creating
//! needs cas 0, updating needs the stored cas, a null value deletes, and a
//! full zone evicts.

mod common;

use common::{START_NS, exchange, probe, probe_request, result, start};
use sluice_host::{
    Clock, Eviction, LogLevel, Proxy, ProxyOptions, SharedDataSemantics, StrictLimits,
};

fn strict(limits: StrictLimits) -> Proxy {
    start(
        ProxyOptions::ngx_wasm_module(probe())
            .shared_data_semantics(SharedDataSemantics::Strict(limits))
            .clock(Clock::fake(START_NS))
            .log_level(LogLevel::Trace),
    )
}

fn set(proxy: &Proxy, assignment: &str) -> Option<String> {
    let key = assignment.split('=').next().unwrap_or_default().to_string();
    result(
        &exchange(proxy, probe_request(&[("x-probe-shared-set", assignment)])),
        &format!("shared-set-{key}"),
    )
}

#[test]
fn creating_a_key_needs_cas_zero() {
    let proxy = strict(StrictLimits::default());
    assert_eq!(set(&proxy, "k=v;cas=5").as_deref(), Some("8"));
    assert!(proxy.shared_data().is_empty());
    assert_eq!(set(&proxy, "k=v").as_deref(), Some("0"));
}

#[test]
fn updating_a_key_needs_its_stored_cas() {
    let proxy = strict(StrictLimits::default());
    let cas = proxy.shared_data().insert("k", "v");
    assert_eq!(
        set(&proxy, "k=w").as_deref(),
        Some("8"),
        "cas 0 does not overwrite"
    );
    assert_eq!(set(&proxy, &format!("k=w;cas={cas}")).as_deref(), Some("0"));
    assert_eq!(
        proxy.shared_data().get("k").map(|found| found.value),
        Some(b"w".to_vec())
    );
}

#[test]
fn a_null_value_deletes_the_key() {
    let proxy = strict(StrictLimits::default());
    let cas = proxy.shared_data().insert("k", "v");
    let done = exchange(
        &proxy,
        probe_request(&[
            ("x-probe-shared-delete", &format!("k;cas={cas}")),
            ("x-probe-shared-get", "k"),
        ]),
    );
    assert_eq!(result(&done, "shared-delete-k").as_deref(), Some("0"));
    assert_eq!(result(&done, "shared-get-k").as_deref(), Some("1"));
    assert!(proxy.shared_data().is_empty());
}

/// The smallest zone (3 pages): after the slab header and the store's head
/// (in a 128-byte chunk page of its own), one page is left: 16 pairs of 256
/// bytes (96-byte node, 3-byte key, 150-byte value).
fn smallest_zone(eviction: Eviction) -> Proxy {
    strict(StrictLimits::zone(3 * 4096, eviction))
}

fn fill(proxy: &Proxy) {
    let value = "v".repeat(150);
    for i in 0..16 {
        assert_eq!(
            set(proxy, &format!("k{i:02}={value}")).as_deref(),
            Some("0"),
            "k{i:02}"
        );
    }
}

#[test]
fn a_full_zone_evicts_the_least_recently_used_key() {
    let proxy = smallest_zone(Eviction::Lru);
    fill(&proxy);
    assert_eq!(
        set(&proxy, &format!("k16={}", "v".repeat(150))).as_deref(),
        Some("0")
    );
    let keys = proxy.shared_data().keys();
    assert!(!keys.contains(&b"k00".to_vec()), "the oldest is evicted");
    assert!(keys.contains(&b"k16".to_vec()));
    assert_eq!(proxy.shared_data().len(), 16);
}

#[test]
fn a_full_zone_without_eviction_traps_the_filter() {
    let proxy = smallest_zone(Eviction::None);
    fill(&proxy);
    let failed = exchange(
        &proxy,
        probe_request(&[("x-probe-shared-set", &format!("k16={}", "v".repeat(150)))]),
    );
    assert_eq!(
        failed.client.status(),
        Some(500),
        "ngx_wasm_module traps the filter when the slab has no room"
    );
    assert_eq!(proxy.shared_data().len(), 16);
}
