//! Delay (throttle) mode: a rule's `delay` (how long a request that does not fit may be held
//! instead of denied) and the top-level `shaping` section (how many requests one proxy VM may
//! hold at once).
//!
//! A rule with `"delay": {"max": "500ms"}` and GCRA admits a request whose new debt is over
//! the tolerance by at most `max`, commits it at once and holds it for exactly that excess
//! (see `sluice_core::algorithm` for the arithmetic), like NGINX's `limit_req burst= delay=`.

use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC};
use sluice_core::{Algorithm, Mode, Nanos};

use serde_json::Value;

use crate::duration::{DurationError, parse_period};
use crate::error::{ConfigError, Problem};
use crate::global::Scope;
use crate::json::{self, Fields};

/// The shortest `delay.max`.
pub const MIN_DELAY: Nanos = NANOS_PER_MILLI;
/// The longest `delay.max`: a request held longer is better told to come back.
pub const MAX_DELAY: Nanos = 60 * NANOS_PER_SEC;
/// `shaping.max_held` when not given.
pub const DEFAULT_MAX_HELD: u32 = 1024;
/// The largest `shaping.max_held`.
pub const MAX_MAX_HELD: u32 = 1_000_000;

const DELAY_FIELDS: &[&str] = &["max"];
const SHAPING_FIELDS: &[&str] = &["max_held"];

/// The `shaping` section: limits on the requests held by delay rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shaping {
    max_held: u32,
}

impl Default for Shaping {
    fn default() -> Shaping {
        Shaping {
            max_held: DEFAULT_MAX_HELD,
        }
    }
}

impl Shaping {
    /// The most requests one VM (proxy worker) holds at once; a request that would be held
    /// beyond it is denied as its rule's denial, and its commit refunded.
    pub fn max_held(&self) -> u32 {
        self.max_held
    }

    pub(crate) fn parse(value: &Value, path: &str) -> Result<Shaping, ConfigError> {
        let fields = Fields::open(value, path, SHAPING_FIELDS)?;
        let max_held = match fields.get("max_held") {
            Some(v) => {
                let held = json::integer(
                    v,
                    &fields.path("max_held"),
                    1,
                    u64::from(MAX_MAX_HELD),
                    "each held request is a paused stream the proxy keeps open",
                )?;
                u32::try_from(held).unwrap_or(DEFAULT_MAX_HELD)
            }
            None => DEFAULT_MAX_HELD,
        };
        Ok(Shaping { max_held })
    }
}

/// What a rule's `delay` may be combined with.
pub(crate) struct DelayContext {
    pub(crate) algorithm: Algorithm,
    pub(crate) mode: Mode,
    pub(crate) scope: Scope,
    pub(crate) leased: bool,
}

/// A rule's `delay` section: its `max`, checked against the rest of the rule.
pub(crate) fn parse_delay(
    value: &Value,
    path: &str,
    rule: &DelayContext,
) -> Result<Nanos, ConfigError> {
    if rule.algorithm != Algorithm::Gcra {
        return Err(ConfigError::new(
            path,
            Problem::DelayNeedsGcra {
                algorithm: rule.algorithm.name(),
            },
        ));
    }
    if rule.mode != Mode::Enforce {
        return Err(ConfigError::new(path, Problem::DelayNeedsEnforce));
    }
    if rule.scope == Scope::Global {
        return Err(ConfigError::new(path, Problem::DelayWithGlobalScope));
    }
    if rule.leased {
        return Err(ConfigError::new(path, Problem::DelayWithLease));
    }
    let fields = Fields::open(value, path, DELAY_FIELDS)?;
    let max_path = fields.path("max");
    let text = json::string(fields.require("max", "\"max\": \"500ms\"")?, &max_path)?;
    match parse_period(text) {
        Ok(nanos) if (MIN_DELAY..=MAX_DELAY).contains(&nanos) => Ok(nanos),
        Ok(_) | Err(DurationError::Zero | DurationError::TooLong) => Err(ConfigError::new(
            max_path,
            Problem::DelayOutOfRange { text: text.into() },
        )),
        Err(DurationError::Malformed) => Err(ConfigError::new(
            max_path,
            Problem::InvalidDuration { text: text.into() },
        )),
    }
}
