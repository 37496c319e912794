//! Starting a proxy: every worker starts its VM as Envoy does, and a filter
//! rejecting its configuration fails the start with its own log lines.

mod common;

use common::{exchange, options, probe_request, result, start};
use sluice_host::{FilterModule, HostError, LogOrigin, Proxy};

#[test]
fn a_rejected_configuration_fails_the_start_with_the_filters_log_line() {
    let error = Proxy::start(options().plugin_config("reject=burst must be positive"))
        .expect_err("the filter rejects its configuration");
    let HostError::ConfigurationRejected { worker, logs } = &error else {
        panic!("a rejected configuration, got {error}");
    };
    assert_eq!(*worker, 0);
    assert!(
        logs.0
            .iter()
            .any(|record| record.message == "burst must be positive")
    );
    assert!(
        error.to_string().contains("burst must be positive"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("proxy_on_configure returned false"),
        "{error}"
    );
}

#[test]
fn a_rejected_vm_configuration_fails_the_start() {
    let error = Proxy::start(options().vm_config("reject")).expect_err("the filter rejects its VM");
    assert!(
        matches!(error, HostError::VmStartRejected { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("probe: vm configuration rejected"),
        "{error}"
    );
}

#[test]
fn a_trap_while_configuring_fails_the_start() {
    let error = Proxy::start(options().workers(2).plugin_config("trap=configure"))
        .expect_err("the filter traps");
    let HostError::StartTrapped { callback, trap, .. } = &error else {
        panic!("a trap, got {error}");
    };
    assert_eq!(*callback, "proxy_on_configure");
    assert!(trap.contains("unreachable"), "{trap}");
}

#[test]
fn the_plugin_configuration_is_read_while_configuring_only() {
    let proxy = start(options().plugin_config("tick_ms=5;name=demo"));
    let done = exchange(
        &proxy,
        probe_request(&[
            ("x-probe-echo-config", "1"),
            ("x-probe-raw", "plugin-config-outside-configure"),
        ]),
    );
    assert_eq!(
        result(&done, "config").as_deref(),
        Some("tick_ms=5;name=demo")
    );
    assert_eq!(
        result(&done, "raw-plugin-config-outside-configure").as_deref(),
        Some("1"),
        "NOT_FOUND outside proxy_on_configure, as Envoy"
    );
    assert!(proxy.logs().contains("probe configured (19 bytes)"));
}

#[test]
fn the_vm_configuration_is_readable_at_any_time() {
    let proxy = start(options().vm_config("vm settings"));
    let done = exchange(&proxy, probe_request(&[("x-probe-raw", "vm-config")]));
    assert_eq!(
        result(&done, "raw-vm-config").as_deref(),
        Some("0 value=vm settings")
    );
}

#[test]
fn every_worker_starts_and_configures_its_own_vm() {
    let proxy = start(options().workers(3));
    let mut workers: Vec<usize> = proxy
        .logs()
        .records()
        .into_iter()
        .filter(|record| record.message.starts_with("probe configured"))
        .filter_map(|record| match record.origin {
            LogOrigin::Filter { vm, context_id } => {
                assert_eq!(context_id, 1, "configured in the root context");
                Some(vm.worker)
            }
            LogOrigin::Host { .. } => None,
        })
        .collect();
    workers.sort_unstable();
    assert_eq!(workers, [0, 1, 2]);
}

#[test]
fn a_proxy_needs_a_worker() {
    let error = Proxy::start(options().workers(0)).expect_err("no workers");
    assert!(matches!(error, HostError::NoWorkers));
}

#[test]
fn modules_that_are_not_filters_are_refused_with_the_reason() {
    let empty_module = b"\0asm\x01\0\0\0";
    assert!(matches!(
        FilterModule::from_bytes(empty_module),
        Err(HostError::UnsupportedAbi)
    ));
    assert!(matches!(
        FilterModule::from_bytes(b"not wasm"),
        Err(HostError::Compile { .. })
    ));
    let missing = FilterModule::from_file("/nonexistent/filter.wasm").expect_err("no such file");
    assert!(
        missing.to_string().contains("/nonexistent/filter.wasm"),
        "{missing}"
    );
}
