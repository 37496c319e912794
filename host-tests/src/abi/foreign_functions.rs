//! Foreign functions (`proxy_call_foreign_function`): this host registers
//! none, and answers `UNIMPLEMENTED`.

use wasmtime::{Caller, Linker};

use super::{answer, unimplemented};
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |caller: Caller<'_, HostState>,
         _name: u32,
         _name_size: u32,
         _arguments: u32,
         _arguments_size: u32,
         _results_out: u32,
         _results_size_out: u32| {
            answer(unimplemented(&caller, "proxy_call_foreign_function"))
        },
    )?;
    Ok(())
}
