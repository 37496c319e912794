//! The service's Prometheus metrics, served at `GET /metrics` in the text exposition format.
//! Labels are bounded by the configuration (domains, rules) and by fixed sets (api, status):
//! nothing a client sends becomes a label value unless the configuration names it.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sluice_core::Status;
use sluice_policy::warning::Reason;

/// Which protocol a request came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// Envoy's RLS v3 over gRPC.
    Grpc,
    /// Envoy's RLS v3 as JSON (`POST /json`).
    Json,
    /// sluice's decide API (`POST /v1/decide`), used by the filter.
    Decide,
    /// sluice's lease API (`POST /v1/lease`), used by the filter for leased rules.
    Lease,
}

impl Api {
    fn label(self) -> &'static str {
        match self {
            Api::Grpc => "grpc",
            Api::Json => "json",
            Api::Decide => "decide",
            Api::Lease => "lease",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    domain: String,
    rule: String,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MarkLabels {
    domain: String,
    rule: String,
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LeaseLabels {
    domain: String,
    rule: String,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UnitLabels {
    domain: String,
    rule: String,
    kind: &'static str,
}

/// Which way lease units went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitsKind {
    /// Granted in a slice.
    Granted,
    /// Given back by a holder and restored on the key.
    Returned,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

/// How a request to the service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    /// Decided; every enforcing rule allowed.
    Allowed,
    /// Decided; a rule denied (or failed closed).
    Denied,
    /// The request was malformed or named an unknown domain, rule or limit.
    Rejected,
    /// Too many requests in flight: answered without deciding.
    Overloaded,
}

impl RequestResult {
    fn label(self) -> &'static str {
        match self {
            RequestResult::Allowed => "allowed",
            RequestResult::Denied => "denied",
            RequestResult::Rejected => "rejected",
            RequestResult::Overloaded => "overloaded",
        }
    }
}

/// Statuses in the order of [`RuleCounters`].
const STATUSES: [Status; 5] = [
    Status::Allowed,
    Status::Denied,
    Status::ShadowDenied,
    Status::FailedOpen,
    Status::FailedClosed,
];

fn status_index(status: Status) -> usize {
    match status {
        Status::Allowed => 0,
        Status::Denied => 1,
        Status::ShadowDenied => 2,
        Status::FailedOpen => 3,
        Status::FailedClosed => 4,
    }
}

fn status_label(status: Status) -> &'static str {
    match status {
        Status::Allowed => "allowed",
        Status::Denied => "denied",
        Status::ShadowDenied => "shadow_denied",
        Status::FailedOpen => "failed_open",
        Status::FailedClosed => "failed_closed",
    }
}

/// One rule's decision counters, one per status, registered once (at start) so that counting
/// a decision neither allocates label strings nor looks them up. Clones share the counters.
#[derive(Debug, Clone)]
pub struct RuleCounters {
    by_status: [Counter; 5],
    /// Requests the rule marked (a soft limit), by reason in the order of [`REASONS`].
    marked: [Counter; 2],
}

/// Why a rule marks a request, in the order of [`RuleCounters`]'s marks.
const REASONS: [Reason; 2] = [Reason::Exceeded, Reason::Low];

fn reason_index(reason: Reason) -> usize {
    match reason {
        Reason::Exceeded => 0,
        Reason::Low => 1,
    }
}

/// Every metric the service keeps.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    decisions: Family<DecisionLabels, Counter>,
    marked: Family<MarkLabels, Counter>,
    leases: Family<LeaseLabels, Counter>,
    lease_units: Family<UnitLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<ApiLabels, Histogram>,
    round_trips: Counter,
    store_errors: Counter,
    in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sluice_service");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Rule decisions, by domain, rule and outcome",
            decisions.clone(),
        );
        let marked = Family::<MarkLabels, Counter>::default();
        registry.register(
            "marked",
            "Passed requests a soft limit marked with the warning header, by domain, rule and reason (exceeded: over a soft rule's limit; low: at or under warn_at.remaining)",
            marked.clone(),
        );
        let leases = Family::<LeaseLabels, Counter>::default();
        registry.register(
            "leases",
            "Lease acquisitions, by domain, rule and result (granted, denied, shadow_denied, failed_open, failed_closed)",
            leases.clone(),
        );
        let lease_units = Family::<UnitLabels, Counter>::default();
        registry.register(
            "lease_units",
            "Units granted in leases and units given back and restored, by domain, rule and kind",
            lease_units.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests to the service, by API and result",
            requests.clone(),
        );
        let latency = Family::<ApiLabels, Histogram>::new_with_constructor(|| {
            // 50 µs to ~1.6 s.
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        registry.register(
            "decision_duration_seconds",
            "Time to decide a request, from its arrival to its answer, by API",
            latency.clone(),
        );
        let round_trips = Counter::default();
        registry.register(
            "store_round_trips",
            "Round trips to Redis made for decisions",
            round_trips.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Rule decisions the store could not make (Redis errors, timeouts, contention): the rule's failure mode applied",
            store_errors.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight", "Requests being decided now", in_flight.clone());
        Metrics {
            registry: Arc::new(registry),
            decisions,
            marked,
            leases,
            lease_units,
            requests,
            latency,
            round_trips,
            store_errors,
            in_flight,
        }
    }

    /// Registers `rule` of `domain` (every status, at 0) and returns its counters, for
    /// [`Metrics::count_decision`].
    pub fn rule_counters(&self, domain: &str, rule: &str) -> RuleCounters {
        RuleCounters {
            by_status: STATUSES.map(|status| {
                self.decisions
                    .get_or_create(&DecisionLabels {
                        domain: domain.to_owned(),
                        rule: rule.to_owned(),
                        status: status_label(status),
                    })
                    .clone()
            }),
            marked: REASONS.map(|reason| {
                self.marked
                    .get_or_create(&MarkLabels {
                        domain: domain.to_owned(),
                        rule: rule.to_owned(),
                        reason: reason.name(),
                    })
                    .clone()
            }),
        }
    }

    /// Counts a request `counters`' rule marked, for `reason`.
    pub fn count_mark(&self, counters: &RuleCounters, reason: Reason) {
        if let Some(counter) = counters.marked.get(reason_index(reason)) {
            counter.inc();
        }
    }

    /// Counts a mark, looking its counter up by name (allocates the labels).
    pub fn mark(&self, domain: &str, rule: &str, reason: Reason) {
        self.marked
            .get_or_create(&MarkLabels {
                domain: domain.to_owned(),
                rule: rule.to_owned(),
                reason: reason.name(),
            })
            .inc();
    }

    /// Counts one rule's outcome on its pre-registered counters.
    pub fn count_decision(&self, counters: &RuleCounters, status: Status, store_failed: bool) {
        if let Some(counter) = counters.by_status.get(status_index(status)) {
            counter.inc();
        }
        if store_failed {
            self.store_errors.inc();
        }
    }

    /// Counts one rule's outcome, looking its counter up by name (allocates the labels; the
    /// decider uses [`Metrics::count_decision`]).
    pub fn decision(&self, domain: &str, rule: &str, status: Status, store_failed: bool) {
        self.decisions
            .get_or_create(&DecisionLabels {
                domain: domain.to_owned(),
                rule: rule.to_owned(),
                status: status_label(status),
            })
            .inc();
        if store_failed {
            self.store_errors.inc();
        }
    }

    /// Counts one lease acquisition: its outcome, and the units granted.
    pub fn lease(&self, domain: &str, rule: &str, status: Status, granted: u64) {
        let result = match status {
            Status::Allowed => "granted",
            Status::Denied => "denied",
            Status::ShadowDenied => "shadow_denied",
            Status::FailedOpen => "failed_open",
            Status::FailedClosed => "failed_closed",
        };
        self.leases
            .get_or_create(&LeaseLabels {
                domain: domain.to_owned(),
                rule: rule.to_owned(),
                result,
            })
            .inc();
        self.lease_units(domain, rule, UnitsKind::Granted, granted);
    }

    /// Counts lease units granted or restored.
    pub fn lease_units(&self, domain: &str, rule: &str, kind: UnitsKind, units: u64) {
        let kind = match kind {
            UnitsKind::Granted => "granted",
            UnitsKind::Returned => "returned",
        };
        self.lease_units
            .get_or_create(&UnitLabels {
                domain: domain.to_owned(),
                rule: rule.to_owned(),
                kind,
            })
            .inc_by(units);
    }

    /// Counts a rule step the store could not make.
    pub fn store_error(&self) {
        self.store_errors.inc();
    }

    /// Counts one request and its latency.
    pub fn request(&self, api: Api, result: RequestResult, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                api: api.label(),
                result: result.label(),
            })
            .inc();
        self.latency
            .get_or_create(&ApiLabels { api: api.label() })
            .observe(took.as_secs_f64());
    }

    /// Counts store round trips.
    pub fn round_trips(&self, count: u32) {
        self.round_trips.inc_by(u64::from(count));
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
