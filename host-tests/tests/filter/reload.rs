//! What a configuration reload does to the counts. ngx_wasm_module maps a fresh `shm_kv`
//! zone on every `nginx -s reload`, so every count starts again from zero (reality,
//! documented in README "Limits of the design"); Envoy keeps a `vm_id`'s shared data while
//! any of its VMs lives and starts the new VMs first, so a VM replacement keeps the counts.

use serde_json::json;

use crate::support::{Host, get, send, start, status};

fn config() -> serde_json::Value {
    json!({"rules": [{"name": "per-client", "key": ["client_ip"], "algorithm": "fixed_window",
        "limit": {"requests": 5, "period": "10s"}}]})
}

fn admitted(proxy: &sluice_host::Proxy, n: usize) -> usize {
    (0..n)
        .filter(|_| status(&send(proxy, 0, get("/", "203.0.113.7:4000"))) == 200)
        .count()
}

#[test]
fn an_nginx_reload_starts_every_count_afresh() {
    let proxy = start(Host::Ngx, &config(), 2);
    assert_eq!(admitted(&proxy, 8), 5);
    let proxy = proxy
        .reload(config().to_string())
        .expect("the reloaded workers start");
    assert_eq!(
        admitted(&proxy, 8),
        5,
        "a fresh zone: the client's 5 of 5 are forgotten"
    );
}

#[test]
fn an_envoy_vm_replacement_keeps_the_counts() {
    let proxy = start(Host::Envoy, &config(), 2);
    assert_eq!(admitted(&proxy, 8), 5);
    let proxy = proxy
        .reload(config().to_string())
        .expect("the new VMs start");
    assert_eq!(admitted(&proxy, 8), 0, "the same shared data");
}

/// On Envoy a changed limit is a changed table (its names carry the limit's signature), so
/// the new configuration starts afresh for that rule, and the old table is left as it was.
#[test]
fn an_envoy_reload_with_another_limit_starts_that_rule_afresh() {
    let proxy = start(Host::Envoy, &config(), 1);
    assert_eq!(admitted(&proxy, 8), 5);
    let changed = json!({"rules": [{"name": "per-client", "key": ["client_ip"],
        "algorithm": "fixed_window", "limit": {"requests": 7, "period": "10s"}}]});
    let proxy = proxy.reload(changed.to_string()).expect("starts");
    assert_eq!(admitted(&proxy, 10), 7);
}
