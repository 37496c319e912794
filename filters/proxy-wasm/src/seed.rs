//! The deployment's hash seed: random, created by the first VM and shared through shared data,
//! so every VM of one proxy places keys alike and nobody outside can predict where a key lands.

use sluice_core::{Seed, SetError, SlotStore, StoreError};

use crate::host::SharedData;

const SEED_VERSION: u8 = 1;
const SEED_LEN: usize = 17;

/// Why the seed could not be had.
#[derive(Debug)]
pub enum SeedError {
    Store(StoreError),
    Random(getrandom::Error),
    /// Other VMs kept rewriting it.
    Contended,
}

impl core::fmt::Display for SeedError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SeedError::Store(e) => write!(f, "shared data failed while reading the hash seed: {e}"),
            SeedError::Random(e) => write!(f, "no randomness for the hash seed: {e}"),
            SeedError::Contended => f.write_str("the hash seed in shared data kept changing"),
        }
    }
}

/// Reads the shared seed at `key` (`sluice/<namespace>/seed`, in ngx_wasm_module's `sluice`
/// zone like the tables: one seed per namespace), creating it if this is the first VM.
///
/// VMs starting at once race to create it; the create is atomic on both hosts (see
/// `SharedData::set`), so the losers' writes fail and every VM adopts the winner's seed.
pub fn shared_seed(store: &mut SharedData, key: &str) -> Result<Seed, SeedError> {
    let mut buf = Vec::with_capacity(SEED_LEN);
    // Each round re-reads, so after our own write we adopt whatever is stored by then.
    for _ in 0..4 {
        let cas = store.get(key, &mut buf).map_err(SeedError::Store)?;
        if let Some(seed) = cas.and_then(|_| decode(&buf)) {
            return Ok(seed);
        }
        let mut fresh = [0u8; SEED_LEN];
        fresh[0] = SEED_VERSION;
        getrandom::fill(&mut fresh[1..]).map_err(SeedError::Random)?;
        // Missing: create it (cas 0); present but damaged: replace what we read.
        match store.set(key, &fresh, cas.unwrap_or(0)) {
            Ok(()) | Err(SetError::CasMismatch) => {}
            Err(SetError::Store(e)) => return Err(SeedError::Store(e)),
        }
    }
    Err(SeedError::Contended)
}

fn decode(bytes: &[u8]) -> Option<Seed> {
    match bytes {
        [SEED_VERSION, rest @ ..] if rest.len() == 16 => {
            let (k0, k1) = rest.split_at(8);
            Some(Seed {
                k0: u64::from_le_bytes(k0.try_into().ok()?),
                k1: u64::from_le_bytes(k1.try_into().ok()?),
            })
        }
        _ => None,
    }
}
