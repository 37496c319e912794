//! Stock Envoy's ratelimit filter against the service: a client built from the official protos
//! sends `ShouldRateLimit` the way `envoy.filters.http.ratelimit` does (a `generic_key` naming
//! the rule, then `remote_address`), over gRPC and as JSON, with the counters in a real Redis.

mod common;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use sluice_redis_server::RedisServer;

const CONFIG: &str = r#"{
    "global": {"cluster": "sluice_service", "domain": "edge"},
    "response": {"headers": "both"},
    "rules": [
        {"name": "per-client", "scope": "global", "key": ["client_ip"],
         "limit": {"requests": 3, "period": "1m"}, "algorithm": "fixed_window"},
        {"name": "everyone", "scope": "global", "key": [{"const": "all"}],
         "limit": {"requests": 5, "period": "10s"}, "algorithm": "gcra"}
    ]
}"#;

fn descriptor(rule: &str, entries: &[(&str, &str)]) -> RateLimitDescriptor {
    let mut all = vec![Entry {
        key: "rule".to_owned(),
        value: rule.to_owned(),
    }];
    all.extend(entries.iter().map(|(key, value)| Entry {
        key: (*key).to_owned(),
        value: (*value).to_owned(),
    }));
    RateLimitDescriptor {
        entries: all,
        ..Default::default()
    }
}

fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".to_owned(),
        descriptors,
        hits_addend: 0,
    }
}

fn header<'r>(response: &'r RateLimitResponse, name: &str) -> Option<&'r str> {
    response
        .response_headers_to_add
        .iter()
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

#[tokio::test]
async fn envoy_gets_ok_until_the_limit_then_over_limit_with_statuses_and_headers() {
    let redis = RedisServer::start().expect("a test Redis");
    let clock = common::clock();
    let service = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let mut client = RateLimitServiceClient::connect(service.grpc())
        .await
        .expect("gRPC connects");
    let asked = || {
        request(vec![descriptor(
            "per-client",
            &[("remote_address", "203.0.113.7")],
        )])
    };

    for n in 1..=3u32 {
        let response = client
            .should_rate_limit(asked())
            .await
            .expect("an answer")
            .into_inner();
        assert_eq!(response.overall_code, Code::Ok as i32, "request {n}");
        let status = &response.statuses[0];
        assert_eq!(status.code, Code::Ok as i32);
        assert_eq!(status.limit_remaining, 3 - n);
        let limit = status.current_limit.as_ref().expect("a current limit");
        assert_eq!(
            (limit.name.as_str(), limit.requests_per_unit, limit.unit),
            ("per-client", 3, Unit::Minute as i32)
        );
        assert_eq!(header(&response, "x-ratelimit-limit"), Some("3"));
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            Some((3 - n).to_string().as_str())
        );
        assert_eq!(header(&response, "retry-after"), None);
    }
    clock.advance(15_000_000_000);
    let denied = client
        .should_rate_limit(asked())
        .await
        .expect("an answer")
        .into_inner();
    assert_eq!(denied.overall_code, Code::OverLimit as i32);
    assert_eq!(denied.statuses[0].code, Code::OverLimit as i32);
    assert_eq!(denied.statuses[0].limit_remaining, 0);
    // The window started at the vectors' origin, a minute boundary: 45 s left.
    let until = denied.statuses[0]
        .duration_until_reset
        .expect("a duration until reset");
    assert_eq!((until.seconds, until.nanos), (45, 0));
    assert_eq!(header(&denied, "retry-after"), Some("45"));
    assert_eq!(
        header(&denied, "ratelimit-policy"),
        Some("\"per-client\";q=3;w=60")
    );

    // Another client has its own counter.
    let other = client
        .should_rate_limit(request(vec![descriptor(
            "per-client",
            &[("remote_address", "198.51.100.1")],
        )]))
        .await
        .expect("an answer")
        .into_inner();
    assert_eq!(other.overall_code, Code::Ok as i32);
    service.running.shutdown().await;
}

#[tokio::test]
async fn descriptors_of_one_request_are_all_or_nothing_and_unknown_ones_are_unlimited() {
    let redis = RedisServer::start().expect("a test Redis");
    let clock = common::clock();
    let service = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let mut client = RateLimitServiceClient::connect(service.grpc())
        .await
        .expect("gRPC connects");
    // Exhaust one client's per-client limit (3) while the global one (5) has room.
    for _ in 0..3 {
        let ok = client
            .should_rate_limit(request(vec![
                descriptor("per-client", &[("remote_address", "203.0.113.7")]),
                descriptor("everyone", &[]),
            ]))
            .await
            .expect("an answer")
            .into_inner();
        assert_eq!(ok.overall_code, Code::Ok as i32);
    }
    // Denied by per-client: nothing may be taken from "everyone" (2 left).
    for _ in 0..5 {
        let denied = client
            .should_rate_limit(request(vec![
                descriptor("per-client", &[("remote_address", "203.0.113.7")]),
                descriptor("everyone", &[]),
                descriptor("no-such-rule", &[("remote_address", "203.0.113.7")]),
                RateLimitDescriptor {
                    entries: vec![Entry {
                        key: "remote_address".to_owned(),
                        value: "203.0.113.7".to_owned(),
                    }],
                    ..Default::default()
                },
            ]))
            .await
            .expect("an answer")
            .into_inner();
        assert_eq!(denied.overall_code, Code::OverLimit as i32);
        assert_eq!(denied.statuses.len(), 4);
        assert_eq!(denied.statuses[1].code, Code::Ok as i32);
        assert_eq!(
            denied.statuses[1].limit_remaining, 1,
            "what the request would leave"
        );
        for unlimited in &denied.statuses[2..] {
            assert_eq!(unlimited.code, Code::Ok as i32);
            assert!(unlimited.current_limit.is_none());
        }
    }
    // "everyone" still has exactly its 2 units, spent with hits_addend 2 by another client.
    let mut heavy = descriptor("everyone", &[]);
    heavy.hits_addend = Some(UInt64Value { value: 2 });
    let two = client
        .should_rate_limit(request(vec![heavy.clone()]))
        .await
        .expect("an answer")
        .into_inner();
    assert_eq!(two.overall_code, Code::Ok as i32);
    assert_eq!(two.statuses[0].limit_remaining, 0);
    let none = client
        .should_rate_limit(request(vec![descriptor("everyone", &[])]))
        .await
        .expect("an answer")
        .into_inner();
    assert_eq!(none.overall_code, Code::OverLimit as i32);
    service.running.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_grpc_errors_that_say_what_is_wrong() {
    let redis = RedisServer::start().expect("a test Redis");
    let service = common::start_on_redis(&redis, common::clock(), &[CONFIG]).await;
    let mut client = RateLimitServiceClient::connect(service.grpc())
        .await
        .expect("gRPC connects");
    let mut unknown = request(vec![descriptor("per-client", &[("remote_address", "a")])]);
    unknown.domain = "nope".to_owned();
    let error = client
        .should_rate_limit(unknown)
        .await
        .expect_err("refused");
    assert_eq!(error.code(), tonic::Code::NotFound);
    assert!(
        error.message().contains("unknown domain \"nope\""),
        "{}",
        error.message()
    );

    let mut negative = descriptor("per-client", &[("remote_address", "a")]);
    negative.is_negative_hits = true;
    let error = client
        .should_rate_limit(request(vec![negative]))
        .await
        .expect_err("refused");
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(
        error.message().contains("is_negative_hits"),
        "{}",
        error.message()
    );
    service.running.shutdown().await;
}

#[tokio::test]
async fn the_json_endpoint_answers_like_envoyproxy_ratelimit() {
    let redis = RedisServer::start().expect("a test Redis");
    let service = common::start_on_redis(&redis, common::clock(), &[CONFIG]).await;
    let client = common::client();
    let url = format!("{}/json", service.http());
    let body = r#"{"domain":"edge","descriptors":[{"entries":[
        {"key":"rule","value":"per-client"},{"key":"remote_address","value":"203.0.113.9"}],
        "hitsAddend":"2"}]}"#;
    let (status, json) = common::post(&client, &url, body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["overallCode"], "OK");
    assert_eq!(json["statuses"][0]["limitRemaining"], 1);
    assert_eq!(json["statuses"][0]["currentLimit"]["unit"], "MINUTE");
    assert_eq!(json["statuses"][0]["durationUntilReset"], "60.000000000s");
    let (status, json) = common::post(&client, &url, body).await;
    assert_eq!(status, 429, "{json}");
    assert_eq!(json["overallCode"], "OVER_LIMIT");
    let headers = json["responseHeadersToAdd"].as_array().expect("headers");
    assert!(
        headers
            .iter()
            .any(|h| h["key"] == "retry-after" && h["value"] == "60"),
        "{json}"
    );
    let (status, json) = common::post(&client, &url, r#"{"domain": 5}"#).await;
    assert_eq!(status, 400);
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid RateLimitRequest JSON")),
        "{json}"
    );
    service.running.shutdown().await;
}
