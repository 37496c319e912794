//! The service under concurrent load on a real Redis: many clients on one hot key through two
//! replicas admit exactly the limit, for every algorithm; many distinct keys are decided
//! without over-admission, and Redis memory follows the active keys once they expire.
//!
//! `SLUICE_LOAD_KEYS` sets the distinct keys of the many-keys test (default 20,000; the long
//! run in BENCHMARKS.md used 100,000).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_policy::global::DecideRequest;
use sluice_policy::{OwnedRequest, Policy};
use sluice_redis_server::RedisServer;
use sluice_service::clock::SystemClock;
use sluice_service::decider::{Decider, Requested};
use sluice_service::metrics::{Api, Metrics};

fn config(algorithm: &str, requests: u64, period: &str) -> String {
    format!(
        r#"{{"global": {{"cluster": "svc"}}, "rules": [{{"name": "hot", "scope": "global",
            "key": [{{"const": "everyone"}}], "algorithm": "{algorithm}",
            "limit": {{"requests": {requests}, "period": "{period}"}}}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_key_through_two_replicas_admits_exactly_the_limit_for_every_algorithm() {
    let redis = RedisServer::start().expect("a test Redis");
    for algorithm in ["gcra", "fixed_window", "sliding_window", "sliding_log"] {
        let config = config(algorithm, 50, "1h");
        let clock = common::clock();
        let replicas = [
            common::start_on_redis(&redis, clock.clone(), &[&config]).await,
            common::start_on_redis(&redis, clock.clone(), &[&config]).await,
        ];
        let policy = Policy::from_json(config.as_bytes()).expect("valid");
        let request = OwnedRequest {
            method: b"GET".to_vec(),
            path: b"/".to_vec(),
            authority: b"a".to_vec(),
            ..OwnedRequest::default()
        };
        let body =
            DecideRequest::new(policy.domain(), policy.evaluate(&request).checks()).to_json();
        let mut tasks = Vec::new();
        for task in 0..16 {
            let url = format!("{}/v1/decide", replicas[task % 2].http());
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let client = common::client();
                let mut allowed = 0u32;
                for _ in 0..10 {
                    let (status, json) = common::post(&client, &url, body.clone()).await;
                    assert_eq!(status, 200, "{json}");
                    assert_ne!(json["outcomes"][0]["status"], "failed_open", "{json}");
                    if json["allowed"] == true {
                        allowed += 1;
                    }
                }
                allowed
            }));
        }
        let mut allowed = 0;
        for task in tasks {
            allowed += task.await.expect("a client task");
        }
        assert_eq!(
            allowed, 50,
            "{algorithm}: 160 requests against a limit of 50"
        );
        for replica in replicas {
            replica.running.shutdown().await;
        }
        let mut connection = redis_connection(&redis).await;
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut connection)
            .await
            .expect("FLUSHALL");
    }
}

async fn redis_connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a Redis connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_keys_are_decided_exactly_and_expire_once_recovered() {
    let keys: usize = std::env::var("SLUICE_LOAD_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let redis = RedisServer::start().expect("a test Redis");
    // Two units per key per 2 s, on the real clock so that Redis's expiry and ours agree.
    let config = r#"{"global": {"cluster": "svc"}, "rules": [{"name": "per-key", "scope": "global",
        "key": [{"header": "x-key"}], "algorithm": "fixed_window",
        "limit": {"requests": 2, "period": "2s"}}]}"#;
    let decider = Arc::new(Decider::new(
        common::domains(&[config]),
        common::redis_store(&redis).await,
        SystemClock,
        Metrics::new(),
        4096,
        Duration::from_secs(5),
    ));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let workers = 32;
    for worker in 0..workers {
        let decider = Arc::clone(&decider);
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u32;
            for key in (worker..keys).step_by(workers) {
                // Three requests per key: exactly two pass.
                for _ in 0..3 {
                    let requested = [Requested {
                        rule: "per-key".to_owned(),
                        key: format!("client-{key}").into_bytes(),
                        cost: 1,
                    }];
                    let answer = decider
                        .decide(Api::Decide, "sluice", &requested)
                        .await
                        .expect("decided");
                    admitted += u32::from(answer.allowed);
                }
            }
            admitted
        }));
    }
    let mut admitted = 0u64;
    for task in tasks {
        admitted += u64::from(task.await.expect("a worker"));
    }
    let took = started.elapsed();
    // A window edge may fall inside one key's three requests, which then legitimately
    // admits a third; never more than that.
    let keys = keys as u64;
    assert!(admitted >= 2 * keys, "admitted {admitted} for {keys} keys");
    assert!(
        admitted <= 2 * keys + keys / 10,
        "admitted {admitted} for {keys} keys"
    );
    eprintln!(
        "{keys} keys × 3 decisions in {took:?} ({:.0} decisions/s), {admitted} admitted",
        (3 * keys) as f64 / took.as_secs_f64()
    );
    let mut connection = redis_connection(&redis).await;
    let live: u64 = redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .expect("DBSIZE");
    assert!(
        live > 0 && live <= keys,
        "{live} keys in Redis for {keys} clients"
    );
    // Every state has recovered 2 s after its window ended: Redis holds nothing.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let live: u64 = redis::cmd("DBSIZE")
        .query_async(&mut connection)
        .await
        .expect("DBSIZE");
    assert_eq!(live, 0, "states still in Redis after they all recovered");
}
