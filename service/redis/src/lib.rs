//! sluice's global decision store: the core's algorithms over states kept in Redis (standalone,
//! or Redis Cluster; Valkey alike), so every replica of the rate-limit service counts against
//! the same states.
//!
//! The decision logic stays in `sluice-core`: the store reads states, asks the core, and
//! commits what the core says with an optimistic compare-and-set, in one round trip per
//! decision in the common case.
//!
//! # Layout
//!
//! - Key: `sluice:v1:{<domain>:<key id>}:<rule>` ([`keys`]): every rule on the same key bytes
//!   shares a hash slot.
//! - Value: `version | limit signature | core state` ([`value`]); anything that does not decode
//!   under the rule's current limit is no state, and is overwritten.
//! - Expiry: every write sets `PX` to the time until the state has fully recovered
//!   ([`sluice_core::Limit::idle_at`]), so Redis holds only keys that still matter.
//!
//! # One decision
//!
//! 1. Take this process's turn on the decision's keys ([`locks`](crate) are striped async
//!    mutexes; an optimisation only).
//! 2. For each key, the value expected in Redis: the last value this process saw or wrote
//!    there (a bounded LRU cache), or "absent" for a key not remembered or whose remembered
//!    state has recovered (Redis expired it).
//! 3. The core decides every rule from the decoded expected states (`decide_rule` and
//!    `request_allowed`, the per-rule steps of `Limiter::decide_all`).
//! 4. Allowed: for each hash slot holding keys to write, one call of the compare-and-set
//!    script ([`script`]) with each key's expected value and its new value and expiry.
//!    Denied: one compare-only call for the slots of the denying rules.
//! 5. Every key matched: done (the writes happened atomically with the comparison). Some key
//!    did not: the script wrote nothing in that slot and sent back the current values; slots
//!    already committed in this attempt are refunded, and the decision starts again at 3 with
//!    the values just read, up to `max_cas_retries` times; then the rules of the slot that
//!    kept losing get their failure mode ([`sluice_core::StoreError::Contention`]). A call
//!    that loses claims a short turn on its keys, so that a replica committing back to back
//!    cannot starve it; a call that finds every value as expected but another decision's turn
//!    waits a moment and calls again ([`script`] explains turns).
//! 6. Redis fails or does not answer within the call timeout: that slot's rules get their
//!    failure mode (open: allowed and not counted; closed: denied, committed slots refunded).
//!    A call that timed out may still have been applied: its spend then stays, which errs on
//!    the side of limiting.
//!
//! # Leases
//!
//! [`RedisStore::grant`] commits a slice of a key's quota at once ([`sluice_core::Limit::grant`]:
//! what one request of that many units would commit) and [`RedisStore::give_back`] refunds a
//! slice's unspent units; each is one compare-and-set step on one key, retried like a decision.
//!
//! # Why this admits no more than the limit
//!
//! - **Every write is a transition from the current state.** The script compares every key of
//!   the call with the value the decision was made from and writes only if all match, and
//!   Redis runs scripts one at a time. So a committed decision is the core's decision over the
//!   states Redis held at that instant: the history of each key is exactly the core run
//!   serially over the committed decisions, in Redis's order. No update is lost, and no
//!   admission decided from a stale state is ever committed. Within one slot a decision is
//!   all or nothing by the script's atomicity.
//! - **A denial is decided from the current state**: the compare-only call confirms the
//!   denying rules' values at an instant, and a denial writes nothing.
//! - **Across slots** (rules of one decision on different keys in a Redis Cluster), each slot
//!   commits atomically; when a later slot denies, loses a race or fails closed, the slots
//!   already committed are refunded ([`sluice_core::Limit::refund`], itself a compare-and-set
//!   retried on the state as it is then). A refund never gives back more than was spent, so
//!   between commit and refund other decisions see a state that is stricter, never looser:
//!   nothing is over-admitted, at worst a concurrent request is denied that a serial order
//!   would have admitted. (The core's store-backed limiter and the edge worker's refunds
//!   across Durable Objects have the same property.)
//! - **Expiry never changes a decision**: a key expires when its state decides exactly like no
//!   state. `PX` is relative, so the offset between the service's clock and Redis's does not
//!   matter; offsets between replicas' clocks do, as in any limiter with several clocks: a
//!   replica whose clock lags by δ may see a key expired δ early. Keep replicas on NTP.
//! - **The cache is never trusted**: it only supplies the expected value; a wrong guess costs a
//!   round trip (the script's mismatch reply carries the current values).
//! - **Locks and turns only help progress**: the per-key turns within a process and the
//!   short-lived turn keys in Redis decide who goes first, never what is written; a turn that
//!   expires or a lock that is skipped only costs retries.
//!
//! # Costs
//!
//! A warm key decided by one replica: one `EVALSHA` (the script is loaded once per server;
//! after a restart or `SCRIPT FLUSH` the first call falls back to `EVAL`). A key last written by
//! another replica, or not remembered but present: two. Rules on different keys of one
//! decision in a cluster: one call per slot, in parallel.
//!
//! # TLS and authentication
//!
//! `rediss://` URLs connect over TLS (rustls with the `ring` provider), trusting the system's
//! certificate authorities or a private CA, optionally presenting a client certificate
//! ([`TlsConfig`]); a server whose certificate does not verify is never used. A user and
//! password (URL or [`RedisConfig`]) authenticate with `AUTH`/`HELLO`; the store only needs
//! the commands and keys listed in the service's README (an ACL user limited to them works).
//! No password appears in `Debug` output or in error messages.

mod cache;
pub mod config;
mod connection;
pub mod error;
pub mod keys;
mod locks;
pub mod script;
mod store;
pub mod tls;
pub mod value;

pub use config::{RedisConfig, Topology};
pub use error::RedisError;
pub use store::{Decided, LeaseKey, Leased, RedisStore};
pub use tls::{TlsConfig, TlsError, TlsFile};
