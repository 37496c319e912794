//! Compiling the JSON configuration into a [`Policy`]: the top level, the `store` section and
//! the rules. The other sections are compiled by their own modules.
//!
//! The JSON is walked as a `serde_json::Value` rather than derived, so that every error can
//! name its rule and field path and say what to write instead.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use serde_json::Value;
use sluice_core::table::RuleTable;
use sluice_core::{Algorithm, FailureMode, Limit, Mode, Quota, QuotaError};

use crate::client_ip::ClientIpSource;
use crate::concurrency::{self, NOT_WITH_CONCURRENCY};
use crate::cost::CostSpec;
use crate::duration::{DurationError, parse_period};
use crate::error::{ConfigError, Problem};
use crate::exempt::Exemptions;
use crate::global::{self, Scope};
use crate::json::{self, Fields};
use crate::jwt::JwtSource;
use crate::key::{KeySpec, WhenKeyMissing};
use crate::matching::Match;
use crate::overrides::{OVERRIDE_FIELDS, OverrideLimits, Overrides};
use crate::policy::{Policy, Rule};
use crate::response::ResponseConfig;
use crate::shaping::{self, DelayContext, Shaping};
use crate::tier::{LimitKind, NamedLimit, TIER_LIMIT_FIELDS, TierContext, Tiers};

/// `store.max_keys` (and a rule's `max_keys`) when not given.
pub const DEFAULT_MAX_KEYS: u32 = 65_536;
/// The largest `max_keys`: a table of this many keys is created in shared data when the
/// proxy starts, and each key costs memory in every proxy process.
pub const MAX_KEYS: u32 = 16_777_216;
/// `store.cas_retries` when not given.
pub const DEFAULT_CAS_RETRIES: u32 = 32;
/// The largest `store.cas_retries`.
pub const MAX_CAS_RETRIES: u32 = 100;
/// The largest `limit.requests` of a `sliding_log` rule, which stores every request's time.
pub const MAX_SLIDING_LOG_REQUESTS: u64 = 1000;
/// The most shared memory one rule's table may take in the worst case (every key in use, every
/// state at its largest): 1 GiB. Enough for the largest `max_keys` with any window algorithm,
/// and for a `sliding_log` of 1000 requests with the default `max_keys`.
pub const MAX_RULE_STORE_BYTES: u64 = 1 << 30;
/// The longest rule name.
pub const MAX_NAME_LEN: usize = 64;

const TOP_FIELDS: &[&str] = &[
    "namespace",
    "client_ip",
    "exempt",
    "response",
    "store",
    "global",
    "jwt",
    "shaping",
    "rules",
];
const STORE_FIELDS: &[&str] = &["max_keys", "cas_retries"];
const RULE_FIELDS: &[&str] = &[
    "name",
    "match",
    "key",
    "when_key_missing",
    "limit",
    "algorithm",
    "cost",
    "mode",
    "failure_mode",
    "max_keys",
    "scope",
    "lease",
    "tier",
    "overrides",
    "warn_at",
    "delay",
    "concurrency",
];
const LIMIT_FIELDS: &[&str] = &["requests", "period", "burst"];

const ALGORITHM_NAMES: &[&str] = &["gcra", "fixed_window", "sliding_window", "sliding_log"];
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::Gcra,
    Algorithm::FixedWindow,
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
];
const MODE_NAMES: &[&str] = &["enforce", "shadow", "soft"];
const MODES: &[Mode] = &[Mode::Enforce, Mode::Shadow, Mode::Soft];
const FAILURE_MODE_NAMES: &[&str] = &["open", "closed"];
const FAILURE_MODES: &[FailureMode] = &[FailureMode::Open, FailureMode::Closed];

const MAX_KEYS_WHY: &str = "each rule's table is created in the proxy's shared data at start-up";

/// Where a configuration is deployed, which decides where a `lease` may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deployment {
    /// A proxy (and the rate-limit service): only global rules can be leased.
    Proxy,
    /// The edge worker: every rule's counters are global (Durable Objects), so any rule can.
    Edge,
}

/// Parses and validates a configuration.
pub(crate) fn compile(config: &[u8], deployment: Deployment) -> Result<Policy, ConfigError> {
    let value: Value = serde_json::from_slice(config).map_err(|e| {
        ConfigError::new(
            "",
            Problem::Syntax {
                message: e.to_string(),
            },
        )
    })?;
    let top = Fields::open(&value, "", TOP_FIELDS)?;

    let namespace = match top.get("namespace") {
        Some(v) => Some(String::from(namespace(v)?)),
        None => None,
    };

    let client_ip = match top.get("client_ip") {
        Some(v) => ClientIpSource::parse(v, "client_ip")?,
        None => ClientIpSource::default(),
    };
    let exemptions = match top.get("exempt") {
        Some(v) => Exemptions::parse(v, "exempt")?,
        None => Exemptions::default(),
    };
    let response = match top.get("response") {
        Some(v) => ResponseConfig::parse(v, "response")?,
        None => ResponseConfig::default(),
    };
    let (max_keys, cas_retries) = match top.get("store") {
        Some(v) => store(v)?,
        None => (DEFAULT_MAX_KEYS, DEFAULT_CAS_RETRIES),
    };
    let global = top.get("global").map(global::parse_global).transpose()?;
    let jwt = top
        .get("jwt")
        .map(|v| JwtSource::parse(v, "jwt"))
        .transpose()?;
    let shaping = match top.get("shaping") {
        Some(v) => Shaping::parse(v, "shaping")?,
        None => Shaping::default(),
    };

    let rule_values = match top.get("rules") {
        Some(v) => json::list(v, "rules")?,
        None => &[],
    };
    if rule_values.is_empty() {
        return Err(ConfigError::new("rules", Problem::NoRules));
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(rule_values.len());
    for (index, value) in rule_values.iter().enumerate() {
        let rule = compile_rule(value, index, &rules, max_keys, deployment)?;
        if jwt.is_none()
            && let Some(path) = rule.first_claim_path()
        {
            return Err(
                ConfigError::new(path, Problem::ClaimWithoutJwt).in_rule(index, Some(&rule.name))
            );
        }
        if rule.scope == Scope::Global && global.is_none() {
            return Err(
                ConfigError::new("scope", Problem::GlobalScopeWithoutService)
                    .in_rule(index, Some(&rule.name)),
            );
        }
        rules.push(rule);
    }
    if deployment == Deployment::Edge {
        delay_beside_leases(&rules)?;
    }
    let has_global_rules = rules.iter().any(|rule| rule.scope == Scope::Global);
    let warns = rules.iter().any(|rule| rule.warn_at.is_some());
    let has_concurrency = rules
        .iter()
        .any(|rule| rule.limit.algorithm == Algorithm::Concurrency);
    let marks = rules.iter().any(Rule::marks_requests);

    let table_namespace = match &namespace {
        Some(name) => name.clone(),
        None => derived_namespace(config),
    };

    Ok(Policy {
        namespace,
        table_namespace,
        client_ip,
        exemptions,
        response,
        cas_retries,
        rules,
        global,
        has_global_rules,
        jwt,
        warns,
        marks,
        shaping,
        has_concurrency,
    })
}

/// At the edge, a held request that is refused or whose client leaves gives back what its
/// rules counted in their objects; units taken from leased slices are not given back that
/// way, so a configuration does not mix delay rules with leased ones there.
fn delay_beside_leases(rules: &[Rule]) -> Result<(), ConfigError> {
    let Some(leased) = rules.iter().find(|rule| rule.lease.is_some()) else {
        return Ok(());
    };
    match rules.iter().position(|rule| rule.max_delay() > 0) {
        Some(index) => Err(ConfigError::new(
            "delay",
            Problem::DelayBesideLeasesAtTheEdge {
                leased: leased.name.clone(),
            },
        )
        .in_rule(index, rules.get(index).map(|rule| rule.name.as_str()))),
        None => Ok(()),
    }
}

/// The explicit `namespace`, validated like a rule name.
fn namespace(value: &Value) -> Result<&str, ConfigError> {
    let name = json::string(value, "namespace")?;
    if !valid_name(name) {
        return Err(ConfigError::new(
            "namespace",
            Problem::InvalidNamespace {
                name: String::from(name),
            },
        ));
    }
    Ok(name)
}

/// `[A-Za-z0-9_.-]{1,64}`: rule names and namespaces (and tier and override names).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The namespace of a configuration without one: `~` and 16 hex digits of a hash of the
/// configuration's bytes. `~` cannot start an explicit namespace, so the two never meet, and
/// two configurations share a derived namespace only if they are byte for byte the same.
fn derived_namespace(config: &[u8]) -> String {
    use core::hash::Hasher as _;
    let mut hasher =
        siphasher::sip::SipHasher13::new_with_keys(0x736c_7569_6365_2d6e, 0x616d_6573_7061_6365);
    hasher.write(config);
    let hash = hasher.finish();
    let mut name = String::with_capacity(17);
    name.push('~');
    for shift in (0..16).rev() {
        let digit = ((hash >> (shift * 4)) & 0xf) as u32;
        name.push(char::from_digit(digit, 16).unwrap_or('0'));
    }
    name
}

fn store(value: &Value) -> Result<(u32, u32), ConfigError> {
    let fields = Fields::open(value, "store", STORE_FIELDS)?;
    let max_keys = match fields.get("max_keys") {
        Some(v) => max_keys(v, &fields.path("max_keys"))?,
        None => DEFAULT_MAX_KEYS,
    };
    let cas_retries = match fields.get("cas_retries") {
        Some(v) => {
            let retries = json::integer(
                v,
                &fields.path("cas_retries"),
                0,
                u64::from(MAX_CAS_RETRIES),
                "retries of a lost compare-and-swap race per request; a few are enough",
            )?;
            u32::try_from(retries).unwrap_or(DEFAULT_CAS_RETRIES)
        }
        None => DEFAULT_CAS_RETRIES,
    };
    Ok((max_keys, cas_retries))
}

pub(crate) fn max_keys(value: &Value, path: &str) -> Result<u32, ConfigError> {
    let keys = json::integer(value, path, 1, u64::from(MAX_KEYS), MAX_KEYS_WHY)?;
    Ok(u32::try_from(keys).unwrap_or(DEFAULT_MAX_KEYS))
}

fn compile_rule(
    value: &Value,
    index: usize,
    earlier: &[Rule],
    default_max_keys: u32,
    deployment: Deployment,
) -> Result<Rule, ConfigError> {
    // The name first, so that every later error can name the rule.
    let name = rule_name(value).map_err(|e| e.in_rule(index, None))?;
    let in_rule = |e: ConfigError| e.in_rule(index, Some(name));
    if let Some(first) = earlier.iter().position(|r| r.name == name) {
        return Err(in_rule(ConfigError::new(
            "name",
            Problem::DuplicateName {
                name: String::from(name),
                first,
            },
        )));
    }
    rule_body(value, name, default_max_keys, deployment).map_err(in_rule)
}

/// The rule's name, validated; errors are placed in the rule by the caller.
fn rule_name(value: &Value) -> Result<&str, ConfigError> {
    let Value::Object(map) = value else {
        return Err(ConfigError::new(
            "",
            Problem::WrongType {
                expected: "an object",
                found: json::kind(value),
            },
        ));
    };
    let Some(name) = map.get("name") else {
        return Err(ConfigError::new(
            "name",
            Problem::Missing {
                example: "\"name\": \"per-client\"",
            },
        ));
    };
    let name = json::string(name, "name")?;
    if !valid_name(name) {
        return Err(ConfigError::new(
            "name",
            Problem::InvalidName {
                name: String::from(name),
            },
        ));
    }
    Ok(name)
}

fn rule_body(
    value: &Value,
    name: &str,
    default_max_keys: u32,
    deployment: Deployment,
) -> Result<Rule, ConfigError> {
    let fields = Fields::open(value, "", RULE_FIELDS)?;
    // A concurrency rule's one limit is its `concurrency` section; what only makes sense
    // for units per period is refused, naming the field.
    let concurrency = match fields.get("concurrency") {
        Some(v) => {
            if let Some(field) = NOT_WITH_CONCURRENCY
                .iter()
                .find(|field| fields.get(field).is_some())
            {
                return Err(ConfigError::new(
                    *field,
                    Problem::NotWithConcurrency { field },
                ));
            }
            let tiered = fields.get("tier").is_some();
            Some(concurrency::parse(v, "concurrency", tiered)?)
        }
        None => None,
    };
    let algorithm = match fields.get("algorithm") {
        Some(v) => json::variant(v, "algorithm", ALGORITHM_NAMES, ALGORITHMS)?,
        None if concurrency.is_some() => Algorithm::Concurrency,
        None => Algorithm::Gcra,
    };
    let max_keys = match fields.get("max_keys") {
        Some(v) => max_keys(v, "max_keys")?,
        None => default_max_keys,
    };
    let matcher = match fields.get("match") {
        Some(v) => Match::parse(v, "match")?,
        None => Match::default(),
    };
    let key = KeySpec::parse(fields.require("key", "\"key\": [\"client_ip\"]")?, "key")?;

    // Every limit the rule can apply: its own, or its tiers' (and the denial of unknown
    // ones); then its overrides'.
    // A concurrency rule's tiers and overrides give a cap (`max`) for its slots' lifetime.
    let (tier_fields, override_fields) = match concurrency {
        Some(_) => (concurrency::TIER_FIELDS, concurrency::OVERRIDE_FIELDS),
        None => (TIER_LIMIT_FIELDS, OVERRIDE_FIELDS),
    };
    let tier_limit = |v: &Value, path: &str| match concurrency {
        Some(section) => concurrency::tier_max(v, path, tier_fields, section.slot_ttl),
        None => limit(v, path, algorithm, tier_fields).map(|(limit, _)| limit),
    };
    let override_limit = |v: &Value, path: &str| match concurrency {
        Some(section) => concurrency::tier_max(v, path, override_fields, section.slot_ttl),
        None => limit(v, path, algorithm, override_fields).map(|(limit, _)| limit),
    };
    let mut limits: Vec<NamedLimit> = Vec::new();
    let mut base_capacity_field = "limit.requests";
    let tiers = match (fields.get("tier"), fields.get("limit")) {
        // An untiered concurrency rule's section has its `max` (`concurrency::parse`).
        (None, _) if let Some(base) = concurrency.and_then(|section| section.limit) => {
            limits.push(NamedLimit {
                name: String::from(name),
                limit: base,
                max_keys,
                kind: LimitKind::Base,
            });
            base_capacity_field = "concurrency.max";
            None
        }
        (Some(_), Some(_)) => return Err(ConfigError::new("limit", Problem::LimitWithTier)),
        (Some(v), None) => {
            let context = TierContext {
                rule: name,
                algorithm,
                max_keys,
                limit_fields: tier_fields,
                limit: &tier_limit,
                max_keys_of: &self::max_keys,
            };
            Some(Tiers::parse(v, "tier", &context, &mut limits)?)
        }
        (None, _) => {
            let (base, field) = limit(
                fields.require(
                    "limit",
                    "\"limit\": {\"requests\": 100, \"period\": \"1m\"}",
                )?,
                "limit",
                algorithm,
                LIMIT_FIELDS,
            )?;
            limits.push(NamedLimit {
                name: String::from(name),
                limit: base,
                max_keys,
                kind: LimitKind::Base,
            });
            base_capacity_field = field;
            None
        }
    };
    let overrides = match fields.get("overrides") {
        Some(v) => {
            let mut extra = Vec::new();
            let overrides = Overrides::parse(
                v,
                "overrides",
                name,
                &key,
                &OverrideLimits {
                    fields: override_fields,
                    parse: &override_limit,
                },
                &limits,
                &mut extra,
            )?;
            limits.extend(extra);
            Some(overrides)
        }
        None => None,
    };

    // A cost must fit every limit a request can get (a denial fits none, by design).
    let (capacity, capacity_field) = limits
        .iter()
        .filter(|l| l.kind != LimitKind::Deny)
        .map(|l| {
            let field = match l.kind {
                LimitKind::Base => String::from(base_capacity_field),
                _ => capacity_field_of(l, name),
            };
            (l.limit.capacity(), field)
        })
        .min_by_key(|(capacity, _)| *capacity)
        .unwrap_or((1, String::from("limit.requests")));
    let mut cost = match fields.get("cost") {
        Some(v) => CostSpec::parse(v, "cost", capacity, &capacity_field)?,
        None => CostSpec::default(),
    };
    // A header cost without its own `max` is capped per request at the capacity of the
    // limit the request gets, not at the smallest one.
    if let CostSpec::Header { max, .. } = &mut cost
        && fields.get("cost").and_then(|c| c.get("max")).is_none()
    {
        *max = limits
            .iter()
            .map(|l| l.limit.capacity())
            .max()
            .unwrap_or(*max);
    }
    let when_key_missing = match fields.get("when_key_missing") {
        Some(v) => json::variant(
            v,
            "when_key_missing",
            WhenKeyMissing::NAMES,
            WhenKeyMissing::VALUES,
        )?,
        None => WhenKeyMissing::default(),
    };
    let mode = match fields.get("mode") {
        Some(v) => json::variant(v, "mode", MODE_NAMES, MODES)?,
        None => Mode::default(),
    };
    let warn_at = match fields.get("warn_at") {
        Some(_) if mode == Mode::Shadow => {
            return Err(ConfigError::new("warn_at", Problem::WarnAtInShadow));
        }
        Some(v) => Some(warn_at(v, capacity, &capacity_field)?),
        None => None,
    };
    let failure_mode = match fields.get("failure_mode") {
        Some(v) => json::variant(v, "failure_mode", FAILURE_MODE_NAMES, FAILURE_MODES)?,
        None => FailureMode::default(),
    };
    let scope = match fields.get("scope") {
        Some(v) => global::parse_scope(v)?,
        None => Scope::default(),
    };
    if concurrency.is_some() && scope == Scope::Global {
        return Err(ConfigError::new(
            "scope",
            Problem::ConcurrencyWithGlobalScope,
        ));
    }
    // Each table (the rule's, every tier's, every override's) is bounded on its own.
    for named in limits.iter().filter(|l| l.has_table()) {
        let bytes = RuleTable::new(&named.name, named.limit, named.max_keys).max_store_bytes();
        if bytes > MAX_RULE_STORE_BYTES {
            let path = match named.kind {
                LimitKind::Tier => {
                    let tier = named.name.get(name.len() + 1..).unwrap_or_default();
                    json::join(&json::join("tier.limits", tier), "max_keys")
                }
                _ => String::from("max_keys"),
            };
            return Err(ConfigError::new(
                path,
                Problem::TableTooLarge {
                    bytes,
                    max: MAX_RULE_STORE_BYTES,
                    max_keys: named.max_keys,
                },
            ));
        }
    }
    // What `Rule::limit` reports: the rule's own limit, or its default (else first) tier's.
    let primary = tiers.as_ref().map_or(0, Tiers::primary_limit);
    let Some(primary) = limits.get(primary).or_else(|| limits.first()) else {
        return Err(ConfigError::new(
            "limit",
            Problem::Missing {
                example: "\"limit\": {\"requests\": 100, \"period\": \"1m\"}",
            },
        ));
    };
    let (limit, primary_max_keys) = (primary.limit, primary.max_keys);
    let lease = match fields.get("lease") {
        Some(_) if scope != Scope::Global && deployment == Deployment::Proxy => {
            return Err(ConfigError::new("lease", Problem::LeaseNeedsGlobalScope));
        }
        Some(_) if tiers.is_some() || overrides.is_some() => {
            return Err(ConfigError::new("lease", Problem::LeaseWithCallerLimits));
        }
        Some(v) => Some(global::parse_lease(v, &limit)?),
        None => None,
    };
    // Every limit the rule can apply holds rather than denies; `Rule::limit` is the primary's.
    let limit = match fields.get("delay") {
        Some(v) => {
            let context = DelayContext {
                algorithm,
                mode,
                scope,
                leased: lease.is_some(),
            };
            let max_delay = shaping::parse_delay(v, "delay", &context)?;
            for named in &mut limits {
                named.limit = named.limit.with_max_delay(max_delay);
            }
            limit.with_max_delay(max_delay)
        }
        None => limit,
    };
    Ok(Rule {
        name: String::from(name),
        matcher,
        key,
        when_key_missing,
        limit,
        cost,
        mode,
        failure_mode,
        max_keys: primary_max_keys,
        scope,
        lease,
        policy_items: limits
            .iter()
            .map(|named| crate::response::policy_item(&named.name, &named.limit))
            .collect(),
        limits,
        tiers,
        overrides,
        warn_at,
    })
}

/// `warn_at`: `{"remaining": N}`, N below the smallest capacity of the rule's limits (else
/// every request would be marked).
fn warn_at(value: &Value, capacity: u64, capacity_field: &str) -> Result<u64, ConfigError> {
    let fields = Fields::open(value, "warn_at", &["remaining"])?;
    let path = fields.path("remaining");
    let remaining = json::integer(
        fields.require("remaining", "\"remaining\": 10")?,
        &path,
        0,
        u64::MAX,
        "the units left at or below which a passing request is marked",
    )?;
    if remaining >= capacity {
        return Err(ConfigError::new(
            path,
            Problem::WarnAtNotBelowCapacity {
                remaining,
                capacity,
                capacity_field: String::from(capacity_field),
            },
        ));
    }
    Ok(remaining)
}

/// The field a limit's capacity comes from, for cost errors.
fn capacity_field_of(named: &NamedLimit, rule: &str) -> String {
    let field = if named.limit.algorithm == Algorithm::Gcra
        && named.limit.quota.burst() != named.limit.quota.limit()
    {
        "burst"
    } else {
        "requests"
    };
    let base = match named.kind {
        LimitKind::Base => String::from("limit"),
        LimitKind::Tier => json::join(
            "tier.limits",
            named.name.get(rule.len() + 1..).unwrap_or_default(),
        ),
        LimitKind::Override | LimitKind::Deny => json::join(
            "overrides",
            named.name.get(rule.len() + 1..).unwrap_or_default(),
        ),
    };
    json::join(&base, field)
}

/// The `limit` section, and which field the rule's capacity (the most a request may cost)
/// comes from.
fn limit(
    value: &Value,
    path: &str,
    algorithm: Algorithm,
    allowed: &'static [&'static str],
) -> Result<(Limit, &'static str), ConfigError> {
    let fields = Fields::open(value, path, allowed)?;
    let requests_path = fields.path("requests");
    let requests = json::integer(
        fields.require("requests", "\"requests\": 100")?,
        &requests_path,
        1,
        u64::MAX,
        "a rule admits at least one request per period",
    )?;
    if algorithm == Algorithm::SlidingLog && requests > MAX_SLIDING_LOG_REQUESTS {
        return Err(ConfigError::new(
            requests_path,
            Problem::SlidingLogTooLarge {
                requests,
                max: MAX_SLIDING_LOG_REQUESTS,
            },
        ));
    }
    let period_path = fields.path("period");
    let period_text = json::string(
        fields.require("period", "\"period\": \"1m\"")?,
        &period_path,
    )?;
    let period = parse_period(period_text).map_err(|e| {
        let text = String::from(period_text);
        ConfigError::new(
            period_path.as_str(),
            match e {
                DurationError::Malformed => Problem::InvalidDuration { text },
                DurationError::Zero => Problem::ZeroDuration { text },
                DurationError::TooLong => Problem::DurationTooLong { text },
            },
        )
    })?;
    let burst = match fields.get("burst") {
        Some(v) => {
            let burst_path = fields.path("burst");
            if algorithm != Algorithm::Gcra {
                return Err(ConfigError::new(
                    burst_path,
                    Problem::BurstNeedsGcra {
                        algorithm: algorithm.name(),
                    },
                ));
            }
            Some(json::integer(
                v,
                &burst_path,
                1,
                u64::MAX,
                "the most requests admitted at once",
            )?)
        }
        None => None,
    };
    let quota = Quota::new(requests, period, burst.unwrap_or(requests)).map_err(|e| match e {
        QuotaError::TooFine => {
            ConfigError::new(requests_path.as_str(), Problem::TooFine { requests })
        }
        // Zeros are rejected above; keep the core's own words should that ever change.
        QuotaError::ZeroLimit | QuotaError::ZeroPeriod | QuotaError::ZeroBurst => ConfigError::new(
            path,
            Problem::OutOfRange {
                value: 0,
                min: 1,
                max: u64::MAX,
                why: "",
            },
        ),
    })?;
    let capacity_field = if burst.is_some() {
        "limit.burst"
    } else {
        "limit.requests"
    };
    Ok((Limit::new(algorithm, quota), capacity_field))
}
