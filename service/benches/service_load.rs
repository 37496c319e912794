//! The service under load against raw Redis round trips, side by side in one run:
//! decisions per second and p50/p99 latency of `sluice-service` (in process, real listeners,
//! a real Redis from `sluice-redis-server`), over HTTP `/v1/decide` and gRPC `ShouldRateLimit`,
//! for a hot key and for 100,000 distinct keys, per algorithm, next to `PING` and `INCR` from
//! the same client process over one multiplexed Redis connection (as the service's store has).
//!
//! ```sh
//! cargo bench -p sluice-service --bench service_load
//! SLUICE_BENCH_SECONDS=2 SLUICE_BENCH_ROUNDS=3 SLUICE_BENCH_TASKS=1,32 cargo bench -p sluice-service --bench service_load
//! ```
//!
//! Each round runs every load once, in an order rotated from round to round; the table gives
//! the median over the rounds of each figure and of its ratio to raw `INCR` in the same round
//! with the same number of client tasks. "trips/decision" is the store's own count of Redis
//! round trips; "EVALSHA/decision" counts the script calls in Redis' `INFO commandstats`.

#[path = "load/mod.rs"]
mod load;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use load::{ALGORITHMS, Budget, Clients, Keys, Load, Protocol};
use sluice_policy::Policy;
use sluice_redis::{RedisConfig, RedisStore};
use sluice_redis_server::RedisServer;
use sluice_service::clock::SystemClock;
use sluice_service::decider::Decider;
use sluice_service::domains::{Domain, Domains};
use sluice_service::metrics::Metrics;
use sluice_service::server::{self, Limits};

const MANY_KEYS: u32 = 100_000;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

struct Row {
    per_sec: Vec<f64>,
    ratio: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    trips: Vec<f64>,
    evalsha: Vec<f64>,
    allowed: Vec<f64>,
}

#[tokio::main]
async fn main() {
    let seconds: f64 = env_or("SLUICE_BENCH_SECONDS", "2")
        .parse()
        .expect("seconds");
    let rounds: usize = env_or("SLUICE_BENCH_ROUNDS", "3").parse().expect("rounds");
    let task_counts: Vec<u32> = env_or("SLUICE_BENCH_TASKS", "1,32")
        .split(',')
        .map(|t| t.trim().parse().expect("task counts"))
        .collect();
    let redis = RedisServer::start().expect("a Redis for the benchmark");
    // 100 per 10 ms (10,000/s, burst 100): a hot key is decided at about that rate, so both
    // the committing and the denying paths run; sliding_log keeps up to 100 timestamps.
    let config = load::config(100, "10ms");
    let mut domains = Domains::default();
    domains
        .insert(Domain::new(
            Policy::from_json(config.as_bytes()).expect("valid"),
            "bench.json".into(),
        ))
        .expect("one domain");
    // Generous timeouts: the benchmark measures throughput, and a store failure (a timeout on
    // a loaded machine) would end it.
    let mut redis_config = RedisConfig::new(redis.url());
    redis_config.call_timeout = Duration::from_secs(2);
    let store = RedisStore::connect(redis_config)
        .await
        .expect("the store connects");
    let decider = Arc::new(Decider::new(
        domains,
        Arc::new(store),
        SystemClock,
        Metrics::new(),
        100_000,
        Duration::from_secs(5),
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
    let http = format!("http://{}", running.http_addr().expect("HTTP"));
    let grpc = format!("http://{}", running.grpc_addr().expect("gRPC"));
    let clients = Clients::connect(&http, &grpc, &redis.url(), &config).await;
    let mut raw = clients.redis();

    let mut loads = vec![Load::Ping, Load::Incr];
    for algorithm in ALGORITHMS {
        for keys in [Keys::Hot, Keys::Many(MANY_KEYS)] {
            for protocol in [Protocol::Http, Protocol::Grpc] {
                loads.push(Load::Decide {
                    algorithm,
                    keys,
                    protocol,
                });
            }
        }
    }
    let binaries = redis.binaries();
    println!(
        "redis-server {}.{}.{} ({:?}); {rounds} rounds of {seconds} s per load; client tasks {task_counts:?}",
        binaries.version.0, binaries.version.1, binaries.version.2, binaries.source
    );
    // Warm up: connections, the script, the JIT-less paths' first allocations.
    for load in &loads {
        load::run(&clients, *load, 4, Budget::Requests(50)).await;
    }

    let budget = Budget::For(Duration::from_secs_f64(seconds));
    for &tasks in &task_counts {
        let mut rows: Vec<Row> = loads
            .iter()
            .map(|_| Row {
                per_sec: Vec::new(),
                ratio: Vec::new(),
                p50: Vec::new(),
                p99: Vec::new(),
                trips: Vec::new(),
                evalsha: Vec::new(),
                allowed: Vec::new(),
            })
            .collect();
        for round in 0..rounds {
            let mut per_sec = vec![0.0; loads.len()];
            for k in 0..loads.len() {
                let index = (k + round * 5) % loads.len();
                let load = loads[index];
                let metrics_before = decider.metrics().render();
                let evalsha_before = load::command_calls(&mut raw, "evalsha").await
                    + load::command_calls(&mut raw, "eval").await;
                let measured = load::run(&clients, load, tasks, budget).await;
                let metrics_after = decider.metrics().render();
                let evalsha_after = load::command_calls(&mut raw, "evalsha").await
                    + load::command_calls(&mut raw, "eval").await;
                let errors = load::metric(&metrics_after, "sluice_service_store_errors_total");
                assert_eq!(errors, 0, "store errors during {}", load.name());
                let trips = load::metric(&metrics_after, "sluice_service_store_round_trips_total")
                    - load::metric(&metrics_before, "sluice_service_store_round_trips_total");
                let row = &mut rows[index];
                per_sec[index] = measured.per_sec();
                row.per_sec.push(measured.per_sec());
                row.p50.push(measured.quantile(0.50).as_secs_f64() * 1e6);
                row.p99.push(measured.quantile(0.99).as_secs_f64() * 1e6);
                if matches!(load, Load::Decide { .. }) {
                    row.trips.push(trips as f64 / measured.ops as f64);
                    row.evalsha
                        .push((evalsha_after - evalsha_before) as f64 / measured.ops as f64);
                    row.allowed
                        .push(100.0 * measured.allowed as f64 / measured.ops as f64);
                }
            }
            let incr = per_sec[1];
            for (row, rate) in rows.iter_mut().zip(&per_sec) {
                row.ratio.push(rate / incr);
            }
        }
        println!();
        println!("{tasks} client task(s):");
        println!(
            "| load | ops/s | spread | vs INCR | p50 µs | p99 µs | trips/decision | EVALSHA/decision | allowed % |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for (load, row) in loads.iter().zip(rows) {
            let decision = matches!(load, Load::Decide { .. });
            let or_dash = |values: Vec<f64>, digits: usize| {
                if decision {
                    format!("{:.*}", digits, median(values))
                } else {
                    "—".to_owned()
                }
            };
            // How far the rounds' ops/s spread around their median: the noise.
            let rate = median(row.per_sec.clone());
            let (low, high) = row
                .per_sec
                .iter()
                .fold((f64::MAX, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
            println!(
                "| {} | {:.0} | ±{:.0}% | {:.2}× | {:.0} | {:.0} | {} | {} | {} |",
                load.name(),
                rate,
                50.0 * (high - low) / rate,
                median(row.ratio),
                median(row.p50),
                median(row.p99),
                or_dash(row.trips, 3),
                or_dash(row.evalsha, 3),
                or_dash(row.allowed, 0),
            );
        }
    }
    let dbsize = redis.command(&["DBSIZE"]).expect("DBSIZE");
    println!("\nkeys in Redis at the end: {dbsize:?}");
    running.shutdown().await;
}
