//! `log`: lines for the node's log, emitted with the function name, event and request id
//! after the call returns.

use edge_sdk::abi::{limits, log_level, status, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::memory::{bytes, call, status_of};
use crate::wasm::state::HostState;

/// Adds the `log` call.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "log",
        |mut c: Caller<'_, HostState>, level: i32, ptr: i32, len: i32| {
            call(&mut c, "log", |m, s| {
                status_of((|| {
                    if !(log_level::ERROR..=log_level::TRACE).contains(&level) {
                        return Err(status::INVALID_ARGUMENT);
                    }
                    let raw = bytes(m, ptr, len)?;
                    if s.logs.len() < limits::MAX_LOG_LINES {
                        let kept = &raw[..raw.len().min(limits::MAX_LOG_LINE)];
                        s.logs
                            .push((level, String::from_utf8_lossy(kept).into_owned()));
                    }
                    Ok(status::OK)
                })())
            })
        },
    )?;
    Ok(())
}
