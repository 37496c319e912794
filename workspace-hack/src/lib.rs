//! No code: this crate's dependencies carry the features `cargo test` enables across the
//! workspace for packages that `sluice-host` also builds (see its `Cargo.toml`), so that
//! `cargo run -p sluice-host` after `cargo test` reuses the same builds instead of compiling
//! wasmtime and its dependencies again.
