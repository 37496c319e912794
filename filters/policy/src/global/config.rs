//! The `global` object and `rules[].scope`.

use alloc::string::String;
use serde_json::Value;
use sluice_core::Nanos;
use sluice_core::time::{NANOS_PER_MILLI, NANOS_PER_SEC};

use crate::duration::{DurationError, parse_period};
use crate::error::{ConfigError, Problem};
use crate::json::{self, Fields};

/// `global.path` when not given: the service's native decide endpoint.
pub const DEFAULT_PATH: &str = "/v1/decide";
/// `global.timeout` when not given: 100 ms.
pub const DEFAULT_TIMEOUT: Nanos = 100 * NANOS_PER_MILLI;
/// `global.domain` when not given.
pub const DEFAULT_DOMAIN: &str = "sluice";
/// The shortest `global.timeout`.
pub const MIN_TIMEOUT: Nanos = NANOS_PER_MILLI;
/// The longest `global.timeout`: a request waits at most this long for the service.
pub const MAX_TIMEOUT: Nanos = 60 * NANOS_PER_SEC;

const GLOBAL_FIELDS: &[&str] = &["cluster", "authority", "path", "timeout", "domain"];
const SCOPE_NAMES: &[&str] = &["local", "global"];
const SCOPES: &[Scope] = &[Scope::Local, Scope::Global];

/// Where a rule's counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// In the proxy's shared data: one count per proxy (per Envoy process, per NGINX).
    #[default]
    Local,
    /// In the rate-limit service: one count across every proxy that asks it. (The edge
    /// worker's counters are global already: there, both scopes mean the same.)
    Global,
}

impl Scope {
    /// The name used in configuration files.
    pub fn name(&self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

/// The compiled `global` object: how the filter reaches the rate-limit service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    cluster: String,
    authority: String,
    path: String,
    timeout: Nanos,
    domain: String,
}

impl GlobalConfig {
    /// The proxy's name for the service's upstream (Envoy cluster, ngx_wasm_module host).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The `:authority` of calls to the service.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The `:path` of calls to the service.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// How long a request waits for the service before the global rules' failure modes apply.
    pub fn timeout(&self) -> Nanos {
        self.timeout
    }

    /// The service's domain for this configuration's rules.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

/// Parses the `global` object.
pub(crate) fn parse_global(value: &Value) -> Result<GlobalConfig, ConfigError> {
    let fields = Fields::open(value, "global", GLOBAL_FIELDS)?;
    let cluster_path = fields.path("cluster");
    let cluster = json::non_empty_string(
        fields.require("cluster", "\"cluster\": \"sluice_service\"")?,
        &cluster_path,
    )?;
    json::header_value(cluster, &cluster_path)?;
    let authority = match fields.get("authority") {
        Some(v) => {
            let path = fields.path("authority");
            let authority = json::non_empty_string(v, &path)?;
            json::header_value(authority, &path)?;
            authority
        }
        None => cluster,
    };
    let path = match fields.get("path") {
        Some(v) => {
            let field = fields.path("path");
            let text = json::string(v, &field)?;
            json::header_value(text, &field)?;
            json::http_path(text, &field)?
        }
        None => String::from(DEFAULT_PATH),
    };
    let timeout = match fields.get("timeout") {
        Some(v) => timeout(v, &fields.path("timeout"))?,
        None => DEFAULT_TIMEOUT,
    };
    let domain = match fields.get("domain") {
        Some(v) => {
            let field = fields.path("domain");
            let text = json::string(v, &field)?;
            if !valid_domain(text) {
                return Err(ConfigError::new(
                    field,
                    Problem::InvalidDomain {
                        domain: String::from(text),
                    },
                ));
            }
            text
        }
        None => DEFAULT_DOMAIN,
    };
    Ok(GlobalConfig {
        cluster: String::from(cluster),
        authority: String::from(authority),
        path,
        timeout,
        domain: String::from(domain),
    })
}

/// A domain is part of the service's store keys: the rule-name alphabet keeps it free of
/// separators and hash-tag braces.
fn valid_domain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= crate::MAX_NAME_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn timeout(value: &Value, path: &str) -> Result<Nanos, ConfigError> {
    let text = json::string(value, path)?;
    let out_of_range = || {
        ConfigError::new(
            path,
            Problem::TimeoutOutOfRange {
                text: String::from(text),
            },
        )
    };
    match parse_period(text) {
        Ok(nanos) if (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&nanos) => Ok(nanos),
        Ok(_) | Err(DurationError::Zero | DurationError::TooLong) => Err(out_of_range()),
        Err(DurationError::Malformed) => Err(ConfigError::new(
            path,
            Problem::InvalidDuration {
                text: String::from(text),
            },
        )),
    }
}

/// Parses a rule's `scope`.
pub(crate) fn parse_scope(value: &Value) -> Result<Scope, ConfigError> {
    json::variant(value, "scope", SCOPE_NAMES, SCOPES)
}
