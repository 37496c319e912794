//! The bounded slot table: where a rule keeps its keys' states in the counter store.
//!
//! proxy-wasm shared data cannot delete keys, so one store key per client would let anyone
//! with many client addresses grow the proxy's memory without bound. Instead each rule owns a
//! fixed table of `buckets = ⌈max_keys / WAYS⌉` store keys, named `sluice/<rule>/<bucket>`
//! (`<bucket>` in decimal; ngx_wasm_module puts keys `ns/...` in the shm zone `ns`, so the
//! zone to declare is `sluice`). Each bucket holds up to [`WAYS`] entries.
//!
//! # Placement
//!
//! SipHash-1-3 keyed with the deployment's [`Seed`] over the rule name (length-prefixed) and
//! the request's key bytes gives 64 bits `h`. The bucket is `⌊h × buckets / 2⁶⁴⌋` (the high
//! bits), the key's fingerprint within the bucket is `h` itself (1 if `h` is 0). Without the
//! seed nobody can aim many keys at one bucket. Two keys share a counter only if their 64-bit
//! hashes are equal (odds about 2⁻⁶⁴ per pair within a bucket).
//!
//! # Entry choice and accuracy when full
//!
//! A request uses the entry whose fingerprint matches. A key without one takes a free way, or
//! else the entry that becomes idle soonest (smallest [`Limit::idle_at`]): an idle entry
//! (fully recovered, so forgetting it changes nothing) if there is one. So a key loses state
//! only when all `WAYS` entries of its bucket are live, and then the one evicted is the one with
//! the least outstanding debt: the key closest to having recovered anyway. An evicted key comes
//! back with an empty state, so it can spend what was left of its debt once more: at most one
//! extra `burst` (GCRA) or `limit` (window algorithms) per eviction, and only for keys whose
//! debt was the smallest in a full bucket. A client kept above its limit keeps a large debt and
//! is the last to be evicted.
//!
//! # Bucket encoding
//!
//! ```text
//! bucket = version:u8 (= 1) | signature:u64 | entries:u8 (0..=4) | entry*
//! entry  = fingerprint:u64 (≠ 0, unique in the bucket) | state_len:u32 | state (see crate::state)
//! ```
//!
//! All integers little-endian. The signature is a hash of the rule's algorithm, quota and
//! table size: a bucket written under another configuration (or garbage) is treated as empty
//! and overwritten, so a changed rule never misreads old state.
//!
//! # Memory ceiling
//!
//! A rule's shared data never exceeds [`RuleTable::max_store_bytes`]: `buckets ×` (longest key
//! name + [`RuleTable::max_bucket_bytes`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::hash::Hasher as _;

use siphasher::sip::SipHasher13;

use crate::algorithm::{Algorithm, Limit};
use crate::encoding::{self, ReadError, Reader};
use crate::limiter::Seed;
use crate::state::{State, StateError};
use crate::time::Nanos;

/// Entries per bucket.
pub const WAYS: usize = 4;

/// The prefix of every store key the limiter writes (and the ngx_wasm_module shm zone name).
pub const ZONE: &str = "sluice";

/// The version byte every encoded bucket starts with.
pub const BUCKET_VERSION: u8 = 1;

/// Bytes of an encoded bucket before its entries.
const BUCKET_HEADER_BYTES: u64 = 1 + 8 + 1;
/// Bytes of an entry before its state.
const ENTRY_HEADER_BYTES: u64 = 8 + 4;

/// One rule's table: its size, its signature and the names of its store keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleTable<'a> {
    rule: &'a str,
    limit: Limit,
    buckets: u32,
    signature: u64,
}

/// Where a key lives in its rule's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The bucket index, below [`RuleTable::bucket_count`].
    pub bucket: u32,
    /// The key's 64-bit fingerprint within the bucket; never 0.
    pub fingerprint: u64,
}

impl<'a> RuleTable<'a> {
    /// The table of rule `rule` holding up to `max_keys` keys (at least one bucket).
    pub fn new(rule: &'a str, limit: Limit, max_keys: u32) -> RuleTable<'a> {
        let buckets = max_keys.div_ceil(WAYS as u32).max(1);
        RuleTable {
            rule,
            limit,
            buckets,
            signature: signature(&limit, buckets),
        }
    }

    /// The rule's name.
    pub fn rule(&self) -> &'a str {
        self.rule
    }

    /// The rule's algorithm and quota.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// How many store keys the table uses.
    pub fn bucket_count(&self) -> u32 {
        self.buckets
    }

    /// Keys the table can hold with no eviction: `bucket_count × WAYS`.
    pub fn capacity(&self) -> u64 {
        u64::from(self.buckets) * WAYS as u64
    }

    /// The hash of the rule's algorithm, quota and table size written in every bucket.
    pub fn signature(&self) -> u64 {
        self.signature
    }

    /// Where `key` lives, for the deployment's `seed`.
    pub fn place(&self, seed: &Seed, key: &[u8]) -> Placement {
        let mut hasher = SipHasher13::new_with_keys(seed.k0, seed.k1);
        hasher.write(&(self.rule.len() as u64).to_le_bytes());
        hasher.write(self.rule.as_bytes());
        hasher.write(key);
        let hash = hasher.finish();
        let bucket = ((u128::from(hash) * u128::from(self.buckets)) >> 64) as u32;
        Placement {
            bucket,
            fingerprint: hash.max(1),
        }
    }

    /// Writes the store key of `bucket` (`sluice/<rule>/<bucket>`) into `out`, replacing
    /// its contents.
    pub fn write_bucket_key(&self, bucket: u32, out: &mut String) {
        out.clear();
        self.write_key_prefix(out);
        push_decimal(out, bucket);
    }

    /// Appends `sluice/<rule>/`, the part of the store key shared by every bucket.
    pub(crate) fn write_key_prefix(&self, out: &mut String) {
        out.push_str(ZONE);
        out.push('/');
        out.push_str(self.rule);
        out.push('/');
    }

    /// A table whose signature is already known (computed by [`RuleTable::new`] for the same
    /// rule, limit and size), so the per-request path does not hash the configuration again.
    pub(crate) fn with_signature(
        rule: &'a str,
        limit: Limit,
        buckets: u32,
        signature: u64,
    ) -> Self {
        RuleTable {
            rule,
            limit,
            buckets,
            signature,
        }
    }

    /// The store key of `bucket`.
    pub fn bucket_key(&self, bucket: u32) -> String {
        let mut key = String::new();
        self.write_bucket_key(bucket, &mut key);
        key
    }

    /// A bucket with this table's signature and no entries.
    pub fn empty_bucket(&self) -> Bucket {
        Bucket::new(self.signature)
    }

    /// The largest encoded bucket of this rule: every way holding the largest state.
    pub fn max_bucket_bytes(&self) -> u64 {
        let entry = ENTRY_HEADER_BYTES.saturating_add(self.limit.max_state_bytes());
        BUCKET_HEADER_BYTES.saturating_add(entry.saturating_mul(WAYS as u64))
    }

    /// The most store bytes (key names plus values) the rule can ever occupy.
    pub fn max_store_bytes(&self) -> u64 {
        let last = self.buckets.saturating_sub(1);
        let digits = last.checked_ilog10().unwrap_or(0) as u64 + 1;
        let key = (ZONE.len() + 1 + self.rule.len() + 1) as u64 + digits;
        u64::from(self.buckets).saturating_mul(key.saturating_add(self.max_bucket_bytes()))
    }
}

/// Appends `n` in decimal. The bucket key is built on every request: this avoids
/// `core::fmt`, which costs several times more than the digits.
pub(crate) fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    for &d in digits.get(start..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

fn signature(limit: &Limit, buckets: u32) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(0x736c_7569_6365_2d72, 0x756c_652d_7369_6731);
    hasher.write(&[BUCKET_VERSION, algorithm_tag(limit.algorithm)]);
    hasher.write(&limit.quota.limit().to_le_bytes());
    hasher.write(&limit.quota.period().to_le_bytes());
    // Only GCRA uses the burst; the window algorithms must not reset when it changes.
    let burst = match limit.algorithm {
        Algorithm::Gcra => limit.quota.burst(),
        _ => 0,
    };
    hasher.write(&burst.to_le_bytes());
    hasher.write(&buckets.to_le_bytes());
    hasher.finish()
}

fn algorithm_tag(algorithm: Algorithm) -> u8 {
    match algorithm {
        Algorithm::Gcra => 1,
        Algorithm::FixedWindow => 2,
        Algorithm::SlidingWindow => 3,
        Algorithm::SlidingLog => 4,
    }
}

/// The decoded contents of one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    signature: u64,
    entries: Vec<BucketEntry>,
}

/// One key's state in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEntry {
    /// The key's fingerprint (see [`Placement`]); never 0.
    pub fingerprint: u64,
    /// The key's state.
    pub state: State,
}

/// What [`Bucket::put`] did to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// The key already had an entry.
    Updated,
    /// The key took a free way.
    Inserted,
    /// The key replaced an idle entry (nothing was lost).
    ReplacedIdle,
    /// The key evicted a live entry (that key's debt is forgotten).
    EvictedLive,
}

/// Why bytes could not be decoded into a [`Bucket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketError {
    /// No bytes at all (e.g. a value emptied by a delete that the host could only express
    /// as an empty write).
    Empty,
    /// Written by another version of the encoding.
    UnknownVersion(u8),
    /// More entries than a bucket has ways.
    TooManyEntries(u8),
    /// An entry with fingerprint 0, or two with the same fingerprint.
    BadFingerprint,
    /// The bytes end in the middle of a value.
    Truncated,
    /// Bytes are left after the last entry (how many).
    TrailingBytes(usize),
    /// An entry's state does not decode.
    State(StateError),
}

impl core::fmt::Display for BucketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BucketError::Empty => f.write_str("the stored bucket is empty"),
            BucketError::UnknownVersion(v) => write!(
                f,
                "the stored bucket has encoding version {v}, this build reads version {BUCKET_VERSION}"
            ),
            BucketError::TooManyEntries(n) => {
                write!(
                    f,
                    "the stored bucket claims {n} entries, at most {WAYS} fit"
                )
            }
            BucketError::BadFingerprint => {
                f.write_str("the stored bucket has a zero or duplicate key fingerprint")
            }
            BucketError::Truncated => f.write_str("the stored bucket is cut short"),
            BucketError::TrailingBytes(n) => {
                write!(f, "the stored bucket has {n} unexpected trailing bytes")
            }
            BucketError::State(e) => write!(f, "a state in the stored bucket is unreadable: {e}"),
        }
    }
}

impl From<ReadError> for BucketError {
    fn from(e: ReadError) -> BucketError {
        match e {
            // A bucket holds no varints of its own; treat a malformed one as cut short.
            ReadError::Truncated | ReadError::MalformedVarint => BucketError::Truncated,
        }
    }
}

impl Bucket {
    /// An empty bucket with `signature`.
    pub fn new(signature: u64) -> Bucket {
        Bucket {
            signature,
            entries: Vec::with_capacity(WAYS),
        }
    }

    /// The signature of the rule configuration that wrote the bucket.
    pub fn signature(&self) -> u64 {
        self.signature
    }

    /// The entries, at most [`WAYS`].
    pub fn entries(&self) -> &[BucketEntry] {
        &self.entries
    }

    /// Empties the bucket and gives it `signature`, keeping its allocation.
    pub fn reset(&mut self, signature: u64) {
        self.signature = signature;
        self.entries.clear();
    }

    /// The state of the key with `fingerprint`, if it has an entry.
    pub fn find(&self, fingerprint: u64) -> Option<&State> {
        self.entries
            .iter()
            .find(|e| e.fingerprint == fingerprint)
            .map(|e| &e.state)
    }

    /// The state of the key with `fingerprint`, mutably.
    pub fn find_mut(&mut self, fingerprint: u64) -> Option<&mut State> {
        self.entries
            .iter_mut()
            .find(|e| e.fingerprint == fingerprint)
            .map(|e| &mut e.state)
    }

    /// Stores `state` for the key with `fingerprint`, choosing its entry as the module docs
    /// describe (its own, a free way, else the entry idle soonest under `limit` at `now`).
    pub fn put(&mut self, fingerprint: u64, state: State, limit: &Limit, now: Nanos) -> Put {
        if let Some(existing) = self.find_mut(fingerprint) {
            *existing = state;
            return Put::Updated;
        }
        let entry = BucketEntry { fingerprint, state };
        if self.entries.len() < WAYS {
            self.entries.push(entry);
            return Put::Inserted;
        }
        let victim = self
            .entries
            .iter_mut()
            .min_by_key(|e| limit.idle_at(&e.state));
        match victim {
            Some(victim) => {
                let idle = limit.idle_at(&victim.state) <= now;
                *victim = entry;
                if idle {
                    Put::ReplacedIdle
                } else {
                    Put::EvictedLive
                }
            }
            // WAYS > 0, so a full bucket has a victim; keep the state regardless.
            None => {
                self.entries.push(entry);
                Put::Inserted
            }
        }
    }

    /// Appends the encoding (see the module docs) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(BUCKET_VERSION);
        encoding::put_u64_le(out, self.signature);
        out.push(self.entries.len().min(WAYS) as u8);
        for entry in self.entries.iter().take(WAYS) {
            encoding::put_u64_le(out, entry.fingerprint);
            let len = entry.state.encoded_len();
            encoding::put_u32_le(out, u32::try_from(len).unwrap_or(u32::MAX));
            entry.state.encode_into(out);
        }
    }

    /// The number of bytes [`Bucket::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .take(WAYS)
            .map(|e| ENTRY_HEADER_BYTES as usize + e.state.encoded_len())
            .sum::<usize>()
            + BUCKET_HEADER_BYTES as usize
    }

    /// Decodes a complete bucket.
    pub fn decode(bytes: &[u8]) -> Result<Bucket, BucketError> {
        let mut bucket = Bucket::new(0);
        bucket.decode_from(bytes)?;
        Ok(bucket)
    }

    /// Decodes a complete bucket into `self`, reusing its allocation. On error `self` is
    /// left empty.
    pub fn decode_from(&mut self, bytes: &[u8]) -> Result<(), BucketError> {
        self.entries.clear();
        let result = self.decode_entries(bytes);
        if result.is_err() {
            self.entries.clear();
        }
        result
    }

    fn decode_entries(&mut self, bytes: &[u8]) -> Result<(), BucketError> {
        if bytes.is_empty() {
            return Err(BucketError::Empty);
        }
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != BUCKET_VERSION {
            return Err(BucketError::UnknownVersion(version));
        }
        self.signature = reader.u64_le()?;
        let count = reader.u8()?;
        if usize::from(count) > WAYS {
            return Err(BucketError::TooManyEntries(count));
        }
        for _ in 0..count {
            let fingerprint = reader.u64_le()?;
            if fingerprint == 0 || self.find(fingerprint).is_some() {
                return Err(BucketError::BadFingerprint);
            }
            let len = reader.u32_le()?;
            let state_bytes = reader.bytes(usize::try_from(len).unwrap_or(usize::MAX))?;
            let state = State::decode(state_bytes).map_err(BucketError::State)?;
            self.entries.push(BucketEntry { fingerprint, state });
        }
        match reader.remaining() {
            0 => Ok(()),
            n => Err(BucketError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Quota;

    fn gcra(limit: u64) -> Limit {
        Limit::new(Algorithm::Gcra, Quota::new(limit, 1_000, limit).unwrap())
    }

    #[test]
    fn bucket_keys_are_zone_rule_and_decimal_bucket() {
        let table = RuleTable::new("per-client", gcra(1), 1 << 20);
        for bucket in [0, 7, 10, 99, 100, 65_535, u32::MAX] {
            assert_eq!(
                table.bucket_key(bucket),
                alloc::format!("sluice/per-client/{bucket}")
            );
        }
    }

    #[test]
    fn buckets_are_the_ceiling_of_max_keys_over_ways() {
        assert_eq!(RuleTable::new("r", gcra(1), 65_536).bucket_count(), 16_384);
        assert_eq!(RuleTable::new("r", gcra(1), 5).bucket_count(), 2);
        assert_eq!(RuleTable::new("r", gcra(1), 0).bucket_count(), 1);
        assert_eq!(
            RuleTable::new("r", gcra(1), u32::MAX).bucket_count(),
            1 << 30
        );
    }

    #[test]
    fn keys_name_the_zone_rule_and_bucket() {
        let table = RuleTable::new("per-client", gcra(1), 16);
        assert_eq!(table.bucket_key(3), "sluice/per-client/3");
    }

    #[test]
    fn signature_changes_with_algorithm_quota_and_size_but_not_window_burst() {
        let q = Quota::new(10, 1_000, 10).unwrap();
        let base = RuleTable::new("r", Limit::new(Algorithm::Gcra, q), 64).signature();
        let other_burst = Quota::new(10, 1_000, 11).unwrap();
        for changed in [
            RuleTable::new("r", Limit::new(Algorithm::FixedWindow, q), 64),
            RuleTable::new("r", Limit::new(Algorithm::Gcra, other_burst), 64),
            RuleTable::new(
                "r",
                Limit::new(Algorithm::Gcra, Quota::new(10, 2_000, 10).unwrap()),
                64,
            ),
            RuleTable::new("r", Limit::new(Algorithm::Gcra, q), 128),
        ] {
            assert_ne!(changed.signature(), base, "{changed:?}");
        }
        let window = |quota| RuleTable::new("r", Limit::new(Algorithm::FixedWindow, quota), 64);
        assert_eq!(window(q).signature(), window(other_burst).signature());
    }

    #[test]
    fn placement_depends_on_seed_rule_and_key() {
        let table = RuleTable::new("r", gcra(1), 1 << 20);
        let seed = Seed { k0: 1, k1: 2 };
        let a = table.place(&seed, b"203.0.113.7");
        assert_eq!(a, table.place(&seed, b"203.0.113.7"));
        assert_ne!(a, table.place(&seed, b"203.0.113.8"));
        assert_ne!(a, table.place(&Seed { k0: 1, k1: 3 }, b"203.0.113.7"));
        let other_rule = RuleTable::new("s", gcra(1), 1 << 20);
        assert_ne!(a, other_rule.place(&seed, b"203.0.113.7"));
        assert!(a.bucket < table.bucket_count());
    }

    #[test]
    fn a_full_bucket_evicts_the_entry_idle_soonest() {
        let limit = gcra(10);
        let mut bucket = Bucket::new(7);
        for (fingerprint, tat) in [(1, 500), (2, 300), (3, 900), (4, 400)] {
            assert_eq!(
                bucket.put(fingerprint, State::Gcra { tat }, &limit, 100),
                Put::Inserted
            );
        }
        assert_eq!(
            bucket.put(3, State::Gcra { tat: 950 }, &limit, 100),
            Put::Updated
        );
        assert_eq!(
            bucket.put(5, State::Gcra { tat: 200 }, &limit, 100),
            Put::EvictedLive
        );
        assert!(bucket.find(2).is_none());
        // At 450, entry 5 (idle at 200) and 4 (idle at 400) are idle: the earlier goes.
        assert_eq!(
            bucket.put(6, State::Gcra { tat: 460 }, &limit, 450),
            Put::ReplacedIdle
        );
        assert!(bucket.find(5).is_none());
        assert!(bucket.find(4).is_some());
    }

    #[test]
    fn bucket_round_trips_and_rejects_damage() {
        let limit = gcra(10);
        let mut bucket = Bucket::new(0xabcd);
        bucket.put(9, State::Gcra { tat: 5 }, &limit, 0);
        bucket.put(
            10,
            State::FixedWindow {
                window_start: 0,
                count: 1,
            },
            &limit,
            0,
        );
        let mut bytes = Vec::new();
        bucket.encode_into(&mut bytes);
        assert_eq!(bytes.len(), bucket.encoded_len());
        assert_eq!(Bucket::decode(&bytes), Ok(bucket));

        assert_eq!(Bucket::decode(&[]), Err(BucketError::Empty));
        assert_eq!(Bucket::decode(&[9]), Err(BucketError::UnknownVersion(9)));
        let mut too_many = alloc::vec![1, 0, 0, 0, 0, 0, 0, 0, 0];
        too_many.push(5);
        assert_eq!(
            Bucket::decode(&too_many),
            Err(BucketError::TooManyEntries(5))
        );
        for cut in 1..bytes.len() {
            assert!(Bucket::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            Bucket::decode(&trailing),
            Err(BucketError::TrailingBytes(1))
        );
        // Second entry given the first one's fingerprint.
        let mut duplicate = bytes.clone();
        let second = 10 + 12 + 10;
        duplicate[second] = 9;
        assert_eq!(Bucket::decode(&duplicate), Err(BucketError::BadFingerprint));
    }

    #[test]
    fn max_bytes_bound_a_full_bucket_and_the_table() {
        let limit = gcra(10);
        let table = RuleTable::new("rule", limit, 16);
        let mut bucket = table.empty_bucket();
        for fingerprint in 1..=WAYS as u64 {
            bucket.put(fingerprint, State::Gcra { tat: u64::MAX }, &limit, 0);
        }
        assert_eq!(bucket.encoded_len() as u64, table.max_bucket_bytes());
        // 4 buckets of keys "sluice/rule/N" (13 bytes).
        assert_eq!(table.max_store_bytes(), 4 * (13 + table.max_bucket_bytes()));
    }
}
