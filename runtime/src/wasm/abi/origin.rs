//! `origin_set`: pick the origin by its config name.

use edge_sdk::abi::{calls, HostCall, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::memory::{call, nothing, owned};
use crate::wasm::op::Op;
use crate::wasm::state::HostState;

/// Adds the `origin_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const SET: &HostCall = &calls::ORIGIN_SET;
    linker.func_wrap(
        IMPORT_MODULE,
        SET.name,
        |mut c: Caller<'_, HostState>, ptr: i32, len: i32| {
            call(
                &mut c,
                SET,
                |m| Ok(Op::OriginSet(owned(SET, m, ptr, len)?)),
                nothing,
            )
        },
    )?;
    Ok(())
}
