//! Logs: every line the filter writes, with its level and the VM that wrote
//! it, filtered by the proxy's log level; and the order of the context
//! callbacks, which the probe logs.

mod common;

use common::{exchange, exchange_on, options, probe_request, result, start};
use sluice_host::{LogLevel, LogOrigin, VmLabel};

fn levels_of(proxy: &sluice_host::Proxy, message: &str) -> Vec<LogLevel> {
    proxy
        .logs()
        .records()
        .into_iter()
        .filter(|record| record.message == message)
        .map(|record| record.level)
        .collect()
}

#[test]
fn every_level_is_captured_with_the_vm_and_context_that_wrote_it() {
    let proxy = start(options());
    exchange(&proxy, probe_request(&[("x-probe-log-all", "hello")]));
    assert_eq!(
        levels_of(&proxy, "hello"),
        [
            LogLevel::Trace,
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warn,
            LogLevel::Error,
            LogLevel::Critical
        ]
    );
    let record = proxy
        .logs()
        .records()
        .into_iter()
        .find(|record| record.message == "hello")
        .expect("a record");
    let LogOrigin::Filter { vm, context_id } = record.origin else {
        panic!("written by the filter, got {:?}", record.origin);
    };
    assert_eq!(
        vm,
        VmLabel {
            worker: 0,
            instance: 1
        }
    );
    assert_eq!(context_id, 2, "the first stream after the root context");
}

#[test]
fn lines_below_the_log_level_are_dropped_and_the_filter_can_ask_for_it() {
    let proxy = start(options().log_level(LogLevel::Warn));
    let done = exchange(
        &proxy,
        probe_request(&[
            ("x-probe-log-all", "filtered"),
            ("x-probe-raw", "log-level"),
        ]),
    );
    assert_eq!(
        levels_of(&proxy, "filtered"),
        [LogLevel::Warn, LogLevel::Error, LogLevel::Critical]
    );
    assert_eq!(result(&done, "raw-log-level").as_deref(), Some("0 value=3"));
}

#[test]
fn stdout_and_stderr_become_info_and_error_lines() {
    let proxy = start(options());
    exchange(
        &proxy,
        probe_request(&[("x-probe-raw", "stdout"), ("x-probe-raw", "stderr")]),
    );
    assert_eq!(levels_of(&proxy, "probe stdout line"), [LogLevel::Info]);
    assert_eq!(levels_of(&proxy, "probe stderr line"), [LogLevel::Error]);
}

#[test]
fn an_unknown_level_is_a_bad_argument() {
    let proxy = start(options());
    let done = exchange(&proxy, probe_request(&[("x-probe-log", "loud:too much")]));
    assert_eq!(result(&done, "log").as_deref(), Some("2"));
    assert!(!proxy.logs().contains("too much"));
}

#[test]
fn the_context_callbacks_run_in_envoys_order() {
    let proxy = start(options());
    exchange(&proxy, probe_request(&[]));
    let messages = proxy.logs().messages();
    let position = |prefix: &str| {
        messages
            .iter()
            .position(|message| message.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in {messages:#?}"))
    };
    let order = [
        position("probe vm started"),
        position("probe configured"),
        position("probe context 2 created"),
        position("probe request headers 2"),
        position("probe response headers 2"),
        position("probe response body 2"),
        position("probe on_log 2"),
        position("probe on_done 2"),
    ];
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "{messages:#?}"
    );
    assert!(
        proxy.logs().contains("probe on_log 2 status=200"),
        "the log phase still reads the response headers"
    );
}

#[test]
fn records_name_the_worker_whose_vm_wrote_them() {
    let proxy = start(options().workers(2));
    exchange_on(
        &proxy,
        1,
        probe_request(&[("x-probe-log", "info:from one")]),
    );
    let record = proxy
        .logs()
        .records()
        .into_iter()
        .find(|record| record.message == "from one")
        .expect("a record");
    assert_eq!(record.origin.vm().worker, 1);
    let of_worker_one = proxy.logs().records_of(record.origin.vm());
    assert!(
        of_worker_one
            .iter()
            .all(|line| line.origin.vm().worker == 1)
    );
    assert!(
        of_worker_one
            .iter()
            .any(|line| line.message == "probe vm started")
    );
}
