//! `sluice serve` as a user runs it: a real HTTP server on loopback, the filter in front of the
//! built-in echo upstream, 200 until the limit and then 429 with the rate-limit headers.
//! `sluice check` accepts the shipped configs and names the rule and field of a bad one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Kills the server when the test ends, passing or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sluice serve` on a free loopback port and answers its address.
fn serve(config: &str) -> (Server, String) {
    let path = std::env::temp_dir().join(format!("sluice-serve-test-{}.json", std::process::id()));
    std::fs::write(&path, config).expect("config written");
    let mut child = Command::new(SLUICE)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sluice starts");
    let stderr = child.stderr.take().expect("stderr");
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("sluice prints its address")
            .expect("utf-8");
        if let Some(rest) = line.strip_prefix("sluice: listening on http://") {
            break rest
                .split_whitespace()
                .next()
                .expect("an address")
                .to_string();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (server, address)
}

/// One HTTP/1.1 request; answers the status line and the raw response.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connects");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, response.to_ascii_lowercase())
}

#[test]
fn serve_answers_200_until_the_limit_then_429_with_headers() {
    let (_server, address) = serve(
        r#"{"exempt": {"paths": ["/healthz"]}, "response": {"headers": "both"},
            "rules": [{"name": "per-client", "key": ["client_ip"], "algorithm": "fixed_window",
                       "limit": {"requests": 2, "period": "1h"}}]}"#,
    );
    let (first, response) = get(&address, "/");
    assert_eq!(first, 200, "{response}");
    assert!(
        response.contains("sluice built-in echo"),
        "the echo upstream answered: {response}"
    );
    assert!(
        response.contains("ratelimit-policy: \"per-client\";q=2;w=3600"),
        "{response}"
    );
    assert!(response.contains("x-ratelimit-remaining: 1"), "{response}");
    assert_eq!(get(&address, "/").0, 200);
    let (third, response) = get(&address, "/");
    assert_eq!(third, 429, "{response}");
    assert!(response.contains("retry-after: "), "{response}");
    assert!(response.contains("x-ratelimit-remaining: 0"), "{response}");
    assert!(response.ends_with("rate limit exceeded\n"), "{response}");
    assert_eq!(get(&address, "/healthz").0, 200, "exempt paths still pass");
}

#[test]
fn check_accepts_the_shipped_configs_and_rejects_a_bad_one() {
    let shipped = Command::new(SLUICE)
        .arg("check")
        .args([
            "sluice.json",
            "behind-cloudflare.json",
            "behind-load-balancer.json",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy-config"))
        .output()
        .expect("sluice check runs");
    assert!(
        shipped.status.success(),
        "{}",
        String::from_utf8_lossy(&shipped.stderr)
    );

    let path = std::env::temp_dir().join(format!("sluice-check-test-{}.json", std::process::id()));
    std::fs::write(&path, r#"{"rules": [{"name": "a", "key": ["client_ip"], "limit": {"requests": 0, "period": "1s"}}]}"#)
        .expect("written");
    let bad = Command::new(SLUICE)
        .arg("check")
        .arg(&path)
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("rule \"a\"") && stderr.contains("limit.requests"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_cluster_that_is_not_name_equals_host_port() {
    let output = Command::new(SLUICE)
        .args(["serve", "--listen", "127.0.0.1:0", "--cluster", "limits"])
        .output()
        .expect("sluice runs");
    assert!(!output.status.success(), "a bad --cluster is refused");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cluster `limits`: expected NAME=HOST:PORT"),
        "{stderr}"
    );
}

#[test]
fn serve_names_the_clusters_its_filter_can_call() {
    let mut child = Command::new(SLUICE)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            "sluice_service=127.0.0.1:8081",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sluice starts");
    let stderr = child.stderr.take().expect("stderr");
    let _server = Server(child);
    let line = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("sluice: listening on"))
        .expect("sluice prints its address");
    assert!(
        line.contains("clusters: sluice_service=127.0.0.1:8081"),
        "{line}"
    );
}
