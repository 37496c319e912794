//! Envoy's RLS v3 request and response in their protobuf JSON mapping, for `POST /json` (as
//! envoyproxy/ratelimit serves it). Field names are accepted in both the proto and the
//! lowerCamelCase spelling; 64-bit integers as numbers or strings, as the mapping allows.
//! The answer uses lowerCamelCase, and the HTTP status is 429 when over the limit.

use serde::{Deserialize, Deserializer, Serialize};

use crate::rls::{RlsAnswer, RlsDescriptor, RlsRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    descriptors: Vec<JsonDescriptor>,
    #[serde(default, alias = "hitsAddend", deserialize_with = "integer")]
    hits_addend: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDescriptor {
    #[serde(default)]
    entries: Vec<JsonEntry>,
    #[serde(default, alias = "hitsAddend", deserialize_with = "optional_integer")]
    hits_addend: Option<u64>,
    #[serde(default, alias = "isNegativeHits")]
    is_negative_hits: bool,
    /// A per-descriptor limit override: accepted and ignored (limits come from the config).
    #[serde(default)]
    #[allow(dead_code)]
    limit: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Integer {
    Number(u64),
    Text(String),
}

fn to_u64<E: serde::de::Error>(value: Integer) -> Result<u64, E> {
    match value {
        Integer::Number(n) => Ok(n),
        Integer::Text(text) => text
            .parse()
            .map_err(|_| E::custom(format!("\"{text}\" is not an unsigned integer"))),
    }
}

fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    to_u64(Integer::deserialize(d)?)
}

fn optional_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    // google.protobuf.UInt64Value maps to a bare number (or string) in JSON.
    match Option::<Integer>::deserialize(d)? {
        None => Ok(None),
        Some(value) => to_u64(value).map(Some),
    }
}

/// Parses a `/json` request body. The message names what is wrong.
pub fn parse_request(body: &[u8]) -> Result<RlsRequest, String> {
    let request: JsonRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid RateLimitRequest JSON: {e}"))?;
    Ok(RlsRequest {
        domain: request.domain,
        hits_addend: request.hits_addend,
        descriptors: request
            .descriptors
            .into_iter()
            .map(|d| RlsDescriptor {
                entries: d.entries.into_iter().map(|e| (e.key, e.value)).collect(),
                hits_addend: d.hits_addend,
                negative_hits: d.is_negative_hits,
            })
            .collect(),
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonResponse {
    overall_code: &'static str,
    statuses: Vec<JsonStatus>,
    response_headers_to_add: Vec<JsonHeader>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    request_headers_to_add: Vec<JsonHeader>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonStatus {
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_limit: Option<JsonLimit>,
    limit_remaining: u32,
    duration_until_reset: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonLimit {
    name: String,
    requests_per_unit: u32,
    unit: &'static str,
}

#[derive(Debug, Serialize)]
struct JsonHeader {
    key: String,
    value: String,
}

fn code(over_limit: bool) -> &'static str {
    if over_limit { "OVER_LIMIT" } else { "OK" }
}

/// Renders an answer as the response body.
pub fn render_answer(answer: RlsAnswer) -> Vec<u8> {
    let response = JsonResponse {
        overall_code: code(answer.over_limit),
        statuses: answer
            .statuses
            .into_iter()
            .map(|s| JsonStatus {
                code: code(s.over_limit),
                current_limit: s
                    .current_limit
                    .map(|(name, requests_per_unit, unit)| JsonLimit {
                        name,
                        requests_per_unit,
                        unit: unit.as_str_name(),
                    }),
                limit_remaining: s.remaining,
                // google.protobuf.Duration's JSON form: seconds with up to 9 decimals and "s".
                duration_until_reset: format!(
                    "{}.{:09}s",
                    s.until_reset.as_secs(),
                    s.until_reset.subsec_nanos()
                ),
            })
            .collect(),
        response_headers_to_add: answer
            .headers
            .into_iter()
            .map(|(key, value)| JsonHeader { key, value })
            .collect(),
        request_headers_to_add: answer
            .request_headers
            .into_iter()
            .map(|(key, value)| JsonHeader { key, value })
            .collect(),
    };
    serde_json::to_vec(&response).unwrap_or_default()
}
