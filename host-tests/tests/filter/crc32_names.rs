//! ngx_wasm_module finds a shared-data key by its CRC32 alone, so two of sluice's key names
//! with one CRC32 would be one entry there. The filter checks every name of its configuration
//! when it is configured and renames (deterministically) the tables whose names collide.
//!
//! The rule names below are constructed to collide: equal length and equal CRC32 (found by a
//! birthday search over random names). CRC32 is linear, so every key name containing one
//! collides with the same name containing the other: every bucket of one rule's table with
//! the bucket of the same index of the other's, when their tags are equal.

use serde_json::json;

use crate::support::{Host, get, send, start, status};

const TWINS: [&str; 2] = ["r-oijkgjm9", "r-o3a59da7"];

#[test]
fn the_twin_rule_names_have_one_crc32() {
    assert_eq!(
        crc32fast::hash(TWINS[0].as_bytes()),
        crc32fast::hash(TWINS[1].as_bytes())
    );
    assert_eq!(
        crc32fast::hash(format!("sluice/ns/{}/0000abcd/17", TWINS[0]).as_bytes()),
        crc32fast::hash(format!("sluice/ns/{}/0000abcd/17", TWINS[1]).as_bytes()),
    );
}

/// Two rules with the same limit (so the same tag) and colliding names: without renaming,
/// all 256 buckets of the second would be the first's entries in ngx_wasm_module.
#[test]
fn colliding_names_are_renamed_so_every_bucket_is_its_own_entry() {
    let config = json!({"store": {"max_keys": 1024}, "rules": [
        {"name": TWINS[0], "key": ["client_ip"], "limit": {"requests": 5, "period": "10s"}},
        {"name": TWINS[1], "key": [{"header": "x-api-key"}], "when_key_missing": "skip",
         "limit": {"requests": 5, "period": "10s"}}]});
    let proxy = start(Host::Ngx, &config, 2);
    // 2 tables of 256 buckets and the seed, each an entry of its own.
    assert_eq!(proxy.shared_data().len(), 2 * 256 + 1);
    let keys = proxy.shared_data().keys();
    let mut crcs: Vec<u32> = keys.iter().map(|key| crc32fast::hash(key)).collect();
    crcs.sort_unstable();
    crcs.dedup();
    assert_eq!(crcs.len(), keys.len(), "no two names share a CRC32");
    assert!(
        proxy
            .logs()
            .contains("1 tables renamed to keep key names apart by CRC32"),
        "{:?}",
        proxy.logs().messages()
    );
}

/// Twin names with different limits and one bucket each (`max_keys` 4): in the former naming
/// (`sluice/<rule>/<bucket>`) the two buckets were one entry in ngx_wasm_module and each
/// rule's write reset the other's (signature mismatch). Each rule must keep its own exact
/// limit; the new names differ by their tags, so nothing collides.
#[test]
fn rules_with_colliding_names_and_different_limits_keep_their_own_limits() {
    assert_eq!(
        crc32fast::hash(format!("sluice/{}/0", TWINS[0]).as_bytes()),
        crc32fast::hash(format!("sluice/{}/0", TWINS[1]).as_bytes()),
        "the former names collided"
    );
    let config = json!({"store": {"max_keys": 4}, "rules": [
        {"name": TWINS[0], "match": {"paths": ["/a"]}, "key": ["client_ip"],
         "algorithm": "fixed_window", "limit": {"requests": 5, "period": "10s"}},
        {"name": TWINS[1], "match": {"paths": ["/b"]}, "key": ["client_ip"],
         "algorithm": "fixed_window", "limit": {"requests": 12, "period": "10s"}}]});
    let proxy = start(Host::Ngx, &config, 1);
    assert_eq!(proxy.shared_data().len(), 2 + 1, "two buckets and the seed");
    let mut admitted = [0, 0];
    for _ in 0..20 {
        for (path, count) in ["/a", "/b"].iter().zip(admitted.iter_mut()) {
            if status(&send(&proxy, 0, get(path, "203.0.113.7:4000"))) == 200 {
                *count += 1;
            }
        }
    }
    assert_eq!(admitted, [5, 12], "each rule its own limit");
}
