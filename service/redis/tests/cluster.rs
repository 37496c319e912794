//! Against a real 3-master Redis Cluster: a decision whose rules live on different nodes is
//! still all or nothing (committed slots are refunded when another denies or fails), counts
//! stay exact under concurrency from two replicas, and a node that stops gives its rules their
//! failure mode without consuming the others.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sluice_core::{Algorithm, Check, FailureMode, Status};
use sluice_redis::{RedisConfig, RedisStore};
use sluice_redis_server::RedisCluster;

/// Key bytes for `wide` and `narrow` whose state keys live on different masters.
fn keys_on_two_masters(cluster: &RedisCluster, domain: &str) -> (Vec<u8>, Vec<u8>, usize, usize) {
    let a = b"client-a".to_vec();
    let master_a = cluster
        .master_of(&RedisStore::state_key(domain, "wide", &a))
        .unwrap();
    for i in 0..100u32 {
        let b = format!("client-b{i}").into_bytes();
        let master_b = cluster
            .master_of(&RedisStore::state_key(domain, "narrow", &b))
            .unwrap();
        if master_b != master_a {
            return (a, b, master_a, master_b);
        }
    }
    panic!("no key on another master");
}

async fn cluster_store(cluster: &RedisCluster) -> RedisStore {
    // Patient enough for a loaded machine, short enough to see a dead node quickly.
    let mut config = RedisConfig::cluster(cluster.urls());
    config.call_timeout = Duration::from_millis(500);
    config.connect_timeout = Duration::from_secs(5);
    let store = RedisStore::connect(config).await.unwrap();
    assert!(store.is_cluster());
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rules_on_different_nodes_are_all_or_nothing() {
    let mut cluster = RedisCluster::start(3).unwrap();
    let domain = domain("cluster");
    let (a, b, _, master_b) = keys_on_two_masters(&cluster, &domain);
    let store = cluster_store(&cluster).await;
    // Auto-detected from one node, too.
    let auto = RedisStore::connect(patient(RedisConfig::new(cluster.urls()[0].clone())))
        .await
        .unwrap();
    assert!(auto.is_cluster());

    let wide = limit(Algorithm::Gcra, 10, HOUR);
    let narrow = limit(Algorithm::FixedWindow, 3, HOUR);
    let now = now();
    let both = [
        check("wide", wide, &a, FailureMode::Open),
        check("narrow", narrow, &b, FailureMode::Closed),
    ];
    let mut allowed = 0;
    for i in 0..6 {
        let decided = store.decide(&domain, &both, now).await;
        assert!(decided.error.is_none(), "{decided:?}");
        if decided.verdict.allowed {
            allowed += 1;
            assert_eq!(decided.round_trips, 2, "one call per node, in parallel");
        } else {
            assert_eq!(
                decided.round_trips, 1,
                "only the denying node is asked: {i}"
            );
        }
    }
    assert_eq!(allowed, 3);
    let only_wide = [check("wide", wide, &a, FailureMode::Open)];
    let decided = store.decide(&domain, &only_wide, now).await;
    assert_eq!(decided.verdict.outcomes[0].decision.remaining, 10 - 3 - 1);

    // The node of `narrow` goes away: it fails closed, and `wide` (committed on its own node)
    // is refunded.
    cluster.node_mut(master_b).unwrap().kill();
    let fresh_narrow = (0..100u32)
        .map(|i| format!("fresh-b{i}").into_bytes())
        .find(|k| {
            cluster
                .master_of(&RedisStore::state_key(&domain, "narrow", k))
                .is_ok_and(|m| m == master_b)
        })
        .unwrap_or_else(|| b.clone());
    let failing = [
        check("wide", wide, &a, FailureMode::Open),
        check("narrow", narrow, &fresh_narrow, FailureMode::Closed),
    ];
    for _ in 0..3 {
        let started = Instant::now();
        let decided = store.decide(&domain, &failing, now).await;
        assert!(started.elapsed() < Duration::from_secs(2), "no hang");
        assert!(!decided.verdict.allowed, "{decided:?}");
        assert_eq!(decided.verdict.outcomes[1].status, Status::FailedClosed);
    }
    let decided = store.decide(&domain, &only_wide, now).await;
    assert!(decided.error.is_none(), "{decided:?}");
    assert_eq!(
        decided.verdict.outcomes[0].decision.remaining,
        10 - 3 - 2,
        "nothing spent by the requests that failed closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_keep_exact_counts_across_nodes() {
    let cluster = RedisCluster::start(3).unwrap();
    let domain = domain("cluster-load");
    let (a, b, _, _) = keys_on_two_masters(&cluster, &domain);
    let replicas = [cluster_store(&cluster).await, cluster_store(&cluster).await];
    let wide = limit(Algorithm::SlidingLog, 100, HOUR);
    let narrow = limit(Algorithm::Gcra, 15, HOUR);
    let now = now();
    let both_allowed = Arc::new(AtomicU64::new(0));
    let wide_allowed = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for store in &replicas {
        for t in 0..8 {
            let (store, domain, a, b) = (store.clone(), domain.clone(), a.clone(), b.clone());
            let (both_allowed, wide_allowed) = (both_allowed.clone(), wide_allowed.clone());
            handles.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let mut checks: Vec<Check<'_>> =
                        vec![check("wide", wide, &a, FailureMode::Open)];
                    if t % 2 == 0 {
                        checks.push(check("narrow", narrow, &b, FailureMode::Open));
                    }
                    let decided = store.decide(&domain, &checks, now).await;
                    assert!(!failed(&decided.verdict), "{decided:?}");
                    if decided.verdict.allowed {
                        wide_allowed.fetch_add(1, Ordering::Relaxed);
                        if checks.len() == 2 {
                            both_allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    for handle in handles {
        handle.await.unwrap();
    }
    // 80 one-rule requests, all admitted; 80 two-rule requests, of which `narrow` admits
    // exactly 15. The 65 denied ones consumed nothing from `wide` (refunded where `wide` had
    // committed first): 95 spent, so 4 left after one more.
    assert_eq!(both_allowed.load(Ordering::Relaxed), 15);
    assert_eq!(wide_allowed.load(Ordering::Relaxed), 95);
    let last = [check("wide", wide, &a, FailureMode::Open)];
    let decided = replicas[0].decide(&domain, &last, now).await;
    assert_eq!(
        decided.verdict.outcomes[0].decision.remaining, 4,
        "{decided:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_resume_after_a_master_fails_over_to_its_replica() {
    let mut cluster = RedisCluster::start_with_replicas(3, 1).unwrap();
    let domain = domain("failover");
    let store = cluster_store(&cluster).await;
    let limit = limit(Algorithm::FixedWindow, 1000, HOUR);
    let checks = [check("r", limit, b"k", FailureMode::Closed)];
    let now = now();
    for _ in 0..5 {
        assert!(store.decide(&domain, &checks, now).await.verdict.allowed);
    }
    let key = RedisStore::state_key(&domain, "r", b"k");
    let master = cluster.master_of(&key).unwrap();
    // Let the replica have the writes before its master goes.
    let _: redis::Value = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut cluster.node(master).unwrap().connection().unwrap())
        .unwrap();
    cluster.node_mut(master).unwrap().kill();
    let started = Instant::now();
    let decided = store.decide(&domain, &checks, now).await;
    assert!(started.elapsed() < Duration::from_secs(2), "no hang");
    assert_eq!(
        decided.verdict.outcomes[0].status,
        Status::FailedClosed,
        "{decided:?}"
    );
    // The replica takes over (node timeout 1 s); the store follows by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    let decided = loop {
        let decided = store.decide(&domain, &checks, now).await;
        if decided.error.is_none() {
            break decided;
        }
        assert!(Instant::now() < deadline, "no recovery: {decided:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(cluster.master_of(&key).unwrap(), master);
    // The count survived on the replica: 5 before, this one is the 6th (failed calls before
    // the failover may have been applied too, so at least 6).
    let remaining = decided.verdict.outcomes[0].decision.remaining;
    assert!(remaining <= 1000 - 6, "{decided:?}");
}
