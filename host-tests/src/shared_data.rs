//! The shared key-value store (`proxy_get_shared_data` /
//! `proxy_set_shared_data`): one namespace per `vm_id`, shared by every VM
//! of that id, behind one mutex.
//!
//! Two hosts, two rule sets ([`SharedDataSemantics`]):
//!
//! - **Envoy** (proxy-wasm-cpp-host `src/shared_data.cc`): a missing key
//!   reads as `NOT_FOUND`; a set with cas 0 is unconditional; a set with a
//!   non-zero cas must match the stored cas, **but a set on a missing key
//!   succeeds whatever the cas**; there is no delete (a null value stores an
//!   empty value).
//! - **Strict** (Kong ngx_wasm_module `ngx_wa_shm_kv`): a set succeeds only
//!   with cas 0 for a missing key, or the stored cas for an existing one; a
//!   null value pointer deletes; an optional capacity evicts the least
//!   recently used entries (or refuses the write).
//!
//! In both, every write takes a new cas from one counter that starts at 1
//! and skips 0. Tests can inspect a namespace and inject faults.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::types::Status;

/// Which host's rules the store follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SharedDataSemantics {
    /// Envoy and other proxy-wasm-cpp-host embeddings.
    #[default]
    Envoy,
    /// Kong ngx_wasm_module's `shm_kv` zones.
    Strict(StrictLimits),
}

/// The size limit of a strict store (ngx_wasm_module's zone size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StrictLimits {
    /// Total bytes of keys and values a namespace may hold; `None` is no limit.
    pub capacity_bytes: Option<usize>,
    /// What a write that does not fit does.
    pub eviction: Eviction,
}

/// What happens when a strict store is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Eviction {
    /// Evict the least recently used entries until the write fits.
    #[default]
    Lru,
    /// Refuse the write with `INTERNAL_FAILURE`.
    None,
}

/// How many calls an injected fault affects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTimes {
    /// Every call until the fault is cleared.
    Always,
    /// The next `n` calls.
    Next(u32),
}

/// The value passed to a set: bytes, or the null pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetValue<'a> {
    Bytes(&'a [u8]),
    Null,
}

/// A value and its compare-and-swap token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedValue {
    pub value: Vec<u8>,
    pub cas: u32,
}

/// The store. Cloning shares it; two proxies given the same store (and the
/// same `vm_id`) share their data, as filter chains of one Envoy do.
#[derive(Clone)]
pub struct SharedData {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    semantics: SharedDataSemantics,
    state: Mutex<StoreState>,
}

#[derive(Default)]
struct StoreState {
    namespaces: HashMap<String, Namespace>,
    last_cas: u32,
    /// Increases on every access, to order entries by recent use.
    use_counter: u64,
    get_fault: Option<Fault>,
    set_fault: Option<Fault>,
    cas_fault: Option<FaultTimes>,
}

#[derive(Default)]
struct Namespace {
    entries: HashMap<Vec<u8>, Entry>,
    bytes: usize,
}

struct Entry {
    value: Vec<u8>,
    cas: u32,
    last_used: u64,
}

#[derive(Clone, Copy)]
struct Fault {
    status: Status,
    times: FaultTimes,
}

/// Consumes one use of a fault; answers whether it applies to this call.
fn fault_fires(times: &mut Option<FaultTimes>) -> bool {
    match times {
        None => false,
        Some(FaultTimes::Always) => true,
        Some(FaultTimes::Next(remaining)) => {
            if *remaining <= 1 {
                *times = None;
            } else {
                *remaining -= 1;
            }
            true
        }
    }
}

fn status_fault_fires(fault: &mut Option<Fault>) -> Option<Status> {
    let status = fault.as_ref()?.status;
    let mut times = fault.map(|fault| fault.times);
    let fires = fault_fires(&mut times);
    *fault = times.map(|times| Fault { status, times });
    fires.then_some(status)
}

impl StoreState {
    fn next_cas(&mut self) -> u32 {
        self.last_cas = self.last_cas.wrapping_add(1);
        if self.last_cas == 0 {
            self.last_cas = 1;
        }
        self.last_cas
    }

    fn touch(&mut self) -> u64 {
        self.use_counter = self.use_counter.saturating_add(1);
        self.use_counter
    }
}

impl Namespace {
    fn entry_size(key: &[u8], value: &[u8]) -> usize {
        key.len().saturating_add(value.len())
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes = self
                .bytes
                .saturating_sub(Namespace::entry_size(key, &entry.value));
        }
    }

    fn write(&mut self, key: &[u8], value: &[u8], cas: u32, last_used: u64) {
        self.remove(key);
        self.bytes = self.bytes.saturating_add(Namespace::entry_size(key, value));
        self.entries.insert(
            key.to_vec(),
            Entry {
                value: value.to_vec(),
                cas,
                last_used,
            },
        );
    }

    /// Makes room for `key` = `value` within `limits`, evicting if allowed.
    fn make_room(&mut self, key: &[u8], value: &[u8], limits: StrictLimits) -> Result<(), Status> {
        let Some(capacity) = limits.capacity_bytes else {
            return Ok(());
        };
        let needed = Namespace::entry_size(key, value);
        if needed > capacity {
            return Err(Status::InternalFailure);
        }
        let current = self
            .entries
            .get(key)
            .map_or(0, |entry| Namespace::entry_size(key, &entry.value));
        let mut total_after = self.bytes.saturating_sub(current).saturating_add(needed);
        if total_after <= capacity {
            return Ok(());
        }
        if limits.eviction == Eviction::None {
            return Err(Status::InternalFailure);
        }
        let mut candidates: Vec<(u64, Vec<u8>)> = self
            .entries
            .iter()
            .filter(|(candidate, _)| candidate.as_slice() != key)
            .map(|(candidate, entry)| (entry.last_used, candidate.clone()))
            .collect();
        candidates.sort();
        for (_, victim) in candidates {
            if total_after <= capacity {
                break;
            }
            let freed = self
                .entries
                .get(&victim)
                .map_or(0, |entry| Namespace::entry_size(&victim, &entry.value));
            self.remove(&victim);
            total_after = total_after.saturating_sub(freed);
        }
        Ok(())
    }
}

impl SharedData {
    /// An empty store following `semantics`.
    pub fn new(semantics: SharedDataSemantics) -> SharedData {
        SharedData {
            inner: Arc::new(StoreInner {
                semantics,
                state: Mutex::new(StoreState::default()),
            }),
        }
    }

    /// The rules this store follows.
    pub fn semantics(&self) -> SharedDataSemantics {
        self.inner.semantics
    }

    fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The namespace of `vm_id`, for inspection and seeding.
    pub fn namespace(&self, vm_id: &str) -> SharedDataNamespace {
        SharedDataNamespace {
            store: self.clone(),
            vm_id: vm_id.to_string(),
        }
    }

    /// `proxy_get_shared_data`.
    pub(crate) fn get(&self, vm_id: &str, key: &[u8]) -> Result<SharedValue, Status> {
        let mut state = self.lock();
        if let Some(status) = status_fault_fires(&mut state.get_fault) {
            return Err(status);
        }
        let now = state.touch();
        let entry = state
            .namespaces
            .get_mut(vm_id)
            .and_then(|namespace| namespace.entries.get_mut(key))
            .ok_or(Status::NotFound)?;
        entry.last_used = now;
        Ok(SharedValue {
            value: entry.value.clone(),
            cas: entry.cas,
        })
    }

    /// `proxy_set_shared_data`.
    pub(crate) fn set(
        &self,
        vm_id: &str,
        key: &[u8],
        value: SetValue<'_>,
        cas: u32,
    ) -> Result<(), Status> {
        let semantics = self.inner.semantics;
        let mut state = self.lock();
        if let Some(status) = status_fault_fires(&mut state.set_fault) {
            return Err(status);
        }
        let conditional = match semantics {
            SharedDataSemantics::Envoy => cas != 0,
            SharedDataSemantics::Strict(_) => true,
        };
        if conditional && fault_fires(&mut state.cas_fault) {
            return Err(Status::CasMismatch);
        }
        let stored_cas = state
            .namespaces
            .get(vm_id)
            .and_then(|namespace| namespace.entries.get(key))
            .map(|entry| entry.cas);
        let now = state.touch();
        match semantics {
            SharedDataSemantics::Envoy => {
                // A set on a missing key succeeds whatever the cas: the create
                // is not atomic, exactly as in proxy-wasm-cpp-host.
                if let Some(stored) = stored_cas
                    && cas != 0
                    && cas != stored
                {
                    return Err(Status::CasMismatch);
                }
                let bytes = match value {
                    SetValue::Bytes(bytes) => bytes,
                    SetValue::Null => &[],
                };
                let new_cas = state.next_cas();
                state
                    .namespaces
                    .entry(vm_id.to_string())
                    .or_default()
                    .write(key, bytes, new_cas, now);
                Ok(())
            }
            SharedDataSemantics::Strict(limits) => {
                let expected = stored_cas.unwrap_or(0);
                if cas != expected {
                    return Err(Status::CasMismatch);
                }
                match value {
                    SetValue::Null => {
                        if let Some(namespace) = state.namespaces.get_mut(vm_id) {
                            namespace.remove(key);
                        }
                        Ok(())
                    }
                    SetValue::Bytes(bytes) => {
                        let new_cas = state.next_cas();
                        let namespace = state.namespaces.entry(vm_id.to_string()).or_default();
                        namespace.make_room(key, bytes, limits)?;
                        namespace.write(key, bytes, new_cas, now);
                        Ok(())
                    }
                }
            }
        }
    }

    /// Makes gets answer `status` instead of reading, `times` times.
    pub fn fail_gets(&self, status: Status, times: FaultTimes) {
        self.lock().get_fault = Some(Fault { status, times });
    }

    /// Makes sets answer `status` instead of writing, `times` times.
    pub fn fail_sets(&self, status: Status, times: FaultTimes) {
        self.lock().set_fault = Some(Fault { status, times });
    }

    /// Makes conditional sets (a non-zero cas under Envoy's rules, every set
    /// under the strict rules) answer `CAS_MISMATCH` without writing, as if
    /// another VM had written first, `times` times.
    pub fn force_cas_mismatches(&self, times: FaultTimes) {
        self.lock().cas_fault = Some(times);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        let mut state = self.lock();
        state.get_fault = None;
        state.set_fault = None;
        state.cas_fault = None;
    }
}

impl Default for SharedData {
    fn default() -> SharedData {
        SharedData::new(SharedDataSemantics::Envoy)
    }
}

impl fmt::Debug for SharedData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SharedData")
            .field("semantics", &self.inner.semantics)
            .field("namespaces", &state.namespaces.len())
            .field("last_cas", &state.last_cas)
            .finish()
    }
}

/// One `vm_id`'s part of a [`SharedData`] store, for tests to look at.
#[derive(Clone, Debug)]
pub struct SharedDataNamespace {
    store: SharedData,
    vm_id: String,
}

impl SharedDataNamespace {
    fn read<T>(&self, read: impl FnOnce(Option<&Namespace>) -> T) -> T {
        let state = self.store.lock();
        read(state.namespaces.get(&self.vm_id))
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.read(|namespace| namespace.map_or(0, |namespace| namespace.entries.len()))
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total size of keys and values, in bytes.
    pub fn total_bytes(&self) -> usize {
        self.read(|namespace| namespace.map_or(0, |namespace| namespace.bytes))
    }

    /// A value and its cas, without counting as a use and without faults.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<SharedValue> {
        self.read(|namespace| {
            namespace
                .and_then(|namespace| namespace.entries.get(key.as_ref()))
                .map(|entry| SharedValue {
                    value: entry.value.clone(),
                    cas: entry.cas,
                })
        })
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut keys = self.read(|namespace| {
            namespace.map_or_else(Vec::new, |namespace| {
                namespace.entries.keys().cloned().collect()
            })
        });
        keys.sort();
        keys
    }

    /// Writes `key` unconditionally (ignoring capacity and faults), as a test
    /// seeding the store would; answers the new cas.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> u32 {
        let mut state = self.store.lock();
        let cas = state.next_cas();
        let now = state.touch();
        state
            .namespaces
            .entry(self.vm_id.clone())
            .or_default()
            .write(key.as_ref(), value.as_ref(), cas, now);
        cas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "vm";

    fn bytes(value: &str) -> SetValue<'_> {
        SetValue::Bytes(value.as_bytes())
    }

    #[test]
    fn envoy_creates_a_missing_key_whatever_the_cas() {
        let store = SharedData::new(SharedDataSemantics::Envoy);
        assert_eq!(store.get(VM, b"k"), Err(Status::NotFound));
        assert_eq!(store.set(VM, b"k", bytes("a"), 42), Ok(()));
        let first = store.get(VM, b"k");
        assert_eq!(
            first,
            Ok(SharedValue {
                value: b"a".to_vec(),
                cas: 1
            })
        );
        assert_eq!(store.set(VM, b"k", bytes("b"), 7), Err(Status::CasMismatch));
        assert_eq!(store.set(VM, b"k", bytes("b"), 1), Ok(()));
        assert_eq!(
            store.set(VM, b"k", bytes("c"), 0),
            Ok(()),
            "cas 0 is unconditional"
        );
        assert_eq!(store.get(VM, b"k").map(|found| found.cas), Ok(3));
    }

    #[test]
    fn envoy_stores_an_empty_value_for_a_null_pointer() {
        let store = SharedData::new(SharedDataSemantics::Envoy);
        assert_eq!(store.set(VM, b"k", bytes("a"), 0), Ok(()));
        assert_eq!(store.set(VM, b"k", SetValue::Null, 0), Ok(()));
        assert_eq!(store.get(VM, b"k").map(|found| found.value), Ok(Vec::new()));
        assert_eq!(store.namespace(VM).len(), 1);
    }

    #[test]
    fn strict_requires_cas_zero_to_create_and_the_stored_cas_to_update() {
        let store = SharedData::new(SharedDataSemantics::Strict(StrictLimits::default()));
        assert_eq!(store.set(VM, b"k", bytes("a"), 5), Err(Status::CasMismatch));
        assert_eq!(store.set(VM, b"k", bytes("a"), 0), Ok(()));
        assert_eq!(store.set(VM, b"k", bytes("b"), 0), Err(Status::CasMismatch));
        assert_eq!(store.set(VM, b"k", bytes("b"), 1), Ok(()));
        assert_eq!(
            store.set(VM, b"k", SetValue::Null, 1),
            Err(Status::CasMismatch)
        );
        assert_eq!(store.set(VM, b"k", SetValue::Null, 2), Ok(()));
        assert_eq!(store.get(VM, b"k"), Err(Status::NotFound));
        assert!(store.namespace(VM).is_empty());
    }

    #[test]
    fn strict_capacity_evicts_the_least_recently_used_entry() {
        let limits = StrictLimits {
            capacity_bytes: Some(6),
            eviction: Eviction::Lru,
        };
        let store = SharedData::new(SharedDataSemantics::Strict(limits));
        assert_eq!(store.set(VM, b"a", bytes("1"), 0), Ok(()));
        assert_eq!(store.set(VM, b"b", bytes("2"), 0), Ok(()));
        assert_eq!(store.set(VM, b"c", bytes("3"), 0), Ok(()));
        assert!(store.get(VM, b"a").is_ok(), "makes b the oldest");
        assert_eq!(store.set(VM, b"d", bytes("4"), 0), Ok(()));
        let namespace = store.namespace(VM);
        assert_eq!(
            namespace.keys(),
            [b"a".to_vec(), b"c".to_vec(), b"d".to_vec()]
        );
        assert_eq!(namespace.total_bytes(), 6);
        assert_eq!(
            store.set(VM, b"big", bytes("0123456789"), 0),
            Err(Status::InternalFailure),
            "larger than the whole zone"
        );
    }

    #[test]
    fn strict_capacity_without_eviction_refuses_the_write() {
        let limits = StrictLimits {
            capacity_bytes: Some(4),
            eviction: Eviction::None,
        };
        let store = SharedData::new(SharedDataSemantics::Strict(limits));
        assert_eq!(store.set(VM, b"a", bytes("1"), 0), Ok(()));
        assert_eq!(store.set(VM, b"b", bytes("2"), 0), Ok(()));
        assert_eq!(
            store.set(VM, b"c", bytes("3"), 0),
            Err(Status::InternalFailure)
        );
        assert_eq!(store.namespace(VM).len(), 2);
    }

    #[test]
    fn every_write_takes_a_new_cas_from_one_counter() {
        let store = SharedData::new(SharedDataSemantics::Envoy);
        assert_eq!(store.set("one", b"k", bytes("a"), 0), Ok(()));
        assert_eq!(store.set("two", b"k", bytes("a"), 0), Ok(()));
        assert_eq!(store.get("two", b"k").map(|found| found.cas), Ok(2));
        assert_eq!(store.namespace("one").len(), 1, "namespaces are separate");
    }

    #[test]
    fn injected_faults_answer_for_the_requested_number_of_calls() {
        let store = SharedData::new(SharedDataSemantics::Envoy);
        store.namespace(VM).insert("k", "v");
        store.fail_gets(Status::InternalFailure, FaultTimes::Next(2));
        assert_eq!(store.get(VM, b"k"), Err(Status::InternalFailure));
        assert_eq!(store.get(VM, b"k"), Err(Status::InternalFailure));
        assert!(store.get(VM, b"k").is_ok());

        store.force_cas_mismatches(FaultTimes::Next(1));
        assert_eq!(
            store.set(VM, b"k", bytes("x"), 0),
            Ok(()),
            "cas 0 is not conditional"
        );
        assert_eq!(store.set(VM, b"k", bytes("x"), 2), Err(Status::CasMismatch));
        assert_eq!(store.set(VM, b"k", bytes("y"), 2), Ok(()));

        store.fail_sets(Status::InternalFailure, FaultTimes::Always);
        assert_eq!(
            store.set(VM, b"k", bytes("z"), 0),
            Err(Status::InternalFailure)
        );
        store.clear_faults();
        assert_eq!(store.set(VM, b"k", bytes("z"), 0), Ok(()));
    }
}
