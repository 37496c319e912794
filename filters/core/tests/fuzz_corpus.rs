//! The `state` fuzz target (`fuzz/src/state.rs`) on the stable toolchain: every input of its
//! committed corpus (`fuzz/corpus/state/`), then seeded mutations of them. Stored states and
//! buckets of any shape decode without panicking, re-encode to the same bytes, and every
//! algorithm decides over them.

#[allow(dead_code)]
#[path = "../../../fuzz/src/replay.rs"]
mod replay;
#[path = "../../../fuzz/src/state.rs"]
mod state;

#[test]
fn the_state_corpus_and_its_mutations_decode_safely() {
    replay::replay("state", 1_500, state::run);
}
