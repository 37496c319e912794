//! The bounded slot table: where a rule keeps its keys' states in the counter store.
//!
//! proxy-wasm shared data cannot delete keys, so one store key per client would let anyone
//! with many client addresses grow the proxy's memory without bound. Instead each rule owns a
//! fixed table of `buckets = ⌈max_keys / WAYS⌉` store keys, named
//! `sluice/<namespace>/<rule>/<tag>/<bucket>` (ngx_wasm_module puts keys `ns/...` in the shm
//! zone `ns`, so the zone to declare is `sluice`). Each bucket holds up to [`WAYS`] entries.
//!
//! # Names
//!
//! - `<namespace>`: whose counters these are ([`TableNames`]). A configuration without an
//!   explicit namespace gets one derived from its own bytes, so two different configurations
//!   never read or reset each other's tables.
//! - `<rule>`: the rule's name.
//! - `<tag>`: 8 lowercase hex digits, a hash of the table's [signature](RuleTable::signature)
//!   (algorithm, quota, size) and a salt. Two rules of the same name with different limits in
//!   one namespace therefore have different tables and never overwrite each other.
//! - `<bucket>`: the bucket index in decimal.
//!
//! ngx_wasm_module finds a key by its CRC32 alone, so two names with the same CRC32 are one
//! entry there. [`TableNames::separate_crc32`] checks every name of a configuration and salts
//! the tag of a table whose names collide until none do.
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
//! else the entry that becomes idle soonest (smallest [`Limit::idle_at`], and among equals the
//! one that spent least): an idle entry (fully recovered, so forgetting it changes nothing) if
//! there is one. So a key loses state
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
//! bucket = version:u8 (= 2) | signature:u64 | entries:u8 (0..=4) | entry* | padding
//! entry  = fingerprint:u64 (≠ 0, unique in the bucket) | state_len:u32 | state (see crate::state)
//! padding = zero bytes up to the table's full bucket size
//! ```
//!
//! All integers little-endian. The signature is a hash of the rule's algorithm, quota and
//! table size: a bucket written under another configuration (or garbage) is treated as empty
//! and overwritten, so a changed rule never misreads old state.
//!
//! Every bucket is written at its full size ([`RuleTable::max_bucket_bytes`]), from the empty
//! buckets created at configure time on: a value never grows, so a store that allocates per
//! value (ngx_wasm_module's slab) uses all the memory it will ever use when the proxy starts,
//! and a store too small fails then rather than under load.
//!
//! # Memory ceiling
//!
//! A rule's shared data is [`RuleTable::max_store_bytes`]: `buckets ×` (longest key name +
//! [`RuleTable::max_bucket_bytes`]), all of it written when the table is prepared.

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
pub const BUCKET_VERSION: u8 = 2;

/// The namespace of tables built with [`RuleTable::new`] (and of a [`Limiter`](crate::Limiter)
/// given no [`TableNames`]).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Digits of a table's tag in its key names.
const TAG_DIGITS: usize = 8;

/// Bytes of an encoded bucket before its entries.
const BUCKET_HEADER_BYTES: u64 = 1 + 8 + 1;
/// Bytes of an entry before its state.
const ENTRY_HEADER_BYTES: u64 = 8 + 4;

/// One rule's table: its size, its signature and the names of its store keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleTable<'a> {
    namespace: &'a str,
    rule: &'a str,
    limit: Limit,
    buckets: u32,
    signature: u64,
    tag: u32,
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
    /// The table of rule `rule` holding up to `max_keys` keys (at least one bucket), in
    /// [`DEFAULT_NAMESPACE`] with no salt.
    pub fn new(rule: &'a str, limit: Limit, max_keys: u32) -> RuleTable<'a> {
        RuleTable::in_namespace(DEFAULT_NAMESPACE, rule, limit, max_keys, 0)
    }

    /// The table of rule `rule` in `namespace`, its tag salted with `salt` (see
    /// [`TableNames::separate_crc32`]; 0 unless its names collided).
    pub fn in_namespace(
        namespace: &'a str,
        rule: &'a str,
        limit: Limit,
        max_keys: u32,
        salt: u32,
    ) -> RuleTable<'a> {
        let buckets = bucket_count(max_keys);
        let signature = signature(&limit, buckets);
        RuleTable {
            namespace,
            rule,
            limit,
            buckets,
            signature,
            tag: tag(signature, salt),
        }
    }

    /// The namespace the table's keys are in.
    pub fn namespace(&self) -> &'a str {
        self.namespace
    }

    /// The hash of the signature and salt that names this table among the tables of its rule.
    pub fn tag(&self) -> u32 {
        self.tag
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
        place_after(self.placement_prefix(seed), self.buckets, key)
    }

    /// The placement hash after the rule's part, the same for every key of the table: the
    /// limiter keeps it per rule, so a request hashes only its key.
    pub(crate) fn placement_prefix(&self, seed: &Seed) -> SipHasher13 {
        let mut hasher = SipHasher13::new_with_keys(seed.k0, seed.k1);
        hasher.write(&(self.rule.len() as u64).to_le_bytes());
        hasher.write(self.rule.as_bytes());
        hasher
    }

    /// Writes the store key of `bucket` (`sluice/<namespace>/<rule>/<tag>/<bucket>`) into
    /// `out`, replacing its contents.
    pub fn write_bucket_key(&self, bucket: u32, out: &mut String) {
        out.clear();
        self.write_key_prefix(out);
        push_decimal(out, u64::from(bucket));
    }

    /// Appends `sluice/<namespace>/<rule>/<tag>/`, the part of the store key shared by every
    /// bucket.
    pub(crate) fn write_key_prefix(&self, out: &mut String) {
        out.push_str(ZONE);
        out.push('/');
        out.push_str(self.namespace);
        out.push('/');
        out.push_str(self.rule);
        out.push('/');
        push_hex(out, self.tag);
        out.push('/');
    }

    /// The length of [`RuleTable::write_key_prefix`]'s output.
    fn key_prefix_len(&self) -> usize {
        ZONE.len() + 1 + self.namespace.len() + 1 + self.rule.len() + 1 + TAG_DIGITS + 1
    }

    /// The store key of `bucket`.
    pub fn bucket_key(&self, bucket: u32) -> String {
        let mut key = String::new();
        self.write_bucket_key(bucket, &mut key);
        key
    }

    /// A bucket with this table's signature and no entries, encoded at full size.
    pub fn empty_bucket(&self) -> Bucket {
        let mut bucket = Bucket::new(self.signature);
        bucket.padded_len = usize::try_from(self.max_bucket_bytes()).unwrap_or(usize::MAX);
        bucket
    }

    /// The largest encoded bucket of this rule: every way holding the largest state.
    /// Every bucket is written at this size (see the module docs).
    pub fn max_bucket_bytes(&self) -> u64 {
        full_bucket_bytes(&self.limit)
    }

    /// The length of the longest key name of the table (the last bucket's).
    pub fn max_key_bytes(&self) -> u64 {
        let last = self.buckets.saturating_sub(1);
        let digits = last.checked_ilog10().unwrap_or(0) as u64 + 1;
        self.key_prefix_len() as u64 + digits
    }

    /// The most store bytes (key names plus values) the rule can ever occupy.
    pub fn max_store_bytes(&self) -> u64 {
        u64::from(self.buckets)
            .saturating_mul(self.max_key_bytes().saturating_add(self.max_bucket_bytes()))
    }
}

/// Buckets of a table of `max_keys` keys: `⌈max_keys / WAYS⌉`, at least one.
fn bucket_count(max_keys: u32) -> u32 {
    max_keys.div_ceil(WAYS as u32).max(1)
}

/// The size every bucket of a table with `limit` is written at: every way holding the
/// largest state.
fn full_bucket_bytes(limit: &Limit) -> u64 {
    let entry = ENTRY_HEADER_BYTES.saturating_add(limit.max_state_bytes());
    BUCKET_HEADER_BYTES.saturating_add(entry.saturating_mul(WAYS as u64))
}

/// What a state has spent, to choose among entries that become idle at the same time.
fn spent(state: &State) -> u64 {
    match state {
        State::Gcra { tat } => *tat,
        State::FixedWindow { count, .. } => *count,
        State::SlidingWindow {
            previous, current, ..
        } => previous.saturating_add(*current),
        State::SlidingLog { log } => log.units(),
        State::Concurrency { taken, .. } => taken
            .iter()
            .fold(0u64, |sum, n| sum.saturating_add(u64::from(*n))),
    }
}

/// Appends `n` as [`TAG_DIGITS`] lowercase hex digits.
fn push_hex(out: &mut String, n: u32) {
    for shift in (0..TAG_DIGITS as u32).rev() {
        let digit = (n >> (shift * 4)) & 0xf;
        out.push(char::from_digit(digit, 16).unwrap_or('0'));
    }
}

fn tag(signature: u64, salt: u32) -> u32 {
    let mut hasher = SipHasher13::new_with_keys(0x736c_7569_6365_2d74, 0x6162_6c65_2d74_6167);
    hasher.write(&signature.to_le_bytes());
    hasher.write(&salt.to_le_bytes());
    hasher.finish() as u32
}

/// Whether every byte is zero. Every bucket is stored at its full size, so each read checks
/// most of a bucket's bytes here: eight at a time.
fn all_zero(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let ored = words.by_ref().fold(0u64, |ored, word| {
        ored | u64::from_le_bytes(word.try_into().unwrap_or_default())
    });
    ored == 0 && words.remainder().iter().all(|&b| b == 0)
}

/// Where `key` lives in a table of `buckets` buckets, from the table's
/// [`RuleTable::placement_prefix`].
pub(crate) fn place_after(mut hasher: SipHasher13, buckets: u32, key: &[u8]) -> Placement {
    hasher.write(key);
    let hash = hasher.finish();
    let bucket = ((u128::from(hash) * u128::from(buckets)) >> 64) as u32;
    Placement {
        bucket,
        fingerprint: hash.max(1),
    }
}

/// Appends `n` in decimal. Bucket keys and rate-limit headers are built on every request:
/// this avoids `core::fmt`, which costs several times more than the digits.
pub fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
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
        Algorithm::Concurrency => 5,
    }
}

/// The names of one configuration's tables: their namespace, and the salts that keep their
/// key names apart by CRC32 (see [`TableNames::separate_crc32`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    namespace: String,
    /// `(rule, signature, salt)` of every table whose salt is not 0.
    salts: Vec<(String, u64, u32)>,
}

/// A table of a configuration, as [`TableNames::separate_crc32`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec<'a> {
    /// The rule's name.
    pub rule: &'a str,
    /// The rule's algorithm and quota.
    pub limit: Limit,
    /// The rule's `max_keys`.
    pub max_keys: u32,
}

/// The key names of a configuration kept colliding by CRC32 after every salt tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crc32CollisionError {
    /// Salting rounds tried.
    pub rounds: u32,
}

impl core::fmt::Display for Crc32CollisionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the shared-data key names still collide by CRC32 after {} renamings; \
             lower max_keys",
            self.rounds
        )
    }
}

/// Renaming rounds [`TableNames::separate_crc32`] tries. Each round renames only the tables
/// that still collide; with 2³² CRC32 values a second collision of one table is already rare.
const MAX_SALT_ROUNDS: u32 = 32;

impl TableNames {
    /// The names of tables in `namespace`, none salted yet.
    pub fn new(namespace: impl Into<String>) -> TableNames {
        TableNames {
            namespace: namespace.into(),
            salts: Vec::new(),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The table of `rule` with `limit` and `max_keys` in this namespace.
    pub fn table<'a>(&'a self, rule: &'a str, limit: Limit, max_keys: u32) -> RuleTable<'a> {
        let signature = signature(&limit, bucket_count(max_keys));
        let salt = self
            .salts
            .iter()
            .find(|(r, s, _)| r == rule && *s == signature)
            .map_or(0, |&(_, _, salt)| salt);
        RuleTable::in_namespace(&self.namespace, rule, limit, max_keys, salt)
    }

    /// The store key of the namespace's hash seed: `sluice/<namespace>/seed`.
    pub fn seed_key(&self) -> String {
        let mut key = String::with_capacity(ZONE.len() + self.namespace.len() + 6);
        key.push_str(ZONE);
        key.push('/');
        key.push_str(&self.namespace);
        key.push_str("/seed");
        key
    }

    /// Makes the CRC32s of all key names of `tables` and of the seed key distinct, as
    /// ngx_wasm_module needs (it finds a key by its CRC32 alone, so two names with one CRC32
    /// would be one entry). Where names collide, the table later in `tables` (or the table
    /// itself, if two of its own names collide) gets the next salt, which changes its tag and
    /// so every one of its names; this repeats until nothing collides. Deterministic: every
    /// VM given the same configuration picks the same names. Answers how many tables were
    /// renamed.
    pub fn separate_crc32(&mut self, tables: &[TableSpec<'_>]) -> Result<u32, Crc32CollisionError> {
        let mut renamed: Vec<usize> = Vec::new();
        let mut key = String::new();
        for _ in 0..MAX_SALT_ROUNDS {
            // (crc, owner): owner 0 is the seed key, i + 1 is tables[i].
            let mut crcs: Vec<(u32, u32)> = Vec::new();
            crcs.push((crc32fast::hash(self.seed_key().as_bytes()), 0));
            for (index, spec) in tables.iter().enumerate() {
                let owner = u32::try_from(index + 1).unwrap_or(u32::MAX);
                let table = self.table(spec.rule, spec.limit, spec.max_keys);
                for bucket in 0..table.bucket_count() {
                    table.write_bucket_key(bucket, &mut key);
                    crcs.push((crc32fast::hash(key.as_bytes()), owner));
                }
            }
            crcs.sort_unstable();
            // In each run of equal CRC32s, the first name (lowest owner) keeps its name and
            // the owners of all the others are renamed.
            let mut to_salt: Vec<usize> = crcs
                .windows(2)
                .filter_map(|pair| match pair {
                    [(a, _), (b, owner)] if a == b && *owner > 0 => Some(*owner as usize - 1),
                    _ => None,
                })
                .collect();
            if to_salt.is_empty() {
                return Ok(renamed.len() as u32);
            }
            to_salt.sort_unstable();
            to_salt.dedup();
            for index in to_salt {
                let Some(spec) = tables.get(index) else {
                    continue;
                };
                let signature = signature(&spec.limit, bucket_count(spec.max_keys));
                match self
                    .salts
                    .iter_mut()
                    .find(|(r, s, _)| r == spec.rule && *s == signature)
                {
                    Some((_, _, salt)) => *salt += 1,
                    None => self.salts.push((String::from(spec.rule), signature, 1)),
                }
                if !renamed.contains(&index) {
                    renamed.push(index);
                }
            }
        }
        Err(Crc32CollisionError {
            rounds: MAX_SALT_ROUNDS,
        })
    }
}

impl Default for TableNames {
    fn default() -> TableNames {
        TableNames::new(DEFAULT_NAMESPACE)
    }
}

/// The decoded contents of one bucket. Two buckets are equal if their signatures and entries
/// are: the padding is not contents.
#[derive(Debug, Clone)]
pub struct Bucket {
    signature: u64,
    entries: Vec<BucketEntry>,
    /// The length [`Bucket::encode_into`] pads to: the length it was read at, or its table's
    /// full bucket size once [`Bucket::put`] has run, so a rewrite never changes the size.
    padded_len: usize,
}

impl PartialEq for Bucket {
    fn eq(&self, other: &Bucket) -> bool {
        self.signature == other.signature && self.entries == other.entries
    }
}

impl Eq for Bucket {}

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
    /// Non-zero bytes are left after the last entry (how many bytes follow it).
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
                write!(
                    f,
                    "the stored bucket has {n} trailing bytes that are not zero padding"
                )
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
            padded_len: 0,
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
        self.padded_len = 0;
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
        let full = usize::try_from(full_bucket_bytes(limit)).unwrap_or(usize::MAX);
        self.padded_len = self.padded_len.max(full);
        if let Some(existing) = self.find_mut(fingerprint) {
            *existing = state;
            return Put::Updated;
        }
        let entry = BucketEntry { fingerprint, state };
        if self.entries.len() < WAYS {
            self.entries.push(entry);
            return Put::Inserted;
        }
        // Soonest idle first; among equals (window algorithms: every key counted in the same
        // window recovers at the same time), the one that spent least, so a heavy client is
        // never the one evicted by keys that sent a request each.
        let victim = self
            .entries
            .iter_mut()
            .min_by_key(|e| (limit.idle_at(&e.state), spent(&e.state)));
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

    /// Appends the encoding (see the module docs) to `out`, padded with zeros to the length
    /// the bucket was read at or, once [`Bucket::put`] has run, its table's full size.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(BUCKET_VERSION);
        encoding::put_u64_le(out, self.signature);
        out.push(self.entries.len().min(WAYS) as u8);
        for entry in self.entries.iter().take(WAYS) {
            encoding::put_u64_le(out, entry.fingerprint);
            let len = entry.state.encoded_len();
            encoding::put_u32_le(out, u32::try_from(len).unwrap_or(u32::MAX));
            entry.state.encode_into(out);
        }
        let written = out.len() - start;
        if written < self.padded_len {
            out.resize(start + self.padded_len, 0);
        }
    }

    /// The number of bytes [`Bucket::encode_into`] appends.
    pub fn encoded_len(&self) -> usize {
        let content = self
            .entries
            .iter()
            .take(WAYS)
            .map(|e| ENTRY_HEADER_BYTES as usize + e.state.encoded_len())
            .sum::<usize>()
            + BUCKET_HEADER_BYTES as usize;
        content.max(self.padded_len)
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
            self.padded_len = 0;
        } else {
            self.padded_len = bytes.len();
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
        let rest = reader.remaining();
        let padding = bytes.get(bytes.len() - rest..).unwrap_or_default();
        if all_zero(padding) {
            Ok(())
        } else {
            Err(BucketError::TrailingBytes(rest))
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
    fn bucket_keys_are_zone_namespace_rule_tag_and_decimal_bucket() {
        let table = RuleTable::new("per-client", gcra(1), 1 << 20);
        let tag = alloc::format!("{:08x}", table.tag());
        for bucket in [0, 7, 10, 99, 100, 65_535, u32::MAX] {
            assert_eq!(
                table.bucket_key(bucket),
                alloc::format!("sluice/default/per-client/{tag}/{bucket}")
            );
        }
        let named = RuleTable::in_namespace("team-a", "per-client", gcra(1), 16, 0);
        assert!(named.bucket_key(3).starts_with("sluice/team-a/per-client/"));
        assert_eq!(named.bucket_key(3).len() as u64, named.max_key_bytes());
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
    fn a_rule_with_another_limit_or_salt_has_other_key_names() {
        let names = TableNames::new("shared");
        let five = names.table("per-client", gcra(5), 64).bucket_key(0);
        let twelve = names.table("per-client", gcra(12), 64).bucket_key(0);
        assert_ne!(five, twelve, "same rule name, different limit: two tables");
        assert_eq!(five, names.table("per-client", gcra(5), 64).bucket_key(0));
        let salted = RuleTable::in_namespace("shared", "per-client", gcra(5), 64, 1);
        assert_ne!(five, salted.bucket_key(0));
        assert_ne!(
            five,
            TableNames::new("other")
                .table("per-client", gcra(5), 64)
                .bucket_key(0)
        );
        assert_eq!(names.seed_key(), "sluice/shared/seed");
    }

    /// Two rule names of equal length with the same CRC32 (found by a birthday search over
    /// random names). CRC32 is linear, so any two names that differ only by swapping one of
    /// these for the other collide too: every bucket of one rule's table collides with the
    /// bucket of the same index of the other's, when both have the same tag.
    pub(crate) const CRC32_TWINS: [&str; 2] = ["r-oijkgjm9", "r-o3a59da7"];

    /// The CRC32 values shared by two or more key names of `specs` (and the seed key).
    fn crc32_duplicates(names: &TableNames, specs: &[TableSpec<'_>]) -> Vec<u32> {
        let mut crcs = alloc::vec![crc32fast::hash(names.seed_key().as_bytes())];
        for spec in specs {
            let table = names.table(spec.rule, spec.limit, spec.max_keys);
            crcs.extend(
                (0..table.bucket_count()).map(|b| crc32fast::hash(table.bucket_key(b).as_bytes())),
            );
        }
        crcs.sort_unstable();
        let mut dups: Vec<u32> = crcs
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        dups.dedup();
        dups
    }

    fn twin_specs(limit: Limit) -> [TableSpec<'static>; 2] {
        CRC32_TWINS.map(|rule| TableSpec {
            rule,
            limit,
            max_keys: 1024,
        })
    }

    #[test]
    fn the_twin_names_collide_in_every_bucket_unless_renamed() {
        assert_eq!(
            crc32fast::hash(CRC32_TWINS[0].as_bytes()),
            crc32fast::hash(CRC32_TWINS[1].as_bytes())
        );
        let specs = twin_specs(gcra(5));
        let mut names = TableNames::new("team-a");
        assert_eq!(
            crc32_duplicates(&names, &specs).len(),
            256,
            "all 256 buckets"
        );
        assert_eq!(names.separate_crc32(&specs), Ok(1));
        assert!(crc32_duplicates(&names, &specs).is_empty());
        // The first rule keeps its name, the second is renamed.
        let plain = TableNames::new("team-a");
        let first = |n: &TableNames| n.table(specs[0].rule, specs[0].limit, 1024).tag();
        let second = |n: &TableNames| n.table(specs[1].rule, specs[1].limit, 1024).tag();
        assert_eq!(first(&names), first(&plain));
        assert_ne!(second(&names), second(&plain));
        // Deterministic, and stable once separated.
        let mut again = TableNames::new("team-a");
        again.separate_crc32(&specs).unwrap();
        assert_eq!(again, names, "every VM picks the same names");
        assert_eq!(names.clone().separate_crc32(&specs), Ok(0));
    }

    #[test]
    fn twin_names_with_different_limits_have_different_tags_so_do_not_collide() {
        let specs = [
            TableSpec {
                rule: CRC32_TWINS[0],
                limit: gcra(5),
                max_keys: 1024,
            },
            TableSpec {
                rule: CRC32_TWINS[1],
                limit: gcra(12),
                max_keys: 1024,
            },
        ];
        let mut names = TableNames::new("team-a");
        assert!(crc32_duplicates(&names, &specs).is_empty());
        assert_eq!(names.separate_crc32(&specs), Ok(0));
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
        assert_eq!(bytes.len() as u64, full_bucket_bytes(&limit), "padded");
        let decoded = Bucket::decode(&bytes).unwrap();
        assert_eq!(decoded.entries(), bucket.entries());
        assert_eq!(decoded.signature(), bucket.signature());

        assert_eq!(Bucket::decode(&[]), Err(BucketError::Empty));
        assert_eq!(Bucket::decode(&[9]), Err(BucketError::UnknownVersion(9)));
        let mut too_many = alloc::vec![BUCKET_VERSION, 0, 0, 0, 0, 0, 0, 0, 0];
        too_many.push(5);
        assert_eq!(
            Bucket::decode(&too_many),
            Err(BucketError::TooManyEntries(5))
        );
        let content = 10
            + 2 * 12
            + State::Gcra { tat: 5 }.encoded_len()
            + State::FixedWindow {
                window_start: 0,
                count: 1,
            }
            .encoded_len();
        for cut in 1..content {
            assert!(Bucket::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(7);
        assert_eq!(
            Bucket::decode(&trailing),
            Err(BucketError::TrailingBytes(bytes.len() + 1 - content))
        );
        // A non-zero byte anywhere in the padding, in its whole words or after them.
        for at in content..bytes.len() {
            let mut dirty = bytes.clone();
            dirty[at] = 0x80;
            assert_eq!(
                Bucket::decode(&dirty),
                Err(BucketError::TrailingBytes(bytes.len() - content)),
                "non-zero padding byte at {at}"
            );
        }
        // Second entry given the first one's fingerprint.
        let mut duplicate = bytes.clone();
        let second = 10 + 12 + 10;
        duplicate[second] = 9;
        assert_eq!(Bucket::decode(&duplicate), Err(BucketError::BadFingerprint));
    }

    #[test]
    fn every_bucket_is_written_at_full_size_from_the_empty_one_on() {
        let limit = Limit::new(Algorithm::SlidingWindow, Quota::new(10, 1_000, 10).unwrap());
        let table = RuleTable::new("rule", limit, 16);
        let full = table.max_bucket_bytes() as usize;
        let mut encoded = Vec::new();
        table.empty_bucket().encode_into(&mut encoded);
        assert_eq!(encoded.len(), full, "the empty bucket prepared at start-up");
        let mut bucket = Bucket::decode(&encoded).unwrap();
        for fingerprint in 1..=(WAYS as u64 + 2) {
            let state = State::SlidingWindow {
                window_start: fingerprint,
                previous: u64::MAX,
                current: u64::MAX,
            };
            bucket.put(fingerprint, state, &limit, 0);
            encoded.clear();
            bucket.encode_into(&mut encoded);
            assert_eq!(encoded.len(), full, "after {fingerprint} puts");
            bucket = Bucket::decode(&encoded).unwrap();
        }
        // A missing bucket (reset) is written at full size once a state is put in it.
        bucket.reset(table.signature());
        bucket.put(1, State::Gcra { tat: 1 }, &limit, 0);
        encoded.clear();
        bucket.encode_into(&mut encoded);
        assert_eq!(encoded.len(), full);
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
        // 4 buckets of keys "sluice/default/rule/<8 hex>/N" (30 bytes).
        assert_eq!(table.max_key_bytes(), 30);
        assert_eq!(table.max_store_bytes(), 4 * (30 + table.max_bucket_bytes()));
    }
}
