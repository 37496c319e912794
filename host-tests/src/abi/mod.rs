//! The proxy-wasm ABI v0.2.1 as host functions, one module per area of the
//! spec (`proxy-wasm/spec`, `abi-versions/v0.2.1/README.md`), each with its
//! own `add_to_linker`.
//!
//! Host functions answer a [`Status`]; memory the guest passes is checked and
//! a bad pointer answers `INVALID_MEMORY_ACCESS`. The only way a host
//! function traps is a trap of the guest itself while the host calls back
//! into it (to allocate memory for a value it returns).

pub(crate) mod buffers;
pub(crate) mod clocks;
pub(crate) mod contexts;
pub(crate) mod foreign_functions;
pub(crate) mod grpc_calls;
pub(crate) mod http_calls;
pub(crate) mod http_fields;
pub(crate) mod logging;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod properties;
pub(crate) mod shared_data;
pub(crate) mod shared_queues;
pub(crate) mod streams;
pub(crate) mod timers;
pub(crate) mod wasi;

use wasmtime::{Caller, Linker};

use crate::state::HostState;
use crate::types::{LogLevel, Status};

/// Why a host function did not answer `OK`.
#[derive(Debug)]
pub(crate) enum AbiError {
    /// The status to answer.
    Status(Status),
    /// The guest trapped during a call back into it; the trap continues.
    Trap(wasmtime::Error),
}

impl From<Status> for AbiError {
    fn from(status: Status) -> AbiError {
        AbiError::Status(status)
    }
}

pub(crate) type AbiResult<T> = Result<T, AbiError>;

/// Turns a host function's result into what the guest receives.
pub(crate) fn answer(result: AbiResult<()>) -> wasmtime::Result<u32> {
    match result {
        Ok(()) => Ok(Status::Ok.code()),
        Err(AbiError::Status(status)) => Ok(status.code()),
        Err(AbiError::Trap(trap)) => Err(trap),
    }
}

/// Answers `UNIMPLEMENTED` for a call the host does not support, and says
/// so in the logs (a filter relying on it would misbehave in silence).
pub(crate) fn unimplemented(caller: &Caller<'_, HostState>, function: &str) -> AbiResult<()> {
    caller.data().host_log(
        LogLevel::Warn,
        format!(
            "the filter called {function}, which this host does not support: answered UNIMPLEMENTED"
        ),
    );
    Err(Status::Unimplemented.into())
}

/// Defines every proxy-wasm host function and WASI preview 1.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    logging::add_to_linker(linker)?;
    clocks::add_to_linker(linker)?;
    timers::add_to_linker(linker)?;
    buffers::add_to_linker(linker)?;
    http_fields::add_to_linker(linker)?;
    streams::add_to_linker(linker)?;
    http_calls::add_to_linker(linker)?;
    grpc_calls::add_to_linker(linker)?;
    shared_data::add_to_linker(linker)?;
    shared_queues::add_to_linker(linker)?;
    metrics::add_to_linker(linker)?;
    properties::add_to_linker(linker)?;
    contexts::add_to_linker(linker)?;
    foreign_functions::add_to_linker(linker)?;
    wasi::add_to_linker(linker)?;
    Ok(())
}
