//! Shared queues: not supported by this host. Every call answers
//! `UNIMPLEMENTED`, so `proxy_on_queue_ready` never runs.

use wasmtime::{Caller, Linker};

use super::{answer, unimplemented};
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |caller: Caller<'_, HostState>, _name: u32, _name_size: u32, _id_out: u32| {
            answer(unimplemented(&caller, "proxy_register_shared_queue"))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |caller: Caller<'_, HostState>,
         _vm_id: u32,
         _vm_id_size: u32,
         _name: u32,
         _name_size: u32,
         _id_out: u32| { answer(unimplemented(&caller, "proxy_resolve_shared_queue")) },
    )?;
    linker.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |caller: Caller<'_, HostState>, _queue: u32, _value: u32, _value_size: u32| {
            answer(unimplemented(&caller, "proxy_enqueue_shared_queue"))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |caller: Caller<'_, HostState>, _queue: u32, _value_out: u32, _value_size_out: u32| {
            answer(unimplemented(&caller, "proxy_dequeue_shared_queue"))
        },
    )?;
    Ok(())
}
