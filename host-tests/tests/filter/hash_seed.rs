//! The key-to-bucket hash is keyed with a seed that the first VM draws from `random_get` and
//! shares through shared data: VMs starting together agree on one seed (the create is atomic
//! on both hosts), and two deployments do not share a seed.

use serde_json::json;

use crate::support::{HOSTS, get, seed_key, send, start, status};

fn config() -> serde_json::Value {
    json!({"store": {"max_keys": 64},
           "rules": [{"name": "r", "key": ["client_ip"], "algorithm": "fixed_window",
                      "limit": {"requests": 1, "period": "1h"}}]})
}

#[test]
fn vms_starting_together_agree_on_one_seed() {
    for host in HOSTS {
        for _ in 0..5 {
            let proxy = start(host, &config(), 8);
            let seed = proxy.shared_data().get(seed_key(&proxy)).expect("a seed");
            assert_eq!(seed.value.len(), 17, "version byte and 128 bits");
            // Each VM admits the key's one request only if all place the key in one slot.
            let admitted = (0..8)
                .filter(|&worker| status(&send(&proxy, worker, get("/", "192.0.2.1:1"))) == 200)
                .count();
            assert_eq!(admitted, 1, "{host:?}: every VM must find the same counter");
        }
    }
}

#[test]
fn two_deployments_draw_different_seeds() {
    let a = start(crate::support::Host::Envoy, &config(), 1);
    let b = start(crate::support::Host::Envoy, &config(), 1);
    let seed = |p: &sluice_host::Proxy| p.shared_data().get(seed_key(p)).expect("seed").value;
    assert_ne!(seed(&a), seed(&b));
}
