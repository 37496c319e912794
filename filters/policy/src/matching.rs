//! Which requests a rule applies to: its `match` section. Every field given must match (AND);
//! within a field's list, any entry may match (OR); an absent field matches everything.
//!
//! Paths are compared byte for byte with the request path (without its query string), as the
//! proxy passes it to filters: `/login`, `/login/` and `/LOGIN` are different paths. Let the
//! proxy normalize paths (Envoy: `normalize_path` and `merge_slashes`) if clients could reach
//! one resource under several spellings, or match by prefix.
//!
//! Conditions on request attributes (`headers`, `cookies`, `query`, `claims`) are read only
//! when the path, method and host already match, and each attribute only once per condition.

use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;

use crate::attributes::Attribute;
use crate::error::{ConfigError, Problem, is_token_byte};
use crate::json::{self, Fields};
use crate::key::KeyInput;
use crate::request::Request;

/// A compiled `match` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Match {
    paths: Vec<String>,
    path_prefixes: Vec<String>,
    methods: Vec<String>,
    hosts: Vec<HostPattern>,
    conditions: Vec<(Attribute, Condition)>,
}

/// What a `match` condition asks of a request attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `{"present": true}`: the attribute has a non-empty value; `false`: it has none.
    Present(bool),
    /// `{"equals": "pro"}`: the value is exactly this.
    Equals(String),
    /// `{"one_of": ["pro", "team"]}`: the value is one of these.
    OneOf(Vec<String>),
    /// `{"prefix": "sk_live_"}`: the value starts with this.
    Prefix(String),
}

impl Condition {
    const FORMS: &'static [&'static str] = &["present", "equals", "one_of", "prefix"];

    fn parse(value: &Value, path: &str) -> Result<Condition, ConfigError> {
        let fields = Fields::open(value, path, Condition::FORMS)?;
        let given: Vec<&str> = Condition::FORMS
            .iter()
            .copied()
            .filter(|form| fields.get(form).is_some())
            .collect();
        let [form] = given.as_slice() else {
            return Err(ConfigError::new(path, Problem::InvalidCondition));
        };
        let form_path = fields.path(form);
        let Some(argument) = fields.get(form) else {
            return Err(ConfigError::new(path, Problem::InvalidCondition));
        };
        Ok(match *form {
            "present" => Condition::Present(json::boolean(argument, &form_path)?),
            "equals" => {
                Condition::Equals(String::from(json::non_empty_string(argument, &form_path)?))
            }
            "prefix" => {
                Condition::Prefix(String::from(json::non_empty_string(argument, &form_path)?))
            }
            _ => Condition::OneOf(json::string_list(
                argument,
                &form_path,
                "an empty list would match no request; use {\"present\": false} for requests \
                 without the value",
                |text, item_path| {
                    if text.is_empty() {
                        return Err(ConfigError::new(item_path, Problem::EmptyString));
                    }
                    Ok(String::from(text))
                },
            )?),
        })
    }

    /// Whether a request whose attribute value is `value` (`None`: no value) meets it.
    pub fn holds(&self, value: Option<&[u8]>) -> bool {
        match (self, value) {
            (Condition::Present(wanted), value) => *wanted == value.is_some(),
            (_, None) => false,
            (Condition::Equals(text), Some(value)) => text.as_bytes() == value,
            (Condition::OneOf(texts), Some(value)) => texts.iter().any(|t| t.as_bytes() == value),
            (Condition::Prefix(text), Some(value)) => value.starts_with(text.as_bytes()),
        }
    }
}

/// A host to match, case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (stored lowercase).
    Exact(String),
    /// Any subdomain of this domain: `*.example.com` is stored as `.example.com` and matches
    /// `a.example.com` and `a.b.example.com`, not `example.com`.
    Subdomains(String),
}

impl HostPattern {
    /// Whether `host` (without port, as the client sent it) matches.
    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(exact) => host.eq_ignore_ascii_case(exact.as_bytes()),
            HostPattern::Subdomains(suffix) => host
                .len()
                .checked_sub(suffix.len())
                .filter(|start| *start > 0)
                .and_then(|start| host.get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes())),
        }
    }

    fn parse(text: &str, path: &str) -> Result<HostPattern, ConfigError> {
        let invalid = || {
            ConfigError::new(
                path,
                Problem::InvalidHostPattern {
                    pattern: String::from(text),
                },
            )
        };
        let lower = text.to_ascii_lowercase();
        let (subdomains, name) = match lower.strip_prefix("*.") {
            Some(name) => (true, name),
            None => (false, lower.as_str()),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        let is_ipv6_literal = name
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .is_some_and(|inner| inner.parse::<core::net::Ipv6Addr>().is_ok());
        let valid = if is_ipv6_literal {
            !subdomains
        } else {
            !name.is_empty() && name.len() <= 253 && name.split('.').all(valid_label)
        };
        if !valid {
            return Err(invalid());
        }
        Ok(if subdomains {
            let mut suffix = String::with_capacity(name.len() + 1);
            suffix.push('.');
            suffix.push_str(name);
            HostPattern::Subdomains(suffix)
        } else {
            HostPattern::Exact(String::from(name))
        })
    }
}

impl Match {
    /// Parses a `match` section.
    pub(crate) fn parse(value: &Value, path: &str) -> Result<Match, ConfigError> {
        let fields = Fields::open(
            value,
            path,
            &[
                "paths",
                "path_prefixes",
                "methods",
                "hosts",
                "headers",
                "cookies",
                "query",
                "claims",
            ],
        )?;
        const NO_MATCH: &str =
            "an empty list would match no request; remove the field to match every request";
        let mut compiled = Match::default();
        if let Some(v) = fields.get("paths") {
            compiled.paths =
                json::string_list(v, &fields.path("paths"), NO_MATCH, json::http_path)?;
        }
        if let Some(v) = fields.get("path_prefixes") {
            compiled.path_prefixes =
                json::string_list(v, &fields.path("path_prefixes"), NO_MATCH, json::http_path)?;
        }
        if let Some(v) = fields.get("methods") {
            compiled.methods = json::string_list(v, &fields.path("methods"), NO_MATCH, method)?;
        }
        if let Some(v) = fields.get("hosts") {
            compiled.hosts =
                json::string_list(v, &fields.path("hosts"), NO_MATCH, HostPattern::parse)?;
        }
        for (field, kind) in [
            ("headers", "header"),
            ("cookies", "cookie"),
            ("query", "query"),
            ("claims", "claim"),
        ] {
            let Some(v) = fields.get(field) else {
                continue;
            };
            let conditions_path = fields.path(field);
            let Value::Object(map) = v else {
                return Err(ConfigError::new(
                    conditions_path,
                    Problem::WrongType {
                        expected: "an object of conditions by name, e.g. {\"x-api-key\": \
                                   {\"present\": false}}",
                        found: json::kind(v),
                    },
                ));
            };
            if map.is_empty() {
                return Err(ConfigError::new(
                    conditions_path,
                    Problem::EmptyList {
                        hint: "remove the field to match every request",
                    },
                ));
            }
            for (name, condition) in map {
                let name_path = json::join(&conditions_path, name);
                let attribute = Attribute::of_kind(kind, &Value::String(name.clone()), &name_path)?;
                compiled
                    .conditions
                    .push((attribute, Condition::parse(condition, &name_path)?));
            }
        }
        Ok(compiled)
    }

    /// Whether every attribute condition holds for the request (true when there is none).
    pub(crate) fn conditions_hold<R: Request + ?Sized>(&self, input: &mut KeyInput<'_, R>) -> bool {
        if self.conditions.is_empty() {
            return true;
        }
        let mut value = core::mem::take(&mut input.scratch);
        let holds = self.conditions.iter().all(|(attribute, condition)| {
            value.clear();
            let found = attribute.read_into(input, &mut value);
            condition.holds(found.then_some(value.as_slice()))
        });
        input.scratch = value;
        holds
    }

    /// Whether a condition reads a JWT claim.
    pub(crate) fn reads_claims(&self) -> bool {
        self.conditions.iter().any(|(a, _)| a.is_claim())
    }

    /// The attribute conditions, in the order they are checked.
    pub fn conditions(&self) -> &[(Attribute, Condition)] {
        &self.conditions
    }

    /// Whether a request with this method, path (without query string) and host (without
    /// port) matches. The request's parts are bytes as sent; the configured text matches
    /// exactly the requests whose bytes spell it.
    pub fn matches(&self, method: &[u8], path: &[u8], host: &[u8]) -> bool {
        let path_listed = self.paths.is_empty() && self.path_prefixes.is_empty()
            || self.paths.iter().any(|p| p.as_bytes() == path)
            || self
                .path_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_bytes()));
        path_listed
            && (self.methods.is_empty() || self.methods.iter().any(|m| m.as_bytes() == method))
            && (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(host)))
    }

    /// Whether the rule matches on the request's host (`hosts`).
    pub fn has_hosts(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// Whether the rule applies to every request.
    pub fn matches_everything(&self) -> bool {
        self.paths.is_empty()
            && self.path_prefixes.is_empty()
            && self.methods.is_empty()
            && self.hosts.is_empty()
            && self.conditions.is_empty()
    }
}

/// An uppercase method token.
fn method(text: &str, path: &str) -> Result<String, ConfigError> {
    let valid = !text.is_empty()
        && text.bytes().all(is_token_byte)
        && !text.bytes().any(|b| b.is_ascii_lowercase());
    if !valid {
        return Err(ConfigError::new(
            path,
            Problem::InvalidMethod {
                method: String::from(text),
            },
        ));
    }
    Ok(String::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(v: Value) -> Match {
        Match::parse(&v, "match").unwrap()
    }

    #[test]
    fn an_empty_match_matches_everything() {
        let m = compile(json!({}));
        assert!(m.matches_everything());
        assert!(m.matches(b"DELETE", b"/anything", b"other.example"));
    }

    #[test]
    fn paths_and_prefixes_are_alternatives_and_exact_paths_are_exact() {
        let m = compile(json!({"paths": ["/login"], "path_prefixes": ["/api/"]}));
        assert!(m.matches(b"GET", b"/login", b"h"));
        assert!(m.matches(b"GET", b"/api/items", b"h"));
        assert!(!m.matches(b"GET", b"/login/", b"h"));
        assert!(!m.matches(b"GET", b"/LOGIN", b"h"));
        assert!(!m.matches(b"GET", b"/api", b"h"));
    }

    #[test]
    fn fields_combine_with_and_and_lists_with_or() {
        let m = compile(json!({
            "path_prefixes": ["/api/"],
            "methods": ["POST", "PUT"],
            "hosts": ["api.example.com"]
        }));
        assert!(m.matches(b"POST", b"/api/x", b"api.example.com"));
        assert!(m.matches(b"PUT", b"/api/x", b"API.Example.COM"));
        assert!(!m.matches(b"GET", b"/api/x", b"api.example.com"));
        assert!(!m.matches(b"POST", b"/other", b"api.example.com"));
        assert!(!m.matches(b"POST", b"/api/x", b"www.example.com"));
    }

    #[test]
    fn wildcard_hosts_match_subdomains_only() {
        let m = compile(json!({"hosts": ["*.Example.com"]}));
        assert!(m.matches(b"GET", b"/", b"a.example.com"));
        assert!(m.matches(b"GET", b"/", b"a.b.EXAMPLE.com"));
        assert!(!m.matches(b"GET", b"/", b"example.com"));
        assert!(!m.matches(b"GET", b"/", b"badexample.com"));
        assert!(!m.matches(b"GET", b"/", b".example.com"));
    }

    #[test]
    fn methods_are_case_sensitive() {
        let m = compile(json!({"methods": ["GET"]}));
        assert!(!m.matches(b"get", b"/", b"h"));
    }

    #[test]
    fn host_patterns_are_validated() {
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "api.example.com:443",
            "http://x",
            "a*.b",
            "*.*.b",
            "[::1]x",
        ] {
            let err = Match::parse(&json!({"hosts": [bad]}), "match").unwrap_err();
            assert_eq!(err.path(), "match.hosts[0]", "{bad}");
            assert!(
                matches!(err.problem(), Problem::InvalidHostPattern { .. }),
                "{bad}"
            );
        }
        let ok = compile(json!({"hosts": ["[2001:db8::1]", "localhost", "api.example.com."]}));
        assert!(ok.matches(b"GET", b"/", b"[2001:DB8::1]"));
        assert!(ok.matches(b"GET", b"/", b"api.example.com"));
    }
}
