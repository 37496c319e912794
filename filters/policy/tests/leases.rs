//! A global rule's `lease`: its configuration and errors (each naming the rule and the field),
//! the lease protocol's JSON both ways and its checks on each side, and the in-memory
//! service's answers (grants bounded by the limit, returns restoring units).

use serde_json::{Value, json};
use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC};
use sluice_core::{Algorithm, Limit, Quota, Status};
use sluice_policy::Policy;
use sluice_policy::global::{
    LeaseAcquire, LeaseReply, LeaseRequest, LeaseReturn, LeaseSize, MAX_LEASE_ITEMS, MemoryService,
};

/// 2026-01-01T00:00:00Z: aligned to a minute.
const BASE: u64 = 1_767_225_600 * NANOS_PER_SEC;

fn config(rule_extra: Value) -> Value {
    let mut rule = json!({"name": "per-client", "scope": "global", "key": ["client_ip"],
                          "limit": {"requests": 100, "period": "1m"}});
    for (k, v) in rule_extra.as_object().unwrap() {
        rule.as_object_mut().unwrap().insert(k.clone(), v.clone());
    }
    json!({"global": {"cluster": "limits"}, "rules": [rule]})
}

fn compile(config: &Value) -> Result<Policy, String> {
    Policy::from_json(config.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn error(rule_extra: Value) -> String {
    compile(&config(rule_extra)).expect_err("the configuration should be rejected")
}

#[test]
fn a_lease_has_defaults_and_its_bound() {
    let policy = compile(&config(json!({"lease": {"size": 50}}))).unwrap();
    let lease = policy.rules()[0].lease().unwrap();
    assert_eq!(lease.size(), LeaseSize::Fixed(50));
    assert_eq!(lease.lifetime(), NANOS_PER_SEC);
    assert_eq!(lease.renew_at_percent(), 20);
    assert_eq!(lease.bound(3), 150);

    let policy = compile(&config(json!({"lease": {"size": "auto", "max": 30,
                                                  "lifetime": "250ms", "renew_at": 50}})))
    .unwrap();
    let lease = policy.rules()[0].lease().unwrap();
    assert_eq!(lease.size(), LeaseSize::Auto { max: 30 });
    assert_eq!(lease.lifetime(), 250 * NANOS_PER_MILLI);
    assert_eq!(lease.renew_at_percent(), 50);
    assert_eq!(lease.bound(2), 60);

    // No lease: none.
    assert!(
        compile(&config(json!({}))).unwrap().rules()[0]
            .lease()
            .is_none()
    );
    // A period shorter than a second: the default lifetime is the period.
    let short = compile(&config(
        json!({"limit": {"requests": 10, "period": "500ms"},
                                      "lease": {"size": 2}}),
    ))
    .unwrap();
    assert_eq!(
        short.rules()[0].lease().unwrap().lifetime(),
        500 * NANOS_PER_MILLI
    );
}

#[test]
fn lease_errors_name_the_rule_and_the_field() {
    let cases: [(Value, &str); 13] = [
        (
            json!({"scope": "local", "lease": {"size": 5}}),
            "rule \"per-client\" (rules[0]): lease: a lease is a slice of a global count; it \
             needs \"scope\": \"global\"",
        ),
        (
            json!({"algorithm": "sliding_log", "lease": {"size": 5}}),
            "rule \"per-client\" (rules[0]): lease: sliding_log cannot be leased",
        ),
        (
            json!({"lease": {}}),
            "rule \"per-client\" (rules[0]): lease.size: required, e.g. \"size\": 50",
        ),
        (
            json!({"lease": {"size": 0}}),
            "rule \"per-client\" (rules[0]): lease.size: 0 is out of range; use 1 to 100",
        ),
        (
            json!({"lease": {"size": 101}}),
            "rule \"per-client\" (rules[0]): lease.size: 101 is out of range; use 1 to 100",
        ),
        (
            json!({"limit": {"requests": 100, "period": "1m", "burst": 10},
                   "lease": {"size": 11}}),
            "rule \"per-client\" (rules[0]): lease.size: 11 is out of range; use 1 to 10",
        ),
        (
            json!({"lease": {"size": "big"}}),
            "rule \"per-client\" (rules[0]): lease.size: \"big\" is not one of auto or a whole number",
        ),
        (
            json!({"lease": {"size": true}}),
            "rule \"per-client\" (rules[0]): lease.size: expected a whole number or \"auto\", \
             found a boolean",
        ),
        (
            json!({"lease": {"size": "auto"}}),
            "rule \"per-client\" (rules[0]): lease.max: required, e.g. \"max\": 100",
        ),
        (
            json!({"lease": {"size": 5, "max": 10}}),
            "rule \"per-client\" (rules[0]): lease.max: max only goes with \"size\": \"auto\"",
        ),
        (
            json!({"lease": {"size": 5, "lifetime": "2m"}}),
            "rule \"per-client\" (rules[0]): lease.lifetime: \"2m\" is out of range; use 10ms \
             up to the rule's period (1m)",
        ),
        (
            json!({"lease": {"size": 5, "renew_at": 95}}),
            "rule \"per-client\" (rules[0]): lease.renew_at: 95 is out of range; use 0 to 90",
        ),
        (
            json!({"lease": {"size": 5, "ttl": "1s"}}),
            "rule \"per-client\" (rules[0]): lease.ttl: unknown field \"ttl\"",
        ),
    ];
    for (extra, expected) in cases {
        let message = error(extra.clone());
        assert!(
            message.starts_with(expected),
            "for {extra}:\n  got      {message}\n  expected {expected}..."
        );
    }
    assert!(error(json!({"lease": {"size": 5, "lifetime": "5ms"}})).contains("use 10ms"));
    let short = error(json!({"limit": {"requests": 1, "period": "5ms"}, "lease": {"size": 1}}));
    assert!(
        short.starts_with(
            "rule \"per-client\" (rules[0]): lease: the rule's period (5ms) is shorter than \
             the shortest lease lifetime of 10ms"
        ),
        "{short}"
    );
}

#[test]
fn the_edge_view_allows_a_lease_on_any_leasable_rule() {
    let config = json!({"rules": [{"name": "per-client", "key": ["client_ip"],
                        "limit": {"requests": 100, "period": "1m"}, "lease": {"size": 10}}]});
    let bytes = config.to_string();
    assert!(Policy::from_json(bytes.as_bytes()).is_err());
    let edge = Policy::from_json_edge(bytes.as_bytes()).unwrap();
    assert_eq!(
        edge.rules()[0].lease().unwrap().size(),
        LeaseSize::Fixed(10)
    );
    // The algorithm is checked there too.
    let log = json!({"rules": [{"name": "per-client", "key": ["client_ip"], "algorithm": "sliding_log",
                     "limit": {"requests": 100, "period": "1m"}, "lease": {"size": 10}}]});
    let message = Policy::from_json_edge(log.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("lease: sliding_log cannot be leased"),
        "{message}"
    );
}

fn gcra(requests: u64) -> Limit {
    Limit::new(
        Algorithm::Gcra,
        Quota::new(requests, 60 * NANOS_PER_SEC, requests).unwrap(),
    )
}

#[test]
fn lease_requests_and_replies_round_trip_and_bad_ones_are_refused() {
    let limit = gcra(100);
    let request = LeaseRequest::new(
        "sluice",
        vec![LeaseAcquire::new("per-client", &limit, b"k", 2, 50)],
        vec![LeaseReturn::new("per-client", &limit, b"k", 3, BASE)],
    );
    let parsed = LeaseRequest::from_json(&request.to_json()).unwrap();
    assert_eq!(parsed, request);
    // Both lists are optional.
    let only_domain = LeaseRequest::from_json(br#"{"domain": "sluice"}"#).unwrap();
    assert_eq!(only_domain.items(), 0);

    let bad: [(&[u8], u16, &str); 6] = [
        (b"{", 400, "not a lease request"),
        (
            br#"{"domain": "sluice", "acquire": [{"rule": "r", "key": "6b", "limit": "x", "min": 0, "want": 1}]}"#,
            400,
            "acquire[0].min: must be at least 1",
        ),
        (
            br#"{"domain": "sluice", "acquire": [{"rule": "r", "key": "6b", "limit": "x", "min": 3, "want": 2}]}"#,
            400,
            "acquire[0].want: must be at least min",
        ),
        (
            br#"{"domain": "sluice", "return": [{"rule": "r", "key": "6b", "limit": "x", "units": 0, "granted_at_ns": 1}]}"#,
            400,
            "return[0].units: must be at least 1",
        ),
        (
            br#"{"domain": "sluice", "acquire": [{"rule": "r", "key": "6b", "limit": "x", "min": -1, "want": 2}]}"#,
            400,
            "not a lease request",
        ),
        (&[b' '; 70_000], 413, "more than the 65536 allowed"),
    ];
    for (body, status, message) in bad {
        let error = LeaseRequest::from_json(body).unwrap_err();
        assert_eq!(error.http_status(), status, "{error}");
        assert!(error.to_string().contains(message), "{error}");
    }
    let too_many = LeaseRequest::new(
        "sluice",
        vec![LeaseAcquire::new("per-client", &limit, b"k", 1, 1); MAX_LEASE_ITEMS],
        vec![LeaseReturn::new("per-client", &limit, b"k", 1, BASE)],
    );
    let error = LeaseRequest::from_json(&too_many.to_json()).unwrap_err();
    assert_eq!(error.http_status(), 400);
    assert!(error.to_string().contains("65 items, more than the 64"));
}

#[test]
fn a_reply_that_does_not_answer_the_request_is_an_error() {
    let limit = gcra(100);
    let request = LeaseRequest::new(
        "sluice",
        vec![LeaseAcquire::new("per-client", &limit, b"k", 2, 50)],
        vec![LeaseReturn::new("per-client", &limit, b"k", 3, BASE)],
    );
    let outcome = |status: &str| {
        json!({"status": status, "limit": 100, "remaining": 0, "reset_after_ns": 1,
               "retry_after_ns": 1})
    };
    let reply = |granted: u64, status: &str, returned: Value| {
        json!({"acquired": [{"granted": granted, "granted_at_ns": BASE, "outcome": outcome(status)}],
               "returned": returned})
        .to_string()
    };
    let good = reply(50, "allowed", json!([{"units": 3}]));
    assert_eq!(
        LeaseReply::parse(good.as_bytes(), &request)
            .unwrap()
            .acquired[0]
            .granted,
        50
    );
    let denied = reply(0, "denied", json!([{"units": 0}]));
    let parsed = LeaseReply::parse(denied.as_bytes(), &request).unwrap();
    assert_eq!(parsed.acquired[0].outcome.status, Status::Denied);
    for (body, message) in [
        (reply(51, "allowed", json!([{"units": 3}])), "acquired[0]"),
        (reply(1, "allowed", json!([{"units": 3}])), "acquired[0]"),
        (reply(5, "denied", json!([{"units": 3}])), "acquired[0]"),
        (
            reply(5, "failed_open", json!([{"units": 3}])),
            "acquired[0]",
        ),
        (reply(50, "allowed", json!([{"units": 4}])), "returned[0]"),
        (
            reply(50, "allowed", json!([])),
            "0 entries in returned for 1",
        ),
        (
            String::from(r#"{"acquired": [], "returned": []}"#),
            "0 entries in acquired for 1",
        ),
        (String::from("\"nope\""), "not a lease reply"),
    ] {
        let error = LeaseReply::parse(body.as_bytes(), &request).unwrap_err();
        assert!(error.to_string().contains(message), "{error} for {body}");
    }
}

fn service(algorithm: &str, requests: u64) -> MemoryService {
    let config = json!({"global": {"cluster": "limits"}, "rules": [
        {"name": "r", "scope": "global", "key": ["client_ip"], "algorithm": algorithm,
         "limit": {"requests": requests, "period": "1m"}, "lease": {"size": 10}},
        {"name": "plain", "scope": "global", "key": ["client_ip"],
         "limit": {"requests": requests, "period": "1m"}}]});
    MemoryService::new(compile(&config).unwrap())
}

fn limit_of(service_algorithm: &str, requests: u64) -> Limit {
    let algorithm = match service_algorithm {
        "gcra" => Algorithm::Gcra,
        "fixed_window" => Algorithm::FixedWindow,
        _ => Algorithm::SlidingWindow,
    };
    Limit::new(
        algorithm,
        Quota::new(requests, 60 * NANOS_PER_SEC, requests).unwrap(),
    )
}

fn lease(service: &mut MemoryService, request: &LeaseRequest, now: u64) -> LeaseReply {
    let (status, body) = service.lease(&request.to_json(), now);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    LeaseReply::parse(&body, request).unwrap()
}

#[test]
fn the_memory_service_grants_no_more_than_the_limit_and_takes_returns_back() {
    for algorithm in ["gcra", "fixed_window", "sliding_window"] {
        let limit = limit_of(algorithm, 25);
        let mut service = service(algorithm, 25);
        let acquire = LeaseRequest::new(
            "sluice",
            vec![LeaseAcquire::new("r", &limit, b"k", 1, 10); 3],
            vec![],
        );
        // Three slices of 10 from 25: 10, 10 and the 5 left.
        let reply = lease(&mut service, &acquire, BASE);
        let granted: Vec<u64> = reply.acquired.iter().map(|g| g.granted).collect();
        assert_eq!(granted, [10, 10, 5], "{algorithm}");
        assert_eq!(reply.acquired[2].outcome.remaining, 0, "{algorithm}");
        assert!(reply.acquired.iter().all(|g| g.granted_at_ns == BASE));
        // Nothing more.
        let reply = lease(&mut service, &acquire, BASE + NANOS_PER_SEC);
        assert!(
            reply
                .acquired
                .iter()
                .all(|g| g.granted == 0 && g.outcome.status == Status::Denied),
            "{algorithm}"
        );
        assert!(reply.acquired[0].outcome.retry_after_ns > 0);

        // 4 unspent units come back; a slice of up to 10 then gets exactly those 4.
        let give_back = LeaseRequest::new(
            "sluice",
            vec![LeaseAcquire::new("r", &limit, b"k", 1, 10)],
            vec![LeaseReturn::new("r", &limit, b"k", 4, BASE)],
        );
        let reply = lease(&mut service, &give_back, BASE + 2 * NANOS_PER_SEC);
        assert_eq!(reply.returned[0].units, 4, "{algorithm}");
        assert_eq!(reply.acquired[0].granted, 4, "{algorithm}");
    }
}

#[test]
fn a_return_after_the_window_ended_restores_nothing() {
    for algorithm in ["fixed_window", "sliding_window"] {
        let limit = limit_of(algorithm, 25);
        let mut service = service(algorithm, 25);
        let acquire = LeaseRequest::new(
            "sluice",
            vec![LeaseAcquire::new("r", &limit, b"k", 1, 10)],
            vec![],
        );
        lease(&mut service, &acquire, BASE);
        // Two windows later (past the sliding window's previous window as well).
        let late = LeaseRequest::new(
            "sluice",
            vec![],
            vec![LeaseReturn::new("r", &limit, b"k", 10, BASE)],
        );
        let reply = lease(&mut service, &late, BASE + 121 * NANOS_PER_SEC);
        assert_eq!(reply.returned[0].units, 0, "{algorithm}");
    }
    // A return for a key the service holds nothing for restores nothing.
    let limit = limit_of("gcra", 25);
    let mut service = service("gcra", 25);
    let unknown = LeaseRequest::new(
        "sluice",
        vec![],
        vec![LeaseReturn::new("r", &limit, b"nobody", 3, BASE)],
    );
    assert_eq!(lease(&mut service, &unknown, BASE).returned[0].units, 0);
}

#[test]
fn the_memory_service_refuses_what_it_cannot_lease_with_the_right_status() {
    let mut service = service("gcra", 25);
    let other = limit_of("gcra", 26);
    let right = limit_of("gcra", 25);
    let cases: [(LeaseRequest, u16, &str); 4] = [
        (
            LeaseRequest::new(
                "sluice",
                vec![LeaseAcquire::new("r", &other, b"k", 1, 5)],
                vec![],
            ),
            409,
            "acquire[0].limit: the proxy has gcra:26/60000000000/26 for rule \"r\", this \
             service gcra:25/60000000000/25",
        ),
        (
            LeaseRequest::new(
                "sluice",
                vec![LeaseAcquire::new("plain", &right, b"k", 1, 5)],
                vec![],
            ),
            409,
            "acquire[0].rule: rule \"plain\" has no lease in this service's configuration",
        ),
        (
            LeaseRequest::new(
                "sluice",
                vec![],
                vec![LeaseReturn::new("nope", &right, b"k", 1, BASE)],
            ),
            404,
            "return[0].rule: the domain's configuration has no rule \"nope\"",
        ),
        (
            LeaseRequest::new(
                "elsewhere",
                vec![LeaseAcquire::new("r", &right, b"k", 1, 5)],
                vec![],
            ),
            404,
            "domain: no configuration has the domain \"elsewhere\"",
        ),
    ];
    for (request, status, message) in cases {
        let (got, body) = service.lease(&request.to_json(), BASE);
        let body = String::from_utf8(body).unwrap();
        assert_eq!(got, status, "{body}");
        assert!(body.contains(&message.replace('"', "\\\"")), "{body}");
    }
    // A return needs only the limit: it gives back what was granted under it.
    let plain_return = LeaseRequest::new(
        "sluice",
        vec![],
        vec![LeaseReturn::new("plain", &right, b"k", 1, BASE)],
    );
    assert_eq!(service.lease(&plain_return.to_json(), BASE).0, 200);
}

#[test]
fn a_shadow_rule_reports_a_denied_lease_as_shadow_denied() {
    let config = json!({"global": {"cluster": "limits"}, "rules": [
        {"name": "r", "scope": "global", "key": ["client_ip"], "mode": "shadow",
         "limit": {"requests": 2, "period": "1m"}, "lease": {"size": 2}}]});
    let mut service = MemoryService::new(compile(&config).unwrap());
    let limit = limit_of("gcra", 2);
    let request = LeaseRequest::new(
        "sluice",
        vec![LeaseAcquire::new("r", &limit, b"k", 1, 2)],
        vec![],
    );
    assert_eq!(lease(&mut service, &request, BASE).acquired[0].granted, 2);
    let reply = lease(&mut service, &request, BASE);
    assert_eq!(reply.acquired[0].granted, 0);
    assert_eq!(reply.acquired[0].outcome.status, Status::ShadowDenied);
}

#[test]
fn a_lease_is_refused_on_a_rule_whose_limit_depends_on_the_caller() {
    let tiered = json!({"global": {"cluster": "limits"}, "rules": [
        {"name": "per-client", "scope": "global", "key": ["client_ip"],
         "tier": {"from": {"header": "x-plan"},
                  "limits": {"free": {"requests": 100, "period": "1m"},
                             "pro": {"requests": 1000, "period": "1m"}},
                  "default": "free"},
         "lease": {"size": 5}}]});
    let message = compile(&tiered).expect_err("a leased tiered rule should be rejected");
    assert!(
        message
            .starts_with("rule \"per-client\" (rules[0]): lease: a lease is a slice of one limit"),
        "{message}"
    );
    let overridden = error(
        json!({"lease": {"size": 5}, "key": [{"header": "x-api-key"}],
        "overrides": {"partner": {"key": "k-1", "requests": 500, "period": "1m"}}}),
    );
    assert!(
        overridden
            .starts_with("rule \"per-client\" (rules[0]): lease: a lease is a slice of one limit"),
        "{overridden}"
    );
}
