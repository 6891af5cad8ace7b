//! `kv_get`: read the node's key-value stores.

use edge_sdk::abi::{calls, HostCall, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::memory::{call, deliver_out, owned};
use crate::wasm::op::Op;
use crate::wasm::state::HostState;

/// Adds the `kv_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const GET: &HostCall = &calls::KV_GET;
    linker.func_wrap(
        IMPORT_MODULE,
        GET.name,
        |mut c: Caller<'_, HostState>,
         store: i32,
         store_len: i32,
         key: i32,
         key_len: i32,
         buf: i32,
         len: i32,
         out: i32| {
            call(
                &mut c,
                GET,
                |m| {
                    Ok(Op::KvGet(
                        owned(GET, m, store, store_len)?,
                        owned(GET, m, key, key_len)?,
                    ))
                },
                |m, v| deliver_out(GET, m, buf, len, out, v),
            )
        },
    )?;
    Ok(())
}
