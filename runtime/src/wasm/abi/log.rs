//! `log`: lines for the node's log, emitted with the function name, event and request id
//! after the call returns. Line handling (UTF-8, length, count): `edge_sdk::host::log_line`.

use edge_sdk::abi::{calls, HostCall, IMPORT_MODULE};
use edge_sdk::host;
use wasmtime::{Caller, Linker};

use super::memory::{bytes, call};
use crate::wasm::state::HostState;

/// Adds the `log` call.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const LOG: &HostCall = &calls::LOG;
    linker.func_wrap(
        IMPORT_MODULE,
        LOG.name,
        |mut c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            call(&mut c, LOG, |m, s| {
                let line = host::log_line(LOG, level, bytes(LOG, m, ptr, len)?)?;
                host::push_log(&mut s.logs, level, line);
                Ok(())
            })
        },
    )?;
    Ok(())
}
