//! How a rule acts on its decision, and what it does when the counter store fails.

/// `Enforce` denies; `Shadow` lets every request through but counts and logs what it would deny;
/// `Soft` lets every request through like `Shadow`, and the policy tells the client and the
/// upstream about the requests it would deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Requests the rule denies are denied.
    #[default]
    Enforce,
    /// Requests the rule would deny pass, reported as [`crate::Status::ShadowDenied`].
    Shadow,
    /// Requests the rule would deny pass, reported as [`crate::Status::ShadowDenied`] and
    /// counted nothing, exactly as in `Shadow`; unlike `Shadow`, the policy advertises the
    /// rule in the rate-limit headers and marks the requests it would deny.
    Soft,
}

impl Mode {
    /// Whether the rule's denials deny the request (`Enforce`); `Shadow` and `Soft` rules
    /// never deny.
    pub fn enforces(self) -> bool {
        self == Mode::Enforce
    }
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
