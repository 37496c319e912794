//! Where a rule's state for one key lives in Redis.
//!
//! ```text
//! sluice:v1:{<domain>:<key id>}:<rule>
//! ```
//!
//! The part in braces is the Redis Cluster hash tag: every rule on the same key bytes of one
//! domain lands in the same hash slot, so the usual decision (several rules keyed on the
//! client) is one script call on one node. `<key id>` is the lowercase hex of the key bytes
//! when they are at most [`MAX_HEX_KEY_BYTES`] long (an IPv6 address in text fits), so keys stay
//! readable in `redis-cli`; longer keys are `h` followed by the hex of a 64-bit SipHash-1-3 of
//! the bytes. Hex never contains `h`, so the two forms cannot collide. The hash key is fixed
//! (every service replica must name a key alike); it picks the slot, not the counter a client
//! may reach, so a known hash key gives nobody a way past their limit.

use core::hash::Hasher as _;
use std::fmt::Write as _;

use siphasher::sip::SipHasher13;

/// The prefix of every key the store writes; `v1` is the layout's version.
pub const KEY_PREFIX: &str = "sluice:v1:";

/// Keys up to this many bytes appear in hex in the Redis key; longer ones are hashed.
pub const MAX_HEX_KEY_BYTES: usize = 48;

/// The fixed SipHash key of long key bytes ("sluice-redis-key").
const HASH_KEY: (u64, u64) = (0x736c_7569_6365_2d72, 0x6564_6973_2d6b_6579);

/// The Redis key of `rule`'s state for `key` in `domain`.
///
/// ```
/// assert_eq!(
///     sluice_redis::keys::state_key("sluice", "per-client", b"203.0.113.7"),
///     "sluice:v1:{sluice:3230332e302e3131332e37}:per-client"
/// );
/// ```
pub fn state_key(domain: &str, rule: &str, key: &[u8]) -> String {
    let mut out = String::with_capacity(
        KEY_PREFIX.len() + domain.len() + rule.len() + 4 + 2 * key.len().min(MAX_HEX_KEY_BYTES),
    );
    out.push_str(KEY_PREFIX);
    out.push('{');
    out.push_str(domain);
    out.push(':');
    push_key_id(&mut out, key);
    out.push_str("}:");
    out.push_str(rule);
    out
}

fn push_key_id(out: &mut String, key: &[u8]) {
    if key.len() <= MAX_HEX_KEY_BYTES {
        for byte in key {
            let _ = write!(out, "{byte:02x}");
        }
    } else {
        let mut hasher = SipHasher13::new_with_keys(HASH_KEY.0, HASH_KEY.1);
        hasher.write(key);
        let _ = write!(out, "h{:016x}", hasher.finish());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_on_one_key_share_the_hash_tag() {
        let a = state_key("d", "a", b"k");
        let b = state_key("d", "b", b"k");
        assert_eq!(a, "sluice:v1:{d:6b}:a");
        assert_eq!(b, "sluice:v1:{d:6b}:b");
        let long = vec![7u8; 100];
        let key = state_key("d", "r", &long);
        assert!(key.starts_with("sluice:v1:{d:h"), "{key}");
        assert_eq!(key.len(), "sluice:v1:{d:h}:r".len() + 16);
        assert_ne!(key, state_key("d", "r", &[7u8; 101]));
    }

    #[test]
    fn hex_and_hashed_ids_cannot_collide() {
        // An 8-byte key in hex is 16 digits, as long as a hash, but has no `h`.
        let short = state_key("d", "r", b"abcdefgh");
        assert!(!short.contains(":h"), "{short}");
        let max = state_key("d", "r", &[0xab; MAX_HEX_KEY_BYTES]);
        assert!(!max.contains(":h"));
    }
}
