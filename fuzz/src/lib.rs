//! The bodies of sluice's fuzz targets, one module per target. Each `run` takes the raw input
//! and panics only when it finds a bug: a panic in the code under test, or a broken invariant.
//!
//! The `fuzz_targets/` binaries call them under libFuzzer; the main workspace's stable
//! `cargo test` includes the same files and replays `corpus/<target>/` through them, plus
//! seeded mutations of it (`replay`).

pub mod config;
pub mod decide_reply;
pub mod edge_lease;
#[cfg(feature = "filter")]
pub mod filter;
pub mod fuzzed_request;
pub mod input;
pub mod lease_bucket;
pub mod lease_wire;
pub mod nginx_conf;
#[cfg(feature = "redis")]
pub mod redis;
pub mod replay;
pub mod request;
pub mod state;
