//! `sluice-probe-filter`: a proxy-wasm HTTP filter that exercises its host.
//!
//! Every request header named `x-probe-…` is an instruction, carried out in
//! `on_http_request_headers` in the order the headers arrive. Most
//! instructions produce a result, a header named `x-probe-r-…`: results are
//! added to the request headers (so a forwarded request carries them), to the
//! response headers in `on_http_response_headers`, and to a local response
//! sent by the probe. A result is the decimal ABI status, followed for reads
//! by ` value=<v>` (and ` cas=<n>` for shared data); values that are not
//! printable UTF-8 are written `hex:<hex digits>`.
//!
//! | request header | effect | result header |
//! |---|---|---|
//! | `x-probe-log: <level>:<text>` | `proxy_log` at trace, debug, info, warn, error or critical | `x-probe-r-log` only if the status is not 0 |
//! | `x-probe-log-all: <text>` | logs `<text>` once at every level | — |
//! | `x-probe-shared-get: <key>` | `proxy_get_shared_data` | `x-probe-r-shared-get-<key>` |
//! | `x-probe-shared-set: <key>=<value>[;cas=<n>]` | `proxy_set_shared_data` | `x-probe-r-shared-set-<key>` |
//! | `x-probe-shared-delete: <key>[;cas=<n>]` | `proxy_set_shared_data` with a null value | `x-probe-r-shared-delete-<key>` |
//! | `x-probe-metric: <counter\|gauge\|histogram>:<name>:<inc\|record\|get>:<n>` | define, then the operation | `x-probe-r-metric-<name>` |
//! | `x-probe-get-request-header: <name>` | `get_http_request_header` | `x-probe-r-get-<name>` |
//! | `x-probe-get-request-header-later: <name>` | reads it again in `on_http_response_headers` | `x-probe-r-later-get-<name>` (response only) |
//! | `x-probe-add-request-header: <name>=<value>` | `add_http_request_header` | — |
//! | `x-probe-replace-request-header: <name>=<value>` | `set_http_request_header` | — |
//! | `x-probe-remove-request-header: <name>` | `remove_http_request_header` | — |
//! | `x-probe-set-request-headers: <n>=<v>,<n>=<v>` | `set_http_request_headers` (replaces the map) | — |
//! | `x-probe-{add,replace,remove}-response-header`, `x-probe-set-response-headers` | the same, on the response headers | — |
//! | `x-probe-echo-request-headers: 1` | the request headers after all edits | `x-probe-r-request-headers` |
//! | `x-probe-property: <dotted.path>` | `proxy_get_property` | `x-probe-r-property-<dotted.path>` |
//! | `x-probe-property-i64: <dotted.path>` | the same, decoding an 8-byte little-endian integer | `x-probe-r-property-<dotted.path>` |
//! | `x-probe-property-later: <dotted.path>` | reads it in `on_http_response_headers` | `x-probe-r-later-property-<dotted.path>` (response only) |
//! | `x-probe-set-property: <dotted.path>=<value>` | `proxy_set_property` | `x-probe-r-set-property-<dotted.path>` |
//! | `x-probe-respond: <status>` | `proxy_send_local_response`, then returns `Continue` | — |
//! | `x-probe-respond-{body,details,grpc}`, `x-probe-respond-header: <n>=<v>` | parts of that response | — |
//! | `x-probe-respond-in: response` | sends it from `on_http_response_headers` instead | — |
//! | `x-probe-pause: <request\|request-body\|response>` | returns `Pause`; the next tick resumes the stream | — |
//! | `x-probe-pause-self-resume: 1` | returns `Pause` after calling `proxy_continue_stream` itself | — |
//! | `x-probe-reset: <request\|response>` | `proxy_close_stream` | — |
//! | `x-probe-trap: <request\|request-body\|response\|response-body\|log\|done\|tick\|panic>` | executes `unreachable` there (`panic` panics in the request headers) | — |
//! | `x-probe-raw: <operation>` | a direct ABI call, see [`raw_operation`] | `x-probe-r-raw-<operation>` |
//! | `x-probe-echo-config: 1` | the plugin configuration | `x-probe-r-config` |
//! | `x-probe-echo-request-body: 1` | the request body seen in `on_http_request_body` | `x-probe-r-request-body` (response only) |
//! | `x-probe-echo-request-trailers: 1` | the request trailers | `x-probe-r-request-trailers` (response only) |
//! | `x-probe-replace-request-body: <text>`, `x-probe-replace-response-body: <text>` | `set_http_*_body` | — |
//! | `x-probe-add-request-trailer: <n>=<v>` | adds a trailer (creating the map at the end of the body) | — |
//! | `x-probe-http-call: <upstream>` | `dispatch_http_call` once the other instructions are read; the request pauses while it is in flight | `x-probe-r-http-call` (the status) |
//! | `x-probe-call-{method,path,authority}: <v>` | the call's pseudo-headers (`GET`, `/`, the upstream by default) | — |
//! | `x-probe-call-omit: <pseudo-header>` | leaves `:method`, `:path` or `:authority` out | — |
//! | `x-probe-call-header: <n>=<v>`, `x-probe-call-body: <text>`, `x-probe-call-timeout-ms: <n>` (1000) | more of the call | — |
//! | `x-probe-call-echo-header: <name>` | reads that response header in the callback | `x-probe-r-call-header-<name>` |
//! | `x-probe-call-then: <continue\|respond\|nothing>` | in `on_http_call_response`: `resume_http_request` (default), a local response with the call's status and body, or nothing | — |
//!
//! | `x-probe-grpc-call: <upstream>` | a unary gRPC call (SDK `dispatch_grpc_call`) once the other instructions are read; the request pauses until its answer | `x-probe-r-grpc-call` (the status) |
//! | `x-probe-grpc-stream: <upstream>` | a gRPC stream (SDK `open_grpc_stream`); sends, then `proxy_grpc_close`; the request pauses until the stream closes | `x-probe-r-grpc-stream`, `x-probe-r-grpc-send` (each send's status, comma-separated) |
//! | `x-probe-grpc-upstream-hex: <hex>` | the upstream as bytes (a serialized `GrpcService`) | — |
//! | `x-probe-grpc-{service,method}: <v>` | `probe.Echo`, and `Unary` or `Stream` by default | — |
//! | `x-probe-grpc-metadata: <n>=<v>`, `x-probe-grpc-message[-hex]: <v>`, `x-probe-grpc-timeout-ms: <n>` (1000) | initial metadata (repeatable), the call's message, its timeout | — |
//! | `x-probe-grpc-send: <text>` | a stream message (repeatable, in order) | — |
//! | `x-probe-grpc-end: <end-stream\|cancel\|close\|open\|cancel-on-tick>` | `end_stream` on the last send instead of a close; cancel or close at once (the request goes on); leave the stream open; or cancel from the root context on the next tick (the request stays paused) | `x-probe-r-grpc-end` (the status) |
//! | `x-probe-grpc-echo-metadata: <name>` | reads that initial and trailing metadata entry | `x-probe-r-grpc-initial-<name>`, `x-probe-r-grpc-trailing-<name>` |
//!
//! In `on_http_call_response` the probe adds to the request headers (and so to
//! the forwarded request, the response and a local response)
//! `x-probe-r-call-headers`, `-call-trailers` (the counts it was given),
//! `-call-status` (`:status`, or `none`), `-call-body` and `-call-get-status`
//! (`proxy_get_status`, `<code>:<message>`).
//!
//! When its gRPC call or stream ends the probe adds, the same way,
//! `x-probe-r-grpc-events` (the callbacks in order: `initial`, `message`,
//! `trailing`, `close` for a stream, `response` for a call),
//! `-grpc-status` (the status the callback was given), `-grpc-get-status`
//! (`<code>:<message>`), `-grpc-reply` (a call's reply), `-grpc-messages`
//! (a stream's messages, `|`-separated), `-grpc-initial-metadata` and
//! `-grpc-trailing-metadata` (the entry counts), and resumes the request.
//! Every gRPC callback logs an info line `probe grpc …`.
//!
//! The plugin configuration is described in [`config`]. The VM configuration
//! `reject` makes `on_vm_start` fail. Every tick increments the counter
//! `probe_ticks`, resumes the streams paused by `x-probe-pause` and cancels
//! the gRPC calls of `x-probe-grpc-end: cancel-on-tick`. Context
//! lifecycle callbacks log at debug level (`probe on_done <id>`, …), which
//! lets tests check their order.
//!
//! Without `x-probe-` headers the probe only reads the request headers: it is
//! the pass-through baseline for measuring the host.

mod config;
mod grpc;
mod http;
mod raw;
mod report;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

pub use http::raw_operation;

use crate::config::ProbeConfig;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(ProbeRoot::new(context_id))
    });
}}

/// A stream type of `proxy_continue_stream` / `proxy_close_stream`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Request = 0,
    Response = 1,
}

/// State shared by the root context and its HTTP contexts (one VM is one
/// thread, so `Rc<RefCell<…>>` is enough).
#[derive(Debug, Default)]
pub(crate) struct RootState {
    /// The plugin configuration, as received.
    pub configuration: Vec<u8>,
    /// Streams waiting for the next tick to resume them.
    pub paused: Vec<(u32, StreamKind)>,
    /// Set by `x-probe-trap: tick`.
    pub trap_on_next_tick: bool,
    /// gRPC calls to cancel on the next tick (`x-probe-grpc-end:
    /// cancel-on-tick`).
    pub grpc_cancels: Vec<u32>,
}

struct ProbeRoot {
    context_id: u32,
    state: Rc<RefCell<RootState>>,
    tick_counter: Option<u32>,
}

impl ProbeRoot {
    fn new(context_id: u32) -> ProbeRoot {
        ProbeRoot {
            context_id,
            state: Rc::new(RefCell::new(RootState::default())),
            tick_counter: None,
        }
    }
}

/// The host's log level, read when the VM starts: lines below it are not
/// even formatted, which keeps the probe cheap as a pass-through baseline.
static HOST_LOG_LEVEL: AtomicU32 = AtomicU32::new(0);

pub(crate) fn log(level: LogLevel, message: &str) {
    if (level as u32) < HOST_LOG_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    // The host answers `proxy_log` with Ok for every valid level; a failure
    // here would only hide a log line, never change what the probe does.
    let _ = raw::log(level as u32, message);
}

/// Logs the line `message` makes, if the host keeps lines of that level.
pub(crate) fn log_lazy(level: LogLevel, message: impl FnOnce() -> String) {
    if (level as u32) >= HOST_LOG_LEVEL.load(Ordering::Relaxed) {
        log(level, &message());
    }
}

pub(crate) fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

impl Context for ProbeRoot {
    fn on_done(&mut self) -> bool {
        log_lazy(LogLevel::Debug, || {
            format!("probe on_done {}", self.context_id)
        });
        true
    }
}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        let (status, level) = raw::log_level();
        if status == raw::OK {
            HOST_LOG_LEVEL.store(level, Ordering::Relaxed);
        }
        let vm_configuration = self.get_vm_configuration().unwrap_or_default();
        if vm_configuration == b"reject" {
            log(LogLevel::Error, "probe: vm configuration rejected");
            return false;
        }
        log(LogLevel::Info, "probe vm started");
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let parsed = ProbeConfig::parse(&configuration);
        if parsed.trap_on_configure {
            trap();
        }
        if let Some(message) = parsed.reject_with {
            log(LogLevel::Error, &message);
            return false;
        }
        if let Some(period) = parsed.tick_period_ms {
            self.set_tick_period(Duration::from_millis(period));
        }
        log_lazy(LogLevel::Info, || {
            format!("probe configured ({} bytes)", configuration.len())
        });
        self.state.borrow_mut().configuration = configuration;
        true
    }

    fn on_tick(&mut self) {
        log(LogLevel::Debug, "probe tick");
        let counter = match self.tick_counter {
            Some(id) => id,
            None => {
                let (_, id) = raw::define_metric(0, "probe_ticks");
                self.tick_counter = Some(id);
                id
            }
        };
        raw::increment_metric(counter, 1);
        let (trap_now, paused, cancels) = {
            let mut state = self.state.borrow_mut();
            let trap_now = std::mem::take(&mut state.trap_on_next_tick);
            (
                trap_now,
                std::mem::take(&mut state.paused),
                std::mem::take(&mut state.grpc_cancels),
            )
        };
        if trap_now {
            trap();
        }
        for token in cancels {
            let status = raw::grpc_cancel(token);
            log_lazy(LogLevel::Info, || {
                format!("probe grpc cancelled {token} on tick: {status}")
            });
        }
        for (context_id, kind) in paused {
            let status = raw::set_effective_context(context_id);
            if status == raw::OK {
                let status = raw::continue_stream(kind as u32);
                log_lazy(LogLevel::Debug, || {
                    format!("probe resumed {context_id} ({kind:?}): {status}")
                });
            } else {
                log_lazy(LogLevel::Warn, || {
                    format!("probe could not select context {context_id}: {status}")
                });
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        log_lazy(LogLevel::Debug, || {
            format!("probe context {context_id} created")
        });
        Some(Box::new(http::ProbeHttp::new(
            context_id,
            Rc::clone(&self.state),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
