//! Calls this host does not support (shared queues, foreign functions)
//! answer `UNIMPLEMENTED` (12) rather than trap, and say so in the logs;
//! calls with arguments the ABI does not define answer `BAD_ARGUMENT` (2).
//! (gRPC calls are supported: `grpc_calls.rs`.)

mod common;

use common::{exchange, options, probe, probe_request, result, start};
use sluice_host::LogLevel;

fn raw(operations: &[&str]) -> (sluice_host::Proxy, sluice_host::Exchange) {
    let proxy = start(options());
    let instructions: Vec<(&str, &str)> = operations
        .iter()
        .map(|operation| ("x-probe-raw", *operation))
        .collect();
    let done = exchange(&proxy, probe_request(&instructions));
    (proxy, done)
}

#[test]
fn calls_the_host_does_not_support_answer_unimplemented() {
    let operations = [
        "foreign-function",
        "register-queue",
        "resolve-queue",
        "enqueue-queue",
        "dequeue-queue",
    ];
    let (proxy, done) = raw(&operations);
    for operation in operations {
        assert_eq!(
            result(&done, &format!("raw-{operation}")).as_deref(),
            Some("12"),
            "{operation}"
        );
    }
    assert!(proxy.logs().records().iter().any(|record| {
        record.level == LogLevel::Warn && record.message.contains("proxy_call_foreign_function")
    }));
    assert_eq!(done.status(), Some(200), "the stream carries on");
}

#[test]
fn an_http_call_to_a_cluster_the_host_does_not_have_is_a_bad_argument() {
    let (_proxy, done) = raw(&["http-call"]);
    assert_eq!(result(&done, "raw-http-call").as_deref(), Some("2"));
    assert_eq!(done.status(), Some(200), "the stream carries on");
}

#[test]
fn an_import_the_host_does_not_know_answers_unimplemented() {
    assert_eq!(probe().unknown_imports(), ["proxy_probe_unknown_hostcall"]);
    let (proxy, done) = raw(&["unknown-hostcall"]);
    assert_eq!(result(&done, "raw-unknown-hostcall").as_deref(), Some("12"));
    assert!(proxy.logs().contains("env.proxy_probe_unknown_hostcall"));
}

#[test]
fn lifecycle_calls_answer_as_envoy_does() {
    let (_proxy, done) = raw(&["get-status", "done", "effective-context-unknown"]);
    assert_eq!(
        result(&done, "raw-get-status").as_deref(),
        Some("0 value=0:"),
        "no call was made: code 0, no message"
    );
    assert_eq!(
        result(&done, "raw-done").as_deref(),
        Some("1"),
        "no context is pending"
    );
    assert_eq!(
        result(&done, "raw-effective-context-unknown").as_deref(),
        Some("2")
    );
}

#[test]
fn values_outside_the_abi_enumerations_are_bad_arguments() {
    let operations = [
        "continue-bad-type",
        "buffer-bad-type",
        "map-bad-type",
        "log-bad-level",
    ];
    let (_proxy, done) = raw(&operations);
    for operation in operations {
        assert_eq!(
            result(&done, &format!("raw-{operation}")).as_deref(),
            Some("2"),
            "{operation}"
        );
    }
}
