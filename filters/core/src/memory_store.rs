//! An in-memory [`SlotStore`] that behaves like either proxy-wasm host's shared data, with
//! inspection and fault injection for tests and for running the shared test vectors natively.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::store::{SetError, SlotStore, StoreError};

/// Which host's compare-and-swap rules the store follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Semantics {
    /// Envoy (proxy-wasm-cpp-host): a `set` with cas 0 is unconditional, and a `set` on a
    /// missing key succeeds whatever the cas.
    #[default]
    Envoy,
    /// Kong ngx_wasm_module: cas 0 succeeds only for a missing key, any other cas only if it
    /// equals the stored one.
    Strict,
}

/// Counts of the calls the store has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Calls {
    /// `get` calls.
    pub gets: u64,
    /// `set` calls, successful or not.
    pub sets: u64,
    /// Sets answered with [`SetError::CasMismatch`] (natural or forced).
    pub cas_mismatches: u64,
}

/// A `BTreeMap` of keys to (value, cas), with one cas counter for every write that starts at 1
/// and never yields 0, like Envoy's.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    semantics: Semantics,
    entries: BTreeMap<String, Slot>,
    last_cas: u32,
    calls: Calls,
    faults: Faults,
}

#[derive(Debug, Clone)]
struct Slot {
    value: Vec<u8>,
    cas: u32,
}

#[derive(Debug, Clone, Default)]
struct Faults {
    outage: Option<StoreError>,
    failing_gets: u32,
    failing_sets: u32,
    injected: Option<StoreError>,
    race_prefix: String,
    races: u32,
}

impl MemoryStore {
    /// An empty store with the given CAS rules.
    pub fn new(semantics: Semantics) -> MemoryStore {
        MemoryStore {
            semantics,
            ..MemoryStore::default()
        }
    }

    /// The store's CAS rules.
    pub fn semantics(&self) -> Semantics {
        self.semantics
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held: every key's length plus its value's length.
    pub fn total_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(key, slot)| key.len() + slot.value.len())
            .sum()
    }

    /// The stored keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The value and cas stored under `key`, without counting a call or applying faults.
    pub fn peek(&self, key: &str) -> Option<(&[u8], u32)> {
        self.entries
            .get(key)
            .map(|slot| (slot.value.as_slice(), slot.cas))
    }

    /// Writes `value` under `key` as another writer would (a new cas, no checks), e.g. to
    /// plant garbage.
    pub fn put(&mut self, key: &str, value: &[u8]) {
        let cas = self.next_cas();
        self.entries.insert(
            String::from(key),
            Slot {
                value: Vec::from(value),
                cas,
            },
        );
    }

    /// Deletes `key`, as ngx_wasm_module does when its zone evicts an entry.
    pub fn evict(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    /// The calls answered so far.
    pub fn calls(&self) -> Calls {
        self.calls
    }

    /// While `Some`, every `get` and `set` answers that error (a store outage); `None` ends it.
    pub fn set_outage(&mut self, error: Option<StoreError>) {
        self.faults.outage = error;
    }

    /// The next `count` `get` calls answer `error`.
    pub fn fail_gets(&mut self, count: u32, error: StoreError) {
        self.faults.failing_gets = count;
        self.faults.injected = Some(error);
    }

    /// The next `count` `set` calls answer `error` (and write nothing).
    pub fn fail_sets(&mut self, count: u32, error: StoreError) {
        self.faults.failing_sets = count;
        self.faults.injected = Some(error);
    }

    /// The next `count` `set` calls on keys starting with `key_prefix` lose a race: just before
    /// each, another writer rewrites the key (same value, new cas), so the set answers
    /// [`SetError::CasMismatch`] and a re-read sees a new cas. A missing key is created empty
    /// by that writer.
    pub fn force_cas_mismatches(&mut self, key_prefix: &str, count: u32) {
        self.faults.race_prefix = String::from(key_prefix);
        self.faults.races = count;
    }

    fn next_cas(&mut self) -> u32 {
        self.last_cas = match self.last_cas.wrapping_add(1) {
            0 => 1,
            cas => cas,
        };
        self.last_cas
    }

    /// Another writer touches `key` before our set, if a forced race is pending for it.
    fn maybe_lose_race(&mut self, key: &str) -> bool {
        if self.faults.races == 0 || !key.starts_with(self.faults.race_prefix.as_str()) {
            return false;
        }
        self.faults.races -= 1;
        let value = self
            .entries
            .get(key)
            .map(|slot| slot.value.clone())
            .unwrap_or_default();
        self.put(key, &value);
        true
    }
}

impl SlotStore for MemoryStore {
    fn get(&mut self, key: &str, value: &mut Vec<u8>) -> Result<Option<u32>, StoreError> {
        self.calls.gets += 1;
        value.clear();
        if let Some(error) = self.faults.outage {
            return Err(error);
        }
        if self.faults.failing_gets > 0 {
            self.faults.failing_gets -= 1;
            return Err(self.faults.injected.unwrap_or(StoreError::Unavailable));
        }
        Ok(self.entries.get(key).map(|slot| {
            value.extend_from_slice(&slot.value);
            slot.cas
        }))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        self.calls.sets += 1;
        if let Some(error) = self.faults.outage {
            return Err(SetError::Store(error));
        }
        if self.faults.failing_sets > 0 {
            self.faults.failing_sets -= 1;
            let error = self.faults.injected.unwrap_or(StoreError::Unavailable);
            return Err(SetError::Store(error));
        }
        if self.maybe_lose_race(key) {
            self.calls.cas_mismatches += 1;
            return Err(SetError::CasMismatch);
        }
        let stored = self.entries.get(key).map(|slot| slot.cas);
        let accepted = match (self.semantics, stored) {
            (Semantics::Envoy, None) => true,
            (Semantics::Envoy, Some(current)) => cas == 0 || cas == current,
            (Semantics::Strict, None) => cas == 0,
            (Semantics::Strict, Some(current)) => cas == current,
        };
        if !accepted {
            self.calls.cas_mismatches += 1;
            return Err(SetError::CasMismatch);
        }
        self.put(key, value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_semantics_accept_cas_zero_and_any_cas_on_a_missing_key() {
        let mut store = MemoryStore::new(Semantics::Envoy);
        assert_eq!(store.set("k", b"a", 42), Ok(()));
        let mut value = Vec::new();
        let cas = store.get("k", &mut value).unwrap().unwrap();
        assert_ne!(cas, 0);
        assert_eq!(store.set("k", b"b", 0), Ok(()));
        assert_eq!(store.set("k", b"c", cas), Err(SetError::CasMismatch));
    }

    #[test]
    fn strict_semantics_use_cas_zero_only_to_create() {
        let mut store = MemoryStore::new(Semantics::Strict);
        assert_eq!(store.set("k", b"a", 42), Err(SetError::CasMismatch));
        assert_eq!(store.set("k", b"a", 0), Ok(()));
        assert_eq!(store.set("k", b"b", 0), Err(SetError::CasMismatch));
        let mut value = Vec::new();
        let cas = store.get("k", &mut value).unwrap().unwrap();
        assert_eq!(store.set("k", b"b", cas), Ok(()));
        assert_eq!(store.set("k", b"c", cas), Err(SetError::CasMismatch));
    }

    #[test]
    fn cas_never_yields_zero_when_the_counter_wraps() {
        let mut store = MemoryStore::new(Semantics::Envoy);
        store.last_cas = u32::MAX;
        store.put("k", b"v");
        assert_eq!(store.peek("k"), Some((&b"v"[..], 1)));
    }

    #[test]
    fn faults_are_applied_in_order_and_then_stop() {
        let mut store = MemoryStore::new(Semantics::Envoy);
        let mut value = Vec::new();
        store.fail_gets(1, StoreError::Host(10));
        assert_eq!(store.get("k", &mut value), Err(StoreError::Host(10)));
        assert_eq!(store.get("k", &mut value), Ok(None));
        store.force_cas_mismatches("sluice/a/", 1);
        assert_eq!(store.set("sluice/b/0", b"v", 0), Ok(()));
        assert_eq!(store.set("sluice/a/0", b"v", 0), Err(SetError::CasMismatch));
        assert_eq!(store.set("sluice/a/0", b"v", 0), Ok(()));
        store.set_outage(Some(StoreError::Unavailable));
        assert_eq!(store.get("k", &mut value), Err(StoreError::Unavailable));
        store.set_outage(None);
        assert_eq!(store.calls().cas_mismatches, 1);
        assert_eq!(store.len(), 2);
        assert_eq!(store.total_bytes(), 2 * ("sluice/a/0".len() + 1));
    }
}
