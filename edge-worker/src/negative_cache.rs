//! Denials remembered in the isolate until their retry time, so a client that keeps sending
//! after a 429 is answered without a limiter object call.
//!
//! # Why a cached denial is still right
//!
//! An entry says: rule R denied key K a request of cost C at `now`, and a request of that cost
//! fits again at `retry_at`. Until then the object would deny it too: a key's state only moves
//! towards "more spent" through commits (which other requests may add), or towards "less
//! spent" with time, and the object's own answer already accounts for the time until
//! `retry_at`. A refund (all or nothing across objects) only gives back what a request that
//! passed had spent, so it never takes the state below what it was when the denial was
//! cached. The object removes a key only when it has fully recovered, which is after
//! `retry_at`. The headers of a cached denial are the object's answer moved to the current
//! time (`Retry-After` = `retry_at` − now), which is what the object itself answers for every
//! algorithm while nothing else is committed; if other isolates spent more meanwhile, the
//! object would say to wait longer, and the client learns that when it comes back.
//!
//! So only what can be moved in time is cached: enforcing rules' denials of a cost that can
//! ever fit (a cost above capacity is answered "retry after one period" from whenever it is
//! asked), and never a failure outcome. A request to which a shadow rule applies always goes
//! to its objects, so shadow rules see every request. A cached denial reports the cached
//! denying rules; another rule that would also deny is reported once the object is asked
//! again.
//!
//! The cache is bounded: when it is full, expired entries are dropped, and if that is not
//! enough it is emptied (it is only a shortcut: an empty cache asks the objects).

use std::cell::RefCell;
use std::collections::HashMap;

use sluice_core::{Check, Decision, Mode, Nanos, RuleOutcome, Status, Verdict};

/// The most denials remembered per isolate.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EntryKey {
    rule: String,
    key: Vec<u8>,
    cost: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    limit: u64,
    retry_at: Nanos,
    reset_at: Nanos,
}

/// Denials of one isolate.
#[derive(Debug, Default)]
pub struct NegativeCache {
    entries: HashMap<EntryKey, Entry>,
}

thread_local! {
    static CACHE: RefCell<NegativeCache> = RefCell::new(NegativeCache::default());
}

/// Runs `f` with the isolate's cache.
pub fn with<T>(f: impl FnOnce(&mut NegativeCache) -> T) -> T {
    CACHE.with(|cache| f(&mut cache.borrow_mut()))
}

fn entry_key(check: &Check<'_>) -> EntryKey {
    EntryKey {
        rule: check.rule.to_owned(),
        key: check.key.clone(),
        cost: check.cost,
    }
}

impl NegativeCache {
    /// The verdict for `checks` at `now` if a remembered denial decides it: denied, with the
    /// remembered rules' decisions moved to `now`. `None`: ask the objects.
    pub fn lookup(&mut self, checks: &[Check<'_>], now: Nanos) -> Option<Verdict> {
        if checks.iter().any(|check| check.mode == Mode::Shadow) {
            return None;
        }
        let mut outcomes = Vec::with_capacity(checks.len());
        let mut denied = false;
        for check in checks {
            let key = entry_key(check);
            let cached = match self.entries.get(&key) {
                Some(entry) if entry.retry_at > now => Some(*entry),
                Some(_) => {
                    self.entries.remove(&key);
                    None
                }
                None => None,
            };
            outcomes.push(match cached {
                Some(entry) => {
                    denied = true;
                    RuleOutcome {
                        status: Status::Denied,
                        decision: Decision {
                            allowed: false,
                            limit: entry.limit,
                            remaining: 0,
                            reset_after: entry.reset_at.saturating_sub(now),
                            retry_after: entry.retry_at - now,
                        },
                        cas_retries: 0,
                        store_error: None,
                    }
                }
                // Not asked: the request spends nothing from it, and a denial reports only
                // the denying rules.
                None => RuleOutcome {
                    status: Status::Allowed,
                    decision: Decision {
                        allowed: true,
                        limit: check.limit.quota.limit(),
                        remaining: 0,
                        reset_after: 0,
                        retry_after: 0,
                    },
                    cas_retries: 0,
                    store_error: None,
                },
            });
        }
        denied.then_some(Verdict {
            allowed: false,
            outcomes,
        })
    }

    /// Remembers the denials in an objects' `verdict` on `checks`, decided at `now`.
    pub fn record(&mut self, checks: &[Check<'_>], verdict: &Verdict, now: Nanos) {
        for (check, outcome) in checks.iter().zip(&verdict.outcomes) {
            let cacheable = outcome.status == Status::Denied
                && check.mode == Mode::Enforce
                && check.cost <= check.limit.capacity()
                && outcome.decision.retry_after > 0;
            if !cacheable {
                continue;
            }
            if self.entries.len() >= MAX_ENTRIES {
                self.entries.retain(|_, entry| entry.retry_at > now);
                if self.entries.len() >= MAX_ENTRIES {
                    self.entries.clear();
                }
            }
            self.entries.insert(
                entry_key(check),
                Entry {
                    limit: outcome.decision.limit,
                    retry_at: now.saturating_add(outcome.decision.retry_after),
                    reset_at: now.saturating_add(outcome.decision.reset_after),
                },
            );
        }
    }

    /// Remembered denials (expired ones included until they are looked up or pruned).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
