//! Metrics: defined per VM, one stat per name across every VM of the proxy,
//! with the rules of Envoy's counters, gauges and histograms.

mod common;

use common::{exchange, exchange_on, options, probe_request, result, start};
use sluice_host::{HistogramSummary, MetricValue};

fn metric(proxy: &sluice_host::Proxy, instruction: &str) -> Option<String> {
    let name = instruction
        .split(':')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    result(
        &exchange(proxy, probe_request(&[("x-probe-metric", instruction)])),
        &format!("metric-{name}"),
    )
}

#[test]
fn a_counter_defined_on_every_worker_is_one_stat() {
    let proxy = start(options().workers(3));
    for worker in 0..3 {
        let done = exchange_on(
            &proxy,
            worker,
            probe_request(&[("x-probe-metric", "counter:requests:inc:2")]),
        );
        assert_eq!(result(&done, "metric-requests").as_deref(), Some("0"));
    }
    assert_eq!(proxy.metrics().counter("requests"), Some(6));
    assert_eq!(
        metric(&proxy, "counter:requests:get:0").as_deref(),
        Some("0 value=6")
    );
}

#[test]
fn a_counter_refuses_a_delta_that_is_not_positive() {
    let proxy = start(options());
    let done = exchange(
        &proxy,
        probe_request(&[
            ("x-probe-raw", "counter-zero"),
            ("x-probe-raw", "counter-negative"),
        ]),
    );
    assert_eq!(result(&done, "raw-counter-zero").as_deref(), Some("2"));
    assert_eq!(result(&done, "raw-counter-negative").as_deref(), Some("2"));
    assert_eq!(proxy.metrics().counter("probe_bad_delta"), Some(0));
}

#[test]
fn recording_adds_to_a_counter_and_sets_a_gauge() {
    let proxy = start(options());
    assert_eq!(
        metric(&proxy, "counter:bytes:record:10").as_deref(),
        Some("0")
    );
    assert_eq!(
        metric(&proxy, "counter:bytes:record:5").as_deref(),
        Some("0")
    );
    assert_eq!(proxy.metrics().counter("bytes"), Some(15));
    assert_eq!(metric(&proxy, "gauge:open:inc:5").as_deref(), Some("0"));
    assert_eq!(metric(&proxy, "gauge:open:inc:-2").as_deref(), Some("0"));
    assert_eq!(
        metric(&proxy, "gauge:open:get:0").as_deref(),
        Some("0 value=3")
    );
    assert_eq!(metric(&proxy, "gauge:open:record:10").as_deref(), Some("0"));
    assert_eq!(proxy.metrics().value("open"), Some(MetricValue::Gauge(10)));
}

#[test]
fn a_histogram_records_values_and_has_no_single_value() {
    let proxy = start(options());
    for value in ["3", "7"] {
        assert_eq!(
            metric(&proxy, &format!("histogram:latency:record:{value}")).as_deref(),
            Some("0")
        );
    }
    assert_eq!(
        metric(&proxy, "histogram:latency:inc:1").as_deref(),
        Some("2")
    );
    let done = exchange(&proxy, probe_request(&[("x-probe-raw", "histogram-get")]));
    assert_eq!(result(&done, "raw-histogram-get").as_deref(), Some("2"));
    assert_eq!(
        proxy.metrics().histogram("latency"),
        Some(HistogramSummary {
            count: 2,
            sum: 10,
            min: Some(3),
            max: Some(7)
        })
    );
}

#[test]
fn unknown_ids_types_and_clashing_kinds_are_refused() {
    let proxy = start(options());
    let done = exchange(
        &proxy,
        probe_request(&[("x-probe-raw", "metric-unknown-id")]),
    );
    assert_eq!(
        result(&done, "raw-metric-unknown-id").as_deref(),
        Some("1"),
        "NOT_FOUND"
    );
    assert_eq!(metric(&proxy, "9:odd:inc:1").as_deref(), Some("define 2"));
    assert_eq!(metric(&proxy, "counter:dual:inc:1").as_deref(), Some("0"));
    assert_eq!(
        metric(&proxy, "gauge:dual:record:1").as_deref(),
        Some("define 2"),
        "one name is one stat"
    );
}
