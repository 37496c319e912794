//! gRPC calls and streams: `proxy_grpc_call`, `proxy_grpc_stream`,
//! `proxy_grpc_send`, `proxy_grpc_close`, `proxy_grpc_cancel`.
//!
//! Under Envoy (proxy-wasm-cpp-host `src/exports.cc` and Envoy's `Context`,
//! `source/extensions/common/wasm/context.cc`):
//! - the call belongs to the root context, whichever context makes it; its
//!   events come back as `proxy_on_grpc_*(root_id, token, …)`;
//! - the `upstream` is a serialized `GrpcService` or, if the bytes do not
//!   parse as one, a cluster name: an unknown name answers `PARSE_FAILURE`;
//!   a `GrpcService` naming an unknown cluster answers `INTERNAL_FAILURE`
//!   and is followed by a `proxy_on_grpc_close` for the token the filter
//!   never got (`UNAVAILABLE`, `Cluster not available`); a `google_grpc`
//!   target, or none, answers `BAD_ARGUMENT` (this host has no Google gRPC
//!   client);
//! - the call sends `:authority` (the cluster name, or the service's
//!   `authority`), `te: trailers`, `grpc-timeout` (unary calls; timeout 0 is
//!   sent as `0m`, and this host then bounds the call with
//!   `CallLimits::unset_timeout` where Envoy sets no timer),
//!   `content-type: application/grpc`, the service's initial metadata and the
//!   filter's; streams have no timeout;
//! - the token is written after the call has started (a bad pointer answers
//!   `INVALID_MEMORY_ACCESS`, with the call in flight);
//! - `proxy_grpc_send` on a call token, or `close`/`cancel` on a token of
//!   neither kind, answers `BAD_ARGUMENT`; an unknown token `NOT_FOUND`;
//! - `proxy_grpc_cancel` ends a call or stream with no further callback;
//!   `proxy_grpc_close` cancels a call and half-closes a stream, whose
//!   answer still comes.
//!
//! This host bounds what Envoy does not: the calls, streams and HTTP calls
//! in flight per VM (`CallLimits::max_in_flight_per_vm`; one more answers
//! `INTERNAL_FAILURE`), the size of a received message
//! (`CallLimits::max_response_body`, or the service's smaller
//! `max_receive_message_length`: `RESOURCE_EXHAUSTED`, as Envoy's limit) and
//! the bytes of a stream waiting to be sent (the same bound; beyond it the
//! stream is reset and closed with `RESOURCE_EXHAUSTED`).
//!
//! Not done, unlike Envoy: `google_grpc` targets (Envoy's Google gRPC
//! client), TLS to the cluster, retries and Envoy's `x-envoy-*` request
//! headers; `proxy_get_status` answers 0 outside a delivery, where Envoy
//! keeps the last code until the next. A timeout is `DEADLINE_EXCEEDED`, as
//! Envoy's router answers a gRPC timeout since envoyproxy/envoy#44479
//! (`UNAVAILABLE` before).
//!
//! ngx_wasm_module has no gRPC calls: every one of these traps as it traps
//! there (`host trap (function not yet implemented)`).

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::{AbiError, AbiResult, answer, memory};
use crate::grpc::client::{GrpcBody, GrpcEvent, GrpcRequest};
use crate::grpc::upstream::{self, EnvoyGrpc, Upstream};
use crate::grpc::{GrpcDelivery, Sent};
use crate::headers::{Pairs, deserialize_pairs};
use crate::options::HostFlavor;
use crate::outbound::CallEvent;
use crate::state::HostState;
use crate::types::{LogLevel, Status};

/// ngx_wasm_module's answer to every gRPC call.
fn ngx_trap(caller: &Caller<'_, HostState>, function: &str) -> AbiResult<()> {
    if caller.data().env.flavor == HostFlavor::Envoy {
        return Ok(());
    }
    let message = format!("host trap (function not yet implemented): {function}");
    caller.data().host_log(LogLevel::Error, message.clone());
    Err(AbiError::Trap(wasmtime::format_err!("{message}")))
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut caller: Caller<'_, HostState>,
         upstream: u32,
         upstream_size: u32,
         service: u32,
         service_size: u32,
         method: u32,
         method_size: u32,
         metadata: u32,
         metadata_size: u32,
         message: u32,
         message_size: u32,
         timeout_ms: u32,
         token_out: u32| {
            answer(open(
                &mut caller,
                Asked {
                    upstream: (upstream, upstream_size),
                    service: (service, service_size),
                    method: (method, method_size),
                    metadata: (metadata, metadata_size),
                    unary: Some(((message, message_size), timeout_ms)),
                },
                token_out,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut caller: Caller<'_, HostState>,
         upstream: u32,
         upstream_size: u32,
         service: u32,
         service_size: u32,
         method: u32,
         method_size: u32,
         metadata: u32,
         metadata_size: u32,
         token_out: u32| {
            answer(open(
                &mut caller,
                Asked {
                    upstream: (upstream, upstream_size),
                    service: (service, service_size),
                    method: (method, method_size),
                    metadata: (metadata, metadata_size),
                    unary: None,
                },
                token_out,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut caller: Caller<'_, HostState>,
         token: u32,
         message: u32,
         message_size: u32,
         end_stream: u32| {
            answer(send(
                &mut caller,
                token,
                (message, message_size),
                end_stream,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |mut caller: Caller<'_, HostState>, token: u32| {
            answer(
                ngx_trap(&caller, "proxy_grpc_cancel")
                    .and_then(|()| Ok(caller.data_mut().calls.grpc.cancel(token)?)),
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_close",
        |mut caller: Caller<'_, HostState>, token: u32| {
            answer(
                ngx_trap(&caller, "proxy_grpc_close")
                    .and_then(|()| Ok(caller.data_mut().calls.grpc.close(token)?)),
            )
        },
    )?;
    Ok(())
}

/// The arguments of `proxy_grpc_call` (with `unary`: the message and the
/// timeout) or `proxy_grpc_stream`, as guest memory ranges.
struct Asked {
    upstream: (u32, u32),
    service: (u32, u32),
    method: (u32, u32),
    metadata: (u32, u32),
    unary: Option<((u32, u32), u32)>,
}

/// Where a call goes.
enum Target {
    Cluster {
        address: std::net::SocketAddr,
        service: EnvoyGrpc,
    },
    /// A `GrpcService` naming a cluster the host does not have.
    MissingCluster(String),
}

fn resolve(state: &HostState, bytes: &[u8], function: &str) -> AbiResult<Target> {
    let clusters = &state.env.calls.clusters;
    match upstream::parse(bytes) {
        Upstream::ClusterName(name) => {
            let name = String::from_utf8_lossy(&name).into_owned();
            match clusters.get(&name) {
                Some(address) => Ok(Target::Cluster {
                    address,
                    service: EnvoyGrpc {
                        cluster_name: name,
                        ..EnvoyGrpc::default()
                    },
                }),
                None => {
                    state.host_log(
                        LogLevel::Debug,
                        format!("{function} to unknown cluster `{name}`: PARSE_FAILURE"),
                    );
                    Err(Status::ParseFailure.into())
                }
            }
        }
        Upstream::EnvoyGrpc(service) => match clusters.get(&service.cluster_name) {
            Some(address) => Ok(Target::Cluster { address, service }),
            None => Ok(Target::MissingCluster(service.cluster_name)),
        },
        Upstream::GoogleGrpc | Upstream::NoTarget => {
            state.host_log(
                LogLevel::Warn,
                format!(
                    "{function} refused: its GrpcService has no envoy_grpc target (google_grpc \
                     needs Envoy's Google gRPC client, which this host does not have): \
                     BAD_ARGUMENT"
                ),
            );
            Err(Status::BadArgument.into())
        }
    }
}

/// Lower-cased header pairs (Envoy's `LowerCaseString`).
fn lowered(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Pairs {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect()
}

fn open(caller: &mut Caller<'_, HostState>, asked: Asked, token_out: u32) -> AbiResult<()> {
    let function = match asked.unary {
        Some(_) => "proxy_grpc_call",
        None => "proxy_grpc_stream",
    };
    ngx_trap(caller, function)?;
    let upstream = memory::read(caller, asked.upstream.0, asked.upstream.1)?;
    let service_name = memory::read(caller, asked.service.0, asked.service.1)?;
    let method = memory::read(caller, asked.method.0, asked.method.1)?;
    let metadata = memory::read(caller, asked.metadata.0, asked.metadata.1)?;
    let unary = match asked.unary {
        Some(((message, size), timeout_ms)) => {
            Some((memory::read(caller, message, size)?, timeout_ms))
        }
        None => None,
    };
    // Envoy reads a map that does not parse as empty.
    let metadata = deserialize_pairs(&metadata).unwrap_or_default();
    let state = caller.data_mut();
    let target = resolve(state, &upstream, function)?;
    let limits = state.env.calls.limits;
    if state.calls.in_flight_total() >= limits.max_in_flight_per_vm {
        state.host_log(
            LogLevel::Warn,
            format!(
                "{function} refused: {} calls already in flight on this VM (answered \
                 INTERNAL_FAILURE)",
                limits.max_in_flight_per_vm
            ),
        );
        return Err(Status::InternalFailure.into());
    }
    let Some(sink) = state.calls.sink.clone() else {
        state.host_log(
            LogLevel::Error,
            format!("{function} refused: this VM cannot receive answers"),
        );
        return Err(Status::InternalFailure.into());
    };
    let token = match unary {
        Some(_) => state.calls.grpc.next_call_token(),
        None => state.calls.grpc.next_stream_token(),
    };
    let (address, service) = match target {
        Target::Cluster { address, service } => (address, service),
        Target::MissingCluster(cluster) => {
            state.host_log(
                LogLevel::Debug,
                format!(
                    "{function} to unknown cluster `{cluster}`: INTERNAL_FAILURE, and token \
                     {token} is closed with UNAVAILABLE"
                ),
            );
            // Envoy's gRPC client closes the call before it is returned,
            // and the close reaches the filter after the VM call.
            sink(CallEvent::Grpc(GrpcDelivery {
                vm_instance: state.vm.instance,
                token,
                event: GrpcEvent::Close {
                    status: crate::grpc::client::code::UNAVAILABLE,
                    message: "Cluster not available".to_string(),
                },
                orphan: true,
            }));
            return Err(Status::InternalFailure.into());
        }
    };
    let max_message = match service.max_receive_message_length {
        0 => limits.max_response_body,
        limit => limits.max_response_body.min(limit as usize),
    };
    let authority = if service.authority.is_empty() {
        service.cluster_name.clone()
    } else {
        service.authority.clone()
    };
    let mut headers = lowered(
        service
            .initial_metadata
            .iter()
            .map(|(key, value)| (key.clone().into_bytes(), value.clone().into_bytes())),
    );
    headers.extend(lowered(metadata));
    let request = GrpcRequest {
        address,
        authority,
        path: format!(
            "/{}/{}",
            String::from_utf8_lossy(&service_name),
            String::from_utf8_lossy(&method)
        ),
        metadata: headers,
        timeout: unary.as_ref().map(|(_, timeout_ms)| {
            let sent = Duration::from_millis(u64::from(*timeout_ms));
            let local = match timeout_ms {
                0 => limits.unset_timeout,
                _ => sent,
            };
            (sent, local)
        }),
        max_message,
        unary: unary.is_some(),
    };
    let (body, sender) = match &unary {
        Some((message, _)) => (GrpcBody::unary(message), None),
        None => {
            let (sender, body) = GrpcBody::channel();
            (body, Some(sender))
        }
    };
    let origin = state.call.effective_context;
    match state
        .env
        .calls
        .start_grpc(request, body, state.vm.instance, token, sink)
    {
        Ok(abort) => state.calls.grpc.track(token, origin, abort, sender),
        Err(message) => {
            state.host_log(LogLevel::Error, format!("{function} failed: {message}"));
            return Err(Status::InternalFailure.into());
        }
    }
    state.host_log(
        LogLevel::Debug,
        format!(
            "{function} to cluster `{}` started: token {token}",
            service.cluster_name
        ),
    );
    memory::write_u32(caller, token_out, token)
}

fn send(
    caller: &mut Caller<'_, HostState>,
    token: u32,
    message: (u32, u32),
    end_stream: u32,
) -> AbiResult<()> {
    ngx_trap(caller, "proxy_grpc_send")?;
    let message = memory::read(caller, message.0, message.1)?;
    let state = caller.data_mut();
    let limit = state.env.calls.limits.max_response_body;
    match state
        .calls
        .grpc
        .send(token, &message, end_stream != 0, limit)?
    {
        Sent::Ok => Ok(()),
        Sent::Overflow => {
            let text = format!("more than {limit} bytes wait to be sent on the stream");
            state.host_log(
                LogLevel::Warn,
                format!("gRPC stream {token} reset: {text} (closed with RESOURCE_EXHAUSTED)"),
            );
            if let Some(sink) = state.calls.sink.clone() {
                for event in [
                    GrpcEvent::TrailingMetadata(Vec::new()),
                    GrpcEvent::Close {
                        status: crate::grpc::client::code::RESOURCE_EXHAUSTED,
                        message: text.clone(),
                    },
                ] {
                    sink(CallEvent::Grpc(GrpcDelivery {
                        vm_instance: state.vm.instance,
                        token,
                        event,
                        orphan: false,
                    }));
                }
            }
            Ok(())
        }
    }
}
