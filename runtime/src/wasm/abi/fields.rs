//! Header calls shared by the `request_*` and `response_*` namespaces. The rules (valid names
//! and values, framing headers off limits, size limits) live in `edge_sdk::host::headers`,
//! which the SDK's test host runs too.

use edge_sdk::abi::{HostCall, IMPORT_MODULE};
use edge_sdk::host::headers::Change;
use wasmtime::{Caller, Linker};

use super::memory::{call, deliver_out, nothing, owned};
use crate::wasm::op::{Message, Name, Op};
use crate::wasm::state::HostState;

/// One message's header calls: `{prefix}_get_header`, `_get_headers`, `_set_header`,
/// `_append_header`, `_remove_header`.
pub struct HeaderCalls {
    /// The calls, in that order.
    pub calls: [&'static HostCall; 5],
    /// The message they act on.
    pub message: Message,
}

/// Adds one message's header calls.
pub fn add_to_linker(linker: &mut Linker<HostState>, calls: HeaderCalls) -> wasmtime::Result<()> {
    let HeaderCalls {
        calls: [get_one, get_all, set, append, remove],
        message,
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
            call(
                &mut c,
                get_one,
                |m| {
                    Ok(Op::GetHeader(
                        get_one,
                        message,
                        Name::new(owned(get_one, m, name, name_len)?),
                    ))
                },
                |m, v| deliver_out(get_one, m, buf, len, out, v),
            )
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        get_all.name,
        move |mut c: Caller<'_, HostState>, buf: i32, len: i32, out: i32| {
            call(
                &mut c,
                get_all,
                |_| Ok(Op::GetHeaders(message)),
                |m, v| deliver_out(get_all, m, buf, len, out, v),
            )
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
                call(
                    &mut c,
                    host_call,
                    |m| {
                        Ok(Op::ChangeHeader(
                            host_call,
                            message,
                            how,
                            Name::new(owned(host_call, m, name, name_len)?),
                            owned(host_call, m, value, value_len)?,
                        ))
                    },
                    nothing,
                )
            },
        )?;
    }
    linker.func_wrap(
        IMPORT_MODULE,
        remove.name,
        move |mut c: Caller<'_, HostState>, name: i32, name_len: i32| {
            call(
                &mut c,
                remove,
                |m| {
                    Ok(Op::ChangeHeader(
                        remove,
                        message,
                        Change::Remove,
                        Name::new(owned(remove, m, name, name_len)?),
                        Box::default(),
                    ))
                },
                nothing,
            )
        },
    )?;
    Ok(())
}
