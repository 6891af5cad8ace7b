//! `response_*` host calls. In request events they build the generated response.

use bytes::Bytes;
use edge_sdk::abi::{calls, HostCall, IMPORT_MODULE};
use wasmtime::{Caller, Linker};

use super::fields::{self, HeaderCalls};
use super::memory::{bytes, call, deliver_out, nothing};
use crate::wasm::op::{Message, Op};
use crate::wasm::state::HostState;

type C<'a> = Caller<'a, HostState>;

/// Adds the `response_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const GET_STATUS: &HostCall = &calls::RESPONSE_GET_STATUS;
    linker.func_wrap(IMPORT_MODULE, GET_STATUS.name, |mut c: C<'_>, out: i32| {
        call(
            &mut c,
            GET_STATUS,
            |_| Ok(Op::GetStatus),
            |m, v| deliver_out(GET_STATUS, m, 0, 0, out, v),
        )
    })?;
    const SET_STATUS: &HostCall = &calls::RESPONSE_SET_STATUS;
    linker.func_wrap(IMPORT_MODULE, SET_STATUS.name, |mut c: C<'_>, code: i32| {
        call(&mut c, SET_STATUS, |_| Ok(Op::SetStatus(code)), nothing)
    })?;
    fields::add_to_linker(
        linker,
        HeaderCalls {
            calls: [
                &calls::RESPONSE_GET_HEADER,
                &calls::RESPONSE_GET_HEADERS,
                &calls::RESPONSE_SET_HEADER,
                &calls::RESPONSE_APPEND_HEADER,
                &calls::RESPONSE_REMOVE_HEADER,
            ],
            message: Message::Response,
        },
    )?;
    const GET_BODY: &HostCall = &calls::RESPONSE_GET_BODY;
    linker.func_wrap(
        IMPORT_MODULE,
        GET_BODY.name,
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(
                &mut c,
                GET_BODY,
                |_| Ok(Op::GetBody),
                |m, v| deliver_out(GET_BODY, m, buf, len, out, v),
            )
        },
    )?;
    const SET_BODY: &HostCall = &calls::RESPONSE_SET_BODY;
    linker.func_wrap(
        IMPORT_MODULE,
        SET_BODY.name,
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(
                &mut c,
                SET_BODY,
                |m| {
                    Ok(Op::SetBody(Bytes::copy_from_slice(bytes(
                        SET_BODY, m, ptr, len,
                    )?)))
                },
                nothing,
            )
        },
    )?;
    Ok(())
}
