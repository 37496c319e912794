//! Builds the pass-through filter (`sluice-passthrough-filter`) for `wasm32-wasip1` in the
//! release profile, as host-tests' build script builds the sluice filter (same target
//! directory, `<workspace>/target/wasm`, and the same reasons), and exports its path as
//! `PASSTHROUGH_FILTER_WASM`.
//!
//! For `cargo bench` (the release-based bench profile) it also builds the sluice filter with
//! its `count-allocations` feature, into `<workspace>/target/wasm-allocations`, and exports
//! `SLUICE_ALLOCATIONS_WASM`; tests (the dev profile, as in CI) do without it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

const TARGET: &str = "wasm32-wasip1";
const PACKAGE: &str = "sluice-passthrough-filter";
const FILE: &str = "sluice_passthrough_filter.wasm";

/// Variables of the outer build that would change or break the nested one (see
/// host-tests/build.rs).
const OUTER_BUILD_VARIABLES: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
];

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1);
}

/// Builds `package` (with `features`) for wasm into `target_dir` and answers the `.wasm`.
fn build_wasm(
    root: &Path,
    target_dir: &Path,
    package: &str,
    features: &[&str],
    file: &str,
) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .current_dir(root)
        .args(["build", "--release", "--target", TARGET, "-p", package])
        .arg("--target-dir")
        .arg(target_dir);
    if !features.is_empty() {
        build.arg("--features").arg(features.join(","));
    }
    for variable in OUTER_BUILD_VARIABLES {
        build.env_remove(variable);
    }
    let output = build
        .output()
        .unwrap_or_else(|error| fail(&format!("cannot run cargo to build {package}: {error}")));
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        fail(&format!(
            "building {package} failed ({}): `cargo build --release --target {TARGET} -p \
             {package}` (its output is above; the {TARGET} target must be installed, \
             see rust-toolchain.toml)",
            output.status
        ));
    }
    let path = target_dir.join(TARGET).join("release").join(file);
    if !path.exists() {
        fail(&format!(
            "the wasm build succeeded but {} is missing",
            path.display()
        ));
    }
    println!("cargo:rerun-if-changed={}", path.display());
    path
}

fn main() {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| fail("CARGO_MANIFEST_DIR is not set: run this through cargo"));
    let Some(root) = manifest_dir.parent().and_then(|benches| benches.parent()) else {
        fail("benches/filter is not inside the workspace");
    };
    for path in [
        "benches/passthrough-filter",
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let path = build_wasm(root, &root.join("target").join("wasm"), PACKAGE, &[], FILE);
    println!("cargo:rustc-env=PASSTHROUGH_FILTER_WASM={}", path.display());

    if env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rerun-if-changed={}", root.join("filters").display());
        let path = build_wasm(
            root,
            &root.join("target").join("wasm-allocations"),
            "sluice-filter",
            &["count-allocations"],
            "sluice_filter.wasm",
        );
        println!("cargo:rustc-env=SLUICE_ALLOCATIONS_WASM={}", path.display());
    }
}
