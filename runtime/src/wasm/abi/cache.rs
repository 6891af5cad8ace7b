//! `cache_*` host calls: the cache key (viewer-request) and the caching lifetime
//! (origin-response).

use edge_sdk::abi::{status, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::memory::{bytes, call, status_of};
use crate::wasm::state::HostState;

type C<'a> = Caller<'a, HostState>;

/// Longest cache key or key part a function may set; keys are held in memory per object.
const MAX_KEY_LEN: usize = 4096;

fn text(data: &[u8], ptr: i32, len: i32) -> Result<String, i32> {
    let raw = bytes(data, ptr, len)?;
    if raw.len() > MAX_KEY_LEN {
        return Err(status::LIMIT_EXCEEDED);
    }
    String::from_utf8(raw.to_vec()).map_err(|_| status::INVALID_ARGUMENT)
}

/// Adds the `cache_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        IMPORT_MODULE,
        "cache_key_set",
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(&mut c, "cache_key_set", |m, s| {
                status_of(text(m, ptr, len).map(|key| {
                    s.cache_key = Some(key);
                    status::OK
                }))
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "cache_key_add",
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(&mut c, "cache_key_add", |m, s| {
                status_of(text(m, ptr, len).and_then(|part| {
                    if s.cache_key_parts.len() >= 32 {
                        return Err(status::LIMIT_EXCEEDED);
                    }
                    s.cache_key_parts.push(part);
                    Ok(status::OK)
                }))
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "cache_set_ttl",
        |mut c: C<'_>, seconds: i64| {
            call(&mut c, "cache_set_ttl", |_, s| {
                match u64::try_from(seconds) {
                    Ok(seconds) => {
                        s.ttl = Some(seconds);
                        status::OK
                    }
                    Err(_) => status::INVALID_ARGUMENT,
                }
            })
        },
    )?;
    Ok(())
}
