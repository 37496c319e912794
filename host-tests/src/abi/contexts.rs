//! Context lifecycle: `proxy_set_effective_context` and `proxy_done`.
//!
//! Envoy switches the effective context to any context that exists and
//! refuses an unknown id (`BadArgument`); ngx_wasm_module answers OK to any id
//! and switches nothing (`ngx_proxy_wasm_hfuncs_set_effective_context` is a
//! no-op), so a root context cannot act on a stream there.

use wasmtime::{Caller, Linker};

use crate::options::HostFlavor;
use crate::state::HostState;
use crate::types::Status;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: Caller<'_, HostState>, context_id: u32| -> wasmtime::Result<u32> {
            let state = caller.data_mut();
            if state.env.flavor == HostFlavor::NgxWasmModule {
                return Ok(Status::Ok.code());
            }
            let known =
                context_id == state.root_context_id || state.streams.contains_key(&context_id);
            if !known {
                return Ok(Status::BadArgument.code());
            }
            // Until the VM call returns: the next callback starts from its own
            // context again.
            state.call.effective_context = context_id;
            Ok(Status::Ok.code())
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_done",
        |_caller: Caller<'_, HostState>| -> wasmtime::Result<u32> {
            // Only a root context whose `proxy_on_done` answered false during
            // shutdown is pending finalisation, and this host does not keep a
            // VM running after shutdown: no context is ever pending.
            Ok(Status::NotFound.code())
        },
    )?;
    Ok(())
}
