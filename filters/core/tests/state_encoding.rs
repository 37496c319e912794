//! Properties of the stored encodings: arbitrary bytes never panic the decoders, every state and
//! bucket round-trips, and whatever decodes re-encodes to the same bytes (one encoding per value).

use proptest::prelude::*;
use sluice_core::state::{Log, LogEntry};
use sluice_core::table::{Bucket, WAYS};
use sluice_core::{Algorithm, Limit, Quota, State};

fn log() -> impl Strategy<Value = Log> {
    (
        any::<u64>(),
        prop::collection::vec((1u64..1 << 40, 1u64..=u64::MAX), 0..50),
    )
        .prop_map(|(first, steps)| {
            let mut at = first;
            let mut entries = Vec::new();
            for (index, (gap, units)) in steps.into_iter().enumerate() {
                if index > 0 {
                    match at.checked_add(gap) {
                        Some(next) => at = next,
                        None => break,
                    }
                }
                entries.push(LogEntry { at, units });
            }
            Log::from_entries(entries).unwrap()
        })
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        any::<u64>().prop_map(|tat| State::Gcra { tat }),
        (any::<u64>(), any::<u64>()).prop_map(|(window_start, count)| State::FixedWindow {
            window_start,
            count
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(window_start, previous, current)| {
            State::SlidingWindow {
                window_start,
                previous,
                current,
            }
        }),
        log().prop_map(|log| State::SlidingLog { log }),
    ]
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics_and_is_canonical(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(state) = State::decode(&bytes) {
            let mut again = Vec::new();
            state.encode_into(&mut again);
            prop_assert_eq!(again, bytes.clone());
        }
        if let Ok(bucket) = Bucket::decode(&bytes) {
            let mut again = Vec::new();
            bucket.encode_into(&mut again);
            prop_assert_eq!(again, bytes);
        }
    }

    #[test]
    fn decoding_plausible_prefixes_never_panics(
        state in state(),
        cut in any::<prop::sample::Index>(),
        flip in any::<(prop::sample::Index, u8)>(),
    ) {
        let mut bytes = Vec::new();
        state.encode_into(&mut bytes);
        let cut = cut.index(bytes.len());
        prop_assert!(State::decode(&bytes[..cut]).is_err());
        let (at, xor) = flip;
        let at = at.index(bytes.len());
        bytes[at] ^= xor;
        let _ = State::decode(&bytes);
    }

    #[test]
    fn every_state_round_trips(state in state()) {
        let mut bytes = Vec::new();
        state.encode_into(&mut bytes);
        prop_assert_eq!(bytes.len(), state.encoded_len());
        prop_assert_eq!(State::decode(&bytes), Ok(state));
    }

    #[test]
    fn every_bucket_round_trips(
        signature in any::<u64>(),
        entries in prop::collection::btree_map(1u64..=u64::MAX, state(), 0..=WAYS),
    ) {
        let limit = Limit::new(Algorithm::Gcra, Quota::new(1, 1, 1).unwrap());
        let mut bucket = Bucket::new(signature);
        for (fingerprint, state) in entries {
            bucket.put(fingerprint, state, &limit, 0);
        }
        let mut bytes = Vec::new();
        bucket.encode_into(&mut bytes);
        prop_assert_eq!(bytes.len(), bucket.encoded_len());
        prop_assert_eq!(Bucket::decode(&bytes), Ok(bucket));
    }
}
