//! Buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`,
//! `proxy_get_buffer_status`.
//!
//! Available as in Envoy: the VM configuration always, the plugin
//! configuration only inside `proxy_on_configure`, a body during its callback
//! (or while the filter keeps the stream paused there; outside, it reads as
//! empty and cannot be written), an HTTP call's response body while
//! `proxy_on_http_call_response` runs (`NOT_FOUND` otherwise), a gRPC
//! message while `proxy_on_grpc_receive` runs (empty otherwise). Bodies and
//! the gRPC message are modified as Envoy modifies them (prepend, replace a
//! prefix, or append); configurations are read-only.

use wasmtime::{Caller, Linker};

use super::{AbiResult, answer, memory};
use crate::state::{Callback, HostState};
use crate::types::Status;

/// `proxy_buffer_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BufferType {
    HttpRequestBody,
    HttpResponseBody,
    DownstreamData,
    UpstreamData,
    HttpCallResponseBody,
    GrpcReceiveBuffer,
    VmConfiguration,
    PluginConfiguration,
    CallData,
}

impl BufferType {
    fn from_code(code: u32) -> AbiResult<BufferType> {
        Ok(match code {
            0 => BufferType::HttpRequestBody,
            1 => BufferType::HttpResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::HttpCallResponseBody,
            5 => BufferType::GrpcReceiveBuffer,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::CallData,
            _ => return Err(Status::BadArgument.into()),
        })
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         buffer_type: u32,
         start: u32,
         max_size: u32,
         data_out: u32,
         size_out: u32| {
            answer(get_buffer_bytes(
                &mut caller,
                buffer_type,
                start,
                max_size,
                data_out,
                size_out,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut caller: Caller<'_, HostState>,
         buffer_type: u32,
         start: u32,
         size: u32,
         data: u32,
         data_size: u32| {
            answer(set_buffer_bytes(
                &mut caller,
                buffer_type,
                start,
                size,
                data,
                data_size,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut caller: Caller<'_, HostState>, buffer_type: u32, size_out: u32, flags_out: u32| {
            answer(get_buffer_status(
                &mut caller,
                buffer_type,
                size_out,
                flags_out,
            ))
        },
    )?;
    Ok(())
}

/// Runs `read` on the buffer's bytes; `None` if the buffer does not exist
/// (Envoy's `getBuffer` answering null). A body outside its callback exists
/// but is empty, as in Envoy.
fn with_buffer<R>(
    state: &mut HostState,
    buffer: BufferType,
    read: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    match buffer {
        BufferType::VmConfiguration => Some(read(&state.env.vm_config)),
        BufferType::PluginConfiguration => {
            (state.call.callback == Callback::Configure).then(|| read(&state.env.plugin_config))
        }
        BufferType::HttpRequestBody => Some(read(
            state
                .effective_stream()
                .filter(|stream| stream.access.request_body)
                .and_then(|stream| stream.request_body.as_deref())
                .unwrap_or_default(),
        )),
        BufferType::HttpResponseBody => Some(read(
            state
                .effective_stream()
                .filter(|stream| stream.access.response_body)
                .and_then(|stream| stream.response_body.as_deref())
                .unwrap_or_default(),
        )),
        // No TCP streams or foreign functions: empty buffers.
        BufferType::DownstreamData | BufferType::UpstreamData | BufferType::CallData => {
            Some(read(&[]))
        }
        // The message being delivered; otherwise Envoy's empty buffer.
        BufferType::GrpcReceiveBuffer => Some(read(
            state
                .calls
                .grpc
                .delivering
                .as_ref()
                .and_then(|event| event.message.as_deref())
                .unwrap_or_default(),
        )),
        // The body of the HTTP call response being delivered, if any (read
        // only: Envoy's `Buffer` over a const body).
        BufferType::HttpCallResponseBody => {
            state.calls.delivering.as_ref().map(|call| read(&call.body))
        }
    }
}

fn get_buffer_bytes(
    caller: &mut Caller<'_, HostState>,
    buffer_type: u32,
    start: u32,
    max_size: u32,
    data_out: u32,
    size_out: u32,
) -> AbiResult<()> {
    let buffer = BufferType::from_code(buffer_type)?;
    let start = usize::try_from(start).map_err(|_| Status::BadArgument)?;
    let max_size = usize::try_from(max_size).map_err(|_| Status::BadArgument)?;
    let chunk = with_buffer(caller.data_mut(), buffer, |bytes| {
        if start > bytes.len() {
            return Err(Status::BadArgument);
        }
        let end = start.saturating_add(max_size).min(bytes.len());
        bytes
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or(Status::BadArgument)
    })
    .ok_or(Status::NotFound)??;
    if chunk.is_empty() {
        // Envoy writes nothing for an empty read: the SDK sees no data.
        return Ok(());
    }
    memory::return_bytes(caller, &chunk, data_out, size_out)
}

/// Envoy's `Buffer::copyFrom`: `start` 0 replaces the first `size` bytes
/// (`size` 0 prepends); `start` at or past the end appends; anything else is
/// refused.
fn splice(body: &mut Vec<u8>, start: usize, size: usize, value: &[u8]) -> Result<(), Status> {
    if start == 0 {
        let drained = size.min(body.len());
        body.splice(0..drained, value.iter().copied());
        Ok(())
    } else if start >= body.len() {
        body.extend_from_slice(value);
        Ok(())
    } else {
        Err(Status::BadArgument)
    }
}

fn set_buffer_bytes(
    caller: &mut Caller<'_, HostState>,
    buffer_type: u32,
    start: u32,
    size: u32,
    data: u32,
    data_size: u32,
) -> AbiResult<()> {
    let buffer = BufferType::from_code(buffer_type)?;
    let state = caller.data_mut();
    let writable = match buffer {
        BufferType::HttpRequestBody => state
            .effective_stream()
            .is_some_and(|stream| stream.access.request_body && stream.request_body.is_some()),
        BufferType::HttpResponseBody => state
            .effective_stream()
            .is_some_and(|stream| stream.access.response_body && stream.response_body.is_some()),
        BufferType::GrpcReceiveBuffer => state
            .calls
            .grpc
            .delivering
            .as_ref()
            .is_some_and(|event| event.message.is_some()),
        // The configurations are read-only.
        BufferType::VmConfiguration => return Err(Status::BadArgument.into()),
        BufferType::PluginConfiguration if state.call.callback == Callback::Configure => {
            return Err(Status::BadArgument.into());
        }
        _ => false,
    };
    if !writable {
        return Err(Status::NotFound.into());
    }
    let value = memory::read(caller, data, data_size)?;
    let start = usize::try_from(start).map_err(|_| Status::BadArgument)?;
    let size = usize::try_from(size).map_err(|_| Status::BadArgument)?;
    let body = match buffer {
        BufferType::HttpRequestBody => caller
            .data_mut()
            .effective_stream()
            .and_then(|stream| stream.request_body.as_mut()),
        BufferType::GrpcReceiveBuffer => caller
            .data_mut()
            .calls
            .grpc
            .delivering
            .as_mut()
            .and_then(|event| event.message.as_mut()),
        _ => caller
            .data_mut()
            .effective_stream()
            .and_then(|stream| stream.response_body.as_mut()),
    };
    let body = body.ok_or(Status::NotFound)?;
    splice(body, start, size, &value)?;
    Ok(())
}

fn get_buffer_status(
    caller: &mut Caller<'_, HostState>,
    buffer_type: u32,
    size_out: u32,
    flags_out: u32,
) -> AbiResult<()> {
    let buffer = BufferType::from_code(buffer_type)?;
    let size = with_buffer(caller.data_mut(), buffer, <[u8]>::len).ok_or(Status::NotFound)?;
    memory::write_size(caller, size_out, size)?;
    memory::write_u32(caller, flags_out, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_change_as_envoy_changes_them() {
        let mut body = b"hello world".to_vec();
        assert_eq!(splice(&mut body, 0, 5, b"howdy"), Ok(()));
        assert_eq!(body, b"howdy world");
        assert_eq!(splice(&mut body, 0, 0, b">"), Ok(()));
        assert_eq!(body, b">howdy world");
        assert_eq!(splice(&mut body, usize::MAX, 0, b"!"), Ok(()));
        assert_eq!(body, b">howdy world!");
        assert_eq!(splice(&mut body, 3, 1, b"x"), Err(Status::BadArgument));
        assert_eq!(
            splice(&mut body, 0, 100, b"all"),
            Ok(()),
            "a size past the end drains all"
        );
        assert_eq!(body, b"all");
    }

    #[test]
    fn unknown_buffer_types_are_bad_arguments() {
        assert!(BufferType::from_code(8).is_ok());
        assert!(matches!(
            BufferType::from_code(9),
            Err(crate::abi::AbiError::Status(Status::BadArgument))
        ));
    }
}
