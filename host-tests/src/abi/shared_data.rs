//! The shared key-value store: `proxy_get_shared_data` and
//! `proxy_set_shared_data`, on the namespace of the proxy's `vm_id`. The
//! rules (Envoy's or the strict ones) are the store's; see
//! [`crate::shared_data`].

use wasmtime::{Caller, Linker};

use super::{AbiError, AbiResult, answer, memory};
use crate::shared_data::{SetFailure, SetValue, SharedDataSemantics};
use crate::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut caller: Caller<'_, HostState>,
         key: u32,
         key_size: u32,
         value_out: u32,
         value_size_out: u32,
         cas_out: u32| {
            answer(get(
                &mut caller,
                key,
                key_size,
                value_out,
                value_size_out,
                cas_out,
            ))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut caller: Caller<'_, HostState>,
         key: u32,
         key_size: u32,
         value: u32,
         value_size: u32,
         cas: u32| { answer(set(&mut caller, key, key_size, value, value_size, cas)) },
    )?;
    Ok(())
}

fn get(
    caller: &mut Caller<'_, HostState>,
    key: u32,
    key_size: u32,
    value_out: u32,
    value_size_out: u32,
    cas_out: u32,
) -> AbiResult<()> {
    let key = memory::read(caller, key, key_size)?;
    let env = &caller.data().env;
    let found = env.shared_data.get(&env.vm_id, &key)?;
    memory::check(caller, cas_out, 4)?;
    memory::return_bytes(caller, &found.value, value_out, value_size_out)?;
    memory::write_u32(caller, cas_out, found.cas)
}

fn set(
    caller: &mut Caller<'_, HostState>,
    key: u32,
    key_size: u32,
    value: u32,
    value_size: u32,
    cas: u32,
) -> AbiResult<()> {
    let key = memory::read(caller, key, key_size)?;
    let strict = matches!(
        caller.data().env.shared_data.semantics(),
        SharedDataSemantics::Strict(_)
    );
    // A null value pointer deletes under the strict rules; Envoy reads the
    // memory it designates like any other (for the SDK's `None`, no bytes).
    let bytes = if strict && value == 0 {
        None
    } else {
        Some(memory::read(caller, value, value_size)?)
    };
    let value = match &bytes {
        Some(bytes) => SetValue::Bytes(bytes),
        None => SetValue::Null,
    };
    let env = &caller.data().env;
    match env.shared_data.set(&env.vm_id, &key, value, cas) {
        Ok(()) => Ok(()),
        Err(SetFailure::Status(status)) => Err(status.into()),
        // ngx_wasm_module logs "no memory; cannot allocate pair with key size
        // .. and value size .." and traps the filter.
        Err(SetFailure::NoMemory { key_len, value_len }) => {
            Err(AbiError::Trap(wasmtime::Error::msg(format!(
                "failed setting value to shm (could not write to slab): no memory; \
                 cannot allocate pair with key size {key_len} and value size {value_len}"
            ))))
        }
    }
}
