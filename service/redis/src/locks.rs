//! Turns for decisions on the same keys within one process.
//!
//! Two concurrent decisions of one process on one key would send the same expected value and
//! one would lose the compare-and-set, costing a round trip for nothing. So a decision first
//! takes the lock of every key it touches (striped: a fixed number of locks, keys hashed onto
//! them, taken in index order so two decisions never wait on each other in a cycle). Locks are
//! an optimisation only: correctness comes from the script's compare-and-set, which also
//! covers other processes.

use core::hash::Hasher as _;

use siphasher::sip::SipHasher13;
use tokio::sync::{Mutex, MutexGuard};

/// Number of stripes: many more than the decisions in flight at once, so unrelated keys
/// rarely share one.
const STRIPES: usize = 1024;

/// A fixed set of async locks that keys hash onto.
#[derive(Debug)]
pub(crate) struct KeyLocks {
    stripes: Vec<Mutex<()>>,
}

impl KeyLocks {
    pub(crate) fn new() -> KeyLocks {
        KeyLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Takes the locks of all `keys`, waiting for each in index order.
    pub(crate) async fn lock_all(&self, keys: &[String]) -> Vec<MutexGuard<'_, ()>> {
        let mut indices: Vec<usize> = keys.iter().map(|k| stripe(k)).collect();
        indices.sort_unstable();
        indices.dedup();
        let mut guards = Vec::with_capacity(indices.len());
        for i in indices {
            if let Some(lock) = self.stripes.get(i) {
                guards.push(lock.lock().await);
            }
        }
        guards
    }
}

fn stripe(key: &str) -> usize {
    let mut hasher = SipHasher13::new_with_keys(0, 0);
    hasher.write(key.as_bytes());
    (hasher.finish() % STRIPES as u64) as usize
}
