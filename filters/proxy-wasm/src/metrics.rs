//! Per-rule counters, defined once per VM in `on_configure`. Envoy exposes them as
//! `wasmcustom.sluice.<rule>.<counter>`; every VM increments the same process-wide stat.

use sluice_core::{RuleOutcome, Status};

use crate::host;

/// The ids of one rule's counters (`None` where the host refused to define one).
#[derive(Debug, Default, Clone, Copy)]
struct RuleCounters {
    allowed: Option<u32>,
    denied: Option<u32>,
    shadow_denied: Option<u32>,
    failed_open: Option<u32>,
    failed_closed: Option<u32>,
    cas_retries: Option<u32>,
    store_errors: Option<u32>,
}

/// Every rule's counters, in rule order, plus the filter-wide ones.
#[derive(Debug, Default)]
pub struct Metrics {
    rules: Vec<RuleCounters>,
    exempt: Option<u32>,
}

impl Metrics {
    /// Defines the counters of every rule.
    pub fn define<'a>(rule_names: impl Iterator<Item = &'a str>) -> Metrics {
        let counter =
            |rule: &str, what: &str| host::define_counter(&format!("sluice.{rule}.{what}"));
        Metrics {
            rules: rule_names
                .map(|rule| RuleCounters {
                    allowed: counter(rule, "allowed"),
                    denied: counter(rule, "denied"),
                    shadow_denied: counter(rule, "shadow_denied"),
                    failed_open: counter(rule, "failed_open"),
                    failed_closed: counter(rule, "failed_closed"),
                    cas_retries: counter(rule, "cas_retries"),
                    store_errors: counter(rule, "store_errors"),
                })
                .collect(),
            exempt: host::define_counter("sluice.exempt"),
        }
    }

    /// Counts one rule's outcome for one request.
    pub fn record(&self, rule: usize, outcome: &RuleOutcome) {
        let Some(counters) = self.rules.get(rule) else {
            return;
        };
        let status = match outcome.status {
            Status::Allowed => counters.allowed,
            Status::Denied => counters.denied,
            Status::ShadowDenied => counters.shadow_denied,
            Status::FailedOpen => counters.failed_open,
            Status::FailedClosed => counters.failed_closed,
        };
        bump(status, 1);
        bump(counters.cas_retries, u64::from(outcome.cas_retries));
        bump(
            counters.store_errors,
            u64::from(outcome.store_error.is_some()),
        );
    }

    /// Counts a request that an exemption let through unchecked.
    pub fn record_exempt(&self) {
        bump(self.exempt, 1);
    }
}

fn bump(id: Option<u32>, delta: u64) {
    if let Some(id) = id {
        host::increment(id, delta);
    }
}

/// The counters of calls to the rate-limit service (defined only when a rule is global).
#[derive(Debug, Default, Clone, Copy)]
pub struct CallCounters {
    calls: Option<u32>,
    call_errors: Option<u32>,
}

impl CallCounters {
    /// Defines `sluice.global.calls` and `sluice.global.call_errors`.
    pub fn define() -> CallCounters {
        CallCounters {
            calls: host::define_counter("sluice.global.calls"),
            call_errors: host::define_counter("sluice.global.call_errors"),
        }
    }

    /// Counts one call made (or attempted).
    pub fn record_call(&self) {
        bump(self.calls, 1);
    }

    /// Counts one call that gave no usable answer.
    pub fn record_error(&self) {
        bump(self.call_errors, 1);
    }
}

/// A global rule's lease and negative-cache counters (`sluice.<rule>.lease_*`,
/// `sluice.<rule>.negative_cache`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LeaseCounters {
    acquired: Option<u32>,
    renewed: Option<u32>,
    returned: Option<u32>,
    expired: Option<u32>,
    local: Option<u32>,
    negative_cache: Option<u32>,
}

impl LeaseCounters {
    /// Defines the counters of global rule `rule`.
    pub fn define(rule: &str) -> LeaseCounters {
        let counter = |what: &str| host::define_counter(&format!("sluice.{rule}.{what}"));
        LeaseCounters {
            acquired: counter("lease_acquired"),
            renewed: counter("lease_renewed"),
            returned: counter("lease_returned"),
            expired: counter("lease_expired"),
            local: counter("lease_local"),
            negative_cache: counter("negative_cache"),
        }
    }

    /// A slice acquired by a request that found none.
    pub fn acquired(&self) {
        bump(self.acquired, 1);
    }

    /// A slice renewed in the background.
    pub fn renewed(&self) {
        bump(self.renewed, 1);
    }

    /// Unspent units sent back to the service (one return item).
    pub fn returned(&self) {
        bump(self.returned, 1);
    }

    /// A slice that expired with units left.
    pub fn expired(&self) {
        bump(self.expired, 1);
    }

    /// A request decided from a slice, with no call.
    pub fn local(&self) {
        bump(self.local, 1);
    }

    /// A request denied by the negative cache, with no call.
    pub fn negative_cache(&self) {
        bump(self.negative_cache, 1);
    }
}
