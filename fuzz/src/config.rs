//! Target `config`: any bytes as the plugin configuration.
//!
//! `Policy::from_json` never panics; a rejection is one non-empty line (the proxy's log line);
//! compiling is a function of the bytes; an accepted configuration keeps every rule's table
//! within `MAX_RULE_STORE_BYTES` and handles a request without panicking.

use sluice_core::{Limiter, MemoryStore, Seed, Semantics};
use sluice_policy::{MAX_RULE_STORE_BYTES, Policy, Request};

/// 2026-01-01T00:00:00Z in nanoseconds.
const NOW: u64 = 1_767_225_600_000_000_000;

pub fn run(data: &[u8]) {
    match Policy::from_json(data) {
        Ok(policy) => {
            assert_eq!(
                Policy::from_json(data).as_ref(),
                Ok(&policy),
                "compiling the same bytes twice gave different policies"
            );
            assert!(
                !policy.rules().is_empty(),
                "a policy without rules compiled"
            );
            for rule in policy.rules() {
                assert!(
                    rule.max_store_bytes() <= MAX_RULE_STORE_BYTES,
                    "rule {} may take {} bytes, over the ceiling",
                    rule.name(),
                    rule.max_store_bytes()
                );
            }
            let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, policy.cas_retries());
            let mut store = MemoryStore::new(Semantics::Envoy);
            for request in SAMPLE_REQUESTS {
                let handled = policy.handle(*request, NOW, &mut limiter, &mut store);
                for notice in handled.notices() {
                    let _ = notice.to_string();
                }
                // A mark goes into a header on the request and the response: one clean line.
                if let Some(warning) = handled.response.warning() {
                    assert!(
                        !warning.value.is_empty()
                            && warning.value.bytes().all(|b| (0x20..0x7f).contains(&b)),
                        "a warning header value that is not one printable line: {:?}",
                        warning.value
                    );
                    assert!(handled.marks().next().is_some(), "a warning with no mark");
                }
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.is_empty(), "an empty error message");
            assert!(
                !message.contains('\n'),
                "an error message of several lines: {message:?}"
            );
        }
    }
}

/// Fixed requests that touch every kind of key part, tier source and match condition a
/// configuration can name (the JWT in the payload header and as a bearer token).
const SAMPLE_REQUESTS: &[&Sample] = &[
    &Sample {
        method: "GET",
        path: "/api/items?page=2&user=ada",
        authority: "api.example.com:8443",
        headers: &[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
            ("x-api-key", "k-123"),
            ("cookie", "session=abc; theme=dark"),
            ("x-cost", "3"),
            ("cf-connecting-ip", "2001:db8::42"),
            ("x-plan", "pro"),
            (
                "x-jwt-payload",
                "eyJzdWIiOiJhZGEiLCJwbGFuIjoicHJvIiwib3JnIjp7ImlkIjoiYWNtZSIsInBsYW4iOjd9LCJodHRwczovL2V4YW1wbGUuY29tL3BsYW4iOiJnb2xkIn0",
            ),
            (
                "authorization",
                "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZGEiLCJwbGFuIjoicHJvIiwib3JnIjp7ImlkIjoiYWNtZSIsInBsYW4iOjd9LCJodHRwczovL2V4YW1wbGUuY29tL3BsYW4iOiJnb2xkIn0.c2ln",
            ),
        ],
        peer: Some("10.0.0.2:41000"),
    },
    &Sample {
        method: "OPTIONS",
        path: "/",
        authority: "",
        headers: &[
            ("origin", "https://example.com"),
            ("access-control-request-method", "POST"),
        ],
        peer: None,
    },
];

/// A request made of constants.
#[derive(Debug)]
struct Sample {
    method: &'static str,
    path: &'static str,
    authority: &'static str,
    headers: &'static [(&'static str, &'static str)],
    peer: Option<&'static str>,
}

impl Request for Sample {
    fn method(&self) -> &[u8] {
        self.method.as_bytes()
    }
    fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }
    fn authority(&self) -> &[u8] {
        self.authority.as_bytes()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
    fn for_each_header(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        for (n, v) in self.headers {
            if n.eq_ignore_ascii_case(name) {
                f(v.as_bytes());
            }
        }
    }
    fn peer_address(&self) -> Option<&[u8]> {
        self.peer.map(str::as_bytes)
    }
}
