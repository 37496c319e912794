//! TLS towards Redis (`rediss://`) on a real Redis behind a TLS terminator (the provisioned
//! Redis has no TLS of its own; see `sluice-redis-server`), with certificates made here:
//! decisions over TLS with a private CA; a server certificate from a CA the service does not
//! trust is refused (not ready, failure modes apply); mutual TLS works with the client
//! certificate and is refused without it; bad TLS files are refused at start, naming the flag.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_redis_server::{ClientAuth, RedisServer, ServerOptions, TestPki};
use sluice_service::redis_setup::RedisOptions;
use sluice_service::store::RedisBackend;

use common::{FAILURE_MODES_CONFIG as CONFIG, failure_modes_body as body};

fn options(url: String, ca: Option<PathBuf>, client: Option<(PathBuf, PathBuf)>) -> RedisOptions {
    let (client_cert, client_key) = client.unzip();
    RedisOptions {
        urls: vec![url],
        ca_cert: ca,
        client_cert,
        client_key,
        call_timeout: Some(Duration::from_secs(2)),
        ..RedisOptions::default()
    }
}

async fn backend(options: &RedisOptions) -> Arc<RedisBackend> {
    let mut config = options.config().expect("valid Redis options");
    config.connect_timeout = Duration::from_secs(3);
    RedisBackend::start(config)
        .await
        .expect("a usable configuration")
}

fn dbsize(redis: &RedisServer) -> i64 {
    match redis.command(&["DBSIZE"]).expect("DBSIZE") {
        redis::Value::Int(n) => n,
        other => panic!("DBSIZE answered {other:?}"),
    }
}

/// Decides `open` four times: 2, 1, 0 remaining, then denied.
async fn counts_to_the_limit(backend: Arc<RedisBackend>) {
    let service = common::start(backend, common::clock(), &[CONFIG], Duration::from_secs(5)).await;
    let client = common::client();
    let url = format!("{}/v1/decide", service.http());
    for remaining in [2, 1, 0] {
        let (status, json) = common::post(&client, &url, body(&["open"])).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["outcomes"][0]["status"], "allowed", "{json}");
        assert_eq!(json["outcomes"][0]["remaining"], remaining, "{json}");
    }
    let (_, json) = common::post(&client, &url, body(&["open"])).await;
    assert_eq!(json["outcomes"][0]["status"], "denied", "{json}");
    let ready = common::send(&client, "GET", &format!("{}/readyz", service.http()), "").await;
    assert_eq!(ready.0, 200, "{}", String::from_utf8_lossy(&ready.1));
    service.running.shutdown().await;
}

/// The service is up but not ready, says why, and applies each rule's failure mode.
async fn refused(backend: Arc<RedisBackend>, why: &[&str]) {
    assert!(!backend.is_connected());
    let service = common::start(backend, common::clock(), &[CONFIG], Duration::from_secs(5)).await;
    let client = common::client();
    let (status, ready) =
        common::send(&client, "GET", &format!("{}/readyz", service.http()), "").await;
    let ready = String::from_utf8_lossy(&ready).into_owned();
    assert_eq!(status, 503, "{ready}");
    assert!(
        why.iter().any(|w| ready.contains(w)),
        "readiness should say why ({why:?}): {ready}"
    );
    let (status, json) = common::post(
        &client,
        &format!("{}/v1/decide", service.http()),
        body(&["open", "closed"]),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["outcomes"][0]["status"], "failed_open", "{json}");
    assert_eq!(json["outcomes"][1]["status"], "failed_closed", "{json}");
    assert_eq!(json["allowed"], false, "{json}");
    service.running.shutdown().await;
}

#[tokio::test]
async fn decisions_go_over_rediss_trusting_a_private_ca() {
    let pki = TestPki::generate("private").expect("certificates");
    let redis = RedisServer::start_tls(ServerOptions::default(), &pki, ClientAuth::None)
        .expect("Redis behind TLS");
    let url = redis.tls_url().expect("a TLS URL");
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    let backend = backend(&options(url, Some(pki.ca_cert()), None)).await;
    assert!(backend.is_connected());
    counts_to_the_limit(backend).await;
    assert_eq!(
        dbsize(&redis),
        1,
        "the state went through the TLS port into Redis"
    );
}

#[tokio::test]
async fn a_server_certificate_the_service_does_not_trust_is_refused() {
    let pki = TestPki::generate("server").expect("certificates");
    let other = TestPki::generate("other").expect("certificates");
    let redis = RedisServer::start_tls(ServerOptions::default(), &pki, ClientAuth::None)
        .expect("Redis behind TLS");
    let url = redis.tls_url().expect("a TLS URL");
    // Another CA, and the system's CAs: neither signed the server's certificate.
    for ca in [Some(other.ca_cert()), None] {
        let backend = backend(&options(url.clone(), ca, None)).await;
        refused(backend, &["UnknownIssuer", "certificate"]).await;
    }
    assert_eq!(dbsize(&redis), 0, "nothing reached Redis");
}

#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate_and_is_refused_without() {
    let pki = TestPki::generate("mtls").expect("certificates");
    let redis = RedisServer::start_tls(ServerOptions::default(), &pki, ClientAuth::Required)
        .expect("Redis behind mutual TLS");
    let url = redis.tls_url().expect("a TLS URL");

    let without = backend(&options(url.clone(), Some(pki.ca_cert()), None)).await;
    // TLS 1.3 clients learn of the refusal on their first read: the connection fails.
    refused(without, &["connection", "certificate", "closed", "reset"]).await;
    assert_eq!(dbsize(&redis), 0);

    let with = backend(&options(
        url,
        Some(pki.ca_cert()),
        Some((pki.client_cert(), pki.client_key())),
    ))
    .await;
    assert!(with.is_connected());
    counts_to_the_limit(with).await;
    assert_eq!(dbsize(&redis), 1);
}

#[test]
fn bad_tls_files_are_refused_naming_the_flag_and_the_file() {
    let pki = TestPki::generate("files").expect("certificates");
    let other = TestPki::generate("other-files").expect("certificates");
    let url = "rediss://127.0.0.1:6380".to_owned();
    let not_pem = pki.dir().join("not.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").expect("write");
    let missing = pki.dir().join("missing.pem");
    let cases: Vec<(RedisOptions, &[&str])> = vec![
        (
            options(url.clone(), Some(missing.clone()), None),
            &["--redis-ca-cert", "missing.pem", "cannot read"],
        ),
        (
            options(url.clone(), Some(not_pem.clone()), None),
            &["--redis-ca-cert", "not.pem", "no certificate"],
        ),
        (
            options(url.clone(), None, Some((not_pem.clone(), pki.client_key()))),
            &["--redis-client-cert", "not.pem", "no certificate"],
        ),
        (
            // A certificate where the key should be.
            options(
                url.clone(),
                None,
                Some((pki.client_cert(), pki.client_cert())),
            ),
            &["--redis-client-key", "client.pem", "private key"],
        ),
        (
            // Another CA's client key: not this certificate's.
            options(
                url.clone(),
                None,
                Some((pki.client_cert(), other.client_key())),
            ),
            &["--redis-client-key", "is not the key of", "client.pem"],
        ),
        (
            options(
                "redis://127.0.0.1:6379".to_owned(),
                Some(pki.ca_cert()),
                None,
            ),
            &["not rediss://"],
        ),
        (
            options("rediss://127.0.0.1:6380/#insecure".to_owned(), None, None),
            &["#insecure", "not supported"],
        ),
    ];
    // A line of base64 from inside each private key: no error may quote it.
    let key_lines: Vec<String> = [pki.client_key(), other.client_key()]
        .iter()
        .map(|key| {
            let text = std::fs::read_to_string(key).expect("a key");
            text.lines().nth(1).expect("a body line").to_owned()
        })
        .collect();
    for (options, expected) in cases {
        let error = options.config().expect_err("refused");
        for part in expected {
            assert!(error.contains(part), "{part:?} in {error:?}");
        }
        for line in &key_lines {
            assert!(!error.contains(line.as_str()), "no key material: {error}");
        }
    }
    let cert_without_key = RedisOptions {
        client_key: None,
        ..options(url, None, Some((pki.client_cert(), pki.client_key())))
    };
    let error = cert_without_key.config().expect_err("refused");
    assert!(error.contains("--redis-client-key"), "{error}");
    // And the good files pass.
    options(
        "rediss://127.0.0.1:6380".to_owned(),
        Some(pki.ca_cert()),
        Some((pki.client_cert(), pki.client_key())),
    )
    .config()
    .expect("valid files");
}
