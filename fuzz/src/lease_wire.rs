//! Target `lease_wire`: any bytes as a lease request (the service's side) and as the
//! service's reply to a lease request (the holder's side).
//!
//! As a request: parsing never panics; a request that parses re-encodes to itself and has at
//! most `MAX_LEASE_ITEMS` items; the in-memory service answers it with 200 and a reply that
//! the holder's parser accepts as the answer to it, granting no key more than its rule's
//! capacity, or with the status the parse error maps to (400, 404, 409, 413) and an
//! `{"error": ...}` body. As a reply: parsing against a few fixed requests never panics, and a
//! reply that parses has one grant per acquisition and one entry per return, grants within
//! `min..=want` only when allowed, and re-encodes to itself.

use std::collections::BTreeMap;

use sluice_core::time::NANOS_PER_SEC;
use sluice_core::{Algorithm, Limit, Quota, Status};
use sluice_policy::Policy;
use sluice_policy::global::{
    LeaseAcquire, LeaseReply, LeaseRequest, LeaseReturn, MAX_LEASE_ITEMS, MemoryService,
};

const NOW: u64 = 1_767_225_600_000_000_000;
const CONFIG: &str = r#"{"global": {"cluster": "limits"}, "rules": [
    {"name": "g", "scope": "global", "key": ["client_ip"], "lease": {"size": 4},
     "limit": {"requests": 10, "period": "1m", "burst": 4}},
    {"name": "w", "scope": "global", "key": ["path"], "algorithm": "sliding_window",
     "mode": "shadow", "lease": {"size": "auto", "max": 3}, "limit": {"requests": 3, "period": "10s"}},
    {"name": "f", "scope": "global", "key": ["path"], "algorithm": "fixed_window",
     "lease": {"size": 1, "lifetime": "10ms"}, "limit": {"requests": 7, "period": "1s"}},
    {"name": "plain", "scope": "global", "key": ["path"], "limit": {"requests": 2, "period": "1s"}}]}"#;

pub fn run(data: &[u8]) {
    as_request(data);
    as_reply(data);
}

fn as_request(data: &[u8]) {
    let policy = match Policy::from_json(CONFIG.as_bytes()) {
        Ok(policy) => policy,
        Err(error) => panic!("the target's configuration is invalid: {error}"),
    };
    let mut service = MemoryService::new(policy.clone());
    let (status, body) = service.lease(data, NOW);
    match LeaseRequest::from_json(data) {
        Ok(request) => {
            assert!(request.items() <= MAX_LEASE_ITEMS);
            let again = LeaseRequest::from_json(&request.to_json()).expect("re-encoded request");
            assert_eq!(again, request);
            if status != 200 {
                let error = request
                    .resolve(&policy)
                    .expect_err("a refused request does not resolve");
                assert_eq!(error.http_status(), status);
                assert_error_body(&body);
                return;
            }
            let reply =
                LeaseReply::parse(&body, &request).expect("the service answers the request");
            // A fresh service at one instant: returns find nothing to restore, and the grants
            // on one key add up to at most its rule's capacity.
            assert!(reply.returned.iter().all(|r| r.units == 0));
            let mut granted: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for (grant, asked) in reply.acquired.iter().zip(&request.acquire) {
                assert_eq!(grant.granted_at_ns, NOW);
                *granted.entry((&asked.rule, &asked.key)).or_default() += grant.granted;
            }
            for ((rule, _), total) in granted {
                let rule = policy.rule(rule).expect("a granted rule exists");
                assert!(
                    total <= rule.limit().capacity(),
                    "{total} granted on one key"
                );
            }
        }
        Err(error) => {
            assert_eq!(error.http_status(), status);
            assert!(matches!(status, 400 | 413));
            assert_error_body(&body);
        }
    }
}

fn assert_error_body(body: &[u8]) {
    let value: serde_json::Value = serde_json::from_slice(body).expect("an error body is JSON");
    let message = value["error"].as_str().expect("an error message");
    assert!(!message.is_empty() && !message.contains('\n'));
}

fn as_reply(data: &[u8]) {
    let limit = Limit::new(
        Algorithm::Gcra,
        Quota::new(10, 60 * NANOS_PER_SEC, 4).expect("a valid quota"),
    );
    let acquire = |min, want| LeaseAcquire::new("g", &limit, b"203.0.113.7", min, want);
    let give_back = |units| LeaseReturn::new("g", &limit, b"203.0.113.7", units, NOW);
    let requests = [
        LeaseRequest::new("sluice", vec![acquire(1, 4)], vec![]),
        LeaseRequest::new("sluice", vec![], vec![give_back(3)]),
        LeaseRequest::new(
            "sluice",
            vec![acquire(2, 2), acquire(1, 50)],
            vec![give_back(1), give_back(9)],
        ),
    ];
    for request in &requests {
        let Ok(reply) = LeaseReply::parse(data, request) else {
            continue;
        };
        assert_eq!(reply.acquired.len(), request.acquire.len());
        assert_eq!(reply.returned.len(), request.returns.len());
        for (grant, asked) in reply.acquired.iter().zip(&request.acquire) {
            if grant.outcome.status == Status::Allowed {
                assert!((asked.min..=asked.want).contains(&grant.granted));
            } else {
                assert_eq!(grant.granted, 0);
            }
            assert_eq!(grant.outcome.rule_outcome().status, grant.outcome.status);
        }
        for (returned, sent) in reply.returned.iter().zip(&request.returns) {
            assert!(returned.units <= sent.units);
        }
        let again = LeaseReply::parse(&reply.to_json(), request).expect("re-encoded reply");
        assert_eq!(again, reply);
    }
}
