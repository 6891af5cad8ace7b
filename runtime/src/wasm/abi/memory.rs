//! Guest memory access for host calls: the only place pointer arithmetic happens. Every range
//! is bounds-checked; a bad one is an `INVALID_ARGUMENT` status for the guest, never a trap
//! or a host panic.

use edge_sdk::abi::{status, HostCall};
use edge_sdk::host::{self, Refusal};
use wasmtime::Caller;

use crate::wasm::state::HostState;

/// Runs a host call body with the guest's memory and the host state, after the per-event
/// permission check (ABI.md's table). A refusal becomes the call's status; when it carries a
/// message (a guest mistake, not an expected answer), that message also goes to the
/// invocation's log at warn level, so the author learns which call failed and why.
pub fn call(
    caller: &mut Caller<'_, HostState>,
    call: &'static HostCall,
    body: impl FnOnce(&mut [u8], &mut HostState) -> Result<(), Refusal>,
) -> i32 {
    let result = host::check_allowed(call, caller.data().event).and_then(|()| {
        let memory = caller.data().memory.ok_or_else(|| host::bad_memory(call))?;
        let (data, state) = memory.data_and_store_mut(&mut *caller);
        body(data, state)
    });
    match result {
        Ok(()) => status::OK,
        Err(refusal) => {
            host::record_refusal(&mut caller.data_mut().logs, &refusal);
            refusal.status
        }
    }
}

/// The guest range `[ptr, ptr + len)`, if it lies inside memory.
fn range(ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize)?;
    Some(start..end)
}

/// Borrows guest bytes.
pub fn bytes<'m>(call: &HostCall, data: &'m [u8], ptr: i32, len: i32) -> Result<&'m [u8], Refusal> {
    range(ptr, len)
        .and_then(|r| data.get(r))
        .ok_or_else(|| host::bad_memory(call))
}

/// Writes a little-endian `u32` at `ptr`.
pub fn write_u32(call: &HostCall, data: &mut [u8], ptr: i32, value: u32) -> Result<(), Refusal> {
    let slot = range(ptr, 4)
        .and_then(|r| data.get_mut(r))
        .ok_or_else(|| host::bad_memory(call))?;
    slot.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// The output-buffer convention: length to `out_ptr` always; the value into the buffer if it
/// fits (`OK`), else nothing (`BUFFER_TOO_SMALL`, an expected answer: the guest grows its
/// buffer).
pub fn write_out(
    call: &HostCall,
    data: &mut [u8],
    buf_ptr: i32,
    buf_len: i32,
    out_ptr: i32,
    value: &[u8],
) -> Result<(), Refusal> {
    let Ok(len) = u32::try_from(value.len()) else {
        return Err(Refusal::new(
            status::LIMIT_EXCEEDED,
            format!("{}: the value is over 4 GiB", call.name),
        ));
    };
    // The whole buffer the guest declared must be its memory, not just the part written.
    if range(buf_ptr, buf_len).and_then(|r| data.get(r)).is_none() {
        return Err(host::bad_memory(call));
    }
    write_u32(call, data, out_ptr, len)?;
    if value.len() > buf_len as u32 as usize {
        return Err(Refusal::quiet(status::BUFFER_TOO_SMALL));
    }
    let dest = range(buf_ptr, len as i32)
        .and_then(|r| data.get_mut(r))
        .ok_or_else(|| host::bad_memory(call))?;
    dest.copy_from_slice(value);
    Ok(())
}
