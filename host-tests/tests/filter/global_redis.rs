//! The whole global tier for real: two proxies (an Envoy and an ngx_wasm_module flavour, three
//! VMs each) running the filter's `.wasm`, in front of two replicas of `sluice-service`, over one
//! real Redis. A client hammering both proxies gets exactly its limit in total, for every
//! algorithm; the service's answers reach the client as the filter's own headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_host::Clock;
use sluice_redis::{RedisConfig, RedisStore};
use sluice_redis_server::RedisServer;
use sluice_service::decider::Decider;
use sluice_service::domains::{Domain, Domains};
use sluice_service::metrics::Metrics;
use sluice_service::server::{self, Limits, Running};

use crate::global_rules::start_with_service;
use crate::support::{Host, T0_NS, get, send, status};

/// The host's clock, read by the service: one time for proxies and service alike.
struct SharedClock(Clock);

impl sluice_service::clock::Clock for SharedClock {
    fn now(&self) -> u64 {
        self.0.now_ns()
    }
}

pub fn start_service(
    runtime: &tokio::runtime::Runtime,
    redis: &RedisServer,
    config: &serde_json::Value,
    clock: &Clock,
) -> Running {
    start_service_with(runtime, redis, config, clock, Metrics::new())
}

/// [`start_service`], counting in `metrics`.
pub fn start_service_with(
    runtime: &tokio::runtime::Runtime,
    redis: &RedisServer,
    config: &serde_json::Value,
    clock: &Clock,
    metrics: Metrics,
) -> Running {
    runtime.block_on(async {
        let mut redis_config = RedisConfig::new(redis.url());
        redis_config.call_timeout = Duration::from_secs(1);
        let store = RedisStore::connect(redis_config)
            .await
            .expect("the store connects to the test Redis");
        let policy = sluice_policy::Policy::from_json(config.to_string().as_bytes())
            .expect("a valid config");
        let mut domains = Domains::default();
        domains
            .insert(Domain::new(policy, "global.json".into()))
            .expect("one domain");
        let decider = Arc::new(Decider::new(
            domains,
            Arc::new(store),
            SharedClock(clock.clone()),
            metrics,
            1024,
            Duration::from_secs(2),
        ));
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        server::start(decider, None, Some(loopback), Limits::default())
            .await
            .expect("the service starts")
    })
}

#[test]
fn two_proxies_and_two_service_replicas_on_redis_admit_exactly_the_limit() {
    let redis = RedisServer::start().expect("a test Redis");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    for algorithm in ["gcra", "fixed_window", "sliding_window", "sliding_log"] {
        let limit = 30;
        let config = json!({
            "global": {"cluster": "limits", "timeout": "2s"},
            "response": {"headers": "both"},
            "rules": [{"name": "fleet", "scope": "global", "key": ["client_ip"],
                       "algorithm": algorithm, "failure_mode": "closed",
                       "limit": {"requests": limit, "period": "1h"}}]});
        let clock = Clock::fake(T0_NS);
        let replicas = [
            start_service(&runtime, &redis, &config, &clock),
            start_service(&runtime, &redis, &config, &clock),
        ];
        let address = |i: usize| replicas[i].http_addr().expect("an HTTP listener");
        let proxies = Arc::new([
            start_with_service(Host::Envoy, &config, 3, address(0), &clock),
            start_with_service(Host::Ngx, &config, 3, address(1), &clock),
        ]);
        let threads: Vec<_> = (0..6)
            .map(|thread| {
                let proxies = Arc::clone(&proxies);
                std::thread::spawn(move || {
                    let proxy = &proxies[thread % 2];
                    (0..15)
                        .filter(|_| {
                            status(&send(proxy, thread / 2, get("/", "203.0.113.7:1000"))) == 200
                        })
                        .count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(
            admitted, limit as usize,
            "{algorithm}: 90 sent through two proxies"
        );
        let failed: u64 = proxies
            .iter()
            .map(|p| {
                crate::support::flushed_metrics(p)
                    .counter("sluice.fleet.failed_closed")
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(failed, 0, "{algorithm}: no call failed");
        // A denial carries the headers the local path would give.
        let denied = send(&proxies[0], 0, get("/", "203.0.113.7:1000"));
        assert_eq!(status(&denied), 429);
        for replica in replicas {
            runtime.block_on(replica.shutdown());
        }
        let mut connection = redis.connection().expect("a Redis connection");
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut connection)
            .expect("FLUSHALL");
    }
}
