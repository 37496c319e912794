//! Against a real Redis that fails: stopped, slow, flushed of its script, holding garbage,
//! asking for a password. Failure modes apply within the call timeout, the store recovers by
//! itself, bad bytes are no state, and no password ever shows.

mod common;

use std::time::{Duration, Instant};

use common::*;
use redis::Commands;
use sluice_core::{Algorithm, FailureMode, Status};
use sluice_redis::{RedisConfig, RedisError, RedisStore};
use sluice_redis_server::{RedisServer, ServerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_gives_failure_modes_then_recovers_by_itself() {
    let mut server = RedisServer::start().unwrap();
    let mut config = RedisConfig::new(server.url());
    config.call_timeout = Duration::from_millis(200);
    let store = RedisStore::connect(config).await.unwrap();
    let domain = domain("outage");
    let limit = limit(Algorithm::Gcra, 1000, HOUR);
    let checks = [
        check("open", limit, b"k", FailureMode::Open),
        check("closed", limit, b"k", FailureMode::Closed),
    ];
    let only_open = [check("open", limit, b"k", FailureMode::Open)];
    assert!(store.decide(&domain, &checks, now()).await.verdict.allowed);

    server.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let decided = store.decide(&domain, &checks, now()).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "no hang: {took:?}");
        assert!(decided.error.is_some(), "{decided:?}");
        assert!(
            !decided.verdict.allowed,
            "the closed rule denies: {decided:?}"
        );
        assert_eq!(decided.verdict.outcomes[0].status, Status::FailedOpen);
        assert_eq!(decided.verdict.outcomes[1].status, Status::FailedClosed);
        let decided = store.decide(&domain, &only_open, now()).await;
        assert!(decided.verdict.allowed, "failing open allows: {decided:?}");
        assert!(store.ping().await.is_err());
    }

    server.restart(false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let decided = store.decide(&domain, &checks, now()).await;
        if decided.error.is_none() {
            assert!(decided.verdict.allowed);
            assert_eq!(decided.verdict.outcomes[1].status, Status::Allowed);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 10 s: {decided:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.ping().await.unwrap();
    // The restarted Redis had no script: loaded again on the way (EVAL on NOSCRIPT).
    let decided = store.decide(&domain, &checks, now()).await;
    assert_eq!(decided.round_trips, 1, "{decided:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_slower_than_the_timeout_gives_failure_modes_within_the_timeout() {
    let server = RedisServer::start().unwrap();
    let mut config = RedisConfig::new(server.url());
    config.call_timeout = Duration::from_millis(100);
    let store = RedisStore::connect(config).await.unwrap();
    let domain = domain("slow");
    let checks = [check(
        "closed",
        limit(Algorithm::FixedWindow, 10, HOUR),
        b"k",
        FailureMode::Closed,
    )];
    assert!(store.decide(&domain, &checks, now()).await.verdict.allowed);
    // Block the server for a second from another connection.
    let url = server.url();
    let sleeper = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg("1").query(&mut c);
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let decided = store.decide(&domain, &checks, now()).await;
    let took = started.elapsed();
    assert_eq!(
        decided.error,
        Some(RedisError::Timeout(Duration::from_millis(100)))
    );
    assert_eq!(decided.verdict.outcomes[0].status, Status::FailedClosed);
    assert!(took < Duration::from_millis(400), "{took:?}");
    sleeper.join().unwrap();
    // Once Redis answers again, so does the store.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let decided = store.decide(&domain, &checks, now()).await;
        if decided.error.is_none() {
            assert!(decided.verdict.allowed);
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {decided:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn garbage_and_foreign_values_in_redis_are_no_state() {
    let server = RedisServer::start().unwrap();
    let store = store(&server.url()).await;
    let domain = domain("garbage");
    let limit = limit(Algorithm::Gcra, 5, HOUR);
    let checks = [check("r", limit, b"k", FailureMode::Closed)];
    let key = RedisStore::state_key(&domain, "r", b"k");
    let mut c = server.connection().unwrap();
    for garbage in [
        &b"garbage"[..],
        b"",
        &[1u8; 9],
        &[2u8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2],
    ] {
        let _: () = c.set(&key, garbage).unwrap();
        let decided = store.decide(&domain, &checks, now()).await;
        assert!(decided.error.is_none(), "{decided:?}");
        assert_eq!(decided.verdict.outcomes[0].status, Status::Allowed);
        assert_eq!(
            decided.verdict.outcomes[0].decision.remaining, 4,
            "{garbage:?}"
        );
        let stored: Vec<u8> = c.get(&key).unwrap();
        assert_eq!(stored[0], sluice_redis::value::VALUE_VERSION, "overwritten");
    }
    // Another limit of the rule (the config changed): its state is not reused.
    let other = [check("r", limit_with_burst(3), b"k", FailureMode::Closed)];
    assert_eq!(
        store.decide(&domain, &other, now()).await.verdict.outcomes[0]
            .decision
            .remaining,
        2
    );
    // A key of another Redis type.
    let _: () = c.del(&key).unwrap();
    let _: () = c.hset(&key, "f", "v").unwrap();
    let decided = store.decide(&domain, &checks, now()).await;
    assert!(decided.error.is_none(), "{decided:?}");
    assert_eq!(decided.verdict.outcomes[0].decision.remaining, 4);
    let kind: String = redis::cmd("TYPE").arg(&key).query(&mut c).unwrap();
    assert_eq!(kind, "string");
}

fn limit_with_burst(burst: u64) -> sluice_core::Limit {
    sluice_core::Limit::new(
        Algorithm::Gcra,
        sluice_core::Quota::new(5, HOUR, burst).unwrap(),
    )
}

#[tokio::test]
async fn a_flushed_script_is_loaded_again() {
    let server = RedisServer::start().unwrap();
    let store = store(&server.url()).await;
    let domain = domain("noscript");
    let checks = [check(
        "r",
        limit(Algorithm::Gcra, 5, HOUR),
        b"k",
        FailureMode::Closed,
    )];
    assert_eq!(store.decide(&domain, &checks, now()).await.round_trips, 1);
    server.command(&["SCRIPT", "FLUSH"]).unwrap();
    let decided = store.decide(&domain, &checks, now()).await;
    assert!(decided.error.is_none(), "{decided:?}");
    assert_eq!(decided.round_trips, 2, "EVALSHA, NOSCRIPT, then EVAL");
    assert_eq!(store.decide(&domain, &checks, now()).await.round_trips, 1);
}

#[tokio::test]
async fn passwords_work_and_never_show() {
    let server = RedisServer::start_with(ServerOptions {
        password: Some("pw-Secret-default".to_owned()),
        acl_user: Some(("limiter".to_owned(), "pw-Secret-limiter".to_owned())),
        ..ServerOptions::default()
    })
    .unwrap();
    let domain = domain("auth");
    let checks = [check(
        "r",
        limit(Algorithm::Gcra, 5, HOUR),
        b"k",
        FailureMode::Closed,
    )];

    // In the URL (ACL user), and as separate fields (requirepass).
    let in_url = patient(RedisConfig::new(server.url_with_credentials()));
    let mut fields = patient(RedisConfig::new(server.url()));
    fields.password = Some("pw-Secret-default".to_owned());
    for config in [in_url.clone(), fields.clone()] {
        let shown = format!("{config:?}");
        assert!(!shown.contains("pw-Secret"), "{shown}");
        let store = RedisStore::connect(config).await.unwrap();
        let decided = store.decide(&domain, &checks, now()).await;
        assert!(decided.error.is_none(), "{decided:?}");
        assert!(!format!("{store:?}").contains("pw-Secret"));
    }

    // Wrong or missing password: a clear error, without the password.
    let mut wrong = fields.clone();
    wrong.password = Some("pw-Secret-wrong".to_owned());
    for config in [wrong, RedisConfig::new(server.url())] {
        let error = RedisStore::connect(config).await.unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("pw-Secret"), "{shown}");
        assert!(
            shown.contains("WRONGPASS") || shown.contains("NOAUTH") || shown.contains("auth"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_redis_fails_connect_with_a_clear_error() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    server.kill();
    let mut config = RedisConfig::new(url.clone());
    config.connect_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let error = RedisStore::connect(config).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(error, RedisError::Connection(_) | RedisError::Timeout(_)),
        "{error:?}"
    );
    let bad = RedisStore::connect(RedisConfig::new("http://user:pw-Secret@x")).await;
    let error = bad.unwrap_err();
    assert!(matches!(error, RedisError::Config(_)), "{error:?}");
    assert!(!error.to_string().contains("pw-Secret"), "{error}");
}
