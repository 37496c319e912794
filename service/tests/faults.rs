//! Faults: Redis stopped and restarted mid-run, a store slower than the decision deadline, a
//! service restart. Failure modes apply within the deadline, no request hangs, and counts
//! survive everything but Redis itself.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_core::{Check, Nanos};
use sluice_redis::{RedisConfig, RedisStore};
use sluice_redis_server::RedisServer;
use sluice_service::decider::{DecideError, Decider, Requested};
use sluice_service::metrics::{Api, Metrics};
use sluice_service::store::{Decided, DecisionStore};

use common::{FAILURE_MODES_CONFIG as CONFIG, failure_modes_body as body};

async fn redis_store(redis: &RedisServer) -> Arc<RedisStore> {
    let mut config = RedisConfig::new(redis.url());
    config.call_timeout = Duration::from_millis(100);
    config.connect_timeout = Duration::from_millis(200);
    Arc::new(
        RedisStore::connect(config)
            .await
            .expect("the store connects"),
    )
}

#[tokio::test]
async fn redis_down_applies_failure_modes_quickly_and_counts_resume_after_restart() {
    let mut redis = RedisServer::start().expect("a test Redis");
    let service = common::start(
        redis_store(&redis).await,
        common::clock(),
        &[CONFIG],
        Duration::from_secs(2),
    )
    .await;
    let client = common::client();
    let url = format!("{}/v1/decide", service.http());
    let (_, json) = common::post(&client, &url, body(&["open"])).await;
    assert_eq!(json["outcomes"][0]["remaining"], 2, "{json}");

    redis.stop().expect("Redis stops");
    for rules in [["open"], ["closed"]] {
        let started = Instant::now();
        let (status, json) = common::post(&client, &url, body(&rules)).await;
        let took = started.elapsed();
        assert_eq!(status, 200, "{json}");
        let expected = if rules[0] == "open" {
            "failed_open"
        } else {
            "failed_closed"
        };
        assert_eq!(json["outcomes"][0]["status"], expected, "{json}");
        assert!(took < Duration::from_secs(2), "answered in {took:?}");
    }
    let metrics = common::send(&client, "GET", &format!("{}/metrics", service.http()), "").await;
    let metrics = String::from_utf8_lossy(&metrics.1).into_owned();
    assert!(
        metrics.contains("sluice_service_store_errors_total"),
        "{metrics}"
    );
    let ready = common::send(&client, "GET", &format!("{}/readyz", service.http()), "").await;
    assert_eq!(ready.0, 503);

    // Back with its data: the count goes on where it was.
    redis.restart(true).expect("Redis restarts");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, json) = common::post(&client, &url, body(&["open"])).await;
        if json["outcomes"][0]["status"] == "allowed" {
            assert_eq!(json["outcomes"][0]["remaining"], 1, "{json}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the store never recovered: {json}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = common::send(&client, "GET", &format!("{}/readyz", service.http()), "").await;
    assert_eq!(ready.0, 200);
    service.running.shutdown().await;
}

#[tokio::test]
async fn counts_survive_a_service_restart() {
    let redis = RedisServer::start().expect("a test Redis");
    let clock = common::clock();
    let client = common::client();
    for remaining in [2, 1] {
        let service = common::start(
            redis_store(&redis).await,
            clock.clone(),
            &[CONFIG],
            Duration::from_secs(1),
        )
        .await;
        let (_, json) = common::post(
            &client,
            &format!("{}/v1/decide", service.http()),
            body(&["open"]),
        )
        .await;
        assert_eq!(json["outcomes"][0]["remaining"], remaining, "{json}");
        service.running.shutdown().await;
    }
}

/// A store that takes longer than any deadline.
struct Stuck;

impl DecisionStore for Stuck {
    async fn decide(&self, _: &str, _: &[Check<'_>], _: Nanos) -> Decided {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        unreachable!("the deadline ends the call first")
    }

    async fn ready(&self) -> Result<(), String> {
        Err("stuck".to_owned())
    }
}

#[tokio::test]
async fn a_store_slower_than_the_deadline_gets_the_failure_modes_in_time() {
    let service = common::start(
        Arc::new(Stuck),
        common::clock(),
        &[CONFIG],
        Duration::from_millis(150),
    )
    .await;
    let client = common::client();
    let started = Instant::now();
    let (status, json) = common::post(
        &client,
        &format!("{}/v1/decide", service.http()),
        body(&["open", "closed"]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json["allowed"], false, "{json}");
    assert_eq!(json["outcomes"][0]["status"], "failed_open");
    assert_eq!(json["outcomes"][1]["status"], "failed_closed");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    service.running.shutdown().await;
}

#[tokio::test]
async fn a_full_service_refuses_rather_than_queues() {
    let decider = Arc::new(Decider::new(
        common::domains(&[CONFIG]),
        Arc::new(Stuck),
        common::clock(),
        Metrics::new(),
        1,
        Duration::from_secs(3600),
    ));
    let requested = vec![Requested {
        rule: "open".to_owned(),
        key: b"k".to_vec(),
        cost: 1,
    }];
    let busy = Arc::clone(&decider);
    let held = requested.clone();
    let first = tokio::spawn(async move { busy.decide(Api::Json, "sluice", &held).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = decider.decide(Api::Json, "sluice", &requested).await;
    assert_eq!(second, Err(DecideError::Overloaded));
    first.abort();
}
