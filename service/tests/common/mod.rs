//! What the service's tests share: a service on loopback over any store, an HTTP client, and
//! a real Redis from `sluice-redis-server`.
#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sluice_policy::Policy;
use sluice_redis::{RedisConfig, RedisStore};
use sluice_redis_server::RedisServer;
use sluice_service::clock::{Clock, ManualClock};
use sluice_service::decider::Decider;
use sluice_service::domains::{Domain, Domains};
use sluice_service::metrics::Metrics;
use sluice_service::server::{self, Limits, Running};
use sluice_service::store::DecisionStore;

/// 2026-01-01T00:00:00Z, the vectors' origin.
pub const EPOCH_NS: u64 = 1_767_225_600_000_000_000;

/// A running service and what it decides with.
pub struct Service<S, C> {
    pub running: Running,
    pub decider: Arc<Decider<S, C>>,
}

impl<S: DecisionStore, C: Clock> Service<S, C> {
    /// The HTTP base URL.
    pub fn http(&self) -> String {
        format!(
            "http://{}",
            self.running.http_addr().expect("an HTTP listener")
        )
    }

    /// The gRPC endpoint.
    pub fn grpc(&self) -> String {
        format!(
            "http://{}",
            self.running.grpc_addr().expect("a gRPC listener")
        )
    }
}

/// Domains from config texts.
pub fn domains(configs: &[&str]) -> Domains {
    let mut domains = Domains::default();
    for (index, config) in configs.iter().enumerate() {
        let policy = Policy::from_json(config.as_bytes())
            .unwrap_or_else(|e| panic!("test config {index} is invalid: {e}"));
        domains
            .insert(Domain::new(policy, format!("config-{index}.json").into()))
            .expect("distinct domains");
    }
    domains
}

/// Starts a service on free loopback ports.
pub async fn start<S: DecisionStore, C: Clock>(
    store: Arc<S>,
    clock: C,
    configs: &[&str],
    deadline: Duration,
) -> Service<S, C> {
    let decider = Arc::new(Decider::new(
        domains(configs),
        store,
        clock,
        Metrics::new(),
        1024,
        deadline,
    ));
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    let running = server::start(
        Arc::clone(&decider),
        Some(loopback),
        Some(loopback),
        Limits::default(),
    )
    .await
    .expect("the service starts");
    Service { running, decider }
}

/// A manual clock at the vectors' origin.
pub fn clock() -> ManualClock {
    ManualClock::new(EPOCH_NS)
}

/// The tests' HTTP client.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and returns the status and body.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    body: impl Into<Bytes>,
) -> (u16, Vec<u8>) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .expect("a request");
    let response = client.request(request).await.expect("the service answers");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes()
        .to_vec();
    (status, body)
}

/// POSTs JSON.
pub async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    body: impl Into<Bytes>,
) -> (u16, serde_json::Value) {
    let (status, body) = send(client, "POST", url, body).await;
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "status {status}: the body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, json)
}

/// A Redis store on the test Redis.
pub async fn redis_store(redis: &RedisServer) -> Arc<RedisStore> {
    Arc::new(
        RedisStore::connect(RedisConfig::new(redis.url()))
            .await
            .expect("the store connects to the test Redis"),
    )
}

/// A service on the test Redis with the vectors' clock, for `configs`.
pub async fn start_on_redis(
    redis: &RedisServer,
    clock: ManualClock,
    configs: &[&str],
) -> Service<RedisStore, ManualClock> {
    start(
        redis_store(redis).await,
        clock,
        configs,
        Duration::from_secs(5),
    )
    .await
}

/// Two global rules on the client address, one failing open and one failing closed.
pub const FAILURE_MODES_CONFIG: &str = r#"{
    "global": {"cluster": "sluice_service"},
    "rules": [
        {"name": "open", "scope": "global", "key": ["client_ip"],
         "limit": {"requests": 3, "period": "1m"}, "failure_mode": "open"},
        {"name": "closed", "scope": "global", "key": ["client_ip"],
         "limit": {"requests": 3, "period": "1m"}, "failure_mode": "closed"}
    ]
}"#;

/// A decide request body for `rules` of [`FAILURE_MODES_CONFIG`], from one client.
pub fn failure_modes_body(rules: &[&str]) -> Vec<u8> {
    let policy = sluice_policy::Policy::from_json(FAILURE_MODES_CONFIG.as_bytes()).expect("valid");
    let request = sluice_policy::OwnedRequest {
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
    sluice_policy::global::DecideRequest::new(policy.domain(), checks).to_json()
}
