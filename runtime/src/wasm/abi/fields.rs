//! Header calls shared by the `request_*` and `response_*` namespaces. The rules (valid names
//! and values, framing headers off limits, size limits) live in `edge_sdk::host::headers`,
//! which the SDK's test host runs too.

use edge_sdk::abi::status;
use edge_sdk::abi::{HostCall, IMPORT_MODULE};
use edge_sdk::host::headers::{self, Change};
use edge_sdk::host::Refusal;
use http::HeaderMap;
use wasmtime::{Caller, Linker};

use super::memory::{bytes, call, write_out};
use crate::wasm::state::HostState;

/// One message's header calls: `{prefix}_get_header`, `_get_headers`, `_set_header`,
/// `_append_header`, `_remove_header`.
pub struct HeaderCalls {
    /// The calls, in that order.
    pub calls: [&'static HostCall; 5],
    /// The headers to read; `None` when there is no such message (yet).
    pub read: fn(&HostState) -> Option<&HeaderMap>,
    /// The headers to change, creating the message if needed.
    pub write: fn(&mut HostState) -> &mut HeaderMap,
}

/// Adds one message's header calls.
pub fn add_to_linker(linker: &mut Linker<HostState>, calls: HeaderCalls) -> wasmtime::Result<()> {
    let HeaderCalls {
        calls: [get_one, get_all, set, append, remove],
        read,
        write,
    } = calls;
    linker.func_wrap(
        IMPORT_MODULE,
        get_one.name,
        move |mut c: Caller<'_, HostState>,
              name: i32,
              name_len: i32,
              buf: i32,
              len: i32,
              out: i32| {
            call(&mut c, get_one, |m, s| {
                let headers = read(s).ok_or(Refusal::quiet(status::NOT_FOUND))?;
                let value = headers::get(get_one, headers, bytes(get_one, m, name, name_len)?)?;
                write_out(get_one, m, buf, len, out, &value)
            })
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        get_all.name,
        move |mut c: Caller<'_, HostState>, buf: i32, len: i32, out: i32| {
            call(&mut c, get_all, |m, s| {
                let list = read(s).map(headers::list).unwrap_or_default();
                write_out(get_all, m, buf, len, out, &list)
            })
        },
    )?;
    for (host_call, how) in [(set, Change::Set), (append, Change::Append)] {
        linker.func_wrap(
            IMPORT_MODULE,
            host_call.name,
            move |mut c: Caller<'_, HostState>,
                  name: i32,
                  name_len: i32,
                  value: i32,
                  value_len: i32| {
                call(&mut c, host_call, |m, s| {
                    let name = bytes(host_call, m, name, name_len)?;
                    let value = bytes(host_call, m, value, value_len)?;
                    headers::change(host_call, write(s), name, value, how)
                })
            },
        )?;
    }
    linker.func_wrap(
        IMPORT_MODULE,
        remove.name,
        move |mut c: Caller<'_, HostState>, name: i32, name_len: i32| {
            call(&mut c, remove, |m, s| {
                let name = bytes(remove, m, name, name_len)?;
                headers::change(remove, write(s), name, b"", Change::Remove)
            })
        },
    )?;
    Ok(())
}
