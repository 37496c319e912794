//! The `lease_bucket` fuzz target (`fuzz/src/lease_bucket.rs`) on the stable toolchain: every
//! input of its committed corpus (`fuzz/corpus/lease_bucket/`), then seeded mutations of
//! them. Lease buckets of any shape decode without panicking and round-trip.

#[path = "../../../fuzz/src/lease_bucket.rs"]
mod lease_bucket;
#[allow(dead_code)]
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

#[test]
fn the_lease_bucket_corpus_and_its_mutations_decode_safely() {
    replay::replay("lease_bucket", 1_500, lease_bucket::run);
}
