//! Pausing, resuming and resetting streams. A callback answering `Pause`
//! holds the stream until `proxy_continue_stream`, here called by the probe
//! from its tick (with `proxy_set_effective_context`). Ticks come from the
//! test, from the fake clock passing the tick period, or from real timers.

mod common;

use std::time::Duration;

use common::{exchange, options, probe_request, start};
use sluice_host::{Clock, HostError, HttpRequest, HttpResponse, RequestOutcome, ResponseOutcome};

const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(5);

#[test]
fn a_paused_request_waits_for_a_tick_to_resume_it() {
    let proxy = start(options().plugin_config("tick_ms=1000"));
    let (mut stream, outcome) = proxy
        .begin(0, probe_request(&[("x-probe-pause", "request")]))
        .expect("the stream begins");
    assert_eq!(outcome, RequestOutcome::Paused);
    assert_eq!(
        stream.wait_request(SHORT).expect("no error"),
        RequestOutcome::Paused
    );
    assert!(proxy.tick(0).expect("the worker ticks"));
    let resumed = stream.wait_request(LONG).expect("an outcome");
    assert!(resumed.forwarded().is_some(), "{resumed:?}");
    let response = stream
        .response(HttpResponse::new(204))
        .expect("a response outcome");
    assert_eq!(
        response.forwarded().map(|response| response.status),
        Some(204)
    );
}

#[test]
fn the_fake_clock_fires_the_tick_when_it_passes_the_period() {
    let proxy = start(options().plugin_config("tick_ms=1000"));
    let fake = proxy.clock().as_fake().cloned().expect("a fake clock");
    let (mut stream, _) = proxy
        .begin(0, probe_request(&[("x-probe-pause", "request")]))
        .expect("the stream begins");
    fake.advance(Duration::from_millis(999));
    assert_eq!(
        stream.wait_request(SHORT).expect("no error"),
        RequestOutcome::Paused
    );
    fake.advance(Duration::from_millis(1));
    let resumed = stream.wait_request(LONG).expect("an outcome");
    assert!(resumed.forwarded().is_some(), "{resumed:?}");
    assert_eq!(proxy.metrics().counter("probe_ticks"), Some(1));
}

#[test]
fn real_timers_fire_ticks_with_the_system_clock() {
    let proxy = start(options().clock(Clock::System).plugin_config("tick_ms=20"));
    let (mut stream, _) = proxy
        .begin(0, probe_request(&[("x-probe-pause", "request")]))
        .expect("the stream begins");
    let resumed = stream.wait_request(LONG).expect("an outcome");
    assert!(resumed.forwarded().is_some(), "{resumed:?}");
}

#[test]
fn continuing_during_the_callback_resumes_once_it_returns() {
    let proxy = start(options());
    let (_stream, outcome) = proxy
        .begin(0, probe_request(&[("x-probe-pause-self-resume", "1")]))
        .expect("the stream begins");
    assert!(outcome.forwarded().is_some(), "{outcome:?}");
}

#[test]
fn a_paused_body_resumes_with_its_body() {
    let proxy = start(options().plugin_config("tick_ms=1000"));
    let request = HttpRequest::new("POST", "/", "example.com")
        .header("x-probe-pause", "request-body")
        .body("payload");
    let (mut stream, outcome) = proxy.begin(0, request).expect("the stream begins");
    assert_eq!(outcome, RequestOutcome::Paused);
    assert!(proxy.tick(0).expect("the worker ticks"));
    let resumed = stream.wait_request(LONG).expect("an outcome");
    assert_eq!(
        resumed.forwarded().map(|request| request.body.as_slice()),
        Some(&b"payload"[..])
    );
}

#[test]
fn a_paused_response_waits_for_a_tick() {
    let proxy = start(options().plugin_config("tick_ms=1000"));
    let (mut stream, outcome) = proxy
        .begin(0, probe_request(&[("x-probe-pause", "response")]))
        .expect("the stream begins");
    assert!(outcome.forwarded().is_some());
    let response = stream
        .response(HttpResponse::new(200).body("late"))
        .expect("an outcome");
    assert_eq!(response, ResponseOutcome::Paused);
    assert!(proxy.tick(0).expect("the worker ticks"));
    let resumed = stream.wait_response(LONG).expect("an outcome");
    assert_eq!(
        resumed.forwarded().map(|response| response.body.as_slice()),
        Some(&b"late"[..])
    );
}

#[test]
fn an_exchange_gives_up_on_a_stream_nobody_resumes() {
    let proxy = start(options().pause_timeout(SHORT));
    let error = proxy
        .exchange(0, probe_request(&[("x-probe-pause", "request")]), |_| {
            HttpResponse::new(200)
        })
        .expect_err("nothing resumes the stream");
    assert!(
        matches!(
            error,
            HostError::PauseTimedOut {
                phase: "request",
                ..
            }
        ),
        "{error}"
    );
    assert!(
        proxy.logs().contains("probe on_done 2"),
        "the stream was ended"
    );
}

#[test]
fn ending_a_paused_stream_runs_its_end_callbacks() {
    let proxy = start(options());
    let (stream, _) = proxy
        .begin(0, probe_request(&[("x-probe-pause", "request")]))
        .expect("the stream begins");
    drop(stream);
    assert!(proxy.logs().contains("probe on_done 2"));
    assert!(proxy.logs().contains("probe on_log 2 status=none"));
}

#[test]
fn without_a_tick_period_there_is_no_tick() {
    let proxy = start(options());
    assert!(!proxy.tick(0).expect("the worker answers"));
    assert_eq!(exchange(&proxy, HttpRequest::get("/")).status(), Some(200));
}

#[test]
fn a_reset_stream_gets_no_response() {
    let proxy = start(options());
    let done = exchange(&proxy, probe_request(&[("x-probe-reset", "request")]));
    assert_eq!(done.request, RequestOutcome::Reset);
    assert_eq!(done.status(), None);
}
