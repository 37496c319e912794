//! Request attributes that tiers and `match` conditions read by name: a header, a cookie, a
//! query parameter or a JWT claim. Written in the configuration as a one-field object:
//! `{"header": "x-plan"}`, `{"cookie": "plan"}`, `{"query": "plan"}`, `{"claim": "org.plan"}`.
//!
//! Values are the bytes a key part of the same kind would hold (see [`crate::key`]): a
//! header's first value with surrounding spaces and tabs trimmed, the first cookie of that
//! name, the first query parameter of that name percent-decoded, a claim's value (see
//! [`crate::jwt`]). An empty value is no value.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde_json::Value;

use crate::error::{ConfigError, Problem, is_token_byte};
use crate::json::{self, Fields};
use crate::jwt::{ClaimPath, find_claim};
use crate::key::{KeyInput, cookie_value, field_name};
use crate::request::Request;
use crate::uri;

/// A named attribute of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute {
    /// The first value of a header (name lowercase).
    Header(String),
    /// The first cookie with this name.
    Cookie(String),
    /// The first query parameter with this name, percent-decoded.
    Query(String),
    /// A claim of the verified JWT (see the `jwt` section).
    Claim(ClaimPath),
}

impl Attribute {
    /// The configuration words of the attribute kinds.
    pub(crate) const KINDS: &'static [&'static str] = &["header", "cookie", "query", "claim"];

    /// Parses `{"header": NAME}`, `{"cookie": NAME}`, `{"query": NAME}` or `{"claim": PATH}`.
    pub(crate) fn parse(value: &Value, path: &str) -> Result<Attribute, ConfigError> {
        let kind = match value {
            Value::Object(map) if map.len() == 1 => map.keys().next().map(String::as_str),
            _ => None,
        };
        let Some(kind) = kind.filter(|k| Attribute::KINDS.contains(k)) else {
            return Err(ConfigError::new(path, Problem::InvalidAttribute));
        };
        let fields = Fields::open(value, path, Attribute::KINDS)?;
        let field_path = fields.path(kind);
        let Some(argument) = fields.get(kind) else {
            return Err(ConfigError::new(path, Problem::InvalidAttribute));
        };
        Attribute::of_kind(kind, argument, &field_path)
    }

    /// The attribute of `kind` named by `argument` (at `path`).
    pub(crate) fn of_kind(
        kind: &str,
        argument: &Value,
        path: &str,
    ) -> Result<Attribute, ConfigError> {
        match kind {
            "header" => Ok(Attribute::Header(field_name(argument, path)?)),
            "cookie" => Ok(Attribute::Cookie(cookie_name(argument, path)?)),
            "query" => Ok(Attribute::Query(String::from(json::non_empty_string(
                argument, path,
            )?))),
            _ => Ok(Attribute::Claim(ClaimPath::parse(argument, path)?)),
        }
    }

    /// Whether reading it needs the JWT payload.
    pub fn is_claim(&self) -> bool {
        matches!(self, Attribute::Claim(_))
    }

    /// Appends the request's value to `out`; returns false (with `out` unchanged) if it has
    /// none or it is empty.
    pub(crate) fn read_into<R: Request + ?Sized>(
        &self,
        input: &mut KeyInput<'_, R>,
        out: &mut Vec<u8>,
    ) -> bool {
        let start = out.len();
        match self {
            Attribute::Header(name) => {
                if let Some(value) = input.request.header(name) {
                    out.extend_from_slice(value.trim_ascii());
                }
            }
            Attribute::Cookie(name) => {
                let mut found = false;
                input.request.for_each_header("cookie", &mut |line| {
                    if !found && let Some(value) = cookie_value(line, name) {
                        found = true;
                        out.extend_from_slice(value);
                    }
                });
            }
            Attribute::Query(name) => {
                if let Some(raw) = input.query.and_then(|q| uri::query_value(q, name)) {
                    uri::decode_into(raw, out);
                }
            }
            Attribute::Claim(path) => read_claim(input, path, out),
        }
        out.len() > start
    }
}

/// Appends the value of claim `path` of the request's token to `out`, if it has one.
pub(crate) fn read_claim<R: Request + ?Sized>(
    input: &mut KeyInput<'_, R>,
    path: &ClaimPath,
    out: &mut Vec<u8>,
) {
    if let Some(value) = input.jwt_payload().and_then(|p| find_claim(p, path)) {
        value.append_to(out);
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::Header(name) => write!(f, "header:{name}"),
            Attribute::Cookie(name) => write!(f, "cookie:{name}"),
            Attribute::Query(name) => write!(f, "query:{name}"),
            Attribute::Claim(path) => write!(f, "claim:{path}"),
        }
    }
}

/// A cookie name: a token.
pub(crate) fn cookie_name(value: &Value, path: &str) -> Result<String, ConfigError> {
    let name = json::non_empty_string(value, path)?;
    if !name.bytes().all(is_token_byte) {
        return Err(ConfigError::new(
            path,
            Problem::InvalidFieldName {
                name: String::from(name),
            },
        ));
    }
    Ok(String::from(name))
}
