//! gRPC calls and streams: not supported by this host. Every call answers
//! `UNIMPLEMENTED`, so the `proxy_on_grpc_*` callbacks never run.

use wasmtime::{Caller, Linker};

use super::{answer, unimplemented};
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |caller: Caller<'_, HostState>,
         _upstream: u32,
         _upstream_size: u32,
         _service: u32,
         _service_size: u32,
         _method: u32,
         _method_size: u32,
         _metadata: u32,
         _metadata_size: u32,
         _message: u32,
         _message_size: u32,
         _timeout_ms: u32,
         _token_out: u32| { answer(unimplemented(&caller, "proxy_grpc_call")) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |caller: Caller<'_, HostState>,
         _upstream: u32,
         _upstream_size: u32,
         _service: u32,
         _service_size: u32,
         _method: u32,
         _method_size: u32,
         _metadata: u32,
         _metadata_size: u32,
         _token_out: u32| { answer(unimplemented(&caller, "proxy_grpc_stream")) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |caller: Caller<'_, HostState>,
         _token: u32,
         _message: u32,
         _message_size: u32,
         _end_stream: u32| { answer(unimplemented(&caller, "proxy_grpc_send")) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |caller: Caller<'_, HostState>, _token: u32| {
            answer(unimplemented(&caller, "proxy_grpc_cancel"))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_close",
        |caller: Caller<'_, HostState>, _token: u32| {
            answer(unimplemented(&caller, "proxy_grpc_close"))
        },
    )?;
    Ok(())
}
