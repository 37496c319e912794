//! Denials answered in the isolate, without a limiter object call, with exactly the decision
//! and headers the objects would give as far as this isolate can know.
//!
//! # What is remembered
//!
//! Not answers but states: for every key of a denied request, the state its object reported
//! (after the request's refund, if it sent one), with the object's version of its states.
//! Every later answer this isolate gets about a remembered key (a commit of another cost, a
//! refund, a denial) replaces the remembered state if it is at least as recent, whatever
//! order the answers arrive in; a call that fails or times out, whose effect is unknown,
//! forgets the key.
//!
//! # When it answers
//!
//! A request is answered here only if the state of every one of its checks is remembered and
//! no call about any of its keys is in flight from this isolate (that call may be committing).
//! Then the core decides all of them, `Limiter::decide_all` at the request's time, on copies of
//! those states: if that denies, it is the answer (every denying rule reported, shadow rules
//! decided and logged as the objects would, `Retry-After` from the current state), and nothing
//! is written, as for any denial. If it allows, the objects are asked, since only they can
//! commit. So for everything this isolate has done, a cached answer is the objects' answer.
//!
//! Concurrency rules are never answered here: their states also go down (slots released by
//! requests of other isolates), so a remembered one proves nothing.
//!
//! # What it cannot know
//!
//! Commits made through other isolates since this one last heard from an object. They only
//! add to a key's spend, and every algorithm decides a more-spent state at least as strictly,
//! so a cached denial is still a denial and its `Retry-After` is never later than the object's
//! (never sends a client back too late), up to the difference between this isolate's clock and
//! the object's: the client learns of the rest when it comes back and the objects are asked. The one exception is a spend this isolate saw that another isolate
//! then had refunded (its request was denied by another object): until this isolate asks the
//! object again, the cached answer still counts it, as the object itself did while it stood.
//!
//! The cache is bounded in entries and in state bytes: when full, keys whose state has fully
//! recovered are dropped, and if that is not enough it is emptied (it is only a shortcut: an
//! empty cache asks the objects).

use std::cell::RefCell;
use std::collections::HashMap;

use sluice_core::{Algorithm, Check, Limit, Limiter, Nanos, State, Verdict};

use crate::gateway::Seen;
use crate::protocol::ObjectVersion;

/// The most keys remembered per isolate.
pub const MAX_ENTRIES: usize = 10_000;
/// The most state bytes (encoded) remembered per isolate.
pub const MAX_STATE_BYTES: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EntryKey {
    rule: String,
    key: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// The rule's limit the state was reported for (a changed rule starts afresh).
    limit: Limit,
    state: Option<State>,
    version: ObjectVersion,
    bytes: usize,
}

impl Entry {
    fn recovered_at(&self, now: Nanos) -> bool {
        self.state
            .as_ref()
            .is_none_or(|state| self.limit.idle_at(state) <= now)
    }
}

/// Remembered states of one isolate.
#[derive(Debug, Default)]
pub struct NegativeCache {
    entries: HashMap<EntryKey, Entry>,
    /// Keys with object calls in flight from this isolate, and how many.
    in_flight: HashMap<EntryKey, u32>,
    bytes: usize,
}

/// The keys of a request whose object calls are in flight. Hand it back with
/// [`NegativeCache::finish`]; dropped without that (the request was cancelled), it forgets
/// its keys, whose calls may or may not have been applied.
#[derive(Debug)]
pub struct InFlight {
    keys: Vec<EntryKey>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.keys.is_empty() {
            let keys = std::mem::take(&mut self.keys);
            with(|cache| {
                for key in &keys {
                    cache.forget(key);
                    cache.land(key);
                }
            });
        }
    }
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
    }
}

impl NegativeCache {
    /// The verdict for `checks` at `now` if the remembered states decide it: a denial, as the
    /// core decides it on them. `None`: ask the objects.
    pub fn lookup(&self, checks: &[Check<'_>], now: Nanos) -> Option<Verdict> {
        // Slots other isolates' requests release make a concurrency state less spent, which
        // a remembered state cannot know: those rules always ask their object.
        if checks
            .iter()
            .any(|check| check.limit.algorithm == Algorithm::Concurrency)
        {
            return None;
        }
        if checks.is_empty() {
            return None;
        }
        let mut states = Vec::with_capacity(checks.len());
        for check in checks {
            let key = entry_key(check);
            if self.in_flight.contains_key(&key) {
                return None;
            }
            let entry = self.entries.get(&key)?;
            if entry.limit != check.limit {
                return None;
            }
            states.push(entry.state.clone());
        }
        let verdict = Limiter::decide_all(checks, &mut states, now);
        (!verdict.allowed).then_some(verdict)
    }

    /// Notes that `checks` are about to be sent to their objects.
    pub fn begin(&mut self, checks: &[Check<'_>]) -> InFlight {
        let keys: Vec<EntryKey> = checks.iter().map(entry_key).collect();
        for key in &keys {
            let count = self.in_flight.entry(key.clone()).or_insert(0);
            *count = count.saturating_add(1);
        }
        InFlight { keys }
    }

    /// Takes in what the objects answered for `checks` (`seen`, see `gateway::Decided`):
    /// remembered keys are brought up to date (or forgotten where unknown), and if the request
    /// was denied every key it saw is remembered.
    pub fn finish(
        &mut self,
        mut in_flight: InFlight,
        checks: &[Check<'_>],
        verdict: &Verdict,
        seen: &[Option<Seen>],
        now: Nanos,
    ) {
        let keys = std::mem::take(&mut in_flight.keys);
        for (key, (check, seen)) in keys.iter().zip(checks.iter().zip(seen)) {
            self.land(key);
            match seen {
                None => self.forget(key),
                Some(seen) => self.learn(key, check.limit, seen, !verdict.allowed, now),
            }
        }
    }

    /// Takes in a key's state from an answer about no request (units returned from a slice):
    /// a remembered key is brought up to date; nothing new is remembered.
    pub fn update(&mut self, rule: &str, key: &[u8], limit: Limit, seen: &Seen, now: Nanos) {
        let key = EntryKey {
            rule: rule.to_owned(),
            key: key.to_vec(),
        };
        self.learn(&key, limit, seen, false, now);
    }

    /// After a refund of a held request's commit: the key's state as the object reported it
    /// (`None`: the refund's effect is unknown, so the key is forgotten).
    pub fn refunded(
        &mut self,
        rule: &str,
        key: &[u8],
        limit: Limit,
        seen: Option<&Seen>,
        now: Nanos,
    ) {
        match seen {
            Some(seen) => self.update(rule, key, limit, seen, now),
            None => self.forget(&EntryKey {
                rule: rule.to_owned(),
                key: key.to_vec(),
            }),
        }
    }

    fn land(&mut self, key: &EntryKey) {
        if let Some(count) = self.in_flight.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.in_flight.remove(key);
            }
        }
    }

    fn forget(&mut self, key: &EntryKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes = self.bytes.saturating_sub(entry.bytes);
        }
    }

    fn learn(&mut self, key: &EntryKey, limit: Limit, seen: &Seen, insert: bool, now: Nanos) {
        let bytes = seen.state.as_ref().map_or(0, State::encoded_len);
        let entry = Entry {
            limit,
            state: seen.state.clone(),
            version: seen.version,
            bytes,
        };
        match self.entries.get_mut(key) {
            // An older answer that arrived late changes nothing.
            Some(known) if seen.version.supersedes(&known.version) => {
                self.bytes = self.bytes.saturating_sub(known.bytes).saturating_add(bytes);
                *known = entry;
            }
            None if insert => {
                self.make_room(bytes, now);
                self.bytes = self.bytes.saturating_add(bytes);
                self.entries.insert(key.clone(), entry);
            }
            Some(_) | None => {}
        }
    }

    fn full(&self, adding: usize) -> bool {
        self.entries.len() >= MAX_ENTRIES || self.bytes.saturating_add(adding) > MAX_STATE_BYTES
    }

    fn make_room(&mut self, adding: usize, now: Nanos) {
        if !self.full(adding) {
            return;
        }
        self.entries.retain(|_, entry| !entry.recovered_at(now));
        self.bytes = self.entries.values().map(|entry| entry.bytes).sum();
        if self.full(adding) {
            self.entries.clear();
            self.bytes = 0;
        }
    }

    /// Remembered keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
