//! Test-only controls: a clock, a peer address and injected object faults, read from request
//! headers, and debug headers on responses.
//!
//! They are honoured only when the worker's environment has `SLUICE_TEST_HOOKS = "enabled"`,
//! which only the test suite's runtime sets (never `wrangler.toml`): without it every
//! `x-sluice-test-*` header is an ordinary request header, ignored by sluice and forwarded to
//! the origin like any other.

use worker::{Env, Request};

use crate::protocol::WireFault;

/// The variable that enables the hooks, and the value that does.
pub const HOOKS_VARIABLE: &str = "SLUICE_TEST_HOOKS";
const HOOKS_ENABLED: &str = "enabled";

/// The request's time: milliseconds after 2026-01-01T00:00:00Z, as in the shared vectors.
pub const NOW_MS_HEADER: &str = "x-sluice-test-now-ms";
/// The peer address (what `CF-Connecting-IP` gives in production); `none`: no peer address.
/// With it, the request's own `CF-Connecting-IP` (which the dev runtime sets) is replaced by
/// [`CONNECTING_IP_HEADER`], so a vector's request headers are exactly its own.
pub const PEER_HEADER: &str = "x-sluice-test-peer";
/// The `CF-Connecting-IP` request header a test request carries (with [`PEER_HEADER`]).
pub const CONNECTING_IP_HEADER: &str = "x-sluice-test-cf-connecting-ip";
/// `1`: every limiter object call of the request fails.
pub const OBJECT_FAILS_HEADER: &str = "x-sluice-test-object-fails";
/// Milliseconds every limiter object waits before deciding (to provoke the timeout).
pub const OBJECT_DELAY_HEADER: &str = "x-sluice-test-object-delay-ms";
/// `rows`: answer with the stored key counts of the request's objects instead of deciding.
/// `held`: answer with the isolate's test clock and the requests it holds (after moving the
/// clock to the request's test time), without evaluating the request.
pub const INSPECT_HEADER: &str = "x-sluice-test-inspect";
/// Prefix of every test header; they are removed before the request is forwarded.
pub const PREFIX: &str = "x-sluice-test-";

/// Debug response header: limiter object calls made for the request (decides and refunds).
pub const OBJECT_CALLS_HEADER: &str = "x-sluice-debug-object-calls";
/// Debug response header: `hit` when the negative cache answered.
pub const CACHE_HEADER: &str = "x-sluice-debug-negative-cache";
/// Debug response header: failed object calls seen by this isolate so far.
pub const FAILURES_HEADER: &str = "x-sluice-debug-object-failures";
/// Debug response header: this isolate's counters (`stats::summary`), as they stand when the
/// response leaves (background work still running is counted when it ends).
pub const STATS_HEADER: &str = "x-sluice-debug-stats";

/// `at_ms` 0 of the vectors, nanoseconds since the Unix epoch.
const VECTOR_EPOCH_NS: u64 = 1_767_225_600_000_000_000;

/// A test time as the vectors give it: milliseconds after `at_ms` 0.
pub fn vector_ms(nanos: u64) -> u64 {
    nanos.saturating_sub(VECTOR_EPOCH_NS) / 1_000_000
}

/// The answer to `x-sluice-test-inspect: held`: the isolate's test clock, the release times
/// of the requests it holds whose time has not come, as vector milliseconds, and how many of
/// its requests hold concurrency slots not given back yet (forwarded, or releasing).
pub fn held_report() -> String {
    let clock = crate::isolate_clock::latest_test_time().map(vector_ms);
    let held: Vec<u64> = crate::holding::pending_on_test_clock()
        .into_iter()
        .map(vector_ms)
        .collect();
    serde_json::json!({
        "clock_ms": clock,
        "held": held,
        "holding_slots": crate::in_flight::holding_slots(),
    })
    .to_string()
}

/// Whether the environment enables the hooks.
pub fn enabled(env: &Env) -> bool {
    env.var(HOOKS_VARIABLE)
        .is_ok_and(|value| value.to_string() == HOOKS_ENABLED)
}

/// The controls one request carries (all empty unless the hooks are enabled).
#[derive(Debug, Clone, Default)]
pub struct TestHooks {
    /// Whether the hooks are enabled at all (debug headers are added then).
    pub enabled: bool,
    /// The test clock, nanoseconds since the Unix epoch.
    pub now: Option<u64>,
    /// `Some(peer)` overrides `CF-Connecting-IP` (`Some(None)`: no peer address).
    pub peer: Option<Option<String>>,
    /// With `peer`: the request's `CF-Connecting-IP` header, if it has one.
    pub connecting_ip: Option<String>,
    /// Faults for the limiter objects.
    pub fault: Option<WireFault>,
    /// Answer with the objects' stored key counts.
    pub inspect_rows: bool,
    /// Answer with the isolate's test clock and held requests.
    pub inspect_held: bool,
}

impl TestHooks {
    /// Reads the controls from `request` if `env` enables them.
    pub fn read(env: &Env, request: &Request) -> TestHooks {
        if !enabled(env) {
            return TestHooks::default();
        }
        let header = |name: &str| request.headers().get(name).ok().flatten();
        let now = header(NOW_MS_HEADER)
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .and_then(|ms| ms.checked_mul(1_000_000))
            .and_then(|ns| ns.checked_add(VECTOR_EPOCH_NS));
        let peer = header(PEER_HEADER).map(|peer| Some(peer).filter(|p| p != "none"));
        let fails = header(OBJECT_FAILS_HEADER).is_some_and(|v| v == "1");
        let delay_ms = header(OBJECT_DELAY_HEADER)
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let fault = (fails || delay_ms > 0).then_some(WireFault {
            fail: fails,
            delay_ms,
        });
        TestHooks {
            enabled: true,
            now,
            peer,
            connecting_ip: header(CONNECTING_IP_HEADER),
            fault,
            inspect_rows: header(INSPECT_HEADER).is_some_and(|v| v == "rows"),
            inspect_held: header(INSPECT_HEADER).is_some_and(|v| v == "held"),
        }
    }
}
