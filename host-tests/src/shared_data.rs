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
//!   null value pointer deletes; a key is found by its CRC32 alone, so two
//!   names with one CRC32 are one entry; an optional zone size is filled as
//!   NGINX's slab allocator fills it ([`crate::shm_zone`]), and a full zone
//!   evicts (`lru`, `slru`) or fails the write (`none`, which traps the
//!   filter as ngx_wasm_module does).
//!
//! In both, every write takes a new cas from one counter that starts at 1
//! and skips 0. Tests can inspect a namespace and inject faults.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use crate::shm_zone::Eviction;
use crate::shm_zone::{self, Allocation, Zone};
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

/// The zone of a strict store: `shm_kv <name> <size> [eviction=...]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StrictLimits {
    /// The zone's size in bytes, as written in `nginx.conf`; `None` is no
    /// limit. Each namespace (`vm_id`) gets a zone of this size.
    pub zone_bytes: Option<usize>,
    /// What a write that does not fit does.
    pub eviction: Eviction,
}

impl StrictLimits {
    /// A zone of `bytes` with `eviction`.
    pub fn zone(bytes: usize, eviction: Eviction) -> StrictLimits {
        StrictLimits {
            zone_bytes: Some(bytes),
            eviction,
        }
    }
}

/// Why a set failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SetFailure {
    /// Answered with this status.
    Status(Status),
    /// The zone had no room and could evict nothing more: ngx_wasm_module
    /// traps the filter ("failed setting value to shm (could not write to
    /// slab)").
    NoMemory { key_len: usize, value_len: usize },
}

impl From<Status> for SetFailure {
    fn from(status: Status) -> SetFailure {
        SetFailure::Status(status)
    }
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
    /// By lookup key: the key itself (Envoy) or its CRC32 (strict).
    entries: HashMap<Vec<u8>, Entry>,
    /// Bytes of keys and values.
    bytes: usize,
    /// The strict store's zone, if it has a size.
    zone: Option<Zone>,
}

struct Entry {
    /// The key the entry was created with (under the strict rules another
    /// key with the same CRC32 reads and writes it too).
    key: Vec<u8>,
    value: Vec<u8>,
    cas: u32,
    last_used: u64,
    /// Its place in the zone, if the store has one.
    allocation: Option<Allocation>,
    /// The value length the allocation was made for: a longer value needs a
    /// new allocation.
    allocated_value_len: usize,
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

    fn remove(&mut self, lookup: &[u8]) {
        if let Some(entry) = self.entries.remove(lookup) {
            self.bytes = self
                .bytes
                .saturating_sub(Namespace::entry_size(&entry.key, &entry.value));
            if let (Some(zone), Some(allocation)) = (self.zone.as_mut(), entry.allocation) {
                zone.free(allocation);
            }
        }
    }

    /// Writes without any zone accounting (Envoy, or a test seeding).
    fn write(&mut self, lookup: &[u8], key: &[u8], value: &[u8], cas: u32, last_used: u64) {
        self.remove(lookup);
        self.bytes = self.bytes.saturating_add(Namespace::entry_size(key, value));
        self.entries.insert(
            lookup.to_vec(),
            Entry {
                key: key.to_vec(),
                value: value.to_vec(),
                cas,
                last_used,
                allocation: None,
                allocated_value_len: value.len(),
            },
        );
    }

    /// ngx_wasm_module's set of an existing or new pair (`ngx_wa_shm_kv_set_locked`):
    /// in place if the value fits the pair's allocation, else a new allocation,
    /// evicting as `eviction` says while none is free.
    fn write_strict(
        &mut self,
        lookup: &[u8],
        key: &[u8],
        value: &[u8],
        cas: u32,
        last_used: u64,
        eviction: Eviction,
    ) -> Result<(), SetFailure> {
        if let Some(entry) = self.entries.get_mut(lookup)
            && value.len() <= entry.allocated_value_len
        {
            self.bytes = self
                .bytes
                .saturating_sub(entry.value.len())
                .saturating_add(value.len());
            entry.value = value.to_vec();
            entry.cas = cas;
            entry.last_used = last_used;
            return Ok(());
        }
        let size = shm_zone::NODE_BYTES + key.len() + value.len();
        let allocation = match self.zone.is_some() {
            false => None,
            true => Some(self.allocate_evicting(lookup, size, eviction).ok_or(
                SetFailure::NoMemory {
                    key_len: key.len(),
                    value_len: value.len(),
                },
            )?),
        };
        // A pair that grows keeps its key (ngx_wasm_module copies the new
        // one in; it has the same CRC32).
        self.remove(lookup);
        self.bytes = self.bytes.saturating_add(Namespace::entry_size(key, value));
        self.entries.insert(
            lookup.to_vec(),
            Entry {
                key: key.to_vec(),
                value: value.to_vec(),
                cas,
                last_used,
                allocation,
                allocated_value_len: value.len(),
            },
        );
        Ok(())
    }

    /// Allocates `size` bytes in the zone, evicting other pairs (never the
    /// one at `lookup`) as `eviction` allows.
    fn allocate_evicting(
        &mut self,
        lookup: &[u8],
        size: usize,
        eviction: Eviction,
    ) -> Option<Allocation> {
        loop {
            if let Some(allocation) = self.zone.as_mut()?.allocate(size) {
                return Some(allocation);
            }
            let victim = match eviction {
                Eviction::None => return None,
                Eviction::Lru => self.least_recently_used(lookup, |_| true),
                Eviction::Slru => {
                    // The write's own size class first, then larger ones,
                    // then smaller (ngx_wasm_module's `slru_expire`).
                    let start = shm_zone::queue_of(size);
                    let larger = (start..=shm_zone::queue_of(usize::MAX))
                        .find_map(|queue| self.least_recently_used(lookup, |q| q == queue));
                    larger.or_else(|| {
                        (0..start)
                            .rev()
                            .find_map(|queue| self.least_recently_used(lookup, |q| q == queue))
                    })
                }
            };
            let victim = victim?;
            self.remove(&victim);
        }
    }

    /// The lookup key of the least recently used pair (other than `except`)
    /// whose SLRU queue passes `queue`.
    fn least_recently_used(&self, except: &[u8], queue: impl Fn(usize) -> bool) -> Option<Vec<u8>> {
        self.entries
            .iter()
            .filter(|(lookup, entry)| {
                lookup.as_slice() != except
                    && entry.allocation.is_some()
                    && queue(shm_zone::queue_of(
                        shm_zone::NODE_BYTES + entry.key.len() + entry.value.len(),
                    ))
            })
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(lookup, _)| lookup.clone())
    }
}

/// How a store finds a key: by its bytes (Envoy) or by its CRC32 alone
/// (ngx_wasm_module's `ngx_wa_shm_rbtree_lookup`, over the whole key).
fn lookup_key(semantics: SharedDataSemantics, key: &[u8]) -> Vec<u8> {
    match semantics {
        SharedDataSemantics::Envoy => key.to_vec(),
        SharedDataSemantics::Strict(_) => crc32fast::hash(key).to_be_bytes().to_vec(),
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

    /// A new, empty store with the same rules: what the VMs of a reloaded
    /// NGINX see (ngx_wasm_module maps a fresh zone on every reload).
    pub fn fresh(&self) -> SharedData {
        SharedData::new(self.inner.semantics)
    }

    /// An empty namespace, with its zone if the store has a size.
    fn new_namespace(semantics: SharedDataSemantics) -> Namespace {
        let zone = match semantics {
            SharedDataSemantics::Strict(StrictLimits {
                zone_bytes: Some(bytes),
                eviction,
            }) => Zone::new(bytes.max(shm_zone::MIN_ZONE_BYTES), eviction),
            _ => None,
        };
        Namespace {
            zone,
            ..Namespace::default()
        }
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
        let lookup = lookup_key(self.inner.semantics, key);
        let entry = state
            .namespaces
            .get_mut(vm_id)
            .and_then(|namespace| namespace.entries.get_mut(&lookup))
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
    ) -> Result<(), SetFailure> {
        let semantics = self.inner.semantics;
        let mut state = self.lock();
        if let Some(status) = status_fault_fires(&mut state.set_fault) {
            return Err(status.into());
        }
        let conditional = match semantics {
            SharedDataSemantics::Envoy => cas != 0,
            SharedDataSemantics::Strict(_) => true,
        };
        if conditional && fault_fires(&mut state.cas_fault) {
            return Err(Status::CasMismatch.into());
        }
        let lookup = lookup_key(semantics, key);
        let stored_cas = state
            .namespaces
            .get(vm_id)
            .and_then(|namespace| namespace.entries.get(&lookup))
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
                    return Err(Status::CasMismatch.into());
                }
                let bytes = match value {
                    SetValue::Bytes(bytes) => bytes,
                    SetValue::Null => &[],
                };
                let new_cas = state.next_cas();
                state
                    .namespaces
                    .entry(vm_id.to_string())
                    .or_insert_with(|| SharedData::new_namespace(semantics))
                    .write(&lookup, key, bytes, new_cas, now);
                Ok(())
            }
            SharedDataSemantics::Strict(limits) => {
                let expected = stored_cas.unwrap_or(0);
                if cas != expected {
                    return Err(Status::CasMismatch.into());
                }
                match value {
                    SetValue::Null => {
                        if let Some(namespace) = state.namespaces.get_mut(vm_id) {
                            namespace.remove(&lookup);
                        }
                        Ok(())
                    }
                    SetValue::Bytes(bytes) => {
                        let new_cas = state.next_cas();
                        state
                            .namespaces
                            .entry(vm_id.to_string())
                            .or_insert_with(|| SharedData::new_namespace(semantics))
                            .write_strict(&lookup, key, bytes, new_cas, now, limits.eviction)
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

    /// The zone's pages in use and in all, under the strict rules with a zone
    /// size (4 KiB each; the pages in use are what NGINX's slab statistics
    /// count).
    pub fn zone_pages(&self) -> Option<(usize, usize)> {
        self.read(|namespace| {
            let zone = namespace?.zone.as_ref()?;
            Some((zone.used_pages(), zone.total_pages()))
        })
    }

    /// A value and its cas, without counting as a use and without faults
    /// (found as the store finds keys: by CRC32 under the strict rules).
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<SharedValue> {
        let lookup = lookup_key(self.store.semantics(), key.as_ref());
        self.read(|namespace| {
            namespace
                .and_then(|namespace| namespace.entries.get(&lookup))
                .map(|entry| SharedValue {
                    value: entry.value.clone(),
                    cas: entry.cas,
                })
        })
    }

    /// Every key (as first written, for entries found by CRC32), sorted.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let mut keys = self.read(|namespace| {
            namespace.map_or_else(Vec::new, |namespace| {
                namespace
                    .entries
                    .values()
                    .map(|entry| entry.key.clone())
                    .collect()
            })
        });
        keys.sort();
        keys
    }

    /// Writes `key` unconditionally (ignoring capacity and faults), as a test
    /// seeding the store would; answers the new cas.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> u32 {
        let semantics = self.store.semantics();
        let lookup = lookup_key(semantics, key.as_ref());
        let mut state = self.store.lock();
        let cas = state.next_cas();
        let now = state.touch();
        state
            .namespaces
            .entry(self.vm_id.clone())
            .or_insert_with(|| SharedData::new_namespace(semantics))
            .write(&lookup, key.as_ref(), value.as_ref(), cas, now);
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
        assert_eq!(
            store.set(VM, b"k", bytes("b"), 7),
            Err(Status::CasMismatch.into())
        );
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
        assert_eq!(
            store.set(VM, b"k", bytes("a"), 5),
            Err(Status::CasMismatch.into())
        );
        assert_eq!(store.set(VM, b"k", bytes("a"), 0), Ok(()));
        assert_eq!(
            store.set(VM, b"k", bytes("b"), 0),
            Err(Status::CasMismatch.into())
        );
        assert_eq!(store.set(VM, b"k", bytes("b"), 1), Ok(()));
        assert_eq!(
            store.set(VM, b"k", SetValue::Null, 1),
            Err(Status::CasMismatch.into())
        );
        assert_eq!(store.set(VM, b"k", SetValue::Null, 2), Ok(()));
        assert_eq!(store.get(VM, b"k"), Err(Status::NotFound));
        assert!(store.namespace(VM).is_empty());
    }

    /// A strict store whose zone has `pages` pages for pairs besides the one
    /// its head takes.
    fn zone_of_pages(pages: usize, eviction: Eviction) -> SharedData {
        // Pages start after the header and descriptors (one page for these
        // sizes); the store head takes one page of its own.
        let bytes = (pages + 2) * shm_zone::PAGE_BYTES;
        let store = SharedData::new(SharedDataSemantics::Strict(StrictLimits::zone(
            bytes, eviction,
        )));
        store.namespace(VM).insert("probe", "");
        store
    }

    /// A 150-byte value: with its key, a 256-byte chunk (16 to a page).
    fn chunk_value() -> Vec<u8> {
        vec![7; 150]
    }

    #[test]
    fn strict_lru_evicts_the_least_recently_used_pair_when_the_zone_is_full() {
        let store = zone_of_pages(1, Eviction::Lru);
        let value = chunk_value();
        for i in 0..16 {
            let key = format!("k{i:02}");
            assert_eq!(
                store.set(VM, key.as_bytes(), SetValue::Bytes(&value), 0),
                Ok(())
            );
        }
        assert!(store.get(VM, b"k00").is_ok(), "makes k01 the oldest");
        assert_eq!(store.set(VM, b"new", SetValue::Bytes(&value), 0), Ok(()));
        let keys = store.namespace(VM).keys();
        assert!(!keys.contains(&b"k01".to_vec()), "evicted");
        assert!(keys.contains(&b"k00".to_vec()));
        assert!(keys.contains(&b"new".to_vec()));
    }

    #[test]
    fn strict_none_fails_a_write_the_zone_has_no_room_for() {
        let store = zone_of_pages(1, Eviction::None);
        let value = chunk_value();
        for i in 0..16 {
            let key = format!("k{i:02}");
            assert_eq!(
                store.set(VM, key.as_bytes(), SetValue::Bytes(&value), 0),
                Ok(())
            );
        }
        assert_eq!(
            store.set(VM, b"k16", SetValue::Bytes(&value), 0),
            Err(SetFailure::NoMemory {
                key_len: 3,
                value_len: 150
            })
        );
        // Rewriting a pair at no more than its size needs no new memory.
        let cas = store.get(VM, b"k03").unwrap().cas;
        assert_eq!(
            store.set(VM, b"k03", SetValue::Bytes(&value[..100]), cas),
            Ok(())
        );
        let cas = store.get(VM, b"k03").unwrap().cas;
        assert_eq!(store.set(VM, b"k03", SetValue::Bytes(&value), cas), Ok(()));
    }

    #[test]
    fn strict_a_value_that_grows_takes_new_memory() {
        let store = zone_of_pages(1, Eviction::None);
        let small = vec![1; 20];
        for i in 0..16 {
            let key = format!("k{i:02}");
            assert_eq!(
                store.set(VM, key.as_bytes(), SetValue::Bytes(&small), 0),
                Ok(())
            );
        }
        // 96 + 3 + 20 = 119 bytes: 128-byte chunks, in the page of the store's
        // head (also 128 bytes).
        let (used, total) = store.namespace(VM).zone_pages().unwrap();
        assert_eq!((used, total), (1, 2));
        let grown = chunk_value();
        for i in 0..16 {
            let key = format!("k{i:02}");
            let cas = store.get(VM, key.as_bytes()).unwrap().cas;
            assert_eq!(
                store.set(VM, key.as_bytes(), SetValue::Bytes(&grown), cas),
                Ok(())
            );
        }
        // All moved to 256-byte chunks: a page more.
        assert_eq!(store.namespace(VM).zone_pages(), Some((2, 2)));
        assert_eq!(
            store.set(VM, b"more", SetValue::Bytes(&grown), 0),
            Err(SetFailure::NoMemory {
                key_len: 4,
                value_len: 150
            }),
            "every page in use"
        );
    }

    #[test]
    fn strict_slru_evicts_a_pair_of_the_same_size_first() {
        let store = zone_of_pages(1, Eviction::Slru);
        let value = chunk_value();
        // A small pair (a 128-byte chunk, beside the store's head), written
        // first (the oldest), then a page of 256-byte pairs.
        store
            .set(VM, b"small", SetValue::Bytes(&[1; 10]), 0)
            .unwrap();
        for i in 0..16 {
            let key = format!("k{i:02}");
            assert_eq!(
                store.set(VM, key.as_bytes(), SetValue::Bytes(&value), 0),
                Ok(())
            );
        }
        assert_eq!(store.set(VM, b"new", SetValue::Bytes(&value), 0), Ok(()));
        let keys = store.namespace(VM).keys();
        assert!(keys.contains(&b"small".to_vec()), "another size class");
        assert!(!keys.contains(&b"k00".to_vec()), "the oldest of its size");
    }

    #[test]
    fn strict_keys_are_found_by_crc32_alone() {
        // Two names with one CRC32 (equal length, found by a birthday search).
        let (a, b) = (b"r-oijkgjm9".as_slice(), b"r-o3a59da7".as_slice());
        assert_eq!(crc32fast::hash(a), crc32fast::hash(b));
        let store = SharedData::new(SharedDataSemantics::Strict(StrictLimits::default()));
        assert_eq!(store.set(VM, a, bytes("first"), 0), Ok(()));
        assert_eq!(
            store.set(VM, b, bytes("second"), 0),
            Err(Status::CasMismatch.into()),
            "b is a's entry, which exists"
        );
        let found = store.get(VM, b).unwrap();
        assert_eq!(found.value, b"first");
        assert_eq!(store.set(VM, b, bytes("second"), found.cas), Ok(()));
        assert_eq!(store.get(VM, a).unwrap().value, b"second");
        assert_eq!(store.namespace(VM).len(), 1);
        let envoy = SharedData::new(SharedDataSemantics::Envoy);
        envoy.set(VM, a, bytes("first"), 0).unwrap();
        envoy.set(VM, b, bytes("second"), 0).unwrap();
        assert_eq!(envoy.namespace(VM).len(), 2, "Envoy compares whole keys");
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
        assert_eq!(
            store.set(VM, b"k", bytes("x"), 2),
            Err(Status::CasMismatch.into())
        );
        assert_eq!(store.set(VM, b"k", bytes("y"), 2), Ok(()));

        store.fail_sets(Status::InternalFailure, FaultTimes::Always);
        assert_eq!(
            store.set(VM, b"k", bytes("z"), 0),
            Err(Status::InternalFailure.into())
        );
        store.clear_faults();
        assert_eq!(store.set(VM, b"k", bytes("z"), 0), Ok(()));
    }
}
