//! `cargo run -p sluice-build-support --bin build-filter`: builds the sluice filter as it
//! ships (the release build for wasm32-wasip1, then wasm-opt) and prints where it is.
//! `... --bin build-filter -- passthrough` builds the benchmarks' pass-through filter the same
//! way (`benches/nginx/bench.py` runs both).

use std::process::ExitCode;

use sluice_build_support::{WasmBuild, shipped_filter, workspace_root};

fn main() -> ExitCode {
    let root = workspace_root();
    let build = match std::env::args().nth(1).as_deref() {
        None | Some("sluice") => shipped_filter(),
        Some("passthrough") => passthrough_filter(),
        Some(other) => {
            eprintln!("error: unknown filter {other:?}: build-filter [sluice|passthrough]");
            return ExitCode::FAILURE;
        }
    };
    match build.run(&root) {
        Ok(path) => {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let shown = path.strip_prefix(&root).unwrap_or(&path);
            println!("{} ({size} bytes)", shown.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The pass-through baseline, optimised as the shipped filter is.
fn passthrough_filter() -> WasmBuild {
    WasmBuild {
        package: "sluice-passthrough-filter",
        file: "sluice_passthrough_filter.wasm",
        features: Vec::new(),
        target_dir: "wasm",
        optimize: true,
    }
}
