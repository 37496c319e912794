//! Tiers, overrides, JWT claims and attribute conditions at the configuration level: every
//! mistake is named by rule and field; every tier and override is a table of its own that
//! counts against the memory ceiling; the rate-limit service rebuilds a tier's or an
//! override's check from its name. Request-level behaviour is in the shared vectors.

use sluice_policy::global::DecideRequest;
use sluice_policy::{LimitKind, MAX_RULE_STORE_BYTES, OwnedRequest, Policy};

fn rule_error(rule: &str) -> String {
    let config = format!(r#"{{"rules": [{rule}]}}"#);
    match Policy::from_json(config.as_bytes()) {
        Ok(_) => panic!("accepted: {rule}"),
        Err(e) => e.to_string(),
    }
}

fn request(headers: &[(&str, &str)], peer: &str) -> OwnedRequest {
    OwnedRequest {
        method: b"GET".to_vec(),
        path: b"/".to_vec(),
        authority: b"api.example.com".to_vec(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect(),
        peer: Some(peer.to_string()),
    }
}

const TIERED: &str = r#"{"name": "per-plan", "key": [{"header": "x-api-key"}],
    "tier": {"from": {"header": "x-plan"},
             "limits": {"free": {"requests": 100, "period": "1m"},
                        "pro": {"requests": 10000, "period": "1m", "max_keys": 1024}},
             "default": "free"},
    "overrides": {"acme": {"key": "partner", "requests": 5, "period": "1s"}}}"#;

#[test]
fn mistakes_in_tiers_overrides_claims_and_conditions_name_the_rule_and_field() {
    let cases = [
        (
            r#"{"name": "r", "key": ["path"], "limit": {"requests": 1, "period": "1m"},
                "tier": {"from": {"header": "p"}, "limits": {"a": {"requests": 1, "period": "1m"}}, "default": "a"}}"#,
            "rule \"r\" (rules[0]): limit: a rule has either \"limit\" or \"tier\"",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": {"body": "p"}, "limits": {"a": {"requests": 1, "period": "1m"}}, "default": "a"}}"#,
            "rule \"r\" (rules[0]): tier.from: not a tier source",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": {"header": "p"}, "limits": {"a": {"requests": 1, "period": "5x"}}, "default": "a"}}"#,
            "rule \"r\" (rules[0]): tier.limits.a.period: \"5x\" is not a duration",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": {"header": "p"}, "limits": {"a": {"requests": 1, "period": "1m"}}, "default": "b"}}"#,
            "rule \"r\" (rules[0]): tier.default: \"b\" is not a tier; use \"deny\", \"exempt\" or one of the tiers: \"a\"",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": {"header": "p"}, "limits": {"deny": {"requests": 1, "period": "1m"}}, "default": "deny"}}"#,
            "rule \"r\" (rules[0]): tier.limits.deny: \"deny\" is not a valid tier name",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": {"header": "p"}, "limits": {"a": {"requests": 1, "period": "1m"}, "b": {"requests": 2, "period": "1m", "values": ["a"]}}, "default": "a"}}"#,
            "rule \"r\" (rules[0]): tier.limits.b.values[0]: \"a\" already selects tier \"a\"",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": "client_ip", "limits": {"a": {"requests": 1, "period": "1m", "cidrs": ["10.0.0.1/8"]}}, "default": "a"}}"#,
            "rule \"r\" (rules[0]): tier.limits.a.cidrs[0]: \"10.0.0.1/8\" has bits set after its prefix",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": "client_ip", "limits": {"a": {"requests": 1, "period": "1m", "values": ["x"]}}, "default": "a"}}"#,
            "rule \"r\" (rules[0]): tier.limits.a.values: tiers from client_ip are selected by \"cidrs\"",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": "client_ip", "limits": {"a": {"requests": 1, "period": "1m", "cidrs": ["10.0.0.0/33"]}}, "default": "a"}}"#,
            "rule \"r\" (rules[0]): tier.limits.a.cidrs[0]: \"10.0.0.0/33\" is not a network",
        ),
        (
            r#"{"name": "r", "key": ["client_ip"], "limit": {"requests": 1, "period": "1m"}, "overrides": {"a": {"key": "x", "requests": 1, "period": "1m"}}}"#,
            "rule \"r\" (rules[0]): overrides: overrides match the key's values, and key[0] is a client_ip part",
        ),
        (
            r#"{"name": "r", "key": ["path", "method"], "limit": {"requests": 1, "period": "1m"}, "overrides": {"a": {"key": "x", "requests": 1, "period": "1m"}}}"#,
            "rule \"r\" (rules[0]): overrides.a.key: 1 values for a key of 2 parts",
        ),
        (
            r#"{"name": "r", "key": ["path"], "limit": {"requests": 1, "period": "1m"}, "overrides": {"a": {"key_sha256": "abc", "requests": 1, "period": "1m"}}}"#,
            "rule \"r\" (rules[0]): overrides.a.key_sha256: not a SHA-256 digest",
        ),
        (
            r#"{"name": "r", "key": ["path"], "limit": {"requests": 1, "period": "1m"}, "overrides": {"a": {"key": "/x", "requests": 1, "period": "1m"}, "b": {"key": "/x", "requests": 2, "period": "1m"}}}"#,
            "rule \"r\" (rules[0]): overrides.b.key: another override has this key already",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": {"header": "p"}, "limits": {"a": {"requests": 1, "period": "1m"}}, "default": "a"}, "overrides": {"a": {"key": "/x", "requests": 1, "period": "1m"}}}"#,
            "rule \"r\" (rules[0]): overrides.a: \"a\" is not a valid override name",
        ),
        (
            r#"{"name": "r", "key": [{"claim": "sub"}], "limit": {"requests": 1, "period": "1m"}}"#,
            "rule \"r\" (rules[0]): key[0]: reads a JWT claim, but the configuration has no \"jwt\" section",
        ),
        (
            r#"{"name": "r", "key": ["path"], "match": {"claims": {"role": {"present": true}}}, "limit": {"requests": 1, "period": "1m"}}"#,
            "rule \"r\" (rules[0]): match.claims: reads a JWT claim",
        ),
        (
            r#"{"name": "r", "key": ["path"], "match": {"headers": {"x": {"present": true, "prefix": "a"}}}, "limit": {"requests": 1, "period": "1m"}}"#,
            "rule \"r\" (rules[0]): match.headers.x: a condition is one of",
        ),
        (
            r#"{"name": "r", "key": ["path"], "match": {"query": {"q": {"one_of": []}}}, "limit": {"requests": 1, "period": "1m"}}"#,
            "rule \"r\" (rules[0]): match.query.q.one_of: must not be empty",
        ),
        (
            r#"{"name": "r", "key": ["path"], "tier": {"from": {"header": "p"}, "limits": {"a": {"requests": 10, "period": "1m"}, "b": {"requests": 2, "period": "1m"}}, "default": "a"}, "cost": 3}"#,
            "rule \"r\" (rules[0]): cost: 3 is more than the rule admits at once (2, from tier.limits.b.requests)",
        ),
    ];
    for (rule, expected) in cases {
        let message = rule_error(rule);
        assert!(
            message.starts_with(expected),
            "{rule}\n  got: {message}\n want: {expected}"
        );
    }
}

#[test]
fn every_tier_and_override_is_a_table_of_its_own_within_the_ceiling() {
    let config = format!(r#"{{"store": {{"max_keys": 4096}}, "rules": [{TIERED}]}}"#);
    let policy = Policy::from_json(config.as_bytes()).unwrap();
    let rule = &policy.rules()[0];
    let names: Vec<_> = policy
        .table_specs()
        .iter()
        .map(|t| (t.rule, t.max_keys))
        .collect();
    assert_eq!(
        names,
        [
            ("per-plan:free", 4096),
            ("per-plan:pro", 1024),
            ("per-plan:acme", 1)
        ]
    );
    let each: u64 = rule
        .limits()
        .iter()
        .map(|l| sluice_core::RuleTable::new(l.name(), l.limit(), l.max_keys()).max_store_bytes())
        .sum();
    assert_eq!(rule.max_store_bytes(), each);
    // The rule's limit is the default tier's.
    assert_eq!(rule.limit().quota.limit(), 100);

    // One tier over the ceiling is refused, with the tier's field named.
    let err = rule_error(
        r#"{"name": "log", "key": ["path"], "algorithm": "sliding_log",
            "tier": {"from": {"header": "p"},
                     "limits": {"small": {"requests": 10, "period": "1m"},
                                "big": {"requests": 1000, "period": "1m", "max_keys": 1000000}},
                     "default": "small"}}"#,
    );
    assert!(
        err.starts_with("rule \"log\" (rules[0]): tier.limits.big.max_keys: the rule's counters"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{} allowed per rule", "1.0 GiB")),
        "{err}"
    );
    let _ = MAX_RULE_STORE_BYTES;
}

#[test]
fn the_default_deny_is_a_limit_no_request_fits_and_has_no_table() {
    let policy = Policy::from_json(
        br#"{"rules": [{"name": "r", "key": ["client_ip"],
             "tier": {"from": {"header": "x-plan"},
                      "limits": {"a": {"requests": 5, "period": "1m"}, "b": {"requests": 5, "period": "1h"}},
                      "default": "deny"}}]}"#,
    )
    .unwrap();
    let rule = &policy.rules()[0];
    let deny = rule
        .limits()
        .iter()
        .find(|l| l.kind() == LimitKind::Deny)
        .unwrap();
    assert_eq!(deny.name(), "r:deny");
    assert_eq!(deny.limit().quota.period(), 3_600_000_000_000);
    assert!(policy.table_specs().iter().all(|t| t.rule != "r:deny"));
    let evaluation = policy.evaluate(&request(&[("x-plan", "c")], "203.0.113.7:1"));
    let check = &evaluation.checks()[0];
    assert_eq!(check.rule, "r:deny");
    assert!(check.cost > check.limit.capacity());
}

#[test]
fn the_service_rebuilds_tier_and_override_checks_from_their_names() {
    let config = format!(r#"{{"global": {{"cluster": "svc"}}, "rules": [{TIERED}]}}"#);
    let policy = Policy::from_json(config.as_bytes()).unwrap();
    for (plan, api_key, name) in [
        ("pro", "k1", "per-plan:pro"),
        ("other", "k1", "per-plan:free"),
        ("pro", "partner", "per-plan:acme"),
    ] {
        let evaluation = policy.evaluate(&request(
            &[("x-plan", plan), ("x-api-key", api_key)],
            "203.0.113.7:1",
        ));
        let checks = evaluation.checks();
        assert_eq!(checks[0].rule, name);
        let body = DecideRequest::new(policy.domain(), checks).to_json();
        let sent: DecideRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(sent.checks(&policy).unwrap(), checks, "{name}");
    }
    // A name the rule does not have, or another limit under a tier's name, is refused.
    let evaluation = policy.evaluate(&request(&[("x-plan", "pro")], "203.0.113.7:1"));
    let mut sent: DecideRequest =
        serde_json::from_slice(&DecideRequest::new(policy.domain(), evaluation.checks()).to_json())
            .unwrap();
    sent.checks[0].rule = "per-plan:gold".into();
    assert!(sent.checks(&policy).is_err());
    sent.checks[0].rule = "per-plan:free".into();
    assert!(
        sent.checks(&policy)
            .unwrap_err()
            .to_string()
            .contains("limit")
    );
}
