//! Target `redis`: any bytes as a state value read from Redis, and as a RESP reply to the
//! store's compare-and-set script (what another program, another version of sluice, a proxy
//! or a damaged Redis may hand back).
//!
//! Decoding a value never panics; what decodes under a rule's limit re-encodes to exactly the
//! same bytes, and the rule decides over it; a reply of any shape parses to a reply or an
//! error, never a panic, and a parsed reply carries one value per key.

use sluice_core::{Algorithm, Limit, Quota};
use sluice_redis::script::{Reply, parse_reply};
use sluice_redis::value;

const SEC: u64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z in nanoseconds.
const NOW: u64 = 1_767_225_600 * SEC;

pub fn run(data: &[u8]) {
    for limit in limits() {
        if let Ok(state) = value::decode(&limit, data) {
            assert_eq!(
                value::encode(&limit, &state),
                data,
                "{state:?} re-encodes differently"
            );
            let (_, next) = limit.decide(Some(&state), NOW, 1);
            let bytes = value::encode(&limit, &next);
            assert_eq!(value::decode(&limit, &bytes).as_ref(), Ok(&next));
            let _ = limit.idle_at(&state);
        }
    }
    if let Ok(reply) = redis::parse_redis_value(data) {
        for keys in 0..4 {
            match parse_reply(reply.clone(), keys) {
                Ok(Reply::Mismatch(values) | Reply::Blocked(values)) => {
                    assert_eq!(values.len(), keys)
                }
                Ok(Reply::Applied) | Err(_) => {}
            }
        }
    }
}

fn limits() -> Vec<Limit> {
    let mut limits = Vec::new();
    for quota in [Quota::new(10, SEC, 10), Quota::new(100, 60 * SEC, 100)]
        .into_iter()
        .flatten()
    {
        for algorithm in [
            Algorithm::Gcra,
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::SlidingLog,
        ] {
            limits.push(Limit::new(algorithm, quota));
        }
    }
    limits
}
