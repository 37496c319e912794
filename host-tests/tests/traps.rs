//! Traps: as in Envoy, the stream fails with a local 503, the VM is marked
//! failed and replaced by a fresh one for later streams, and the other
//! workers carry on.

mod common;

use std::time::Duration;

use common::{START_NS, exchange, exchange_on, options, probe, probe_request, start};
use sluice_host::{Clock, HttpRequest, LogLevel, LogOrigin, ProxyOptions, RequestOutcome, VmLabel};

/// The VMs that logged `probe vm started`, in order.
fn started_vms(proxy: &sluice_host::Proxy) -> Vec<VmLabel> {
    proxy
        .logs()
        .records()
        .into_iter()
        .filter(|record| record.message == "probe vm started")
        .map(|record| record.origin.vm())
        .collect()
}

#[test]
fn a_trap_fails_the_stream_with_503_and_the_trap_message() {
    let proxy = start(options());
    let done = exchange(&proxy, probe_request(&[("x-probe-trap", "request")]));
    let RequestOutcome::Failed(failure) = &done.request else {
        panic!("the stream fails, got {:?}", done.request);
    };
    assert_eq!(failure.status, 503);
    assert_eq!(failure.details, "wasm_fail_stream");
    assert!(failure.trap.contains("unreachable"), "{}", failure.trap);
    assert_eq!(done.status(), Some(503));
    assert!(proxy.logs().records().iter().any(|record| {
        record.level == LogLevel::Critical
            && matches!(record.origin, LogOrigin::Host { .. })
            && record.message.contains("proxy_on_request_headers")
    }));
}

#[test]
fn the_trapped_vm_is_replaced_for_later_streams() {
    let proxy = start(options());
    exchange(&proxy, probe_request(&[("x-probe-trap", "request")]));
    let done = exchange(&proxy, probe_request(&[]));
    assert_eq!(done.status(), Some(200));
    assert_eq!(
        started_vms(&proxy),
        [
            VmLabel {
                worker: 0,
                instance: 1
            },
            VmLabel {
                worker: 0,
                instance: 2
            }
        ],
        "a second VM was started and configured"
    );
    assert_eq!(
        proxy
            .logs()
            .messages()
            .iter()
            .filter(|m| m.starts_with("probe configured"))
            .count(),
        2
    );
}

#[test]
fn other_workers_carry_on() {
    let proxy = start(options().workers(2).plugin_config("tick_ms=1000"));
    let (mut paused, outcome) = proxy
        .begin(1, probe_request(&[("x-probe-pause", "request")]))
        .expect("the stream begins");
    assert_eq!(outcome, RequestOutcome::Paused);
    let trapped = exchange_on(&proxy, 0, probe_request(&[("x-probe-trap", "request")]));
    assert_eq!(trapped.status(), Some(503));
    assert!(proxy.tick(1).expect("worker 1 ticks"));
    let resumed = paused
        .wait_request(Duration::from_secs(2))
        .expect("the stream resumes");
    assert!(
        resumed.forwarded().is_some(),
        "worker 1's stream survived: {resumed:?}"
    );
    let vms = started_vms(&proxy);
    assert_eq!(
        vms.iter().filter(|vm| vm.worker == 1).count(),
        1,
        "worker 1 kept its VM"
    );
    assert_eq!(vms.iter().filter(|vm| vm.worker == 0).count(), 2);
}

#[test]
fn streams_paused_on_the_trapped_vm_fail_with_it() {
    let proxy = start(options());
    let (mut paused, _) = proxy
        .begin(0, probe_request(&[("x-probe-pause", "request")]))
        .expect("the stream begins");
    exchange(&proxy, probe_request(&[("x-probe-trap", "request")]));
    let outcome = paused
        .wait_request(Duration::from_secs(2))
        .expect("an outcome");
    assert_eq!(outcome.failure().map(|failure| failure.status), Some(503));
    let report = paused.finish().expect("the stream ends");
    assert_eq!(report.trap, None, "its VM is gone: no end callbacks run");
}

#[test]
fn a_panic_logs_its_message_before_the_trap() {
    let proxy = start(options());
    let done = exchange(&proxy, probe_request(&[("x-probe-trap", "panic")]));
    assert_eq!(done.status(), Some(503));
    assert!(proxy.logs().records().iter().any(|record| {
        record.level == LogLevel::Critical && record.message.contains("probe panic requested")
    }));
}

#[test]
fn a_trap_while_ending_the_stream_is_reported_and_the_vm_replaced() {
    let proxy = start(options());
    let done = exchange(&proxy, probe_request(&[("x-probe-trap", "log")]));
    assert_eq!(done.status(), Some(200), "the response was already sent");
    assert!(done.report.trap.is_some());
    assert_eq!(exchange(&proxy, HttpRequest::get("/")).status(), Some(200));
    assert_eq!(started_vms(&proxy).len(), 2);
}

#[test]
fn a_trap_in_a_tick_replaces_the_vm() {
    let proxy = start(options().plugin_config("tick_ms=1000"));
    exchange(&proxy, probe_request(&[("x-probe-trap", "tick")]));
    assert!(proxy.tick(0).expect("the worker ticks"));
    assert!(proxy.logs().contains("the filter trapped in proxy_on_tick"));
    assert_eq!(started_vms(&proxy).len(), 2);
    assert_eq!(exchange(&proxy, HttpRequest::get("/")).status(), Some(200));
}

#[test]
fn ngx_wasm_module_fails_the_stream_with_500() {
    let proxy = start(
        ProxyOptions::ngx_wasm_module(probe())
            .clock(Clock::fake(START_NS))
            .log_level(LogLevel::Trace),
    );
    let done = exchange(&proxy, probe_request(&[("x-probe-trap", "request")]));
    assert_eq!(done.status(), Some(500));
}
