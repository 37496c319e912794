//! The global tier in the policy: the `global` object and `scope` are validated with errors
//! naming the rule and field; the decide protocol's JSON is exact and a bad reply is an error
//! value; and a request through `Policy::start`/`finish` against the in-memory service gets
//! the same responses as the all-local configuration, all or nothing across both.

use serde_json::{Value, json};
use sluice_core::{Limiter, MemoryStore, Seed, Semantics, Status};
use sluice_policy::global::{
    CallFailure, DecideReply, DecideRequest, FailureLog, LOG_INTERVAL, MemoryService, ReplyError,
    Started,
};
use sluice_policy::{OwnedRequest, Policy, Response, Scope};

const T0: u64 = 1_767_225_600_000_000_000;
const SEC: u64 = 1_000_000_000;

fn req(peer: &str, headers: &[(&str, &str)]) -> OwnedRequest {
    OwnedRequest {
        method: "GET".into(),
        path: "/".into(),
        authority: "api.example.com".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        peer: Some(peer.into()),
    }
}

fn policy(config: &Value) -> Policy {
    Policy::from_json(config.to_string().as_bytes()).expect("a valid config")
}

fn error(config: &Value) -> String {
    Policy::from_json(config.to_string().as_bytes())
        .expect_err("an invalid config")
        .to_string()
}

fn rule(name: &str, scope: &str, requests: u64) -> Value {
    json!({"name": name, "scope": scope, "key": ["client_ip"],
           "limit": {"requests": requests, "period": "1m"}})
}

#[test]
fn the_global_object_has_defaults_and_scope_defaults_to_local() {
    let p = policy(&json!({"global": {"cluster": "limits"},
                           "rules": [rule("g", "global", 5), {"name": "l", "key": ["client_ip"],
                                     "limit": {"requests": 1, "period": "1s"}}]}));
    let global = p.global().expect("global");
    assert_eq!(global.cluster(), "limits");
    assert_eq!(global.authority(), "limits");
    assert_eq!(global.path(), "/v1/decide");
    assert_eq!(global.timeout(), 100_000_000);
    assert_eq!(global.domain(), "sluice");
    assert_eq!(p.rules()[0].scope(), Scope::Global);
    assert_eq!(p.rules()[1].scope(), Scope::Local);
    assert!(p.has_global_rules());

    let p = policy(
        &json!({"global": {"cluster": "c", "authority": "svc.local", "path": "/d",
                                      "timeout": "2s", "domain": "edge-1"},
                           "rules": [rule("l", "local", 5)]}),
    );
    let global = p.global().expect("global");
    assert_eq!(
        (
            global.authority(),
            global.path(),
            global.timeout(),
            global.domain()
        ),
        ("svc.local", "/d", 2 * SEC, "edge-1")
    );
    assert!(
        !p.has_global_rules(),
        "global without a global rule is allowed"
    );
    assert_eq!(p.domain(), "edge-1");
}

#[test]
fn bad_global_fields_are_named() {
    let cases = [
        (
            json!({"rules": [rule("per-client", "global", 5)]}),
            "rule \"per-client\" (rules[0]): scope: \"global\" needs the top-level \"global\" object",
        ),
        (
            json!({"global": {"cluster": "c"}, "rules": [rule("r", "everywhere", 5)]}),
            "rule \"r\" (rules[0]): scope: \"everywhere\" is not one of local or global",
        ),
        (
            json!({"global": {}, "rules": [rule("r", "local", 5)]}),
            "global.cluster: required",
        ),
        (
            json!({"global": {"cluster": ""}, "rules": [rule("r", "local", 5)]}),
            "global.cluster: must not be empty",
        ),
        (
            json!({"global": {"cluster": "c", "timeout": "90s"}, "rules": [rule("r", "local", 5)]}),
            "global.timeout: \"90s\" is out of range; use 1ms to 60s",
        ),
        (
            json!({"global": {"cluster": "c", "timeout": "0ms"}, "rules": [rule("r", "local", 5)]}),
            "global.timeout: \"0ms\" is out of range",
        ),
        (
            json!({"global": {"cluster": "c", "timeout": "fast"}, "rules": [rule("r", "local", 5)]}),
            "global.timeout: \"fast\" is not a duration",
        ),
        (
            json!({"global": {"cluster": "c", "path": "v1"}, "rules": [rule("r", "local", 5)]}),
            "global.path: \"v1\" does not start with /",
        ),
        (
            json!({"global": {"cluster": "c", "domain": "a{b}"}, "rules": [rule("r", "local", 5)]}),
            "global.domain: \"a{b}\" is not a valid domain",
        ),
        (
            json!({"global": {"cluster": "c", "authority": "a\r\nb"}, "rules": [rule("r", "local", 5)]}),
            "global.authority: contains a character that cannot be sent",
        ),
        (
            json!({"global": {"cluster": "c", "port": 1}, "rules": [rule("r", "local", 5)]}),
            "global.port: unknown field \"port\"",
        ),
        (
            json!({"global": "c", "rules": [rule("r", "local", 5)]}),
            "global: expected an object, found a string",
        ),
    ];
    for (config, expected) in cases {
        let message = error(&config);
        assert!(
            message.starts_with(expected),
            "{config}:\n  got      {message}\n  expected {expected}…"
        );
    }
}

#[test]
fn the_decide_request_is_exact_json_with_hex_keys_and_limit_signatures() {
    let p = policy(
        &json!({"global": {"cluster": "c", "domain": "d"}, "rules": [
        {"name": "a", "scope": "global", "key": [{"header": "x-k"}], "cost": 3,
         "algorithm": "fixed_window", "limit": {"requests": 10, "period": "1s"}}]}),
    );
    let request = req("203.0.113.7:1000", &[("x-k", "\u{0}é")]);
    let mut limiter = Limiter::new(Seed { k0: 1, k1: 2 }, 8);
    let Started::Call(call) = p.start(&request, T0, &mut limiter, &mut MemoryStore::default())
    else {
        panic!("a global rule applies: a call");
    };
    // The key is exactly the bytes the local path keys on.
    let key = p.evaluate(&request).checks()[0].key.clone();
    assert!(key.ends_with("\u{0}é".as_bytes()));
    assert_eq!(
        String::from_utf8(call.body().to_vec()).unwrap(),
        format!(
            r#"{{"domain":"d","checks":[{{"rule":"a","key":"{}","cost":3,"limit":"fixed_window:10/1000000000/10"}}]}}"#,
            sluice_policy::global::hex::encode(&key)
        )
    );
    let parsed = DecideRequest::from_json(call.body()).unwrap();
    let checks = parsed.checks(&p).unwrap();
    assert_eq!(checks[0].key, key);
    assert_eq!(checks[0].cost, 3);
}

#[test]
fn the_service_side_refuses_what_it_cannot_decide_with_the_right_status() {
    let p = policy(&json!({"global": {"cluster": "c"}, "rules": [rule("r", "global", 5)]}));
    let check =
        |r: &str, key: &str, limit: &str| json!({"rule": r, "key": key, "cost": 1, "limit": limit});
    let ok = "gcra:5/60000000000/5";
    let cases = [
        (json!({"domain": "other", "checks": []}), 404, "domain"),
        (
            json!({"domain": "sluice", "checks": [check("x", "00", ok)]}),
            404,
            "checks[0].rule",
        ),
        (
            json!({"domain": "sluice", "checks": [check("r", "0", ok)]}),
            400,
            "checks[0].key",
        ),
        (
            json!({"domain": "sluice", "checks": [check("r", "zz", ok)]}),
            400,
            "checks[0].key",
        ),
        (
            json!({"domain": "sluice", "checks": [check("r", "00", "gcra:6/60000000000/6")]}),
            409,
            "checks[0].limit",
        ),
        (
            json!({"domain": "sluice", "checks": [check("r", "00", "gcra:5/1m/5")]}),
            400,
            "checks[0].limit",
        ),
        (
            json!({"domain": "sluice", "checks": [check("r", "00", ok), check("r", "01", ok)]}),
            400,
            "checks[1].rule",
        ),
        (
            json!({"domain": "sluice", "checks": [{"rule": "r", "key": "00", "limit": ok}]}),
            400,
            "cost",
        ),
    ];
    for (body, status, field) in cases {
        let error = DecideRequest::from_json(body.to_string().as_bytes())
            .and_then(|request| request.checks(&p).map(|_| ()))
            .expect_err("refused");
        assert_eq!(error.http_status(), status, "{body}: {error}");
        assert!(error.to_string().contains(field), "{body}: {error}");
    }
    let too_many: Vec<Value> = (0..65)
        .map(|i| check("r", &format!("{i:02x}"), ok))
        .collect();
    let body = json!({"domain": "sluice", "checks": too_many}).to_string();
    assert_eq!(
        DecideRequest::from_json(body.as_bytes())
            .unwrap_err()
            .http_status(),
        400
    );
    let huge = vec![b' '; 70_000];
    assert_eq!(
        DecideRequest::from_json(&huge).unwrap_err().http_status(),
        413
    );
}

#[test]
fn a_bad_reply_is_an_error_value() {
    let outcome = json!({"status": "allowed", "limit": 5, "remaining": 4,
                         "reset_after_ns": 1, "retry_after_ns": 0});
    let denied = json!({"status": "denied", "limit": 5, "remaining": 0,
                        "reset_after_ns": 1, "retry_after_ns": 1});
    let parse = |v: Value, n: usize| DecideReply::parse(v.to_string().as_bytes(), n);
    assert!(parse(json!({"allowed": true, "outcomes": [outcome]}), 1).is_ok());
    assert!(matches!(
        parse(json!({"allowed": true, "outcomes": [outcome]}), 2),
        Err(ReplyError::OutcomeCount {
            expected: 2,
            found: 1
        })
    ));
    assert_eq!(
        parse(json!({"allowed": true, "outcomes": [denied]}), 1),
        Err(ReplyError::Inconsistent)
    );
    assert_eq!(
        parse(json!({"allowed": false, "outcomes": [outcome]}), 1),
        Err(ReplyError::Inconsistent)
    );
    let mut bad_status = outcome.clone();
    bad_status["status"] = json!("maybe");
    for body in [
        json!({"allowed": true, "outcomes": [bad_status]}).to_string(),
        json!({"allowed": true}).to_string(),
        json!({"allowed": true, "outcomes": [{"status": "allowed", "limit": -1}]}).to_string(),
        String::from("<html>502</html>"),
        String::new(),
    ] {
        assert!(
            matches!(
                DecideReply::parse(body.as_bytes(), 1),
                Err(ReplyError::Json { .. })
            ),
            "{body}"
        );
    }
    assert!(matches!(
        DecideReply::parse(&vec![b' '; 70_000], 1),
        Err(ReplyError::TooLarge { .. })
    ));
}

/// The service as a proxy sees it: a body in, a reply body or a failure out.
type Service<'a> = dyn FnMut(&[u8], u64) -> Result<Vec<u8>, CallFailure> + 'a;

/// A proxy's view: a policy, its limiter and shared data, and the service it calls.
struct Proxy {
    policy: Policy,
    limiter: Limiter,
    store: MemoryStore,
}

impl Proxy {
    fn new(config: &Value) -> Proxy {
        let policy = policy(config);
        let limiter = Limiter::new(Seed { k0: 3, k1: 4 }, 8);
        let mut store = MemoryStore::new(Semantics::Envoy);
        for rule in policy.rules() {
            limiter
                .prepare(rule.name(), &rule.limit(), rule.max_keys(), &mut store)
                .unwrap();
        }
        Proxy {
            policy,
            limiter,
            store,
        }
    }

    /// The response, and whether the service was called.
    fn send(
        &mut self,
        request: &OwnedRequest,
        now: u64,
        service: &mut Service<'_>,
    ) -> (Response<'_>, bool) {
        match self
            .policy
            .start(request, now, &mut self.limiter, &mut self.store)
        {
            Started::Done(handled) => (handled.response, false),
            Started::Call(call) => {
                let answer = service(call.body(), now);
                let finished = self.policy.finish(
                    call,
                    answer.as_deref().map_err(Clone::clone),
                    &mut self.limiter,
                    &mut self.store,
                );
                (finished.handled.response, true)
            }
        }
    }

    fn handle(&mut self, request: &OwnedRequest, now: u64) -> Response<'_> {
        self.policy
            .handle(request, now, &mut self.limiter, &mut self.store)
            .response
    }
}

fn with_scopes(local: &str, global: &str) -> Value {
    json!({"global": {"cluster": "limits"}, "response": {"headers": "both"}, "rules": [
        {"name": "burst", "scope": local, "key": ["client_ip"], "algorithm": "fixed_window",
         "limit": {"requests": 3, "period": "10s"}},
        {"name": "per-client", "scope": global, "key": ["client_ip"],
         "algorithm": "sliding_window", "limit": {"requests": 5, "period": "1m"}}]})
}

#[test]
fn global_rules_decide_as_the_same_rules_would_locally_all_or_nothing() {
    let mut local = Proxy::new(&with_scopes("local", "local"));
    let mut global = Proxy::new(&with_scopes("local", "global"));
    let mut service = MemoryService::new(policy(&with_scopes("local", "global")));
    let mut ask = |body: &[u8], now: u64| match service.decide(body, now) {
        (200, reply) => Ok(reply),
        (status, _) => Err(CallFailure::Status(status)),
    };
    let request = req("203.0.113.7:1000", &[]);
    let mut calls = 0;
    // 3 per 10 s locally, 5 per minute globally: denials by either, at various times.
    for (i, at) in [
        0, 0, 0, 0, 5, 10, 10, 10, 11, 20, 21, 30, 59, 60, 61, 62, 70,
    ]
    .into_iter()
    .enumerate()
    {
        let now = T0 + at * SEC;
        let expected = local.handle(&request, now);
        let (got, called) = global.send(&request, now, &mut ask);
        calls += usize::from(called);
        assert_eq!(got, expected, "request {i} at {at}s");
    }
    assert!(
        calls > 0 && calls < 17,
        "local denials make no call: {calls}"
    );
}

#[test]
fn a_global_denial_refunds_the_local_rule_and_failures_follow_the_failure_mode() {
    let config = |failure_mode: &str| {
        json!({"global": {"cluster": "limits"}, "rules": [
            {"name": "local", "key": ["client_ip"], "limit": {"requests": 2, "period": "1m"},
             "algorithm": "fixed_window"},
            {"name": "global", "scope": "global", "key": ["client_ip"],
             "failure_mode": failure_mode, "limit": {"requests": 1, "period": "1m"}}]})
    };
    let request = req("203.0.113.7:1000", &[]);
    let mut proxy = Proxy::new(&config("open"));
    let mut service = MemoryService::new(policy(&config("open")));
    let mut ask = |body: &[u8], now: u64| Ok(service.decide(body, now).1);
    let (first, _) = proxy.send(&request, T0, &mut ask);
    assert_eq!(
        first.header("ratelimit"),
        Some("\"local\";r=1;t=60, \"global\";r=0;t=60")
    );
    for _ in 0..5 {
        let (denied, called) = proxy.send(&request, T0 + 1, &mut ask);
        assert!(denied.is_deny() && called);
        assert_eq!(denied.header("ratelimit"), Some("\"global\";r=0;t=60"));
    }
    // The local rule spent only the first request's unit: the 5 denials were refunded.
    let (mut out, _) = proxy.send(&request, T0 + 2, &mut |_, _| Err(CallFailure::NoResponse));
    assert!(!out.is_deny());
    assert_eq!(
        out.header("ratelimit"),
        Some("\"local\";r=0;t=60"),
        "fails open: uncounted, unlisted"
    );
    let _ = &mut out;

    let mut closed = Proxy::new(&config("closed"));
    for failure in [
        CallFailure::NoResponse,
        CallFailure::Status(500),
        CallFailure::Dispatch(2),
        CallFailure::BadReply(ReplyError::Inconsistent),
    ] {
        let (denied, _) = closed.send(&request, T0, &mut |_, _| Err(failure.clone()));
        assert!(denied.is_deny(), "{failure}");
        assert_eq!(denied.header("retry-after"), Some("1"));
    }
    // Garbage as a 200 body is a bad reply: closed denies, and the local unit is refunded.
    let (denied, _) = closed.send(&request, T0, &mut |_, _| Ok(b"garbage".to_vec()));
    assert!(denied.is_deny());
    let mut service = MemoryService::new(policy(&config("closed")));
    let (passed, _) = closed.send(&request, T0, &mut |b, n| Ok(service.decide(b, n).1));
    assert_eq!(
        passed.header("ratelimit"),
        Some("\"local\";r=1;t=60, \"global\";r=0;t=60")
    );
}

#[test]
fn the_outcomes_and_metrics_view_leave_out_unasked_global_rules() {
    let config = with_scopes("local", "global");
    let p = policy(&config);
    let mut limiter = Limiter::new(Seed { k0: 1, k1: 1 }, 8);
    let mut store = MemoryStore::default();
    let request = req("203.0.113.7:1000", &[]);
    let mut service = MemoryService::new(policy(&config));
    for _ in 0..3 {
        let Started::Call(call) = p.start(&request, T0, &mut limiter, &mut store) else {
            panic!("a call");
        };
        let reply = service.decide(call.body(), T0).1;
        let finished = p.finish(call, Ok(&reply), &mut limiter, &mut store);
        assert_eq!(finished.handled.outcomes().count(), 2);
    }
    let Started::Done(handled) = p.start(&request, T0, &mut limiter, &mut store) else {
        panic!("the local rule denies: no call");
    };
    let statuses: Vec<(usize, Status)> =
        handled.outcomes().map(|(i, _, o)| (i, o.status)).collect();
    assert_eq!(statuses, vec![(0, Status::Denied)]);
}

#[test]
fn call_failures_are_logged_once_per_kind_per_interval() {
    let mut log = FailureLog::default();
    let mut lines = 0;
    let mut suppressed = 0;
    for i in 0..1000u64 {
        let failure = if i % 2 == 0 {
            CallFailure::NoResponse
        } else {
            CallFailure::Status(503)
        };
        if let Some(n) = log.record(&failure, T0 + i * 1_000_000) {
            lines += 1;
            suppressed += n;
        }
    }
    assert_eq!(lines, 2, "1000 failures over 1 s: one line per kind");
    assert_eq!(suppressed, 0);
    assert_eq!(
        log.record(&CallFailure::NoResponse, T0 + LOG_INTERVAL),
        Some(499)
    );
}
