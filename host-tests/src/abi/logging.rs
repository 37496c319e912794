//! Logging: `proxy_log`, `proxy_get_log_level`, and WASI `fd_write`, which
//! (as in Envoy) turns stdout into info lines and stderr into error lines.

use wasmtime::{Caller, Linker};

use super::{AbiResult, answer, memory};
use crate::state::HostState;
use crate::types::{LogLevel, Status};

const WASI_SUCCESS: i32 = 0;
const WASI_BADF: i32 = 8;
const WASI_FAULT: i32 = 21;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: Caller<'_, HostState>, level: u32, data: u32, size: u32| {
            answer(log(&mut caller, level, data, size))
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: Caller<'_, HostState>, level_out: u32| {
            let level = caller.data().env.log_level.code();
            answer(memory::write_u32(&mut caller, level_out, level))
        },
    )?;
    Ok(())
}

fn log(caller: &mut Caller<'_, HostState>, level: u32, data: u32, size: u32) -> AbiResult<()> {
    let level = LogLevel::from_code(level).ok_or(Status::BadArgument)?;
    let message = memory::read(caller, data, size)?;
    caller
        .data()
        .filter_log(level, String::from_utf8_lossy(&message).into_owned());
    Ok(())
}

/// Replaces wasmtime-wasi's `fd_write`: a filter has no files, and what it
/// prints is a log line (proxy-wasm-cpp-host `writevImpl`).
pub(crate) fn add_fd_write_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut caller: Caller<'_, HostState>, fd: u32, iovs: u32, iovs_len: u32, written_out: u32| {
            Ok(fd_write(&mut caller, fd, iovs, iovs_len, written_out))
        },
    )?;
    Ok(())
}

fn fd_write(
    caller: &mut Caller<'_, HostState>,
    fd: u32,
    iovs: u32,
    iovs_len: u32,
    written_out: u32,
) -> i32 {
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return WASI_BADF,
    };
    let Ok(text) = gather(caller, iovs, iovs_len) else {
        return WASI_FAULT;
    };
    let written = text.len();
    let line = text.strip_suffix(b"\n").unwrap_or(&text);
    if !line.is_empty() {
        caller
            .data()
            .filter_log(level, String::from_utf8_lossy(line).into_owned());
    }
    match memory::write_size(caller, written_out, written) {
        Ok(()) => WASI_SUCCESS,
        Err(_) => WASI_FAULT,
    }
}

/// Concatenates the buffers of an iovec array (pairs of address and length).
fn gather(caller: &Caller<'_, HostState>, iovs: u32, iovs_len: u32) -> AbiResult<Vec<u8>> {
    let mut text = Vec::new();
    for index in 0..iovs_len {
        let offset = index.checked_mul(8).ok_or(Status::InvalidMemoryAccess)?;
        let at = iovs
            .checked_add(offset)
            .ok_or(Status::InvalidMemoryAccess)?;
        let iovec = memory::read(caller, at, 8)?;
        let word = |start: usize| -> AbiResult<u32> {
            let bytes: [u8; 4] = iovec
                .get(start..start + 4)
                .and_then(|slice| slice.try_into().ok())
                .ok_or(Status::InvalidMemoryAccess)?;
            Ok(u32::from_le_bytes(bytes))
        };
        let (buffer, length) = (word(0)?, word(4)?);
        if length > 0 {
            text.extend_from_slice(&memory::read(caller, buffer, length)?);
        }
    }
    Ok(text)
}
