//! The sluice filter against a pass-through filter, in the wasmtime host (`sluice-host`):
//! what one request costs in wasm fuel (instructions, deterministic), in host calls (by ABI
//! function, deterministic) and in time; and the size of the shipped `.wasm`.
//!
//! The pass-through filter (`benches/passthrough-filter`) reads what sluice reads per
//! request (the header map, the clock, `source.address`) and does nothing else, so the
//! difference is the rate limiting. Both run with the same requests, the same fake clock
//! (one millisecond per request) and quotas large enough that every request is allowed: the
//! allowed path is the longer one (it writes the counters and adds the rate-limit headers).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sluice_host::fake_service::FakeService;
use sluice_host::{
    Clock, Exchange, FilterModule, FuelMetering, HostCallCounting, HostCalls, HttpRequest,
    HttpResponse, LogLevel, Proxy, ProxyOptions, RequestOutcome, StreamReport,
};

/// The pass-through filter, built by this crate's build script.
pub const PASSTHROUGH_FILTER_WASM: &str = env!("PASSTHROUGH_FILTER_WASM");
/// The sluice filter, built by host-tests' build script (the release build that ships).
pub const SLUICE_FILTER_WASM: &str = sluice_host::test_filters::SLUICE_FILTER_WASM;

/// The sluice filter built with its `count-allocations` feature (this crate's build script).
pub const SLUICE_ALLOCATIONS_WASM: &str = env!("SLUICE_ALLOCATIONS_WASM");

/// 2026-01-01T00:00:00Z.
const T0_NS: u64 = 1_767_225_600_000_000_000;
/// Distinct clients the requests come from.
const CLIENTS: u32 = 256;

/// One rule keyed by client address: the smallest useful configuration.
pub const ONE_RULE: &str = r#"{"rules": [
  {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 100000, "period": "1s"}}
]}"#;

/// Five rules that all apply to every benchmark request, one per kind of key and every
/// algorithm but the sliding log (whose state grows with its limit).
pub const FIVE_RULES: &str = r#"{"rules": [
  {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 100000, "period": "1s"}},
  {"name": "per-api-key", "match": {"path_prefixes": ["/api/"]},
   "key": [{"header": "x-api-key", "secret": true}], "when_key_missing": "skip",
   "limit": {"requests": 1000000, "period": "1h"}, "algorithm": "fixed_window"},
  {"name": "per-route", "match": {"methods": ["GET", "POST"]}, "key": ["method", "path"],
   "limit": {"requests": 1000000, "period": "1m"}, "algorithm": "sliding_window"},
  {"name": "per-host", "match": {"hosts": ["*.example.com"]}, "key": ["host"],
   "limit": {"requests": 1000000, "period": "1s"}},
  {"name": "global", "key": [{"const": "global"}],
   "limit": {"requests": 10000000, "period": "1s"}, "algorithm": "fixed_window"}
]}"#;

/// One concurrency rule keyed by client address, with room for every request: each request
/// takes a slot when it is checked and gives it back when its stream ends.
pub const ONE_CONCURRENCY_RULE: &str = r#"{"rules": [
  {"name": "in-flight", "key": ["client_ip"], "concurrency": {"max": 1000, "slot_ttl": "60s"}}
]}"#;

/// One delay rule keyed by client address: 1,000 requests a second (one every millisecond),
/// a burst of 1, held up to a second. Of two requests from one client at the same time, the
/// first passes and the second is held for 1 ms ([`held_costs`]).
pub const ONE_DELAY_RULE: &str = r#"{"rules": [
  {"name": "spaced", "key": ["client_ip"], "limit": {"requests": 1000, "period": "1s", "burst": 1},
   "delay": {"max": "1s"}}
]}"#;

/// The one rule made global with a lease: each client's first request waits for a slice of
/// 1,000 units from the rate-limit service ([`FakeService`]); every later one is decided
/// from the slice in shared data, with no call (the slices outlive the benchmark's run).
pub const ONE_LEASED_RULE: &str = r#"{"global": {"cluster": "limits"}, "rules": [
  {"name": "per-client", "key": ["client_ip"], "scope": "global",
   "limit": {"requests": 1000000, "period": "10s"},
   "lease": {"size": 1000, "lifetime": "10s"}}
]}"#;

/// The one rule, with no rate-limit headers on responses.
pub const ONE_RULE_NO_HEADERS: &str = r#"{"response": {"headers": "none"}, "rules": [
  {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 100000, "period": "1s"}}
]}"#;

/// The one rule with `warn_at` just below its capacity: every request passes marked, so it
/// also carries the warning header to the upstream and on the response.
pub const ONE_RULE_MARKED: &str = r#"{"rules": [
  {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 100000, "period": "1s"},
   "warn_at": {"remaining": 99999}}
]}"#;

/// The one rule in soft mode, never over its limit: what a configuration that can mark costs
/// a request it does not mark.
pub const ONE_RULE_SOFT_UNMARKED: &str = r#"{"rules": [
  {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 100000, "period": "1s"},
   "mode": "soft"}
]}"#;

/// One rule that no benchmark request matches: the policy's work without the limiter's.
pub const NO_RULE_APPLIES: &str = r#"{"rules": [
  {"name": "login", "match": {"paths": ["/login"]}, "key": ["client_ip"],
   "limit": {"requests": 100000, "period": "1s"}}
]}"#;

/// The one rule at one request per client per hour: once each of the 256 clients has sent
/// one, every request is denied.
pub const ONE_RULE_DENIED: &str = r#"{"rules": [
  {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 1, "period": "1h"}}
]}"#;

/// The five rules, the last one at one request per hour: after the first request, every
/// request is denied by it, with the other four read and decided (and nothing written).
pub const FIVE_RULES_DENIED: &str = r#"{"rules": [
  {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 100000, "period": "1s"}},
  {"name": "per-api-key", "match": {"path_prefixes": ["/api/"]},
   "key": [{"header": "x-api-key", "secret": true}], "when_key_missing": "skip",
   "limit": {"requests": 1000000, "period": "1h"}, "algorithm": "fixed_window"},
  {"name": "per-route", "match": {"methods": ["GET", "POST"]}, "key": ["method", "path"],
   "limit": {"requests": 1000000, "period": "1m"}, "algorithm": "sliding_window"},
  {"name": "per-host", "match": {"hosts": ["*.example.com"]}, "key": ["host"],
   "limit": {"requests": 1000000, "period": "1s"}},
  {"name": "global", "key": [{"const": "global"}],
   "limit": {"requests": 1, "period": "1h"}, "algorithm": "fixed_window"}
]}"#;

/// What one host call costs in a real proxy, in microseconds of NGINX CPU time: measured in
/// NGINX 1.27.4 with ngx_wasm_module (wasmtime) by `benches/nginx/bench.py --cost-model` (the
/// pass-through repeating one call 20 times per request, against the plain pass-through; the
/// median over 4 rounds; BENCHMARKS.md, "Host calls in a real proxy"). A compare-and-swap
/// write was measured with the read it follows (0.62 µs the pair, within the noise of a read
/// alone), so it is counted at what the pair costs beyond the read: nothing measurable.
/// Calls not listed (configuration, logging, HTTP calls) do not happen per request here.
pub const NGINX_CALL_COST_US: &[(&str, f64)] = &[
    ("proxy_get_header_map_pairs", 0.71),
    ("proxy_get_current_time_nanoseconds", 0.19),
    ("proxy_get_property", 0.75),
    ("proxy_get_shared_data", 0.69),
    ("proxy_set_shared_data", 0.0),
    ("proxy_increment_metric", 0.065),
    ("proxy_add_header_map_value", 0.45),
];

/// The NGINX CPU time the host calls of one request cost by [`NGINX_CALL_COST_US`], in
/// microseconds.
pub fn modelled_nginx_host_call_us(costs: &Costs) -> f64 {
    NGINX_CALL_COST_US
        .iter()
        .map(|(function, cost)| costs.calls_per_request(function) * cost)
        .sum()
}

/// One rule keyed by a header (`x-user`), to compare with a claim key.
pub const HEADER_KEY: &str = r#"{"rules": [
  {"name": "per-user", "key": [{"header": "x-user"}], "limit": {"requests": 100000, "period": "1s"}}
]}"#;

/// One rule keyed by the JWT claim `sub` of the payload header (which holds the same user as
/// `x-user`).
pub const CLAIM_KEY: &str = r#"{"jwt": {"payload_header": "x-jwt-payload"}, "rules": [
  {"name": "per-user", "key": [{"claim": "sub"}], "limit": {"requests": 100000, "period": "1s"}}
]}"#;

/// The header-keyed rule with two tiers chosen by a header (`x-plan`).
pub const TIERED_BY_HEADER: &str = r#"{"rules": [
  {"name": "per-user", "key": [{"header": "x-user"}],
   "tier": {"from": {"header": "x-plan"},
            "limits": {"free": {"requests": 100000, "period": "1s"},
                       "pro": {"requests": 1000000, "period": "1s"}},
            "default": "free"}}
]}"#;

/// The claim-keyed rule with two tiers chosen by the claim `plan`.
pub const TIERED_BY_CLAIM: &str = r#"{"jwt": {"payload_header": "x-jwt-payload"}, "rules": [
  {"name": "per-user", "key": [{"claim": "sub"}],
   "tier": {"from": {"claim": "plan"},
            "limits": {"free": {"requests": 100000, "period": "1s"},
                       "pro": {"requests": 1000000, "period": "1s"}},
            "default": "free"}}
]}"#;

/// A filter and its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    PassThrough,
    SluiceOneRule,
    SluiceFiveRules,
    /// For attributing the cost: the one rule without response headers.
    SluiceOneRuleNoHeaders,
    /// For attributing the cost: a rule that does not apply.
    SluiceNoRuleApplies,
    /// Callers: one rule keyed by a header (the identity requests).
    SluiceHeaderKey,
    /// Callers: one rule keyed by a JWT claim.
    SluiceClaimKey,
    /// Callers: the header key, tiers from a header.
    SluiceTieredByHeader,
    /// Callers: the claim key, tiers from a claim.
    SluiceTieredByClaim,
    /// Soft limits: the one rule, every request marked (`warn_at`).
    SluiceOneRuleMarked,
    /// Soft limits: the one rule in soft mode, no request marked.
    SluiceOneRuleSoftUnmarked,
    /// Denials: the one rule, every request denied once warmed up.
    SluiceOneRuleDenied,
    /// Denials: the five rules, every request denied by the last once warmed up.
    SluiceFiveRulesDenied,
    /// Concurrency: one concurrency rule, every request's slot given back when it ends.
    SluiceConcurrency,
    /// Leases: the one rule, global, decided from a leased slice.
    SluiceLeased,
    /// The pass-through making the host calls of one local rule and nothing else (`floor 1`:
    /// a shared-data read and compare-and-swap, two response headers): the floor of
    /// [`Subject::SluiceOneRule`].
    FloorOneRule,
    /// The same floor for five rules, of [`Subject::SluiceFiveRules`].
    FloorFiveRules,
}

impl Subject {
    /// The subjects of the targets.
    pub const ALL: [Subject; 3] = [
        Subject::PassThrough,
        Subject::SluiceOneRule,
        Subject::SluiceFiveRules,
    ];

    /// Variants that split sluice's cost into its parts.
    pub const ATTRIBUTION: [Subject; 2] = [
        Subject::SluiceNoRuleApplies,
        Subject::SluiceOneRuleNoHeaders,
    ];

    /// Every request denied (after the first of each client), for what a denial costs.
    pub const DENIED: [Subject; 2] = [Subject::SluiceOneRuleDenied, Subject::SluiceFiveRulesDenied];

    /// Whether a warmed-up request to this subject is denied (every other subject's are all
    /// allowed).
    pub fn denies(&self) -> bool {
        Subject::DENIED.contains(self)
    }

    /// Keys and tiers by who the caller is, all sent the identity requests
    /// ([`identity_request`]), so they compare with each other (not with [`Subject::ALL`]).
    /// Soft limits, against [`Subject::SluiceOneRule`] (the same requests): a marked request
    /// and an unmarked one under a configuration that can mark.
    pub const SOFT: [Subject; 2] = [
        Subject::SluiceOneRuleMarked,
        Subject::SluiceOneRuleSoftUnmarked,
    ];

    /// A concurrency rule, against [`Subject::SluiceOneRule`] (the same requests): a slot
    /// taken when the request is checked and given back when it ends.
    pub const CONCURRENCY: [Subject; 1] = [Subject::SluiceConcurrency];

    /// A global rule decided from its leased slice, against [`Subject::SluiceOneRule`] (the
    /// same requests, the same limit kept in the proxy): what the global tier costs a request
    /// once the slices are there.
    pub const LEASED: [Subject; 1] = [Subject::SluiceLeased];

    /// Each target subject with the pass-through that makes the same host calls and does
    /// nothing else: what sluice costs above it is its own work in the VM.
    pub const FLOORS: [(Subject, Subject); 2] = [
        (Subject::SluiceOneRule, Subject::FloorOneRule),
        (Subject::SluiceFiveRules, Subject::FloorFiveRules),
    ];

    pub const CALLERS: [Subject; 4] = [
        Subject::SluiceHeaderKey,
        Subject::SluiceClaimKey,
        Subject::SluiceTieredByHeader,
        Subject::SluiceTieredByClaim,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Subject::SluiceHeaderKey => "sluice, header key",
            Subject::SluiceClaimKey => "sluice, JWT claim key",
            Subject::SluiceTieredByHeader => "sluice, header key, tiers",
            Subject::SluiceTieredByClaim => "sluice, claim key, tiers",
            Subject::PassThrough => "pass-through",
            Subject::SluiceOneRule => "sluice, 1 rule",
            Subject::SluiceFiveRules => "sluice, 5 rules",
            Subject::SluiceOneRuleNoHeaders => "sluice, 1 rule, no headers",
            Subject::SluiceNoRuleApplies => "sluice, no rule applies",
            Subject::SluiceOneRuleMarked => "sluice, 1 rule, marked",
            Subject::SluiceOneRuleSoftUnmarked => "sluice, 1 soft rule, unmarked",
            Subject::SluiceOneRuleDenied => "sluice, 1 rule, denied",
            Subject::SluiceFiveRulesDenied => "sluice, 5 rules, denied",
            Subject::SluiceConcurrency => "sluice, 1 concurrency rule",
            Subject::SluiceLeased => "sluice, 1 leased rule",
            Subject::FloorOneRule => "host-call floor of 1 rule",
            Subject::FloorFiveRules => "host-call floor of 5 rules",
        }
    }

    /// The filter's `.wasm`. `SLUICE_BENCH_FILTER_WASM=<file>` measures another build of the
    /// sluice filter instead of the shipped one (e.g. another release profile).
    pub fn wasm_path(&self) -> String {
        match self {
            Subject::PassThrough | Subject::FloorOneRule | Subject::FloorFiveRules => {
                PASSTHROUGH_FILTER_WASM.to_string()
            }
            _ => std::env::var("SLUICE_BENCH_FILTER_WASM")
                .unwrap_or_else(|_| SLUICE_FILTER_WASM.to_string()),
        }
    }

    pub fn config(&self) -> &'static str {
        match self {
            Subject::PassThrough => "",
            Subject::SluiceOneRule => ONE_RULE,
            Subject::SluiceFiveRules => FIVE_RULES,
            Subject::SluiceOneRuleNoHeaders => ONE_RULE_NO_HEADERS,
            Subject::SluiceNoRuleApplies => NO_RULE_APPLIES,
            Subject::SluiceHeaderKey => HEADER_KEY,
            Subject::SluiceClaimKey => CLAIM_KEY,
            Subject::SluiceTieredByHeader => TIERED_BY_HEADER,
            Subject::SluiceTieredByClaim => TIERED_BY_CLAIM,
            Subject::SluiceOneRuleMarked => ONE_RULE_MARKED,
            Subject::SluiceOneRuleSoftUnmarked => ONE_RULE_SOFT_UNMARKED,
            Subject::SluiceOneRuleDenied => ONE_RULE_DENIED,
            Subject::SluiceFiveRulesDenied => FIVE_RULES_DENIED,
            Subject::SluiceConcurrency => ONE_CONCURRENCY_RULE,
            Subject::SluiceLeased => ONE_LEASED_RULE,
            Subject::FloorOneRule => "floor 1",
            Subject::FloorFiveRules => "floor 5",
        }
    }

    /// The `index`th request sent to this subject.
    pub fn request(&self, index: u64) -> HttpRequest {
        match self {
            Subject::SluiceHeaderKey
            | Subject::SluiceClaimKey
            | Subject::SluiceTieredByHeader
            | Subject::SluiceTieredByClaim => identity_request(index),
            _ => request(index),
        }
    }

    /// The filter compiled plain (for timing) or with fuel metering and host-call counting
    /// (for the deterministic costs).
    pub fn module(&self, instrumented: bool) -> FilterModule {
        let path = self.wasm_path();
        let wasm =
            std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        let (metering, counting) = match instrumented {
            true => (FuelMetering::On, HostCallCounting::On),
            false => (FuelMetering::Off, HostCallCounting::Off),
        };
        FilterModule::compile_instrumented(&wasm, metering, counting)
            .unwrap_or_else(|error| panic!("{path} does not compile: {error}"))
    }

    /// A one-worker Envoy-like proxy running the filter, with a fake clock at T0 (and, for
    /// a leased rule, a rate-limit service on the same clock, as cluster `limits`).
    pub fn start(&self, module: FilterModule) -> Running {
        let clock = Clock::fake(T0_NS);
        let mut options = ProxyOptions::new(module)
            .plugin_config(self.config())
            .clock(clock.clone())
            .log_level(LogLevel::Warn);
        let service = (*self == Subject::SluiceLeased).then(|| {
            let config: serde_json::Value =
                serde_json::from_str(self.config()).expect("the leased configuration is JSON");
            FakeService::start(&config, clock)
        });
        if let Some(service) = &service {
            options = options.cluster("limits", service.addr());
        }
        let proxy = Proxy::start(options)
            .unwrap_or_else(|error| panic!("{} does not start: {error}", self.name()));
        Running {
            proxy,
            _service: service,
        }
    }
}

/// A subject's proxy, and the rate-limit service it calls, if any (stopped with it).
#[derive(Debug)]
pub struct Running {
    pub proxy: Proxy,
    _service: Option<FakeService>,
}

impl std::ops::Deref for Running {
    type Target = Proxy;

    fn deref(&self) -> &Proxy {
        &self.proxy
    }
}

/// The `index`th benchmark request: a typical API call (11 headers) from one of 256
/// clients, with one of 32 API keys and 64 paths.
pub fn request(index: u64) -> HttpRequest {
    let client = (index % u64::from(CLIENTS)) as u8;
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 2, client)), 40_000);
    HttpRequest::new(
        "GET",
        &format!("/api/v1/items/{}?page=2", index % 64),
        "api.example.com",
    )
    .header("user-agent", "bench-client/1.0 (linux)")
    .header("accept", "application/json")
    .header("accept-encoding", "gzip, br")
    .header("x-api-key", &format!("key-{:08x}", index % 32))
    .header("x-request-id", &format!("{index:016x}"))
    .header("cookie", "session=abc123; theme=dark")
    .header("x-forwarded-proto", "https")
    .from(source)
}

/// The payload of a typical access token, as Envoy's jwt_authn forwards it (base64url JSON,
/// unpadded), for user `user` on `plan`.
fn jwt_payload(user: u64, plan: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let json = format!(
        r#"{{"iss":"https://idp.example.com/","sub":"user-{user:04}","aud":"api.example.com","iat":1767225600,"exp":1767229200,"scope":"items:read items:write","org":{{"id":"org-{:02}"}},"plan":"{plan}"}}"#,
        user % 16
    );
    let mut out = String::new();
    for chunk in json.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The `index`th request of an authenticated caller: the benchmark request with the caller's
/// identity both as headers (`x-user`, `x-plan`) and as the verified token's payload
/// (`x-jwt-payload`), so header and claim configurations read the same request; 32 users,
/// half of them on each plan.
pub fn identity_request(index: u64) -> HttpRequest {
    let user = index % 32;
    let plan = if user.is_multiple_of(2) {
        "free"
    } else {
        "pro"
    };
    request(index)
        .header("x-user", &format!("user-{user:04}"))
        .header("x-plan", plan)
        .header("x-jwt-payload", &jwt_payload(user, plan))
}

/// Sends request `index` at T0 + `index` ms; panics unless the filter forwarded it.
pub fn exchange(proxy: &Proxy, index: u64) -> Exchange {
    exchange_request(proxy, index, request(index))
}

/// Sends `request` at T0 + `index` ms; panics unless the filter forwarded it.
pub fn exchange_request(proxy: &Proxy, index: u64, request: HttpRequest) -> Exchange {
    if let Some(clock) = proxy.clock().as_fake() {
        clock.set_ns(T0_NS + index * 1_000_000);
    }
    let done = proxy
        .exchange(0, request, |_| HttpResponse::new(200))
        .unwrap_or_else(|error| panic!("the exchange fails: {error}"));
    assert!(
        matches!(done.request, RequestOutcome::Forward(_)),
        "the benchmark requests are all allowed: {:?}",
        done.request
    );
    done
}

/// Sends `subject` its request `index` at T0 + `index` ms; when `checked`, panics unless the
/// filter forwarded it, or for a subject that [`Subject::denies`], unless it answered 429.
pub fn exchange_subject(proxy: &Proxy, subject: Subject, index: u64, checked: bool) -> Exchange {
    if !subject.denies() {
        return exchange_request(proxy, index, subject.request(index));
    }
    if let Some(clock) = proxy.clock().as_fake() {
        clock.set_ns(T0_NS + index * 1_000_000);
    }
    let done = proxy
        .exchange(0, subject.request(index), |_| HttpResponse::new(200))
        .unwrap_or_else(|error| panic!("the exchange fails: {error}"));
    if checked {
        assert!(
            matches!(&done.request, RequestOutcome::LocalResponse(response) if response.status == 429),
            "{}: request {index} is denied: {:?}",
            subject.name(),
            done.request
        );
    }
    done
}

/// What a filter spends on average per request, over a stretch of requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Costs {
    pub requests: u64,
    /// Fuel of all the requests (each stream from context creation to deletion).
    pub fuel: u64,
    /// Host calls of all the requests.
    pub host_calls: HostCalls,
}

impl Costs {
    fn empty() -> Costs {
        Costs {
            requests: 0,
            fuel: 0,
            host_calls: HostCalls::default(),
        }
    }

    /// Adds one stream's costs.
    fn add(&mut self, report: &StreamReport) {
        self.requests += 1;
        self.fuel += report.fuel_consumed.unwrap_or(0);
        if let Some(calls) = &report.host_calls {
            self.host_calls.merge(calls);
        }
    }

    pub fn fuel_per_request(&self) -> f64 {
        self.fuel as f64 / self.requests.max(1) as f64
    }

    /// Calls to `function` per request.
    pub fn calls_per_request(&self, function: &str) -> f64 {
        self.host_calls.get(function) as f64 / self.requests.max(1) as f64
    }

    pub fn total_calls_per_request(&self) -> f64 {
        self.host_calls.total() as f64 / self.requests.max(1) as f64
    }
}

/// Runs `warmup` requests, then measures `requests` more, with an instrumented module.
pub fn costs(subject: Subject, warmup: u64, requests: u64) -> Costs {
    let proxy = subject.start(subject.module(true));
    for index in 0..warmup {
        exchange_subject(&proxy, subject, index, false);
    }
    let mut fuel = 0;
    let mut host_calls = HostCalls::default();
    for index in warmup..warmup + requests {
        let report = exchange_subject(&proxy, subject, index, true).report;
        fuel += report.fuel_consumed.unwrap_or(0);
        if let Some(calls) = &report.host_calls {
            host_calls.merge(calls);
        }
    }
    Costs {
        requests,
        fuel,
        host_calls,
    }
}

/// What a request held by a delay rule costs, against a request the same rule passes at once.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldCosts {
    /// The requests the delay rule passed at once (each the first of its pair).
    pub passed: Costs,
    /// The held requests (each the second of its pair), their streams' costs only.
    pub held: Costs,
    /// The root context's ticks over the same stretch: what released the held requests (and
    /// any other tick that came due meanwhile, which this counts against them too).
    pub ticks: Costs,
}

impl HeldCosts {
    /// The held requests' costs with the ticks' added: what holding a request costs in all.
    pub fn held_with_ticks(&self) -> Costs {
        let mut costs = self.held.clone();
        costs.fuel += self.ticks.fuel;
        costs.host_calls.merge(&self.ticks.host_calls);
        costs
    }
}

/// Held requests under [`ONE_DELAY_RULE`], measured with an instrumented module: `warmup`
/// pairs (see [`held_pair`]), then `pairs` measured.
pub fn held_costs(warmup: u64, pairs: u64) -> HeldCosts {
    let proxy = start_delay(Subject::SluiceOneRule.module(true));
    for index in 0..warmup {
        held_pair(&proxy, index);
    }
    let before = proxy.tick_report(0).expect("the worker answers");
    let mut passed = Costs::empty();
    let mut held = Costs::empty();
    for index in warmup..warmup + pairs {
        let (first, second) = held_pair(&proxy, index);
        passed.add(&first);
        held.add(&second);
    }
    let after = proxy.tick_report(0).expect("the worker answers");
    let host_calls = after
        .host_calls
        .unwrap_or_default()
        .since(&before.host_calls.unwrap_or_default());
    HeldCosts {
        passed,
        held,
        ticks: Costs {
            requests: after.ticks - before.ticks,
            fuel: after.fuel_consumed.unwrap_or(0) - before.fuel_consumed.unwrap_or(0),
            host_calls,
        },
    }
}

/// Allocations in the guest per request of [`held_pair`]s (both requests of each pair, the
/// ticks included), as [`allocations_per_request`] counts them.
pub fn held_allocations(warmup: u64, pairs: u64) -> Option<Allocations> {
    let wasm = SLUICE_ALLOCATIONS_WASM;
    let bytes = std::fs::read(wasm).unwrap_or_else(|error| panic!("cannot read {wasm}: {error}"));
    let module = FilterModule::from_bytes(&bytes)
        .unwrap_or_else(|error| panic!("{wasm} does not compile: {error}"));
    let proxy = start_delay(module);
    for index in 0..warmup {
        held_pair(&proxy, index);
    }
    let read = |name: &str| proxy.metrics().counter(name);
    let before = [
        read("sluice_allocations")?,
        read("sluice_context_allocations")?,
        read("sluice_host_copies")?,
    ];
    for index in warmup..warmup + pairs {
        held_pair(&proxy, index);
    }
    let requests = (2 * pairs).max(1) as f64;
    let per_request =
        |name: &str, before: u64| Some(read(name)?.saturating_sub(before) as f64 / requests);
    Some(Allocations {
        own: per_request("sluice_allocations", before[0])?,
        context: per_request("sluice_context_allocations", before[1])?,
        host_copies: per_request("sluice_host_copies", before[2])?,
    })
}

/// A one-worker proxy running `module` with [`ONE_DELAY_RULE`], on a fake clock at T0.
fn start_delay(module: FilterModule) -> Proxy {
    let options = ProxyOptions::new(module)
        .plugin_config(ONE_DELAY_RULE)
        .clock(Clock::fake(T0_NS))
        .log_level(LogLevel::Warn);
    Proxy::start(options).unwrap_or_else(|error| panic!("the delay rule does not start: {error}"))
}

/// Pair `index`, at T0 + 2 × `index` ms: a client (one of 256 in turn) sends two requests at
/// once; the first passes, the second is paused for its slot 1 ms later; then the clock moves
/// 1 ms, the tick that comes due releases it, and it is answered and ends. Answers both
/// streams' reports; panics unless each went as described.
pub fn held_pair(proxy: &Proxy, index: u64) -> (StreamReport, StreamReport) {
    let clock = proxy.clock().as_fake().expect("a fake clock");
    let at = T0_NS + index * 2_000_000;
    clock.set_ns(at);
    let first = proxy
        .exchange(0, request(index), |_| HttpResponse::new(200))
        .unwrap_or_else(|error| panic!("the exchange fails: {error}"));
    assert!(
        matches!(first.request, RequestOutcome::Forward(_)),
        "the first of pair {index} passes: {:?}",
        first.request
    );
    let (mut stream, outcome) = proxy.begin(0, request(index)).expect("the stream begins");
    assert_eq!(
        outcome,
        RequestOutcome::Paused,
        "the second of pair {index} is held"
    );
    clock.set_ns(at + 1_000_000);
    proxy.settle().expect("the workers settle");
    let outcome = stream
        .wait_request(Duration::ZERO)
        .expect("the stream answers");
    assert!(
        matches!(outcome, RequestOutcome::Forward(_)),
        "the second of pair {index} is released 1 ms later: {outcome:?}"
    );
    stream.response(HttpResponse::new(200)).expect("a response");
    (first.report, stream.finish().expect("the stream ends"))
}

/// Allocations in the guest per request, mean of `requests` after `warmup`, counted by the
/// filter built with `count-allocations` ([`SLUICE_ALLOCATIONS_WASM`]); `None` for the
/// pass-through and the floors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allocations {
    /// The filter's own, the policy's and the core's.
    pub own: f64,
    /// The box of the HTTP context, which the SDK's dispatcher requires.
    pub context: f64,
    /// The host's copies of its answers into guest memory (which the ABI requires).
    pub host_copies: f64,
}

pub fn allocations_per_request(
    subject: Subject,
    warmup: u64,
    requests: u64,
) -> Option<Allocations> {
    if subject.wasm_path() == PASSTHROUGH_FILTER_WASM {
        return None;
    }
    let wasm = SLUICE_ALLOCATIONS_WASM;
    let bytes = std::fs::read(wasm).unwrap_or_else(|error| panic!("cannot read {wasm}: {error}"));
    let module = FilterModule::from_bytes(&bytes)
        .unwrap_or_else(|error| panic!("{wasm} does not compile: {error}"));
    let proxy = subject.start(module);
    for index in 0..warmup {
        exchange_subject(
            &proxy,
            subject,
            index,
            index >= warmup.min(u64::from(CLIENTS)),
        );
    }
    let read = |name: &str| proxy.metrics().counter(name);
    let own = read("sluice_allocations")?;
    let host = read("sluice_host_copies")?;
    let context = read("sluice_context_allocations")?;
    for index in warmup..warmup + requests {
        exchange_subject(&proxy, subject, index, true);
    }
    let per_request =
        |after: u64, before: u64| after.saturating_sub(before) as f64 / requests.max(1) as f64;
    Some(Allocations {
        own: per_request(read("sluice_allocations")?, own),
        context: per_request(read("sluice_context_allocations")?, context),
        host_copies: per_request(read("sluice_host_copies")?, host),
    })
}

/// Times `requests` exchanges starting at request `first`.
pub fn time_requests(proxy: &Proxy, first: u64, requests: u64) -> Duration {
    let started = Instant::now();
    for index in first..first + requests {
        std::hint::black_box(exchange(proxy, index));
    }
    started.elapsed()
}

/// The size of a file in bytes.
pub fn file_size(path: &str) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
        .len()
}
