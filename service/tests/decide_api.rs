//! sluice's decide API (`POST /v1/decide`), the filter's path to the global tier, over a real
//! Redis: exact decisions for the proxy's checks, config drift refused, bad bodies answered
//! with an error naming the field, and two service replicas sharing one count.

mod common;

use sluice_core::Status;
use sluice_policy::global::{DecideReply, DecideRequest};
use sluice_policy::{OwnedRequest, Policy};
use sluice_redis_server::RedisServer;

const CONFIG: &str = r#"{
    "global": {"cluster": "sluice_service", "domain": "api"},
    "rules": [
        {"name": "per-key", "scope": "global", "key": [{"header": "x-api-key", "secret": true}],
         "limit": {"requests": 10, "period": "1s"}, "algorithm": "sliding_log"},
        {"name": "shadowed", "scope": "global", "key": [{"header": "x-api-key"}], "mode": "shadow",
         "limit": {"requests": 1, "period": "1h"}}
    ]
}"#;

fn request_for(key: &str) -> OwnedRequest {
    OwnedRequest {
        method: b"GET".to_vec(),
        path: b"/".to_vec(),
        authority: b"api.example.com".to_vec(),
        headers: vec![("x-api-key".to_owned(), key.as_bytes().to_vec())],
        peer: None,
    }
}

/// The decide request body the filter sends for `key`'s request.
fn body_for(policy: &Policy, key: &str) -> Vec<u8> {
    let request = request_for(key);
    let evaluation = policy.evaluate(&request);
    DecideRequest::new(policy.domain(), evaluation.checks()).to_json()
}

#[tokio::test]
async fn two_replicas_share_one_exact_count() {
    let redis = RedisServer::start().expect("a test Redis");
    let clock = common::clock();
    let first = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let second = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let policy = Policy::from_json(CONFIG.as_bytes()).expect("valid");
    let client = common::client();
    let body = body_for(&policy, "k-1");
    let mut allowed = 0;
    for round in 0..30 {
        let replica = if round % 2 == 0 { &first } else { &second };
        let (status, json) = common::post(
            &client,
            &format!("{}/v1/decide", replica.http()),
            body.clone(),
        )
        .await;
        assert_eq!(status, 200, "{json}");
        let reply = DecideReply::parse(json.to_string().as_bytes(), 2).expect("a valid reply");
        if reply.allowed {
            allowed += 1;
        }
        // The shadow rule never denies, and reports what it would have done.
        let shadow = reply.outcomes[1].status;
        assert!(
            matches!(shadow, Status::Allowed | Status::ShadowDenied),
            "{shadow:?}"
        );
    }
    assert_eq!(
        allowed, 10,
        "the sliding log admits exactly its limit across replicas"
    );
    // A second later the log has emptied.
    clock.advance(1_000_000_000);
    let (_, json) = common::post(&client, &format!("{}/v1/decide", first.http()), body).await;
    assert_eq!(json["allowed"], true, "{json}");
    first.running.shutdown().await;
    second.running.shutdown().await;
}

#[tokio::test]
async fn config_drift_and_bad_bodies_are_refused_with_the_field_named() {
    let redis = RedisServer::start().expect("a test Redis");
    let service = common::start_on_redis(&redis, common::clock(), &[CONFIG]).await;
    let client = common::client();
    let url = format!("{}/v1/decide", service.http());

    // The proxy's config says 20 per second: the service has 10.
    let drifted = Policy::from_json(
        CONFIG
            .replace("\"requests\": 10", "\"requests\": 20")
            .as_bytes(),
    )
    .expect("valid");
    let (status, json) = common::post(&client, &url, body_for(&drifted, "k")).await;
    assert_eq!(status, 409, "{json}");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("checks[0].limit")),
        "{json}"
    );

    let cases: [(&str, u16, &str); 5] = [
        ("not json", 400, "not a decide request"),
        (r#"{"domain":"nope","checks":[]}"#, 404, "unknown domain"),
        (
            r#"{"domain":"api","checks":[{"rule":"missing","key":"00","cost":1,"limit":"gcra:1/1/1"}]}"#,
            404,
            "checks[0].rule",
        ),
        (
            r#"{"domain":"api","checks":[{"rule":"per-key","key":"zz","cost":1,"limit":"sliding_log:10/1000000000/10"}]}"#,
            400,
            "checks[0].key",
        ),
        (r#"{"domain":"api"}"#, 400, "checks"),
    ];
    for (body, expected, mentions) in cases {
        let (status, json) = common::post(&client, &url, body).await;
        assert_eq!(status, expected, "{body}: {json}");
        assert!(
            json["error"].as_str().is_some_and(|e| e.contains(mentions)),
            "{body}: expected the error to mention {mentions:?}: {json}"
        );
    }
    let huge = vec![b' '; 70 * 1024];
    let (status, _) = common::send(&client, "POST", &url, huge).await;
    assert_eq!(status, 413);
    let (status, _) = common::send(&client, "GET", &url, "").await;
    assert_eq!(status, 405);
    service.running.shutdown().await;
}
