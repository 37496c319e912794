//! The `edge_lease` fuzz target (`fuzz/src/edge_lease.rs`) on the stable toolchain: every
//! input of its committed corpus (`fuzz/corpus/edge_lease/`), then seeded mutations of them.
//! Any bytes decode as a lease call or answer, or are refused with an error, never a panic;
//! what decodes is within the protocol's limits and can be carried out by the core.

#[path = "../../../fuzz/src/edge_lease.rs"]
mod edge_lease;
#[allow(dead_code)]
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

#[test]
fn the_edge_lease_corpus_and_its_mutations_are_messages_or_errors() {
    replay::replay("edge_lease", 5_000, edge_lease::run);
}
