//! Builds the filters this crate runs in its tests, for `wasm32-wasip1` in the `filter`
//! profile, and exports their paths: `SLUICE_FILTER_WASM` (the sluice filter as it ships,
//! wasm-opt included: `sluice_build_support::shipped_filter`, the README's build) and
//! `PROBE_FILTER_WASM` (`-p sluice-probe-filter`). The nested builds are
//! `sluice-build-support`'s: their own target directory (`<workspace>/target/wasm`, so they
//! never wait on the lock of the build running this script), without the outer build's
//! flags.
//!
//! `SLUICE_PREBUILT_FILTERS=<dir>` skips the nested builds and takes both `.wasm` files from
//! `<dir>`: for builds on a toolchain that has no wasm target, such as the nightly that
//! cargo-fuzz needs (`fuzz/README.md`).

use std::env;
use std::path::PathBuf;
use std::process::exit;

use sluice_build_support::{WasmBuild, shipped_filter, workspace_root};

/// A filter to build, and the variable that tells the tests where it is.
fn filters() -> [(WasmBuild, &'static str); 2] {
    [
        (
            WasmBuild {
                package: "sluice-probe-filter",
                file: "sluice_probe_filter.wasm",
                features: Vec::new(),
                target_dir: "wasm",
                optimize: false,
            },
            "PROBE_FILTER_WASM",
        ),
        (shipped_filter(), "SLUICE_FILTER_WASM"),
    ]
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1);
}

fn main() {
    let root = workspace_root();
    sluice_build_support::rerun_if_changed(
        &root,
        &[
            "filters/proxy-wasm",
            "filters/core",
            "filters/policy",
            "host-tests/probe-filter",
        ],
    );

    println!("cargo:rerun-if-env-changed=SLUICE_PREBUILT_FILTERS");
    if let Some(dir) = env::var_os("SLUICE_PREBUILT_FILTERS") {
        let dir = PathBuf::from(dir);
        for (build, variable) in filters() {
            let path = dir.join(build.file);
            if !path.exists() {
                fail(&format!(
                    "SLUICE_PREBUILT_FILTERS is set but {} is missing: build it with `{}`",
                    path.display(),
                    build.cargo_command_line()
                ));
            }
            println!("cargo:rerun-if-changed={}", path.display());
            println!("cargo:rustc-env={variable}={}", path.display());
        }
        return;
    }

    for (build, variable) in filters() {
        let path = build
            .run(&root)
            .unwrap_or_else(|error| fail(&error.to_string()));
        println!("cargo:rerun-if-changed={}", path.display());
        println!("cargo:rustc-env={variable}={}", path.display());
    }
}
