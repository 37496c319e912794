//! Shared data under Envoy's rules (proxy-wasm-cpp-host `shared_data.cc`),
//! seen by a filter: the statuses it receives and what the store holds.

mod common;

use common::{exchange, options, probe_request, result, start};
use sluice_host::{FaultTimes, SharedData, SharedDataSemantics, Status};

fn get(proxy: &sluice_host::Proxy, key: &str) -> Option<String> {
    result(
        &exchange(proxy, probe_request(&[("x-probe-shared-get", key)])),
        &format!("shared-get-{key}"),
    )
}

fn set(proxy: &sluice_host::Proxy, assignment: &str) -> Option<String> {
    let key = assignment.split('=').next().unwrap_or_default().to_string();
    let done = exchange(proxy, probe_request(&[("x-probe-shared-set", assignment)]));
    result(&done, &format!("shared-set-{key}"))
}

#[test]
fn a_missing_key_is_not_found() {
    let proxy = start(options());
    assert_eq!(get(&proxy, "absent").as_deref(), Some("1"));
}

#[test]
fn cas_zero_writes_unconditionally_and_every_write_takes_a_new_cas() {
    let proxy = start(options());
    assert_eq!(set(&proxy, "k=first").as_deref(), Some("0"));
    assert_eq!(get(&proxy, "k").as_deref(), Some("0 cas=1 value=first"));
    assert_eq!(set(&proxy, "k=second").as_deref(), Some("0"));
    assert_eq!(get(&proxy, "k").as_deref(), Some("0 cas=2 value=second"));
    let stored = proxy.shared_data().get("k").expect("k is stored");
    assert_eq!((stored.value.as_slice(), stored.cas), (&b"second"[..], 2));
}

#[test]
fn a_stale_cas_is_a_mismatch_and_the_stored_one_succeeds() {
    let proxy = start(options());
    let cas = proxy.shared_data().insert("k", "seeded");
    assert_eq!(
        set(&proxy, &format!("k=stale;cas={}", cas + 100)).as_deref(),
        Some("8")
    );
    assert_eq!(
        proxy.shared_data().get("k").map(|found| found.value),
        Some(b"seeded".to_vec())
    );
    assert_eq!(
        set(&proxy, &format!("k=fresh;cas={cas}")).as_deref(),
        Some("0")
    );
    assert_eq!(
        proxy.shared_data().get("k").map(|found| found.value),
        Some(b"fresh".to_vec())
    );
}

#[test]
fn a_set_on_a_missing_key_succeeds_whatever_the_cas() {
    let proxy = start(options());
    assert_eq!(set(&proxy, "created=1;cas=77").as_deref(), Some("0"));
    assert_eq!(proxy.shared_data().len(), 1);
}

#[test]
fn a_null_value_stores_an_empty_value_instead_of_deleting() {
    let proxy = start(options());
    proxy.shared_data().insert("k", "v");
    let done = exchange(&proxy, probe_request(&[("x-probe-shared-delete", "k")]));
    assert_eq!(result(&done, "shared-delete-k").as_deref(), Some("0"));
    assert_eq!(get(&proxy, "k").as_deref(), Some("0 cas=2 value="));
    assert_eq!(proxy.shared_data().len(), 1, "the key stays");
    assert_eq!(proxy.shared_data().total_bytes(), 1, "the key alone");
}

#[test]
fn injected_get_faults_reach_the_filter_for_the_requested_calls() {
    let proxy = start(options());
    proxy.shared_data().insert("k", "v");
    proxy
        .shared_data_store()
        .fail_gets(Status::InternalFailure, FaultTimes::Next(1));
    assert_eq!(get(&proxy, "k").as_deref(), Some("10"));
    assert_eq!(get(&proxy, "k").as_deref(), Some("0 cas=1 value=v"));
}

#[test]
fn injected_set_faults_answer_the_injected_status_until_cleared() {
    let proxy = start(options());
    let store = proxy.shared_data_store();
    store.fail_sets(Status::InternalFailure, FaultTimes::Always);
    assert_eq!(set(&proxy, "k=1").as_deref(), Some("10"));
    assert_eq!(set(&proxy, "k=1").as_deref(), Some("10"));
    store.clear_faults();
    assert_eq!(set(&proxy, "k=1").as_deref(), Some("0"));
}

#[test]
fn forced_cas_mismatches_hit_conditional_sets_only() {
    let proxy = start(options());
    let cas = proxy.shared_data().insert("k", "v");
    proxy
        .shared_data_store()
        .force_cas_mismatches(FaultTimes::Next(1));
    assert_eq!(
        set(&proxy, "other=1").as_deref(),
        Some("0"),
        "cas 0 is unconditional"
    );
    assert_eq!(set(&proxy, &format!("k=x;cas={cas}")).as_deref(), Some("8"));
    assert_eq!(set(&proxy, &format!("k=x;cas={cas}")).as_deref(), Some("0"));
}

#[test]
fn proxies_sharing_a_store_share_the_namespace_of_their_vm_id() {
    let store = SharedData::new(SharedDataSemantics::Envoy);
    let first = start(options().shared_data(store.clone()));
    let second = start(options().shared_data(store.clone()));
    let other = start(options().shared_data(store.clone()).vm_id("other"));
    assert_eq!(set(&first, "k=shared").as_deref(), Some("0"));
    assert_eq!(get(&second, "k").as_deref(), Some("0 cas=1 value=shared"));
    assert_eq!(
        get(&other, "k").as_deref(),
        Some("1"),
        "another vm_id, another namespace"
    );
}
