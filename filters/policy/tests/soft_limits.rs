//! Soft limits: `"mode": "soft"`, `warn_at` and `response.warning_header`. What is marked, the
//! warning header's value, the metrics hook ([`Handled::marks`]), the log line, and the
//! configuration errors (each naming the rule and the field).

use serde_json::{Value, json};
use sluice_core::memory_store::{MemoryStore, Semantics};
use sluice_core::{Limiter, Mode, Seed};
use sluice_policy::warning::{DEFAULT_WARNING_HEADER, Reason};
use sluice_policy::{OwnedRequest, Policy};

const T0: u64 = 1_767_225_600_000_000_000;

fn policy(config: Value) -> Policy {
    Policy::from_json(config.to_string().as_bytes()).expect("a valid configuration")
}

fn rule_error(rule: Value) -> String {
    Policy::from_json(json!({ "rules": [rule] }).to_string().as_bytes())
        .expect_err("the configuration should be rejected")
        .to_string()
}

fn request() -> OwnedRequest {
    OwnedRequest {
        method: b"GET".to_vec(),
        path: b"/".to_vec(),
        authority: b"api.example.com".to_vec(),
        peer: Some("203.0.113.7:41000".to_owned()),
        headers: Vec::new(),
    }
}

/// What a request got: the warning header's value, the rules that marked it (with why),
/// whether it passed, and its log lines.
type Sent = (Option<String>, Vec<(usize, Reason)>, bool, Vec<String>);

struct Run {
    policy: Policy,
    limiter: Limiter,
    store: MemoryStore,
}

impl Run {
    fn new(config: Value) -> Run {
        let policy = policy(config);
        let limiter = Limiter::new(Seed { k0: 7, k1: 9 }, policy.cas_retries());
        let mut store = MemoryStore::new(Semantics::Envoy);
        for table in policy.table_specs() {
            limiter
                .prepare(table.rule, &table.limit, table.max_keys, &mut store)
                .unwrap();
        }
        Run {
            policy,
            limiter,
            store,
        }
    }

    fn send(&mut self) -> Sent {
        let handled = self
            .policy
            .handle(&request(), T0, &mut self.limiter, &mut self.store);
        let warning = handled.response.warning().map(|w| w.value.clone());
        let marks = handled.marks().collect();
        let notices = handled.notices().map(|n| n.to_string()).collect();
        (warning, marks, !handled.response.is_deny(), notices)
    }
}

#[test]
fn a_soft_rule_passes_over_its_limit_marked_and_counts_only_what_it_admits() {
    let mut run = Run::new(json!({"rules": [
        {"name": "soft", "key": ["client_ip"], "algorithm": "fixed_window",
         "limit": {"requests": 1, "period": "1m"}, "mode": "soft"}
    ]}));
    assert_eq!(run.policy.rules()[0].mode(), Mode::Soft);
    assert!(run.policy.marks_requests());
    assert_eq!(run.send(), (None, vec![], true, vec![]));
    for _ in 0..3 {
        let (warning, marks, passed, notices) = run.send();
        assert!(passed);
        assert_eq!(warning.as_deref(), Some("\"soft\";reason=exceeded;r=0"));
        assert_eq!(marks, vec![(0, Reason::Exceeded)]);
        assert_eq!(
            notices,
            vec![
                "rule \"soft\" (soft) is over its limit for key client_ip=203.0.113.7; retry after 60s; \
                 the request passed, marked"
            ]
        );
    }
}

#[test]
fn warn_at_marks_requests_leaving_at_most_its_remaining_and_never_a_denial() {
    let mut run = Run::new(json!({"rules": [
        {"name": "a", "key": ["client_ip"], "algorithm": "fixed_window",
         "limit": {"requests": 3, "period": "1m"}, "warn_at": {"remaining": 1}},
        {"name": "b", "key": ["client_ip"], "algorithm": "fixed_window",
         "limit": {"requests": 2, "period": "1m"}, "mode": "soft"}
    ]}));
    assert_eq!(run.policy.rules()[0].warn_at(), Some(1));
    assert_eq!(run.send().0, None);
    assert_eq!(
        run.send().0.as_deref(),
        Some("\"a\";reason=low;r=1"),
        "1 left = warn_at"
    );
    let (warning, marks, ..) = run.send();
    assert_eq!(
        warning.as_deref(),
        Some("\"a\";reason=low;r=0, \"b\";reason=exceeded;r=0"),
        "one item per marking rule, in rule order"
    );
    assert_eq!(marks, vec![(0, Reason::Low), (1, Reason::Exceeded)]);
    let (warning, marks, passed, _) = run.send();
    assert_eq!((warning, marks, passed), (None, vec![], false));
}

#[test]
fn shadow_rules_never_mark_and_a_policy_without_soft_limits_marks_nothing() {
    let mut run = Run::new(json!({"rules": [
        {"name": "watch", "key": ["client_ip"], "algorithm": "fixed_window",
         "limit": {"requests": 1, "period": "1m"}, "mode": "shadow"}
    ]}));
    assert!(!run.policy.marks_requests());
    run.send();
    let (warning, marks, passed, _) = run.send();
    assert_eq!((warning, marks, passed), (None, vec![], true));
}

#[test]
fn the_warning_header_has_a_default_and_can_be_renamed() {
    let default = policy(json!({"rules": [
        {"name": "a", "key": ["client_ip"], "limit": {"requests": 3, "period": "1m"}}
    ]}));
    assert_eq!(default.response().warning_header(), DEFAULT_WARNING_HEADER);
    assert_eq!(DEFAULT_WARNING_HEADER, "ratelimit-warning");
    let renamed = policy(
        json!({"response": {"warning_header": "X-Quota-Warning"}, "rules": [
            {"name": "a", "key": ["client_ip"], "limit": {"requests": 3, "period": "1m"}}
        ]}),
    );
    assert_eq!(renamed.response().warning_header(), "x-quota-warning");
}

#[test]
fn bad_soft_limit_settings_name_the_rule_and_the_field() {
    let base = || {
        json!({"name": "per-client", "key": ["client_ip"],
               "limit": {"requests": 10, "period": "1m", "burst": 5}})
    };
    let with = |field: &str, value: Value| {
        let mut rule = base();
        rule.as_object_mut()
            .unwrap()
            .insert(field.to_owned(), value);
        rule
    };
    assert_eq!(
        rule_error(with("warn_at", json!({"remaining": 5}))),
        "rule \"per-client\" (rules[0]): warn_at.remaining: 5 is not below what the rule admits \
         at once (5, from limit.burst), so every request would be marked; use at most 4"
    );
    assert_eq!(
        rule_error(with("warn_at", json!({"remaining": -1}))),
        "rule \"per-client\" (rules[0]): warn_at.remaining: expected a whole number of 0 or more (no sign, no fraction), found a number"
    );
    assert!(rule_error(with("warn_at", json!({}))).starts_with(
        "rule \"per-client\" (rules[0]): warn_at.remaining: required, e.g. \"remaining\": 10"
    ));
    assert!(
        rule_error(with("warn_at", json!({"remaining": 1, "percent": 5})))
            .starts_with("rule \"per-client\" (rules[0]): warn_at.percent: unknown field")
    );
    let mut shadow = with("warn_at", json!({"remaining": 1}));
    shadow["mode"] = json!("shadow");
    assert_eq!(
        rule_error(shadow),
        "rule \"per-client\" (rules[0]): warn_at: a shadow rule tells the client nothing, so it \
         cannot warn; use \"mode\": \"soft\" to warn without denying, or \"enforce\""
    );
    // Every tier must leave room: the smallest capacity bounds warn_at.
    let tiered = json!({"name": "per-plan", "key": ["client_ip"], "algorithm": "fixed_window",
        "warn_at": {"remaining": 2},
        "tier": {"from": {"header": "x-plan"}, "default": "free",
                 "limits": {"free": {"requests": 2, "period": "1m"},
                            "pro": {"requests": 100, "period": "1m"}}}});
    assert_eq!(
        rule_error(tiered),
        "rule \"per-plan\" (rules[0]): warn_at.remaining: 2 is not below what the rule admits \
         at once (2, from tier.limits.free.requests), so every request would be marked; use at \
         most 1"
    );
    for (name, message) in [
        (
            "ratelimit",
            "\"ratelimit\" is a header sluice sets for another purpose",
        ),
        (
            "Retry-After",
            "\"retry-after\" is a header sluice sets for another purpose",
        ),
        ("bad header", "\"bad header\" is not a valid name"),
    ] {
        let err = Policy::from_json(
            json!({"response": {"warning_header": name}, "rules": [base()]})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err.path(), "response.warning_header", "{name}");
        assert!(err.to_string().contains(message), "{name}: {err}");
    }
}
