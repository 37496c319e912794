//! Every configuration error: each names its rule (by name and index) when it is in one, and
//! the field path, and says what to write instead.

use serde_json::{Value, json};
use sluice_policy::{ConfigError, Policy, Problem};

/// A valid rule to start from.
fn rule() -> Value {
    json!({
        "name": "per-client",
        "key": ["client_ip"],
        "limit": {"requests": 10, "period": "1m"}
    })
}

/// `rule()` with `field` replaced (or removed when `value` is null).
fn rule_with(field: &str, value: Value) -> Value {
    let mut r = rule();
    let map = r.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(field);
    } else {
        map.insert(field.to_owned(), value);
    }
    r
}

fn compile(config: Value) -> Result<Policy, ConfigError> {
    Policy::from_json(config.to_string().as_bytes())
}

fn error(config: Value) -> ConfigError {
    compile(config).expect_err("the configuration should be rejected")
}

fn rule_error(rule: Value) -> String {
    error(json!({ "rules": [rule] })).to_string()
}

#[test]
fn a_valid_configuration_with_every_section_compiles() {
    let policy = compile(json!({
        "client_ip": {"source": "x_forwarded_for", "trusted_hops": 2},
        "exempt": {"paths": ["/healthz"], "path_prefixes": ["/metrics/"], "cors_preflight": true},
        "response": {"status": 503, "body": "slow down\n", "content_type": "text/plain",
                     "headers": "both"},
        "store": {"max_keys": 1024, "cas_retries": 3},
        "rules": [
            {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 100, "period": "1m", "burst": 20}},
            {"name": "login.v2", "match": {"paths": ["/login"], "methods": ["POST"], "hosts": ["*.example.com"]},
             "key": [{"client_ip": {"ipv4_prefix": 24, "ipv6_prefix": 56}}, {"header": "x-api-key", "secret": true}],
             "when_key_missing": "skip", "limit": {"requests": 5, "period": "10m"},
             "algorithm": "sliding_log", "cost": {"header": "x-cost", "default": 1, "max": 5},
             "mode": "shadow", "failure_mode": "closed", "max_keys": 64}
        ]
    }))
    .unwrap();
    assert_eq!(policy.cas_retries(), 3);
    assert_eq!(policy.rules().len(), 2);
    assert_eq!(policy.rules()[0].max_keys(), 1024);
    assert_eq!(policy.rules()[0].limit().capacity(), 20);
    assert_eq!(policy.rules()[1].max_keys(), 64);
}

#[test]
fn defaults_apply_when_sections_are_left_out() {
    let policy = compile(json!({"rules": [rule()]})).unwrap();
    assert_eq!(policy.cas_retries(), 32);
    let rule = &policy.rules()[0];
    assert_eq!(rule.max_keys(), 65_536);
    assert_eq!(rule.limit().algorithm, sluice_core::Algorithm::Gcra);
    assert_eq!(rule.limit().quota.burst(), 10);
    assert_eq!(rule.mode(), sluice_core::Mode::Enforce);
    assert_eq!(rule.failure_mode(), sluice_core::FailureMode::Open);
    assert_eq!(policy.response().status(), 429);
    assert_eq!(policy.response().body(), "rate limit exceeded\n");
}

#[test]
fn invalid_json_says_where() {
    let err = Policy::from_json(b"{\"rules\": [}").unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("configuration: not valid JSON: "),
        "{text}"
    );
    assert!(text.contains("line 1 column 12"), "{text}");
}

#[test]
fn a_configuration_must_be_an_object() {
    assert_eq!(
        error(json!([rule()])).to_string(),
        "configuration: expected an object, found a list"
    );
}

#[test]
fn unknown_top_level_fields_are_rejected() {
    assert_eq!(
        error(json!({"rules": [rule()], "rule": []})).to_string(),
        "rule: unknown field \"rule\"; the fields here are namespace, client_ip, exempt, response, store, global, jwt, shaping or rules"
    );
}

#[test]
fn a_namespace_must_be_a_short_plain_name() {
    assert_eq!(
        error(json!({"namespace": "team a", "rules": [rule()]})).to_string(),
        "namespace: \"team a\" is not a valid namespace; use 1 to 64 characters from \
         A-Z a-z 0-9 _ . - (or leave it out to keep this configuration's counters to itself)"
    );
    for bad in ["", "~0123456789abcdef", &"n".repeat(65)] {
        let err = error(json!({"namespace": bad, "rules": [rule()]}));
        assert_eq!(err.path(), "namespace", "{bad:?}");
    }
    assert_eq!(
        error(json!({"namespace": 7, "rules": [rule()]})).to_string(),
        "namespace: expected a string, found a number"
    );
    let ok = compile(json!({"namespace": "team-a.v1_2", "rules": [rule()]})).unwrap();
    assert_eq!(ok.namespace(), Some("team-a.v1_2"));
    assert_eq!(ok.table_namespace(), "team-a.v1_2");
}

#[test]
fn without_a_namespace_each_configuration_gets_its_own() {
    let one = Policy::from_json(
        br#"{"rules": [{"name": "r", "key": ["client_ip"],
        "limit": {"requests": 5, "period": "10s"}}]}"#,
    )
    .unwrap();
    let other = Policy::from_json(
        br#"{"rules": [{"name": "r", "key": ["client_ip"],
        "limit": {"requests": 12, "period": "10s"}}]}"#,
    )
    .unwrap();
    let again = Policy::from_json(
        br#"{"rules": [{"name": "r", "key": ["client_ip"],
        "limit": {"requests": 5, "period": "10s"}}]}"#,
    )
    .unwrap();
    assert_eq!(one.namespace(), None);
    assert!(one.table_namespace().starts_with('~'));
    assert_eq!(one.table_namespace().len(), 17);
    assert_ne!(one.table_namespace(), other.table_namespace());
    assert_eq!(
        one.table_namespace(),
        again.table_namespace(),
        "byte-identical configurations share"
    );
}

#[test]
fn at_least_one_rule_is_required() {
    for config in [json!({}), json!({"rules": []})] {
        let err = error(config);
        assert_eq!(err.path(), "rules");
        assert_eq!(err.problem(), &Problem::NoRules);
        assert!(
            err.to_string()
                .starts_with("rules: at least one rule is required")
        );
    }
}

#[test]
fn rule_names_are_required_valid_and_unique() {
    assert_eq!(
        rule_error(rule_with("name", Value::Null)),
        "rules[0]: name: required, e.g. \"name\": \"per-client\""
    );
    assert_eq!(
        rule_error(rule_with("name", json!("per client"))),
        "rules[0]: name: \"per client\" is not a valid rule name; use 1 to 64 characters from A-Z a-z 0-9 _ . -"
    );
    assert!(rule_error(rule_with("name", json!("x".repeat(65)))).contains("not a valid rule name"));
    assert!(rule_error(rule_with("name", json!(""))).contains("not a valid rule name"));
    assert_eq!(
        rule_error(rule_with("name", json!(7))),
        "rules[0]: name: expected a string, found a number"
    );
    let err = error(json!({"rules": [rule(), rule_with("name", json!("other")), rule()]}));
    assert_eq!(
        err.to_string(),
        "rule \"per-client\" (rules[2]): name: \"per-client\" is already the name of rules[0]; \
         rule names must be unique (each rule has its own counters)"
    );
}

#[test]
fn a_rule_must_be_an_object() {
    assert_eq!(
        error(json!({"rules": [rule(), "per-client"]})).to_string(),
        "rules[1]: expected an object, found a string"
    );
}

#[test]
fn unknown_rule_fields_are_rejected_with_the_rule_named() {
    assert_eq!(
        rule_error(rule_with("algoritm", json!("gcra"))),
        "rule \"per-client\" (rules[0]): algoritm: unknown field \"algoritm\"; the fields here are \
         name, match, key, when_key_missing, limit, algorithm, cost, mode, failure_mode, max_keys, scope, lease, tier, overrides, warn_at, delay or concurrency"
    );
}

#[test]
fn the_period_must_be_a_duration() {
    assert_eq!(
        rule_error(rule_with("limit", json!({"requests": 10, "period": "5x"}))),
        "rule \"per-client\" (rules[0]): limit.period: \"5x\" is not a duration; use a number with \
         ms, s, m, h or d, e.g. 30s"
    );
    assert_eq!(
        rule_error(rule_with("limit", json!({"requests": 10, "period": 60}))),
        "rule \"per-client\" (rules[0]): limit.period: expected a string, found a number"
    );
}

#[test]
fn the_period_must_be_above_zero() {
    assert_eq!(
        rule_error(rule_with("limit", json!({"requests": 10, "period": "0s"}))),
        "rule \"per-client\" (rules[0]): limit.period: \"0s\" is zero; a period must be longer than zero"
    );
}

#[test]
fn the_period_must_be_at_most_a_year() {
    assert_eq!(
        rule_error(rule_with(
            "limit",
            json!({"requests": 10, "period": "400d"})
        )),
        "rule \"per-client\" (rules[0]): limit.period: \"400d\" is longer than the maximum period \
         of 366d; use a period of a year or less"
    );
}

#[test]
fn the_limit_and_its_fields_are_required() {
    assert_eq!(
        rule_error(rule_with("limit", Value::Null)),
        "rule \"per-client\" (rules[0]): limit: required, e.g. \"limit\": {\"requests\": 100, \"period\": \"1m\"}"
    );
    assert_eq!(
        rule_error(rule_with("limit", json!({"period": "1m"}))),
        "rule \"per-client\" (rules[0]): limit.requests: required, e.g. \"requests\": 100"
    );
    assert_eq!(
        rule_error(rule_with("limit", json!({"requests": 5}))),
        "rule \"per-client\" (rules[0]): limit.period: required, e.g. \"period\": \"1m\""
    );
    assert!(
        rule_error(rule_with(
            "limit",
            json!({"requests": 5, "period": "1m", "rate": 1})
        ))
        .contains(
            "limit.rate: unknown field \"rate\"; the fields here are requests, period or burst"
        )
    );
}

#[test]
fn requests_must_be_at_least_one() {
    assert_eq!(
        rule_error(rule_with("limit", json!({"requests": 0, "period": "1m"}))),
        "rule \"per-client\" (rules[0]): limit.requests: 0 is out of range; use 1 or more (a rule \
         admits at least one request per period)"
    );
    assert_eq!(
        rule_error(rule_with("limit", json!({"requests": -5, "period": "1m"}))),
        "rule \"per-client\" (rules[0]): limit.requests: expected a whole number of 0 or more \
         (no sign, no fraction), found a number"
    );
}

#[test]
fn more_than_one_request_per_nanosecond_is_rejected() {
    assert_eq!(
        rule_error(rule_with(
            "limit",
            json!({"requests": 2_000_000, "period": "1ms"})
        )),
        "rule \"per-client\" (rules[0]): limit.requests: 2000000 requests per period is more than \
         one per nanosecond; lower limit.requests or lengthen limit.period"
    );
}

#[test]
fn burst_is_only_for_gcra() {
    let mut r = rule_with("limit", json!({"requests": 10, "period": "1m", "burst": 5}));
    r["algorithm"] = json!("fixed_window");
    assert_eq!(
        rule_error(r),
        "rule \"per-client\" (rules[0]): limit.burst: only the gcra algorithm has a burst \
         (fixed_window always allows up to limit.requests at once); remove burst or set \
         \"algorithm\": \"gcra\""
    );
    assert!(
        rule_error(rule_with(
            "limit",
            json!({"requests": 10, "period": "1m", "burst": 0})
        ))
        .contains("limit.burst: 0 is out of range")
    );
}

#[test]
fn sliding_log_is_capped_at_1000_requests() {
    let mut r = rule_with("limit", json!({"requests": 1001, "period": "1m"}));
    r["algorithm"] = json!("sliding_log");
    assert_eq!(
        rule_error(r),
        "rule \"per-client\" (rules[0]): limit.requests: 1001 is too many for sliding_log, which \
         stores the time of every request (at most 1000); use \"algorithm\": \"sliding_window\" \
         for larger limits"
    );
}

#[test]
fn unknown_algorithms_modes_and_failure_modes_list_the_choices() {
    assert_eq!(
        rule_error(rule_with("algorithm", json!("token_bucket"))),
        "rule \"per-client\" (rules[0]): algorithm: \"token_bucket\" is not one of gcra, \
         fixed_window, sliding_window or sliding_log"
    );
    assert_eq!(
        rule_error(rule_with("mode", json!("dry_run"))),
        "rule \"per-client\" (rules[0]): mode: \"dry_run\" is not one of enforce, shadow or soft"
    );
    assert_eq!(
        rule_error(rule_with("failure_mode", json!("allow"))),
        "rule \"per-client\" (rules[0]): failure_mode: \"allow\" is not one of open or closed"
    );
    assert_eq!(
        rule_error(rule_with("when_key_missing", json!("ignore"))),
        "rule \"per-client\" (rules[0]): when_key_missing: \"ignore\" is not one of group or skip"
    );
}

#[test]
fn a_constant_cost_must_fit_the_capacity() {
    assert_eq!(
        rule_error(rule_with("cost", json!(11))),
        "rule \"per-client\" (rules[0]): cost: 11 is more than the rule admits at once (10, from \
         limit.requests), so such a request could never pass; use at most 10"
    );
    let mut r = rule_with("limit", json!({"requests": 10, "period": "1m", "burst": 3}));
    r["cost"] = json!(4);
    assert!(
        rule_error(r)
            .contains("cost: 4 is more than the rule admits at once (3, from limit.burst)")
    );
}

#[test]
fn a_cost_must_be_at_least_one() {
    assert_eq!(
        rule_error(rule_with("cost", json!(0))),
        "rule \"per-client\" (rules[0]): cost: 0 is out of range; use 1 or more (a request spends \
         at least one unit)"
    );
}

#[test]
fn a_header_cost_is_validated() {
    assert_eq!(
        rule_error(rule_with(
            "cost",
            json!({"header": "x-cost", "default": 3, "max": 2})
        )),
        "rule \"per-client\" (rules[0]): cost.default: default 3 is above max 2; the default must \
         be at most the max"
    );
    assert!(
        rule_error(rule_with("cost", json!({"header": "x-cost", "max": 11}))).starts_with(
            "rule \"per-client\" (rules[0]): cost.max: 11 is more than the rule admits"
        )
    );
    assert!(
        rule_error(rule_with("cost", json!({"header": "x cost"}))).starts_with(
            "rule \"per-client\" (rules[0]): cost.header: \"x cost\" is not a valid name"
        )
    );
}

#[test]
fn the_key_is_required_and_validated() {
    assert_eq!(
        rule_error(rule_with("key", Value::Null)),
        "rule \"per-client\" (rules[0]): key: required, e.g. \"key\": [\"client_ip\"]"
    );
    assert!(
        rule_error(rule_with("key", json!([]))).starts_with(
            "rule \"per-client\" (rules[0]): key: must not be empty: a rule counts by"
        )
    );
    assert_eq!(
        rule_error(rule_with("key", json!(["client_ip", "header"]))),
        "rule \"per-client\" (rules[0]): key[1]: \"header\" needs a name; write it as {\"header\": \"x-api-key\"}"
    );
    assert!(
        rule_error(rule_with("key", json!(["ip"]))).starts_with(
            "rule \"per-client\" (rules[0]): key[0]: not a key part; use \"client_ip\""
        )
    );
}

#[test]
fn ip_prefixes_must_fit_the_address_family() {
    assert_eq!(
        rule_error(rule_with(
            "key",
            json!([{"client_ip": {"ipv4_prefix": 33}}])
        )),
        "rule \"per-client\" (rules[0]): key[0].client_ip.ipv4_prefix: 33 is out of range; use 0 to \
         32 (an IPv4 address has 32 bits)"
    );
    assert_eq!(
        rule_error(rule_with(
            "key",
            json!([{"client_ip": {"ipv6_prefix": 129}}])
        )),
        "rule \"per-client\" (rules[0]): key[0].client_ip.ipv6_prefix: 129 is out of range; use 0 to \
         128 (an IPv6 address has 128 bits)"
    );
}

#[test]
fn header_cookie_and_query_names_must_be_valid() {
    assert_eq!(
        rule_error(rule_with("key", json!([{"header": ""}]))),
        "rule \"per-client\" (rules[0]): key[0].header: must not be empty"
    );
    assert_eq!(
        rule_error(rule_with("key", json!([{"header": "x-api key"}]))),
        "rule \"per-client\" (rules[0]): key[0].header: \"x-api key\" is not a valid name; use \
         letters, digits and !#$%&'*+-.^_`|~ only"
    );
    assert!(
        rule_error(rule_with("key", json!([{"cookie": "a=b"}])))
            .contains("key[0].cookie: \"a=b\" is not a valid name")
    );
    assert!(
        rule_error(rule_with("key", json!([{"query": ""}])))
            .contains("key[0].query: must not be empty")
    );
}

#[test]
fn header_names_are_lowercased() {
    let policy =
        compile(json!({"rules": [rule_with("key", json!([{"header": "X-Api-Key"}]))]})).unwrap();
    assert_eq!(
        policy.rules()[0].key().parts(),
        &[sluice_policy::KeyPart::Header {
            name: "x-api-key".into(),
            secret: false
        }]
    );
}

#[test]
fn methods_must_be_uppercase_tokens() {
    assert_eq!(
        rule_error(rule_with("match", json!({"methods": ["get"]}))),
        "rule \"per-client\" (rules[0]): match.methods[0]: \"get\" is not uppercase; methods are \
         case-sensitive, use \"GET\""
    );
    assert!(
        rule_error(rule_with("match", json!({"methods": ["GET /"]})))
            .contains("match.methods[0]: \"GET /\" is not an HTTP method")
    );
}

#[test]
fn paths_must_start_with_a_slash() {
    assert_eq!(
        rule_error(rule_with("match", json!({"paths": ["login"]}))),
        "rule \"per-client\" (rules[0]): match.paths[0]: \"login\" does not start with /; paths are \
         matched from the root, e.g. \"/login\""
    );
    assert!(
        error(json!({"exempt": {"path_prefixes": ["metrics/"]}, "rules": [rule()]}))
            .to_string()
            .starts_with("exempt.path_prefixes[0]: \"metrics/\" does not start with /")
    );
}

#[test]
fn host_patterns_are_validated() {
    assert_eq!(
        rule_error(rule_with(
            "match",
            json!({"hosts": ["https://api.example.com"]})
        )),
        "rule \"per-client\" (rules[0]): match.hosts[0]: \"https://api.example.com\" is not a host \
         pattern; use a host name such as \"api.example.com\" or \"*.example.com\" for its \
         subdomains (no port, no scheme)"
    );
}

#[test]
fn empty_match_lists_are_rejected() {
    assert_eq!(
        rule_error(rule_with("match", json!({"paths": []}))),
        "rule \"per-client\" (rules[0]): match.paths: must not be empty: an empty list would match \
         no request; remove the field to match every request"
    );
}

#[test]
fn the_status_must_be_an_error_status() {
    assert_eq!(
        error(json!({"response": {"status": 200}, "rules": [rule()]})).to_string(),
        "response.status: 200 is out of range; use 400 to 599 (a denial is a client or server error; \
         429 Too Many Requests is the standard status, 503 Service Unavailable the usual alternative)"
    );
}

#[test]
fn the_header_style_must_be_known() {
    assert_eq!(
        error(json!({"response": {"headers": "draft"}, "rules": [rule()]})).to_string(),
        "response.headers: \"draft\" is not one of ietf, legacy, both or none"
    );
}

#[test]
fn max_keys_has_a_floor_and_a_ceiling() {
    assert_eq!(
        error(json!({"store": {"max_keys": 0}, "rules": [rule()]})).to_string(),
        "store.max_keys: 0 is out of range; use 1 to 16777216 (each rule's table is created in the \
         proxy's shared data at start-up)"
    );
    assert_eq!(
        rule_error(rule_with("max_keys", json!(16_777_217))),
        "rule \"per-client\" (rules[0]): max_keys: 16777217 is out of range; use 1 to 16777216 \
         (each rule's table is created in the proxy's shared data at start-up)"
    );
}

#[test]
fn a_rule_whose_table_could_exceed_a_gibibyte_is_rejected() {
    let mut r = rule_with("limit", json!({"requests": 1000, "period": "1h"}));
    r["algorithm"] = json!("sliding_log");
    r["max_keys"] = json!(1_000_000);
    assert_eq!(
        rule_error(r.clone()),
        "rule \"per-client\" (rules[0]): max_keys: the rule's counters for 1000000 keys could take \
         up to 7.5 GiB of the proxy's shared memory, more than the 1.0 GiB allowed per rule; lower \
         max_keys, or for sliding_log lower limit.requests or use sliding_window"
    );
    r["max_keys"] = json!(65_536);
    assert!(compile(json!({"rules": [r]})).is_ok());
    let mut big = rule_with("max_keys", json!(16_777_216));
    big["algorithm"] = json!("sliding_window");
    assert!(compile(json!({"rules": [big]})).is_ok());
}

#[test]
fn cas_retries_are_capped() {
    assert_eq!(
        error(json!({"store": {"cas_retries": 101}, "rules": [rule()]})).to_string(),
        "store.cas_retries: 101 is out of range; use 0 to 100 (retries of a lost compare-and-swap \
         race per request; a few are enough)"
    );
    assert!(compile(json!({"store": {"cas_retries": 0}, "rules": [rule()]})).is_ok());
}

#[test]
fn the_client_ip_source_is_validated() {
    assert_eq!(
        error(json!({"client_ip": {"source": "x_forwarded_for"}, "rules": [rule()]})).to_string(),
        "client_ip.trusted_hops: required, e.g. \"trusted_hops\": 1"
    );
    assert_eq!(
        error(json!({"client_ip": {"source": "x_forwarded_for", "trusted_hops": 0}, "rules": [rule()]}))
            .to_string(),
        "client_ip.trusted_hops: 0 is out of range; use 1 to 32 (the number of proxies in front of \
         this one that append to X-Forwarded-For)"
    );
    assert_eq!(
        error(json!({"client_ip": {"source": "forwarded"}, "rules": [rule()]})).to_string(),
        "client_ip.source: \"forwarded\" is not one of peer, x_forwarded_for or header"
    );
    assert_eq!(
        error(json!({"client_ip": {"source": "header"}, "rules": [rule()]})).to_string(),
        "client_ip.name: required, e.g. \"name\": \"cf-connecting-ip\""
    );
    // A field of another source is a mistake, not something to ignore.
    assert_eq!(
        error(json!({"client_ip": {"source": "peer", "trusted_hops": 1}, "rules": [rule()]}))
            .to_string(),
        "client_ip.trusted_hops: unknown field \"trusted_hops\"; the fields here are source"
    );
}

#[test]
fn the_content_type_must_be_a_header_value() {
    assert_eq!(
        error(
            json!({"response": {"content_type": "text/plain\nx-injected: 1"}, "rules": [rule()]})
        )
        .to_string(),
        "response.content_type: contains a character that cannot be sent in an HTTP header \
         (control characters and line breaks are not allowed)"
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    assert_eq!(
        error(json!({"exempt": {"cors_preflight": "yes"}, "rules": [rule()]})).to_string(),
        "exempt.cors_preflight: expected true or false, found a string"
    );
    assert_eq!(
        rule_error(rule_with("match", json!({"paths": "/login"}))),
        "rule \"per-client\" (rules[0]): match.paths: expected a list, found a string"
    );
}

#[test]
fn errors_expose_rule_path_and_problem_separately() {
    let err = error(json!({"rules": [rule(), rule_with("name", json!("b")), {
        "name": "c", "key": ["client_ip"], "limit": {"requests": 1, "period": "1y"}
    }]}));
    let at = err.rule().unwrap();
    assert_eq!((at.index, at.name.as_deref()), (2, Some("c")));
    assert_eq!(err.path(), "limit.period");
    assert_eq!(
        err.problem(),
        &Problem::InvalidDuration { text: "1y".into() }
    );
}
