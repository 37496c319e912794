//! A request whose rules a caller decided piece by piece (the filter's lease path decides
//! leased rules from shared data, others locally or through the service): its outcomes,
//! gathered in rule order, become a [`Handled`] with the response an all-local request with
//! the same decisions gets.

use alloc::vec::Vec;

use sluice_core::{Check, RuleOutcome, Status, Verdict};

use super::exchange::{failed, unasked_outcome};
use crate::policy::{AppliedRules, Evaluation, Handled, Policy};

/// The applying rules of a request, owned (no borrow of the request), as a caller keeps them
/// while the request waits: each rule's index in [`Policy::rules`], key and cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleKeys {
    /// Indices in [`Policy::rules`], in rule order.
    pub rules: Vec<usize>,
    /// The key bytes of each.
    pub keys: Vec<Vec<u8>>,
    /// The cost of each.
    pub costs: Vec<u64>,
    /// Which of each rule's limits applied (an index in [`crate::Rule::limits`]: its own
    /// limit, the caller's tier or an override).
    pub limits: Vec<usize>,
}

impl RuleKeys {
    /// The applying rules of `applied`, as `policy` evaluated them.
    pub fn of(policy: &Policy, applied: &AppliedRules<'_>) -> RuleKeys {
        RuleKeys {
            rules: applied.rule_indices().to_vec(),
            keys: applied.checks().iter().map(|c| c.key.clone()).collect(),
            costs: applied.checks().iter().map(|c| c.cost).collect(),
            limits: applied
                .rule_indices()
                .iter()
                .zip(applied.checks())
                .map(|(&index, check)| policy.limit_index(index, check.rule))
                .collect(),
        }
    }

    /// How many rules apply.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Policy {
    /// The checks of `rules` again (as [`Policy::evaluate`] made them).
    pub fn checks_of(&self, rules: &RuleKeys) -> Vec<Check<'_>> {
        rules
            .rules
            .iter()
            .zip(&rules.keys)
            .zip(&rules.costs)
            .enumerate()
            .filter_map(|(position, ((&index, key), &cost))| {
                let rule = self.rules.get(index)?;
                let limit = rules.limits.get(position).copied().unwrap_or_default();
                match rule.limits.get(limit) {
                    Some(named) => Some(rule.check_of(named, key.clone(), cost)),
                    None => Some(rule.check(key.clone(), cost)),
                }
            })
            .collect()
    }

    /// The request of `rules` decided with `outcomes` (one per rule, in order). Positions in
    /// `unasked` were not decided (a rule denied first): their outcomes only fill the place
    /// and are left out of metrics and of the response. `global_failure` says the service
    /// could not be asked (its failure modes decided), which keeps those outcomes out of the
    /// notices. The request is allowed when no enforcing rule denied or failed closed.
    pub fn assemble(
        &self,
        rules: RuleKeys,
        outcomes: Vec<RuleOutcome>,
        unasked: Vec<usize>,
        global_failure: bool,
    ) -> Handled<'_> {
        let checks = self.checks_of(&rules);
        let allowed = !outcomes
            .iter()
            .any(|o| matches!(o.status, Status::Denied | Status::FailedClosed));
        let verdict = Verdict { allowed, outcomes };
        let response = self.respond(&checks, &verdict);
        let scopes = if self.has_global_rules {
            rules
                .rules
                .iter()
                .filter_map(|&index| Some(self.rules.get(index)?.scope))
                .collect()
        } else {
            Vec::new()
        };
        Handled {
            evaluation: Evaluation::Rules(AppliedRules {
                checks,
                rule_indices: rules.rules,
                scopes,
            }),
            verdict: Some(verdict),
            response,
            policy: self,
            unasked,
            global_failure,
        }
    }
}

/// A global rule's outcome when the service could not be asked: its failure mode decides
/// (open: passes uncounted; closed: denied, retry after 1 s; a shadow rule never denies).
pub fn failure_outcome(check: &Check<'_>) -> RuleOutcome {
    failed(check)
}

/// The place-holder outcome of a rule that was not asked (list its position in `unasked`).
pub fn unasked(check: &Check<'_>) -> RuleOutcome {
    unasked_outcome(check)
}
