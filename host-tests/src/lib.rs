//! A proxy-wasm host on wasmtime: runs a filter built for `wasm32-wasip1`
//! with a proxy-wasm SDK (ABI 0.2.1) the way Envoy runs it, so the real
//! `.wasm` can be tested offline and served by the `sluice` command.
//!
//! - [`FilterModule`] compiles a filter once and links it to the host.
//! - [`Proxy::start`] starts worker threads, one VM each, as Envoy runs one VM
//!   per worker; they share one [`SharedData`] store, one [`Metrics`]
//!   registry, one [`LogSink`] and one [`Clock`].
//! - [`Proxy::begin`] passes a request through the filter and answers a
//!   [`Stream`] and a [`RequestOutcome`]; [`Stream::response`] passes the
//!   upstream's response; [`Stream::finish`] (or dropping the stream) ends
//!   it. [`Proxy::exchange`] does all three.
//!
//! Where hosts differ, [`HostFlavor`] and [`SharedDataSemantics`] choose
//! between Envoy's behaviour and Kong ngx_wasm_module's.
//!
//! # Behaviour
//!
//! The host follows the spec and what Envoy (proxy-wasm-cpp-host and
//! Envoy's `Context`) observably does; where a choice had to be made:
//!
//! - A stream's context is created, then `proxy_on_request_headers`, body and
//!   trailers run (a body arrives in one chunk). A map or body is the
//!   filter's to read and change during its callback, or while the filter
//!   keeps the stream paused there; then only `proxy_on_log` reads the
//!   headers again (Envoy's access-log maps). The end of a stream runs
//!   `proxy_on_log`, `proxy_on_done` and `proxy_on_delete`, in Envoy's order.
//! - `proxy_continue_stream`, `proxy_close_stream` and
//!   `proxy_send_local_response` take effect when the VM call returns. A local
//!   response sent while handling the request passes through the filter's
//!   own response callbacks (Envoy encodes it through the filter chain); the
//!   answer of the callback that sent it is ignored.
//! - A trap fails the stream (503 under Envoy, 500 under ngx_wasm_module),
//!   fails every other stream of that VM, and a fresh VM (started and
//!   configured again) replaces it.
//! - WASI's realtime and monotonic clocks read the proxy's [`Clock`], so a
//!   fake clock also governs `SystemTime::now()` in the filter; `random_get`
//!   draws real randomness; stdout and stderr become info and error log lines.
//! - HTTP calls reach the clusters of [`ProxyOptions::cluster`] over
//!   HTTP/1.1, with Envoy's callback semantics (or ngx_wasm_module's), within
//!   the bounds of [`CallLimits`]; see `abi/http_calls.rs` and
//!   `worker/calls.rs`.
//! - gRPC calls and streams reach the same clusters over HTTP/2, with
//!   Envoy's callback semantics, within the same bounds; under
//!   ngx_wasm_module, which has none, they trap as they trap there. See
//!   `abi/grpc_calls.rs`, `grpc/` and `worker/grpc.rs`.
//! - What the host does not support (shared queues, foreign functions, TCP
//!   streams) answers `UNIMPLEMENTED` and logs a warning. An `env` import
//!   the host does not know at all is answered the same way (Envoy would
//!   refuse to load the module) and listed by
//!   [`FilterModule::unknown_imports`].
//! - `proxy_done` answers `NOT_FOUND`: the host never keeps a VM running
//!   after shutdown for a root context that is not done.
//!
//! ```no_run
//! use sluice_host::{Clock, FilterModule, HttpRequest, HttpResponse, Proxy, ProxyOptions, RequestOutcome};
//!
//! let module = FilterModule::from_file("filter.wasm")?;
//! let proxy = Proxy::start(
//!     ProxyOptions::new(module)
//!         .plugin_config(r#"{"limit": 10}"#)
//!         .workers(2)
//!         .clock(Clock::fake(1_700_000_000_000_000_000)),
//! )?;
//! let (mut stream, outcome) = proxy.begin(0, HttpRequest::get("/api").header("x-user", "ada"))?;
//! if let RequestOutcome::Forward(request) = outcome {
//!     assert_eq!(request.header(":path"), Some("/api"));
//!     let response = stream.response(HttpResponse::new(200).body("ok"))?;
//!     println!("{response:?}");
//! }
//! let report = stream.finish()?;
//! println!("fuel: {:?}", report.fuel_consumed);
//! # Ok::<(), sluice_host::HostError>(())
//! ```

mod abi;
mod clock;
mod clusters;
mod error;
pub mod fake_service;
mod grpc;
mod headers;
mod host_calls;
mod http;
mod logs;
mod metrics;
mod module;
mod options;
mod outbound;
mod proxy;
mod shared_data;
pub mod shm_zone;
mod state;
mod types;
mod vm;
mod worker;

pub use clock::{Clock, FakeClock};
pub use clusters::{CallLimits, ClusterError, Clusters};
pub use error::{FilterLogs, HostError};
pub use host_calls::{HostCallCounting, HostCalls};
pub use http::{
    ClientResponse, ForwardedRequest, ForwardedResponse, HttpRequest, HttpResponse, LocalResponse,
    RequestOutcome, ResponseOutcome, SourceAddress, StreamFailure, header_value,
};
pub use logs::{LogForwarder, LogOrigin, LogRecord, LogSink, VmLabel};
pub use metrics::{HistogramSummary, MetricKind, MetricValue, Metrics};
pub use module::{FilterModule, FuelMetering};
pub use options::{HostFlavor, NodeInfo, ProxyOptions};
pub use proxy::{Exchange, Proxy, Stream};
pub use shared_data::{
    Eviction, FaultTimes, SharedData, SharedDataNamespace, SharedDataSemantics, SharedValue,
    StrictLimits,
};
pub use types::{LogLevel, Status};
pub use worker::{StreamReport, TickReport};

/// The filter modules built for this crate's tests by its build script.
pub mod test_filters {
    /// The sluice filter (`sluice-filter`), release build for `wasm32-wasip1`.
    pub const SLUICE_FILTER_WASM: &str = env!("SLUICE_FILTER_WASM");
    /// The probe filter (`sluice-probe-filter`), release build for
    /// `wasm32-wasip1`.
    pub const PROBE_FILTER_WASM: &str = env!("PROBE_FILTER_WASM");
}
