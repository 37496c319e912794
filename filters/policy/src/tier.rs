//! Tiers: a rule whose limit depends on who the caller is (its plan), chosen per request by a
//! request attribute or by the client address's membership in CIDR lists.
//!
//! ```json
//! "tier": {
//!   "from": {"header": "x-plan"},
//!   "limits": {
//!     "free": {"requests": 100, "period": "1m"},
//!     "pro":  {"requests": 10000, "period": "1m", "values": ["pro", "pro-annual"]}
//!   },
//!   "default": "free"
//! }
//! ```
//!
//! Each tier is a limit of its own with its own counters (a table named `<rule>:<tier>`, sized
//! by the tier's `max_keys`) and its own `RateLimit-Policy` item, named `<rule>:<tier>`. A
//! request whose value selects no tier (or that has none) takes `default`: a tier's name,
//! `"deny"` or `"exempt"`.

use core::net::IpAddr;

use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;
use sluice_core::{Algorithm, Limit, Quota};

use crate::attributes::Attribute;
use crate::error::{ConfigError, Problem};
use crate::json::{self, Fields};
use crate::key::KeyInput;
use crate::request::Request;

/// What one of a rule's limits is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// The rule's own `limit`.
    Base,
    /// A tier of `tier.limits`.
    Tier,
    /// An entry of `overrides`.
    Override,
    /// The denial of requests without a known tier (`"default": "deny"`): nothing fits it.
    Deny,
}

/// One of a rule's limits, with the name its checks, counters and `RateLimit-Policy` item
/// carry: the rule's name for its own `limit`, `<rule>:<name>` for a tier or an override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLimit {
    pub(crate) name: String,
    pub(crate) limit: Limit,
    pub(crate) max_keys: u32,
    pub(crate) kind: LimitKind,
}

impl NamedLimit {
    /// The name checks of this limit carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The algorithm and quota.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Its table's `max_keys`.
    pub fn max_keys(&self) -> u32 {
        self.max_keys
    }

    /// What it is for.
    pub fn kind(&self) -> LimitKind {
        self.kind
    }

    /// Whether it has a table in the counter store (a denial writes nothing).
    pub fn has_table(&self) -> bool {
        self.kind != LimitKind::Deny
    }
}

/// `<rule>:<name>`: the check name of a tier or an override. `:` is not allowed in rule
/// names, so it cannot meet another rule's name.
pub(crate) fn check_name(rule: &str, name: &str) -> String {
    let mut full = String::with_capacity(rule.len() + 1 + name.len());
    full.push_str(rule);
    full.push(':');
    full.push_str(name);
    full
}

/// Where a tiered rule's tier comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierSource {
    /// A request attribute's value, compared with each tier's values.
    Attribute(Attribute),
    /// The client address, looked up in each tier's CIDR list (the longest prefix wins).
    ClientIp,
}

/// A network: an address and a prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str, path: &str) -> Result<Cidr, ConfigError> {
        let invalid = || {
            ConfigError::new(
                path,
                Problem::InvalidCidr {
                    text: String::from(text),
                },
            )
        };
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(invalid)?,
            Some(_) => return Err(invalid()),
            None => bits,
        };
        let cidr = Cidr { network, prefix };
        if mask(network, prefix) != network {
            return Err(ConfigError::new(
                path,
                Problem::CidrHostBits {
                    text: String::from(text),
                },
            ));
        }
        Ok(cidr)
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (ip, self.network) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(ip, self.prefix) == self.network
            }
            _ => false,
        }
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(core::net::Ipv4Addr::from(u32::from(v4) & m))
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(core::net::Ipv6Addr::from(u128::from(v6) & m))
        }
    }
}

/// One tier: its index in the rule's limits, and what selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tier {
    limit: usize,
    values: Vec<String>,
    cidrs: Vec<Cidr>,
}

/// What a request without a known tier gets (`tier.default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// This limit (an index in the rule's limits).
    Limit(usize),
    /// The rule does not apply.
    Exempt,
}

/// A compiled `tier` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers {
    from: TierSource,
    tiers: Vec<Tier>,
    unknown: Unknown,
}

/// What a request's tier is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selected {
    /// The limit at this index of the rule's limits (a tier, or the denial).
    Limit(usize),
    /// The rule does not apply to the request.
    Exempt,
}

const TIER_FIELDS: &[&str] = &["from", "limits", "default"];
/// Fields of one tier: its limit, and what selects it.
pub(crate) const TIER_LIMIT_FIELDS: &[&str] =
    &["requests", "period", "burst", "max_keys", "values", "cidrs"];
/// Words of `tier.default` that are not tier names.
const RESERVED: &[&str] = &["deny", "exempt"];

/// What compiling a rule's tiers needs from the rule.
pub(crate) struct TierContext<'a> {
    pub(crate) rule: &'a str,
    pub(crate) algorithm: Algorithm,
    pub(crate) max_keys: u32,
    /// The fields a tier may have: its limit's (`requests`, `period`, `burst`; a concurrency
    /// rule's `max`), `max_keys`, and what selects it.
    pub(crate) limit_fields: &'static [&'static str],
    /// Parses one tier's limit fields (`requests`, `period`, `burst`, or `max`) at a path.
    pub(crate) limit: &'a dyn Fn(&Value, &str) -> Result<Limit, ConfigError>,
    /// Parses a `max_keys` value at a path.
    pub(crate) max_keys_of: &'a dyn Fn(&Value, &str) -> Result<u32, ConfigError>,
}

impl Tiers {
    /// Parses a `tier` section at `path`, appending each tier's limit (and the denial's, for
    /// `"default": "deny"`) to `limits`.
    pub(crate) fn parse(
        value: &Value,
        path: &str,
        context: &TierContext<'_>,
        limits: &mut Vec<NamedLimit>,
    ) -> Result<Tiers, ConfigError> {
        let fields = Fields::open(value, path, TIER_FIELDS)?;
        let from_path = fields.path("from");
        let from = match fields.require("from", "\"from\": {\"header\": \"x-plan\"}")? {
            Value::String(word) if word == "client_ip" => TierSource::ClientIp,
            other => TierSource::Attribute(Attribute::parse(other, &from_path).map_err(|e| {
                if matches!(e.problem(), Problem::InvalidAttribute) {
                    ConfigError::new(from_path.as_str(), Problem::InvalidTierSource)
                } else {
                    e
                }
            })?),
        };
        let limits_path = fields.path("limits");
        let concurrency = context.algorithm == Algorithm::Concurrency;
        let Value::Object(map) = fields.require(
            "limits",
            if concurrency {
                "\"limits\": {\"free\": {\"max\": 2}}"
            } else {
                "\"limits\": {\"free\": {\"requests\": 100, \"period\": \"1m\"}}"
            },
        )?
        else {
            return Err(ConfigError::new(
                limits_path,
                Problem::WrongType {
                    expected: "an object of limits by tier name",
                    found: json::kind(fields.get("limits").unwrap_or(&Value::Null)),
                },
            ));
        };
        if map.is_empty() {
            return Err(ConfigError::new(
                limits_path,
                Problem::EmptyList {
                    hint: if concurrency {
                        "name at least one tier, e.g. {\"free\": {\"max\": 2}}"
                    } else {
                        "name at least one tier, e.g. {\"free\": {\"requests\": 100, \
                         \"period\": \"1m\"}}"
                    },
                },
            ));
        }
        let mut tiers: Vec<Tier> = Vec::with_capacity(map.len());
        let mut names: Vec<&str> = Vec::with_capacity(map.len());
        let mut longest_period = 0;
        for (name, tier_value) in map {
            let tier_path = json::join(&limits_path, name);
            if !crate::config::valid_name(name) || RESERVED.contains(&name.as_str()) {
                return Err(ConfigError::new(
                    tier_path,
                    Problem::InvalidTierName { name: name.clone() },
                ));
            }
            let tier_fields = Fields::open(tier_value, &tier_path, context.limit_fields)?;
            let limit = (context.limit)(tier_value, &tier_path)?;
            longest_period = longest_period.max(limit.quota.period());
            let max_keys = match tier_fields.get("max_keys") {
                Some(v) => (context.max_keys_of)(v, &tier_fields.path("max_keys"))?,
                None => context.max_keys,
            };
            let (values, cidrs) = match &from {
                TierSource::ClientIp => {
                    if tier_fields.get("values").is_some() {
                        return Err(ConfigError::new(
                            tier_fields.path("values"),
                            Problem::TierSelectorMismatch { client_ip: true },
                        ));
                    }
                    let cidrs_path = tier_fields.path("cidrs");
                    let cidrs = json::string_list(
                        tier_fields.require("cidrs", "\"cidrs\": [\"10.0.0.0/8\"]")?,
                        &cidrs_path,
                        "list the networks of this tier, e.g. [\"10.0.0.0/8\"]",
                        Cidr::parse,
                    )?;
                    (Vec::new(), cidrs)
                }
                TierSource::Attribute(_) => {
                    if tier_fields.get("cidrs").is_some() {
                        return Err(ConfigError::new(
                            tier_fields.path("cidrs"),
                            Problem::TierSelectorMismatch { client_ip: false },
                        ));
                    }
                    let values = match tier_fields.get("values") {
                        Some(v) => json::string_list(
                            v,
                            &tier_fields.path("values"),
                            "leave values out to select the tier by its name",
                            |text, item_path| {
                                if text.is_empty() {
                                    return Err(ConfigError::new(item_path, Problem::EmptyString));
                                }
                                Ok(String::from(text))
                            },
                        )?,
                        None => alloc::vec![name.clone()],
                    };
                    (values, Vec::new())
                }
            };
            // Every value and network selects one tier.
            for (value_index, value) in values.iter().enumerate() {
                if let Some(other) = tiers.iter().position(|t| t.values.contains(value)) {
                    return Err(ConfigError::new(
                        match tier_fields.get("values") {
                            Some(_) => json::index(&tier_fields.path("values"), value_index),
                            None => tier_path.clone(),
                        },
                        Problem::TierValueTaken {
                            value: value.clone(),
                            tier: String::from(names.get(other).copied().unwrap_or("")),
                        },
                    ));
                }
            }
            for (cidr_index, cidr) in cidrs.iter().enumerate() {
                if let Some(other) = tiers.iter().position(|t| t.cidrs.contains(cidr)) {
                    return Err(ConfigError::new(
                        json::index(&tier_fields.path("cidrs"), cidr_index),
                        Problem::TierValueTaken {
                            value: format_cidr(cidr),
                            tier: String::from(names.get(other).copied().unwrap_or("")),
                        },
                    ));
                }
            }
            tiers.push(Tier {
                limit: limits.len(),
                values,
                cidrs,
            });
            names.push(name);
            limits.push(NamedLimit {
                name: check_name(context.rule, name),
                limit,
                max_keys,
                kind: LimitKind::Tier,
            });
        }
        let default_path = fields.path("default");
        let default = json::string(
            fields.require(
                "default",
                "\"default\": \"free\" (or \"deny\", or \"exempt\")",
            )?,
            &default_path,
        )?;
        let unknown = match default {
            "exempt" => Unknown::Exempt,
            "deny" => {
                // One unit per the longest tier period that no request can fit: the request is
                // denied and told to come back after that period.
                let quota = Quota::new(1, longest_period, 1).map_err(|_| {
                    ConfigError::new(
                        default_path.as_str(),
                        Problem::InvalidTierDefault {
                            value: String::from(default),
                            tiers: names.iter().map(|n| String::from(*n)).collect(),
                        },
                    )
                })?;
                limits.push(NamedLimit {
                    name: check_name(context.rule, "deny"),
                    limit: Limit::new(context.algorithm, quota),
                    max_keys: 1,
                    kind: LimitKind::Deny,
                });
                Unknown::Limit(limits.len() - 1)
            }
            name => match names.iter().position(|n| *n == name) {
                Some(index) => Unknown::Limit(tiers.get(index).map_or(0, |t| t.limit)),
                None => {
                    return Err(ConfigError::new(
                        default_path,
                        Problem::InvalidTierDefault {
                            value: String::from(name),
                            tiers: names.iter().map(|n| String::from(*n)).collect(),
                        },
                    ));
                }
            },
        };
        Ok(Tiers {
            from,
            tiers,
            unknown,
        })
    }

    /// The index in the rule's limits of the tier unknown requests get, else of the first
    /// tier.
    pub(crate) fn primary_limit(&self) -> usize {
        match self.unknown {
            Unknown::Limit(index) if self.tiers.iter().any(|t| t.limit == index) => index,
            _ => self.tiers.first().map_or(0, |t| t.limit),
        }
    }

    /// Where the tier comes from.
    pub fn source(&self) -> &TierSource {
        &self.from
    }

    /// Whether selecting the tier reads a JWT claim.
    pub(crate) fn reads_claims(&self) -> bool {
        matches!(&self.from, TierSource::Attribute(a) if a.is_claim())
    }

    /// Whether selecting the tier needs the client address.
    pub fn needs_client_ip(&self) -> bool {
        self.from == TierSource::ClientIp
    }

    /// The request's tier.
    pub(crate) fn select<R: Request + ?Sized>(&self, input: &mut KeyInput<'_, R>) -> Selected {
        let tier = match &self.from {
            TierSource::Attribute(attribute) => {
                let mut value = core::mem::take(&mut input.scratch);
                value.clear();
                let tier = if attribute.read_into(input, &mut value) {
                    self.tiers
                        .iter()
                        .find(|t| t.values.iter().any(|v| v.as_bytes() == value.as_slice()))
                } else {
                    None
                };
                input.scratch = value;
                tier
            }
            TierSource::ClientIp => input.client_ip().and_then(|ip| {
                self.tiers
                    .iter()
                    .filter_map(|t| {
                        let best = t.cidrs.iter().filter(|c| c.contains(ip)).map(|c| c.prefix);
                        best.max().map(|prefix| (prefix, t))
                    })
                    .max_by_key(|(prefix, _)| *prefix)
                    .map(|(_, t)| t)
            }),
        };
        match (tier, self.unknown) {
            (Some(tier), _) => Selected::Limit(tier.limit),
            (None, Unknown::Limit(limit)) => Selected::Limit(limit),
            (None, Unknown::Exempt) => Selected::Exempt,
        }
    }
}

fn format_cidr(cidr: &Cidr) -> String {
    use core::fmt::Write as _;
    let mut text = String::new();
    let _ = write!(text, "{}/{}", cidr.network, cidr.prefix);
    text
}
