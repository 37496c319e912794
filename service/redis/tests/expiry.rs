//! Every key expires when its state has fully recovered, so Redis holds only active keys.

mod common;

use std::time::Duration;

use common::*;
use sluice_core::FailureMode;
use sluice_redis::RedisStore;
use sluice_redis_server::RedisServer;

const PERIOD_MS: u64 = 200;

fn db_size(server: &RedisServer) -> i64 {
    match server.command(&["DBSIZE"]).unwrap() {
        redis::Value::Int(n) => n,
        other => panic!("DBSIZE: {other:?}"),
    }
}

#[tokio::test]
async fn every_algorithms_keys_expire_once_recovered() {
    let server = RedisServer::start().unwrap();
    let store = store(&server.url()).await;
    let domain = domain("expiry");
    for algorithm in ALGORITHMS {
        let limit = limit(algorithm, 10, PERIOD_MS * 1_000_000);
        let checks = [check(algorithm.name(), limit, b"k", FailureMode::Closed)];
        let decided = store.decide(&domain, &checks, now()).await;
        assert!(
            decided.verdict.allowed && decided.error.is_none(),
            "{decided:?}"
        );
        let key = RedisStore::state_key(&domain, algorithm.name(), b"k");
        let ttl = match server.command(&["PTTL", &key]).unwrap() {
            redis::Value::Int(ms) => ms,
            other => panic!("PTTL: {other:?}"),
        };
        // GCRA: one emission interval (20 ms); windows: up to the window's end or, for the
        // sliding window, the end of the next one; the log: one period after the entry.
        assert!(
            ttl > 0 && ttl as u64 <= 2 * PERIOD_MS,
            "{algorithm:?}: PTTL {ttl} ms"
        );
    }
    // 1000 more keys, one request each.
    let limit = limit(
        sluice_core::Algorithm::SlidingWindow,
        10,
        PERIOD_MS * 1_000_000,
    );
    for k in 0..1000u32 {
        let key = k.to_be_bytes();
        let checks = [check("many", limit, &key, FailureMode::Closed)];
        assert!(store.decide(&domain, &checks, now()).await.verdict.allowed);
    }
    assert_eq!(db_size(&server), 1004);
    tokio::time::sleep(Duration::from_millis(2 * PERIOD_MS + 50)).await;
    // Expired keys are gone for clients at once; DBSIZE counts them until Redis's expiry
    // cycle (ten times a second) has collected them.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while db_size(&server) > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(db_size(&server), 0, "every key expired");
    // An expired key decides as new again, in one round trip (the store expected it gone).
    let checks = [check(
        "many",
        limit,
        &0u32.to_be_bytes(),
        FailureMode::Closed,
    )];
    let decided = store.decide(&domain, &checks, now()).await;
    assert_eq!(decided.verdict.outcomes[0].decision.remaining, 9);
    assert_eq!(decided.round_trips, 1, "{decided:?}");
}
