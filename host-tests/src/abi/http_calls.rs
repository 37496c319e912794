//! HTTP calls (`proxy_http_call`): not supported by this host. The call
//! answers `UNIMPLEMENTED`, so `proxy_on_http_call_response` never runs.

use wasmtime::{Caller, Linker};

use super::{answer, unimplemented};
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |caller: Caller<'_, HostState>,
         _upstream: u32,
         _upstream_size: u32,
         _headers: u32,
         _headers_size: u32,
         _body: u32,
         _body_size: u32,
         _trailers: u32,
         _trailers_size: u32,
         _timeout_ms: u32,
         _token_out: u32| { answer(unimplemented(&caller, "proxy_http_call")) },
    )?;
    Ok(())
}
