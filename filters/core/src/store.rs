//! The counter store as the limiter sees it: a key-value map with compare-and-swap, like
//! proxy-wasm shared data. The limiter does the CAS loop; a store only gets and sets.

use alloc::vec::Vec;

/// The store failed (not a single CAS conflict): the rule's failure mode decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The host answered with an unexpected status (its numeric code).
    Host(u32),
    /// The host does not offer shared data.
    Unavailable,
    /// Other writers kept changing the rule's counter: every CAS retry the limiter is allowed
    /// lost a race.
    Contention,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::Host(status) => write!(
                f,
                "the proxy's shared data answered status {status} (see the proxy-wasm ABI status codes)"
            ),
            StoreError::Unavailable => f.write_str("the proxy offers no shared data"),
            StoreError::Contention => f.write_str(
                "the counter kept changing under concurrent writers until the CAS retries ran out \
                 (more CAS retries, or a larger max_keys so that fewer keys share a bucket, help)",
            ),
        }
    }
}

/// Why a `set` did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// Someone else wrote the key since our `get`: re-read and retry.
    CasMismatch,
    /// The store failed.
    Store(StoreError),
}

impl core::fmt::Display for SetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetError::CasMismatch => {
                f.write_str("another writer changed the key since it was read")
            }
            SetError::Store(e) => e.fmt(f),
        }
    }
}

/// A shared key-value store with versions (`cas`), e.g. proxy-wasm shared data.
///
/// The limiter only ever passes the cas it read, or 0 for a key it saw missing. A `set` with
/// `cas == 0` therefore means "create the key if it is still absent": a store should make that
/// atomic where its host allows it (the filter's shared-data store does, on Envoy and on
/// ngx_wasm_module). `MemoryStore` models the hosts' raw calls instead, where Envoy's cas 0 is
/// unconditional, so tests can show what an unguarded create would lose.
pub trait SlotStore {
    /// Replaces the contents of `value` with the key's value and returns its cas, or returns
    /// `None` if the key does not exist.
    fn get(&mut self, key: &str, value: &mut Vec<u8>) -> Result<Option<u32>, StoreError>;
    /// Writes `value` if the key's cas still equals `cas` (0: the key was missing).
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError>;
}
