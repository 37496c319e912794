//! Target `request`: arbitrary requests (method, target, authority, headers, peer address)
//! through the policy's matching, exemptions, client-address and key code, with each client
//! address source.
//!
//! The rules also read JWT claims (a fuzzed payload, sent base64url-encoded), select tiers by a
//! claim, a cookie and the client address, have per-key overrides (exact and SHA-256) and match
//! on headers, cookies, query parameters and claims.
//!
//! Nothing panics, and three properties hold for every request:
//! - **Spoofing**: with `x_forwarded_for` and N trusted hops, once the header holds at least N
//!   entries, entries a client adds on the left change neither its address nor any rule's key.
//! - **IPv6 prefixes**: the default `client_ip` key groups an IPv6 /64: another interface
//!   identifier in the same /64 gives the same key.
//! - **JWT forms**: a payload in the payload header, bare or inside a whole compact token,
//!   gives the same checks (names, keys, costs).

use std::net::{IpAddr, Ipv6Addr};
use std::sync::OnceLock;

use sluice_core::{Limiter, MemoryStore, Seed, Semantics};
use sluice_policy::client_ip::parse_address;
use sluice_policy::jwt::find_claim;
use sluice_policy::{ClaimPath, ClientIpSource, Evaluation, OwnedRequest, Policy, Request};

use crate::fuzzed_request;
use crate::input::Input;

/// 2026-01-01T00:00:00Z in nanoseconds.
const NOW: u64 = 1_767_225_600_000_000_000;

/// The rules every policy here has: one per kind of key part, several algorithms and modes.
const RULES: &str = r#"[
    {"name": "per-client", "key": ["client_ip"], "limit": {"requests": 5, "period": "10s"}},
    {"name": "per-prefix", "key": [{"client_ip": {"ipv4_prefix": 24, "ipv6_prefix": 48}}],
     "when_key_missing": "skip", "algorithm": "fixed_window",
     "limit": {"requests": 100, "period": "1m"}},
    {"name": "by-credentials", "match": {"path_prefixes": ["/api/"], "methods": ["GET", "POST"]},
     "key": [{"header": "x-api-key", "secret": true}, {"cookie": "session"}, {"query": "user"},
             "path", "method", "host"],
     "algorithm": "sliding_log", "limit": {"requests": 3, "period": "1s"},
     "cost": {"header": "x-cost", "default": 1, "max": 3}},
    {"name": "by-host", "match": {"hosts": ["*.example.com", "example.org"]},
     "key": ["host", {"const": "all"}], "algorithm": "sliding_window",
     "limit": {"requests": 2, "period": "500ms"}, "mode": "shadow", "failure_mode": "closed"},
    {"name": "tiered", "match": {"headers": {"x-api-key": {"present": true}},
                                 "query": {"user": {"prefix": "a"}}},
     "key": [{"claim": "sub"}, {"header": "x-api-key"}],
     "tier": {"from": {"claim": "org.plan"},
              "limits": {"free": {"requests": 2, "period": "1m"},
                         "pro": {"requests": 5, "period": "1m", "burst": 7, "values": ["pro", "7"]}},
              "default": "deny"},
     "overrides": {"acme": {"key": ["alice", "k-123"], "requests": 9, "period": "1s"}}},
    {"name": "by-network", "key": ["client_ip"], "algorithm": "sliding_window",
     "tier": {"from": "client_ip",
              "limits": {"inside": {"requests": 9, "period": "1s", "cidrs": ["10.0.0.0/8", "fd00::/8"]},
                         "lab": {"requests": 1, "period": "1s", "cidrs": ["10.9.0.0/16"], "max_keys": 8},
                         "outside": {"requests": 3, "period": "1s", "cidrs": ["0.0.0.0/1"]}},
              "default": "exempt"}},
    {"name": "by-cookie-plan", "key": [{"query": "user"}], "algorithm": "fixed_window",
     "match": {"cookies": {"session": {"one_of": ["abc", "x"]}},
               "claims": {"role": {"present": false}, "org.id": {"equals": "acme"}}},
     "tier": {"from": {"cookie": "plan"}, "limits": {"basic": {"requests": 1, "period": "1m"}},
              "default": "basic"},
     "overrides": {"ada": {"key_sha256": "fdee430d40bd57deeac186cd9790033d0f06f909a8806e7ce6e717ab7c7d5029",
                           "requests": 4, "period": "1m"}},
     "cost": {"header": "x-cost"}}
]"#;

/// The client address sources fuzzed: the peer, `X-Forwarded-For` with 1, 2 and 3 trusted
/// hops, and a header.
const SOURCES: [&str; 5] = [
    r#"{"source": "peer"}"#,
    r#"{"source": "x_forwarded_for", "trusted_hops": 1}"#,
    r#"{"source": "x_forwarded_for", "trusted_hops": 2}"#,
    r#"{"source": "x_forwarded_for", "trusted_hops": 3}"#,
    r#"{"source": "header", "name": "cf-connecting-ip"}"#,
];

fn policies() -> &'static [Policy] {
    static POLICIES: OnceLock<Vec<Policy>> = OnceLock::new();
    POLICIES.get_or_init(|| {
        SOURCES
            .iter()
            .map(|source| {
                let config = format!(
                    r#"{{"client_ip": {source},
                        "exempt": {{"paths": ["/healthz"], "path_prefixes": ["/metrics"],
                                    "cors_preflight": true}},
                        "response": {{"headers": "both"}},
                        "store": {{"max_keys": 64}},
                        "jwt": {{"payload_header": "x-jwt-payload"}},
                        "rules": {RULES}}}"#
                );
                Policy::from_json(config.as_bytes()).expect("the fuzzed policies compile")
            })
            .collect()
    })
}

/// Claim paths read directly from fuzzed payloads.
fn claim_paths() -> &'static [ClaimPath] {
    static PATHS: OnceLock<Vec<ClaimPath>> = OnceLock::new();
    PATHS.get_or_init(|| {
        ["sub", "org.id", "org.plan", "a.b.c.d", "role"]
            .iter()
            .map(|p| ClaimPath::dotted(p).expect("valid claim paths"))
            .collect()
    })
}

/// base64url without padding, as Envoy's jwt_authn forwards a payload.
fn base64url(bytes: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
        }
    }
    out
}

/// Every check's name, key and cost (`None`: exempt).
fn checks(policy: &Policy, request: &OwnedRequest) -> Option<Vec<(String, Vec<u8>, u64)>> {
    match policy.evaluate(request) {
        Evaluation::Exempt => None,
        rules => Some(
            rules
                .checks()
                .iter()
                .map(|c| (c.rule.to_string(), c.key.clone(), c.cost))
                .collect(),
        ),
    }
}

/// The keys of every applying rule, by rule index (`None`: exempt).
fn keys(policy: &Policy, request: &OwnedRequest) -> Option<Vec<(usize, Vec<u8>)>> {
    match policy.evaluate(request) {
        Evaluation::Exempt => None,
        rules => Some(
            rules
                .rule_indices()
                .iter()
                .copied()
                .zip(rules.checks().iter().map(|c| c.key.clone()))
                .collect(),
        ),
    }
}

fn forwarded_entries(request: &OwnedRequest) -> usize {
    let mut total = 0;
    request.for_each_header("x-forwarded-for", &mut |line| {
        total += line
            .split(|&b| b == b',')
            .filter(|e| e.iter().any(|&b| b != b' ' && b != b'\t'))
            .count();
    });
    total
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let request = fuzzed_request::read(&mut input);
    let prepended = input.chunk().to_vec();
    let interface = (u64::from(input.u32()) << 32) | u64::from(input.u32());
    let payload = input.chunk().to_vec();

    // The claim reader on its own: any bytes, never a panic; a value without escapes is read
    // as written.
    for path in claim_paths() {
        if let Some(value) = find_claim(&payload, path) {
            let mut out = Vec::new();
            if value.append_to(&mut out)
                && let sluice_policy::jwt::ClaimValue::Text(raw) = value
                && !raw.contains(&b'\\')
            {
                assert_eq!(out, raw, "a string without escapes changed when read");
            }
        }
    }
    let mut request = request;
    request
        .headers
        .push(("x-jwt-payload".to_string(), base64url(&payload)));
    let mut whole_token = request.clone();
    if let Some((_, value)) = whole_token.headers.last_mut() {
        *value = [b"eyJhbGciOiJub25lIn0.".as_slice(), value, b".c2ln"].concat();
    }

    let path = String::from_utf8_lossy(&request.path);
    for text in [request.peer.as_deref().unwrap_or_default(), &path] {
        if let Some(ip) = parse_address(text.as_bytes()) {
            assert_eq!(
                parse_address(ip.to_string().as_bytes()),
                Some(ip),
                "{text:?}"
            );
        }
        // Without a colon or bracket the text can only be IPv4, which sluice parses by hand:
        // it must accept exactly what `core`'s parser does.
        let trimmed = text.trim_matches([' ', '\t']);
        if !trimmed.contains([':', '[']) {
            let core = trimmed.parse::<core::net::Ipv4Addr>().ok();
            assert_eq!(
                parse_address(text.as_bytes()),
                core.map(IpAddr::from),
                "{text:?}"
            );
        }
    }

    for policy in policies() {
        let mut limiter = Limiter::new(Seed { k0: 7, k1: 11 }, policy.cas_retries());
        let mut store = MemoryStore::new(Semantics::Envoy);
        for _ in 0..2 {
            let handled = policy.handle(&request, NOW, &mut limiter, &mut store);
            let _ = handled.response.headers();
            for (index, check, _) in handled.outcomes() {
                let _ = policy.rules()[index].key().display(&check.key).to_string();
            }
            for notice in handled.notices() {
                let _ = notice.to_string();
            }
        }
        let address = policy.client_ip_source().client_ip(&request);
        let keys_before = keys(policy, &request);
        // Other x-jwt-payload lines come first and are read instead.
        if request.header("x-jwt-payload") == request.headers.last().map(|(_, v)| v.as_slice()) {
            assert_eq!(
                checks(policy, &whole_token),
                checks(policy, &request),
                "a payload and a whole token carrying it gave different checks"
            );
        }

        if let ClientIpSource::XForwardedFor { trusted_hops } = policy.client_ip_source()
            && forwarded_entries(&request) >= usize::from(*trusted_hops)
        {
            let mut spoofed = request.clone();
            match spoofed
                .headers
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case("x-forwarded-for"))
            {
                Some((_, line)) => *line = [&prepended[..], b",", line].concat(),
                None => unreachable!("at least one entry means at least one line"),
            }
            // An extra line before the others is also to the left.
            spoofed
                .headers
                .insert(0, ("x-forwarded-for".to_string(), prepended.clone()));
            assert_eq!(
                policy.client_ip_source().client_ip(&spoofed),
                address,
                "prepending {prepended:?} changed the client address"
            );
            assert_eq!(
                keys(policy, &spoofed),
                keys_before,
                "prepending {prepended:?} changed a key"
            );
        }

        if matches!(policy.client_ip_source(), ClientIpSource::Peer)
            && let Some(IpAddr::V6(ip)) = address
        {
            let network = u128::from(ip) & !u128::from(u64::MAX);
            let neighbour = Ipv6Addr::from(network | u128::from(interface));
            let mut moved = request.clone();
            moved.peer = Some(format!("[{neighbour}]:443"));
            let moved_address = policy.client_ip_source().client_ip(&moved);
            // A neighbour in ::ffff:0:0/96 would be an IPv4 client: not the same family.
            if matches!(moved_address, Some(IpAddr::V6(_))) {
                let per_client = |keys: Option<Vec<(usize, Vec<u8>)>>| {
                    keys.and_then(|keys| keys.into_iter().find(|(index, _)| *index == 0))
                };
                assert_eq!(
                    per_client(keys(policy, &moved)),
                    per_client(keys_before.clone()),
                    "{ip} and {neighbour} are in one /64 but got different keys"
                );
            }
        }
    }
}
