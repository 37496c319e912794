//! Context lifecycle: `proxy_set_effective_context` and `proxy_done`.
//!
//! Envoy switches the effective context to any context that exists and
//! refuses an unknown id (`BadArgument`). ngx_wasm_module's
//! `ngx_proxy_wasm_hfuncs_set_effective_context` is a no-op answering OK to
//! any id: its callbacks already run in their stream's context (so the SDK's
//! switch before `on_http_call_response` changes nothing there), and a root
//! context cannot act on a stream. The ngx_wasm_module flavour answers OK to
//! an unknown id as it does; for a known one it still switches, so that the
//! callbacks this host runs from the root context (HTTP call answers) find
//! their stream as they do in NGINX.

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
            let known =
                context_id == state.root_context_id || state.streams.contains_key(&context_id);
            if !known {
                return Ok(match state.env.flavor {
                    HostFlavor::Envoy => Status::BadArgument.code(),
                    HostFlavor::NgxWasmModule => Status::Ok.code(),
                });
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
