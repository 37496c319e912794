//! Passing an allowed request on to the origin, and adding the rate-limit headers to its
//! response. A request a soft limit marked carries the warning header to the origin too; when
//! the configuration can mark, a warning header the client sent is dropped, so the origin only
//! ever sees sluice's mark.
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

/// The warning header for the request to the origin.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpstreamMark<'a> {
    /// The warning header's name, when the configuration can mark a request: the client's
    /// own lines of it are dropped.
    pub header: Option<&'a str>,
    /// The warning's value, when the request is marked.
    pub value: Option<&'a str>,
}

/// Fetches `request` from the origin (with `mark`) and returns its response with `extra`
/// headers added.
pub async fn forward(
    env: &Env,
    request: Request,
    hooks: &TestHooks,
    extra: &[(&str, String)],
    mark: UpstreamMark<'_>,
) -> worker::Result<Response> {
    let headers = Headers::new();
    for (name, value) in request.headers().entries() {
        if hooks.enabled && name.starts_with(test_hooks::PREFIX) {
            continue;
        }
        if mark
            .header
            .is_some_and(|header| name.eq_ignore_ascii_case(header))
        {
            continue;
        }
        headers.append(&name, &value)?;
    }
    if let (Some(name), Some(value)) = (mark.header, mark.value) {
        headers.set(name, value)?;
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
