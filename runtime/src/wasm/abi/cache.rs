//! `cache_*` host calls: the cache key (viewer-request) and the caching lifetime
//! (origin-response). Limits and validation: `edge_sdk::host::cache_key`.

use edge_sdk::abi::{calls, HostCall, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::memory::{call, nothing, owned};
use crate::wasm::op::Op;
use crate::wasm::state::HostState;

type C<'a> = Caller<'a, HostState>;

/// Adds the `cache_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const KEY_SET: &HostCall = &calls::CACHE_KEY_SET;
    linker.func_wrap(
        IMPORT_MODULE,
        KEY_SET.name,
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(
                &mut c,
                KEY_SET,
                |m| Ok(Op::CacheKeySet(owned(KEY_SET, m, ptr, len)?)),
                nothing,
            )
        },
    )?;
    const KEY_ADD: &HostCall = &calls::CACHE_KEY_ADD;
    linker.func_wrap(
        IMPORT_MODULE,
        KEY_ADD.name,
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(
                &mut c,
                KEY_ADD,
                |m| Ok(Op::CacheKeyAdd(owned(KEY_ADD, m, ptr, len)?)),
                nothing,
            )
        },
    )?;
    const SET_TTL: &HostCall = &calls::CACHE_SET_TTL;
    linker.func_wrap(IMPORT_MODULE, SET_TTL.name, |mut c: C<'_>, seconds: i64| {
        call(&mut c, SET_TTL, |_| Ok(Op::SetTtl(seconds)), nothing)
    })?;
    Ok(())
}
