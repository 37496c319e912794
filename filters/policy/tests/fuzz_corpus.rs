//! The `config`, `request`, `decide_reply` and `lease_wire` fuzz targets (`fuzz/src/`) on the stable toolchain: every input
//! of their committed corpora (`fuzz/corpus/<target>/`), then seeded mutations of them.
//! Any configuration compiles or is rejected with one line; any request goes through
//! matching, exemptions, client-address and key code without panicking, and neither entries
//! prepended to `X-Forwarded-For` nor another address in the same IPv6 /64 change a key.

#[path = "../../../fuzz/src/config.rs"]
mod config;
#[path = "../../../fuzz/src/decide_reply.rs"]
mod decide_reply;
#[path = "../../../fuzz/src/fuzzed_request.rs"]
mod fuzzed_request;
#[allow(dead_code)]
#[path = "../../../fuzz/src/input.rs"]
mod input;
#[path = "../../../fuzz/src/lease_wire.rs"]
mod lease_wire;
#[allow(dead_code)]
#[path = "../../../fuzz/src/replay.rs"]
mod replay;
#[path = "../../../fuzz/src/request.rs"]
mod request;

#[test]
fn the_config_corpus_and_its_mutations_compile_or_fail_in_one_line() {
    replay::replay("config", 5_000, config::run);
}

#[test]
fn the_request_corpus_and_its_mutations_keep_keys_unspoofable() {
    replay::replay("request", 5_000, request::run);
}

#[test]
fn the_decide_reply_corpus_and_its_mutations_are_answers_or_errors() {
    replay::replay("decide_reply", 3_000, decide_reply::run);
}

#[test]
fn the_lease_wire_corpus_and_its_mutations_are_answers_or_errors() {
    replay::replay("lease_wire", 3_000, lease_wire::run);
}
