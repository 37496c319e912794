//! Per-key overrides: keys with a limit of their own (the partner with a custom contract),
//! found by one hash lookup whatever the number of overrides.
//!
//! ```json
//! "overrides": {
//!   "acme":   {"key": "partner-acme", "requests": 50000, "period": "1m"},
//!   "globex": {"key_sha256": "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
//!              "requests": 20000, "period": "1m"}
//! }
//! ```
//!
//! `key` is the value of the rule's key (a list, one value per part, for a key of several
//! parts); `key_sha256` is the lowercase or uppercase hex SHA-256 of the value of a one-part
//! key, so that secret API keys need not be written in the configuration. Each override has
//! its own counter (a one-bucket table named `<rule>:<override>`) and its own
//! `RateLimit-Policy` item, named `<rule>:<override>`. An override wins over the rule's tiers.

use core::hash::Hasher as _;

use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use siphasher::sip::SipHasher13;
use sluice_core::Limit;

use crate::error::{ConfigError, Problem};
use crate::json::{self, Fields};
use crate::key::{KeyPart, KeySpec, text_part};
use crate::tier::{LimitKind, NamedLimit, check_name};

/// Fields of one override: its key and its limit.
pub(crate) const OVERRIDE_FIELDS: &[&str] = &["key", "key_sha256", "requests", "period", "burst"];

/// The most overrides of one rule (each has a small table of its own).
pub const MAX_OVERRIDES: usize = 10_000;

/// A fixed set of byte strings, each with a value, found by one hash and a short probe: an
/// open-addressing table at most half full. The keys are the configuration's, so a fixed hash
/// key is enough: a client can only look up, not insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Index {
    /// `0` empty, else `1 +` an index in `entries`; a power of two long.
    slots: Vec<u32>,
    entries: Vec<(Vec<u8>, usize)>,
}

impl Index {
    fn hash(key: &[u8]) -> u64 {
        let mut hasher = SipHasher13::new_with_keys(0x736c_7569_6365_2d6f, 0x7665_7272_6964_6573);
        hasher.write(key);
        hasher.finish()
    }

    /// Adds `key`; false if it is there already.
    fn insert(&mut self, key: Vec<u8>, value: usize) -> bool {
        if self.get(&key).is_some() {
            return false;
        }
        self.entries.push((key, value));
        if self.slots.len() < self.entries.len() * 2 {
            self.slots = alloc::vec![0; (self.entries.len() * 2).next_power_of_two()];
            for entry in 0..self.entries.len() {
                self.place(entry);
            }
        } else {
            self.place(self.entries.len() - 1);
        }
        true
    }

    fn place(&mut self, entry: usize) {
        let Some((key, _)) = self.entries.get(entry) else {
            return;
        };
        let mask = self.slots.len() - 1;
        let mut slot = Index::hash(key) as usize & mask;
        while let Some(s) = self.slots.get_mut(slot) {
            if *s == 0 {
                *s = u32::try_from(entry + 1).unwrap_or(u32::MAX);
                return;
            }
            slot = (slot + 1) & mask;
        }
    }

    fn get(&self, key: &[u8]) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut slot = Index::hash(key) as usize & mask;
        loop {
            let entry = (*self.slots.get(slot)?).checked_sub(1)?;
            let (stored, value) = self.entries.get(entry as usize)?;
            if stored == key {
                return Some(*value);
            }
            slot = (slot + 1) & mask;
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A compiled `overrides` section: key bytes (as the rule's key builds them) or SHA-256
/// digests of a one-part key's value, each to an index in the rule's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    exact: Index,
    hashed: Index,
}

/// How a rule's overrides give their limits.
pub(crate) struct OverrideLimits<'a> {
    /// The fields an override may have: its key's, and its limit's.
    pub(crate) fields: &'static [&'static str],
    /// Parses an override's limit fields at a path.
    pub(crate) parse: &'a dyn Fn(&Value, &str) -> Result<Limit, ConfigError>,
}

impl Overrides {
    /// Parses `overrides` at `path` for a rule keyed by `key`, appending each override's
    /// limit (read as `limit` says) to `limits`.
    pub(crate) fn parse(
        value: &Value,
        path: &str,
        rule: &str,
        key: &KeySpec,
        limit: &OverrideLimits<'_>,
        taken: &[NamedLimit],
        limits: &mut Vec<NamedLimit>,
    ) -> Result<Overrides, ConfigError> {
        let Value::Object(map) = value else {
            return Err(ConfigError::new(
                path,
                Problem::WrongType {
                    expected: "an object of overrides by name, e.g. {\"acme\": {\"key\": \
                               \"partner-acme\", \"requests\": 50000, \"period\": \"1m\"}}",
                    found: json::kind(value),
                },
            ));
        };
        if map.is_empty() {
            return Err(ConfigError::new(
                path,
                Problem::EmptyList {
                    hint: "remove the field for a rule without overrides",
                },
            ));
        }
        if map.len() > MAX_OVERRIDES {
            return Err(ConfigError::new(
                path,
                Problem::OutOfRange {
                    value: map.len() as u64,
                    min: 1,
                    max: MAX_OVERRIDES as u64,
                    why: "overrides per rule; each has a table in shared data",
                },
            ));
        }
        if let Some(index) = key
            .parts()
            .iter()
            .position(|p| matches!(p, KeyPart::ClientIp { .. }))
        {
            return Err(ConfigError::new(
                path,
                Problem::OverrideNeedsTextKey {
                    part: json::index("key", index),
                },
            ));
        }
        let mut overrides = Overrides::default();
        for (name, entry) in map {
            let entry_path = json::join(path, name);
            let full_name = check_name(rule, name);
            if !crate::config::valid_name(name)
                || name == "deny"
                || taken
                    .iter()
                    .chain(limits.iter())
                    .any(|l| l.name == full_name)
            {
                return Err(ConfigError::new(
                    entry_path,
                    Problem::InvalidOverrideName { name: name.clone() },
                ));
            }
            let fields = Fields::open(entry, &entry_path, limit.fields)?;
            let index = taken.len() + limits.len();
            match (fields.get("key"), fields.get("key_sha256")) {
                (Some(v), None) => {
                    let bytes = encode_key(v, &fields.path("key"), key)?;
                    if !overrides.exact.insert(bytes, index) {
                        return Err(ConfigError::new(
                            fields.path("key"),
                            Problem::DuplicateOverrideKey,
                        ));
                    }
                }
                (None, Some(v)) => {
                    let digest_path = fields.path("key_sha256");
                    if key.parts().len() != 1 {
                        return Err(ConfigError::new(
                            digest_path,
                            Problem::OverrideHashNeedsOnePart,
                        ));
                    }
                    let digest = sha256_hex(json::string(v, &digest_path)?).ok_or_else(|| {
                        ConfigError::new(digest_path.as_str(), Problem::InvalidSha256)
                    })?;
                    if !overrides.hashed.insert(digest.to_vec(), index) {
                        return Err(ConfigError::new(digest_path, Problem::DuplicateOverrideKey));
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(entry_path, Problem::OverrideKeyConflict));
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        fields.path("key"),
                        Problem::Missing {
                            example: "\"key\": \"partner-acme\", or \"key_sha256\": \"<64 hex digits>\"",
                        },
                    ));
                }
            }
            limits.push(NamedLimit {
                name: full_name,
                limit: (limit.parse)(entry, &entry_path)?,
                max_keys: 1,
                kind: LimitKind::Override,
            });
        }
        Ok(overrides)
    }

    /// The index in the rule's limits of the override for a request whose complete key is
    /// `key` (as the rule's key spec builds it).
    pub(crate) fn find(&self, key: &[u8]) -> Option<usize> {
        if let Some(index) = self.exact.get(key) {
            return Some(index);
        }
        if self.hashed.is_empty() {
            return None;
        }
        // A one-part text key: `0x01 | length:u32 | value`.
        let value = key.get(5..)?;
        let digest: [u8; 32] = Sha256::digest(value).into();
        self.hashed.get(&digest)
    }

    /// How many overrides there are.
    pub fn len(&self) -> usize {
        self.exact.len() + self.hashed.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.hashed.is_empty()
    }
}

/// The key bytes a request with the override's values builds.
fn encode_key(value: &Value, path: &str, spec: &KeySpec) -> Result<Vec<u8>, ConfigError> {
    let values: Vec<(&str, String)> = match value {
        Value::String(text) => alloc::vec![(text.as_str(), String::from(path))],
        Value::Array(items) => {
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_path = json::index(path, i);
                values.push((json::string(item, &item_path)?, item_path));
            }
            values
        }
        _ => {
            return Err(ConfigError::new(
                path,
                Problem::WrongType {
                    expected: "the key's value, or a list of one value per key part",
                    found: json::kind(value),
                },
            ));
        }
    };
    if values.len() != spec.parts().len() {
        return Err(ConfigError::new(
            path,
            Problem::OverrideKeyParts {
                given: values.len(),
                parts: spec.parts().len(),
            },
        ));
    }
    let mut bytes = Vec::new();
    for (part, (text, item_path)) in spec.parts().iter().zip(values) {
        let text = text.trim_matches([' ', '\t']);
        if text.is_empty() {
            return Err(ConfigError::new(item_path, Problem::EmptyString));
        }
        match part {
            KeyPart::Host => text_part(&mut bytes, text.to_ascii_lowercase().as_bytes()),
            _ => text_part(&mut bytes, text.as_bytes()),
        }
    }
    Ok(bytes)
}

fn sha256_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = char::from(*pair.first()?).to_digit(16)?;
        let lo = char::from(*pair.get(1)?).to_digit(16)?;
        *out = (hi << 4 | lo) as u8;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_finds_every_key_and_nothing_else() {
        let mut index = Index::default();
        for i in 0..1000usize {
            assert!(index.insert(alloc::format!("key-{i}").into_bytes(), i));
        }
        assert!(!index.insert(b"key-7".to_vec(), 0));
        assert_eq!(index.len(), 1000);
        for i in 0..1000usize {
            assert_eq!(index.get(alloc::format!("key-{i}").as_bytes()), Some(i));
        }
        assert_eq!(index.get(b"key-1000"), None);
        assert_eq!(Index::default().get(b"x"), None);
    }
}
