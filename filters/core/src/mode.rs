//! How a rule acts on its decision, and what it does when the counter store fails.

/// `Enforce` denies; `Shadow` lets every request through but counts and logs what it would deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Requests the rule denies are denied.
    #[default]
    Enforce,
    /// Requests the rule would deny pass, reported as [`crate::Status::ShadowDenied`].
    Shadow,
}

/// What a rule decides when its counter cannot be read or written (store error, CAS retries
/// exhausted): `Open` allows the request, `Closed` denies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    /// Allow the request: an outage of the store does not become an outage of the service.
    #[default]
    Open,
    /// Deny the request: for rules that protect something that must not be overrun.
    Closed,
}
