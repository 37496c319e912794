//! Several rules, all of which must pass: check every rule's counter first, then commit, over a
//! `SlotStore` with bounded CAS retries.
//!
//! # All or nothing
//!
//! A request is checked against every rule that applies to it, and consumes nothing from any
//! rule unless it passes them all:
//!
//! 1. Read each rule's bucket (and its cas) and decide each rule. A bucket that is missing,
//!    unreadable or written under another rule configuration counts as empty.
//! 2. If an enforcing rule denies (or fails closed), the request is denied and nothing is
//!    written. A shadow rule that would deny reports [`Status::ShadowDenied`], lets the request
//!    through and counts nothing.
//! 3. Otherwise each allowing rule's bucket is written back with the cas that was read. If a
//!    write loses a race (CAS mismatch), the rules already written are refunded (each refund its
//!    own CAS loop on its bucket) and the whole check starts again from step 1.
//!
//! # Contention
//!
//! A lost race is proof that another writer changed the bucket since it was read: some other
//! request was counted (or refunded) there. So retries never spin without the system as a whole
//! making progress, and on a hot key they end one of two ways: the write goes through, or the
//! other writers spend what is left and the next read denies, which writes nothing. Retrying is
//! bounded all the same (at most `cas_retries + 1` commit attempts per request), because a
//! request must finish.
//!
//! When the retries run out, the rule that could not be written is read once more and decided
//! on that last state: if it denies, the request is denied like any other (nothing is written,
//! and what was written for the other rules is refunded). That denial is exact: it is what the
//! request would have met had it arrived a moment later. Only an allow that cannot be committed
//! takes the rule's failure mode: failing open, the request passes without counting for that
//! rule (at a moment when the rule still had room for it); failing closed, the request is
//! denied and what was written for the other rules is refunded. A store error (not a race)
//! gives the rule its failure mode at once. Refunds are best-effort: if a refund's own retries
//! run out or the store fails, the units stay spent, which errs on the side of limiting.

mod plan;
mod refund;
mod release;

use alloc::string::String;
use alloc::vec::Vec;
use siphasher::sip::SipHasher13;

pub use plan::FAILURE_RETRY_AFTER;
pub use release::Released;

use crate::algorithm::Limit;
use crate::decision::Decision;
use crate::mode::{FailureMode, Mode};
use crate::state::State;
use crate::store::{SetError, SlotStore, StoreError};
use crate::table::{Bucket, TableNames};
use crate::time::Nanos;

/// The key of the keyed hash that places keys in the table. Random per deployment, so that
/// nobody who knows the code can aim many keys at one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    /// First half of the SipHash key.
    pub k0: u64,
    /// Second half of the SipHash key.
    pub k1: u64,
}

/// One rule to check for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check<'a> {
    /// The rule's name; it namespaces the rule's table in the store.
    pub rule: &'a str,
    /// The rule's algorithm and quota.
    pub limit: Limit,
    /// The most distinct keys the rule's table holds (its memory ceiling).
    pub max_keys: u32,
    /// The request's key for this rule, as built from the rule's key parts.
    pub key: Vec<u8>,
    /// Units this request spends.
    pub cost: u64,
    /// Whether the rule denies or only reports.
    pub mode: Mode,
    /// What the rule decides when its counter cannot be read or written.
    pub failure_mode: FailureMode,
}

/// What happened to one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The rule allows the request (and counts it if the request passes).
    Allowed,
    /// An enforcing rule denies the request.
    Denied,
    /// A shadow (or soft) rule that would have denied (or, with a store error, would have
    /// failed closed): the request passes, and the rule counts nothing.
    ShadowDenied,
    /// The store failed and the rule's failure mode is open: the request passes.
    FailedOpen,
    /// The store failed and the rule's failure mode is closed: the request is denied.
    FailedClosed,
}

/// The result of one rule for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleOutcome {
    /// What the rule did.
    pub status: Status,
    /// The rule's decision, usable for headers whatever the status: a denied or failed rule
    /// has `remaining` 0 and a `retry_after`; a rule that failed closed says to retry after
    /// [`FAILURE_RETRY_AFTER`].
    pub decision: Decision,
    /// CAS conflicts met before the rule's counter was committed (or gave up), including
    /// conflicts while refunding it.
    pub cas_retries: u32,
    /// Set when the store failed for this rule ([`StoreError::Contention`] when the CAS
    /// retries ran out).
    pub store_error: Option<StoreError>,
}

/// The result of every rule for one request, in the order of the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every enforcing rule allowed the request (shadow rules never deny).
    pub allowed: bool,
    /// One outcome per check, in the order of the checks.
    pub outcomes: Vec<RuleOutcome>,
}

impl Verdict {
    /// How long the request must be held before it goes on: the longest
    /// [`Decision::delay`] of its allowing rules (all of them are committed now, so it may
    /// go when the last one's slot comes). 0 when denied or when no rule holds it.
    ///
    /// A held request that is given up before it goes on (its client left, or there is no
    /// room to hold it) is undone with [`Limiter::refund`] like any other commit.
    pub fn delay(&self) -> Nanos {
        if !self.allowed {
            return 0;
        }
        self.outcomes
            .iter()
            .filter(|o| o.status == Status::Allowed)
            .map(|o| o.decision.delay)
            .max()
            .unwrap_or(0)
    }
}

/// Checks requests against their rules over a [`SlotStore`]. Holds buffers reused from one
/// request to the next, so checking takes `&mut self`; one limiter per VM (or thread).
///
/// ```
/// use sluice_core::memory_store::{MemoryStore, Semantics};
/// use sluice_core::{Algorithm, Check, FailureMode, Limit, Limiter, Mode, Quota, Seed};
///
/// let limit = Limit::new(Algorithm::FixedWindow, Quota::new(1, 60_000_000_000, 1).unwrap());
/// let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 8);
/// let mut store = MemoryStore::new(Semantics::Envoy);
/// limiter.prepare("per-client", &limit, 1024, &mut store).unwrap();
/// let checks = [Check {
///     rule: "per-client",
///     limit,
///     max_keys: 1024,
///     key: b"203.0.113.7".to_vec(),
///     cost: 1,
///     mode: Mode::Enforce,
///     failure_mode: FailureMode::Open,
/// }];
/// assert!(limiter.check(&checks, 0, &mut store).allowed);
/// assert!(!limiter.check(&checks, 1, &mut store).allowed);
/// ```
#[derive(Debug, Clone)]
pub struct Limiter {
    seed: Seed,
    cas_retries: u32,
    names: TableNames,
    scratch: Scratch,
}

/// Per-request working memory, kept between requests so the hot path does not allocate once
/// warmed up (except for sliding-log states; [`Limiter::check_into`] reuses the caller's
/// verdict).
#[derive(Debug, Clone, Default)]
struct Scratch {
    rules: Vec<RuleSlot>,
    /// Indices of the rules written in the current attempt.
    committed: Vec<usize>,
    encoded: Vec<u8>,
    /// The bucket of the slot being released, apart from the checks' so that releases do
    /// not push a check position's tables out.
    release: RuleSlot,
}

/// One rule's bucket as read in the current attempt.
#[derive(Debug, Clone)]
struct RuleSlot {
    key: String,
    /// The tables this slot has seen lately, each worked out once: the same rule comes back
    /// in the same slot request after request, and a tiered rule alternates between a few
    /// tables (one per tier), so a table is not worked out again per request.
    tables: Vec<KnownTable>,
    /// The entry of `tables` to replace when a new table comes and `tables` is full.
    replace_next: usize,
    /// The entry of `tables` whose key prefix `key` holds.
    key_table: Option<usize>,
    fingerprint: u64,
    signature: u64,
    raw: Vec<u8>,
    bucket: Bucket,
    /// The cas read, 0 if the bucket was missing.
    cas: u32,
    read: Result<(), StoreError>,
    /// The state to commit, if the rule allows the request and spends something.
    next: Option<State>,
    conflicts: u32,
}

/// How many tables a [`RuleSlot`] keeps worked out (a tiered rule's tiers, its overrides).
const KNOWN_TABLES: usize = 4;

/// What the per-request path needs of a rule's table, worked out when it is first seen.
#[derive(Debug, Clone)]
struct KnownTable {
    /// The rule, limit and table size it was worked out for.
    rule: String,
    limit: Limit,
    max_keys: u32,
    buckets: u32,
    signature: u64,
    /// The placement hash after the rule's part
    /// ([`crate::table::RuleTable::place`] hashes the rest per key).
    placement: SipHasher13,
    /// The store key of its buckets up to the bucket's number.
    key_prefix: String,
}

impl KnownTable {
    fn is_for(&self, check: &Check<'_>) -> bool {
        self.rule == check.rule && self.limit == check.limit && self.max_keys == check.max_keys
    }

    /// Works out `check`'s table into `self`, reusing its buffers.
    fn work_out(&mut self, check: &Check<'_>, seed: &Seed, names: &TableNames) {
        let table = names.table(check.rule, check.limit, check.max_keys);
        self.rule.clear();
        self.rule.push_str(check.rule);
        self.limit = check.limit;
        self.max_keys = check.max_keys;
        self.buckets = table.bucket_count();
        self.signature = table.signature();
        self.placement = table.placement_prefix(seed);
        self.key_prefix.clear();
        table.write_key_prefix(&mut self.key_prefix);
    }
}

impl Default for RuleSlot {
    fn default() -> RuleSlot {
        RuleSlot {
            key: String::new(),
            tables: Vec::new(),
            replace_next: 0,
            key_table: None,
            fingerprint: 0,
            signature: 0,
            raw: Vec::new(),
            bucket: Bucket::new(0),
            cas: 0,
            read: Ok(()),
            next: None,
            conflicts: 0,
        }
    }
}

impl RuleSlot {
    fn locate(&mut self, check: &Check<'_>, seed: &Seed, names: &TableNames) {
        let index = match self.tables.iter().position(|t| t.is_for(check)) {
            Some(index) => index,
            None if self.tables.len() < KNOWN_TABLES => {
                let mut known = KnownTable {
                    rule: String::new(),
                    limit: check.limit,
                    max_keys: 0,
                    buckets: 0,
                    signature: 0,
                    placement: SipHasher13::new(),
                    key_prefix: String::new(),
                };
                known.work_out(check, seed, names);
                self.tables.push(known);
                self.tables.len() - 1
            }
            None => {
                let index = self.replace_next % KNOWN_TABLES;
                self.replace_next = (index + 1) % KNOWN_TABLES;
                if let Some(known) = self.tables.get_mut(index) {
                    known.work_out(check, seed, names);
                }
                self.key_table = None;
                index
            }
        };
        self.conflicts = 0;
        self.next = None;
        if let Some(known) = self.tables.get(index) {
            self.signature = known.signature;
            // `key` still starts with the prefix when the last request used the same table
            // (an entry replaced in `tables` resets `key_table`).
            if self.key_table == Some(index) {
                self.key.truncate(known.key_prefix.len());
            } else {
                self.key.clear();
                self.key.push_str(&known.key_prefix);
                self.key_table = Some(index);
            }
            let placement = crate::table::place_after(known.placement, known.buckets, &check.key);
            crate::table::push_decimal(&mut self.key, u64::from(placement.bucket));
            self.fingerprint = placement.fingerprint;
        }
    }

    /// Reads the bucket; anything unreadable or from another configuration counts as empty.
    fn read<S: SlotStore>(&mut self, store: &mut S) {
        self.cas = 0;
        self.read = Ok(());
        match store.get(&self.key, &mut self.raw) {
            Err(error) => {
                self.read = Err(error);
                self.bucket.reset(self.signature);
            }
            Ok(None) => self.bucket.reset(self.signature),
            Ok(Some(cas)) => {
                self.cas = cas;
                let readable = self.bucket.decode_from(&self.raw).is_ok();
                if !readable || self.bucket.signature() != self.signature {
                    self.bucket.reset(self.signature);
                }
            }
        }
    }

    fn prior(&self) -> Result<Option<&State>, StoreError> {
        self.read.map(|()| self.bucket.find(self.fingerprint))
    }
}

/// How a commit attempt ended.
enum Commit {
    /// Every rule is written or has its failure outcome.
    Done,
    /// A race was lost with retries left: what was written is refunded; check again.
    Retry,
}

impl Limiter {
    /// A limiter placing keys with `seed` and retrying lost CAS races up to `cas_retries`
    /// times per request (so at most `cas_retries + 1` commit attempts).
    pub fn new(seed: Seed, cas_retries: u32) -> Limiter {
        Limiter {
            seed,
            cas_retries,
            names: TableNames::default(),
            scratch: Scratch::default(),
        }
    }

    /// The same limiter naming its tables with `names` (their namespace and CRC32 salts)
    /// instead of [`TableNames::default`].
    pub fn with_names(mut self, names: TableNames) -> Limiter {
        self.names = names;
        self.scratch = Scratch::default();
        self
    }

    /// How the limiter names its tables in the store.
    pub fn names(&self) -> &TableNames {
        &self.names
    }

    /// The placement seed.
    pub fn seed(&self) -> Seed {
        self.seed
    }

    /// CAS retries allowed per request.
    pub fn cas_retries(&self) -> u32 {
        self.cas_retries
    }

    /// Creates every missing bucket of a rule's table (each as an empty bucket at its full
    /// size, written with cas 0) and returns how many it created.
    ///
    /// Called when a VM is configured, so that Envoy's non-atomic create-if-absent (a `set` on a
    /// missing key succeeds whatever the cas) only matters while the proxy starts. Buckets
    /// found at request time to be missing (evicted by ngx_wasm_module, or a start-up race) are
    /// created then, with cas 0. Existing buckets, even unreadable ones, are left alone.
    pub fn prepare<S: SlotStore>(
        &self,
        rule: &str,
        limit: &Limit,
        max_keys: u32,
        store: &mut S,
    ) -> Result<u32, StoreError> {
        let table = self.names.table(rule, *limit, max_keys);
        let mut empty = Vec::new();
        table.empty_bucket().encode_into(&mut empty);
        let mut key = String::new();
        let mut value = Vec::new();
        let mut created = 0;
        for bucket in 0..table.bucket_count() {
            table.write_bucket_key(bucket, &mut key);
            if store.get(&key, &mut value)?.is_some() {
                continue;
            }
            match store.set(&key, &empty, 0) {
                Ok(()) => created += 1,
                // Another VM created it between our get and set.
                Err(SetError::CasMismatch) => {}
                Err(SetError::Store(error)) => return Err(error),
            }
        }
        Ok(created)
    }

    /// Checks a request against `checks` at `now`, committing its spend to `store` only if
    /// every enforcing rule allows it (see the module docs). `Verdict::outcomes[i]` is the
    /// outcome of `checks[i]`.
    ///
    /// Each check must be for a different rule, as a policy with unique rule names produces:
    /// two checks of one rule in one request would race each other for their bucket and end
    /// in their failure mode once the CAS retries run out.
    pub fn check<S: SlotStore>(
        &mut self,
        checks: &[Check<'_>],
        now: Nanos,
        store: &mut S,
    ) -> Verdict {
        let mut verdict = Verdict {
            allowed: true,
            outcomes: Vec::with_capacity(checks.len()),
        };
        self.check_into(checks, now, store, &mut verdict);
        verdict
    }

    /// [`Limiter::check`] into `verdict`, whose outcomes' buffer is reused (cleared first), so
    /// a caller that keeps one verdict from request to request allocates nothing once it has
    /// held as many outcomes as a request has checks.
    pub fn check_into<S: SlotStore>(
        &mut self,
        checks: &[Check<'_>],
        now: Nanos,
        store: &mut S,
        verdict: &mut Verdict,
    ) {
        let Limiter {
            seed,
            cas_retries,
            names,
            scratch,
        } = self;
        if scratch.rules.len() < checks.len() {
            scratch.rules.resize_with(checks.len(), RuleSlot::default);
        }
        for (check, slot) in checks.iter().zip(scratch.rules.iter_mut()) {
            slot.locate(check, seed, names);
        }
        let outcomes = &mut verdict.outcomes;
        let mut retries_left = *cas_retries;
        loop {
            outcomes.clear();
            for (check, slot) in checks.iter().zip(scratch.rules.iter_mut()) {
                slot.read(store);
                let (outcome, next) = plan::decide_rule(check, slot.prior(), now);
                slot.next = next;
                outcomes.push(outcome);
            }
            // A denial writes nothing; otherwise commit, and after a lost race start over.
            if plan::request_allowed(outcomes)
                && let Commit::Retry = commit(
                    checks,
                    now,
                    store,
                    scratch,
                    outcomes,
                    &mut retries_left,
                    *cas_retries,
                )
            {
                continue;
            }
            for (outcome, slot) in outcomes.iter_mut().zip(scratch.rules.iter()) {
                outcome.cas_retries = slot.conflicts;
            }
            verdict.allowed = plan::request_allowed(outcomes);
            return;
        }
    }

    /// Check-then-commit over states held in memory by the caller, with the same semantics as
    /// [`Limiter::check`] but no store, no table and no CAS (single-threaded, e.g. a Durable
    /// Object owning its keys). `states[i]` is the state of `checks[i]`'s key (`None`: no
    /// state); the states are updated only if the request is allowed. A check without a
    /// state slot (`states` shorter than `checks`) fails with [`StoreError::Unavailable`].
    pub fn decide_all(checks: &[Check<'_>], states: &mut [Option<State>], now: Nanos) -> Verdict {
        let mut outcomes = Vec::with_capacity(checks.len());
        let mut commits = Vec::with_capacity(checks.len());
        for (index, check) in checks.iter().enumerate() {
            let prior = match states.get(index) {
                Some(state) => Ok(state.as_ref()),
                None => Err(StoreError::Unavailable),
            };
            let (outcome, next) = plan::decide_rule(check, prior, now);
            outcomes.push(outcome);
            commits.push(next);
        }
        let allowed = plan::request_allowed(&outcomes);
        if allowed {
            for (slot, next) in states.iter_mut().zip(commits) {
                if let Some(next) = next {
                    *slot = Some(next);
                }
            }
        }
        Verdict { allowed, outcomes }
    }
}

/// Decides one rule from its stored state, or from the error met reading it, for stores that
/// do their own compare-and-set (a remote store deciding from states it read or cached): the
/// same per-rule step [`Limiter::check`] and [`Limiter::decide_all`] take. Returns the outcome
/// and, if the rule allows the request and spends something, the state to commit. Combine the
/// outcomes with [`request_allowed`]; commit only if it says so.
pub fn decide_rule(
    check: &Check<'_>,
    prior: Result<Option<&State>, StoreError>,
    now: Nanos,
) -> (RuleOutcome, Option<State>) {
    plan::decide_rule(check, prior, now)
}

/// The outcome of a rule whose counter could not be read or written (`error`), by its failure
/// mode, as [`Limiter::check`] gives it. `known` is the decision made before the failure (a
/// commit that failed), if any; `cas_retries` the races lost on the rule.
pub fn failure_outcome(
    check: &Check<'_>,
    known: Option<Decision>,
    error: StoreError,
    cas_retries: u32,
) -> RuleOutcome {
    plan::failed(check, known, error, cas_retries)
}

/// Whether a request with these outcomes passes: no enforcing rule denied it or failed closed.
pub fn request_allowed(outcomes: &[RuleOutcome]) -> bool {
    plan::request_allowed(outcomes)
}

/// Writes every rule that has a state to commit, in order. See the module docs for what a
/// lost race or a store error does.
fn commit<S: SlotStore>(
    checks: &[Check<'_>],
    now: Nanos,
    store: &mut S,
    scratch: &mut Scratch,
    outcomes: &mut [RuleOutcome],
    retries_left: &mut u32,
    cas_retries: u32,
) -> Commit {
    scratch.committed.clear();
    for (index, check) in checks.iter().enumerate() {
        let Some(slot) = scratch.rules.get_mut(index) else {
            break;
        };
        let Some(next) = slot.next.take() else {
            continue;
        };
        slot.bucket.put(slot.fingerprint, next, &check.limit, now);
        scratch.encoded.clear();
        slot.bucket.encode_into(&mut scratch.encoded);
        let error = match store.set(&slot.key, &scratch.encoded, slot.cas) {
            Ok(()) => {
                scratch.committed.push(index);
                continue;
            }
            Err(SetError::CasMismatch) => {
                slot.conflicts = slot.conflicts.saturating_add(1);
                if *retries_left > 0 {
                    *retries_left -= 1;
                    refund_committed(checks, now, store, scratch, cas_retries);
                    return Commit::Retry;
                }
                // Out of retries: decide on the bucket as the winner left it.
                slot.read(store);
                let (last, _) = plan::decide_rule(check, slot.prior(), now);
                let Some(outcome) = outcomes.get_mut(index) else {
                    break;
                };
                match last.status {
                    Status::Allowed => {
                        *outcome = plan::failed(
                            check,
                            Some(last.decision),
                            StoreError::Contention,
                            slot.conflicts,
                        );
                    }
                    // A read error already carries the rule's failure mode.
                    _ => *outcome = last,
                }
                if !plan::request_allowed(core::slice::from_ref(outcome)) {
                    refund_committed(checks, now, store, scratch, cas_retries);
                    return Commit::Done;
                }
                continue;
            }
            Err(SetError::Store(error)) => error,
        };
        let Some(outcome) = outcomes.get_mut(index) else {
            break;
        };
        *outcome = plan::failed(check, Some(outcome.decision), error, slot.conflicts);
        if outcome.status == Status::FailedClosed {
            refund_committed(checks, now, store, scratch, cas_retries);
            return Commit::Done;
        }
    }
    Commit::Done
}

/// Takes back what the current attempt wrote.
fn refund_committed<S: SlotStore>(
    checks: &[Check<'_>],
    now: Nanos,
    store: &mut S,
    scratch: &mut Scratch,
    cas_retries: u32,
) {
    for &index in &scratch.committed {
        if let (Some(check), Some(slot)) = (checks.get(index), scratch.rules.get_mut(index)) {
            refund(check, slot, now, store, &mut scratch.encoded, cas_retries);
        }
    }
    scratch.committed.clear();
}

/// Undoes one rule's committed spend with its own CAS loop (up to `cas_retries + 1` tries).
/// Gives up, leaving the units spent, if the bucket is gone, no longer holds the key, or the
/// store fails.
fn refund<S: SlotStore>(
    check: &Check<'_>,
    slot: &mut RuleSlot,
    committed_at: Nanos,
    store: &mut S,
    encoded: &mut Vec<u8>,
    cas_retries: u32,
) {
    for _ in 0..=cas_retries {
        let Ok(Some(cas)) = store.get(&slot.key, &mut slot.raw) else {
            return;
        };
        if slot.bucket.decode_from(&slot.raw).is_err() || slot.bucket.signature() != slot.signature
        {
            return;
        }
        let Some(state) = slot.bucket.find_mut(slot.fingerprint) else {
            return;
        };
        let refunded = check.limit.refund(state, check.cost, committed_at);
        *state = refunded;
        encoded.clear();
        slot.bucket.encode_into(encoded);
        match store.set(&slot.key, encoded, cas) {
            Err(SetError::CasMismatch) => slot.conflicts = slot.conflicts.saturating_add(1),
            Ok(()) | Err(SetError::Store(_)) => return,
        }
    }
}
