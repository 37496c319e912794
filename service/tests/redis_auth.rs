//! Authentication towards Redis on a real Redis: an ACL user allowed only what sluice needs
//! (the commands and key pattern in service/README.md) decides every algorithm, the script's
//! reload after `SCRIPT FLUSH` included; a wrong password leaves the service up but not ready,
//! with the rules' failure modes and a clear log line; a password changed under a running
//! service does the same. No password ever shows in the log, an error, `/readyz` or
//! `/metrics`, whether it came in the URL or from `--redis-password-file`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{ServiceProcess, write_config};
use redis::Commands;
use sluice_policy::global::DecideRequest;
use sluice_policy::{OwnedRequest, Policy};
use sluice_redis_server::{RedisServer, ServerOptions};
use sluice_service::redis_setup::RedisOptions;
use sluice_service::store::RedisBackend;

/// What sluice needs, as service/README.md documents it (standalone Redis).
const SLUICE_ACL: &str = "~sluice:* -@all +evalsha +eval +script|load +get +set +del +ping +info";

const ADMIN_PASSWORD: &str = "admin-Pw-7f3a";
const PASSWORD: &str = "sluice-Pw-4c81e";
const WRONG_PASSWORD: &str = "wrong-Pw-92d0b";

fn config(algorithm: &str) -> String {
    format!(
        r#"{{"global": {{"cluster": "sluice_service"}}, "rules": [
            {{"name": "open", "scope": "global", "key": ["client_ip"], "algorithm": "{algorithm}",
              "limit": {{"requests": 3, "period": "1m"}}, "failure_mode": "open"}},
            {{"name": "closed", "scope": "global", "key": ["client_ip"], "algorithm": "{algorithm}",
              "limit": {{"requests": 3, "period": "1m"}}, "failure_mode": "closed"}}]}}"#
    )
}

fn body(config: &str, rules: &[&str]) -> Vec<u8> {
    let policy = Policy::from_json(config.as_bytes()).expect("valid");
    let request = OwnedRequest {
        method: b"GET".to_vec(),
        path: b"/".to_vec(),
        authority: b"a".to_vec(),
        headers: Vec::new(),
        peer: Some("203.0.113.7".to_owned()),
    };
    let evaluation = policy.evaluate(&request);
    let checks = evaluation
        .checks()
        .iter()
        .filter(|check| rules.contains(&check.rule));
    DecideRequest::new(policy.domain(), checks).to_json()
}

/// Redis whose `default` user needs `ADMIN_PASSWORD` (the harness's own), with the user
/// `sluice` limited to `SLUICE_ACL`.
fn redis_with_sluice_user() -> RedisServer {
    let redis = RedisServer::start_with(ServerOptions {
        password: Some(ADMIN_PASSWORD.to_owned()),
        ..ServerOptions::default()
    })
    .expect("a test Redis");
    let mut args = vec!["ACL", "SETUSER", "sluice", "reset", "on"];
    let password = format!(">{PASSWORD}");
    args.push(&password);
    args.extend(SLUICE_ACL.split_whitespace());
    redis.command(&args).expect("ACL SETUSER");
    redis
}

fn sluice_url(redis: &RedisServer, password: &str) -> String {
    format!("redis://sluice:{password}@127.0.0.1:{}", redis.port())
}

async fn backend(url: String) -> Arc<RedisBackend> {
    let options = RedisOptions {
        urls: vec![url],
        call_timeout: Some(Duration::from_secs(2)),
        ..RedisOptions::default()
    };
    RedisBackend::start(options.config().expect("valid options"))
        .await
        .expect("a usable configuration")
}

#[tokio::test]
async fn an_acl_user_with_only_the_documented_permissions_decides_every_algorithm() {
    let redis = redis_with_sluice_user();
    let backend = backend(sluice_url(&redis, PASSWORD)).await;
    assert!(backend.is_connected(), "the sluice user connects");
    for algorithm in ["gcra", "fixed_window", "sliding_window", "sliding_log"] {
        let config = config(algorithm);
        let service = common::start(
            Arc::clone(&backend),
            common::clock(),
            &[&config],
            Duration::from_secs(5),
        )
        .await;
        let client = common::client();
        let url = format!("{}/v1/decide", service.http());
        for (round, remaining) in [2, 1, 0].into_iter().enumerate() {
            if round == 1 {
                // The next call finds no script and loads it with EVAL.
                redis.command(&["SCRIPT", "FLUSH"]).expect("SCRIPT FLUSH");
            }
            let (status, json) =
                common::post(&client, &url, body(&config, &["open", "closed"])).await;
            assert_eq!(status, 200, "{json}");
            assert_eq!(json["allowed"], true, "{algorithm}: {json}");
            assert_eq!(
                json["outcomes"][0]["remaining"], remaining,
                "{algorithm}: {json}"
            );
        }
        let (_, json) = common::post(&client, &url, body(&config, &["open"])).await;
        assert_eq!(
            json["outcomes"][0]["status"], "denied",
            "{algorithm}: {json}"
        );
        let ready = common::send(&client, "GET", &format!("{}/readyz", service.http()), "").await;
        assert_eq!(ready.0, 200, "{}", String::from_utf8_lossy(&ready.1));
        service.running.shutdown().await;
        redis.command(&["FLUSHALL"]).expect("FLUSHALL");
    }
    // The user really is limited: a key outside sluice's pattern is refused.
    let refused = redis::Client::open(sluice_url(&redis, PASSWORD))
        .expect("a URL")
        .get_connection()
        .expect("the sluice user connects")
        .set::<_, _, ()>("other:key", "x");
    assert!(refused.is_err(), "{refused:?}");
}

/// Polls `/readyz` until it answers `status`; its body.
async fn readyz_until(http: &str, status: u16) -> String {
    let client = common::client();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = common::send(&client, "GET", &format!("{http}/readyz"), "").await;
        let body = String::from_utf8_lossy(&body).into_owned();
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "readyz stays {got}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_password_changed_under_a_running_service_makes_it_unready_with_failure_modes() {
    let redis = redis_with_sluice_user();
    let backend = backend(sluice_url(&redis, PASSWORD)).await;
    let config = config("gcra");
    let service = common::start(
        Arc::clone(&backend),
        common::clock(),
        &[&config],
        Duration::from_secs(5),
    )
    .await;
    let client = common::client();
    let url = format!("{}/v1/decide", service.http());
    let (_, json) = common::post(&client, &url, body(&config, &["open"])).await;
    assert_eq!(json["outcomes"][0]["status"], "allowed", "{json}");

    // The operator rotates the password and drops the connections: reconnecting fails.
    redis
        .command(&[
            "ACL",
            "SETUSER",
            "sluice",
            "resetpass",
            &format!(">{WRONG_PASSWORD}"),
        ])
        .expect("ACL SETUSER");
    redis
        .command(&["CLIENT", "KILL", "USER", "sluice"])
        .expect("CLIENT KILL");
    let why = readyz_until(&service.http(), 503).await;
    assert!(!why.contains(PASSWORD), "{why}");
    let (status, json) = common::post(&client, &url, body(&config, &["open", "closed"])).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["outcomes"][0]["status"], "failed_open", "{json}");
    assert_eq!(json["outcomes"][1]["status"], "failed_closed", "{json}");
    let metrics = common::send(&client, "GET", &format!("{}/metrics", service.http()), "").await;
    let metrics = String::from_utf8_lossy(&metrics.1).into_owned();
    assert!(!metrics.contains(PASSWORD) && !metrics.contains(WRONG_PASSWORD));
    service.running.shutdown().await;
}

/// The binary with a wrong password: up, not ready, failure modes, a log line saying why, and
/// neither password anywhere in its output, `/readyz` or `/metrics`.
async fn wrong_password_through_the_binary(args: Vec<String>, secrets: &[&str]) {
    let service = ServiceProcess::start(&args);
    let http = service.http();
    service.wait_for("cannot connect to Redis", Duration::from_secs(10));
    let ready = readyz_until(&http, 503).await;
    assert!(
        ready.contains("WRONGPASS") || ready.contains("auth"),
        "readiness says why: {ready}"
    );
    let client = common::client();
    let config = config("gcra");
    let (status, json) = common::post(
        &client,
        &format!("{http}/v1/decide"),
        body(&config, &["open", "closed"]),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["outcomes"][0]["status"], "failed_open", "{json}");
    assert_eq!(json["outcomes"][1]["status"], "failed_closed", "{json}");
    let metrics = common::send(&client, "GET", &format!("{http}/metrics"), "").await;
    let metrics = String::from_utf8_lossy(&metrics.1).into_owned();
    assert!(
        metrics.contains("sluice_service_store_errors_total 2"),
        "{metrics}"
    );
    let output = service.output();
    assert!(output.contains("connecting to Redis"), "{output}");
    for secret in secrets {
        for (what, text) in [("log", &output), ("readyz", &ready), ("metrics", &metrics)] {
            assert!(!text.contains(secret), "{secret:?} in the {what}:\n{text}");
        }
    }
}

#[tokio::test]
async fn a_wrong_password_in_the_url_keeps_the_service_up_unready_and_out_of_the_log() {
    let redis = redis_with_sluice_user();
    let dir = redis.dir().to_owned();
    let config = write_config(&dir, &config("gcra"));
    wrong_password_through_the_binary(
        vec![
            "--config".to_owned(),
            config.display().to_string(),
            "--redis".to_owned(),
            sluice_url(&redis, WRONG_PASSWORD),
        ],
        &[WRONG_PASSWORD, PASSWORD, ADMIN_PASSWORD],
    )
    .await;
}

#[tokio::test]
async fn a_wrong_password_from_the_password_file_stays_out_of_the_log_too() {
    let redis = redis_with_sluice_user();
    let dir = redis.dir().to_owned();
    let config = write_config(&dir, &config("gcra"));
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{WRONG_PASSWORD}\n")).expect("write");
    wrong_password_through_the_binary(
        vec![
            "--config".to_owned(),
            config.display().to_string(),
            "--redis".to_owned(),
            // The user in the URL, the password from the file (overriding the URL's).
            sluice_url(&redis, "url-Pw-0e4d"),
            "--redis-password-file".to_owned(),
            password_file.display().to_string(),
        ],
        &[WRONG_PASSWORD, "url-Pw-0e4d", PASSWORD],
    )
    .await;
}

#[tokio::test]
async fn the_right_password_from_the_file_connects_and_bad_files_are_refused_at_start() {
    let redis = redis_with_sluice_user();
    let dir = redis.dir().to_owned();
    let config = write_config(&dir, &config("gcra"));
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write");
    let service = ServiceProcess::start(&[
        "--config".to_owned(),
        config.display().to_string(),
        "--redis".to_owned(),
        format!("redis://sluice@127.0.0.1:{}", redis.port()),
        "--redis-password-file".to_owned(),
        password_file.display().to_string(),
    ]);
    let http = service.http();
    readyz_until(&http, 200).await;
    assert!(service.output().contains("connected to Redis"));
    assert!(!service.output().contains(PASSWORD));
    drop(service);

    // A missing password file, a CA file that is no certificate: refused at start, naming
    // the flag and the file.
    let missing = dir.join("no-such-password");
    let not_pem = dir.join("ca.pem");
    std::fs::write(&not_pem, "hello\n").expect("write");
    for (args, expected) in [
        (
            vec![
                "--redis-password-file".to_owned(),
                missing.display().to_string(),
            ],
            "--redis-password-file",
        ),
        (
            vec![
                "--redis".to_owned(),
                format!("rediss://sluice:{PASSWORD}@127.0.0.1:{}", redis.port()),
                "--redis-ca-cert".to_owned(),
                not_pem.display().to_string(),
            ],
            "--redis-ca-cert",
        ),
    ] {
        let mut all = vec!["--config".to_owned(), config.display().to_string()];
        all.extend(args);
        let (code, output) = ServiceProcess::start(&all).wait_exit(Duration::from_secs(20));
        assert_eq!(code, Some(1), "{output}");
        assert!(output.contains(expected), "{expected} in:\n{output}");
        assert!(!output.contains(PASSWORD), "{output}");
    }
}
