//! How a rule acts on its decision, and what it does when the counter store fails.

/// `Enforce` denies; `Shadow` lets every request through but counts and logs what it would deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// What a rule decides when its counter cannot be read or written (store error, CAS retries
/// exhausted): `Open` allows the request, `Closed` denies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    #[default]
    Open,
    Closed,
}
