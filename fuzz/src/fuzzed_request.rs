//! An HTTP request read from fuzzer bytes, as the policy sees requests: method, target,
//! authority, headers (names mostly among those the rules read) and the peer address text.

use sluice_policy::Request;

use crate::input::Input;

/// Header names the rules read, and some they do not.
pub const NAMES: &[&str] = &[
    "x-forwarded-for",
    "X-Forwarded-For",
    "cf-connecting-ip",
    "x-api-key",
    "cookie",
    "x-cost",
    "origin",
    "access-control-request-method",
    "host",
    ":authority",
    "user-agent",
];

const METHODS: &[&str] = &["GET", "POST", "OPTIONS", "get", "", "PUT"];

/// A request built from fuzzer bytes.
#[derive(Debug, Clone)]
pub struct FuzzRequest {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
    pub peer: Option<String>,
}

impl FuzzRequest {
    /// Reads a request: a control byte, then the parts as chunks.
    pub fn read(input: &mut Input<'_>) -> FuzzRequest {
        let control = input.byte();
        let method = if control & 1 == 0 {
            input.pick(METHODS).to_string()
        } else {
            input.text()
        };
        let path = input.text();
        let authority = input.text();
        let peer = match (control >> 1) & 3 {
            0 => None,
            _ => Some(input.text()),
        };
        let mut headers = Vec::new();
        for _ in 0..input.byte() % 12 {
            let name = if input.byte() & 3 == 0 {
                input.text().to_ascii_lowercase()
            } else {
                input.pick(NAMES).to_string()
            };
            headers.push((name, input.text()));
        }
        FuzzRequest {
            method,
            path,
            authority,
            headers,
            peer,
        }
    }
}

impl Request for FuzzRequest {
    fn method(&self) -> &str {
        &self.method
    }
    fn path(&self) -> &str {
        &self.path
    }
    fn authority(&self) -> &str {
        &self.authority
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn for_each_header(&self, name: &str, f: &mut dyn FnMut(&str)) {
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case(name) {
                f(v);
            }
        }
    }
    fn peer_address(&self) -> Option<&str> {
        self.peer.as_deref()
    }
}
