//! Delivering the end of an HTTP call to the VM that made it:
//! `proxy_on_http_call_response` on the root context, with the response as
//! the host flavour presents it.
//!
//! Envoy (`Context::onHttpCallSuccess` / `onHttpCallFailure`): a response
//! with headers is a success, including the local replies of Envoy's router
//! for a timeout (504, `upstream request timeout`) and a connection that
//! failed or closed before the headers (503, `upstream connect error or
//! disconnect/reset before headers. …`); a response that broke off after its
//! headers, or whose body is over the limit, is a failure: 0 headers, 0
//! body, and `proxy_get_status` answers 11 (`BrokenConnection`), `reset`.
//!
//! ngx_wasm_module (`ngx_http_proxy_wasm_dispatch.c`): every failure is
//! delivered with 0 headers and 0 body after an error log line `dispatch
//! failed: …`; the header count leaves out `:status` (a special key there);
//! there are no trailers; once the last call of a stream has been answered,
//! the stream resumes on its own.

use super::Worker;
use crate::headers::HeaderMap;
use crate::options::HostFlavor;
use crate::outbound::{CallCompletion, CallError, CallReply, DeliveredCall, envoy_connect_failure};
use crate::state::host_log;
use crate::types::LogLevel;

/// Envoy's `BrokenConnection` (`proxy_get_status` after a failed call).
const BROKEN_CONNECTION: u32 = 11;

fn reply_headers(reply: &CallReply) -> HeaderMap {
    let mut headers = HeaderMap::default();
    headers.add(b":status", reply.status.to_string().as_bytes());
    for (name, value) in &reply.headers {
        headers.add(name, value);
    }
    headers
}

/// A local reply of Envoy's router, as its async client hands it over.
fn envoy_local_reply(status: u16, body: &str) -> DeliveredCall {
    let mut headers = HeaderMap::default();
    headers.add(b":status", status.to_string().as_bytes());
    headers.add(b"content-length", body.len().to_string().as_bytes());
    headers.add(b"content-type", b"text/plain");
    DeliveredCall {
        headers,
        body: body.as_bytes().to_vec(),
        trailers: HeaderMap::default(),
        status: (0, String::new()),
    }
}

/// What the filter is given, and the header count it is told.
fn envoy_delivery(result: Result<CallReply, CallError>) -> (DeliveredCall, usize) {
    let delivered = match result {
        Ok(reply) => DeliveredCall {
            headers: reply_headers(&reply),
            body: reply.body,
            trailers: HeaderMap::from_byte_pairs(reply.trailers),
            status: (0, String::new()),
        },
        Err(CallError::Timeout) => envoy_local_reply(504, "upstream request timeout"),
        Err(CallError::Connect { errno, message }) => {
            let reason = errno.map_or(message, |errno| errno.to_string());
            envoy_local_reply(503, &envoy_connect_failure(&reason))
        }
        Err(CallError::ResetBeforeHeaders(_)) => envoy_local_reply(
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: \
             connection termination",
        ),
        Err(CallError::ResetAfterHeaders(_) | CallError::BodyTooLarge { .. }) => DeliveredCall {
            status: (BROKEN_CONNECTION, "reset".to_string()),
            ..DeliveredCall::default()
        },
    };
    let count = delivered.headers.len();
    (delivered, count)
}

fn ngx_delivery(result: Result<CallReply, CallError>) -> (DeliveredCall, usize) {
    match result {
        Ok(reply) => {
            let count = reply.headers.len();
            let delivered = DeliveredCall {
                headers: reply_headers(&reply),
                body: reply.body,
                trailers: HeaderMap::default(),
                status: (0, String::new()),
            };
            (delivered, count)
        }
        Err(_) => (DeliveredCall::default(), 0),
    }
}

impl Worker {
    /// A call ended: its response goes to the VM that made it, if that VM
    /// still runs and the call was not cancelled.
    pub(super) fn call_done(&mut self, completion: CallCompletion) {
        if completion.vm_instance != self.vm_instance {
            return;
        }
        let flavor = self.env().flavor;
        let Some(vm) = self.vm.as_mut() else {
            return;
        };
        let label = vm.label();
        let Some(call) = vm.state().calls.in_flight.remove(&completion.token) else {
            return;
        };
        let origin = call.origin_context;
        if let Err(error) = &completion.result {
            let (level, message) = match flavor {
                HostFlavor::Envoy => (
                    LogLevel::Debug,
                    format!("HTTP call {} failed: {error}", completion.token),
                ),
                HostFlavor::NgxWasmModule => (
                    LogLevel::Error,
                    format!("dispatch failed: tcp socket - {error}"),
                ),
            };
            host_log(&self.config.env, label, level, message);
        }
        let (delivered, headers) = match flavor {
            HostFlavor::Envoy => envoy_delivery(completion.result),
            HostFlavor::NgxWasmModule => ngx_delivery(completion.result),
        };
        let body_size = delivered.body.len();
        let trailers = delivered.trailers.len();
        let Some(vm) = self.vm.as_mut() else {
            return;
        };
        host_log(
            &self.config.env,
            label,
            LogLevel::Debug,
            format!(
                "HTTP call {} delivered to the root context ({headers} headers, {body_size} \
                 body bytes)",
                completion.token
            ),
        );
        vm.state().calls.delivering = Some(delivered);
        let result = vm.http_call_response(completion.token, headers, body_size, trailers);
        if let Some(vm) = self.vm.as_mut() {
            vm.state().calls.delivering = None;
        }
        let stream = self.contexts.get(&origin).copied();
        match result {
            Ok(called) => {
                if let Some(id) = stream {
                    self.book(id, called.fuel, called.host_calls.as_deref());
                }
                self.apply_deferred(called.deferred, None);
                if flavor == HostFlavor::NgxWasmModule {
                    self.continue_after_calls(origin);
                }
            }
            Err(trap) => self.fail_vm(&trap, "proxy_on_http_call_response"),
        }
    }
}
