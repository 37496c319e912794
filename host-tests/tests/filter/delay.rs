//! Delay (throttle) rules through the real filter: a held request is paused in its request
//! headers and resumed from the root context's tick (`proxy_set_effective_context` to its
//! stream, then `proxy_continue_stream`) when its slot comes.
//!
//! Stated tolerance: on the fake clock a held request reaches the upstream when the clock
//! reaches its release time, or at most 1 ms later (the filter sets its tick in whole
//! milliseconds, rounded up); on the real clock, no earlier than its release time and at most
//! [`REAL_CLOCK_SLACK`] later (timer and thread scheduling on a loaded machine).
//!
//! ngx_wasm_module cannot resume a stream from the root context (its
//! `proxy_set_effective_context` accepts any id and switches nothing, and its tick period can
//! be set only once): there the filter holds nothing and a delay rule denies as it would
//! without delay.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_host::{Clock, HttpRequest, HttpResponse, Proxy, ProxyOptions, RequestOutcome, Stream};

use crate::support::{Host, at_ms, flushed_metrics, get, options, start};
use crate::vm_trap::{budget, metered};

/// How late a held request may reach the upstream on the real clock.
const REAL_CLOCK_SLACK: Duration = Duration::from_millis(40);

const CLIENT: &str = "203.0.113.9:4000";

/// `requests` per second, `burst` at once, held up to `max`.
fn config(requests: u64, burst: u64, max: &str) -> Value {
    json!({"store": {"max_keys": 64},
           "rules": [{"name": "spaced", "key": ["client_ip"],
                      "limit": {"requests": requests, "period": "1s", "burst": burst},
                      "delay": {"max": max}}]})
}

fn begin(proxy: &Proxy, worker: usize, request: HttpRequest) -> (Stream, RequestOutcome) {
    proxy.begin(worker, request).expect("the stream begins")
}

/// Whether the stream's request has gone upstream by now (the proxy settled first).
fn released(stream: &mut Stream) -> bool {
    match stream.wait_request(Duration::ZERO) {
        Ok(RequestOutcome::Forward(_)) => true,
        Ok(RequestOutcome::Paused) => false,
        other => panic!("a held request must be paused or forwarded, got {other:?}"),
    }
}

/// Moves the fake clock 1 ms at a time up to `until_ms`, recording when each paused stream
/// goes upstream.
fn step_until(proxy: &Proxy, now_ms: &mut u64, until_ms: u64, held: &mut [(Stream, Option<u64>)]) {
    while *now_ms < until_ms {
        *now_ms += 1;
        at_ms(proxy, *now_ms);
        proxy.settle().expect("the workers settle");
        for (stream, at) in held.iter_mut().filter(|(_, at)| at.is_none()) {
            if released(stream) {
                *at = Some(*now_ms);
            }
        }
    }
}

#[test]
fn a_burst_passes_then_is_released_one_interval_apart_on_the_fake_clock() {
    // 10 per second (T = 100 ms), burst 2: two pass at once, four are held 100..400 ms.
    let proxy = start(Host::Envoy, &config(10, 2, "1s"), 1);
    let mut held = Vec::new();
    for index in 0..6 {
        let (stream, outcome) = begin(&proxy, 0, get("/", CLIENT));
        if index < 2 {
            assert!(
                outcome.forwarded().is_some(),
                "request {index}: {outcome:?}"
            );
        } else {
            assert_eq!(outcome, RequestOutcome::Paused, "request {index}");
            held.push((stream, None));
        }
    }
    let mut now = 0;
    step_until(&proxy, &mut now, 450, &mut held);
    let times: Vec<Option<u64>> = held.iter().map(|(_, at)| *at).collect();
    assert_eq!(times, [Some(100), Some(200), Some(300), Some(400)]);
    // The released requests are answered with the headers of their admission.
    for (mut stream, _) in held {
        let outcome = stream.response(HttpResponse::new(200)).expect("a response");
        let response = outcome.forwarded().expect("passed back").clone();
        assert_eq!(response.header("ratelimit"), Some("\"spaced\";r=0;t=1"));
        stream.finish().expect("the stream ends");
    }
    assert_eq!(flushed_metrics(&proxy).counter("sluice.held"), Some(4));
}

#[test]
fn held_requests_are_released_at_the_configured_spacing_on_the_real_clock() {
    // 20 per second (T = 50 ms), burst 1: request k (from 0) is held k × 50 ms.
    let options = options(Host::Envoy, &config(20, 1, "1s"), 1).clock(Clock::System);
    let proxy = Proxy::start(options).expect("the proxy starts");
    let start = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(begin(&proxy, 0, get("/", CLIENT)));
    }
    let sent = start.elapsed();
    let mut lateness = Vec::new();
    for (k, (mut stream, outcome)) in streams.into_iter().enumerate() {
        let outcome = match outcome {
            RequestOutcome::Paused => stream
                .wait_request(Duration::from_secs(2))
                .expect("the stream resumes"),
            other => other,
        };
        let at = start.elapsed();
        assert!(outcome.forwarded().is_some(), "request {k}: {outcome:?}");
        let due = Duration::from_millis(50 * k as u64);
        // Admitted when sent (between `start` and `sent`), held exactly its slot.
        assert!(
            at >= due,
            "request {k} went at {at:?}, before its slot at {due:?}"
        );
        assert!(
            at <= due + sent + REAL_CLOCK_SLACK,
            "request {k} went at {at:?}, more than {REAL_CLOCK_SLACK:?} after its slot at {due:?}"
        );
        lateness.push(at.saturating_sub(due));
    }
    eprintln!("lateness per request on the real clock: {lateness:?}");
}

#[test]
fn a_client_gone_while_held_gives_its_slot_to_the_next_request() {
    let proxy = start(Host::Envoy, &config(10, 1, "1s"), 1);
    let (_first, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert!(outcome.forwarded().is_some());
    // Held 100 ms; its client leaves at 10 ms (on_log/on_done while paused).
    let (gone, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert_eq!(outcome, RequestOutcome::Paused);
    at_ms(&proxy, 10);
    gone.finish().expect("the stream ends");
    // The next request takes the freed slot: released at 100 ms, not 200 ms.
    at_ms(&proxy, 20);
    let (next, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert_eq!(outcome, RequestOutcome::Paused);
    let mut held = [(next, None)];
    let mut now = 20;
    step_until(&proxy, &mut now, 250, &mut held);
    assert_eq!(held[0].1, Some(100));
    let metrics = flushed_metrics(&proxy);
    assert_eq!(metrics.counter("sluice.held"), Some(2));
    assert_eq!(metrics.counter("sluice.held_abandoned"), Some(1));
}

#[test]
fn beyond_max_held_a_request_is_denied_and_counts_nothing() {
    let mut config = config(10, 1, "1s");
    config["shaping"] = json!({"max_held": 2});
    let proxy = start(Host::Envoy, &config, 1);
    let (_first, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert!(outcome.forwarded().is_some());
    let mut held = Vec::new();
    for _ in 0..2 {
        let (stream, outcome) = begin(&proxy, 0, get("/", CLIENT));
        assert_eq!(outcome, RequestOutcome::Paused);
        held.push((stream, None));
    }
    // Two are held: the next ones are denied, told to come back when their slot would have
    // come (300 ms, so 1 s), and give back what they counted.
    for _ in 0..2 {
        let (_stream, outcome) = begin(&proxy, 0, get("/", CLIENT));
        let denial = outcome.local_response().expect("a denial").clone();
        assert_eq!(denial.status, 429);
        assert_eq!(denial.header("retry-after"), Some("1"));
    }
    // At 100 ms one is released, so there is room again; the bucket holds the three
    // admitted requests only (tat 300 ms): the next is held 200 ms, released at 300 ms.
    let mut now = 0;
    step_until(&proxy, &mut now, 100, &mut held);
    assert_eq!(held[0].1, Some(100));
    let (stream, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert_eq!(outcome, RequestOutcome::Paused);
    held.push((stream, None));
    step_until(&proxy, &mut now, 350, &mut held);
    let times: Vec<Option<u64>> = held.iter().map(|(_, at)| *at).collect();
    assert_eq!(times, [Some(100), Some(200), Some(300)]);
    assert_eq!(
        flushed_metrics(&proxy).counter("sluice.held_refused"),
        Some(2)
    );
}

#[test]
fn a_vm_trap_while_requests_are_held_fails_them_and_the_new_vm_holds_again() {
    let (fuel, bytes) = budget();
    let config = json!({"store": {"max_keys": 64},
        "rules": [{"name": "spaced", "key": ["client_ip", {"header": "x-padding"}],
                   "limit": {"requests": 10, "period": "1s", "burst": 1},
                   "delay": {"max": "1s"}}]});
    let options = ProxyOptions {
        module: metered(),
        ..options(Host::Envoy, &config, 1)
    }
    .fuel_per_callback(fuel);
    let proxy = Proxy::start(options).expect("the proxy starts");
    let (_first, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert!(outcome.forwarded().is_some());
    let (mut held, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert_eq!(outcome, RequestOutcome::Paused);
    // The heavy request traps the VM: the held stream fails with it (503), nothing wedges.
    let (_heavy, outcome) = begin(
        &proxy,
        0,
        get("/", CLIENT).header("x-padding", &"a".repeat(bytes)),
    );
    assert!(matches!(outcome, RequestOutcome::Failed(_)), "{outcome:?}");
    match held.wait_request(Duration::from_millis(500)) {
        Ok(RequestOutcome::Failed(failure)) => assert_eq!(failure.status, 503),
        other => panic!("the held stream must fail with its VM, got {other:?}"),
    }
    // The replacement VM holds and releases on its own tick (the bucket in shared data
    // still counts the two admitted requests: tat 200 ms, so the next is held 200 ms).
    at_ms(&proxy, 1);
    let (next, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert_eq!(outcome, RequestOutcome::Paused);
    let mut held = [(next, None)];
    let mut now = 1;
    step_until(&proxy, &mut now, 300, &mut held);
    assert_eq!(held[0].1, Some(200));
}

#[test]
fn ngx_wasm_module_cannot_resume_from_a_tick_so_delay_rules_deny_instead() {
    let proxy = start(Host::Ngx, &config(10, 1, "1s"), 1);
    assert!(proxy.logs().contains("delay rules deny instead of holding"));
    let (_first, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert!(outcome.forwarded().is_some());
    // Would be held 100 ms: denied as without delay, and nothing counted.
    for _ in 0..2 {
        let (_stream, outcome) = begin(&proxy, 0, get("/", CLIENT));
        let denial = outcome.local_response().expect("a denial").clone();
        assert_eq!(denial.status, 429);
        assert_eq!(denial.header("retry-after"), Some("1"));
    }
    at_ms(&proxy, 100);
    let (_stream, outcome) = begin(&proxy, 0, get("/", CLIENT));
    assert!(outcome.forwarded().is_some(), "{outcome:?}");
}

/// The ticks brought forward to release held requests do not flush the metrics each time (a
/// host call per moved counter, once per held request): the counts reach the proxy once the
/// base period (1 s) has passed, as without held requests.
#[test]
fn held_requests_flush_the_metrics_once_a_period_not_once_a_release() {
    // 1,000 per second (T = 1 ms), burst 1: of two requests at once, the second is held 1 ms.
    let proxy = start(Host::Envoy, &config(1000, 1, "1s"), 1);
    let held_counter = |proxy: &Proxy| proxy.metrics().counter("sluice.held").unwrap_or(0);
    let mut held = 0;
    for pair in 0..600 {
        let at = pair * 2;
        at_ms(&proxy, at);
        proxy.settle().expect("the workers settle");
        let (mut first, outcome) = begin(&proxy, 0, get("/", CLIENT));
        assert!(outcome.forwarded().is_some(), "pair {pair}: {outcome:?}");
        let (mut second, outcome) = begin(&proxy, 0, get("/", CLIENT));
        assert_eq!(outcome, RequestOutcome::Paused, "pair {pair}");
        held += 1;
        at_ms(&proxy, at + 1);
        proxy.settle().expect("the workers settle");
        assert!(
            released(&mut second),
            "pair {pair} released at {} ms",
            at + 1
        );
        for stream in [&mut first, &mut second] {
            stream.response(HttpResponse::new(200)).expect("a response");
        }
        first.finish().expect("the stream ends");
        second.finish().expect("the stream ends");
        if at + 1 < 1000 {
            assert_eq!(
                held_counter(&proxy),
                0,
                "flushed before 1 s, at {} ms",
                at + 1
            );
        }
    }
    // The first tick at or past 1 s (the release at 1,001 ms) flushed what was counted until
    // then: pairs 0 to 500. The next flush is due 1 s after it, past the end of this run.
    let flushed = held_counter(&proxy);
    assert_eq!(flushed, 501, "held by 1,001 ms: 501 (of {held})");
    assert_eq!(flushed_metrics(&proxy).counter("sluice.held"), Some(held));
}
