//! Reading and changing one key's lease entry in shared data: a get, a change to the decoded
//! bucket, and a compare-and-swap of the whole bucket, retried when another VM wrote first.
//! Every VM of the proxy sees one slice per (rule, key) this way.

use std::cell::RefCell;

use sluice_core::{Decision, Nanos, Seed, SetError, SlotStore, StoreError};

use crate::lease_table::{LeaseBucket, LeaseEntry, LeaseTable};

/// Units to give back to the service (a lease that ended, or units a request did not keep).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReturn {
    pub rule: usize,
    pub key: Vec<u8>,
    pub units: u64,
    pub granted_at: Nanos,
}

/// Why an entry could not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStoreError {
    Store(StoreError),
    /// Other VMs kept winning the compare-and-swap.
    Contended,
}

thread_local! {
    /// What entries are read, changed and written in, kept from one to the next (a VM runs
    /// on one thread), so a warmed-up request allocates nothing for them.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// One bucket's name, read, decoding and write.
#[derive(Default)]
struct Scratch {
    bucket_key: String,
    value: Vec<u8>,
    bucket: LeaseBucket,
    encoded: Vec<u8>,
}

/// One key of one rule's lease table, as a request or a tick sees it.
pub struct LeaseSlot<'a> {
    pub table: &'a LeaseTable,
    pub rule: usize,
    pub key: &'a [u8],
    bucket: u32,
    fingerprint: u64,
}

impl<'a> LeaseSlot<'a> {
    pub fn new(table: &'a LeaseTable, rule: usize, key: &'a [u8], seed: &Seed) -> LeaseSlot<'a> {
        let (bucket, fingerprint) = table.place(seed, key);
        LeaseSlot {
            table,
            rule,
            key,
            bucket,
            fingerprint,
        }
    }

    /// The key's entry, if it has one (one shared-data read, no write).
    pub fn read<S: SlotStore>(&self, store: &mut S) -> Result<Option<LeaseEntry>, StoreError> {
        with_scratch(|scratch| {
            self.table
                .write_bucket_key(self.bucket, &mut scratch.bucket_key);
            if store
                .get(&scratch.bucket_key, &mut scratch.value)?
                .is_none()
            {
                return Ok(None);
            }
            scratch
                .bucket
                .decode_from(&scratch.value, self.table.signature());
            Ok(scratch.bucket.find(self.fingerprint).copied())
        })
    }

    /// Changes the key's entry with `change` (made fresh if missing), which answers a value
    /// and whether it changed anything (nothing is written if not). Retried up to `retries`
    /// times on a lost race. An entry evicted to make room takes its unspent units with it
    /// (only its fingerprint is stored, not its key, so they cannot be returned): lost to
    /// this proxy as on a crash, never counted twice.
    pub fn update<S: SlotStore, R>(
        &self,
        store: &mut S,
        now: Nanos,
        retries: u32,
        change: impl FnMut(&mut LeaseEntry) -> (R, bool),
    ) -> Result<R, LeaseStoreError> {
        with_scratch(|scratch| self.update_in(scratch, store, now, retries, change))
    }

    fn update_in<S: SlotStore, R>(
        &self,
        scratch: &mut Scratch,
        store: &mut S,
        now: Nanos,
        retries: u32,
        mut change: impl FnMut(&mut LeaseEntry) -> (R, bool),
    ) -> Result<R, LeaseStoreError> {
        let Scratch {
            bucket_key,
            value,
            bucket,
            encoded,
        } = scratch;
        self.table.write_bucket_key(self.bucket, bucket_key);
        for _ in 0..=retries {
            let cas = store
                .get(bucket_key, value)
                .map_err(LeaseStoreError::Store)?;
            match cas {
                Some(_) => bucket.decode_from(value, self.table.signature()),
                None => bucket.entries.clear(),
            }
            let Some((entry, evicted)) = bucket.entry_mut(self.fingerprint, now) else {
                return Err(LeaseStoreError::Contended);
            };
            let (answer, changed) = change(entry);
            if !changed && evicted.is_none() && cas.is_some() {
                return Ok(answer);
            }
            bucket.encode_into(self.table.signature(), encoded);
            match store.set(bucket_key, encoded, cas.unwrap_or(0)) {
                Ok(()) => return Ok(answer),
                Err(SetError::CasMismatch) => continue,
                Err(SetError::Store(error)) => return Err(LeaseStoreError::Store(error)),
            }
        }
        Err(LeaseStoreError::Contended)
    }
}

/// The rate-limit headers' decision for a request allowed from a slice: the grant's
/// remaining plus what the slice still holds (capped at the limit), and the grant's reset
/// moved on by the time elapsed since.
pub fn slice_decision(entry: &LeaseEntry, limit: u64, now: Nanos) -> Decision {
    Decision {
        allowed: true,
        limit,
        remaining: entry
            .grant_remaining
            .saturating_add(entry.unspent)
            .min(limit),
        reset_after: entry.reset_until.saturating_sub(now),
        retry_after: 0,
        delay: 0,
    }
}

/// The decision of a denial remembered in the negative cache, its times moved on by the time
/// elapsed since the service gave it.
pub fn cached_denial(entry: &LeaseEntry, limit: u64, now: Nanos) -> Decision {
    Decision {
        allowed: false,
        limit,
        remaining: entry.denied_remaining,
        reset_after: entry.denied_reset_until.saturating_sub(now),
        retry_after: entry.retry_until.saturating_sub(now),
        delay: 0,
    }
}

/// Remembers the service's denial of a request of `cost`, decided at `now`, until its retry
/// time; a denial already in force for a smaller cost is kept.
pub fn remember_denial(entry: &mut LeaseEntry, cost: u64, decision: &Decision, now: Nanos) {
    if decision.retry_after == 0 {
        return;
    }
    if entry.denies(cost, now) {
        return;
    }
    entry.denied_cost = cost.max(1);
    entry.retry_until = now.saturating_add(decision.retry_after);
    entry.denied_reset_until = now.saturating_add(decision.reset_after);
    entry.denied_remaining = decision.remaining;
}

/// Forgets any denial (the service allowed or granted since); answers whether one was there.
pub fn forget_denial(entry: &mut LeaseEntry) -> bool {
    let had = entry.denied_cost != 0;
    entry.denied_cost = 0;
    entry.retry_until = 0;
    had
}

/// Runs `work` in the thread's scratch buffers, or in fresh ones if they are in use (only a
/// change that itself reads or changes an entry would get there).
fn with_scratch<T>(work: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => work(&mut scratch),
        Err(_) => work(&mut Scratch::default()),
    })
}
