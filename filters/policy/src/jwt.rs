//! JWT claims: where the token's payload comes from (the top-level `jwt` section), and reading
//! one claim out of it.
//!
//! sluice never verifies a signature. It reads the payload of a token the proxy has already
//! verified: Envoy's `jwt_authn` filter forwards it in a header (`forward_payload_header`,
//! base64url JSON), Cloudflare Access sends the whole verified token in
//! `Cf-Access-Jwt-Assertion`. Reading the client's own `Authorization: Bearer` token is possible
//! only behind `insecure_unverified_bearer`, since a client can put anything in it.
//!
//! # Reading a claim
//!
//! The payload is base64url-decoded once per request (padded or not), the first time a rule
//! needs a claim, and kept for the other rules. A claim is then found by scanning the JSON text
//! in place: no parse tree is built and nothing else is allocated. A claim path names nested
//! objects (`org.id` is `{"org": {"id": ...}}`). Strings count by their unescaped bytes,
//! numbers and booleans by their JSON text as the token writes them (`42`, `true`); `null`,
//! objects, arrays, a missing claim and a header that is absent or not a token are all a
//! missing value.

use alloc::string::String;
use alloc::vec::Vec;
use base64::Engine as _;
use base64::engine::general_purpose::GeneralPurpose;
use base64::engine::{DecodePaddingMode, GeneralPurposeConfig};
use serde_json::Value;

use crate::error::{ConfigError, Problem};
use crate::json::{self, Fields};
use crate::key::field_name;
use crate::request::Request;

/// The longest header value read as a token: larger ones are not tokens a proxy forwards.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How deep [`find_claim`] follows nested objects and skips nested values; deeper JSON is
/// malformed for this purpose (no real token nests this far).
const MAX_DEPTH: usize = 32;

/// The most segments of a claim path.
pub const MAX_CLAIM_PATH: usize = 8;

/// base64url, with or without padding (Envoy pads only with `pad_forward_payload_header`).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Where the verified token's payload comes from (the `jwt` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtSource {
    /// A header holding the payload segment (base64url JSON), as Envoy's `jwt_authn`
    /// `forward_payload_header` sends it, or a whole compact JWT (`header.payload.signature`),
    /// as Cloudflare Access's `Cf-Access-Jwt-Assertion`.
    PayloadHeader(String),
    /// The client's `Authorization: Bearer` token, **not verified**: a client can forge any
    /// claim. Only for a proxy that verifies the token before sluice runs, or for limits whose
    /// keys may be forged (each forged value only gets its own counter).
    InsecureUnverifiedBearer,
}

impl JwtSource {
    /// Parses the `jwt` section.
    pub(crate) fn parse(value: &Value, path: &str) -> Result<JwtSource, ConfigError> {
        let fields = Fields::open(
            value,
            path,
            &["payload_header", "insecure_unverified_bearer"],
        )?;
        match (
            fields.get("payload_header"),
            fields.get("insecure_unverified_bearer"),
        ) {
            (Some(header), None) => Ok(JwtSource::PayloadHeader(field_name(
                header,
                &fields.path("payload_header"),
            )?)),
            (None, Some(flag)) => {
                let flag_path = fields.path("insecure_unverified_bearer");
                if json::boolean(flag, &flag_path)? {
                    Ok(JwtSource::InsecureUnverifiedBearer)
                } else {
                    Err(ConfigError::new(flag_path, Problem::JwtSourceNeeded))
                }
            }
            (Some(_), Some(_)) => Err(ConfigError::new(path, Problem::JwtSourceConflict)),
            (None, None) => Err(ConfigError::new(path, Problem::JwtSourceNeeded)),
        }
    }

    /// The request's token payload, decoded: JSON text, or `None` if the request carries no
    /// token in the configured place or it is not base64url.
    pub fn payload(&self, request: &(impl Request + ?Sized)) -> Option<Vec<u8>> {
        let mut payload = Vec::new();
        self.payload_into(request, &mut payload).then_some(payload)
    }

    /// [`JwtSource::payload`] into `out` (cleared first, its allocation reused); false, with
    /// `out` empty, where that gives `None`.
    pub fn payload_into(&self, request: &(impl Request + ?Sized), out: &mut Vec<u8>) -> bool {
        out.clear();
        let Some(segment) = self.payload_segment_of(request) else {
            return false;
        };
        if segment.is_empty() || segment.len() > MAX_TOKEN_BYTES {
            return false;
        }
        if BASE64URL.decode_vec(segment, out).is_err() {
            out.clear();
            return false;
        }
        true
    }

    fn payload_segment_of<'r>(&self, request: &'r (impl Request + ?Sized)) -> Option<&'r [u8]> {
        let segment = match self {
            JwtSource::PayloadHeader(name) => payload_segment(request.header(name)?.trim_ascii())?,
            JwtSource::InsecureUnverifiedBearer => {
                let value = request.header("authorization")?.trim_ascii();
                let (scheme, token) = value.split_at_checked(7)?;
                if !scheme.eq_ignore_ascii_case(b"bearer ") {
                    return None;
                }
                let token = token.trim_ascii();
                // The bearer token must be a whole compact JWS.
                if token.iter().filter(|&&b| b == b'.').count() != 2 {
                    return None;
                }
                payload_segment(token)?
            }
        };
        Some(segment)
    }
}

/// The payload segment of a header value: the value itself, or the middle of a compact JWT.
fn payload_segment(value: &[u8]) -> Option<&[u8]> {
    let mut segments = value.split(|&b| b == b'.');
    let first = segments.next()?;
    match (segments.next(), segments.next(), segments.next()) {
        (None, _, _) => Some(first),
        (Some(payload), Some(_), None) => Some(payload),
        _ => None,
    }
}

/// A claim's place in the payload: its name, or the names of nested objects down to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    segments: Vec<String>,
}

impl ClaimPath {
    /// Parses a claim path: `"sub"`, `"org.id"` (split at dots), or a list of names for claim
    /// names that contain dots (`["https://example.com/plan"]`).
    pub(crate) fn parse(value: &Value, path: &str) -> Result<ClaimPath, ConfigError> {
        let segments: Vec<String> = match value {
            Value::String(text) => {
                let segments: Vec<String> = text.split('.').map(String::from).collect();
                if segments.iter().any(String::is_empty) {
                    return Err(ConfigError::new(
                        path,
                        Problem::InvalidClaimPath { path: text.clone() },
                    ));
                }
                segments
            }
            Value::Array(_) => json::string_list(
                value,
                path,
                "name the claim, e.g. [\"https://example.com/plan\"]",
                |name, item_path| {
                    if name.is_empty() {
                        return Err(ConfigError::new(item_path, Problem::EmptyString));
                    }
                    Ok(String::from(name))
                },
            )?,
            _ => {
                return Err(ConfigError::new(
                    path,
                    Problem::WrongType {
                        expected: "a claim name such as \"sub\" or \"org.id\", or a list of names",
                        found: json::kind(value),
                    },
                ));
            }
        };
        if segments.len() > MAX_CLAIM_PATH {
            return Err(ConfigError::new(
                path,
                Problem::OutOfRange {
                    value: segments.len() as u64,
                    min: 1,
                    max: MAX_CLAIM_PATH as u64,
                    why: "levels of nested claims",
                },
            ));
        }
        Ok(ClaimPath { segments })
    }

    /// The path written as text: a claim name, nested names separated by dots (`org.id`).
    pub fn dotted(text: &str) -> Result<ClaimPath, ConfigError> {
        ClaimPath::parse(&Value::String(String::from(text)), "claim")
    }

    /// The names from the top-level claim down.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }
}

impl core::fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(segment)?;
        }
        Ok(())
    }
}

/// A claim's value, still in the payload's JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimValue<'j> {
    /// A string: the bytes between the quotes, escapes not yet undone.
    Text(&'j [u8]),
    /// A number or boolean, as written.
    Scalar(&'j [u8]),
}

impl ClaimValue<'_> {
    /// Appends the value's bytes (a string unescaped) to `out`; false, with `out` unchanged,
    /// if a string has an invalid escape.
    pub fn append_to(&self, out: &mut Vec<u8>) -> bool {
        match self {
            ClaimValue::Scalar(raw) => {
                out.extend_from_slice(raw);
                true
            }
            ClaimValue::Text(raw) => {
                if !raw.contains(&b'\\') {
                    out.extend_from_slice(raw);
                    return true;
                }
                let start = out.len();
                if unescape_into(raw, out) {
                    true
                } else {
                    out.truncate(start);
                    false
                }
            }
        }
    }
}

/// The value of the claim at `path` in the JSON object `payload`; `None` if it is missing,
/// `null`, an object or an array, or if the JSON around it is malformed.
pub fn find_claim<'j>(payload: &'j [u8], path: &ClaimPath) -> Option<ClaimValue<'j>> {
    let mut at = 0;
    for segment in &path.segments {
        at = member(payload, at, segment.as_bytes())?;
    }
    let at = skip_ws(payload, at);
    match *payload.get(at)? {
        b'"' => {
            let (raw, _) = string(payload, at)?;
            Some(ClaimValue::Text(raw))
        }
        b'{' | b'[' => None,
        _ => {
            let end = scalar_end(payload, at);
            let raw = payload.get(at..end)?;
            (!raw.is_empty() && raw != b"null").then_some(ClaimValue::Scalar(raw))
        }
    }
}

fn skip_ws(json: &[u8], mut at: usize) -> usize {
    while matches!(json.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The string starting at the quote at `at`: its raw contents and the index after the closing
/// quote.
fn string(json: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let start = at + 1;
    let mut i = start;
    loop {
        match *json.get(i)? {
            b'"' => return Some((json.get(start..i)?, i + 1)),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

fn scalar_end(json: &[u8], mut at: usize) -> usize {
    while let Some(&b) = json.get(at) {
        if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b'"') {
            break;
        }
        at += 1;
    }
    at
}

/// The index after the value starting at `at` (after whitespace); nested values are skipped
/// by counting brackets outside strings, up to [`MAX_DEPTH`] deep.
fn skip_value(json: &[u8], at: usize) -> Option<usize> {
    let at = skip_ws(json, at);
    match *json.get(at)? {
        b'"' => string(json, at).map(|(_, end)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match *json.get(i)? {
                    b'"' => {
                        i = string(json, i)?.1;
                        continue;
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > MAX_DEPTH {
                            return None;
                        }
                    }
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let end = scalar_end(json, at);
            (end > at).then_some(end)
        }
    }
}

/// The index of the value of member `name` of the object starting at `at` (after
/// whitespace); the first member of that name if it repeats.
fn member(json: &[u8], at: usize, name: &[u8]) -> Option<usize> {
    let mut i = skip_ws(json, at);
    if *json.get(i)? != b'{' {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(json, i);
        match *json.get(i)? {
            b'}' => return None,
            b'"' => {}
            _ => return None,
        }
        let (key, after) = string(json, i)?;
        i = skip_ws(json, after);
        if *json.get(i)? != b':' {
            return None;
        }
        i += 1;
        if key_is(key, name) {
            return Some(i);
        }
        i = skip_ws(json, skip_value(json, i)?);
        match *json.get(i)? {
            b',' => i += 1,
            _ => return None,
        }
    }
}

fn key_is(raw: &[u8], name: &[u8]) -> bool {
    if !raw.contains(&b'\\') {
        return raw == name;
    }
    let mut decoded = Vec::new();
    unescape_into(raw, &mut decoded) && decoded == name
}

/// Appends the unescaped bytes of a JSON string's raw contents; false on an invalid escape.
fn unescape_into(raw: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&escape) = raw.get(i) else {
            return false;
        };
        i += 1;
        let byte = match escape {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let Some(unit) = hex4(raw, i) else {
                    return false;
                };
                i += 4;
                let code = if (0xd800..0xdc00).contains(&unit) {
                    // A high surrogate must be followed by an escaped low one.
                    let low = match (raw.get(i), raw.get(i + 1)) {
                        (Some(b'\\'), Some(b'u')) => hex4(raw, i + 2),
                        _ => None,
                    };
                    let Some(low) = low.filter(|low| (0xdc00..0xe000).contains(low)) else {
                        return false;
                    };
                    i += 6;
                    0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                } else {
                    unit
                };
                let Some(c) = char::from_u32(code) else {
                    return false;
                };
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            _ => return false,
        };
        out.push(byte);
    }
    true
}

fn hex4(raw: &[u8], at: usize) -> Option<u32> {
    let digits = raw.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some(acc << 4 | v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_request::TestRequest;
    use alloc::format;
    use alloc::string::ToString;
    use serde_json::json;

    fn path(v: Value) -> ClaimPath {
        ClaimPath::parse(&v, "claim").unwrap()
    }

    fn claim(payload: &str, p: Value) -> Option<Vec<u8>> {
        let value = find_claim(payload.as_bytes(), &path(p))?;
        let mut out = Vec::new();
        value.append_to(&mut out).then_some(out)
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn string_number_and_boolean_claims_are_read_as_their_bytes() {
        let p = r#"{"sub":"user-1","n":42,"f":-1.5e3,"admin":true,"none":null,"list":[1],"o":{}}"#;
        assert_eq!(claim(p, json!("sub")).unwrap(), b"user-1");
        assert_eq!(claim(p, json!("n")).unwrap(), b"42");
        assert_eq!(claim(p, json!("f")).unwrap(), b"-1.5e3");
        assert_eq!(claim(p, json!("admin")).unwrap(), b"true");
        assert_eq!(claim(p, json!("none")), None);
        assert_eq!(claim(p, json!("list")), None);
        assert_eq!(claim(p, json!("o")), None);
        assert_eq!(claim(p, json!("absent")), None);
    }

    #[test]
    fn nested_claims_follow_objects_and_skip_other_members() {
        let p = r#" { "a": {"id": "wrong"}, "s": "x}\"{", "arr": [{"org": 1}, "]"],
                      "org" : { "name": "Acme", "id" : "acme-1" } } "#;
        assert_eq!(claim(p, json!("org.id")).unwrap(), b"acme-1");
        assert_eq!(claim(p, json!(["org", "name"])).unwrap(), b"Acme");
        assert_eq!(claim(p, json!("org.missing")), None);
        assert_eq!(claim(p, json!("s.id")), None);
        let dotted = r#"{"https://example.com/plan":"pro"}"#;
        assert_eq!(
            claim(dotted, json!(["https://example.com/plan"])).unwrap(),
            b"pro"
        );
        assert_eq!(claim(dotted, json!("https://example.com/plan")), None);
    }

    #[test]
    fn escapes_are_undone_in_names_and_values() {
        let p = r#"{"pl\u0061n":"caf\u00e9 \ud83d\ude00\n\"","bad":"\ud800x","worse":"\q"}"#;
        assert_eq!(claim(p, json!("plan")).unwrap(), "café 😀\n\"".as_bytes());
        assert_eq!(claim(p, json!("bad")), None);
        assert_eq!(claim(p, json!("worse")), None);
    }

    #[test]
    fn malformed_json_is_a_missing_claim_never_a_panic() {
        for p in [
            "",
            "{",
            "[]",
            "\"sub\"",
            "{\"sub\"",
            "{\"sub\":",
            "{\"a\" 1}",
            "{\"a\":1 \"sub\":2}",
            "{\"a\":[[[[",
            "{\"sub\":\"unterminated",
            "{\"a\":\"\\",
        ] {
            assert_eq!(claim(p, json!("sub")), None, "{p}");
        }
        let deep = [
            "{\"a\":",
            &"[".repeat(100),
            &"]".repeat(100),
            ",\"sub\":\"x\"}",
        ]
        .concat();
        assert_eq!(claim(&deep, json!("sub")), None);
        let shallow = [
            "{\"a\":",
            &"[".repeat(10),
            &"]".repeat(10),
            ",\"sub\":\"x\"}",
        ]
        .concat();
        assert_eq!(claim(&shallow, json!("sub")).unwrap(), b"x");
    }

    #[test]
    fn the_payload_header_holds_a_payload_or_a_whole_token() {
        let source = JwtSource::PayloadHeader("x-jwt-payload".into());
        let payload = r#"{"sub":"u"}"#;
        let bare = TestRequest::get("/").header("x-jwt-payload", &b64(payload));
        assert_eq!(source.payload(&bare).unwrap(), payload.as_bytes());
        let padded = base64::engine::general_purpose::URL_SAFE.encode("{\"sub\":\"uuu\"}");
        assert!(padded.ends_with('='));
        let req = TestRequest::get("/").header("x-jwt-payload", &padded);
        assert_eq!(source.payload(&req).unwrap(), b"{\"sub\":\"uuu\"}");
        let token = ["eyJhbGciOiJub25lIn0", &b64(payload), "sig"].join(".");
        let whole = TestRequest::get("/").header("x-jwt-payload", &token);
        assert_eq!(source.payload(&whole).unwrap(), payload.as_bytes());
        for bad in ["", "a.b", "a.b.c.d", "not base64!", "%%%"] {
            let req = TestRequest::get("/").header("x-jwt-payload", bad);
            assert_eq!(source.payload(&req), None, "{bad}");
        }
        assert_eq!(source.payload(&TestRequest::get("/")), None);
    }

    #[test]
    fn the_unverified_bearer_token_is_read_only_from_a_whole_bearer_jwt() {
        let source = JwtSource::InsecureUnverifiedBearer;
        let payload = r#"{"sub":"u"}"#;
        let token = ["eyJhbGciOiJub25lIn0", &b64(payload), "sig"].join(".");
        for header in [format!("Bearer {token}"), format!("bearer  {token} ")] {
            let req = TestRequest::get("/").header("authorization", &header);
            assert_eq!(
                source.payload(&req).unwrap(),
                payload.as_bytes(),
                "{header}"
            );
        }
        for header in [
            format!("Basic {token}"),
            format!("Bearer {}", b64(payload)),
            "Bearer".into(),
        ] {
            let req = TestRequest::get("/").header("authorization", &header);
            assert_eq!(source.payload(&req), None, "{header}");
        }
    }

    #[test]
    fn the_jwt_section_is_validated() {
        let cases = [
            (json!({}), "jwt", "where the verified token"),
            (
                json!({"payload_header": "x", "insecure_unverified_bearer": true}),
                "jwt",
                "one of",
            ),
            (
                json!({"insecure_unverified_bearer": false}),
                "jwt.insecure_unverified_bearer",
                "where the verified token",
            ),
            (
                json!({"payload_header": "a b"}),
                "jwt.payload_header",
                "not a valid name",
            ),
            (json!({"header": "x"}), "jwt.header", "unknown field"),
        ];
        for (value, p, message) in cases {
            let err = JwtSource::parse(&value, "jwt").unwrap_err();
            assert_eq!(err.path(), p, "{value}");
            assert!(err.to_string().contains(message), "{value}: {err}");
        }
        for (value, message) in [
            (json!("a..b"), "not a claim path"),
            (json!([]), "must not be empty"),
            (json!([""]), "must not be empty"),
            (json!(5), "expected a claim name"),
            (json!("a.b.c.d.e.f.g.h.i"), "out of range"),
        ] {
            let err = ClaimPath::parse(&value, "claim").unwrap_err();
            assert!(err.to_string().contains(message), "{value}: {err}");
        }
    }
}
