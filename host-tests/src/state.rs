//! The data of one VM's wasmtime store: what host functions read and write.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Memory, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::clock::Clock;
use crate::headers::{HeaderMap, Pairs};
use crate::host_calls::Counter;
use crate::logs::{LogOrigin, LogRecord, LogSink, VmLabel};
use crate::metrics::{MetricKind, Metrics};
use crate::options::{HostFlavor, NodeInfo};
use crate::outbound::{CallEngine, VmCalls};
use crate::shared_data::SharedData;
use crate::types::LogLevel;

/// What every VM of a proxy shares: its configuration and its services.
#[derive(Debug)]
pub(crate) struct ProxyEnv {
    pub flavor: HostFlavor,
    pub vm_id: String,
    pub root_id: String,
    pub plugin_name: String,
    pub plugin_config: Vec<u8>,
    pub vm_config: Vec<u8>,
    pub node: NodeInfo,
    pub log_level: LogLevel,
    pub shared_data: SharedData,
    pub metrics: Metrics,
    pub logs: LogSink,
    pub clock: Clock,
    /// Clusters, limits and the client of HTTP calls.
    pub calls: CallEngine,
}

/// The guest callback running, which decides what host functions may see
/// (the plugin configuration only in `proxy_on_configure`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Callback {
    Idle,
    Initialize,
    ContextCreate,
    VmStart,
    Configure,
    Tick,
    RequestHeaders,
    RequestBody {
        end_of_stream: bool,
    },
    RequestTrailers,
    ResponseHeaders,
    ResponseBody {
        end_of_stream: bool,
    },
    ResponseTrailers,
    Done,
    Log,
    Delete,
    /// `proxy_on_http_call_response`.
    HttpCallResponse,
    /// `proxy_on_grpc_receive_initial_metadata`, `proxy_on_grpc_receive`,
    /// `proxy_on_grpc_receive_trailing_metadata`, `proxy_on_grpc_close`.
    GrpcEvent,
}

/// The two directions of an HTTP stream (`proxy_stream_type_t` 0 and 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Request,
    Response,
}

/// What a host function asked for that Envoy carries out only after the VM
/// call returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeferredAction {
    /// `proxy_continue_stream`.
    Continue {
        context_id: u32,
        direction: Direction,
    },
    /// `proxy_close_stream`.
    Reset { context_id: u32 },
    /// `proxy_send_local_response`; the response waits in the stream's data.
    LocalResponse { context_id: u32 },
}

/// A local response sent by the filter, not yet applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingLocalResponse {
    pub status: u16,
    pub details: String,
    pub body: Vec<u8>,
    pub headers: Pairs,
    pub grpc_status: Option<i32>,
}

/// Facts about a request that properties report.
#[derive(Clone, Debug)]
pub(crate) struct RequestFacts {
    pub source: SocketAddr,
    pub source_address: crate::http::SourceAddress,
    pub destination: Option<SocketAddr>,
    pub protocol: String,
    pub start_ns: u64,
    pub body_size: usize,
}

/// The parts of a stream's messages the filter may touch now. As in Envoy, a
/// part is held only during its own callback, or while the filter keeps the
/// stream paused there: it is let go when the callback continues, or when
/// the filter calls `proxy_continue_stream`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Access {
    pub request_headers: bool,
    pub request_body: bool,
    pub request_trailers: bool,
    pub response_headers: bool,
    pub response_body: bool,
    pub response_trailers: bool,
}

impl Access {
    /// Lets go of every part of one direction.
    pub(crate) fn release(&mut self, direction: Direction) {
        match direction {
            Direction::Request => {
                self.request_headers = false;
                self.request_body = false;
                self.request_trailers = false;
            }
            Direction::Response => {
                self.response_headers = false;
                self.response_body = false;
                self.response_trailers = false;
            }
        }
    }
}

/// One HTTP stream as the host functions see it: the messages as they stand
/// (what is forwarded), and which parts the filter may touch now.
#[derive(Debug)]
pub(crate) struct StreamData {
    pub facts: RequestFacts,
    pub request_headers: Option<HeaderMap>,
    pub request_body: Option<Vec<u8>>,
    pub request_trailers: Option<HeaderMap>,
    pub response_headers: Option<HeaderMap>,
    pub response_body: Option<Vec<u8>>,
    pub response_trailers: Option<HeaderMap>,
    pub access: Access,
    pub local_response: Option<PendingLocalResponse>,
    /// Set by the filter with `proxy_set_property`, by raw path.
    pub properties: HashMap<Vec<u8>, Vec<u8>>,
    pub response_code_details: Option<String>,
    /// During `proxy_on_log`: the request headers and the response headers
    /// and trailers can be read (as Envoy's access-log maps); a missing map
    /// reads as missing rather than as a bad argument.
    pub log_phase: bool,
}

impl StreamData {
    pub(crate) fn new(facts: RequestFacts) -> StreamData {
        StreamData {
            facts,
            request_headers: None,
            request_body: None,
            request_trailers: None,
            response_headers: None,
            response_body: None,
            response_trailers: None,
            access: Access::default(),
            local_response: None,
            properties: HashMap::new(),
            response_code_details: None,
            log_phase: false,
        }
    }
}

/// The call in progress.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CallState {
    pub callback: Callback,
    /// The context host functions act on: the callback's own, unless the
    /// filter chose another with `proxy_set_effective_context`.
    pub effective_context: u32,
}

/// The store data of one VM.
pub(crate) struct HostState {
    pub wasi: WasiP1Ctx,
    pub env: Arc<ProxyEnv>,
    pub vm: VmLabel,
    pub memory: Option<Memory>,
    /// `malloc`, or `proxy_on_memory_allocate`: where host-to-guest copies go.
    pub allocator: Option<TypedFunc<u32, u32>>,
    pub root_context_id: u32,
    pub streams: HashMap<u32, StreamData>,
    pub call: CallState,
    /// Metric ids of this VM.
    pub metric_ids: HashMap<u32, (MetricKind, String)>,
    pub last_metric_id: u32,
    pub tick_period: Option<Duration>,
    pub tick_period_changed: bool,
    /// ngx_wasm_module flavour: the root context has set its tick period.
    pub tick_period_set_once: bool,
    /// When the filter last set the period (the timer is armed from then).
    pub tick_period_set_at_ns: u64,
    pub deferred: Vec<DeferredAction>,
    /// With host-call counting, the counts of the call in progress.
    pub host_calls: Option<Counter>,
    /// HTTP and gRPC calls in flight, and what is being delivered.
    pub calls: VmCalls,
}

impl HostState {
    pub(crate) fn new(env: Arc<ProxyEnv>, vm: VmLabel, wasi: WasiP1Ctx) -> HostState {
        HostState {
            wasi,
            env,
            vm,
            memory: None,
            allocator: None,
            root_context_id: 0,
            streams: HashMap::new(),
            call: CallState {
                callback: Callback::Idle,
                effective_context: 0,
            },
            metric_ids: HashMap::new(),
            last_metric_id: 0,
            tick_period: None,
            tick_period_changed: false,
            tick_period_set_once: false,
            tick_period_set_at_ns: 0,
            deferred: Vec::new(),
            host_calls: None,
            calls: VmCalls::default(),
        }
    }

    /// The stream of the effective context, if it is a stream.
    pub(crate) fn effective_stream(&mut self) -> Option<&mut StreamData> {
        let context_id = self.call.effective_context;
        self.streams.get_mut(&context_id)
    }

    /// Records a line written by the filter, if its level is enabled.
    pub(crate) fn filter_log(&self, level: LogLevel, message: String) {
        if level < self.env.log_level {
            return;
        }
        self.env.logs.push(LogRecord {
            level,
            origin: LogOrigin::Filter {
                vm: self.vm,
                context_id: self.call.effective_context,
            },
            message,
        });
    }

    /// Records a line of the host about this VM, if its level is enabled.
    pub(crate) fn host_log(&self, level: LogLevel, message: String) {
        host_log(&self.env, self.vm, level, message);
    }
}

/// Records a line of the host about `vm`, if its level is enabled.
pub(crate) fn host_log(env: &ProxyEnv, vm: VmLabel, level: LogLevel, message: String) {
    if level < env.log_level {
        return;
    }
    env.logs.push(LogRecord {
        level,
        origin: LogOrigin::Host { vm },
        message,
    });
}
