//! Configuration errors: where in the file (rule and field path) and what is wrong, in one
//! line a user can act on.

use alloc::string::String;
use core::fmt;

/// Why a configuration was rejected.
///
/// Displayed as one line: the rule (by name and index) if the problem is inside one, the
/// field path, and the problem with what to write instead:
///
/// ```text
/// rule "per-client" (rules[0]): limit.period: "5x" is not a duration; use a number with ms, s, m, h or d, e.g. 30s
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    rule: Option<RuleRef>,
    path: String,
    problem: Problem,
}

/// The rule an error is in: its index in `rules`, and its name once that is known to be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// The rule's index in `rules`.
    pub index: usize,
    /// The rule's name, if it has a valid one.
    pub name: Option<String>,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, problem: Problem) -> ConfigError {
        ConfigError {
            rule: None,
            path: path.into(),
            problem,
        }
    }

    /// Places the error in rule `index` (named `name` if known); its path stays relative to
    /// the rule.
    pub(crate) fn in_rule(mut self, index: usize, name: Option<&str>) -> ConfigError {
        self.rule = Some(RuleRef {
            index,
            name: name.map(String::from),
        });
        self
    }

    /// The rule the problem is in, if any.
    pub fn rule(&self) -> Option<&RuleRef> {
        self.rule.as_ref()
    }

    /// The field path, e.g. `limit.period` (relative to the rule when [`ConfigError::rule`]
    /// is set; empty for the configuration as a whole).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(RuleRef {
                index,
                name: Some(name),
            }) => write!(f, "rule \"{name}\" (rules[{index}]): ")?,
            Some(RuleRef { index, name: None }) => write!(f, "rules[{index}]: ")?,
            None => {}
        }
        if !self.path.is_empty() {
            // The path can hold a field name from the configuration (an unknown field).
            write!(f, "{}: ", self.path.escape_debug())?;
        } else if self.rule.is_none() {
            f.write_str("configuration: ")?;
        }
        self.problem.fmt(f)
    }
}

/// One thing wrong with a configuration. Displayed without its location (see
/// [`ConfigError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The text is not JSON.
    Syntax {
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value of the wrong JSON type.
    WrongType {
        /// What the field takes, e.g. "a whole number".
        expected: &'static str,
        /// What was found, e.g. "a string".
        found: &'static str,
    },
    /// A field this object does not have (often a typo).
    UnknownField {
        /// The unknown field.
        field: String,
        /// The fields the object does have.
        allowed: &'static [&'static str],
    },
    /// A required field is absent.
    Missing {
        /// An example of the field, as JSON.
        example: &'static str,
    },
    /// A string that is not one of the allowed words.
    UnknownVariant {
        /// The value found.
        value: String,
        /// The allowed values.
        allowed: &'static [&'static str],
    },
    /// A number outside its allowed range.
    OutOfRange {
        /// The value found.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
        /// Why the range is what it is.
        why: &'static str,
    },
    /// A list that must not be empty is empty.
    EmptyList {
        /// What an empty list would mean, and what to do instead.
        hint: &'static str,
    },
    /// A string that must not be empty is empty.
    EmptyString,
    /// `rules` is missing or empty.
    NoRules,
    /// A rule name used twice.
    DuplicateName {
        /// The name.
        name: String,
        /// The index of the rule that has it first.
        first: usize,
    },
    /// A rule name with characters outside `[A-Za-z0-9_.-]` or too long.
    InvalidName {
        /// The name found.
        name: String,
    },
    /// A `namespace` with characters outside `[A-Za-z0-9_.-]`, empty or too long.
    InvalidNamespace {
        /// The namespace found.
        name: String,
    },
    /// A period that is not `<integer><unit>`.
    InvalidDuration {
        /// The text found.
        text: String,
    },
    /// A period of zero.
    ZeroDuration {
        /// The text found.
        text: String,
    },
    /// A period above the maximum.
    DurationTooLong {
        /// The text found.
        text: String,
    },
    /// More than one request per nanosecond.
    TooFine {
        /// Requests per period.
        requests: u64,
    },
    /// `burst` given for an algorithm other than GCRA.
    BurstNeedsGcra {
        /// The rule's algorithm.
        algorithm: &'static str,
    },
    /// `delay` on a rule whose algorithm is not GCRA.
    DelayNeedsGcra {
        /// The rule's algorithm.
        algorithm: &'static str,
    },
    /// `delay` on a rule that does not enforce (`shadow` or `soft`).
    DelayNeedsEnforce,
    /// `delay` on a rule with `"scope": "global"`.
    DelayWithGlobalScope,
    /// `delay` on a rule with a `lease`.
    DelayWithLease,
    /// `delay` in an edge worker configuration that also has rules with a `lease`.
    DelayBesideLeasesAtTheEdge {
        /// A rule with a `lease`.
        leased: String,
    },
    /// `delay.max` outside 1ms to 60s.
    DelayOutOfRange {
        /// The text found.
        text: String,
    },
    /// A field a concurrency rule cannot have.
    NotWithConcurrency {
        /// The field found.
        field: &'static str,
    },
    /// A concurrency rule with `"scope": "global"`.
    ConcurrencyWithGlobalScope,
    /// `concurrency.max` in a rule with tiers.
    ConcurrencyMaxWithTier,
    /// `concurrency.slot_ttl` outside 1s to 1d.
    SlotTtlOutOfRange {
        /// The text found.
        text: String,
    },
    /// A sliding log above its size limit.
    SlidingLogTooLarge {
        /// Requests per period found.
        requests: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A cost that can never be admitted.
    CostAboveCapacity {
        /// The cost found.
        cost: u64,
        /// The rule's capacity.
        capacity: u64,
        /// Where the capacity comes from (`limit.burst`, `limit.requests`, or a tier's or
        /// override's field).
        capacity_field: String,
    },
    /// A header cost whose default is above its maximum.
    DefaultAboveMax {
        /// The default found.
        default: u64,
        /// The maximum found.
        max: u64,
    },
    /// Not a valid HTTP header (or cookie or query parameter) name.
    InvalidFieldName {
        /// The name found.
        name: String,
    },
    /// Not an uppercase HTTP method token.
    InvalidMethod {
        /// The method found.
        method: String,
    },
    /// A path that does not start with `/`.
    InvalidPath {
        /// The path found.
        path: String,
    },
    /// A host pattern that is neither a host name nor `*.` followed by one.
    InvalidHostPattern {
        /// The pattern found.
        pattern: String,
    },
    /// A rule whose table could take more shared memory than allowed.
    TableTooLarge {
        /// The rule's worst case, in bytes.
        bytes: u64,
        /// The most allowed, in bytes.
        max: u64,
        /// The rule's `max_keys`.
        max_keys: u32,
    },
    /// A string that cannot be sent as an HTTP header value.
    InvalidHeaderValue,
    /// A key part that is none of the known forms.
    InvalidKeyPart,
    /// A key part name that needs an argument, given as a plain string.
    KeyPartNeedsArgument {
        /// The part, e.g. `header`.
        part: String,
    },
    /// `global.domain` with characters outside `[A-Za-z0-9_.-]` or too long.
    InvalidDomain {
        /// The domain found.
        domain: String,
    },
    /// Not an attribute (`{"header": ...}`, `{"cookie": ...}`, `{"query": ...}`,
    /// `{"claim": ...}`).
    InvalidAttribute,
    /// `tier.from` is neither an attribute nor `"client_ip"`.
    InvalidTierSource,
    /// A tier name that is not `[A-Za-z0-9_.-]{1,64}`, or is `deny` or `exempt`.
    InvalidTierName {
        /// The name found.
        name: String,
    },
    /// `tier.default` names no tier and is not `deny` or `exempt`.
    InvalidTierDefault {
        /// The value found.
        value: String,
        /// The tiers there are.
        tiers: alloc::vec::Vec<String>,
    },
    /// `values` in a client-IP tier, or `cidrs` in an attribute tier.
    TierSelectorMismatch {
        /// Whether the tiers come from the client address.
        client_ip: bool,
    },
    /// A value or network that already selects another tier.
    TierValueTaken {
        /// The value or network.
        value: String,
        /// The tier it selects already.
        tier: String,
    },
    /// A CIDR that does not parse.
    InvalidCidr {
        /// The text found.
        text: String,
    },
    /// A CIDR with bits set after its prefix.
    CidrHostBits {
        /// The text found.
        text: String,
    },
    /// Both `limit` and `tier` in one rule.
    LimitWithTier,
    /// An override name that is invalid, `deny`, or a tier's name.
    InvalidOverrideName {
        /// The name found.
        name: String,
    },
    /// Overrides on a rule whose key has a `client_ip` part.
    OverrideNeedsTextKey {
        /// The path of the part, e.g. `key[0]`.
        part: String,
    },
    /// `key_sha256` on a rule whose key has several parts.
    OverrideHashNeedsOnePart,
    /// Not 64 hex digits.
    InvalidSha256,
    /// Both `key` and `key_sha256` in one override.
    OverrideKeyConflict,
    /// Two overrides of one key.
    DuplicateOverrideKey,
    /// An override `key` list whose length is not the number of key parts.
    OverrideKeyParts {
        /// Values given.
        given: usize,
        /// Parts of the rule's key.
        parts: usize,
    },
    /// A `match` condition that is not exactly one of its forms.
    InvalidCondition,
    /// A claim path with an empty name.
    InvalidClaimPath {
        /// The text found.
        path: String,
    },
    /// A claim read in a configuration without the `jwt` section.
    ClaimWithoutJwt,
    /// A `jwt` section naming no source (or `insecure_unverified_bearer: false`).
    JwtSourceNeeded,
    /// A `jwt` section naming two sources.
    JwtSourceConflict,
    /// `global.timeout` outside 1ms to 60s.
    TimeoutOutOfRange {
        /// The text found.
        text: String,
    },
    /// A rule with `"scope": "global"` in a configuration without the `global` object.
    GlobalScopeWithoutService,
    /// A `lease` on a rule whose counters are not global.
    LeaseNeedsGlobalScope,
    /// A `lease` on a rule whose limit depends on the caller (`tier` or `overrides`).
    LeaseWithCallerLimits,
    /// A `lease` on a rule whose algorithm cannot be leased.
    LeaseUnsupported {
        /// The rule's algorithm.
        algorithm: &'static str,
    },
    /// `lease.max` with a fixed `lease.size`.
    LeaseMaxWithoutAuto,
    /// `lease.lifetime` outside 10ms to the rule's period.
    LeaseLifetimeOutOfRange {
        /// The text found.
        text: String,
        /// The rule's period, in nanoseconds.
        period: u64,
    },
    /// A `lease` on a rule whose period is shorter than the shortest lifetime.
    LeasePeriodTooShort {
        /// The rule's period, in nanoseconds.
        period: u64,
    },
    /// `warn_at.remaining` at or above what the rule admits at once: every request would be
    /// marked.
    WarnAtNotBelowCapacity {
        /// The threshold found.
        remaining: u64,
        /// The smallest capacity of the rule's limits.
        capacity: u64,
        /// Where that capacity comes from.
        capacity_field: String,
    },
    /// `warn_at` on a shadow rule, which tells the client nothing.
    WarnAtInShadow,
    /// `response.warning_header` names a header sluice sets for another purpose.
    WarningHeaderReserved {
        /// The name found.
        name: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax { message } => write!(f, "not valid JSON: {message}"),
            Problem::WrongType { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            Problem::UnknownField { field, allowed } => {
                write!(
                    f,
                    "unknown field {field}; the fields here are ",
                    field = Quoted(field)
                )?;
                write_list(f, allowed)
            }
            Problem::Missing { example } => write!(f, "required, e.g. {example}"),
            Problem::UnknownVariant { value, allowed } => {
                write!(f, "{value} is not one of ", value = Quoted(value))?;
                write_list(f, allowed)
            }
            Problem::OutOfRange {
                value,
                min,
                max,
                why,
            } => {
                if *max == u64::MAX {
                    write!(f, "{value} is out of range; use {min} or more")?;
                } else {
                    write!(f, "{value} is out of range; use {min} to {max}")?;
                }
                if !why.is_empty() {
                    write!(f, " ({why})")?;
                }
                Ok(())
            }
            Problem::EmptyList { hint } => write!(f, "must not be empty: {hint}"),
            Problem::EmptyString => f.write_str("must not be empty"),
            Problem::NoRules => f.write_str(
                "at least one rule is required, e.g. [{\"name\": \"per-client\", \"key\": \
                 [\"client_ip\"], \"limit\": {\"requests\": 100, \"period\": \"1m\"}}]",
            ),
            Problem::DuplicateName { name, first } => write!(
                f,
                "{name} is already the name of rules[{first}]; rule names must be unique \
                 (each rule has its own counters)",
                name = Quoted(name)
            ),
            Problem::InvalidName { name } => write!(
                f,
                "{name} is not a valid rule name; use 1 to 64 characters from A-Z a-z 0-9 _ . -",
                name = Quoted(name)
            ),
            Problem::InvalidNamespace { name } => write!(
                f,
                "{name} is not a valid namespace; use 1 to 64 characters from A-Z a-z 0-9 _ . - \
                 (or leave it out to keep this configuration's counters to itself)",
                name = Quoted(name)
            ),
            Problem::InvalidDuration { text } => write!(
                f,
                "{text} is not a duration; use a number with ms, s, m, h or d, e.g. 30s",
                text = Quoted(text)
            ),
            Problem::ZeroDuration { text } => {
                write!(
                    f,
                    "{text} is zero; a period must be longer than zero",
                    text = Quoted(text)
                )
            }
            Problem::DurationTooLong { text } => write!(
                f,
                "{text} is longer than the maximum period of 366d; use a period of a year or less",
                text = Quoted(text)
            ),
            Problem::TooFine { requests } => write!(
                f,
                "{requests} requests per period is more than one per nanosecond; lower \
                 limit.requests or lengthen limit.period"
            ),
            Problem::BurstNeedsGcra { algorithm } => write!(
                f,
                "only the gcra algorithm has a burst ({algorithm} always allows up to \
                 limit.requests at once); remove burst or set \"algorithm\": \"gcra\""
            ),
            Problem::DelayNeedsGcra { algorithm } => write!(
                f,
                "only gcra can hold a request until its slot comes back: {algorithm} cannot tell \
                 when a unit is free again without over-admitting; set \"algorithm\": \"gcra\" \
                 or remove delay"
            ),
            Problem::DelayNeedsEnforce => f.write_str(
                "a shadow or soft rule never denies, so it has nothing to hold instead; remove \
                 delay or use \"mode\": \"enforce\"",
            ),
            Problem::DelayWithGlobalScope => f.write_str(
                "a global rule is decided by the rate-limit service, which cannot hold a \
                 request; remove delay or drop \"scope\": \"global\" (a local rule can hold)",
            ),
            Problem::DelayWithLease => f.write_str(
                "a leased rule spends from a slice taken in advance, so there is no slot to wait \
                 for; remove delay or lease",
            ),
            Problem::DelayBesideLeasesAtTheEdge { leased } => write!(
                f,
                "the edge worker cannot give back what a held request took from the slices of \
                 leased rules (rule {leased} has a lease) if it is refused or its client leaves; \
                 remove delay, or the lease of every rule",
                leased = Quoted(leased)
            ),
            Problem::DelayOutOfRange { text } => write!(
                f,
                "{text} is out of range; use 1ms up to 60s (a request held longer is better told \
                 to come back)",
                text = Quoted(text)
            ),
            Problem::NotWithConcurrency { field } => f.write_str(match *field {
                "limit" => {
                    "a concurrency rule caps requests in flight, not requests per period: \
                         its cap is concurrency.max; remove limit (or make a second rule for \
                         the rate)"
                }
                "algorithm" => "a concurrency rule counts slots in flight; remove algorithm",
                "cost" => "each request in flight holds one slot; remove cost",
                "delay" => {
                    "a concurrency slot comes back when another request ends, which no \
                         timer can wait for; remove delay"
                }
                "lease" => {
                    "a concurrency slot is given back when its request ends, which a slice \
                         spent elsewhere cannot carry; remove lease"
                }
                _ => "a concurrency rule cannot have this field; remove it",
            }),
            Problem::ConcurrencyMaxWithTier => f.write_str(
                "a tiered concurrency rule takes each tier's cap from tier.limits, e.g. \
                 {\"free\": {\"max\": 2}}; remove max here (slot_ttl stays)",
            ),
            Problem::ConcurrencyWithGlobalScope => f.write_str(
                "the rate-limit service decides a request once and never hears that it ended, \
                 so a global slot would only come back when it expires; drop \
                 \"scope\": \"global\" (a local rule counts across every VM of the proxy)",
            ),
            Problem::SlotTtlOutOfRange { text } => write!(
                f,
                "{text} is out of range; use 1s up to 1d (the longest a request may be in \
                 flight, e.g. the upstream timeout: a slot whose release is lost comes back \
                 after it)",
                text = Quoted(text)
            ),
            Problem::SlidingLogTooLarge { requests, max } => write!(
                f,
                "{requests} is too many for sliding_log, which stores the time of every request \
                 (at most {max}); use \"algorithm\": \"sliding_window\" for larger limits"
            ),
            Problem::CostAboveCapacity {
                cost,
                capacity,
                capacity_field,
            } => write!(
                f,
                "{cost} is more than the rule admits at once ({capacity}, from \
                 {capacity_field}), so such a request could never pass; use at most {capacity}"
            ),
            Problem::DefaultAboveMax { default, max } => write!(
                f,
                "default {default} is above max {max}; the default must be at most the max"
            ),
            Problem::InvalidFieldName { name } => write!(
                f,
                "{name} is not a valid name; use letters, digits and !#$%&'*+-.^_`|~ only",
                name = Quoted(name)
            ),
            Problem::InvalidMethod { method } => {
                let upper = method.to_ascii_uppercase();
                if method.bytes().all(is_token_byte) && upper != *method {
                    write!(
                        f,
                        "{method} is not uppercase; methods are case-sensitive, use \"{upper}\"",
                        method = Quoted(method)
                    )
                } else {
                    write!(
                        f,
                        "{method} is not an HTTP method; use an uppercase token such as \"GET\"",
                        method = Quoted(method)
                    )
                }
            }
            Problem::InvalidPath { path } => write!(
                f,
                "{path} does not start with /; paths are matched from the root, e.g. \"/login\"",
                path = Quoted(path)
            ),
            Problem::InvalidHostPattern { pattern } => write!(
                f,
                "{pattern} is not a host pattern; use a host name such as \"api.example.com\" \
                 or \"*.example.com\" for its subdomains (no port, no scheme)",
                pattern = Quoted(pattern)
            ),
            Problem::TableTooLarge {
                bytes,
                max,
                max_keys,
            } => {
                f.write_str("the rule's counters for ")?;
                write!(f, "{max_keys} keys could take up to ")?;
                write_size(f, *bytes)?;
                f.write_str(" of the proxy's shared memory, more than the ")?;
                write_size(f, *max)?;
                f.write_str(
                    " allowed per rule; lower max_keys, or for sliding_log lower \
                     limit.requests or use sliding_window",
                )
            }
            Problem::InvalidHeaderValue => f.write_str(
                "contains a character that cannot be sent in an HTTP header (control characters \
                 and line breaks are not allowed)",
            ),
            Problem::InvalidKeyPart => f.write_str(
                "not a key part; use \"client_ip\", \"path\", \"method\", \"host\", or one of \
                 {\"client_ip\": {\"ipv4_prefix\": 24, \"ipv6_prefix\": 64}}, \
                 {\"header\": \"x-api-key\"}, {\"cookie\": \"session\"}, {\"query\": \"api_key\"}, \
                 {\"const\": \"global\"}",
            ),
            Problem::KeyPartNeedsArgument { part } => {
                let example = match part.as_str() {
                    "header" => "{\"header\": \"x-api-key\"}",
                    "cookie" => "{\"cookie\": \"session\"}",
                    "query" => "{\"query\": \"api_key\"}",
                    _ => "{\"const\": \"global\"}",
                };
                write!(
                    f,
                    "{part} needs a name; write it as {example}",
                    part = Quoted(part)
                )
            }
            Problem::InvalidDomain { domain } => write!(
                f,
                "{domain} is not a valid domain; use 1 to 64 characters from A-Z a-z 0-9 _ . -",
                domain = Quoted(domain)
            ),
            Problem::InvalidAttribute => f.write_str(
                "not a request attribute; use one of {\"header\": \"x-plan\"}, \
                 {\"cookie\": \"plan\"}, {\"query\": \"plan\"}, {\"claim\": \"plan\"}",
            ),
            Problem::InvalidTierSource => f.write_str(
                "not a tier source; use \"client_ip\" (tiers by CIDR lists) or one of \
                 {\"header\": \"x-plan\"}, {\"cookie\": \"plan\"}, {\"query\": \"plan\"}, \
                 {\"claim\": \"plan\"}",
            ),
            Problem::InvalidTierName { name } => write!(
                f,
                "{name} is not a valid tier name; use 1 to 64 characters from A-Z a-z 0-9 _ . - \
                 (\"deny\" and \"exempt\" are words of tier.default; select such a tier with \
                 \"values\")",
                name = Quoted(name)
            ),
            Problem::InvalidTierDefault { value, tiers } => {
                write!(
                    f,
                    "{value} is not a tier; use \"deny\", \"exempt\" or one of the tiers: ",
                    value = Quoted(value)
                )?;
                for (i, tier) in tiers.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", Quoted(tier))?;
                }
                Ok(())
            }
            Problem::TierSelectorMismatch { client_ip: true } => {
                f.write_str("tiers from client_ip are selected by \"cidrs\", not \"values\"")
            }
            Problem::TierSelectorMismatch { client_ip: false } => f.write_str(
                "\"cidrs\" select tiers from client_ip only; these tiers are selected by \
                 \"values\" (or their names)",
            ),
            Problem::TierValueTaken { value, tier } => write!(
                f,
                "{value} already selects tier {tier}; each value selects one tier",
                value = Quoted(value),
                tier = Quoted(tier)
            ),
            Problem::InvalidCidr { text } => write!(
                f,
                "{text} is not a network; write an address with a prefix length, e.g. \
                 \"10.0.0.0/8\" or \"2001:db8::/32\"",
                text = Quoted(text)
            ),
            Problem::CidrHostBits { text } => write!(
                f,
                "{text} has bits set after its prefix; write the network's first address, e.g. \
                 \"10.0.0.0/8\"",
                text = Quoted(text)
            ),
            Problem::LimitWithTier => f.write_str(
                "a rule has either \"limit\" or \"tier\"; a tiered rule takes its limits from \
                 tier.limits (name the tier of unknown requests in tier.default)",
            ),
            Problem::InvalidOverrideName { name } => write!(
                f,
                "{name} is not a valid override name; use 1 to 64 characters from A-Z a-z 0-9 _ \
                 . -, other than \"deny\" and the rule's tier names",
                name = Quoted(name)
            ),
            Problem::OverrideNeedsTextKey { part } => write!(
                f,
                "overrides match the key's values, and {part} is a client_ip part; give \
                 addresses their own limits with a tier from \"client_ip\" and \"cidrs\""
            ),
            Problem::OverrideHashNeedsOnePart => f.write_str(
                "key_sha256 is the hash of a one-part key's value, and this rule's key has \
                 several parts; use \"key\" with one value per part",
            ),
            Problem::InvalidSha256 => f.write_str(
                "not a SHA-256 digest; write the 64 hex digits of the key's SHA-256, e.g. from \
                 `printf %s KEY | sha256sum`",
            ),
            Problem::OverrideKeyConflict => {
                f.write_str("give either \"key\" or \"key_sha256\", not both")
            }
            Problem::DuplicateOverrideKey => {
                f.write_str("another override has this key already; each key has one override")
            }
            Problem::OverrideKeyParts { given, parts } => write!(
                f,
                "{given} values for a key of {parts} parts; give one value per key part, in order"
            ),
            Problem::InvalidCondition => f.write_str(
                "a condition is one of {\"present\": true}, {\"present\": false}, \
                 {\"equals\": \"v\"}, {\"one_of\": [\"v1\", \"v2\"]}, {\"prefix\": \"v\"}",
            ),
            Problem::InvalidClaimPath { path } => write!(
                f,
                "{path} is not a claim path; use a claim name, dot-separated names for nested \
                 claims (\"org.id\"), or a list of names for names with dots",
                path = Quoted(path)
            ),
            Problem::ClaimWithoutJwt => f.write_str(
                "reads a JWT claim, but the configuration has no \"jwt\" section saying where \
                 the verified token comes from, e.g. \"jwt\": {\"payload_header\": \
                 \"x-jwt-payload\"}",
            ),
            Problem::JwtSourceNeeded => f.write_str(
                "say where the verified token comes from: {\"payload_header\": \
                 \"x-jwt-payload\"} (the header Envoy's jwt_authn forward_payload_header sets), \
                 or {\"insecure_unverified_bearer\": true} to read the client's own bearer \
                 token unverified",
            ),
            Problem::JwtSourceConflict => {
                f.write_str("give one of payload_header or insecure_unverified_bearer, not both")
            }
            Problem::TimeoutOutOfRange { text } => write!(
                f,
                "{text} is out of range; use 1ms to 60s (a request waits this long for the \
                 rate-limit service at most)",
                text = Quoted(text)
            ),
            Problem::GlobalScopeWithoutService => f.write_str(
                "\"global\" needs the top-level \"global\" object naming the rate-limit service, \
                 e.g. \"global\": {\"cluster\": \"sluice_service\"}; or use \"scope\": \"local\"",
            ),
            Problem::LeaseNeedsGlobalScope => f.write_str(
                "a lease is a slice of a global count; it needs \"scope\": \"global\" (a local \
                 rule already decides without the rate-limit service)",
            ),
            Problem::LeaseWithCallerLimits => f.write_str(
                "a lease is a slice of one limit, and this rule's limit depends on the caller \
                 (tier or overrides); split the callers into rules of their own, or remove lease",
            ),
            Problem::LeaseUnsupported { algorithm } => write!(
                f,
                "{algorithm} cannot be leased: it remembers the time of every request, so units \
                 granted now and spent later would expire early and admit more than the bound; \
                 use \"algorithm\": \"sliding_window\" (or gcra, fixed_window) or remove lease"
            ),
            Problem::LeaseMaxWithoutAuto => f.write_str(
                "max only goes with \"size\": \"auto\"; a fixed size is the slice already, \
                 remove max or write \"size\": \"auto\"",
            ),
            Problem::LeaseLifetimeOutOfRange { text, period } => {
                write!(
                    f,
                    "{text} is out of range; use 10ms up to the rule's period (",
                    text = Quoted(text)
                )?;
                write_duration(f, *period)?;
                f.write_str("): a slice is spent within the period it was granted in")
            }
            Problem::LeasePeriodTooShort { period } => {
                f.write_str("the rule's period (")?;
                write_duration(f, *period)?;
                f.write_str(
                    ") is shorter than the shortest lease lifetime of 10ms; lengthen \
                     limit.period or remove lease",
                )
            }
            Problem::WarnAtNotBelowCapacity {
                remaining,
                capacity,
                capacity_field,
            } => write!(
                f,
                "{remaining} is not below what the rule admits at once ({capacity}, from \
                 {capacity_field}), so every request would be marked; use at most {}",
                capacity.saturating_sub(1)
            ),
            Problem::WarnAtInShadow => f.write_str(
                "a shadow rule tells the client nothing, so it cannot warn; use \"mode\": \
                 \"soft\" to warn without denying, or \"enforce\"",
            ),
            Problem::WarningHeaderReserved { name } => write!(
                f,
                "{name} is a header sluice sets for another purpose; choose another name, \
                 e.g. \"ratelimit-warning\"",
                name = Quoted(name)
            ),
        }
    }
}

/// Text from the configuration, in quotes, escaped as a Rust string literal would be (quotes,
/// backslashes, line breaks and other control characters), so that an error is always one
/// unambiguous log line whatever the configuration holds.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_debug())
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[&str]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(if i + 1 == items.len() { " or " } else { ", " })?;
        }
        f.write_str(item)?;
    }
    Ok(())
}

/// Nanoseconds in the largest configuration unit that divides them (`1m`, `250ms`).
fn write_duration(f: &mut fmt::Formatter<'_>, nanos: u64) -> fmt::Result {
    const MS: u64 = 1_000_000;
    const UNITS: [(u64, &str); 5] = [
        (86_400_000 * MS, "d"),
        (3_600_000 * MS, "h"),
        (60_000 * MS, "m"),
        (1_000 * MS, "s"),
        (MS, "ms"),
    ];
    match UNITS
        .iter()
        .find(|(unit, _)| nanos >= *unit && nanos.is_multiple_of(*unit))
    {
        Some((unit, name)) => write!(f, "{}{name}", nanos / unit),
        None => write!(f, "{nanos}ns"),
    }
}

/// Bytes as MiB or GiB with one decimal, rounded up (a ceiling should not be understated).
fn write_size(f: &mut fmt::Formatter<'_>, bytes: u64) -> fmt::Result {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let (unit, name) = if bytes >= GIB {
        (GIB, "GiB")
    } else {
        (MIB, "MiB")
    };
    let tenths = u128::from(bytes)
        .saturating_mul(10)
        .div_ceil(u128::from(unit));
    write!(f, "{}.{} {name}", tenths / 10, tenths % 10)
}

/// `tchar` of RFC 9110 (token characters).
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
