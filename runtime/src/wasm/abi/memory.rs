//! Guest memory access for host calls: the only place pointer arithmetic happens. Every range
//! is bounds-checked; a bad one is an `INVALID_ARGUMENT` status for the guest, never a trap
//! or a host panic.

use edge_sdk::abi::{status, HostCall};
use edge_sdk::host::{self, Refusal};
use wasmtime::Caller;

use crate::wasm::op::{Op, Value};
use crate::wasm::state::HostState;

/// Runs one host call: the per-event permission check (ABI.md's table), then `decode` reads
/// the call's arguments out of guest memory into an [`Op`], the op is applied to the host
/// state (and recorded, when the invocation is), and `deliver` writes the value it gives the
/// guest back into guest memory. A refusal becomes the call's status; when it carries a
/// message (a guest mistake, not an expected answer), that message also goes to the
/// invocation's log at warn level, so the author learns which call failed and why.
pub fn call(
    caller: &mut Caller<'_, HostState>,
    call: &'static HostCall,
    decode: impl FnOnce(&[u8]) -> Result<Op, Refusal>,
    deliver: impl FnOnce(&mut [u8], &Value) -> Result<(), Refusal>,
) -> i32 {
    if !call.is_allowed(caller.data().event) {
        return caller.data_mut().perform(Op::NotAllowed(call));
    }
    let Some(memory) = caller.data().memory else {
        return caller.data_mut().guest_fault(host::bad_memory(call));
    };
    let (data, state) = memory.data_and_store_mut(&mut *caller);
    match decode(data) {
        Ok(op) => state.perform_and_deliver(op, |value| deliver(data, value)),
        Err(refusal) => state.guest_fault(refusal),
    }
}

/// No value to deliver: a change.
pub fn nothing(_: &mut [u8], _: &Value) -> Result<(), Refusal> {
    Ok(())
}

/// Copies guest bytes out of memory, for an [`Op`].
pub fn owned(call: &HostCall, data: &[u8], ptr: i32, len: i32) -> Result<Box<[u8]>, Refusal> {
    bytes(call, data, ptr, len).map(Box::from)
}

/// Delivers a bytes value through the output-buffer convention ([`write_out`]).
pub fn deliver_out(
    call: &HostCall,
    data: &mut [u8],
    buf_ptr: i32,
    buf_len: i32,
    out_ptr: i32,
    value: &Value,
) -> Result<(), Refusal> {
    match value {
        Value::Bytes(b) => write_out(call, data, buf_ptr, buf_len, out_ptr, b),
        Value::U32(n) => write_u32(call, data, out_ptr, *n),
        Value::None => Ok(()),
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

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Any host call: the checks are the same for all of them.
    fn call() -> &'static HostCall {
        &edge_sdk::abi::HOST_CALLS[0]
    }

    /// Pointers and lengths a guest might pass: small, near the end of memory, and extreme.
    fn offset() -> impl Strategy<Value = i32> {
        prop_oneof![
            0i32..80,
            60i32..70,
            Just(-1),
            Just(i32::MIN),
            Just(i32::MAX),
            any::<i32>()
        ]
    }

    /// The range as the guest means it: unsigned, in 64-bit arithmetic, inside `size` bytes.
    fn inside(ptr: i32, len: i32, size: usize) -> bool {
        u64::from(ptr as u32) + u64::from(len as u32) <= size as u64
    }

    proptest! {
        /// A range is accepted exactly when it lies inside memory, and reads exactly it.
        #[test]
        fn ranges_are_bounds_checked(size in 0usize..80, ptr in offset(), len in offset()) {
            let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
            match bytes(call(), &data, ptr, len) {
                Ok(read) => {
                    prop_assert!(inside(ptr, len, size));
                    prop_assert_eq!(read.len(), len as u32 as usize);
                    prop_assert_eq!(read.first().copied(), data.get(ptr as u32 as usize).copied().filter(|_| len != 0));
                }
                Err(s) => {
                    prop_assert_eq!(s.status, status::INVALID_ARGUMENT);
                    prop_assert!(!inside(ptr, len, size));
                }
            }
        }

        /// The output-buffer convention of ABI.md: OK copies the value and writes its length;
        /// BUFFER_TOO_SMALL writes the length and copies nothing; a bad range changes nothing.
        #[test]
        fn output_buffers_follow_the_abi(
            size in 0usize..80,
            buf_ptr in offset(),
            buf_len in offset(),
            out_ptr in offset(),
            value in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let before: Vec<u8> = (0..size).map(|i| (i as u8) ^ 0x5a).collect();
            let mut data = before.clone();
            let result = write_out(call(), &mut data, buf_ptr, buf_len, out_ptr, &value).map_err(|r| r.status);
            let len_at_out = || {
                let p = out_ptr as u32 as usize;
                data.get(p..p + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            };
            // Bytes outside both the buffer and the length slot never change.
            let (b, o) = (buf_ptr as u32 as usize, out_ptr as u32 as usize);
            for i in 0..size {
                let in_buf = i >= b && (i - b) < value.len().min(buf_len as u32 as usize);
                let in_out = i >= o && i - o < 4;
                if !in_buf && !in_out {
                    prop_assert_eq!(data[i], before[i], "byte {} changed", i);
                }
            }
            match result {
                Ok(()) => {
                    prop_assert!(inside(buf_ptr, buf_len, size) && value.len() <= buf_len as u32 as usize);
                    // The value is in the buffer; the length is at `out_ptr` unless the guest
                    // made the two overlap (then the value, written last, wins).
                    prop_assert_eq!(&data[b..b + value.len()], &value[..]);
                    if o + 4 <= b || o >= b + value.len() {
                        prop_assert_eq!(len_at_out(), Some(value.len() as u32));
                    }
                }
                Err(status::BUFFER_TOO_SMALL) => {
                    prop_assert!(value.len() > buf_len as u32 as usize);
                    prop_assert_eq!(len_at_out(), Some(value.len() as u32));
                    for i in (0..size).filter(|i| *i < o || *i >= o + 4) {
                        prop_assert_eq!(data[i], before[i], "copied into byte {} of a short buffer", i);
                    }
                }
                Err(status::INVALID_ARGUMENT) => {
                    prop_assert!(!inside(buf_ptr, buf_len, size) || !inside(out_ptr, 4, size));
                    prop_assert_eq!(&data, &before);
                }
                Err(other) => prop_assert!(false, "unexpected status {}", other),
            }
        }
    }
}
