//! Reading and writing the guest's linear memory, the one place that does.
//!
//! Every access is bounds-checked: an address or size outside the memory
//! answers `INVALID_MEMORY_ACCESS` (never a host panic). Values the host
//! returns are copied into memory the guest allocates, as proxy-wasm-cpp-host
//! does: the guest's `malloc` if exported, else `proxy_on_memory_allocate`.

use wasmtime::Caller;

use super::{AbiError, AbiResult};
use crate::state::HostState;
use crate::types::Status;

fn range(address: u32, size: usize, memory_size: usize) -> AbiResult<std::ops::Range<usize>> {
    let start = usize::try_from(address).map_err(|_| Status::InvalidMemoryAccess)?;
    let end = start.checked_add(size).ok_or(Status::InvalidMemoryAccess)?;
    if end > memory_size {
        return Err(Status::InvalidMemoryAccess.into());
    }
    Ok(start..end)
}

fn memory(caller: &Caller<'_, HostState>) -> AbiResult<wasmtime::Memory> {
    caller
        .data()
        .memory
        .ok_or(AbiError::Status(Status::InvalidMemoryAccess))
}

/// Copies `size` bytes at `address` out of the guest.
pub(crate) fn read(caller: &Caller<'_, HostState>, address: u32, size: u32) -> AbiResult<Vec<u8>> {
    let memory = memory(caller)?;
    let data = memory.data(caller);
    let size = usize::try_from(size).map_err(|_| Status::InvalidMemoryAccess)?;
    let range = range(address, size, data.len())?;
    data.get(range)
        .map(<[u8]>::to_vec)
        .ok_or(AbiError::Status(Status::InvalidMemoryAccess))
}

/// Writes `bytes` at `address`.
pub(crate) fn write(
    caller: &mut Caller<'_, HostState>,
    address: u32,
    bytes: &[u8],
) -> AbiResult<()> {
    let memory = memory(caller)?;
    let data = memory.data_mut(caller);
    let range = range(address, bytes.len(), data.len())?;
    data.get_mut(range)
        .ok_or(AbiError::Status(Status::InvalidMemoryAccess))?
        .copy_from_slice(bytes);
    Ok(())
}

/// Fails unless `size` bytes at `address` are inside the memory.
pub(crate) fn check(caller: &Caller<'_, HostState>, address: u32, size: usize) -> AbiResult<()> {
    let memory = memory(caller)?;
    range(address, size, memory.data_size(caller)).map(|_| ())
}

pub(crate) fn write_u32(
    caller: &mut Caller<'_, HostState>,
    address: u32,
    value: u32,
) -> AbiResult<()> {
    write(caller, address, &value.to_le_bytes())
}

pub(crate) fn write_u64(
    caller: &mut Caller<'_, HostState>,
    address: u32,
    value: u64,
) -> AbiResult<()> {
    write(caller, address, &value.to_le_bytes())
}

/// A `size_t` of wasm32.
pub(crate) fn write_size(
    caller: &mut Caller<'_, HostState>,
    address: u32,
    size: usize,
) -> AbiResult<()> {
    let size = u32::try_from(size).map_err(|_| Status::InvalidMemoryAccess)?;
    write_u32(caller, address, size)
}

/// Asks the guest for `size` bytes.
fn allocate(caller: &mut Caller<'_, HostState>, size: u32) -> AbiResult<u32> {
    let Some(allocator) = caller.data().allocator.clone() else {
        // A module without an allocator cannot receive values.
        return Err(Status::InvalidMemoryAccess.into());
    };
    let address = allocator.call(&mut *caller, size).map_err(AbiError::Trap)?;
    if address == 0 {
        return Err(Status::InvalidMemoryAccess.into());
    }
    Ok(address)
}

/// Returns `bytes` to the guest: copies them into a guest allocation and
/// writes its address at `address_out` and its size at `size_out`. Empty
/// bytes are returned as a null address and size 0, without allocating
/// (proxy-wasm-cpp-host's `copyToPointerSize`).
pub(crate) fn return_bytes(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    address_out: u32,
    size_out: u32,
) -> AbiResult<()> {
    // Check the out-pointers first so that a bad one does not leak an
    // allocation in the guest.
    check(caller, address_out, 4)?;
    check(caller, size_out, 4)?;
    if bytes.is_empty() {
        write_u32(caller, address_out, 0)?;
        return write_u32(caller, size_out, 0);
    }
    let size = u32::try_from(bytes.len()).map_err(|_| Status::InvalidMemoryAccess)?;
    let address = allocate(caller, size)?;
    write(caller, address, bytes)?;
    write_u32(caller, address_out, address)?;
    write_u32(caller, size_out, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_must_fit_inside_the_memory() {
        assert_eq!(range(0, 10, 10).ok(), Some(0..10));
        assert_eq!(
            range(10, 0, 10).ok(),
            Some(10..10),
            "an empty range at the end is valid"
        );
        assert!(range(11, 0, 10).is_err());
        assert!(range(5, 6, 10).is_err());
        assert!(
            range(u32::MAX, usize::MAX, usize::MAX).is_err(),
            "no overflow"
        );
    }
}
