//! What a rule counts by: its `key` parts, combined into one byte string per request, and the
//! display of such a key for logs.
//!
//! # Encoding
//!
//! The parts are written in the rule's order, each self-delimiting, so two different
//! requests can only produce the same bytes if every part is the same:
//!
//! ```text
//! missing part    0x00
//! text part       0x01 | length:u32 LE | bytes        (header, cookie, query, claim, path, method, host, const)
//! IPv4 address    0x04 | 4 bytes, masked to the rule's IPv4 prefix
//! IPv6 address    0x06 | 16 bytes, masked to the rule's IPv6 prefix
//! ```
//!
//! Text parts are the bytes the client sent (see [`crate::request`]): header values, cookies
//! and percent-decoded query values are never decoded as UTF-8, so values that differ in any
//! byte are different keys. Header values and cookies lose surrounding ASCII whitespace.
//!
//! An empty value (an empty header, `?api_key=`) counts as missing. The bytes are only ever
//! hashed by the core (with the deployment's secret seed) to place the key in the rule's table;
//! they are not stored.

use core::fmt::{self, Write as _};
use core::hash::Hasher as _;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;
use siphasher::sip::SipHasher13;

use crate::client_ip::ClientIpSource;
use crate::error::{ConfigError, Problem, is_token_byte};
use crate::json::{self, Fields};
use crate::jwt::{ClaimPath, JwtSource};
use crate::request::Request;
use crate::uri;

const MISSING: u8 = 0x00;
const TEXT: u8 = 0x01;
const IPV4: u8 = 0x04;
const IPV6: u8 = 0x06;

/// Default prefix lengths of the `client_ip` part. IPv4: the address. IPv6: the /64, because
/// one subscriber normally gets a whole /64 and picks addresses in it at will (privacy
/// addresses), so counting per /128 would let one client rotate through 2⁶⁴ counters.
pub const DEFAULT_IPV4_PREFIX: u8 = 32;
/// See [`DEFAULT_IPV4_PREFIX`].
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// How many bytes of a text value a key display shows before eliding the rest.
const DISPLAY_MAX_BYTES: usize = 64;

/// The fixed key of the fingerprint shown for secret parts. Fixed rather than random so one
/// secret shows the same fingerprint in every VM's log and across restarts.
const SECRET_FINGERPRINT_KEY: (u64, u64) = (0x736c_7569_6365_2d6b, 0x6579_2d66_7072_696e);

/// One part of a rule's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client address (see [`ClientIpSource`]), masked to a prefix per family.
    ClientIp {
        /// Leading bits kept of an IPv4 address (0–32).
        ipv4_prefix: u8,
        /// Leading bits kept of an IPv6 address (0–128).
        ipv6_prefix: u8,
    },
    /// The first value of a request header.
    Header {
        /// The header name, lowercase.
        name: String,
        /// Logs show a fingerprint instead of the value.
        secret: bool,
    },
    /// A cookie's value, from the `Cookie` header(s): the first cookie with this name.
    Cookie {
        /// The cookie name (case-sensitive).
        name: String,
    },
    /// A query parameter's value, percent-decoded: the first parameter with this name.
    Query {
        /// The parameter name (case-sensitive, compared after percent-decoding).
        name: String,
    },
    /// A claim of the verified JWT (see the `jwt` section): a string's bytes, a number or
    /// boolean as the token writes it.
    Claim(ClaimPath),
    /// The path, without the query string.
    Path,
    /// The method.
    Method,
    /// The host, lowercase, without port.
    Host,
    /// A fixed value: every request has the same part (e.g. one global counter).
    Const(String),
}

/// What a rule does with a request that lacks a key part (no such header, cookie or query
/// parameter, or no client address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenKeyMissing {
    /// The missing part takes one shared "missing" value: all requests lacking it share a
    /// counter for that part (the other parts still apply).
    #[default]
    Group,
    /// The rule does not apply to the request.
    Skip,
}

impl WhenKeyMissing {
    pub(crate) const NAMES: &'static [&'static str] = &["group", "skip"];
    pub(crate) const VALUES: &'static [WhenKeyMissing] =
        &[WhenKeyMissing::Group, WhenKeyMissing::Skip];
}

/// A rule's compiled `key`: one or more parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    parts: Vec<KeyPart>,
}

/// The request as key parts see it: taken apart once per request, the host and the client
/// address worked out only if a rule needs them, and at most once.
pub(crate) struct KeyInput<'r, R: Request + ?Sized> {
    pub(crate) request: &'r R,
    pub(crate) path: &'r [u8],
    pub(crate) query: Option<&'r [u8]>,
    /// The authority's host ([`KeyInput::host`]), once asked for.
    host: Option<&'r [u8]>,
    pub(crate) client_ip_source: &'r ClientIpSource,
    client_ip: Option<Option<IpAddr>>,
    jwt: Option<&'r JwtSource>,
    /// Whether the request has a token payload, known once a claim is read.
    has_payload: Option<bool>,
    /// The token payload, decoded the first time a claim is read.
    payload: Vec<u8>,
    /// A buffer for attribute values (tiers, `match` conditions), reused across rules.
    pub(crate) scratch: Vec<u8>,
}

impl<'r, R: Request + ?Sized> KeyInput<'r, R> {
    pub(crate) fn new(
        request: &'r R,
        path: &'r [u8],
        query: Option<&'r [u8]>,
        client_ip_source: &'r ClientIpSource,
        jwt: Option<&'r JwtSource>,
    ) -> KeyInput<'r, R> {
        KeyInput {
            request,
            path,
            query,
            host: None,
            client_ip_source,
            client_ip: None,
            jwt,
            has_payload: None,
            payload: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The same input, with buffers from an earlier request for the token payload and
    /// attribute values.
    pub(crate) fn reusing(mut self, (scratch, payload): (Vec<u8>, Vec<u8>)) -> Self {
        self.scratch = scratch;
        self.payload = payload;
        self
    }

    /// The buffers, for [`KeyInput::reusing`] by the next request.
    pub(crate) fn into_buffers(self) -> (Vec<u8>, Vec<u8>) {
        (self.scratch, self.payload)
    }

    /// The host the request is for: its authority without port or trailing dot.
    pub(crate) fn host(&mut self) -> &'r [u8] {
        if let Some(host) = self.host {
            return host;
        }
        let host = uri::host_of(self.request.authority());
        self.host = Some(host);
        host
    }

    pub(crate) fn client_ip(&mut self) -> Option<IpAddr> {
        *self
            .client_ip
            .get_or_insert_with(|| self.client_ip_source.client_ip(self.request))
    }

    /// The decoded JWT payload, if the configuration names a source and the request has one.
    pub(crate) fn jwt_payload(&mut self) -> Option<&[u8]> {
        let has_payload = match self.has_payload {
            Some(known) => known,
            None => {
                let (jwt, request) = (self.jwt, self.request);
                let found =
                    jwt.is_some_and(|source| source.payload_into(request, &mut self.payload));
                self.has_payload = Some(found);
                found
            }
        };
        has_payload.then_some(self.payload.as_slice())
    }
}

impl KeySpec {
    /// Parses a `key` list.
    pub(crate) fn parse(value: &Value, path: &str) -> Result<KeySpec, ConfigError> {
        let items = json::list(value, path)?;
        if items.is_empty() {
            return Err(ConfigError::new(
                path,
                Problem::EmptyList {
                    hint: "a rule counts by at least one part, e.g. [\"client_ip\"], or \
                           [{\"const\": \"global\"}] for one counter shared by all requests",
                },
            ));
        }
        let parts = items
            .iter()
            .enumerate()
            .map(|(i, item)| KeyPart::parse(item, &json::index(path, i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeySpec { parts })
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[KeyPart] {
        &self.parts
    }

    /// The index of the first `claim` part, if any (claims need the `jwt` section).
    pub(crate) fn first_claim(&self) -> Option<usize> {
        self.parts
            .iter()
            .position(|p| matches!(p, KeyPart::Claim(_)))
    }

    /// Whether building the key needs the client address.
    pub fn needs_client_ip(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, KeyPart::ClientIp { .. }))
    }

    /// Appends the key of the request to `out` and returns whether every part was present.
    pub(crate) fn build<R: Request + ?Sized>(
        &self,
        input: &mut KeyInput<'_, R>,
        out: &mut Vec<u8>,
    ) -> bool {
        let mut complete = true;
        for part in &self.parts {
            complete &= part.append(input, out);
        }
        complete
    }

    /// A display of `key` (bytes built by this spec) for logs: each part as `label=value`,
    /// text quoted and escaped, long values cut, secret headers as a fingerprint.
    ///
    /// ```text
    /// client_ip=203.0.113.0/24 header:x-api-key=<secret #9f3a61c2> path="/api/items"
    /// ```
    pub fn display<'a>(&'a self, key: &'a [u8]) -> KeyDisplay<'a> {
        KeyDisplay { spec: self, key }
    }
}

impl KeyPart {
    fn parse(value: &Value, path: &str) -> Result<KeyPart, ConfigError> {
        const KINDS: &[&str] = &["client_ip", "header", "cookie", "query", "claim", "const"];
        match value {
            Value::String(name) => match name.as_str() {
                "client_ip" => Ok(KeyPart::ClientIp {
                    ipv4_prefix: DEFAULT_IPV4_PREFIX,
                    ipv6_prefix: DEFAULT_IPV6_PREFIX,
                }),
                "path" => Ok(KeyPart::Path),
                "method" => Ok(KeyPart::Method),
                "host" => Ok(KeyPart::Host),
                "header" | "cookie" | "query" | "claim" | "const" => Err(ConfigError::new(
                    path,
                    Problem::KeyPartNeedsArgument { part: name.clone() },
                )),
                _ => Err(ConfigError::new(path, Problem::InvalidKeyPart)),
            },
            Value::Object(map) => {
                let mut kinds = map.keys().filter(|k| KINDS.contains(&k.as_str()));
                let (Some(kind), None) = (kinds.next(), kinds.next()) else {
                    return Err(ConfigError::new(path, Problem::InvalidKeyPart));
                };
                match kind.as_str() {
                    "client_ip" => {
                        let fields = Fields::open(value, path, &["client_ip"])?;
                        let prefixes_path = fields.path("client_ip");
                        let prefixes = Fields::open(
                            fields.require("client_ip", "{\"ipv4_prefix\": 24}")?,
                            &prefixes_path,
                            &["ipv4_prefix", "ipv6_prefix"],
                        )?;
                        let prefix = |field: &str, default: u8, max: u64, why| {
                            prefixes.get(field).map_or(Ok(default), |v| {
                                let bits = json::integer(v, &prefixes.path(field), 0, max, why)?;
                                Ok(u8::try_from(bits).unwrap_or(default))
                            })
                        };
                        Ok(KeyPart::ClientIp {
                            ipv4_prefix: prefix(
                                "ipv4_prefix",
                                DEFAULT_IPV4_PREFIX,
                                32,
                                "an IPv4 address has 32 bits",
                            )?,
                            ipv6_prefix: prefix(
                                "ipv6_prefix",
                                DEFAULT_IPV6_PREFIX,
                                128,
                                "an IPv6 address has 128 bits",
                            )?,
                        })
                    }
                    "header" => {
                        let fields = Fields::open(value, path, &["header", "secret"])?;
                        let name = field_name(
                            fields.require("header", "\"x-api-key\"")?,
                            &fields.path("header"),
                        )?;
                        let secret = match fields.get("secret") {
                            Some(v) => json::boolean(v, &fields.path("secret"))?,
                            None => false,
                        };
                        Ok(KeyPart::Header { name, secret })
                    }
                    "cookie" => {
                        let fields = Fields::open(value, path, &["cookie"])?;
                        let name = crate::attributes::cookie_name(
                            fields.require("cookie", "\"session\"")?,
                            &fields.path("cookie"),
                        )?;
                        Ok(KeyPart::Cookie { name })
                    }
                    "claim" => {
                        let fields = Fields::open(value, path, &["claim"])?;
                        let claim = ClaimPath::parse(
                            fields.require("claim", "\"sub\"")?,
                            &fields.path("claim"),
                        )?;
                        Ok(KeyPart::Claim(claim))
                    }
                    "query" => {
                        let fields = Fields::open(value, path, &["query"])?;
                        let name = json::non_empty_string(
                            fields.require("query", "\"api_key\"")?,
                            &fields.path("query"),
                        )?;
                        Ok(KeyPart::Query {
                            name: String::from(name),
                        })
                    }
                    _ => {
                        let fields = Fields::open(value, path, &["const"])?;
                        let text = json::non_empty_string(
                            fields.require("const", "\"global\"")?,
                            &fields.path("const"),
                        )?;
                        Ok(KeyPart::Const(String::from(text)))
                    }
                }
            }
            _ => Err(ConfigError::new(path, Problem::InvalidKeyPart)),
        }
    }

    /// Appends this part's encoding; returns false if the part is missing.
    fn append<R: Request + ?Sized>(&self, input: &mut KeyInput<'_, R>, out: &mut Vec<u8>) -> bool {
        match self {
            KeyPart::ClientIp {
                ipv4_prefix,
                ipv6_prefix,
            } => match input.client_ip() {
                Some(IpAddr::V4(ip)) => {
                    out.push(IPV4);
                    out.extend_from_slice(&mask_v4(ip, *ipv4_prefix).octets());
                    true
                }
                Some(IpAddr::V6(ip)) => {
                    out.push(IPV6);
                    out.extend_from_slice(&mask_v6(ip, *ipv6_prefix).octets());
                    true
                }
                None => missing(out),
            },
            KeyPart::Header { name, .. } => {
                text(out, input.request.header(name).map(<[u8]>::trim_ascii))
            }
            KeyPart::Cookie { name } => {
                let start = out.len();
                out.push(TEXT);
                out.extend_from_slice(&[0; 4]);
                let mut found = false;
                input.request.for_each_header("cookie", &mut |line| {
                    if !found && let Some(value) = cookie_value(line, name) {
                        found = true;
                        out.extend_from_slice(value);
                    }
                });
                finish_text(out, start)
            }
            KeyPart::Query { name } => {
                let start = out.len();
                out.push(TEXT);
                out.extend_from_slice(&[0; 4]);
                if let Some(raw) = input.query.and_then(|q| uri::query_value(q, name)) {
                    uri::decode_into(raw, out);
                }
                finish_text(out, start)
            }
            KeyPart::Claim(claim) => {
                let start = out.len();
                out.push(TEXT);
                out.extend_from_slice(&[0; 4]);
                crate::attributes::read_claim(input, claim, out);
                finish_text(out, start)
            }
            KeyPart::Path => text(out, Some(input.path)),
            KeyPart::Method => text(out, Some(input.request.method())),
            KeyPart::Host => {
                let start = out.len();
                out.push(TEXT);
                out.extend_from_slice(&[0; 4]);
                out.extend(input.host().iter().map(u8::to_ascii_lowercase));
                finish_text(out, start)
            }
            KeyPart::Const(value) => text(out, Some(value.as_bytes())),
        }
    }

    fn label(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::ClientIp { .. } => f.write_str("client_ip"),
            KeyPart::Header { name, .. } => write!(f, "header:{name}"),
            KeyPart::Cookie { name } => write!(f, "cookie:{name}"),
            KeyPart::Query { name } => write!(f, "query:{name}"),
            KeyPart::Claim(claim) => write!(f, "claim:{claim}"),
            KeyPart::Path => f.write_str("path"),
            KeyPart::Method => f.write_str("method"),
            KeyPart::Host => f.write_str("host"),
            KeyPart::Const(_) => f.write_str("const"),
        }
    }
}

/// A lowercase header name from the configuration.
pub(crate) fn field_name(value: &Value, path: &str) -> Result<String, ConfigError> {
    let name = json::non_empty_string(value, path)?;
    if !name.bytes().all(is_token_byte) {
        return Err(ConfigError::new(
            path,
            Problem::InvalidFieldName {
                name: String::from(name),
            },
        ));
    }
    Ok(name.to_ascii_lowercase())
}

fn missing(out: &mut Vec<u8>) -> bool {
    out.push(MISSING);
    false
}

/// Appends a present text part: the bytes a request with this value builds.
pub(crate) fn text_part(out: &mut Vec<u8>, bytes: &[u8]) {
    text(out, Some(bytes));
}

/// Appends a text part; an absent or empty value is missing.
fn text(out: &mut Vec<u8>, value: Option<&[u8]>) -> bool {
    match value {
        Some(bytes) if !bytes.is_empty() => {
            out.push(TEXT);
            out.extend_from_slice(&len_u32(bytes.len()).to_le_bytes());
            out.extend_from_slice(bytes);
            true
        }
        _ => missing(out),
    }
}

/// Completes a text part whose bytes were written after a placeholder header at `start`:
/// fills in the length, or turns it into a missing part if nothing was written.
fn finish_text(out: &mut Vec<u8>, start: usize) -> bool {
    let header_end = start + 5;
    let written = out.len().saturating_sub(header_end);
    if written == 0 {
        out.truncate(start);
        return missing(out);
    }
    if let Some(len) = out.get_mut(start + 1..header_end) {
        len.copy_from_slice(&len_u32(written).to_le_bytes());
    }
    true
}

/// Header values are bounded by the proxy far below 4 GiB; saturate rather than wrap anyway.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The value of the first cookie named `name` in one `Cookie` header line, as sent.
pub(crate) fn cookie_value<'l>(line: &'l [u8], name: &str) -> Option<&'l [u8]> {
    line.split(|&b| b == b';').find_map(|pair| {
        let equals = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = (pair.get(..equals)?, pair.get(equals + 1..)?);
        (key.trim_ascii() == name.as_bytes()).then(|| value.trim_ascii())
    })
}

fn mask_v4(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let bits = u32::from(ip);
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    Ipv4Addr::from(bits & mask)
}

fn mask_v6(ip: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let bits = u128::from(ip);
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0);
    Ipv6Addr::from(bits & mask)
}

/// A key shown for logs; see [`KeySpec::display`]. Never shows a secret part's value.
#[derive(Debug, Clone, Copy)]
pub struct KeyDisplay<'a> {
    spec: &'a KeySpec,
    key: &'a [u8],
}

impl fmt::Display for KeyDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.key;
        for (i, part) in self.spec.parts.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            part.label(f)?;
            f.write_char('=')?;
            let Some((&marker, after)) = rest.split_first() else {
                return f.write_str("<unreadable>");
            };
            rest = after;
            match marker {
                MISSING => f.write_str("<missing>")?,
                IPV4 | IPV6 => {
                    let (ip, prefix, after) = match (marker, part) {
                        (IPV4, KeyPart::ClientIp { ipv4_prefix, .. }) => {
                            let Some((octets, after)) = rest.split_first_chunk::<4>() else {
                                return f.write_str("<unreadable>");
                            };
                            (IpAddr::from(*octets), *ipv4_prefix, after)
                        }
                        (IPV6, KeyPart::ClientIp { ipv6_prefix, .. }) => {
                            let Some((octets, after)) = rest.split_first_chunk::<16>() else {
                                return f.write_str("<unreadable>");
                            };
                            (IpAddr::from(*octets), *ipv6_prefix, after)
                        }
                        _ => return f.write_str("<unreadable>"),
                    };
                    rest = after;
                    write!(f, "{ip}")?;
                    let full = if ip.is_ipv4() { 32 } else { 128 };
                    if prefix < full {
                        write!(f, "/{prefix}")?;
                    }
                }
                TEXT => {
                    let Some((len, after)) = rest.split_first_chunk::<4>() else {
                        return f.write_str("<unreadable>");
                    };
                    let len = usize::try_from(u32::from_le_bytes(*len)).unwrap_or(usize::MAX);
                    let Some((value, after)) = after.split_at_checked(len) else {
                        return f.write_str("<unreadable>");
                    };
                    rest = after;
                    match part {
                        KeyPart::Header { secret: true, .. } => {
                            write!(f, "<secret #{:08x}>", fingerprint(value))?
                        }
                        _ => write_quoted(f, value)?,
                    }
                }
                _ => return f.write_str("<unreadable>"),
            }
        }
        Ok(())
    }
}

/// 32 bits of a keyed hash: enough to tell keys apart in logs, too few to be an oracle for a
/// high-entropy secret. A low-entropy secret (a short PIN) could be guessed from it offline.
fn fingerprint(value: &[u8]) -> u32 {
    let mut hasher = SipHasher13::new_with_keys(SECRET_FINGERPRINT_KEY.0, SECRET_FINGERPRINT_KEY.1);
    hasher.write(value);
    (hasher.finish() >> 32) as u32
}

/// Writes `value` quoted, with `"` and `\` escaped, bytes outside printable ASCII as `\xNN`
/// (so a log line stays one line whatever a client sends), cut after
/// [`DISPLAY_MAX_BYTES`].
fn write_quoted(f: &mut fmt::Formatter<'_>, value: &[u8]) -> fmt::Result {
    f.write_char('"')?;
    for &b in value.iter().take(DISPLAY_MAX_BYTES) {
        match b {
            b'"' => f.write_str("\\\"")?,
            b'\\' => f.write_str("\\\\")?,
            0x20..=0x7e => f.write_char(char::from(b))?,
            _ => write!(f, "\\x{b:02x}")?,
        }
    }
    f.write_char('"')?;
    if value.len() > DISPLAY_MAX_BYTES {
        write!(f, "… ({} bytes)", value.len())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_request::TestRequest;
    use alloc::string::ToString;
    use serde_json::json;

    fn spec(v: Value) -> KeySpec {
        KeySpec::parse(&v, "key").unwrap()
    }

    fn key_of(spec: &KeySpec, req: &TestRequest) -> (Vec<u8>, bool) {
        key_with(spec, req, &ClientIpSource::Peer)
    }

    fn key_with(spec: &KeySpec, req: &TestRequest, source: &ClientIpSource) -> (Vec<u8>, bool) {
        let (path, query) = uri::split_target(crate::Request::path(req));
        let mut input = KeyInput::new(req, path, query, source, None);
        let mut out = Vec::new();
        let complete = spec.build(&mut input, &mut out);
        (out, complete)
    }

    #[test]
    fn ipv4_keys_are_masked_to_the_prefix() {
        let s = spec(json!([{"client_ip": {"ipv4_prefix": 24}}]));
        let a = key_of(&s, &TestRequest::get("/").peer("203.0.113.7:1"));
        let b = key_of(&s, &TestRequest::get("/").peer("203.0.113.200:2"));
        let c = key_of(&s, &TestRequest::get("/").peer("203.0.114.7:1"));
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
        assert_eq!(a.0, [IPV4, 203, 0, 113, 0]);
        assert_eq!(s.display(&a.0).to_string(), "client_ip=203.0.113.0/24");
    }

    #[test]
    fn ipv6_clients_in_one_slash_64_share_a_key_by_default() {
        let s = spec(json!(["client_ip"]));
        let a = key_of(&s, &TestRequest::get("/").peer("[2001:db8:1:2:aaaa::1]:1"));
        let b = key_of(&s, &TestRequest::get("/").peer("[2001:db8:1:2:bbbb::2]:1"));
        let c = key_of(&s, &TestRequest::get("/").peer("[2001:db8:1:3::1]:1"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(s.display(&a.0).to_string(), "client_ip=2001:db8:1:2::/64");
        // IPv4 keeps the whole address by default.
        let v4 = key_of(&s, &TestRequest::get("/").peer("203.0.113.7"));
        assert_eq!(s.display(&v4.0).to_string(), "client_ip=203.0.113.7");
    }

    #[test]
    fn prefix_zero_puts_every_address_of_a_family_together() {
        let s = spec(json!([{"client_ip": {"ipv4_prefix": 0, "ipv6_prefix": 128}}]));
        let a = key_of(&s, &TestRequest::get("/").peer("1.2.3.4"));
        let b = key_of(&s, &TestRequest::get("/").peer("200.2.3.4"));
        assert_eq!(a, b);
        let x = key_of(&s, &TestRequest::get("/").peer("2001:db8::1"));
        let y = key_of(&s, &TestRequest::get("/").peer("2001:db8::2"));
        assert_ne!(x, y);
    }

    #[test]
    fn the_client_ip_part_uses_the_configured_source() {
        let s = spec(json!(["client_ip"]));
        let req = TestRequest::get("/")
            .peer("10.0.0.1:80")
            .header("x-forwarded-for", "203.0.113.7");
        let xff = ClientIpSource::XForwardedFor { trusted_hops: 1 };
        let (key, complete) = key_with(&s, &req, &xff);
        assert!(complete);
        assert_eq!(s.display(&key).to_string(), "client_ip=203.0.113.7");
    }

    #[test]
    fn missing_parts_are_marked_and_reported() {
        let s = spec(json!([{"header": "x-tenant"}, "client_ip"]));
        let (key, complete) = key_of(&s, &TestRequest::get("/"));
        assert!(!complete);
        assert_eq!(key, [MISSING, MISSING]);
        assert_eq!(
            s.display(&key).to_string(),
            "header:x-tenant=<missing> client_ip=<missing>"
        );
        let (empty, complete) = key_of(
            &s,
            &TestRequest::get("/")
                .header("x-tenant", " ")
                .peer("1.2.3.4"),
        );
        assert!(!complete);
        assert_eq!(empty.first(), Some(&MISSING));
    }

    #[test]
    fn parts_are_length_prefixed_so_boundaries_cannot_be_shifted() {
        let s = spec(json!([{"header": "a"}, {"header": "b"}]));
        let one = key_of(
            &s,
            &TestRequest::get("/").header("a", "xy").header("b", "z"),
        );
        let two = key_of(
            &s,
            &TestRequest::get("/").header("a", "x").header("b", "yz"),
        );
        assert_ne!(one.0, two.0);
        // A missing part differs from any present value.
        let missing = key_of(&s, &TestRequest::get("/").header("b", "z"));
        let present = key_of(
            &s,
            &TestRequest::get("/").header("a", "\u{0}").header("b", "z"),
        );
        assert_ne!(missing.0, present.0);
    }

    #[test]
    fn secret_headers_are_fingerprinted_in_logs_never_shown() {
        let s = spec(json!([{"header": "X-Api-Key", "secret": true}]));
        let (key, _) = key_of(
            &s,
            &TestRequest::get("/").header("x-api-key", "sk_live_123"),
        );
        let shown = s.display(&key).to_string();
        assert!(!shown.contains("sk_live_123"), "{shown}");
        assert!(shown.starts_with("header:x-api-key=<secret #"), "{shown}");
        let (other, _) = key_of(
            &s,
            &TestRequest::get("/").header("x-api-key", "sk_live_124"),
        );
        assert_ne!(shown, s.display(&other).to_string());
        // The same secret shows the same fingerprint every time.
        assert_eq!(shown, s.display(&key).to_string());
    }

    #[test]
    fn values_that_are_not_utf8_count_by_their_bytes() {
        // Decoded lossily, both would be "\u{fffd}\u{fffd}" and share one counter.
        let (ab, ba) = (b"\xff\xfe", b"\xfe\xff");
        let s = spec(json!([{"header": "x-api-key", "secret": true}]));
        let a = key_of(&s, &TestRequest::get("/").header_bytes("x-api-key", ab));
        let b = key_of(&s, &TestRequest::get("/").header_bytes("x-api-key", ba));
        assert!(a.1 && b.1);
        assert_ne!(a.0, b.0);
        assert_eq!(a.0, [TEXT, 2, 0, 0, 0, 0xff, 0xfe]);
        // The log fingerprint is of the bytes too, so the two stay apart in logs.
        assert_ne!(s.display(&a.0).to_string(), s.display(&b.0).to_string());

        let s = spec(json!([{"cookie": "session"}]));
        let cookie = |value: &[u8]| [b"session=".as_slice(), value, b"; x=1"].concat();
        let a = key_of(
            &s,
            &TestRequest::get("/").header_bytes("cookie", &cookie(ab)),
        );
        let b = key_of(
            &s,
            &TestRequest::get("/").header_bytes("cookie", &cookie(ba)),
        );
        assert_ne!(a.0, b.0);
        assert_eq!(s.display(&a.0).to_string(), "cookie:session=\"\\xff\\xfe\"");

        // Raw bytes in the target, as NGINX passes them on, and in the host.
        let s = spec(json!([{"query": "api_key"}, "path", "host"]));
        let request = |raw: &[u8]| {
            let mut r = TestRequest::get("/");
            r.path = [b"/a".as_slice(), raw, b"?api_key=", raw].concat();
            r.authority = [raw, b".example"].concat();
            r
        };
        let (a, b) = (key_of(&s, &request(ab)), key_of(&s, &request(ba)));
        assert_ne!(a.0, b.0);
        assert_eq!(
            s.display(&a.0).to_string(),
            "query:api_key=\"\\xff\\xfe\" path=\"/a\\xff\\xfe\" host=\"\\xff\\xfe.example\""
        );
    }

    #[test]
    fn only_ascii_whitespace_is_trimmed_from_header_values() {
        let s = spec(json!([{"header": "x-tenant"}]));
        let plain = key_of(&s, &TestRequest::get("/").header("x-tenant", " \tacme "));
        assert_eq!(plain.0, [TEXT, 4, 0, 0, 0, b'a', b'c', b'm', b'e']);
        // A no-break space is part of the value: a different key.
        let nbsp = key_of(&s, &TestRequest::get("/").header("x-tenant", "acme\u{a0}"));
        assert_ne!(plain.0, nbsp.0);
    }

    #[test]
    fn cookies_are_found_across_cookie_lines() {
        let s = spec(json!([{"cookie": "session"}]));
        let req = TestRequest::get("/")
            .header("cookie", "theme=dark; sessionx=no")
            .header("cookie", "a=1;session=abc123 ; session=second");
        let (key, complete) = key_of(&s, &req);
        assert!(complete);
        assert_eq!(s.display(&key).to_string(), "cookie:session=\"abc123\"");
        let (_, complete) = key_of(&s, &TestRequest::get("/").header("cookie", "other=1"));
        assert!(!complete);
    }

    #[test]
    fn query_parameters_are_percent_decoded_first_occurrence() {
        let s = spec(json!([{"query": "api_key"}]));
        let a = key_of(&s, &TestRequest::get("/x?api_key=a%20b&api_key=other"));
        let b = key_of(&s, &TestRequest::get("/x?z=1&api%5Fkey=a+b"));
        assert!(a.1);
        assert_eq!(a, b);
        assert_eq!(s.display(&a.0).to_string(), "query:api_key=\"a b\"");
        let (_, complete) = key_of(&s, &TestRequest::get("/x?api_key="));
        assert!(!complete);
        let (_, complete) = key_of(&s, &TestRequest::get("/x"));
        assert!(!complete);
    }

    #[test]
    fn path_method_host_and_const_parts() {
        let s = spec(json!(["path", "method", "host", {"const": "global"}]));
        let req = TestRequest::new("POST", "/api/items?x=1").authority("API.Example.com:8443");
        let (key, complete) = key_of(&s, &req);
        assert!(complete);
        assert_eq!(
            s.display(&key).to_string(),
            "path=\"/api/items\" method=\"POST\" host=\"api.example.com\" const=\"global\""
        );
    }

    #[test]
    fn displays_escape_control_characters_and_cut_long_values() {
        let s = spec(json!([{"header": "x-tenant"}]));
        let (key, _) = key_of(&s, &TestRequest::get("/").header("x-tenant", "a\"b\\c\nd"));
        assert_eq!(
            s.display(&key).to_string(),
            "header:x-tenant=\"a\\\"b\\\\c\\x0ad\""
        );
        let long = "x".repeat(100);
        let (key, _) = key_of(&s, &TestRequest::get("/").header("x-tenant", &long));
        let shown = s.display(&key).to_string();
        assert!(shown.ends_with("\"… (100 bytes)"), "{shown}");
        assert!(shown.len() < 100);
    }

    #[test]
    fn a_damaged_key_displays_without_panicking() {
        let s = spec(json!(["client_ip", {"header": "a"}]));
        for bytes in [
            &[][..],
            &[IPV4, 1],
            &[TEXT],
            &[IPV4, 1, 2, 3, 4, TEXT, 9, 0, 0, 0, b'x'],
            &[7],
        ] {
            let shown = s.display(bytes).to_string();
            assert!(shown.contains("<unreadable>"), "{shown}");
        }
    }

    #[test]
    fn key_parts_are_validated() {
        let cases = [
            (json!([]), "key", "must not be empty"),
            (json!(["ip"]), "key[0]", "not a key part"),
            (json!(["header"]), "key[0]", "needs a name"),
            (
                json!([{"header": ""}]),
                "key[0].header",
                "must not be empty",
            ),
            (
                json!([{"header": "x api"}]),
                "key[0].header",
                "not a valid name",
            ),
            (
                json!([{"header": "a", "cookie": "b"}]),
                "key[0]",
                "not a key part",
            ),
            (
                json!([{"header": "a", "secrt": true}]),
                "key[0].secrt",
                "unknown field",
            ),
            (
                json!([{"client_ip": {"ipv4_prefix": 33}}]),
                "key[0].client_ip.ipv4_prefix",
                "0 to 32",
            ),
            (
                json!([{"client_ip": {"ipv6_prefix": 129}}]),
                "key[0].client_ip.ipv6_prefix",
                "0 to 128",
            ),
            (
                json!([{"cookie": "a;b"}]),
                "key[0].cookie",
                "not a valid name",
            ),
            (json!([{"query": ""}]), "key[0].query", "must not be empty"),
            (json!([{"const": 5}]), "key[0].const", "expected a string"),
            (json!([7]), "key[0]", "not a key part"),
        ];
        for (value, path, message) in cases {
            let err = KeySpec::parse(&value, "key").unwrap_err();
            assert_eq!(err.path(), path, "{value}");
            assert!(err.to_string().contains(message), "{value}: {err}");
        }
    }
}
