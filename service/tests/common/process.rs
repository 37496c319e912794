//! The `sluice-service` binary as a child process, its log (JSON lines) captured, for tests
//! about what the binary prints.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A running `sluice-service`; killed on drop.
pub struct ServiceProcess {
    child: Child,
    output: Arc<Mutex<String>>,
}

/// A config file with `config` in `dir`.
pub fn write_config(dir: &Path, config: &str) -> PathBuf {
    let path = dir.join("sluice-service-test.json");
    std::fs::write(&path, config).expect("write the config");
    path
}

fn capture(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = from.read(&mut buffer) {
            if n == 0 {
                break;
            }
            if let Ok(mut output) = into.lock() {
                output.push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        }
    });
}

impl ServiceProcess {
    /// Starts the binary with `args`, JSON logs, HTTP on a free loopback port and no gRPC.
    pub fn start(args: &[String]) -> ServiceProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-service"))
            .args(args)
            .args(["--log-format", "json", "--grpc-listen", "none"])
            .args(["--http-listen", "127.0.0.1:0"])
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sluice-service starts");
        let output = Arc::new(Mutex::new(String::new()));
        capture(child.stdout.take().expect("stdout"), Arc::clone(&output));
        capture(child.stderr.take().expect("stderr"), Arc::clone(&output));
        ServiceProcess { child, output }
    }

    /// Everything printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits until the output contains `needle`; panics with the output after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {timeout:?} in:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTP base URL, from the "serving HTTP" log line.
    pub fn http(&self) -> String {
        self.wait_for("serving HTTP", Duration::from_secs(20));
        let output = self.output();
        let addr = output
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| {
                line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("serving HTTP"))
            })
            .and_then(|line| line["fields"]["addr"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no HTTP address in:\n{output}"));
        format!("http://{addr}")
    }

    /// Waits for the process to exit by itself; its exit status and output.
    pub fn wait_exit(mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the capture threads drain the pipes.
                thread::sleep(Duration::from_millis(100));
                return (status.code(), self.output());
            }
            assert!(
                Instant::now() < deadline,
                "still running after {timeout:?}:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
