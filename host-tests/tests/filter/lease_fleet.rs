//! Leases for real: three proxies (Envoy and ngx_wasm_module flavours, two VMs each) running
//! the filter's `.wasm` in front of two replicas of `sluice-service` over one real Redis, on
//! one fake clock. Steady traffic from many clients, for one hot key and for many keys, per
//! algorithm that supports leases and per lease configuration (fixed small, fixed large,
//! auto): the global round trips per request, and the requests admitted per period against
//! the limit plus the documented bound (proxies × slice size). A proxy dropped mid-lease
//! loses its unspent units; the others keep counting and the total stays within the bound.
//!
//! `cargo test -p sluice-host --test filter lease_fleet -- --nocapture` prints the figures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_host::{Clock, Proxy};
use sluice_redis_server::RedisServer;

use crate::global_redis::start_service_with;
use crate::global_rules::start_with_service;
use crate::support::{Host, T0_NS, get, send, status};

const PERIOD_MS: u64 = 1_000;
const STEP_MS: u64 = 10;

struct Run {
    requests: u64,
    admitted_per_period: BTreeMap<u64, u64>,
    calls: u64,
}

/// The service the proxies ask: two replicas of `sluice-service` on Redis.
struct Backend {
    replicas: Vec<sluice_service::server::Running>,
    metrics: sluice_service::metrics::Metrics,
}

impl Backend {
    /// Calls the replicas have answered so far.
    fn answered(&self) -> u64 {
        self.metrics
            .render()
            .lines()
            .filter(|line| line.starts_with("sluice_service_requests_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

fn config(algorithm: &str, limit: u64, lease: &Value) -> Value {
    json!({
        "global": {"cluster": "limits", "timeout": "2s"},
        "rules": [{"name": "fleet", "scope": "global", "key": ["client_ip"],
                   "algorithm": algorithm, "failure_mode": "closed", "max_keys": 1024,
                   "limit": {"requests": limit, "period": "1s"}, "lease": lease}]})
}

/// Sends `per_step` requests per VM every 10 ms of the fake clock for `steps` steps, from
/// `clients` client addresses in turn; `drop_at` drops the last proxy at that step.
fn drive(
    proxies: Vec<Proxy>,
    backend: &Backend,
    clock: &Clock,
    clients: u64,
    steps: u64,
    per_step: u64,
    drop_at: Option<u64>,
) -> (Run, BTreeMap<(u64, u64), u64>) {
    let mut proxies: Vec<Arc<Proxy>> = proxies.into_iter().map(Arc::new).collect();
    let mut run = Run {
        requests: 0,
        admitted_per_period: BTreeMap::new(),
        calls: 0,
    };
    let mut per_key: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut dropped_calls = 0;
    let mut client = 0u64;
    for step in 0..steps {
        let now_ms = step * STEP_MS;
        clock
            .as_fake()
            .expect("a fake clock")
            .set_ns(T0_NS + now_ms * 1_000_000);
        if Some(step) == drop_at
            && let Some(gone) = proxies.pop()
        {
            dropped_calls = gone.metrics().counter("sluice.global.calls").unwrap_or(0);
        }
        let threads: Vec<_> = proxies
            .iter()
            .enumerate()
            .map(|(p, proxy)| {
                let proxy = Arc::clone(proxy);
                let first = client + p as u64 * per_step * 2;
                std::thread::spawn(move || {
                    let mut admitted = Vec::new();
                    for worker in 0..proxy.workers() {
                        for n in 0..per_step {
                            let c = (first + worker as u64 * per_step + n) % clients;
                            let peer = format!("198.51.{}.{}:1000", c / 200, c % 200 + 1);
                            let ok = status(&send(&proxy, worker, get("/", &peer))) == 200;
                            admitted.push((c, ok));
                        }
                    }
                    admitted
                })
            })
            .collect();
        for thread in threads {
            for (c, ok) in thread.join().expect("a client thread") {
                run.requests += 1;
                if ok {
                    *run.admitted_per_period
                        .entry(now_ms / PERIOD_MS)
                        .or_default() += 1;
                    *per_key.entry((c, now_ms / PERIOD_MS)).or_default() += 1;
                }
            }
        }
        client += proxies.len() as u64 * 2 * per_step;
        // Let the background calls of this step's ticks land, as they would between two
        // steps of real traffic (10 ms apart): until the service has answered every call
        // made, for at most 100 ms.
        let made = || {
            dropped_calls
                + proxies
                    .iter()
                    .map(|p| p.metrics().counter("sluice.global.calls").unwrap_or(0))
                    .sum::<u64>()
        };
        let started = std::time::Instant::now();
        while backend.answered() < made() && started.elapsed() < Duration::from_millis(100) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    run.calls = dropped_calls
        + proxies
            .iter()
            .map(|p| p.metrics().counter("sluice.global.calls").unwrap_or(0))
            .sum::<u64>();
    (run, per_key)
}

/// Lease configurations: name, `lease`, the largest slice, and the round trips per request
/// expected at most for a hot key within its limit (a slice of 10 costs one call per 10
/// requests, plus the calls of requests that find it spent while its renewal is on its way;
/// larger slices far fewer).
fn leases() -> Vec<(&'static str, Value, u64, f64)> {
    vec![
        (
            "fixed small",
            json!({"size": 10, "lifetime": "500ms"}),
            10,
            0.25,
        ),
        (
            "fixed large",
            json!({"size": 50, "lifetime": "1s"}),
            50,
            0.1,
        ),
        (
            "auto",
            json!({"size": "auto", "max": 50, "lifetime": "1s"}),
            50,
            0.1,
        ),
    ]
}

fn fleet(
    runtime: &tokio::runtime::Runtime,
    redis: &RedisServer,
    config: &Value,
    clock: &Clock,
) -> (Backend, Vec<Proxy>) {
    let metrics = sluice_service::metrics::Metrics::new();
    let replicas = vec![
        start_service_with(runtime, redis, config, clock, metrics.clone()),
        start_service_with(runtime, redis, config, clock, metrics.clone()),
    ];
    let address = |i: usize| replicas[i % 2].http_addr().expect("an HTTP listener");
    let proxies = vec![
        start_with_service(Host::Envoy, config, 2, address(0), clock),
        start_with_service(Host::Ngx, config, 2, address(1), clock),
        start_with_service(Host::Envoy, config, 2, address(1), clock),
    ];
    (Backend { replicas, metrics }, proxies)
}

fn flush(redis: &RedisServer) {
    let mut connection = redis.connection().expect("a Redis connection");
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut connection)
        .expect("FLUSHALL");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn a_hot_key_costs_few_round_trips_and_stays_within_the_bound() {
    let redis = RedisServer::start().expect("a test Redis");
    let runtime = runtime();
    for algorithm in ["gcra", "fixed_window", "sliding_window"] {
        for (name, lease, size, most_per_request) in leases() {
            // Steady traffic within the limit: 3 proxies × 2 VMs × 1 request per 10 ms =
            // 600 requests/s for one client whose limit is 1,000/s, for 1 s.
            let within = config(algorithm, 1000, &lease);
            let clock = Clock::fake(T0_NS);
            let (backend, proxies) = fleet(&runtime, &redis, &within, &clock);
            let (run, _) = drive(proxies, &backend, &clock, 1, 100, 1, None);
            let per_request = run.calls as f64 / run.requests as f64;
            let admitted: u64 = run.admitted_per_period.values().sum();
            eprintln!(
                "hot key within its limit, {algorithm}, {name}: {} requests, {admitted} \
                 admitted, {} calls ({per_request:.3} per request)",
                run.requests, run.calls
            );
            assert_eq!(
                admitted, run.requests,
                "{algorithm}, {name}: all within the limit"
            );
            assert!(
                per_request <= most_per_request,
                "{algorithm}, {name}: {per_request:.3} round trips per request"
            );
            stop(&runtime, backend, &redis);

            // The same client at 3× its limit (400/s): admitted per period against the
            // exact path's most plus the bound.
            let limit = 400;
            let above = config(algorithm, limit, &lease);
            let clock = Clock::fake(T0_NS);
            let (backend, proxies) = fleet(&runtime, &redis, &above, &clock);
            let bound = proxies.len() as u64 * size;
            let (run, _) = drive(proxies, &backend, &clock, 1, 200, 2, None);
            eprintln!(
                "hot key at 3x its limit, {algorithm}, {name}: {} requests, {} calls ({:.3} \
                 per request), admitted per 1 s period {:?} (limit {limit}, bound {bound})",
                run.requests,
                run.calls,
                run.calls as f64 / run.requests as f64,
                run.admitted_per_period.values().collect::<Vec<_>>()
            );
            for (period, admitted) in &run.admitted_per_period {
                // What the exact path admits at most in a period, plus the bound. The windows:
                // their limit. GCRA (burst = limit): its whole burst and the rate in the
                // first period, the rate (and the one unit a period's edge can split) after.
                let exact = match (algorithm, period) {
                    ("gcra", 0) => 2 * limit,
                    ("gcra", _) => limit + 1,
                    _ => limit,
                };
                assert!(
                    *admitted <= exact + bound,
                    "{algorithm}, {name}: {admitted} admitted in period {period}, above \
                     {exact} + {bound}"
                );
                assert!(
                    *admitted >= limit * 9 / 10,
                    "{algorithm}, {name}: only {admitted} admitted in period {period}"
                );
            }
            stop(&runtime, backend, &redis);
        }
    }
}

fn stop(runtime: &tokio::runtime::Runtime, backend: Backend, redis: &RedisServer) {
    for replica in backend.replicas {
        runtime.block_on(replica.shutdown());
    }
    flush(redis);
}

#[test]
fn many_keys_each_stay_within_the_bound() {
    let redis = RedisServer::start().expect("a test Redis");
    let runtime = runtime();
    for algorithm in ["gcra", "fixed_window", "sliding_window"] {
        let (name, lease, size, _) = leases().swap_remove(0);
        let limit = 20;
        let config = config(algorithm, limit, &lease);
        let clock = Clock::fake(T0_NS);
        let (backend, proxies) = fleet(&runtime, &redis, &config, &clock);
        let bound = proxies.len() as u64 * size;
        // 40 clients in turn, 600 requests/s in all (15/s each, under their limit of 20)
        // for 1 s.
        let (run, per_key) = drive(proxies, &backend, &clock, 40, 100, 1, None);
        let worst = per_key.values().max().copied().unwrap_or(0);
        eprintln!(
            "40 keys, {algorithm}, {name}: {} requests, {} calls ({:.3} per request), the \
             busiest key admitted {worst} in a period (limit {limit}, bound {bound})",
            run.requests,
            run.calls,
            run.calls as f64 / run.requests as f64
        );
        assert!(worst <= limit + bound, "{algorithm}: {worst}");
        assert!(
            run.calls < run.requests,
            "{algorithm}: slices saved calls: {} for {}",
            run.calls,
            run.requests
        );
        stop(&runtime, backend, &redis);
    }
}

#[test]
fn a_proxy_dropped_mid_lease_loses_its_slice_and_the_others_keep_counting() {
    let redis = RedisServer::start().expect("a test Redis");
    let runtime = runtime();
    let limit = 300;
    let size = 50;
    let config = config(
        "fixed_window",
        limit,
        &json!({"size": size, "lifetime": "1s"}),
    );
    let clock = Clock::fake(T0_NS);
    let (backend, proxies) = fleet(&runtime, &redis, &config, &clock);
    let bound = proxies.len() as u64 * size;
    // One period of 1 s, the third proxy gone half-way with its slice.
    let (run, _) = drive(proxies, &backend, &clock, 1, 100, 2, Some(50));
    let admitted = run.admitted_per_period.get(&0).copied().unwrap_or(0);
    eprintln!("proxy dropped mid-lease: {admitted} admitted (limit {limit}, bound {bound})");
    assert!(admitted <= limit + bound, "{admitted}");
    // The dropped proxy's unspent units are lost, never given twice: the survivors still
    // admit up to what the service has left.
    assert!(
        admitted >= limit - bound,
        "the others kept counting: {admitted}"
    );
    stop(&runtime, backend, &redis);
}
