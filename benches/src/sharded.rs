//! Stores sluice can share between threads: a CAS key-value store for [`Limiter::check`]
//! (what proxy shared data is to the filter) and a map of states for [`Limit::decide`].
//!
//! [`Limiter::check`]: sluice_core::Limiter::check
//! [`Limit::decide`]: sluice_core::Limit::decide

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sluice_core::{SetError, SlotStore, State, StoreError};

/// Shards per store: enough that two threads rarely meet on one lock.
const SHARDS: usize = 64;

fn shard_of(key: &[u8]) -> usize {
    // FNV-1a: cheap, and only spreads keys over the shards (each shard's map hashes again).
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in key {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % SHARDS as u64) as usize
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking benchmark thread ends the run anyway; keep going with the data as it is.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct Slot {
    value: Vec<u8>,
    cas: u32,
}

/// A key-value store with compare-and-swap, sharded under mutexes: the semantics the filter
/// gets from proxy shared data (a `set` with cas 0 creates the key only if it is absent).
#[derive(Debug)]
pub struct ShardedCasStore {
    shards: Box<[Mutex<HashMap<String, Slot>>]>,
}

impl Default for ShardedCasStore {
    fn default() -> ShardedCasStore {
        ShardedCasStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl ShardedCasStore {
    /// A handle for one thread, implementing [`SlotStore`].
    pub fn handle(&self) -> CasStoreHandle<'_> {
        CasStoreHandle { store: self }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Slot>> {
        lock(&self.shards[shard_of(key.as_bytes())])
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One thread's access to a [`ShardedCasStore`].
#[derive(Debug, Clone, Copy)]
pub struct CasStoreHandle<'a> {
    store: &'a ShardedCasStore,
}

impl SlotStore for CasStoreHandle<'_> {
    fn get(&mut self, key: &str, value: &mut Vec<u8>) -> Result<Option<u32>, StoreError> {
        value.clear();
        let shard = self.store.shard(key);
        Ok(shard.get(key).map(|slot| {
            value.extend_from_slice(&slot.value);
            slot.cas
        }))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let mut shard = self.store.shard(key);
        match (shard.get_mut(key), cas) {
            (None, 0) => {
                shard.insert(
                    key.to_string(),
                    Slot {
                        value: value.to_vec(),
                        cas: 1,
                    },
                );
                Ok(())
            }
            (Some(slot), cas) if cas != 0 && slot.cas == cas => {
                slot.value.clear();
                slot.value.extend_from_slice(value);
                slot.cas = slot.cas.wrapping_add(1).max(1);
                Ok(())
            }
            _ => Err(SetError::CasMismatch),
        }
    }
}

type StateShard = HashMap<Vec<u8>, State>;

/// Each key's state, in a map sharded under mutexes (as governor keeps its states in a
/// sharded `DashMap`).
#[derive(Debug)]
pub struct ShardedStates {
    shards: Box<[Mutex<StateShard>]>,
}

impl Default for ShardedStates {
    fn default() -> ShardedStates {
        ShardedStates {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl ShardedStates {
    /// Runs `f` on `key`'s state with its shard locked: `f` gets the state (`None` if the key
    /// has none) and answers the state to keep, if it changes.
    pub fn update<R>(&self, key: &[u8], f: impl FnOnce(Option<&State>) -> (R, Option<State>)) -> R {
        let mut shard = lock(&self.shards[shard_of(key)]);
        match shard.get_mut(key) {
            Some(state) => {
                let (answer, next) = f(Some(state));
                if let Some(next) = next {
                    *state = next;
                }
                answer
            }
            None => {
                let (answer, next) = f(None);
                if let Some(next) = next {
                    shard.insert(key.to_vec(), next);
                }
                answer
            }
        }
    }

    /// How many keys have a state.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
