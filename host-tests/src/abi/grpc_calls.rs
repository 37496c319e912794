//! gRPC calls and streams: not supported by this host. Under Envoy every
//! call answers `UNIMPLEMENTED`, so the `proxy_on_grpc_*` callbacks never
//! run; under ngx_wasm_module, which does not implement them either, every
//! call traps as it traps there (`host trap (function not yet implemented)`).

use wasmtime::{Caller, Linker};

use super::{AbiError, AbiResult, answer};
use crate::options::HostFlavor;
use crate::state::HostState;
use crate::types::LogLevel;

fn unimplemented(caller: &Caller<'_, HostState>, function: &str) -> AbiResult<()> {
    match caller.data().env.flavor {
        HostFlavor::Envoy => super::unimplemented(caller, function),
        HostFlavor::NgxWasmModule => {
            let message = format!("host trap (function not yet implemented): {function}");
            caller.data().host_log(LogLevel::Error, message.clone());
            Err(AbiError::Trap(wasmtime::format_err!("{message}")))
        }
    }
}

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
