//! Nested cargo builds, in one place.
//!
//! Several parts of the workspace run cargo (or a build script that runs cargo) from inside a
//! cargo build: host-tests' build script builds the filters its tests run, benches/filter's
//! build script builds the pass-through baseline, and the workerd tests build the edge worker.
//! They share two things, kept here:
//!
//! - [`clean_command`]: a command without the outer build's variables
//!   ([`OUTER_BUILD_VARIABLES`]), which are for the host target and the outer target
//!   directory, not for a nested build.
//! - [`WasmBuild`]: a `wasm32-wasip1` build of a workspace package (the `filter` profile) into its own
//!   target directory (so it never waits on the outer build's lock), optionally followed by
//!   `wasm-opt` ([`wasm_opt`]). [`shipped_filter`] is the sluice filter exactly as the README
//!   builds it and the tests run it.

use std::env;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod wasm_opt;

/// The target the proxy-wasm filters ship for.
pub const WASI_TARGET: &str = "wasm32-wasip1";

/// The cargo profile of the filters' builds (the workspace `Cargo.toml`: the release profile
/// at `opt-level = 3`).
pub const FILTER_PROFILE: &str = "filter";

/// Variables of an outer cargo run that would change or break a nested build.
pub const OUTER_BUILD_VARIABLES: &[&str] = &[
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
    // The outer build's jobserver.
    "CARGO_MAKEFLAGS",
];

/// A command for `program` without the outer build's variables.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for variable in OUTER_BUILD_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map_or_else(|| here.to_path_buf(), Path::to_path_buf)
}

/// Why a nested build failed; the message says what to do.
#[derive(Debug)]
pub struct BuildError(pub String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// A `wasm32-wasip1` build of one workspace package in the [`FILTER_PROFILE`].
#[derive(Debug, Clone)]
pub struct WasmBuild {
    /// The package (`-p`).
    pub package: &'static str,
    /// Its output file, e.g. `sluice_filter.wasm`.
    pub file: &'static str,
    /// Cargo features to enable.
    pub features: Vec<&'static str>,
    /// The nested build's target directory, under the workspace's `target/`.
    pub target_dir: &'static str,
    /// Run [`wasm_opt::OPTIMIZE`] on the result.
    pub optimize: bool,
}

/// The sluice filter as it ships: the release build, then `wasm-opt`. The README's build
/// command (the `build-filter` binary) and the tests build this one file.
pub fn shipped_filter() -> WasmBuild {
    WasmBuild {
        package: "sluice-filter",
        file: "sluice_filter.wasm",
        features: Vec::new(),
        target_dir: "wasm",
        optimize: true,
    }
}

impl WasmBuild {
    /// The raw cargo output.
    pub fn cargo_output(&self, root: &Path) -> PathBuf {
        root.join("target")
            .join(self.target_dir)
            .join(WASI_TARGET)
            .join(FILTER_PROFILE)
            .join(self.file)
    }

    /// The finished file: the cargo output, or its optimised copy next to it
    /// (`<target dir>/opt/<file>`).
    pub fn output(&self, root: &Path) -> PathBuf {
        if self.optimize {
            root.join("target")
                .join(self.target_dir)
                .join("opt")
                .join(self.file)
        } else {
            self.cargo_output(root)
        }
    }

    /// The command line a user would type for the cargo part.
    pub fn cargo_command_line(&self) -> String {
        let mut line = format!(
            "cargo build --profile {FILTER_PROFILE} --target {WASI_TARGET} -p {}",
            self.package
        );
        if !self.features.is_empty() {
            line.push_str(&format!(" --features {}", self.features.join(",")));
        }
        line
    }

    /// Builds it (cargo is incremental; `wasm-opt` runs when the cargo output is newer than
    /// the optimised file) and answers the finished file.
    pub fn run(&self, root: &Path) -> Result<PathBuf, BuildError> {
        ensure_target(WASI_TARGET)?;
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = clean_command(cargo);
        build
            .current_dir(root)
            .args([
                "build",
                "--profile",
                FILTER_PROFILE,
                "--target",
                WASI_TARGET,
                "-p",
                self.package,
            ])
            .arg("--target-dir")
            .arg(root.join("target").join(self.target_dir));
        if !self.features.is_empty() {
            build.arg("--features").arg(self.features.join(","));
        }
        let output = build.output().map_err(|error| {
            BuildError(format!(
                "cannot run cargo to build {}: {error}",
                self.package
            ))
        })?;
        if !output.status.success() {
            return Err(BuildError(format!(
                "{}\nbuilding {} failed ({}): `{}` (its output is above)",
                String::from_utf8_lossy(&output.stderr),
                self.package,
                output.status,
                self.cargo_command_line(),
            )));
        }
        let built = self.cargo_output(root);
        if !built.exists() {
            return Err(BuildError(format!(
                "the wasm build succeeded but {} is missing",
                built.display()
            )));
        }
        if !self.optimize {
            return Ok(built);
        }
        let optimized = self.output(root);
        if !is_newer(&optimized, &built) {
            wasm_opt::optimize(root, &built, &optimized)?;
        }
        Ok(optimized)
    }
}

/// Whether `file` exists and was written after `source`.
fn is_newer(file: &Path, source: &Path) -> bool {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    match (modified(file), modified(source)) {
        (Some(file), Some(source)) => file >= source,
        _ => false,
    }
}

/// Installs `target` with rustup if the toolchain lacks it (rustup installs the targets of
/// `rust-toolchain.toml` only when it installs the toolchain itself).
pub fn ensure_target(target: &str) -> Result<(), BuildError> {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    let installed = sysroot
        .as_ref()
        .is_some_and(|sysroot| sysroot.join("lib/rustlib").join(target).exists());
    if installed {
        return Ok(());
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", target]);
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        rustup.arg("--toolchain").arg(toolchain);
    }
    match rustup.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(BuildError(format!(
            "the {target} target is missing and `rustup target add {target}` failed ({status})"
        ))),
        Err(_) => Err(BuildError(format!(
            "the {target} target is missing from the Rust toolchain and rustup is not available \
             to add it: install the target for this toolchain"
        ))),
    }
}

/// For build scripts: re-run when the workspace's manifests, lock or toolchain change, and
/// when any of `paths` (relative to the workspace root) does.
pub fn rerun_if_changed(root: &Path, paths: &[&str]) {
    let common = [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain.toml",
        "build-support/wasm-opt",
    ];
    for path in common.iter().chain(paths) {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
}
