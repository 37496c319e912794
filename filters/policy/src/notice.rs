//! One-line log messages about a handled request: what a shadow rule would have done, a soft
//! rule over its limit, and
//! counter store failures. Keys are shown through [`KeyDisplay`], so secret parts are never
//! logged.

use core::fmt;

use sluice_core::time::ceil_secs;
use sluice_core::{Check, FailureMode, Mode, Nanos, RuleOutcome, Status, StoreError};

use crate::key::KeyDisplay;
use crate::policy::Rule;

/// Something about one rule's outcome worth logging.
#[derive(Debug, Clone, Copy)]
pub enum Notice<'a> {
    /// A shadow rule would have denied the request (it passed).
    ShadowDenied {
        /// The rule's name (`<rule>:<tier>` for a tier's limit, `<rule>:<override>` for an
        /// override's).
        rule: &'a str,
        /// The request's key for the rule.
        key: KeyDisplay<'a>,
        /// How long the client would have been told to wait.
        retry_after: Nanos,
    },
    /// A soft rule is over its limit: the request passed, marked.
    SoftExceeded {
        /// The rule's name, as for [`Notice::ShadowDenied`].
        rule: &'a str,
        /// The request's key for the rule.
        key: KeyDisplay<'a>,
        /// How long the client would have been told to wait.
        retry_after: Nanos,
    },
    /// The rule's counter could not be read or written; its failure mode decided.
    StoreFailed {
        /// The rule's name.
        rule: &'a str,
        /// The request's key for the rule.
        key: KeyDisplay<'a>,
        /// What failed.
        error: StoreError,
        /// What the rule decided.
        failure_mode: FailureMode,
        /// Whether the rule enforces.
        mode: Mode,
    },
}

impl<'a> Notice<'a> {
    pub(crate) fn of(
        rule: &'a Rule,
        check: &'a Check<'_>,
        outcome: &RuleOutcome,
    ) -> Option<Notice<'a>> {
        let key = rule.key().display(&check.key);
        if let Some(error) = outcome.store_error {
            return Some(Notice::StoreFailed {
                rule: check.rule,
                key,
                error,
                failure_mode: rule.failure_mode(),
                mode: rule.mode(),
            });
        }
        if outcome.status != Status::ShadowDenied {
            return None;
        }
        let (rule, retry_after) = (check.rule, outcome.decision.retry_after);
        Some(match check.mode {
            Mode::Soft => Notice::SoftExceeded {
                rule,
                key,
                retry_after,
            },
            _ => Notice::ShadowDenied {
                rule,
                key,
                retry_after,
            },
        })
    }
}

impl fmt::Display for Notice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::ShadowDenied {
                rule,
                key,
                retry_after,
            } => write!(
                f,
                "rule \"{rule}\" (shadow) would deny key {key}; retry after {}s; the request passed",
                ceil_secs(*retry_after).max(1)
            ),
            Notice::SoftExceeded {
                rule,
                key,
                retry_after,
            } => write!(
                f,
                "rule \"{rule}\" (soft) is over its limit for key {key}; retry after {}s; the \
                 request passed, marked",
                ceil_secs(*retry_after).max(1)
            ),
            Notice::StoreFailed {
                rule,
                key,
                error,
                failure_mode,
                mode,
            } => {
                write!(
                    f,
                    "rule \"{rule}\": counter store failed for key {key}: {error}; "
                )?;
                f.write_str(match (failure_mode, mode) {
                    (FailureMode::Open, _) => "failing open, the rule did not count the request",
                    (FailureMode::Closed, Mode::Enforce) => {
                        "failing closed, the request was denied"
                    }
                    (FailureMode::Closed, Mode::Shadow) => {
                        "failing closed in shadow mode, the request passed"
                    }
                    (FailureMode::Closed, Mode::Soft) => {
                        "failing closed in soft mode, the request passed"
                    }
                })
            }
        }
    }
}
