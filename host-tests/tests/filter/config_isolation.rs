//! Shared data is global to a proxy (to an NGINX, to an Envoy `vm_id`), so two sluice
//! configurations in one proxy (two locations, two listeners) see each other's keys. Their
//! counters stay apart unless they name one `namespace` on purpose, and even then a rule of
//! the same name with another limit gets a table of its own: no configuration can reset
//! another's counts. Each test runs two proxies over one store, as two configurations of one
//! proxy, on both hosts.

use serde_json::{Value, json};
use sluice_host::{Proxy, SharedData, SharedDataSemantics, StrictLimits};

use crate::support::{HOSTS, Host, get, options, send, status};

fn store_for(host: Host) -> SharedData {
    match host {
        Host::Envoy => SharedData::new(SharedDataSemantics::Envoy),
        Host::Ngx => SharedData::new(SharedDataSemantics::Strict(StrictLimits::default())),
    }
}

fn start_on(host: Host, store: &SharedData, config: &Value) -> Proxy {
    Proxy::start(options(host, config, 1).shared_data(store.clone()))
        .unwrap_or_else(|e| panic!("the proxy did not start: {e}"))
}

/// One rule `per-client` keyed by the client address, `requests` per 10 s, plus `extra`
/// top-level fields.
fn per_client(requests: u64, extra: Value) -> Value {
    let mut config = json!({"rules": [{"name": "per-client", "key": ["client_ip"],
        "algorithm": "fixed_window", "limit": {"requests": requests, "period": "10s"}}]});
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config
}

/// Sends `rounds` requests from one client to each proxy in turn (all at the same instant,
/// well inside one window) and answers how many each admitted.
fn alternate(proxies: &[&Proxy], rounds: usize) -> Vec<usize> {
    let mut admitted = vec![0; proxies.len()];
    for _ in 0..rounds {
        for (proxy, count) in proxies.iter().zip(admitted.iter_mut()) {
            if status(&send(proxy, 0, get("/", "203.0.113.7:4000"))) == 200 {
                *count += 1;
            }
        }
    }
    admitted
}

/// The finding: two locations with one rule name and limits 5 and 12 reset each
/// other's buckets, and 12 requests passed against the limit of 5. Each must keep its own.
#[test]
fn two_configurations_with_one_rule_name_and_different_limits_keep_their_own_limits() {
    for host in HOSTS {
        let store = store_for(host);
        let five = start_on(host, &store, &per_client(5, json!({})));
        let twelve = start_on(host, &store, &per_client(12, json!({})));
        assert_eq!(
            alternate(&[&five, &twelve], 20),
            [5, 12],
            "{host:?}: each exactly its own limit"
        );
    }
}

/// Without a namespace, even one rule with one limit is private to its configuration: a
/// client limited in one location is not limited by its requests to another.
#[test]
fn without_a_namespace_equal_rules_in_different_configurations_count_apart() {
    for host in HOSTS {
        let store = store_for(host);
        let api = start_on(host, &store, &per_client(5, json!({})));
        // Same rule, another response status: a different configuration.
        let admin = start_on(
            host,
            &store,
            &per_client(5, json!({"response": {"status": 503}})),
        );
        assert_eq!(alternate(&[&api, &admin], 10), [5, 5], "{host:?}");
    }
}

/// Byte-identical configurations derive one namespace, so they share counters: the same
/// configuration pasted into two locations limits the client once across both (harmless:
/// same rules, same limits; to separate them, give each a `namespace`).
#[test]
fn byte_identical_configurations_share_and_a_namespace_separates_them() {
    for host in HOSTS {
        let store = store_for(host);
        let one = start_on(host, &store, &per_client(5, json!({})));
        let two = start_on(host, &store, &per_client(5, json!({})));
        assert_eq!(alternate(&[&one, &two], 10), [3, 2], "{host:?}: 5 in all");

        let store = store_for(host);
        let one = start_on(host, &store, &per_client(5, json!({"namespace": "api"})));
        let two = start_on(host, &store, &per_client(5, json!({"namespace": "admin"})));
        assert_eq!(alternate(&[&one, &two], 10), [5, 5], "{host:?}");
    }
}

/// Configurations naming the same namespace share the counters of rules with the same name
/// and the same limit: one budget across both.
#[test]
fn a_shared_namespace_shares_a_rule_of_the_same_name_and_limit() {
    for host in HOSTS {
        let store = store_for(host);
        let api = start_on(host, &store, &per_client(5, json!({"namespace": "shop"})));
        let admin = start_on(
            host,
            &store,
            &per_client(5, json!({"namespace": "shop", "response": {"status": 503}})),
        );
        assert_eq!(alternate(&[&api, &admin], 10), [3, 2], "{host:?}: 5 in all");
        // The shared table is one table: the namespace's keys are the seed and one table.
        let tables: std::collections::BTreeSet<Vec<u8>> = api
            .shared_data()
            .keys()
            .into_iter()
            .filter(|key| key.starts_with(b"sluice/shop/per-client/"))
            .map(|key| key[..key.iter().rposition(|&b| b == b'/').unwrap()].to_vec())
            .collect();
        assert_eq!(tables.len(), 1, "{host:?}");
    }
}

/// In a shared namespace, the same rule name with another limit is another table: it never
/// overwrites the buckets of the first, so neither resets the other.
#[test]
fn a_shared_namespace_never_resets_a_rule_of_the_same_name_with_another_limit() {
    for host in HOSTS {
        let store = store_for(host);
        let five = start_on(host, &store, &per_client(5, json!({"namespace": "shop"})));
        let twelve = start_on(host, &store, &per_client(12, json!({"namespace": "shop"})));
        assert_eq!(alternate(&[&five, &twelve], 20), [5, 12], "{host:?}");
    }
}
