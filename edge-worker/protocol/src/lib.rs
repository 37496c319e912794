//! The messages between the sluice edge worker and a limiter object, as JSON over the
//! object's `fetch`.
//!
//! A check travels with everything the object needs to decide it (rule name, algorithm,
//! quota, key, cost, mode), so an object never reads the configuration and a deploy that
//! changes a rule is seen by the object at its next request.
//!
//! Three calls decide: `decide` (a request's checks, all or nothing), `refund` (give back
//! what a decide committed when another object denied the request) and `lease` (versioned,
//! see [`LeaseRequest`]): an isolate acquires slices of a key's quota to spend locally and
//! returns what it did not spend. Every message an object or the worker receives is decoded
//! here, with an error that says what is wrong, never a panic.

use serde::{Deserialize, Serialize};
use sluice_core::{Algorithm, Check, Decision, FailureMode, Limit, Mode, Quota, State, Status};

/// Path of a decide call: decide every check, commit them all if the object's share of the
/// request is allowed.
pub const DECIDE_PATH: &str = "/decide";
/// Path of a refund call: give back what a decide committed, because another object denied
/// the same request.
pub const REFUND_PATH: &str = "/refund";
/// Path of a release call: give back the concurrency slots a request took, because it has
/// ended (its origin answered, or failed).
pub const RELEASE_PATH: &str = "/release";
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
    /// The rule's `delay.max`, nanoseconds: how long a request that does not fit may be held
    /// instead of denied (GCRA; 0, and absent on the wire: never held). Not part of the
    /// rule's signature: a state is the same with or without it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_delay: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
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
            // A soft rule decides as a shadow rule; only rendering tells them apart.
            shadow: !check.mode.enforces(),
            max_delay: check.limit.max_delay,
        }
    }

    /// The rule's algorithm and quota.
    pub fn limit(&self) -> Result<Limit, WireError> {
        let algorithm = match self.algorithm.as_str() {
            "gcra" => Algorithm::Gcra,
            "fixed_window" => Algorithm::FixedWindow,
            "sliding_window" => Algorithm::SlidingWindow,
            "sliding_log" => Algorithm::SlidingLog,
            "concurrency" => Algorithm::Concurrency,
            other => return Err(WireError::Algorithm(other.to_owned())),
        };
        let quota = Quota::new(self.limit, self.period, self.burst)
            .map_err(|e| WireError::Quota(e.to_string()))?;
        Ok(Limit::new(algorithm, quota).with_max_delay(self.max_delay))
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
    /// When allowed: nanoseconds the request must be held before it goes on (a rule with a
    /// `delay`; 0, and absent on the wire: at once).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay: u64,
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
            delay: decision.delay,
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
            delay: self.delay,
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

/// A release call: the concurrency checks of a decide that took slots, and that decide's
/// `now`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// The concurrency checks whose slots go back.
    pub checks: Vec<WireCheck>,
    /// The `now` of the decide that took them (which bucket each slot is counted in).
    pub taken_at: u64,
    /// A test clock (nanoseconds since the epoch); the object's own clock when absent.
    #[serde(default)]
    pub now: Option<u64>,
}

/// The answer to a release call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseResponse {
    /// Slots given back (a slot that had expired already comes back on its own: not counted).
    pub released: u64,
    /// Per check: the key's state after the release, as in [`DecideResponse::states`].
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

/// Path of a lease call: return unspent slices, decide checks (as `decide` does) and acquire
/// slices, in that order, in one step of the object.
pub const LEASE_PATH: &str = "/lease";
/// The version of the lease messages this build speaks (`v` in both directions). A message of
/// another version is refused with [`LeaseError::Version`], never half understood.
pub const LEASE_VERSION: u32 = 1;
/// The most items (checks, acquisitions and returns together) one lease call may carry.
pub const MAX_LEASE_ITEMS: usize = 64;

/// A lease call.
///
/// ```json
/// {"v": 1,
///  "return":  [{"check": {..., "cost": 7}, "granted_at": 1767225600000000000}],
///  "checks":  [{...}],
///  "acquire": [{"check": {..., "cost": 1}, "want": 20}]}
/// ```
///
/// - `return`: units of a slice the isolate did not spend (`check.cost` of them), granted at
///   `granted_at` on the object's clock; the object refunds them with `Limit::refund` (a
///   window that has ended gets nothing back: those units were spent in their window).
/// - `checks`: decided exactly as by a decide call, all or nothing among themselves.
/// - `acquire`: a slice of at least `check.cost` (the request waiting for it) and at most
///   `want` units, granted with `Limit::grant` and committed like a request of that cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// [`LEASE_VERSION`].
    pub v: u32,
    /// Slices (or parts) given back.
    #[serde(default, rename = "return", skip_serializing_if = "Vec::is_empty")]
    pub returns: Vec<WireReturn>,
    /// Checks decided as a decide call decides them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<WireCheck>,
    /// Slices asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acquire: Vec<WireAcquire>,
    /// A test clock (nanoseconds since the epoch); the object's own clock when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<u64>,
    /// Injected faults (tests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<WireFault>,
}

/// One slice asked for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WireAcquire {
    /// The rule and key; `cost` is the least slice that is of any use (the cost of the request
    /// waiting for it, at least 1).
    pub check: WireCheck,
    /// The most units wanted (at least `check.cost`).
    pub want: u64,
}

/// Units given back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WireReturn {
    /// The rule and key; `cost` is the number of units returned (at least 1).
    pub check: WireCheck,
    /// The object's `now` when it granted them (the lease answer's `now`).
    pub granted_at: u64,
}

/// The answer to a lease call. `now` is the object's clock: the `granted_at` of every grant
/// in it and the `committed_at` of its checks (for a refund call).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeaseResponse {
    /// [`LEASE_VERSION`].
    pub v: u32,
    /// The object's time of the call.
    pub now: u64,
    /// Per return: the key's state after it (as in [`DecideResponse::states`]).
    #[serde(default)]
    pub returned: Vec<Option<String>>,
    /// Per check: whether the object wrote a spend for it (see [`DecideResponse::committed`]).
    #[serde(default)]
    pub committed: Vec<bool>,
    /// Per check: its outcome.
    #[serde(default)]
    pub outcomes: Vec<WireOutcome>,
    /// Per check: the key's state after the call.
    #[serde(default)]
    pub states: Vec<Option<String>>,
    /// Per acquisition: what was granted.
    #[serde(default)]
    pub acquired: Vec<WireGrant>,
    /// The version of the object's states those are.
    pub version: ObjectVersion,
}

/// One slice granted (or not).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WireGrant {
    /// Units granted: 0 (not even the acquisition's `check.cost` fits), or between that and
    /// `want`.
    pub granted: u64,
    /// The decision for the units granted (allowed), or for `check.cost` (denied, or shadow
    /// denied for a shadow rule).
    pub outcome: WireOutcome,
    /// The key's state after the grant.
    pub state: Option<String>,
}

/// Why a lease message cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseError {
    /// Not JSON, or not of the message's shape.
    Json(String),
    /// Another version of the lease messages.
    Version(Option<u64>),
    /// More than [`MAX_LEASE_ITEMS`] items.
    TooManyItems(usize),
    /// An item's rule cannot be decided (what and which item).
    Check {
        /// `return`, `checks` or `acquire`.
        list: &'static str,
        /// The item's index in its list.
        index: usize,
        /// What is wrong with its check.
        error: WireError,
    },
    /// An acquisition asks for nothing (`check.cost` 0), or wants less than its least.
    Want {
        /// The acquisition's index.
        index: usize,
        /// Its `check.cost`.
        min: u64,
        /// Its `want`.
        want: u64,
    },
    /// An acquisition for an algorithm whose quota cannot be leased (the sliding log).
    NotLeasable {
        /// The acquisition's index.
        index: usize,
        /// The algorithm's name.
        algorithm: &'static str,
    },
    /// A return of no units.
    NothingReturned(usize),
    /// An answer that does not answer the call it came for.
    Mismatch(String),
}

impl core::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LeaseError::Json(error) => write!(f, "not a lease message: {error}"),
            LeaseError::Version(Some(v)) => write!(
                f,
                "lease message version {v}, this build speaks version {LEASE_VERSION}"
            ),
            LeaseError::Version(None) => write!(
                f,
                "lease message without a version (\"v\": {LEASE_VERSION} expected)"
            ),
            LeaseError::TooManyItems(n) => write!(
                f,
                "{n} items in one lease call, at most {MAX_LEASE_ITEMS} are allowed"
            ),
            LeaseError::Check { list, index, error } => {
                write!(f, "{list}[{index}]: {error}")
            }
            LeaseError::Want { index, min, want } => write!(
                f,
                "acquire[{index}]: wants {want} units with a least of {min}; the least (check.cost) must be at least 1 and at most want"
            ),
            LeaseError::NotLeasable { index, algorithm } => write!(
                f,
                "acquire[{index}]: a {algorithm} quota cannot be leased (its log would expire units before they are spent)"
            ),
            LeaseError::NothingReturned(index) => {
                write!(f, "return[{index}]: returns no units (check.cost is 0)")
            }
            LeaseError::Mismatch(what) => {
                write!(f, "the lease answer does not fit the call: {what}")
            }
        }
    }
}

/// The `v` of a message, read before anything else so that another version is refused as
/// such rather than for its fields.
fn version_of(text: &[u8]) -> Result<(), LeaseError> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| LeaseError::Json(e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(LeaseError::Json("expected a JSON object".to_owned()));
    };
    match object.get("v").map(serde_json::Value::as_u64) {
        Some(Some(v)) if v == u64::from(LEASE_VERSION) => Ok(()),
        Some(Some(v)) => Err(LeaseError::Version(Some(v))),
        Some(None) | None => Err(LeaseError::Version(None)),
    }
}

impl LeaseRequest {
    /// A lease call of this version with nothing in it.
    pub fn new() -> LeaseRequest {
        LeaseRequest {
            v: LEASE_VERSION,
            returns: Vec::new(),
            checks: Vec::new(),
            acquire: Vec::new(),
            now: None,
            fault: None,
        }
    }

    /// Items in the call.
    pub fn items(&self) -> usize {
        self.returns.len() + self.checks.len() + self.acquire.len()
    }

    /// Decodes and checks a lease call: its version, its size, every item's rule, the
    /// acquisitions' bounds and the returns' units.
    pub fn parse(text: &[u8]) -> Result<LeaseRequest, LeaseError> {
        version_of(text)?;
        let request: LeaseRequest =
            serde_json::from_slice(text).map_err(|e| LeaseError::Json(e.to_string()))?;
        request.validate()?;
        Ok(request)
    }

    /// The checks [`LeaseRequest::parse`] makes, on a call built in memory.
    pub fn validate(&self) -> Result<(), LeaseError> {
        if self.v != LEASE_VERSION {
            return Err(LeaseError::Version(Some(u64::from(self.v))));
        }
        if self.items() > MAX_LEASE_ITEMS {
            return Err(LeaseError::TooManyItems(self.items()));
        }
        let lists = [
            (
                "return",
                self.returns.iter().map(|r| &r.check).collect::<Vec<_>>(),
            ),
            ("checks", self.checks.iter().collect()),
            ("acquire", self.acquire.iter().map(|a| &a.check).collect()),
        ];
        for (list, checks) in lists {
            for (index, check) in checks.into_iter().enumerate() {
                check
                    .to_check()
                    .map_err(|error| LeaseError::Check { list, index, error })?;
            }
        }
        for (index, acquire) in self.acquire.iter().enumerate() {
            if let Ok(limit) = acquire.check.limit()
                && !limit.algorithm.supports_leases()
            {
                return Err(LeaseError::NotLeasable {
                    index,
                    algorithm: limit.algorithm.name(),
                });
            }
            if acquire.check.cost == 0 || acquire.want < acquire.check.cost {
                return Err(LeaseError::Want {
                    index,
                    min: acquire.check.cost,
                    want: acquire.want,
                });
            }
        }
        if let Some(index) = self.returns.iter().position(|r| r.check.cost == 0) {
            return Err(LeaseError::NothingReturned(index));
        }
        Ok(())
    }
}

impl Default for LeaseRequest {
    fn default() -> LeaseRequest {
        LeaseRequest::new()
    }
}

impl LeaseResponse {
    /// Decodes an answer and checks that it answers `request`: its version, one entry per
    /// return, check and acquisition, and every grant within what was asked (0, or between
    /// the acquisition's least and its `want`, with an allowing outcome).
    pub fn parse(text: &[u8], request: &LeaseRequest) -> Result<LeaseResponse, LeaseError> {
        version_of(text)?;
        let answer: LeaseResponse =
            serde_json::from_slice(text).map_err(|e| LeaseError::Json(e.to_string()))?;
        answer.answers(request)?;
        Ok(answer)
    }

    /// The checks of [`LeaseResponse::parse`] on an answer in memory.
    pub fn answers(&self, request: &LeaseRequest) -> Result<(), LeaseError> {
        if self.v != LEASE_VERSION {
            return Err(LeaseError::Version(Some(u64::from(self.v))));
        }
        let counts = [
            ("returned", self.returned.len(), request.returns.len()),
            ("committed", self.committed.len(), request.checks.len()),
            ("outcomes", self.outcomes.len(), request.checks.len()),
            ("states", self.states.len(), request.checks.len()),
            ("acquired", self.acquired.len(), request.acquire.len()),
        ];
        for (what, got, expected) in counts {
            if got != expected {
                return Err(LeaseError::Mismatch(format!(
                    "{got} {what} for {expected} items"
                )));
            }
        }
        for (index, (grant, acquire)) in self.acquired.iter().zip(&request.acquire).enumerate() {
            let fits = grant.granted == 0
                || (grant.granted >= acquire.check.cost && grant.granted <= acquire.want);
            if !fits {
                return Err(LeaseError::Mismatch(format!(
                    "acquired[{index}] grants {} units for a call of {}..={}",
                    grant.granted, acquire.check.cost, acquire.want
                )));
            }
            if (grant.granted > 0) != (grant.outcome.status == WireStatus::Allowed) {
                return Err(LeaseError::Mismatch(format!(
                    "acquired[{index}] grants {} units with status {:?}",
                    grant.granted, grant.outcome.status
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cost: u64) -> WireCheck {
        WireCheck {
            rule: "per-client".to_owned(),
            algorithm: "gcra".to_owned(),
            limit: 100,
            period: 60_000_000_000,
            burst: 100,
            key: hex(b"203.0.113.7"),
            cost,
            shadow: false,
            max_delay: 0,
        }
    }

    fn call() -> LeaseRequest {
        LeaseRequest {
            returns: vec![WireReturn {
                check: check(3),
                granted_at: 7,
            }],
            checks: vec![check(1)],
            acquire: vec![WireAcquire {
                check: check(2),
                want: 20,
            }],
            now: Some(5),
            ..LeaseRequest::new()
        }
    }

    fn outcome(status: WireStatus) -> WireOutcome {
        WireOutcome {
            status,
            allowed: status != WireStatus::Denied,
            limit: 100,
            remaining: 80,
            reset_after: 1,
            retry_after: 0,
            delay: 0,
        }
    }

    fn answer(granted: u64) -> LeaseResponse {
        LeaseResponse {
            v: LEASE_VERSION,
            now: 9,
            returned: vec![None],
            committed: vec![true],
            outcomes: vec![outcome(WireStatus::Allowed)],
            states: vec![None],
            acquired: vec![WireGrant {
                granted,
                outcome: outcome(if granted > 0 {
                    WireStatus::Allowed
                } else {
                    WireStatus::Denied
                }),
                state: None,
            }],
            version: ObjectVersion { epoch: 1, seq: 2 },
        }
    }

    fn error(text: &str) -> String {
        match LeaseRequest::parse(text.as_bytes()) {
            Ok(request) => panic!("{text} parsed as {request:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_call_and_its_answer_round_trip() {
        let request = call();
        let text = serde_json::to_string(&request).unwrap();
        assert!(text.contains("\"return\":"), "{text}");
        assert_eq!(LeaseRequest::parse(text.as_bytes()), Ok(request.clone()));
        for granted in [0, 2, 20] {
            let text = serde_json::to_string(&answer(granted)).unwrap();
            assert_eq!(
                LeaseResponse::parse(text.as_bytes(), &request),
                Ok(answer(granted))
            );
        }
    }

    #[test]
    fn another_version_is_refused_as_such() {
        let text = serde_json::to_string(&call())
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        assert_eq!(
            error(&text),
            "lease message version 2, this build speaks version 1"
        );
        // Even when the rest is of another shape.
        assert_eq!(
            error(r#"{"v": 3, "grab": []}"#),
            "lease message version 3, this build speaks version 1"
        );
        assert_eq!(
            error(r#"{"acquire": []}"#),
            "lease message without a version (\"v\": 1 expected)"
        );
        assert_eq!(
            error(r#"{"v": "1"}"#),
            "lease message without a version (\"v\": 1 expected)"
        );
    }

    #[test]
    fn malformed_calls_say_what_is_wrong() {
        assert!(error("").starts_with("not a lease message: "));
        assert!(error("\u{0}\u{ff}").starts_with("not a lease message: "));
        assert_eq!(error("[1]"), "not a lease message: expected a JSON object");
        assert!(error(r#"{"v": 1, "colour": "red"}"#).contains("unknown field `colour`"));
        assert!(
            error(r#"{"v": 1, "acquire": [{"check": {}, "want": 1}]}"#).contains("missing field")
        );

        let mut bad = call();
        bad.acquire[0].check.algorithm = "leaky".to_owned();
        let text = serde_json::to_string(&bad).unwrap();
        assert_eq!(error(&text), "acquire[0]: unknown algorithm \"leaky\"");

        let mut bad = call();
        bad.returns[0].check.key = "zz".to_owned();
        let text = serde_json::to_string(&bad).unwrap();
        assert_eq!(error(&text), "return[0]: the key is not hex");

        let mut bad = call();
        bad.checks[0].period = 0;
        let text = serde_json::to_string(&bad).unwrap();
        assert!(error(&text).starts_with("checks[0]: invalid quota: "));

        let mut bad = call();
        bad.acquire[0].want = 1;
        let text = serde_json::to_string(&bad).unwrap();
        assert!(error(&text).starts_with("acquire[0]: wants 1 units with a least of 2"));

        let mut bad = call();
        bad.acquire[0].check.cost = 0;
        let text = serde_json::to_string(&bad).unwrap();
        assert!(error(&text).starts_with("acquire[0]: wants 20 units with a least of 0"));

        let mut bad = call();
        bad.acquire[0].check.algorithm = "sliding_log".to_owned();
        let text = serde_json::to_string(&bad).unwrap();
        assert!(error(&text).starts_with("acquire[0]: a sliding_log quota cannot be leased"));

        let mut bad = call();
        bad.returns[0].check.cost = 0;
        let text = serde_json::to_string(&bad).unwrap();
        assert_eq!(
            error(&text),
            "return[0]: returns no units (check.cost is 0)"
        );

        let mut big = LeaseRequest::new();
        big.checks = vec![check(1); MAX_LEASE_ITEMS + 1];
        let text = serde_json::to_string(&big).unwrap();
        assert_eq!(
            error(&text),
            "65 items in one lease call, at most 64 are allowed"
        );
    }

    #[test]
    fn an_answer_must_answer_its_call() {
        let request = call();
        let refused = |answer: LeaseResponse| {
            let text = serde_json::to_string(&answer).unwrap();
            match LeaseResponse::parse(text.as_bytes(), &request) {
                Ok(answer) => panic!("accepted {answer:?}"),
                Err(error) => error.to_string(),
            }
        };
        let mut short = answer(5);
        short.acquired.clear();
        assert_eq!(
            refused(short),
            "the lease answer does not fit the call: 0 acquired for 1 items"
        );
        assert_eq!(
            refused(answer(21)),
            "the lease answer does not fit the call: acquired[0] grants 21 units for a call of 2..=20"
        );
        assert_eq!(
            refused(answer(1)),
            "the lease answer does not fit the call: acquired[0] grants 1 units for a call of 2..=20"
        );
        let mut denied_but_granted = answer(5);
        if let Some(grant) = denied_but_granted.acquired.first_mut() {
            grant.outcome = outcome(WireStatus::Denied);
        }
        assert!(refused(denied_but_granted).contains("grants 5 units with status Denied"));
        let mut old = answer(5);
        old.v = 0;
        assert_eq!(
            refused(old),
            "lease message version 0, this build speaks version 1"
        );
        assert!(
            LeaseResponse::parse(b"{\"v\":1}", &request)
                .unwrap_err()
                .to_string()
                .contains("missing field")
        );
    }

    #[test]
    fn a_delay_travels_with_its_check_and_its_outcome_and_is_absent_when_zero() {
        let mut wire = check(1);
        assert!(!serde_json::to_string(&wire).unwrap().contains("max_delay"));
        wire.max_delay = 300_000_000;
        let text = serde_json::to_string(&wire).unwrap();
        assert!(text.contains("\"max_delay\":300000000"), "{text}");
        let back: WireCheck = serde_json::from_str(&text).unwrap();
        assert_eq!(back.limit().unwrap().max_delay, 300_000_000);
        // A check from a worker that sends no delay decides without one.
        let plain: WireCheck =
            serde_json::from_str(&serde_json::to_string(&check(1)).unwrap()).unwrap();
        assert_eq!(plain.limit().unwrap().max_delay, 0);

        let held = Decision {
            allowed: true,
            limit: 10,
            remaining: 0,
            reset_after: 400_000_000,
            retry_after: 0,
            delay: 200_000_000,
        };
        let outcome = WireOutcome::new(Status::Allowed, &held).unwrap();
        let text = serde_json::to_string(&outcome).unwrap();
        let back: WireOutcome = serde_json::from_str(&text).unwrap();
        assert_eq!(back.decision(), held);
        let at_once = WireOutcome::new(Status::Allowed, &Decision { delay: 0, ..held }).unwrap();
        assert!(!serde_json::to_string(&at_once).unwrap().contains("delay"));
    }

    #[test]
    fn a_concurrency_check_travels_with_its_release() {
        let mut wire = check(1);
        wire.algorithm = "concurrency".to_owned();
        wire.limit = 10;
        wire.burst = 10;
        let limit = wire.limit().unwrap();
        assert_eq!(limit.algorithm, Algorithm::Concurrency);
        assert!(!limit.algorithm.supports_leases());
        let release = ReleaseRequest {
            checks: vec![wire.clone()],
            taken_at: 7,
            now: Some(9),
        };
        let back: ReleaseRequest =
            serde_json::from_str(&serde_json::to_string(&release).unwrap()).unwrap();
        assert_eq!(back.checks, vec![wire]);
        assert_eq!((back.taken_at, back.now), (7, Some(9)));
        // Without a test clock the object uses its own.
        let plain: ReleaseRequest =
            serde_json::from_str(r#"{"checks": [], "taken_at": 7}"#).unwrap();
        assert_eq!(plain.now, None);
    }
}
