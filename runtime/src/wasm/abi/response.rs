//! `response_*` host calls. In request events they build the generated response.

use bytes::Bytes;
use edge_sdk::abi::{calls, HostCall, IMPORT_MODULE};
use edge_sdk::host;
use http::{HeaderMap, StatusCode};
use wasmtime::{Caller, Linker};

use super::fields::{self, HeaderCalls};
use super::memory::{bytes, call, write_out, write_u32};
use crate::wasm::state::{BodyView, HostState, ResponseView};

type C<'a> = Caller<'a, HostState>;

/// The response to change: the event's, or in request events the generated one (created as
/// `200`, no headers, empty body on first use).
fn response(s: &mut HostState) -> &mut ResponseView {
    s.response.get_or_insert_with(|| ResponseView {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: BodyView::Replaced(Bytes::new()),
    })
}

/// Adds the `response_*` calls.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    const GET_STATUS: &HostCall = &calls::RESPONSE_GET_STATUS;
    linker.func_wrap(IMPORT_MODULE, GET_STATUS.name, |mut c: C<'_>, out: i32| {
        call(&mut c, GET_STATUS, |m, s| {
            let code = s.response.as_ref().map_or(200, |r| r.status.as_u16());
            write_u32(GET_STATUS, m, out, u32::from(code))
        })
    })?;
    const SET_STATUS: &HostCall = &calls::RESPONSE_SET_STATUS;
    linker.func_wrap(IMPORT_MODULE, SET_STATUS.name, |mut c: C<'_>, code: i32| {
        call(&mut c, SET_STATUS, |_, s| {
            response(s).status = host::parse_status(SET_STATUS, code)?;
            Ok(())
        })
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
            read: |s| s.response.as_ref().map(|r| &r.headers),
            write: |s| &mut response(s).headers,
        },
    )?;
    const GET_BODY: &HostCall = &calls::RESPONSE_GET_BODY;
    linker.func_wrap(
        IMPORT_MODULE,
        GET_BODY.name,
        |mut c: C<'_>, buf: i32, len: i32, out: i32| {
            call(&mut c, GET_BODY, |m, s| {
                // The flow buffers the body only when it is within the body limit.
                let body = match s.response.as_ref().map(|r| &r.body) {
                    Some(BodyView::Buffered(b) | BodyView::Replaced(b)) => Some(b.clone()),
                    _ => None,
                };
                let body = host::readable_body(body.as_deref(), usize::MAX)?;
                write_out(GET_BODY, m, buf, len, out, body)
            })
        },
    )?;
    const SET_BODY: &HostCall = &calls::RESPONSE_SET_BODY;
    linker.func_wrap(
        IMPORT_MODULE,
        SET_BODY.name,
        |mut c: C<'_>, ptr: i32, len: i32| {
            call(&mut c, SET_BODY, |m, s| {
                let body = bytes(SET_BODY, m, ptr, len)?;
                host::check_body(SET_BODY, body.len(), s.body_limit)?;
                response(s).body = BodyView::Replaced(Bytes::copy_from_slice(body));
                Ok(())
            })
        },
    )?;
    Ok(())
}
