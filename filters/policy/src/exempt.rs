//! Requests no rule looks at (the `exempt` section): health checks, metrics scrapes, CORS
//! preflights. They are neither counted nor given rate-limit headers.

use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;

use crate::error::ConfigError;
use crate::json::{self, Fields};
use crate::request::Request;

/// A compiled `exempt` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exemptions {
    paths: Vec<String>,
    path_prefixes: Vec<String>,
    cors_preflight: bool,
}

impl Exemptions {
    /// Parses an `exempt` section.
    pub(crate) fn parse(value: &Value, path: &str) -> Result<Exemptions, ConfigError> {
        let fields = Fields::open(value, path, &["paths", "path_prefixes", "cors_preflight"])?;
        const EMPTY: &str = "remove the field to exempt no path";
        let mut exemptions = Exemptions::default();
        if let Some(v) = fields.get("paths") {
            exemptions.paths = json::string_list(v, &fields.path("paths"), EMPTY, json::http_path)?;
        }
        if let Some(v) = fields.get("path_prefixes") {
            exemptions.path_prefixes =
                json::string_list(v, &fields.path("path_prefixes"), EMPTY, json::http_path)?;
        }
        if let Some(v) = fields.get("cors_preflight") {
            exemptions.cors_preflight = json::boolean(v, &fields.path("cors_preflight"))?;
        }
        Ok(exemptions)
    }

    /// Whether `request`, whose path without query string is `path`, is exempt.
    ///
    /// A CORS preflight is an `OPTIONS` request with both `Origin` and
    /// `Access-Control-Request-Method` (Fetch standard): browsers send it on their own before
    /// a cross-origin request, so counting it would charge clients twice.
    ///
    /// Paths are compared as bytes, like a rule's `match` (see [`crate::Match::matches`]).
    pub fn is_exempt(&self, request: &(impl Request + ?Sized), path: &[u8]) -> bool {
        self.paths.iter().any(|p| p.as_bytes() == path)
            || self
                .path_prefixes
                .iter()
                .any(|p| path.starts_with(p.as_bytes()))
            || (self.cors_preflight
                && request.method() == b"OPTIONS"
                && request.header("origin").is_some()
                && request.header("access-control-request-method").is_some())
    }

    /// Whether nothing is exempt.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.path_prefixes.is_empty() && !self.cors_preflight
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_request::TestRequest;
    use serde_json::json;

    fn exemptions() -> Exemptions {
        Exemptions::parse(
            &json!({"paths": ["/healthz"], "path_prefixes": ["/metrics/"], "cors_preflight": true}),
            "exempt",
        )
        .unwrap()
    }

    #[test]
    fn exact_paths_and_prefixes_are_exempt() {
        let e = exemptions();
        let req = TestRequest::get("/");
        assert!(e.is_exempt(&req, b"/healthz"));
        assert!(e.is_exempt(&req, b"/metrics/cpu"));
        assert!(!e.is_exempt(&req, b"/healthz/deep"));
        assert!(!e.is_exempt(&req, b"/metrics"));
    }

    #[test]
    fn a_cors_preflight_needs_options_origin_and_request_method() {
        let e = exemptions();
        let preflight = TestRequest::new("OPTIONS", "/api")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST");
        assert!(e.is_exempt(&preflight, b"/api"));
        let no_origin =
            TestRequest::new("OPTIONS", "/api").header("access-control-request-method", "POST");
        assert!(!e.is_exempt(&no_origin, b"/api"));
        let plain_options = TestRequest::new("OPTIONS", "/api").header("origin", "https://a");
        assert!(!e.is_exempt(&plain_options, b"/api"));
        let not_options = TestRequest::get("/api")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST");
        assert!(!e.is_exempt(&not_options, b"/api"));
    }

    #[test]
    fn preflights_are_counted_unless_enabled() {
        let e = Exemptions::parse(&json!({}), "exempt").unwrap();
        assert!(e.is_empty());
        let preflight = TestRequest::new("OPTIONS", "/api")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST");
        assert!(!e.is_exempt(&preflight, b"/api"));
    }
}
