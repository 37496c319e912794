//! Which limiter object owns a (rule, key) pair.
//!
//! An object is named after the request's key for the rule, hashed, without the rule's name:
//! rules that count by the same key (the usual "10 per second and 1,000 per hour per client")
//! share one object, so a request costs one object call whatever the number of such rules, and
//! that object decides them all or none in one step. Rules that count by different keys (per
//! client and global, say) live in different objects; a request then calls each of them once,
//! in parallel (see `gateway`).
//!
//! The name is a 128-bit SipHash of the key bytes under a fixed key: stable across deploys
//! and isolates (every isolate must find the same object), and it keeps key contents such as
//! API keys out of object names.

use siphasher::sip128::{Hasher128, SipHasher13};
use sluice_core::Check;
use std::hash::Hasher;

use crate::protocol::hex;

/// Fixed so that every isolate, and every deploy, names a key's object alike.
const NAME_KEY: (u64, u64) = (0x736c_7569_6365_2d64, 0x6f2d_7063_6d65_6e74);

/// The name of the object that owns `check`'s key.
pub fn object_name(check: &Check<'_>) -> String {
    object_for_key(&check.key)
}

/// The name of the object that owns the states of `key` (any rule's).
pub fn object_for_key(key: &[u8]) -> String {
    let mut hasher = SipHasher13::new_with_keys(NAME_KEY.0, NAME_KEY.1);
    hasher.write(key);
    let hash = hasher.finish128();
    let mut bytes = [0u8; 16];
    let (high, low) = bytes.split_at_mut(8);
    high.copy_from_slice(&hash.h1.to_le_bytes());
    low.copy_from_slice(&hash.h2.to_le_bytes());
    format!("k-{}", hex(&bytes))
}

/// The request's checks grouped by object, each group with the checks' indices in the
/// request, groups in order of their first check.
pub fn group(checks: &[Check<'_>]) -> Vec<(String, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (index, check) in checks.iter().enumerate() {
        let name = object_name(check);
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, indices)) => indices.push(index),
            None => groups.push((name, vec![index])),
        }
    }
    groups
}
