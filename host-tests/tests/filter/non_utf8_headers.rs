//! Header values need not be UTF-8: HTTP allows `obs-text` (bytes 0x80-0xFF) in them and Envoy
//! passes them to filters as they came. A client sending one must neither trap the VM (the
//! proxy-wasm SDK's text accessor panics on such a value, failing every stream of that VM)
//! nor escape its limit, nor share another client's counter: the filter keys on the bytes as
//! sent (decoding would turn every invalid sequence into U+FFFD, so `\xff\xfe` and `\xfe\xff`
//! would be one key), and a value that is not text is never an address or a number.

use serde_json::json;
use sluice_host::{HttpRequest, RequestOutcome};

use crate::support::{HOSTS, get, send, start, status};

const LIMIT: usize = 3;

#[test]
fn values_that_are_not_utf8_are_read_and_counted_without_a_trap() {
    for host in HOSTS {
        let proxy = start(
            host,
            &json!({"client_ip": {"source": "x_forwarded_for", "trusted_hops": 1},
                    "rules": [
                        {"name": "per-client", "key": ["client_ip"],
                         "limit": {"requests": LIMIT, "period": "1h"}},
                        {"name": "per-key", "key": [{"header": "x-api-key"}, {"cookie": "s"}],
                         "when_key_missing": "skip", "algorithm": "sliding_log",
                         "cost": {"header": "x-cost", "default": 1, "max": 2},
                         "limit": {"requests": LIMIT, "period": "1h"}}]}),
            2,
        );
        let outcomes: Vec<u16> = (0..LIMIT + 2)
            .map(|i| {
                let request = get("/", "10.0.0.2:1")
                    .header("x-forwarded-for", "203.0.113.90")
                    .header_bytes("user-agent", b"agent \xc3\x28 \xff".to_vec())
                    .header_bytes("x-api-key", b"key-\x80\x81".to_vec())
                    .header_bytes("cookie", b"s=\xfe\xfe; t=1".to_vec())
                    .header_bytes("x-cost", b"1\xa0".to_vec());
                let exchange = send(&proxy, i % 2, request);
                if let RequestOutcome::Failed(failure) = &exchange.request {
                    panic!("{host:?}: the filter trapped: {}", failure.trap);
                }
                status(&exchange)
            })
            .collect();
        let passed = outcomes.iter().filter(|&&s| s == 200).count();
        assert_eq!(passed, LIMIT, "{host:?}: {outcomes:?}");
        assert!(
            outcomes.iter().all(|&s| s == 200 || s == 429),
            "{host:?}: {outcomes:?}"
        );
        // The key rule applied (its `skip` would have left it out had the key been dropped)
        // and filled like the per-client one.
        for rule in ["per-client", "per-key"] {
            let denied =
                crate::support::flushed_metrics(&proxy).counter(&format!("sluice.{rule}.denied"));
            assert_eq!(denied, Some(2), "{host:?}: {rule}");
        }

        // An address entry with invalid bytes is not an address: the peer is the client.
        let forged = (0..LIMIT + 1)
            .filter(|i| {
                let request = get("/", "198.51.100.91:1")
                    .header_bytes("x-forwarded-for", b"203.0.113.91\xff".to_vec());
                status(&send(&proxy, i % 2, request)) == 200
            })
            .count();
        assert_eq!(forged, LIMIT, "{host:?}: counted as the peer");
        assert!(!proxy.logs().contains("panic"), "{host:?}");
    }
}

#[test]
fn keys_that_differ_only_in_invalid_bytes_are_counted_apart() {
    for host in HOSTS {
        let proxy = start(
            host,
            &json!({"rules": [
                {"name": "per-api-key", "key": [{"header": "x-api-key", "secret": true}],
                 "when_key_missing": "skip",
                 "limit": {"requests": LIMIT, "period": "1h"}},
                {"name": "per-session", "key": [{"cookie": "session"}],
                 "when_key_missing": "skip",
                 "limit": {"requests": LIMIT, "period": "1h"}}]}),
            2,
        );
        let passed = |make: &dyn Fn() -> HttpRequest| {
            (0..LIMIT + 1)
                .filter(|i| status(&send(&proxy, i % 2, make())) == 200)
                .count()
        };
        // Two clients each, one after the other: the second gets its own full limit (decoded
        // lossily, both of a pair would be "\u{fffd}\u{fffd}" and the second would get none).
        for key in [&b"\xff\xfe"[..], b"\xfe\xff"] {
            let request = || get("/", "10.0.0.3:1").header_bytes("x-api-key", key.to_vec());
            assert_eq!(passed(&request), LIMIT, "{host:?}: api key {key:x?}");
        }
        for session in [&b"\xff"[..], b"\xfe"] {
            let request = || {
                get("/", "10.0.0.3:1").header_bytes("cookie", [&b"session="[..], session].concat())
            };
            assert_eq!(passed(&request), LIMIT, "{host:?}: session {session:x?}");
        }
        for rule in ["per-api-key", "per-session"] {
            let denied =
                crate::support::flushed_metrics(&proxy).counter(&format!("sluice.{rule}.denied"));
            assert_eq!(denied, Some(2), "{host:?}: {rule}");
        }
    }
}
