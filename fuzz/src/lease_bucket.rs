//! Target `lease_bucket`: any bytes as a stored lease bucket (what another VM, another
//! version or a damaged store may have left in a global rule's lease table).
//!
//! Decoding never panics and gives at most `WAYS` entries with distinct, non-zero
//! fingerprints; what decodes re-encodes at the table's full size and decodes to the same
//! entries; making room for a new key keeps the bucket within its ways and reports an evicted
//! entry only if it held units.

use sluice_filter::lease_table::{BUCKET_BYTES, LeaseBucket, WAYS};

const SIGNATURE: u64 = 0x5eed;
/// 2026-01-01T00:00:00Z in nanoseconds.
const NOW: u64 = 1_767_225_600_000_000_000;

pub fn run(data: &[u8]) {
    // The stored signature is read from the bytes, so a decode under it is possible too.
    let signatures = [SIGNATURE, signature_in(data)];
    for signature in signatures {
        let bucket = LeaseBucket::decode(data, signature);
        assert!(bucket.entries.len() <= WAYS);
        for (i, entry) in bucket.entries.iter().enumerate() {
            assert_ne!(entry.fingerprint, 0);
            assert!(
                bucket.entries[..i]
                    .iter()
                    .all(|e| e.fingerprint != entry.fingerprint)
            );
        }
        let mut encoded = Vec::new();
        bucket.encode_into(signature, &mut encoded);
        assert_eq!(encoded.len(), BUCKET_BYTES);
        assert_eq!(LeaseBucket::decode(&encoded, signature), bucket);
        for fingerprint in [1, u64::MAX] {
            let mut changed = bucket.clone();
            let had = changed.find(fingerprint).is_some();
            let Some((entry, evicted)) = changed.entry_mut(fingerprint, NOW) else {
                panic!("no entry for {fingerprint}");
            };
            assert_eq!(entry.fingerprint, fingerprint);
            if had {
                assert!(evicted.is_none());
            }
            if let Some(evicted) = evicted {
                assert!(evicted.unspent > 0);
            }
            assert!(changed.entries.len() <= WAYS);
            changed.encode_into(signature, &mut encoded);
            assert_eq!(LeaseBucket::decode(&encoded, signature), changed);
        }
    }
}

fn signature_in(data: &[u8]) -> u64 {
    data.get(1..9)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}
