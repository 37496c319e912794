//! Target `state`: any bytes as a stored counter state and as a stored table bucket (what
//! another VM, an older or newer version, or a damaged store may have left in shared data).
//!
//! Decoding never panics; what decodes re-encodes to exactly the same bytes (one encoding per
//! value, so two VMs never disagree about what is stored); a bucket never holds more than
//! `WAYS` entries; and every algorithm decides, refunds and ages whatever decoded without
//! panicking, producing states that round-trip too.

use sluice_core::table::{Bucket, WAYS};
use sluice_core::{Algorithm, Limit, Quota, State};

const SEC: u64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z in nanoseconds.
const NOW: u64 = 1_767_225_600 * SEC;

pub fn run(data: &[u8]) {
    if let Ok(state) = State::decode(data) {
        let mut encoded = Vec::new();
        state.encode_into(&mut encoded);
        assert_eq!(encoded, data, "{state:?} re-encodes differently");
        assert_eq!(state.encoded_len(), data.len());
        exercise(&state);
    }
    if let Ok(bucket) = Bucket::decode(data) {
        let mut encoded = Vec::new();
        bucket.encode_into(&mut encoded);
        assert_eq!(encoded, data, "{bucket:?} re-encodes differently");
        assert_eq!(bucket.encoded_len(), data.len());
        assert!(bucket.entries().len() <= WAYS);
        for entry in bucket.entries() {
            assert_ne!(entry.fingerprint, 0);
            exercise(&entry.state);
        }
        // Putting a new key into whatever was stored keeps the bucket within its ways.
        for limit in limits() {
            let mut changed = bucket.clone();
            let (_, state) = limit.decide(None, NOW, 1);
            changed.put(u64::MAX, state, &limit, NOW);
            assert!(changed.entries().len() <= WAYS);
            let mut bytes = Vec::new();
            changed.encode_into(&mut bytes);
            assert_eq!(Bucket::decode(&bytes).as_ref(), Ok(&changed));
        }
    }
}

/// Limits of every algorithm: a tight one, a typical one, and extreme ones.
fn limits() -> Vec<Limit> {
    let quotas = [
        Quota::new(1, 1_000_000, 1),
        Quota::new(10, SEC, 10),
        Quota::new(5, 10 * SEC, 20),
        Quota::new(1000, 86_400 * SEC, 1000),
        Quota::new(u64::MAX / 2, u64::MAX, u64::MAX),
    ];
    let mut limits = Vec::new();
    for quota in quotas.into_iter().flatten() {
        for algorithm in [
            Algorithm::Gcra,
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::SlidingLog,
            Algorithm::Concurrency,
        ] {
            if algorithm == Algorithm::SlidingLog && quota.limit() > 1000 {
                continue;
            }
            limits.push(Limit::new(algorithm, quota));
        }
    }
    limits
}

fn exercise(state: &State) {
    let times = [0, 1, NOW, NOW + SEC / 2, u64::MAX - 1, u64::MAX];
    for limit in limits() {
        let idle = limit.idle_at(state);
        for now in times.into_iter().chain([idle, idle.saturating_sub(1)]) {
            for cost in [0, 1, 3, limit.quota.limit(), u64::MAX] {
                let (decision, next) = limit.decide(Some(state), now, cost);
                assert!(
                    decision.allowed || decision.remaining == 0,
                    "a denial with units remaining: {decision:?}"
                );
                assert!(decision.allowed || decision.retry_after > 0 || cost == 0);
                let mut bytes = Vec::new();
                next.encode_into(&mut bytes);
                assert_eq!(State::decode(&bytes).as_ref(), Ok(&next));
                let refunded = limit.refund(&next, cost, now);
                let mut bytes = Vec::new();
                refunded.encode_into(&mut bytes);
                assert_eq!(State::decode(&bytes).as_ref(), Ok(&refunded));
                let _ = limit.idle_at(&next);
                if let Some(released) = limit.release(&next, now, now) {
                    let mut bytes = Vec::new();
                    released.encode_into(&mut bytes);
                    assert_eq!(State::decode(&bytes).as_ref(), Ok(&released));
                }
            }
        }
    }
}
