//! Against a real Redis: no algorithm admits more than its limit however many tasks and
//! service replicas hammer a key, decisions equal the in-memory core's, and a warm key costs
//! one round trip.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use sluice_core::{Check, FailureMode, Limiter, Mode, State, Status};
use sluice_redis::RedisStore;
use sluice_redis_server::RedisServer;

/// `tasks` tasks per store each make `per_task` decisions on `checks`; returns how many were
/// allowed, and fails on any store failure (which would make the count meaningless).
async fn hammer(
    stores: &[RedisStore],
    domain: &str,
    checks: Vec<Check<'static>>,
    tasks: usize,
    per_task: usize,
    now: u64,
) -> u64 {
    let allowed = Arc::new(AtomicU64::new(0));
    let checks = Arc::new(checks);
    let mut handles = Vec::new();
    for store in stores {
        for _ in 0..tasks {
            let (store, checks, allowed, domain) = (
                store.clone(),
                checks.clone(),
                allowed.clone(),
                domain.to_owned(),
            );
            handles.push(tokio::spawn(async move {
                for _ in 0..per_task {
                    let decided = store.decide(&domain, &checks, now).await;
                    assert!(!failed(&decided.verdict), "{decided:?}");
                    if decided.verdict.allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    allowed.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_algorithm_admits_exactly_its_limit_for_a_hot_key_from_many_tasks() {
    let server = RedisServer::start().unwrap();
    let store = store(&server.url()).await;
    let domain = domain("hot");
    let now = now();
    for algorithm in ALGORITHMS {
        let rule: &'static str = algorithm.name();
        let checks = vec![check(
            rule,
            limit(algorithm, 100, HOUR),
            b"hot",
            FailureMode::Open,
        )];
        // 32 tasks x 8 = 256 attempts for a limit of 100.
        let admitted = hammer(std::slice::from_ref(&store), &domain, checks, 32, 8, now).await;
        assert_eq!(admitted, 100, "{algorithm:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_service_replicas_on_one_hot_key_admit_the_limit_in_total() {
    let server = RedisServer::start().unwrap();
    let replicas = [store(&server.url()).await, store(&server.url()).await];
    let domain = domain("replicas");
    let now = now();
    for algorithm in ALGORITHMS {
        let checks = vec![check(
            algorithm.name(),
            limit(algorithm, 100, HOUR),
            b"hot",
            FailureMode::Open,
        )];
        let admitted = hammer(&replicas, &domain, checks, 16, 8, now).await;
        assert_eq!(admitted, 100, "{algorithm:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_keys_each_admit_exactly_their_limit() {
    let server = RedisServer::start().unwrap();
    let replicas = [store(&server.url()).await, store(&server.url()).await];
    let domain = domain("many");
    let now = now();
    let allowed = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    // 2 replicas x 8 tasks; each task walks all 500 keys, 2 passes: 16 x 1000 attempts on keys
    // with a limit of 3 each.
    for (r, store) in replicas.iter().enumerate() {
        for t in 0..8 {
            let (store, allowed, domain) = (store.clone(), allowed.clone(), domain.clone());
            handles.push(tokio::spawn(async move {
                let limit = limit(sluice_core::Algorithm::Gcra, 3, HOUR);
                for pass in 0..2 {
                    for k in 0..500u32 {
                        let k = (k + 61 * (t + 8 * r as u32) + pass) % 500;
                        let key = format!("client-{k}");
                        let checks = [check(
                            "per-client",
                            limit,
                            key.as_bytes(),
                            FailureMode::Open,
                        )];
                        let decided = store.decide(&domain, &checks, now).await;
                        assert!(!failed(&decided.verdict), "{decided:?}");
                        if decided.verdict.allowed {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 500 * 3);
}

#[tokio::test]
async fn a_warm_key_costs_one_round_trip() {
    let server = RedisServer::start().unwrap();
    let store = store(&server.url()).await;
    let other = store_with_no_cache(&server.url()).await;
    let domain = domain("trips");
    let now = now();
    let checks = [
        check(
            "a",
            limit(sluice_core::Algorithm::Gcra, 5, HOUR),
            b"k",
            FailureMode::Open,
        ),
        check(
            "b",
            limit(sluice_core::Algorithm::FixedWindow, 3, HOUR),
            b"k",
            FailureMode::Open,
        ),
    ];
    // New key: expected absent, and it is.
    for i in 0..6 {
        let decided = store.decide(&domain, &checks, now).await;
        assert_eq!(decided.round_trips, 1, "decision {i}: {decided:?}");
        assert_eq!(decided.verdict.allowed, i < 3, "decision {i}");
    }
    // Another replica writes; ours learns the new value from the mismatch reply: 2 trips.
    let fresh = [check(
        "a",
        limit(sluice_core::Algorithm::Gcra, 5, HOUR),
        b"k2",
        FailureMode::Open,
    )];
    assert_eq!(store.decide(&domain, &fresh, now).await.round_trips, 1);
    let theirs = other.decide(&domain, &fresh, now).await;
    assert_eq!(
        theirs.round_trips, 2,
        "no cache: the existing key costs a second trip"
    );
    assert_eq!(store.decide(&domain, &fresh, now).await.round_trips, 2);
    assert_eq!(store.decide(&domain, &fresh, now).await.round_trips, 1);
    // Cost 0 needs no Redis at all.
    let mut free = fresh.clone();
    free[0].cost = 0;
    let decided = store.decide(&domain, &free, now).await;
    assert!(decided.verdict.allowed);
    assert_eq!(decided.round_trips, 0);
}

async fn store_with_no_cache(url: &str) -> RedisStore {
    let mut config = patient(sluice_redis::RedisConfig::new(url));
    config.cache_capacity = 0;
    RedisStore::connect(config).await.unwrap()
}

/// A deterministic mix of rules (every algorithm, shadow mode, costs 0..3, two keys) decided
/// one request at a time through Redis and by `Limiter::decide_all` over in-memory states:
/// the verdicts are the same, request by request.
#[tokio::test]
async fn decisions_equal_the_in_memory_core() {
    let server = RedisServer::start().unwrap();
    let store = store(&server.url()).await;
    let domain = domain("equal");
    let start = now();
    let rules = [
        (
            "gcra",
            limit(sluice_core::Algorithm::Gcra, 5, SECOND),
            Mode::Enforce,
        ),
        (
            "fixed",
            limit(sluice_core::Algorithm::FixedWindow, 7, SECOND),
            Mode::Enforce,
        ),
        (
            "sliding",
            limit(sluice_core::Algorithm::SlidingWindow, 6, SECOND),
            Mode::Shadow,
        ),
        (
            "log",
            limit(sluice_core::Algorithm::SlidingLog, 4, SECOND),
            Mode::Enforce,
        ),
    ];
    let mut memory: std::collections::HashMap<(String, Vec<u8>), Option<State>> =
        Default::default();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut t = start;
    for step in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        t += (seed % 40) * 1_000_000; // 0..40 ms between requests
        let key: &[u8] = if seed & 1 == 0 { b"alice" } else { b"bob" };
        let checks: Vec<Check<'_>> = rules
            .iter()
            .enumerate()
            .filter(|(i, _)| (seed >> (8 + i)) & 3 != 0)
            .map(|(i, (rule, limit, mode))| Check {
                rule,
                limit: *limit,
                max_keys: 0,
                key: key.to_vec(),
                cost: (seed >> (16 + 2 * i)) % 4,
                mode: *mode,
                failure_mode: FailureMode::Closed,
            })
            .collect();
        let mut states: Vec<Option<State>> = checks
            .iter()
            .map(|c| {
                memory
                    .get(&(c.rule.to_owned(), c.key.clone()))
                    .cloned()
                    .flatten()
            })
            .collect();
        let expected = Limiter::decide_all(&checks, &mut states, t);
        for (c, s) in checks.iter().zip(states) {
            memory.insert((c.rule.to_owned(), c.key.clone()), s);
        }
        let mut decided = store.decide(&domain, &checks, t).await;
        // The test's clock runs ahead of Redis's, so a key the store expects to have expired
        // may still be there: a lost race, decided again. Only the decisions must agree.
        for outcome in &mut decided.verdict.outcomes {
            outcome.cas_retries = 0;
        }
        assert_eq!(
            decided.verdict,
            expected,
            "step {step} at +{} ms",
            (t - start) / 1_000_000
        );
        assert!(decided.round_trips <= 2, "step {step}: {decided:?}");
    }
}

#[tokio::test]
async fn a_denied_request_consumes_nothing_from_its_other_rules() {
    let server = RedisServer::start().unwrap();
    let store = store(&server.url()).await;
    let domain = domain("all-or-nothing");
    let now = now();
    let wide = limit(sluice_core::Algorithm::Gcra, 10, HOUR);
    let narrow = limit(sluice_core::Algorithm::FixedWindow, 3, HOUR);
    let both = [
        check("wide", wide, b"k", FailureMode::Open),
        check("narrow", narrow, b"k", FailureMode::Open),
    ];
    let allowed = {
        let mut n = 0;
        for _ in 0..8 {
            if store.decide(&domain, &both, now).await.verdict.allowed {
                n += 1;
            }
        }
        n
    };
    assert_eq!(allowed, 3);
    // The five denials spent nothing from `wide`: 10 - 3 left.
    let only_wide = [check("wide", wide, b"k", FailureMode::Open)];
    let decided = store.decide(&domain, &only_wide, now).await;
    assert_eq!(decided.verdict.outcomes[0].status, Status::Allowed);
    assert_eq!(decided.verdict.outcomes[0].decision.remaining, 6);
}

#[tokio::test]
async fn counts_survive_a_service_restart_and_a_clean_redis_restart() {
    let mut server = RedisServer::start().unwrap();
    let domain = domain("restart");
    let now = now();
    let checks = [check(
        "r",
        limit(sluice_core::Algorithm::SlidingWindow, 5, HOUR),
        b"k",
        FailureMode::Closed,
    )];
    let first = store(&server.url()).await;
    for _ in 0..3 {
        assert!(first.decide(&domain, &checks, now).await.verdict.allowed);
    }
    drop(first);
    // A new service process: nothing cached, the count is in Redis.
    let second = store(&server.url()).await;
    let decided = second.decide(&domain, &checks, now).await;
    assert_eq!(
        decided.verdict.outcomes[0].decision.remaining, 1,
        "{decided:?}"
    );
    // Redis saved and restarted: the same store goes on counting.
    server.restart(true).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let decided = loop {
        let decided = second.decide(&domain, &checks, now).await;
        if decided.error.is_none() {
            break decided;
        }
        assert!(std::time::Instant::now() < deadline, "{decided:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        decided.verdict.outcomes[0].decision.remaining, 0,
        "{decided:?}"
    );
    assert!(!second.decide(&domain, &checks, now).await.verdict.allowed);
}
