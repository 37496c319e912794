//! The `redis` fuzz target (`fuzz/src/redis.rs`) on the stable toolchain: every input of its
//! committed corpus (`fuzz/corpus/redis/`), then seeded mutations of them. Values and script
//! replies of any shape decode without panicking; what decodes re-encodes to the same bytes.

#[path = "../../../fuzz/src/redis.rs"]
mod redis_target;
#[allow(dead_code)]
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

#[test]
fn the_redis_corpus_and_its_mutations_decode_safely() {
    replay::replay("redis", 3_000, redis_target::run);
}
