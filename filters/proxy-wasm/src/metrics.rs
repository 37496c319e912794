//! Per-rule counters, defined once per VM in `on_configure`. Envoy exposes them as
//! `wasmcustom.sluice.<rule>.<counter>`; every VM increments the same process-wide stat.
//!
//! A request only counts in the VM's memory: each `proxy_increment_metric` crosses into the
//! proxy (and takes a shared-memory lock in ngx_wasm_module), which costs more than the
//! counting. What a VM counted reaches the proxy's counters in [`Metrics::flush`], called on
//! the root context's timer (about once a second, [`FLUSH_PERIOD`], or the leases' shorter
//! period when a rule has a lease) and when the VM is done
//! (`proxy_on_done` of the root context, which Envoy calls at VM shutdown), one host call per
//! counter that moved.

use std::cell::Cell;
use std::time::Duration;

use sluice_core::{RuleOutcome, Status};

use crate::host;

/// How often a VM's counts are flushed to the proxy's counters.
pub const FLUSH_PERIOD: Duration = Duration::from_secs(1);

/// One counter: its id (`None` where the host refused to define it) and what this VM counted
/// since the last flush.
#[derive(Debug, Default)]
struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Counter {
    fn define(name: &str) -> Counter {
        Counter {
            id: host::define_counter(name),
            pending: Cell::new(0),
        }
    }

    fn add(&self, delta: u64) {
        self.pending.set(self.pending.get().saturating_add(delta));
    }

    fn flush(&self) {
        let delta = self.pending.replace(0);
        if delta == 0 {
            return;
        }
        if let Some(id) = self.id {
            host::increment(id, delta);
        }
    }
}

/// The counters of one rule.
#[derive(Debug, Default)]
struct RuleCounters {
    allowed: Counter,
    denied: Counter,
    shadow_denied: Counter,
    failed_open: Counter,
    failed_closed: Counter,
    cas_retries: Counter,
    store_errors: Counter,
    /// Passed requests the rule marked (soft limits); defined only for rules that can mark.
    marked: Counter,
    /// Slots given back when requests ended; defined only for concurrency rules.
    released: Counter,
}

impl RuleCounters {
    fn all(&self) -> [&Counter; 9] {
        [
            &self.allowed,
            &self.denied,
            &self.shadow_denied,
            &self.failed_open,
            &self.failed_closed,
            &self.cas_retries,
            &self.store_errors,
            &self.marked,
            &self.released,
        ]
    }
}

/// What a rule's counters are defined for.
pub struct RuleMetrics<'a> {
    /// The rule's name.
    pub name: &'a str,
    /// It can mark a request (`sluice.<rule>.marked`).
    pub marks: bool,
    /// It is a concurrency rule (`sluice.<rule>.released`).
    pub releases: bool,
}

/// Every rule's counters, in rule order, plus the filter-wide ones.
#[derive(Debug, Default)]
pub struct Metrics {
    rules: Vec<RuleCounters>,
    exempt: Counter,
}

impl Metrics {
    /// Defines the counters of every rule (`sluice.<rule>.marked` only for a rule that can
    /// mark a request, `sluice.<rule>.released` only for a concurrency rule).
    pub fn define<'a>(rules: impl Iterator<Item = RuleMetrics<'a>>) -> Metrics {
        let counter = |rule: &str, what: &str| Counter::define(&format!("sluice.{rule}.{what}"));
        let optional = |defined: bool, rule: &str, what: &str| {
            if defined {
                counter(rule, what)
            } else {
                Counter::default()
            }
        };
        Metrics {
            rules: rules
                .map(|rule_metrics| {
                    let RuleMetrics {
                        name: rule,
                        marks,
                        releases,
                    } = rule_metrics;
                    RuleCounters {
                        allowed: counter(rule, "allowed"),
                        denied: counter(rule, "denied"),
                        shadow_denied: counter(rule, "shadow_denied"),
                        failed_open: counter(rule, "failed_open"),
                        failed_closed: counter(rule, "failed_closed"),
                        cas_retries: counter(rule, "cas_retries"),
                        store_errors: counter(rule, "store_errors"),
                        marked: optional(marks, rule, "marked"),
                        released: optional(releases, rule, "released"),
                    }
                })
                .collect(),
            exempt: Counter::define("sluice.exempt"),
        }
    }

    /// Counts one rule's outcome for one request.
    pub fn record(&self, rule: usize, outcome: &RuleOutcome) {
        let Some(counters) = self.rules.get(rule) else {
            return;
        };
        let status = match outcome.status {
            Status::Allowed => &counters.allowed,
            Status::Denied => &counters.denied,
            Status::ShadowDenied => &counters.shadow_denied,
            Status::FailedOpen => &counters.failed_open,
            Status::FailedClosed => &counters.failed_closed,
        };
        status.add(1);
        counters.cas_retries.add(u64::from(outcome.cas_retries));
        counters
            .store_errors
            .add(u64::from(outcome.store_error.is_some()));
    }

    /// Counts a passed request that rule `rule` marked.
    pub fn record_marked(&self, rule: usize) {
        if let Some(counters) = self.rules.get(rule) {
            counters.marked.add(1);
        }
    }

    /// Counts a slot of concurrency rule `rule` given back when its request ended.
    pub fn record_released(&self, rule: usize) {
        if let Some(counters) = self.rules.get(rule) {
            counters.released.add(1);
        }
    }

    /// Counts a request that an exemption let through unchecked.
    pub fn record_exempt(&self) {
        self.exempt.add(1);
    }

    /// Adds what this VM counted since the last flush to the proxy's counters.
    pub fn flush(&self) {
        for rule in &self.rules {
            for counter in rule.all() {
                counter.flush();
            }
        }
        self.exempt.flush();
    }
}

/// The counters of calls to the rate-limit service (defined only when a rule is global),
/// counted and flushed like [`Metrics`].
#[derive(Debug, Default)]
pub struct CallCounters {
    calls: Counter,
    call_errors: Counter,
}

impl CallCounters {
    /// Defines `sluice.global.calls` and `sluice.global.call_errors`.
    pub fn define() -> CallCounters {
        CallCounters {
            calls: Counter::define("sluice.global.calls"),
            call_errors: Counter::define("sluice.global.call_errors"),
        }
    }

    /// Counts one call made (or attempted).
    pub fn record_call(&self) {
        self.calls.add(1);
    }

    /// Counts one call that gave no usable answer.
    pub fn record_error(&self) {
        self.call_errors.add(1);
    }

    /// Adds what this VM counted since the last flush to the proxy's counters.
    pub fn flush(&self) {
        self.calls.flush();
        self.call_errors.flush();
    }
}

/// A global rule's lease and negative-cache counters (`sluice.<rule>.lease_*`,
/// `sluice.<rule>.negative_cache`), counted and flushed like [`Metrics`].
#[derive(Debug, Default)]
pub struct LeaseCounters {
    acquired: Counter,
    renewed: Counter,
    returned: Counter,
    expired: Counter,
    local: Counter,
    negative_cache: Counter,
}

impl LeaseCounters {
    /// Defines the counters of global rule `rule`.
    pub fn define(rule: &str) -> LeaseCounters {
        let counter = |what: &str| Counter::define(&format!("sluice.{rule}.{what}"));
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
        self.acquired.add(1);
    }

    /// A slice renewed in the background.
    pub fn renewed(&self) {
        self.renewed.add(1);
    }

    /// Unspent units sent back to the service (one return item).
    pub fn returned(&self) {
        self.returned.add(1);
    }

    /// A slice that expired with units left.
    pub fn expired(&self) {
        self.expired.add(1);
    }

    /// A request decided from a slice, with no call.
    pub fn local(&self) {
        self.local.add(1);
    }

    /// A request denied by the negative cache, with no call.
    pub fn negative_cache(&self) {
        self.negative_cache.add(1);
    }

    /// Adds what this VM counted since the last flush to the proxy's counters.
    pub fn flush(&self) {
        for counter in [
            &self.acquired,
            &self.renewed,
            &self.returned,
            &self.expired,
            &self.local,
            &self.negative_cache,
        ] {
            counter.flush();
        }
    }
}

/// The counters of requests held by delay rules (defined only when a rule has a `delay`),
/// counted and flushed like [`Metrics`].
#[derive(Debug, Default)]
pub struct HoldCounters {
    held: Counter,
    refused: Counter,
    abandoned: Counter,
}

impl HoldCounters {
    /// Defines `sluice.held`, `sluice.held_refused` and `sluice.held_abandoned`.
    pub fn define() -> HoldCounters {
        HoldCounters {
            held: Counter::define("sluice.held"),
            refused: Counter::define("sluice.held_refused"),
            abandoned: Counter::define("sluice.held_abandoned"),
        }
    }

    /// A request held until its slot.
    pub fn held(&self) {
        self.held.add(1);
    }

    /// A request denied because the VM held `shaping.max_held` requests already.
    pub fn refused(&self) {
        self.refused.add(1);
    }

    /// A held request whose stream ended before it was released (its units given back).
    pub fn abandoned(&self) {
        self.abandoned.add(1);
    }

    /// Adds what this VM counted since the last flush to the proxy's counters.
    pub fn flush(&self) {
        self.held.flush();
        self.refused.flush();
        self.abandoned.flush();
    }
}
