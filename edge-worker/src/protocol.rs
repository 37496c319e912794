//! The messages between the worker and a limiter object, as JSON over the object's `fetch`.
//!
//! A check travels with everything the object needs to decide it (rule name, algorithm,
//! quota, key, cost, mode), so an object never reads the configuration and a deploy that
//! changes a rule is seen by the object at its next request.

use serde::{Deserialize, Serialize};
use sluice_core::{Algorithm, Check, Decision, FailureMode, Limit, Mode, Quota, State, Status};

/// Path of a decide call: decide every check, commit them all if the object's share of the
/// request is allowed.
pub const DECIDE_PATH: &str = "/decide";
/// Path of a refund call: give back what a decide committed, because another object denied
/// the same request.
pub const REFUND_PATH: &str = "/refund";
/// Path of a test-only call answering how many keys the object stores.
pub const ROWS_PATH: &str = "/rows";

/// One rule's check as sent to an object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireCheck {
    /// The rule's name.
    pub rule: String,
    /// `gcra`, `fixed_window`, `sliding_window` or `sliding_log`.
    pub algorithm: String,
    /// Requests per period.
    pub limit: u64,
    /// The period, nanoseconds.
    pub period: u64,
    /// The burst (GCRA).
    pub burst: u64,
    /// The request's key for the rule, hex.
    pub key: String,
    /// Units the request spends.
    pub cost: u64,
    /// A shadow rule never denies.
    pub shadow: bool,
}

/// Why a wire check cannot be turned back into a core check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The algorithm name is unknown.
    Algorithm(String),
    /// The quota is invalid.
    Quota(String),
    /// The key is not hex.
    Key,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Algorithm(name) => write!(f, "unknown algorithm {name:?}"),
            WireError::Quota(error) => write!(f, "invalid quota: {error}"),
            WireError::Key => f.write_str("the key is not hex"),
        }
    }
}

impl WireCheck {
    /// The wire form of a core check.
    pub fn from_check(check: &Check<'_>) -> WireCheck {
        WireCheck {
            rule: check.rule.to_owned(),
            algorithm: check.limit.algorithm.name().to_owned(),
            limit: check.limit.quota.limit(),
            period: check.limit.quota.period(),
            burst: check.limit.quota.burst(),
            key: hex(&check.key),
            cost: check.cost,
            shadow: check.mode == Mode::Shadow,
        }
    }

    /// The rule's algorithm and quota.
    pub fn limit(&self) -> Result<Limit, WireError> {
        let algorithm = match self.algorithm.as_str() {
            "gcra" => Algorithm::Gcra,
            "fixed_window" => Algorithm::FixedWindow,
            "sliding_window" => Algorithm::SlidingWindow,
            "sliding_log" => Algorithm::SlidingLog,
            other => return Err(WireError::Algorithm(other.to_owned())),
        };
        let quota = Quota::new(self.limit, self.period, self.burst)
            .map_err(|e| WireError::Quota(e.to_string()))?;
        Ok(Limit::new(algorithm, quota))
    }

    /// The core check (the failure mode is the worker's business, not the object's).
    pub fn to_check(&self) -> Result<Check<'_>, WireError> {
        Ok(Check {
            rule: &self.rule,
            limit: self.limit()?,
            max_keys: 0,
            key: unhex(&self.key).ok_or(WireError::Key)?,
            cost: self.cost,
            mode: if self.shadow {
                Mode::Shadow
            } else {
                Mode::Enforce
            },
            failure_mode: FailureMode::Open,
        })
    }

    /// Identifies the rule's configuration: state stored under another one is not reused
    /// (as the filter's table signature does).
    pub fn limit_signature(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.algorithm, self.limit, self.period, self.burst
        )
    }
}

/// Faults an object injects, honoured only where the test hooks are enabled.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireFault {
    /// Answer with an error instead of deciding.
    pub fail: bool,
    /// Wait this long before deciding.
    pub delay_ms: u64,
}

/// A decide call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecideRequest {
    /// The checks of the request's rules that this object owns.
    pub checks: Vec<WireCheck>,
    /// A test clock (nanoseconds since the epoch); the object's own clock when absent.
    #[serde(default)]
    pub now: Option<u64>,
    /// Injected faults (tests only).
    #[serde(default)]
    pub fault: Option<WireFault>,
}

/// One rule's outcome, as the object decided it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireOutcome {
    /// `allowed`, `denied` or `shadow_denied`.
    pub status: WireStatus,
    /// Whether the rule's decision allowed the request.
    pub allowed: bool,
    /// Units per period.
    pub limit: u64,
    /// Units left.
    pub remaining: u64,
    /// Nanoseconds until the quota is whole again.
    pub reset_after: u64,
    /// Nanoseconds until a request of the same cost would fit (0 when allowed).
    pub retry_after: u64,
}

/// What an object can decide for one rule (store failures are the worker's to apply).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WireStatus {
    /// The rule allows the request.
    Allowed,
    /// An enforcing rule denies it.
    Denied,
    /// A shadow rule would deny it.
    ShadowDenied,
}

impl WireOutcome {
    /// The wire form of a rule's status and decision; `None` for a failure status, which an
    /// object never produces (it has no store that fails under it).
    pub fn new(status: Status, decision: &Decision) -> Option<WireOutcome> {
        let status = match status {
            Status::Allowed => WireStatus::Allowed,
            Status::Denied => WireStatus::Denied,
            Status::ShadowDenied => WireStatus::ShadowDenied,
            Status::FailedOpen | Status::FailedClosed => return None,
        };
        Some(WireOutcome {
            status,
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_after: decision.reset_after,
            retry_after: decision.retry_after,
        })
    }

    /// The core status.
    pub fn status(&self) -> Status {
        match self.status {
            WireStatus::Allowed => Status::Allowed,
            WireStatus::Denied => Status::Denied,
            WireStatus::ShadowDenied => Status::ShadowDenied,
        }
    }

    /// The core decision.
    pub fn decision(&self) -> Decision {
        Decision {
            allowed: self.allowed,
            limit: self.limit,
            remaining: self.remaining,
            reset_after: self.reset_after,
            retry_after: self.retry_after,
        }
    }
}

/// Which version of an object's states an answer shows. Every change an object makes to its
/// states (a commit or a refund) increments `seq`; `epoch` names the object's storage (set
/// when the storage is first used), so versions are only ordered within one epoch. The
/// worker's negative cache keeps the newest state it has seen of each key by this version,
/// whatever order the answers arrive in.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ObjectVersion {
    /// Names the object's storage.
    pub epoch: u64,
    /// Changes made to the object's states so far.
    pub seq: u64,
}

impl ObjectVersion {
    /// Whether an answer at `self` shows the states at least as recently as one at `other`.
    pub fn supersedes(&self, other: &ObjectVersion) -> bool {
        self.epoch != other.epoch || self.seq >= other.seq
    }
}

/// The answer to a decide call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecideResponse {
    /// The object's `now` (nanoseconds), which a refund must quote.
    pub now: u64,
    /// Per check: whether the object wrote a spend for it (its share of the request was
    /// allowed and the rule spent something), which a refund may have to take back.
    pub committed: Vec<bool>,
    /// One outcome per check, in order.
    pub outcomes: Vec<WireOutcome>,
    /// Per check: the key's state as the object holds it after this decide, as hex of
    /// `State::encode_into` (`None`: no state).
    pub states: Vec<Option<String>>,
    /// The version of the object's states those are.
    pub version: ObjectVersion,
}

/// A refund call: the checks of a decide that committed, and that decide's `now`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundRequest {
    /// The checks to refund.
    pub checks: Vec<WireCheck>,
    /// The `now` of the decide that committed them.
    pub committed_at: u64,
}

/// The answer to a refund call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundResponse {
    /// Keys whose spend was given back.
    pub refunded: u64,
    /// Per check: the key's state after the refund, as in [`DecideResponse::states`].
    pub states: Vec<Option<String>>,
    /// The version of the object's states those are.
    pub version: ObjectVersion,
}

/// The wire form of a state: hex of its versioned encoding.
pub fn state_to_wire(state: &State) -> String {
    let mut bytes = Vec::with_capacity(state.encoded_len());
    state.encode_into(&mut bytes);
    hex(&bytes)
}

/// A state from its wire form; `None` if it is not one.
pub fn state_from_wire(wire: &str) -> Option<State> {
    State::decode(&unhex(wire)?).ok()
}

/// The test-only rows call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowsRequest {
    /// A test clock (nanoseconds since the epoch): the object's clock moves to it first, as
    /// with a decide, so a clean-up due by then is started.
    #[serde(default)]
    pub now: Option<u64>,
}

/// The answer to the test-only rows call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowsResponse {
    /// Keys held in storage.
    pub rows: u64,
    /// Keys held in memory.
    pub in_memory: u64,
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The bytes of lowercase or uppercase hex; `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => Some(digit(*high)? << 4 | digit(*low)?),
            _ => None,
        })
        .collect()
}
