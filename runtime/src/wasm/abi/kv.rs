//! `kv_get`: read the node's key-value stores.

use edge_sdk::abi::{status, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::memory::{bytes, call, status_of, write_out};
use crate::wasm::state::HostState;

/// A guest string that must be UTF-8.
fn text(bytes: &[u8]) -> Result<&str, i32> {
    std::str::from_utf8(bytes).map_err(|_| status::INVALID_ARGUMENT)
}

/// Adds the `kv_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "kv_get",
        |mut c: Caller<'_, HostState>,
         store: i32,
         store_len: i32,
         key: i32,
         key_len: i32,
         buf: i32,
         len: i32,
         out: i32| {
            call(&mut c, "kv_get", |m, s| {
                status_of((|| {
                    let store = text(bytes(m, store, store_len)?)?;
                    let key = text(bytes(m, key, key_len)?)?;
                    match s.kv_get(store, key) {
                        Some(value) => Ok(write_out(m, buf, len, out, &value)),
                        None => Ok(status::NOT_FOUND),
                    }
                })())
            })
        },
    )?;
    Ok(())
}
