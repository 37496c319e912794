//! The `filter` fuzz target (`fuzz/src/filter.rs`) on the stable toolchain, through this
//! binary's host: every input of its committed corpus (`fuzz/corpus/filter/`), then seeded
//! mutations of them. Whatever the headers (not even UTF-8), the peer address text or the
//! clock, the filter forwards or denies with 429 and never traps.

use crate::{fuzz_filter, replay};

#[test]
fn the_filter_corpus_and_its_mutations_never_trap_the_filter() {
    replay::replay("filter", 1_000, fuzz_filter::run);
}
