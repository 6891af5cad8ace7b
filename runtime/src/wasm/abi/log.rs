//! `log`: lines for the node's log, emitted with the function name, event and request id
//! after the call returns. Line handling (UTF-8, length, count): `edge_sdk::host::log_line`.

use edge_sdk::abi::limits::MAX_LOG_LINE;
use edge_sdk::abi::{calls, HostCall, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::memory::{bytes, call, nothing};
use crate::wasm::op::Op;
use crate::wasm::state::HostState;

/// Adds the `log` call.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const LOG: &HostCall = &calls::LOG;
    linker.func_wrap(
        IMPORT_MODULE,
        LOG.name,
        |mut c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            call(
                &mut c,
                LOG,
                |m| {
                    // Only the first MAX_LOG_LINE bytes can reach the kept line.
                    let raw = bytes(LOG, m, ptr, len)?;
                    Ok(Op::Log(
                        level,
                        Box::from(&raw[..raw.len().min(MAX_LOG_LINE)]),
                    ))
                },
                nothing,
            )
        },
    )?;
    Ok(())
}
