//! Common stream operations and local responses: `proxy_continue_stream`,
//! `proxy_close_stream`, `proxy_send_local_response`, `proxy_get_status`
//! (the status of the call being delivered).
//!
//! As in Envoy, continuing, resetting and answering locally take effect when
//! the VM call returns (the worker reads the deferred actions); the effective
//! context decides which stream they apply to.

use wasmtime::{Caller, Linker};

use super::{AbiResult, answer, memory};
use crate::headers::deserialize_pairs;
use crate::options::HostFlavor;
use crate::state::{DeferredAction, Direction, HostState, PendingLocalResponse};
use crate::types::{LogLevel, Status};

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut caller: Caller<'_, HostState>, stream_type: u32| {
            answer(continue_stream(&mut caller, stream_type))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_close_stream",
        |mut caller: Caller<'_, HostState>, stream_type: u32| {
            answer(close_stream(&mut caller, stream_type))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut caller: Caller<'_, HostState>,
         status_code: u32,
         details: u32,
         details_size: u32,
         body: u32,
         body_size: u32,
         headers: u32,
         headers_size: u32,
         grpc_status: i32| {
            answer(send_local_response(
                &mut caller,
                status_code,
                (details, details_size),
                (body, body_size),
                (headers, headers_size),
                grpc_status,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut caller: Caller<'_, HostState>,
         code_out: u32,
         message_out: u32,
         message_size_out: u32| {
            // Envoy answers the status of an HTTP call that failed (11,
            // BrokenConnection, "reset") while its response is delivered, and
            // a gRPC call's status and message while its close is delivered;
            // otherwise its initial value: 0 and no message.
            let (code, message) = caller.data().calls.status();
            answer(
                memory::write_u32(&mut caller, code_out, code).and_then(|()| {
                    memory::return_bytes(
                        &mut caller,
                        message.as_bytes(),
                        message_out,
                        message_size_out,
                    )
                }),
            )
        },
    )?;
    Ok(())
}

/// `proxy_stream_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamType {
    Http(Direction),
    Downstream,
    Upstream,
}

impl StreamType {
    fn from_code(code: u32) -> AbiResult<StreamType> {
        match code {
            0 => Ok(StreamType::Http(Direction::Request)),
            1 => Ok(StreamType::Http(Direction::Response)),
            2 => Ok(StreamType::Downstream),
            3 => Ok(StreamType::Upstream),
            _ => Err(Status::BadArgument.into()),
        }
    }
}

fn continue_stream(caller: &mut Caller<'_, HostState>, stream_type: u32) -> AbiResult<()> {
    let direction = match StreamType::from_code(stream_type)? {
        StreamType::Http(direction) => direction,
        // An HTTP context has no connection of its own to resume (Envoy
        // answers OK for downstream, UNIMPLEMENTED for upstream).
        StreamType::Downstream => return Ok(()),
        StreamType::Upstream => return Err(Status::Unimplemented.into()),
    };
    let state = caller.data_mut();
    let context_id = state.call.effective_context;
    // Continuing from a root context (without an effective stream) does
    // nothing, as in Envoy.
    if let Some(stream) = state.streams.get_mut(&context_id) {
        // Envoy lets go of the request's maps and body at once, whichever
        // direction continues.
        stream.access.release(Direction::Request);
        state.deferred.push(DeferredAction::Continue {
            context_id,
            direction,
        });
    }
    Ok(())
}

fn close_stream(caller: &mut Caller<'_, HostState>, stream_type: u32) -> AbiResult<()> {
    let StreamType::Http(_) = StreamType::from_code(stream_type)? else {
        // An HTTP context has no connection of its own to close.
        return Ok(());
    };
    let state = caller.data_mut();
    let context_id = state.call.effective_context;
    if state.streams.contains_key(&context_id) {
        state.deferred.push(DeferredAction::Reset { context_id });
    }
    Ok(())
}

fn send_local_response(
    caller: &mut Caller<'_, HostState>,
    status_code: u32,
    details: (u32, u32),
    body: (u32, u32),
    headers: (u32, u32),
    grpc_status: i32,
) -> AbiResult<()> {
    let details = memory::read(caller, details.0, details.1)?;
    let body = memory::read(caller, body.0, body.1)?;
    let headers = memory::read(caller, headers.0, headers.1)?;
    let headers = deserialize_pairs(&headers)?;
    let status = u16::try_from(status_code)
        .ok()
        .filter(|status| (100..=999).contains(status))
        .ok_or(Status::BadArgument)?;
    let state = caller.data_mut();
    let details = String::from_utf8_lossy(&details).into_owned();
    let details = match state.env.flavor {
        // Envoy's response code details hold no whitespace.
        HostFlavor::Envoy => details
            .chars()
            .map(|c| if c.is_ascii_whitespace() { '_' } else { c })
            .collect(),
        HostFlavor::NgxWasmModule => details,
    };
    let context_id = state.call.effective_context;
    let Some(stream) = state.streams.get_mut(&context_id) else {
        state.host_log(
            LogLevel::Warn,
            "proxy_send_local_response called outside a stream: ignored, as Envoy ignores it"
                .to_string(),
        );
        return Ok(());
    };
    stream.local_response = Some(PendingLocalResponse {
        status,
        details,
        body,
        headers,
        // SDKs pass -1 for "no gRPC status"; Envoy keeps only the codes it
        // knows (0 to 16).
        grpc_status: (0..=16).contains(&grpc_status).then_some(grpc_status),
    });
    state
        .deferred
        .push(DeferredAction::LocalResponse { context_id });
    Ok(())
}
