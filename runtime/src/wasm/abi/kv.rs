//! `kv_get`: read the node's key-value stores.

use edge_sdk::abi::{calls, status, HostCall, IMPORT_MODULE};
use edge_sdk::host::{self, Refusal};
use wasmtime::{Caller, Linker};

use super::memory::{bytes, call, write_out};
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
            call(&mut c, GET, |m, s| {
                let store = host::text(GET, bytes(GET, m, store, store_len)?)?;
                let key = host::text(GET, bytes(GET, m, key, key_len)?)?;
                // A missing store reads like a missing key: an expected answer, not a mistake.
                let value = s
                    .kv_get(store, key)
                    .ok_or(Refusal::quiet(status::NOT_FOUND))?;
                write_out(GET, m, buf, len, out, &value)
            })
        },
    )?;
    Ok(())
}
