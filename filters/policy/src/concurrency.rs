//! Concurrency rules: `"concurrency": {"max": 10, "slot_ttl": "60s"}` caps the requests a key
//! has in flight. A passed request holds one slot per concurrency rule from its admission
//! until its stream ends, when the proxy gives it back ([`Policy::release`]); a slot whose
//! release is lost (a VM trap, a crash) comes back on its own after `slot_ttl` (at most
//! `slot_ttl × 9/8`, see `sluice_core::algorithm::concurrency`).
//!
//! The slots a request took are moved out of its [`Handled`] into a [`TakenSlots`]
//! ([`Handled::take_slots`]) that the stream keeps until it ends; the lists and keys come
//! from the VM's [`RequestBuffers`] and go back to them on release, so holding and releasing
//! allocates nothing once warmed up.

use alloc::vec::Vec;
use serde_json::Value;
use sluice_core::time::{NANOS_PER_SEC, Nanos};
use sluice_core::{
    Algorithm, Check, Limit, Limiter, Quota, Released, RuleOutcome, SlotStore, Status,
};

use crate::duration::{DurationError, parse_period};
use crate::error::{ConfigError, Problem};
use crate::json::{self, Fields};
use crate::policy::{Evaluation, Handled, Policy, RequestBuffers};

/// `concurrency.slot_ttl` when not given.
pub const DEFAULT_SLOT_TTL: Nanos = 5 * 60 * NANOS_PER_SEC;
/// The shortest `concurrency.slot_ttl`.
pub const MIN_SLOT_TTL: Nanos = NANOS_PER_SEC;
/// The longest `concurrency.slot_ttl`.
pub const MAX_SLOT_TTL: Nanos = 24 * 60 * 60 * NANOS_PER_SEC;
/// The largest `concurrency.max`.
pub const MAX_CONCURRENCY: u64 = 1_000_000;

const CONCURRENCY_FIELDS: &[&str] = &["max", "slot_ttl"];
/// Fields of one tier of a concurrency rule: its cap, and what selects it (its slots live the
/// rule's `concurrency.slot_ttl`).
pub(crate) const TIER_FIELDS: &[&str] = &["max", "max_keys", "values", "cidrs"];
/// Fields of one override of a concurrency rule.
pub(crate) const OVERRIDE_FIELDS: &[&str] = &["key", "key_sha256", "max"];

/// Rule fields a concurrency rule cannot have, in the order they are checked.
pub(crate) const NOT_WITH_CONCURRENCY: &[&str] = &["limit", "algorithm", "cost", "delay", "lease"];

/// A rule's `concurrency` section: its cap (`max`; `None` for a tiered rule, whose tiers have
/// their own, see [`tier_max`]) and its slots' time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) limit: Option<Limit>,
    pub(crate) slot_ttl: Nanos,
}

/// The `concurrency` section at `path`. With `tiered`, `max` belongs to each tier and is an
/// error here; otherwise it is required.
pub(crate) fn parse(value: &Value, path: &str, tiered: bool) -> Result<Section, ConfigError> {
    let fields = Fields::open(value, path, CONCURRENCY_FIELDS)?;
    let slot_ttl = slot_ttl(&fields)?;
    let limit = match (tiered, fields.get("max")) {
        (true, Some(_)) => {
            return Err(ConfigError::new(
                fields.path("max"),
                Problem::ConcurrencyMaxWithTier,
            ));
        }
        (true, None) => None,
        (false, _) => Some(max_limit(
            fields.require("max", "\"max\": 10")?,
            &fields.path("max"),
            slot_ttl,
        )?),
    };
    Ok(Section { limit, slot_ttl })
}

/// The cap `max` of a tier or an override of a concurrency rule (`value` is the tier's or the
/// override's object, whose fields are `allowed`), its slots living `slot_ttl`.
pub(crate) fn tier_max(
    value: &Value,
    path: &str,
    allowed: &'static [&'static str],
    slot_ttl: Nanos,
) -> Result<Limit, ConfigError> {
    let fields = Fields::open(value, path, allowed)?;
    max_limit(
        fields.require("max", "\"max\": 10")?,
        &fields.path("max"),
        slot_ttl,
    )
}

/// At most `max` slots (`value`, at `path`), each living `slot_ttl`.
fn max_limit(value: &Value, path: &str, slot_ttl: Nanos) -> Result<Limit, ConfigError> {
    let max = json::integer(
        value,
        path,
        1,
        MAX_CONCURRENCY,
        "the requests a key may have in flight at once",
    )?;
    // `max ≤ 10⁶` and `slot_ttl ≥ 1 s`: never finer than a nanosecond per slot.
    let quota = Quota::new(max, slot_ttl, max).map_err(|_| {
        ConfigError::new(
            path,
            Problem::OutOfRange {
                value: max,
                min: 1,
                max: MAX_CONCURRENCY,
                why: "the requests a key may have in flight at once",
            },
        )
    })?;
    Ok(Limit::new(Algorithm::Concurrency, quota))
}

/// `slot_ttl` of a `concurrency` section, or its default.
fn slot_ttl(fields: &Fields<'_>) -> Result<Nanos, ConfigError> {
    let slot_ttl = match fields.get("slot_ttl") {
        Some(v) => {
            let ttl_path = fields.path("slot_ttl");
            let text = json::string(v, &ttl_path)?;
            match parse_period(text) {
                Ok(nanos) if (MIN_SLOT_TTL..=MAX_SLOT_TTL).contains(&nanos) => nanos,
                Ok(_) | Err(DurationError::Zero | DurationError::TooLong) => {
                    return Err(ConfigError::new(
                        ttl_path,
                        Problem::SlotTtlOutOfRange { text: text.into() },
                    ));
                }
                Err(DurationError::Malformed) => {
                    return Err(ConfigError::new(
                        ttl_path,
                        Problem::InvalidDuration { text: text.into() },
                    ));
                }
            }
        }
        None => DEFAULT_SLOT_TTL,
    };
    Ok(slot_ttl)
}

/// The slots a passed request holds until its stream ends: for each concurrency rule that
/// admitted it, the rule, which of its limits applied (its own, the caller's tier or an
/// override) and the request's key, taken at one instant.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TakenSlots {
    taken_at: Nanos,
    slots: Vec<TakenSlot>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TakenSlot {
    rule: usize,
    /// An index in the rule's limits: the slot is given back to the table it was taken in.
    limit: usize,
    key: Vec<u8>,
}

impl TakenSlots {
    /// When the slots were taken (the request's decision time).
    pub fn taken_at(&self) -> Nanos {
        self.taken_at
    }

    /// How many slots are held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The index in [`Policy::rules`] of each slot's rule.
    pub fn rules(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots.iter().map(|slot| slot.rule)
    }
}

impl TakenSlots {
    /// The concurrency slots among a request's committed local checks, for a request whose
    /// stream ends while it waits for the rate-limit service (no `Handled` yet): each
    /// `(rule index, limit index, key, outcome)` of a local check, in the order decided at
    /// `taken_at`.
    /// `None` when no concurrency rule took a slot. Copies the keys: only for that rare end.
    pub fn committed<'k>(
        policy: &Policy,
        taken_at: Nanos,
        checks: impl IntoIterator<Item = (usize, usize, &'k [u8], &'k RuleOutcome)>,
    ) -> Option<TakenSlots> {
        if !policy.has_concurrency {
            return None;
        }
        let slots: Vec<TakenSlot> = checks
            .into_iter()
            .filter(|(rule, _, _, outcome)| {
                outcome.status == Status::Allowed
                    && policy
                        .rules
                        .get(*rule)
                        .is_some_and(|r| r.limit.algorithm == Algorithm::Concurrency)
            })
            .map(|(rule, limit, key, _)| TakenSlot {
                rule,
                limit,
                key: key.to_vec(),
            })
            .collect();
        (!slots.is_empty()).then_some(TakenSlots { taken_at, slots })
    }
}

impl Handled<'_> {
    /// Moves the concurrency slots a passed request took at `taken_at` (the `now` it was
    /// decided at) out of it, into a list from `buffers`: `None` when it took none (denied,
    /// exempt, no concurrency rule applied, or the rules only reported). Keep them until
    /// the request's stream ends, then give them to [`Policy::release`], once.
    ///
    /// Call it after the verdict is final (a request refused a hold is denied and took
    /// nothing), before giving the request's buffers back.
    pub fn take_slots(
        &mut self,
        taken_at: Nanos,
        buffers: &mut RequestBuffers,
    ) -> Option<TakenSlots> {
        if !self.policy.has_concurrency {
            return None;
        }
        let verdict = self.verdict.as_ref()?;
        if !verdict.allowed {
            return None;
        }
        let Evaluation::Rules(applied) = &mut self.evaluation else {
            return None;
        };
        let mut taken: Option<TakenSlots> = None;
        for ((check, &rule), outcome) in applied
            .checks
            .iter_mut()
            .zip(&applied.rule_indices)
            .zip(&verdict.outcomes)
        {
            if check.limit.algorithm != Algorithm::Concurrency
                || outcome.status != Status::Allowed
                || check.cost == 0
            {
                continue;
            }
            // The key comes back to `buffers` on release.
            let key = core::mem::take(&mut check.key);
            let limit = self.policy.limit_index(rule, check.rule);
            let slots = taken.get_or_insert_with(|| TakenSlots {
                taken_at,
                slots: buffers.slot_list(),
            });
            slots.slots.push(TakenSlot { rule, limit, key });
        }
        taken
    }
}

impl Policy {
    /// Whether any rule is a concurrency rule, whose slots a proxy must release when a
    /// request ends.
    pub fn has_concurrency_rules(&self) -> bool {
        self.has_concurrency
    }

    /// Gives back every slot in `slots` at `now` (the request's stream has ended, however
    /// it ended), and their list and keys to `buffers`. `released(rule, outcome)` hears
    /// what happened to each slot, by rule index. Best effort like every refund: a slot
    /// whose release fails stays held until it expires.
    pub fn release<S: SlotStore>(
        &self,
        mut slots: TakenSlots,
        now: Nanos,
        limiter: &mut Limiter,
        store: &mut S,
        buffers: &mut RequestBuffers,
        mut released: impl FnMut(usize, Released),
    ) {
        for slot in slots.slots.drain(..) {
            let TakenSlot {
                rule: index,
                limit,
                key,
            } = slot;
            let Some((rule, named)) = self
                .rules
                .get(index)
                .and_then(|rule| Some((rule, rule.limits.get(limit)?)))
            else {
                buffers.give_back_key(key);
                continue;
            };
            let check = Check {
                rule: &named.name,
                limit: named.limit,
                max_keys: named.max_keys,
                key,
                cost: 1,
                mode: rule.mode,
                failure_mode: rule.failure_mode,
            };
            let outcome = limiter.release(&check, slots.taken_at, now, store);
            buffers.give_back_key(check.key);
            released(index, outcome);
        }
        buffers.give_back_slot_list(slots.slots);
    }
}

impl RequestBuffers {
    fn slot_list(&mut self) -> Vec<TakenSlot> {
        self.slot_lists.pop().unwrap_or_default()
    }

    fn give_back_slot_list(&mut self, mut list: Vec<TakenSlot>) {
        list.clear();
        if list.capacity() > 0 && self.slot_lists.len() < crate::policy::MAX_SPARE {
            self.slot_lists.push(list);
        }
    }
}

/// Spare slot lists, kept in [`RequestBuffers`].
pub(crate) type SlotLists = Vec<Vec<TakenSlot>>;
