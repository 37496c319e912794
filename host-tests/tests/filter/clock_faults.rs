//! The proxy's clock going backwards (an NTP step) or jumping forwards, seen through the
//! filter: no algorithm hands out more than its limit because time went back, every denial
//! still says when to retry, a jump forwards refills as the elapsed time says, and no clock
//! value (up to the end of the `u64` nanosecond range) makes the filter trap.

use serde_json::json;

use crate::support::{HOSTS, T0_NS, get, send, start, status};

const ALGORITHMS: [&str; 4] = ["gcra", "fixed_window", "sliding_window", "sliding_log"];
const CLIENT: &str = "203.0.113.60:4000";
const LIMIT: u64 = 4;
const PERIOD_S: u64 = 10;
const SEC: u64 = 1_000_000_000;

fn proxy(host: crate::support::Host, algorithm: &str) -> sluice_host::Proxy {
    start(
        host,
        &json!({"store": {"max_keys": 64},
                "rules": [{"name": "r", "key": ["client_ip"], "algorithm": algorithm,
                           "limit": {"requests": LIMIT, "period": format!("{PERIOD_S}s")}}]}),
        2,
    )
}

fn set_clock(proxy: &sluice_host::Proxy, ns: u64) {
    proxy.clock().as_fake().expect("a fake clock").set_ns(ns);
}

/// Sends `n` requests (alternating VMs) and counts the ones let through; every denial must
/// carry a `Retry-After` of at least one second.
fn admitted(proxy: &sluice_host::Proxy, n: u64) -> u64 {
    (0..n)
        .filter(|i| {
            let exchange = send(proxy, (*i % 2) as usize, get("/", CLIENT));
            match status(&exchange) {
                200 => true,
                429 => {
                    let retry = exchange.client.header("retry-after").expect("Retry-After");
                    assert!(retry.parse::<u64>().expect("seconds") >= 1, "{retry}");
                    false
                }
                other => panic!("unexpected status {other}"),
            }
        })
        .count() as u64
}

#[test]
fn a_clock_stepped_back_never_hands_out_more_than_the_limit() {
    for host in HOSTS {
        for algorithm in ALGORITHMS {
            let proxy = proxy(host, algorithm);
            // Mid-window, so the window algorithms have a window edge behind and ahead.
            let start = T0_NS + PERIOD_S * SEC / 2;
            set_clock(&proxy, start);
            assert_eq!(
                admitted(&proxy, LIMIT + 2),
                LIMIT,
                "{algorithm} on {host:?}"
            );
            // Back one hour, and back by less than a period: whatever was spent stays spent.
            for back in [3_600 * SEC, PERIOD_S * SEC / 3, 1] {
                set_clock(&proxy, start - back);
                assert_eq!(
                    admitted(&proxy, 3),
                    0,
                    "{algorithm} on {host:?}: the clock went back {back} ns"
                );
            }
            // Once the clock is past where it was by two periods, the full limit is back.
            set_clock(&proxy, start + 2 * PERIOD_S * SEC);
            assert_eq!(
                admitted(&proxy, LIMIT + 2),
                LIMIT,
                "{algorithm} on {host:?}: after the clock recovered"
            );
        }
    }
}

#[test]
fn a_clock_jumping_forward_refills_and_limits_again() {
    for algorithm in ALGORITHMS {
        let proxy = proxy(crate::support::Host::Envoy, algorithm);
        set_clock(&proxy, T0_NS);
        assert_eq!(admitted(&proxy, LIMIT + 1), LIMIT, "{algorithm}");
        // Ten years on the key has recovered: the full limit, then limited again.
        set_clock(&proxy, T0_NS + 10 * 365 * 86_400 * SEC);
        assert_eq!(
            admitted(&proxy, LIMIT + 2),
            LIMIT,
            "{algorithm}: ten years on"
        );
        // The end of the clock's range (the year 2554) and back to the present: times
        // saturate, and every request is still answered with 200 or 429 and a Retry-After.
        for ns in [u64::MAX - SEC, u64::MAX, T0_NS + PERIOD_S * SEC] {
            set_clock(&proxy, ns);
            admitted(&proxy, LIMIT + 2);
        }
    }
}
