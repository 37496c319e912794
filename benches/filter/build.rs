//! Builds the pass-through filter (`sluice-passthrough-filter`) for `wasm32-wasip1` in the
//! `filter` profile, optimised with wasm-opt as the shipped sluice filter is (both through
//! `sluice-build-support`, into `<workspace>/target/wasm`), and exports its path as
//! `PASSTHROUGH_FILTER_WASM`. The sluice filter itself is host-tests' build
//! (`sluice_host::test_filters::SLUICE_FILTER_WASM`).
//!
//! It also builds the sluice filter with its `count-allocations` feature, into
//! `<workspace>/target/wasm-allocations`, and exports `SLUICE_ALLOCATIONS_WASM`, for the
//! allocation test and the benchmark.

use std::process::exit;

use sluice_build_support::{WasmBuild, workspace_root};

fn run(build: &WasmBuild, variable: &str) {
    let root = workspace_root();
    match build.run(&root) {
        Ok(path) => {
            println!("cargo:rerun-if-changed={}", path.display());
            println!("cargo:rustc-env={variable}={}", path.display());
        }
        Err(error) => {
            eprintln!("error: {error}");
            exit(1);
        }
    }
}

fn main() {
    let root = workspace_root();
    sluice_build_support::rerun_if_changed(
        &root,
        &[
            "benches/passthrough-filter",
            "filters/proxy-wasm",
            "filters/core",
            "filters/policy",
        ],
    );
    run(
        &WasmBuild {
            package: "sluice-passthrough-filter",
            file: "sluice_passthrough_filter.wasm",
            features: Vec::new(),
            target_dir: "wasm",
            optimize: true,
        },
        "PASSTHROUGH_FILTER_WASM",
    );
    run(
        &WasmBuild {
            package: "sluice-filter",
            file: "sluice_filter.wasm",
            features: vec!["count-allocations"],
            target_dir: "wasm-allocations",
            optimize: true,
        },
        "SLUICE_ALLOCATIONS_WASM",
    );
}
