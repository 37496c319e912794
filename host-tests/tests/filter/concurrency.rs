//! Concurrency rules through the real filter: requests held in flight by the upstream across
//! two VMs (the slots are counted in shared data), slots given back when the stream ends by a
//! response, an upstream reset or the client going away (each once, counted in
//! `sluice.<rule>.released`), none taken by a denied request, and a VM trap that loses the
//! release: the slot comes back only when it expires, after `slot_ttl` (at most 9/8 of it).
//! A tiered rule's slot, taken under the caller's tier, goes back to that tier's table, also
//! from a stream that ends while it waits for the rate-limit service.

use serde_json::json;
use sluice_host::{HttpResponse, Proxy, ProxyOptions, RequestOutcome, ResponseOutcome, Stream};

use crate::support::{HOSTS, Host, at_ms, flushed_metrics, get, options, send, start, status};
use crate::vm_trap::metered;

const CLIENT: &str = "203.0.113.7:4000";

fn config(max: u64) -> serde_json::Value {
    json!({"store": {"max_keys": 64},
           "rules": [{"name": "in-flight", "key": ["client_ip"],
                      "concurrency": {"max": max, "slot_ttl": "8s"}}]})
}

/// Begins a request on `worker` that the upstream receives and holds.
fn in_flight(proxy: &Proxy, worker: usize) -> Stream {
    let (stream, outcome) = proxy
        .begin(worker, get("/", CLIENT))
        .expect("the stream begins");
    assert!(
        outcome.forwarded().is_some(),
        "expected the request upstream, got {outcome:?}"
    );
    stream
}

/// The upstream answers a held request; the client's `ratelimit` header and the stream's end.
fn answer(mut stream: Stream) -> Option<String> {
    let outcome = stream
        .response(HttpResponse::new(200))
        .expect("the response passes");
    let header = outcome
        .forwarded()
        .and_then(|response| response.header("ratelimit"))
        .map(str::to_owned);
    let report = stream.finish().expect("the stream ends");
    assert_eq!(report.trap, None);
    header
}

fn released(proxy: &Proxy) -> u64 {
    flushed_metrics(proxy)
        .counter("sluice.in-flight.released")
        .unwrap_or(0)
}

#[test]
fn max_requests_in_flight_across_two_workers_then_denied_until_one_ends() {
    for host in HOSTS {
        let proxy = start(host, &config(3), 2);
        let held: Vec<Stream> = (0..3).map(|i| in_flight(&proxy, i % 2)).collect();
        // Both workers see the three slots taken: the fourth is denied on either.
        for worker in 0..2 {
            let denied = send(&proxy, worker, get("/", CLIENT));
            assert_eq!(status(&denied), 429, "{host:?}");
            assert_eq!(denied.header("retry-after"), Some("1"), "{host:?}");
            assert_eq!(
                denied.header("ratelimit"),
                Some("\"in-flight\";r=0;t=1"),
                "{host:?}"
            );
        }
        let mut held = held.into_iter();
        // The first admitted request left two slots; its response says so when it comes.
        assert_eq!(
            answer(held.next().expect("a stream")).as_deref(),
            Some("\"in-flight\";r=2"),
            "{host:?}"
        );
        assert_eq!(released(&proxy), 1, "{host:?}: one slot given back");
        // One slot free: one request in flight again on the other worker, then full.
        let again = in_flight(&proxy, 1);
        assert_eq!(status(&send(&proxy, 0, get("/", CLIENT))), 429, "{host:?}");
        for stream in held.chain([again]) {
            answer(stream);
        }
        // Denied requests took no slot, so nothing else was given back; all slots are free.
        assert_eq!(released(&proxy), 4, "{host:?}");
        let metrics = flushed_metrics(&proxy);
        assert_eq!(metrics.counter("sluice.in-flight.allowed"), Some(4));
        assert_eq!(metrics.counter("sluice.in-flight.denied"), Some(3));
        let after: Vec<Stream> = (0..3).map(|i| in_flight(&proxy, i % 2)).collect();
        drop(after);
    }
}

#[test]
fn an_upstream_reset_and_a_client_gone_give_the_slot_back() {
    for (host, reset_status) in [(Host::Envoy, 503), (Host::Ngx, 502)] {
        let proxy = start(host, &config(1), 2);

        let mut reset = in_flight(&proxy, 0);
        assert_eq!(status(&send(&proxy, 1, get("/", CLIENT))), 429, "{host:?}");
        let outcome = reset.upstream_reset().expect("the reset passes");
        let ResponseOutcome::LocalResponse(reply) = &outcome else {
            panic!("{host:?}: the proxy answers a reset itself, got {outcome:?}");
        };
        assert_eq!(reply.status, reset_status, "{host:?}");
        // The filter's headers are on the proxy's reply too, as on any response.
        assert_eq!(
            reply.header("ratelimit"),
            Some("\"in-flight\";r=0"),
            "{host:?}"
        );
        reset.finish().expect("the stream ends");
        assert_eq!(released(&proxy), 1, "{host:?}");

        let gone = in_flight(&proxy, 1);
        assert_eq!(status(&send(&proxy, 0, get("/", CLIENT))), 429, "{host:?}");
        // The client goes away before the upstream answers.
        gone.finish().expect("the stream ends");
        assert_eq!(released(&proxy), 2, "{host:?}");

        // Free again, on either worker; a request answered at once gives its slot back too.
        assert_eq!(status(&send(&proxy, 0, get("/", CLIENT))), 200, "{host:?}");
        assert_eq!(status(&send(&proxy, 1, get("/", CLIENT))), 200, "{host:?}");
        assert_eq!(released(&proxy), 4, "{host:?}");
    }
}

#[test]
fn each_stream_gives_its_slot_back_once_however_often_it_is_ended() {
    // Envoy calls on_log then on_done (and deletes the context); the release runs on the
    // first of them only. Dropping a stream ends it like finishing it.
    for host in HOSTS {
        let proxy = start(host, &config(2), 1);
        let a = in_flight(&proxy, 0);
        let b = in_flight(&proxy, 0);
        drop(a);
        assert_eq!(released(&proxy), 1, "{host:?}");
        // b still holds its slot: one more fits, not two.
        let c = in_flight(&proxy, 0);
        assert_eq!(status(&send(&proxy, 0, get("/", CLIENT))), 429, "{host:?}");
        drop((b, c));
        assert_eq!(released(&proxy), 3, "{host:?}");
    }
}

#[test]
fn a_vm_trap_loses_the_release_and_the_slot_comes_back_after_its_ttl() {
    // The slot holder and a heavy request (another client) share worker 0; the heavy request
    // hashes a 1 MiB header into its key for the second rule, far past the fuel budget, and
    // traps the VM. The held stream fails with it, its release lost.
    let config = json!({"store": {"max_keys": 64}, "rules": [
        {"name": "in-flight", "key": ["client_ip"],
         "concurrency": {"max": 1, "slot_ttl": "8s"}},
        {"name": "padded", "key": ["client_ip", {"header": "x-padding"}],
         "limit": {"requests": 1000, "period": "1h"}}
    ]});
    let heavy = || get("/", "198.51.100.9:1").header("x-padding", &"a".repeat(1 << 20));
    let start_with = |host: Host, fuel: Option<u64>| {
        let mut options = ProxyOptions {
            module: metered(),
            ..options(host, &config, 2)
        };
        if let Some(fuel) = fuel {
            options = options.fuel_per_callback(fuel);
        }
        Proxy::start(options).expect("the proxy starts")
    };
    // A budget between an ordinary callback and the heavy request (fuel is deterministic).
    let fuel = {
        let proxy = start_with(Host::Envoy, None);
        let fuel = |exchange: sluice_host::Exchange| exchange.report.fuel_consumed.expect("fuel");
        let plain = fuel(send(&proxy, 0, get("/", "198.51.100.1:1")));
        let heavy = fuel(send(&proxy, 0, heavy()));
        assert!(heavy > 20 * plain, "{heavy} vs {plain}");
        (heavy / 4).max(plain * 10)
    };
    for (host, failure_status) in [(Host::Envoy, 503), (Host::Ngx, 500)] {
        let proxy = start_with(host, Some(fuel));
        let mut holder = in_flight(&proxy, 0);
        let trapped = send(&proxy, 0, heavy());
        let RequestOutcome::Failed(failure) = &trapped.request else {
            panic!(
                "{host:?}: the heavy request must trap, got {:?}",
                trapped.request
            );
        };
        assert!(failure.trap.contains("fuel"), "{host:?}: {}", failure.trap);
        // The holder's VM is gone: its stream fails, and its end releases nothing.
        let outcome = holder
            .response(HttpResponse::new(200))
            .expect("the stream answers");
        let ResponseOutcome::Failed(failed) = &outcome else {
            panic!("{host:?}: the holder must fail with its VM, got {outcome:?}");
        };
        assert_eq!(failed.status, failure_status, "{host:?}");
        holder.finish().expect("the stream ends");
        assert_eq!(released(&proxy), 0, "{host:?}");

        // The slot stays taken, on both workers (the replacement VM reads the same table),
        // up to slot_ttl and beyond: its bucket of 1 s, [0, 1 s), expires at 9 s.
        for (ms, worker) in [(0, 0), (10, 1), (8_000, 0), (8_999, 1)] {
            at_ms(&proxy, ms);
            assert_eq!(
                status(&send(&proxy, worker, get("/", CLIENT))),
                429,
                "{host:?} at {ms} ms"
            );
        }
        at_ms(&proxy, 9_000);
        assert_eq!(status(&send(&proxy, 0, get("/", CLIENT))), 200, "{host:?}");
        assert_eq!(status(&send(&proxy, 1, get("/", CLIENT))), 200, "{host:?}");
    }
}

#[test]
fn a_stream_that_ends_while_waiting_for_the_service_gives_its_slot_back() {
    // A service that takes the connection and never answers: the request stays paused.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = silent.local_addr().expect("its address");
    let plain = json!({"name": "in-flight", "key": ["client_ip"],
                       "concurrency": {"max": 1, "slot_ttl": "8s"}});
    // The request has no plan, so it takes the default tier's slot: the rule's second limit,
    // which the release must find (not the rule's first).
    let tiered = json!({"name": "in-flight", "key": ["client_ip"],
                        "concurrency": {"slot_ttl": "8s"},
                        "tier": {"from": {"header": "x-plan"},
                                 "limits": {"free": {"max": 1}, "pro": {"max": 1}},
                                 "default": "pro"}});
    for (lease, local) in [
        (None, &plain),
        (Some(json!({"size": 10})), &plain),
        (None, &tiered),
        (Some(json!({"size": 10})), &tiered),
    ] {
        let mut global = json!({"name": "fleet", "scope": "global", "key": ["client_ip"],
                                "limit": {"requests": 100, "period": "1m"}});
        if let Some(lease) = &lease {
            global["lease"] = lease.clone();
        }
        let config = json!({
            "global": {"cluster": "limits", "timeout": "5s"},
            "store": {"max_keys": 64},
            "rules": [local, global]
        });
        let tiers = local.get("tier").is_some();
        for host in HOSTS {
            let proxy =
                Proxy::start(options(host, &config, 1).cluster("limits", addr)).expect("starts");
            let (stream, outcome) = proxy.begin(0, get("/", CLIENT)).expect("begins");
            assert_eq!(
                outcome,
                RequestOutcome::Paused,
                "{host:?}, lease {lease:?}, tiers {tiers}"
            );
            // The client goes away before the service answers: the local slot comes back.
            stream.finish().expect("the stream ends");
            assert_eq!(
                released(&proxy),
                1,
                "{host:?}, lease {lease:?}, tiers {tiers}"
            );
        }
    }
}
