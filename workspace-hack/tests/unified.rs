//! `cargo test` (every default member, with dev-dependencies) and `cargo run -p sluice-host`
//! resolve the same features for every package sluice-host builds, so the second command
//! reuses the first one's builds. Fails with the packages and features to add to this crate's
//! `Cargo.toml` when a change to the workspace makes them differ again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Each package (`name vX.Y.Z`) with the features cargo enables for it, host target only.
fn features(args: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["tree", "--prefix", "none", "--format", "{p}|{f}"])
        .args(args);
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut packages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        // `name vX.Y.Z (path)` and ` (*)` / ` (proc-macro)` markers: keep name and version.
        let package = package.split(' ').take(2).collect::<Vec<_>>().join(" ");
        let features = features.trim_end_matches(" (*)").split(',');
        packages
            .entry(package)
            .or_default()
            .extend(features.filter(|f| !f.is_empty()).map(str::to_string));
    }
    packages
}

#[test]
fn cargo_run_of_the_host_resolves_the_features_cargo_test_does() {
    // What `cargo test` at the root builds, and what `cargo run -p sluice-host` builds.
    let test = features(&["-e", "normal,build,dev"]);
    let run = features(&["-p", "sluice-host", "-e", "normal,build"]);
    let mut missing = Vec::new();
    for (package, run_features) in &run {
        let Some(test_features) = test.get(package) else {
            continue;
        };
        let extra: Vec<_> = test_features.difference(run_features).collect();
        if !extra.is_empty() {
            missing.push(format!("{package}: {extra:?}"));
        }
    }
    assert!(
        missing.is_empty(),
        "`cargo test` enables features that `cargo run -p sluice-host` does not, so the second \
         rebuilds these packages and everything above them; add them to \
         workspace-hack/Cargo.toml:\n{}",
        missing.join("\n")
    );
}
