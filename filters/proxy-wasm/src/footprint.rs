//! What a configuration's tables occupy in shared data, and the check, once they are all
//! created, that all of them are still there.
//!
//! Every bucket is written at its full size when it is created (see `sluice_core::table`),
//! so a store with too little room shows it now: on ngx_wasm_module a zone that is too small
//! evicts buckets created a moment ago (`eviction=lru|slru`) or fails the write
//! (`eviction=none`, which traps the VM). Caught here, the operator reads the zone size to
//! declare instead of finding out under load.

use std::fmt;

use sluice_core::shm_zone;
use sluice_core::table::{RuleTable, TableNames};
use sluice_core::{SlotStore, StoreError};
use sluice_policy::Policy;

use crate::host::SharedData;
use crate::lease::Leases;

/// The size of a configuration's tables.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    /// Store keys, the seed's included.
    keys: u64,
    /// Bytes of key names and values.
    bytes: u64,
    /// The ngx_wasm_module `shm_kv` zone size that holds them.
    zone_bytes: u64,
}

impl Footprint {
    /// The footprint of `policy`'s tables named by `names`, with the lease tables of its
    /// global rules.
    pub fn of(policy: &Policy, names: &TableNames, leases: Option<&Leases>) -> Footprint {
        let tables = || tables(policy, names);
        let lease_tables = || leases.into_iter().flat_map(Leases::tables);
        let seed_bytes = names.seed_key().len() as u64 + 17;
        let pages = tables().map(|t| shm_zone::table_pages(&t)).sum::<u64>()
            + lease_tables().map(|t| t.zone_pages()).sum::<u64>();
        Footprint {
            keys: 1
                + tables().map(|t| u64::from(t.bucket_count())).sum::<u64>()
                + lease_tables()
                    .map(|t| u64::from(t.bucket_count()))
                    .sum::<u64>(),
            bytes: seed_bytes
                + tables().map(|t| t.max_store_bytes()).sum::<u64>()
                + lease_tables().map(|t| t.store_bytes()).sum::<u64>(),
            zone_bytes: shm_zone::zone_bytes_for_pages(pages),
        }
    }

    /// Reads every bucket back: a missing one means the store evicted it for room, so the
    /// store is too small.
    pub fn verify(
        &self,
        policy: &Policy,
        names: &TableNames,
        leases: Option<&Leases>,
        store: &mut SharedData,
    ) -> Result<(), String> {
        let mut key = String::new();
        let mut value = Vec::new();
        for table in leases.into_iter().flat_map(Leases::tables) {
            let mut missing = 0u32;
            for bucket in 0..table.bucket_count() {
                table.write_bucket_key(bucket, &mut key);
                match store.get(&key, &mut value) {
                    Ok(Some(_)) => {}
                    Ok(None) => missing += 1,
                    Err(e) => return Err(read_back_failed(table.name(), e)),
                }
            }
            if missing > 0 {
                return Err(self.too_small(table.name(), missing, table.bucket_count()));
            }
        }
        for table in tables(policy, names) {
            let mut missing = 0u32;
            for bucket in 0..table.bucket_count() {
                table.write_bucket_key(bucket, &mut key);
                match store.get(&key, &mut value) {
                    Ok(Some(_)) => {}
                    Ok(None) => missing += 1,
                    Err(e) => return Err(read_back_failed(table.rule(), e)),
                }
            }
            if missing > 0 {
                return Err(self.too_small(table.rule(), missing, table.bucket_count()));
            }
        }
        Ok(())
    }

    fn too_small(&self, rule: &str, missing: u32, total: u32) -> String {
        format!(
            "rule \"{rule}\": {missing} of its {total} buckets were gone from shared \
             data right after they were created: the store evicted them for room. \
             With ngx_wasm_module, declare the zone with at least {zone} bytes \
             ({mib:.1} MiB) for this configuration, e.g. `shm_kv sluice {size}m;` \
             (add the needs of every other sluice configuration sharing the zone), \
             or lower max_keys",
            zone = self.zone_bytes,
            mib = self.zone_bytes as f64 / 1_048_576.0,
            size = self.zone_bytes.div_ceil(1_048_576),
        )
    }
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shared data: {} keys, {} bytes of names and values, written in full at start-up \
             (an ngx_wasm_module shm_kv zone \"sluice\" needs {} bytes for them)",
            self.keys, self.bytes, self.zone_bytes
        )
    }
}

fn tables<'a>(policy: &'a Policy, names: &'a TableNames) -> impl Iterator<Item = RuleTable<'a>> {
    policy
        .table_specs()
        .into_iter()
        .map(move |spec| names.table(spec.rule, spec.limit, spec.max_keys))
}

fn read_back_failed(rule: &str, error: StoreError) -> String {
    format!("rule \"{rule}\": cannot read its table back from shared data: {error}")
}
