//! Delay rules in the configuration: `delay.max` and `shaping.max_held` with their defaults and
//! ranges, the combinations refused (each error names the rule and `delay`, and says why), and
//! a delayed request through `Policy::handle` (passed, held, with the rule's headers).

use serde_json::{Value, json};
use sluice_core::{Limiter, MemoryStore, Seed, Semantics};
use sluice_policy::{OwnedRequest, Policy, Response, shaping};

const NOW: u64 = 1_767_225_600_000_000_000;
const MS: u64 = 1_000_000;

fn rule(extra: Value) -> Value {
    let mut rule = json!({
        "name": "spaced",
        "key": ["client_ip"],
        "limit": {"requests": 10, "period": "1s", "burst": 2},
        "delay": {"max": "500ms"}
    });
    for (field, value) in extra.as_object().unwrap() {
        if value.is_null() {
            rule.as_object_mut().unwrap().remove(field);
        } else {
            rule[field] = value.clone();
        }
    }
    rule
}

fn compile(config: Value) -> Result<Policy, String> {
    Policy::from_json(config.to_string().as_bytes()).map_err(|e| e.to_string())
}

fn rule_error(extra: Value) -> String {
    compile(json!({"rules": [rule(extra)]})).expect_err("should be refused")
}

#[test]
fn delay_and_shaping_compile_with_their_defaults() {
    let policy = compile(json!({"rules": [rule(json!({}))]})).unwrap();
    assert_eq!(policy.rules()[0].max_delay(), 500 * MS);
    assert_eq!(policy.rules()[0].limit().max_delay, 500 * MS);
    assert_eq!(policy.shaping().max_held(), shaping::DEFAULT_MAX_HELD);
    assert_eq!(shaping::DEFAULT_MAX_HELD, 1024);
    assert!(policy.holds_requests());

    let policy =
        compile(json!({"shaping": {"max_held": 3}, "rules": [rule(json!({"delay": null}))]}))
            .unwrap();
    assert_eq!(policy.shaping().max_held(), 3);
    assert_eq!(policy.rules()[0].max_delay(), 0);
    assert!(!policy.holds_requests());
}

#[test]
fn every_limit_of_a_tiered_rule_holds() {
    let policy = compile(json!({"rules": [{
        "name": "tiered", "key": ["client_ip"], "delay": {"max": "1s"},
        "tier": {"from": {"header": "x-plan"}, "default": "free",
                 "limits": {"free": {"requests": 1, "period": "1s"},
                            "pro": {"requests": 100, "period": "1s"}}}
    }]}))
    .unwrap();
    let limits = policy.rules()[0].limits();
    assert!(limits.len() >= 2);
    assert!(limits.iter().all(|l| l.limit().max_delay == 1_000 * MS));
}

#[test]
fn delay_needs_gcra() {
    assert_eq!(
        rule_error(json!({"algorithm": "fixed_window", "limit": {"requests": 10, "period": "1s"}})),
        "rule \"spaced\" (rules[0]): delay: only gcra can hold a request until its slot comes \
         back: fixed_window cannot tell when a unit is free again without over-admitting; set \
         \"algorithm\": \"gcra\" or remove delay"
    );
    for algorithm in ["sliding_window", "sliding_log"] {
        let error =
            rule_error(json!({"algorithm": algorithm, "limit": {"requests": 10, "period": "1s"}}));
        assert!(
            error.contains(&format!(
                "delay: only gcra can hold a request until its slot comes back: {algorithm}"
            )),
            "{error}"
        );
    }
}

#[test]
fn delay_is_refused_with_shadow_mode() {
    assert_eq!(
        rule_error(json!({"mode": "shadow"})),
        "rule \"spaced\" (rules[0]): delay: a shadow or soft rule never denies, so it has \
         nothing to hold instead; remove delay or use \"mode\": \"enforce\""
    );
}

#[test]
fn delay_is_refused_with_global_scope() {
    let error = compile(json!({
        "global": {"cluster": "ratelimit", "domain": "edge"},
        "rules": [rule(json!({"scope": "global"}))]
    }))
    .unwrap_err();
    assert_eq!(
        error,
        "rule \"spaced\" (rules[0]): delay: a global rule is decided by the rate-limit service, \
         which cannot hold a request; remove delay or drop \"scope\": \"global\" (a local rule \
         can hold)"
    );
}

#[test]
fn the_edge_worker_holds_requests_of_delay_rules() {
    let config = json!({"rules": [rule(json!({}))]});
    let policy = Policy::from_json_edge(config.to_string().as_bytes()).unwrap();
    assert!(policy.holds_requests());
}

#[test]
fn the_edge_worker_refuses_delay_beside_leased_rules() {
    let config = json!({"rules": [
        {"name": "leased", "key": ["client_ip"], "limit": {"requests": 100, "period": "1m"},
         "lease": {"size": 5}},
        rule(json!({}))
    ]});
    let error = Policy::from_json_edge(config.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "rule \"spaced\" (rules[1]): delay: the edge worker cannot give back what a held request \
         took from the slices of leased rules (rule \"leased\" has a lease) if it is refused or \
         its client leaves; remove delay, or the lease of every rule"
    );
    // Proxies lease only global rules, which cannot delay: the same rules are refused there
    // for the lease alone.
    assert!(Policy::from_json(config.to_string().as_bytes()).is_err());
}

#[test]
fn delay_is_refused_with_a_lease_at_the_edge() {
    let config = json!({"rules": [rule(json!({"lease": {"size": 2}}))]});
    let error = Policy::from_json_edge(config.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with(
            "delay: a leased rule spends from a slice taken in advance, so \
                             there is no slot to wait for; remove delay or lease"
        ),
        "{error}"
    );
}

#[test]
fn delay_max_is_a_duration_from_1ms_to_60s() {
    let out_of_range = |text: &str| {
        format!(
            "rule \"spaced\" (rules[0]): delay.max: \"{text}\" is out of range; use 1ms up to \
             60s (a request held longer is better told to come back)"
        )
    };
    assert_eq!(
        rule_error(json!({"delay": {"max": "61s"}})),
        out_of_range("61s")
    );
    assert_eq!(
        rule_error(json!({"delay": {"max": "0ms"}})),
        out_of_range("0ms")
    );
    assert_eq!(
        rule_error(json!({"delay": {"max": "1d"}})),
        out_of_range("1d")
    );
    assert!(
        rule_error(json!({"delay": {"max": "soon"}}))
            .contains("delay.max: \"soon\" is not a duration")
    );
    assert!(rule_error(json!({"delay": {}})).contains("delay.max: required"));
    assert!(rule_error(json!({"delay": {"max": "1s", "burst": 3}})).contains("delay.burst"));
    assert!(compile(json!({"rules": [rule(json!({"delay": {"max": "1ms"}}))]})).is_ok());
    assert!(compile(json!({"rules": [rule(json!({"delay": {"max": "60s"}}))]})).is_ok());
}

#[test]
fn shaping_max_held_is_from_1_to_a_million() {
    for bad in [json!(0), json!(1_000_001), json!("10"), json!(-1)] {
        let error =
            compile(json!({"shaping": {"max_held": bad}, "rules": [rule(json!({}))]})).unwrap_err();
        assert!(error.starts_with("shaping.max_held: "), "{error}");
    }
    let error = compile(json!({"shaping": {"held": 1}, "rules": [rule(json!({}))]})).unwrap_err();
    assert!(error.starts_with("shaping.held: "), "{error}");
    let policy =
        compile(json!({"shaping": {"max_held": 1_000_000}, "rules": [rule(json!({}))]})).unwrap();
    assert_eq!(policy.shaping().max_held(), 1_000_000);
}

#[test]
fn a_held_request_passes_with_its_hold_in_the_verdict() {
    let policy = compile(json!({"rules": [rule(json!({}))]})).unwrap();
    let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 4);
    let mut store = MemoryStore::new(Semantics::Envoy);
    let request = OwnedRequest {
        method: b"GET".to_vec(),
        path: b"/".to_vec(),
        authority: b"api.example.com".to_vec(),
        peer: Some("203.0.113.7:4000".into()),
        ..OwnedRequest::default()
    };
    // 10/s (T = 100 ms), burst 2 (τ = 200 ms), held up to 500 ms: two pass at once, the next
    // five are held 100..500 ms, the eighth (hold 600 ms) is denied.
    let mut holds = Vec::new();
    for _ in 0..8 {
        let handled = policy.handle(&request, NOW, &mut limiter, &mut store);
        let verdict = handled.verdict.as_ref().unwrap();
        match &handled.response {
            Response::Pass { .. } => holds.push(Some(verdict.delay() / MS)),
            _ => holds.push(None),
        }
    }
    assert_eq!(
        holds,
        [
            Some(0),
            Some(0),
            Some(100),
            Some(200),
            Some(300),
            Some(400),
            Some(500),
            None
        ]
    );
}

fn request() -> OwnedRequest {
    OwnedRequest {
        method: b"GET".to_vec(),
        path: b"/".to_vec(),
        authority: b"api.example.com".to_vec(),
        peer: Some("203.0.113.7:4000".into()),
        ..OwnedRequest::default()
    }
}

#[test]
fn a_held_request_given_back_frees_its_slot() {
    let policy = compile(json!({"rules": [rule(json!({}))]})).unwrap();
    let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 4);
    let mut store = MemoryStore::new(Semantics::Strict);
    for _ in 0..2 {
        policy.handle(&request(), NOW, &mut limiter, &mut store);
    }
    let mut handled = policy.handle(&request(), NOW, &mut limiter, &mut store);
    let mut buffers = sluice_policy::RequestBuffers::new();
    let held = sluice_policy::HeldRequest::of(&mut handled, NOW, &mut buffers).expect("held");
    assert_eq!(
        (held.delay(), held.release_at()),
        (100 * MS, NOW + 100 * MS)
    );
    drop(handled);
    // Its client leaves: the next request is held 100 ms, not 200 ms.
    policy.give_back(held, &mut limiter, &mut store, &mut buffers);
    let next = policy.handle(&request(), NOW, &mut limiter, &mut store);
    assert_eq!(next.verdict.unwrap().delay(), 100 * MS);
}

#[test]
fn a_request_that_cannot_be_held_is_denied_as_the_rule_denies_and_spends_nothing() {
    let policy = compile(json!({"rules": [rule(json!({}))]})).unwrap();
    let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 4);
    let mut store = MemoryStore::new(Semantics::Envoy);
    for _ in 0..2 {
        policy.handle(&request(), NOW, &mut limiter, &mut store);
    }
    // Held 100 ms, but there is no room: denied with Retry-After for its slot (100 ms, so 1 s)
    // and the reset time without its unit (debt 200 ms: t=1).
    let handled = policy.handle(&request(), NOW, &mut limiter, &mut store);
    let refused = policy.refuse_hold(handled, NOW, &mut limiter, &mut store);
    let verdict = refused.verdict.as_ref().unwrap();
    assert!(!verdict.allowed);
    assert_eq!(verdict.delay(), 0);
    assert_eq!(verdict.outcomes[0].decision.retry_after, 100 * MS);
    assert_eq!(verdict.outcomes[0].decision.reset_after, 200 * MS);
    match &refused.response {
        Response::Deny {
            status, headers, ..
        } => {
            assert_eq!(*status, 429);
            assert!(
                headers.contains(&("retry-after", "1".to_owned())),
                "{headers:?}"
            );
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    // Nothing stays counted: the next request is held 100 ms again.
    let next = policy.handle(&request(), NOW, &mut limiter, &mut store);
    assert_eq!(next.verdict.unwrap().delay(), 100 * MS);
}
