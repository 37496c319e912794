//! HTTP calls: `proxy_http_call`.
//!
//! Under Envoy (`source/extensions/common/wasm/context.cc`, `httpCall`, and
//! proxy-wasm-cpp-host `src/exports.cc`, `http_call`):
//! - the call belongs to the root context, whichever context makes it; its
//!   response comes back as `proxy_on_http_call_response(root_id, token,
//!   …)` (the SDKs route it by token to the context that dispatched it);
//! - the token memory is checked first (`INVALID_MEMORY_ACCESS`), and 0 is
//!   written there when the call is refused;
//! - a negative timeout, an unknown cluster, or headers without `:method`,
//!   `:path` or `:authority` answer `BAD_ARGUMENT`; timeout 0 means none
//!   in Envoy (this host then applies `CallLimits::unset_timeout`);
//! - request trailers are not sent (an HTTP/1.1 cluster: Envoy's HTTP/1
//!   codec drops them unless told otherwise).
//!
//! Under ngx_wasm_module (`ngx_proxy_wasm_host.c`,
//! `ngx_http_proxy_wasm_dispatch.c`) the upstream is an address,
//! `host[:port]` (port 80 by default; a name found among the clusters
//! connects to that cluster's address), `:authority` defaults to it, and
//! what Envoy answers with a status traps instead: a call outside
//! `on_request_headers`, `on_request_body`, `on_tick` and
//! `on_http_call_response`, a missing `:method` or `:path`, an empty host.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use wasmtime::{Caller, Linker};

use super::{AbiError, AbiResult, answer, memory};
use crate::headers::{HeaderMap, deserialize_pairs};
use crate::options::HostFlavor;
use crate::outbound::CallRequest;
use crate::state::{Callback, HostState};
use crate::types::{LogLevel, Status};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut caller: Caller<'_, HostState>,
         upstream: u32,
         upstream_size: u32,
         headers: u32,
         headers_size: u32,
         body: u32,
         body_size: u32,
         trailers: u32,
         trailers_size: u32,
         timeout_ms: u32,
         token_out: u32| {
            answer(http_call(
                &mut caller,
                (upstream, upstream_size),
                (headers, headers_size),
                (body, body_size),
                (trailers, trailers_size),
                timeout_ms,
                token_out,
            ))
        },
    )?;
    Ok(())
}

/// What a call asks for, read from guest memory.
struct Asked {
    upstream: Vec<u8>,
    headers: Vec<u8>,
    body: Vec<u8>,
    timeout_ms: u32,
}

fn http_call(
    caller: &mut Caller<'_, HostState>,
    upstream: (u32, u32),
    headers: (u32, u32),
    body: (u32, u32),
    trailers: (u32, u32),
    timeout_ms: u32,
    token_out: u32,
) -> AbiResult<()> {
    let asked = Asked {
        upstream: memory::read(caller, upstream.0, upstream.1)?,
        headers: memory::read(caller, headers.0, headers.1)?,
        body: memory::read(caller, body.0, body.1)?,
        timeout_ms,
    };
    // Read for its bounds only: trailers do not travel over HTTP/1.1.
    memory::check(
        caller,
        trailers.0,
        usize::try_from(trailers.1).unwrap_or(usize::MAX),
    )?;
    // Envoy writes the token first, to check its memory before any work.
    memory::write_u32(caller, token_out, 0)?;
    let call = match caller.data().env.flavor {
        HostFlavor::Envoy => envoy_call(caller.data(), &asked)?,
        HostFlavor::NgxWasmModule => ngx_call(caller.data(), &asked)?,
    };
    let token = start(caller.data_mut(), call)?;
    memory::write_u32(caller, token_out, token)
}

/// Starts a call checked and built; answers its token.
fn start(state: &mut HostState, call: CallRequest) -> AbiResult<u32> {
    let limit = state.env.calls.limits.max_in_flight_per_vm;
    // HTTP calls share the bound with gRPC calls and streams.
    if state.calls.in_flight_total() >= limit {
        state.host_log(
            LogLevel::Warn,
            format!(
                "proxy_http_call refused: {limit} calls already in flight on this VM \
                 (answered INTERNAL_FAILURE)"
            ),
        );
        return Err(Status::InternalFailure.into());
    }
    let Some(sink) = state.calls.sink.clone() else {
        state.host_log(
            LogLevel::Error,
            "proxy_http_call refused: this VM cannot receive responses".to_string(),
        );
        return Err(Status::InternalFailure.into());
    };
    let token = state.calls.next_token();
    let origin = state.call.effective_context;
    match state.env.calls.start(call, state.vm.instance, token, sink) {
        Ok(abort) => {
            state.calls.track(token, origin, abort);
            Ok(token)
        }
        Err(message) => {
            state.host_log(
                LogLevel::Error,
                format!("proxy_http_call failed: {message}"),
            );
            Err(Status::InternalFailure.into())
        }
    }
}

fn timeout_of(state: &HostState, timeout_ms: u32) -> Duration {
    match timeout_ms {
        0 => state.env.calls.limits.unset_timeout,
        ms => Duration::from_millis(u64::from(ms)),
    }
}

/// The request line and headers as hyper takes them; `None` for bytes
/// HTTP/1.1 cannot carry.
fn build(
    address: &str,
    method: &[u8],
    path: &[u8],
    authority: &[u8],
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Option<hyper::Request<Full<Bytes>>> {
    let method = hyper::Method::from_bytes(method).ok()?;
    let path = std::str::from_utf8(path).ok()?;
    if !path.starts_with('/') {
        return None;
    }
    let uri: hyper::Uri = format!("http://{address}{path}").parse().ok()?;
    let mut request = hyper::Request::builder().method(method).uri(uri);
    request = request.header(
        hyper::header::HOST,
        hyper::header::HeaderValue::from_bytes(authority).ok()?,
    );
    for (name, value) in headers.to_byte_pairs() {
        if name.starts_with(b":") || name.eq_ignore_ascii_case(b"host") {
            continue;
        }
        request = request.header(
            hyper::header::HeaderName::from_bytes(name).ok()?,
            hyper::header::HeaderValue::from_bytes(value).ok()?,
        );
    }
    request.body(Full::new(Bytes::from(body))).ok()
}

fn present<'a>(headers: &'a HeaderMap, name: &[u8]) -> Option<&'a [u8]> {
    headers.get(name)
}

fn envoy_call(state: &HostState, asked: &Asked) -> AbiResult<CallRequest> {
    if i32::try_from(asked.timeout_ms).is_err() {
        return Err(Status::BadArgument.into());
    }
    let cluster = String::from_utf8_lossy(&asked.upstream);
    let Some(address) = state.env.calls.clusters.get(&cluster) else {
        state.host_log(
            LogLevel::Debug,
            format!("proxy_http_call to unknown cluster `{cluster}`: BAD_ARGUMENT"),
        );
        return Err(Status::BadArgument.into());
    };
    // A map that does not parse is read as empty by Envoy, which then lacks
    // the required headers.
    let headers = deserialize_pairs(&asked.headers)
        .map(HeaderMap::from_byte_pairs)
        .unwrap_or_default();
    let (Some(method), Some(path), Some(authority)) = (
        present(&headers, b":method"),
        present(&headers, b":path"),
        present(&headers, b":authority"),
    ) else {
        state.host_log(
            LogLevel::Debug,
            "proxy_http_call without :method, :path or :authority: BAD_ARGUMENT".to_string(),
        );
        return Err(Status::BadArgument.into());
    };
    let request = build(
        &address.to_string(),
        method,
        path,
        authority,
        &headers,
        asked.body.clone(),
    )
    .ok_or(Status::BadArgument)?;
    Ok(CallRequest {
        request,
        timeout: timeout_of(state, asked.timeout_ms),
    })
}

/// ngx_wasm_module fails a bad dispatch by trapping the filter, with this
/// message.
fn ngx_trap(state: &HostState, message: &str) -> AbiError {
    state.host_log(LogLevel::Error, message.to_string());
    AbiError::Trap(wasmtime::format_err!("{message}"))
}

/// ngx's `host[:port]`: an IP literal (IPv6 in brackets) or a name, port 80
/// by default.
fn ngx_address(state: &HostState, upstream: &str) -> AbiResult<String> {
    if let Some(address) = state.env.calls.clusters.get(upstream) {
        return Ok(address.to_string());
    }
    if upstream.is_empty() {
        return Err(ngx_trap(state, "dispatch failed: tcp socket - no host"));
    }
    if let Ok(address) = upstream.parse::<SocketAddr>() {
        return Ok(address.to_string());
    }
    if let Ok(ip) = upstream.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 80).to_string());
    }
    let (host, port) = match upstream.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) if port > 0 => (host, port),
            _ => {
                return Err(ngx_trap(
                    state,
                    "dispatch failed: tcp socket - invalid port",
                ));
            }
        },
        None => (upstream, 80),
    };
    if host.is_empty() {
        return Err(ngx_trap(state, "dispatch failed: tcp socket - no host"));
    }
    Ok(format!("{host}:{port}"))
}

fn ngx_call(state: &HostState, asked: &Asked) -> AbiResult<CallRequest> {
    let allowed = matches!(
        state.call.callback,
        Callback::RequestHeaders
            | Callback::RequestBody { .. }
            | Callback::Tick
            | Callback::HttpCallResponse
    );
    if !allowed {
        return Err(ngx_trap(
            state,
            "can only send HTTP dispatch during \"on_request_headers\", \"on_request_body\", \
             \"on_tick\", \"on_dispatch_response\", \"on_foreign_function\"",
        ));
    }
    let headers = deserialize_pairs(&asked.headers)
        .map(HeaderMap::from_byte_pairs)
        .map_err(|_| ngx_trap(state, "dispatch failed: marshalling error"))?;
    let method = present(&headers, b":method").filter(|value| !value.is_empty());
    let Some(method) = method else {
        return Err(ngx_trap(state, "dispatch failed: no :method"));
    };
    let path = present(&headers, b":path").filter(|value| !value.is_empty());
    let Some(path) = path else {
        return Err(ngx_trap(state, "dispatch failed: no :path"));
    };
    let upstream = String::from_utf8_lossy(&asked.upstream).into_owned();
    let address = ngx_address(state, &upstream)?;
    let authority = present(&headers, b":authority")
        .filter(|value| !value.is_empty())
        .unwrap_or(upstream.as_bytes());
    let request = build(
        &address,
        method,
        path,
        authority,
        &headers,
        asked.body.clone(),
    )
    .ok_or_else(|| ngx_trap(state, "dispatch failed: marshalling error"))?;
    Ok(CallRequest {
        request,
        timeout: timeout_of(state, asked.timeout_ms),
    })
}
