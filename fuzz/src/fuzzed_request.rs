//! An HTTP request read from fuzzer bytes, as the policy sees requests: method, target,
//! authority and header values as raw bytes (not necessarily UTF-8), header names mostly among
//! those the rules read, and the peer address text.

use sluice_policy::OwnedRequest;

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
    "x-jwt-payload",
    "authorization",
    "x-plan",
];

const METHODS: &[&str] = &["GET", "POST", "OPTIONS", "get", "", "PUT"];

/// Reads a request from fuzzer bytes: a control byte, then the parts as chunks.
pub fn read(input: &mut Input<'_>) -> OwnedRequest {
    let control = input.byte();
    let method = if control & 1 == 0 {
        input.pick(METHODS).as_bytes().to_vec()
    } else {
        input.chunk().to_vec()
    };
    let path = input.chunk().to_vec();
    let authority = input.chunk().to_vec();
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
        headers.push((name, input.chunk().to_vec()));
    }
    OwnedRequest {
        method,
        path,
        authority,
        headers,
        peer,
    }
}
