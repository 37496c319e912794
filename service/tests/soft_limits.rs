//! Soft limits through Envoy's rate-limit service API: a request a soft rule marks is `OK`,
//! and the warning header goes both in `response_headers_to_add` (to the client) and in
//! `request_headers_to_add` (Envoy adds it to the request to the upstream), over gRPC and as
//! JSON; an unmarked request adds no request header.

mod common;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use sluice_redis_server::RedisServer;

const CONFIG: &str = r#"{
    "global": {"cluster": "sluice_service", "domain": "edge"},
    "rules": [
        {"name": "soft", "scope": "global", "key": ["client_ip"], "mode": "soft",
         "limit": {"requests": 2, "period": "1m"}, "algorithm": "fixed_window",
         "warn_at": {"remaining": 0}}
    ]
}"#;

fn request() -> RateLimitRequest {
    RateLimitRequest {
        domain: "edge".to_owned(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![
                Entry {
                    key: "rule".to_owned(),
                    value: "soft".to_owned(),
                },
                Entry {
                    key: "remote_address".to_owned(),
                    value: "203.0.113.7".to_owned(),
                },
            ],
            ..Default::default()
        }],
        hits_addend: 0,
    }
}

fn headers(list: &[envoy_types::pb::envoy::config::core::v3::HeaderValue]) -> Vec<(&str, &str)> {
    list.iter()
        .map(|h| (h.key.as_str(), h.value.as_str()))
        .collect()
}

fn warning(response: &RateLimitResponse) -> (Vec<(&str, &str)>, Option<&str>) {
    let to_client = headers(&response.response_headers_to_add)
        .into_iter()
        .find(|(name, _)| *name == "ratelimit-warning")
        .map(|(_, value)| value);
    (headers(&response.request_headers_to_add), to_client)
}

#[tokio::test]
async fn marked_requests_carry_the_warning_to_the_upstream_and_the_client() {
    let redis = RedisServer::start().expect("a test Redis");
    let service = common::start_on_redis(&redis, common::clock(), &[CONFIG]).await;
    let mut client = RateLimitServiceClient::connect(service.grpc())
        .await
        .expect("gRPC connects");
    let mut ask = async || {
        client
            .should_rate_limit(request())
            .await
            .expect("an answer")
            .into_inner()
    };

    let first = ask().await;
    assert_eq!(first.overall_code, Code::Ok as i32);
    assert_eq!(warning(&first), (vec![], None), "1 left: not marked");

    let low = "\"soft\";reason=low;r=0";
    let second = ask().await;
    assert_eq!(second.overall_code, Code::Ok as i32);
    assert_eq!(
        warning(&second),
        (vec![("ratelimit-warning", low)], Some(low))
    );

    let exceeded = "\"soft\";reason=exceeded;r=0";
    for _ in 0..2 {
        let over = ask().await;
        assert_eq!(
            over.overall_code,
            Code::Ok as i32,
            "a soft rule never denies"
        );
        assert_eq!(
            warning(&over),
            (vec![("ratelimit-warning", exceeded)], Some(exceeded))
        );
        assert_eq!(
            headers(&over.response_headers_to_add)
                .into_iter()
                .find(|(name, _)| *name == "ratelimit"),
            Some(("ratelimit", "\"soft\";r=0;t=60")),
            "RateLimit shows the soft rule's quota"
        );
    }

    let url = format!("{}/json", service.http());
    let body = r#"{"domain":"edge","descriptors":[{"entries":[
        {"key":"rule","value":"soft"},{"key":"remote_address","value":"203.0.113.7"}]}]}"#;
    let (status, json) = common::post(&common::client(), &url, body).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["overallCode"], "OK");
    assert_eq!(
        json["requestHeadersToAdd"],
        serde_json::json!([{"key": "ratelimit-warning", "value": exceeded}]),
        "{json}"
    );

    // One low mark, three over the limit (two over gRPC, one over JSON); the over-limit
    // requests are also counted as the rule's would-be denials.
    let metrics = common::send(
        &common::client(),
        "GET",
        &format!("{}/metrics", service.http()),
        "",
    )
    .await;
    let text = String::from_utf8_lossy(&metrics.1);
    for line in [
        r#"sluice_service_marked_total{domain="edge",rule="soft",reason="low"} 1"#,
        r#"sluice_service_marked_total{domain="edge",rule="soft",reason="exceeded"} 3"#,
        r#"sluice_service_decisions_total{domain="edge",rule="soft",status="shadow_denied"} 3"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    service.running.shutdown().await;
}
