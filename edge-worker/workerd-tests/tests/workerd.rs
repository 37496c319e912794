//! Builds the edge worker and runs its whole test suite in workerd: the shared vectors, the
//! config features, concurrency, delay rules, requests in flight (concurrency rules), restart,
//! origin, failure modes, object calls, the negative
//! cache (one isolate and two sharing objects), clean-up on the real and the test clock, bad
//! configs, client IP and `wrangler deploy --dry-run` (one file per behaviour in
//! `edge-worker/test/`). Fails with the suite's output if anything fails; prints the suite's
//! summary either way.
//!
//! A fresh clone needs nothing but cargo and npm: `build.sh` installs wasm-bindgen-cli and
//! worker-build into `edge-worker/tools` of the target directory this test runs from (so
//! `CARGO_TARGET_DIR` is honoured) and runs `npm ci` from the committed lock.

use std::fs;
use std::io::Write as _;
use std::time::Duration;

use sluice_edge_worker_tests::{
    build_command, clean_command, expected_config_errors, run, run_with_limit, work_dir,
};

/// However the suite ends, `cargo test` does not wait longer than this for it.
const SUITE_LIMIT: Duration = Duration::from_secs(20 * 60);

/// Writes past libtest's capture, so the summary shows in `cargo test`'s output.
fn show(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

fn summary_count(output: &str, label: &str) -> Option<u64> {
    output.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix('ℹ')?.trim().strip_prefix(label)?;
        rest.trim().parse().ok()
    })
}

#[test]
fn the_worker_passes_its_suite_in_workerd() {
    let work = work_dir();
    fs::create_dir_all(&work).expect("create edge-worker/ in the target directory");

    if let Err(error) = run(
        build_command(),
        "building the worker (edge-worker/build.sh)",
    ) {
        panic!("{error}");
    }

    let errors_file = work.join("expected-config-errors.json");
    fs::write(&errors_file, expected_config_errors()).expect("write the expected config errors");

    let mut suite = clean_command("node");
    suite
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-timeout=180000",
            "--test-reporter=spec",
        ])
        .arg("test/")
        .env("SLUICE_EXPECTED_CONFIG_ERRORS", &errors_file);
    let (code, stdout, stderr) =
        run_with_limit(suite, SUITE_LIMIT).expect("run node --test (is node installed?)");
    let passed = summary_count(&stdout, "pass");
    let failed = summary_count(&stdout, "fail");

    let tail: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('ℹ') || l.starts_with("vectors:") || l.starts_with("bundle:"))
        .collect();
    show(&format!(
        "\nworkerd suite (edge-worker/test):\n{}\n",
        tail.join("\n")
    ));

    assert!(
        code == Some(0) && failed == Some(0) && passed.is_some_and(|n| n > 0),
        "the worker's suite failed in workerd (exit {code:?}; {passed:?} passed, {failed:?} \
         failed):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
}
