//! Decisions per second and latency of the Redis store against raw Redis round trips (`PING`,
//! `INCR`) from a client configured alike, side by side in one run, on a Redis started by the
//! harness. Run by hand:
//!
//! ```sh
//! cargo bench -p sluice-redis --bench redis_store
//! SLUICE_BENCH_SECONDS=5 SLUICE_BENCH_TASKS=64 cargo bench -p sluice-redis --bench redis_store
//! ```
//!
//! Scenarios: one task (latency of a lone caller), then `SLUICE_BENCH_TASKS` concurrent tasks
//! (throughput), each for `SLUICE_BENCH_SECONDS`. "hot key": every decision on one key (one
//! GCRA rule that never denies); "100k keys": decisions cycling over 100,000 client keys
//! (after a first pass, so every key exists in Redis and in the store's cache). "trips/op" is
//! Redis round trips per operation.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use sluice_core::{Algorithm, Check, FailureMode, Limit, Mode, Quota};
use sluice_redis::{RedisConfig, RedisStore};
use sluice_redis_server::RedisServer;

const KEYS: u32 = 100_000;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy)]
enum Op {
    Ping,
    Incr,
    HotKey,
    ManyKeys,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Ping => "raw PING",
            Op::Incr => "raw INCR",
            Op::HotKey => "decide, hot key",
            Op::ManyKeys => "decide, 100k keys",
        }
    }
}

struct Bench {
    store: RedisStore,
    raw: ConnectionManager,
    limit: Limit,
}

impl Bench {
    /// Runs `op` once (`i` picks the key); returns the round trips it took.
    async fn run(&self, op: Op, i: u32) -> u32 {
        match op {
            Op::Ping => {
                let mut c = self.raw.clone();
                let _: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
                1
            }
            Op::Incr => {
                let mut c = self.raw.clone();
                let _: i64 = redis::cmd("INCR")
                    .arg("bench:counter")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                1
            }
            Op::HotKey | Op::ManyKeys => {
                let key = match op {
                    Op::HotKey => 0u32.to_be_bytes(),
                    _ => (i % KEYS).to_be_bytes(),
                };
                let checks = [Check {
                    rule: "bench",
                    limit: self.limit,
                    max_keys: 0,
                    key: key.to_vec(),
                    cost: 1,
                    mode: Mode::Enforce,
                    failure_mode: FailureMode::Closed,
                }];
                let decided = self.store.decide("bench", &checks, now()).await;
                assert!(
                    decided.verdict.allowed && decided.error.is_none(),
                    "{decided:?}"
                );
                decided.round_trips
            }
        }
    }
}

struct Result {
    ops: u64,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    trips: f64,
}

async fn measure(bench: Arc<Bench>, op: Op, tasks: u32, seconds: u64) -> Result {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let bench = bench.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut trips = 0u64;
            let mut i = t.wrapping_mul(7919);
            while Instant::now() < deadline {
                let start = Instant::now();
                trips += u64::from(bench.run(op, i).await);
                latencies.push(start.elapsed());
                i = i.wrapping_add(1);
            }
            (latencies, trips)
        }));
    }
    let mut latencies = Vec::new();
    let mut trips = 0;
    for handle in handles {
        let (l, t) = handle.await.unwrap();
        latencies.extend(l);
        trips += t;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Result {
        ops: latencies.len() as u64,
        per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        trips: trips as f64 / latencies.len() as f64,
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let seconds = env_or("SLUICE_BENCH_SECONDS", 3);
    let tasks = env_or("SLUICE_BENCH_TASKS", 32) as u32;
    let server = RedisServer::start().expect("a Redis for the benchmark");
    let binaries = server.binaries();
    let config = RedisConfig::new(server.url());
    let store = RedisStore::connect(config.clone()).await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let raw = ConnectionManager::new(client).await.unwrap();
    // Never denies (a burst of a billion), so every decision commits (the common, writing
    // path); 1,000 per hour, so each decision leaves 3.6 s of debt and the keys stay in Redis
    // (and in the store's cache) for the whole run.
    let limit = Limit::new(
        Algorithm::Gcra,
        Quota::new(1_000, 3_600_000_000_000, 1_000_000_000).unwrap(),
    );
    let bench = Arc::new(Bench { store, raw, limit });
    // First pass over the 100k keys: they exist in Redis and in the store's cache.
    let warm = Instant::now();
    let mut handles = Vec::new();
    for t in 0..16u32 {
        let bench = bench.clone();
        handles.push(tokio::spawn(async move {
            let mut i = t;
            while i < KEYS {
                bench.run(Op::ManyKeys, i).await;
                i += 16;
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    println!(
        "redis-server {}.{}.{} ({:?}), {KEYS} keys created in {:.2?}; {} s per scenario",
        binaries.version.0,
        binaries.version.1,
        binaries.version.2,
        binaries.source,
        warm.elapsed(),
        seconds
    );
    println!(
        "{:<20} {:>6} {:>12} {:>10} {:>10} {:>12} {:>14}",
        "operation", "tasks", "ops", "ops/s", "p50", "p99", "trips/op"
    );
    for concurrency in [1, tasks] {
        for op in [Op::Ping, Op::Incr, Op::HotKey, Op::ManyKeys] {
            let r = measure(bench.clone(), op, concurrency, seconds).await;
            println!(
                "{:<20} {:>6} {:>12} {:>10.0} {:>10.1?} {:>12.1?} {:>14.3}",
                op.name(),
                concurrency,
                r.ops,
                r.per_sec,
                r.p50,
                r.p99,
                r.trips
            );
        }
    }
    let info = server.command(&["DBSIZE"]).unwrap();
    println!("keys in Redis at the end: {info:?}");
}
