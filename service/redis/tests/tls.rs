//! The store over TLS: a Redis Cluster whose every node sits behind a TLS terminator requiring
//! client certificates and announces its TLS port, so the client follows the slot map over
//! TLS only; a decision across two masters stays all or nothing. (Standalone TLS, untrusted
//! certificates and the checks of the files are tested through the service:
//! service/tests/redis_tls.rs.)

mod common;

use std::time::Duration;

use common::*;
use sluice_core::{Algorithm, FailureMode};
use sluice_redis::{RedisConfig, RedisStore, TlsConfig};
use sluice_redis_server::{ClientAuth, RedisCluster, TestPki};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_over_mutual_tls_decides_across_its_masters() {
    let pki = TestPki::generate("cluster").unwrap();
    let cluster = RedisCluster::start_tls(3, &pki, ClientAuth::Required).unwrap();
    let urls = cluster.tls_urls();
    assert_eq!(urls.len(), 3);
    assert!(
        urls.iter().all(|url| url.starts_with("rediss://")),
        "{urls:?}"
    );

    let tls = TlsConfig::from_files(
        Some(&pki.ca_cert()),
        Some(&pki.client_cert()),
        Some(&pki.client_key()),
    )
    .unwrap();
    let mut config = RedisConfig::cluster(urls.clone());
    config.tls = Some(tls);
    config.call_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(5);
    let store = RedisStore::connect(config).await.unwrap();
    assert!(store.is_cluster());

    // Two rules whose keys live on different masters.
    let domain = domain("tls-cluster");
    let a = b"client-a".to_vec();
    let master_a = cluster
        .master_of(&RedisStore::state_key(&domain, "wide", &a))
        .unwrap();
    let b = (0..100u32)
        .map(|i| format!("client-b{i}").into_bytes())
        .find(|b| {
            cluster
                .master_of(&RedisStore::state_key(&domain, "narrow", b))
                .unwrap()
                != master_a
        })
        .expect("a key on another master");
    let wide = limit(Algorithm::Gcra, 10, HOUR);
    let narrow = limit(Algorithm::SlidingWindow, 3, HOUR);
    let both = [
        check("wide", wide, &a, FailureMode::Open),
        check("narrow", narrow, &b, FailureMode::Closed),
    ];
    let now = now();
    let mut allowed = 0;
    for _ in 0..5 {
        let decided = store.decide(&domain, &both, now).await;
        assert!(decided.error.is_none(), "{decided:?}");
        allowed += u32::from(decided.verdict.allowed);
    }
    assert_eq!(allowed, 3, "the narrow rule admits 3");
    // The wide rule was not consumed by the denied requests: 10 - 3 left.
    let decided = store
        .decide(&domain, &[check("wide", wide, &a, FailureMode::Open)], now)
        .await;
    assert_eq!(
        decided.verdict.outcomes[0].decision.remaining, 6,
        "{decided:?}"
    );

    // Without a client certificate the cluster's nodes refuse the service.
    let mut anonymous = RedisConfig::cluster(urls);
    anonymous.tls = Some(TlsConfig::from_files(Some(&pki.ca_cert()), None, None).unwrap());
    anonymous.connect_timeout = Duration::from_secs(3);
    assert!(RedisStore::connect(anonymous).await.is_err());
}
