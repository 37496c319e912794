//! From a request to checks, and from a verdict to a response and log lines, through the
//! public API.

use std::cell::Cell;

use serde_json::{Value, json};
use sluice_core::{Limiter, MemoryStore, Seed, Semantics, Status, StoreError};
use sluice_policy::{Evaluation, Policy, Request, Response};

const NOW: u64 = 1_767_225_600_000_000_000;

#[derive(Default)]
struct Req {
    method: &'static str,
    path: &'static str,
    authority: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    peer: Option<&'static str>,
    /// How many times the peer address and `X-Forwarded-For` were read.
    address_reads: Cell<u32>,
}

impl Req {
    fn get(path: &'static str) -> Req {
        Req {
            method: "GET",
            path,
            authority: "api.example.com",
            peer: Some("203.0.113.7:41000"),
            ..Req::default()
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Req {
        self.headers.push((name, value));
        self
    }
}

impl Request for Req {
    fn method(&self) -> &[u8] {
        self.method.as_bytes()
    }
    fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }
    fn authority(&self) -> &[u8] {
        self.authority.as_bytes()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_bytes())
    }
    fn for_each_header(&self, name: &str, f: &mut dyn FnMut(&[u8])) {
        if name == "x-forwarded-for" {
            self.address_reads.set(self.address_reads.get() + 1);
        }
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .for_each(|(_, v)| f(v.as_bytes()));
    }
    fn peer_address(&self) -> Option<&[u8]> {
        self.address_reads.set(self.address_reads.get() + 1);
        self.peer.map(str::as_bytes)
    }
}

fn policy(config: Value) -> Policy {
    Policy::from_json(config.to_string().as_bytes()).unwrap()
}

fn limiter(policy: &Policy) -> (Limiter, MemoryStore) {
    let limiter = Limiter::new(Seed { k0: 1, k1: 2 }, policy.cas_retries());
    (limiter, MemoryStore::new(Semantics::Envoy))
}

#[test]
fn only_matching_rules_are_checked_and_each_keeps_its_rule_index() {
    let p = policy(json!({"rules": [
        {"name": "login", "match": {"paths": ["/login"]}, "key": ["client_ip"], "limit": {"requests": 5, "period": "1m"}},
        {"name": "api", "match": {"path_prefixes": ["/api/"]}, "key": ["client_ip"], "limit": {"requests": 5, "period": "1m"}},
        {"name": "all", "key": [{"const": "all"}], "limit": {"requests": 5, "period": "1m"}, "cost": 2}
    ]}));
    let evaluation = p.evaluate(&Req::get("/api/items?x=1"));
    assert_eq!(evaluation.rule_indices(), &[1, 2]);
    let names: Vec<&str> = evaluation.checks().iter().map(|c| c.rule).collect();
    assert_eq!(names, ["api", "all"]);
    assert_eq!(evaluation.checks()[1].cost, 2);
    assert_eq!(evaluation.checks()[1].max_keys, 65_536);
}

#[test]
fn exempt_requests_have_no_checks() {
    let p = policy(json!({"exempt": {"paths": ["/healthz"]}, "rules": [
        {"name": "all", "key": ["client_ip"], "limit": {"requests": 1, "period": "1m"}}
    ]}));
    let evaluation = p.evaluate(&Req::get("/healthz?probe=1"));
    assert_eq!(evaluation, Evaluation::Exempt);
    assert!(evaluation.checks().is_empty());
}

#[test]
fn skip_leaves_out_rules_whose_key_is_incomplete_and_group_keeps_them() {
    let p = policy(json!({"rules": [
        {"name": "skip", "key": [{"header": "x-user"}], "when_key_missing": "skip", "limit": {"requests": 1, "period": "1m"}},
        {"name": "group", "key": [{"header": "x-user"}], "limit": {"requests": 1, "period": "1m"}}
    ]}));
    assert_eq!(p.evaluate(&Req::get("/")).rule_indices(), &[1]);
    assert_eq!(
        p.evaluate(&Req::get("/").header("x-user", "u1"))
            .rule_indices(),
        &[0, 1]
    );
}

#[test]
fn the_client_address_is_read_only_when_a_key_needs_it_and_only_once() {
    let by_header = policy(json!({"rules": [
        {"name": "a", "key": [{"header": "x-user"}], "limit": {"requests": 1, "period": "1m"}}
    ]}));
    let req = Req::get("/");
    by_header.evaluate(&req);
    assert_eq!(req.address_reads.get(), 0);

    let by_address = policy(
        json!({"client_ip": {"source": "x_forwarded_for", "trusted_hops": 1}, "rules": [
            {"name": "a", "key": ["client_ip"], "limit": {"requests": 1, "period": "1m"}},
            {"name": "b", "key": ["client_ip", "path"], "limit": {"requests": 1, "period": "1m"}}
        ]}),
    );
    let req = Req::get("/").header("x-forwarded-for", "198.51.100.1");
    by_address.evaluate(&req);
    // Two passes over X-Forwarded-For for one lookup, shared by both rules; no peer fallback.
    assert_eq!(req.address_reads.get(), 2);
}

#[test]
fn handle_counts_and_denies_over_a_store() {
    let p = policy(json!({"rules": [
        {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 1, "period": "1m"}, "algorithm": "fixed_window"}
    ]}));
    let (mut limiter, mut store) = limiter(&p);
    let first = p.handle(&Req::get("/"), NOW, &mut limiter, &mut store);
    assert!(matches!(first.response, Response::Pass { .. }));
    assert_eq!(
        first.response.header("ratelimit"),
        Some("\"per-client\";r=0;t=60")
    );
    let second = p.handle(&Req::get("/"), NOW, &mut limiter, &mut store);
    let Response::Deny {
        status,
        body,
        content_type,
        ..
    } = &second.response
    else {
        panic!("expected a denial, got {:?}", second.response);
    };
    assert_eq!(
        (*status, *body, *content_type),
        (429, "rate limit exceeded\n", "text/plain; charset=utf-8")
    );
    assert_eq!(second.response.header("retry-after"), Some("60"));
    let outcomes: Vec<(usize, &str, Status)> = second
        .outcomes()
        .map(|(i, check, o)| (i, check.rule, o.status))
        .collect();
    assert_eq!(outcomes, [(0, "per-client", Status::Denied)]);
}

#[test]
fn no_store_access_when_no_rule_applies() {
    let p = policy(json!({"rules": [
        {"name": "login", "match": {"paths": ["/login"]}, "key": ["client_ip"], "limit": {"requests": 1, "period": "1m"}}
    ]}));
    let (mut limiter, mut store) = limiter(&p);
    let handled = p.handle(&Req::get("/other"), NOW, &mut limiter, &mut store);
    assert!(handled.verdict.is_none());
    assert_eq!(handled.response, Response::pass());
    assert_eq!(store.calls().gets, 0);
    assert_eq!(handled.outcomes().count(), 0);
}

#[test]
fn a_shadow_denial_is_a_log_line_naming_rule_and_key() {
    let p = policy(json!({"rules": [
        {"name": "watch", "key": ["client_ip", {"header": "x-api-key", "secret": true}],
         "limit": {"requests": 1, "period": "1m"}, "algorithm": "fixed_window", "mode": "shadow"}
    ]}));
    let (mut limiter, mut store) = limiter(&p);
    let req = Req::get("/").header("x-api-key", "sk_live_abcdef");
    let first = p.handle(&req, NOW, &mut limiter, &mut store);
    assert_eq!(first.notices().count(), 0);
    let second = p.handle(&req, NOW, &mut limiter, &mut store);
    assert!(matches!(second.response, Response::Pass { .. }));
    let lines: Vec<String> = second.notices().map(|n| n.to_string()).collect();
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert!(
        line.starts_with("rule \"watch\" (shadow) would deny key client_ip=203.0.113.7 header:x-api-key=<secret #"),
        "{line}"
    );
    assert!(
        line.ends_with("; retry after 60s; the request passed"),
        "{line}"
    );
    assert!(!line.contains("sk_live"), "{line}");
}

#[test]
fn a_store_failure_is_a_log_line_saying_what_the_rule_did() {
    let p = policy(json!({"rules": [
        {"name": "open", "key": ["client_ip"], "limit": {"requests": 5, "period": "1m"}},
        {"name": "closed", "key": [{"const": "all"}], "limit": {"requests": 5, "period": "1m"}, "failure_mode": "closed"}
    ]}));
    let (mut limiter, mut store) = limiter(&p);
    store.set_outage(Some(StoreError::Unavailable));
    let handled = p.handle(&Req::get("/"), NOW, &mut limiter, &mut store);
    assert!(handled.response.is_deny());
    assert_eq!(handled.response.header("retry-after"), Some("1"));
    let lines: Vec<String> = handled.notices().map(|n| n.to_string()).collect();
    assert_eq!(
        lines,
        [
            "rule \"open\": counter store failed for key client_ip=203.0.113.7: the proxy offers no \
             shared data; failing open, the rule did not count the request",
            "rule \"closed\": counter store failed for key const=\"all\": the proxy offers no shared \
             data; failing closed, the request was denied",
        ]
    );
}

#[test]
fn rules_expose_their_memory_ceiling() {
    let p = policy(json!({"rules": [
        {"name": "small", "key": ["client_ip"], "limit": {"requests": 5, "period": "1m"}, "max_keys": 4},
        {"name": "log", "key": ["client_ip"], "limit": {"requests": 1000, "period": "1h"}, "algorithm": "sliding_log", "max_keys": 4}
    ]}));
    let small = p.rules()[0].max_store_bytes();
    let log = p.rules()[1].max_store_bytes();
    assert!(small > 0 && small < 200, "{small}");
    assert!(
        log > 4 * 1000 * 2,
        "a full sliding log of 1000 entries per key: {log}"
    );
}

/// `handle_into` over buffers given back after each request decides and answers exactly as
/// `handle` (and as `respond`, which renders the `RateLimit-Policy` items afresh), and builds
/// the next request's headers in the values the previous one gave back.
#[test]
fn handle_into_answers_as_handle_does_and_reuses_what_it_is_given_back() {
    use sluice_policy::RequestBuffers;

    let p = policy(json!({"response": {"headers": "both"}, "rules": [
        {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 3, "period": "1m"}},
        {"name": "per-user", "key": [{"header": "x-user"}], "when_key_missing": "skip",
         "limit": {"requests": 2, "period": "1500ms"}, "algorithm": "sliding_window"},
        {"name": "watch", "key": [{"const": "all"}], "mode": "shadow",
         "limit": {"requests": 4, "period": "1h"}, "algorithm": "fixed_window"},
        {"name": "plans", "key": [{"header": "x-user"}],
         "tier": {"from": {"header": "x-plan"},
                  "limits": {"free": {"requests": 2, "period": "1m"},
                             "pro": {"requests": 5, "period": "1m"}},
                  "default": "free"}}
    ]}));
    let (mut owned_limiter, mut owned_store) = limiter(&p);
    let (mut limiter, mut store) = limiter(&p);
    let mut buffers = RequestBuffers::new();
    let requests = [
        Req::get("/a"),
        Req::get("/a").header("x-user", "u1"),
        Req::get("/b")
            .header("x-user", "u1")
            .header("x-plan", "pro"),
        Req::get("/a")
            .header("x-user", "u2")
            .header("x-plan", "free"),
        Req::get("/c"),
        Req::get("/a").header("x-user", "u1"),
        Req::get("/a")
            .header("x-user", "u2")
            .header("x-plan", "pro"),
    ];
    let mut given_back: Vec<*const u8> = Vec::new();
    for (i, request) in requests.iter().cycle().take(3 * requests.len()).enumerate() {
        let now = NOW + i as u64 * 100_000_000;
        let expected = p.handle(request, now, &mut owned_limiter, &mut owned_store);
        let handled = p.handle_into(request, now, &mut limiter, &mut store, &mut buffers);
        assert_eq!(handled.response, expected.response, "request {i}");
        assert_eq!(handled.verdict, expected.verdict, "request {i}");
        assert_eq!(handled.evaluation, expected.evaluation, "request {i}");
        if let Some(verdict) = &handled.verdict {
            assert_eq!(
                p.respond(handled.evaluation.checks(), verdict),
                handled.response,
                "request {i}"
            );
        }
        // Once the first rounds have given back as many values as a request needs, every
        // value is one given back before.
        for (name, value) in handled.response.headers() {
            if i >= 2 * requests.len() {
                assert!(
                    given_back.contains(&value.as_ptr()),
                    "request {i}: {name} in a new buffer"
                );
            }
            given_back.push(value.as_ptr());
        }
        buffers.reclaim(handled);
    }
}
