//! Passing an allowed request on to the origin, and adding the rate-limit headers to its
//! response.
//!
//! With `SLUICE_ORIGIN` set (e.g. `https://origin.example.com`), the request goes there with
//! its path and query; without it, the request is fetched as it came, which on a zone route
//! reaches the zone's origin server.

use worker::wasm_bindgen::JsValue;
use worker::{Env, Fetch, Headers, Request, RequestInit, RequestRedirect, Response, ResponseBody};

use crate::test_hooks::{self, TestHooks};

/// The variable naming the origin.
pub const ORIGIN_VARIABLE: &str = "SLUICE_ORIGIN";

/// The URL to fetch for `request`: on the configured origin, or the request's own.
fn target(env: &Env, request: &Request) -> worker::Result<String> {
    let url = request.url()?;
    let Some(origin) = env
        .var(ORIGIN_VARIABLE)
        .ok()
        .map(|v| v.to_string())
        .filter(|o| !o.is_empty())
    else {
        return Ok(url.to_string());
    };
    let mut target = origin.trim_end_matches('/').to_owned();
    target.push_str(url.path());
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    Ok(target)
}

/// Fetches `request` from the origin and returns its response with `extra` headers added.
pub async fn forward(
    env: &Env,
    request: Request,
    hooks: &TestHooks,
    extra: &[(&str, String)],
) -> worker::Result<Response> {
    let headers = Headers::new();
    for (name, value) in request.headers().entries() {
        if hooks.enabled && name.starts_with(test_hooks::PREFIX) {
            continue;
        }
        headers.append(&name, &value)?;
    }
    let mut init = RequestInit::new();
    init.with_method(request.method())
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual)
        .with_body(request.inner().body().map(JsValue::from));
    let upstream = Request::new_with_init(&target(env, &request)?, &init)?;
    let response = Fetch::Request(upstream).send().await?;

    // A fetched response's headers are immutable: copy them.
    let headers = Headers::new();
    for (name, value) in response.headers().entries() {
        headers.append(&name, &value)?;
    }
    for (name, value) in extra {
        headers.append(name, value)?;
    }
    let builder = Response::builder()
        .with_status(response.status_code())
        .with_headers(headers);
    Ok(match response.body() {
        ResponseBody::Stream(stream) => builder.stream(stream.clone()),
        ResponseBody::Body(bytes) => builder.fixed(bytes.clone()),
        ResponseBody::Empty => builder.empty(),
    })
}
