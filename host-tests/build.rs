//! Builds the filters this crate runs in its tests, for `wasm32-wasip1` in
//! the release profile, and exports their paths:
//! `SLUICE_FILTER_WASM` (`-p sluice-filter`) and `PROBE_FILTER_WASM`
//! (`-p sluice-probe-filter`).
//!
//! The nested cargo uses its own target directory (`<workspace>/target/wasm`)
//! so that it never waits on the lock of the build running this script, and
//! runs without the outer build's flags (which are for the host, not for
//! wasm).
//!
//! `SLUICE_PREBUILT_FILTERS=<dir>` skips the nested build and takes both
//! `.wasm` files from `<dir>`: for builds on a toolchain that has no wasm
//! target, such as the nightly that cargo-fuzz needs (`fuzz/README.md`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

const TARGET: &str = "wasm32-wasip1";

/// Variables of the outer build that would change or break the nested one.
const OUTER_BUILD_VARIABLES: &[&str] = &[
    // Flags for the host target (instrumentation, target-cpu…).
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    // The outer target directory (sharing it would deadlock on its lock).
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    // The outer target triple.
    "CARGO_BUILD_TARGET",
    // `cargo clippy` runs the workspace's crates through clippy-driver.
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
];

/// A filter to build, and the variable that tells the tests where it is.
struct Filter {
    package: &'static str,
    file: &'static str,
    variable: &'static str,
}

const FILTERS: &[Filter] = &[
    Filter {
        package: "sluice-probe-filter",
        file: "sluice_probe_filter.wasm",
        variable: "PROBE_FILTER_WASM",
    },
    Filter {
        package: "sluice-filter",
        file: "sluice_filter.wasm",
        variable: "SLUICE_FILTER_WASM",
    },
];

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1);
}

fn workspace_root() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| fail("CARGO_MANIFEST_DIR is not set: run this through cargo"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| fail("host-tests has no parent directory"))
}

/// Installs the wasm target with rustup if the toolchain lacks it (rustup
/// installs the targets of `rust-toolchain.toml` only when it installs the
/// toolchain itself).
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let installed = sysroot
        .as_ref()
        .is_some_and(|sysroot| sysroot.join("lib/rustlib").join(TARGET).exists());
    if installed {
        return;
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        rustup.arg("--toolchain").arg(toolchain);
    }
    let rustup = rustup.status();
    match rustup {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed ({status})"
        )),
        Err(_) => fail(&format!(
            "the {TARGET} target is missing from the Rust toolchain and rustup is not available \
             to add it: install the target for this toolchain"
        )),
    }
}

fn main() {
    let root = workspace_root();
    for path in [
        "filters/proxy-wasm",
        "filters/core",
        "filters/policy",
        "host-tests/probe-filter",
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    println!("cargo:rerun-if-env-changed=SLUICE_PREBUILT_FILTERS");
    if let Some(dir) = env::var_os("SLUICE_PREBUILT_FILTERS") {
        let dir = PathBuf::from(dir);
        for filter in FILTERS {
            let path = dir.join(filter.file);
            if !path.exists() {
                fail(&format!(
                    "SLUICE_PREBUILT_FILTERS is set but {} is missing: build it with `cargo \
                     build --release --target {TARGET} -p {}`",
                    path.display(),
                    filter.package
                ));
            }
            println!("cargo:rerun-if-changed={}", path.display());
            println!("cargo:rustc-env={}={}", filter.variable, path.display());
        }
        return;
    }

    ensure_wasm_target();

    let target_dir = root.join("target").join("wasm");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = target_dir.join(TARGET).join("release");
    for filter in FILTERS {
        let mut build = Command::new(&cargo);
        build
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--target",
                TARGET,
                "-p",
                filter.package,
            ])
            .arg("--target-dir")
            .arg(&target_dir);
        for variable in OUTER_BUILD_VARIABLES {
            build.env_remove(variable);
        }
        let output = build.output().unwrap_or_else(|error| {
            fail(&format!(
                "cannot run cargo to build {}: {error}",
                filter.package
            ))
        });
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            fail(&format!(
                "building the {} filter for the tests failed ({}): `cargo build --release \
                 --target {TARGET} -p {}` (its output is above)",
                filter.package, output.status, filter.package
            ));
        }
        let path = out.join(filter.file);
        if !path.exists() {
            fail(&format!(
                "the wasm build succeeded but {} is missing",
                path.display()
            ));
        }
        println!("cargo:rerun-if-changed={}", path.display());
        println!("cargo:rustc-env={}={}", filter.variable, path.display());
    }
}
