//! Binaryen's `wasm-opt`, from npm (`binaryen`, pinned by `build-support/wasm-opt/
//! package-lock.json`, as the edge worker's build takes it), installed once into
//! `target/wasm-opt/` with `npm ci`. `SLUICE_WASM_OPT=/path/to/wasm-opt` uses another
//! (Binaryen 116 or newer).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::BuildError;

/// The optimisation the shipped filter gets, on top of rustc's (the `filter` profile,
/// `opt-level = 3`, see the workspace `Cargo.toml`): Binaryen's size passes, run until they
/// stop shrinking it, which cost no speed against `-O3` here. Measured in BENCHMARKS.md
/// (".wasm size").
pub const OPTIMIZE: &[&str] = &["-Oz", "--converge"];

/// The wasm features rustc emits for `wasm32-wasip1` (Rust 1.95's defaults) that the hosts
/// accept; wasm-opt keeps to them.
const FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// Optimises `input` into `output` (written whole or not at all).
pub fn optimize(root: &Path, input: &Path, output: &Path) -> Result<(), BuildError> {
    let wasm_opt = wasm_opt(root)?;
    if let Some(dir) = output.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| BuildError(format!("cannot create {}: {e}", dir.display())))?;
    }
    let partial = output.with_extension("wasm.partial");
    let result = Command::new(&wasm_opt)
        .args(OPTIMIZE)
        .args(FEATURES)
        .arg(input)
        .arg("-o")
        .arg(&partial)
        .output()
        .map_err(|e| BuildError(format!("cannot run {}: {e}", wasm_opt.display())))?;
    if !result.status.success() {
        return Err(BuildError(format!(
            "{}\nwasm-opt failed on {} ({}): its output is above",
            String::from_utf8_lossy(&result.stderr),
            input.display(),
            result.status
        )));
    }
    fs::rename(&partial, output)
        .map_err(|e| BuildError(format!("cannot write {}: {e}", output.display())))
}

/// The `wasm-opt` to run, installing it first if needed.
pub fn wasm_opt(root: &Path) -> Result<PathBuf, BuildError> {
    println!("cargo:rerun-if-env-changed=SLUICE_WASM_OPT");
    if let Some(path) = std::env::var_os("SLUICE_WASM_OPT") {
        return Ok(PathBuf::from(path));
    }
    let source = root.join("build-support").join("wasm-opt");
    let dir = root.join("target").join("wasm-opt");
    let bin = dir.join("node_modules").join(".bin").join("wasm-opt");
    fs::create_dir_all(&dir)
        .map_err(|e| BuildError(format!("cannot create {}: {e}", dir.display())))?;
    // Build scripts run in parallel: one installs, the others wait for it.
    let lock = File::create(dir.join(".lock"))
        .and_then(|file| file.lock().map(|()| file))
        .map_err(|e| BuildError(format!("cannot lock {}: {e}", dir.display())))?;
    let installed = dir.join("node_modules").join(".package-lock.json");
    let lock_file = source.join("package-lock.json");
    let fresh = bin.exists() && crate::is_newer(&installed, &lock_file);
    if !fresh {
        for file in ["package.json", "package-lock.json"] {
            fs::copy(source.join(file), dir.join(file)).map_err(|e| {
                BuildError(format!("cannot copy {file} into {}: {e}", dir.display()))
            })?;
        }
        let npm = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output();
        match npm {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                return Err(BuildError(format!(
                    "{}\n`npm ci` in {} failed ({}) installing binaryen's wasm-opt for the \
                     filter's release build: its output is above; or set SLUICE_WASM_OPT to a \
                     wasm-opt (Binaryen 116 or newer)",
                    String::from_utf8_lossy(&output.stderr),
                    dir.display(),
                    output.status
                )));
            }
            Err(e) => {
                return Err(BuildError(format!(
                    "cannot run npm ({e}) to install binaryen's wasm-opt for the filter's \
                     release build: install Node.js 18 or newer with npm, or set \
                     SLUICE_WASM_OPT to a wasm-opt (Binaryen 116 or newer)"
                )));
            }
        }
    }
    drop(lock);
    if !bin.exists() {
        return Err(BuildError(format!(
            "npm installed binaryen but {} is missing",
            bin.display()
        )));
    }
    Ok(bin)
}
