//! Guest memory access for host calls: the only place pointer arithmetic happens. Every range
//! is bounds-checked; a bad one is an `INVALID_ARGUMENT` status for the guest, never a trap
//! or a host panic.

use edge_sdk::abi::{self, status, Event};
use wasmtime::Caller;

use crate::wasm::state::HostState;

/// Runs a host call body with the guest's memory and the host state, after the per-event
/// permission check (ABI.md's table).
pub fn call(
    caller: &mut Caller<'_, HostState>,
    name: &str,
    body: impl FnOnce(&mut [u8], &mut HostState) -> i32,
) -> i32 {
    let event: Event = caller.data().event;
    if !abi::is_allowed(event, name) {
        return status::NOT_ALLOWED;
    }
    let Some(memory) = caller.data().memory else {
        return status::INVALID_ARGUMENT;
    };
    let (data, state) = memory.data_and_store_mut(caller);
    body(data, state)
}

/// The guest range `[ptr, ptr + len)`, if it lies inside memory.
pub fn range(ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    Some(start..end)
}

/// Borrows guest bytes.
pub fn bytes(data: &[u8], ptr: i32, len: i32) -> Result<&[u8], i32> {
    range(ptr, len)
        .and_then(|r| data.get(r))
        .ok_or(status::INVALID_ARGUMENT)
}

/// Writes a little-endian `u32` at `ptr`.
pub fn write_u32(data: &mut [u8], ptr: i32, value: u32) -> Result<(), i32> {
    let slot = range(ptr, 4)
        .and_then(|r| data.get_mut(r))
        .ok_or(status::INVALID_ARGUMENT)?;
    slot.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// The output-buffer convention: length to `out_ptr` always; the value into the buffer if it
/// fits (`OK`), else nothing (`BUFFER_TOO_SMALL`).
pub fn write_out(data: &mut [u8], buf_ptr: i32, buf_len: i32, out_ptr: i32, value: &[u8]) -> i32 {
    let Ok(len) = u32::try_from(value.len()) else {
        return status::LIMIT_EXCEEDED;
    };
    // The whole buffer the guest declared must be its memory, not just the part written.
    if range(buf_ptr, buf_len).and_then(|r| data.get(r)).is_none() {
        return status::INVALID_ARGUMENT;
    }
    if let Err(s) = write_u32(data, out_ptr, len) {
        return s;
    }
    if value.len() > buf_len as u32 as usize {
        return status::BUFFER_TOO_SMALL;
    }
    match range(buf_ptr, len as i32).and_then(|r| data.get_mut(r)) {
        Some(dest) => {
            dest.copy_from_slice(value);
            status::OK
        }
        None => status::INVALID_ARGUMENT,
    }
}

/// Collapses `Result<i32, i32>` (both arms statuses) for host call bodies using `?`.
pub fn status_of(result: Result<i32, i32>) -> i32 {
    result.unwrap_or_else(|s| s)
}
