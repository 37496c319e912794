//! The load generator of `service_load` (the benchmark) and of its smoke in `cargo test`:
//! in-process clients, over HTTP (`POST /v1/decide`, hyper) and gRPC (`ShouldRateLimit`,
//! tonic), against a service on a real Redis, next to raw Redis round trips (`PING`, `INCR`)
//! over one multiplexed connection, as the service's own.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use redis::aio::ConnectionManager;
use sluice_policy::Policy;
use sluice_policy::global::{DecideCheck, DecideRequest};

/// The algorithms, each a rule of the same name in [`config`].
pub const ALGORITHMS: [&str; 4] = ["gcra", "fixed_window", "sliding_window", "sliding_log"];

/// The domain of [`config`].
pub const DOMAIN: &str = "bench";

/// One rule per algorithm, all `requests` per `period`, keyed on the `x-key` header.
pub fn config(requests: u64, period: &str) -> String {
    let rules: Vec<String> = ALGORITHMS
        .iter()
        .map(|algorithm| {
            format!(
                r#"{{"name": "{algorithm}", "scope": "global", "algorithm": "{algorithm}",
                    "key": [{{"header": "x-key"}}],
                    "limit": {{"requests": {requests}, "period": "{period}"}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"global": {{"cluster": "sluice_service", "domain": "{DOMAIN}"}}, "rules": [{}]}}"#,
        rules.join(",")
    )
}

/// Which keys the requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// Every request on one key.
    Hot,
    /// Requests cycling over this many distinct keys.
    Many(u32),
}

/// How the requests reach the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `POST /v1/decide` over HTTP/1.1 keep-alive (one connection per client task).
    Http,
    /// `ShouldRateLimit` over one HTTP/2 connection shared by the client tasks.
    Grpc,
}

impl Protocol {
    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP /v1/decide",
            Protocol::Grpc => "gRPC ShouldRateLimit",
        }
    }
}

/// What a load does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Raw `PING` on the benchmark's own Redis connection.
    Ping,
    /// Raw `INCR` of one key on that connection.
    Incr,
    /// Decisions of the rule named after the algorithm.
    Decide {
        /// The rule (= algorithm).
        algorithm: &'static str,
        /// Hot key or many keys.
        keys: Keys,
        /// HTTP or gRPC.
        protocol: Protocol,
    },
}

impl Load {
    /// Its name in the output.
    pub fn name(&self) -> String {
        match self {
            Load::Ping => "raw Redis PING".to_owned(),
            Load::Incr => "raw Redis INCR".to_owned(),
            Load::Decide {
                algorithm,
                keys,
                protocol,
            } => format!(
                "{algorithm}, {}, {}",
                match keys {
                    Keys::Hot => "hot key".to_owned(),
                    Keys::Many(n) => format!("{n} keys"),
                },
                protocol.name()
            ),
        }
    }
}

/// How much load to send.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Until this much time has passed.
    For(Duration),
    /// This many requests per client task.
    Requests(u32),
}

/// What a load measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Requests answered.
    pub ops: u64,
    /// Requests allowed (decisions; raw operations count as allowed).
    pub allowed: u64,
    /// Wall time of the whole load.
    pub elapsed: Duration,
    /// Every request's latency, sorted.
    pub latencies: Vec<Duration>,
}

impl Measured {
    /// Requests per second.
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1);
        self.latencies[at]
    }
}

/// The clients: an HTTP client, a gRPC channel and a raw Redis connection.
#[derive(Clone)]
pub struct Clients {
    http: Client<HttpConnector, Full<Bytes>>,
    http_base: String,
    grpc: RateLimitServiceClient<tonic::transport::Channel>,
    redis: ConnectionManager,
    limits: Arc<Vec<(String, String)>>,
}

impl Clients {
    /// Clients of the service at `http_base`/`grpc_endpoint` (both `http://addr`), serving
    /// `config`, and of Redis at `redis_url`.
    pub async fn connect(
        http_base: &str,
        grpc_endpoint: &str,
        redis_url: &str,
        config: &str,
    ) -> Clients {
        let policy = Policy::from_json(config.as_bytes()).expect("the benchmark config is valid");
        // Each rule's limit as the proxies send it.
        let limits = policy
            .rules()
            .iter()
            .map(|rule| {
                let check = rule.check(Vec::new(), 1);
                let wire = DecideCheck::from_check(&check);
                (wire.rule, wire.limit)
            })
            .collect();
        let grpc = RateLimitServiceClient::connect(grpc_endpoint.to_owned())
            .await
            .expect("the gRPC listener answers");
        let redis = ConnectionManager::new(redis::Client::open(redis_url).expect("a Redis URL"))
            .await
            .expect("Redis answers");
        Clients {
            http: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1024)
                .build_http(),
            http_base: http_base.to_owned(),
            grpc,
            redis,
            limits: Arc::new(limits),
        }
    }

    /// One request of `load` (`i` picks the key); whether it was allowed.
    pub async fn once(&mut self, load: Load, i: u32) -> bool {
        match load {
            Load::Ping => {
                let _: String = redis::cmd("PING")
                    .query_async(&mut self.redis)
                    .await
                    .expect("PING");
                true
            }
            Load::Incr => {
                let _: i64 = redis::cmd("INCR")
                    .arg("bench:counter")
                    .query_async(&mut self.redis)
                    .await
                    .expect("INCR");
                true
            }
            Load::Decide {
                algorithm,
                keys,
                protocol,
            } => {
                let key = match keys {
                    Keys::Hot => "hot".to_owned(),
                    Keys::Many(n) => format!("k{}", i % n),
                };
                match protocol {
                    Protocol::Http => self.decide_http(algorithm, &key).await,
                    Protocol::Grpc => self.decide_grpc(algorithm, &key).await,
                }
            }
        }
    }

    async fn decide_http(&self, rule: &str, key: &str) -> bool {
        let limit = self
            .limits
            .iter()
            .find(|(name, _)| name == rule)
            .map(|(_, limit)| limit.clone())
            .expect("a rule of the benchmark config");
        let body = DecideRequest {
            domain: DOMAIN.to_owned(),
            checks: vec![DecideCheck {
                rule: rule.to_owned(),
                key: hex(key.as_bytes()),
                cost: 1,
                limit,
            }],
        }
        .to_json();
        let request = hyper::Request::post(format!("{}/v1/decide", self.http_base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("a request");
        let response = self
            .http
            .request(request)
            .await
            .expect("the service answers");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        // Cheap checks, the client shares the cores with the service: the reply starts with
        // `allowed` (DecideReply's first field) and no rule met a store failure.
        assert!(
            !body.windows(7).any(|w| w == b"failed_"),
            "a decision without a store failure: {}",
            String::from_utf8_lossy(&body)
        );
        body.starts_with(b"{\"allowed\":true")
    }

    async fn decide_grpc(&mut self, rule: &str, key: &str) -> bool {
        let entry = |key: &str, value: &str| Entry {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        let request = RateLimitRequest {
            domain: DOMAIN.to_owned(),
            descriptors: vec![RateLimitDescriptor {
                // The key bytes are the descriptor's other entries: the counter differs from
                // the HTTP path's, which keys on the raw bytes.
                entries: vec![entry("rule", rule), entry("x-key", key)],
                ..Default::default()
            }],
            hits_addend: 0,
        };
        let response = self
            .grpc
            .should_rate_limit(request)
            .await
            .expect("the service answers")
            .into_inner();
        response.overall_code == Code::Ok as i32
    }

    /// The raw Redis connection.
    pub fn redis(&self) -> ConnectionManager {
        self.redis.clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `load` from `tasks` concurrent client tasks.
pub async fn run(clients: &Clients, load: Load, tasks: u32, budget: Budget) -> Measured {
    let started = Instant::now();
    let deadline = match budget {
        Budget::For(duration) => Some(started + duration),
        Budget::Requests(_) => None,
    };
    let mut handles = Vec::new();
    for task in 0..tasks {
        let mut clients = clients.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut allowed = 0u64;
            // Tasks start at different keys and stride through all of them.
            let mut i = task.wrapping_mul(7919);
            let mut sent = 0u32;
            loop {
                match (budget, deadline) {
                    (Budget::Requests(n), _) if sent >= n => break,
                    (_, Some(deadline)) if Instant::now() >= deadline => break,
                    _ => {}
                }
                let start = Instant::now();
                allowed += u64::from(clients.once(load, i).await);
                latencies.push(start.elapsed());
                i = i.wrapping_add(1);
                sent += 1;
            }
            (latencies, allowed)
        }));
    }
    let mut latencies = Vec::new();
    let mut allowed = 0;
    for handle in handles {
        let (l, a) = handle.await.expect("a client task");
        latencies.extend(l);
        allowed += a;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Measured {
        ops: latencies.len() as u64,
        allowed,
        elapsed,
        latencies,
    }
}

/// `calls` of `command` in Redis' `INFO commandstats`.
pub async fn command_calls(redis: &mut ConnectionManager, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// The value of a counter in the service's metrics text (`name` with its `_total`).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}
