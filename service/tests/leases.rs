//! sluice's lease API (`POST /v1/lease`) over a real Redis: concurrent acquisitions from many
//! clients never grant more than the limit in a period (every algorithm that can be leased);
//! returns restore units, except for a window that has ended; a leased sliding log is refused
//! when the configuration is loaded; config drift is a 409; the counts live in Redis, so they
//! survive a restart of the service.

mod common;

use sluice_core::Status;
use sluice_policy::Policy;
use sluice_policy::global::{LeaseAcquire, LeaseReply, LeaseRequest, LeaseReturn};
use sluice_redis_server::RedisServer;
use sluice_service::domains::{Domains, DomainsError};

const SECOND: u64 = 1_000_000_000;

/// One leased rule per algorithm that supports leases, 100 units per minute, slices of 7.
const CONFIG: &str = r#"{
    "global": {"cluster": "sluice_service", "domain": "api"},
    "rules": [
        {"name": "gcra", "scope": "global", "key": [{"header": "x-api-key"}],
         "limit": {"requests": 100, "period": "1m"}, "lease": {"size": 7}},
        {"name": "fixed", "scope": "global", "key": [{"header": "x-api-key"}], "algorithm": "fixed_window",
         "limit": {"requests": 100, "period": "1m"}, "lease": {"size": 7}},
        {"name": "sliding", "scope": "global", "key": [{"header": "x-api-key"}], "algorithm": "sliding_window",
         "limit": {"requests": 100, "period": "1m"}, "lease": {"size": 7}},
        {"name": "unleased", "scope": "global", "key": [{"header": "x-api-key"}],
         "limit": {"requests": 100, "period": "1m"}}
    ]
}"#;

const RULES: [&str; 3] = ["gcra", "fixed", "sliding"];

fn policy() -> Policy {
    Policy::from_json(CONFIG.as_bytes()).expect("a valid configuration")
}

fn acquire(rule: &str, key: &[u8], min: u64, want: u64) -> LeaseAcquire {
    let policy = policy();
    let limit = policy.rule(rule).expect("a rule").limit();
    LeaseAcquire::new(rule, &limit, key, min, want)
}

fn give_back(rule: &str, key: &[u8], units: u64, granted_at: u64) -> LeaseReturn {
    let policy = policy();
    let limit = policy.rule(rule).expect("a rule").limit();
    LeaseReturn::new(rule, &limit, key, units, granted_at)
}

async fn lease(
    client: &common::HttpClient,
    base: &str,
    request: &LeaseRequest,
) -> (u16, Option<LeaseReply>, serde_json::Value) {
    let (status, json) = common::post(client, &format!("{base}/v1/lease"), request.to_json()).await;
    let reply = (status == 200).then(|| {
        LeaseReply::parse(json.to_string().as_bytes(), request)
            .unwrap_or_else(|e| panic!("the reply answers the request: {e}: {json}"))
    });
    (status, reply, json)
}

#[tokio::test]
async fn concurrent_acquisitions_never_grant_more_than_the_limit_in_a_period() {
    let redis = RedisServer::start().expect("a test Redis");
    let clock = common::clock();
    // Two replicas of the service on one Redis, 16 clients each asking for slices of 7.
    let first = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let second = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let bases = [first.http(), second.http()];
    for rule in RULES {
        for period in 0..2u64 {
            clock.set(common::EPOCH_NS + period * 60 * SECOND);
            let mut clients = Vec::new();
            for client_index in 0..16 {
                let base = bases[client_index % 2].clone();
                clients.push(tokio::spawn(async move {
                    let client = common::client();
                    let request =
                        LeaseRequest::new("api", vec![acquire(rule, b"hot", 1, 7)], vec![]);
                    let mut granted = 0;
                    let mut denials = 0;
                    // Ask until denied twice: the key is then spent.
                    while denials < 2 {
                        let (status, reply, json) = lease(&client, &base, &request).await;
                        assert_eq!(status, 200, "{json}");
                        let grant = reply.expect("a reply").acquired[0];
                        match grant.outcome.status {
                            Status::Allowed => granted += grant.granted,
                            Status::Denied => {
                                assert!(grant.outcome.retry_after_ns > 0);
                                denials += 1;
                            }
                            other => panic!("{rule}: unexpected {other:?}: {json}"),
                        }
                    }
                    granted
                }));
            }
            let mut total = 0;
            for client in clients {
                total += client.await.expect("a client task");
            }
            // Exactly the limit: every unit granted once, none twice. (The sliding window's
            // second period still weighs the first one's 100 units at its very start.)
            let expected = if rule == "sliding" && period == 1 {
                0
            } else {
                100
            };
            assert_eq!(total, expected, "{rule}, period {period}");
        }
    }
    let metrics = first.decider.metrics().render();
    assert!(
        metrics.contains(
            "sluice_service_leases_total{domain=\"api\",rule=\"gcra\",result=\"granted\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "sluice_service_lease_units_total{domain=\"api\",rule=\"fixed\",kind=\"granted\"}"
        ),
        "{metrics}"
    );
    first.running.shutdown().await;
    second.running.shutdown().await;
}

#[tokio::test]
async fn returns_restore_units_but_not_for_a_window_that_has_ended() {
    let redis = RedisServer::start().expect("a test Redis");
    let clock = common::clock();
    let service = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let client = common::client();
    let base = service.http();
    for rule in RULES {
        let key = format!("returns-{rule}");
        let key = key.as_bytes();
        clock.set(common::EPOCH_NS);
        // Take everything: 100 units in slices of up to 60.
        let take = LeaseRequest::new("api", vec![acquire(rule, key, 1, 60); 2], vec![]);
        let (_, reply, _) = lease(&client, &base, &take).await;
        let reply = reply.expect("a reply");
        assert_eq!(reply.acquired[0].granted, 60, "{rule}");
        assert_eq!(reply.acquired[1].granted, 40, "{rule}");
        let granted_at = reply.acquired[0].granted_at_ns;
        assert_eq!(granted_at, common::EPOCH_NS);

        // 25 unspent come back a second later, and can be granted again in the same call.
        clock.advance(SECOND);
        let back = LeaseRequest::new(
            "api",
            vec![acquire(rule, key, 1, 60)],
            vec![give_back(rule, key, 25, granted_at)],
        );
        let (_, reply, json) = lease(&client, &base, &back).await;
        let reply = reply.expect("a reply");
        // GCRA refills one unit per 600 ms meanwhile: a second later 1 more unit is there.
        let refilled = if rule == "gcra" { 1 } else { 0 };
        assert_eq!(reply.returned[0].units, 25, "{rule}: {json}");
        assert_eq!(reply.acquired[0].granted, 25 + refilled, "{rule}: {json}");

        // Spend it all again, then return a slice two windows later: nothing comes back.
        let again = reply.acquired[0];
        clock.advance(121 * SECOND);
        let late = LeaseRequest::new(
            "api",
            vec![],
            vec![give_back(rule, key, again.granted, again.granted_at_ns)],
        );
        let (_, reply, json) = lease(&client, &base, &late).await;
        assert_eq!(
            reply.expect("a reply").returned[0].units,
            0,
            "{rule}: {json}"
        );
    }
    let metrics = service.decider.metrics().render();
    assert!(
        metrics.contains(
            "sluice_service_lease_units_total{domain=\"api\",rule=\"sliding\",kind=\"returned\"} 25"
        ),
        "{metrics}"
    );
    service.running.shutdown().await;
}

#[tokio::test]
async fn drift_unleased_rules_and_bad_bodies_are_refused_with_the_field_named() {
    let redis = RedisServer::start().expect("a test Redis");
    let service = common::start_on_redis(&redis, common::clock(), &[CONFIG]).await;
    let client = common::client();
    let base = service.http();
    let drifted = Policy::from_json(
        CONFIG
            .replacen("\"requests\": 100", "\"requests\": 200", 1)
            .as_bytes(),
    )
    .expect("valid");
    let limit = drifted.rule("gcra").expect("a rule").limit();
    let cases: [(LeaseRequest, u16, &str); 4] = [
        (
            LeaseRequest::new(
                "api",
                vec![LeaseAcquire::new("gcra", &limit, b"k", 1, 5)],
                vec![],
            ),
            409,
            "acquire[0].limit",
        ),
        (
            LeaseRequest::new(
                "api",
                vec![],
                vec![LeaseReturn::new("gcra", &limit, b"k", 1, 1)],
            ),
            409,
            "return[0].limit",
        ),
        (
            LeaseRequest::new("api", vec![acquire("unleased", b"k", 1, 5)], vec![]),
            409,
            "acquire[0].rule: rule \"unleased\" has no lease",
        ),
        (
            LeaseRequest::new("elsewhere", vec![acquire("gcra", b"k", 1, 5)], vec![]),
            404,
            "unknown domain",
        ),
    ];
    for (request, status, mentions) in cases {
        let (got, _, json) = lease(&client, &base, &request).await;
        assert_eq!(got, status, "{json}");
        assert!(
            json["error"].as_str().is_some_and(|e| e.contains(mentions)),
            "expected the error to mention {mentions:?}: {json}"
        );
    }
    let url = format!("{base}/v1/lease");
    for (body, status, mentions) in [
        ("not json", 400, "not a lease request"),
        (
            r#"{"domain":"api","acquire":[{"rule":"gcra","key":"6b","limit":"gcra:100/60000000000/100","min":0,"want":1}]}"#,
            400,
            "acquire[0].min",
        ),
        (
            r#"{"domain":"api","acquire":[{"rule":"gcra","key":"zz","limit":"gcra:100/60000000000/100","min":1,"want":1}]}"#,
            400,
            "acquire[0].key",
        ),
    ] {
        let (got, json) = common::post(&client, &url, body).await;
        assert_eq!(got, status, "{body}: {json}");
        assert!(
            json["error"].as_str().is_some_and(|e| e.contains(mentions)),
            "{body}: expected the error to mention {mentions:?}: {json}"
        );
    }
    let (status, _) = common::send(&client, "POST", &url, vec![b' '; 70 * 1024]).await;
    assert_eq!(status, 413);
    let (status, _) = common::send(&client, "GET", &url, "").await;
    assert_eq!(status, 405);
    service.running.shutdown().await;
}

#[test]
fn a_leased_sliding_log_is_refused_when_the_configuration_is_loaded() {
    let dir = std::env::temp_dir().join(format!("sluice-leases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let file = dir.join("log.json");
    std::fs::write(
        &file,
        r#"{"global": {"cluster": "sluice_service"}, "rules": [
            {"name": "logins", "scope": "global", "key": ["client_ip"], "algorithm": "sliding_log",
             "limit": {"requests": 5, "period": "1m"}, "lease": {"size": 2}}]}"#,
    )
    .expect("the file is written");
    let error = Domains::load(&[&file]).expect_err("the configuration is refused");
    assert!(matches!(error, DomainsError::Invalid { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("rule \"logins\" (rules[0]): lease: sliding_log cannot be leased"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn counts_survive_a_restart_of_the_service() {
    let redis = RedisServer::start().expect("a test Redis");
    let clock = common::clock();
    let client = common::client();
    let take = |want| LeaseRequest::new("api", vec![acquire("fixed", b"restart", 1, want)], vec![]);

    let before = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let (_, reply, _) = lease(&client, &before.http(), &take(70)).await;
    assert_eq!(reply.expect("a reply").acquired[0].granted, 70);
    before.running.shutdown().await;

    // A new process (new store, empty cache) on the same Redis: 30 are left.
    let after = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let (_, reply, json) = lease(&client, &after.http(), &take(70)).await;
    let grant = reply.expect("a reply").acquired[0];
    assert_eq!(grant.granted, 30, "{json}");
    assert_eq!(grant.outcome.remaining, 0);
    let (_, reply, _) = lease(&client, &after.http(), &take(70)).await;
    assert_eq!(
        reply.expect("a reply").acquired[0].outcome.status,
        Status::Denied
    );
    after.running.shutdown().await;
}

#[tokio::test]
async fn a_lease_and_a_decision_share_one_count() {
    let redis = RedisServer::start().expect("a test Redis");
    let service = common::start_on_redis(&redis, common::clock(), &[CONFIG]).await;
    let client = common::client();
    let base = service.http();
    let (_, reply, _) = lease(
        &client,
        &base,
        &LeaseRequest::new("api", vec![acquire("sliding", b"shared", 1, 98)], vec![]),
    )
    .await;
    assert_eq!(reply.expect("a reply").acquired[0].granted, 98);
    // Decisions on the same rule and key see the 98 units: two more pass, then none.
    let policy = policy();
    let check = policy
        .rule("sliding")
        .expect("a rule")
        .check(b"shared".to_vec(), 1);
    let body = sluice_policy::global::DecideRequest::new("api", [&check]).to_json();
    let mut allowed = 0;
    for _ in 0..4 {
        let (_, json) = common::post(&client, &format!("{base}/v1/decide"), body.clone()).await;
        if json["allowed"] == true {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 2);
    service.running.shutdown().await;
}

/// The store's round trips so far, from the metrics.
fn round_trips(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("sluice_service_store_round_trips_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no round-trip counter in {metrics}"))
}

#[tokio::test]
async fn an_acquisition_or_a_return_on_a_warm_key_is_one_round_trip() {
    let redis = RedisServer::start().expect("a test Redis");
    let clock = common::clock();
    let service = common::start_on_redis(&redis, clock.clone(), &[CONFIG]).await;
    let client = common::client();
    let base = service.http();
    for rule in RULES {
        let key = format!("warm-{rule}");
        let before = round_trips(&service.decider.metrics().render());
        let mut calls = 0;
        for _ in 0..10 {
            clock.advance(1_000_000);
            let request =
                LeaseRequest::new("api", vec![acquire(rule, key.as_bytes(), 1, 5)], vec![]);
            let (_, reply, _) = lease(&client, &base, &request).await;
            let grant = reply.expect("a reply").acquired[0];
            let back = LeaseRequest::new(
                "api",
                vec![],
                vec![give_back(rule, key.as_bytes(), 2, grant.granted_at_ns)],
            );
            lease(&client, &base, &back).await;
            calls += 2;
        }
        let after = round_trips(&service.decider.metrics().render());
        assert_eq!(after - before, calls, "{rule}");
    }
    service.running.shutdown().await;
}
