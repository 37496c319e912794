//! HTTP fields: the header and trailer maps of the effective stream.
//!
//! Follows Envoy's `Context` (`source/extensions/common/wasm/context.cc`):
//! - a map is available during its callback (or while the filter keeps the
//!   stream paused there), and for reading in `proxy_on_log`;
//! - reading all pairs of a map that is not available answers an empty map;
//! - reading one value of a map that is not available answers
//!   `BAD_ARGUMENT` (`NOT_FOUND` in `proxy_on_log`);
//! - writing a map that is not available answers `BAD_ARGUMENT`;
//! - names are lower-cased; a lookup answers the first value;
//! - trailers can be added in the last body callback when the message had
//!   none (the map is created then);
//! - the response headers and trailers of an HTTP call can be read (and
//!   changed, as in Envoy) while `proxy_on_http_call_response` runs, and a
//!   gRPC call's initial (trailing) metadata while
//!   `proxy_on_grpc_receive_initial_metadata` (`…_trailing_metadata`) runs,
//!   whichever context is effective; outside, they are not available.

use wasmtime::{Caller, Linker};

use super::{AbiError, AbiResult, answer, memory};
use crate::headers::{HeaderMap, deserialize_pairs};
use crate::state::{Callback, HostState, StreamData};
use crate::types::Status;

/// `proxy_map_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MapType {
    RequestHeaders,
    RequestTrailers,
    ResponseHeaders,
    ResponseTrailers,
    GrpcReceiveInitialMetadata,
    GrpcReceiveTrailingMetadata,
    HttpCallResponseHeaders,
    HttpCallResponseTrailers,
}

impl MapType {
    fn from_code(code: u32) -> AbiResult<MapType> {
        Ok(match code {
            0 => MapType::RequestHeaders,
            1 => MapType::RequestTrailers,
            2 => MapType::ResponseHeaders,
            3 => MapType::ResponseTrailers,
            4 => MapType::GrpcReceiveInitialMetadata,
            5 => MapType::GrpcReceiveTrailingMetadata,
            6 => MapType::HttpCallResponseHeaders,
            7 => MapType::HttpCallResponseTrailers,
            _ => return Err(Status::BadArgument.into()),
        })
    }
}

fn readable(stream: &StreamData, map: MapType) -> Option<&HeaderMap> {
    let access = stream.access;
    let (held, map) = match map {
        MapType::RequestHeaders => (access.request_headers, &stream.request_headers),
        // Envoy keeps no request trailers for the access-log phase.
        MapType::RequestTrailers if stream.log_phase => return None,
        MapType::RequestTrailers => (access.request_trailers, &stream.request_trailers),
        MapType::ResponseHeaders => (access.response_headers, &stream.response_headers),
        MapType::ResponseTrailers => (access.response_trailers, &stream.response_trailers),
        MapType::GrpcReceiveInitialMetadata
        | MapType::GrpcReceiveTrailingMetadata
        | MapType::HttpCallResponseHeaders
        | MapType::HttpCallResponseTrailers => return None,
    };
    (held || stream.log_phase).then_some(map.as_ref()).flatten()
}

/// A trailer map held by the filter; created when the filter adds trailers
/// at the end of a body that had none (Envoy's `addDecodedTrailers`).
fn trailers<'a>(
    trailers: &'a mut Option<HeaderMap>,
    held: &mut bool,
    at_end_of_body: bool,
) -> Option<&'a mut HeaderMap> {
    if !*held && at_end_of_body && trailers.is_none() {
        *held = true;
        *trailers = Some(HeaderMap::default());
    }
    if *held { trailers.as_mut() } else { None }
}

/// The map of the HTTP call response or gRPC event being delivered, if
/// `map` is one. `Some(None)`: a call map, not available now.
fn call_map(state: &mut HostState, map: MapType) -> Option<Option<&mut HeaderMap>> {
    let delivering = state.calls.delivering.as_mut();
    let grpc = state.calls.grpc.delivering.as_mut();
    match map {
        MapType::HttpCallResponseHeaders => Some(delivering.map(|call| &mut call.headers)),
        MapType::HttpCallResponseTrailers => Some(delivering.map(|call| &mut call.trailers)),
        MapType::GrpcReceiveInitialMetadata => {
            Some(grpc.and_then(|event| event.initial_metadata.as_mut()))
        }
        MapType::GrpcReceiveTrailingMetadata => {
            Some(grpc.and_then(|event| event.trailing_metadata.as_mut()))
        }
        _ => None,
    }
}

fn writable(state: &mut HostState, map: MapType) -> AbiResult<&mut HeaderMap> {
    if matches!(
        map,
        MapType::HttpCallResponseHeaders
            | MapType::HttpCallResponseTrailers
            | MapType::GrpcReceiveInitialMetadata
            | MapType::GrpcReceiveTrailingMetadata
    ) {
        return call_map(state, map)
            .flatten()
            .ok_or(AbiError::Status(Status::BadArgument));
    }
    let callback = state.call.callback;
    let stream = state.effective_stream().ok_or(Status::BadArgument)?;
    let access = &mut stream.access;
    let map = match map {
        MapType::RequestHeaders if access.request_headers => stream.request_headers.as_mut(),
        MapType::RequestTrailers => {
            let at_end_of_body = access.request_body
                && callback
                    == (Callback::RequestBody {
                        end_of_stream: true,
                    });
            trailers(
                &mut stream.request_trailers,
                &mut access.request_trailers,
                at_end_of_body,
            )
        }
        MapType::ResponseHeaders if access.response_headers => stream.response_headers.as_mut(),
        MapType::ResponseTrailers => {
            let at_end_of_body = access.response_body
                && callback
                    == (Callback::ResponseBody {
                        end_of_stream: true,
                    });
            trailers(
                &mut stream.response_trailers,
                &mut access.response_trailers,
                at_end_of_body,
            )
        }
        _ => None,
    };
    map.ok_or(AbiError::Status(Status::BadArgument))
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: Caller<'_, HostState>, map_type: u32, data_out: u32, size_out: u32| {
            answer(get_pairs(&mut caller, map_type, data_out, size_out))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: Caller<'_, HostState>, map_type: u32, data: u32, size: u32| {
            answer(set_pairs(&mut caller, map_type, data, size))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: u32,
         key: u32,
         key_size: u32,
         value_out: u32,
         value_size_out: u32| {
            answer(get_value(
                &mut caller,
                map_type,
                key,
                key_size,
                value_out,
                value_size_out,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: u32,
         key: u32,
         key_size: u32,
         value: u32,
         value_size: u32| {
            answer(edit(
                &mut caller,
                map_type,
                key,
                key_size,
                Some((value, value_size)),
                Edit::Add,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut caller: Caller<'_, HostState>,
         map_type: u32,
         key: u32,
         key_size: u32,
         value: u32,
         value_size: u32| {
            answer(edit(
                &mut caller,
                map_type,
                key,
                key_size,
                Some((value, value_size)),
                Edit::Replace,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: Caller<'_, HostState>, map_type: u32, key: u32, key_size: u32| {
            answer(edit(
                &mut caller,
                map_type,
                key,
                key_size,
                None,
                Edit::Remove,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut caller: Caller<'_, HostState>, map_type: u32, size_out: u32| {
            answer(get_size(&mut caller, map_type, size_out))
        },
    )?;
    Ok(())
}

fn get_pairs(
    caller: &mut Caller<'_, HostState>,
    map_type: u32,
    data_out: u32,
    size_out: u32,
) -> AbiResult<()> {
    let map = MapType::from_code(map_type)?;
    let state = caller.data_mut();
    let serialized = match call_map(state, map) {
        Some(call) => call.map(|headers| headers.serialize()),
        None => state
            .effective_stream()
            .and_then(|stream| readable(stream, map).map(HeaderMap::serialize)),
    }
    .unwrap_or_default();
    memory::return_bytes(caller, &serialized, data_out, size_out)
}

fn set_pairs(
    caller: &mut Caller<'_, HostState>,
    map_type: u32,
    data: u32,
    size: u32,
) -> AbiResult<()> {
    let map = MapType::from_code(map_type)?;
    let serialized = memory::read(caller, data, size)?;
    let pairs = deserialize_pairs(&serialized)?;
    writable(caller.data_mut(), map)?.set_all(pairs);
    Ok(())
}

fn get_value(
    caller: &mut Caller<'_, HostState>,
    map_type: u32,
    key: u32,
    key_size: u32,
    value_out: u32,
    value_size_out: u32,
) -> AbiResult<()> {
    let map = MapType::from_code(map_type)?;
    let key = memory::read(caller, key, key_size)?;
    if let Some(call) = call_map(caller.data_mut(), map) {
        let headers = call.ok_or(Status::BadArgument)?;
        let value = headers.get(&key).ok_or(Status::NotFound)?.to_vec();
        return memory::return_bytes(caller, &value, value_out, value_size_out);
    }
    let stream = caller
        .data_mut()
        .effective_stream()
        .ok_or(Status::BadArgument)?;
    let value = match readable(stream, map) {
        Some(headers) => headers.get(&key).ok_or(Status::NotFound)?.to_vec(),
        None if stream.log_phase => return Err(Status::NotFound.into()),
        None => return Err(Status::BadArgument.into()),
    };
    memory::return_bytes(caller, &value, value_out, value_size_out)
}

#[derive(Clone, Copy)]
enum Edit {
    Add,
    Replace,
    Remove,
}

fn edit(
    caller: &mut Caller<'_, HostState>,
    map_type: u32,
    key: u32,
    key_size: u32,
    value: Option<(u32, u32)>,
    edit: Edit,
) -> AbiResult<()> {
    let map = MapType::from_code(map_type)?;
    let key = memory::read(caller, key, key_size)?;
    let value = match value {
        Some((data, size)) => memory::read(caller, data, size)?,
        None => Vec::new(),
    };
    let headers = writable(caller.data_mut(), map)?;
    match edit {
        Edit::Add => headers.add(&key, &value),
        Edit::Replace => headers.replace(&key, &value),
        Edit::Remove => headers.remove(&key),
    }
    Ok(())
}

fn get_size(caller: &mut Caller<'_, HostState>, map_type: u32, size_out: u32) -> AbiResult<()> {
    let map = MapType::from_code(map_type)?;
    let size = writable(caller.data_mut(), map)?.byte_size();
    memory::write_size(caller, size_out, size)
}
