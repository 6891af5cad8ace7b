//! `origin_set`: pick the origin by its config name.

use edge_sdk::abi::{status, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::memory::{bytes, call, status_of};
use crate::wasm::state::HostState;

/// Adds the `origin_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "origin_set",
        |mut c: Caller<'_, HostState>, ptr: i32, len: i32| {
            call(&mut c, "origin_set", |m, s| {
                status_of((|| {
                    let name = bytes(m, ptr, len)?;
                    let index = s
                        .config
                        .origins
                        .iter()
                        .position(|o| o.name.as_bytes() == name)
                        .ok_or(status::NOT_FOUND)?;
                    s.origin = Some(index);
                    Ok(status::OK)
                })())
            })
        },
    )?;
    Ok(())
}
