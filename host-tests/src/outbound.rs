//! Outbound calls: HTTP calls (`proxy_http_call`), carried out over
//! HTTP/1.1, and gRPC calls and streams (`proxy_grpc_call`,
//! `proxy_grpc_stream`, see [`crate::grpc`]), over HTTP/2, on a small tokio
//! runtime the proxy starts on first use. What happens is answered to the
//! worker owning the calling VM as a [`CallEvent`], which the worker
//! delivers as `proxy_on_http_call_response` or the `proxy_on_grpc_*`
//! callbacks.
//!
//! A VM keeps its calls in flight in [`VmCalls`]; dropping it (the VM was
//! replaced, or the proxy stopped) aborts them, as Envoy cancels the calls
//! of a context it destroys.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::task::AbortHandle;

use crate::clusters::{CallLimits, Clusters};
use crate::grpc::client::{
    self as grpc_client, EventSink, GrpcBody, GrpcConnections, GrpcEvent, GrpcRequest,
};
use crate::grpc::{GrpcDelivery, VmGrpc};
use crate::headers::{HeaderMap, Pairs};

/// A request ready to send.
pub(crate) struct CallRequest {
    pub request: hyper::Request<Full<Bytes>>,
    pub timeout: Duration,
}

/// A response as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CallReply {
    pub status: u16,
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
}

/// Why a call got no whole response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CallError {
    /// No response headers within the timeout.
    Timeout,
    /// The connection could not be made (with the OS error number, if any).
    Connect { errno: Option<i32>, message: String },
    /// The connection ended before the response headers.
    ResetBeforeHeaders(String),
    /// The response broke off (or timed out) after its headers.
    ResetAfterHeaders(String),
    /// The response body was longer than the limit.
    BodyTooLarge { limit: usize },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout => f.write_str("timed out"),
            CallError::Connect { message, .. } => write!(f, "connect failed: {message}"),
            CallError::ResetBeforeHeaders(message) => {
                write!(f, "reset before the response headers: {message}")
            }
            CallError::ResetAfterHeaders(message) => {
                write!(f, "reset after the response headers: {message}")
            }
            CallError::BodyTooLarge { limit } => {
                write!(f, "response body larger than {limit} bytes")
            }
        }
    }
}

/// A call's end, for the worker of the VM that made it.
#[derive(Debug)]
pub(crate) struct CallCompletion {
    /// The VM that made the call (a replaced VM's calls are dropped).
    pub vm_instance: u64,
    pub token: u32,
    pub result: Result<CallReply, CallError>,
}

/// What a worker hears about its VM's calls.
#[derive(Debug)]
pub(crate) enum CallEvent {
    /// An HTTP call ended.
    Http(CallCompletion),
    /// Something happened on a gRPC call or stream.
    Grpc(GrpcDelivery),
}

/// Where a VM's call events go (its worker's command queue).
pub(crate) type CompletionSink = Arc<dyn Fn(CallEvent) + Send + Sync>;

/// The body of the local reply of Envoy's router for a connection that
/// could not be made, `reason` being the OS error number (or text).
pub(crate) fn envoy_connect_failure(reason: &str) -> String {
    format!(
        "upstream connect error or disconnect/reset before headers. reset reason: remote \
         connection failure, transport failure reason: delayed connect error: {reason}"
    )
}

/// A call in flight.
#[derive(Debug)]
pub(crate) struct InFlightCall {
    /// The context that made the call (a stream's, or the root's).
    pub origin_context: u32,
    abort: AbortHandle,
}

/// What the filter reads while `proxy_on_http_call_response` runs.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeliveredCall {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub trailers: HeaderMap,
    /// What `proxy_get_status` answers meanwhile.
    pub status: (u32, String),
}

/// One VM's calls.
#[derive(Default)]
pub(crate) struct VmCalls {
    /// HTTP calls in flight.
    pub in_flight: HashMap<u32, InFlightCall>,
    last_token: u32,
    /// The response being delivered, during `proxy_on_http_call_response`.
    pub delivering: Option<DeliveredCall>,
    /// gRPC calls and streams.
    pub grpc: VmGrpc,
    pub sink: Option<CompletionSink>,
}

impl VmCalls {
    /// A token not in use (never 0, which the SDKs read as "no call").
    pub(crate) fn next_token(&mut self) -> u32 {
        loop {
            self.last_token = self.last_token.wrapping_add(1);
            if self.last_token != 0 && !self.in_flight.contains_key(&self.last_token) {
                return self.last_token;
            }
        }
    }

    pub(crate) fn track(&mut self, token: u32, origin_context: u32, abort: AbortHandle) {
        self.in_flight.insert(
            token,
            InFlightCall {
                origin_context,
                abort,
            },
        );
    }

    /// Cancels the calls `context_id` made; answers how many.
    pub(crate) fn cancel_from(&mut self, context_id: u32) -> usize {
        let before = self.in_flight.len();
        self.in_flight.retain(|_, call| {
            let keep = call.origin_context != context_id;
            if !keep {
                call.abort.abort();
            }
            keep
        });
        before - self.in_flight.len()
    }

    /// HTTP and gRPC calls and streams in flight (what the per-VM limit
    /// bounds).
    pub(crate) fn in_flight_total(&self) -> usize {
        self.in_flight.len() + self.grpc.in_flight()
    }

    /// What `proxy_get_status` answers: the status of the failed HTTP call
    /// or the closed gRPC call being delivered; otherwise 0 and no message.
    pub(crate) fn status(&self) -> (u32, String) {
        if let Some(call) = &self.delivering {
            return call.status.clone();
        }
        self.grpc
            .delivering
            .as_ref()
            .map(|delivered| delivered.status.clone())
            .unwrap_or_default()
    }

    /// Whether `context_id` has calls in flight.
    pub(crate) fn pending_from(&self, context_id: u32) -> bool {
        self.in_flight
            .values()
            .any(|call| call.origin_context == context_id)
    }
}

impl Drop for VmCalls {
    fn drop(&mut self) {
        for call in self.in_flight.values() {
            call.abort.abort();
        }
    }
}

impl fmt::Debug for VmCalls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmCalls")
            .field("in_flight", &self.in_flight.len())
            .field("delivering", &self.delivering.is_some())
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

/// A runtime that is shut down without waiting (a proxy may be dropped from
/// inside another runtime, where blocking is not allowed).
struct CallRuntime(Option<tokio::runtime::Runtime>);

impl Drop for CallRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

struct Started {
    runtime: CallRuntime,
    client: Client<HttpConnector, Full<Bytes>>,
    grpc: Arc<GrpcConnections>,
}

/// The proxy's means of making calls: its clusters, its limits, and (once
/// the first call is made) a runtime and an HTTP/1.1 client.
pub(crate) struct CallEngine {
    pub clusters: Clusters,
    pub limits: CallLimits,
    started: OnceLock<Result<Started, String>>,
}

impl fmt::Debug for CallEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallEngine")
            .field("clusters", &self.clusters)
            .field("limits", &self.limits)
            .field("started", &self.started.get().is_some())
            .finish()
    }
}

fn start_runtime() -> Result<Started, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sluice-calls")
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime for calls: {error}"))?;
    let client = {
        let _entered = runtime.enter();
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
    };
    Ok(Started {
        runtime: CallRuntime(Some(runtime)),
        client,
        grpc: Arc::new(GrpcConnections::default()),
    })
}

/// The OS error behind a client error, if any.
fn errno_of(error: &(dyn StdError + 'static)) -> Option<i32> {
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        source = current.source();
    }
    None
}

fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(current) = source {
        text.push_str(": ");
        text.push_str(&current.to_string());
        source = current.source();
    }
    text
}

fn pairs_of(headers: &hyper::HeaderMap) -> Pairs {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec()))
        .collect()
}

async fn perform(
    client: Client<HttpConnector, Full<Bytes>>,
    call: CallRequest,
    max_body: usize,
) -> Result<CallReply, CallError> {
    let deadline = tokio::time::Instant::now() + call.timeout;
    let response = match tokio::time::timeout_at(deadline, client.request(call.request)).await {
        Err(_) => return Err(CallError::Timeout),
        Ok(Err(error)) if error.is_connect() => {
            return Err(CallError::Connect {
                errno: errno_of(&error),
                message: describe(&error),
            });
        }
        Ok(Err(error)) => return Err(CallError::ResetBeforeHeaders(describe(&error))),
        Ok(Ok(response)) => response,
    };
    let (parts, body) = response.into_parts();
    let collected =
        match tokio::time::timeout_at(deadline, Limited::new(body, max_body).collect()).await {
            Err(_) => {
                return Err(CallError::ResetAfterHeaders(
                    "timed out reading the body".to_string(),
                ));
            }
            Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(CallError::BodyTooLarge { limit: max_body });
            }
            Ok(Err(error)) => return Err(CallError::ResetAfterHeaders(describe(&*error))),
            Ok(Ok(collected)) => collected,
        };
    let trailers = collected.trailers().map(pairs_of).unwrap_or_default();
    Ok(CallReply {
        status: parts.status.as_u16(),
        headers: pairs_of(&parts.headers),
        body: collected.to_bytes().to_vec(),
        trailers,
    })
}

impl CallEngine {
    pub(crate) fn new(clusters: Clusters, limits: CallLimits) -> CallEngine {
        CallEngine {
            clusters,
            limits,
            started: OnceLock::new(),
        }
    }

    fn started(&self) -> Result<(&Started, &tokio::runtime::Runtime), String> {
        let started = self
            .started
            .get_or_init(start_runtime)
            .as_ref()
            .map_err(Clone::clone)?;
        match started.runtime.0.as_ref() {
            Some(runtime) => Ok((started, runtime)),
            None => Err("the runtime for calls has stopped".to_string()),
        }
    }

    /// Starts `call`; its completion goes to `sink`. Answers the handle that
    /// aborts it.
    pub(crate) fn start(
        &self,
        call: CallRequest,
        vm_instance: u64,
        token: u32,
        sink: CompletionSink,
    ) -> Result<AbortHandle, String> {
        let (started, runtime) = self.started()?;
        let client = started.client.clone();
        let max_body = self.limits.max_response_body;
        let task = runtime.spawn(async move {
            let result = perform(client, call, max_body).await;
            sink(CallEvent::Http(CallCompletion {
                vm_instance,
                token,
                result,
            }));
        });
        Ok(task.abort_handle())
    }

    /// Starts a gRPC call or stream sending `body`; its events go to
    /// `sink`. Answers the handle that aborts it.
    pub(crate) fn start_grpc(
        &self,
        request: GrpcRequest,
        body: GrpcBody,
        vm_instance: u64,
        token: u32,
        sink: CompletionSink,
    ) -> Result<AbortHandle, String> {
        let (started, runtime) = self.started()?;
        let connections = Arc::clone(&started.grpc);
        let events = Deliver {
            vm_instance,
            token,
            sink,
        };
        let task = runtime.spawn(grpc_client::perform(connections, request, body, events));
        Ok(task.abort_handle())
    }
}

/// Sends a call's gRPC events to its VM's worker.
struct Deliver {
    vm_instance: u64,
    token: u32,
    sink: CompletionSink,
}

impl EventSink for Deliver {
    fn emit(&mut self, event: GrpcEvent) {
        (self.sink)(CallEvent::Grpc(GrpcDelivery {
            vm_instance: self.vm_instance,
            token: self.token,
            event,
            orphan: false,
        }));
    }
}
