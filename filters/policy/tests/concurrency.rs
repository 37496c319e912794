//! Concurrency rules in the configuration (`concurrency.max`, `concurrency.slot_ttl` and
//! their defaults; the fields and combinations refused, each naming the rule and field), and
//! requests through `Policy::handle_into`: the slots a passed request takes, given back once
//! by `Policy::release`, none taken by a denied, exempt or shadow-denied request, and the
//! rate-limit headers of a concurrency rule; tiers and overrides of the cap, each slot given
//! back to the table of the limit it was taken under.

use serde_json::{Value, json};
use sluice_core::time::NANOS_PER_SEC;
use sluice_core::{Algorithm, Limiter, MemoryStore, Released, Seed, Semantics};
use sluice_policy::{OwnedRequest, Policy, RequestBuffers, TakenSlots, concurrency};

const NOW: u64 = 1_767_225_600_000_000_000;

fn rule(extra: Value) -> Value {
    let mut rule = json!({
        "name": "in-flight",
        "key": ["client_ip"],
        "concurrency": {"max": 2, "slot_ttl": "60s"}
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

fn request(peer: &str) -> OwnedRequest {
    request_to("/", peer)
}

fn request_to(path: &str, peer: &str) -> OwnedRequest {
    OwnedRequest {
        method: b"GET".to_vec(),
        path: path.as_bytes().to_vec(),
        authority: b"api.example.com".to_vec(),
        headers: Vec::new(),
        peer: Some(peer.to_owned()),
    }
}

/// A policy with its limiter, store and buffers, sending requests as the filter does.
struct Proxy {
    policy: Policy,
    limiter: Limiter,
    store: MemoryStore,
    buffers: RequestBuffers,
}

impl Proxy {
    fn new(config: Value) -> Proxy {
        let policy = compile(config).unwrap();
        let limiter = Limiter::new(Seed { k0: 3, k1: 4 }, policy.cas_retries());
        Proxy {
            policy,
            limiter,
            store: MemoryStore::new(Semantics::Strict),
            buffers: RequestBuffers::new(),
        }
    }

    /// Sends a request at `now`: its status, its `ratelimit` header and the slots it holds.
    fn send(&mut self, peer: &str, now: u64) -> (u16, Option<String>, Option<TakenSlots>) {
        self.send_to("/", peer, now)
    }

    fn send_to(
        &mut self,
        path: &str,
        peer: &str,
        now: u64,
    ) -> (u16, Option<String>, Option<TakenSlots>) {
        self.send_request(&request_to(path, peer), now)
    }

    fn send_request(
        &mut self,
        request: &OwnedRequest,
        now: u64,
    ) -> (u16, Option<String>, Option<TakenSlots>) {
        let mut handled = self.policy.handle_into(
            request,
            now,
            &mut self.limiter,
            &mut self.store,
            &mut self.buffers,
        );
        let slots = handled.take_slots(now, &mut self.buffers);
        let status = if handled.response.is_deny() { 429 } else { 200 };
        let state = handled.response.header("ratelimit").map(str::to_owned);
        self.buffers.reclaim(handled);
        (status, state, slots)
    }

    fn release(&mut self, slots: TakenSlots, now: u64) -> Vec<(usize, Released)> {
        let mut outcomes = Vec::new();
        self.policy.release(
            slots,
            now,
            &mut self.limiter,
            &mut self.store,
            &mut self.buffers,
            |rule, released| outcomes.push((rule, released)),
        );
        outcomes
    }
}

#[test]
fn a_concurrency_rule_compiles_with_its_defaults() {
    let policy = compile(json!({"rules": [rule(json!({}))]})).unwrap();
    let limit = policy.rules()[0].limit();
    assert_eq!(limit.algorithm, Algorithm::Concurrency);
    assert_eq!(limit.quota.limit(), 2);
    assert_eq!(limit.quota.period(), 60 * NANOS_PER_SEC);
    assert!(policy.has_concurrency_rules());

    let policy = compile(json!({"rules": [rule(json!({"concurrency": {"max": 7}}))]})).unwrap();
    let limit = policy.rules()[0].limit();
    assert_eq!(limit.quota.period(), concurrency::DEFAULT_SLOT_TTL);
    assert_eq!(concurrency::DEFAULT_SLOT_TTL, 300 * NANOS_PER_SEC);
    assert_eq!(limit.quota.limit(), 7);

    let plain = compile(json!({"rules": [{"name": "rate", "key": ["client_ip"],
        "limit": {"requests": 1, "period": "1s"}}]}))
    .unwrap();
    assert!(!plain.has_concurrency_rules());
}

#[test]
fn max_and_slot_ttl_are_checked() {
    assert_eq!(
        rule_error(json!({"concurrency": {"slot_ttl": "1m"}})),
        "rule \"in-flight\" (rules[0]): concurrency.max: required, e.g. \"max\": 10"
    );
    let zero = rule_error(json!({"concurrency": {"max": 0}}));
    assert!(
        zero.starts_with("rule \"in-flight\" (rules[0]): concurrency.max: 0 is out of range"),
        "{zero}"
    );
    let huge = rule_error(json!({"concurrency": {"max": 1_000_001}}));
    assert!(huge.contains("concurrency.max"), "{huge}");
    for short in ["500ms", "0s"] {
        assert_eq!(
            rule_error(json!({"concurrency": {"max": 1, "slot_ttl": short}})),
            format!(
                "rule \"in-flight\" (rules[0]): concurrency.slot_ttl: \"{short}\" is out of \
                 range; use 1s up to 1d (the longest a request may be in flight, e.g. the \
                 upstream timeout: a slot whose release is lost comes back after it)"
            )
        );
    }
    assert!(
        rule_error(json!({"concurrency": {"max": 1, "slot_ttl": "2d"}})).contains("1s up to 1d")
    );
    assert!(
        rule_error(json!({"concurrency": {"max": 1, "slot_ttl": "soon"}}))
            .contains("concurrency.slot_ttl: \"soon\" is not a duration")
    );
    let unknown = rule_error(json!({"concurrency": {"max": 1, "ttl": "1m"}}));
    assert!(unknown.contains("concurrency.ttl"), "{unknown}");
}

#[test]
fn fields_for_rates_are_refused_naming_the_field() {
    for (field, value, why) in [
        (
            "limit",
            json!({"requests": 1, "period": "1s"}),
            "remove limit",
        ),
        ("algorithm", json!("gcra"), "remove algorithm"),
        ("cost", json!(2), "each request in flight holds one slot"),
        ("delay", json!({"max": "1s"}), "remove delay"),
        ("lease", json!({"size": 10}), "remove lease"),
    ] {
        let error = rule_error(json!({ field: value }));
        assert!(
            error.starts_with(&format!("rule \"in-flight\" (rules[0]): {field}: ")),
            "{field}: {error}"
        );
        assert!(error.contains(why), "{field}: {error}");
    }

    let global = compile(json!({
        "global": {"cluster": "rls"},
        "rules": [rule(json!({"scope": "global"}))]
    }))
    .unwrap_err();
    assert!(
        global.starts_with("rule \"in-flight\" (rules[0]): scope: the rate-limit service"),
        "{global}"
    );
}

#[test]
fn soft_and_warn_at_work_on_slots() {
    let mut proxy = Proxy::new(json!({"rules": [rule(json!({
        "mode": "soft", "concurrency": {"max": 1}, "warn_at": {"remaining": 0}
    }))]}));
    let (status, _, first) = proxy.send("203.0.113.7:1", NOW);
    assert_eq!(status, 200);
    assert!(first.is_some());
    // Over a soft limit: passed, uncounted, so it holds no slot to give back.
    let (status, state, second) = proxy.send("203.0.113.7:1", NOW + 1);
    assert_eq!(status, 200);
    assert_eq!(state.as_deref(), Some("\"in-flight\";r=0;t=1"));
    assert!(second.is_none());
}

#[test]
fn slots_are_taken_by_passed_requests_and_given_back_once() {
    let mut proxy = Proxy::new(json!({"rules": [rule(json!({}))]}));
    let (status, state, a) = proxy.send("203.0.113.7:1", NOW);
    assert_eq!((status, state.as_deref()), (200, Some("\"in-flight\";r=1")));
    let a = a.expect("a slot");
    assert_eq!(a.len(), 1);
    assert_eq!(a.taken_at(), NOW);
    assert_eq!(a.rules().collect::<Vec<_>>(), [0]);
    let (_, _, b) = proxy.send("203.0.113.7:1", NOW + 1);
    let b = b.expect("a second slot");

    let (status, state, denied) = proxy.send("203.0.113.7:1", NOW + 2);
    assert_eq!(
        (status, state.as_deref()),
        (429, Some("\"in-flight\";r=0;t=1"))
    );
    assert!(denied.is_none(), "a denied request takes no slot");

    assert_eq!(proxy.release(a, NOW + 3), [(0, Released::Given)]);
    let (status, _, c) = proxy.send("203.0.113.7:1", NOW + 4);
    assert_eq!(status, 200);
    assert_eq!(proxy.release(b, NOW + 5), [(0, Released::Given)]);
    assert_eq!(proxy.release(c.unwrap(), NOW + 6), [(0, Released::Given)]);
    let (_, state, _) = proxy.send("203.0.113.7:1", NOW + 7);
    assert_eq!(state.as_deref(), Some("\"in-flight\";r=1"));
}

#[test]
fn a_request_of_several_rules_holds_a_slot_per_concurrency_rule() {
    let mut proxy = Proxy::new(json!({"rules": [
        rule(json!({})),
        {"name": "rate", "key": ["client_ip"], "limit": {"requests": 100, "period": "1s"}},
        rule(json!({"name": "per-path", "key": ["path"], "concurrency": {"max": 5}})),
    ]}));
    let (_, state, slots) = proxy.send("203.0.113.7:1", NOW);
    assert_eq!(
        state.as_deref(),
        Some("\"in-flight\";r=1, \"rate\";r=99;t=1, \"per-path\";r=4")
    );
    let slots = slots.unwrap();
    assert_eq!(slots.rules().collect::<Vec<_>>(), [0, 2]);
    assert_eq!(
        proxy.release(slots, NOW + 1),
        [(0, Released::Given), (2, Released::Given)]
    );
}

#[test]
fn no_slot_for_exempt_requests_or_rules_that_do_not_apply() {
    let mut proxy = Proxy::new(json!({
        "exempt": {"paths": ["/healthz"]},
        "rules": [rule(json!({"match": {"path_prefixes": ["/api/"]}}))]
    }));
    assert!(proxy.send_to("/healthz", "203.0.113.7:1", NOW).2.is_none());
    assert!(proxy.send_to("/", "203.0.113.7:1", NOW).2.is_none());
    let (_, _, slots) = proxy.send_to("/api/items", "203.0.113.7:1", NOW);
    proxy.release(slots.expect("the rule applies"), NOW + 1);
}

#[test]
fn a_release_after_the_slot_expired_gives_nothing_back() {
    let mut proxy =
        Proxy::new(json!({"rules": [rule(json!({"concurrency": {"max": 1, "slot_ttl": "8s"}}))]}));
    let (_, _, lost) = proxy.send("203.0.113.7:1", NOW);
    assert_eq!(proxy.send("203.0.113.7:1", NOW + 8_999_999_999).0, 429);
    let (status, _, next) = proxy.send("203.0.113.7:1", NOW + 9 * NANOS_PER_SEC);
    assert_eq!(status, 200);
    assert_eq!(
        proxy.release(lost.unwrap(), NOW + 9 * NANOS_PER_SEC + 1),
        [(0, Released::Expired)]
    );
    assert_eq!(proxy.send("203.0.113.7:1", NOW + 10 * NANOS_PER_SEC).0, 429);
    proxy.release(next.unwrap(), NOW + 10 * NANOS_PER_SEC);
}

#[test]
fn ratelimit_policy_has_no_window_for_a_concurrency_rule() {
    let policy =
        compile(json!({"response": {"headers": "both"}, "rules": [rule(json!({}))]})).unwrap();
    let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 4);
    let mut store = MemoryStore::new(Semantics::Envoy);
    let handled = policy.handle(&request("203.0.113.7:1"), NOW, &mut limiter, &mut store);
    assert_eq!(
        handled.response.header("ratelimit-policy"),
        Some("\"in-flight\";q=2")
    );
    assert_eq!(handled.response.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(handled.response.header("x-ratelimit-remaining"), Some("1"));
    // Until the one slot held would expire if never released: its bucket (of 7.5 s) ends
    // 67.5 s after the day boundary NOW is on.
    assert_eq!(handled.response.header("x-ratelimit-reset"), Some("68"));
}

/// In flight per API key: one on the free plan, three on the pro plan, two for one listed key
/// (an override, which wins over its tier); a request without a known plan is denied.
fn tiered_rule(concurrency: Value) -> Value {
    json!({"rules": [{
        "name": "in-flight",
        "key": [{"header": "x-api-key"}],
        "concurrency": concurrency,
        "tier": {
            "from": {"header": "x-plan"},
            "limits": {"free": {"max": 1}, "pro": {"max": 3}},
            "default": "deny"
        },
        "overrides": {"build-farm": {"key": "farm", "max": 2}}
    }]})
}

fn keyed(api_key: &str, plan: &str) -> OwnedRequest {
    let mut request = request("203.0.113.7:41000");
    request.headers = vec![
        ("x-api-key".to_owned(), api_key.as_bytes().to_vec()),
        ("x-plan".to_owned(), plan.as_bytes().to_vec()),
    ];
    request
}

#[test]
fn tiers_and_overrides_give_a_concurrency_rule_its_cap_per_caller() {
    let mut proxy = Proxy::new(tiered_rule(json!({"slot_ttl": "30s"})));
    let caps: Vec<(&str, u64, u64)> = proxy.policy.rules()[0]
        .limits()
        .iter()
        .filter(|l| l.has_table())
        .map(|l| (l.name(), l.limit().quota.limit(), l.limit().quota.period()))
        .collect();
    let ttl = 30 * NANOS_PER_SEC;
    assert_eq!(
        caps,
        [
            ("in-flight:free", 1, ttl),
            ("in-flight:pro", 3, ttl),
            ("in-flight:build-farm", 2, ttl)
        ]
    );

    // A free key's one slot.
    let (status, state, free) = proxy.send_request(&keyed("k1", "free"), NOW);
    assert_eq!(
        (status, state.as_deref()),
        (200, Some("\"in-flight:free\";r=0"))
    );
    assert_eq!(proxy.send_request(&keyed("k1", "free"), NOW).0, 429);
    // A pro key's three.
    let pro: Vec<_> = (0..3)
        .map(|i| {
            proxy
                .send_request(&keyed("k2", "pro"), NOW + i)
                .2
                .expect("a slot")
        })
        .collect();
    assert_eq!(proxy.send_request(&keyed("k2", "pro"), NOW + 3).0, 429);
    // The override's two, on the free plan.
    let (_, state, farm) = proxy.send_request(&keyed("farm", "free"), NOW);
    assert_eq!(state.as_deref(), Some("\"in-flight:build-farm\";r=1"));
    let farm_second = proxy
        .send_request(&keyed("farm", "free"), NOW)
        .2
        .expect("a slot");
    assert_eq!(proxy.send_request(&keyed("farm", "free"), NOW).0, 429);
    // No known plan: the default denies, and takes nothing.
    let (status, _, none) = proxy.send_request(&keyed("k3", "gold"), NOW);
    assert_eq!((status, none), (429, None));

    // Each release frees the slot in the table it was taken from, and only there.
    let released = proxy.release(free.expect("a slot"), NOW + 10);
    assert_eq!(released, [(0, Released::Given)]);
    assert_eq!(proxy.send_request(&keyed("farm", "free"), NOW + 11).0, 429);
    assert_eq!(proxy.send_request(&keyed("k1", "free"), NOW + 11).0, 200);
    proxy.release(farm.expect("a slot"), NOW + 12);
    assert_eq!(proxy.send_request(&keyed("k2", "pro"), NOW + 13).0, 429);
    assert_eq!(proxy.send_request(&keyed("farm", "free"), NOW + 13).0, 200);
    for slots in pro {
        assert_eq!(proxy.release(slots, NOW + 14), [(0, Released::Given)]);
    }
    proxy.release(farm_second, NOW + 14);
    for i in 0..3 {
        assert_eq!(proxy.send_request(&keyed("k2", "pro"), NOW + 15 + i).0, 200);
    }
}

#[test]
fn a_tiered_concurrency_rule_takes_its_caps_from_the_tiers() {
    let error = compile(tiered_rule(json!({"max": 5}))).unwrap_err();
    assert_eq!(
        error,
        "rule \"in-flight\" (rules[0]): concurrency.max: a tiered concurrency rule takes each \
         tier's cap from tier.limits, e.g. {\"free\": {\"max\": 2}}; remove max here \
         (slot_ttl stays)"
    );
    let mut config = tiered_rule(json!({}));
    config["rules"][0]["tier"]["limits"]["free"] = json!({"requests": 1});
    let error = compile(config).unwrap_err();
    assert!(
        error
            .starts_with("rule \"in-flight\" (rules[0]): tier.limits.free.requests: unknown field"),
        "{error}"
    );
    let mut config = tiered_rule(json!({}));
    config["rules"][0]["tier"]["limits"]["free"] = json!({});
    assert_eq!(
        compile(config).unwrap_err(),
        "rule \"in-flight\" (rules[0]): tier.limits.free.max: required, e.g. \"max\": 10"
    );
    let mut config = tiered_rule(json!({}));
    config["rules"][0]["overrides"]["build-farm"] = json!({"key": "farm", "requests": 2});
    let error = compile(config).unwrap_err();
    assert!(
        error.starts_with(
            "rule \"in-flight\" (rules[0]): overrides.build-farm.requests: unknown field"
        ),
        "{error}"
    );
    // Without tiers, an override raises or lowers the rule's own cap.
    let policy = compile(json!({"rules": [{
        "name": "in-flight",
        "key": [{"header": "x-api-key"}],
        "concurrency": {"max": 2},
        "overrides": {"vip": {"key": "vip-key", "max": 5}}
    }]}))
    .unwrap();
    let caps: Vec<u64> = policy.rules()[0]
        .limits()
        .iter()
        .map(|l| l.limit().quota.limit())
        .collect();
    assert_eq!(caps, [2, 5]);
}
