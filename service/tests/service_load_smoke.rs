//! A small run of the `service_load` benchmark's load generator (`benches/load/`), for
//! correctness only (no timing): concurrent HTTP and gRPC clients on one hot key admit
//! exactly the limit for every algorithm, and an uncontended decision takes exactly one Redis
//! round trip (the store's count and Redis' own `INFO commandstats` agree).

mod common;

#[path = "../benches/load/mod.rs"]
mod load;

use load::{ALGORITHMS, Budget, Clients, Keys, Load, Protocol};
use sluice_redis_server::RedisServer;

async fn round_trips(
    service: &common::Service<sluice_redis::RedisStore, sluice_service::clock::ManualClock>,
) -> u64 {
    load::metric(
        &service.decider.metrics().render(),
        "sluice_service_store_round_trips_total",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_generator_admits_exactly_the_limit_with_one_round_trip_per_decision() {
    let redis = RedisServer::start().expect("a test Redis");
    // The clock stands still: no unit comes back during the run, whatever the algorithm.
    let config = load::config(50, "1h");
    let service = common::start_on_redis(&redis, common::clock(), &[&config]).await;
    let clients = Clients::connect(&service.http(), &service.grpc(), &redis.url(), &config).await;
    let mut raw = clients.redis();
    for algorithm in ALGORITHMS {
        for protocol in [Protocol::Http, Protocol::Grpc] {
            // 8 clients × 25 requests on one key: exactly 50 pass.
            let hot = Load::Decide {
                algorithm,
                keys: Keys::Hot,
                protocol,
            };
            let measured = load::run(&clients, hot, 8, Budget::Requests(25)).await;
            assert_eq!(measured.ops, 200);
            assert_eq!(measured.allowed, 50, "{}", hot.name());

            // One client over 100 fresh keys: every decision allowed, one round trip each.
            let many = Load::Decide {
                algorithm,
                keys: Keys::Many(100),
                protocol,
            };
            let trips_before = round_trips(&service).await;
            let evalsha_before = load::command_calls(&mut raw, "evalsha").await
                + load::command_calls(&mut raw, "eval").await;
            let measured = load::run(&clients, many, 1, Budget::Requests(100)).await;
            let trips = round_trips(&service).await - trips_before;
            let evalsha = load::command_calls(&mut raw, "evalsha").await
                + load::command_calls(&mut raw, "eval").await
                - evalsha_before;
            assert_eq!(measured.allowed, 100, "{}", many.name());
            assert_eq!(trips, 100, "{}: the store's round trips", many.name());
            assert_eq!(evalsha, 100, "{}: script calls Redis saw", many.name());
        }
    }
    let errors = load::metric(
        &service.decider.metrics().render(),
        "sluice_service_store_errors_total",
    );
    assert_eq!(errors, 0);
    service.running.shutdown().await;
}
