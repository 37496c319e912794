//! A rule's limit as one string, `<algorithm>:<requests>/<period ns>/<burst>`, sent with each
//! check so that the service can refuse to decide under a different limit (a proxy and a
//! service whose configurations drifted apart).

use alloc::string::String;
use core::fmt::Write as _;

use sluice_core::{Algorithm, Limit, Quota};

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Gcra,
    Algorithm::FixedWindow,
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
];

/// The limit's text.
///
/// ```
/// use sluice_core::{Algorithm, Limit, Quota};
/// use sluice_policy::global::limit_text;
///
/// let limit = Limit::new(Algorithm::Gcra, Quota::new(100, 60_000_000_000, 100).unwrap());
/// assert_eq!(limit_text::format(&limit), "gcra:100/60000000000/100");
/// assert_eq!(limit_text::parse("gcra:100/60000000000/100"), Some(limit));
/// assert_eq!(limit_text::parse("gcra:100/0/100"), None);
/// ```
pub fn format(limit: &Limit) -> String {
    let mut text = String::new();
    let quota = &limit.quota;
    let _ = write!(
        text,
        "{}:{}/{}/{}",
        limit.algorithm.name(),
        quota.limit(),
        quota.period(),
        quota.burst()
    );
    text
}

/// Parses a limit's text; `None` if it is not one (unknown algorithm, not three numbers, or
/// numbers the core refuses).
pub fn parse(text: &str) -> Option<Limit> {
    let (name, numbers) = text.split_once(':')?;
    let algorithm = ALGORITHMS.into_iter().find(|a| a.name() == name)?;
    let mut parts = numbers.split('/');
    let mut number = || -> Option<u64> {
        let part = parts.next()?;
        // Plain digits only: no sign, no spaces, one spelling per limit.
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (requests, period, burst) = (number()?, number()?, number()?);
    if parts.next().is_some() {
        return None;
    }
    if algorithm != Algorithm::Gcra && burst != requests {
        return None;
    }
    let quota = Quota::new(requests, period, burst).ok()?;
    Some(Limit::new(algorithm, quota))
}
