//! At most one log line per kind of call failure per [`LOG_INTERVAL`]: when the service is down,
//! every request fails the same way, and a log line per request would be a second outage.

use sluice_core::Nanos;
use sluice_core::time::NANOS_PER_SEC;

use super::exchange::CallFailure;

/// How often each kind of failure may be logged: once per 10 s.
pub const LOG_INTERVAL: Nanos = 10 * NANOS_PER_SEC;

/// Which failures were logged when, and how many were not logged since. One per VM; time is
/// the request's own clock reading, so no extra host call is made.
///
/// ```
/// use sluice_policy::global::{CallFailure, FailureLog, LOG_INTERVAL};
///
/// let mut log = FailureLog::default();
/// assert_eq!(log.record(&CallFailure::NoResponse, 0), Some(0));
/// assert_eq!(log.record(&CallFailure::NoResponse, 1), None);
/// assert_eq!(log.record(&CallFailure::Status(500), 2), Some(0), "another kind");
/// assert_eq!(log.record(&CallFailure::NoResponse, LOG_INTERVAL), Some(1), "1 not logged");
/// ```
#[derive(Debug, Clone, Default)]
pub struct FailureLog {
    kinds: [Kind; CallFailure::KINDS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Kind {
    logged_at: Option<Nanos>,
    suppressed: u64,
}

impl FailureLog {
    /// Records `failure` at `now`. Returns `Some(n)` when a line should be written now, `n`
    /// being how many failures of its kind were not logged since the last line; `None` when
    /// this one is to be counted only.
    pub fn record(&mut self, failure: &CallFailure, now: Nanos) -> Option<u64> {
        let kind = self.kinds.get_mut(failure.kind())?;
        // A clock that jumped back by an interval or more also allows a line.
        let due = kind
            .logged_at
            .is_none_or(|at| now.abs_diff(at) >= LOG_INTERVAL);
        if due {
            kind.logged_at = Some(now);
            Some(core::mem::take(&mut kind.suppressed))
        } else {
            kind.suppressed = kind.suppressed.saturating_add(1);
            None
        }
    }
}
