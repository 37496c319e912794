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

#[test]
fn a_full_zone_evicts_the_least_recently_used_key() {
    let proxy = strict(StrictLimits {
        capacity_bytes: Some(8),
        eviction: Eviction::Lru,
    });
    for assignment in ["a=111", "b=222"] {
        assert_eq!(set(&proxy, assignment).as_deref(), Some("0"));
    }
    assert_eq!(set(&proxy, "c=333").as_deref(), Some("0"));
    assert_eq!(proxy.shared_data().keys(), [b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(proxy.shared_data().total_bytes(), 8);
}

#[test]
fn a_full_zone_without_eviction_refuses_the_write() {
    let proxy = strict(StrictLimits {
        capacity_bytes: Some(4),
        eviction: Eviction::None,
    });
    assert_eq!(set(&proxy, "a=111").as_deref(), Some("0"));
    assert_eq!(
        set(&proxy, "b=222").as_deref(),
        Some("10"),
        "INTERNAL_FAILURE"
    );
}
