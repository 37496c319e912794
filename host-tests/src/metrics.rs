//! Metrics defined by filters, one registry for every VM of a proxy.
//!
//! As in Envoy, a metric is identified by its name: every VM that defines
//! `requests` updates the same stat (Envoy names it `wasmcustom.requests`).
//! Metric ids are per VM; the registry is keyed by name.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::types::Status;

/// `proxy_metric_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_code(code: u32) -> Option<MetricKind> {
        match code {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

/// What a histogram has recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistogramSummary {
    pub count: u64,
    pub sum: u64,
    pub min: Option<u64>,
    pub max: Option<u64>,
}

/// The value of one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricValue {
    Counter(u64),
    Gauge(u64),
    Histogram(HistogramSummary),
}

impl MetricValue {
    fn kind(&self) -> MetricKind {
        match self {
            MetricValue::Counter(_) => MetricKind::Counter,
            MetricValue::Gauge(_) => MetricKind::Gauge,
            MetricValue::Histogram(_) => MetricKind::Histogram,
        }
    }

    fn new(kind: MetricKind) -> MetricValue {
        match kind {
            MetricKind::Counter => MetricValue::Counter(0),
            MetricKind::Gauge => MetricValue::Gauge(0),
            MetricKind::Histogram => MetricValue::Histogram(HistogramSummary::default()),
        }
    }
}

/// The metrics registry. Cloning shares it.
#[derive(Clone, Default)]
pub struct Metrics {
    values: Arc<Mutex<BTreeMap<String, MetricValue>>>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, MetricValue>> {
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the metric if it does not exist. A name already used by a
    /// metric of another kind is refused: one name is one stat.
    pub(crate) fn define(&self, kind: MetricKind, name: &str) -> Result<(), Status> {
        let mut values = self.lock();
        match values.get(name) {
            Some(existing) if existing.kind() != kind => Err(Status::BadArgument),
            Some(_) => Ok(()),
            None => {
                values.insert(name.to_string(), MetricValue::new(kind));
                Ok(())
            }
        }
    }

    /// `proxy_increment_metric`: a counter only goes up (a delta ≤ 0 is
    /// refused); a gauge moves either way, never below zero; a histogram
    /// cannot be incremented.
    pub(crate) fn increment(&self, name: &str, delta: i64) -> Result<(), Status> {
        let mut values = self.lock();
        let value = values.get_mut(name).ok_or(Status::NotFound)?;
        match value {
            MetricValue::Counter(count) => {
                if delta <= 0 {
                    return Err(Status::BadArgument);
                }
                *count = count.saturating_add(delta.unsigned_abs());
            }
            MetricValue::Gauge(level) => {
                *level = if delta >= 0 {
                    level.saturating_add(delta.unsigned_abs())
                } else {
                    level.saturating_sub(delta.unsigned_abs())
                };
            }
            MetricValue::Histogram(_) => return Err(Status::BadArgument),
        }
        Ok(())
    }

    /// `proxy_record_metric`: as Envoy, a counter is increased by `value`, a
    /// gauge is set to it, a histogram records it.
    pub(crate) fn record(&self, name: &str, value: u64) -> Result<(), Status> {
        let mut values = self.lock();
        let metric = values.get_mut(name).ok_or(Status::NotFound)?;
        match metric {
            MetricValue::Counter(count) => *count = count.saturating_add(value),
            MetricValue::Gauge(level) => *level = value,
            MetricValue::Histogram(summary) => {
                summary.count = summary.count.saturating_add(1);
                summary.sum = summary.sum.saturating_add(value);
                summary.min = Some(summary.min.map_or(value, |min| min.min(value)));
                summary.max = Some(summary.max.map_or(value, |max| max.max(value)));
            }
        }
        Ok(())
    }

    /// `proxy_get_metric`: counters and gauges have a value; Envoy answers
    /// `BAD_ARGUMENT` for a histogram.
    pub(crate) fn get(&self, name: &str) -> Result<u64, Status> {
        match self.lock().get(name) {
            Some(MetricValue::Counter(value) | MetricValue::Gauge(value)) => Ok(*value),
            Some(MetricValue::Histogram(_)) => Err(Status::BadArgument),
            None => Err(Status::NotFound),
        }
    }

    /// Every metric, by name.
    pub fn snapshot(&self) -> BTreeMap<String, MetricValue> {
        self.lock().clone()
    }

    /// One metric.
    pub fn value(&self, name: &str) -> Option<MetricValue> {
        self.lock().get(name).copied()
    }

    /// A counter's value, `None` if there is no counter of that name.
    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.value(name) {
            Some(MetricValue::Counter(value)) => Some(value),
            _ => None,
        }
    }

    /// A gauge's value, `None` if there is no gauge of that name.
    pub fn gauge(&self, name: &str) -> Option<u64> {
        match self.value(name) {
            Some(MetricValue::Gauge(value)) => Some(value),
            _ => None,
        }
    }

    /// A histogram's summary, `None` if there is no histogram of that name.
    pub fn histogram(&self, name: &str) -> Option<HistogramSummary> {
        match self.value(name) {
            Some(MetricValue::Histogram(summary)) => Some(summary),
            _ => None,
        }
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.lock().iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_only_accepts_positive_increments() {
        let metrics = Metrics::new();
        assert_eq!(metrics.define(MetricKind::Counter, "hits"), Ok(()));
        assert_eq!(metrics.increment("hits", 3), Ok(()));
        assert_eq!(metrics.increment("hits", 0), Err(Status::BadArgument));
        assert_eq!(metrics.increment("hits", -1), Err(Status::BadArgument));
        assert_eq!(metrics.record("hits", 2), Ok(()));
        assert_eq!(metrics.counter("hits"), Some(5));
    }

    #[test]
    fn a_gauge_moves_both_ways_without_going_below_zero() {
        let metrics = Metrics::new();
        assert_eq!(metrics.define(MetricKind::Gauge, "open"), Ok(()));
        assert_eq!(metrics.increment("open", 4), Ok(()));
        assert_eq!(metrics.increment("open", -10), Ok(()));
        assert_eq!(metrics.get("open"), Ok(0));
        assert_eq!(metrics.record("open", 7), Ok(()));
        assert_eq!(metrics.gauge("open"), Some(7));
    }

    #[test]
    fn a_histogram_summarises_what_it_records() {
        let metrics = Metrics::new();
        assert_eq!(metrics.define(MetricKind::Histogram, "latency"), Ok(()));
        for value in [5, 1, 9] {
            assert_eq!(metrics.record("latency", value), Ok(()));
        }
        assert_eq!(metrics.get("latency"), Err(Status::BadArgument));
        assert_eq!(metrics.increment("latency", 1), Err(Status::BadArgument));
        assert_eq!(
            metrics.histogram("latency"),
            Some(HistogramSummary {
                count: 3,
                sum: 15,
                min: Some(1),
                max: Some(9)
            })
        );
    }

    #[test]
    fn one_name_is_one_metric() {
        let metrics = Metrics::new();
        assert_eq!(metrics.define(MetricKind::Counter, "x"), Ok(()));
        assert_eq!(metrics.define(MetricKind::Counter, "x"), Ok(()));
        assert_eq!(
            metrics.define(MetricKind::Gauge, "x"),
            Err(Status::BadArgument)
        );
        assert_eq!(metrics.increment("missing", 1), Err(Status::NotFound));
    }
}
