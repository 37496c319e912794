//! Host-call counting: a counting module reports, per stream, how often the filter called
//! each host function, forwarding every call unchanged; a plain module reports nothing.

mod common;

use common::{exchange, options, probe, probe_request, result, start};
use sluice_host::{FilterModule, FuelMetering, HostCallCounting, ProxyOptions};

fn counting_probe() -> FilterModule {
    let wasm = std::fs::read(env!("PROBE_FILTER_WASM")).expect("the probe filter exists");
    FilterModule::compile_instrumented(&wasm, FuelMetering::On, HostCallCounting::On)
        .expect("the probe filter compiles with counting")
}

fn counting() -> ProxyOptions {
    ProxyOptions {
        module: counting_probe(),
        ..options()
    }
}

#[test]
fn each_host_function_is_counted_per_stream() {
    let proxy = start(counting());
    let plain = exchange(&proxy, probe_request(&[])).report;
    let calls = plain.host_calls.expect("a counting module counts");
    // The probe reads the request headers once, and nothing else without instructions.
    assert_eq!(calls.get("proxy_get_header_map_pairs"), 1, "{calls:?}");
    assert_eq!(calls.get("proxy_get_shared_data"), 0);

    let busy = exchange(
        &proxy,
        probe_request(&[
            ("x-probe-shared-set", "k=v"),
            ("x-probe-shared-get", "k"),
            ("x-probe-shared-get", "missing"),
        ]),
    );
    let calls = busy.report.host_calls.clone().expect("counted");
    assert_eq!(calls.get("proxy_get_shared_data"), 2, "{calls:?}");
    assert_eq!(calls.get("proxy_set_shared_data"), 1, "{calls:?}");
    assert!(calls.total() > calls.get("proxy_get_shared_data"));
    // The calls were forwarded: the value written was read back.
    let read = result(&busy, "shared-get-k").expect("a result");
    assert!(read.starts_with('0') && read.contains("value=v"), "{read}");
    let missing = result(&busy, "shared-get-missing").expect("a result");
    assert!(missing.starts_with("1"), "NOT_FOUND: {missing}");
}

#[test]
fn the_counts_are_the_same_for_the_same_request() {
    let proxy = start(counting());
    let request = || probe_request(&[("x-probe-log", "info:hello")]);
    let first = exchange(&proxy, request()).report.host_calls;
    let second = exchange(&proxy, request()).report.host_calls;
    assert_eq!(first, second);
    // The instruction logs one line more than the probe's own lifecycle lines.
    let plain = exchange(&proxy, probe_request(&[])).report.host_calls;
    let logged = |calls: Option<sluice_host::HostCalls>| calls.expect("counted").get("proxy_log");
    assert_eq!(logged(first), logged(plain) + 1);
}

#[test]
fn a_plain_module_counts_nothing_and_says_so() {
    assert_eq!(probe().host_call_counting(), HostCallCounting::Off);
    assert_eq!(counting_probe().host_call_counting(), HostCallCounting::On);
    let proxy = start(options());
    assert_eq!(exchange(&proxy, probe_request(&[])).report.host_calls, None);
}

#[test]
fn only_wasi_functions_of_wasmtime_wasi_go_uncounted() {
    let module = counting_probe();
    assert!(
        module
            .uncounted_imports()
            .iter()
            .all(|name| name.starts_with("wasi_snapshot_preview1.")
                && name != "wasi_snapshot_preview1.fd_write"),
        "{:?}",
        module.uncounted_imports()
    );
}

/// Ticks run on the root context, outside any stream: their fuel and host calls are reported
/// apart (`Proxy::tick_report`), so the work a tick does for streams (here resuming one) can
/// be weighed, and a stream's report holds only its own callbacks.
#[test]
fn ticks_are_reported_apart_from_the_streams_they_resume() {
    let proxy = start(counting().plugin_config("tick_ms=1000"));
    let before = proxy.tick_report(0).expect("the worker answers");
    assert_eq!(before.ticks, 0);
    let (mut stream, outcome) = proxy
        .begin(0, probe_request(&[("x-probe-pause", "request")]))
        .expect("the stream begins");
    assert_eq!(outcome, sluice_host::RequestOutcome::Paused);
    for _ in 0..3 {
        assert!(proxy.tick(0).expect("the worker ticks"));
    }
    let after = proxy.tick_report(0).expect("the worker answers");
    assert_eq!(after.ticks, 3);
    assert!(after.fuel_consumed.expect("metered") > 0, "{after:?}");
    let ticks = after.host_calls.expect("counted");
    // Every tick counts `probe_ticks`; the first resumed the paused stream.
    assert_eq!(ticks.get("proxy_increment_metric"), 3, "{ticks:?}");
    assert_eq!(ticks.get("proxy_continue_stream"), 1, "{ticks:?}");
    let since = ticks.since(&before.host_calls.expect("counted"));
    assert_eq!(since, ticks, "nothing was counted before the first tick");
    let resumed = stream
        .wait_request(std::time::Duration::from_secs(5))
        .expect("an outcome");
    assert!(resumed.forwarded().is_some(), "{resumed:?}");
    stream
        .response(sluice_host::HttpResponse::new(200))
        .expect("a response");
    let report = stream.finish().expect("the stream ends");
    let own = report.host_calls.expect("counted");
    assert_eq!(own.get("proxy_continue_stream"), 0, "{own:?}");
    assert_eq!(own.get("proxy_increment_metric"), 0, "{own:?}");
}

#[test]
fn a_plain_module_reports_its_ticks_without_fuel_or_calls() {
    let proxy = start(options().plugin_config("tick_ms=1000"));
    assert!(proxy.tick(0).expect("the worker ticks"));
    let report = proxy.tick_report(0).expect("the worker answers");
    assert_eq!(report.ticks, 1);
    assert_eq!((report.fuel_consumed, report.host_calls), (None, None));
}
