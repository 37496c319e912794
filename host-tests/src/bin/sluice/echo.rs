//! The built-in upstream: answers every request with 200 and a JSON description of the
//! request as the filter let it through, so `sluice serve` works with nothing else running.

use sluice_host::{ForwardedRequest, HttpResponse};

pub fn respond(request: &ForwardedRequest) -> HttpResponse {
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str())))
        .collect();
    let body = serde_json::json!({
        "upstream": "sluice built-in echo",
        "headers": headers,
        "body_bytes": request.body.len(),
    });
    let mut text = serde_json::to_string_pretty(&body).unwrap_or_default();
    text.push('\n');
    HttpResponse::new(200)
        .header("content-type", "application/json")
        .body(text)
}
