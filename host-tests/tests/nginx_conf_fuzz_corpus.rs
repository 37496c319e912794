//! The `nginx_conf` fuzz target (`fuzz/src/nginx_conf.rs`) on the stable toolchain: every input
//! of its committed corpus (`fuzz/corpus/nginx_conf/`), then seeded mutations of them. Any file
//! is read by `sluice check`'s NGINX reader into directives or one error line inside the file,
//! never a panic or a hang, and an escaped configuration reads back unchanged.

#[path = "../../fuzz/src/nginx_conf.rs"]
mod nginx_conf;
#[allow(dead_code)]
#[path = "../../fuzz/src/replay.rs"]
mod replay;

#[test]
fn the_nginx_conf_corpus_and_its_mutations_read_or_fail_in_one_line() {
    replay::replay("nginx_conf", 5_000, nginx_conf::run);
}
