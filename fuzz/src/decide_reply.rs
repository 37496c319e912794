//! Target `decide_reply`: any bytes as the rate-limit service's reply to a decide request.
//!
//! Parsing never panics and answers a reply or an error value; a reply that parses has one
//! outcome per check, re-encodes to a reply that parses to the same value, and the filter's
//! whole finishing path (outcomes merged with the local rule's, response rendered, local
//! commit refunded on a denial) runs on it: the request is passed, or denied with
//! `Retry-After`, and a denial leaves the local rule's count as it was.

use sluice_core::{Limiter, MemoryStore, Seed, Semantics};
use sluice_policy::global::{DecideReply, Started};
use sluice_policy::{OwnedRequest, Policy, Response};

const NOW: u64 = 1_767_225_600_000_000_000;
const CONFIG: &str = r#"{"global": {"cluster": "limits"}, "response": {"headers": "both"},
  "rules": [
    {"name": "local", "key": ["client_ip"], "limit": {"requests": 1, "period": "1m"}},
    {"name": "g1", "scope": "global", "key": ["client_ip"], "limit": {"requests": 5, "period": "1s"}},
    {"name": "g2", "scope": "global", "key": ["path"], "mode": "shadow", "failure_mode": "closed",
     "algorithm": "sliding_log", "limit": {"requests": 3, "period": "10s"}}]}"#;

pub fn run(data: &[u8]) {
    for checks in 0..4 {
        if let Ok(reply) = DecideReply::parse(data, checks) {
            assert_eq!(reply.outcomes.len(), checks);
            let again = DecideReply::parse(&reply.to_json(), checks).expect("re-encoded reply");
            assert_eq!(again, reply);
            assert_eq!(reply.rule_outcomes().len(), checks);
        }
    }
    let Ok(policy) = Policy::from_json(CONFIG.as_bytes()) else {
        panic!("the target's configuration is valid");
    };
    let request = OwnedRequest {
        method: "GET".into(),
        path: "/items".into(),
        authority: "api.example.com".into(),
        headers: Vec::new(),
        peer: Some("203.0.113.7:1000".into()),
    };
    let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 8);
    let mut store = MemoryStore::new(Semantics::Envoy);
    let Started::Call(call) = policy.start(&request, NOW, &mut limiter, &mut store) else {
        panic!("the local rule allows the first request: a call");
    };
    let finished = policy.finish(call, Ok(data), &mut limiter, &mut store);
    match &finished.handled.response {
        Response::Pass { .. } => {}
        Response::Deny { status, .. } => {
            assert_eq!(*status, 429);
            assert!(finished.handled.response.header("retry-after").is_some());
            // The local unit was refunded: a second request passes the local rule again.
            let second = policy.start(&request, NOW, &mut limiter, &mut store);
            assert!(
                matches!(second, Started::Call(_)),
                "the local commit was refunded"
            );
        }
    }
}
