//! Where a proxy keeps its leases and its negative cache: one fixed table per global rule in
//! shared data, next to the local rules' counter tables and built the same way (keys hashed
//! with the namespace's seed into buckets of [`WAYS`] entries, every bucket written at full
//! size at configure time, so shared data never grows after start).
//!
//! # Names
//!
//! The table of global rule `r` is the table of a rule named `r/lease` in the configuration's
//! [`TableNames`] (`sluice/<namespace>/r/lease/<tag>/<bucket>`): its names take part in the
//! CRC32 separation with the counter tables, and no local rule can have that name.
//!
//! # Encoding
//!
//! ```text
//! bucket = version:u8 (= 1) | signature:u64 | entries:u8 (0..=4) | entry* | padding
//! entry  = 16 × u64: fingerprint (≠ 0) | unspent | slice | expires_at | granted_at |
//!          last_units | prev_granted_at | grant_remaining | reset_until | renewing_until |
//!          spent | spent_since | denied_cost | retry_until | denied_reset_until |
//!          denied_remaining
//! ```
//!
//! Little-endian; times ending in `_at`/`_until`/`_since` are nanoseconds on the proxy's clock
//! except `granted_at` and `prev_granted_at`, which are the service's (sent back with a
//! return). A bucket that does not decode (another version, another signature, garbage) is
//! empty: the units it held are lost, never counted twice.

use sluice_core::table::{RuleTable, TableNames};
use sluice_core::{Limit, Nanos, Seed};

/// Entries per bucket.
pub const WAYS: usize = 4;
/// The version byte of an encoded bucket.
pub const VERSION: u8 = 1;
/// The suffix that names a global rule's lease table.
pub const TABLE_SUFFIX: &str = "/lease";

const HEADER_BYTES: usize = 1 + 8 + 1;
const FIELDS: usize = 16;
const ENTRY_BYTES: usize = FIELDS * 8;
/// Every bucket's encoded size.
pub const BUCKET_BYTES: usize = HEADER_BYTES + WAYS * ENTRY_BYTES;

/// One key's lease and negative-cache entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseEntry {
    /// The key's fingerprint in the table (never 0).
    pub fingerprint: u64,
    /// Units held and not spent.
    pub unspent: u64,
    /// The slice's size when last filled: the base of `renew_at`.
    pub slice: u64,
    /// When the slice stops being spendable (0: no lease).
    pub expires_at: Nanos,
    /// The service's time of the latest grant.
    pub granted_at: Nanos,
    /// Units of the latest grant (spent last: the slice spends older units first).
    pub last_units: u64,
    /// The service's time of the grant before; its units are `unspent - min(unspent, last_units)`.
    pub prev_granted_at: Nanos,
    /// What the service said remained after the latest grant.
    pub grant_remaining: u64,
    /// When the key's quota is whole again, per the latest grant.
    pub reset_until: Nanos,
    /// A renewal is in flight until then (one per proxy).
    pub renewing_until: Nanos,
    /// Units spent since `spent_since` (the observed rate, for `size: "auto"`).
    pub spent: u64,
    pub spent_since: Nanos,
    /// Negative cache: requests of at least this cost are denied until `retry_until` (0: none).
    pub denied_cost: u64,
    pub retry_until: Nanos,
    pub denied_reset_until: Nanos,
    pub denied_remaining: u64,
}

impl LeaseEntry {
    /// A fresh entry for `fingerprint`.
    pub fn new(fingerprint: u64) -> LeaseEntry {
        LeaseEntry {
            fingerprint,
            ..LeaseEntry::default()
        }
    }

    /// Whether the slice can be spent at `now`.
    pub fn live(&self, now: Nanos) -> bool {
        self.expires_at > now
    }

    /// Whether a cached denial covers a request of `cost` at `now`.
    pub fn denies(&self, cost: u64, now: Nanos) -> bool {
        self.denied_cost != 0 && cost >= self.denied_cost && now < self.retry_until
    }

    /// Whether forgetting the entry at `now` loses nothing: no units, no renewal in
    /// flight, no denial in force.
    pub fn idle(&self, now: Nanos) -> bool {
        self.unspent == 0 && self.renewing_until <= now && !self.denies(u64::MAX, now)
    }

    /// The unspent units split by grant: `(units, granted_at)` of the latest grant and of
    /// the one before (the older ones are spent first).
    pub fn unspent_by_grant(&self) -> [(u64, Nanos); 2] {
        let last = self.unspent.min(self.last_units);
        [
            (last, self.granted_at),
            (self.unspent - last, self.prev_granted_at),
        ]
    }

    fn fields(&self) -> [u64; FIELDS] {
        [
            self.fingerprint,
            self.unspent,
            self.slice,
            self.expires_at,
            self.granted_at,
            self.last_units,
            self.prev_granted_at,
            self.grant_remaining,
            self.reset_until,
            self.renewing_until,
            self.spent,
            self.spent_since,
            self.denied_cost,
            self.retry_until,
            self.denied_reset_until,
            self.denied_remaining,
        ]
    }

    fn from_fields(f: [u64; FIELDS]) -> LeaseEntry {
        let [
            fingerprint,
            unspent,
            slice,
            expires_at,
            granted_at,
            last_units,
            prev_granted_at,
            grant_remaining,
            reset_until,
            renewing_until,
            spent,
            spent_since,
            denied_cost,
            retry_until,
            denied_reset_until,
            denied_remaining,
        ] = f;
        LeaseEntry {
            fingerprint,
            unspent,
            slice,
            expires_at,
            granted_at,
            last_units,
            prev_granted_at,
            grant_remaining,
            reset_until,
            renewing_until,
            spent,
            spent_since,
            denied_cost,
            retry_until,
            denied_reset_until,
            denied_remaining,
        }
    }
}

/// One bucket of a lease table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseBucket {
    pub entries: Vec<LeaseEntry>,
}

impl LeaseBucket {
    /// Decodes `bytes` written under `signature`; anything else is an empty bucket.
    pub fn decode(bytes: &[u8], signature: u64) -> LeaseBucket {
        let mut bucket = LeaseBucket::default();
        bucket.decode_from(bytes, signature);
        bucket
    }

    /// [`LeaseBucket::decode`] into this bucket, reusing its entries' allocation.
    pub fn decode_from(&mut self, bytes: &[u8], signature: u64) {
        self.entries.clear();
        if Self::try_decode(bytes, signature, &mut self.entries).is_none() {
            self.entries.clear();
        }
    }

    fn try_decode(bytes: &[u8], signature: u64, entries: &mut Vec<LeaseEntry>) -> Option<()> {
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION {
            return None;
        }
        let (stored, rest) = rest.split_first_chunk::<8>()?;
        if u64::from_le_bytes(*stored) != signature {
            return None;
        }
        let (&count, mut rest) = rest.split_first()?;
        let count = usize::from(count);
        if count > WAYS {
            return None;
        }
        entries.reserve(count);
        for _ in 0..count {
            let mut fields = [0u64; FIELDS];
            for field in &mut fields {
                let (value, tail) = rest.split_first_chunk::<8>()?;
                *field = u64::from_le_bytes(*value);
                rest = tail;
            }
            let entry = LeaseEntry::from_fields(fields);
            if entry.fingerprint == 0
                || entries
                    .iter()
                    .any(|e: &LeaseEntry| e.fingerprint == entry.fingerprint)
            {
                return None;
            }
            entries.push(entry);
        }
        Some(())
    }

    /// The bucket at its full size ([`BUCKET_BYTES`]).
    pub fn encode_into(&self, signature: u64, out: &mut Vec<u8>) {
        out.clear();
        out.push(VERSION);
        out.extend_from_slice(&signature.to_le_bytes());
        let count = self.entries.len().min(WAYS);
        out.push(count as u8);
        for entry in self.entries.iter().take(WAYS) {
            for field in entry.fields() {
                out.extend_from_slice(&field.to_le_bytes());
            }
        }
        out.resize(BUCKET_BYTES, 0);
    }

    /// The entry of `fingerprint`.
    pub fn find(&self, fingerprint: u64) -> Option<&LeaseEntry> {
        self.entries.iter().find(|e| e.fingerprint == fingerprint)
    }

    /// The entry of `fingerprint`, made if missing. A full bucket gives up the entry that
    /// matters least at `now` (an idle one, else the one whose lease and denial end first);
    /// it is answered as evicted when it held units, so they can be returned.
    pub fn entry_mut(
        &mut self,
        fingerprint: u64,
        now: Nanos,
    ) -> Option<(&mut LeaseEntry, Option<LeaseEntry>)> {
        let mut evicted = None;
        let index = match self
            .entries
            .iter()
            .position(|e| e.fingerprint == fingerprint)
        {
            Some(index) => index,
            None if self.entries.len() < WAYS => {
                self.entries.push(LeaseEntry::new(fingerprint));
                self.entries.len() - 1
            }
            None => {
                let victim = self
                    .entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| {
                        (
                            !e.idle(now),
                            e.expires_at.max(e.retry_until).max(e.renewing_until),
                            e.unspent,
                        )
                    })
                    .map_or(0, |(i, _)| i);
                let slot = self.entries.get_mut(victim)?;
                evicted = Some(*slot).filter(|e| e.unspent > 0);
                *slot = LeaseEntry::new(fingerprint);
                victim
            }
        };
        Some((self.entries.get_mut(index)?, evicted))
    }
}

/// The lease table of one global rule.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    /// `<rule>/lease`: the table's name in [`TableNames`].
    name: String,
    limit: Limit,
    max_keys: u32,
    /// The bucket-key prefix `sluice/<namespace>/<rule>/lease/<tag>/`.
    prefix: String,
    buckets: u32,
    signature: u64,
}

impl LeaseTable {
    /// The name of rule `rule`'s lease table.
    pub fn table_name(rule: &str) -> String {
        format!("{rule}{TABLE_SUFFIX}")
    }

    /// The table of global rule `rule` named in `names` (after their CRC32 separation).
    pub fn new(names: &TableNames, rule: &str, limit: Limit, max_keys: u32) -> LeaseTable {
        let name = Self::table_name(rule);
        let table = names.table(&name, limit, max_keys);
        let mut prefix = table.bucket_key(0);
        prefix.pop();
        LeaseTable {
            buckets: table.bucket_count(),
            signature: table.signature() ^ 0x6c65_6173_6521_0001,
            name,
            limit,
            max_keys,
            prefix,
        }
    }

    /// The table's name, `<rule>/lease`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn bucket_count(&self) -> u32 {
        self.buckets
    }

    pub fn signature(&self) -> u64 {
        self.signature
    }

    /// The store key of `bucket`.
    pub fn write_bucket_key(&self, bucket: u32, out: &mut String) {
        use core::fmt::Write as _;
        out.clear();
        out.push_str(&self.prefix);
        let _ = write!(out, "{bucket}");
    }

    /// Where `key` lives: its bucket and fingerprint.
    pub fn place(&self, seed: &Seed, key: &[u8]) -> (u32, u64) {
        let placement = RuleTable::new(&self.name, self.limit, self.max_keys).place(seed, key);
        (placement.bucket, placement.fingerprint)
    }

    /// Bytes of the longest key name.
    pub fn max_key_bytes(&self) -> u64 {
        (self.prefix.len() + 10) as u64
    }

    /// Bytes of names and values the table occupies.
    pub fn store_bytes(&self) -> u64 {
        u64::from(self.buckets) * (self.max_key_bytes() + BUCKET_BYTES as u64)
    }

    /// ngx_wasm_module slab pages it occupies.
    pub fn zone_pages(&self) -> u64 {
        let entry = sluice_core::shm_zone::entry_bytes(self.max_key_bytes(), BUCKET_BYTES as u64);
        sluice_core::shm_zone::pages_for(u64::from(self.buckets), entry)
    }
}
