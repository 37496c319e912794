//! Builds the sluice edge worker (`edge-worker/build.sh`: worker-build with project-local
//! wasm-bindgen, wasm-opt and esbuild) and runs its test suite (`edge-worker/test/`, node's
//! test runner driving workerd through miniflare), so that `cargo test` at the workspace root
//! covers the worker too. See `tests/workerd.rs`.

use std::env;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// `edge-worker/`.
pub fn worker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Cargo's target directory for this run: the one holding the running test binary (cargo
/// marks the root of a target directory with `CACHEDIR.TAG`), so `CARGO_TARGET_DIR` and
/// `build.target-dir` are honoured; else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| worker_dir().join("../target"))
}

/// `edge-worker/` under the target directory: the worker's tools, its build and test files.
pub fn work_dir() -> PathBuf {
    target_dir().join("edge-worker")
}

/// The worker's build (`edge-worker/build.sh`) in the target directory of this run, so a
/// second checkout sharing it reuses the built tools.
pub fn build_command() -> Command {
    let mut build = clean_command("bash");
    build.arg("build.sh").env("CARGO_TARGET_DIR", target_dir());
    build
}

/// A command without the outer build's variables (`sluice_build_support::clean_command`),
/// wrangler kept offline.
pub fn clean_command(program: &str) -> Command {
    let mut command = sluice_build_support::clean_command(program);
    command
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .current_dir(worker_dir());
    command
}

/// Runs `command`, returning its output, or an error with everything it printed.
pub fn run(mut command: Command, what: &str) -> Result<Output, String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", command.get_program()))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Runs `command` to completion or until `limit` has passed (then kills it), returning its
/// exit code (`None`: killed or ended by a signal), stdout and stderr.
pub fn run_with_limit(
    mut command: Command,
    limit: Duration,
) -> std::io::Result<(Option<i32>, String, String)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let stdout = stdout.join().unwrap_or_default();
    let mut stderr = stderr.join().unwrap_or_default();
    if code.is_none() && Instant::now() >= deadline {
        stderr.push_str(&format!("\n(killed after {} s)\n", limit.as_secs()));
    }
    Ok((code, stdout, stderr))
}

/// Bad configurations and the message the policy gives for each in the worker's view
/// (`Policy::from_json_edge`, where any rule may have a lease), as JSON
/// `[{"config": TEXT, "message": TEXT}]` for the worker's bad-config test.
pub fn expected_config_errors() -> String {
    let configs = [
        r#"{"rules": [{"name": "per-client", "key": ["client_ip"], "limit": {"requests": 100, "period": "5x"}}]}"#,
        r#"{"rules": [{"name": "a", "key": ["client_ip"], "limit": {"requests": 1, "period": "1s"}, "colour": "red"}]}"#,
        r#"{"rules": []"#,
        r#"{"rules": [{"name": "x", "key": ["client_ip"], "limit": {"requests": 2000, "period": "1s"}, "algorithm": "sliding_log"}]}"#,
        r#"{"rules": [{"name": "log", "key": ["client_ip"], "limit": {"requests": 5, "period": "1s"}, "algorithm": "sliding_log", "lease": {"size": 2}}]}"#,
        r#"{"rules": [{"name": "big", "key": ["client_ip"], "limit": {"requests": 5, "period": "1s"}, "lease": {"size": 6}}]}"#,
        r#"{"rules": [{"name": "leased", "key": ["client_ip"], "limit": {"requests": 5, "period": "1s"}, "lease": {"size": 2}}, {"name": "spaced", "key": ["client_ip"], "limit": {"requests": 5, "period": "1s"}, "delay": {"max": "1s"}}]}"#,
    ];
    let cases: Vec<serde_json::Value> = configs
        .iter()
        .map(
            |config| match sluice_policy::Policy::from_json_edge(config.as_bytes()) {
                Err(error) => serde_json::json!({"config": config, "message": error.to_string()}),
                Ok(_) => panic!("this configuration was meant to be invalid: {config}"),
            },
        )
        .collect();
    serde_json::Value::Array(cases).to_string()
}
