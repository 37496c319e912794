//! Target `edge_lease`: any bytes as a lease call to one of the edge worker's limiter objects
//! (what an object decodes) and as an object's answer to a lease call (what the worker
//! decodes).
//!
//! Decoding never panics and answers a message or an error value. A call that decodes is
//! within its limits (version, item count, every rule decidable, acquisitions of a leasable
//! algorithm asking for 1 ..= want units, returns of at least 1), re-encodes to a call that decodes to the same
//! value, and every acquisition and return in it can be carried out by the core as the
//! object does: a grant within what was asked, a refund of it. An answer that decodes has one
//! entry per item of the call and grants within what was asked.

use sluice_core::Limit;
use sluice_edge_protocol::{
    LEASE_VERSION, LeaseRequest, LeaseResponse, MAX_LEASE_ITEMS, WireAcquire, WireCheck,
    WireReturn, WireStatus,
};

/// 2026-01-01T00:00:00Z in nanoseconds.
const NOW: u64 = 1_767_225_600_000_000_000;

fn check(algorithm: &str, cost: u64) -> WireCheck {
    WireCheck {
        rule: "per-client".to_owned(),
        algorithm: algorithm.to_owned(),
        limit: 100,
        period: 60_000_000_000,
        burst: 100,
        key: "cb007107".to_owned(),
        cost,
        shadow: false,
        max_delay: 0,
    }
}

/// The call the answers are read against: a return, a check and two acquisitions.
fn call() -> LeaseRequest {
    LeaseRequest {
        returns: vec![WireReturn {
            check: check("fixed_window", 3),
            granted_at: NOW,
        }],
        checks: vec![check("sliding_window", 1)],
        acquire: vec![
            WireAcquire {
                check: check("gcra", 1),
                want: 20,
            },
            WireAcquire {
                check: check("fixed_window", 5),
                want: 5,
            },
        ],
        ..LeaseRequest::new()
    }
}

pub fn run(data: &[u8]) {
    if let Ok(request) = LeaseRequest::parse(data) {
        assert_eq!(request.v, LEASE_VERSION);
        assert!(request.items() <= MAX_LEASE_ITEMS);
        let text = serde_json::to_vec(&request).expect("a call encodes");
        assert_eq!(LeaseRequest::parse(&text).as_ref(), Ok(&request));
        for acquire in &request.acquire {
            let limit: Limit = acquire.check.limit().expect("a checked rule");
            let min = acquire.check.cost;
            assert!(min >= 1 && acquire.want >= min);
            assert!(limit.algorithm.supports_leases());
            let grant = limit.grant(None, NOW, min, acquire.want);
            assert!(
                grant.granted == 0 || (min..=acquire.want).contains(&grant.granted),
                "{grant:?} for {min}..={}",
                acquire.want
            );
            assert_eq!(grant.granted > 0, grant.state.is_some());
            if let Some(state) = &grant.state {
                let _ = limit.refund(state, grant.granted, NOW);
            }
        }
        for item in &request.returns {
            let limit = item.check.limit().expect("a checked rule");
            assert!(item.check.cost >= 1);
            let (_, state) = limit.decide(None, NOW, 1);
            let _ = limit.refund(&state, item.check.cost, item.granted_at);
        }
    }
    let call = call();
    if let Ok(answer) = LeaseResponse::parse(data, &call) {
        assert_eq!(answer.returned.len(), call.returns.len());
        assert_eq!(answer.outcomes.len(), call.checks.len());
        assert_eq!(answer.acquired.len(), call.acquire.len());
        for (grant, acquire) in answer.acquired.iter().zip(&call.acquire) {
            assert!(grant.granted <= acquire.want);
            assert_eq!(
                grant.granted > 0,
                grant.outcome.status == WireStatus::Allowed
            );
        }
        let text = serde_json::to_vec(&answer).expect("an answer encodes");
        assert_eq!(LeaseResponse::parse(&text, &call).as_ref(), Ok(&answer));
    }
}
