//! The last value seen for each recently used key: what the first compare-and-set call of a
//! decision expects to find. Bounded (least recently used keys are forgotten); being wrong
//! costs a round trip, never a wrong decision (the script compares before writing).

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;
use sluice_core::Nanos;

/// A key whose remembered state became idle this long ago is expected to have expired in
/// Redis (which expires it on its own clock, rounded up to the millisecond).
const EXPIRY_SLACK: Nanos = 2_000_000;

#[derive(Debug, Clone)]
struct Seen {
    /// `None`: the key was absent.
    value: Option<Vec<u8>>,
    /// When the value's state is fully recovered, so Redis expires the key.
    idle_at: Option<Nanos>,
}

/// Bounded map from Redis key to the last value seen there.
#[derive(Debug)]
pub(crate) struct ValueCache {
    entries: Option<Mutex<LruCache<String, Seen>>>,
}

impl ValueCache {
    /// A cache of up to `capacity` keys (0: remember nothing).
    pub(crate) fn new(capacity: usize) -> ValueCache {
        ValueCache {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    /// The value `key` is expected to hold at `now` (`None`: absent).
    pub(crate) fn expected(&self, key: &str, now: Nanos) -> Option<Vec<u8>> {
        let entries = self.entries.as_ref()?;
        let mut entries = entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seen = entries.get(key)?;
        match seen.idle_at {
            Some(idle_at) if now >= idle_at.saturating_add(EXPIRY_SLACK) => None,
            _ => seen.value.clone(),
        }
    }

    /// Remembers that `key` holds `value` (`None`: absent), idle from `idle_at` if known.
    pub(crate) fn remember(&self, key: &str, value: Option<&[u8]>, idle_at: Option<Nanos>) {
        let Some(entries) = self.entries.as_ref() else {
            return;
        };
        let mut entries = entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let seen = Seen {
            value: value.map(<[u8]>::to_vec),
            idle_at,
        };
        match entries.get_mut(key) {
            Some(slot) => *slot = seen,
            None => {
                entries.put(key.to_owned(), seen);
            }
        }
    }

    /// Forgets `key` (its value is unknown, e.g. after a call that timed out).
    pub(crate) fn forget(&self, key: &str) {
        if let Some(entries) = self.entries.as_ref() {
            let mut entries = entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            entries.pop(key);
        }
    }

    /// How many keys are remembered.
    pub(crate) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |entries| {
            entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .len()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_and_expects_expiry() {
        let cache = ValueCache::new(2);
        cache.remember("a", Some(b"1"), Some(100));
        cache.remember("b", None, None);
        cache.remember("c", Some(b"3"), None);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.expected("a", 0), None, "evicted");
        assert_eq!(cache.expected("c", 0), Some(b"3".to_vec()));
        cache.remember("a", Some(b"1"), Some(100));
        assert_eq!(cache.expected("a", 100), Some(b"1".to_vec()));
        assert_eq!(cache.expected("a", 100 + EXPIRY_SLACK), None);
        cache.forget("a");
        assert_eq!(cache.expected("a", 0), None);
        let off = ValueCache::new(0);
        off.remember("a", Some(b"1"), None);
        assert_eq!(off.expected("a", 0), None);
        assert_eq!(off.len(), 0);
    }
}
