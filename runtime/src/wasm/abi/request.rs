//! `request_*` host calls.

use edge_sdk::abi::{calls, HostCall, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::fields::{self, HeaderCalls};
use super::memory::{call, deliver_out, nothing, owned};
use crate::wasm::op::{Message, Op};
use crate::wasm::state::HostState;

type C<'a> = Caller<'a, HostState>;

/// Adds the `request_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    for (host_call, op) in [
        (&calls::REQUEST_GET_METHOD, Op::GetMethod),
        (&calls::REQUEST_GET_URI, Op::GetUri),
        (&calls::REQUEST_GET_CLIENT_IP, Op::GetClientIp),
    ] {
        let host_call: &'static HostCall = host_call;
        linker.func_wrap(
            IMPORT_MODULE,
            host_call.name,
            move |mut c: C<'_>, buf: i32, len: i32, out: i32| {
                call(
                    &mut c,
                    host_call,
                    |_| Ok(op.clone()),
                    |m, v| deliver_out(host_call, m, buf, len, out, v),
                )
            },
        )?;
    }
    const SET_URI: &HostCall = &calls::REQUEST_SET_URI;
    linker.func_wrap(
        IMPORT_MODULE,
        SET_URI.name,
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(
                &mut c,
                SET_URI,
                |m| Ok(Op::SetUri(owned(SET_URI, m, ptr, len)?)),
                nothing,
            )
        },
    )?;
    fields::add_to_linker(
        linker,
        HeaderCalls {
            calls: [
                &calls::REQUEST_GET_HEADER,
                &calls::REQUEST_GET_HEADERS,
                &calls::REQUEST_SET_HEADER,
                &calls::REQUEST_APPEND_HEADER,
                &calls::REQUEST_REMOVE_HEADER,
            ],
            message: Message::Request,
        },
    )?;
    Ok(())
}
